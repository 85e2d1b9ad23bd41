"""The upstream HTTP/1.1 transport against scripted raw servers: framing, reuse, failures, flow control, TLS."""

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import trustme

from addon.config import Upstream
from addon.upstream.transport import Http1Transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server on 127.0.0.1 whose handler writes whatever bytes a test scripts."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "RawServer":
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.ssl_context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), b"".join(extra), body)


def chunked(*chunks: bytes) -> list[bytes]:
    return [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"] + [
        b"%x\r\n%b\r\n" % (len(c), c) for c in chunks
    ]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=Http1Transport(False, read_timeout=5)) as client:
        yield client


async def test_keep_alive_connections_are_reused(client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(3):
            await server.read_request(reader)
            writer.write(ok(b"answer %d" % n))

    async with RawServer(handler) as server:
        answers = [(await client.post(server.url + "/v1/messages", content=b"{}")).content for _ in range(3)]
    assert answers == [b"answer 0", b"answer 1", b"answer 2"]
    assert server.connections == 1


async def test_request_bytes_carry_method_path_query_headers_and_body(client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(b""))

    async with RawServer(handler) as server:
        await client.post(
            server.url + "/v1/messages?beta=true",
            content=b'{"a": 1}',
            headers={"X-Api-Key": "k", "anthropic-beta": "b"},
        )
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/messages?beta=true HTTP/1.1"
    assert b"X-Api-Key: k" in lines and b"anthropic-beta: b" in lines
    assert b"Content-Length: 8" in lines or b"content-length: 8" in lines
    assert body == b'{"a": 1}'


async def test_an_idle_connection_the_server_closed_is_replaced_transparently(client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(b"first" if server.connections == 1 else b"second"))
        await writer.drain()
        # then close while idle, as servers do after their keep-alive timeout

    async with RawServer(handler) as server:
        assert (await client.get(server.url + "/")).content == b"first"
        await asyncio.sleep(0.05)
        assert (await client.get(server.url + "/")).content == b"second"
    assert server.connections == 2


async def test_a_stale_connection_caught_mid_send_is_retried_once() -> None:
    transport = Http1Transport(False, read_timeout=5)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            writer.write(ok(b"first"))
            await writer.drain()
            await server.read_request(reader)  # the second request arrives, and the connection drops unanswered
            return
        writer.write(ok(b"retried"))

    async with RawServer(handler) as server, httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(server.url + "/")).content == b"first"
        assert (await client.get(server.url + "/")).content == b"retried"
    assert server.connections == 2 and len(server.requests) == 3


async def test_a_fresh_connection_closed_before_answering_is_an_error_not_a_retry(
    client: httpx.AsyncClient,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url + "/")
    assert server.connections == 1


async def test_chunked_stream_arrives_chunk_by_chunk(client: httpx.AsyncClient) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        head, first, second = chunked(b"data: 1\n\n", b"data: 2\n\n")
        writer.write(head + first)
        await release.wait()
        writer.write(second + b"0\r\n\r\n")

    async with RawServer(handler) as server, client.stream("POST", server.url + "/v1/m", content=b"{}") as response:
        assert response.headers["content-type"] == "text/event-stream"
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"data: 1\n\n"  # before the rest was even sent
        release.set()
        assert [c async for c in chunks] == [b"data: 2\n\n"]


async def test_a_body_delimited_by_the_connection_end_is_read_whole_and_not_reused(
    client: httpx.AsyncClient,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"until": ')
        await writer.drain()
        writer.write(b'"close"}')

    async with RawServer(handler) as server:
        assert (await client.get(server.url + "/")).json() == {"until": "close"}
        assert (await client.get(server.url + "/")).json() == {"until": "close"}
    assert server.connections == 2


async def test_a_body_cut_short_raises_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        head, first = chunked(b"data: 1\n\n")
        writer.write(head + first)
        await writer.drain()

    async with RawServer(handler) as server, client.stream("GET", server.url + "/") as response:
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"data: 1\n\n"
        with pytest.raises(httpx.RemoteProtocolError):
            await anext(chunks)


async def test_malformed_responses_are_protocol_errors(client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await asyncio.sleep(1)

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url + "/")


async def test_connection_refused_is_a_connect_error(client: httpx.AsyncClient) -> None:
    async with RawServer(lambda r, w: asyncio.sleep(0)) as server:
        url = server.url
    with pytest.raises(httpx.ConnectError):
        await client.get(url + "/")


async def test_read_timeouts_before_the_head_and_between_chunks() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if len(server.requests) == 2:
            head, first = chunked(b"data: 1\n\n")
            writer.write(head + first)
        await asyncio.sleep(5)

    impatient = Http1Transport(False, read_timeout=0.2)
    async with RawServer(handler) as server, httpx.AsyncClient(transport=impatient) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url + "/")
        async with client.stream("GET", server.url + "/") as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"data: 1\n\n"
            with pytest.raises(httpx.ReadTimeout):
                await anext(chunks)


async def test_a_slow_reader_pauses_the_socket_and_loses_nothing(client: httpx.AsyncClient) -> None:
    payload = bytes(range(256)) * 4 * 16 * 1024  # 16 MiB: more than loopback socket buffers hold
    drained = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(payload))
        await writer.drain()
        drained.set()

    async with RawServer(handler) as server:
        async with client.stream("GET", server.url + "/") as response:
            await asyncio.sleep(0.3)
            assert not drained.is_set(), "the transport buffered the whole body instead of pausing the socket"
            received = bytearray()
            async for chunk in response.aiter_raw():
                received += chunk
        assert bytes(received) == payload
        assert drained.is_set()


async def test_tls_verified_against_the_configured_ca(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(ok(b"over tls"))

    async with RawServer(handler, server_context) as server:
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        async with httpx.AsyncClient(transport=Http1Transport(trusted)) as client:
            assert (await client.get(server.url + "/")).content == b"over tls"
            assert (await client.get(server.url + "/")).content == b"over tls"
        async with httpx.AsyncClient(transport=Http1Transport(ssl.create_default_context())) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(server.url + "/")
    assert server.connections == 1  # the trusted client reused its connection; the other never got through TLS


async def test_one_users_cookies_never_ride_on_anothers_request() -> None:
    """Providers behind Cloudflare set cookies; the bridge's upstream calls must not collect and replay them."""
    from addon.upstream import send

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await server.read_request(reader)
            writer.write(ok(b"{}", b"set-cookie: __cf_bm=user-a; path=/\r\n"))

    transport = Http1Transport(False)
    async with RawServer(handler) as server:
        target = Upstream(scheme="http", host="127.0.0.1", port=server.port, path="")
        for key in ("key-a", "key-b"):
            response = await send(transport, "POST", target, "/v1/messages", [("x-api-key", key)], b"{}")
            await response.aread()
            await response.aclose()
    await transport.aclose()
    assert b"cookie:" not in server.requests[1].lower()
    assert b"x-api-key: key-b" in server.requests[1]


async def test_the_bridges_own_requests_carry_host_length_and_header_bytes_as_they_came() -> None:
    """`upstream.send` writes the request itself (no httpx models): the head must still be a complete one."""
    from addon.upstream import send

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(b"{}"))

    transport = Http1Transport(False)
    async with RawServer(handler) as server:
        port = server.port
        target = Upstream(scheme="http", host="127.0.0.1", port=port, path="/base")
        headers = [("x-api-key", "k"), ("x-note", "caf\udcc3\udca9")]  # b"caf\xc3\xa9" as mitmproxy decodes it
        response = await send(transport, "POST", target, "/v1/messages?beta=true", headers, b'{"a":1}')
        assert (response.status_code, await response.aread()) == (200, b"{}")
        await response.aclose()
    await transport.aclose()
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /base/v1/messages?beta=true HTTP/1.1"
    assert lines[1] == b"Host: 127.0.0.1:%d" % port
    assert b"x-note: caf\xc3\xa9" in lines
    assert b"Content-Length: 7" in lines
    assert body == b'{"a":1}'


async def test_many_chunks_that_arrived_together_are_read_as_one() -> None:
    """What one socket read brought is relayed as one chunk (one hop write, one client send), in order."""
    events = [b"data: %d\n\n" % i for i in range(50)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"".join(chunked(*events)) + b"0\r\n\r\n")  # one write: the client reads it at once

    transport = Http1Transport(False)
    async with RawServer(handler) as server:
        client = httpx.AsyncClient(transport=transport)
        async with client.stream("POST", server.url + "/v1/messages", content=b"{}") as response:
            received = [chunk async for chunk in response.aiter_raw()]
        await client.aclose()
    assert b"".join(received) == b"".join(events)
    assert len(received) < 5
