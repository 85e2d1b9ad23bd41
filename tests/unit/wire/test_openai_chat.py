"""OpenAI /v1/chat/completions: request facts, streamed and whole responses, error shapes."""

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from addon.wire.base import LIMIT_NOTICE, LoopState, Next, Thought, ToolCall, Turn, Usage, dumps, tool_names
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


def test_parse_request_reads_what_the_loop_and_budgets_need() -> None:
    tools = [{"type": "function", "function": {"name": "ls"}}, {"type": "function", "function": {}}]
    body = {"model": "gpt-4o", "max_completion_tokens": 300, "tools": tools}
    info = WIRE.parse_request(body)
    assert (info.max_output, tool_names(body), info.takes_tools) == (300, frozenset({"ls"}), True)
    assert WIRE.parse_request({"max_tokens": 5, "max_completion_tokens": 300}).max_output == 5
    assert WIRE.parse_request({"n": 1}).takes_tools and not WIRE.parse_request({"n": 3}).takes_tools


@pytest.mark.parametrize(
    ("event", "data", "ends"),
    [(None, "[DONE]", True), (None, ' {"error": {"message": "x"}}', True), ("error", "{}", True), (None, "{}", False)],
)
def test_ends_stream(event: str | None, data: str, ends: bool) -> None:
    assert WIRE.ends_stream(SSEEvent(b"", event or "", data)) is ends


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


# --- the tool loop: injecting, continuing, merging -------------------------------------------------------

INJECTED = frozenset({"bmcp_fs_read", "bmcp_fs_grep"})


@dataclass(frozen=True)
class Spec:
    name: str
    description: str = "an injected tool"
    input_schema: dict = field(default_factory=lambda: {"type": "object", "properties": {"path": {"type": "string"}}})


def function_tool(spec: Spec) -> bytes:
    tool = {"type": "function", "function": {"name": spec.name, "description": spec.description}}
    tool["function"]["parameters"] = spec.input_schema
    return json.dumps(tool, separators=(",", ":")).encode()


CLIENT_BODY = (
    b'{"model": "gpt-4o",  "stream": true,\n'
    b' "tools": [{"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}}],\n'
    b' "messages": [{"role": "user", "content": "read a.py \\u00e9"}]}'
)


def test_inject_tools_appends_function_tools_and_changes_nothing_else() -> None:
    specs = [Spec("bmcp_fs_read"), Spec("bmcp_fs_grep", "search", {"type": "object"})]
    out = WIRE.inject_tools(CLIENT_BODY, specs)
    client_tools_end = CLIENT_BODY.index(b"}}}]") + 3
    added = b"," + function_tool(specs[0]) + b"," + function_tool(specs[1])
    assert out == CLIENT_BODY[:client_tools_end] + added + CLIENT_BODY[client_tools_end:]
    assert [t["function"]["name"] for t in json.loads(out)["tools"]] == ["shell", "bmcp_fs_read", "bmcp_fs_grep"]


def test_inject_tools_creates_the_tools_array() -> None:
    raw = b'{"model": "m", "messages": []}'
    out = WIRE.inject_tools(raw, [Spec("bmcp_fs_read")])
    assert out == raw[:-1] + b',"tools":[' + function_tool(Spec("bmcp_fs_read")) + b"]}"


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


def test_next_request_appends_the_assistant_message_and_one_tool_message_per_result() -> None:
    assistant = {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "bmcp_fs_read", "arguments": '{"path":"a.py"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "bmcp_fs_grep", "arguments": "{}"}},
        ],
    }
    results = [
        (ToolCall("call_1", "bmcp_fs_read", '{"path":"a.py"}'), Output((Text("print(1)"), Image("image/png", "AAAA")))),
        (ToolCall("call_2", "bmcp_fs_grep", "{}"), Output((Text("no pattern"),), is_error=True)),
    ]
    out = WIRE.next_request(CLIENT_BODY, Turn(assistant=assistant), results)
    tool_messages = [
        {"role": "tool", "tool_call_id": "call_1", "content": "print(1)\n[image image/png, 3 bytes, not shown]"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Tool error: no pattern"},
    ]
    close = CLIENT_BODY.rindex(b"]")
    added = b"".join(b"," + dumps(m).encode() for m in [assistant, *tool_messages])
    assert out == CLIENT_BODY[:close] + added + CLIENT_BODY[close:]
    assert json.loads(out)["messages"][1:] == [assistant, *tool_messages]


def completion(chat_id: str, message: dict, finish: str, usage: dict) -> dict:
    return {
        "id": chat_id,
        "object": "chat.completion",
        "model": "gpt-4o-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage,
    }


def usage_of(prompt: int, completion: int, cached: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def function_call(call_id: str, name: str, arguments: str = "{}") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


ROUND_BODIES = [
    completion(
        "chatcmpl-1",
        {"content": "Let me look. ", "tool_calls": [function_call("call_1", "bmcp_fs_read")]},
        "tool_calls",
        usage_of(100, 20, 60),
    ),
    completion(
        "chatcmpl-2",
        {
            "content": "Running it.",
            "tool_calls": [function_call("call_2", "bmcp_fs_grep"), function_call("call_3", "shell", '{"cmd":"ls"}')],
        },
        "tool_calls",
        usage_of(200, 30, 150),
    ),
]


def merged_state(bodies: list[dict]) -> LoopState:
    state = LoopState(INJECTED, 8, round=len(bodies))
    for body in bodies:
        state.add_usage(to_usage(body["usage"]))
    return state


def test_merge_rounds_joins_texts_keeps_client_calls_and_sums_usage() -> None:
    merged = json.loads(WIRE.merge_rounds(ROUND_BODIES, merged_state(ROUND_BODIES), limited=False))
    assert merged["id"] == "chatcmpl-1"
    (choice,) = merged["choices"]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "Let me look. Running it.",
            "tool_calls": [function_call("call_3", "shell", '{"cmd":"ls"}')],
        },
        "finish_reason": "tool_calls",
    }
    assert merged["usage"] == {
        "prompt_tokens": 300,
        "completion_tokens": 50,
        "total_tokens": 350,
        "prompt_tokens_details": {"cached_tokens": 210},
    }


def test_merge_rounds_limited_adds_the_notice_and_stops() -> None:
    again = {"content": None, "tool_calls": [function_call("call_9", "bmcp_fs_grep")]}
    bodies = [ROUND_BODIES[0], completion("chatcmpl-2", again, "tool_calls", usage_of(10, 5, 0))]
    merged = json.loads(WIRE.merge_rounds(bodies, merged_state(bodies), limited=True))
    (choice,) = merged["choices"]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "Let me look. " + LIMIT_NOTICE.format(rounds=2)},
        "finish_reason": "stop",
    }
    assert (merged["id"], merged["usage"]["prompt_tokens"], merged["usage"]["completion_tokens"]) == (
        "chatcmpl-1",
        110,
        25,
    )


def test_merge_rounds_without_any_text_gives_null_content() -> None:
    body = completion("chatcmpl-1", {"content": None, "tool_calls": [function_call("c", "bmcp_fs_read")]}, "stop", {})
    merged = json.loads(WIRE.merge_rounds([body], merged_state([]), limited=False))
    assert merged["choices"][0]["message"] == {"role": "assistant", "content": None}


def test_ping_event_is_an_sse_comment() -> None:
    ping = WIRE.ping_event()
    assert ping.startswith(b":") and ping.endswith(b"\n\n")
    parser = SSEParser()
    (event,) = parser.feed(ping)
    assert (event.event, event.data) == ("", "")


# --- the tool loop: a streamed completion, round by round ------------------------------------------------


def call_part(index: int, call_id: str | None = None, name: str | None = None, arguments: str = "") -> dict:
    """One `tool_calls` delta part: the first names the call, later ones carry argument text."""
    if call_id is None:
        return {"index": index, "function": {"arguments": arguments}}
    return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def a_round(chat_id: str, *deltas: dict, finish: str, usage: dict | None, usage_on_finish: bool = False) -> bytes:
    """One upstream completion: its deltas, the finish chunk, the usage chunk (or usage on the finish chunk)."""
    chunks = [chunk([{"index": 0, "delta": d, "finish_reason": None}], id=chat_id) for d in deltas]
    finish_choice = [{"index": 0, "delta": {}, "finish_reason": finish}]
    if usage_on_finish:
        chunks.append(chunk(finish_choice, id=chat_id, usage=usage))
    else:
        chunks.append(chunk(finish_choice, id=chat_id))
        if usage is not None:
            chunks.append(chunk([], id=chat_id, usage=usage))
    return b"".join([*chunks, DONE])


READ_CALL = [
    {"tool_calls": [call_part(0, "call_1", "bmcp_fs_read")]},
    {"tool_calls": [call_part(0, arguments='{"path":')]},
    {"tool_calls": [call_part(0, arguments=' "a.py"}')]},
]
CALLS_READ = a_round(
    "chatcmpl-1",
    {"role": "assistant", "content": "Let me look."},
    *READ_CALL,
    finish="tool_calls",
    usage=usage_of(100, 20, 60),
)
CALLS_GREP = a_round(
    "chatcmpl-2",
    {"role": "assistant", "content": "Now grep."},
    {"tool_calls": [call_part(0, "call_2", "bmcp_fs_grep", '{"q": 1}')]},
    finish="tool_calls",
    usage=usage_of(200, 30, 150),
)
ANSWERS = a_round(
    "chatcmpl-3", {"role": "assistant", "content": "It prints 1."}, finish="stop", usage=usage_of(300, 40, 250)
)


@dataclass
class Played:
    state: LoopState
    events: list[list[SSEEvent]] = field(default_factory=list)
    outs: list[list[bytes | None]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    @property
    def client_bytes(self) -> bytes:
        return b"".join(out for outs in self.outs for out in outs if out is not None)

    def client_chunks(self) -> list[Any]:
        """The client's stream: each chunk's JSON, or "[DONE]"."""
        return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in events_of(self.client_bytes)]


def play(*rounds: bytes, max_rounds: int = 8, wants_usage: bool = True) -> Played:
    """Feed rounds the way the engine does: one parser per round, usage added and the round counted between."""
    played = Played(LoopState(INJECTED, max_rounds, client_wants_usage=wants_usage))
    for number, stream in enumerate(rounds, 1):
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


def texts(chunks: list[Any]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c != "[DONE]" and c["choices"] and c["choices"][0]["delta"].get("content")
    ]


def client_calls(chunks: list[Any]) -> list[dict]:
    return [
        part
        for c in chunks
        if c != "[DONE]"
        for choice in c["choices"]
        for part in choice["delta"].get("tool_calls", [])
    ]


CLIENT_CALLS = a_round(
    "chatcmpl-1",
    {"role": "assistant", "content": None},
    {"tool_calls": [call_part(0, "call_a", "read", '{"path": "a.py"}')]},
    {"tool_calls": [call_part(1, "call_b", "grep", "")]},
    {"tool_calls": [call_part(1, arguments='{"q": 1}')]},
    finish="tool_calls",
    usage=usage_of(100, 20, 60),
)


@pytest.mark.parametrize("stream", [CLIENT_CALLS, ANSWERS], ids=["client-tools", "text"])
def test_loop_final_first_round_is_relayed_byte_identical(stream: bytes) -> None:
    played = play(stream)
    assert played.turns[0].next is Next.FINAL
    assert played.outs[0] == [e.raw for e in played.events[0]]


def test_loop_client_call_indexes_are_numbered_from_zero() -> None:
    played = play(STREAM)  # the upstream numbered its calls from 1
    calls = client_calls(played.client_chunks())
    assert [(c["index"], c.get("id")) for c in calls] == [(0, "call_a"), (1, "call_b"), (0, None), (0, None), (1, None)]
    assert played.turns[0].tool_calls == [
        ToolCall("call_a", "read", '{"path":"a.py"}'),
        ToolCall("call_b", "grep", '{"q":1}'),
    ]


def test_loop_final_first_round_hides_only_the_usage_chunk_the_client_did_not_ask_for() -> None:
    played = play(ANSWERS, wants_usage=False)
    assert played.outs[0] == [None if b'"choices": []' in e.raw else e.raw for e in played.events[0]]
    assert played.outs[0].count(None) == 1


def test_loop_continuing_round_shows_only_its_text() -> None:
    played = play(CALLS_READ, ANSWERS)
    assert played.turns[0].next is Next.CONTINUE
    assert [out for out in played.outs[0] if out is not None] == [played.events[0][0].raw]
    assert played.turns[0].tool_calls == [ToolCall("call_1", "bmcp_fs_read", '{"path": "a.py"}')]


def test_loop_client_sees_one_completion_across_rounds() -> None:
    played = play(CALLS_READ, CALLS_GREP, ANSWERS)
    chunks = played.client_chunks()
    assert texts(chunks) == ["Let me look.", "Now grep.", "It prints 1."]
    assert client_calls(chunks) == []
    assert {c["id"] for c in chunks if c != "[DONE]"} == {"chatcmpl-1"}
    finishes = [ch["finish_reason"] for c in chunks if c != "[DONE]" for ch in c["choices"] if ch["finish_reason"]]
    assert finishes == ["stop"]
    assert chunks.count("[DONE]") == 1 and chunks[-1] == "[DONE]"
    assert [t.next for t in played.turns] == [Next.CONTINUE, Next.CONTINUE, Next.FINAL]


def test_loop_later_rounds_take_the_first_rounds_id_and_nothing_else_changes() -> None:
    played = play(CALLS_READ, ANSWERS)
    for event, out in zip(played.events[1][:2], played.outs[1][:2], strict=True):
        assert out is not None
        assert json.loads(out[len(b"data: ") :]) == {**json.loads(event.data), "id": "chatcmpl-1"}


def test_loop_final_usage_chunk_sums_the_rounds_when_the_client_asked() -> None:
    played = play(CALLS_READ, CALLS_GREP, ANSWERS)
    (usage_chunk,) = [c for c in played.client_chunks() if c != "[DONE]" and c.get("usage")]
    assert usage_chunk["choices"] == [] and usage_chunk["id"] == "chatcmpl-1"
    assert usage_chunk["usage"] == {
        "prompt_tokens": 600,
        "completion_tokens": 90,
        "total_tokens": 690,
        "prompt_tokens_details": {"cached_tokens": 460},
    }


def test_loop_usage_chunks_are_hidden_when_the_client_did_not_ask() -> None:
    played = play(CALLS_READ, ANSWERS, wants_usage=False)
    assert b"prompt_tokens" not in played.client_bytes
    assert played.state.usage.input == 40 + 50  # recorded all the same


def test_loop_usage_on_a_choices_chunk_is_stripped_when_continuing_and_summed_when_final() -> None:
    """Some providers put usage on the finish chunk, which has choices, instead of a usage-only chunk."""
    finish_with_text = [{"index": 0, "delta": {"content": " Reading."}, "finish_reason": "tool_calls"}]
    first = b"".join(
        [
            chunk([{"index": 0, "delta": {"content": "Let me look."}}], id="chatcmpl-1"),
            chunk([{"index": 0, "delta": READ_CALL[0]}], id="chatcmpl-1"),
            chunk(finish_with_text, id="chatcmpl-1", usage=usage_of(100, 20, 60)),
            DONE,
        ]
    )
    last = a_round(
        "chatcmpl-2", {"content": "Done."}, finish="stop", usage=usage_of(300, 40, 250), usage_on_finish=True
    )
    played = play(first, last)
    assert played.turns[0].next is Next.CONTINUE
    chunks = [c for c in played.client_chunks() if c != "[DONE]"]
    assert texts(chunks) == ["Let me look.", " Reading.", "Done."]
    assert chunks[1]["choices"][0]["finish_reason"] is None
    assert chunks[1]["usage"] is None
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 400,
        "completion_tokens": 60,
        "total_tokens": 460,
        "prompt_tokens_details": {"cached_tokens": 310},
    }


def test_loop_injected_and_client_calls_in_one_chunk() -> None:
    mixed = a_round(
        "chatcmpl-1",
        {"tool_calls": [call_part(0, "call_1", "bmcp_fs_read"), call_part(1, "call_2", "shell")]},
        {"tool_calls": [call_part(0, arguments='{"path": "a.py"}'), call_part(1, arguments='{"cmd": "ls"}')]},
        {"tool_calls": [call_part(0, arguments="")]},
        finish="tool_calls",
        usage=usage_of(100, 20, 60),
    )
    played = play(mixed)
    assert played.turns[0].next is Next.FINAL
    outs = played.outs[0]
    assert outs[2] is None  # only the injected call's arguments
    assert client_calls(played.client_chunks()) == [
        {**call_part(1, "call_2", "shell"), "index": 0},
        {**call_part(1, arguments='{"cmd": "ls"}'), "index": 0},
    ]
    assert outs[3:] == [e.raw for e in played.events[0][3:]]  # finish_reason tool_calls, usage, [DONE]
    assert b"bmcp_fs_read" not in played.client_bytes


def test_loop_client_call_indexes_count_from_zero_past_hidden_calls() -> None:
    mixed = a_round(
        "chatcmpl-1",
        {"tool_calls": [call_part(0, "call_1", "bmcp_fs_read", "{}")]},
        {"tool_calls": [call_part(1, "call_2", "shell", "{}")]},
        {"tool_calls": [call_part(2, "call_3", "bmcp_fs_grep", "{}")]},
        {"tool_calls": [call_part(3, "call_4", "edit", "{}")]},
        finish="tool_calls",
        usage=None,
    )
    calls = client_calls(play(mixed).client_chunks())
    assert [(c["index"], c["id"]) for c in calls] == [(0, "call_2"), (1, "call_4")]


def test_loop_limit_on_the_last_round_ends_with_the_notice() -> None:
    played = play(CALLS_READ, CALLS_GREP, max_rounds=2)
    assert [t.next for t in played.turns] == [Next.CONTINUE, Next.LIMIT]
    chunks = played.client_chunks()
    assert texts(chunks) == ["Let me look.", "Now grep.", LIMIT_NOTICE.format(rounds=2)]
    notice = next(c for c in chunks if c != "[DONE]" and c["choices"] and c["choices"][0]["finish_reason"])
    assert notice["id"] == "chatcmpl-1"
    assert notice["choices"][0]["finish_reason"] == "stop"
    assert client_calls(chunks) == []
    assert chunks.count("[DONE]") == 1 and chunks[-1] == "[DONE]"
    assert chunks[-2]["usage"]["prompt_tokens"] == 300


def test_loop_turn_assistant_holds_the_round() -> None:
    round_ = a_round(
        "chatcmpl-1",
        {"role": "assistant", "content": "Let me "},
        {"content": "look."},
        *READ_CALL,
        {"tool_calls": [call_part(1, "call_2", "bmcp_fs_grep", '{"q": ')]},
        finish="tool_calls",
        usage=None,
    )
    turn = play(round_, ANSWERS).turns[0]
    assert turn.assistant == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            function_call("call_1", "bmcp_fs_read", '{"path": "a.py"}'),
            function_call("call_2", "bmcp_fs_grep", "{}"),  # invalid JSON: sent back as an empty object
        ],
    }


def test_loop_turn_assistant_without_text_has_null_content() -> None:
    round_ = a_round("chatcmpl-1", {"role": "assistant", "content": None}, *READ_CALL, finish="tool_calls", usage=None)
    assert play(round_, ANSWERS).turns[0].assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [function_call("call_1", "bmcp_fs_read", '{"path": "a.py"}')],
    }


def test_loop_error_chunk_in_a_later_round_is_relayed_and_sets_the_error() -> None:
    error = b'data: {"error":{"message":"overloaded","type":"server_error","code":null}}\n\n'
    played = play(CALLS_READ, chunk([{"index": 0, "delta": {"content": "Half"}}], id="chatcmpl-2") + error)
    assert played.outs[1][-1] == error
    assert played.turns[1].error == "server_error: overloaded"
    assert played.turns[1].next is Next.FINAL


def test_loop_parser_of_a_whole_body_decides_and_builds_the_assistant_message() -> None:
    parser = WIRE.loop_parser(LoopState(INJECTED, 8))
    parser.feed_body(json.dumps(ROUND_BODIES[0]).encode())
    turn = parser.turn()
    assert turn.next is Next.CONTINUE
    assert turn.assistant == {
        "role": "assistant",
        "content": "Let me look. ",
        "tool_calls": [function_call("call_1", "bmcp_fs_read")],
    }

    parser = WIRE.loop_parser(LoopState(INJECTED, 8))
    parser.feed_body(json.dumps(ROUND_BODIES[1]).encode())
    assert parser.turn().next is Next.FINAL  # mixed

    parser = WIRE.loop_parser(LoopState(INJECTED, 1))
    parser.feed_body(json.dumps(ROUND_BODIES[0]).encode())
    assert parser.turn().next is Next.LIMIT


def test_text_deltas_skip_the_decode_but_nothing_the_audit_keeps_is_missed() -> None:
    """After the first chunk, plain text deltas are relayed undecoded; spacing variants of what matters still
    parse (a provider that pretty-prints its chunks)."""
    spaced = (
        b'data: {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason" : "length"}],'
        b' "usage" : {"prompt_tokens": 5, "completion_tokens": 7}}\n\n'
    )
    stream = delta({"content": "a"}) + delta({"content": "b"}, finish=None) + spaced + DONE
    parser, _, relayed = run(stream)
    turn = parser.turn()
    assert turn.stop_reason == "length"
    assert turn.usage is not None and (turn.usage.input, turn.usage.output) == (5, 7)
    assert b"".join(r for r in relayed if r is not None) == stream


def test_tool_results_are_the_tool_messages_after_the_last_assistant_message() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "call_old"}]},
        {"role": "tool", "tool_call_id": "call_old", "content": "old"},
        {"role": "assistant", "tool_calls": [{"id": "call_a"}, {"id": "call_b"}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "a.py"},
        {"role": "system", "content": "a reminder between"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "b"}, {"type": "image_url"}]},
        {"role": "user", "content": [{"type": "image_url"}]},  # a client's screenshot after the results
    ]
    results = OpenAIChat().parse_request({"messages": messages}).tool_results
    assert [(r.call_id, r.is_error, r.text) for r in results] == [
        ("call_a", None, "a.py"),
        ("call_b", None, "b\n[image_url]"),
    ]
    assert OpenAIChat().parse_request({"messages": messages[:2]}).tool_results == ()
    assert OpenAIChat().parse_request({"messages": "x"}).tool_results == ()
