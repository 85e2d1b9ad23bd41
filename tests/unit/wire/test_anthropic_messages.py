"""Anthropic /v1/messages: request facts, streamed and whole responses, error shapes."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from addon.wire.anthropic_messages import (
    AnthropicMessages,
    MessagesParser,
    correlating_tool_call_id,
    extract_prompt,
    to_usage,
)
from addon.wire.base import LIMIT_NOTICE, LoopState, Next, Thought, ToolCall, Turn, Usage, dumps, tool_names
from addon.wire.sse import SSEEvent, SSEParser

WIRE = AnthropicMessages()
REMINDER = "<system-reminder>\nAs you answer, use the context.\n</system-reminder>"


def sse(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"event: {event}\ndata: {payload}\n\n".encode()


def events_of(stream: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events = parser.feed(stream)
    assert parser.close() is None
    return events


def run(stream: bytes) -> tuple[MessagesParser, list[bytes | None]]:
    parser = MessagesParser()
    out = [parser.feed_event(event) for event in events_of(stream)]
    return parser, out


MESSAGE_START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 100,
                "output_tokens": 1,
                "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 2},
                "service_tier": "standard",
            },
        },
    },
)


def block_start(index: int, block: dict) -> bytes:
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, d: dict) -> bytes:
    return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})


def block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(usage: dict, stop_reason: str | None = "end_turn") -> bytes:
    return sse(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage},
    )


MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})
PING = sse("ping", {"type": "ping"})

FULL_STREAM = b"".join(
    [
        MESSAGE_START,
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
        PING,
        delta(0, {"type": "thinking_delta", "thinking": "think."}),
        delta(0, {"type": "signature_delta", "signature": "sig"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, {"type": "text_delta", "text": "I'll read both."}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_A", "name": "Read", "input": {}}),
        block_start(3, {"type": "tool_use", "id": "toolu_B", "name": "Grep", "input": {}}),
        delta(2, {"type": "input_json_delta", "partial_json": ""}),
        delta(2, {"type": "input_json_delta", "partial_json": '{"path":'}),
        delta(3, {"type": "input_json_delta", "partial_json": '{"pattern":"x"}'}),
        delta(2, {"type": "input_json_delta", "partial_json": ' "a.py"}'}),
        block_stop(2),
        block_stop(3),
        message_delta({"output_tokens": 50}, "tool_use"),
        MESSAGE_STOP,
    ]
)


# --- request facts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "hello there"}], "hello there"),
        (
            [
                {"role": "user", "content": "old prompt"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "new prompt"}]},
            ],
            "new prompt",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": REMINDER},
                        {"type": "text", "text": "fix the failing test", "cache_control": {"type": "ephemeral"}},
                        {"type": "text", "text": "<system-reminder>later</system-reminder>"},
                    ],
                }
            ],
            "fix the failing test",
        ),
        # Claude Code: a `system` entry after the user turn
        (
            [
                {"role": "user", "content": [{"type": "text", "text": REMINDER}, {"type": "text", "text": "say hi"}]},
                {"role": "system", "content": "You are Claude Code."},
            ],
            "say hi",
        ),
        # assistant prefill after the user turn
        ([{"role": "user", "content": "write JSON"}, {"role": "assistant", "content": "{"}], "write JSON"),
        # the last user turn only carries tool results
        (
            [
                {"role": "user", "content": "list files"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.py"}]},
            ],
            None,
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.py"},
                        {"type": "text", "text": REMINDER},
                    ],
                }
            ],
            None,
        ),
        ([{"role": "user", "content": [{"type": "image", "source": {}}]}], None),
        ([{"role": "user", "content": "   "}], None),
        ([{"role": "assistant", "content": "hi"}], None),
        ([], None),
        ("not a list", None),
        ([{"role": "user", "content": None}, "junk"], None),
    ],
)
def test_extract_prompt(messages: Any, expected: str | None) -> None:
    assert extract_prompt({"model": "m", "messages": messages}) == expected


def test_extract_prompt_without_messages() -> None:
    assert extract_prompt({}) is None


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [
                {"role": "user", "content": "go"},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "y"},
                        {"type": "text", "text": REMINDER},
                    ],
                },
                {"role": "system", "content": "sys"},
            ],
            "toolu_2",
        ),
        ([{"role": "user", "content": "go"}], None),
        ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5}]}], None),
        (
            [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_old"}]},
                {"role": "assistant", "content": "done"},
                {"role": "user", "content": "thanks"},
            ],
            None,
        ),
    ],
)
def test_correlating_tool_call_id(messages: list, expected: str | None) -> None:
    assert correlating_tool_call_id({"messages": messages}) == expected


def test_parse_request() -> None:
    info = WIRE.parse_request(
        {
            "model": "claude-sonnet-4-5",
            "stream": True,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}],
        }
    )
    assert (info.model, info.stream, info.prompt, info.correlating_tool_call_id) == (
        "claude-sonnet-4-5",
        True,
        None,
        "toolu_9",
    )


@pytest.mark.parametrize("stream", ["true", 1, None, False])
def test_parse_request_stream_must_be_true(stream: object) -> None:
    info = WIRE.parse_request({"model": 7, "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    assert info.stream is False
    assert info.model is None
    assert info.prompt == "x"


def test_parse_request_reads_what_the_loop_and_budgets_need() -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 2048, "tools": [{"name": "Read"}, {"type": "bash_20250124"}]}
    info = WIRE.parse_request(body)
    assert (info.max_output, tool_names(body), info.takes_tools) == (2048, frozenset({"Read"}), True)
    small = WIRE.parse_request({"model": "claude-Haiku-4-5", "max_tokens": True})  # Claude Code's titles
    assert (small.max_output, small.takes_tools) == (None, False)


@pytest.mark.parametrize(
    ("event", "data", "ends"),
    [
        ("message_stop", '{"type":"message_stop"}', True),
        (None, '{"type": "message_stop"}', True),
        ("error", '{"type":"error","error":{"type":"overloaded_error"}}', True),
        ("message_delta", '{"type":"message_delta"}', False),
        (None, "[DONE]", False),
    ],
)
def test_ends_stream(event: str | None, data: str, ends: bool) -> None:
    assert WIRE.ends_stream(SSEEvent(b"", event or "", data)) is ends


def test_prepare_request_leaves_the_body_alone() -> None:
    raw = b'{"model": "m",  "stream": true, "messages": []}'
    out, hide_usage = WIRE.prepare_request(raw, json.loads(raw))
    assert out == raw
    assert hide_usage is False
    assert isinstance(WIRE.parser(), MessagesParser)


# --- streamed responses ----------------------------------------------------------------------------------


def test_stream_turn() -> None:
    parser, _ = run(FULL_STREAM)
    turn = parser.turn()
    assert turn.response_id == "msg_01"
    assert turn.model == "claude-sonnet-4-5"
    assert turn.stop_reason == "tool_use"
    assert turn.error is None
    assert turn.usage == Usage(
        input=10,
        output=50,
        cache_read=100,
        cache_write=5,
        extra={"cache_write_5m": 3, "cache_write_1h": 2, "service_tier": "standard"},
    )
    assert turn.tool_calls == [
        ToolCall("toolu_A", "Read", '{"path": "a.py"}'),
        ToolCall("toolu_B", "Grep", '{"pattern":"x"}'),
    ]
    assert turn.thoughts == [Thought("Let me think.", "thinking")]


def test_feed_event_returns_raw_for_every_event() -> None:
    stream = FULL_STREAM + b": comment\n\n" + sse("unknown", "not json {") + b"data: \n\n" + sse("x", "[1, 2]")
    events = events_of(stream)
    parser = MessagesParser()
    for event in events:
        assert parser.feed_event(event) == event.raw
    assert b"".join(e.raw for e in events) == stream


def test_usage_is_merged_not_summed() -> None:
    parser, _ = run(MESSAGE_START + message_delta({"output_tokens": 50}) + MESSAGE_STOP)
    usage = parser.turn().usage
    assert usage is not None
    assert (usage.input, usage.output, usage.cache_read, usage.cache_write) == (10, 50, 100, 5)


def test_message_delta_input_and_cache_fields_override() -> None:
    stream = MESSAGE_START + message_delta(
        {"input_tokens": 12, "cache_read_input_tokens": 200, "cache_creation_input_tokens": None, "output_tokens": 7}
    )
    usage = run(stream)[0].turn().usage
    assert usage is not None
    assert (usage.input, usage.output, usage.cache_read, usage.cache_write) == (12, 7, 200, 5)
    assert usage.extra["cache_write_5m"] == 3 and usage.extra["cache_write_1h"] == 2


def test_message_delta_cache_creation_breakdown_overrides() -> None:
    stream = MESSAGE_START + message_delta(
        {"output_tokens": 2, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 9}}
    )
    usage = run(stream)[0].turn().usage
    assert usage is not None
    assert usage.extra["cache_write_5m"] == 0 and usage.extra["cache_write_1h"] == 9


def test_no_usage_means_none() -> None:
    stream = sse("message_start", {"type": "message_start", "message": {"id": "msg_x", "model": "m"}})
    turn = run(stream)[0].turn()
    assert turn.usage is None
    assert turn.response_id == "msg_x"


def test_event_type_from_data_when_the_event_line_is_missing() -> None:
    stream = MESSAGE_START.removeprefix(b"event: message_start\n")
    assert run(stream)[0].turn().response_id == "msg_01"


def test_tool_use_without_deltas_has_empty_object_arguments() -> None:
    stream = MESSAGE_START + block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "Now", "input": {}})
    assert run(stream)[0].turn().tool_calls == [ToolCall("toolu_1", "Now", "{}")]


def test_tool_use_with_whole_input_at_start() -> None:
    block = {"type": "tool_use", "id": "toolu_1", "name": "Calc", "input": {"x": "é"}}
    assert run(block_start(0, block))[0].turn().tool_calls == [ToolCall("toolu_1", "Calc", '{"x":"é"}')]


def test_thinking_in_block_start_and_redacted_thinking() -> None:
    stream = (
        block_start(0, {"type": "thinking", "thinking": "whole "})
        + delta(0, {"type": "thinking_delta", "thinking": "and more"})
        + block_start(1, {"type": "redacted_thinking", "data": "xyz"})
        + block_start(2, {"type": "thinking", "thinking": ""})
    )
    assert run(stream)[0].turn().thoughts == [Thought("whole and more", "thinking")]


def test_delta_for_an_unknown_block_is_ignored() -> None:
    parser, out = run(delta(5, {"type": "input_json_delta", "partial_json": "{}"}))
    assert parser.turn().tool_calls == []
    assert out == [delta(5, {"type": "input_json_delta", "partial_json": "{}"})]


def test_error_event_sets_turn_error() -> None:
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    parser, out = run(MESSAGE_START + error)
    turn = parser.turn()
    assert turn.error == "overloaded_error: Overloaded"
    assert out[-1] == error
    assert turn.response_id == "msg_01"


def test_error_event_without_error_object() -> None:
    turn = run(sse("error", {"type": "error", "detail": "?"}))[0].turn()
    assert turn.error is not None and "detail" in turn.error


def test_turn_is_stable_when_called_twice() -> None:
    parser, _ = run(FULL_STREAM)
    assert parser.turn() == parser.turn()


# --- whole responses -------------------------------------------------------------------------------------


def test_blocking_body() -> None:
    body = {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "running it"},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls -l"}},
            {"type": "tool_use", "id": "toolu_2", "name": "Now", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 3,
            "output_tokens": 4,
            "cache_read_input_tokens": 7,
            "cache_creation_input_tokens": 8,
            "server_tool_use": {"web_search_requests": 2},
        },
    }
    parser = MessagesParser()
    parser.feed_body(json.dumps(body).encode())
    turn = parser.turn()
    assert (turn.response_id, turn.model, turn.stop_reason, turn.error) == (
        "msg_2",
        "claude-haiku-4-5",
        "tool_use",
        None,
    )
    assert turn.usage == Usage(input=3, output=4, cache_read=7, cache_write=8, extra={"web_search_requests": 2})
    assert turn.tool_calls == [ToolCall("toolu_1", "Bash", '{"command":"ls -l"}'), ToolCall("toolu_2", "Now", "{}")]
    assert turn.thoughts == [Thought("hmm", "thinking")]


def test_blocking_error_body() -> None:
    parser = MessagesParser()
    parser.feed_body(b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}')
    turn = parser.turn()
    assert turn.error == "rate_limit_error: slow down"
    assert turn.usage is None


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'"s"', b"\xff"])
def test_blocking_garbage_body_gives_an_empty_turn(body: bytes) -> None:
    parser = MessagesParser()
    parser.feed_body(body)
    turn = parser.turn()
    assert (turn.response_id, turn.usage, turn.tool_calls, turn.error) == (None, None, [], None)


def test_to_usage_ignores_non_integers() -> None:
    usage = to_usage({"input_tokens": "5", "output_tokens": True, "cache_read_input_tokens": None})
    assert usage == Usage()


# --- error shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_body(status: int, kind: str) -> None:
    body = json.loads(WIRE.error_body(status, "it broke: é"))
    assert body == {"type": "error", "error": {"type": kind, "message": "it broke: é"}}


def test_error_event() -> None:
    raw = WIRE.error_event("upstream went away")
    (event,) = events_of(raw)
    assert event.raw == raw
    assert event.event == "error"
    assert json.loads(event.data) == {"type": "error", "error": {"type": "api_error", "message": "upstream went away"}}
    parser = MessagesParser()
    parser.feed_event(event)
    assert parser.turn().error == "api_error: upstream went away"


# --- the tool loop: injecting, continuing, merging -------------------------------------------------------

INJECTED = frozenset({"bmcp_fs_read", "bmcp_fs_grep"})


@dataclass(frozen=True)
class Spec:
    name: str
    description: str = "an injected tool"
    input_schema: dict = field(default_factory=lambda: {"type": "object", "properties": {"path": {"type": "string"}}})


def spec_json(spec: Spec) -> bytes:
    return json.dumps(
        {"name": spec.name, "description": spec.description, "input_schema": spec.input_schema},
        separators=(",", ":"),
    ).encode()


CLIENT_BODY = (
    b'{"model": "claude-sonnet-4-5",  "max_tokens": 1024, "stream": true,\n'
    b' "tools": [{"name": "Bash", "input_schema": {"type": "object"}},\n'
    b'           {"name": "Read", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],\n'
    b' "messages": [{"role": "user", "content": "read a.py \\u00e9"}]}'
)


def test_inject_tools_prepends_in_the_given_order_and_changes_nothing_else() -> None:
    specs = [Spec("bmcp_fs_read"), Spec("bmcp_fs_grep", "search", {"type": "object"})]
    out = WIRE.inject_tools(CLIENT_BODY, specs)
    inserted = spec_json(specs[0]) + b"," + spec_json(specs[1]) + b","
    assert out == CLIENT_BODY.replace(b'"tools": [', b'"tools": [' + inserted, 1)
    tools = json.loads(out)["tools"]
    assert [t["name"] for t in tools] == ["bmcp_fs_read", "bmcp_fs_grep", "Bash", "Read"]
    assert tools[-1]["cache_control"] == {"type": "ephemeral"}  # the client's breakpoint still ends the tools


def test_inject_tools_creates_the_tools_array() -> None:
    raw = b'{"model": "m", "messages": []}'
    out = WIRE.inject_tools(raw, [Spec("bmcp_fs_read")])
    assert out == raw[:-1] + b',"tools":[' + spec_json(Spec("bmcp_fs_read")) + b"]}"


def test_a_tool_that_changed_under_the_same_name_is_injected_as_it_now_is() -> None:
    """Definitions are serialized once per tool object; a server's new listing makes new objects."""
    raw = b'{"model": "m", "messages": []}'
    before, after = Spec("bmcp_fs_read", "old text"), Spec("bmcp_fs_read", "new text")
    assert json.loads(WIRE.inject_tools(raw, [before]))["tools"][0]["description"] == "old text"
    assert json.loads(WIRE.inject_tools(raw, [after]))["tools"][0]["description"] == "new text"
    assert json.loads(WIRE.inject_tools(raw, [before]))["tools"][0]["description"] == "old text"


def test_inject_no_tools_leaves_the_body_alone() -> None:
    assert WIRE.inject_tools(CLIENT_BODY, []) == CLIENT_BODY


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Image:
    media_type: str
    data: str


@dataclass(frozen=True)
class Output:
    parts: tuple
    is_error: bool = False


ASSISTANT = {
    "role": "assistant",
    "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "bmcp_fs_read", "input": {"path": "a.py"}},
        {"type": "tool_use", "id": "toolu_2", "name": "bmcp_fs_grep", "input": {}},
    ],
}


def test_next_request_appends_the_turn_and_its_tool_results() -> None:
    turn = Turn(assistant=ASSISTANT)
    results = [
        (
            ToolCall("toolu_1", "bmcp_fs_read", '{"path": "a.py"}'),
            Output((Text("print(1)"), Image("image/png", "iVBO"))),
        ),
        (ToolCall("toolu_2", "bmcp_fs_grep", "{}"), Output((Text("no pattern"),), is_error=True)),
    ]
    out = WIRE.next_request(CLIENT_BODY, turn, results)
    answers = {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [
                    {"type": "text", "text": "print(1)"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                ],
                "is_error": False,
            },
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "content": [{"type": "text", "text": "no pattern"}],
                "is_error": True,
            },
        ],
    }
    close = CLIENT_BODY.rindex(b"]")
    added = b"," + dumps(ASSISTANT).encode() + b"," + dumps(answers).encode()
    assert out == CLIENT_BODY[:close] + added + CLIENT_BODY[close:]
    assert json.loads(out)["messages"][1:] == [ASSISTANT, answers]


def body_of(msg_id: str, content: list, stop_reason: str, usage: tuple[int, int, int, int]) -> dict:
    i, o, read, write = usage
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": i,
            "output_tokens": o,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
            "service_tier": "standard",
        },
    }


ROUND_BODIES = [
    body_of(
        "msg_1",
        [
            {"type": "thinking", "thinking": "Read it first.", "signature": "sig1"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "bmcp_fs_read", "input": {"path": "a.py"}},
        ],
        "tool_use",
        (10, 20, 100, 5),
    ),
    body_of(
        "msg_2",
        [
            {"type": "text", "text": "It prints 1. Running it."},
            {"type": "tool_use", "id": "toolu_2", "name": "bmcp_fs_grep", "input": {}},
            {"type": "tool_use", "id": "toolu_3", "name": "Bash", "input": {"command": "python a.py"}},
        ],
        "tool_use",
        (30, 40, 200, 7),
    ),
]


def merged_state(bodies: list[dict]) -> LoopState:
    state = LoopState(INJECTED, 8, round=len(bodies))
    for body in bodies:
        state.add_usage(to_usage(body["usage"]))
    return state


def test_merge_rounds_keeps_every_visible_block_and_sums_usage() -> None:
    merged = json.loads(WIRE.merge_rounds(ROUND_BODIES, merged_state(ROUND_BODIES), limited=False))
    assert merged["content"] == [
        {"type": "thinking", "thinking": "Read it first.", "signature": "sig1"},
        {"type": "text", "text": "Let me look."},
        {"type": "text", "text": "It prints 1. Running it."},
        {"type": "tool_use", "id": "toolu_3", "name": "Bash", "input": {"command": "python a.py"}},
    ]
    assert merged["usage"] == {
        "input_tokens": 40,
        "output_tokens": 60,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 12,
        "service_tier": "standard",
    }
    assert (merged["id"], merged["stop_reason"], merged["model"]) == (
        "msg_1",
        "tool_use",
        "claude-sonnet-4-5",
    )  # the first round names the message, as a stream does


def test_merge_rounds_limited_adds_the_notice_and_ends_the_turn() -> None:
    bodies = [ROUND_BODIES[0], body_of("msg_2", ROUND_BODIES[0]["content"][2:], "tool_use", (1, 2, 3, 4))]
    merged = json.loads(WIRE.merge_rounds(bodies, merged_state(bodies), limited=True))
    assert merged["content"] == [
        *ROUND_BODIES[0]["content"][:2],
        {"type": "text", "text": LIMIT_NOTICE.format(rounds=2)},
    ]
    assert merged["stop_reason"] == "end_turn"
    assert (merged["usage"]["input_tokens"], merged["usage"]["output_tokens"]) == (11, 22)


def test_ping_event_is_an_anthropic_ping() -> None:
    (event,) = events_of(WIRE.ping_event())
    assert event.event == "ping"
    assert json.loads(event.data) == {"type": "ping"}


# --- the tool loop: a streamed response, round by round --------------------------------------------------


def message_start(msg_id: str, input_tokens: int, cache_read: int, cache_write: int) -> bytes:
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": 1,
    }
    message = {"id": msg_id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": []}
    return sse("message_start", {"type": "message_start", "message": {**message, "usage": usage}})


def text_block(index: int, text: str) -> bytes:
    return (
        block_start(index, {"type": "text", "text": ""})
        + delta(index, {"type": "text_delta", "text": text})
        + block_stop(index)
    )


def tool_block(index: int, call_id: str, name: str, arguments: str) -> bytes:
    return (
        block_start(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}})
        + delta(index, {"type": "input_json_delta", "partial_json": arguments[:5]})
        + delta(index, {"type": "input_json_delta", "partial_json": arguments[5:]})
        + block_stop(index)
    )


def a_round(
    msg_id: str, *blocks: bytes, stop_reason: str, usage: tuple[int, int, int, int] = (10, 20, 100, 5)
) -> bytes:
    """One upstream response: input, output, cache read, cache write tokens as `usage`."""
    i, o, read, write = usage
    return b"".join(
        [message_start(msg_id, i, read, write), *blocks, message_delta({"output_tokens": o}, stop_reason), MESSAGE_STOP]
    )


CALLS_READ = a_round(
    "msg_1",
    text_block(0, "Let me look."),
    tool_block(1, "toolu_1", "bmcp_fs_read", '{"path": "a.py"}'),
    stop_reason="tool_use",
    usage=(10, 20, 100, 5),
)
CALLS_GREP = a_round(
    "msg_2",
    text_block(0, "Now grep."),
    tool_block(1, "toolu_2", "bmcp_fs_grep", '{"pattern": "x"}'),
    stop_reason="tool_use",
    usage=(30, 40, 200, 7),
)
ANSWERS = a_round("msg_3", text_block(0, "It prints 1."), stop_reason="end_turn", usage=(50, 60, 300, 9))


@dataclass
class Played:
    """What the client saw of each round (None: hidden), each round's events and turn, and the shared state."""

    state: LoopState
    events: list[list[SSEEvent]] = field(default_factory=list)
    outs: list[list[bytes | None]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    @property
    def client_bytes(self) -> bytes:
        return b"".join(out for outs in self.outs for out in outs if out is not None)

    def client_events(self) -> list[tuple[str, dict]]:
        """The client's stream as (event, data) pairs, checking it is valid SSE with matching types."""
        events = events_of(self.client_bytes)
        pairs = [(e.event, json.loads(e.data)) for e in events]
        assert all(name == data["type"] for name, data in pairs)
        return pairs


def play(*rounds: bytes, max_rounds: int = 8, injected: frozenset[str] = INJECTED) -> Played:
    """Feed rounds the way the engine does: one parser per round, usage added and the round counted between."""
    played = Played(LoopState(injected, max_rounds))
    for number, stream in enumerate(rounds, 1):
        assert played.state.round == number
        parser = WIRE.loop_parser(played.state)
        events = events_of(stream)
        played.events.append(events)
        played.outs.append([parser.feed_event(e) for e in events])
        turn = parser.turn()
        played.turns.append(turn)
        played.state.add_usage(turn.usage)
        if turn.next is not Next.CONTINUE:
            assert number == len(rounds), "a round after the loop ended"
            break
        played.state.round += 1
    return played


def kinds(pairs: list[tuple[str, dict]]) -> list[str]:
    return [name for name, _ in pairs]


@pytest.mark.parametrize(
    "stream",
    [FULL_STREAM, a_round("msg_1", text_block(0, "Just text."), stop_reason="end_turn")],
    ids=["client-tools", "text"],
)
def test_loop_final_first_round_is_relayed_byte_identical(stream: bytes) -> None:
    played = play(stream)
    assert played.turns[0].next is Next.FINAL
    assert played.outs[0] == [e.raw for e in played.events[0]]
    assert played.client_bytes == stream


def test_loop_injected_call_cut_off_is_final_and_still_hidden() -> None:
    cut_off = a_round("msg_1", tool_block(0, "toolu_1", "bmcp_fs_read", '{"path": "a.'), stop_reason="max_tokens")
    played = play(cut_off)
    assert played.turns[0].next is Next.FINAL
    shown = [e.raw for e in played.events[0] if e.event.startswith("message_")]
    assert [out for out in played.outs[0] if out is not None] == shown


def test_loop_first_round_hides_the_injected_call_and_the_message_end() -> None:
    played = play(CALLS_READ, ANSWERS)
    first = played.events[0]
    shown = [e.raw for e in first if e.event == "message_start" or b'"index": 0' in e.raw]
    assert [out for out in played.outs[0] if out is not None] == shown
    assert played.turns[0].next is Next.CONTINUE
    assert played.turns[0].tool_calls == [ToolCall("toolu_1", "bmcp_fs_read", '{"path": "a.py"}')]


def test_loop_client_sees_one_message_with_blocks_counting_across_rounds() -> None:
    played = play(CALLS_READ, CALLS_GREP, ANSWERS)
    pairs = played.client_events()
    assert kinds(pairs) == [
        "message_start",
        *["content_block_start", "content_block_delta", "content_block_stop"] * 3,
        "message_delta",
        "message_stop",
    ]
    assert pairs[0][1]["message"]["id"] == "msg_1"
    blocks = [(data["index"], data.get("delta", {}).get("text")) for name, data in pairs if "index" in data]
    assert blocks == [
        (0, None),
        (0, "Let me look."),
        (0, None),
        (1, None),
        (1, "Now grep."),
        (1, None),
        (2, None),
        (2, "It prints 1."),
        (2, None),
    ]
    assert all(data.get("content_block", {}).get("type") != "tool_use" for _, data in pairs)
    assert pairs[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert [t.next for t in played.turns] == [Next.CONTINUE, Next.CONTINUE, Next.FINAL]


def test_loop_renumbered_events_differ_only_in_their_index() -> None:
    played = play(CALLS_READ, ANSWERS)
    blocks = [
        (e, out)
        for e, out in zip(played.events[1], played.outs[1], strict=True)
        if e.event.startswith("content_block_")
    ]
    assert len(blocks) == 3
    for original, out in blocks:
        assert out is not None and out != original.raw
        (event,) = events_of(out)
        assert event.event == original.event
        assert json.loads(event.data) == {**json.loads(original.data), "index": 1}


def test_loop_later_rounds_hide_their_message_start() -> None:
    played = play(CALLS_READ, CALLS_GREP, ANSWERS)
    for events, outs in zip(played.events[1:], played.outs[1:], strict=True):
        assert [out for e, out in zip(events, outs, strict=True) if e.event == "message_start"] == [None]


def test_loop_intermediate_message_delta_and_stop_are_hidden() -> None:
    played = play(CALLS_READ, CALLS_GREP, ANSWERS)
    for events, outs in zip(played.events[:2], played.outs[:2], strict=True):
        ends = [out for e, out in zip(events, outs, strict=True) if e.event in ("message_delta", "message_stop")]
        assert ends == [None, None]
    assert played.outs[2][-1] == MESSAGE_STOP


def test_loop_final_message_delta_carries_usage_summed_over_rounds() -> None:
    played = play(CALLS_READ, CALLS_GREP, ANSWERS)
    (usage,) = [data["usage"] for name, data in played.client_events() if name == "message_delta"]
    assert usage == {
        "output_tokens": 20 + 40 + 60,
        "input_tokens": 10 + 30 + 50,
        "cache_read_input_tokens": 100 + 200 + 300,
        "cache_creation_input_tokens": 5 + 7 + 9,
    }


def test_loop_a_block_after_a_hidden_block_takes_the_next_client_index() -> None:
    round_ = a_round(
        "msg_1",
        tool_block(0, "toolu_1", "bmcp_fs_read", "{}"),
        text_block(1, "Reading."),
        tool_block(2, "toolu_2", "bmcp_fs_grep", "{}"),
        stop_reason="tool_use",
    )
    played = play(round_, ANSWERS)
    indexes = [data["index"] for _, data in played.client_events() if "index" in data]
    assert indexes == [0, 0, 0, 1, 1, 1]
    assert played.client_events()[2][1]["delta"] == {"type": "text_delta", "text": "Reading."}


def test_loop_mixed_turn_is_final_with_only_the_client_call_visible() -> None:
    mixed = a_round(
        "msg_1",
        text_block(0, "Both."),
        tool_block(1, "toolu_1", "bmcp_fs_read", '{"path": "a.py"}'),
        tool_block(2, "toolu_2", "Bash", '{"command": "ls"}'),
        stop_reason="tool_use",
    )
    played = play(mixed)
    assert played.turns[0].next is Next.FINAL
    pairs = played.client_events()
    starts = [data for name, data in pairs if name == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"], s["content_block"].get("name")) for s in starts] == [
        (0, "text", None),
        (1, "tool_use", "Bash"),
    ]
    json_parts = [data["delta"]["partial_json"] for name, data in pairs if data.get("index") == 1 and "delta" in data]
    assert "".join(json_parts) == '{"command": "ls"}'
    assert pairs[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert b"bmcp_fs_read" not in played.client_bytes


def test_loop_limit_on_the_last_round_ends_with_the_notice() -> None:
    played = play(CALLS_READ, CALLS_GREP, max_rounds=2)
    assert [t.next for t in played.turns] == [Next.CONTINUE, Next.LIMIT]
    pairs = played.client_events()
    assert kinds(pairs[-5:]) == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    notice = pairs[-4][1]
    assert (notice["index"], notice["delta"]) == (2, {"type": "text_delta", "text": LIMIT_NOTICE.format(rounds=2)})
    assert pairs[-5][1] == {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}
    end = pairs[-2][1]
    assert end["delta"]["stop_reason"] == "end_turn"
    assert (end["usage"]["input_tokens"], end["usage"]["output_tokens"]) == (40, 60)
    assert (end["usage"]["cache_read_input_tokens"], end["usage"]["cache_creation_input_tokens"]) == (300, 12)
    assert [data["content_block"]["type"] for name, data in pairs if name == "content_block_start"] == ["text"] * 3
    assert b"bmcp_fs" not in played.client_bytes


def test_loop_limit_with_one_round_allowed() -> None:
    played = play(CALLS_READ, max_rounds=1)
    assert played.turns[0].next is Next.LIMIT
    pairs = played.client_events()
    assert pairs[0][1]["message"]["id"] == "msg_1"
    assert [data["index"] for _, data in pairs if "index" in data] == [0, 0, 0, 1, 1, 1]
    assert pairs[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert pairs[-2][1]["usage"]["output_tokens"] == 20


def test_loop_turn_assistant_holds_the_whole_round() -> None:
    round_ = a_round(
        "msg_1",
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""})
        + delta(0, {"type": "thinking_delta", "thinking": "Read "})
        + delta(0, {"type": "thinking_delta", "thinking": "it."})
        + delta(0, {"type": "signature_delta", "signature": "sig-abc"})
        + block_stop(0),
        block_start(1, {"type": "redacted_thinking", "data": "opaque"}) + block_stop(1),
        text_block(2, "Reading."),
        tool_block(3, "toolu_1", "bmcp_fs_read", '{"path": "a.py"}'),
        tool_block(4, "toolu_2", "bmcp_fs_grep", "{}"),
        block_start(5, {"type": "tool_use", "id": "toolu_3", "name": "bmcp_fs_grep", "input": {}}),
        stop_reason="tool_use",
    )
    turn = play(round_, ANSWERS).turns[0]
    assert turn.assistant == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Read it.", "signature": "sig-abc"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "bmcp_fs_read", "input": {"path": "a.py"}},
            {"type": "tool_use", "id": "toolu_2", "name": "bmcp_fs_grep", "input": {}},
            {"type": "tool_use", "id": "toolu_3", "name": "bmcp_fs_grep", "input": {}},
        ],
    }


def test_loop_turn_assistant_gives_unparsable_input_as_an_empty_object() -> None:
    round_ = a_round("msg_1", tool_block(0, "toolu_1", "bmcp_fs_read", '{"path": "a.'), stop_reason="tool_use")
    turn = play(round_, ANSWERS).turns[0]
    assert turn.tool_calls == [ToolCall("toolu_1", "bmcp_fs_read", '{"path": "a.')]
    assert turn.assistant is not None
    assert turn.assistant["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "bmcp_fs_read", "input": {}}]


def test_loop_upstream_error_event_is_relayed_and_sets_the_error() -> None:
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    broken = message_start("msg_2", 1, 0, 0) + text_block(0, "Half") + error
    played = play(CALLS_READ, broken)
    assert played.outs[1][-1] == error
    turn = played.turns[1]
    assert turn.error == "overloaded_error: Overloaded"
    assert turn.next is Next.FINAL
    assert kinds(played.client_events())[-1] == "error"


def test_loop_events_the_parser_cannot_read_are_relayed() -> None:
    odd = b": comment\n\n" + sse("unknown", "not json {") + sse("x", "[1, 2]") + PING
    played = play(CALLS_READ, a_round("msg_2", odd, text_block(0, "Done."), stop_reason="end_turn"))
    assert played.outs[1][1:5] == [e.raw for e in events_of(odd)]


def test_loop_renumbered_event_with_multiline_data_stays_valid_sse() -> None:
    """SSE lets `data` span lines (joined by a newline, which JSON reads as whitespace); a renumbered event
    must still be one valid event."""
    start = (
        b'event: content_block_start\ndata: {"type": "content_block_start",\ndata:  "index": 0,\n'
        b'data:  "content_block": {"type": "text", "text": ""}}\n\n'
    )
    text = start + delta(0, {"type": "text_delta", "text": "Done."}) + block_stop(0)
    played = play(CALLS_READ, a_round("msg_2", text, stop_reason="end_turn"))
    (event,) = events_of(played.outs[1][1])
    assert json.loads(event.data) == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "text", "text": ""},
    }


def test_loop_parser_of_a_whole_body_decides_and_keeps_the_content_verbatim() -> None:
    parser = WIRE.loop_parser(LoopState(INJECTED, 8))
    parser.feed_body(json.dumps(ROUND_BODIES[0]).encode())
    turn = parser.turn()
    assert turn.next is Next.CONTINUE
    assert turn.assistant == {"role": "assistant", "content": ROUND_BODIES[0]["content"]}

    parser = WIRE.loop_parser(LoopState(INJECTED, 8))
    parser.feed_body(json.dumps(ROUND_BODIES[1]).encode())
    assert parser.turn().next is Next.FINAL  # mixed

    parser = WIRE.loop_parser(LoopState(INJECTED, 1))
    parser.feed_body(json.dumps(ROUND_BODIES[0]).encode())
    assert parser.turn().next is Next.LIMIT


# --- the tool results a request carries -------------------------------------------------------------------------


def test_tool_results_are_the_last_user_turns_from_claude_codes_real_requests() -> None:
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "clients"
    body = json.loads((fixtures / "claude-code-main-3.json").read_text())["body"]
    read, bash = AnthropicMessages().parse_request(body).tool_results
    assert (read.is_error, read.text.splitlines()[0]) == (False, "1\t# widgets")  # no is_error key: not an error
    assert (bash.is_error, bash.text.splitlines()[0]) == (True, "Exit code 1")
    agent_body = json.loads((fixtures / "claude-code-main-2.json").read_text())["body"]
    (agent,) = AnthropicMessages().parse_request(agent_body).tool_results
    assert agent.call_id.startswith("toolu_agent") and "agentId:" in agent.text  # content as a list of blocks
    assert agent.size == len(agent.text.encode())


def test_tool_results_of_earlier_turns_are_not_carried_again() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "été"}]}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    history = [
        {"role": "user", "content": [result]},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "next"},
    ]
    assert AnthropicMessages().parse_request({"messages": history}).tool_results == ()
    latest = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": [image]}]}]
    (shot,) = AnthropicMessages().parse_request({"messages": latest}).tool_results
    assert (shot.call_id, shot.text, shot.size) == ("toolu_2", "[image]", len(json.dumps(image, separators=(",", ":"))))
    (text,) = AnthropicMessages().parse_request({"messages": history[:1]}).tool_results
    assert (text.text, text.size, text.is_error) == ("été", 5, False)
    odd = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 7}, {"type": "tool_result"}, "x"]}]
    assert AnthropicMessages().parse_request({"messages": odd}).tool_results == ()
