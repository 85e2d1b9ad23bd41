"""The tool loop's scripted upstream rounds and fake MCP tools, shared by the engine and observer tests."""

import asyncio
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from addon.config import McpServer
from addon.engine.job import Job
from addon.engine.ports import TextPart, ToolResult
from addon.providers import Api
from tests.support.fakes import (
    CHAT_HEADERS,
    SSE_HEADERS,
    Chunks,
    FakeUpstream,
    make_job,
    sse,
)

SERVER = McpServer(name="fake", command="x")


@dataclass(frozen=True)
class FakeTool:
    name: str
    """As the model sees it."""
    tool: str
    """As the MCP server names it."""
    description: str = "a fake tool"
    input_schema: dict = field(default_factory=lambda: {"type": "object", "properties": {"text": {"type": "string"}}})
    server: McpServer = SERVER


ECHO = FakeTool("bmcp_fake_echo", "echo")


SLOW = FakeTool("bmcp_fake_slow", "slow")


FAIL = FakeTool("bmcp_fake_fail", "fail")


class FakeTools:
    """The ToolSource. `echo` answers at once, `fail` with an error result, `slow` once `release` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.release = asyncio.Event()
        self.slow_started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.running = 0

    def tools(self) -> list[FakeTool]:
        return [ECHO, SLOW, FAIL]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append((name, arguments))
        self.running += 1
        try:
            if name == SLOW.name:
                self.slow_started.set()
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.running -= 1
        if name == FAIL.name:
            return ToolResult((TextPart("disk on fire"),), is_error=True, duration_ms=2.5, size=12)
        text = f"{name.removeprefix('bmcp_fake_')}: {arguments.get('text', '')}"
        return ToolResult((TextPart(text),), is_error=False, duration_ms=1.25, size=len(text))


Responder = Callable[[httpx.Request], httpx.Response]


def script(upstream: FakeUpstream, *rounds: Responder) -> None:
    """The upstream answers each request with the next round."""
    pending = list(rounds)
    upstream.respond = lambda request: pending.pop(0)(request)


def streamed(events: list[bytes]) -> Responder:
    return lambda request: httpx.Response(200, headers=SSE_HEADERS, stream=Chunks(events))


def whole(body: dict, *, status: int = 200, gzipped: bool = False) -> Responder:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if gzipped:
        raw, headers["content-encoding"] = gzip.compress(raw), "gzip"
    return lambda request: httpx.Response(status, headers=headers, stream=Chunks([raw]))


MODEL = "claude-sonnet-4-5-20250929"


def anthropic_round(
    msg_id: str, *blocks: tuple[str, ...], stop: str = "end_turn", usage: tuple[int, int] = (10, 20)
) -> list[bytes]:
    """A streamed message. Blocks: ("text", text) or ("tool_use", id, name, arguments JSON)."""
    message = {"id": msg_id, "type": "message", "role": "assistant", "model": MODEL, "content": []}
    message["usage"] = {"input_tokens": usage[0], "output_tokens": 1}
    events = [sse("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(blocks):
        if block[0] == "text":
            start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block[1]}
        else:
            start = {"type": "tool_use", "id": block[1], "name": block[2], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": block[3]}
        events += [
            sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
            sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
            sse("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    end = {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": usage[1]}}
    return [*events, sse("message_delta", end), sse("message_stop", {"type": "message_stop"})]


def anthropic_request(*, stream: bool = True, model: str = "claude-sonnet-4-5") -> bytes:
    body = {"model": model, "max_tokens": 1024, "stream": stream, "messages": [{"role": "user", "content": "say hi"}]}
    return json.dumps(body).encode()


ANSWERS = anthropic_round("msg_2", ("text", "It says hi."), usage=(30, 40))


def chat_request(*, stream: bool = True, **extra: Any) -> bytes:
    body = {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "say hi"}], **extra}
    return json.dumps(body).encode()


def chat_job(body: bytes) -> Job:
    return make_job(body, api=Api.OPENAI_CHAT, headers=CHAT_HEADERS)
