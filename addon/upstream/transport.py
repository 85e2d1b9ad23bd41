"""A lean HTTP/1.1 transport for the bridge's httpx client: asyncio protocols, httptools parsing, a plain pool.

httpx's default transport (httpcore over anyio and h11) costs more CPU per request and per streamed chunk than
the whole of mitmproxy's relay: h11 parses chunked bodies in Python, every chunk crosses several async layers,
and each request polls every pooled connection with a syscall. Here a response body arrives in
`data_received`, is parsed in C and queued; a reader awaits only when the queue is empty; an idle connection
the server closed is already marked closed by asyncio, so checking out costs nothing.

Semantics kept from httpx: its exceptions (`ConnectError`, `ConnectTimeout`, `ReadTimeout`, `ReadError`,
`RemoteProtocolError`), a read timeout between chunks, raw bytes (no decoding: httpx decodes only if asked).
A request on a reused connection that the server closed before answering a byte is retried once on a new one,
as Go's net/http does (the server closed an idle connection; it never saw the request).
"""

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator, Iterable

import httptools
import httpx

_HIGH_WATER = 256 * 1024
"""Queued body bytes beyond which the socket stops being read until the reader catches up."""


class _StaleConnection(Exception):
    """A reused connection closed before any response byte: safe to send again on a new one."""


class _Connection(asyncio.Protocol):
    """One upstream connection. TLS runs over memory BIOs here rather than in asyncio's SSL transport, which
    costs more per read and holds a 256 KiB buffer per connection (the 300-stream RSS budget is 0.5 MB each)."""

    def __init__(self, origin: tuple[bytes, bytes, int], context: ssl.SSLContext | None = None) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = None
        if context is not None:
            hostname = origin[1].decode("ascii")
            self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=hostname)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.bytes_seen = 0
        self.until_close = False
        self.keep_alive = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._paused = False

    # --- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._tls is None:
            self.ready.set_result(None)
        else:
            self._handshake()

    def data_received(self, data: bytes) -> None:
        if self._tls is None:
            self._parse(data)
            return
        self._incoming.write(data)
        if not self.ready.done():
            self._handshake()
        if not self.ready.done():
            return
        while True:
            try:
                plain = self._tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                break  # close_notify: the TCP close that follows ends the message if it had no length
            except ssl.SSLError as e:
                self._fail(httpx.ReadError(f"TLS error from the upstream: {e}"))
                return
            if not plain:
                break
            self._parse(plain)
        self._flush()  # TLS 1.3 may answer post-handshake messages

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        if self._tls is None:
            self.transport.write(data)
        else:
            self._tls.write(data)
            self._flush()

    def _handshake(self) -> None:
        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            self.ready.set_exception(e)
            self._flush()
            self.close()
            return
        else:
            self.ready.set_result(None)
        self._flush()

    def _flush(self) -> None:
        if self._outgoing.pending and self.transport is not None:
            self.transport.write(self._outgoing.read())

    def _parse(self, data: bytes) -> None:
        self.bytes_seen += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("unexpected protocol upgrade from the upstream"))
        except httptools.HttpParserError as e:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response from the upstream: {e}"))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionResetError("connection closed during the TLS handshake"))
        if self.headers_done and self.until_close and exc is None:
            self.complete = True  # a body delimited by the connection's end
        elif not self.complete and self._exc is None:
            if self.reused and self.bytes_seen == 0:
                self._exc = _StaleConnection()
            else:
                self._exc = httpx.RemoteProtocolError(
                    "upstream closed the connection without sending a complete response" + (f": {exc}" if exc else "")
                )
        self._wake()

    # --- httptools callbacks -------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        names = {name.lower() for name, _ in self.headers}
        self.until_close = b"content-length" not in names and b"transfer-encoding" not in names
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._queued += len(body)
        if self._queued > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()  # only meaningful now: llhttp resets it after

    # --- used by the transport -----------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        self._exc = exc
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self, read_timeout: float) -> None:
        """Until bytes arrive; TimeoutError after `read_timeout` seconds of silence.

        One lazily moved timer per connection instead of a timeout context per wait: a stream waits once
        per chunk, and the context manager cost more than the rest of the wait."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._deadline = loop.time() + read_timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check_deadline)
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait sets a timer
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:  # bytes came since this timer was set: wait out the new deadline
            self._timer = loop.call_at(self._deadline, self._check_deadline)
        else:
            waiter.set_exception(TimeoutError())

    async def head(self, read_timeout: float) -> None:
        while not self.headers_done:
            if self._exc is not None:
                raise self._exc
            try:
                await self._wait(read_timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the upstream's response") from None

    async def body(self, read_timeout: float) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                # Everything that has arrived, as one chunk: one relay step (one hop write, one mitmproxy
                # read and client send) per socket read rather than per TLS record or HTTP chunk.
                chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._queued = 0
                if self._paused and self.transport is not None:  # the queue is empty again
                    self._paused = False
                    self.transport.resume_reading()
                yield chunk
            elif self.complete:
                return
            elif self._exc is not None:
                raise self._exc  # never _StaleConnection: a body comes after a head, so bytes were seen
            else:
                try:
                    await self._wait(read_timeout)
                except TimeoutError:
                    raise httpx.ReadTimeout("timed out waiting for the upstream's next bytes") from None

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self.until_close

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, pool: "Http1Transport", connection: _Connection, reuse: bool, read_timeout: float) -> None:
        self._pool = pool
        self._connection = connection
        self._reuse = reuse
        self._read_timeout = read_timeout
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._connection.body(self._read_timeout):
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if self._reuse and connection.reusable:
            self._pool.release(connection)
        else:
            connection.close()


class Http1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to any number of origins; idle connections kept per origin, most recently used first."""

    def __init__(
        self,
        verify: ssl.SSLContext | bool = True,
        *,
        connect_timeout: float = 30.0,
        read_timeout: float = 600.0,
        max_idle_per_origin: int = 64,
        idle_expiry: float = 60.0,
    ) -> None:
        if verify is True:
            verify = ssl.create_default_context()
        elif verify is False:
            verify = ssl.create_default_context()
            verify.check_hostname = False
            verify.verify_mode = ssl.CERT_NONE
        self._ssl = verify
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_idle = max_idle_per_origin
        self._idle_expiry = idle_expiry
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's transport interface; the bridge's own calls use `send`, which skips building httpx's URL
        and request models (about a tenth of a millisecond on every request's path)."""
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        body = await request.aread()
        data = _serialize(request.method.encode("ascii"), url.raw_path, request.headers.raw, body)
        return await self._exchange(origin, data, head_only=request.method == "HEAD")

    async def send(
        self,
        method: str,
        origin: tuple[str, str, int],
        authority: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> httpx.Response:
        """`method` `target` (path and query) on `origin` (scheme, host, port), with `headers` as given plus
        Host (`authority`) and Content-Length; the response's body streams."""
        scheme, host, port = origin
        raw = [(b"Host", authority.encode("idna"))]
        # Header values as they arrived (mitmproxy decodes them as UTF-8 with surrogate escapes).
        raw += [(name.encode("ascii"), value.encode("utf-8", "surrogateescape")) for name, value in headers]
        raw.append((b"Content-Length", b"%d" % len(body)))
        data = _serialize(method.encode("ascii"), target.encode("utf-8", "surrogateescape"), raw, body)
        return await self._exchange(
            (scheme.encode("ascii"), host.encode("idna"), port), data, head_only=method == "HEAD"
        )

    async def _exchange(self, origin: tuple[bytes, bytes, int], data: bytes, *, head_only: bool) -> httpx.Response:
        for _ in range(2):
            connection = self._checkout(origin) or await self._connect(origin)
            connection._reset()
            connection.write(data)
            try:
                await connection.head(self._read_timeout)
            except _StaleConnection:
                continue
            except BaseException:
                connection.close()
                raise
            break
        else:  # pragma: no cover - a second stale connection: the fresh one cannot be stale
            raise httpx.RemoteProtocolError("upstream closed the connection")
        if head_only:
            connection.complete = True
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(self, connection, not head_only, self._read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _checkout(self, origin: tuple[bytes, bytes, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._idle_expiry:
                connection.reused = True
                return connection
            connection.close()
        return None

    def release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(self, origin: tuple[bytes, bytes, int]) -> _Connection:
        scheme, host, port = origin
        name = host.decode("ascii")
        connection = _Connection(origin, self._ssl if scheme == b"https" else None)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(lambda: connection, name, port)
                await connection.ready
        except TimeoutError:
            connection.close()
            raise httpx.ConnectTimeout(f"timed out connecting to {name}:{port}") from None
        except (OSError, ssl.SSLError) as e:
            connection.close()
            raise httpx.ConnectError(f"{name}:{port}: {e}") from e
        return connection

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _serialize(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = [method, b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    for name, value in headers:
        if name.lower() == b"transfer-encoding":
            chunked = True
            continue
        head += [name, b": ", value, b"\r\n"]
    if chunked:  # the whole body is here: send it with a length instead
        head += [b"Content-Length: ", str(len(body)).encode(), b"\r\n"]
    head.append(b"\r\n")
    return b"".join(head) + body
