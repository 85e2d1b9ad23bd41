"""The Responses tap: a passthrough response read for the audit as it streams by, changing no byte, and
recorded through the engine, ending exactly once."""

import gzip
import json
from typing import Any

import brotli
import pytest
import zstandard

from addon.audit import InterceptionEnded, InterceptionStarted, PromptSubmitted, ThoughtRecorded, TokensUsed, ToolCalled
from addon.engine.core import Engine
from addon.engine.job import Job
from addon.engine.tap import ResponseTap
from addon.ids import uuid7
from addon.policy import Refusal
from addon.providers import Api
from addon.providers.routing import Route
from tests.support.fakes import FakeRecorder
from tests.support.responses import OPENAI, STREAM


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
    assert await engine.admit(tapped(recorder, {})[1], Refusal(403, "no")) is not None  # refusals are still answered
