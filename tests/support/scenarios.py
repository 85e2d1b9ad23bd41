"""Provider answers in the real wire format, built from a few parameters."""

import base64
import json
import re
from typing import Any

from addon.wire.eventstream import encode

from .mock_upstream import Answer, sse_event


def anthropic_message(
    text: str = "Hello!",
    *,
    msg_id: str = "msg_01",
    model: str = "claude-sonnet-4-5-20250929",
    thinking: str | None = None,
    tools: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": "sig-abc"})
    if text:
        content.append({"type": "text", "text": text})
    for call_id, name, args in tools:
        content.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tools else "end_turn",
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 12, "output_tokens": 7},
    }


def anthropic_events(
    text_parts: list[str] = ("Hel", "lo!"),  # type: ignore[assignment]
    *,
    msg_id: str = "msg_01",
    model: str = "claude-sonnet-4-5-20250929",
    thinking: str | None = None,
    tools: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    start_usage: dict[str, Any] | None = None,
    delta_usage: dict[str, Any] | None = None,
) -> list[bytes]:
    events = [
        sse_event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage
                    or {
                        "input_tokens": 25,
                        "cache_read_input_tokens": 100,
                        "cache_creation_input_tokens": 10,
                        "output_tokens": 1,
                    },
                },
            },
        )
    ]
    index = 0
    if thinking:
        events += [
            sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}},
            ),
            sse_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "thinking_delta", "thinking": thinking},
                },
            ),
            sse_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": "sig-abc"},
                },
            ),
            sse_event("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
        index += 1
    if text_parts:
        events.append(
            sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            )
        )
        events.append(sse_event("ping", {"type": "ping"}))
        for part in text_parts:
            events.append(
                sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": part}},
                )
            )
        events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    for call_id, name, args in tools:
        encoded = json.dumps(args)
        half = len(encoded) // 2
        events += [
            sse_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
                },
            ),
            sse_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": encoded[:half]},
                },
            ),
            sse_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": encoded[half:]},
                },
            ),
            sse_event("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
        index += 1
    events.append(
        sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None},
                "usage": delta_usage or {"output_tokens": 42},
            },
        )
    )
    events.append(sse_event("message_stop", {"type": "message_stop"}))
    return events


def chat_completion(
    text: str | None = "Hello!",
    *,
    completion_id: str = "chatcmpl-1",
    model: str = "gpt-4.1-2025-04-14",
    tools: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tools:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}} for cid, name, args in tools
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
        "usage": usage
        or {
            "prompt_tokens": 120,
            "completion_tokens": 9,
            "total_tokens": 129,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
    }


def chat_chunks(
    text_parts: list[str] = ("Hel", "lo!"),  # type: ignore[assignment]
    *,
    completion_id: str = "chatcmpl-1",
    model: str = "gpt-4.1-2025-04-14",
    tools: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    usage: dict[str, Any] | None = None,
    include_usage: bool = True,
) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        if include_usage:
            body["usage"] = None
        return sse_event(None, body)

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": part}) for part in text_parts]
    for position, (cid, name, args) in enumerate(tools):
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {"index": position, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            )
        )
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            events.append(chunk({"tool_calls": [{"index": position, "function": {"arguments": piece}}]}))
    events.append(chunk({}, "tool_calls" if tools else "stop"))
    if include_usage:
        events.append(
            sse_event(
                None,
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [],
                    "usage": usage
                    or {
                        "prompt_tokens": 120,
                        "completion_tokens": 9,
                        "total_tokens": 129,
                        "prompt_tokens_details": {"cached_tokens": 100},
                    },
                },
            )
        )
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer.json({"type": "error", "error": {"type": kind, "message": message}}, status, headers)


def responses_events(
    text: str = "Hello from the mock.",
    *,
    response_id: str = "resp_mock_1",
    model: str = "gpt-5-2025-08-07",
    usage: dict[str, Any] | None = None,
) -> list[bytes]:
    """A Responses API stream as OpenAI sends it: every event with its `event:` line and `sequence_number`."""
    item_id = f"msg_{response_id}"
    usage = usage or {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 129,
    }
    base = {"id": response_id, "object": "response", "created_at": 1767874435, "model": model, "error": None}
    part = {"type": "output_text", "annotations": [], "text": ""}
    item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    done_item = {**item, "status": "completed", "content": [{**part, "text": text}]}
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress", "output": []}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.content_part.added",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
        *(
            {
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": word,
                "logprobs": [],
            }
            for word in re.findall(r"\S+\s*", text)
        ),
        {
            "type": "response.output_text.done",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "part": {**part, "text": text},
        },
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {
            "type": "response.completed",
            "response": {**base, "status": "completed", "output": [done_item], "usage": usage},
        },
    ]
    return [sse_event(p["type"], {**p, "sequence_number": n}) for n, p in enumerate(payloads)]


def responses_call_events(
    calls: list[tuple[str, str, dict[str, Any]]],
    *,
    response_id: str = "resp_calls",
    model: str = "gpt-5",
    namespace: str | None = None,
) -> list[bytes]:
    """A Responses API stream whose output is function calls, each (call id, name, arguments), streamed as OpenAI
    does: the item added, its arguments' deltas and done, the item done; then `response.completed`. `namespace`:
    the tools' namespace (Codex's `multi_agent_v1`, ...)."""
    base = {"id": response_id, "object": "response", "created_at": 1767874435, "model": model, "error": None}
    usage = {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 129,
    }
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress", "output": []}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress", "output": []}},
    ]
    done_items = []
    for index, (call_id, name, arguments) in enumerate(calls):
        item = {"id": f"fc_{index}", "type": "function_call", "call_id": call_id, "name": name}
        if namespace is not None:
            item["namespace"] = namespace
        text = json.dumps(arguments)
        done = {**item, "arguments": text, "status": "completed"}
        done_items.append(done)
        payloads += [
            {"type": "response.output_item.added", "output_index": index, "item": {**item, "arguments": ""}},
            {"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": index,
             "delta": text},
            {"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": index,
             "arguments": text},
            {"type": "response.output_item.done", "output_index": index, "item": done},
        ]  # fmt: skip
    completed = {**base, "status": "completed", "output": done_items, "usage": usage}
    payloads.append({"type": "response.completed", "response": completed})
    return [sse_event(p["type"], {**p, "sequence_number": n}) for n, p in enumerate(payloads)]


def bedrock_frames(events: list[bytes]) -> list[bytes]:
    """Anthropic SSE events as Bedrock's InvokeModel streams them: each event's JSON, base64, in a `chunk` frame."""
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    frames = []
    for event in events:
        data = next(line[6:] for line in event.decode().splitlines() if line.startswith("data: "))
        frames.append(encode(headers, json.dumps({"bytes": base64.b64encode(data.encode()).decode()}).encode()))
    return frames


CONVERSE_USAGE = {"inputTokens": 11, "outputTokens": 6, "totalTokens": 27, "cacheReadInputTokens": 10}


def converse_response(
    text: str = "Hello!",
    *,
    reasoning: str | None = None,
    tools: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bedrock's Converse answer, as `converse` returns it."""
    content: list[dict[str, Any]] = []
    if reasoning:
        content.append({"reasoningContent": {"reasoningText": {"text": reasoning, "signature": "sig-abc"}}})
    if text:
        content.append({"text": text})
    for call_id, name, args in tools:
        content.append({"toolUse": {"toolUseId": call_id, "name": name, "input": args}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use" if tools else "end_turn",
        "usage": usage or CONVERSE_USAGE,
        "metrics": {"latencyMs": 412},
    }


def converse_frames(
    texts: list[str],
    *,
    reasoning: str | None = None,
    tools: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    usage: dict[str, Any] | None = None,
) -> list[bytes]:
    """Bedrock's ConverseStream answer: one frame per event, named by `:event-type`, the event as raw JSON (with
    the service's `p` padding field)."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    index = 0
    if reasoning:
        for piece in ({"text": reasoning}, {"signature": "s"}):
            events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": piece}}))
        events.append(("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    if texts:
        events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": t}}) for t in texts]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for call_id, name, arguments in tools:
        start = {"toolUse": {"toolUseId": call_id, "name": name}}
        events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    events.append(("messageStop", {"stopReason": "tool_use" if tools else "end_turn"}))
    events.append(("metadata", {"usage": usage or CONVERSE_USAGE, "metrics": {"latencyMs": 412}}))
    return [
        encode(
            {":event-type": name, ":content-type": "application/json", ":message-type": "event"},
            json.dumps({**payload, "p": "abcdefgh"}).encode(),
        )
        for name, payload in events
    ]


# --- Gemini ---------------------------------------------------------------------------------------------------

GEMINI_MODEL = "gemini-2.5-pro"
GEMINI_USAGE = {
    "promptTokenCount": 12,
    "candidatesTokenCount": 6,
    "cachedContentTokenCount": 4,
    "thoughtsTokenCount": 3,
    "totalTokenCount": 21,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def gemini_chunks(
    texts: list[str],
    *,
    thought: str | None = None,
    calls: list[tuple[str, dict[str, Any]]] = (),  # type: ignore[assignment]
    usage: dict[str, Any] | None = None,
    response_id: str = "resp-1",
    finish: str = "STOP",
) -> list[dict[str, Any]]:
    """A `streamGenerateContent` answer as the service sends it: a thought part (with its signature), text
    pieces, then every function call whole in one chunk (each with a `thoughtSignature`), the finish reason and
    the final usage on the last chunk; every chunk carries the usage so far, the model version and the id."""
    usage = usage or GEMINI_USAGE
    running = {k: v for k, v in usage.items() if k in ("promptTokenCount", "promptTokensDetails")}
    parts: list[list[dict[str, Any]]] = []
    if thought:
        parts.append([{"text": thought, "thought": True, "thoughtSignature": "c2lnbmF0dXJlLTE="}])
    parts += [[{"text": t}] for t in texts]
    if calls:
        parts.append(
            [
                {"functionCall": {"name": name, "args": args}, "thoughtSignature": _b64(f"sig-{i}")}
                for i, (name, args) in enumerate(calls)
            ]
        )
    chunks = []
    for i, chunk_parts in enumerate(parts):
        candidate: dict[str, Any] = {"content": {"parts": chunk_parts, "role": "model"}, "index": 0}
        last = i == len(parts) - 1
        if last:
            candidate["finishReason"] = finish
        chunks.append(
            {
                "candidates": [candidate],
                "usageMetadata": usage if last else {**running, "totalTokenCount": running["promptTokenCount"]},
                "modelVersion": GEMINI_MODEL,
                "responseId": response_id,
            }
        )
    return chunks


def gemini_sse(chunks: list[dict[str, Any]]) -> list[bytes]:
    """Chunks framed as `?alt=sse` frames them: `data: ` lines ended by CRLF CRLF."""
    return [f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks]


def gemini_array(chunks: list[dict[str, Any]]) -> list[bytes]:
    """Chunks as `streamGenerateContent` without `alt=sse` streams them: one JSON array, pretty-printed."""
    out = [b"[" + json.dumps(chunks[0], indent=2).encode()]
    out += [b",\r\n" + json.dumps(c, indent=2).encode() for c in chunks[1:]]
    return [*out, b"]"]


def gemini_response(texts: list[str], **kw: Any) -> dict[str, Any]:
    """A whole `generateContent` answer: the stream's chunks in one response."""
    chunks = gemini_chunks(texts, **kw)
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    final = chunks[-1]
    return {**final, "candidates": [{**final["candidates"][0], "content": {"parts": parts, "role": "model"}}]}
