"""Fakes the unit tests share: a recorder that keeps the engine's audit events, a scripted upstream reached
through the transport seam production uses (`Http1Transport.send`), and jobs and replies to drive the engine."""

import inspect
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import httpx

from addon.audit import (
    AuditEvent,
    InterceptionEnded,
    InterceptionStarted,
)
from addon.config import Provider, parse_config
from addon.engine.core import Engine
from addon.engine.job import Job, Reply
from addon.ids import uuid7
from addon.policy.identity import mask_secret
from addon.providers import FAMILIES, Api
from addon.providers.routing import Route
from addon.upstream.transport import Http1Transport

CONFIG = parse_config({})
ANTHROPIC, OPENAI = CONFIG.providers[:2]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.lookups: list[str] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None:
        self.lookups.append(tool_call_id)
        return None

    def of[E: AuditEvent](self, kind: type[E], job: Job | None = None) -> list[E]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (job is None or getattr(e, "interception_id", getattr(e, "id", None)) == job.id)
        ]

    def ended(self, job: Job) -> InterceptionEnded:
        (end,) = self.of(InterceptionEnded, job)
        return end

    def started(self, job: Job) -> InterceptionStarted:
        (start,) = self.of(InterceptionStarted, job)
        return start


class FakeUpstream(Http1Transport):
    """The provider, reached as production reaches it (`upstream.send` calls `Http1Transport.send`): answers each
    request with `respond(request)` (a response, or an exception it raises) and keeps every request, as an
    `httpx.Request`, for the tests to read."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []
        self.respond: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(500)

    async def send(
        self,
        method: str,
        origin: tuple[str, str, int],
        authority: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> httpx.Response:
        request = httpx.Request(method, f"{origin[0]}://{authority}{target}", headers=headers, content=body)
        self.requests.append(request)
        response = self.respond(request)
        if inspect.isawaitable(response):
            response = await response
        response.request = request
        return response


class Chunks(httpx.AsyncByteStream):
    """An upstream body sent in the given chunks, optionally failing after them; remembers being closed.

    (A `Response(content=...)` would not do: httpx reads such a body at construction, and `aiter_raw()` then
    raises StreamConsumed.)
    """

    def __init__(self, chunks: list[bytes], fail: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail = fail
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.fail is not None:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


def assert_each_job_ended_once(events: list[AuditEvent]) -> None:
    started_ids = [e.id for e in events if isinstance(e, InterceptionStarted)]
    ends = Counter(e.interception_id for e in events if isinstance(e, InterceptionEnded))
    assert len(started_ids) == len(set(started_ids))
    assert ends == Counter(started_ids), "every admitted job must end exactly once"


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "request-id": "req_1"}


ANTHROPIC_BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "metadata": {"user_id": json.dumps({"session_id": "sess-from-metadata"})},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "read a.py"},
                ],
            }
        ],
    },
    indent=1,
).encode()


CLAUDE_HEADERS = [
    ("Host", "api.anthropic.com"),
    ("User-Agent", "claude-cli/2.1.329 (external, sdk-cli)"),
    ("x-api-key", "sk-ant-api03-abcdefgh"),
    ("anthropic-version", "2023-06-01"),
    ("Content-Type", "application/json"),
    ("X-Claude-Code-Session-Id", "sess-header"),
]


def make_job(
    body: bytes = ANTHROPIC_BODY,
    *,
    api: Api = Api.ANTHROPIC_MESSAGES,
    provider: Provider | None = None,
    headers: list[tuple[str, str]] | None = None,
    path: str | None = None,
) -> Job:
    if provider is None:
        provider = ANTHROPIC if api is Api.ANTHROPIC_MESSAGES else OPENAI
    if path is None:
        path = "/v1/messages?beta=true" if api is Api.ANTHROPIC_MESSAGES else "/v1/chat/completions"
    headers = CLAUDE_HEADERS if headers is None else headers
    kind, hint = credential_info(provider.type, {k.lower(): v for k, v in headers})
    return Job(
        id=uuid7(),
        route=Route(provider, api),
        path=path,
        headers=headers,
        body=body,
        initiator="tester",
        credential_kind=kind,
        credential_hint=hint,
    )


def credential_info(provider_type: str, headers: dict[str, str]) -> tuple[str | None, str | None]:
    """What access control decides for a client's own key (the proxy sets it on the job)."""
    secret = FAMILIES[provider_type].credential(headers)
    return ("byok", mask_secret(secret)) if secret else (None, None)


async def admitted(engine: Engine, job: Job) -> Job:
    assert await engine.admit(job) is None
    return job


async def read(reply: Reply) -> list[bytes]:
    return [chunk async for chunk in reply.body]


def header(reply: Reply, name: str) -> list[str]:
    return [v for k, v in reply.headers if k.lower() == name]


CHAT_HEADERS = [("User-Agent", "OpenAI/Python 3.52.0"), ("Authorization", "Bearer sk-proj-0123456789abcdef")]
