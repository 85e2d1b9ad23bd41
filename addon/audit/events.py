"""One frozen dataclass per kind of audit row. `row()` gives the values in the table's column order."""

import json
from dataclasses import dataclass, field, fields
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

    def row(self) -> tuple[Any, ...]:
        return tuple(_json(v) if isinstance(v, dict) else v for v in (getattr(self, f.name) for f in fields(self)))


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
class ThoughtRecorded(AuditEvent):
    TABLE = "model_thoughts"
    id: UUID = field(default_factory=uuid7)
    interception_id: UUID
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)


TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    kind.TABLE: tuple(f.name for f in fields(kind))
    for kind in (InterceptionStarted, InterceptionEnded, TokensUsed, PromptSubmitted, ToolCalled, ThoughtRecorded)
}
"""Each table's columns in `row()`'s order."""
JSON_COLUMNS: frozenset[str] = frozenset({"metadata", "prices"})
