"""The local hop server, spoken to over raw HTTP/1.1 as mitmproxy does, with a scripted engine behind it."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from addon.config import parse_config
from addon.engine.job import CutShort, Job, Reply
from addon.ids import uuid7
from addon.mitm.server import LocalServer
from addon.providers import Api
from addon.providers.routing import Route

ANTHROPIC = parse_config({}).providers[0]


class ScriptedEngine:
    """Answers each job with the reply a test scripted; records how jobs ended."""

    def __init__(self) -> None:
        self.replies: dict[object, Reply | Exception] = {}
        self.ended: list[tuple[Any, str, str | None]] = []
        self.closed: list[Any] = []
        self.opened: list[Any] = []
        self.held: dict[object, asyncio.Event] = {}
        """Jobs whose upstream call waits for the event (as for a slow provider)."""
        self.cancelled: list[Any] = []

    async def open(self, job: Job) -> Reply:
        self.opened.append(job.id)
        if (hold := self.held.get(job.id)) is not None:
            try:
                await hold.wait()
            except asyncio.CancelledError:
                self.cancelled.append(job.id)
                raise
        reply = self.replies[job.id]
        if isinstance(reply, Exception):
            raise reply
        closed = self.closed

        async def on_close() -> None:
            closed.append(job.id)

        reply.on_close = on_close
        return reply

    def finish(self, job: Job, status: str, error: str | None = None, *args: object) -> None:
        if not job.ended:
            job.ended = True
            self.ended.append((job.id, status, error))


def make_job() -> Job:
    route = Route(provider=ANTHROPIC, api=Api.ANTHROPIC_MESSAGES)
    return Job(id=uuid7(), route=route, path="/v1/messages", headers=[], body=b"{}", initiator="test")


async def body_of(*chunks: bytes, gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    for n, chunk in enumerate(chunks):
        if n and gate is not None:
            await gate.wait()
        yield chunk


@pytest.fixture
async def hop() -> AsyncIterator[tuple[LocalServer, ScriptedEngine]]:
    engine = ScriptedEngine()
    server = LocalServer(engine)  # type: ignore[arg-type]
    await server.start()
    yield server, engine
    await server.stop()


async def request(writer: asyncio.StreamWriter, path: str) -> None:
    writer.write(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head[:-4].split(b"\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(b": ") for line in lines)}
    if b"content-length" in headers:
        return status, headers, await reader.readexactly(int(headers[b"content-length"]))
    body = b""
    while size := int((await reader.readline()).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readexactly(2)
    return status, headers, body


async def test_jobs_stream_back_chunked_and_the_connection_serves_the_next_one(hop) -> None:  # type: ignore[no-untyped-def]
    server, engine = hop
    first, second = make_job(), make_job()
    engine.replies[first.id] = Reply(
        200, [("content-type", "text/event-stream")], body_of(b"data: 1\n\n", b"data: 2\n\n")
    )
    engine.replies[second.id] = Reply(429, [("content-length", "2"), ("retry-after", "7")], body_of(b"{}"))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await request(writer, server.submit(first))
    status, headers, body = await read_response(reader)
    assert (status, headers[b"transfer-encoding"], body) == (b"HTTP/1.1 200 OK", b"chunked", b"data: 1\n\ndata: 2\n\n")
    await request(writer, server.submit(second))
    status, headers, body = await read_response(reader)
    assert status == b"HTTP/1.1 429 Too Many Requests"
    assert (headers[b"retry-after"], b"transfer-encoding" in headers, body) == (b"7", False, b"{}")
    writer.close()
    assert engine.closed == [first.id, second.id]


async def test_unknown_and_reused_tokens_are_refused(hop) -> None:  # type: ignore[no-untyped-def]
    server, engine = hop
    job = make_job()
    engine.replies[job.id] = Reply(200, [("content-length", "0")], body_of(b""))
    path = server.submit(job)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for candidate, expected in (("/_aibridge/guess", b"403"), (path, b"200"), (path, b"403"), ("/v1/messages", b"403")):
        await request(writer, candidate)
        status, _, _ = await read_response(reader)
        assert status.split()[1] == expected, candidate
    writer.close()


async def test_a_client_leaving_mid_stream_cancels_the_job(hop) -> None:  # type: ignore[no-untyped-def]
    server, engine = hop
    job = make_job()
    gate = asyncio.Event()
    engine.replies[job.id] = Reply(
        200, [("content-type", "text/event-stream")], body_of(b"data: 1\n\n", b"x", gate=gate)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await request(writer, server.submit(job))
    await reader.readuntil(b"data: 1\n\n\r\n")
    writer.close()
    for _ in range(200):
        if engine.ended:
            break
        await asyncio.sleep(0.01)
    assert engine.ended == [(job.id, "cancelled", "client disconnected")]
    assert engine.closed == [job.id]


async def cut_short(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    raise CutShort("upstream failed mid-response")


@pytest.mark.parametrize("framing", [[("content-length", "303")], [("content-type", "text/event-stream")]])
async def test_a_reply_cut_short_ends_the_connection_at_once(hop, framing: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    """Whatever its framing promised, mitmproxy (and so the client) must see the answer break off now."""
    server, engine = hop
    job = make_job()
    engine.replies[job.id] = Reply(200, framing, cut_short(b"data: 1\n\n"))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await request(writer, server.submit(job))
    received = await asyncio.wait_for(reader.read(), 5)  # to the end of the connection
    assert received.startswith(b"HTTP/1.1 200 OK") and b"data: 1" in received
    assert not received.endswith(b"0\r\n\r\n")  # no chunked terminator: it must not look complete
    assert engine.closed == [job.id]
    writer.close()


async def test_an_engine_failure_before_the_answer_is_a_provider_shaped_500(hop) -> None:  # type: ignore[no-untyped-def]
    server, engine = hop
    job = make_job()
    engine.replies[job.id] = RuntimeError("bug")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await request(writer, server.submit(job))
    status, _, body = await read_response(reader)
    assert status == b"HTTP/1.1 500 Internal Server Error"
    assert json.loads(body)["type"] == "error"
    assert engine.ended[0][1] == "failed" and "bug" in (engine.ended[0][2] or "")
    writer.close()


async def test_the_upstream_call_starts_when_the_job_is_parked(hop) -> None:  # type: ignore[no-untyped-def]
    """mitmproxy's hop to the server overlaps the provider's time to answer."""
    server, engine = hop
    job = make_job()
    engine.replies[job.id] = Reply(200, [("content-length", "2")], body_of(b"{}"))
    path = server.submit(job)
    await asyncio.sleep(0)
    assert engine.opened == [job.id]  # before any request reached the server
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await request(writer, path)
    assert (await read_response(reader))[2] == b"{}"
    assert engine.opened == [job.id]  # called once
    writer.close()


async def test_a_withdrawn_job_has_its_upstream_call_cancelled_or_its_answer_closed(hop) -> None:  # type: ignore[no-untyped-def]
    server, engine = hop
    waiting, answered = make_job(), make_job()
    engine.held[waiting.id] = asyncio.Event()
    engine.replies[answered.id] = Reply(200, [("content-length", "2")], body_of(b"{}"))
    paths = [server.submit(waiting), server.submit(answered)]
    await asyncio.sleep(0.01)
    assert [server.withdraw(path) for path in paths] == [waiting, answered]
    await asyncio.sleep(0.01)
    assert engine.cancelled == [waiting.id]
    assert engine.closed == [answered.id]
    assert server.withdraw(paths[0]) is None
