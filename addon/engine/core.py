"""The engine: one interception, from the client's request to the upstream and back, recorded on the way.

The front door builds a `Job` and calls `admit()` (parse, record the start; a malformed body or a refusal is
answered right there). Whoever serves the reply then calls `open()`, which sends the request upstream *before*
committing a status, so upstream errors are relayed with their own status, headers and body.

With no tools to inject, `Reply.body` relays the upstream bytes as they arrive while the wire parser reads
them for the audit (`relay`). With injected tools, the same body runs the tool loop (`loop`). A blocking
answer, and every error, is read whole before its status goes out.

Every admitted job ends exactly once (`finish`), whatever fails: completed, failed, cancelled or refused.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import httpx

from addon import upstream
from addon.audit import InterceptionEnded, InterceptionStarted, PromptSubmitted
from addon.audit.lineage import Lineage
from addon.config import DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_MAX_TOOL_ROUNDS, DEFAULT_TOOL_RESULT_EXCERPT
from addon.engine import loop, record
from addon.engine.attribution import AGENT_TOOLS, SubAgentNames, agent_thread, attribute
from addon.engine.cache import CacheWatch
from addon.engine.clients import client_session_id, detect_client
from addon.engine.job import INTERCEPTION_HEADER, CutShort, Job, Reply, Status, UpstreamUnavailable
from addon.engine.ports import NO_CALL, Observer, Recorder, Tool, ToolSource
from addon.engine.relay import (
    Relayed,
    decodes,
    guarded,
    is_stream,
    is_success,
    once,
    read_whole,
    readable,
    relay_round,
)
from addon.policy import Refusal
from addon.policy.budgets import Budget
from addon.policy.keypool import COOLING_STATUSES, KeyPools, cooldown
from addon.policy.models import ModelPolicy
from addon.policy.pricing import PriceBook
from addon.policy.ratelimits import RateLimiter
from addon.policy.redaction import Redactor
from addon.policy.toolgate import ToolGate, Verdict, blocked_text
from addon.providers import Api, sigv4
from addon.upstream.encoding import decode_body
from addon.upstream.transport import Http1Transport
from addon.wire import ResponseParser, Turn, WireFormat, WireReader
from addon.wire.base import LoopState, Next, tool_names
from addon.wire.sse import SSEEvent
from addon.wire.toolgate import ChatGate, MessagesGate

logger = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 4096
"""Output tokens a budget reservation assumes for a request that sets no limit."""
OUTBOUND_INLINE = 32 * 1024
"""Bodies smaller than this are scanned for secrets on the event loop: a thread hop would cost more."""


def _header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def _with_path_facts(body: dict, job: Job) -> dict:
    """The body as the wire format should read it where the path says more: the model of an Azure deployment,
    Vertex or Bedrock when the body names none, whether a Bedrock endpoint streams. A copy, for reading only."""
    facts: dict = {}
    if body.get("model") is None and job.route.model:
        facts["model"] = job.route.model
    if (endpoint := job.route.endpoint) is not None and endpoint.stream is not None:
        facts["stream"] = endpoint.stream
    return {**body, **facts} if facts else body


class Engine:
    def __init__(
        self,
        recorder: Recorder,
        transport: Http1Transport,
        tools: ToolSource | None = None,
        *,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL,
        prices: PriceBook | None = None,
        ledger: Budget | None = None,
    ) -> None:
        self.recorder = recorder
        self.transport = transport
        self.tools = tools
        self.prices = prices or PriceBook()
        self.ledger = ledger
        self.rate_limits: RateLimiter | None = None
        self.keys = KeyPools()
        """Central keys' cooldowns (pools of several keys): picked by access control, cooled by `send`."""
        self.models: ModelPolicy | None = None
        """Model allowlists; None: any model."""
        self.outbound: tuple[str, Redactor] | None = None
        """("redact" | "block", the redactor) for secrets in requests before they leave; None: they leave."""
        self.gate: ToolGate | None = None
        """Rules on the client's own tool calls; None: they go to the client unjudged."""
        self.max_tool_rounds = max_tool_rounds
        self.keepalive_interval = keepalive_interval
        self.excerpt_chars = DEFAULT_TOOL_RESULT_EXCERPT
        self.lineage = Lineage(recorder.find_tool_call)
        self.cache = CacheWatch()
        """Each conversation's last prompt cache, to find the requests that miss it (busts)."""
        self.subagents = SubAgentNames()
        self.active: dict[UUID, Job] = {}
        self.shutting_down: Callable[[], bool] = lambda: False
        """Set by the host: while it stops, connections close under running jobs, and that is the reason."""
        self.observer = Observer()
        """Metrics, traces, dumps, the circuit breaker (`addon.observe`): sees every upstream call."""

    # --- admission -----------------------------------------------------------------------------------------

    async def admit(self, job: Job, refusal: Refusal | None = None) -> Reply | None:
        """Record the interception's start. A Reply means: answer the client with it now (a malformed body,
        a `refusal` decided by access control, or a spent budget)."""
        wire = job.api.reader
        headers = _header_map(job.headers)
        client = detect_client(headers)
        try:
            body = json.loads(job.body)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError; nesting too deep
            self._start(job, record.started(job, headers, client, model="unknown", streaming=False))
            if refusal is not None:
                return self.refuse(job, wire, refusal)
            if job.route.tapped and self.models is None and self.outbound is None:
                return None  # passed through as it is: the upstream answers it (a guard would have to read it)
            return self.fail(job, wire, 400, f"invalid JSON body: {e}")
        blocked: tuple[str, ...] = ()
        if self.outbound is not None:
            body, blocked = await self._outbound(job, body)
        job.json = body
        job.info = info = wire.parse_request(_with_path_facts(body, job))
        parent, job.thread_root_id = await self.lineage.resolve(info.correlating_tool_call_id)
        session = client_session_id(client, headers, body)
        stream = session or str(job.thread_root_id or job.id)
        where = attribute(client, headers, body)
        if (agent := self.subagents.name(stream, headers.get("x-claude-code-agent-id"), where.agent)) != where.agent:
            where = replace(where, agent=agent)
        model = info.model or "unknown"
        job.conversation = (job.initiator, stream, where.agent, agent_thread(headers), model)
        started = record.started(
            job, headers, client, model=model, streaming=info.stream, session=session, parent=parent, attribution=where
        )
        self._start(job, started)
        for result in info.tool_results:
            self.recorder.emit(record.tool_result(job, result, self.excerpt_chars))
        if refusal is None and self.models is not None:  # the path's model is the one served, where it names one
            refusal = self.models.refusal(job.initiator, job.route.model, info.model)
        if refusal is None and blocked:
            refusal = Refusal(400, f"the request holds a secret ({', '.join(blocked)}): remove it and send it again")
        if refusal is None:
            refusal = self.observer.refuse(job)  # an open circuit breaker
        if refusal is None and self.rate_limits is not None:
            ticket = await self.rate_limits.admit(job.initiator, len(job.body) // 4)
            if isinstance(ticket, Refusal):
                refusal = ticket
            else:
                job.rate_ticket = ticket
        if refusal is None and self.ledger is not None:
            max_output = info.max_output or DEFAULT_MAX_OUTPUT
            estimate = self.prices.estimate(job.route.price_vendor, info.model, len(job.body) // 4, max_output)
            decision = await self.ledger.admit(job.initiator, estimate)
            if isinstance(decision, Refusal):
                refusal = decision
            else:
                job.reservation = decision
        return self.refuse(job, wire, refusal) if refusal is not None else None

    async def _outbound(self, job: Job, body: dict) -> tuple[dict, tuple[str, ...]]:
        """Secrets in the request: found (to refuse it, `block`: their kinds are returned), or replaced in the raw
        body, only their bytes (`redact`); a signed body cannot change, so there it is refused too. What was done
        is on record. A large body is scanned in a worker thread (about 10 ms for 250 KB), so other streams keep
        flowing meanwhile."""
        assert self.outbound is not None
        mode, redactor = self.outbound

        async def run(scan: Callable[[bytes], Any]) -> Any:
            return scan(job.body) if len(job.body) < OUTBOUND_INLINE else await asyncio.to_thread(scan, job.body)

        if mode == "block" or job.route.sealed or sigv4.signed(job.headers):  # a client's signature covers the body
            secrets = await run(redactor.kinds_in_json)
            if secrets:
                job.metadata["outbound"] = "blocked"
                job.metadata["secrets"] = list(secrets)
            return body, secrets
        cleaned, secrets = await run(redactor.redact_json)
        if secrets:
            job.body = cleaned
            job.metadata["outbound"] = "redacted"
            job.metadata["secrets"] = list(secrets)
            body = json.loads(cleaned)
        return body, ()

    def _start(self, job: Job, started: InterceptionStarted) -> None:
        self.active[job.id] = job
        self.recorder.emit(started)

    # --- the upstream call ---------------------------------------------------------------------------------

    def _injectable(self, job: Job) -> Sequence[Tool]:
        """The tools to inject, where the request's API lets them in; a client tool keeps its own name."""
        if self.tools is None or job.info is None or not job.info.takes_tools:
            return ()
        taken = tool_names(job.json or {})  # read only when there are tools to inject
        return [t for t in self.tools.tools() if t.name not in taken]

    async def send(self, job: Job, body: bytes, extra: Sequence[tuple[str, str]] = ()) -> httpx.Response:
        """One upstream call of the job (with `extra` headers), shown to the observer; no answer raises
        `UpstreamUnavailable`. A pooled central key answered 429 or 401 cools down, and the call is made again
        with the pool's next key, while there is one."""
        provider = job.route.provider
        for attempt in range(1, max(1, len(provider.keys)) + 1):
            response = await self._send_once(job, body, extra)
            key, status = job.central_key, response.status_code
            if key is None or status not in COOLING_STATUSES or not self.keys.pooled(provider):
                return response
            self.keys.cool(provider, key, status, cooldown(status, response.headers))
            following = self.keys.pick(provider)
            if isinstance(following, Refusal) or attempt == len(provider.keys):
                return response  # every key is cooling: the client gets this answer
            await response.aclose()
            job.headers = job.route.family.with_key(job.headers, following)
            job.central_key = following
        raise AssertionError("unreachable: the last attempt returns")

    async def _send_once(self, job: Job, body: bytes, extra: Sequence[tuple[str, str]]) -> httpx.Response:
        provider, target = job.route.provider, job.route.upstream
        url = target.url(job.path)
        headers = upstream.request_headers(job.headers, [*provider.extra_headers, *extra])
        if job.aws is not None:
            try:
                headers = job.route.sign(job.aws, "POST", job.path, headers, body)
            except ValueError as e:
                raise UpstreamUnavailable(502, str(e)) from e
        call = self.observer.upstream(job, url, headers, body) or NO_CALL
        try:
            response = await upstream.send(self.transport, "POST", target, job.path, headers, body)
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
        wire = job.api.wire
        assert job.json is not None
        body, hide_usage = wire.prepare_request(job.body, job.json)
        tool_loop: loop.Loop | None = None
        if tools := self._injectable(job):
            job.tools = {t.name: t for t in tools}
            body = wire.inject_tools(body, tools)
            state = LoopState(frozenset(job.tools), self.max_tool_rounds, client_wants_usage=not hide_usage)
            tool_loop = loop.Loop(self, job, wire, state, body)
        try:
            response = await self.send(job, body)
        except UpstreamUnavailable as e:
            return self.fail(job, wire, e.status, str(e))
        except BaseException:
            self.finish(job, Status.CANCELLED, "client disconnected before the upstream answered")
            raise
        job.gate = self._gate_for(job, response) if is_success(response) else None
        try:
            if not is_success(response) or (tool_loop is None and not is_stream(response)):
                return await self._relay_whole(job, wire, response)
            if tool_loop is not None and not is_stream(response):
                return await loop.blocking(tool_loop, response)
        except BaseException:
            await response.aclose()
            self.finish(job, Status.CANCELLED, "client disconnected")
            raise
        if tool_loop is None:
            relay = self._relay(job, wire, self.gated(job, wire.parser(hide_usage_chunk=hide_usage)), response)
        else:
            relay = loop.stream(tool_loop, response)
        headers = upstream.response_headers(response.headers, keep_length=False)
        if decodes(response):
            headers = [(n, v) for n, v in headers if n.lower() != "content-encoding"]  # relayed decoded
        headers.append((INTERCEPTION_HEADER, str(job.id)))

        async def abandon() -> None:  # a no-op once the relay ran: the response is closed, the job ended
            await response.aclose()
            self.finish(job, Status.CANCELLED, "client disconnected")

        return Reply(response.status_code, headers, relay, abandon)

    # --- relaying without the loop -------------------------------------------------------------------------

    async def _relay_whole(self, job: Job, wire: WireFormat, response: httpx.Response) -> Reply:
        """A blocking answer or an error, read whole before its status goes out: one that breaks off after its
        headers then gets a provider-shaped 502 (504 when it stalls) instead of a promise of bytes that never
        come. The upstream's own bytes are relayed, encoding and all."""
        try:
            raw = await read_whole(job.route.provider.name, response)
        except UpstreamUnavailable as e:
            return self.fail(job, wire, e.status, str(e))
        parser = wire.parser()
        decoded = decode_body(raw, response.headers.get("content-encoding"))
        guarded(parser.feed_body, decoded)
        turn = guarded(parser.turn) or Turn()
        headers = upstream.response_headers(response.headers, keep_length=True)
        if is_success(response):
            # a blocked call replaced: the body goes out decoded, re-serialized
            if job.gate is not None and (gated := job.gate.body(decoded)) is not decoded:
                raw = gated
                drop = ("content-encoding", "content-length")
                headers = [(n, v) for n, v in headers if n.lower() not in drop]
                headers.append(("content-length", str(len(raw))))
            self.record_turn(job, turn)
            status, error = record.outcome(turn)
        else:
            status = Status.FAILED
            error = turn.error or f"HTTP {response.status_code}: {raw[:300].decode('utf-8', 'replace')}"
        self.finish(job, status, error, response.status_code, turn.model)
        headers.append((INTERCEPTION_HEADER, str(job.id)))
        return Reply(response.status_code, headers, once(raw))

    async def _relay(
        self, job: Job, wire: WireFormat, parser: ResponseParser, response: httpx.Response
    ) -> AsyncIterator[bytes]:
        """A stream relayed as it is, parsed on the way. Once the client has its final event, the outcome is
        the stream's own, even if the client leaves before the upstream's last bytes (the OpenAI SDK closes
        right after `[DONE]`)."""
        relayed = Relayed()
        status: Status | None = Status.CANCELLED
        error: str | None = "client disconnected"
        try:
            async for data in relay_round(wire, response, parser, relayed):
                yield data
            status = None
        except httpx.HTTPError as e:
            status, error = Status.FAILED, f"upstream connection failed mid-response: {e or type(e).__name__}"
            if not readable(response):
                raise CutShort(error) from e  # relayed in an encoding the bridge cannot write an event in
            yield wire.error_event(error)
        finally:
            turn = guarded(parser.turn) or Turn()
            if status is None or (status is Status.CANCELLED and relayed.final):
                status, error = record.outcome(turn)
            self.record_turn(job, turn)
            self.finish(job, status, error, response.status_code, turn.model)
            await response.aclose()

    # --- the audit -----------------------------------------------------------------------------------------

    def record_turn(self, job: Job, turn: Turn) -> None:
        """A round's token usage (priced), the client tool calls the model made, its thinking."""
        emit = self.recorder.emit
        job.response_id = job.response_id or turn.response_id
        if turn.usage is not None:
            cost = record.cost(job, turn, self.prices)
            emit(record.priced(job, turn, cost))
            if job.conversation is not None and not job.cache_observed:  # the first round: the client's request
                job.cache_observed = True
                prices = cost.prices if cost is not None else None
                bust = self.cache.observe(job.conversation, job.id, job.started_at, turn.usage, job.body, prices)
                if bust is not None:
                    emit(bust)
        for call in turn.tool_calls:
            if (tool := job.tools.get(call.name)) is not None:
                if turn.next is not Next.CONTINUE:  # run calls are recorded with their results
                    emit(record.unrun_call(job, turn, call, tool))
                continue
            emit(record.client_call(job, turn, call, self.judge(job, call.id, call.name, call.arguments)))
            if call.name in AGENT_TOOLS and job.conversation is not None:
                self.subagents.called(job.conversation[1], call.arguments)
            if call.id:
                self.lineage.remember(call.id, job.id, job.thread_root_id)
        for thought in turn.thoughts:
            emit(record.thought(job, thought.content, thought.source))

    # --- the tool gate ---------------------------------------------------------------------------------------

    def judge(self, job: Job, call_id: str, name: str, arguments: str) -> Verdict | None:
        """The gate's verdict on one of the client's calls, once per call (the relay and the record ask alike)."""
        if self.gate is None or name in job.tools:
            return None
        key = call_id or f"{name}:{arguments}"
        if key not in job.gated:
            job.gated[key] = self.gate.check(name, arguments)
        return job.gated[key]

    def gated(self, job: Job, parser: ResponseParser) -> ResponseParser:
        """`parser`, its events passed through the job's wire gate (where there is one)."""
        return parser if job.gate is None else _GatedParser(parser, job.gate)

    def _gate_for(self, job: Job, response: httpx.Response) -> Any:
        """The wire's gate for this answer: Messages and Chat Completions as SSE or JSON; else none (tapped
        answers are only read; Bedrock's frames are not held)."""
        if self.gate is None or job.route.tapped or "eventstream" in response.headers.get("content-type", ""):
            return None
        kind = {Api.ANTHROPIC_MESSAGES: MessagesGate, Api.OPENAI_CHAT: ChatGate}.get(job.api)
        if kind is None:
            return None

        def check(call_id: str, name: str, arguments: str) -> str | None:
            verdict = self.judge(job, call_id, name, arguments)
            return blocked_text(name, verdict) if verdict is not None and verdict.blocked else None

        return kind(check)

    def refuse(self, job: Job, wire: WireReader, refusal: Refusal) -> Reply:
        return self.fail(job, wire, refusal.status, refusal.message, status=Status.REFUSED, headers=refusal.headers)

    def fail(
        self,
        job: Job,
        wire: WireReader,
        http_status: int,
        message: str,
        *,
        status: Status = Status.FAILED,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        """End the job and answer the client with a provider-shaped error."""
        self.finish(job, status, message, http_status)
        headers = [("content-type", "application/json"), *headers, (INTERCEPTION_HEADER, str(job.id))]
        return Reply(http_status, headers, once(wire.error_body(http_status, message)))

    def finish(
        self,
        job: Job,
        status: Status,
        error: str | None = None,
        http_status: int | None = None,
        response_model: str | None = None,
    ) -> None:
        """Record the end of an interception; only the first call for a job counts."""
        if job.ended:
            return
        job.ended = True
        if status == Status.CANCELLED and self.shutting_down():
            error = "proxy shut down"
        self.active.pop(job.id, None)
        if job.reservation is not None and self.ledger is not None:
            self.ledger.settle(job.reservation, job.cost_micros)
        if job.rate_ticket is not None and self.rate_limits is not None:
            self.rate_limits.settle(job.rate_ticket, job.tokens_used)
        if job.info is not None and job.info.prompt:
            self.recorder.emit(
                PromptSubmitted(interception_id=job.id, provider_response_id=job.response_id, prompt=job.info.prompt)
            )
        self.recorder.emit(
            InterceptionEnded(
                interception_id=job.id,
                status=Status(status).value,
                error=error[:4000] if error else None,
                http_status=http_status,
                response_model=response_model,
            )
        )

    def abort_all(self, reason: str) -> None:
        for job in list(self.active.values()):
            self.finish(job, Status.CANCELLED, reason)

    def conclude(self, job: Job, turn: Turn, status: Status, error: str | None, http_status: int | None) -> None:
        """End an interception someone else relayed (a tapped passthrough), with what its response said."""
        if not job.ended:
            self.record_turn(job, turn)
        self.finish(job, status, error, http_status, turn.model)


class _GatedParser:
    """A response parser whose relayed events pass the tool gate (which may hold or replace them)."""

    def __init__(self, inner: ResponseParser, gate: Any) -> None:
        self.inner = inner
        self.gate = gate

    def feed_event(self, event: SSEEvent) -> bytes | None:
        return self.gate.event(self.inner.feed_event(event))

    def feed_body(self, body: bytes) -> None:
        self.inner.feed_body(body)

    def turn(self) -> Turn:
        return self.inner.turn()
