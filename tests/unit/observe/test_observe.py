"""Observing the engine: Prometheus metrics, OpenTelemetry spans, API dumps and JSON logs after scripted traffic.

The engine runs as in engine/test_loop.py (a `FakeUpstream` answering scripted rounds, fake tools); the
observers are the real ones, wired the way the addon wires them (`engine.observer`, the recorder teed).
"""

import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from addon.audit import AuditWriter
from addon.config import Budgets, McpServer, RateLimits, User, parse_config
from addon.engine.core import Engine
from addon.engine.ports import Observer
from addon.ids import uuid7
from addon.observe import ObservedRecorder, Observers
from addon.observe.dumps import Dumps, mask_header, mask_target, safe_name
from addon.observe.jsonlog import JsonLog
from addon.observe.metrics import Metrics, parse_address
from addon.observe.tracing import INTERCEPTION_SPAN, Tracing, make_provider
from addon.policy.budgets import Ledger
from addon.policy.ratelimits import RateLimiter
from addon.tools import ToolManager
from tests.support.audit_rows import bust, started
from tests.support.fakes import FakeRecorder, FakeUpstream, admitted, make_job, read
from tests.support.loop import (
    ANSWERS,
    ECHO,
    FAIL,
    FakeTools,
    anthropic_request,
    anthropic_round,
    chat_job,
    chat_request,
    script,
    streamed,
    whole,
)


@pytest.fixture
async def make_engine(recorder: FakeRecorder, upstream: FakeUpstream) -> AsyncIterator[Callable[..., Engine]]:
    transport = upstream
    yield lambda **options: Engine(recorder, transport, FakeTools(), **{"keepalive_interval": 0.005, **options})


KEY = "sk-ant-api03-secretsecretsecret-XYZW"
HEADERS = [("User-Agent", "claude-cli/2.1.0 (external, cli)"), ("x-api-key", KEY), ("content-type", "application/json")]


def observed(engine: Engine, *observers: Observer) -> Engine:
    hub = Observers(observers)
    engine.observer = hub
    engine.recorder = ObservedRecorder(engine.recorder, hub)  # type: ignore[arg-type]
    return engine


def fail_use(call_id: str = "toolu_2") -> tuple[str, ...]:
    return ("tool_use", call_id, FAIL.name, "{}")


async def run_tool_loop(engine: Engine, upstream: Any, *, model: str = "claude-sonnet-4-5") -> Any:
    """One streamed Anthropic request: round 1 calls echo and fail, round 2 answers."""
    calls = anthropic_round("msg_1", ("text", "Let me ask."), ECHO_USE, fail_use(), stop="tool_use", usage=(10, 20))
    script(upstream, streamed(calls), streamed(ANSWERS))
    job = await admitted(engine, make_job(anthropic_request(model=model), headers=HEADERS))
    await read(await engine.open(job))
    return job


ECHO_USE = ("tool_use", "toolu_1", ECHO.name, json.dumps({"text": "hi"}))


# --- metrics ---------------------------------------------------------------------------------------------


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


async def test_metrics_after_a_tool_loop_a_failure_and_a_client_tool(
    make_engine: Callable[..., Engine], upstream: Any
) -> None:
    metrics = Metrics()
    engine = observed(make_engine(), metrics)
    await run_tool_loop(engine, upstream)
    # a blocking chat answer calling a client tool, then a 429 relayed as it came
    call = {"id": "call_9", "type": "function", "function": {"name": "shell", "arguments": "{}"}}
    body = {
        "id": "c1",
        "model": "gpt-4o-2024",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 20}},
    }
    script(upstream, whole(body), whole({"error": {"message": "slow down", "type": "rate_limit"}}, status=429))
    await read(await engine.open(await admitted(engine, chat_job(chat_request(stream=False)))))
    await read(await engine.open(await admitted(engine, chat_job(chat_request(stream=False)))))

    anthropic = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    openai = {"provider": "openai", "model": "gpt-4o"}
    claude = {"client": "Claude Code", "route": "/v1/messages"}
    chat = {"client": "Unknown", "route": "/v1/chat/completions"}
    assert value(metrics, "aibridge_interceptions_total", **anthropic, **claude, status="completed") == 1
    assert value(metrics, "aibridge_interceptions_total", **openai, **chat, status="completed") == 1
    assert value(metrics, "aibridge_interceptions_total", **openai, **chat, status="failed") == 1
    assert value(metrics, "aibridge_interceptions_inflight", **anthropic, route="/v1/messages") == 0
    assert value(metrics, "aibridge_interception_duration_seconds_count", **anthropic) == 1
    assert value(metrics, "aibridge_prompts_total", **anthropic, client="Claude Code") == 1
    assert value(metrics, "aibridge_time_to_first_token_seconds_count", **anthropic) == 1
    assert value(metrics, "aibridge_time_to_first_token_seconds_count", **openai) is None  # blocking: no TTFT
    assert value(metrics, "aibridge_upstream_calls_total", **anthropic, status="200") == 2
    assert value(metrics, "aibridge_upstream_calls_total", **openai, status="429") == 1
    assert value(metrics, "aibridge_tokens_total", **anthropic, type="input") == 40
    assert value(metrics, "aibridge_tokens_total", **anthropic, type="output") == 60
    assert value(metrics, "aibridge_tokens_total", **openai, type="input") == 30
    assert value(metrics, "aibridge_tokens_total", **openai, type="cache_read") == 20
    assert value(metrics, "aibridge_cost_usd_total", **anthropic) == pytest.approx((40 * 3 + 60 * 15) / 1e6)
    assert value(metrics, "aibridge_injected_tool_invocations_total", server="fake", tool="echo") == 1
    assert value(metrics, "aibridge_injected_tool_invocations_total", server="fake", tool="fail") == 1
    assert value(metrics, "aibridge_injected_tool_errors_total", server="fake", tool="fail") == 1
    assert value(metrics, "aibridge_injected_tool_errors_total", server="fake", tool="echo") is None
    assert value(metrics, "aibridge_injected_tool_duration_seconds_count", server="fake", tool="echo") == 1
    assert value(metrics, "aibridge_client_tool_selections_total", **openai, tool="shell") == 1


async def test_budget_refusals_are_counted(make_engine: Callable[..., Engine]) -> None:
    metrics = Metrics()
    ledger = Ledger(Budgets(users=(("alice", 0),)), (User(name="alice", token_hash="sha256:" + "0" * 64),))
    engine = observed(make_engine(ledger=ledger), metrics)
    job = make_job(anthropic_request(), headers=HEADERS)
    job.initiator = "alice"
    reply = await engine.admit(job)
    assert reply is not None and reply.status == 403
    labels = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    assert value(metrics, "aibridge_budget_refusals_total", **labels) == 1
    row = {**labels, "client": "Claude Code", "route": "/v1/messages", "status": "refused"}
    assert value(metrics, "aibridge_interceptions_total", **row) == 1


async def test_metrics_endpoint_serves_the_registry_on_loopback(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.passed_through("anthropic", "/v1/models", "GET", "200")
    host, port = metrics.serve("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.get(f"http://{host}:{port}/metrics")
    finally:
        metrics.close()
    assert response.status_code == 200
    assert 'aibridge_passthrough_total{method="GET",provider="anthropic",route="/v1/models",status="200"} 1.0' in (
        response.text
    )


def test_metrics_address_parsing() -> None:
    assert parse_address("9464") == ("127.0.0.1", 9464)
    assert parse_address(":9464") == ("127.0.0.1", 9464)
    assert parse_address("0.0.0.0:1") == ("0.0.0.0", 1)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    for bad in ("x", "1:99999", "host:"):
        with pytest.raises(ValueError):
            parse_address(bad)


# --- tracing ---------------------------------------------------------------------------------------------


def traced(content: bool = False) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(make_provider(SimpleSpanProcessor(exporter)), content=content), exporter


def all_text(spans: tuple[ReadableSpan, ...]) -> str:
    return json.dumps([dict(s.attributes or {}) for s in spans] + [s.name for s in spans])


async def test_spans_for_an_interception_its_rounds_and_tool_calls(
    make_engine: Callable[..., Engine], upstream: Any
) -> None:
    tracing, exporter = traced()
    engine = observed(make_engine(), tracing)
    job = await run_tool_loop(engine, upstream)
    spans = exporter.get_finished_spans()

    (root,) = [s for s in spans if s.name == INTERCEPTION_SPAN]
    rounds = sorted((s for s in spans if s.name == "chat claude-sonnet-4-5"), key=lambda s: s.start_time or 0)
    tool_spans = {s.name: s for s in spans if s.name.startswith("execute_tool")}
    assert len(spans) == 5 and len(rounds) == 2 and set(tool_spans) == {"execute_tool echo", "execute_tool fail"}
    assert root.parent is None
    for child in (*rounds, *tool_spans.values()):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    attrs = dict(root.attributes or {})
    assert attrs["aibridge.interception_id"] == str(job.id)
    assert attrs["gen_ai.provider.name"] == "anthropic" and attrs["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert attrs["gen_ai.response.model"] == "claude-sonnet-4-5-20250929"
    assert attrs["gen_ai.usage.input_tokens"] == 40 and attrs["gen_ai.usage.output_tokens"] == 60
    assert attrs["aibridge.rounds"] == 2 and attrs["aibridge.status"] == "completed"
    assert attrs["aibridge.client"] == "Claude Code"
    first, second = (dict(r.attributes or {}) for r in rounds)
    assert (first["aibridge.round"], second["aibridge.round"]) == (1, 2)
    assert (first["gen_ai.usage.output_tokens"], second["gen_ai.usage.output_tokens"]) == (20, 40)
    assert first["gen_ai.response.id"] == "msg_1" and first["http.response.status_code"] == 200
    assert first["server.address"] == "api.anthropic.com" and first["gen_ai.operation.name"] == "chat"
    assert rounds[0].end_time is not None and rounds[1].start_time is not None
    assert rounds[0].end_time <= rounds[1].start_time  # the tools ran between the rounds
    echo = dict(tool_spans["execute_tool echo"].attributes or {})
    assert echo["gen_ai.tool.name"] == "echo" and echo["gen_ai.tool.call.id"] == "toolu_1"
    assert echo["aibridge.mcp.server"] == "fake"
    assert tool_spans["execute_tool fail"].status.status_code.name == "ERROR"
    # no content by default: neither the prompt nor the tool's arguments
    assert "say hi" not in all_text(spans) and '"hi"' not in all_text(spans)
    assert KEY not in all_text(spans)


async def test_span_content_only_when_enabled(make_engine: Callable[..., Engine], upstream: Any) -> None:
    tracing, exporter = traced(content=True)
    await run_tool_loop(observed(make_engine(), tracing), upstream)
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == INTERCEPTION_SPAN]
    messages = json.loads(str((root.attributes or {})["gen_ai.input.messages"]))
    assert messages == [{"role": "user", "parts": [{"type": "text", "content": "say hi"}]}]
    (echo,) = [s for s in spans if s.name == "execute_tool echo"]
    assert json.loads(str((echo.attributes or {})["gen_ai.tool.call.arguments"])) == {"text": "hi"}


async def test_a_failed_upstream_marks_the_spans(make_engine: Callable[..., Engine], upstream: Any) -> None:
    tracing, exporter = traced()
    engine = observed(make_engine(), tracing)
    script(upstream, whole({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, status=529))
    await read(await engine.open(await admitted(engine, make_job(anthropic_request(stream=False), headers=HEADERS))))
    root, call = sorted(exporter.get_finished_spans(), key=lambda s: s.name)
    assert root.name == INTERCEPTION_SPAN and call.name == "chat claude-sonnet-4-5"
    assert root.status.status_code.name == call.status.status_code.name == "ERROR"
    assert (call.attributes or {})["http.response.status_code"] == 529
    assert (root.attributes or {})["aibridge.status"] == "failed"


# --- dumps -----------------------------------------------------------------------------------------------


async def test_dumps_one_masked_pair_per_round(
    make_engine: Callable[..., Engine], upstream: Any, tmp_path: Path
) -> None:
    dumps = Dumps(tmp_path)
    try:
        job = await run_tool_loop(observed(make_engine(), dumps), upstream, model="claude/../../escape")
        dumps.writer.flush()
    finally:
        dumps.close()
    folder = tmp_path / "anthropic" / "claude-..-..-escape"
    names = sorted(p.name.split("-", 1)[1] for p in folder.iterdir())
    assert names == [f"{job.id}-{n}.{kind}.txt" for n in (1, 2) for kind in ("req", "resp")]
    files = {p.name.split("-", 1)[1]: p.read_bytes() for p in folder.iterdir()}
    request = files[f"{job.id}-1.req.txt"].decode()
    head, body = request.split("\r\n\r\n", 1)
    lines = head.split("\r\n")
    assert lines[0] == "POST /v1/messages?beta=true HTTP/1.1"
    names_sent = [line.split(":", 1)[0] for line in lines[1:]]
    assert names_sent == sorted(names_sent, key=str.lower)
    assert KEY not in request and "x-api-key: sk-a...XYZW" in lines
    assert json.loads(body)["messages"] == [{"role": "user", "content": "say hi"}]
    assert body.startswith('{\n  "model"')  # pretty-printed, key order kept
    assert f"content-length: {len(body.encode())}" in lines
    second = json.loads(files[f"{job.id}-2.req.txt"].decode().split("\r\n\r\n", 1)[1])
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]  # round 2 carries the results
    response = files[f"{job.id}-2.resp.txt"]
    head, raw = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw == b"".join(ANSWERS)  # the stream as it came, byte for byte


async def test_dumps_of_a_failed_connection(make_engine: Callable[..., Engine], upstream: Any, tmp_path: Path) -> None:
    dumps = Dumps(tmp_path)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    upstream.respond = refuse
    try:
        engine = observed(make_engine(), dumps)
        job = await admitted(engine, make_job(anthropic_request(), headers=HEADERS))
        assert (await engine.open(job)).status == 502
        dumps.writer.flush()
    finally:
        dumps.close()
    (error,) = (tmp_path / "anthropic" / "claude-sonnet-4-5").glob("*.req_error.txt")
    assert "502" in error.read_text() and "connection refused" in error.read_text()


def test_passthrough_dumps_mask_credentials_and_stream_the_response(tmp_path: Path) -> None:
    dumps = Dumps(tmp_path)
    try:
        stem = dumps.passthrough_request(
            "anthropic",
            "POST",
            "/v1/oauth/token?client=cc&api_key=abcdefghijklmnopqrstuvwxyz",
            [("Authorization", "Bearer sk-ant-oat01-abcdefghijklmnop"), ("Content-Type", "application/json")],
            b'{"grant_type":"refresh_token","refresh_token":"rt-0123456789abcdefghij","max_tokens":5}',
        )
        tee = dumps.passthrough_response(
            stem, 200, "OK", [("content-type", "text/event-stream"), ("set-cookie", "s=1")]
        )
        assert [tee(b"data: 1\n\n"), tee(b"data: 2\n\n"), tee(b"")] == [b"data: 1\n\n", b"data: 2\n\n", b""]
        dumps.writer.flush()
    finally:
        dumps.close()
    (req,) = (tmp_path / "anthropic" / "passthrough").glob("*-v1-oauth-token-*.req.txt")
    text = req.read_bytes().decode()
    assert "abcdefghijklmnop" not in text and "rt-0123456789abcdefghij" not in text and "qrstuvwxyz" not in text
    assert "Authorization: Bearer sk-a...mnop" in text
    assert '"refresh_token": "rt-0...ghij"' in text and '"max_tokens": 5' in text
    assert text.startswith("POST /v1/oauth/token?client=cc&api_key=abcd...wxyz HTTP/1.1\r\n")
    (resp,) = (tmp_path / "anthropic" / "passthrough").glob("*.resp.txt")
    assert resp.read_bytes() == b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nset-cookie: ...\r\n\r\n" + (
        b"data: 1\n\ndata: 2\n\n"
    )


def test_masking_rules() -> None:
    assert mask_header("Authorization", "Bearer sk-proj-0123456789abcdef") == "Bearer sk-p...cdef"
    assert mask_header("X-Goog-Api-Key", "AIza0123456789abcdefgh") == "AIza...efgh"
    assert mask_header("anthropic-version", "2023-06-01") == "2023-06-01"
    assert mask_target("/v1/x?key=0123456789abcdefghij&alt=sse") == "/v1/x?key=0123...ghij&alt=sse"
    assert safe_name("../../etc/passwd") == "etc-passwd"


# --- JSON logs -------------------------------------------------------------------------------------------


async def test_json_logs_one_line_per_start_and_end(
    make_engine: Callable[..., Engine], upstream: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine = observed(make_engine(), JsonLog())
    with caplog.at_level(logging.INFO, logger="aibridge.interceptions"):
        job = await run_tool_loop(engine, upstream)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "aibridge.interceptions"]
    assert [line["record_type"] for line in lines] == ["interception_start", "interception_end"]
    start, end = lines
    assert start["id"] == end["id"] == str(job.id)
    assert start["client"] == end["client"] == "Claude Code"
    assert start["credential_kind"] == "byok" and start["credential_hint"] == "sk-a...XYZW"
    assert end["status"] == "completed" and end["http_status"] == 200
    assert (end["input_tokens"], end["output_tokens"], end["injected_tool_calls"]) == (40, 60, 2)
    assert end["duration_ms"] >= 0 and end["response_model"] == "claude-sonnet-4-5-20250929"
    assert KEY not in caplog.text


async def test_observers_never_fail_the_request(
    make_engine: Callable[..., Engine], upstream: Any, recorder: FakeRecorder
) -> None:
    class Broken(Observer):
        def event(self, event: object) -> None:
            raise RuntimeError("observer bug")

        def upstream(self, job: object, request: object) -> None:
            raise RuntimeError("observer bug")

        def refuse(self, job: object) -> None:
            raise RuntimeError("observer bug")

    engine = observed(make_engine(), Broken())
    await run_tool_loop(engine, upstream)
    assert [type(e).__name__ for e in recorder.events][-1] == "InterceptionEnded"


async def test_mcp_and_audit_gauges_are_read_when_scraped(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = AuditWriter(str(tmp_path / "audit.duckdb"))
    writer.start()
    servers = [
        McpServer(name="time", command=str(Path(sys.executable).parent / "mcp-server-time")),
        McpServer(name="down", command=str(tmp_path / "no-such-server")),
    ]
    manager = ToolManager(servers)
    metrics.state.writer = lambda: writer
    metrics.state.tools = lambda: manager
    try:
        await manager.start()
        await manager.wait_until_settled(20)
        got = samples(metrics)
    finally:
        await manager.stop()
        writer.close()
    assert got[("aibridge_mcp_server_up", frozenset({("server", "time")}))] == 1
    assert got[("aibridge_mcp_server_tools", frozenset({("server", "time")}))] >= 1
    assert got[("aibridge_mcp_server_up", frozenset({("server", "down")}))] == 0
    assert got[("aibridge_audit_queue_depth", frozenset())] == 0
    assert got[("aibridge_audit_write_errors_total", frozenset())] == 0


async def test_key_pools_and_limit_fallbacks_are_read_when_scraped(make_engine: Callable[..., Engine]) -> None:
    metrics = Metrics()
    engine = make_engine()
    pool = parse_config(
        {"providers": {"anthropic": {"key": ["sk-ant-api03-metrics-one-aaaa", "sk-ant-api03-two-bbbb"]}}}
    )
    anthropic = pool.providers[0]
    engine.keys.pick(anthropic)
    engine.keys.cool(anthropic, "sk-ant-api03-metrics-one-aaaa", 429, 30)
    engine.rate_limits = RateLimiter(RateLimits(), ())
    engine.rate_limits.fallbacks = 3
    metrics.state.engine = lambda: engine
    got = samples(metrics)
    key = frozenset({("provider", "anthropic"), ("key", "sk-a...aaaa")})
    assert got[("aibridge_central_key_requests_total", key)] == 1
    assert got[("aibridge_central_key_cooldowns_total", key)] == 1
    assert got[("aibridge_limit_store_fallbacks_total", frozenset({("limit", "rate")}))] == 3
    assert got[("aibridge_limit_store_fallbacks_total", frozenset({("limit", "budget")}))] == 0
    assert not any("sk-ant" in str(labels) for _, labels in got)  # keys never, only their hints


def test_cache_busts_and_what_they_cost_are_counted() -> None:
    metrics = Metrics()
    me = uuid7()
    metrics.event(started(me))
    for cost in (20700, None):
        metrics.event(bust(me, uuid7(), 6000, cost_micros=cost))
    labels = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    assert value(metrics, "aibridge_cache_busts_total", **labels) == 2
    assert value(metrics, "aibridge_cache_bust_cost_usd_total", **labels) == pytest.approx(0.0207)
