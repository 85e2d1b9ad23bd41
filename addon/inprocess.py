"""In-process use: Python callers send LLM requests through the bridge without a network hop.

    from addon.inprocess import Bridge

    async with await Bridge.open("aibridge.toml", db="agents.duckdb") as bridge:
        transport = bridge.transport(source="agents", initiator="build-bot", api_key_id="key-42")
        client = anthropic.AsyncAnthropic(api_key=..., http_client=httpx2.AsyncClient(transport=transport))

The transport is an `httpx2` transport (the HTTP library the official `openai` and `anthropic` SDKs use) that
hands each request to the same front door and engine the proxy uses (`addon.gateway`): routing, key rules,
budgets, MCP tool injection and the tool loop, and the audit. Streams reach the caller event by event while the
bridge works; a bridge failure is a provider-shaped 500; cancelling the caller's request cancels the bridge's
work (upstream call, running tools) and ends the body with the cancellation. The source and the delegated
identity are fixed when the transport is made, recorded on every interception, and cannot be set through
request headers.

The audit file must not be held by a running proxy (DuckDB admits one writer): give the in-process bridge its
own file, or run it in the proxy's process.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Self

import httpx
import httpx2

from addon import upstream
from addon.audit import AuditWriter
from addon.config import Config, load_config
from addon.engine.core import Engine
from addon.engine.job import CutShort, Job, Reply, Status
from addon.engine.tap import ResponseTap
from addon.gateway import Action, Decision, Gateway
from addon.tools import ToolManager
from addon.upstream.transport import Http1Transport

logger = logging.getLogger(__name__)


class Bridge:
    """The bridge without the proxy: built from the same configuration and audit file options."""

    def __init__(self, config: Config, writer: AuditWriter, tools: ToolManager, transport: Http1Transport) -> None:
        self.gateway = Gateway(writer, transport, tools)
        self.gateway.apply(config)
        self.tools = tools
        self.upstream = transport

    @property
    def config(self) -> Config:
        return self.gateway.config

    @property
    def writer(self) -> AuditWriter:
        return self.gateway.writer

    @property
    def engine(self) -> Engine:
        return self.gateway.engine

    @classmethod
    async def open(
        cls, config: str | None = None, *, db: str = "aibridge.duckdb", verify: Any = True, tools_grace: float = 10.0
    ) -> Self:
        """Load the TOML configuration (None: defaults), open the audit file, connect MCP servers (waiting up
        to `tools_grace` seconds for them). `verify` is the upstream TLS verification, as httpx takes it."""
        parsed = load_config(config)
        writer = AuditWriter(db)
        writer.start()
        tools = ToolManager(parsed.mcp_servers)
        await tools.start()
        await tools.wait_until_settled(tools_grace)
        bridge = cls(parsed, writer, tools, upstream.make_transport(verify))
        await bridge.gateway.start()
        return bridge

    def transport(self, *, source: str, initiator: str, api_key_id: str | None = None) -> "BridgeTransport":
        return BridgeTransport(self, source=source, initiator=initiator, api_key_id=api_key_id)

    async def aclose(self) -> None:
        self.engine.abort_all("bridge closed")
        await self.gateway.aclose()
        await self.tools.stop()
        await self.upstream.aclose()
        await asyncio.to_thread(self.writer.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _ReplyStream(httpx2.AsyncByteStream):
    """The engine's reply body as an httpx2 stream: read as it is produced, released when closed."""

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._reply.body:
                yield chunk
        except CutShort as e:  # what a broken connection would raise: the SDK reports it as one
            raise httpx2.RemoteProtocolError(str(e)) from e

    async def aclose(self) -> None:
        await self._reply.aclose()


class BridgeTransport(httpx2.AsyncBaseTransport):
    def __init__(self, bridge: Bridge | None, *, source: str, initiator: str, api_key_id: str | None = None) -> None:
        if not isinstance(bridge, Bridge):
            raise TypeError("a BridgeTransport needs a Bridge (Bridge.open(...)); requests would have nowhere to go")
        if not source or not initiator:
            raise ValueError("source and initiator are required: every interception records who sent it")
        self.bridge = bridge
        self.source = source
        self.initiator = initiator
        self.api_key_id = api_key_id

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        gateway = self.bridge.gateway
        path = request.url.raw_path.decode("ascii")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        decision = gateway.decide(request.url.host, request.method, path, headers, self.initiator)
        if decision is None:
            message = f"aibridge: {request.url.host} is not a configured provider host".encode()
            return _response(404, {"content-type": "text/plain"}, message)
        body = await request.aread()
        path = decision.path or path  # a bridge token taken out of the query
        if decision.action is Action.REFUSE:
            status, error = decision.error()
            return _response(status, {"content-type": "application/json"}, error)
        if decision.action is Action.PASS:
            return await self._pass_through(decision, path, request.method, body)
        extra = {"api_key_id": self.api_key_id} if self.api_key_id else {}
        job = gateway.job(decision, path, body, initiator=self.initiator, source=self.source, **extra)
        if decision.action is Action.TAP:
            return await self._tap(job, request.method, decision)
        engine = gateway.engine
        try:
            reply = await engine.admit(job, decision.access.refusal)
            if reply is None:
                reply = await engine.open(job)
        except Exception as e:  # boundary: a bridge bug answers like a provider would, and the job still ends
            logger.exception("aibridge: in-process request failed")
            engine.finish(job, Status.FAILED, f"bridge error: {e!r}", 500)
            error = decision.route.error_body(500, "internal bridge error")
            return _response(500, {"content-type": "application/json"}, error)
        return httpx2.Response(
            reply.status,
            headers=reply.headers,
            stream=_ReplyStream(reply),
            extensions={"aibridge_interception_id": str(job.id)},
        )

    async def _pass_through(self, decision: Decision, path: str, method: str, body: bytes) -> httpx2.Response:
        """Any other path on a provider host goes to its upstream unchanged, as through the proxy."""
        response = await self._send(decision, path, method, body)
        return httpx2.Response(
            response.status_code,
            headers=upstream.response_headers(response.headers, keep_length=True),
            stream=_HttpxStream(response),
        )

    async def _tap(self, job: Job, method: str, decision: Decision) -> httpx2.Response:
        """A Responses call: passed through unchanged, and recorded on the way as the proxy's tap does."""
        engine = self.bridge.engine
        reply = await engine.admit(job, decision.access.refusal)
        if reply is not None:  # refused: access rules or a spent budget
            return httpx2.Response(reply.status, headers=reply.headers, stream=_ReplyStream(reply))
        tap = ResponseTap(engine, job)
        try:
            response = await self._send(decision, job.path, method, job.body)
        except asyncio.CancelledError:
            tap.fail(Status.CANCELLED, "the caller went away before the upstream answered")
            raise
        except Exception as e:
            tap.fail(Status.FAILED, f"upstream {job.route.provider.name} unreachable: {e!r}")
            raise
        tap.start(response.status_code, response.headers)
        return httpx2.Response(
            response.status_code,
            headers=upstream.response_headers(response.headers, keep_length=True),
            stream=_TappedStream(response, tap),
        )

    async def _send(self, decision: Decision, path: str, method: str, body: bytes) -> httpx.Response:
        route = decision.route
        headers = upstream.request_headers(decision.access.headers, route.provider.extra_headers)  # as the proxy does
        if decision.access.aws is not None:
            headers = route.sign(decision.access.aws, method, path, headers, body)
        return await upstream.send(self.bridge.upstream, method, route.upstream, path, headers, body)


class _HttpxStream(httpx2.AsyncByteStream):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class _TappedStream(_HttpxStream):
    """An upstream body relayed as it comes, each chunk shown to the tap on the way."""

    def __init__(self, response: httpx.Response, tap: ResponseTap) -> None:
        super().__init__(response)
        self._tap = tap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield self._tap(chunk)
        except (asyncio.CancelledError, GeneratorExit):
            self._tap.fail(Status.CANCELLED, "the caller stopped reading the response")
            raise
        except Exception as e:
            self._tap.fail(Status.FAILED, f"upstream connection failed mid-response: {e!r}")
            raise
        self._tap.end()

    async def aclose(self) -> None:
        await super().aclose()
        self._tap.fail(Status.CANCELLED, "the caller closed the response before it ended")  # no-op once it ended


def _response(status: int, headers: dict[str, str], content: bytes) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, content=content)
