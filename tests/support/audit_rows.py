"""Audit rows the writer and retention tests build and read back."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import duckdb

from addon.audit import (
    InterceptionStarted,
    ToolCalled,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def started(id: UUID, **kw: Any) -> InterceptionStarted:
    values: dict[str, Any] = {
        "id": id,
        "initiator": "user@example.com",
        "provider": "anthropic",
        "provider_name": "anthropic",
        "model": "claude-sonnet-4-5",
        "client": "Claude Code",
        "user_agent": "claude-cli/2.1.329 (external, sdk-cli)",
        "client_session_id": None,
        "thread_parent_id": None,
        "thread_root_id": None,
        "correlating_tool_call_id": None,
        "credential_kind": "byok",
        "credential_hint": "sk-a...efgh",
        "streaming": True,
        "route": "/v1/messages",
        "started_at": T0,
    }
    values.update(kw)
    return InterceptionStarted(**values)


def tool(interception_id: UUID, call_id: str, created_at: datetime = T0) -> ToolCalled:
    return ToolCalled(
        interception_id=interception_id,
        provider_response_id="msg_1",
        provider_tool_call_id=call_id,
        server_url=None,
        tool="Read",
        input='{"path":"a.py"}',
        injected=False,
        created_at=created_at,
    )


def query(path: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(path, read_only=True) as db:
        return db.execute(sql, params or []).fetchall()
