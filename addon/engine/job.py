"""One interception as the engine carries it (`Job`), what it answers with (`Reply`), and how it ends."""

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from addon.engine.ports import Tool
from addon.ids import uuid7
from addon.policy.access import Access
from addon.policy.budgets import Reservation
from addon.policy.ratelimits import Ticket
from addon.providers import Api
from addon.providers.routing import Route
from addon.providers.sigv4 import AwsCredentials
from addon.wire import RequestInfo

INTERCEPTION_HEADER = "x-aibridge-interception-id"


class Status(enum.StrEnum):
    """How an interception ended, as the audit records it."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """The client went away, or the proxy shut down."""
    REFUSED = "refused"
    """A policy answered instead of the provider (access, budget, circuit breaker)."""


@dataclass(kw_only=True, eq=False)
class Job:
    """A recorded request, from the front door through the engine to its end."""

    id: UUID
    route: Route
    path: str
    """Path and query as the client sent them."""
    headers: list[tuple[str, str]]
    body: bytes
    initiator: str
    credential_kind: str | None = None
    credential_hint: str | None = None
    aws: AwsCredentials | None = None
    """The operator's AWS credentials: every upstream call is signed with them."""
    central_key: str | None = field(default=None, repr=False)
    """The central key in `headers`, where the bridge put one (its pool may swap it after a 429 or 401)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Recorded on the interception: e.g. an in-process caller's `source` and `api_key_id`."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    json: dict | None = None
    info: RequestInfo | None = None
    thread_root_id: UUID | None = None
    conversation: tuple[Any, ...] | None = None
    """(user, session, agent, agent thread, model): the requests that share a prompt cache (`engine.cache`)."""
    cache_observed: bool = False
    """Its first round's cache went to `engine.cache` (the tool loop's later rounds do not)."""
    response_id: str | None = None
    tools: dict[str, Tool] = field(default_factory=dict)
    """The injected tools, by model-visible name, as they were when the request arrived."""
    reservation: Reservation | None = None
    cost_micros: int = 0
    rate_ticket: Ticket | None = None
    tokens_used: int = 0
    """Every token of its usage (input, cached, output), which its rate-limit ticket settles with."""
    ended: bool = False
    gated: dict[str, Any] = field(default_factory=dict)
    """The tool gate's verdicts on the client's calls, by call id (`policy.toolgate.Verdict`)."""
    gate: Any = None
    """The wire's tool gate for this answer (`wire.toolgate`), where the gate holds client calls."""

    @classmethod
    def of(
        cls, route: Route, path: str, body: bytes, access: Access, *, initiator: str | None = None, **metadata: Any
    ) -> "Job":
        """A request as access control let it through: its upstream headers and who it is for."""
        return cls(
            id=uuid7(),
            route=route,
            path=path,
            headers=access.headers,
            body=body,
            initiator=initiator or access.initiator,
            credential_kind=access.credential_kind,
            credential_hint=access.credential_hint,
            aws=access.aws,
            central_key=access.key,
            metadata=metadata,
        )

    @property
    def api(self) -> Api:
        assert self.route.api is not None
        return self.route.api


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    on_close: Callable[[], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        """Release everything, also when the body was never read (the client left before it started)."""
        try:
            await self.body.aclose()  # type: ignore[attr-defined]
        finally:
            if self.on_close is not None:
                await self.on_close()


class UpstreamUnavailable(Exception):
    """No usable answer from the upstream: `status` is what the client is told (502, or 504 on a timeout)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CutShort(Exception):
    """A reply body broke off after its status went out, where the body itself cannot say so (no error event
    fits it): whoever serves the reply must end the client's connection, so the client sees a broken answer
    at once instead of waiting for bytes that will never come."""
