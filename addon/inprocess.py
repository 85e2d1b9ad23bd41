"""In-process use: Python callers send LLM requests through the bridge without a network hop.

    from addon.inprocess import Bridge

    async with await Bridge.open("aibridge.toml", db="agents.duckdb") as bridge:
        transport = bridge.transport(source="agents", initiator="build-bot", api_key_id="key-42")
        client = anthropic.AsyncAnthropic(api_key=..., http_client=httpx2.AsyncClient(transport=transport))

The transport is an `httpx2` transport (the HTTP library the official `openai` and `anthropic` SDKs use) that
hands each request to the same engine the proxy uses: routing, key rules, budgets, MCP tool injection and the
tool loop, and the audit. Streams reach the caller event by event while the bridge works; a bridge failure is
a provider-shaped 500; cancelling the caller's request cancels the bridge's work (upstream call, running tools)
and ends the body with the cancellation. The source and the delegated identity are fixed when the transport is
made, recorded on every interception, and cannot be set through request headers.

The audit file must not be held by a running proxy (DuckDB admits one writer): give the in-process bridge its
own file, or run it in the proxy's process.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Self

import httpx
import httpx2

from addon import upstream
from addon.audit import AuditWriter
from addon.config import Config, Provider, load_config
from addon.engine.core import CutShort, Engine, Job, Reply, error_body
from addon.engine.tap import ResponseTap
from addon.observe import ObservedRecorder, Observers
from addon.policy.access import Access, Users, resolve
from addon.policy.breaker import Breakers
from addon.policy.budgets import Ledger, month_start
from addon.policy.pricing import PriceBook
from addon.providers.routing import classify
from addon.tools import ToolManager

logger = logging.getLogger(__name__)


class Bridge:
    """The bridge without the proxy: built from the same configuration and audit file options."""

    def __init__(
        self, config: Config, writer: AuditWriter, tools: ToolManager, transport: httpx.AsyncBaseTransport
    ) -> None:
        self.config = config
        self.writer = writer
        self.tools = tools
        self.upstream = transport
        self.users = Users(config.users)
        ledger = None
        if config.budgets.users or config.budgets.groups:
            ledger = Ledger(config.budgets, config.users)
            ledger.load(writer.spend_since(month_start(datetime.now(UTC))))
        self.engine = Engine(
            writer,
            transport,
            tools,
            max_tool_rounds=config.max_tool_rounds,
            keepalive_interval=config.keepalive_interval,
            prices=PriceBook(config.prices),
            ledger=ledger,
        )
        writer.set_retention(config.retention_days)
        if config.circuit_breaker is not None:  # the configuration's breaker, as the proxy has it
            self.engine.observer = Observers([Breakers(config.circuit_breaker)])
            self.engine.recorder = ObservedRecorder(writer, self.engine.observer)

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
        return cls(parsed, writer, tools, upstream.make_transport(verify))

    def transport(self, *, source: str, initiator: str, api_key_id: str | None = None) -> "BridgeTransport":
        return BridgeTransport(self, source=source, initiator=initiator, api_key_id=api_key_id)

    async def aclose(self) -> None:
        self.engine.abort_all("bridge closed")
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
        bridge = self.bridge
        path = request.url.raw_path.decode("ascii")
        route = classify(bridge.config, request.url.host, request.method, path)
        if route is None:
            return _response(
                404,
                {"content-type": "text/plain"},
                f"aibridge: {request.url.host} is not a configured provider host".encode(),
            )
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        access = resolve(bridge.config, bridge.users, route.provider, headers, self.initiator)
        if route.api is None:
            return await self._pass_through(route.provider, path, request.method, access, body)
        extra = {"api_key_id": self.api_key_id} if self.api_key_id else {}
        job = Job.of(route, path, body, access, initiator=self.initiator, source=self.source, **extra)
        engine = bridge.engine
        if route.api.tapped:
            return await self._tap(job, request.method, access)
        try:
            reply = await engine.admit(job, access.refusal)
            if reply is None:
                reply = await engine.open(job)
        except Exception as e:  # boundary: a bridge bug answers like a provider would, and the job still ends
            logger.exception("aibridge: in-process request failed")
            engine.finish(job, "failed", f"bridge error: {e!r}", 500)
            message = "internal bridge error"
            return _response(500, {"content-type": "application/json"}, error_body(route.provider.type, 500, message))
        return httpx2.Response(
            reply.status,
            headers=reply.headers,
            stream=_ReplyStream(reply),
            extensions={"aibridge_interception_id": str(job.id)},
        )

    async def _pass_through(
        self, provider: Provider, path: str, method: str, access: Access, body: bytes
    ) -> httpx2.Response:
        """Any other path on a provider host goes to its upstream unchanged, as through the proxy."""
        if access.refusal is not None:
            status, message = access.refusal
            return _response(status, {"content-type": "application/json"}, error_body(provider.type, status, message))
        response = await self._send(provider, path, method, access, body)
        return httpx2.Response(
            response.status_code,
            headers=upstream.response_headers(response.headers, keep_length=True),
            stream=_HttpxStream(response),
        )

    async def _tap(self, job: Job, method: str, access: Access) -> httpx2.Response:
        """A Responses call: passed through unchanged, and recorded on the way as the proxy's tap does."""
        engine = self.bridge.engine
        reply = await engine.admit(job, access.refusal)
        if reply is not None:  # refused: access rules or a spent budget
            return httpx2.Response(reply.status, headers=reply.headers, stream=_ReplyStream(reply))
        tap = ResponseTap(engine, job)
        try:
            response = await self._send(job.route.provider, job.path, method, access, job.body)
        except asyncio.CancelledError:
            tap.fail("cancelled", "the caller went away before the upstream answered")
            raise
        except Exception as e:
            tap.fail("failed", f"upstream {job.route.provider.name} unreachable: {e!r}")
            raise
        tap.start(response.status_code, response.headers)
        return httpx2.Response(
            response.status_code,
            headers=upstream.response_headers(response.headers, keep_length=True),
            stream=_TappedStream(response, tap),
        )

    async def _send(self, provider: Provider, path: str, method: str, access: Access, body: bytes) -> httpx.Response:
        headers = upstream.request_headers(access.headers, provider.extra_headers)  # as the proxy forwards
        return await upstream.send(self.bridge.upstream, method, provider.upstream, path, headers, body)


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
            self._tap.fail("cancelled", "the caller stopped reading the response")
            raise
        except Exception as e:
            self._tap.fail("failed", f"upstream connection failed mid-response: {e!r}")
            raise
        self._tap.end()

    async def aclose(self) -> None:
        await super().aclose()
        self._tap.fail("cancelled", "the caller closed the response before it ended")  # no-op once it ended


def _response(status: int, headers: dict[str, str], content: bytes) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, content=content)
