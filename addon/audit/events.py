"""One frozen dataclass per kind of audit row. `row()` gives the values in the table's column order."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from addon.ids import uuid7


def _now() -> datetime:
    return datetime.now(UTC)


def _json(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    TABLE: ClassVar[str]
    UNSTORED: ClassVar[frozenset[str]] = frozenset()
    """Fields that carry work for the writer thread, not values for a column."""

    def row(self) -> tuple[Any, ...]:
        values = (getattr(self, f.name) for f in fields(self) if f.name not in self.UNSTORED)
        return tuple(_json(v) if isinstance(v, dict) else v for v in values)

    def prepared(self) -> "AuditEvent":
        """The event as it is written: work left for the writer thread done (off the event loop)."""
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class InterceptionStarted(AuditEvent):
    TABLE = "interception_starts"
    id: UUID
    initiator: str
    provider: str
    provider_name: str
    model: str
    client: str
    user_agent: str | None
    client_session_id: str | None
    thread_parent_id: UUID | None
    thread_root_id: UUID | None
    correlating_tool_call_id: str | None
    credential_kind: str | None
    credential_hint: str | None
    streaming: bool
    route: str
    started_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    working_directory: str | None = None
    """Attribution, from the client's own context (`addon.engine.attribution`): None where it says nothing."""
    repository: str | None = None
    branch: str | None = None
    agent: str | None = None
    """`main`, or the sub-agent's name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InterceptionEnded(AuditEvent):
    TABLE = "interception_ends"
    interception_id: UUID
    status: str
    error: str | None = None
    http_status: int | None = None
    response_model: str | None = None
    ended_at: datetime = field(default_factory=_now)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokensUsed(AuditEvent):
    TABLE = "token_usages"
    id: UUID = field(default_factory=uuid7)
    interception_id: UUID
    provider_response_id: str | None
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_write_input_tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)
    cost_micros: int | None = None
    """None: the price book could not price this usage."""
    input_cost_micros: int | None = None
    output_cost_micros: int | None = None
    cache_read_cost_micros: int | None = None
    cache_write_cost_micros: int | None = None
    prices: dict[str, Any] = field(default_factory=dict)
    """The US$-per-million-token prices applied, and their source."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptSubmitted(AuditEvent):
    TABLE = "user_prompts"
    id: UUID = field(default_factory=uuid7)
    interception_id: UUID
    provider_response_id: str | None
    prompt: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCalled(AuditEvent):
    TABLE = "tool_usages"
    id: UUID = field(default_factory=uuid7)
    interception_id: UUID
    provider_response_id: str | None
    provider_tool_call_id: str | None
    server_url: str | None
    tool: str
    input: str | None
    injected: bool
    invocation_error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultReturned(AuditEvent):
    """A client tool's result, as the client sent it back: paired with its call (`tool_usages`) by call id. Its
    `created_at` is the arrival of the request that carries it."""

    TABLE = "tool_results"
    UNSTORED = frozenset({"keep"})
    id: UUID = field(default_factory=uuid7)
    interception_id: UUID
    """The interception whose request carried the result."""
    provider_tool_call_id: str
    is_error: bool | None
    size_bytes: int
    excerpt: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)
    keep: int | None = field(default=None, compare=False, repr=False)
    """Characters of `excerpt` to store: it comes longer, so that redaction sees a secret the cut would halve."""

    def prepared(self) -> "ToolResultReturned":
        if self.keep is None or self.excerpt is None:
            return self
        return replace(self, excerpt=self.excerpt[: self.keep] or None, keep=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheBust(AuditEvent):
    """A request that wrote again (or sent uncached) a prompt-cache prefix the previous request of its conversation
    had cached, within the cache's lifetime: where the prefix changed, and what it cost over a cache read."""

    TABLE = "cache_busts"
    UNSTORED = frozenset({"locate"})
    id: UUID = field(default_factory=uuid7)
    interception_id: UUID
    previous_interception_id: UUID
    expected_tokens: int
    """The prefix the previous request read or wrote: what this one should have read."""
    read_tokens: int
    lost_tokens: int
    """Of the expected prefix, what was not read: written to the cache again, or sent as plain input."""
    rewritten_tokens: int
    location: str | None = None
    """The first part of the prefix that changed: `tools`, `system`, `messages[N]`, ...; `unchanged` when the
    bodies agree (the cache was evicted); None when the bodies could not be compared."""
    ttl_seconds: int
    gap_ms: int
    """From the previous request's arrival to this one's (the cache's lifetime counts from its last use)."""
    cost_micros: int | None
    """Micro-dollars lost: what the lost tokens this request sent again cost over reading them from the cache."""
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)
    locate: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)
    """Finds `location` from the two request bodies, in the writer thread."""

    def prepared(self) -> "CacheBust":
        if self.locate is None:
            return self
        try:
            location = self.locate()
        except Exception:  # a body no comparison foresaw: the bust stays, unlocated
            location = None
        return replace(self, location=location, locate=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThoughtRecorded(AuditEvent):
    TABLE = "model_thoughts"
    id: UUID = field(default_factory=uuid7)
    interception_id: UUID
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)


KINDS: tuple[type[AuditEvent], ...] = (
    InterceptionStarted,
    InterceptionEnded,
    TokensUsed,
    PromptSubmitted,
    ToolCalled,
    ThoughtRecorded,
    ToolResultReturned,
    CacheBust,
)
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    kind.TABLE: tuple(f.name for f in fields(kind) if f.name not in kind.UNSTORED) for kind in KINDS
}
"""Each table's columns in `row()`'s order."""
JSON_COLUMNS: frozenset[str] = frozenset({"metadata", "prices"})
