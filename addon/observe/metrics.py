"""Prometheus metrics, served on a local endpoint by prometheus-client's own thread.

Counters and histograms are updated from the audit events and upstream calls as they happen (each update is a
lock and an add); gauges that mirror other parts (the audit writer's queue, MCP connections) are read when
scraped. Labels carry provider names, models, clients, routes, tool and server names: never keys or tokens.
The registry is the instance's own, so several bridges in one process (tests) do not collide.
"""

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID
from wsgiref.simple_server import WSGIServer

import httpx
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from addon.audit import (
    AuditEvent,
    CacheBust,
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    TokensUsed,
    ToolCalled,
)
from addon.engine.ports import Headers, Observer, UpstreamCall

if TYPE_CHECKING:
    from addon.audit.writer import AuditWriter
    from addon.engine.core import Engine
    from addon.engine.job import Job
    from addon.tools import ToolManager

logger = logging.getLogger(__name__)

PREFIX = "aibridge"
DURATION_BUCKETS = (0.5, 2, 5, 15, 30, 60, 120, 300, 600)
"""The reference's buckets, plus 300 and 600 s: long tool loops are this bridge's normal case."""
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
TOOL_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300)


@dataclass
class _Live:
    provider: str
    model: str
    client: str
    route: str
    streaming: bool
    started: float
    first_chunk: bool = False


class Metrics(Observer):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.interceptions = Counter(
            f"{PREFIX}_interceptions",
            "Bridged interceptions that ended, by outcome (completed, failed, cancelled, refused).",
            ["provider", "model", "client", "status", "route"],
            registry=r,
        )
        self.inflight = Gauge(
            f"{PREFIX}_interceptions_inflight",
            "Bridged interceptions in progress.",
            ["provider", "model", "route"],
            registry=r,
        )
        self.duration = Histogram(
            f"{PREFIX}_interception_duration_seconds",
            "From the request's arrival to the interception's end, all tool-loop rounds included.",
            ["provider", "model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Streamed interceptions: from the request's arrival to the first body bytes from the provider.",
            ["provider", "model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.upstream_calls = Counter(
            f"{PREFIX}_upstream_calls",
            "Calls to providers (one per tool-loop round) by HTTP status, or timeout / unreachable / cancelled.",
            ["provider", "model", "status"],
            registry=r,
        )
        self.passthrough = Counter(
            f"{PREFIX}_passthrough",
            "Requests on provider hosts passed through unchanged, by response status (or error).",
            ["provider", "route", "method", "status"],
            registry=r,
        )
        self.prompts = Counter(
            f"{PREFIX}_prompts",
            "Interceptions carrying a human prompt (tool-result turns carry none).",
            ["provider", "model", "client"],
            registry=r,
        )
        self.tokens = Counter(
            f"{PREFIX}_tokens",
            "Tokens by type: input (uncached), output, cache_read, cache_write.",
            ["provider", "model", "type"],
            registry=r,
        )
        self.cost = Counter(f"{PREFIX}_cost_usd", "Priced spend in US$.", ["provider", "model"], registry=r)
        self.unpriced = Counter(
            f"{PREFIX}_unpriced_token_usages",
            "Token-usage records the price book could not price (their cost is missing, not zero).",
            ["provider", "model"],
            registry=r,
        )
        self.cache_busts = Counter(
            f"{PREFIX}_cache_busts",
            "Requests that missed the prompt cache their conversation had just left (busts).",
            ["provider", "model"],
            registry=r,
        )
        self.cache_bust_cost = Counter(
            f"{PREFIX}_cache_bust_cost_usd",
            "US$ the busts cost over reading the cache (priced busts only).",
            ["provider", "model"],
            registry=r,
        )
        self.tool_calls = Counter(
            f"{PREFIX}_injected_tool_invocations",
            "Injected MCP tool calls the bridge ran.",
            ["server", "tool"],
            registry=r,
        )
        self.tool_errors = Counter(
            f"{PREFIX}_injected_tool_errors",
            "Injected MCP tool calls that failed, timed out or returned an error result.",
            ["server", "tool"],
            registry=r,
        )
        self.tool_duration = Histogram(
            f"{PREFIX}_injected_tool_duration_seconds",
            "How long injected MCP tool calls took.",
            ["server", "tool"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self.client_tools = Counter(
            f"{PREFIX}_client_tool_selections",
            "Calls of the client's own tools chosen by the model (relayed to the client, not run by the bridge).",
            ["provider", "model", "tool"],
            registry=r,
        )
        self.budget_refusals = Counter(
            f"{PREFIX}_budget_refusals",
            "Requests refused because the user's monthly budget was spent.",
            ["provider", "model"],
            registry=r,
        )
        self.breaker_state = Gauge(
            f"{PREFIX}_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 0.5 half-open, 1 open.",
            ["provider", "model"],
            registry=r,
        )
        self.breaker_trips = Counter(
            f"{PREFIX}_circuit_breaker_trips", "Times a circuit breaker opened.", ["provider", "model"], registry=r
        )
        self.breaker_rejects = Counter(
            f"{PREFIX}_circuit_breaker_rejects",
            "Requests refused by an open (or saturated half-open) circuit breaker.",
            ["provider", "model"],
            registry=r,
        )
        self.state = _StateCollector()
        r.register(self.state)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds, ...
        self._live: dict[UUID, _Live] = {}
        self._server: WSGIServer | None = None
        self.address: tuple[str, int] | None = None

    # --- serving -------------------------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve /metrics on host:port in prometheus-client's thread; returns the address bound."""
        server, _thread = start_http_server(port, host, self.registry)
        self._server = server
        self.address = (host, server.server_address[1])
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # --- observing -----------------------------------------------------------------------------------------

    def event(self, event: AuditEvent) -> None:
        match event:
            case InterceptionStarted():
                live = _Live(
                    event.provider_name, event.model, event.client, event.route, event.streaming, time.monotonic()
                )
                self._live[event.id] = live
                self.inflight.labels(live.provider, live.model, live.route).inc()
            case InterceptionEnded():
                if (live := self._live.pop(event.interception_id, None)) is None:
                    return
                self.inflight.labels(live.provider, live.model, live.route).dec()
                self.interceptions.labels(live.provider, live.model, live.client, event.status, live.route).inc()
                self.duration.labels(live.provider, live.model).observe(time.monotonic() - live.started)
                if event.status == "refused" and (event.error or "").startswith("budget exceeded"):
                    self.budget_refusals.labels(live.provider, live.model).inc()
            case TokensUsed():
                provider, model = self._labels(event.interception_id)
                for kind, count in (
                    ("input", event.input_tokens),
                    ("output", event.output_tokens),
                    ("cache_read", event.cache_read_input_tokens),
                    ("cache_write", event.cache_write_input_tokens),
                ):
                    if count:
                        self.tokens.labels(provider, model, kind).inc(count)
                if event.cost_micros is None:
                    self.unpriced.labels(provider, model).inc()
                elif event.cost_micros:
                    self.cost.labels(provider, model).inc(event.cost_micros / 1_000_000)
            case PromptSubmitted():
                if (live := self._live.get(event.interception_id)) is not None:
                    self.prompts.labels(live.provider, live.model, live.client).inc()
            case ToolCalled(injected=True):
                if "duration_ms" not in event.metadata:
                    return  # not run (mixed turn, round limit) or cancelled: no invocation
                server = str(event.metadata.get("server", event.server_url))
                self.tool_calls.labels(server, event.tool).inc()
                self.tool_duration.labels(server, event.tool).observe(event.metadata["duration_ms"] / 1000)
                if event.invocation_error is not None:
                    self.tool_errors.labels(server, event.tool).inc()
            case ToolCalled():
                provider, model = self._labels(event.interception_id)
                self.client_tools.labels(provider, model, event.tool).inc()
            case CacheBust():
                provider, model = self._labels(event.interception_id)
                self.cache_busts.labels(provider, model).inc()
                if event.cost_micros:
                    self.cache_bust_cost.labels(provider, model).inc(event.cost_micros / 1_000_000)

    def upstream(self, job: "Job", url: str, headers: Headers, body: bytes) -> UpstreamCall:
        return _Call(self, job.id, job.route.provider.name, (job.info.model if job.info else None) or "unknown")

    def _labels(self, interception_id: UUID) -> tuple[str, str]:
        live = self._live.get(interception_id)
        return (live.provider, live.model) if live is not None else ("unknown", "unknown")

    # --- from elsewhere --------------------------------------------------------------------------------------

    def passed_through(self, provider: str, route: str, method: str, status: str) -> None:
        self.passthrough.labels(provider, route, method, status).inc()

    def breaker_changed(self, provider: str, model: str, state: str) -> None:
        from addon.policy.breaker import OPEN, STATE_VALUES

        self.breaker_state.labels(provider, model).set(STATE_VALUES[state])
        if state == OPEN:
            self.breaker_trips.labels(provider, model).inc()

    def breaker_rejected(self, provider: str, model: str) -> None:
        self.breaker_rejects.labels(provider, model).inc()


class _Call(UpstreamCall):
    def __init__(self, metrics: Metrics, job_id: UUID, provider: str, model: str) -> None:
        self.metrics = metrics
        self.job_id = job_id
        self.provider = provider
        self.model = model
        self.ok = False

    def responded(self, response: httpx.Response) -> None:
        self.ok = 200 <= response.status_code < 300
        self.metrics.upstream_calls.labels(self.provider, self.model, str(response.status_code)).inc()

    def failed(self, status: int | None, error: BaseException) -> None:
        outcome = "cancelled" if status is None else "timeout" if status == 504 else "unreachable"
        self.metrics.upstream_calls.labels(self.provider, self.model, outcome).inc()

    def chunk(self, data: bytes) -> None:
        if not self.ok:
            return
        live = self.metrics._live.get(self.job_id)
        if live is not None and live.streaming and not live.first_chunk:
            live.first_chunk = True
            self.metrics.ttft.labels(live.provider, live.model).observe(time.monotonic() - live.started)
        self.ok = False  # only the first chunk of a call matters


class _StateCollector(Collector):
    """Gauges read from the audit writer and the MCP tool manager at scrape time (in the server's thread: the
    values read are plain attributes, each read atomic)."""

    def __init__(self) -> None:
        self.writer: Callable[[], AuditWriter | None] = lambda: None
        self.tools: Callable[[], ToolManager | None] = lambda: None
        self.engine: Callable[[], Engine | None] = lambda: None

    def describe(self) -> Iterable[Metric]:
        return ()  # collected only when scraped; the names cannot clash with the registry's own metrics

    def collect(self) -> Iterable[Metric]:
        writer = self.writer()
        if writer is not None:
            yield _gauge("audit_queue_depth", "Audit events accepted but not yet committed.", writer.queue_depth())
            yield _counter("audit_write_errors", "Failed attempts to write the audit file.", writer.write_errors)
            yield _counter("audit_rows_written", "Audit rows committed to the audit file.", writer.rows_written)
            yield _counter("audit_purged_interceptions", "Interceptions purged by retention.", writer.purged)
            yield _counter(
                "audit_dropped_events", "Audit events dropped: too many were waiting for the store.", writer.dropped
            )
        engine = self.engine()
        if engine is not None:
            yield from _limits(engine)
        tools = self.tools()
        if tools is not None:
            up = GaugeMetricFamily(f"{PREFIX}_mcp_server_up", "1 when the MCP server is connected.", labels=["server"])
            count = GaugeMetricFamily(
                f"{PREFIX}_mcp_server_tools", "Tools the MCP server offers for injection.", labels=["server"]
            )
            for name, connected, tool_count in tools.status():
                up.add_metric([name], 1.0 if connected else 0.0)
                count.add_metric([name], tool_count)
            yield up
            yield count


def _limits(engine: "Engine") -> Iterable[Metric]:
    """Central keys by their hint (never the key), and decisions the shared database could not make."""
    picks = CounterMetricFamily(
        f"{PREFIX}_central_key_requests", "Requests given each key of a pool.", labels=["provider", "key"]
    )
    for (provider, hint), count in sorted(engine.keys.requests.items()):
        picks.add_metric([provider, hint], count)
    yield picks
    cooled = CounterMetricFamily(
        f"{PREFIX}_central_key_cooldowns",
        "Keys of a pool that answered 429 or 401 and were set aside.",
        labels=["provider", "key"],
    )
    for (provider, hint), count in sorted(engine.keys.cooldowns.items()):
        cooled.add_metric([provider, hint], count)
    yield cooled
    fallbacks = CounterMetricFamily(
        f"{PREFIX}_limit_store_fallbacks",
        "Limit decisions made without the shared database (admitted locally or refused, per on_store_down).",
        labels=["limit"],
    )
    fallbacks.add_metric(["budget"], getattr(engine.ledger, "fallbacks", 0))
    fallbacks.add_metric(["rate"], getattr(engine.rate_limits, "fallbacks", 0))
    yield fallbacks


def _gauge(name: str, doc: str, value: Any) -> Metric:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _counter(name: str, doc: str, value: Any) -> Metric:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def parse_address(value: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT`; no host means 127.0.0.1 (never every interface by default)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{value!r}: expected PORT or HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{value!r}: port must be 0-65535")
    return host, number
