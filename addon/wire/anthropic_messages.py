"""Anthropic `POST /v1/messages`: request facts, streamed and whole responses, error shapes."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from addon.wire.base import (
    JSON,
    LIMIT_NOTICE,
    LoopState,
    Next,
    RequestInfo,
    Thought,
    ToolCall,
    ToolDefinitions,
    ToolOutput,
    ToolResult,
    ToolSpec,
    Turn,
    Usage,
    decide,
    dumps,
    first_positive,
    human_text,
    int_or_zero,
    json_object,
    parse_arguments,
    result_parts,
    sum_usage,
)
from addon.wire.json_splice import extend_array, set_member
from addon.wire.sse import SSEEvent

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",  # what the bridge answers for an overloaded provider (circuit breaker)
    529: "overloaded_error",
}


def _content_parts(content: Any) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def last_user_message(messages: Any) -> JSON | None:
    """The last `user` message. Claude Code puts a `system` entry after it, and a prefill may follow it."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message
    return None


def extract_prompt(body: JSON) -> str | None:
    message = last_user_message(body.get("messages"))
    if message is None:
        return None
    parts = _content_parts(message.get("content"))
    return human_text([p["text"] for p in parts if p.get("type") == "text" and isinstance(p.get("text"), str)])


def correlating_tool_call_id(body: JSON) -> str | None:
    """The `tool_use_id` of the last `tool_result` in the last user message."""
    return _last_call_id(tool_results(body))


def _last_call_id(results: tuple[ToolResult, ...]) -> str | None:
    return results[-1].call_id if results else None


def tool_results(body: JSON) -> tuple[ToolResult, ...]:
    """The `tool_result` blocks of the last user message: the results this request brings back."""
    message = last_user_message(body.get("messages"))
    results = []
    for part in _content_parts(message.get("content")) if message is not None else []:
        if part.get("type") == "tool_result" and isinstance(call_id := part.get("tool_use_id"), str):
            size, text = result_parts(part.get("content"))
            results.append(ToolResult(call_id, part.get("is_error") is True, size, text))
    return tuple(results)


def to_usage(raw: JSON) -> Usage:
    usage = Usage(
        input=int_or_zero(raw.get("input_tokens")),
        output=int_or_zero(raw.get("output_tokens")),
        cache_read=int_or_zero(raw.get("cache_read_input_tokens")),
        cache_write=int_or_zero(raw.get("cache_creation_input_tokens")),
    )
    if isinstance(creation := raw.get("cache_creation"), dict):
        usage.extra["cache_write_5m"] = int_or_zero(creation.get("ephemeral_5m_input_tokens"))
        usage.extra["cache_write_1h"] = int_or_zero(creation.get("ephemeral_1h_input_tokens"))
    if isinstance(server_tools := raw.get("server_tool_use"), dict):
        for key, value in server_tools.items():
            if isinstance(value, int):
                usage.extra[key] = value
    if isinstance(tier := raw.get("service_tier"), str):
        usage.extra["service_tier"] = tier
    return usage


_TOOL_DEFINITIONS = ToolDefinitions(
    lambda t: {"name": t.name, "description": t.description, "input_schema": t.input_schema}
)
_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
"""Which field of a content_block_delta extends the block."""


@dataclass(slots=True)
class _Block:
    type: str
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    start: JSON = field(default_factory=dict)
    """The `content_block` the block started with."""
    signature: str | None = None
    hidden: bool = False
    client_index: int | None = None

    def as_content(self) -> JSON:
        """The block as the assistant content of a follow-up request."""
        text = "".join(self.parts)
        if self.type == "text":
            return {"type": "text", "text": text}
        if self.type == "thinking":
            return {"type": "thinking", "thinking": text, "signature": self.signature or ""}
        if self.type in ("tool_use", "server_tool_use"):
            return {**self.start, "input": parse_arguments(text) or {}}
        return self.start


class MessagesParser:
    """One upstream `/v1/messages` response. Anthropic's streamed usage is cumulative per message:
    `message_delta` restates totals, so fields are merged (latest value wins), never summed."""

    def __init__(self) -> None:
        self._turn = Turn()
        self._usage: JSON | None = None
        self._blocks: dict[int, _Block] = {}
        self._content: list[JSON] | None = None
        """A whole body's content blocks, as the upstream sent them."""

    def _merge_usage(self, raw: Any) -> None:
        if isinstance(raw, dict):
            self._usage = self._usage or {}
            self._usage.update({k: v for k, v in raw.items() if v is not None})

    def feed_event(self, event: SSEEvent) -> bytes | None:
        # Text deltas are most of a stream and carry nothing the audit keeps: skip the JSON decode.
        if event.event == "content_block_delta" and '"text_delta"' in event.data:
            return event.raw
        try:
            data = json.loads(event.data) if event.data else None
        except ValueError:
            return event.raw  # relayed untouched; nothing to learn from it
        if isinstance(data, dict):
            self._on_event(event.event or str(data.get("type", "")), data)
        return event.raw

    def _on_event(self, kind: str, data: JSON) -> None:
        turn = self._turn
        if kind == "message_start" and isinstance(message := data.get("message"), dict):
            turn.response_id = message.get("id") or turn.response_id
            turn.model = message.get("model") or turn.model
            self._merge_usage(message.get("usage"))
        elif kind == "content_block_start" and isinstance(block := data.get("content_block"), dict):
            index = data.get("index")
            if isinstance(index, int):
                self._blocks[index] = self._start_block(block)
        elif kind == "content_block_delta" and isinstance(delta := data.get("delta"), dict):
            target = self._blocks.get(data.get("index"))  # type: ignore[arg-type]
            if target is not None:
                kind = delta.get("type")
                if isinstance(text := delta.get(_DELTA_FIELDS.get(kind, "")), str):  # type: ignore[arg-type]
                    target.parts.append(text)
                elif kind == "signature_delta" and isinstance(signature := delta.get("signature"), str):
                    target.signature = signature
        elif kind == "message_delta":
            if isinstance(delta := data.get("delta"), dict) and delta.get("stop_reason"):
                turn.stop_reason = delta["stop_reason"]
            self._merge_usage(data.get("usage"))
        elif kind == "error":
            turn.error = _error_text(data)

    @staticmethod
    def _start_block(block: JSON) -> _Block:
        kind = str(block.get("type", ""))
        if kind in ("tool_use", "server_tool_use"):
            start = block.get("input")
            # Streams start with `input: {}` and send the JSON as deltas; a non-empty start is the whole input.
            parts = [dumps(start)] if isinstance(start, dict) and start else []
            return _Block(kind, str(block.get("id", "")), str(block.get("name", "")), parts, block)
        initial = block.get("thinking" if kind == "thinking" else "text")
        parts = [initial] if kind in ("thinking", "text") and isinstance(initial, str) and initial else []
        return _Block(kind, parts=parts, start=block, signature=block.get("signature"))

    def feed_body(self, body: bytes) -> None:
        if (data := json_object(body)) is None:
            return
        turn = self._turn
        if data.get("type") == "error":
            turn.error = _error_text(data)
            return
        turn.response_id = data.get("id") if isinstance(data.get("id"), str) else None
        turn.model = data.get("model") if isinstance(data.get("model"), str) else None
        turn.stop_reason = data.get("stop_reason")
        self._merge_usage(data.get("usage"))
        content = data.get("content")
        self._content = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        for index, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_use":
                self._blocks[index] = _Block(
                    "tool_use", str(block.get("id", "")), str(block.get("name", "")), [dumps(block.get("input", {}))]
                )
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                self._blocks[index] = _Block("thinking", parts=[block["thinking"]])

    def _calls(self) -> list[ToolCall]:
        return [
            ToolCall(b.id, b.name, "".join(b.parts) or "{}")
            for _, b in sorted(self._blocks.items())
            if b.type == "tool_use"
        ]

    def turn(self) -> Turn:
        turn = self._turn
        turn.usage = to_usage(self._usage) if self._usage is not None else None
        turn.tool_calls = self._calls()
        turn.thoughts = [
            Thought("".join(b.parts), "thinking")
            for _, b in sorted(self._blocks.items())
            if b.type == "thinking" and "".join(b.parts)
        ]
        return turn


def _event(kind: str, data: JSON) -> bytes:
    return f"event: {kind}\ndata: {dumps(data)}\n\n".encode()


def _summed_usage(raw: JSON, total: Usage) -> JSON:
    return {
        **raw,
        "input_tokens": total.input,
        "output_tokens": total.output,
        "cache_read_input_tokens": total.cache_read,
        "cache_creation_input_tokens": total.cache_write,
    }


class MessagesLoopParser(MessagesParser):
    """One round of a response whose injected tools the bridge runs. The client sees one message: the first
    round's `message_start`, every round's text and thinking (injected `tool_use` blocks hidden), block
    indexes that keep counting across rounds, and a final `message_delta` with usage summed over rounds."""

    def __init__(self, state: LoopState) -> None:
        super().__init__()
        self._state = state
        self._next: Next | None = None

    def feed_event(self, event: SSEEvent) -> bytes | None:
        try:
            data = json.loads(event.data) if event.data else None
        except ValueError:
            return event.raw
        if not isinstance(data, dict):
            return event.raw
        kind = event.event or str(data.get("type", ""))
        self._on_event(kind, data)
        state = self._state
        if kind == "message_start":
            return event.raw if state.round == 1 else None
        if kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            return self._block_event(event, kind, data)
        if kind == "message_delta":
            stopped_for_tools = self._turn.stop_reason == "tool_use"
            self._next = decide(self._calls(), state.injected, stopped_for_tools, state.last_round)
            if self._next is Next.CONTINUE:
                return None
            total = sum_usage(state.usage, to_usage(self._usage or {}))
            if self._next is Next.LIMIT:
                return self._limit_notice(data, total)
            if state.round == 1:
                return event.raw
            return _event(kind, {**data, "usage": _summed_usage(data.get("usage") or {}, total)})
        if kind == "message_stop":
            return None if self._next is Next.CONTINUE else event.raw
        return event.raw

    def _block_event(self, event: SSEEvent, kind: str, data: JSON) -> bytes | None:
        index = data.get("index")
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None:
            return event.raw
        if kind == "content_block_start":
            if block.type == "tool_use" and block.name in self._state.injected:
                block.hidden = True
            else:
                block.client_index = self._state.next_index
                self._state.next_index += 1
        if block.hidden:
            return None
        if block.client_index == index:
            return event.raw
        data = set_member(event.data.encode(), "index", str(block.client_index)).replace(b"\n", b"\ndata: ")
        return f"event: {kind}\ndata: ".encode() + data + b"\n\n"

    def _limit_notice(self, delta: JSON, total: Usage) -> bytes:
        index = self._state.next_index
        self._state.next_index += 1
        text = LIMIT_NOTICE.format(rounds=self._state.round)
        return b"".join(
            [
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                ),
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
                ),
                _event("content_block_stop", {"type": "content_block_stop", "index": index}),
                _event(
                    "message_delta",
                    {
                        **delta,
                        "delta": {**(delta.get("delta") or {}), "stop_reason": "end_turn"},
                        "usage": _summed_usage(delta.get("usage") or {}, total),
                    },
                ),
            ]
        )

    def feed_body(self, body: bytes) -> None:
        super().feed_body(body)
        stopped_for_tools = self._turn.stop_reason == "tool_use"
        self._next = decide(self._calls(), self._state.injected, stopped_for_tools, self._state.last_round)

    def turn(self) -> Turn:
        turn = super().turn()
        turn.next = self._next or Next.FINAL
        if self._content is not None:
            content = self._content
        else:
            content = [b.as_content() for _, b in sorted(self._blocks.items())]
        turn.assistant = {"role": "assistant", "content": content}
        return turn


def _tool_result(call: ToolCall, output: ToolOutput) -> JSON:
    content: list[JSON] = []
    for part in output.parts:
        if hasattr(part, "text"):
            content.append({"type": "text", "text": part.text})
        else:
            content.append(
                {"type": "image", "source": {"type": "base64", "media_type": part.media_type, "data": part.data}}
            )
    return {"type": "tool_result", "tool_use_id": call.id, "content": content, "is_error": output.is_error}


def _error_text(data: JSON) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('message', '')}".strip()
    return dumps(data)[:1000]


class AnthropicMessages:
    provider_type = "anthropic"

    def parse_request(self, body: JSON) -> RequestInfo:
        model = body.get("model")
        results = tool_results(body)
        return RequestInfo(
            model=model if isinstance(model, str) else None,
            stream=body.get("stream") is True,
            prompt=extract_prompt(body),
            correlating_tool_call_id=_last_call_id(results),
            max_output=first_positive(body, "max_tokens"),
            tool_results=results,
            takes_tools="haiku" not in (model if isinstance(model, str) else "").lower(),  # Claude Code's titles
        )

    def ends_stream(self, event: SSEEvent) -> bool:
        if event.event in ("message_stop", "error"):
            return True
        head = event.data.lstrip()[:40]
        return '"type": "message_stop"' in head or '"type":"message_stop"' in head

    def prepare_request(self, raw: bytes, body: JSON) -> tuple[bytes, bool]:
        return raw, False

    def parser(self, *, hide_usage_chunk: bool = False) -> MessagesParser:
        return MessagesParser()

    def loop_parser(self, state: LoopState) -> MessagesLoopParser:
        return MessagesLoopParser(state)

    def inject_tools(self, raw: bytes, tools: Sequence[ToolSpec]) -> bytes:
        """Prepend, so a client `cache_control` breakpoint on its last tool still closes the cached prefix."""
        return extend_array(raw, "tools", _TOOL_DEFINITIONS(tools), at_start=True)

    def next_request(self, raw: bytes, turn: Turn, results: Sequence[tuple[ToolCall, ToolOutput]]) -> bytes:
        assert turn.assistant is not None
        answers = {"role": "user", "content": [_tool_result(call, output) for call, output in results]}
        return extend_array(raw, "messages", [dumps(turn.assistant), dumps(answers)])

    def merge_rounds(self, bodies: Sequence[JSON], state: LoopState, limited: bool) -> bytes:
        """The blocking answer: the last round's message with every round's visible blocks and summed usage."""
        final = dict(bodies[-1])
        content = [
            block
            for body in bodies
            for block in (body.get("content") or [])
            if not (isinstance(block, dict) and block.get("type") == "tool_use" and block.get("name") in state.injected)
        ]
        if limited:
            content.append({"type": "text", "text": LIMIT_NOTICE.format(rounds=state.round)})
            final["stop_reason"] = "end_turn"
        final["content"] = content
        final["id"] = bodies[0].get("id", final.get("id"))  # as a stream shows the first round's message_start
        final["usage"] = _summed_usage(final.get("usage") or {}, state.usage)
        return dumps(final).encode()

    def ping_event(self) -> bytes:
        return b'event: ping\ndata: {"type": "ping"}\n\n'

    def error_body(self, status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error")
        return dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()

    def error_event(self, message: str) -> bytes:
        payload = dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return f"event: error\ndata: {payload}\n\n".encode()
