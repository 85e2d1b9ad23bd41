"""The in-process HTTP server bridged flows are re-targeted to.

mitmproxy streams only bytes that arrive from a server connection; a response an addon builds itself is
sent whole. So the proxy hook parks each bridged request here as a `Job` under a single-use random token and
points the flow at this server, which runs the engine and streams its reply back through mitmproxy.
Listens on 127.0.0.1 only; an unknown or reused token gets 403.
"""

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from .engine import Engine, Job, error_body

logger = logging.getLogger(__name__)

PATH_PREFIX = "/_aibridge/"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # mitmproxy owns SIGINT/SIGTERM


class LocalServer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.port: int | None = None
        self._jobs: dict[str, Job] = {}
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, job: Job) -> str:
        """Park a job; the returned token is the path the flow must request."""
        token = secrets.token_urlsafe(24)
        self._jobs[token] = job
        return PATH_PREFIX + token

    def withdraw(self, path: str) -> Job | None:
        """Take back a job whose flow never reached the server (the client left, the hop failed)."""
        return self._jobs.pop(path.removeprefix(PATH_PREFIX), None)

    async def start(self) -> None:
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only on TCP sockets it recognises as such, and with Nagle
        # on, a body written after its headers waits ~40 ms for a delayed ACK on every reused connection.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            lifespan="off",
            proxy_headers=False,
            http="httptools",
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=600,
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[sock]))

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True
        try:
            await asyncio.wait_for(self._task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
        self._server = self._task = None

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        job = self.withdraw(scope["path"]) if scope["type"] == "http" else None
        if job is None:
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b"unknown or used token"})
            return
        await self._serve(job, receive, send)

    async def _serve(self, job: Job, receive: Any, send: Any) -> None:
        """Run one job; a client that goes away cancels it (and with it the upstream call)."""
        task = asyncio.current_task()
        assert task is not None
        finished = False

        async def cancel_on_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not finished:
                task.cancel()

        watcher = asyncio.ensure_future(cancel_on_disconnect())
        reply = None
        started = False
        try:
            reply = await self.engine.open(job)
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            started = True
            async for chunk in reply.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if task.cancelling() and watcher.done():
                task.uncancel()  # our own doing: the client left; nothing more to send
            else:
                raise
        except Exception as e:  # boundary: a bridge bug must end the interception and answer the client
            logger.exception("aibridge: interception %s failed", job.id)
            self.engine.finish(job, "failed", f"bridge error: {e!r}", 500)
            if not started:
                body = error_body(job.route.provider.type, 500, "internal bridge error")
                await send(
                    {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            finished = True
            watcher.cancel()
            if reply is not None:
                await reply.aclose()
            self.engine.finish(job, "cancelled", "client disconnected")
