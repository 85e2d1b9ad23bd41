"""Anthropic /v1/messages: request facts, streamed and whole responses, error shapes."""

import json
from typing import Any

import pytest

from addon.wire.anthropic_messages import (
    AnthropicMessages,
    MessagesParser,
    correlating_tool_call_id,
    extract_prompt,
    to_usage,
)
from addon.wire.base import Thought, ToolCall, Usage
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
