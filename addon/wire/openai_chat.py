"""OpenAI `POST /v1/chat/completions`: request facts, streamed and whole responses, error shapes."""

import json
from dataclasses import dataclass, field
from typing import Any

from .base import JSON, RequestInfo, Thought, ToolCall, Turn, Usage, dumps, human_text, int_or_zero
from .json_splice import set_member
from .sse import SSEEvent

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_SKIPPED_ROLES = ("system", "developer")
_REASONING_KEYS = ("reasoning_content", "reasoning")  # vLLM, DeepSeek, OpenRouter and others


def _last_turn(body: JSON) -> JSON | None:
    """The last message that is not a system/developer instruction."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") not in _SKIPPED_ROLES:
            return message
    return None


def extract_prompt(body: JSON) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") in _SKIPPED_ROLES:
            continue
        role = message.get("role")
        if role == "tool":
            return None  # a tool-loop continuation: the prompt was the previous interception's
        if role != "user":
            continue  # e.g. an assistant prefill
        content = message.get("content")
        if isinstance(content, str):
            return human_text([content])
        if isinstance(content, list):
            return human_text(
                [
                    p["text"]
                    for p in content
                    if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                ]
            )
        return None
    return None


def correlating_tool_call_id(body: JSON) -> str | None:
    last = _last_turn(body)
    if last is not None and last.get("role") == "tool" and isinstance(last.get("tool_call_id"), str):
        return last["tool_call_id"]
    return None


def to_usage(raw: JSON) -> Usage:
    prompt = int_or_zero(raw.get("prompt_tokens"))
    prompt_details = raw.get("prompt_tokens_details") if isinstance(raw.get("prompt_tokens_details"), dict) else {}
    completion_details = (
        raw.get("completion_tokens_details") if isinstance(raw.get("completion_tokens_details"), dict) else {}
    )
    cached = int_or_zero(prompt_details.get("cached_tokens"))
    usage = Usage(input=max(prompt - cached, 0), output=int_or_zero(raw.get("completion_tokens")), cache_read=cached)
    for prefix, details in (("prompt", prompt_details), ("completion", completion_details)):
        for key, value in details.items():
            if isinstance(value, int) and value and key != "cached_tokens":
                usage.extra[f"{prefix}_{key}"] = value
    if reasoning := int_or_zero(completion_details.get("reasoning_tokens")):
        usage.extra["reasoning"] = reasoning
    return usage


@dataclass(slots=True)
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatParser:
    """One upstream chat completion. When the bridge asked for usage the client did not ask for
    (`stream_options.include_usage`), the usage-only chunk is recorded but not relayed."""

    def __init__(self, *, hide_usage_chunk: bool = False) -> None:
        self._turn = Turn()
        self._hide_usage_chunk = hide_usage_chunk
        self._usage: JSON | None = None
        self._calls: dict[tuple[int, int], _Call] = {}
        self._reasoning: dict[int, list[str]] = {}

    def feed_event(self, event: SSEEvent) -> bytes | None:
        if event.data == "[DONE]" or not event.data:
            return event.raw
        try:
            chunk = json.loads(event.data)
        except ValueError:
            return event.raw
        if not isinstance(chunk, dict):
            return event.raw
        if "error" in chunk and isinstance(chunk["error"], dict):
            self._turn.error = _error_text(chunk)
            return event.raw
        self._take_ids(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]  # some providers repeat cumulative usage: the last one counts
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict):
                self._on_choice_delta(choice)
        if self._hide_usage_chunk and not choices and isinstance(chunk.get("usage"), dict):
            return None
        return event.raw

    def _take_ids(self, obj: JSON) -> None:
        if isinstance(obj.get("id"), str) and not self._turn.response_id:
            self._turn.response_id = obj["id"]
        if isinstance(obj.get("model"), str) and not self._turn.model:
            self._turn.model = obj["model"]

    def _on_choice_delta(self, choice: JSON) -> None:
        index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
        if choice.get("finish_reason"):
            self._turn.stop_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        for key in _REASONING_KEYS:
            if isinstance(text := delta.get(key), str) and text:
                self._reasoning.setdefault(index, []).append(text)
        tool_calls = delta.get("tool_calls")
        for position, part in enumerate(tool_calls if isinstance(tool_calls, list) else []):
            if not isinstance(part, dict):
                continue
            slot = part.get("index", position) if isinstance(part.get("index"), int) else position
            call = self._calls.setdefault((index, slot), _Call())
            if isinstance(part.get("id"), str) and part["id"]:
                call.id = part["id"]
            function = part.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str) and function["name"]:
                    call.name = function["name"]
                if isinstance(function.get("arguments"), str):
                    call.arguments.append(function["arguments"])

    def feed_body(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if isinstance(data.get("error"), dict):
            self._turn.error = _error_text(data)
            return
        self._take_ids(data)
        if isinstance(data.get("usage"), dict):
            self._usage = data["usage"]
        choices = data.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or not isinstance(message := choice.get("message"), dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            if choice.get("finish_reason"):
                self._turn.stop_reason = choice["finish_reason"]
            for key in _REASONING_KEYS:
                if isinstance(text := message.get(key), str) and text:
                    self._reasoning.setdefault(index, []).append(text)
            tool_calls = message.get("tool_calls")
            for slot, call in enumerate(tool_calls if isinstance(tool_calls, list) else []):
                if isinstance(call, dict) and isinstance(function := call.get("function"), dict):
                    arguments = function.get("arguments")
                    self._calls[(index, slot)] = _Call(
                        str(call.get("id", "")),
                        str(function.get("name", "")),
                        [arguments if isinstance(arguments, str) else dumps(arguments)],
                    )

    def turn(self) -> Turn:
        turn = self._turn
        turn.usage = to_usage(self._usage) if self._usage is not None else None
        turn.tool_calls = [
            ToolCall(c.id, c.name, "".join(c.arguments)) for _, c in sorted(self._calls.items()) if c.name or c.id
        ]
        turn.thoughts = [Thought("".join(parts), "reasoning") for _, parts in sorted(self._reasoning.items())]
        return turn


def _error_text(data: JSON) -> str:
    error = data["error"]
    kind = error.get("type") or error.get("code") or "error"
    return f"{kind}: {error.get('message', '')}".strip()


class OpenAIChat:
    provider_type = "openai"

    def parse_request(self, body: JSON) -> RequestInfo:
        model = body.get("model")
        return RequestInfo(
            model=model if isinstance(model, str) else None,
            stream=body.get("stream") is True,
            prompt=extract_prompt(body),
            correlating_tool_call_id=correlating_tool_call_id(body),
        )

    def prepare_request(self, raw: bytes, body: JSON) -> tuple[bytes, ChatParser]:
        """Streams report usage only when asked; ask, and hide the extra chunk from clients that did not."""
        options = body.get("stream_options")
        if body.get("stream") is not True or (isinstance(options, dict) and options.get("include_usage") is True):
            return raw, ChatParser()
        merged: dict[str, Any] = dict(options) if isinstance(options, dict) else {}
        merged["include_usage"] = True
        try:
            return set_member(raw, "stream_options", dumps(merged)), ChatParser(hide_usage_chunk=True)
        except ValueError:
            return raw, ChatParser()

    def error_body(self, status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()

    def error_event(self, message: str) -> bytes:
        payload = dumps({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
        return f"data: {payload}\n\n".encode()
