"""A scripted provider on 127.0.0.1 speaking the real wire format: the only mock in the end-to-end tests.

Answers are queued and served in call order; each is a status, headers and either a body or SSE events
written one by one with a flush each. Every request is kept (headers and exact body bytes) for assertions.
"""

import asyncio
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[bytes] | None = None
    """SSE events, each written and flushed on its own."""
    delay: float = 0.0
    """Seconds between events."""
    first_byte_delay: float = 0.0
    gate: threading.Event | None = None
    """If set, the last event waits for it (proves the client saw earlier events before the stream ended)."""
    cut_after: int | None = None
    """Drop the connection after this many events."""
    raw_response: bytes | None = None
    """A whole raw HTTP response, written to the socket as is; then the connection is closed."""
    raw_hold: float = 0.0
    """Seconds the connection stays open after `raw_response` before it is closed (a provider that stalls)."""
    raw_reset: bool = False
    """End the connection after `raw_response` with a reset instead of a clean close."""
    linger: float = 0.0
    """Seconds between the last SSE event and the end of the body (a provider slow to send its last bytes);
    cut short by `MockUpstream.release`."""

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None, **kw: Any) -> "Answer":
        return cls(status, {"content-type": "application/json", **(headers or {})}, json.dumps(obj).encode(), **kw)

    @classmethod
    def sse(cls, events: list[bytes], **kw: Any) -> "Answer":
        return cls(headers={"content-type": "text/event-stream", "cache-control": "no-cache"}, events=events, **kw)


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def sse_event(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


class MockUpstream:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._answers: list[Answer] = []
        self.requests: list[Seen] = []
        self.gate_timed_out = False
        self.stream_aborted = threading.Event()
        """Set when a client went away while an SSE answer was being written."""
        self.stream_aborted_at: float | None = None
        self.queued_paths: set[str] | None = None
        """When set, only requests to these paths (query ignored) take queued answers; others get `200 {}`. Real
        clients make side calls (settings, model lists) that must not consume the scripted LLM answers."""
        self.default: Answer | None = None
        """The answer when the queue is empty (a client that makes an unknown number of calls), else a 599."""
        self.responder: Callable[[Seen], Answer] | None = None
        """When set (and the queue is empty), answers each request from what it asked (the soak's mixed load)."""
        self.keep_requests = True
        """False: keep no request (a long soak would hold every body in memory)."""
        self.websocket_status: int | None = None
        """How WebSocket upgrades are answered: None accepts them and echoes text messages (prefixed `echo: `);
        a status refuses them with it (OpenAI answers 426 when it will not speak WebSocket)."""
        self.release = threading.Event()
        """Ends every `linger` and `raw_hold` at once (set on stop, so no handler outlives the test)."""
        self.holding = 0
        """Answers in a `linger` or `raw_hold` now: their connections still open, their last bytes unsent."""
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def enqueue(self, *answers: Answer) -> None:
        self._answers.extend(answers)

    def start(self) -> "MockUpstream":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path_qs, [(k.decode(), v.decode()) for k, v in request.raw_headers], body)
        if self.keep_requests:
            self.requests.append(seen)
        if request.headers.get("upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        if self.queued_paths is not None and request.path not in self.queued_paths:
            return web.json_response({})
        if not self._answers and self.responder is not None:
            answer = self.responder(seen)
        elif not self._answers and self.default is None:
            return web.json_response({"mock": "no answer queued"}, status=599)
        else:
            answer = self._answers.pop(0) if self._answers else self.default
        assert answer is not None
        if answer.first_byte_delay:
            await asyncio.sleep(answer.first_byte_delay)
        if answer.raw_response is not None:
            assert request.transport is not None
            request.transport.write(answer.raw_response)
            await self._hold(answer.raw_hold)
            if answer.raw_reset:  # SO_LINGER 0: the close sends RST, not FIN
                sock = request.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                request.transport.abort()
            else:
                request.transport.close()
            return web.Response()  # never sent: the transport is closed
        if answer.events is None:
            return web.Response(status=answer.status, headers=answer.headers, body=answer.body)
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        await response.prepare(request)
        try:
            for i, event in enumerate(answer.events):
                if answer.cut_after is not None and i >= answer.cut_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if answer.gate is not None and i == len(answer.events) - 1:
                    await self._wait_gate(answer.gate)
                elif i and answer.delay:
                    await asyncio.sleep(answer.delay)
                await response.write(event)
            await self._hold(answer.linger)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            self.stream_aborted_at = time.monotonic()
            self.stream_aborted.set()
            raise
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.websocket_status is not None:
            return web.json_response(
                {"error": {"message": "WebSocket not supported", "type": "invalid_request_error"}},
                status=self.websocket_status,
            )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                await ws.send_str(f"echo: {message.data}")
        return ws

    async def _hold(self, seconds: float) -> None:
        if not seconds:
            return
        self.holding += 1
        try:
            await asyncio.to_thread(self.release.wait, seconds)
        finally:
            self.holding -= 1

    async def _wait_gate(self, gate: threading.Event) -> None:
        deadline = time.monotonic() + 10
        while not gate.is_set():
            if time.monotonic() > deadline:
                self.gate_timed_out = True
                return
            await asyncio.sleep(0.01)
