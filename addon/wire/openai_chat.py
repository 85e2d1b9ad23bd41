"""OpenAI `POST /v1/chat/completions`: request facts, streamed and whole responses, error shapes."""

import json
import re
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
    result_text,
    sum_usage,
)
from addon.wire.json_splice import extend_array, set_member
from addon.wire.sse import SSEEvent

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_TOOL_DEFINITIONS = ToolDefinitions(
    lambda t: {
        "type": "function",
        "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
    }
)
_SKIPPED_ROLES = ("system", "developer")
_REASONING_KEYS = ("reasoning_content", "reasoning")  # vLLM, DeepSeek, OpenRouter and others
_NOTEWORTHY = re.compile(r'"(?:tool_calls|error|reasoning|(?:usage|finish_reason)"\s*:\s*[^n\s])')
"""Anything in a chunk the audit keeps, beyond its ids: most chunks are plain text deltas, and a chunk none of
this matches is relayed without a JSON decode. A false match (the text itself says `"error"`) only costs one."""


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


def tool_results(body: JSON) -> tuple[ToolResult, ...]:
    """The `tool` messages after the last assistant message: the results this request brings back (a client may
    add a user message after them, with an image or its environment)."""
    messages = body.get("messages")
    results = []
    for message in reversed(messages) if isinstance(messages, list) else []:
        if not isinstance(message, dict) or message.get("role") != "tool":
            if isinstance(message, dict) and message.get("role") == "assistant":
                break
            continue
        if isinstance(call_id := message.get("tool_call_id"), str):
            size, text = result_parts(message.get("content"))
            results.append(ToolResult(call_id, None, size, text))
    return tuple(reversed(results))


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
        if self._turn.model and not _NOTEWORTHY.search(event.data):
            return event.raw  # a text delta once the ids are known
        chunk = self._read(event)
        if (
            self._hide_usage_chunk
            and chunk is not None
            and not chunk.get("choices")
            and isinstance(chunk.get("usage"), dict)
        ):
            return None
        return event.raw

    def _read(self, event: SSEEvent) -> JSON | None:
        """Take a chunk into the turn; the chunk when it is one (not `[DONE]`, not an error, not garbage)."""
        if event.data == "[DONE]" or not event.data:
            return None
        try:
            chunk = json.loads(event.data)
        except ValueError:
            return None
        if not isinstance(chunk, dict):
            return None
        if "error" in chunk and isinstance(chunk["error"], dict):
            self._turn.error = _error_text(chunk)
            return None
        self._take_ids(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]  # some providers repeat cumulative usage: the last one counts
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict):
                self._on_choice_delta(choice)
        return chunk

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
        if (data := json_object(body)) is None:
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

    def _tool_calls(self) -> list[ToolCall]:
        return [ToolCall(c.id, c.name, "".join(c.arguments)) for _, c in sorted(self._calls.items()) if c.name or c.id]

    def turn(self) -> Turn:
        turn = self._turn
        turn.usage = to_usage(self._usage) if self._usage is not None else None
        turn.tool_calls = self._tool_calls()
        turn.thoughts = [Thought("".join(parts), "reasoning") for _, parts in sorted(self._reasoning.items())]
        return turn


def _summed_usage(raw: JSON, total: Usage) -> JSON:
    prompt = total.input + total.cache_read
    summed = {**raw, "prompt_tokens": prompt, "completion_tokens": total.output, "total_tokens": prompt + total.output}
    summed["prompt_tokens_details"] = {**(raw.get("prompt_tokens_details") or {}), "cached_tokens": total.cache_read}
    if "reasoning" in total.extra:
        summed["completion_tokens_details"] = {
            **(raw.get("completion_tokens_details") or {}),
            "reasoning_tokens": total.extra["reasoning"],
        }
    return summed


def _data(chunk: JSON) -> bytes:
    return f"data: {dumps(chunk)}\n\n".encode()


class ChatLoopParser(ChatParser):
    """One round of a chat completion whose injected tools the bridge runs. The client sees one completion:
    injected `tool_calls` deltas and intermediate `finish_reason: tool_calls` hidden, its own calls numbered
    from 0, one `[DONE]`, and a final usage chunk summed over rounds (if it asked for usage)."""

    def __init__(self, state: LoopState) -> None:
        super().__init__(hide_usage_chunk=not state.client_wants_usage)
        self._state = state
        self._next: Next | None = None
        self._slots: dict[tuple[int, int], int | None] = {}
        """Upstream (choice, tool-call index) → the index the client sees; None for an injected call."""
        self._text: list[str] = []

    def feed_event(self, event: SSEEvent) -> bytes | None:
        state = self._state
        if event.data == "[DONE]":
            return None if self._next is Next.CONTINUE else event.raw
        chunk = self._read(event)
        if chunk is None:
            return event.raw
        if state.first_id is None:
            state.first_id = self._turn.response_id
        choices = chunk.get("choices")
        if isinstance(choices, list) and not choices:
            return self._usage_chunk(event, chunk)
        changed = state.round > 1 and chunk.get("id") != state.first_id
        kept = []
        for choice in choices if isinstance(choices, list) else []:
            new = self._visible(choice) if isinstance(choice, dict) else choice
            changed = changed or new is not choice
            if new is not None:
                kept.append(new)
        usage = chunk.get("usage")
        if isinstance(usage, dict):  # some providers put usage on a chunk with choices
            if self._next is Next.CONTINUE:
                usage, changed = None, True
            elif state.round > 1:
                usage, changed = _summed_usage(usage, sum_usage(state.usage, to_usage(usage))), True
        if not changed:
            return event.raw
        if not kept:
            return None  # every choice was hidden: so is the chunk, usage included
        new_chunk = {**chunk, "id": state.first_id or chunk.get("id"), "choices": kept}
        if "usage" in chunk:
            new_chunk["usage"] = usage
        return _data(new_chunk)

    def _visible(self, choice: JSON) -> JSON | None:
        """The choice as the client sees it (the same object when unchanged); None to drop it."""
        state, index = self._state, choice.get("index", 0)
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        if isinstance(delta.get("content"), str):
            self._text.append(delta["content"])
        new_delta = delta
        parts = delta.get("tool_calls")
        if isinstance(parts, list) and parts:
            kept = []
            for position, part in enumerate(parts):
                if not isinstance(part, dict):
                    continue
                slot = (index, part.get("index", position))
                if slot not in self._slots:
                    name = (part.get("function") or {}).get("name")
                    self._slots[slot] = None if name in state.injected else state.next_index
                    if self._slots[slot] is not None:
                        state.next_index += 1
                client = self._slots[slot]
                if client is not None:
                    kept.append(part if part.get("index") == client else {**part, "index": client})
            if kept != parts:
                new_delta = {k: v for k, v in delta.items() if k != "tool_calls"} | (
                    {"tool_calls": kept} if kept else {}
                )
        finish = choice.get("finish_reason")
        if finish:
            self._next = decide(self._tool_calls(), state.injected, finish == "tool_calls", state.last_round)
            if self._next is Next.CONTINUE:
                finish = None
            elif self._next is Next.LIMIT:
                new_delta = {**new_delta, "content": LIMIT_NOTICE.format(rounds=state.round)}
                new_delta.pop("tool_calls", None)
                finish = "stop"
        if new_delta is delta and finish == choice.get("finish_reason"):
            return choice
        if not finish and all(v is None for k, v in new_delta.items() if k != "role"):
            return None  # nothing left to show: only hidden calls, or empty
        return {**choice, "delta": new_delta, "finish_reason": finish}

    def _usage_chunk(self, event: SSEEvent, chunk: JSON) -> bytes | None:
        state = self._state
        if self._next is Next.CONTINUE or not state.client_wants_usage:
            return None
        if state.round == 1 or not isinstance(chunk.get("usage"), dict):
            return event.raw
        total = sum_usage(state.usage, to_usage(chunk["usage"]))
        return _data({**chunk, "id": state.first_id, "usage": _summed_usage(chunk["usage"], total)})

    def feed_body(self, body: bytes) -> None:
        super().feed_body(body)
        try:
            message = json.loads(body)["choices"][0]["message"]
        except (ValueError, LookupError, TypeError):
            message = {}
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            self._text.append(message["content"])
        stopped_for_tools = self._turn.stop_reason == "tool_calls"
        self._next = decide(self._tool_calls(), self._state.injected, stopped_for_tools, self._state.last_round)

    def turn(self) -> Turn:
        turn = super().turn()
        turn.next = self._next or Next.FINAL
        calls = [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.arguments if parse_arguments(c.arguments) is not None else "{}",
                },
            }
            for c in turn.tool_calls
        ]
        turn.assistant = {"role": "assistant", "content": "".join(self._text) or None, "tool_calls": calls}
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
            tool_results=tool_results(body),
            max_output=first_positive(body, "max_tokens", "max_completion_tokens"),
            takes_tools=body.get("n") in (None, 1),  # one loop cannot serve several choices
        )

    def ends_stream(self, event: SSEEvent) -> bool:
        data = event.data.lstrip()
        return data == "[DONE]" or data.startswith('{"error"') or event.event == "error"

    def prepare_request(self, raw: bytes, body: JSON) -> tuple[bytes, bool]:
        """Streams report usage only when asked: ask. The flag says the client did not ask, so the usage
        chunk must not reach it."""
        options = body.get("stream_options")
        if body.get("stream") is not True or (isinstance(options, dict) and options.get("include_usage") is True):
            return raw, False
        merged: dict[str, Any] = dict(options) if isinstance(options, dict) else {}
        merged["include_usage"] = True
        try:
            return set_member(raw, "stream_options", dumps(merged)), True
        except ValueError:
            return raw, False

    def parser(self, *, hide_usage_chunk: bool = False) -> ChatParser:
        return ChatParser(hide_usage_chunk=hide_usage_chunk)

    def loop_parser(self, state: LoopState) -> ChatLoopParser:
        return ChatLoopParser(state)

    def inject_tools(self, raw: bytes, tools: Sequence[ToolSpec]) -> bytes:
        return extend_array(raw, "tools", _TOOL_DEFINITIONS(tools))

    def next_request(self, raw: bytes, turn: Turn, results: Sequence[tuple[ToolCall, ToolOutput]]) -> bytes:
        assert turn.assistant is not None
        messages = [dumps(turn.assistant)]
        for call, output in results:
            text = result_text(output)
            messages.append(
                dumps(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": f"Tool error: {text}" if output.is_error else text,
                    }
                )
            )
        return extend_array(raw, "messages", messages)

    def merge_rounds(self, bodies: Sequence[JSON], state: LoopState, limited: bool) -> bytes:
        """The blocking answer: the last round's completion with every round's text, the client's own tool
        calls, and summed usage."""
        final = dict(bodies[-1])
        text = "".join(
            choice["message"]["content"]
            for body in bodies
            for choice in (body.get("choices") or [])[:1]
            if isinstance(choice.get("message"), dict) and isinstance(choice["message"].get("content"), str)
        )
        choices = [dict(c) for c in final.get("choices") or [{"index": 0, "message": {"role": "assistant"}}]]
        message = dict(choices[0].get("message") or {})
        visible = [
            c for c in message.get("tool_calls") or [] if (c.get("function") or {}).get("name") not in state.injected
        ]
        if limited:
            text += LIMIT_NOTICE.format(rounds=state.round)
            choices[0]["finish_reason"] = "stop"
        message["content"] = text or None
        if visible:
            message["tool_calls"] = visible
        else:
            message.pop("tool_calls", None)
        choices[0]["message"] = message
        final["choices"] = choices
        final["id"] = bodies[0].get("id", final.get("id"))
        final["usage"] = _summed_usage(final.get("usage") or {}, state.usage)
        return dumps(final).encode()

    def ping_event(self) -> bytes:
        return b": ping\n\n"

    def error_body(self, status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()

    def error_event(self, message: str) -> bytes:
        payload = dumps({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
        return f"data: {payload}\n\n".encode()
