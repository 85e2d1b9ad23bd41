"""A hand-written stdio MCP server that answers tool calls with malformed results, which no SDK server would
send: a result whose `content` is not a list, content of an unknown type, a line that is not JSON (after which
the call is never answered), and a result for an id nobody asked about.

    python -m tests.support.raw_mcp_server
"""

import json
import sys
from typing import Any

TOOLS = ("bad_shape", "bad_item", "not_json", "wrong_id", "ok")


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def answer_call(request_id: Any, name: str) -> None:
    if name == "bad_shape":
        send({"jsonrpc": "2.0", "id": request_id, "result": {"content": "not a list", "isError": "maybe"}})
    elif name == "bad_item":
        send({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "mystery", "blob": 7}]}})
    elif name == "not_json":
        sys.stdout.write("this is not JSON-RPC {\n")
        sys.stdout.flush()  # and the call is never answered: the bridge's tool_timeout ends it
    elif name == "wrong_id":
        send({"jsonrpc": "2.0", "id": 987654, "result": {"content": [{"type": "text", "text": "for nobody"}]}})
    else:
        send({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": "fine"}]}})


def main() -> None:
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # a notification
        if method == "initialize":
            version = message["params"].get("protocolVersion", "2025-06-18")
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "result": {
                        "protocolVersion": version,
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "raw", "version": "0"},
                    },
                }
            )
        elif method == "tools/list":
            tools = [{"name": n, "description": n, "inputSchema": {"type": "object"}} for n in TOOLS]
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": tools}})
        elif method == "tools/call":
            answer_call(request_id, message["params"]["name"])
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"no {method}"}})


if __name__ == "__main__":
    main()
