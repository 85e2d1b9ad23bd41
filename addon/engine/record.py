"""What an interception's audit rows say: each event built from the job and the turns its rounds gave. Pure."""

from typing import Any
from uuid import UUID

from addon.audit import InterceptionStarted, ThoughtRecorded, TokensUsed, ToolCalled, ToolResultReturned
from addon.engine.attribution import Attribution
from addon.engine.job import Job, Status
from addon.engine.ports import Tool
from addon.policy.pricing import Cost, PriceBook
from addon.wire import ToolCall, ToolResult, Turn
from addon.wire.base import LIMIT_NOTICE, LoopState, Next


def started(
    job: Job,
    headers: dict[str, str],
    client: str,
    *,
    model: str,
    streaming: bool,
    session: str | None = None,
    parent: UUID | None = None,
    attribution: Attribution | None = None,
) -> InterceptionStarted:
    where = attribution or Attribution()
    return InterceptionStarted(
        id=job.id,
        initiator=job.initiator,
        provider=job.route.provider.type,
        provider_name=job.route.provider.name,
        model=model,
        client=client,
        user_agent=headers.get("user-agent"),
        client_session_id=session,
        thread_parent_id=parent,
        thread_root_id=job.thread_root_id,
        correlating_tool_call_id=job.info.correlating_tool_call_id if job.info else None,
        credential_kind=job.credential_kind,
        credential_hint=job.credential_hint,
        streaming=streaming,
        route=job.path.split("?", 1)[0],
        started_at=job.started_at,
        metadata=job.metadata,
        working_directory=where.working_directory,
        repository=where.repository,
        branch=where.branch,
        agent=where.agent,
    )


EXCERPT_MARGIN = 512
"""Characters past the excerpt the writer's redaction reads before the cut: a secret across the cut is whole."""


def tool_result(job: Job, result: ToolResult, excerpt_chars: int) -> ToolResultReturned:
    """A client tool's result the request brings back, with an excerpt of `excerpt_chars` (0: none), cut in the
    writer's thread after its text was redacted."""
    excerpt = result.text[: excerpt_chars + EXCERPT_MARGIN] if excerpt_chars and result.text else None
    return ToolResultReturned(
        interception_id=job.id,
        provider_tool_call_id=result.call_id,
        is_error=result.is_error,
        size_bytes=result.size,
        excerpt=excerpt,
        created_at=job.started_at,
        keep=excerpt_chars,
    )


def cost(job: Job, turn: Turn, prices: PriceBook) -> Cost | None:
    """What a round's usage cost, priced by the response's model (else the requested one); None: unpriced."""
    assert turn.usage is not None
    provider, requested = job.route.price_vendor, job.info.model if job.info else None
    found = prices.cost(provider, turn.model, turn.usage) if turn.model else None
    if found is None and requested and requested != turn.model:
        found = prices.cost(provider, requested, turn.usage)
    return found


def priced(job: Job, turn: Turn, cost: Cost | None) -> TokensUsed:
    """A token-usage row with its `cost`; the cost and tokens are added to the job's, which its budget
    reservation and rate-limit ticket settle with."""
    assert turn.usage is not None
    u = turn.usage
    if cost is not None:
        job.cost_micros += cost.total
    job.tokens_used += u.input + u.output + u.cache_read + u.cache_write
    return TokensUsed(
        interception_id=job.id,
        provider_response_id=turn.response_id,
        input_tokens=u.input,
        output_tokens=u.output,
        cache_read_input_tokens=u.cache_read,
        cache_write_input_tokens=u.cache_write,
        metadata=u.extra,
        cost_micros=cost.total if cost else None,
        input_cost_micros=cost.input if cost else None,
        output_cost_micros=cost.output if cost else None,
        cache_read_cost_micros=cost.cache_read if cost else None,
        cache_write_cost_micros=cost.cache_write if cost else None,
        prices=cost.prices.as_json() if cost else {},
    )


def client_call(job: Job, turn: Turn, call: ToolCall, verdict: Any = None) -> ToolCalled:
    """A call of the client's own tools: the client runs it (unless the tool gate blocked it, `verdict`); the
    bridge only records it."""
    metadata: dict[str, Any] = {}
    if verdict is not None:
        blocked = verdict.blocked and not job.route.tapped  # a tapped answer is only read: audit only
        metadata = {"gate": verdict.rule, "action": verdict.action, "blocked": blocked}
    return ToolCalled(
        interception_id=job.id,
        provider_response_id=turn.response_id,
        provider_tool_call_id=call.id or None,
        server_url=None,
        tool=call.name,
        input=call.arguments,
        injected=False,
        metadata=metadata,
    )


def thought(job: Job, content: str, source: str) -> ThoughtRecorded:
    return ThoughtRecorded(interception_id=job.id, content=content, metadata={"source": source})


def injected_call(
    job: Job, turn: Turn, call: ToolCall, tool: Tool, error: str | None, metadata: dict[str, Any] | None = None
) -> ToolCalled:
    return ToolCalled(
        interception_id=job.id,
        provider_response_id=turn.response_id,
        provider_tool_call_id=call.id or None,
        server_url=tool.server.location,
        tool=tool.tool,
        input=call.arguments,
        injected=True,
        invocation_error=error[:4000] if error else None,
        metadata={"server": tool.server.name, "name": call.name, **(metadata or {})},
    )


def unrun_call(job: Job, turn: Turn, call: ToolCall, tool: Tool) -> ToolCalled:
    """An injected call the bridge did not run, and why."""
    if turn.next is Next.LIMIT:
        reason = "not run: max_tool_rounds reached"
    elif any(c.name not in job.tools for c in turn.tool_calls):
        reason = "not run: the turn also called the client's own tools"
    else:
        reason = f"not run: the response ended with {turn.stop_reason or 'an error'}"
    return injected_call(job, turn, call, tool, reason)


def outcome(turn: Turn, state: LoopState | None = None) -> tuple[Status, str | None]:
    """How an answer ends, by its last turn: failed with its error, or completed (with the limit's notice when
    the tool loop stopped at `max_tool_rounds`)."""
    if turn.error:
        return Status.FAILED, turn.error
    if state is not None and turn.next is Next.LIMIT:
        return Status.COMPLETED, LIMIT_NOTICE.format(rounds=state.round)
    return Status.COMPLETED, None
