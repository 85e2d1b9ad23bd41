"""Holding the client's tool calls for the gate: Anthropic events and bodies, Chat chunks and bodies. What no
rule blocks goes out byte for byte; a blocked call becomes text and the turn ends normally."""

import json
from typing import Any

from addon.wire.sse import SSEParser
from addon.wire.toolgate import ChatGate, MessagesGate
from tests.support.scenarios import anthropic_events, anthropic_message, chat_chunks, chat_completion

BASH = ("toolu_1", "Bash", {"command": "rm -rf /"})
READ = ("toolu_2", "Read", {"path": "a.py"})


def blocking(call_id: str, name: str, arguments: str) -> str | None:
    return f"blocked {name}" if "rm -rf" in arguments else None


def through(gate: Any, events: list[bytes]) -> list[bytes | None]:
    return [gate.event(e) for e in events]


def parsed(out: list[bytes | None]) -> list[tuple[str, dict]]:
    events = SSEParser().feed(b"".join(o for o in out if o))
    return [(e.event or "", json.loads(e.data)) for e in events if e.data and e.data != "[DONE]"]


def test_an_allowed_anthropic_call_goes_out_byte_for_byte_once_whole() -> None:
    events = anthropic_events(["Let me ", "read."], tools=[READ])
    gate = MessagesGate(blocking)
    out = through(gate, events)
    assert b"".join(o for o in out if o) == b"".join(events)
    held = [i for i, o in enumerate(out) if o is None]
    assert held and b"tool_use" in events[held[0]]  # held from the call's first event ...
    assert out[held[-1] + 1] is not None and out[1] == events[1]  # ... released at its last; text went at once
    assert (gate.allowed, gate.blocked) == (1, 0)


def test_a_blocked_anthropic_call_becomes_text_and_the_turn_ends() -> None:
    events = anthropic_events(["I will clean up."], tools=[BASH])
    out = through(MessagesGate(blocking), events)
    kinds = parsed(out)
    assert not any(d.get("content_block", {}).get("type") == "tool_use" for _, d in kinds)
    texts = [d["delta"]["text"] for k, d in kinds if k == "content_block_delta" and d["delta"]["type"] == "text_delta"]
    assert texts == ["I will clean up.", "blocked Bash"]
    [delta] = [d for k, d in kinds if k == "message_delta"]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert out[-1] == events[-1]  # message_stop as it came


def test_with_one_call_blocked_and_one_allowed_the_turn_still_waits_for_tools() -> None:
    out = through(MessagesGate(blocking), anthropic_events(["two"], tools=[BASH, READ]))
    kinds = parsed(out)
    names = [d["content_block"].get("name") for k, d in kinds if k == "content_block_start"]
    assert names == [None, None, "Read"]  # the text, the blocked call's text, the allowed call
    assert next(d for k, d in kinds if k == "message_delta")["delta"]["stop_reason"] == "tool_use"


def test_anthropic_bodies() -> None:
    clean = json.dumps(anthropic_message("ok", tools=[READ])).encode()
    gate = MessagesGate(blocking)
    assert gate.body(clean) is clean
    blocked = json.loads(gate.body(json.dumps(anthropic_message("cleaning", tools=[BASH])).encode()))
    assert blocked["content"] == [{"type": "text", "text": "cleaning"}, {"type": "text", "text": "blocked Bash"}]
    assert blocked["stop_reason"] == "end_turn"


def test_an_allowed_chat_call_goes_out_byte_for_byte() -> None:
    events = chat_chunks(["reading"], tools=[("call_1", "read_file", '{"path": "a.py"}')])
    out = through(ChatGate(blocking), events)
    assert b"".join(o for o in out if o) == b"".join(events)
    assert out[1] == events[1]  # the text before the call was not held


def test_a_blocked_chat_call_becomes_content_and_the_answer_stops() -> None:
    events = chat_chunks(["cleaning"], tools=[("call_1", "shell", '{"cmd": "rm -rf /"}')])
    kinds = parsed(through(ChatGate(blocking), events))
    deltas = [d["choices"][0]["delta"] for _, d in kinds if d.get("choices")]
    assert not any("tool_calls" in d for d in deltas)
    assert [d.get("content") for d in deltas if d.get("content")] == ["cleaning", "blocked shell"]
    finishes = [
        d["choices"][0]["finish_reason"] for _, d in kinds if d.get("choices") and d["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop"]


def test_chat_bodies() -> None:
    gate = ChatGate(blocking)
    clean = json.dumps(chat_completion("ok", tools=[("call_1", "read_file", "{}")])).encode()
    assert gate.body(clean) is clean
    answer = json.loads(
        gate.body(json.dumps(chat_completion(None, tools=[("c", "shell", '{"cmd":"rm -rf /"}')])).encode())
    )
    message = answer["choices"][0]["message"]
    assert message["content"] == "blocked shell" and "tool_calls" not in message
    assert answer["choices"][0]["finish_reason"] == "stop"
