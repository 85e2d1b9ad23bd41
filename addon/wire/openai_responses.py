"""OpenAI `POST /v1/responses`, read for the audit only: the bridge passes these exchanges through unchanged.

Request facts (model, prompt, the tool call a request answers) and a response, streamed or whole, read into a
`Turn`: usage, client tool calls (function, custom and built-in `*_call` items; other item types are
ignored), reasoning summaries and commentary messages. A streamed turn is taken from the final response
object (`response.completed` / `.incomplete` / `.failed`); until then, from the output items seen so far, so a
stream that breaks off still records what it got.
"""

import re
from typing import Any

from addon.wire.base import (
    JSON,
    RequestInfo,
    Thought,
    ToolCall,
    ToolResult,
    Turn,
    Usage,
    dumps,
    first_positive,
    human_text,
    int_or_zero,
    json_object,
    result_parts,
)
from addon.wire.openai_chat import OpenAIChat
from addon.wire.sse import SSEEvent

_CHAT = OpenAIChat()
_SKIPPED_ROLES = ("system", "developer")
_TOOL_OUTPUTS = ("function_call_output", "custom_tool_call_output")
_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
_ITEM_KEYS = ("id", "type", "status", "call_id")
"""Left out of a built-in call's recorded input: what identifies the call, not what it was asked to do."""


def _message_text(content: Any, part_types: tuple[str, ...]) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        p["text"]
        for p in content
        if isinstance(p, dict) and p.get("type") in part_types and isinstance(p.get("text"), str)
    ]


def _last_turn(body: JSON) -> tuple[str | None, str | None]:
    """(prompt, correlating tool call id) of the request's last user turn or tool output."""
    items = body.get("input")
    if isinstance(items, str):
        return human_text([items]), None
    if not isinstance(items, list):
        return None, None
    for item in reversed(items):
        if not isinstance(item, dict) or item.get("role") in _SKIPPED_ROLES:
            continue
        if item.get("type") in _TOOL_OUTPUTS:
            call_id = item.get("call_id")
            return None, call_id if isinstance(call_id, str) else None
        if item.get("role") == "user" and item.get("type", "message") == "message":
            return human_text(_message_text(item.get("content"), ("input_text", "text"))), None
        # assistant messages, reasoning, calls, configuration items (Codex): not the turn's start
    return None, None


def tool_results(body: JSON) -> tuple[ToolResult, ...]:
    """The tool outputs of the request's last step: walking back from the end, the outputs up to the calls they
    answer; an output before those calls, a message or a reasoning item belongs to an earlier step (without
    `previous_response_id`, Codex sends the whole history every time). Codex's `agent_message` items (what a
    sub-agent says) and the user messages it appends after the outputs (a sub-agent's notification) are stepped
    over."""
    items = body.get("input")
    results: list[ToolResult] = []
    past_calls = False
    for item in reversed(items) if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("role") in _SKIPPED_ROLES:
            continue
        kind = item.get("type", "message")
        if kind == "agent_message" or (kind == "message" and item.get("role") == "user" and not results):
            continue  # what a sub-agent said; a notice the client appends after the outputs
        if not isinstance(kind, str) or kind == "message" or kind == "reasoning":
            break
        if kind in _TOOL_OUTPUTS:
            if past_calls:
                break
            if isinstance(call_id := item.get("call_id"), str):
                size, text = result_parts(item.get("output"))
                results.append(ToolResult(call_id, exit_failed(text), size, text))
        elif kind.endswith("_call"):
            past_calls = True
    return tuple(reversed(results))


_EXIT_HEADER = re.compile(r"^Process exited with code (-?\d+)$", re.M)
_EXIT_FIELD = re.compile(r'"exit_code":\s*(-?\d+)')


def exit_failed(text: str) -> bool | None:
    """Whether the commands a Codex tool output reports failed, from its own framing only, never the command's
    output: `Process exited with code N` in the header of an exec output (before `Output:`), or the top-level
    `exit_code` of each command result of a code-mode script (one JSON object per line). None where it states
    none."""
    header = text.split("\nOutput:", 1)[0][:4096]
    if (match := _EXIT_HEADER.search(header)) is not None:
        return match.group(1) != "0"
    if not text.startswith("Script "):  # Codex's code mode: "Script completed" / "Script failed", then results
        return None
    codes = []
    for line in text.splitlines():
        if line.startswith("{") and _EXIT_FIELD.search(line[:65536]):
            value = json_object(line)
            if value is not None and isinstance(code := value.get("exit_code"), int):
                codes.append(code)
    return any(code != 0 for code in codes) if codes else None


def to_usage(raw: JSON) -> Usage:
    """`input_tokens` includes cached tokens; the audit's `input` does not."""
    total = int_or_zero(raw.get("input_tokens"))
    input_details = raw.get("input_tokens_details") if isinstance(raw.get("input_tokens_details"), dict) else {}
    output_details = raw.get("output_tokens_details") if isinstance(raw.get("output_tokens_details"), dict) else {}
    cached = int_or_zero(input_details.get("cached_tokens"))
    usage = Usage(input=max(total - cached, 0), output=int_or_zero(raw.get("output_tokens")), cache_read=cached)
    if reasoning := int_or_zero(output_details.get("reasoning_tokens")):
        usage.extra["reasoning"] = reasoning
    return usage


def tool_call(item: JSON) -> ToolCall | None:
    """A client-visible tool call output item: function, custom, or a built-in tool's `*_call`."""
    kind = item.get("type")
    if not isinstance(kind, str) or not kind.endswith("_call"):
        return None
    call_id = item.get("call_id") if isinstance(item.get("call_id"), str) else item.get("id")
    call_id = call_id if isinstance(call_id, str) else ""
    if kind == "function_call":
        arguments = item.get("arguments")
        return ToolCall(call_id, str(item.get("name") or ""), arguments if isinstance(arguments, str) else "")
    if kind == "custom_tool_call":
        text = item.get("input")
        return ToolCall(call_id, str(item.get("name") or ""), text if isinstance(text, str) else "")
    # Built-in tools (web_search_call, code_interpreter_call, mcp_call, local_shell_call, ...): named by the
    # item's own name when it has one (mcp_call), else by the tool type.
    name = item.get("name") if isinstance(item.get("name"), str) else kind.removesuffix("_call")
    return ToolCall(call_id, name, dumps({k: v for k, v in item.items() if k not in _ITEM_KEYS}))


def thoughts(item: JSON) -> list[Thought]:
    """Reasoning summaries, and assistant messages in the `commentary` phase."""
    if item.get("type") == "reasoning":
        return [Thought(t, "reasoning") for t in _message_text(item.get("summary"), ("summary_text",)) if t]
    if item.get("type") == "message" and item.get("role") == "assistant" and item.get("phase") == "commentary":
        return [Thought(t, "commentary") for t in _message_text(item.get("content"), ("output_text",)) if t]
    return []


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    kind = error.get("type") or error.get("code") or "error"
    return f"{kind}: {error.get('message', '')}".strip()


class ResponsesParser:
    """One Responses API response; feeds never change what is relayed."""

    def __init__(self) -> None:
        self._turn = Turn()
        self.finished = False
        """The stream's final event arrived (`response.completed` / `.incomplete` / `.failed`, or `error`)."""
        self._final: JSON | None = None
        self._items: dict[int, JSON] = {}
        """Output items by index as the stream goes: added, grown by argument deltas, replaced when done."""

    def feed_event(self, event: SSEEvent) -> bytes | None:
        if event.data and (data := json_object(event.data)) is not None:
            self._on_event(data.get("type") or event.event, data)
        return event.raw

    def _on_event(self, kind: str, data: JSON) -> None:
        response = data.get("response")
        if isinstance(response, dict):
            self._take_ids(response)
        index = data.get("output_index")
        if kind in ("response.output_item.added", "response.output_item.done") and isinstance(index, int):
            if isinstance(item := data.get("item"), dict):
                self._items[index] = dict(item)
        elif kind.endswith("_call_arguments.delta") or kind == "response.custom_tool_call_input.delta":
            item = self._items.get(index) if isinstance(index, int) else None
            if item is not None and isinstance(delta := data.get("delta"), str):
                key = "input" if item.get("type") == "custom_tool_call" else "arguments"
                item[key] = f"{item.get(key) or ''}{delta}"
        elif kind in _FINAL_EVENTS and isinstance(response, dict):
            self._final, self.finished = response, True
            if kind == "response.failed":
                self._turn.error = _error_text(response.get("error") or "the response failed")
        elif kind == "error":
            nested = data.get("error")  # `{"type": "error", "code", "message"}`, or an `error` object inside
            self._turn.error = _error_text(nested if isinstance(nested, dict) else {**data, "type": None})
            self.finished = True

    def _take_ids(self, response: JSON) -> None:
        if isinstance(response.get("id"), str) and not self._turn.response_id:
            self._turn.response_id = response["id"]
        if isinstance(response.get("model"), str):
            self._turn.model = response["model"]

    def feed_body(self, body: bytes) -> None:
        if (data := json_object(body)) is None:
            return
        if data.get("error"):
            self._turn.error = _error_text(data["error"])
        if data.get("object") == "response" or "output" in data:
            self._take_ids(data)
            self._final = data

    def turn(self) -> Turn:
        turn = self._turn
        output = self._final.get("output") if self._final is not None else None
        items = output if isinstance(output, list) and output else [self._items[i] for i in sorted(self._items)]
        turn.tool_calls, turn.thoughts = [], []
        for item in items:
            if not isinstance(item, dict):
                continue
            if (call := tool_call(item)) is not None:
                turn.tool_calls.append(call)
            turn.thoughts.extend(thoughts(item))
        usage = self._final.get("usage") if self._final is not None else None
        turn.usage = to_usage(usage) if isinstance(usage, dict) else None
        if self._final is not None and isinstance(status := self._final.get("status"), str):
            turn.stop_reason = status
        return turn


class OpenAIResponses:
    """What the audit reads of the Responses API. Errors the bridge itself answers (budgets, access) have the
    OpenAI shape the chat API uses."""

    provider_type = "openai"

    def parse_request(self, body: JSON) -> RequestInfo:
        model = body.get("model")
        prompt, correlating = _last_turn(body)
        return RequestInfo(
            model=model if isinstance(model, str) else None,
            stream=body.get("stream") is True,
            prompt=prompt,
            correlating_tool_call_id=correlating,
            max_output=first_positive(body, "max_output_tokens"),
            tool_results=tool_results(body),
        )

    def parser(self) -> ResponsesParser:
        return ResponsesParser()

    def ends_stream(self, event: SSEEvent) -> bool:
        data = json_object(event.data) if event.data else None
        kind = (data.get("type") if data else None) or event.event
        return kind in _FINAL_EVENTS or kind == "error"

    def error_body(self, status: int, message: str) -> bytes:
        return _CHAT.error_body(status, message)
