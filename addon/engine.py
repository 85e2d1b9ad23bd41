"""One interception, from the client's request to the upstream and back, recorded on the way.

The proxy hook builds a `Job` and calls `admit()` (parse, record the start; a malformed body is answered
right there). The local server then calls `open()`, which sends the request upstream *before* committing a
status, so upstream errors are relayed with their own status, headers and body. The returned `Reply.body`
relays the upstream bytes as they arrive, event by event, while the wire parser reads them for the audit.
Every admitted job ends exactly once (`finish`), whatever fails: completed, failed or cancelled.
"""

import json
import logging
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import httpx

from . import upstream
from .audit import (
    AuditEvent,
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
)
from .audit.lineage import Lineage
from .clients import client_session_id, detect_client
from .identity import credential_info
from .routing import Api, Route
from .wire import AnthropicMessages, OpenAIChat, RequestInfo, ResponseParser, Turn, WireFormat
from .wire.sse import SSEEvent, SSEParser

logger = logging.getLogger(__name__)

INTERCEPTION_HEADER = "x-aibridge-interception-id"
WIRES: dict[Api, WireFormat] = {Api.ANTHROPIC_MESSAGES: AnthropicMessages(), Api.OPENAI_CHAT: OpenAIChat()}


class Recorder(Protocol):
    def emit(self, event: AuditEvent) -> None: ...

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None: ...


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
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    json: dict | None = None
    info: RequestInfo | None = None
    thread_root_id: UUID | None = None
    response_id: str | None = None
    ended: bool = False

    @property
    def api(self) -> Api:
        assert self.route.api is not None
        return self.route.api


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


class Engine:
    def __init__(self, recorder: Recorder, client: httpx.AsyncClient) -> None:
        self.recorder = recorder
        self.client = client
        self.lineage = Lineage(recorder.find_tool_call)
        self.active: dict[UUID, Job] = {}

    async def admit(self, job: Job) -> Reply | None:
        """Record the interception's start. A Reply means: answer the client with it now."""
        wire = WIRES[job.api]
        headers = _header_map(job.headers)
        client = detect_client(headers)
        try:
            body = json.loads(job.body)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError included
            self._record_start(job, headers, client, model="unknown", streaming=False)
            message = f"invalid JSON body: {e}"
            return self._fail(job, wire, 400, message)
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
        kind, hint = credential_info(job.route.provider.type, headers)
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
                credential_kind=kind,
                credential_hint=hint,
                streaming=streaming,
                route=job.path.split("?", 1)[0],
                started_at=job.started_at,
            )
        )

    async def open(self, job: Job) -> Reply:
        """Call the upstream; return its status and headers, and a body that relays and records."""
        wire = WIRES[job.api]
        provider = job.route.provider
        assert job.json is not None
        body, parser = wire.prepare_request(job.body, job.json)
        request = self.client.build_request(
            "POST",
            provider.upstream.url(job.path),
            headers=upstream.request_headers(job.headers, provider.extra_headers),
            content=body,
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as e:
            return self._fail(job, wire, 504, f"upstream {provider.name} timed out: {type(e).__name__}")
        except (httpx.HTTPError, OSError) as e:
            return self._fail(job, wire, 502, f"upstream {provider.name} unreachable: {e or type(e).__name__}")
        except BaseException:
            self.finish(job, "cancelled", "client disconnected before the upstream answered")
            raise
        try:
            if not 200 <= response.status_code < 300:
                return await self._relay_error(job, parser, response)
        except BaseException:
            await response.aclose()
            self.finish(job, "cancelled", "client disconnected")
            raise
        is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
        headers = upstream.response_headers(response.headers, keep_length=not is_sse)
        headers.append((INTERCEPTION_HEADER, str(job.id)))
        return Reply(response.status_code, headers, self._relay(job, wire, parser, response, is_sse))

    async def _relay_error(self, job: Job, parser: ResponseParser, response: httpx.Response) -> Reply:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        decoded = _decoded(raw, response.headers.get("content-encoding"))
        _guarded(parser.feed_body, decoded)
        turn = _guarded(parser.turn) or Turn()
        error = turn.error or f"HTTP {response.status_code}: {decoded[:300].decode('utf-8', 'replace')}"
        self.finish(job, "failed", error, response.status_code, turn.model)
        headers = upstream.response_headers(response.headers, keep_length=True)
        headers.append((INTERCEPTION_HEADER, str(job.id)))
        return Reply(response.status_code, headers, _once(raw))

    async def _relay(
        self, job: Job, wire: WireFormat, parser: ResponseParser, response: httpx.Response, is_sse: bool
    ) -> AsyncIterator[bytes]:
        status, error = "cancelled", "client disconnected"
        # The upstream ignored `accept-encoding: identity`: relay its stream as is, unparsed.
        encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
        try:
            if is_sse:
                sse = SSEParser()
                feed: Callable[[SSEEvent], bytes | None] = parser.feed_event
                async for chunk in response.aiter_raw():
                    if encoded:
                        yield chunk
                        continue
                    out = [data for event in sse.feed(chunk) if (data := _relayed(feed, event)) is not None]
                    if out:
                        yield out[0] if len(out) == 1 else b"".join(out)
                if (tail := sse.close()) is not None and (data := _relayed(feed, tail)) is not None:
                    yield data
            else:
                chunks: list[bytes] = []
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    yield chunk
                _guarded(parser.feed_body, _decoded(b"".join(chunks), response.headers.get("content-encoding")))
            error = (_guarded(parser.turn) or Turn()).error
            status = "failed" if error else "completed"
        except httpx.HTTPError as e:
            status, error = "failed", f"upstream connection failed mid-response: {e or type(e).__name__}"
            if is_sse:
                yield wire.error_event(error)
        finally:
            turn = _guarded(parser.turn) or Turn()
            self._record_turn(job, turn)
            self.finish(job, status, error, response.status_code, turn.model)
            await response.aclose()

    def _record_turn(self, job: Job, turn: Turn) -> None:
        emit = self.recorder.emit
        rid = turn.response_id
        job.response_id = job.response_id or rid
        if turn.usage is not None:
            u = turn.usage
            emit(
                TokensUsed(
                    interception_id=job.id,
                    provider_response_id=rid,
                    input_tokens=u.input,
                    output_tokens=u.output,
                    cache_read_input_tokens=u.cache_read,
                    cache_write_input_tokens=u.cache_write,
                    metadata=u.extra,
                )
            )
        for call in turn.tool_calls:
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

    def _fail(self, job: Job, wire: WireFormat, status: int, message: str) -> Reply:
        self.finish(job, "failed", message, status)
        headers = [("content-type", "application/json"), (INTERCEPTION_HEADER, str(job.id))]
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
        self.active.pop(job.id, None)
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
        logger.info(
            "aibridge: %s %s %s %s%s",
            job.route.provider.name,
            job.info.model if job.info else "-",
            status,
            http_status or "-",
            f" ({error})" if error and status != "completed" else "",
        )

    def abort_all(self, reason: str) -> None:
        for job in list(self.active.values()):
            self.finish(job, "cancelled", reason)


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


def _decoded(raw: bytes, encoding: str | None) -> bytes:
    if encoding and encoding.lower() in ("gzip", "deflate"):
        try:
            return zlib.decompress(raw, 47)  # 32 + 15: gzip or zlib header, detected
        except zlib.error:
            return b""
    return raw
