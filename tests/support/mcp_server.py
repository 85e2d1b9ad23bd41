"""A small real MCP server for tests, over stdio or streamable HTTP on 127.0.0.1.

    python -m tests.support.mcp_server --transport stdio
    python -m tests.support.mcp_server --transport streamable-http --port 0   # 0: pick a free port

Over HTTP it binds the socket itself, then prints `READY http://127.0.0.1:<port>/mcp` to stderr, so a test can
start it on port 0 and read the URL. `HttpServerProcess` does that: `with HttpServerProcess() as server: server.url`.

Tools: six `coder_*` tools answering "mock" (the names the reference's Coder MCP server uses), `echo`, `add`,
`fail` (isError), `raise_error` (an exception in the tool), `hang`, `slow`, `crash` (the process exits mid-call),
`image`, `resource`, `header` (a request header, over HTTP), and `add_tool`, which registers a tool at runtime
and (unless `notify` is false) announces it with `notifications/tools/list_changed`: to `subscriptions/listen`
streams on 2026-07-28 connections, as a plain notification on older ones.
"""

import argparse
import asyncio
import base64
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import uvicorn
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp_types import CallToolResult, EmbeddedResource, TextContent, TextResourceContents

# A 1x1 transparent PNG.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CODER_TOOLS = (
    "coder_list_workspaces",
    "coder_list_templates",
    "coder_template_version_parameters",
    "coder_get_authenticated_user",
    "coder_create_workspace_build",
    "coder_delete_template",
)

server = MCPServer("aibridge-test", log_level="CRITICAL")


def _mock() -> str:
    return "mock"


for _name in CODER_TOOLS:
    server.add_tool(_mock, name=_name, description=f"Mock of Coder's {_name}.")


@server.tool()
def echo(message: str) -> str:
    """Return the message."""
    return message


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
def fail(message: str) -> CallToolResult:
    """Return an error result (isError) with the message."""
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


@server.tool()
def raise_error() -> str:
    """Raise an exception inside the tool."""
    raise RuntimeError("boom")


@server.tool()
async def hang() -> str:
    """Sleep for an hour."""
    await asyncio.sleep(3600)
    return "woke up"


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer "done"."""
    await asyncio.sleep(seconds)
    return "done"


@server.tool()
def crash() -> str:
    """Kill the server process mid-call."""
    os._exit(1)


@server.tool()
def image() -> list[Image | str]:
    """A tiny PNG and a caption."""
    return [Image(data=TINY_PNG, format="png"), "a tiny image"]


@server.tool()
def resource() -> CallToolResult:
    """An embedded text resource."""
    contents = TextResourceContents(uri="file:///notes.txt", mime_type="text/plain", text="resource text")
    return CallToolResult(content=[EmbeddedResource(type="resource", resource=contents)])


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The named header of the HTTP request carrying this call; empty over stdio."""
    request = ctx.request_context.request
    return request.headers.get(name, "") if request is not None else ""


@server.tool()
async def add_tool(name: str, ctx: Context, notify: bool = True) -> str:
    """Register a new tool `name` (answering "mock") and announce the change unless `notify` is false."""
    server.add_tool(_mock, name=name, description="Added at runtime.")
    if not notify:
        return f"added {name}"
    await ctx.notify_tools_changed()  # 2026-07-28: delivered on subscriptions/listen streams
    await ctx.request_context.session.send_tool_list_changed()  # earlier versions: a plain notification
    return f"added {name}"


def _serve_http(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.set_inheritable(True)
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


class HttpServerProcess:
    """This server over streamable HTTP in a subprocess on 127.0.0.1; `port=0` picks a free port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout: float = 15.0) -> Self:
        """Start and wait for the readiness line; the same port may be started again after `stop()`."""
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.mcp_server",
                "--transport",
                "streamable-http",
                "--port",
                str(self.port),
            ],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        line = ""
        while not line.startswith("READY ") and time.monotonic() < deadline:
            if select.select([self.process.stderr], [], [], deadline - time.monotonic())[0]:
                line = self.process.stderr.readline()
                if not line:
                    break  # the process ended
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the MCP test server did not start: {line!r}")
        self.port = int(line.split()[1].rsplit(":", 1)[1].split("/")[0])
        # Keep draining stderr so a chatty server can never block on a full pipe.
        threading.Thread(target=self.process.stderr.read, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1; 0 picks a free one")
    args = parser.parse_args()
    if args.transport == "stdio":
        server.run(transport="stdio")
    else:
        _serve_http(args.port)


if __name__ == "__main__":
    main()
