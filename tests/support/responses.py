"""A Responses API exchange as OpenAI streams it, for the wire format's and the tap's tests."""

import json
from typing import Any

from addon.config import parse_config

OPENAI = parse_config({}).providers[1]


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "model": "gpt-5-2025-08-07",
    "status": "completed",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan: search."}]},
        {
            "type": "message",
            "role": "assistant",
            "phase": "commentary",
            "content": [{"type": "output_text", "text": "Looking it up."}],
        },
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "add", "arguments": '{"a":1}'},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "exec", "input": "print(1)"},
        {"type": "mcp_call", "id": "mcp_1", "name": "lookup", "server_label": "docs", "arguments": "{}"},
        {"type": "namespace_thing", "id": "x_1"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
    ],
    "usage": {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 60},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
    },
}


STREAM = [
    sse("response.created", {"response": {"id": "resp_1", "model": "gpt-5", "status": "in_progress", "output": []}}),
    sse(
        "response.output_item.added",
        {"output_index": 0, "item": {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": ""}},
    ),
    sse("response.function_call_arguments.delta", {"output_index": 0, "delta": '{"a":'}),
    sse("response.function_call_arguments.delta", {"output_index": 0, "delta": "1}"}),
    sse("response.completed", {"response": RESPONSE}),
]
