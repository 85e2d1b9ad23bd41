"""Tools from configured MCP servers, injected into bridged requests and run by the bridge.

`ToolManager` connects every server (stdio or streamable HTTP) in a background task of its own and keeps a
snapshot of the tools they offer, named `bmcp_<server>_<tool>` for the model. `call()` runs one through the
server's live session and always answers with a `ToolResult` (errors included), converted here once so the wire
code never sees MCP types.

Caveats:
- Tools appear only once their server has connected and listed them; requests before that get none.
- A server that is down or dies is retried with exponential backoff; its tools vanish meanwhile.
- The tool list follows `notifications/tools/list_changed` (on 2026-07-28 connections through a
  `subscriptions/listen` stream) and is re-listed every `refresh_interval` seconds as a backstop.
- Logs go no higher than WARNING: an ERROR during mitmproxy start-up makes mitmdump exit.

This is the only module of the addon that imports `mcp`.
"""

import asyncio
import base64
import binascii
import contextlib
import contextvars
import copy
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx2
import mcp_types
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client import IncomingMessage, Transport
from mcp.client._transport import ReadStream, TransportStreams
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, Subscription
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from addon.config import McpServer
from addon.engine.ports import ImagePart, ResultPart, TextPart, ToolResult

logger = logging.getLogger(__name__)

NAME_PREFIX: Final = "bmcp_"
MAX_NAME_LENGTH: Final = 64
"""Anthropic and OpenAI both cap tool names at 64 characters of [A-Za-z0-9_-]."""
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_HASH_LENGTH: Final = 8
_LIST_PAGE_CAP: Final = 100
"""A paginator that never ends cannot hang a listing."""
CLIENT_INFO: Final = mcp_types.Implementation(name="aibridge", version="0.1.0")


# ---------------------------------------------------------------------------------------------------------------
# Results


def _part_size(part: ResultPart) -> int:
    if isinstance(part, TextPart):
        return len(part.text.encode())
    try:
        return len(base64.b64decode(part.data))
    except (binascii.Error, ValueError):
        return len(part.data) * 3 // 4


def _result(parts: Sequence[ResultPart], is_error: bool, error: str | None, duration_ms: float) -> ToolResult:
    return ToolResult(tuple(parts), is_error, error, duration_ms, sum(_part_size(p) for p in parts))


def failure(text: str, error: str, duration_ms: float = 0.0) -> ToolResult:
    """A call that did not happen or did not finish: `text` is for the model, `error` for the audit."""
    return _result([TextPart(text)], True, error, duration_ms)


def _content_part(block: mcp_types.ContentBlock) -> ResultPart:
    match block:
        case mcp_types.TextContent():
            return TextPart(block.text)
        case mcp_types.ImageContent():
            return ImagePart(block.mime_type, block.data)
        case mcp_types.AudioContent():
            return TextPart(f"(audio content omitted, MIME: {block.mime_type})")
        case mcp_types.EmbeddedResource(resource=mcp_types.TextResourceContents() as res):
            return TextPart(res.text)
        case mcp_types.EmbeddedResource(resource=mcp_types.BlobResourceContents() as res):
            return TextPart(f"Binary resource (MIME: {res.mime_type or 'unknown'}, URI: {res.uri}): {res.blob}")
        case mcp_types.ResourceLink():
            mime = f", MIME: {block.mime_type}" if block.mime_type else ""
            return TextPart(f"Resource link: {block.name} (URI: {block.uri}{mime})")
    return TextPart(f"(unsupported content type {getattr(block, 'type', type(block).__name__)!r} omitted)")


def convert_result(result: mcp_types.CallToolResult, duration_ms: float = 0.0) -> ToolResult:
    """An MCP result as parts the wire code can send; MCP `isError` is kept (the model should see it failed)."""
    parts = [_content_part(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts = [TextPart(json.dumps(result.structured_content, ensure_ascii=False))]
    return _result(parts or [TextPart("(no output)")], bool(result.is_error), None, duration_ms)


# ---------------------------------------------------------------------------------------------------------------
# Names


def _short_hash(server: str, tool: str, attempt: int = 0) -> str:
    key = f"{server}\0{tool}" + (f"\0{attempt}" if attempt else "")
    return hashlib.sha256(key.encode()).hexdigest()[:_HASH_LENGTH]


def _with_suffix(name: str, suffix: str) -> str:
    return f"{name[: MAX_NAME_LENGTH - len(suffix) - 1]}_{suffix}"


def tool_name(server: str, tool: str) -> str:
    """`bmcp_<server>_<tool>` with characters outside [A-Za-z0-9_-] as `_`; a name over 64 characters is cut
    and ends in a hash of the server and tool, so it stays unique and the same on every connection."""
    name = _UNSAFE_NAME_CHARS.sub("_", f"{NAME_PREFIX}{server}_{tool}")
    return name if len(name) <= MAX_NAME_LENGTH else _with_suffix(name, _short_hash(server, tool))


def assign_names(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Model-visible names for (server, tool) pairs. Where sanitising merges names (`a.b` and `a_b`), the pair
    that sorts first keeps the plain name and the others get a hash suffix: deterministic for a given set."""
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for server, tool in sorted(set(pairs)):
        base = name = tool_name(server, tool)
        attempt = 0
        while name in taken:
            name = _with_suffix(base, _short_hash(server, tool, attempt))
            attempt += 1
        taken.add(name)
        names[server, tool] = name
    return names


@dataclass(frozen=True, slots=True)
class InjectedTool:
    name: str
    """Model-visible: bmcp_<server>_<tool>, sanitised, unique, at most 64 characters of [A-Za-z0-9_-]."""
    server: McpServer
    tool: str
    """The bare MCP tool name: what is called and recorded."""
    description: str
    input_schema: dict[str, Any]
    """The tool's JSON schema as the server sent it (camelCase keys), with `"type": "object"` ensured."""


def _injected(name: str, server: McpServer, tool: mcp_types.Tool) -> InjectedTool:
    schema = copy.deepcopy(tool.input_schema) if isinstance(tool.input_schema, dict) else {}
    schema.setdefault("type", "object")
    return InjectedTool(name, server, tool.name, tool.description or tool.title or "", schema)


# ---------------------------------------------------------------------------------------------------------------
# One server's connection


def _describe(exc: BaseException) -> str:
    """A one-line reason; task-group wrappers are unwrapped to the first real error."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _EndSignallingStream:
    """Read-stream proxy that reports the end of the stream: a stdio server's process has exited."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> contextvars.Context | None:
        return getattr(self._inner, "last_context", None)  # the SDK restores the sender's contextvars from it

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> "_EndSignallingStream":
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> "_EndSignallingStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _NotConnected(Exception):
    pass


class ServerLink:
    """One MCP server: a task that connects, lists, watches for changes or death, and reconnects with backoff.

    The `Client` context is entered and left inside that task (the SDK's anyio cancel scopes require it); calls
    from other tasks go through the live session, which handles concurrent requests.
    """

    def __init__(self, server: McpServer, manager: "ToolManager") -> None:
        self.server = server
        self.tools: tuple[mcp_types.Tool, ...] = ()
        self.settled = asyncio.Event()
        """Set once the first attempt has listed tools or failed."""
        self._manager = manager
        self._client: Client | None = None
        self._wake = asyncio.Event()
        self._refresh_wanted = False
        self._lost: str | None = None
        self._up_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mcp server {self.server.name}")

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        client = self._client
        if client is None:
            raise _NotConnected
        try:
            return await client.call_tool(tool, arguments)
        except MCPError as e:
            if e.code == mcp_types.CONNECTION_CLOSED and self._client is client:  # not a late echo of an old one
                self._mark_lost("connection closed during a call")
            raise

    # -- the connection task ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        manager = self._manager
        delay = manager.backoff_base
        failures = 0  # attempts in a row that never got to list tools
        while True:
            self._up_since = None
            try:
                await self._connection()
                reason = self._lost or "connection closed"
            except TimeoutError:
                reason = f"no answer within {manager.connect_timeout:g} s"
            except Exception as e:  # boundary: any transport or server failure ends this connection, not the bridge
                reason = _describe(e)
            self._mark_lost(reason)
            self.settled.set()
            if self._up_since is not None:
                failures = 0
                if time.monotonic() - self._up_since >= manager.backoff_cap:
                    delay = manager.backoff_base  # it was up for a good while: start the backoff over
            failures += 1
            # The first failure of a run is a warning; repeats while it stays down are quieter, not silent.
            log = logger.warning if failures == 1 or failures % 10 == 0 else logger.info
            log("MCP server %s (%s): %s; retrying in %.3g s", self.server.name, self.server.location, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, manager.backoff_cap)

    async def _connection(self) -> None:
        """Connect, list, then watch until the connection is lost (returns) or fails (raises)."""
        self._lost = None
        self._wake.clear()
        async with AsyncExitStack() as stack:
            async with asyncio.timeout(self._manager.connect_timeout):
                client = await stack.enter_async_context(
                    Client(
                        self._transport(),
                        mode=self._manager.client_mode,
                        cache=None,  # every listing must reach the server
                        message_handler=self._on_message,
                        client_info=CLIENT_INFO,
                    )
                )
                subscription = await self._listen(stack, client)
                await self._list(client)
            self._up_since = time.monotonic()
            self._client = client
            self.settled.set()
            logger.info(
                "MCP server %s (%s): connected (protocol %s), %d tools",
                self.server.name,
                self.server.location,
                client.protocol_version,
                len(self.tools),
            )
            if subscription is not None:
                watcher = asyncio.create_task(self._watch_subscription(subscription))
                stack.push_async_callback(_cancel_and_wait, watcher)
            await self._watch(client)

    def _transport(self) -> Transport:
        server = self.server
        if server.url:
            inner = _http_transport(server.url, dict(server.headers))
        else:
            assert server.command is not None
            params = StdioServerParameters(command=server.command, args=list(server.args), env=dict(server.env))
            inner = stdio_client(params)  # env is merged over PATH, HOME, USER, ... of this process
        return self._end_signalling(inner)

    @asynccontextmanager
    async def _end_signalling(self, inner: Transport) -> AsyncIterator[TransportStreams]:
        async with inner as (read, write):
            yield _EndSignallingStream(read, lambda: self._mark_lost("the server closed the connection")), write

    async def _listen(self, stack: AsyncExitStack, client: Client) -> Subscription | None:
        """On 2026-07-28 connections, change notifications flow only on a `subscriptions/listen` stream."""
        try:
            return await stack.enter_async_context(client.listen(tools_list_changed=True))
        except ListenNotSupportedError:
            return None  # an older protocol: notifications arrive unasked
        except MCPError as e:
            logger.info("MCP server %s: no change subscription (%s); relying on periodic refresh", self.server.name, e)
            return None

    async def _list(self, client: Client) -> None:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(_LIST_PAGE_CAP):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            if not (cursor := page.next_cursor):
                break
        unique = {tool.name: tool for tool in reversed(tools)}  # a repeated name keeps its first listing
        self.tools = tuple(sorted(unique.values(), key=lambda tool: tool.name))
        self._manager.publish()

    async def _watch(self, client: Client) -> None:
        while True:
            try:
                async with asyncio.timeout(self._manager.refresh_interval):
                    await self._wake.wait()
            except TimeoutError:
                self._refresh_wanted = True  # the backstop for servers that never announce changes
            self._wake.clear()
            if self._lost is not None:
                return
            if self._refresh_wanted:
                self._refresh_wanted = False
                async with asyncio.timeout(self._manager.connect_timeout):
                    await self._list(client)

    async def _watch_subscription(self, subscription: Subscription) -> None:
        # Events also reach `_on_message`, which refreshes; here only the end of the stream matters.
        try:
            async for _ in subscription:
                pass
            self._mark_lost("the server ended the change subscription")
        except Exception as e:  # boundary: SubscriptionLost or a transport error both mean the connection is gone
            self._mark_lost(f"change subscription lost ({_describe(e)})")

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._refresh_wanted = True
            self._wake.set()
        elif isinstance(message, Exception):
            logger.debug("MCP server %s: transport error %s", self.server.name, _describe(message))

    def _mark_lost(self, reason: str) -> None:
        """The connection is gone: its tools vanish now, not after the (possibly slow) teardown."""
        if self._lost is None:
            self._lost = reason
        self._client = None
        if self.tools:
            self.tools = ()
            self._manager.publish()
        self._wake.set()


@asynccontextmanager
async def _http_transport(url: str, headers: dict[str, str]) -> AsyncIterator[TransportStreams]:
    # No read timeout: tool calls have their own, and a listen stream may stay quiet for hours.
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0, read=None)) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


class _DemoteSdkErrors(logging.Filter):
    """The SDK logs faults the bridge recovers from at ERROR with a traceback (a stdio server printing a banner
    on stdout, say). An ERROR logged during start-up makes mitmdump exit, so they become one-line warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message = f"{message}: {_describe(record.exc_info[1])}"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info, record.exc_text = message, None, None, None
        return True


_DEMOTE_SDK_ERRORS = _DemoteSdkErrors()


def _tame_sdk_logging() -> None:
    # Logger filters do not apply to child loggers' records, so each SDK module's logger gets the filter.
    for name in list(logging.root.manager.loggerDict):
        if name == "mcp" or name.startswith("mcp."):
            sdk_logger = logging.getLogger(name)
            if _DEMOTE_SDK_ERRORS not in sdk_logger.filters:
                sdk_logger.addFilter(_DEMOTE_SDK_ERRORS)
    # httpx2 serves only the MCP SDK here; its INFO line per request would flood mitmdump's output.
    logging.getLogger("httpx2").setLevel(logging.WARNING)


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _same_connection(a: McpServer, b: McpServer) -> bool:
    return (a.url, a.headers, a.command, a.args, a.env) == (b.url, b.headers, b.command, b.args, b.env)


# ---------------------------------------------------------------------------------------------------------------
# The manager


class ToolManager:
    """The injected tools of all configured MCP servers, and the way to call them.

    `start()` returns at once; servers connect in the background. `tools()` is the current snapshot, sorted by
    name so the injected block is byte-stable for prompt caches. `call()` never raises (except CancelledError).
    """

    backoff_base: float = 0.5
    """Seconds before the first reconnection attempt; doubles per failure up to `backoff_cap`."""
    backoff_cap: float = 30.0
    connect_timeout: float = 30.0
    """Seconds for connecting and listing tools (also for each re-listing)."""
    refresh_interval: float = 300.0
    """Seconds between backstop re-listings of a connected server."""
    client_mode: str = "auto"
    """The SDK's negotiation: "auto" probes for 2026-07-28 and falls back; "legacy" forces the older handshake."""

    def __init__(self, servers: Sequence[McpServer]) -> None:
        self._servers = tuple(servers)
        self._links: dict[str, ServerLink] = {}
        self._started = False
        self._tools: tuple[InjectedTool, ...] = ()
        self._by_name: dict[str, InjectedTool] = {}

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        _tame_sdk_logging()
        for server in self._servers:
            self._add_link(server)

    async def stop(self) -> None:
        self._started = False
        links = list(self._links.values())
        self._links.clear()
        self.publish()
        await asyncio.gather(*(link.stop() for link in links))

    def tools(self) -> tuple[InjectedTool, ...]:
        return self._tools

    def get(self, name: str) -> InjectedTool | None:
        return self._by_name.get(name)

    def status(self) -> list[tuple[str, bool, int]]:
        """(server, connected, tools offered) per configured server; safe to call from another thread."""
        return [(link.server.name, link._client is not None, len(link.tools)) for link in list(self._links.values())]

    async def wait_until_settled(self, timeout: float) -> None:  # noqa: ASYNC109 (the agreed interface)
        """Wait until every server has listed its tools or failed its first attempt; at most `timeout` seconds.
        Never raises: servers still connecting simply have no tools yet."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for link in list(self._links.values()):
                    await link.settled.wait()

    async def reconfigure(self, servers: Sequence[McpServer]) -> None:
        """Adopt a new server list: unchanged connections stay up (new filters and timeouts apply at once),
        removed or changed ones are stopped, new ones started."""
        self._servers = tuple(servers)
        wanted = {server.name: server for server in servers}
        retired: list[ServerLink] = []
        for name, link in list(self._links.items()):
            server = wanted.get(name)
            if server is not None and _same_connection(link.server, server):
                link.server = server
            else:
                retired.append(self._links.pop(name))
        self.publish()
        await asyncio.gather(*(link.stop() for link in retired))
        if self._started:
            for server in self._servers:  # the latest list: another reconfigure may have run meanwhile
                if server.name not in self._links:
                    self._add_link(server)

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Run an injected tool. Failures come back as error results the model can read; cancelling the
        awaiting task stops the call (the server is told) and raises CancelledError."""
        tool = self._by_name.get(name)
        if tool is None:
            return failure(f"Error: tool {name} is not available", f"unknown tool {name}")
        link = self._links.get(tool.server.name)
        started = time.monotonic()

        def elapsed() -> float:
            return (time.monotonic() - started) * 1000

        timeout = tool.server.tool_timeout
        try:
            async with asyncio.timeout(timeout):
                if link is None:
                    raise _NotConnected
                result = await link.call(tool.tool, arguments)
        except TimeoutError:
            error = f"timed out after {timeout:g} s"
            return failure(f"Error: tool {tool.tool} {error}", error, elapsed())
        except _NotConnected:
            error = f"MCP server {tool.server.name} is not connected"
            return failure(f"Error: {error}; tool {tool.tool} is unavailable", error, elapsed())
        except Exception as e:  # boundary: a failing server or transport must not fail the request
            reason = e.message if isinstance(e, MCPError) else _describe(e)
            logger.warning("MCP tool %s on %s failed: %s", tool.tool, tool.server.name, reason)
            return failure(f"Error calling tool {tool.tool}: {reason}", reason, elapsed())
        return convert_result(result, elapsed())

    def _add_link(self, server: McpServer) -> None:
        link = ServerLink(server, self)
        self._links[server.name] = link
        link.start()

    def publish(self) -> None:
        """Rebuild the snapshot from every connected server's listing."""
        listed = [
            (link.server, tool)
            for link in self._links.values()
            for tool in link.tools
            if link.server.permits(tool.name)
        ]
        names = assign_names((server.name, tool.name) for server, tool in listed)
        injected = sorted((_injected(names[s.name, t.name], s, t) for s, t in listed), key=lambda t: t.name)
        self._tools = tuple(injected)
        self._by_name = {tool.name: tool for tool in injected}
