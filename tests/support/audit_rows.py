"""Audit rows the tests build and read back: single events, and whole interceptions (`Call`) written through the
real writer, as the CLI's and the web view's fixtures hold them."""

from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import duckdb

from addon.audit import (
    AuditWriter,
    CacheBust,
    InterceptionEnded,
    InterceptionStarted,
    PromptSubmitted,
    ThoughtRecorded,
    TokensUsed,
    ToolCalled,
    ToolResultReturned,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MCP_URL = "http://127.0.0.1:9100/mcp"


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


def bust(interception_id: UUID, previous: UUID, lost: int = 5000, read: int = 0, **kw: Any) -> CacheBust:
    """A cache bust of `lost` tokens, all written again: `kw` sets the rest (cost, location, locate, ...)."""
    values: dict[str, Any] = {"ttl_seconds": 300, "gap_ms": 1000, "cost_micros": None}
    values.update(kw)
    return CacheBust(
        interception_id=interception_id,
        previous_interception_id=previous,
        expected_tokens=lost + read,
        read_tokens=read,
        lost_tokens=lost,
        rewritten_tokens=lost,
        **values,
    )


def query(path: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(path, read_only=True) as db:
        return db.execute(sql, params or []).fetchall()


# --- whole interceptions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallTool:
    name: str
    call_id: str
    input: str
    injected: bool = False
    error: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class CallResult:
    """A tool result the interception's request carried, for a call of an earlier one."""

    call_id: str
    is_error: bool | None = False
    size: int = 10
    excerpt: str | None = "result"


@dataclass(frozen=True)
class CallBust:
    """A cache bust found on the interception, after the one named `previous`."""

    previous: str
    expected: int
    read: int
    cost: int | None
    location: str | None = "system"


@dataclass(frozen=True)
class Call:
    """One interception of the fixture, with everything recorded for it."""

    name: str
    started: datetime
    status: str | None
    """None: still in progress (no end row)."""
    ended: datetime | None = None
    _: KW_ONLY
    user: str
    client: str
    provider: str
    provider_name: str
    model: str
    session: str | None
    """The client's session id (None: the session is the thread root's, or the interception's own, id)."""
    root: str | None = None
    parent: str | None = None
    error: str | None = None
    http_status: int | None = None
    response_model: str | None = None
    streaming: bool = True
    prompt: str | None = None
    usages: tuple[tuple[int, int, int, int, int | None], ...] = ()
    """(input, output, cache read, cache write, cost micro-dollars or None when unpriced), created 1 s apart."""
    tools: tuple[CallTool, ...] = ()
    thoughts: tuple[str, ...] = ()
    results: tuple[CallResult, ...] = ()
    busts: tuple[CallBust, ...] = ()
    working_directory: str | None = None
    repository: str | None = None
    branch: str | None = None
    agent: str | None = None
    route: str | None = None
    """The path it was called on (default: the provider's chat path)."""


def ident(started: datetime, n: int) -> UUID:
    """A UUIDv7 that sorts by start time, then by `n` (so ties in start time have a known order)."""
    ms = int(started.timestamp() * 1000)
    return UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | n)


def record_call(writer: AuditWriter, call: Call, ids: dict[str, UUID]) -> None:
    """Every event of `call`, as the bridge records them, through the real writer (`ids`: each call's id by name)."""
    me = ids[call.name]
    writer.emit(
        InterceptionStarted(
            id=me,
            initiator=call.user,
            provider=call.provider,
            provider_name=call.provider_name,
            model=call.model,
            client=call.client,
            user_agent=None,
            client_session_id=call.session,
            thread_parent_id=ids[call.parent] if call.parent else None,
            thread_root_id=ids[call.root] if call.root else None,
            correlating_tool_call_id=None,
            credential_kind="byok",
            credential_hint="sk-a...wxyz",
            streaming=call.streaming,
            route=call.route or ("/v1/chat/completions" if call.provider == "openai" else "/v1/messages"),
            started_at=call.started,
            working_directory=call.working_directory,
            repository=call.repository,
            branch=call.branch,
            agent=call.agent,
        )
    )
    for result in call.results:
        writer.emit(
            ToolResultReturned(
                interception_id=me,
                provider_tool_call_id=result.call_id,
                is_error=result.is_error,
                size_bytes=result.size,
                excerpt=result.excerpt,
                created_at=call.started,
            )
        )
    for b in call.busts:
        lost, at = b.expected - b.read, call.started + timedelta(seconds=1)
        writer.emit(bust(me, ids[b.previous], lost, b.read, location=b.location, cost_micros=b.cost, created_at=at))
    if call.prompt:
        writer.emit(
            PromptSubmitted(interception_id=me, provider_response_id=None, prompt=call.prompt, created_at=call.started)
        )
    for n, thought in enumerate(call.thoughts):
        writer.emit(
            ThoughtRecorded(
                interception_id=me,
                content=thought,
                metadata={"source": "thinking"},
                created_at=call.started + timedelta(milliseconds=500 + n),
            )
        )
    for n, tool in enumerate(call.tools, 1):
        writer.emit(
            ToolCalled(
                interception_id=me,
                provider_response_id=f"resp-{call.name}",
                provider_tool_call_id=tool.call_id,
                server_url=MCP_URL if tool.injected else None,
                tool=tool.name,
                input=tool.input,
                injected=tool.injected,
                invocation_error=tool.error,
                metadata=tool.metadata or {},
                created_at=call.started + timedelta(seconds=n),
            )
        )
    for n, (inp, out, read, write, cost) in enumerate(call.usages, 1):
        writer.emit(
            TokensUsed(
                interception_id=me,
                provider_response_id=f"resp-{call.name}-{n}",
                input_tokens=inp,
                output_tokens=out,
                cache_read_input_tokens=read,
                cache_write_input_tokens=write,
                cost_micros=cost,
                created_at=call.started + timedelta(seconds=n),
            )
        )
    if call.status is not None:
        assert call.ended is not None
        writer.emit(
            InterceptionEnded(
                interception_id=me,
                status=call.status,
                error=call.error,
                http_status=call.http_status,
                response_model=call.response_model,
                ended_at=call.ended,
            )
        )
