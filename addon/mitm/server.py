"""The in-process HTTP server bridged flows are re-targeted to.

mitmproxy streams only bytes that arrive from a server connection; a response an addon builds itself is
sent whole. So the proxy hook parks each bridged request here as a `Job` under a single-use random token and
points the flow at this server, which runs the engine and streams its reply back through mitmproxy.
Listens on 127.0.0.1 only; an unknown or reused token gets 403.

Its only client is mitmproxy, so it is a bare asyncio protocol with httptools parsing rather than an ASGI
stack: the hop is on every bridged request's path, and each layer there costs CPU per relayed chunk.
"""

import asyncio
import http
import logging
import secrets
import socket
from collections.abc import Awaitable

import httptools

from addon.engine.core import Engine
from addon.engine.job import CutShort, Job, Reply, Status

logger = logging.getLogger(__name__)

PATH_PREFIX = "/_aibridge/"


class LocalServer:
    connection: type["_HopConnection"]
    """What serves each connection (set below, once the class exists)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.port: int | None = None
        self._jobs: dict[str, tuple[Job, asyncio.Future[Reply]]] = {}
        """Parked jobs by token, each with its upstream call under way."""
        self._closing: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._connections: set[_HopConnection] = set()

    def submit(self, job: Job) -> str:
        """Park a job and call its upstream now: mitmproxy's hop to this server then overlaps the provider's
        time to answer instead of adding to it. The returned token is the path the flow must request."""
        token = secrets.token_urlsafe(24)
        self._jobs[token] = (job, asyncio.ensure_future(self.engine.open(job)))
        return PATH_PREFIX + token

    def take(self, path: str) -> tuple[Job, "asyncio.Future[Reply]"] | None:
        """A parked job and its upstream call, once: the token is single-use."""
        return self._jobs.pop(path.removeprefix(PATH_PREFIX), None)

    def withdraw(self, path: str) -> Job | None:
        """Take back a job whose flow never reached the server (the client left, the hop failed); its upstream
        call is cancelled, or its answer closed unread."""
        parked = self.take(path)
        if parked is None:
            return None
        job, opening = parked
        self._abandon(opening)
        return job

    def _abandon(self, opening: "asyncio.Future[Reply]") -> None:
        if not opening.done():
            opening.cancel()
        elif not opening.cancelled() and opening.exception() is None:
            closing = asyncio.ensure_future(opening.result().aclose())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def start(self) -> None:
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only on TCP sockets it recognises as such, and with Nagle
        # on, a body written after its headers waits ~40 ms for a delayed ACK on every reused connection.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.get_running_loop().create_server(lambda: self.connection(self), sock=sock)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for _, opening in self._jobs.values():
            self._abandon(opening)
        self._jobs.clear()
        for connection in list(self._connections):
            connection.abort()
        self._server = None


class _HopConnection(asyncio.Protocol):
    """One connection from mitmproxy: requests one at a time, each answered by running its job."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._pending: list[bytes] = []
        """Paths of requests that arrived while one was being answered (mitmproxy does not pipeline)."""
        self._task: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._lost = False

    # --- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.server._connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client went away: the job, and with it the upstream call, is cancelled
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks -------------------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_complete(self) -> None:
        url, self._url = self._url, b""
        if self._task is None or self._task.done():
            self._start(url)
        else:
            self._pending.append(url)

    # --- answering -----------------------------------------------------------------------------------------

    def _start(self, url: bytes) -> None:
        self._task = asyncio.ensure_future(self._answer(url))
        self._task.add_done_callback(self._next)

    def _next(self, _: asyncio.Task[None]) -> None:
        if self._pending and not self._lost:
            self._start(self._pending.pop(0))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _answer(self, url: bytes) -> None:
        parked = self.server.take(url.decode("latin-1"))
        if parked is None:
            body = b"unknown or used token"
            self._write_head(403, [("content-length", str(len(body)))])
            self._write(body)
            return
        try:
            await self._serve(*parked)
        except asyncio.CancelledError:
            if not self._lost:
                raise  # not the client leaving: the proxy is stopping

    async def _serve(self, job: Job, opening: Awaitable[Reply]) -> None:
        """Answer one job from its upstream call; a client that goes away cancels it (and with it the call)."""
        engine = self.server.engine
        reply = None
        started = False
        try:
            reply = await opening
            framed = not any(name.lower() == "content-length" for name, _ in reply.headers)
            headers = [*reply.headers, ("transfer-encoding", "chunked")] if framed else reply.headers
            self._write_head(reply.status, headers)
            started = True
            async for chunk in reply.body:
                if chunk:
                    self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if framed else chunk)
                    if self._drained is not None and not self._drained.done():
                        await self._drained  # mitmproxy reads slower than the upstream sends
                if self._lost:
                    raise asyncio.CancelledError
            if framed:
                self._write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            raise
        except CutShort:
            self.abort()  # the job has ended; the client must see the answer break off, not wait for more
        except Exception as e:  # boundary: a bridge bug must end the interception and answer the client
            logger.exception("aibridge: interception %s failed", job.id)
            engine.finish(job, Status.FAILED, f"bridge error: {e!r}", 500)
            if started:
                self.abort()  # a response cut short must not look complete
            else:
                body = job.route.error_body(500, "internal bridge error")
                self._write_head(500, [("content-type", "application/json"), ("content-length", str(len(body)))])
                self._write(body)
        finally:
            if reply is not None:
                await reply.aclose()
            engine.finish(job, Status.CANCELLED, "client disconnected")

    def _write_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        lines = [b"HTTP/1.1 %d %b\r\n" % (status, _reason(status))]
        lines += [b"%b: %b\r\n" % (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        lines.append(b"\r\n")
        self._write(b"".join(lines))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._lost:
            self.transport.write(data)


LocalServer.connection = _HopConnection


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""
