"""The Responses API read for the audit: request facts, streamed and whole responses, and the tap that feeds
them from a passthrough stream without changing a byte."""

import json
from pathlib import Path

import pytest

from addon.wire.openai_responses import OpenAIResponses, ResponsesParser, exit_failed
from addon.wire.sse import SSEParser
from tests.support.responses import RESPONSE, STREAM, sse

WIRE = OpenAIResponses()


def test_request_facts() -> None:
    assert WIRE.parse_request({"model": "gpt-5", "input": "hi", "stream": True}).prompt == "hi"
    codex = {
        "model": "gpt-5",
        "input": [
            {"type": "additional_tools", "role": "developer", "tools": [{"type": "namespace", "name": "functions"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>x"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]},
            {"type": "configuration_update", "reasoning": {"effort": "low"}},
        ],
    }
    info = WIRE.parse_request(codex)
    assert (info.model, info.stream, info.prompt, info.correlating_tool_call_id) == ("gpt-5", False, "say hi", None)
    follow_up = {"model": "gpt-5", "input": [*codex["input"], {"type": "custom_tool_call_output", "call_id": "c9"}]}
    info = WIRE.parse_request(follow_up)
    assert (info.prompt, info.correlating_tool_call_id) == (None, "c9")
    assert WIRE.parse_request({"model": 5, "input": {"odd": True}}).model is None


def test_whole_response() -> None:
    parser = ResponsesParser()
    parser.feed_body(json.dumps(RESPONSE).encode())
    turn = parser.turn()
    assert (turn.response_id, turn.model, turn.error) == ("resp_1", "gpt-5-2025-08-07", None)
    assert turn.usage is not None
    assert (turn.usage.input, turn.usage.output, turn.usage.cache_read, turn.usage.extra) == (
        40,
        30,
        60,
        {"reasoning": 12},
    )
    calls = [(c.id, c.name, c.arguments) for c in turn.tool_calls]
    assert calls == [
        ("ws_1", "web_search", '{"action":{"type":"search","query":"q"}}'),
        ("call_1", "add", '{"a":1}'),
        ("call_2", "exec", "print(1)"),
        ("mcp_1", "lookup", '{"name":"lookup","server_label":"docs","arguments":"{}"}'),
    ]
    assert [(t.content, t.source) for t in turn.thoughts] == [
        ("Plan: search.", "reasoning"),
        ("Looking it up.", "commentary"),
    ]


def test_stream_cut_short_keeps_what_arrived() -> None:
    parser = ResponsesParser()
    for event in SSEParser().feed(b"".join(STREAM[:4])):
        assert parser.feed_event(event) == event.raw
    turn = parser.turn()
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [("call_1", "add", '{"a":1}')]
    assert turn.usage is None and turn.response_id == "resp_1"


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ([sse("error", {"code": "E", "message": "boom"})], "E: boom"),
        (
            [
                sse(
                    "response.failed",
                    {"response": {"id": "r", "status": "failed", "error": {"code": "x", "message": "m"}}},
                )
            ],
            "x: m",
        ),
        ([b"data: not json\n\n", sse("error", {"error": {"type": "server_error", "message": "m"}})], "server_error: m"),
    ],
)
def test_stream_errors(events: list[bytes], error: str) -> None:
    parser = ResponsesParser()
    for event in SSEParser().feed(b"".join(events)):
        parser.feed_event(event)
    assert parser.turn().error == error


def fixture(name: str) -> dict:
    return json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "clients" / f"{name}.json").read_text())


def test_tool_results_from_codexs_real_requests_with_their_exit_codes() -> None:
    results = OpenAIResponses().parse_request(fixture("codex-2")["body"]).tool_results
    assert [(r.call_id, r.is_error) for r in results] == [("call_exec_1", False), ("call_exec_2", True)]
    assert "Process exited with code 1" in results[1].text and results[1].size == len(results[1].text.encode())
    (script,) = OpenAIResponses().parse_request(fixture("codex-codemode-2")["body"]).tool_results
    assert script.is_error is True  # a custom tool's output: a script whose second command failed
    assert OpenAIResponses().parse_request(fixture("codex-1")["body"]).tool_results == ()


def test_tool_results_are_the_last_steps_outputs_only() -> None:
    items = [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c0"},
        {"type": "function_call_output", "call_id": "c0", "output": "old"},  # the step before, sent already
        {"type": "function_call", "call_id": "c1"},
        {"type": "function_call", "call_id": "c2"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "no exit code here"},
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
        {"type": "configuration_update"},
    ]
    results = OpenAIResponses().parse_request({"input": items}).tool_results
    assert [(r.call_id, r.is_error, r.text) for r in results] == [
        ("c1", None, "no exit code here"),
        ("c2", None, "two"),
    ]
    assert OpenAIResponses().parse_request({"input": "hi"}).tool_results == ()
    notice = {"type": "message", "role": "user", "content": "<subagent_notification>done</subagent_notification>"}
    assert [r.call_id for r in OpenAIResponses().parse_request({"input": [*items, notice]}).tool_results] == [
        "c1",
        "c2",
    ]
    next_prompt = [*items, {"type": "message", "role": "assistant", "content": "ok"}, notice]
    assert OpenAIResponses().parse_request({"input": next_prompt}).tool_results == ()  # a turn later: sent already
    after_reasoning = [*items[:3], {"type": "reasoning", "summary": []}]
    assert OpenAIResponses().parse_request({"input": after_reasoning}).tool_results == ()


def test_a_subagents_message_after_the_outputs_is_stepped_over() -> None:
    """Codex appends what a sub-agent said (`agent_message`) after the output of the call that waited for it."""
    (wait,) = OpenAIResponses().parse_request(fixture("codex-main-after-subagent")["body"]).tool_results
    items = fixture("codex-main-after-subagent")["body"]["input"]
    assert wait.call_id == [i for i in items if i.get("type") == "function_call_output"][-1]["call_id"]


@pytest.mark.parametrize(
    ("text", "failed"),
    [
        (
            "Chunk ID: 1\nWall time: 0.1 seconds\nProcess exited with code 0\nOutput:\nProcess exited with code 2\n",
            False,
        ),
        ("Chunk ID: 1\nProcess exited with code 127\nOutput:\nsh: nope: not found\n", True),
        ('Script completed\nOutput:\n\n{"chunk_id":"a","exit_code":0,"output":"{\\"exit_code\\": 1}"}', False),
        ('Script completed\nOutput:\n\n{"exit_code":0,"output":""}\n{"exit_code":1,"output":"cat: x"}', True),
        ('cat log.json\n{"exit_code": 1}', None),  # a command's own output, not Codex's framing
        ("no framing at all", None),
    ],
)
def test_exit_codes_are_read_from_codexs_framing_not_the_commands_output(text: str, failed: bool | None) -> None:
    assert exit_failed(text) is failed
