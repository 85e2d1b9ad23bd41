"""Anthropic `POST /v1/messages`: request facts, streamed and whole responses, error shapes."""

import json
from dataclasses import dataclass, field
from typing import Any

from .base import JSON, RequestInfo, Thought, ToolCall, Turn, Usage, dumps, human_text, int_or_zero
from .sse import SSEEvent

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
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
    message = last_user_message(body.get("messages"))
    if message is None:
        return None
    for part in reversed(_content_parts(message.get("content"))):
        if part.get("type") == "tool_result" and isinstance(part.get("tool_use_id"), str):
            return part["tool_use_id"]
    return None


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


@dataclass(slots=True)
class _Block:
    type: str
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


class MessagesParser:
    """One upstream `/v1/messages` response. Anthropic's streamed usage is cumulative per message:
    `message_delta` restates totals, so fields are merged (latest value wins), never summed."""

    def __init__(self) -> None:
        self._turn = Turn()
        self._usage: JSON | None = None
        self._blocks: dict[int, _Block] = {}

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
                if delta.get("type") == "thinking_delta" and isinstance(text := delta.get("thinking"), str):
                    target.parts.append(text)
                elif delta.get("type") == "input_json_delta" and isinstance(partial := delta.get("partial_json"), str):
                    target.parts.append(partial)
        elif kind == "message_delta":
            if isinstance(delta := data.get("delta"), dict) and delta.get("stop_reason"):
                turn.stop_reason = delta["stop_reason"]
            self._merge_usage(data.get("usage"))
        elif kind == "error":
            turn.error = _error_text(data)

    @staticmethod
    def _start_block(block: JSON) -> _Block:
        kind = str(block.get("type", ""))
        if kind == "tool_use":
            start = block.get("input")
            # Streams start with `input: {}` and send the JSON as deltas; a non-empty start is the whole input.
            parts = [dumps(start)] if isinstance(start, dict) and start else []
            return _Block(kind, str(block.get("id", "")), str(block.get("name", "")), parts)
        if kind == "thinking" and isinstance(block.get("thinking"), str) and block["thinking"]:
            return _Block(kind, parts=[block["thinking"]])
        return _Block(kind)

    def feed_body(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict):
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

    def turn(self) -> Turn:
        turn = self._turn
        turn.usage = to_usage(self._usage) if self._usage is not None else None
        turn.tool_calls = [
            ToolCall(b.id, b.name, "".join(b.parts) or "{}")
            for _, b in sorted(self._blocks.items())
            if b.type == "tool_use"
        ]
        turn.thoughts = [
            Thought("".join(b.parts), "thinking")
            for _, b in sorted(self._blocks.items())
            if b.type == "thinking" and "".join(b.parts)
        ]
        return turn


def _error_text(data: JSON) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('message', '')}".strip()
    return dumps(data)[:1000]


class AnthropicMessages:
    provider_type = "anthropic"

    def parse_request(self, body: JSON) -> RequestInfo:
        model = body.get("model")
        return RequestInfo(
            model=model if isinstance(model, str) else None,
            stream=body.get("stream") is True,
            prompt=extract_prompt(body),
            correlating_tool_call_id=correlating_tool_call_id(body),
        )

    def prepare_request(self, raw: bytes, body: JSON) -> tuple[bytes, MessagesParser]:
        return raw, MessagesParser()

    def error_body(self, status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error")
        return dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()

    def error_event(self, message: str) -> bytes:
        payload = dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return f"event: error\ndata: {payload}\n\n".encode()
