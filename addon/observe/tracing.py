"""OpenTelemetry traces: a span per interception, with a child per upstream call (tool-loop round) and per tool call.

Attribute names follow the GenAI semantic conventions where they exist (`gen_ai.*`; the upstream call is the
GenAI client span, `chat <model>`; tool calls are `execute_tool <tool>`), and `aibridge.*` for the rest.
Prompt text and tool arguments are content: recorded only when `content` is on. Exporting is the SDK's
`BatchSpanProcessor`, in its own thread; by default to OTLP over HTTP, configured by the standard `OTEL_*`
variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, ...).

Spans are built from the audit events as they happen. A round's span ends when its response body closes, but is
kept open (its end time fixed) until its token usage has arrived, so usage lands on the round it belongs to.
"""

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

import httpx
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from addon.audit import AuditEvent, InterceptionEnded, InterceptionStarted, PromptSubmitted, TokensUsed, ToolCalled
from addon.engine.ports import Headers, Observer, UpstreamCall

if TYPE_CHECKING:
    from addon.engine.job import Job

INTERCEPTION_SPAN = "aibridge.interception"
PASSTHROUGH_SPAN = "aibridge.passthrough"


@dataclass
class _Round:
    span: Span
    number: int
    end_ns: int | None = None

    def end(self) -> None:
        self.span.end(end_time=self.end_ns)


@dataclass
class _Live:
    span: Span
    provider: str
    model: str
    rounds: list[_Round] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    response_ids: list[str] = field(default_factory=list)


def make_provider(processor: SpanProcessor | None = None) -> TracerProvider:
    """A provider of our own (the global one is left to the host); OTLP/HTTP unless a processor is given."""
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "aibridge"}))
    provider = TracerProvider(resource=resource)
    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    return provider


class Tracing(Observer):
    def __init__(self, provider: TracerProvider, *, content: bool = False) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("aibridge")
        self.content = content
        self._live: dict[UUID, _Live] = {}

    def close(self) -> None:
        for live in self._live.values():  # still running at shutdown: end what was seen
            for r in live.rounds:
                r.end()
            live.span.end()
        self._live.clear()
        self.provider.shutdown()  # flushes the batch processor

    def event(self, event: AuditEvent) -> None:
        match event:
            case InterceptionStarted():
                span = self.tracer.start_span(
                    INTERCEPTION_SPAN,
                    kind=SpanKind.SERVER,
                    start_time=int(event.started_at.timestamp() * 1e9),
                    attributes={
                        "aibridge.interception_id": str(event.id),
                        "aibridge.provider_name": event.provider_name,
                        "aibridge.initiator": event.initiator,
                        "aibridge.client": event.client,
                        "aibridge.route": event.route,
                        "aibridge.credential_kind": event.credential_kind or "none",
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": event.provider,
                        "gen_ai.request.model": event.model,
                        "gen_ai.request.stream": event.streaming,
                        **({"gen_ai.conversation.id": event.client_session_id} if event.client_session_id else {}),
                        **({"aibridge.thread_root_id": str(event.thread_root_id)} if event.thread_root_id else {}),
                    },
                )
                self._live[event.id] = _Live(span, event.provider, event.model)
            case TokensUsed():
                if (live := self._live.get(event.interception_id)) is None:
                    return
                usage = {
                    "gen_ai.usage.input_tokens": event.input_tokens
                    + event.cache_read_input_tokens
                    + event.cache_write_input_tokens,  # the convention counts cached input in input
                    "gen_ai.usage.output_tokens": event.output_tokens,
                    "gen_ai.usage.cache_read.input_tokens": event.cache_read_input_tokens,
                    "gen_ai.usage.cache_creation.input_tokens": event.cache_write_input_tokens,
                }
                for key, value in usage.items():
                    live.usage[key] = live.usage.get(key, 0) + value
                if event.cost_micros is not None:
                    live.usage["aibridge.cost_micros"] = live.usage.get("aibridge.cost_micros", 0) + event.cost_micros
                if live.rounds:
                    live.rounds[-1].span.set_attributes(usage)
                    if event.provider_response_id:
                        live.rounds[-1].span.set_attribute("gen_ai.response.id", event.provider_response_id)
            case ToolCalled(injected=True):
                if (live := self._live.get(event.interception_id)) is None or "duration_ms" not in event.metadata:
                    return
                end = time.time_ns()
                span = self.tracer.start_span(
                    f"execute_tool {event.tool}",
                    context=trace.set_span_in_context(live.span),
                    kind=SpanKind.INTERNAL,
                    start_time=end - int(event.metadata["duration_ms"] * 1e6),
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": event.tool,
                        "gen_ai.tool.type": "function",
                        "gen_ai.tool.call.id": event.provider_tool_call_id or "",
                        "aibridge.mcp.server": str(event.metadata.get("server", "")),
                        "aibridge.mcp.server_url": event.server_url or "",
                        "aibridge.tool.result_size": int(event.metadata.get("result_size", 0)),
                        **({"gen_ai.tool.call.arguments": event.input or ""} if self.content else {}),
                    },
                )
                if event.invocation_error is not None:
                    span.set_status(Status(StatusCode.ERROR, event.invocation_error[:200]))
                    span.set_attribute("error.type", "tool_error")
                span.end(end_time=end)
            case PromptSubmitted():
                if self.content and (live := self._live.get(event.interception_id)) is not None:
                    message = [{"role": "user", "parts": [{"type": "text", "content": event.prompt}]}]
                    live.span.set_attribute("gen_ai.input.messages", json.dumps(message, ensure_ascii=False))
            case InterceptionEnded():
                if (live := self._live.pop(event.interception_id, None)) is None:
                    return
                for r in live.rounds:
                    if r.span.is_recording():
                        r.end()
                span = live.span
                span.set_attributes(live.usage)
                span.set_attribute("aibridge.status", event.status)
                span.set_attribute("aibridge.rounds", len(live.rounds))
                if event.http_status is not None:
                    span.set_attribute("http.response.status_code", event.http_status)
                if event.response_model:
                    span.set_attribute("gen_ai.response.model", event.response_model)
                if event.status in ("failed", "refused"):
                    span.set_status(Status(StatusCode.ERROR, (event.error or event.status)[:200]))
                    span.set_attribute("error.type", str(event.http_status or event.status))
                elif event.error:  # completed with a notice (round limit), or cancelled
                    span.set_attribute("aibridge.error", event.error[:200])
                span.end()

    def upstream(self, job: "Job", url: str, headers: Headers, body: bytes) -> UpstreamCall | None:
        if (live := self._live.get(job.id)) is None:
            return None
        for r in live.rounds:  # the previous round's usage is in: it can end now
            if r.span.is_recording():
                r.end()
        parsed = httpx.URL(url)
        span = self.tracer.start_span(
            f"chat {live.model}",
            context=trace.set_span_in_context(live.span),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": live.provider,
                "gen_ai.request.model": live.model,
                "aibridge.round": len(live.rounds) + 1,
                "server.address": parsed.host,
                "server.port": parsed.port or (443 if parsed.scheme == "https" else 80),
                "http.request.method": "POST",
                "url.path": parsed.path,
            },
        )
        r = _Round(span, len(live.rounds) + 1)
        live.rounds.append(r)
        return _Call(r)

    def passthrough(self, provider: str, method: str, url: str, path: str) -> Span:
        """A span for a passed-through request (ended by the caller with `passthrough_ended`)."""
        return self.tracer.start_span(
            PASSTHROUGH_SPAN,
            kind=SpanKind.SERVER,
            attributes={
                "aibridge.provider_name": provider,
                "http.request.method": method,
                "url.path": path,
                "server.address": url,
            },
        )

    @staticmethod
    def passthrough_ended(span: Span, status: int | None, error: str | None = None) -> None:
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None or (status is not None and status >= 500):
            span.set_status(Status(StatusCode.ERROR, (error or f"HTTP {status}")[:200]))
        span.end()


class _Call(UpstreamCall):
    def __init__(self, r: _Round) -> None:
        self.round = r
        self.first = True

    def responded(self, response: httpx.Response) -> None:
        self.round.span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 400:
            self.round.span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status_code}"))
            self.round.span.set_attribute("error.type", str(response.status_code))

    def failed(self, status: int | None, error: BaseException) -> None:
        span = self.round.span
        if status is None:
            span.set_attribute("aibridge.error", "cancelled")
        else:
            span.set_status(Status(StatusCode.ERROR, str(error)[:200] or type(error).__name__))
            span.set_attribute("error.type", type(error).__qualname__)
        self.round.end_ns = time.time_ns()
        self.round.end()

    def chunk(self, data: bytes) -> None:
        if self.first:
            self.first = False
            self.round.span.add_event("gen_ai.first_chunk")

    def closed(self, error: BaseException | None) -> None:
        self.round.end_ns = time.time_ns()
        if isinstance(error, Exception):  # not GeneratorExit or CancelledError: the client leaving is no error
            self.round.span.set_status(Status(StatusCode.ERROR, str(error)[:200] or type(error).__name__))
            self.round.span.set_attribute("error.type", type(error).__qualname__)
