"""The mitmproxy addon that operates the bridge: metrics, traces, API dumps and JSON logs. It runs after the
Bridge (see `addons()`) and hands its observers to the Bridge's gateway, which puts them after the circuit
breaker on the engine; passthrough flows it sees through its own hooks, after the Bridge's have routed them.
"""

import asyncio
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from mitmproxy import ctx, exceptions, http

from addon.mitm.bridge import META_ROUTE
from addon.observe.dumps import Dumps
from addon.observe.jsonlog import JsonLog
from addon.observe.metrics import Metrics, parse_address
from addon.observe.tracing import Tracing, make_provider
from addon.providers.routing import Route

if TYPE_CHECKING:
    from addon.mitm.bridge import Bridge

logger = logging.getLogger(__name__)

META_DUMP = "aibridge_dump"
META_DUMP_TEE = "aibridge_dump_tee"
META_SPAN = "aibridge_span"
_OPTIONS = {
    "aibridge_metrics",
    "aibridge_tracing",
    "aibridge_trace_content",
    "aibridge_dump_dir",
    "aibridge_json_logs",
    "aibridge_config",
    "aibridge_db",
}
CLOSE_TIMEOUT = 10.0
_ID_LIKE = re.compile(r"^(?=.*\d)[A-Za-z0-9_.:-]{16,}$")


class Operations:
    def __init__(self, bridge: "Bridge") -> None:
        self.bridge = bridge
        self.metrics: Metrics | None = None
        self.metrics_address: tuple[str, int] | None = None
        self.tracing: Tracing | None = None
        self.dumps: Dumps | None = None
        self.json_log: JsonLog | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "aibridge_metrics",
            str,
            "",
            "Serve Prometheus metrics at http://HOST:PORT/metrics: PORT or HOST:PORT (no host: 127.0.0.1; "
            "port 0: any free port, logged). Empty: no metrics endpoint.",
        )
        loader.add_option(
            "aibridge_tracing",
            bool,
            False,
            "Export OpenTelemetry traces (a span per interception, per upstream round and per tool call) over "
            "OTLP/HTTP, configured by the standard OTEL_* environment variables.",
        )
        loader.add_option(
            "aibridge_trace_content",
            bool,
            False,
            "Put prompt text and tool arguments on trace spans (off: spans carry no content).",
        )
        loader.add_option(
            "aibridge_dump_dir",
            str | None,
            None,
            "Write the request and response of every upstream call (bridged and passthrough) to this directory, "
            "credentials masked.",
        )
        loader.add_option(
            "aibridge_json_logs",
            bool,
            False,
            "Log one JSON line per interception start and end, with the audit's fields.",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & _OPTIONS:
            return
        opts = ctx.options
        if "aibridge_metrics" in updated:
            self._use_metrics(opts.aibridge_metrics)
        if updated & {"aibridge_tracing", "aibridge_trace_content"}:
            if self.tracing is not None:
                self.tracing.close()
                self.tracing = None
            if opts.aibridge_tracing:
                self.tracing = Tracing(make_provider(), content=opts.aibridge_trace_content)
        if "aibridge_dump_dir" in updated:
            self._use_dumps(opts.aibridge_dump_dir)
        if "aibridge_json_logs" in updated:
            self.json_log = JsonLog() if opts.aibridge_json_logs else None
        if (gateway := self.bridge.gateway) is None:
            return
        if gateway.breakers is not None and self.metrics is not None:  # a new configuration brings a new breaker
            gateway.breakers.on_change = self.metrics.breaker_changed
            gateway.breakers.on_reject = self.metrics.breaker_rejected
        gateway.observe([p for p in (self.metrics, self.tracing, self.dumps, self.json_log) if p is not None])

    def _use_metrics(self, address: str) -> None:
        wanted = None
        if address.strip():
            try:
                wanted = parse_address(address.strip())
            except ValueError as e:
                raise exceptions.OptionsError(f"aibridge_metrics: {e}") from None
        if self.metrics is not None and wanted == self.metrics_address:
            return
        if self.metrics is not None:
            self.metrics.close()
        if wanted is None:
            self.metrics, self.metrics_address = None, None
            return
        # Counters survive a move; until it is served again the address is None, so mitmproxy's rollback of a
        # failed change serves the old one again.
        metrics = self.metrics = self.metrics or Metrics()
        self.metrics_address = None
        try:
            host, port = metrics.serve(*wanted)
        except OSError as e:
            raise exceptions.OptionsError(f"aibridge_metrics: cannot listen on {address}: {e.strerror or e}") from None
        self.metrics_address = wanted
        metrics.state.writer = lambda: self.bridge.writer
        metrics.state.tools = lambda: self.bridge.tools
        metrics.state.engine = lambda: self.bridge.gateway.engine if self.bridge.gateway is not None else None
        shown = f"[{host}]" if ":" in host else host
        logger.info(f"aibridge: Prometheus metrics on http://{shown}:{port}/metrics")

    def _use_dumps(self, directory: str | None) -> None:
        if self.dumps is not None:
            self.dumps.close()
            self.dumps = None
        if not directory:
            return
        path = Path(directory).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise exceptions.OptionsError(f"aibridge_dump_dir: cannot create {directory}: {e.strerror}") from None
        self.dumps = Dumps(path)
        logger.info(f"aibridge: API dumps in {path}")

    # --- passthrough ---------------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        route: Route | None = flow.metadata.get(META_ROUTE)
        if route is None or route.bridged:  # bridged calls are observed in the engine
            return
        request = flow.request
        if self.dumps is not None and flow.response is None:  # passed through, tapped (Responses) or not
            flow.metadata[META_DUMP] = self.dumps.passthrough_request(
                route.provider.name,
                request.method,
                request.path,
                request.headers.items(multi=True),
                request.get_content(strict=False) or b"",
            )
        if self.tracing is not None and route.api is None:  # a tapped call has its interception span
            path = request.path.split("?", 1)[0]  # a query may carry a key (`?key=`)
            span = self.tracing.passthrough(route.provider.name, request.method, route.provider.host, path)
            flow.metadata[META_SPAN] = span
            if flow.response is not None:  # refused here (access): answered without the provider
                self.tracing.passthrough_ended(span, flow.response.status_code)
                flow.metadata.pop(META_SPAN)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        stem = flow.metadata.get(META_DUMP)
        if stem is None or self.dumps is None or flow.response is None:
            return
        response = flow.response
        tee = self.dumps.passthrough_response(
            stem, response.status_code, response.reason, response.headers.items(multi=True)
        )
        flow.metadata[META_DUMP_TEE] = tee
        previous = response.stream
        if callable(previous):  # another addon taps this stream too: the dump sees the upstream's bytes first
            response.stream = lambda data: previous(tee(data))
        else:
            response.stream = tee

    def response(self, flow: http.HTTPFlow) -> None:
        if (route := _passthrough(flow)) is None or flow.response is None:
            return
        if (span := flow.metadata.pop(META_SPAN, None)) is not None:
            Tracing.passthrough_ended(span, flow.response.status_code)
        if self.metrics is not None:
            self._count(flow, route, str(flow.response.status_code))

    def error(self, flow: http.HTTPFlow) -> None:
        if (tee := flow.metadata.pop(META_DUMP_TEE, None)) is not None:
            tee(b"")
        if (route := _passthrough(flow)) is None:
            return
        if (span := flow.metadata.pop(META_SPAN, None)) is not None:
            Tracing.passthrough_ended(span, None, flow.error.msg if flow.error else "flow failed")
        if self.metrics is not None:
            self._count(flow, route, "error")

    def _count(self, flow: http.HTTPFlow, route: Route, status: str) -> None:
        assert self.metrics is not None
        self.metrics.passed_through(route.provider.name, route_label(flow.request.path), flow.request.method, status)

    async def done(self) -> None:
        """After the Bridge's `done` (which ends every running interception): flush and stop, off the event
        loop (a span export to a slow collector must not freeze the proxy's last moments)."""
        parts = [p for p in (self.metrics, self.tracing, self.dumps) if p is not None]
        self.metrics = self.tracing = self.dumps = None
        for part in parts:
            try:
                await asyncio.wait_for(asyncio.to_thread(part.close), CLOSE_TIMEOUT)
            except TimeoutError:
                logger.warning("aibridge: %s did not stop within %g s", type(part).__name__, CLOSE_TIMEOUT)


def _passthrough(flow: http.HTTPFlow) -> Route | None:
    """The route of a flow passed through unrecorded (tapped ones are interceptions in the metrics)."""
    route: Route | None = flow.metadata.get(META_ROUTE)
    return route if route is not None and route.api is None else None


def route_label(path: str) -> str:
    """A passthrough path as a metric label: no query, ids folded to `{id}`, at most four segments."""
    segments = path.split("?", 1)[0].split("/")[1:]
    folded = ["{id}" if _ID_LIKE.match(s) or len(s) > 40 else s for s in segments[:4]]
    return "/" + "/".join(folded) + ("/..." if len(segments) > 4 else "")
