"""Google's Gemini API, `generateContent` and `streamGenerateContent` (the Gemini API, Gemini on Vertex AI, and
Gemini CLI's Code Assist envelope). Pure.

A request is `contents[]` of `{role, parts[]}` turns (`text`, `thought` parts, `functionCall`,
`functionResponse`, inline data; `thoughtSignature` values ride on parts and must go back unchanged),
`tools[].functionDeclarations`, `generationConfig`; the model is in the path. A response, whole or each chunk of
a stream (SSE with `?alt=sse`, else one JSON array), is `{candidates[{content, finishReason}], usageMetadata,
modelVersion, responseId}`. A function call arrives whole in one chunk, and a turn may hold several; there is
no finish reason of its own for them (`STOP`). Errors are Google's `{"error": {code, message, status}}`.
"""

import json
import re
from collections.abc import Sequence
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
    ToolSpec,
    Turn,
    Usage,
    decide,
    dumps,
    first_positive,
    human_text,
    int_or_zero,
    json_object,
    result_text,
    sum_usage,
)
from addon.wire.json_splice import extend_array
from addon.wire.sse import SSEEvent

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# JSON Schema as MCP gives it: `parametersJsonSchema` takes it whole (`parameters` takes only OpenAPI's subset).
_TOOL_DEFINITIONS = ToolDefinitions(
    lambda t: {"name": t.name, "description": t.description, "parametersJsonSchema": t.input_schema}
)
_FINAL = re.compile(r'"(?:finishReason|error|blockReason)"\s*:')
_NOTEWORTHY = re.compile(r'"(?:functionCall|thought|error|finishReason|blockReason)"\s*:')
"""What a chunk may hold beyond text and usage: a chunk none of this matches changes nothing but the usage."""


def to_usage(raw: JSON) -> Usage:
    """`promptTokenCount` includes the cached tokens, which the audit keeps apart; thinking is billed as
    output; tool-use prompts (search grounding, code execution) as input."""
    prompt = int_or_zero(raw.get("promptTokenCount"))
    cached = int_or_zero(raw.get("cachedContentTokenCount"))
    thoughts = int_or_zero(raw.get("thoughtsTokenCount"))
    tool_prompt = int_or_zero(raw.get("toolUsePromptTokenCount"))
    usage = Usage(
        input=max(prompt - cached, 0) + tool_prompt,
        output=int_or_zero(raw.get("candidatesTokenCount")) + thoughts,
        cache_read=cached,
    )
    if thoughts:
        usage.extra["reasoning"] = thoughts
    if tool_prompt:
        usage.extra["tool_use_prompt"] = tool_prompt
    return usage


def _summed_usage(raw: JSON, total: Usage) -> JSON:
    """`raw` usage metadata with the counts of `total` (several rounds), in Gemini's own terms."""
    thoughts = int_or_zero(total.extra.get("reasoning"))
    tool_prompt = int_or_zero(total.extra.get("tool_use_prompt"))
    prompt = total.input - tool_prompt + total.cache_read
    summed = {**raw, "promptTokenCount": prompt, "candidatesTokenCount": total.output - thoughts}
    summed["totalTokenCount"] = total.input + total.cache_read + total.output
    for key, value in (
        ("cachedContentTokenCount", total.cache_read),
        ("thoughtsTokenCount", thoughts),
        ("toolUsePromptTokenCount", tool_prompt),
    ):
        if value or key in raw:
            summed[key] = value
    return summed


_NO_CALL = ToolCall("", "", "")


def _parts(content: Any) -> list[JSON]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _call(part: JSON) -> ToolCall | None:
    call = part.get("functionCall")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    args = call.get("args")
    return ToolCall(str(call.get("id") or ""), call["name"], dumps(args if isinstance(args, dict) else {}))


def _candidate(chunk: JSON) -> JSON | None:
    candidates = chunk.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    return first if isinstance(first, dict) else None


def request_body(body: JSON) -> JSON:
    """The Gemini request in a body: itself, or the `request` of Code Assist's envelope (Gemini CLI logged in
    with Google: `{model, project, user_prompt_id, request}`)."""
    inner = body.get("request")
    return inner if isinstance(inner, dict) and "contents" in inner else body


def response_chunk(chunk: JSON) -> JSON:
    """A response or chunk: itself, or the `response` of Code Assist's envelope (`{response, traceId}`)."""
    inner = chunk.get("response")
    return inner if isinstance(inner, dict) else chunk


def _last_turn(body: JSON) -> tuple[str | None, str | None]:
    """(prompt, correlating tool call id) of the last user turn."""
    contents = body.get("contents")
    for content in reversed(contents if isinstance(contents, list) else []):
        if not isinstance(content, dict) or content.get("role", "user") != "user":
            continue
        parts = _parts(content)
        for part in parts:
            if isinstance(response := part.get("functionResponse"), dict):
                call_id = response.get("id")
                return None, call_id if isinstance(call_id, str) and call_id else None
        texts = [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]
        return human_text(texts), None
    return None, None


def _error_text(data: JSON) -> str:
    error = data["error"]
    kind = error.get("status") or error.get("code") or "error"
    return f"{kind}: {error.get('message', '')}".strip()


class GeminiParser:
    """One Gemini response, streamed (each event one chunk) or whole (an object, or a JSON array of chunks:
    `streamGenerateContent` without `alt=sse`); feeds never change what is relayed."""

    def __init__(self) -> None:
        self._turn = Turn()
        self._calls: list[ToolCall] = []
        self._thoughts: list[str] = []
        self._usage: JSON | None = None

    def feed_event(self, event: SSEEvent) -> bytes | None:
        # Once the ids are known, a plain text chunk adds nothing the last chunk will not say (its usage is
        # cumulative): relayed without a JSON decode.
        if self._turn.model and not _NOTEWORTHY.search(event.data):
            return event.raw
        if (chunk := json_object(event.data)) is not None:
            self._take(response_chunk(chunk))
        return event.raw

    def feed_body(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        for chunk in data if isinstance(data, list) else [data]:
            if isinstance(chunk, dict):
                self._take(response_chunk(chunk))

    def _take(self, chunk: JSON) -> JSON | None:
        """Read one chunk into the turn; its first candidate, if it has one."""
        turn = self._turn
        if isinstance(chunk.get("error"), dict):
            turn.error = _error_text(chunk)
            return None
        if isinstance(chunk.get("responseId"), str) and not turn.response_id:
            turn.response_id = chunk["responseId"]
        if isinstance(chunk.get("modelVersion"), str) and not turn.model:
            turn.model = chunk["modelVersion"]
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = chunk["usageMetadata"]  # cumulative: the last one counts
        candidate = _candidate(chunk)
        if candidate is None:
            return None
        if isinstance(candidate.get("finishReason"), str):
            turn.stop_reason = candidate["finishReason"]
        for part in _parts(candidate.get("content")):
            if (call := _call(part)) is not None:
                self._calls.append(call)
            elif part.get("thought") is True and isinstance(part.get("text"), str):
                self._thoughts.append(part["text"])
        return candidate

    def turn(self) -> Turn:
        turn = self._turn
        turn.usage = to_usage(self._usage) if self._usage is not None else None
        turn.tool_calls = list(self._calls)
        thought = "".join(self._thoughts)
        turn.thoughts = [Thought(thought, "thinking")] if thought else []
        return turn


def _data(chunk: JSON) -> bytes:
    return f"data: {dumps(chunk)}\r\n\r\n".encode()


class GeminiLoopParser(GeminiParser):
    """One round of a response whose injected tools the bridge runs. The client sees one stream: injected
    `functionCall` parts hidden, no finish reason or usage until the last round's, usage summed over rounds,
    every chunk under the first round's `responseId`."""

    def __init__(self, state: LoopState) -> None:
        super().__init__()
        self._state = state
        self._next: Next | None = None
        self._parts: list[JSON] = []
        """Every part the model produced this round, as it produced it: the next request's model turn."""

    def feed_event(self, event: SSEEvent) -> bytes | None:
        chunk = json_object(event.data)
        if chunk is None or "response" in chunk:  # not a chunk, or Code Assist's (never bridged)
            return super().feed_event(event)
        state = self._state
        candidate = self._take(chunk)
        if state.first_id is None:
            state.first_id = self._turn.response_id
        if "error" in chunk:
            return event.raw
        parts = _parts(candidate.get("content")) if candidate is not None else []
        self._parts.extend(parts)
        kept = [p for p in parts if (_call(p) or _NO_CALL).name not in state.injected]
        finish = candidate.get("finishReason") if candidate is not None else None
        if isinstance(finish, str):
            stopped_for_tools = finish == "STOP" and bool(self._calls)
            self._next = decide(self._calls, state.injected, stopped_for_tools, state.last_round)
        continuing = self._next is Next.CONTINUE
        if state.round == 1 and not continuing and not _NOTEWORTHY.search(event.data):
            return event.raw  # a text delta of the first round: as it came
        new_chunk = dict(chunk)
        if candidate is not None:
            new_candidate = dict(candidate)
            if self._next is Next.LIMIT:
                kept = [*kept, {"text": LIMIT_NOTICE.format(rounds=state.round)}]
            if kept != parts:
                content = candidate.get("content")
                new_candidate["content"] = {**(content if isinstance(content, dict) else {}), "parts": kept}
            if continuing:
                new_candidate.pop("finishReason", None)
                new_candidate.pop("finishMessage", None)
            new_chunk["candidates"] = [new_candidate, *chunk["candidates"][1:]]
            if not kept and (parts or continuing) and "finishReason" not in new_candidate:
                return None  # only hidden calls, or a continuing round's last chunk: nothing to show
        usage = chunk.get("usageMetadata")
        if continuing:
            new_chunk.pop("usageMetadata", None)
        elif isinstance(usage, dict) and state.round > 1:
            new_chunk["usageMetadata"] = _summed_usage(usage, sum_usage(state.usage, to_usage(usage)))
        if state.first_id is not None and "responseId" in chunk:
            new_chunk["responseId"] = state.first_id
        return event.raw if new_chunk == chunk else _data(new_chunk)

    def feed_body(self, body: bytes) -> None:
        super().feed_body(body)
        data = json_object(body)
        candidate = _candidate(data) if data is not None else None
        self._parts = _parts(candidate.get("content")) if candidate else []
        stopped_for_tools = self._turn.stop_reason == "STOP" and bool(self._calls)
        self._next = decide(self._calls, self._state.injected, stopped_for_tools, self._state.last_round)

    def turn(self) -> Turn:
        turn = super().turn()
        turn.next = self._next or Next.FINAL
        turn.assistant = {"role": "model", "parts": self._parts}
        return turn


def _takes_tools(request: JSON, config: JSON) -> bool:
    """Whether function declarations may be added without the API refusing the request it accepted before:
    not beside built-in tools (`googleSearch`, `codeExecution`, ...), not into structured output (Gemini CLI's
    model-routing call), not where several candidates would each need a loop."""
    tools = request.get("tools")
    builtin = isinstance(tools, list) and any(isinstance(t, dict) and set(t) - {"functionDeclarations"} for t in tools)
    structured = config.get("responseMimeType", "text/plain") != "text/plain" or bool(
        {"responseSchema", "responseJsonSchema"} & set(config)
    )
    return not builtin and not structured and config.get("candidateCount") in (None, 1)


class Gemini:
    provider_type = "gemini"

    def parse_request(self, body: JSON) -> RequestInfo:
        request = request_body(body)
        model = body.get("model")
        prompt, correlating = _last_turn(request)
        config = request.get("generationConfig")
        config = config if isinstance(config, dict) else {}
        return RequestInfo(
            model=model if isinstance(model, str) else None,
            stream=body.get("stream") is True,
            prompt=prompt,
            correlating_tool_call_id=correlating,
            max_output=first_positive(config, "maxOutputTokens"),
            takes_tools=request is body and _takes_tools(request, config),
        )

    def ends_stream(self, event: SSEEvent) -> bool:
        """The chunk with the finish reason, an error, or a blocked prompt's feedback (most chunks are decided
        by the regex alone; a match is confirmed on the parsed chunk, as a function's args may hold the word)."""
        if _FINAL.search(event.data) is None or (chunk := json_object(event.data)) is None:
            return False
        chunk = response_chunk(chunk)
        feedback = chunk.get("promptFeedback")
        candidate = _candidate(chunk) or {}
        return (
            "error" in chunk
            or isinstance(candidate.get("finishReason"), str)
            or (isinstance(feedback, dict) and "blockReason" in feedback)
        )

    def prepare_request(self, raw: bytes, body: JSON) -> tuple[bytes, bool]:
        return raw, False  # every chunk carries its usage

    def parser(self, *, hide_usage_chunk: bool = False) -> GeminiParser:
        return GeminiParser()

    def loop_parser(self, state: LoopState) -> GeminiLoopParser:
        return GeminiLoopParser(state)

    def inject_tools(self, raw: bytes, tools: Sequence[ToolSpec]) -> bytes:
        """One more `tools` entry holding the injected declarations, after the client's own."""
        declarations = ",".join(_TOOL_DEFINITIONS(tools))
        return extend_array(raw, "tools", [f'{{"functionDeclarations":[{declarations}]}}'])

    def next_request(self, raw: bytes, turn: Turn, results: Sequence[tuple[ToolCall, ToolOutput]]) -> bytes:
        assert turn.assistant is not None
        responses = []
        for call, output in results:
            text = result_text(output)
            response: JSON = {"name": call.name, "response": {"error" if output.is_error else "output": text}}
            if call.id:
                response["id"] = call.id
            responses.append({"functionResponse": response})
        return extend_array(raw, "contents", [dumps(turn.assistant), dumps({"role": "user", "parts": responses})])

    def merge_rounds(self, bodies: Sequence[JSON], state: LoopState, limited: bool) -> bytes:
        """The blocking answer: the last round's response with every round's visible parts and summed usage."""
        final = dict(bodies[-1])
        parts = [
            part
            for body in bodies
            for part in _parts((_candidate(body) or {}).get("content"))
            if (_call(part) or _NO_CALL).name not in state.injected
        ]
        candidate = dict(_candidate(final) or {"index": 0})
        if limited:
            parts.append({"text": LIMIT_NOTICE.format(rounds=state.round)})
            candidate["finishReason"] = "STOP"
        content = candidate.get("content")
        candidate["content"] = {**(content if isinstance(content, dict) else {"role": "model"}), "parts": parts}
        final["candidates"] = [candidate]
        if "responseId" in bodies[0]:
            final["responseId"] = bodies[0]["responseId"]
        usage = final.get("usageMetadata")
        final["usageMetadata"] = _summed_usage(usage if isinstance(usage, dict) else {}, state.usage)
        return dumps(final).encode()

    def ping_event(self) -> bytes:
        return b"\r\n"  # a blank line between events: SSE ignores it, so do Google's SDKs (no comment lines)

    def error_body(self, status: int, message: str) -> bytes:
        code = _STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        return dumps({"error": {"code": status, "message": message, "status": code}}).encode()

    def error_event(self, message: str) -> bytes:
        return _data({"error": {"code": 500, "message": message, "status": "INTERNAL"}})
