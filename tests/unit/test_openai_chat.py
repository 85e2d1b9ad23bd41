"""OpenAI /v1/chat/completions: request facts, streamed and whole responses, error shapes."""

import json
from typing import Any

import pytest

from addon.wire.base import Thought, ToolCall, Usage
from addon.wire.openai_chat import ChatParser, OpenAIChat, correlating_tool_call_id, extract_prompt, to_usage
from addon.wire.sse import SSEEvent, SSEParser

WIRE = OpenAIChat()


def chunk(choices: list | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o", **extra}
    if choices is not None:
        body["choices"] = choices
    return f"data: {json.dumps(body)}\n\n".encode()


def delta(d: dict, index: int = 0, finish: str | None = None) -> bytes:
    return chunk([{"index": index, "delta": d, "finish_reason": finish}])


def events_of(stream: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events = parser.feed(stream)
    assert parser.close() is None
    return events


USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "total_tokens": 120,
    "prompt_tokens_details": {"cached_tokens": 80, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 12, "accepted_prediction_tokens": 0},
}
USAGE_CHUNK = chunk([], usage=USAGE)
DONE = b"data: [DONE]\n\n"

STREAM = b"".join(
    [
        delta({"role": "assistant", "content": None, "reasoning_content": "Think "}),
        delta({"reasoning_content": "hard."}),
        delta(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_a", "type": "function", "function": {"name": "read", "arguments": ""}}
                ]
            }
        ),
        delta(
            {
                "tool_calls": [
                    {"index": 2, "id": "call_b", "type": "function", "function": {"name": "grep", "arguments": '{"q"'}}
                ]
            }
        ),
        delta({"tool_calls": [{"index": 1, "function": {"arguments": '{"path":'}}]}),
        delta(
            {
                "tool_calls": [
                    {"index": 1, "function": {"arguments": '"a.py"}'}},
                    {"index": 2, "function": {"arguments": ":1}"}},
                ]
            }
        ),
        delta({}, finish="tool_calls"),
        USAGE_CHUNK,
        DONE,
    ]
)


def run(stream: bytes, **kw: bool) -> tuple[ChatParser, list[SSEEvent], list[bytes | None]]:
    parser = ChatParser(**kw)
    events = events_of(stream)
    return parser, events, [parser.feed_event(e) for e in events]


# --- request facts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "hello"}], "hello"),
        ([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}], "hello"),
        (
            [
                {"role": "user", "content": "old"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "new"}, {"type": "image_url", "image_url": {}}]},
            ],
            "new",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "<environment_context>cwd=/x</environment_context>"},
                        {"type": "text", "text": "run the tests"},
                    ],
                }
            ],
            "run the tests",
        ),
        # system / developer entries after the user turn are skipped
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "developer", "content": "d"},
                {"role": "system", "content": "s"},
            ],
            "hi",
        ),
        # assistant prefill
        ([{"role": "user", "content": "write JSON"}, {"role": "assistant", "content": "{"}], "write JSON"),
        # a trailing tool message: the prompt belonged to an earlier interception
        (
            [
                {"role": "user", "content": "list files"},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "ls"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a.py"},
            ],
            None,
        ),
        ([{"role": "user", "content": None}], None),
        ([{"role": "user", "content": "  "}], None),
        ([{"role": "system", "content": "only system"}], None),
        ([], None),
        ("nope", None),
    ],
)
def test_extract_prompt(messages: Any, expected: str | None) -> None:
    assert extract_prompt({"model": "m", "messages": messages}) == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [
                {"role": "user", "content": "go"},
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "tool", "tool_call_id": "call_2", "content": "y"},
            ],
            "call_2",
        ),
        ([{"role": "tool", "tool_call_id": "call_1"}, {"role": "system", "content": "s"}], "call_1"),
        ([{"role": "tool", "tool_call_id": "call_1"}, {"role": "user", "content": "next"}], None),
        ([{"role": "tool", "tool_call_id": 3}], None),
        ([], None),
    ],
)
def test_correlating_tool_call_id(messages: list, expected: str | None) -> None:
    assert correlating_tool_call_id({"messages": messages}) == expected


def test_parse_request() -> None:
    info = WIRE.parse_request({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "q"}]})
    assert (info.model, info.stream, info.prompt, info.correlating_tool_call_id) == ("gpt-4o", True, "q", None)
    assert WIRE.parse_request({"stream": "true"}).stream is False


# --- usage -----------------------------------------------------------------------------------------------


def test_usage_input_excludes_cached_tokens() -> None:
    usage = to_usage(USAGE)
    assert (usage.input, usage.output, usage.cache_read, usage.cache_write) == (20, 20, 80, 0)
    assert usage.extra["reasoning"] == 12
    assert usage.extra["completion_reasoning_tokens"] == 12
    assert "prompt_cached_tokens" not in usage.extra
    assert "prompt_audio_tokens" not in usage.extra  # zero breakdowns are left out


def test_usage_without_details() -> None:
    assert to_usage({"prompt_tokens": 5, "completion_tokens": 2}) == Usage(input=5, output=2)


def test_usage_cached_above_prompt_never_goes_negative() -> None:
    assert to_usage({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}).input == 0


# --- streamed responses ----------------------------------------------------------------------------------


def test_stream_with_parallel_tool_calls() -> None:
    parser, _, _ = run(STREAM)
    turn = parser.turn()
    assert (turn.response_id, turn.model, turn.stop_reason, turn.error) == ("chatcmpl-1", "gpt-4o", "tool_calls", None)
    assert turn.tool_calls == [ToolCall("call_a", "read", '{"path":"a.py"}'), ToolCall("call_b", "grep", '{"q":1}')]
    assert turn.thoughts == [Thought("Think hard.", "reasoning")]
    assert turn.usage is not None
    assert (turn.usage.input, turn.usage.output, turn.usage.cache_read) == (20, 20, 80)
    assert turn.usage.extra["reasoning"] == 12


def test_tool_call_parts_without_index_use_their_position() -> None:
    stream = delta(
        {
            "tool_calls": [
                {"id": "call_x", "function": {"name": "a", "arguments": "{}"}},
                {"id": "call_y", "function": {"name": "b", "arguments": "[]"}},
            ]
        }
    )
    assert run(stream)[0].turn().tool_calls == [ToolCall("call_x", "a", "{}"), ToolCall("call_y", "b", "[]")]


def test_reasoning_key_variant() -> None:
    stream = delta({"reasoning": "a"}) + delta({"reasoning": "b"}) + delta({"content": "answer"})
    assert run(stream)[0].turn().thoughts == [Thought("ab", "reasoning")]


def test_stream_without_usage() -> None:
    parser, _, _ = run(delta({"content": "hi"}, finish="stop") + DONE)
    turn = parser.turn()
    assert turn.usage is None
    assert turn.stop_reason == "stop"


def test_last_usage_counts() -> None:
    stream = chunk([], usage={"prompt_tokens": 1, "completion_tokens": 1}) + chunk(
        [], usage={"prompt_tokens": 9, "completion_tokens": 4}
    )
    usage = run(stream)[0].turn().usage
    assert usage is not None and (usage.input, usage.output) == (9, 4)


def test_usage_chunk_is_relayed_by_default() -> None:
    _, events, out = run(STREAM)
    assert out == [e.raw for e in events]


def test_usage_chunk_is_hidden_only_when_asked() -> None:
    parser, events, out = run(STREAM, hide_usage_chunk=True)
    expected = [None if e.raw == USAGE_CHUNK else e.raw for e in events]
    assert out == expected
    assert out.count(None) == 1
    assert out[-1] == DONE
    assert parser.turn().usage is not None  # recorded though hidden


def test_usage_on_a_chunk_with_choices_is_never_hidden() -> None:
    raw = chunk(
        [{"index": 0, "delta": {}, "finish_reason": "stop"}], usage={"prompt_tokens": 1, "completion_tokens": 1}
    )
    _, _, out = run(raw, hide_usage_chunk=True)
    assert out == [raw]


def test_null_usage_chunks_are_relayed_when_hiding() -> None:
    raw = chunk([{"index": 0, "delta": {"content": "x"}}], usage=None) + chunk([], usage=None)
    _, events, out = run(raw, hide_usage_chunk=True)
    assert out == [e.raw for e in events]


def test_done_and_odd_events_are_relayed() -> None:
    stream = DONE + b": comment\n\n" + b"data: {not json\n\n" + b"data: [1]\n\n" + b"event: x\n\n"
    _, events, out = run(stream, hide_usage_chunk=True)
    assert out == [e.raw for e in events]


def test_error_chunk_sets_turn_error() -> None:
    error = b'data: {"error":{"message":"Rate limit reached","type":"rate_limit_exceeded","code":null}}\n\n'
    parser, _, out = run(delta({"content": "x"}) + error)
    assert parser.turn().error == "rate_limit_exceeded: Rate limit reached"
    assert out[-1] == error


def test_error_chunk_with_code_only() -> None:
    parser, _, _ = run(b'data: {"error":{"code":"server_error","message":"boom"}}\n\n')
    assert parser.turn().error == "server_error: boom"


# --- prepare_request -------------------------------------------------------------------------------------


def prepare(raw: bytes) -> tuple[bytes, ChatParser]:
    out, hide = WIRE.prepare_request(raw, json.loads(raw))
    return out, WIRE.parser(hide_usage_chunk=hide)


def hides_usage(parser: ChatParser) -> bool:
    (event,) = events_of(USAGE_CHUNK)
    return parser.feed_event(event) is None


def test_stream_without_options_asks_for_usage() -> None:
    raw = b'{"model": "gpt-4o",\n "stream": true, "messages": [{"role":"user","content":"hi \\u00e9"}]}'
    out, parser = prepare(raw)
    assert out == raw[:-1] + b',"stream_options":{"include_usage":true}}'
    assert json.loads(out)["stream_options"] == {"include_usage": True}
    assert hides_usage(parser)


def test_other_stream_options_are_kept() -> None:
    raw = b'{"stream": true, "stream_options": {"continuous_usage_stats": true}, "model": "m"}'
    out, parser = prepare(raw)
    assert out == raw.replace(
        b'{"continuous_usage_stats": true}', b'{"continuous_usage_stats":true,"include_usage":true}'
    )
    assert hides_usage(parser)


def test_include_usage_false_is_overridden_and_hidden() -> None:
    raw = b'{"stream":true,"stream_options":{"include_usage":false}}'
    out, parser = prepare(raw)
    assert out == b'{"stream":true,"stream_options":{"include_usage":true}}'
    assert hides_usage(parser)


def test_client_that_asked_for_usage_is_left_alone() -> None:
    raw = b'{"stream": true, "stream_options": {"include_usage": true}}'
    out, parser = prepare(raw)
    assert out == raw
    assert not hides_usage(parser)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "m", "messages": []}',
        b'{"stream": false}',
        b'{"stream": "true"}',
        b'{"stream": 1, "stream_options": null}',
    ],
)
def test_non_stream_requests_are_left_alone(raw: bytes) -> None:
    out, parser = prepare(raw)
    assert out == raw
    assert not hides_usage(parser)


def test_unspliceable_body_is_sent_as_is() -> None:
    raw = b'\xef\xbb\xbf{"stream": true}'  # a UTF-8 BOM: json.loads copes, the splicer does not
    out, hide = WIRE.prepare_request(raw, {"stream": True})
    parser = WIRE.parser(hide_usage_chunk=hide)
    assert out == raw
    assert not hides_usage(parser)


# --- whole responses -------------------------------------------------------------------------------------


def test_blocking_body() -> None:
    body = {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": "gpt-4o-2024",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "thinking...",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
                        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": {"b": 2}}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}},
    }
    parser = ChatParser()
    parser.feed_body(json.dumps(body).encode())
    turn = parser.turn()
    assert (turn.response_id, turn.model, turn.stop_reason, turn.error) == (
        "chatcmpl-2",
        "gpt-4o-2024",
        "tool_calls",
        None,
    )
    assert turn.usage == Usage(input=6, output=5, cache_read=4)
    assert turn.tool_calls == [ToolCall("call_1", "f", '{"a": 1}'), ToolCall("call_2", "g", '{"b":2}')]
    assert turn.thoughts == [Thought("thinking...", "reasoning")]


def test_blocking_error_body() -> None:
    parser = ChatParser()
    parser.feed_body(b'{"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}}')
    assert parser.turn().error == "invalid_request_error: bad key"


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b"\xff"])
def test_blocking_garbage_body(body: bytes) -> None:
    parser = ChatParser()
    parser.feed_body(body)
    turn = parser.turn()
    assert (turn.response_id, turn.usage, turn.tool_calls, turn.error) == (None, None, [], None)


# --- error shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (429, "rate_limit_exceeded"),
        (422, "invalid_request_error"),
        (500, "server_error"),
        (502, "server_error"),
        (504, "server_error"),
    ],
)
def test_error_body(status: int, kind: str) -> None:
    body = json.loads(WIRE.error_body(status, "nope: é"))
    assert body == {"error": {"message": "nope: é", "type": kind, "param": None, "code": None}}


def test_error_event() -> None:
    raw = WIRE.error_event("upstream went away")
    (event,) = events_of(raw)
    assert event.raw == raw and event.event == ""
    assert json.loads(event.data)["error"]["type"] == "server_error"
    parser = ChatParser()
    assert parser.feed_event(event) == raw
    assert parser.turn().error == "server_error: upstream went away"
