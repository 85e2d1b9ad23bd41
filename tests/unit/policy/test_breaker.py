"""The circuit breaker, driven through the engine against a scripted provider on 127.0.0.1 (real HTTP).

The breaker's clock is the test's, so opening, half-open probing and recovery need no waiting.
"""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from addon import upstream as upstream_client
from addon.audit import AuditWriter, InterceptionEnded
from addon.config import CircuitBreakerConfig, parse_config
from addon.engine.core import Engine
from addon.engine.job import Job
from addon.inprocess import Bridge as InProcessBridge
from addon.observe import ObservedRecorder, Observers
from addon.observe.metrics import Metrics
from addon.policy.breaker import CLOSED, HALF_OPEN, OPEN, Breakers
from addon.providers import Api
from addon.tools import ToolManager
from tests.support.fakes import FakeRecorder, make_job, read
from tests.support.mock_upstream import Answer, MockUpstream

CONFIG = CircuitBreakerConfig(failure_threshold=2, interval=10, timeout=30, max_requests=2)
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
OK = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 1, "output_tokens": 1},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    server = MockUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def breakers(clock: Clock, metrics: Metrics) -> Breakers:
    return Breakers(CONFIG, clock, on_change=metrics.breaker_changed)


@pytest.fixture
async def engine(
    mock: MockUpstream, recorder: FakeRecorder, breakers: Breakers, metrics: Metrics
) -> AsyncIterator[Engine]:
    breakers.on_reject = metrics.breaker_rejected
    hub = Observers([breakers, metrics])
    async with upstream_client.make_transport(False) as transport:
        engine = Engine(ObservedRecorder(recorder, hub), transport)
        engine.observer = hub
        yield engine


def providers(url: str) -> Any:
    return parse_config({"providers": {"anthropic": {"upstream": url}, "openai": {"upstream": url}}})


def job(mock: MockUpstream | str, model: str = "claude-sonnet-4-5", api: str = "anthropic") -> Job:
    anthropic, openai = providers(mock if isinstance(mock, str) else mock.url).providers[:2]
    if api == "anthropic":
        body = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        return make_job(json.dumps(body).encode(), provider=anthropic)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    headers = [("Authorization", "Bearer sk-proj-0123456789abcdef")]
    return make_job(json.dumps(body).encode(), api=Api.OPENAI_CHAT, provider=openai, headers=headers)


async def call(engine: Engine, j: Job) -> tuple[int, dict[str, str], Any]:
    """Admit and run one request to its end: status, headers, JSON body."""
    reply = await engine.admit(j) or await engine.open(j)
    body = b"".join(await read(reply))
    return reply.status, {k.lower(): v for k, v in reply.headers}, json.loads(body)


def gauge(metrics: Metrics, name: str, model: str = "claude-sonnet-4-5") -> float | None:
    return metrics.registry.get_sample_value(name, {"provider": "anthropic", "model": model})


async def test_trips_refuses_probes_and_recovers(
    engine: Engine, mock: MockUpstream, recorder: FakeRecorder, breakers: Breakers, clock: Clock, metrics: Metrics
) -> None:
    mock.enqueue(Answer.json(OVERLOADED, status=529), Answer.json(OVERLOADED, status=529))
    assert (await call(engine, job(mock)))[0] == 529
    assert breakers.state("anthropic", "claude-sonnet-4-5") == CLOSED
    assert (await call(engine, job(mock)))[0] == 529  # the second in a row: open
    assert breakers.state("anthropic", "claude-sonnet-4-5") == OPEN
    assert gauge(metrics, "aibridge_circuit_breaker_state") == 1.0
    assert gauge(metrics, "aibridge_circuit_breaker_trips_total") == 1

    # open: refused at once, provider-shaped, with retry-after; the provider never hears of it
    clock.now += 10
    refused = job(mock)
    status, headers, body = await call(engine, refused)
    assert (status, headers["retry-after"]) == (503, "20")
    assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "circuit breaker is open"}}
    assert len(mock.requests) == 2
    end = recorder.ended(refused)
    assert (end.status, end.http_status, end.error) == ("refused", 503, "circuit breaker is open")
    assert gauge(metrics, "aibridge_circuit_breaker_rejects_total") == 1

    # another model of the same provider has its own breaker
    mock.enqueue(Answer.json(OK))
    assert (await call(engine, job(mock, "claude-opus-4-1")))[0] == 200

    # after the timeout: half-open, two probes go through, a third waits for them
    clock.now += 20
    first, second, third = job(mock), job(mock), job(mock)
    assert await engine.admit(first) is None and await engine.admit(second) is None
    assert breakers.state("anthropic", "claude-sonnet-4-5") == HALF_OPEN
    assert gauge(metrics, "aibridge_circuit_breaker_state") == 0.5
    status, headers, _ = await call(engine, third)
    assert (status, headers["retry-after"]) == (503, "1")
    mock.enqueue(Answer.json(OK), Answer.json(OK))
    for probe in (first, second):
        reply = await engine.open(probe)
        assert reply.status == 200
        await read(reply)
    assert breakers.state("anthropic", "claude-sonnet-4-5") == CLOSED
    assert gauge(metrics, "aibridge_circuit_breaker_state") == 0.0
    mock.enqueue(Answer.json(OK))
    assert (await call(engine, job(mock)))[0] == 200
    assert breakers.circuits == {}  # healthy models are not kept: the client names them, without limit


async def test_a_failed_probe_opens_it_again(
    engine: Engine, mock: MockUpstream, breakers: Breakers, clock: Clock, metrics: Metrics
) -> None:
    mock.enqueue(*[Answer.json(OVERLOADED, status=503)] * 3)
    for _ in range(2):
        await call(engine, job(mock))
    clock.now += 30
    status, _, _ = await call(engine, job(mock))  # the probe fails
    assert status == 503 and len(mock.requests) == 3
    assert breakers.state("anthropic", "claude-sonnet-4-5") == OPEN
    status, headers, _ = await call(engine, job(mock))
    assert (status, headers["retry-after"], len(mock.requests)) == (503, "30", 3)
    assert gauge(metrics, "aibridge_circuit_breaker_trips_total") == 2


async def test_successes_and_spaced_failures_keep_it_closed(
    engine: Engine, mock: MockUpstream, breakers: Breakers, clock: Clock
) -> None:
    mock.enqueue(Answer.json(OVERLOADED, status=429), Answer.json(OK), Answer.json(OVERLOADED, status=429))
    for _ in range(3):
        await call(engine, job(mock))
    assert breakers.state("anthropic", "claude-sonnet-4-5") == CLOSED  # a success in between resets the count
    mock.enqueue(Answer.json(OVERLOADED, status=429))
    clock.now += 11  # beyond `interval`: the earlier failure no longer counts
    await call(engine, job(mock))
    assert breakers.state("anthropic", "claude-sonnet-4-5") == CLOSED
    mock.enqueue(Answer.json({"type": "error", "error": {"type": "invalid_request_error", "message": "x"}}, status=400))
    await call(engine, job(mock))  # a client error says nothing about the provider's health
    assert breakers.state("anthropic", "claude-sonnet-4-5") == CLOSED


async def test_openai_shape_and_statuses(engine: Engine, mock: MockUpstream, breakers: Breakers) -> None:
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    mock.enqueue(Answer.json(error, status=529), Answer.json(error, status=504), Answer.json(error, status=504))
    await call(engine, job(mock, "gpt-4o", api="openai"))  # 529 is Anthropic's, not OpenAI's
    assert breakers.state("openai", "gpt-4o") == CLOSED
    for _ in range(2):
        await call(engine, job(mock, "gpt-4o", api="openai"))
    status, headers, body = await call(engine, job(mock, "gpt-4o", api="openai"))
    assert (status, headers["retry-after"]) == (503, "30")
    assert body["error"]["message"] == "circuit breaker is open" and body["error"]["type"] == "server_error"


async def test_an_unreachable_provider_counts_and_an_abandoned_probe_frees_its_slot(
    engine: Engine, mock: MockUpstream, breakers: Breakers, clock: Clock, recorder: FakeRecorder
) -> None:
    for _ in range(2):
        status, _, _ = await call(engine, job("http://127.0.0.1:9"))  # the discard port: nothing listens
        assert status == 502
    assert breakers.state("anthropic", "claude-sonnet-4-5") == OPEN
    clock.now += 30
    probes = [job(mock), job(mock)]
    for probe in probes:
        assert await engine.admit(probe) is None
    engine.finish(probes[0], "cancelled", "client disconnected")  # never called the provider
    assert any(isinstance(e, InterceptionEnded) and e.interception_id == probes[0].id for e in recorder.events)
    replacement = job(mock)
    assert await engine.admit(replacement) is None  # the abandoned probe's slot is free again
    mock.enqueue(Answer.json(OK), Answer.json(OK))
    for probe in (probes[1], replacement):
        await read(await engine.open(probe))
    assert breakers.state("anthropic", "claude-sonnet-4-5") == CLOSED


async def test_the_in_process_bridge_has_the_configured_breaker_and_retention(tmp_path: Path) -> None:
    config = parse_config({"circuit_breaker": {"failure_threshold": 3}, "retention_days": 90})
    writer = AuditWriter(str(tmp_path / "audit.duckdb"))
    writer.start()
    async with upstream_client.make_transport(False) as transport:
        bridge = InProcessBridge(config, writer, ToolManager(()), transport)
        try:
            (breaker,) = bridge.engine.observer.observers  # type: ignore[attr-defined]
            assert isinstance(breaker, Breakers) and breaker.config.failure_threshold == 3
            assert isinstance(bridge.engine.recorder, ObservedRecorder)
            assert writer.scrub is not None  # secrets redacted in the writer's thread (the default)
            assert writer.retention_days == 90
        finally:
            await bridge.aclose()


def test_tapped_responses_calls_are_never_refused(breakers: Breakers) -> None:
    def parsed(body: dict[str, Any], api: Api) -> Job:
        job = make_job(json.dumps(body).encode(), api=api)
        job.info = api.reader.parse_request(body)
        return job

    chat = parsed({"model": "gpt-5", "messages": []}, Api.OPENAI_CHAT)
    assert breakers.refuse(chat) is None
    for _ in range(2):
        breakers.record(chat.id, ("openai", "gpt-5"), 0, failed=True)
    assert breakers.state("openai", "gpt-5") == OPEN
    assert breakers.refuse(chat) is not None
    assert breakers.refuse(parsed({"model": "gpt-5", "input": "hi"}, Api.OPENAI_RESPONSES)) is None
