"""One interception, from the client's request to the upstream and back, recorded on the way.

The proxy hook builds a `Job` and calls `admit()` (parse, record the start; a malformed body is answered
right there). The local server then calls `open()`, which sends the request upstream *before* committing a
status, so upstream errors are relayed with their own status, headers and body.

With no tools to inject, `Reply.body` relays the upstream bytes as they arrive while the wire parser reads
them for the audit. With injected tools, the same body runs the tool loop: each round's visible events are
relayed live, injected calls run concurrently (pings keep the stream alive), and the next round is sent,
until the model stops calling injected tools or `max_tool_rounds` is reached. A blocking request runs the
loop before it answers, once. The loop exists once, here; each wire format supplies its steps.

Every admitted job ends exactly once (`finish`), whatever fails: completed, failed or cancelled.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import httpx

from addon import upstream
from addon.audit import (
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
)
from addon.audit.lineage import Lineage
from addon.config import DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_MAX_TOOL_ROUNDS, McpServer
from addon.engine.clients import client_session_id, detect_client
from addon.ids import uuid7
from addon.observe import NO_OBSERVER, Observer, Recorder
from addon.policy.access import Access
from addon.policy.budgets import Ledger, Refusal, Reservation
from addon.policy.pricing import PriceBook
from addon.providers.routing import Api, Route
from addon.tools import TextPart, ToolResult
from addon.wire import (
    AnthropicMessages,
    OpenAIChat,
    OpenAIResponses,
    RequestInfo,
    ResponseParser,
    ToolCall,
    Turn,
    WireFormat,
    WireReader,
)
from addon.wire.base import LIMIT_NOTICE, LoopState, Next, ToolSpec, parse_arguments, tool_names
from addon.wire.encoding import decode_body, stream_decoder
from addon.wire.sse import SSEEvent, SSEParser

logger = logging.getLogger(__name__)

INTERCEPTION_HEADER = "x-aibridge-interception-id"
DEFAULT_MAX_OUTPUT = 4096
"""Output tokens a budget reservation assumes for a request that sets no limit."""
WIRES: dict[Api, WireFormat] = {Api.ANTHROPIC_MESSAGES: AnthropicMessages(), Api.OPENAI_CHAT: OpenAIChat()}
READERS: dict[Api, WireReader] = {**WIRES, Api.OPENAI_RESPONSES: OpenAIResponses()}
"""Every recorded API: the bridged ones, and the tapped ones the proxy passes through and reads."""


def error_body(provider_type: str, status: int, message: str) -> bytes:
    """A provider-shaped error body for any route of that provider's type."""
    wire = WIRES[Api.ANTHROPIC_MESSAGES] if provider_type == "anthropic" else WIRES[Api.OPENAI_CHAT]
    return wire.error_body(status, message)


class Tool(ToolSpec, Protocol):
    """An injected tool: what the model sees, and where it runs."""

    @property
    def server(self) -> McpServer: ...
    @property
    def tool(self) -> str: ...


class ToolSource(Protocol):
    """What the engine needs of the MCP side (`tools.ToolManager`)."""

    def tools(self) -> Sequence[Tool]: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult: ...


@dataclass(kw_only=True, eq=False)
class Job:
    """A bridged request, handed from the proxy hook to the local server."""

    id: UUID
    route: Route
    path: str
    """Path and query as the client sent them."""
    headers: list[tuple[str, str]]
    body: bytes
    initiator: str
    credential_kind: str | None = None
    credential_hint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Recorded on the interception: e.g. an in-process caller's `source` and `api_key_id`."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    json: dict | None = None
    info: RequestInfo | None = None
    thread_root_id: UUID | None = None
    response_id: str | None = None
    tools: dict[str, Tool] = field(default_factory=dict)
    """The injected tools, by model-visible name, as they were when the request arrived."""
    reservation: Reservation | None = None
    cost_micros: int = 0
    ended: bool = False

    @classmethod
    def of(
        cls, route: Route, path: str, body: bytes, access: Access, *, initiator: str | None = None, **metadata: Any
    ) -> "Job":
        """A request as access control let it through: its upstream headers and who it is for."""
        return cls(
            id=uuid7(),
            route=route,
            path=path,
            headers=access.headers,
            body=body,
            initiator=initiator or access.initiator,
            credential_kind=access.credential_kind,
            credential_hint=access.credential_hint,
            metadata=metadata,
        )

    @property
    def api(self) -> Api:
        assert self.route.api is not None
        return self.route.api


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    on_close: Callable[[], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        """Release everything, also when the body was never read (the client left before it started)."""
        try:
            await self.body.aclose()  # type: ignore[attr-defined]
        finally:
            if self.on_close is not None:
                await self.on_close()


class UpstreamUnavailable(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CutShort(Exception):
    """A reply body broke off after its status went out, where the body itself cannot say so (no error event
    fits it): whoever serves the reply must end the client's connection, so the client sees a broken answer
    at once instead of waiting for bytes that will never come."""


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def _is_success(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


class Engine:
    def __init__(
        self,
        recorder: Recorder,
        transport: httpx.AsyncBaseTransport,
        tools: ToolSource | None = None,
        *,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL,
        prices: PriceBook | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.recorder = recorder
        self.transport = transport
        self.tools = tools
        self.prices = prices or PriceBook()
        self.ledger = ledger
        self.max_tool_rounds = max_tool_rounds
        self.keepalive_interval = keepalive_interval
        self.lineage = Lineage(recorder.find_tool_call)
        self.active: dict[UUID, Job] = {}
        self.shutting_down: Callable[[], bool] = lambda: False
        """Set by the host: while it stops, connections close under running jobs, and that is the reason."""
        self.observer: Observer = NO_OBSERVER
        """Metrics, traces, dumps, the circuit breaker (`addon.observe`): sees every upstream call."""

    # --- admission -----------------------------------------------------------------------------------------

    async def admit(self, job: Job, refusal: tuple[int, str] | None = None) -> Reply | None:
        """Record the interception's start. A Reply means: answer the client with it now (a malformed body,
        a `refusal` decided by access control, or a spent budget)."""
        wire = READERS[job.api]
        headers = _header_map(job.headers)
        client = detect_client(headers)
        try:
            body = json.loads(job.body)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError; nesting too deep
            self._record_start(job, headers, client, model="unknown", streaming=False)
            if refusal is not None:
                return self._fail(job, wire, *refusal, status_name="refused")
            if job.api.tapped:
                return None  # passed through as it is: the upstream answers it
            return self._fail(job, wire, 400, f"invalid JSON body: {e}")
        job.json = body
        job.info = info = wire.parse_request(body)
        parent, job.thread_root_id = await self.lineage.resolve(info.correlating_tool_call_id)
        self._record_start(
            job,
            headers,
            client,
            model=info.model or "unknown",
            streaming=info.stream,
            session=client_session_id(client, headers, body),
            parent=parent,
        )
        if refusal is not None:
            return self._fail(job, wire, *refusal, status_name="refused")
        if (stop := self.observer.refuse(job)) is not None:  # an open circuit breaker
            return self._fail(job, wire, stop.status, stop.message, status_name="refused", headers=stop.headers)
        if self.ledger is not None:
            max_output = info.max_output or DEFAULT_MAX_OUTPUT
            estimate = self.prices.estimate(job.route.provider.type, info.model, len(job.body) // 4, max_output)
            decision = self.ledger.admit(job.initiator, estimate)
            if isinstance(decision, Refusal):
                return self._fail(job, wire, 403, decision.message, status_name="refused")
            job.reservation = decision
        return None

    def _record_start(
        self,
        job: Job,
        headers: dict[str, str],
        client: str,
        *,
        model: str,
        streaming: bool,
        session: str | None = None,
        parent: UUID | None = None,
    ) -> None:
        self.active[job.id] = job
        self.recorder.emit(
            InterceptionStarted(
                id=job.id,
                initiator=job.initiator,
                provider=job.route.provider.type,
                provider_name=job.route.provider.name,
                model=model,
                client=client,
                user_agent=headers.get("user-agent"),
                client_session_id=session,
                thread_parent_id=parent,
                thread_root_id=job.thread_root_id,
                correlating_tool_call_id=job.info.correlating_tool_call_id if job.info else None,
                credential_kind=job.credential_kind,
                credential_hint=job.credential_hint,
                streaming=streaming,
                route=job.path.split("?", 1)[0],
                started_at=job.started_at,
                metadata=job.metadata,
            )
        )

    # --- the upstream call ---------------------------------------------------------------------------------

    def _injectable(self, job: Job) -> Sequence[Tool]:
        """The tools to inject, where the request's API lets them in; a client tool keeps its own name."""
        if self.tools is None or job.info is None or not job.info.takes_tools:
            return ()
        taken = tool_names(job.json or {})  # read only when there are tools to inject
        return [t for t in self.tools.tools() if t.name not in taken]

    async def _send(self, job: Job, body: bytes) -> httpx.Response:
        provider = job.route.provider
        url = provider.upstream.url(job.path)
        headers = upstream.request_headers(job.headers, provider.extra_headers)
        call = self.observer.upstream(job, url, headers, body)
        try:
            response = await upstream.send(self.transport, "POST", provider.upstream, job.path, headers, body)
        except httpx.TimeoutException as e:
            call.failed(504, e)
            raise UpstreamUnavailable(504, f"upstream {provider.name} timed out: {type(e).__name__}") from e
        except (httpx.HTTPError, OSError) as e:
            call.failed(502, e)
            raise UpstreamUnavailable(502, f"upstream {provider.name} unreachable: {e or type(e).__name__}") from e
        except BaseException as e:
            call.failed(None, e)
            raise
        call.responded(response)
        return response

    async def open(self, job: Job) -> Reply:
        """Call the upstream; return its status and headers, and a body that relays and records."""
        wire = WIRES[job.api]
        assert job.json is not None
        body, hide_usage = wire.prepare_request(job.body, job.json)
        state: LoopState | None = None
        if tools := self._injectable(job):
            job.tools = {t.name: t for t in tools}
            body = wire.inject_tools(body, tools)
            state = LoopState(frozenset(job.tools), self.max_tool_rounds, client_wants_usage=not hide_usage)
        try:
            response = await self._send(job, body)
        except UpstreamUnavailable as e:
            return self._fail(job, wire, e.status, str(e))
        except BaseException:
            self.finish(job, "cancelled", "client disconnected before the upstream answered")
            raise
        try:
            if not _is_success(response) or (state is None and not _is_sse(response)):
                return await self._relay_whole(job, wire, response)
            if not _is_sse(response):
                return await self._loop_blocking(job, wire, state, body, response)
        except BaseException:
            await response.aclose()
            self.finish(job, "cancelled", "client disconnected")
            raise
        if state is None:
            relay = self._relay(job, wire, wire.parser(hide_usage_chunk=hide_usage), response)
        else:
            relay = self._loop_stream(job, wire, state, body, response)
        headers = upstream.response_headers(response.headers, keep_length=False)
        if _decodes(response):
            headers = [(n, v) for n, v in headers if n.lower() != "content-encoding"]  # relayed decoded
        headers.append((INTERCEPTION_HEADER, str(job.id)))

        async def abandon() -> None:  # a no-op once the relay ran: the response is closed, the job ended
            await response.aclose()
            self.finish(job, "cancelled", "client disconnected")

        return Reply(response.status_code, headers, relay, abandon)

    async def _relay_whole(self, job: Job, wire: WireFormat, response: httpx.Response) -> Reply:
        """A blocking answer or an error, read whole before its status goes out: one that breaks off after its
        headers then gets a provider-shaped 502 (504 when it stalls) instead of a promise of bytes that never
        come. The upstream's own bytes are relayed, encoding and all."""
        try:
            raw = await _read(job, response)
        except UpstreamUnavailable as e:
            return self._fail(job, wire, e.status, str(e))
        parser = wire.parser()
        _guarded(parser.feed_body, decode_body(raw, response.headers.get("content-encoding")))
        turn = _guarded(parser.turn) or Turn()
        if _is_success(response):
            self._record_turn(job, turn)
            status, error = ("failed", turn.error) if turn.error else ("completed", None)
        else:
            status = "failed"
            error = turn.error or f"HTTP {response.status_code}: {raw[:300].decode('utf-8', 'replace')}"
        self.finish(job, status, error, response.status_code, turn.model)
        headers = upstream.response_headers(response.headers, keep_length=True)
        headers.append((INTERCEPTION_HEADER, str(job.id)))
        return Reply(response.status_code, headers, _once(raw))

    # --- relaying ------------------------------------------------------------------------------------------

    async def _relay(
        self, job: Job, wire: WireFormat, parser: ResponseParser, response: httpx.Response
    ) -> AsyncIterator[bytes]:
        """A stream relayed as it is, parsed on the way. Once the client has its final event, the outcome is
        the stream's own, even if the client leaves before the upstream's last bytes (the OpenAI SDK closes
        right after `[DONE]`)."""
        relayed = _Relayed()
        status: str | None = "cancelled"
        error: str | None = "client disconnected"
        try:
            async for data in _round(wire, response, parser, relayed):
                yield data
            status = None
        except httpx.HTTPError as e:
            status, error = "failed", f"upstream connection failed mid-response: {e or type(e).__name__}"
            if stream_decoder(response.headers.get("content-encoding")) is None:
                raise CutShort(error) from e  # relayed in an encoding the bridge cannot write an event in
            yield wire.error_event(error)
        finally:
            turn = _guarded(parser.turn) or Turn()
            if status is None or (status == "cancelled" and relayed.final):
                error = turn.error
                status = "failed" if error else "completed"
            self._record_turn(job, turn)
            self.finish(job, status, error, response.status_code, turn.model)
            await response.aclose()

    async def _loop_stream(
        self, job: Job, wire: WireFormat, state: LoopState, body: bytes, response: httpx.Response
    ) -> AsyncIterator[bytes]:
        """The tool loop, streamed: every round's visible events go out as they arrive."""
        status, error, model = "cancelled", "client disconnected", None
        http_status = response.status_code
        relayed, turn = _Relayed(), Turn()
        try:
            while True:
                parser = wire.loop_parser(state)
                try:
                    async for data in _round(wire, response, parser, relayed):
                        yield data
                finally:
                    turn = _guarded(parser.turn) or Turn()
                    self._record_turn(job, turn)
                    state.add_usage(turn.usage)
                    model = turn.model or model
                    await response.aclose()
                if turn.error or turn.next is not Next.CONTINUE:
                    status, error = _outcome(turn, state)
                    break
                results_task = asyncio.ensure_future(self._run_tools(job, turn))
                try:
                    while not results_task.done():
                        await asyncio.wait({results_task}, timeout=self.keepalive_interval)
                        if not results_task.done():
                            yield wire.ping_event()
                    results = results_task.result()
                finally:
                    if not results_task.done():
                        results_task.cancel()
                body = wire.next_request(body, turn, results)
                state.round += 1
                try:
                    response = await self._send(job, body)
                except UpstreamUnavailable as e:
                    status, error = "failed", str(e)
                    yield wire.error_event(error)
                    break
                if not _is_success(response):
                    http_status = response.status_code
                    try:
                        detail = (await _read(job, response))[:300].decode("utf-8", "replace")
                    except UpstreamUnavailable as e:
                        detail = str(e)
                    status, error = "failed", f"upstream answered round {state.round} with {http_status}: {detail}"
                    yield wire.error_event(error)
                    break
        except httpx.HTTPError as e:
            status, error = "failed", f"upstream connection failed mid-response: {e or type(e).__name__}"
            yield wire.error_event(error)
        finally:
            await response.aclose()
            if status == "cancelled" and relayed.final:  # the client had the last round's final event
                status, error = _outcome(turn, state)
            self.finish(job, status, error, http_status, model)

    async def _loop_blocking(
        self, job: Job, wire: WireFormat, state: LoopState, body: bytes, response: httpx.Response
    ) -> Reply:
        """The tool loop, blocking: every round runs, then the client gets one merged answer."""
        first = response
        bodies: list[dict[str, Any]] = []
        hidden = False
        model = None
        while True:
            try:
                raw = await _read(job, response)
            except UpstreamUnavailable as e:
                return self._fail(job, wire, e.status, str(e))
            if not _is_success(response):
                self.finish(
                    job,
                    "failed",
                    f"upstream answered round {state.round} with {response.status_code}",
                    response.status_code,
                    model,
                )
                headers = upstream.response_headers(response.headers, keep_length=True)
                return Reply(response.status_code, [*headers, (INTERCEPTION_HEADER, str(job.id))], _once(raw))
            parser = wire.loop_parser(state)
            decoded = decode_body(raw, response.headers.get("content-encoding"))
            _guarded(parser.feed_body, decoded)
            turn = _guarded(parser.turn) or Turn()
            self._record_turn(job, turn)
            state.add_usage(turn.usage)
            model = turn.model or model
            hidden = hidden or any(c.name in state.injected for c in turn.tool_calls)
            try:
                bodies.append(json.loads(decoded))
            except ValueError:
                bodies.append({})
            if turn.error or turn.next is not Next.CONTINUE:
                break
            results = await self._run_tools(job, turn)
            body = wire.next_request(body, turn, results)
            state.round += 1
            try:
                response = await self._send(job, body)
            except UpstreamUnavailable as e:
                return self._fail(job, wire, e.status, str(e))
        status, error = _outcome(turn, state)
        limited = turn.next is Next.LIMIT
        self.finish(job, status, error, first.status_code, model)
        headers = upstream.response_headers(first.headers, keep_length=False)
        if len(bodies) == 1 and not hidden and not limited:
            final = raw  # the upstream's own bytes, encoding and all
        else:
            final = wire.merge_rounds(bodies, state, limited)
            headers = [(n, v) for n, v in headers if n.lower() != "content-encoding"]
        headers += [("content-length", str(len(final))), (INTERCEPTION_HEADER, str(job.id))]
        return Reply(first.status_code, headers, _once(final))

    # --- tools ---------------------------------------------------------------------------------------------

    async def _run_tools(self, job: Job, turn: Turn) -> list[tuple[ToolCall, ToolResult]]:
        """Run a turn's injected calls concurrently; every call gets a result, none raises."""
        return await asyncio.gather(*(self._run_tool(job, turn, call) for call in turn.tool_calls))

    async def _run_tool(self, job: Job, turn: Turn, call: ToolCall) -> tuple[ToolCall, ToolResult]:
        tool = job.tools[call.name]
        arguments = parse_arguments(call.arguments)
        if arguments is None:
            message = "not run: the arguments are not a JSON object (cut off?)"
            result = ToolResult((TextPart(f"Error: {message}"),), is_error=True, error=message)
        else:
            assert self.tools is not None
            try:
                result = await self.tools.call(call.name, arguments)
            except asyncio.CancelledError:
                self.recorder.emit(_injected_call(job, turn, call, tool, "cancelled: the client went away"))
                raise
        invocation_error = result.error
        if invocation_error is None and result.is_error:
            invocation_error = next((p.text for p in result.parts if isinstance(p, TextPart)), "tool reported an error")
        metadata = {
            "duration_ms": round(result.duration_ms, 3),
            "result_size": result.size,
            "is_error": result.is_error,
        }
        self.recorder.emit(_injected_call(job, turn, call, tool, invocation_error, metadata))
        return call, result

    # --- the audit -----------------------------------------------------------------------------------------

    def _record_turn(self, job: Job, turn: Turn) -> None:
        emit = self.recorder.emit
        rid = turn.response_id
        job.response_id = job.response_id or rid
        if turn.usage is not None:
            emit(self._priced(job, turn))
        for call in turn.tool_calls:
            if (tool := job.tools.get(call.name)) is not None:
                if turn.next is not Next.CONTINUE:  # run calls are recorded with their results
                    emit(_unrun_call(job, turn, call, tool))
                continue
            emit(
                ToolCalled(
                    interception_id=job.id,
                    provider_response_id=rid,
                    provider_tool_call_id=call.id or None,
                    server_url=None,
                    tool=call.name,
                    input=call.arguments,
                    injected=False,
                )
            )
            if call.id:
                self.lineage.remember(call.id, job.id, job.thread_root_id)
        for thought in turn.thoughts:
            emit(ThoughtRecorded(interception_id=job.id, content=thought.content, metadata={"source": thought.source}))

    def _priced(self, job: Job, turn: Turn) -> TokensUsed:
        """A token-usage row with its cost, priced by the response's model (else the requested one)."""
        assert turn.usage is not None
        u, provider = turn.usage, job.route.provider.type
        requested = job.info.model if job.info else None
        cost = self.prices.cost(provider, turn.model, u) if turn.model else None
        if cost is None and requested and requested != turn.model:
            cost = self.prices.cost(provider, requested, u)
        if cost is not None:
            job.cost_micros += cost.total
        return TokensUsed(
            interception_id=job.id,
            provider_response_id=turn.response_id,
            input_tokens=u.input,
            output_tokens=u.output,
            cache_read_input_tokens=u.cache_read,
            cache_write_input_tokens=u.cache_write,
            metadata=u.extra,
            cost_micros=cost.total if cost else None,
            input_cost_micros=cost.input if cost else None,
            output_cost_micros=cost.output if cost else None,
            cache_read_cost_micros=cost.cache_read if cost else None,
            cache_write_cost_micros=cost.cache_write if cost else None,
            prices=cost.prices.as_json() if cost else {},
        )

    def _fail(
        self,
        job: Job,
        wire: WireReader,
        status: int,
        message: str,
        *,
        status_name: str = "failed",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        self.finish(job, status_name, message, status)
        headers = [("content-type", "application/json"), *headers, (INTERCEPTION_HEADER, str(job.id))]
        return Reply(status, headers, _once(wire.error_body(status, message)))

    def finish(
        self,
        job: Job,
        status: str,
        error: str | None = None,
        http_status: int | None = None,
        response_model: str | None = None,
    ) -> None:
        """Record the end of an interception; only the first call for a job counts."""
        if job.ended:
            return
        job.ended = True
        if status == "cancelled" and self.shutting_down():
            error = "proxy shut down"
        self.active.pop(job.id, None)
        if job.reservation is not None and self.ledger is not None:
            self.ledger.settle(job.reservation, job.cost_micros)
        if job.info is not None and job.info.prompt:
            self.recorder.emit(
                PromptSubmitted(interception_id=job.id, provider_response_id=job.response_id, prompt=job.info.prompt)
            )
        self.recorder.emit(
            InterceptionEnded(
                interception_id=job.id,
                status=status,
                error=error[:4000] if error else None,
                http_status=http_status,
                response_model=response_model,
            )
        )

    def abort_all(self, reason: str) -> None:
        for job in list(self.active.values()):
            self.finish(job, "cancelled", reason)

    def conclude(self, job: Job, turn: Turn, status: str, error: str | None, http_status: int | None) -> None:
        """End an interception someone else relayed (a tapped passthrough), with what its response said."""
        if not job.ended:
            self._record_turn(job, turn)
        self.finish(job, status, error, http_status, turn.model)


def _injected_call(
    job: Job, turn: Turn, call: ToolCall, tool: Tool, error: str | None, metadata: dict[str, Any] | None = None
) -> ToolCalled:
    return ToolCalled(
        interception_id=job.id,
        provider_response_id=turn.response_id,
        provider_tool_call_id=call.id or None,
        server_url=tool.server.location,
        tool=tool.tool,
        input=call.arguments,
        injected=True,
        invocation_error=error[:4000] if error else None,
        metadata={"server": tool.server.name, "name": call.name, **(metadata or {})},
    )


def _unrun_call(job: Job, turn: Turn, call: ToolCall, tool: Tool) -> ToolCalled:
    """An injected call the bridge did not run, and why."""
    if turn.next is Next.LIMIT:
        reason = "not run: max_tool_rounds reached"
    elif any(c.name not in job.tools for c in turn.tool_calls):
        reason = "not run: the turn also called the client's own tools"
    else:
        reason = f"not run: the response ended with {turn.stop_reason or 'an error'}"
    return _injected_call(job, turn, call, tool, reason)


def _outcome(turn: Turn, state: LoopState) -> tuple[str, str | None]:
    if turn.error:
        return "failed", turn.error
    if turn.next is Next.LIMIT:
        return "completed", LIMIT_NOTICE.format(rounds=state.round)
    return "completed", None


def _is_sse(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


async def _read(job: Job, response: httpx.Response) -> bytes:
    """A whole upstream body; one that breaks off or stalls is the upstream's failure (502 / 504)."""
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    except httpx.TimeoutException as e:
        name = job.route.provider.name
        raise UpstreamUnavailable(504, f"upstream {name} timed out mid-response: {type(e).__name__}") from e
    except httpx.HTTPError as e:
        raise UpstreamUnavailable(502, f"upstream failed mid-response: {e or type(e).__name__}") from e
    finally:
        await response.aclose()


@dataclass(slots=True)
class _Relayed:
    """How far a stream's relay got."""

    final: bool = False
    """The client has been handed the stream's final event (`message_stop`, `[DONE]`, an error)."""


async def _round(
    wire: WireFormat, response: httpx.Response, parser: ResponseParser, relayed: _Relayed
) -> AsyncIterator[bytes]:
    """One upstream response relayed through a parser: SSE event by event, or a body as it arrives."""
    if not _is_sse(response):
        chunks: list[bytes] = []
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            yield chunk
        _guarded(parser.feed_body, decode_body(b"".join(chunks), response.headers.get("content-encoding")))
        return
    decode = stream_decoder(response.headers.get("content-encoding"))
    if decode is None:
        async for chunk in response.aiter_raw():  # an encoding the bridge cannot read: relay as is, unparsed
            yield chunk
        return
    sse = SSEParser()
    last: SSEEvent | None = None
    async for raw in response.aiter_raw():
        if not (events := sse.feed(decode(raw))):
            continue
        last = _last_meaningful(events, last)
        out = []
        for event in events:
            if (data := _relayed(parser.feed_event, event)) is not None:
                out.append(data)
                if event is last and wire.ends_stream(event):  # relayed, not hidden (a loop's inner rounds)
                    relayed.final = True
        if out:
            yield out[0] if len(out) == 1 else b"".join(out)
    if (tail := sse.close()) is not None:
        last = _last_meaningful([tail], last)
        if (data := _relayed(parser.feed_event, tail)) is not None:
            relayed.final = relayed.final or wire.ends_stream(tail)
            yield data
    if last is None or not wire.ends_stream(last):  # a clean close before the final event is a cut-off stream
        raise httpx.RemoteProtocolError("the stream ended before its final event (message_stop / [DONE])")


def _last_meaningful(events: list[SSEEvent], last: SSEEvent | None) -> SSEEvent | None:
    """The last event carrying an event name or data (comments and stray blank lines do not count)."""
    for event in reversed(events):
        if event.event or event.data:
            return event
    return last


def _relayed(feed: Callable[[SSEEvent], bytes | None], event: SSEEvent) -> bytes | None:
    """Parse for the audit, relay regardless: a parser bug must never cost the client an event."""
    try:
        return feed(event)
    except Exception:  # boundary: audit parsing of third-party bytes
        logger.exception("aibridge: could not parse an upstream event; relaying it as is")
        return event.raw


def _guarded[T](fn: Callable[..., T], *args: object) -> T | None:
    try:
        return fn(*args)
    except Exception:  # boundary: audit parsing of third-party bytes
        logger.exception("aibridge: could not parse an upstream response for the audit")
        return None


def _decodes(response: httpx.Response) -> bool:
    """Whether the relay decodes this response's content-encoding (and so must drop the header)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    return encoding not in ("", "identity") and stream_decoder(encoding) is not None
