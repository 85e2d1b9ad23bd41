"""Gemini's generateContent / streamGenerateContent: request facts, streamed and whole responses, the loop's
steps (tools injected, calls hidden, rounds merged), Code Assist's envelope, error shapes."""

import json
from typing import Any

import pytest

from addon.engine.ports import TextPart, ToolResult
from addon.wire.base import LIMIT_NOTICE, LoopState, Next, Usage, tool_names
from addon.wire.gemini import Gemini, GeminiParser, to_usage
from addon.wire.sse import SSEEvent, SSEParser
from tests.support.loop import ECHO
from tests.support.scenarios import GEMINI_MODEL, gemini_array, gemini_chunks, gemini_response, gemini_sse

WIRE = Gemini()
ECHO_CALL = (ECHO.name, {"text": "hi"})
CLIENT_CALL = ("read_file", {"path": "a.py"})


def request(**extra: Any) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": "say hi"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "tools": [{"functionDeclarations": [{"name": "read_file", "parametersJsonSchema": {"type": "object"}}]}],
        "generationConfig": {"maxOutputTokens": 256, "thinkingConfig": {"includeThoughts": True}},
        **extra,
    }


def events(chunks: list[dict[str, Any]]) -> list[SSEEvent]:
    return SSEParser().feed(b"".join(gemini_sse(chunks)))


def relay(parser: Any, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the client sees of a stream, each relayed event read back."""
    out = [parser.feed_event(e) for e in events(chunks)]
    return [json.loads(e.data) for b in out if b for e in SSEParser().feed(b)]


def texts(chunks: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])


# --- requests ---------------------------------------------------------------------------------------------


def test_request_facts() -> None:
    info = WIRE.parse_request({**request(), "stream": True, "model": GEMINI_MODEL})  # the path's facts
    assert (info.model, info.stream, info.prompt, info.max_output, info.takes_tools) == (
        GEMINI_MODEL,
        True,
        "say hi",
        256,
        True,
    )
    assert tool_names(request()) == {"read_file"}


def test_a_function_response_is_no_prompt_and_names_its_call() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "read it"}]},
        {"role": "model", "parts": [{"functionCall": {"id": "fc-1", "name": "read_file", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "fc-1", "name": "read_file", "response": {}}}]},
    ]
    info = WIRE.parse_request({"contents": contents})
    assert (info.prompt, info.correlating_tool_call_id) == (None, "fc-1")
    no_id = [*contents[:2], {"parts": [{"functionResponse": {"name": "read_file", "response": {}}}]}]
    assert WIRE.parse_request({"contents": no_id}).correlating_tool_call_id is None


@pytest.mark.parametrize(
    "extra",
    [
        {"generationConfig": {"candidateCount": 2}},  # one loop cannot serve several candidates
        {"tools": [{"googleSearch": {}}]},  # built-in tools refuse function declarations beside them
        {"tools": [{"functionDeclarations": []}, {"codeExecution": {}}]},
        {"generationConfig": {"responseMimeType": "application/json"}},  # Gemini CLI's routing call
        {"generationConfig": {"responseJsonSchema": {"type": "object"}}},
    ],
)
def test_requests_the_api_would_refuse_with_more_tools_take_none(extra: dict[str, Any]) -> None:
    assert not WIRE.parse_request(request(**extra)).takes_tools
    assert WIRE.parse_request(request(generationConfig={"responseMimeType": "text/plain"})).takes_tools


def test_the_envelope_is_read_inside() -> None:
    wrapped = {"model": "gemini-2.5-flash", "project": "p", "user_prompt_id": "u1", "request": request()}
    info = WIRE.parse_request(wrapped)
    assert (info.model, info.prompt, info.max_output, info.takes_tools) == ("gemini-2.5-flash", "say hi", 256, False)


def test_injected_tools_are_one_more_tools_entry_and_nothing_else_changes() -> None:
    raw = json.dumps(request(), indent=1).encode()
    injected = WIRE.inject_tools(raw, [ECHO])
    assert injected.startswith(raw[: raw.rindex(b"]", 0, raw.index(b'"generationConfig"'))])  # bytes before kept
    body = json.loads(injected)
    assert body["tools"][-1] == {
        "functionDeclarations": [
            {"name": ECHO.name, "description": ECHO.description, "parametersJsonSchema": ECHO.input_schema}
        ]
    }
    assert {k: v for k, v in body.items() if k != "tools"} == {k: v for k, v in request().items() if k != "tools"}
    assert WIRE.inject_tools(raw, [ECHO]) == injected  # deterministic


# --- responses ---------------------------------------------------------------------------------------------


def test_usage_keeps_cached_thinking_and_tool_prompts_apart() -> None:
    usage = to_usage(
        {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "candidatesTokenCount": 20,
            "thoughtsTokenCount": 7,
            "toolUsePromptTokenCount": 5,
        }
    )
    assert usage == Usage(input=45, output=27, cache_read=60, extra={"reasoning": 7, "tool_use_prompt": 5})


@pytest.mark.parametrize("framing", ["sse", "whole", "array"])
def test_a_response_is_read_whatever_its_framing(framing: str) -> None:
    chunks = gemini_chunks(["Hel", "lo."], thought="pondering", calls=[CLIENT_CALL, ("grep", {"q": "x"})])
    parser = GeminiParser()
    if framing == "sse":
        assert [parser.feed_event(e) for e in events(chunks)] == gemini_sse(chunks)  # relayed as they came
    elif framing == "whole":
        parser.feed_body(json.dumps(gemini_response(["Hel", "lo."], thought="pondering", calls=[CLIENT_CALL])).encode())
    else:
        parser.feed_body(b"".join(gemini_array(chunks)))
    turn = parser.turn()
    assert (turn.model, turn.response_id, turn.stop_reason) == (GEMINI_MODEL, "resp-1", "STOP")
    assert turn.usage == Usage(input=8, output=9, cache_read=4, extra={"reasoning": 3})
    assert [(c.name, json.loads(c.arguments)) for c in turn.tool_calls][:1] == [("read_file", {"path": "a.py"})]
    assert [t.content for t in turn.thoughts] == ["pondering"]


def test_errors_in_a_stream_and_in_a_body() -> None:
    parser = GeminiParser()
    error = {"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}
    [event] = SSEParser().feed(f"data: {json.dumps(error)}\r\n\r\n".encode())
    parser.feed_event(event)
    assert WIRE.ends_stream(event)
    assert parser.turn().error == "RESOURCE_EXHAUSTED: Resource has been exhausted"
    enveloped = GeminiParser()
    enveloped.feed_body(json.dumps([{"response": gemini_chunks(["x"])[0], "traceId": "t"}]).encode())
    assert enveloped.turn().usage is not None and enveloped.turn().stop_reason == "STOP"


def test_only_the_finishing_chunk_ends_a_stream() -> None:
    first, last = events(gemini_chunks(["a", "b"]))
    assert not WIRE.ends_stream(first) and WIRE.ends_stream(last)


def test_error_shapes_are_googles() -> None:
    assert json.loads(WIRE.error_body(429, "slow")) == {
        "error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED"}
    }
    assert json.loads(WIRE.error_body(502, "down"))["error"]["status"] == "UNAVAILABLE"
    [event] = SSEParser().feed(WIRE.error_event("broke"))
    assert json.loads(event.data)["error"] == {"code": 500, "message": "broke", "status": "INTERNAL"}
    assert SSEParser().feed(WIRE.ping_event()) == []  # a blank line: no event at all


# --- the loop ------------------------------------------------------------------------------------------------


def state(round_: int = 1, max_rounds: int = 16, **kw: Any) -> LoopState:
    return LoopState(frozenset({ECHO.name}), max_rounds, round=round_, **kw)


def test_a_round_that_only_calls_injected_tools_is_hidden_and_continues() -> None:
    parser = WIRE.loop_parser(s := state())
    seen = relay(parser, gemini_chunks(["Let me check. "], thought="hmm", calls=[ECHO_CALL]))
    assert texts(seen) == "hmmLet me check. "
    assert all("finishReason" not in c["candidates"][0] for c in seen)
    assert all("functionCall" not in p for c in seen for p in c["candidates"][0]["content"]["parts"])
    turn = parser.turn()
    assert turn.next is Next.CONTINUE and s.first_id == "resp-1"
    # The model's turn goes back whole: its thought signature and the call's own, unchanged.
    assert turn.assistant is not None and turn.assistant["role"] == "model"
    assert turn.assistant["parts"][0]["thoughtSignature"] == "c2lnbmF0dXJlLTE="
    assert turn.assistant["parts"][-1] == {
        "functionCall": {"name": ECHO.name, "args": {"text": "hi"}},
        "thoughtSignature": "c2lnLTA=",
    }


def test_the_last_round_sums_the_usage_under_the_first_id() -> None:
    s = state(2, usage=Usage(input=8, output=9, cache_read=4, extra={"reasoning": 3}))
    s.first_id = "resp-1"
    seen = relay(WIRE.loop_parser(s), gemini_chunks(["It says ", "hi."], response_id="resp-2"))
    assert texts(seen) == "It says hi." and {c["responseId"] for c in seen} == {"resp-1"}
    final = seen[-1]
    assert final["candidates"][0]["finishReason"] == "STOP"
    assert final["usageMetadata"]["promptTokenCount"] == 24 and final["usageMetadata"]["cachedContentTokenCount"] == 8
    assert final["usageMetadata"]["candidatesTokenCount"] == 12 and final["usageMetadata"]["thoughtsTokenCount"] == 6
    assert final["usageMetadata"]["totalTokenCount"] == 42


def test_a_mixed_turn_goes_to_the_client_without_the_injected_call() -> None:
    parser = WIRE.loop_parser(state())
    seen = relay(parser, gemini_chunks([], calls=[ECHO_CALL, CLIENT_CALL]))
    parts = [p for c in seen for p in c["candidates"][0]["content"]["parts"]]
    assert parts == [{"functionCall": {"name": "read_file", "args": {"path": "a.py"}}, "thoughtSignature": "c2lnLTE="}]
    assert seen[-1]["candidates"][0]["finishReason"] == "STOP" and parser.turn().next is Next.FINAL


def test_the_round_cap_ends_with_the_notice() -> None:
    parser = WIRE.loop_parser(state(3, max_rounds=3))
    seen = relay(parser, gemini_chunks([], calls=[ECHO_CALL]))
    assert texts(seen) == LIMIT_NOTICE.format(rounds=3) and parser.turn().next is Next.LIMIT


def test_a_first_round_text_chunk_is_relayed_byte_for_byte() -> None:
    chunks = gemini_chunks(["plain ", "text"])
    out = [WIRE.loop_parser(state()).feed_event(e) for e in events(chunks)[:1]]
    assert out == gemini_sse(chunks)[:1]


def test_the_next_request_answers_every_call_in_order() -> None:
    parser = WIRE.loop_parser(state())
    relay(parser, gemini_chunks([], calls=[ECHO_CALL, (ECHO.name, {"text": "again"})]))
    turn = parser.turn()
    raw = json.dumps(request()).encode()
    ok, failed = ToolResult((TextPart("echo: hi"),), False), ToolResult((TextPart("boom"),), True)
    body = json.loads(WIRE.next_request(raw, turn, list(zip(turn.tool_calls, (ok, failed), strict=True))))
    assert body["contents"][-2] == turn.assistant
    assert body["contents"][-1] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": ECHO.name, "response": {"output": "echo: hi"}}},
            {"functionResponse": {"name": ECHO.name, "response": {"error": "boom"}}},
        ],
    }


def test_a_blocking_loop_merges_the_rounds() -> None:
    first = gemini_response(["Checking. "], calls=[ECHO_CALL])
    parser = WIRE.loop_parser(state())
    parser.feed_body(json.dumps(first).encode())
    assert parser.turn().next is Next.CONTINUE
    second = {**gemini_response(["Done."]), "responseId": "resp-2"}
    s = state(2, usage=to_usage(first["usageMetadata"]))
    s.add_usage(to_usage(second["usageMetadata"]))
    merged = json.loads(WIRE.merge_rounds([first, second], s, limited=False))
    assert merged["candidates"][0]["content"]["parts"] == [{"text": "Checking. "}, {"text": "Done."}]
    assert merged["responseId"] == "resp-1" and merged["usageMetadata"]["promptTokenCount"] == 24
    limited = json.loads(WIRE.merge_rounds([first], state(), limited=True))
    assert limited["candidates"][0]["content"]["parts"][-1] == {"text": LIMIT_NOTICE.format(rounds=1)}


def test_an_injected_call_cut_off_by_max_tokens_is_hidden_and_not_run() -> None:
    parser = WIRE.loop_parser(state())
    seen = relay(parser, gemini_chunks(["Trying "], calls=[ECHO_CALL], finish="MAX_TOKENS"))
    assert texts(seen) == "Trying " and seen[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert parser.turn().next is Next.FINAL


def test_a_blocked_prompt_ends_the_stream() -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    [event] = SSEParser().feed(f"data: {json.dumps(blocked)}\r\n\r\n".encode())
    assert WIRE.ends_stream(event)


def test_a_later_rounds_chunk_without_candidates_still_speaks_for_the_whole_answer() -> None:
    s = state(2, usage=Usage(input=8, output=9))
    s.first_id = "resp-1"
    usage_only = {"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1}, "responseId": "resp-2"}
    [seen] = relay(WIRE.loop_parser(s), [usage_only])
    assert seen["responseId"] == "resp-1" and seen["usageMetadata"]["promptTokenCount"] == 18


@pytest.mark.parametrize("content", [["not", "a", "dict"], "text", None])
def test_hostile_shapes_never_break_a_merge(content: Any) -> None:
    odd = {"candidates": [{"content": content, "finishReason": "STOP"}], "usageMetadata": ["x"]}
    merged = json.loads(WIRE.merge_rounds([gemini_response(["a"]), odd], state(2), limited=False))
    assert merged["candidates"][0]["content"]["parts"] == [{"text": "a"}]


def test_the_word_error_in_a_calls_args_does_not_end_a_stream() -> None:
    chunk = gemini_chunks([], calls=[("report", {"error": "x"})])[0]
    del chunk["candidates"][0]["finishReason"]
    [event] = events([chunk])
    assert not WIRE.ends_stream(event)
    enveloped = {"response": gemini_chunks(["done"])[0], "traceId": "t"}  # Code Assist's last chunk
    assert WIRE.ends_stream(events([enveloped])[0])
