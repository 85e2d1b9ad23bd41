"""Amazon Bedrock's runtime APIs. Pure.

InvokeModel carries Anthropic's Messages bodies (`BedrockInvoke`: the Messages format with Bedrock's errors).
Converse (`BedrockConverse`) is Bedrock's own format for every model, read for the audit only: request facts
(the last user turn, the tool result it carries), and a response, whole or streamed (events named by their
frames' `:event-type`, raw JSON payloads), into a `Turn`. Errors are Bedrock's: `{"message"}` with the error's
code where botocore reads it (`__type`); the real service also sends it in `x-amzn-ErrorType`.
"""

import base64
import json
import re
from typing import Any

from addon.wire.anthropic_messages import AnthropicMessages
from addon.wire.base import (
    JSON,
    RequestInfo,
    Thought,
    ToolCall,
    Turn,
    Usage,
    dumps,
    first_positive,
    human_text,
    int_or_zero,
    json_object,
)
from addon.wire.eventstream import Frame, encode
from addon.wire.sse import SSEEvent

_ERROR_CODES = {
    400: "ValidationException",
    401: "AccessDeniedException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    413: "ValidationException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
}
_FINAL_EVENTS = ("metadata", "error")
_CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
_KIND = re.compile(r'\s*\{\s*"type"\s*:\s*"([^"]+)"')


def error_body(status: int, message: str) -> bytes:
    """A Bedrock error body, as boto3 and Anthropic's Bedrock client read it."""
    code = _ERROR_CODES.get(status) or ("InternalServerException" if status >= 500 else "ValidationException")
    return dumps({"message": message, "__type": code}).encode()


def frame_event(frame: Frame) -> SSEEvent:
    """A Bedrock frame as the event it carries: InvokeModel's `chunk` has one of the API's own events in a base64
    payload; Converse's frames are named by their `:event-type` with the event as the payload; an exception
    becomes the API's error event. A payload that is not what it should be is an event with no data."""
    if frame.message_type == "exception":
        kind = frame.headers.get(":exception-type", "exception")
        message = (json_object(frame.payload) or {}).get("message") or kind
        data = json.dumps({"type": "error", "error": {"type": kind, "message": message}})
        return SSEEvent(raw=b"", event="error", data=data)
    name = frame.headers.get(":event-type", "")
    if name != "chunk":
        return SSEEvent(raw=b"", event=name, data=frame.payload.decode("utf-8", "replace"))
    inner = (json_object(frame.payload) or {}).get("bytes")
    try:
        data = base64.b64decode(inner, validate=True).decode("utf-8") if isinstance(inner, str) else ""
    except ValueError:  # binascii.Error and UnicodeDecodeError
        data = ""
    kind = _KIND.match(data)  # the event's name, as SSE would carry it, without parsing the event twice
    return SSEEvent(raw=b"", event=kind.group(1) if kind else "", data=data)


def chunk_frame(data: str) -> bytes:
    """One event as InvokeModel streams it: its JSON, base64, in a `chunk` frame."""
    return encode(_CHUNK, dumps({"bytes": base64.b64encode(data.encode()).decode()}).encode())


class BedrockInvoke(AnthropicMessages):
    """InvokeModel: Anthropic's Messages bodies (the model in the path), streamed in `chunk` frames; Bedrock's
    errors, in a body or, mid-stream, as an exception frame (boto3 raises `EventStreamError`)."""

    def error_body(self, status: int, message: str) -> bytes:
        return error_body(status, message)

    def ping_event(self) -> bytes:
        return chunk_frame('{"type": "ping"}')

    def error_event(self, message: str) -> bytes:
        headers = {":message-type": "exception", ":exception-type": "internalServerException"}
        return encode({**headers, ":content-type": "application/json"}, dumps({"message": message}).encode())


def to_usage(raw: JSON) -> Usage:
    """Converse's `inputTokens` leaves out the cached tokens, as the audit's `input` does."""
    return Usage(
        input=int_or_zero(raw.get("inputTokens")),
        output=int_or_zero(raw.get("outputTokens")),
        cache_read=int_or_zero(raw.get("cacheReadInputTokens")),
        cache_write=int_or_zero(raw.get("cacheWriteInputTokens")),
    )


def _last_turn(body: JSON) -> tuple[str | None, str | None]:
    """(prompt, correlating tool call id) of the request's last user message."""
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        for block in blocks:
            result = block.get("toolResult")
            if isinstance(result, dict) and isinstance(result.get("toolUseId"), str):
                return None, result["toolUseId"]
        return human_text([b["text"] for b in blocks if isinstance(b.get("text"), str)]), None
    return None, None


def _tool_call(block: JSON) -> ToolCall | None:
    use = block.get("toolUse")
    if not isinstance(use, dict):
        return None
    arguments = use.get("input")
    text = arguments if isinstance(arguments, str) else dumps(arguments if arguments is not None else {})
    return ToolCall(str(use.get("toolUseId") or ""), str(use.get("name") or ""), text)


def _reasoning(block: JSON) -> str | None:
    content = block.get("reasoningContent")
    text = content.get("reasoningText") if isinstance(content, dict) else None
    value = text.get("text") if isinstance(text, dict) else None
    return value if isinstance(value, str) and value else None


class ConverseParser:
    """One Converse response; feeds never change what is relayed."""

    def __init__(self) -> None:
        self._turn = Turn()
        self._calls: dict[int, ToolCall] = {}
        self._thinking: dict[int, list[str]] = {}
        self._whole: list[Any] | None = None

    def feed_event(self, event: SSEEvent) -> bytes | None:
        data = json_object(event.data) if event.data else None
        if data is None:
            return event.raw
        index = data.get("contentBlockIndex")
        index = index if isinstance(index, int) else -1
        if event.event == "contentBlockStart":
            start = data.get("start")
            if isinstance(start, dict) and (call := _tool_call(start)) is not None:
                self._calls[index] = ToolCall(call.id, call.name, "")
        elif event.event == "contentBlockDelta" and isinstance(delta := data.get("delta"), dict):
            use, reasoning = delta.get("toolUse"), delta.get("reasoningContent")
            if isinstance(use, dict) and isinstance(use.get("input"), str) and index in self._calls:
                self._calls[index].arguments += use["input"]
            elif isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
                self._thinking.setdefault(index, []).append(reasoning["text"])
        elif event.event == "messageStop" and isinstance(data.get("stopReason"), str):
            self._turn.stop_reason = data["stopReason"]
        elif event.event == "metadata" and isinstance(usage := data.get("usage"), dict):
            self._turn.usage = to_usage(usage)
        elif event.event == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else data
            self._turn.error = f"{error.get('type', 'error')}: {error.get('message', '')}".strip()
        return event.raw

    def feed_body(self, body: bytes) -> None:
        if (data := json_object(body)) is None:
            return
        output = data.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            self._whole = content
        elif isinstance(data.get("message"), str):
            self._turn.error = data["message"]
        if isinstance(data.get("stopReason"), str):
            self._turn.stop_reason = data["stopReason"]
        if isinstance(usage := data.get("usage"), dict):
            self._turn.usage = to_usage(usage)

    def turn(self) -> Turn:
        turn = self._turn
        if self._whole is not None:
            blocks = [b for b in self._whole if isinstance(b, dict)]
            turn.tool_calls = [c for b in blocks if (c := _tool_call(b)) is not None]
            turn.thoughts = [Thought(t, "thinking") for b in blocks if (t := _reasoning(b)) is not None]
        else:
            turn.tool_calls = [self._calls[i] for i in sorted(self._calls)]
            texts = ("".join(self._thinking[i]) for i in sorted(self._thinking))
            turn.thoughts = [Thought(t, "thinking") for t in texts if t]
        return turn


class BedrockConverse:
    """What the audit reads of Converse and ConverseStream (the model and the streaming are the path's)."""

    provider_type = "bedrock"

    def parse_request(self, body: JSON) -> RequestInfo:
        model = body.get("model")
        prompt, correlating = _last_turn(body)
        config = body.get("inferenceConfig")
        return RequestInfo(
            model=model if isinstance(model, str) else None,
            stream=body.get("stream") is True,
            prompt=prompt,
            correlating_tool_call_id=correlating,
            max_output=first_positive(config, "maxTokens") if isinstance(config, dict) else None,
        )

    def parser(self) -> ConverseParser:
        return ConverseParser()

    def ends_stream(self, event: SSEEvent) -> bool:
        return event.event in _FINAL_EVENTS

    def error_body(self, status: int, message: str) -> bytes:
        return error_body(status, message)
