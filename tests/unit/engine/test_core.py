"""The engine: one interception from the client's request to the upstream and back, recorded on the way.

The upstream is a `FakeUpstream`, reached through the transport seam production uses; the recorder collects
events in a list. Every test's recorder is checked on teardown: each admitted job ends exactly once.
"""

import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import brotli
import httpx
import pytest
import zstandard

from addon.audit import (
    CacheBust,
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
    ToolResultReturned,
)
from addon.config import Budgets, GateRule, McpServer, ModelAllowlists, RateLimit, RateLimits, parse_config
from addon.engine.core import OUTBOUND_INLINE, Engine
from addon.engine.job import INTERCEPTION_HEADER, CutShort, Job
from addon.engine.ports import TextPart, ToolResult
from addon.policy import Refusal
from addon.policy.budgets import Ledger, Reservation
from addon.policy.models import ModelPolicy
from addon.policy.pricing import PriceBook
from addon.policy.ratelimits import RateLimiter
from addon.policy.redaction import Redactor
from addon.policy.toolgate import ToolGate
from addon.providers import Api
from addon.providers.routing import Route, classify
from addon.providers.sigv4 import AwsCredentials
from addon.wire import Turn, Usage
from addon.wire.eventstream import EventStreamDecoder
from addon.wire.sse import SSEParser
from tests.support.fakes import (
    ANTHROPIC_BODY,
    CHAT_HEADERS,
    CLAUDE_HEADERS,
    SSE_HEADERS,
    Chunks,
    FakeRecorder,
    FakeUpstream,
    admitted,
    header,
    make_job,
    read,
    sse,
)
from tests.support.scenarios import anthropic_events, anthropic_message, bedrock_frames

ANTHROPIC_EVENTS = [
    sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "usage": {
                    "input_tokens": 10,
                    "cache_creation_input_tokens": 5,
                    "cache_read_input_tokens": 100,
                    "output_tokens": 1,
                    "cache_creation": {"ephemeral_5m_input_tokens": 5, "ephemeral_1h_input_tokens": 0},
                },
            },
        },
    ),
    sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    ),
    sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Read it."}},
    ),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse("ping", {"type": "ping"}),
    sse(
        "content_block_start",
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    ),
    sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Sure é"}},
    ),
    sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_A", "name": "Read", "input": {}},
        },
    ),
    sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"path": "a.py"}'},
        },
    ),
    sse("content_block_stop", {"type": "content_block_stop", "index": 2}),
    sse(
        "message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 50}}
    ),
    sse("message_stop", {"type": "message_stop"}),
]
ANTHROPIC_STREAM = b"".join(ANTHROPIC_EVENTS)


def sse_reply(
    chunks: list[bytes], fail: Exception | None = None
) -> tuple[Chunks, Callable[[httpx.Request], httpx.Response]]:
    stream = Chunks(chunks, fail)
    return stream, lambda request: httpx.Response(200, headers=SSE_HEADERS, stream=stream)


# --- admit -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b'{"model": ', b"", b"[1, 2]", b'"text"', b"\xff\xfe{}"])
@pytest.mark.parametrize("api", [Api.ANTHROPIC_MESSAGES, Api.OPENAI_CHAT])
async def test_admit_malformed_body(engine: Engine, recorder: FakeRecorder, body: bytes, api: Api) -> None:
    job = make_job(body, api=api)
    reply = await engine.admit(job)
    assert reply is not None
    assert reply.status == 400
    assert ("content-type", "application/json") in reply.headers
    assert header(reply, INTERCEPTION_HEADER) == [str(job.id)]
    error = json.loads(b"".join(await read(reply)))
    if api is Api.ANTHROPIC_MESSAGES:
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        message = error["error"]["message"]
    else:
        assert error["error"]["type"] == "invalid_request_error"
        message = error["error"]["message"]
    assert message.startswith("invalid JSON body")

    start = recorder.started(job)
    assert (start.model, start.streaming, start.route) == ("unknown", False, job.path.split("?")[0])
    end = recorder.ended(job)
    assert (end.status, end.http_status) == ("failed", 400)
    assert end.error is not None and end.error.startswith("invalid JSON body")
    assert [type(e) for e in recorder.events] == [InterceptionStarted, InterceptionEnded]
    assert job.ended and job.id not in engine.active


async def test_admit_records_the_start(engine: Engine, recorder: FakeRecorder) -> None:
    job = await admitted(engine, make_job())
    start = recorder.started(job)
    assert start.id == job.id
    assert (start.provider, start.provider_name, start.model, start.initiator) == (
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        "tester",
    )
    assert (start.client, start.user_agent, start.client_session_id) == (
        "Claude Code",
        "claude-cli/2.1.329 (external, sdk-cli)",
        "sess-header",
    )
    assert (start.credential_kind, start.credential_hint) == ("byok", "sk-a...efgh")
    assert (start.streaming, start.route, start.started_at) == (True, "/v1/messages", job.started_at)
    assert (start.thread_parent_id, start.thread_root_id, start.correlating_tool_call_id) == (None, None, None)
    assert recorder.of(InterceptionEnded) == []
    assert engine.active == {job.id: job}
    assert recorder.lookups == []  # no tool result: no lookup

    engine.abort_all("proxy shut down")
    end = recorder.ended(job)
    assert (end.status, end.error) == ("cancelled", "proxy shut down")
    assert engine.active == {}
    engine.finish(job, "completed")  # only the first end counts
    assert len(recorder.of(InterceptionEnded)) == 1


async def test_admit_session_from_metadata_without_header(engine: Engine, recorder: FakeRecorder) -> None:
    headers = [(k, v) for k, v in CLAUDE_HEADERS if k != "X-Claude-Code-Session-Id"]
    job = await admitted(engine, make_job(headers=headers))
    assert recorder.started(job).client_session_id == "sess-from-metadata"
    engine.abort_all("done")


# --- streamed success ------------------------------------------------------------------------------------


async def test_anthropic_stream_is_relayed_event_by_event(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    stream, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert reply.status == 200
    assert header(reply, "content-type") == ["text/event-stream"]
    assert header(reply, "request-id") == ["req_1"]
    assert header(reply, "content-length") == []
    assert header(reply, INTERCEPTION_HEADER) == [str(job.id)]

    chunks = await read(reply)
    assert chunks == ANTHROPIC_EVENTS
    assert stream.closed

    assert [type(e) for e in recorder.events] == [
        InterceptionStarted,
        TokensUsed,
        ToolCalled,
        ThoughtRecorded,
        PromptSubmitted,
        InterceptionEnded,
    ]
    (usage,) = recorder.of(TokensUsed)
    assert (usage.interception_id, usage.provider_response_id) == (job.id, "msg_01")
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens, usage.cache_write_input_tokens) == (
        10,
        50,
        100,
        5,
    )
    assert usage.metadata == {"cache_write_5m": 5, "cache_write_1h": 0}
    (call,) = recorder.of(ToolCalled)
    assert (call.interception_id, call.provider_response_id, call.provider_tool_call_id) == (
        job.id,
        "msg_01",
        "toolu_A",
    )
    assert (call.tool, call.input, call.injected, call.server_url) == ("Read", '{"path": "a.py"}', False, None)
    (thought,) = recorder.of(ThoughtRecorded)
    assert (thought.interception_id, thought.content, thought.metadata) == (job.id, "Read it.", {"source": "thinking"})
    (prompt,) = recorder.of(PromptSubmitted)
    assert (prompt.interception_id, prompt.prompt, prompt.provider_response_id) == (job.id, "read a.py", "msg_01")
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status, end.response_model) == (
        "completed",
        None,
        200,
        "claude-sonnet-4-5-20250929",
    )
    assert engine.active == {}


@pytest.mark.parametrize("seed", range(5))
async def test_stream_split_anywhere_is_relayed_byte_identical(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, seed: int
) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(ANTHROPIC_STREAM)), 40))
    pieces = [ANTHROPIC_STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(ANTHROPIC_STREAM)], strict=True)]
    _, upstream.respond = sse_reply(pieces)
    job = await admitted(engine, make_job())
    chunks = await read(await engine.open(job))
    assert b"".join(chunks) == ANTHROPIC_STREAM
    assert all(chunk.endswith(b"\n\n") for chunk in chunks)  # only whole events are relayed
    assert recorder.ended(job).status == "completed"
    assert recorder.of(TokensUsed)[0].output_tokens == 50


async def test_trailing_event_without_blank_line_is_relayed(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = ANTHROPIC_STREAM[:-1]  # the last event lacks its final newline
    _, upstream.respond = sse_reply([body])
    job = await admitted(engine, make_job())
    assert b"".join(await read(await engine.open(job))) == body
    assert recorder.ended(job).status == "completed"


async def test_error_event_in_a_200_stream_is_recorded_failed(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    _, upstream.respond = sse_reply([ANTHROPIC_EVENTS[0], error])
    job = await admitted(engine, make_job())
    assert b"".join(await read(await engine.open(job))) == ANTHROPIC_EVENTS[0] + error
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("failed", "overloaded_error: Overloaded", 200)


# --- what goes upstream ----------------------------------------------------------------------------------


async def test_request_sent_upstream(engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    provider = parse_config(
        {
            "providers": {
                "anthropic": {
                    "upstream": "http://127.0.0.1:9000/base",
                    "extra_headers": {"x-team": "platform", "X-Extra": "1"},
                }
            }
        }
    ).providers[0]
    headers = [
        ("Host", "api.anthropic.com"),
        ("Content-Length", "999"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Accept-Encoding", "gzip, br"),
        ("User-Agent", "claude-cli/2.1.329 (external, sdk-cli)"),
        ("x-api-key", "sk-ant-api03-abcdefgh"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "a"),
        ("anthropic-beta", "b"),
        ("X-Team", "client-value"),
        ("Content-Type", "application/json"),
    ]
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job(provider=provider, headers=headers))
    await read(await engine.open(job))

    (sent,) = upstream.requests
    assert sent.method == "POST"
    assert str(sent.url) == "http://127.0.0.1:9000/base/v1/messages?beta=true"
    assert sent.content == ANTHROPIC_BODY
    h = sent.headers
    assert h["host"] == "127.0.0.1:9000"
    assert h["content-length"] == str(len(ANTHROPIC_BODY))
    for dropped in ("x-hop", "keep-alive", "proxy-authorization", "proxy-connection", "te"):
        assert dropped not in h, dropped
    assert "x-hop" not in h.get("connection", "").lower()
    assert h.get_list("accept-encoding") == ["identity"]
    assert h.get_list("x-team") == ["platform"]
    assert h.get_list("x-extra") == ["1"]
    assert h.get_list("anthropic-beta") == ["a", "b"]
    assert (h["user-agent"], h["x-api-key"], h["anthropic-version"], h["content-type"]) == (
        "claude-cli/2.1.329 (external, sdk-cli)",
        "sk-ant-api03-abcdefgh",
        "2023-06-01",
        "application/json",
    )
    assert recorder.ended(job).status == "completed"


# --- upstream errors -------------------------------------------------------------------------------------


async def test_upstream_error_is_relayed_verbatim(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    stream = Chunks([body[:10], body[10:]])
    upstream.respond = lambda request: httpx.Response(
        429,
        headers=[
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("retry-after", "7"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("connection", "close"),
        ],
        stream=stream,
    )
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert reply.status == 429
    assert header(reply, "retry-after") == ["7"]
    assert header(reply, "anthropic-ratelimit-requests-remaining") == ["0"]
    assert header(reply, "content-length") == [str(len(body))]
    assert header(reply, "connection") == []
    assert header(reply, INTERCEPTION_HEADER) == [str(job.id)]
    assert b"".join(await read(reply)) == body
    assert stream.closed
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("failed", "rate_limit_error: slow down", 429)
    assert recorder.of(TokensUsed) == []


async def test_upstream_error_without_a_json_body(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    upstream.respond = lambda request: httpx.Response(
        503, headers={"content-type": "text/html"}, stream=Chunks([b"<html>down</html>"])
    )
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert reply.status == 503
    assert b"".join(await read(reply)) == b"<html>down</html>"
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("failed", "HTTP 503: <html>down</html>", 503)


@pytest.mark.parametrize(("api", "kind"), [(Api.ANTHROPIC_MESSAGES, "api_error"), (Api.OPENAI_CHAT, "server_error")])
async def test_unreachable_upstream_gives_502(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, api: Api, kind: str
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    upstream.respond = refuse
    body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    job = await admitted(engine, make_job(body, api=api, headers=[]))
    reply = await engine.open(job)
    assert reply.status == 502
    assert header(reply, INTERCEPTION_HEADER) == [str(job.id)]
    error = json.loads(b"".join(await read(reply)))
    if api is Api.ANTHROPIC_MESSAGES:
        assert error["type"] == "error"
    assert error["error"]["type"] == kind
    assert "unreachable" in error["error"]["message"]
    end = recorder.ended(job)
    assert (end.status, end.http_status) == ("failed", 502)
    assert end.error is not None and "connection refused" in end.error


async def test_upstream_timeout_gives_504(engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    upstream.respond = slow
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert reply.status == 504
    assert json.loads(b"".join(await read(reply)))["error"]["type"] == "api_error"
    assert (recorder.ended(job).status, recorder.ended(job).http_status) == ("failed", 504)


async def test_upstream_error_body_that_breaks_off_gives_502(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    """A read failure on an upstream error is an upstream failure (502), not a client disconnect."""
    stream = Chunks([b'{"type":"error","err'], httpx.ReadError("connection reset"))
    upstream.respond = lambda request: httpx.Response(500, headers={"content-type": "application/json"}, stream=stream)
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert reply.status == 502
    assert json.loads(b"".join(await read(reply)))["error"]["type"] == "api_error"
    assert stream.closed
    end = recorder.ended(job)
    assert (end.status, end.http_status) == ("failed", 502)


async def test_stream_that_breaks_off_gets_an_error_event(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    partial = ANTHROPIC_EVENTS[2][:25]
    stream, upstream.respond = sse_reply([ANTHROPIC_EVENTS[0], ANTHROPIC_EVENTS[1] + partial], httpx.ReadError("reset"))
    job = await admitted(engine, make_job())
    chunks = await read(await engine.open(job))
    assert b"".join(chunks[:-1]) == ANTHROPIC_EVENTS[0] + ANTHROPIC_EVENTS[1]  # the partial event is not relayed
    parser = SSEParser()
    (event,) = parser.feed(chunks[-1])
    assert event.event == "error"
    error = json.loads(event.data)
    assert (error["type"], error["error"]["type"]) == ("error", "api_error")
    assert "mid-response" in error["error"]["message"]
    assert stream.closed
    end = recorder.ended(job)
    assert (end.status, end.http_status, end.response_model) == ("failed", 200, "claude-sonnet-4-5-20250929")
    assert end.error is not None and "mid-response" in end.error
    assert recorder.of(TokensUsed)[0].input_tokens == 10  # what arrived is still recorded


@pytest.mark.parametrize(
    ("failure", "status"), [(httpx.RemoteProtocolError("peer closed"), 502), (httpx.ReadTimeout("stalled"), 504)]
)
async def test_a_blocking_answer_that_breaks_off_after_its_headers_gets_a_provider_shaped_error(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, failure: Exception, status: int
) -> None:
    """Its status has not gone out yet: the body is read whole first, so the client gets an error it can read
    (and retry) instead of `200` and a content-length that never arrives."""
    stream = Chunks([BLOCKING_BODY[:20]], failure)
    headers = {"content-type": "application/json", "content-length": str(len(BLOCKING_BODY))}
    upstream.respond = lambda request: httpx.Response(200, headers=headers, stream=stream)
    job = await admitted(engine, make_job(ANTHROPIC_BODY.replace(b'"stream": true', b'"stream": false')))
    reply = await engine.open(job)
    assert reply.status == status
    body = json.loads(b"".join(await read(reply)))
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "mid-response" in body["error"]["message"]
    assert stream.closed
    end = recorder.ended(job)
    assert (end.status, end.http_status) == ("failed", status)


async def test_an_unreadable_stream_that_breaks_off_is_cut_short(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    """No error event can be written into an encoding the bridge cannot read: the reply breaks off instead,
    so whoever serves it ends the client's connection."""
    upstream.respond = lambda request: httpx.Response(
        200,
        headers={**SSE_HEADERS, "content-encoding": "x-unknown"},
        stream=Chunks([b"\x00opaque"], httpx.ReadError("reset")),
    )
    job = await admitted(engine, make_job())
    body = (await engine.open(job)).body
    assert await anext(body) == b"\x00opaque"
    with pytest.raises(CutShort, match="mid-response"):
        await anext(body)
    assert recorder.ended(job).status == "failed"


# --- the client goes away --------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [Api.ANTHROPIC_MESSAGES, Api.OPENAI_CHAT])
async def test_a_client_that_leaves_after_the_final_event_completed_the_stream(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, api: Api
) -> None:
    """The final event reached the client; only the upstream's last bytes (its chunked terminator) were still
    due when it closed, as the OpenAI SDK does right after `[DONE]`."""
    if api is Api.ANTHROPIC_MESSAGES:
        job = make_job()
        _, upstream.respond = sse_reply([b"".join(ANTHROPIC_EVENTS)])
    else:
        job = make_job(b'{"model":"gpt-4o","stream":true,"messages":[]}', api=api, headers=CHAT_HEADERS)
        _, upstream.respond = sse_reply([b"".join(CHAT_EVENTS)])
    job = await admitted(engine, job)
    body = (await engine.open(job)).body
    relayed = await anext(body)
    assert relayed.endswith(b'message_stop"}\n\n' if api is Api.ANTHROPIC_MESSAGES else b"data: [DONE]\n\n")
    await body.aclose()  # type: ignore[attr-defined]
    end = recorder.ended(job)
    assert (end.status, end.error) == ("completed", None)
    assert recorder.of(TokensUsed, job)[0].output_tokens > 0


async def test_a_client_that_leaves_before_the_final_event_cancelled_the_stream(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    _, upstream.respond = sse_reply([b"".join(ANTHROPIC_EVENTS[:-1]), ANTHROPIC_EVENTS[-1]])
    job = await admitted(engine, make_job())
    body = (await engine.open(job)).body
    await anext(body)  # everything up to message_delta
    await body.aclose()  # type: ignore[attr-defined]
    assert recorder.ended(job).status == "cancelled"


async def test_closing_the_body_early_records_cancelled(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    stream, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    body = reply.body
    assert await anext(body) == ANTHROPIC_EVENTS[0]
    await body.aclose()  # type: ignore[attr-defined]
    assert stream.closed
    end = recorder.ended(job)
    assert (end.status, end.error) == ("cancelled", "client disconnected")
    assert engine.active == {}


async def test_closing_the_body_before_it_started_closes_the_upstream(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    """The server may close a reply it never iterated (the client left during the response start)."""
    stream, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    await reply.aclose()
    assert stream.closed
    assert recorder.ended(job).status == "cancelled"


# --- whole (non-streamed) responses ----------------------------------------------------------------------

BLOCKING_BODY = json.dumps(
    {
        "id": "msg_02",
        "type": "message",
        "model": "claude-haiku-4-5",
        "content": [{"type": "tool_use", "id": "toolu_B", "name": "Bash", "input": {"command": "ls"}}],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 3,
            "output_tokens": 4,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }
).encode()


async def test_blocking_response(engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    upstream.respond = lambda request: httpx.Response(
        200, headers={"content-type": "application/json"}, stream=Chunks([BLOCKING_BODY[:7], BLOCKING_BODY[7:]])
    )
    body = ANTHROPIC_BODY.replace(b'"stream": true', b'"stream": false')
    job = await admitted(engine, make_job(body))
    reply = await engine.open(job)
    assert header(reply, "content-type") == ["application/json"]
    assert b"".join(await read(reply)) == BLOCKING_BODY
    assert recorder.started(job).streaming is False
    (usage,) = recorder.of(TokensUsed)
    assert (usage.provider_response_id, usage.input_tokens, usage.output_tokens) == ("msg_02", 3, 4)
    assert recorder.of(ToolCalled)[0].input == '{"command":"ls"}'
    assert recorder.ended(job).status == "completed"


async def test_gzipped_blocking_response_is_relayed_as_is_and_still_recorded(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    compressed = gzip.compress(BLOCKING_BODY)
    upstream.respond = lambda request: httpx.Response(
        200,
        headers={
            "content-type": "application/json",
            "content-encoding": "gzip",
            "content-length": str(len(compressed)),
        },
        stream=Chunks([compressed]),
    )
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert header(reply, "content-encoding") == ["gzip"]
    assert header(reply, "content-length") == [str(len(compressed))]
    assert b"".join(await read(reply)) == compressed
    assert recorder.of(TokensUsed)[0].output_tokens == 4
    assert recorder.ended(job).status == "completed"


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("br", brotli.compress),
        ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
async def test_an_encoded_stream_is_relayed_decoded_and_recorded(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    """An upstream that ignores `accept-encoding: identity`: the stream is decoded once, for the audit and for
    the client, who gets it without the encoding header."""
    encoded = encode(b"".join(ANTHROPIC_EVENTS))
    upstream.respond = lambda request: httpx.Response(
        200, headers={**SSE_HEADERS, "content-encoding": encoding}, stream=Chunks([encoded[:7], encoded[7:]])
    )
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert header(reply, "content-encoding") == []
    assert b"".join(await read(reply)) == b"".join(ANTHROPIC_EVENTS)
    assert recorder.of(TokensUsed)[0].output_tokens > 0
    assert recorder.ended(job).status == "completed"


async def test_a_stream_in_an_unreadable_encoding_is_relayed_as_is(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    upstream.respond = lambda request: httpx.Response(
        200, headers={**SSE_HEADERS, "content-encoding": "x-unknown"}, stream=Chunks([b"\x00opaque"])
    )
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    assert header(reply, "content-encoding") == ["x-unknown"]
    assert b"".join(await read(reply)) == b"\x00opaque"


# --- threads ---------------------------------------------------------------------------------------------


async def test_tool_result_joins_the_thread_of_the_call(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    first = await admitted(engine, make_job())
    await read(await engine.open(first))

    follow_up = json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "stream": True,
            "messages": [
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_A", "name": "Read", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_A", "content": "print(1)"}]},
            ],
        }
    ).encode()
    second = await admitted(engine, make_job(follow_up))
    third = await admitted(engine, make_job(follow_up.replace(b"toolu_A", b"toolu_unknown")))
    start = recorder.started(second)
    assert (start.thread_parent_id, start.thread_root_id, start.correlating_tool_call_id) == (
        first.id,
        first.id,
        "toolu_A",
    )
    assert recorder.lookups == ["toolu_unknown"]  # the remembered call needed no lookup
    assert (recorder.started(third).thread_parent_id, recorder.started(third).thread_root_id) == (None, None)

    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)  # it calls toolu_A again: same id, deeper in the thread
    await read(await engine.open(second))
    fourth = await admitted(engine, make_job(follow_up))
    assert (recorder.started(fourth).thread_parent_id, recorder.started(fourth).thread_root_id) == (second.id, first.id)
    assert recorder.of(PromptSubmitted, second) == []  # a tool-result turn has no prompt
    engine.abort_all("done")


# --- OpenAI chat -----------------------------------------------------------------------------------------


def chat_chunk(choices: list, **extra: Any) -> bytes:
    return (
        b"data: "
        + json.dumps({"id": "chatcmpl-9", "model": "gpt-4o-2024", "choices": choices, **extra}).encode()
        + b"\n\n"
    )


CHAT_USAGE_CHUNK = chat_chunk(
    [], usage={"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}
)
CHAT_EVENTS = [
    chat_chunk([{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]),
    chat_chunk(
        [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "ls", "arguments": "{}"}}]},
            }
        ]
    ),
    chat_chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
    CHAT_USAGE_CHUNK,
    b"data: [DONE]\n\n",
]


async def test_openai_stream_asks_for_usage_and_hides_it(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = b'{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    _, upstream.respond = sse_reply(CHAT_EVENTS)
    job = await admitted(engine, make_job(body, api=Api.OPENAI_CHAT, headers=CHAT_HEADERS))
    chunks = await read(await engine.open(job))
    assert b"".join(chunks) == b"".join(e for e in CHAT_EVENTS if e != CHAT_USAGE_CHUNK)
    assert chunks[-1] == b"data: [DONE]\n\n"
    (sent,) = upstream.requests
    assert sent.content == body[:-1] + b',"stream_options":{"include_usage":true}}'
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-proj-0123456789abcdef"

    start = recorder.started(job)
    assert (start.provider, start.client, start.credential_hint) == ("openai", "Unknown", "sk-p...cdef")
    (usage,) = recorder.of(TokensUsed)
    assert (usage.provider_response_id, usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (
        "chatcmpl-9",
        40,
        7,
        60,
    )
    assert recorder.of(ToolCalled)[0].provider_tool_call_id == "call_1"
    assert recorder.of(PromptSubmitted)[0].prompt == "hi"
    end = recorder.ended(job)
    assert (end.status, end.response_model) == ("completed", "gpt-4o-2024")


async def test_openai_client_that_asked_for_usage_sees_it(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = b'{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}'
    _, upstream.respond = sse_reply(CHAT_EVENTS)
    job = await admitted(engine, make_job(body, api=Api.OPENAI_CHAT, headers=CHAT_HEADERS))
    assert b"".join(await read(await engine.open(job))) == b"".join(CHAT_EVENTS)
    assert upstream.requests[0].content == body
    assert recorder.ended(job).status == "completed"


async def test_openai_stream_that_breaks_off(engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    body = b'{"model":"gpt-4o","stream":true,"messages":[]}'
    _, upstream.respond = sse_reply(CHAT_EVENTS[:1], httpx.RemoteProtocolError("peer closed"))
    job = await admitted(engine, make_job(body, api=Api.OPENAI_CHAT, headers=CHAT_HEADERS))
    chunks = await read(await engine.open(job))
    assert chunks[0] == CHAT_EVENTS[0]
    assert chunks[-1].startswith(b"data: ") and chunks[-1].endswith(b"\n\n")
    assert json.loads(chunks[-1][6:])["error"]["type"] == "server_error"
    assert recorder.ended(job).status == "failed"


# --- access refusals, costs and budgets ------------------------------------------------------------------

DOLLAR = 1_000_000
BYOK_REFUSAL = Refusal(403, "bring-your-own-key is not enabled: use your bridge token as the API key")
# ANTHROPIC_EVENTS at Sonnet 4.5 prices ($3 in, $15 out, $0.30 cache read, $3.75 5-minute cache write):
SONNET_COSTS = {"input": 10 * 3, "output": 50 * 15, "cache_read": 30, "cache_write": 19}  # 5 × 3.75 = 18.75
SONNET_TOTAL = 829


def budget_ledger(limit: int | None = None, spent: int = 0) -> Ledger:
    ledger = Ledger(Budgets(users=(("tester", limit),) if limit is not None else ()), ())
    ledger.load({"tester": spent})
    return ledger


def reservation(job: Job) -> Reservation:
    assert job.reservation is not None
    return job.reservation


@pytest.mark.parametrize(
    ("api", "refusal", "kind"),
    [
        (Api.ANTHROPIC_MESSAGES, Refusal(401, "invalid bridge token"), "authentication_error"),
        (Api.ANTHROPIC_MESSAGES, BYOK_REFUSAL, "permission_error"),
        (Api.OPENAI_CHAT, Refusal(401, "invalid bridge token"), "authentication_error"),
        (Api.OPENAI_CHAT, BYOK_REFUSAL, "permission_error"),
    ],
)
async def test_admit_with_a_refusal(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, api: Api, refusal: Refusal, kind: str
) -> None:
    engine.ledger = ledger = budget_ledger(DOLLAR)
    body = ANTHROPIC_BODY if api is Api.ANTHROPIC_MESSAGES else b'{"model": "gpt-4.1", "messages": []}'
    job = make_job(body, api=api)
    reply = await engine.admit(job, refusal)
    assert reply is not None
    assert reply.status == refusal.status
    assert ("content-type", "application/json") in reply.headers
    assert header(reply, INTERCEPTION_HEADER) == [str(job.id)]
    error = json.loads(b"".join(await read(reply)))
    if api is Api.ANTHROPIC_MESSAGES:
        assert error["type"] == "error"
    assert (error["error"]["type"], error["error"]["message"]) == (kind, refusal.message)

    # The attempt is on record, prompt included (the OpenAI body has none); nothing else happened.
    prompt = [PromptSubmitted] if api is Api.ANTHROPIC_MESSAGES else []
    assert [type(e) for e in recorder.events] == [InterceptionStarted, *prompt, InterceptionEnded]
    assert recorder.started(job).model == ("claude-sonnet-4-5" if api is Api.ANTHROPIC_MESSAGES else "gpt-4.1")
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("refused", refusal.message, refusal.status)
    assert job.ended and engine.active == {}
    assert upstream.requests == []
    assert job.reservation is None
    assert isinstance(ledger.reserve("tester", DOLLAR - 1), Reservation)  # a refused request reserved nothing


async def test_a_refusal_wins_over_a_malformed_body(engine: Engine, recorder: FakeRecorder) -> None:
    job = make_job(b"{not json")
    reply = await engine.admit(job, Refusal(401, "invalid bridge token"))
    assert reply is not None and reply.status == 401
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("refused", "invalid bridge token", 401)
    assert recorder.started(job).model == "unknown"


@pytest.mark.parametrize("api", [Api.ANTHROPIC_MESSAGES, Api.OPENAI_CHAT])
async def test_spent_budget_is_refused(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream, api: Api
) -> None:
    engine.ledger = budget_ledger(5 * DOLLAR, spent=5 * DOLLAR)
    body = ANTHROPIC_BODY if api is Api.ANTHROPIC_MESSAGES else b'{"model": "gpt-4.1", "messages": []}'
    job = make_job(body, api=api)
    reply = await engine.admit(job)
    assert reply is not None and reply.status == 403
    message = "budget exceeded: spent US$5.00 of US$5.00 this month"
    error = json.loads(b"".join(await read(reply)))
    assert (error["error"]["type"], error["error"]["message"]) == ("permission_error", message)
    end = recorder.ended(job)
    assert (end.status, end.error, end.http_status) == ("refused", message, 403)
    prompt = [PromptSubmitted] if api is Api.ANTHROPIC_MESSAGES else []
    assert [type(e) for e in recorder.events] == [InterceptionStarted, *prompt, InterceptionEnded]
    assert job.reservation is None and upstream.requests == []


async def test_admit_reserves_the_estimate(engine: Engine, recorder: FakeRecorder) -> None:
    engine.ledger = ledger = budget_ledger()
    job = await admitted(engine, make_job())
    # All input uncached (a token per 4 body bytes) at $3, plus all of max_tokens (1024) at $15.
    estimate = len(ANTHROPIC_BODY) // 4 * 3 + 1024 * 15
    assert reservation(job) == Reservation("tester", reservation(job).month, estimate)
    body = b'{"model":"gpt-4.1","max_completion_tokens":10}'
    openai = await admitted(engine, make_job(body, api=Api.OPENAI_CHAT))
    assert reservation(openai).micros == len(body) // 4 * 2 + 10 * 8
    body = b'{"model":"gpt-4.1","max_tokens":0}'
    default = await admitted(engine, make_job(body, api=Api.OPENAI_CHAT))
    assert reservation(default).micros == len(body) // 4 * 2 + 4096 * 8  # no usable max: 4096 output tokens
    unpriced = await admitted(engine, make_job(b'{"model":"my-model"}', api=Api.OPENAI_CHAT))
    assert reservation(unpriced).micros == 0
    assert ledger.spent("tester") == 0
    engine.abort_all("done")


async def test_a_burst_is_refused_once_reservations_fill_the_budget(engine: Engine, recorder: FakeRecorder) -> None:
    estimate = len(ANTHROPIC_BODY) // 4 * 3 + 1024 * 15
    engine.ledger = budget_ledger(3 * estimate)
    jobs = [make_job() for _ in range(5)]
    replies = [await engine.admit(job) for job in jobs]
    assert [r is None for r in replies] == [True, True, True, False, False]
    assert [recorder.ended(job).status for job in jobs[3:]] == ["refused", "refused"]
    engine.abort_all("done")


async def test_priced_round_stores_its_cost(engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    await read(await engine.open(job))
    (usage,) = recorder.of(TokensUsed)
    assert (
        usage.input_cost_micros,
        usage.output_cost_micros,
        usage.cache_read_cost_micros,
        usage.cache_write_cost_micros,
    ) == tuple(SONNET_COSTS.values())
    assert usage.cost_micros == SONNET_TOTAL == sum(SONNET_COSTS.values())
    assert usage.prices == {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "cache_write_1h": "6",
        "source": "genai-prices anthropic/claude-sonnet-4-5-20250929",  # the response's model
    }
    assert job.cost_micros == SONNET_TOTAL


async def test_price_overrides_apply(engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    config = parse_config({"prices": {"anthropic/claude-sonnet-4-5-20250929": {"input": 1, "output": 2}}})
    engine.prices = PriceBook(config.prices)
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    await read(await engine.open(job))
    (usage,) = recorder.of(TokensUsed)
    assert usage.cost_micros == 10 + 50 * 2 + 100 + 5  # cache prices default to the input price
    assert usage.prices["source"] == "config prices.anthropic/claude-sonnet-4-5-20250929"


async def test_unpriced_model_stores_no_cost(engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    body = b'{"model": "my-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    _, upstream.respond = sse_reply(CHAT_EVENTS)  # answers as gpt-4o-2024: not in the book either
    job = await admitted(engine, make_job(body, api=Api.OPENAI_CHAT, headers=CHAT_HEADERS))
    await read(await engine.open(job))
    (usage,) = recorder.of(TokensUsed)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (40, 7, 60)
    assert (
        usage.cost_micros,
        usage.input_cost_micros,
        usage.output_cost_micros,
        usage.cache_read_cost_micros,
        usage.cache_write_cost_micros,
    ) == (None, None, None, None, None)
    assert usage.prices == {}
    assert job.cost_micros == 0
    assert recorder.ended(job).status == "completed"


async def test_unpriced_response_model_falls_back_to_the_requested_one(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = b'{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    _, upstream.respond = sse_reply(CHAT_EVENTS)  # answers as gpt-4o-2024
    job = await admitted(engine, make_job(body, api=Api.OPENAI_CHAT, headers=CHAT_HEADERS))
    await read(await engine.open(job))
    (usage,) = recorder.of(TokensUsed)
    # gpt-4o: $2.50 in, $10 out, $1.25 cache read.
    assert (usage.input_cost_micros, usage.output_cost_micros, usage.cache_read_cost_micros) == (100, 70, 75)
    assert (usage.cache_write_cost_micros, usage.cost_micros) == (0, 245)
    assert usage.prices["source"] == "genai-prices openai/gpt-4o"


async def test_finish_settles_the_reservation_with_the_cost(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.ledger = ledger = budget_ledger(100 * DOLLAR, spent=DOLLAR)
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    assert reservation(job).micros > SONNET_TOTAL
    assert ledger.spent("tester") == DOLLAR  # reserved, not yet spent
    await read(await engine.open(job))
    assert reservation(job).settled
    assert ledger.spent("tester") == DOLLAR + SONNET_TOTAL
    engine.finish(job, "completed")  # a second end changes nothing
    ledger.settle(reservation(job), 12345)
    assert ledger.spent("tester") == DOLLAR + SONNET_TOTAL


async def test_a_failed_request_releases_its_reservation(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    upstream.respond = refuse
    estimate = len(ANTHROPIC_BODY) // 4 * 3 + 1024 * 15
    engine.ledger = ledger = budget_ledger(estimate)  # room for one request in flight
    job = await admitted(engine, make_job())
    second = make_job()
    assert (await engine.admit(second)) is not None  # the first one's reservation fills the budget
    assert recorder.ended(second).status == "refused"
    assert (await engine.open(job)).status == 502
    assert reservation(job).settled and ledger.spent("tester") == 0
    third = await admitted(engine, make_job())  # the reservation was released
    engine.abort_all("done")
    assert reservation(third).settled and ledger.spent("tester") == 0


async def test_a_cancelled_stream_settles_what_arrived(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.ledger = ledger = budget_ledger(100 * DOLLAR)
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    body = (await engine.open(job)).body
    assert await anext(body) == ANTHROPIC_EVENTS[0]
    await body.aclose()  # type: ignore[attr-defined]
    assert recorder.ended(job).status == "cancelled"
    # message_start's usage: 10 input, 1 output (the final count never came), 100 cache reads, 5 writes.
    assert ledger.spent("tester") == 30 + 15 + 30 + 19


ECHO_SERVER = McpServer(name="t", command="x")


@dataclass(frozen=True)
class EchoTool:
    name: str = "bmcp_t_echo"
    tool: str = "echo"
    description: str = "echoes"
    input_schema: dict = field(default_factory=lambda: {"type": "object"})
    server: McpServer = ECHO_SERVER


class EchoTools:
    def tools(self) -> list[EchoTool]:
        return [EchoTool()]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult((TextPart("echo"),), is_error=False)


def blocking_round(content: list[dict], stop: str, usage: dict[str, int]) -> httpx.Response:
    body = {"id": "msg_r", "type": "message", "model": "claude-sonnet-4-5", "content": content, "stop_reason": stop}
    raw = json.dumps({**body, "usage": usage}).encode()
    return httpx.Response(200, headers={"content-type": "application/json"}, stream=Chunks([raw]))


async def test_finish_settles_the_sum_of_every_round(recorder: FakeRecorder, upstream: FakeUpstream) -> None:
    rounds = [
        blocking_round(
            [{"type": "tool_use", "id": "toolu_1", "name": "bmcp_t_echo", "input": {}}],
            "tool_use",
            {"input_tokens": 1_000, "output_tokens": 100, "cache_read_input_tokens": 0},
        ),
        blocking_round(
            [{"type": "text", "text": "done"}],
            "end_turn",
            {"input_tokens": 1_200, "output_tokens": 20, "cache_read_input_tokens": 1_000},
        ),
    ]
    upstream.respond = lambda request: rounds.pop(0)
    ledger = budget_ledger(100 * DOLLAR)
    engine = Engine(recorder, upstream, EchoTools(), ledger=ledger)
    body = ANTHROPIC_BODY.replace(b'"stream": true', b'"stream": false')
    job = await admitted(engine, make_job(body))
    reply = await engine.open(job)
    assert json.loads(b"".join(await read(reply)))["content"][-1]["text"] == "done"
    first, second = recorder.of(TokensUsed)
    assert first.cost_micros == 1_000 * 3 + 100 * 15
    assert second.cost_micros == 1_200 * 3 + 20 * 15 + 1_000 * 0.3
    assert job.cost_micros == 4_500 + 4_200 == ledger.spent("tester")
    assert recorder.ended(job).status == "completed"


async def test_a_provider_serving_another_vendors_api_is_priced_as_that_vendor(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    """Copilot's and Azure's chat completions are OpenAI's models: the price book is asked as OpenAI's, and the
    audit still says which provider served them."""
    copilot = next(p for p in parse_config({}).providers if p.name == "copilot")
    body = b'{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    _, upstream.respond = sse_reply(CHAT_EVENTS)
    job = make_job(body, api=Api.OPENAI_CHAT, provider=copilot, headers=CHAT_HEADERS, path="/chat/completions")
    job.route = Route(copilot, Api.OPENAI_CHAT, "api.githubcopilot.com")
    await read(await engine.open(await admitted(engine, job)))
    assert recorder.started(job).provider == "copilot"
    (usage,) = recorder.of(TokensUsed)
    assert usage.cost_micros and usage.prices["source"].startswith("genai-prices openai/")


# --- Bedrock's InvokeModel: the same engine, event-stream frames ------------------------------------------------

BEDROCK_PATH = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"


def bedrock_job() -> Job:
    route = classify(parse_config({}), "bedrock-runtime.us-east-1.amazonaws.com", "POST", BEDROCK_PATH)
    assert route is not None and route.bridged  # a Bedrock API key: no signature to keep
    body = json.dumps(
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    job = make_job(body, api=Api.BEDROCK_INVOKE, headers=[("authorization", "Bearer ABSK-key")], path=BEDROCK_PATH)
    job.route = route
    return job


def bedrock_reply(chunks: list[bytes]) -> Callable[[httpx.Request], httpx.Response]:
    headers = {"content-type": "application/vnd.amazon.eventstream"}
    return lambda request: httpx.Response(200, headers=headers, stream=Chunks(chunks))


async def test_a_bedrock_stream_with_nothing_injected_is_relayed_frame_for_frame(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    frames = b"".join(bedrock_frames(ANTHROPIC_EVENTS))
    upstream.respond = bedrock_reply([frames[i : i + 37] for i in range(0, len(frames), 37)])
    job = await admitted(engine, bedrock_job())
    assert b"".join(await read(await engine.open(job))) == frames
    end = recorder.ended(job)
    assert (end.status, end.error) == ("completed", None)
    assert recorder.of(TokensUsed)[0].cost_micros  # priced by Bedrock's model id
    assert recorder.started(job).model == "anthropic.claude-sonnet-4-5-20250929-v1:0"


async def test_a_corrupt_bedrock_frame_ends_the_stream_with_an_exception_frame(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    frames = bedrock_frames(ANTHROPIC_EVENTS)
    corrupt = frames[1][:-1] + bytes([frames[1][-1] ^ 0xFF])  # a bad checksum
    upstream.respond = bedrock_reply([frames[0], corrupt, *frames[2:]])
    job = await admitted(engine, bedrock_job())
    chunks = await read(await engine.open(job))
    assert chunks[0] == frames[0]
    [frame] = EventStreamDecoder().feed(chunks[-1])
    assert frame.headers[":message-type"] == "exception" and b"malformed" in frame.payload
    end = recorder.ended(job)
    assert end.status == "failed" and end.error is not None and "malformed" in end.error


class _Expired:
    """Credentials botocore can no longer refresh (an SSO session that ran out)."""

    def get_frozen_credentials(self) -> None:
        raise RuntimeError("the SSO session has expired")


async def test_credentials_that_cannot_sign_give_a_502_and_nothing_goes_upstream(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    config = parse_config({"providers": {"bedrock-mantle": {"upstream": "https://mantle.example"}}})
    mantle = next(p for p in config.providers if p.type == "bedrock-mantle")
    job = make_job(provider=mantle, headers=[("content-type", "application/json")], path="/anthropic/v1/messages")
    job.route = replace(job.route, host="bedrock-mantle.us-east-1.api.aws")
    job.aws = AwsCredentials(_Expired(), access_key_id="AKIAEXPIRED")  # type: ignore[arg-type]
    reply = await engine.open(await admitted(engine, job))
    assert reply.status == 502 and upstream.requests == []
    assert "SSO session has expired" in json.loads(b"".join(await read(reply)))["error"]["message"]
    end = recorder.ended(job)
    assert (end.status, end.http_status) == ("failed", 502)


# --- central key pools -----------------------------------------------------------------------------------

POOL = ["sk-ant-api03-pool-one-aaaaaaaa", "sk-ant-api03-pool-two-bbbbbbbb"]


def pooled_job(keys: list[str]) -> Job:
    anthropic = parse_config(
        {"providers": {"anthropic": {"upstream": "http://127.0.0.1:9", "key": keys if len(keys) > 1 else keys[0]}}}
    ).providers[0]
    job = make_job(provider=anthropic, headers=[("content-type", "application/json"), ("x-api-key", keys[0])])
    job.central_key = keys[0]
    return job


def answer(*statuses: int) -> Callable[[httpx.Request], httpx.Response]:
    left = list(statuses)
    return lambda request: httpx.Response(left.pop(0), headers={"retry-after": "30"}, content=b"{}")


async def test_a_pooled_key_answered_429_cools_and_the_call_goes_again_with_the_next(
    engine: Engine, upstream: FakeUpstream
) -> None:
    job = pooled_job(POOL)
    upstream.respond = answer(429, 200)
    response = await engine.send(job, job.body)
    assert response.status_code == 200
    assert [r.headers["x-api-key"] for r in upstream.requests] == POOL
    assert job.central_key == POOL[1]
    assert engine.keys.pick(job.route.provider) == POOL[1]  # the first cools for its retry-after
    assert engine.keys.cooldowns == {("anthropic", "sk-a...aaaa"): 1}


async def test_when_every_pooled_key_fails_the_client_gets_the_last_answer(
    engine: Engine, upstream: FakeUpstream
) -> None:
    job = pooled_job(POOL)
    upstream.respond = answer(401, 429)
    response = await engine.send(job, job.body)
    assert response.status_code == 429 and len(upstream.requests) == 2
    refusal = engine.keys.pick(job.route.provider)
    assert isinstance(refusal, Refusal) and refusal.headers == (("retry-after", "30"),)


async def test_a_single_central_key_is_tried_once(engine: Engine, upstream: FakeUpstream) -> None:
    job = pooled_job(POOL[:1])
    upstream.respond = answer(429)
    assert (await engine.send(job, job.body)).status_code == 429
    assert len(upstream.requests) == 1 and engine.keys.cooldowns == {}


# --- rate limits -----------------------------------------------------------------------------------------


async def test_over_a_rate_limit_the_client_gets_a_429_with_retry_after_recorded_refused(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.rate_limits = RateLimiter(RateLimits(users=(("tester", RateLimit(requests_per_minute=2)),)), ())
    first, second = await admitted(engine, make_job()), await admitted(engine, make_job())
    assert first.rate_ticket is not None and second.rate_ticket is not None
    job = make_job()
    reply = await engine.admit(job)
    assert reply is not None and reply.status == 429
    assert ("retry-after", "30") in reply.headers
    error = json.loads(b"".join(await read(reply)))
    assert error["error"]["type"] == "rate_limit_error"
    end = recorder.ended(job)
    assert (end.status, end.http_status) == ("refused", 429)
    assert end.error == "rate limit exceeded: 2 requests per minute for tester; retry in 30 s"
    assert upstream.requests == []
    engine.abort_all("done")


async def test_a_rate_limit_ticket_settles_with_every_token_the_job_used(
    engine: Engine, upstream: FakeUpstream
) -> None:
    engine.rate_limits = limiter = RateLimiter(RateLimits(users=(("tester", RateLimit(tokens_per_minute=10**6)),)), ())
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job())
    reply = await engine.open(job)
    await read(reply)
    assert job.ended and job.tokens_used > 0
    ticket = job.rate_ticket
    assert ticket is not None and ticket.settled
    level, _ = limiter.local._levels["tokens/tester"]
    assert level == pytest.approx(10**6 - job.tokens_used, abs=100)  # refilled a little meanwhile


# --- guards: model allowlists and secrets on their way out ----------------------------------------------


async def test_a_model_outside_the_users_allowlist_is_refused_403_and_recorded(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.models = ModelPolicy(ModelAllowlists(users=(("tester", ("claude-haiku-*",)),)), ())
    job = make_job()
    reply = await engine.admit(job)
    assert reply is not None and reply.status == 403
    error = json.loads(b"".join(await read(reply)))
    assert error["error"]["type"] == "permission_error"
    assert error["error"]["message"].startswith("model claude-sonnet-4-5 is not allowed for tester")
    assert (recorder.ended(job).status, recorder.ended(job).http_status) == ("refused", 403)
    assert upstream.requests == []


SECRET = "AKIA" + "IOSFODNN7" + "EXAMPLE"
SECRET_BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": f"key {SECRET} here"}]}
).encode()


async def test_outbound_block_refuses_a_request_holding_a_secret(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.outbound = ("block", Redactor())
    job = make_job(SECRET_BODY)
    reply = await engine.admit(job)
    assert reply is not None and reply.status == 400
    message = json.loads(b"".join(await read(reply)))["error"]["message"]
    assert "aws-access-key" in message and SECRET not in message
    started = recorder.started(job)
    assert started.metadata["outbound"] == "blocked" and started.metadata["secrets"] == ["aws-access-key"]
    assert recorder.ended(job).status == "refused"
    assert upstream.requests == []
    clean = make_job()
    assert await engine.admit(clean) is None and clean.body == ANTHROPIC_BODY
    engine.abort_all("done")


async def test_outbound_redact_replaces_only_the_secrets_bytes(engine: Engine, upstream: FakeUpstream) -> None:
    engine.outbound = ("redact", Redactor())
    _, upstream.respond = sse_reply(ANTHROPIC_EVENTS)
    job = await admitted(engine, make_job(SECRET_BODY))
    assert job.body == SECRET_BODY.replace(SECRET.encode(), b"[REDACTED:aws-access-key]")
    assert job.metadata["outbound"] == "redacted"
    await read(await engine.open(job))
    sent = upstream.requests[0]
    assert SECRET.encode() not in sent.content and b"[REDACTED:aws-access-key]" in sent.content


async def test_a_large_body_is_scanned_for_secrets_too(engine: Engine, upstream: FakeUpstream) -> None:
    filler = "def f(x):\n    return x * 2\n" * 3000  # ~80 KB of code: scanned in a worker thread
    body = json.dumps(
        {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": filler + SECRET}]}
    ).encode()
    assert len(body) > OUTBOUND_INLINE
    engine.outbound = ("block", Redactor())
    reply = await engine.admit(make_job(body))
    assert reply is not None and reply.status == 400
    engine.outbound = ("redact", Redactor())
    job = await admitted(engine, make_job(body))
    assert job.body == body.replace(SECRET.encode(), b"[REDACTED:aws-access-key]")
    assert upstream.requests == []
    engine.abort_all("done")


async def test_the_allowlist_checks_the_model_the_path_names_whatever_the_body_says(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.models = ModelPolicy(ModelAllowlists(users=(("tester", ("claude-sonnet-4-5",)),)), ())
    job = bedrock_job()
    job.body = json.dumps({"model": "claude-sonnet-4-5", **json.loads(job.body)}).encode()  # the body lies
    reply = await engine.admit(job)
    assert reply is not None and reply.status == 403
    assert "anthropic.claude-sonnet-4-5-20250929-v1:0 is not allowed" in recorder.ended(job).error  # type: ignore[operator]
    assert upstream.requests == []


async def test_a_sigv4_signed_body_with_a_secret_is_refused_in_redact_mode(engine: Engine) -> None:
    engine.outbound = ("redact", Redactor())
    job = make_job(SECRET_BODY, headers=[("authorization", "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/x, Signature=00")])
    reply = await engine.admit(job)  # the client's signature covers the body: it cannot change
    assert reply is not None and reply.status == 400
    assert job.body == SECRET_BODY and job.metadata["outbound"] == "blocked"


async def test_a_tapped_body_the_guards_cannot_read_is_refused(engine: Engine, upstream: FakeUpstream) -> None:
    responses = make_job(b'{"model": "gpt-4.1", "input": "\xff\xfe', api=Api.OPENAI_RESPONSES, path="/v1/responses")
    assert responses.route.tapped
    assert await engine.admit(responses) is None  # no guard: the upstream answers it
    engine.abort_all("done")
    engine.outbound = ("block", Redactor())
    guarded_job = make_job(b'{"model": "gpt-4.1", "input": "\xff', api=Api.OPENAI_RESPONSES, path="/v1/responses")
    reply = await engine.admit(guarded_job)
    assert reply is not None and reply.status == 400
    assert upstream.requests == []


# --- the tool gate ---------------------------------------------------------------------------------------------

GATE = ToolGate((GateRule(name="no-rm-rf", tool="^Bash$", arguments="rm -rf"),))


async def test_a_blocked_client_call_never_reaches_the_client_and_is_recorded(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.gate = GATE
    events = anthropic_events(["Cleaning up."], tools=[("toolu_9", "Bash", {"command": "rm -rf /"})])
    _, upstream.respond = sse_reply(events)
    job = await admitted(engine, make_job())
    body = b"".join(await read(await engine.open(job)))
    assert b'"tool_use"' not in body and b"blocked by policy (rule no-rm-rf)" in body
    assert b'"stop_reason":"end_turn"' in body
    [call] = [e for e in recorder.events if isinstance(e, ToolCalled)]
    assert (call.tool, call.metadata) == ("Bash", {"gate": "no-rm-rf", "action": "block", "blocked": True})
    assert recorder.ended(job).status == "completed"


async def test_an_allowed_client_call_is_relayed_as_it_came(engine: Engine, upstream: FakeUpstream) -> None:
    engine.gate = GATE
    events = anthropic_events(["Listing."], tools=[("toolu_8", "Bash", {"command": "ls"})])
    _, upstream.respond = sse_reply(events)
    job = await admitted(engine, make_job())
    assert b"".join(await read(await engine.open(job))) == b"".join(events)


async def test_a_blocking_answer_with_a_blocked_call_is_rewritten(engine: Engine, upstream: FakeUpstream) -> None:
    engine.gate = GATE
    message = anthropic_message("Sure.", tools=[("toolu_7", "Bash", {"command": "rm -rf ~"})])
    upstream.respond = lambda request: httpx.Response(
        200, headers={"content-type": "application/json"}, stream=Chunks([json.dumps(message).encode()])
    )
    body = json.loads(ANTHROPIC_BODY)
    job = await admitted(engine, make_job(json.dumps({**body, "stream": False}).encode()))
    reply = await engine.open(job)
    answer = json.loads(b"".join(await read(reply)))
    assert [b["type"] for b in answer["content"]] == ["text", "text"] and answer["stop_reason"] == "end_turn"
    assert header(reply, "content-length") == [
        str(len(json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()))
    ]


# --- insights: tool results, attribution, cache busts --------------------------------------------------------


def claude_body(system: str, messages: list[dict[str, Any]]) -> bytes:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "system": [{"type": "text", "text": system}]}
    return json.dumps({**body, "messages": messages}).encode()


GIT_STATUS = "<system-reminder>\n# gitStatus\nCurrent branch: feature/ledger\n</system-reminder>"
CLAUDE_START = [
    {"role": "user", "content": [{"type": "text", "text": GIT_STATUS}, {"type": "text", "text": "list the files"}]},
    {"role": "system", "content": " - Primary working directory: /work/widgets\n - Is a git repository: true"},
]
CALLED_LS = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_ls", "name": "Bash", "input": {}}]}
ANSWERED_LS = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "toolu_ls", "content": "a.py\nb.py", "is_error": False}],
}


def cached_reply(read: int, write: int) -> Callable[[httpx.Request], httpx.Response]:
    usage = {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": read}
    body = json.dumps(anthropic_message("ok", usage={**usage, "cache_creation_input_tokens": write})).encode()
    return lambda request: httpx.Response(200, headers={"content-type": "application/json"}, stream=Chunks([body]))


async def answered(engine: Engine, upstream: FakeUpstream, job: Job | bytes, read: int, write: int) -> Job:
    """`job` (or a job of Claude Code's with this body) admitted and answered with these cache tokens."""
    upstream.respond = cached_reply(read, write)
    job = await admitted(engine, make_job(job) if isinstance(job, bytes) else job)
    await read_all(await engine.open(job))
    return job


async def read_all(reply: Any) -> None:
    await read(reply)


async def test_a_request_records_the_tool_results_it_carries_and_where_it_comes_from(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    engine.excerpt_chars = 4
    job = await answered(
        engine, upstream, claude_body("You are Claude.", [*CLAUDE_START, CALLED_LS, ANSWERED_LS]), 0, 0
    )
    start = recorder.started(job)
    assert (start.working_directory, start.repository, start.branch, start.agent) == (
        "/work/widgets",
        "widgets",
        "feature/ledger",
        "main",
    )
    (result,) = recorder.of(ToolResultReturned)
    assert (result.interception_id, result.provider_tool_call_id, result.is_error) == (job.id, "toolu_ls", False)
    assert (result.size_bytes, result.created_at) == (9, job.started_at)
    assert result.prepared().excerpt == "a.py"  # cut in the writer's thread, once redaction has read it whole


async def test_a_request_that_rewrites_the_cache_its_predecessor_left_is_a_bust_located_and_priced(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    first = await answered(engine, upstream, claude_body("You are Claude.", CLAUDE_START), 0, 6000)
    assert recorder.of(CacheBust) == []  # the first request of a conversation busts nothing
    grown = [*CLAUDE_START, CALLED_LS, ANSWERED_LS]
    await answered(engine, upstream, claude_body("You are Claude.", grown), 6000, 200)
    assert recorder.of(CacheBust) == []  # it read what was there
    second = await answered(engine, upstream, claude_body("You are Claude, briefly.", grown), 0, 6300)
    (bust,) = recorder.of(CacheBust)
    bust = bust.prepared()  # what the writer thread does before it writes the row
    assert (bust.interception_id, bust.expected_tokens, bust.read_tokens, bust.lost_tokens) == (
        second.id,
        6200,
        0,
        6200,
    )
    assert (bust.rewritten_tokens, bust.location, bust.ttl_seconds) == (6200, "system", 300)
    assert bust.previous_interception_id != first.id  # the previous request, not the first
    # claude-sonnet-4-5: written again at $3.75/M instead of read at $0.30/M
    assert bust.cost_micros == round(6200 * 3.75 - 6200 * 0.30)


async def test_no_bust_across_conversations_or_after_the_cache_lapsed(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    body = claude_body("You are Claude.", CLAUDE_START)
    await answered(engine, upstream, body, 0, 6000)
    headers = [(k, "other-session" if k == "X-Claude-Code-Session-Id" else v) for k, v in CLAUDE_HEADERS]
    await answered(engine, upstream, make_job(body, headers=headers), 0, 6000)
    assert recorder.of(CacheBust) == []  # another session: another cache
    late = make_job(body)
    late.started_at += timedelta(minutes=6)  # past the 5-minute lifetime
    await answered(engine, upstream, late, 0, 6000)
    assert recorder.of(CacheBust) == []


async def test_claude_codes_custom_subagent_is_named_by_the_agent_call_before_it(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    call = ("toolu_agent", "Agent", {"description": "Audit", "prompt": "go", "subagent_type": "ledger-auditor"})
    body = json.dumps(anthropic_message("", tools=[call])).encode()
    upstream.respond = lambda request: httpx.Response(
        200, headers={"content-type": "application/json"}, stream=Chunks([body])
    )
    await read_all(await engine.open(await admitted(engine, make_job())))
    custom = [*CLAUDE_HEADERS, ("x-claude-code-agent-type", "custom"), ("x-claude-code-agent-id", "a3c01f2d")]
    sub = await answered(engine, upstream, make_job(headers=custom), 0, 0)
    assert recorder.started(sub).agent == "ledger-auditor"


async def test_two_subagents_of_one_type_side_by_side_are_two_conversations(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    def explore(agent_id: str, text: str) -> Job:
        headers = [*CLAUDE_HEADERS, ("x-claude-code-agent-type", "Explore"), ("x-claude-code-agent-id", agent_id)]
        return make_job(claude_body("You explore.", [{"role": "user", "content": text}]), headers=headers)

    await answered(engine, upstream, explore("a1", "find the parser"), 0, 6000)
    await answered(engine, upstream, explore("a2", "find the tests"), 0, 7000)
    await answered(engine, upstream, explore("a1", "find the parser, again"), 6000, 100)
    await answered(engine, upstream, explore("a2", "find the tests, again"), 7000, 100)
    assert recorder.of(CacheBust) == []  # each read its own cache: no bust where they took turns


async def test_only_a_requests_first_round_meets_its_conversations_cache(
    engine: Engine, recorder: FakeRecorder, upstream: FakeUpstream
) -> None:
    """The rounds of the bridge's own tool loop carry calls the client never sees: the client's next request
    cannot read what they cached, and is no bust for it."""
    job = await admitted(engine, make_job(claude_body("You are Claude.", CLAUDE_START)))
    first = Turn(usage=Usage(input=3, cache_read=0, cache_write=6000), model="claude-sonnet-4-5")
    engine.record_turn(job, first)
    engine.record_turn(job, Turn(usage=Usage(input=3, cache_read=6000, cache_write=9000), model="claude-sonnet-4-5"))
    engine.finish(job, "completed")
    later = await answered(engine, upstream, claude_body("You are Claude.", CLAUDE_START), 6000, 0)
    assert recorder.of(CacheBust) == [] and later.cache_observed
