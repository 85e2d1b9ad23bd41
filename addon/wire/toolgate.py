"""Holding the client's tool calls until a policy has seen them whole: Anthropic Messages and OpenAI Chat
Completions, streamed (event by event, as the client would get them) and whole bodies. Pure.

`check(call_id, name, arguments)` answers None (the call goes to the client as it came) or the text the client
sees instead. Streaming, only a tool call is held, from its first event to its last; text and thinking flow
on. A blocked call becomes a text block (Anthropic) or content (Chat), and when no call is left the turn ends as
a normal `end_turn` / `stop`, so the client runs nothing. Events and bodies without a blocked call go out as
they came, byte for byte.
"""

import json
from collections.abc import Callable
from typing import Any

Check = Callable[[str, str, str], str | None]
JSON = dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sse(raw: bytes) -> tuple[str, Any] | None:
    """An SSE event's name and parsed data (None when it has no JSON data)."""
    name, data = "", []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    try:
        return name, json.loads("\n".join(data))
    except ValueError:
        return None


def _anthropic_event(kind: str, data: JSON) -> bytes:
    return f"event: {kind}\ndata: {_dumps(data)}\n\n".encode()


class MessagesGate:
    """One client-bound Anthropic message (every round of a tool loop is one message to the client)."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self._held: list[bytes] | None = None
        self._call: tuple[int, str, str, list[str]] | None = None
        """(index, id, name, argument parts) of the call being held."""
        self.blocked = 0
        self.allowed = 0

    def event(self, raw: bytes | None) -> bytes | None:
        if raw is None:
            return None
        if self._held is None and b"tool_use" not in raw:  # most events: text deltas, nothing to hold
            return raw
        parsed = _sse(raw)
        if parsed is None or not isinstance(parsed[1], dict):
            return raw if self._held is None else self._hold(raw)
        kind, data = parsed
        block = data.get("content_block")
        starts_call = isinstance(block, dict) and block.get("type") == "tool_use"
        if kind == "content_block_start" and starts_call and self._held is None:
            assert isinstance(block, dict)
            start = block.get("input")
            parts = [_dumps(start)] if isinstance(start, dict) and start else []
            self._call = (data.get("index", 0), str(block.get("id", "")), str(block.get("name", "")), parts)
            self._held = [raw]
            return None
        if self._held is not None and self._call is not None and data.get("index") == self._call[0]:
            if kind == "content_block_delta" and isinstance(delta := data.get("delta"), dict):
                if isinstance(part := delta.get("partial_json"), str):
                    self._call[3].append(part)
                return self._hold(raw)
            if kind == "content_block_stop":
                return self._release(raw)
        if kind == "message_delta" and self.blocked and not self.allowed:
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") == "tool_use":
                return _anthropic_event(kind, {**data, "delta": {**delta, "stop_reason": "end_turn"}})
        return raw if self._held is None else self._hold(raw)

    def _hold(self, raw: bytes) -> None:
        assert self._held is not None
        self._held.append(raw)

    def _release(self, stop: bytes) -> bytes:
        assert self._held is not None and self._call is not None
        index, call_id, name, parts = self._call
        held, self._held, self._call = [*self._held, stop], None, None
        text = self.check(call_id, name, "".join(parts) or "{}")
        if text is None:
            self.allowed += 1
            return b"".join(held)
        self.blocked += 1
        start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
        return b"".join(
            [
                _anthropic_event("content_block_start", start),
                _anthropic_event("content_block_delta", delta),
                _anthropic_event("content_block_stop", {"type": "content_block_stop", "index": index}),
            ]
        )

    def body(self, raw: bytes) -> bytes:
        """A whole message: blocked calls replaced by text, re-serialized only when one was."""
        try:
            message = json.loads(raw)
        except ValueError:
            return raw
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            return raw
        out, blocked, left = [], 0, 0
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                args = _dumps(block.get("input", {}))
                text = self.check(str(block.get("id", "")), str(block.get("name", "")), args)
                if text is not None:
                    blocked += 1
                    out.append({"type": "text", "text": text})
                    continue
                left += 1
            out.append(block)
        if not blocked:
            return raw
        message["content"] = out
        if not left and message.get("stop_reason") == "tool_use":
            message["stop_reason"] = "end_turn"
        return _dumps(message).encode()


class ChatGate:
    """One client-bound Chat Completions answer (its first choice: what coding clients ask for)."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self._held: list[tuple[bytes, JSON]] = []
        self._calls: dict[int, list[str]] = {}
        """Per tool-call index: id, name, argument parts."""

    def event(self, raw: bytes | None) -> bytes | None:
        if raw is None:
            return None
        if not self._held and b'"tool_calls"' not in raw:
            return raw
        parsed = _sse(raw)
        if parsed is None or not isinstance(chunk := parsed[1], dict):
            return raw if not self._held else self._flush_raw(raw)
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is None:
            return raw if not self._held else self._flush_raw(raw)
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                slot = self._calls.setdefault(int(call.get("index", 0)), ["", "", ""])
                fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                slot[0] = slot[0] or str(call.get("id") or "")
                slot[1] += str(fn.get("name") or "")
                slot[2] += str(fn.get("arguments") or "")
        self._held.append((raw, chunk))
        if not choice.get("finish_reason"):
            return None
        return self._resolve()

    def _flush_raw(self, raw: bytes) -> bytes:
        """Something unexpected while holding: what was held goes out as it came, unjudged (fail open)."""
        out = b"".join(r for r, _ in self._held) + raw
        self._held, self._calls = [], {}
        return out

    def _resolve(self) -> bytes:
        held, calls = self._held, self._calls
        self._held, self._calls = [], {}
        texts = {i: t for i, (cid, name, args) in calls.items() if (t := self.check(cid, name, args or "{}"))}
        if not texts:
            return b"".join(r for r, _ in held)
        left = set(calls) - set(texts)
        out = []
        first = held[0][1]
        note = {
            **first,
            "choices": [{"index": 0, "delta": {"content": "\n".join(texts.values())}, "finish_reason": None}],
        }
        out.append(_chat(note))
        for _, chunk in held:
            choice = dict(chunk["choices"][0])
            delta = dict(choice.get("delta") or {})
            kept = [c for c in delta.get("tool_calls") or () if int(c.get("index", 0)) in left]
            if "tool_calls" in delta:
                if kept:
                    delta["tool_calls"] = kept
                else:
                    del delta["tool_calls"]
            if choice.get("finish_reason") == "tool_calls" and not left:
                choice["finish_reason"] = "stop"
            if not delta and not choice.get("finish_reason") and not chunk.get("usage"):
                continue  # nothing left of it
            choice["delta"] = delta
            out.append(_chat({**chunk, "choices": [choice, *chunk["choices"][1:]]}))
        return b"".join(out)

    def body(self, raw: bytes) -> bytes:
        try:
            answer = json.loads(raw)
        except ValueError:
            return raw
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return raw
        message = choices[0].get("message")
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if not isinstance(calls, list):
            return raw
        kept, texts = [], []
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else {}
            text = self.check(str(call.get("id", "")), str(fn.get("name", "")), str(fn.get("arguments") or "{}"))
            (texts.append(text) if text is not None else kept.append(call))
        if not texts:
            return raw
        message = {**message, "content": "\n".join([*([message["content"]] if message.get("content") else []), *texts])}
        if kept:
            message["tool_calls"] = kept
        else:
            message.pop("tool_calls", None)
            if choices[0].get("finish_reason") == "tool_calls":
                choices[0] = {**choices[0], "finish_reason": "stop"}
        choices[0] = {**choices[0], "message": message}
        return _dumps(answer).encode()


def _chat(chunk: JSON) -> bytes:
    return f"data: {_dumps(chunk)}\n\n".encode()
