"""The Responses API read for the audit: request facts, streamed and whole responses, and the tap that feeds
them from a passthrough stream without changing a byte."""

import gzip
import json
from typing import Any

import brotli
import pytest
import zstandard

from addon.audit import InterceptionEnded, InterceptionStarted, PromptSubmitted, ThoughtRecorded, TokensUsed, ToolCalled
from addon.config import parse_config
from addon.engine.core import Engine, Job
from addon.engine.tap import ResponseTap
from addon.ids import uuid7
from addon.providers.routing import Api, Route
from addon.wire.openai_responses import OpenAIResponses, ResponsesParser
from addon.wire.sse import SSEParser
from tests.unit.test_engine import FakeRecorder

WIRE = OpenAIResponses()
OPENAI = parse_config({}).providers[1]


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "model": "gpt-5-2025-08-07",
    "status": "completed",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan: search."}]},
        {
            "type": "message",
            "role": "assistant",
            "phase": "commentary",
            "content": [{"type": "output_text", "text": "Looking it up."}],
        },
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "add", "arguments": '{"a":1}'},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "exec", "input": "print(1)"},
        {"type": "mcp_call", "id": "mcp_1", "name": "lookup", "server_label": "docs", "arguments": "{}"},
        {"type": "namespace_thing", "id": "x_1"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
    ],
    "usage": {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 60},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
    },
}
STREAM = [
    sse("response.created", {"response": {"id": "resp_1", "model": "gpt-5", "status": "in_progress", "output": []}}),
    sse(
        "response.output_item.added",
        {"output_index": 0, "item": {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": ""}},
    ),
    sse("response.function_call_arguments.delta", {"output_index": 0, "delta": '{"a":'}),
    sse("response.function_call_arguments.delta", {"output_index": 0, "delta": "1}"}),
    sse("response.completed", {"response": RESPONSE}),
]


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


def tapped(recorder: FakeRecorder, body: dict[str, Any]) -> tuple[Engine, Job]:
    engine = Engine(recorder, None)  # type: ignore[arg-type]  # a tap never calls the upstream itself
    job = Job(
        id=uuid7(),
        route=Route(OPENAI, Api.OPENAI_RESPONSES),
        path="/v1/responses",
        headers=[("user-agent", "codex_exec/0.169.0"), ("session-id", "sess-1")],
        body=json.dumps(body).encode(),
        initiator="tester",
    )
    return engine, job


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "br":
        return brotli.compress(data)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


@pytest.mark.parametrize("encoding", ["", "gzip", "br", "zstd"])
async def test_tap_streams_unchanged_and_records(encoding: str) -> None:
    recorder = FakeRecorder()
    engine, job = tapped(recorder, {"model": "gpt-5", "input": "hi", "stream": True})
    assert await engine.admit(job) is None
    tap = ResponseTap(engine, job)
    tap.start(200, {"content-type": "text/event-stream", "content-encoding": encoding})
    wire = _encode(b"".join(STREAM), encoding)
    chunks = [wire[i : i + 7] for i in range(0, len(wire), 7)]
    assert [tap(c) for c in chunks] == chunks  # every chunk relayed as it came
    assert tap(b"") == b""
    tap.end()
    start = recorder.started(job)
    assert (start.client, start.client_session_id, start.model, start.streaming) == ("Codex", "sess-1", "gpt-5", True)
    assert recorder.ended(job).status == "completed" and recorder.ended(job).response_model == "gpt-5-2025-08-07"
    [usage] = recorder.of(TokensUsed, job)
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (40, 60, 30)
    assert usage.cost_micros is not None, "gpt-5 is priced"
    assert [t.tool for t in recorder.of(ToolCalled, job)] == ["web_search", "add", "exec", "lookup"]
    assert len(recorder.of(ThoughtRecorded, job)) == 2
    assert [p.prompt for p in recorder.of(PromptSubmitted, job)] == ["hi"]
    # The calls are remembered: the request that answers one joins this interception's thread.
    engine2, follow = tapped(
        recorder, {"model": "gpt-5", "input": [{"type": "function_call_output", "call_id": "call_1"}]}
    )
    engine2.lineage = engine.lineage
    assert await engine2.admit(follow) is None
    assert recorder.started(follow).thread_parent_id == job.id


async def test_tap_error_status_and_disconnect() -> None:
    recorder = FakeRecorder()
    engine, job = tapped(recorder, {"model": "gpt-5", "input": "hi"})
    await engine.admit(job)
    tap = ResponseTap(engine, job)
    tap.start(429, {"content-type": "application/json"})
    tap(b'{"error": {"message": "slow down", "type": "rate_limit_error"}}')
    tap.end()
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("failed", "rate_limit_error: slow down", 429)

    engine, job = tapped(recorder, {"model": "gpt-5", "input": "hi", "stream": True})
    await engine.admit(job)
    tap = ResponseTap(engine, job)
    tap.start(200, {"content-type": "text/event-stream"})
    tap(b"".join(STREAM[:4]))
    tap.fail("cancelled", "client disconnected")
    tap.end()  # a late end changes nothing: an interception ends once
    [end] = recorder.of(InterceptionEnded, job)
    assert (end.status, end.error) == ("cancelled", "client disconnected")
    assert [t.tool for t in recorder.of(ToolCalled, job)] == ["add"]


async def test_tap_admits_malformed_bodies_for_the_upstream_to_answer() -> None:
    recorder = FakeRecorder()
    engine, job = tapped(recorder, {})
    job.body = b"{not json"
    assert await engine.admit(job) is None
    assert recorder.of(InterceptionStarted, job)[0].model == "unknown"
    assert await engine.admit(tapped(recorder, {})[1], (403, "no")) is not None  # refusals are still answered
