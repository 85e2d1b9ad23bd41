"""The tool loop, for every API: the model's calls of injected tools are run here and the next round sent,
until it stops calling them or `max_tool_rounds` is reached. The client sees one answer and never an injected
call.

`Loop` holds what both modes share, the round step included; `stream()` relays each round's visible events as
they arrive (pings keep the connection alive while tools run), `blocking()` runs every round and answers once,
merged. Each wire format supplies the steps (`loop_parser`, `next_request`, `merge_rounds`).
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from addon import upstream
from addon.engine import record
from addon.engine.job import INTERCEPTION_HEADER, Job, Reply, Status, UpstreamUnavailable
from addon.engine.ports import TextPart, ToolResult
from addon.engine.relay import Relayed, guarded, is_success, once, read_whole, relay_round
from addon.upstream.encoding import decode_body
from addon.wire import ToolCall, Turn, WireFormat
from addon.wire.base import LoopState, Next, parse_arguments

if TYPE_CHECKING:
    from addon.engine.core import Engine


class Loop:
    """One request's tool loop: its state, the request body as it grows, and the round step."""

    def __init__(self, engine: "Engine", job: Job, wire: WireFormat, state: LoopState, body: bytes) -> None:
        self.engine = engine
        self.job = job
        self.wire = wire
        self.state = state
        self.body = body
        self.turn = Turn()
        self.model: str | None = None

    def took(self, turn: Turn) -> bool:
        """Record a round's turn; whether the loop goes on (the model called injected tools only)."""
        self.turn = turn
        self.engine.record_turn(self.job, turn)
        self.state.add_usage(turn.usage)
        self.model = turn.model or self.model
        return not turn.error and turn.next is Next.CONTINUE

    async def next_round(self, results: list[tuple[ToolCall, ToolResult]]) -> httpx.Response:
        """Send the next round: the request so far, the turn and its results appended."""
        self.body = self.wire.next_request(self.body, self.turn, results)
        self.state.round += 1
        return await self.engine.send(self.job, self.body, self.job.route.family.loop_headers)

    def outcome(self) -> tuple[Status, str | None]:
        return record.outcome(self.turn, self.state)

    async def run_tools(self) -> list[tuple[ToolCall, ToolResult]]:
        """Run the turn's injected calls concurrently; every call gets a result, none raises."""
        return await asyncio.gather(*(self._run_tool(call) for call in self.turn.tool_calls))

    async def _run_tool(self, call: ToolCall) -> tuple[ToolCall, ToolResult]:
        job, turn, emit = self.job, self.turn, self.engine.recorder.emit
        tool = job.tools[call.name]
        arguments = parse_arguments(call.arguments)
        if arguments is None:
            message = "not run: the arguments are not a JSON object (cut off?)"
            result = ToolResult((TextPart(f"Error: {message}"),), is_error=True, error=message)
        else:
            assert self.engine.tools is not None
            try:
                result = await self.engine.tools.call(call.name, arguments)
            except asyncio.CancelledError:
                emit(record.injected_call(job, turn, call, tool, "cancelled: the client went away"))
                raise
        invocation_error = result.error
        if invocation_error is None and result.is_error:
            invocation_error = next((p.text for p in result.parts if isinstance(p, TextPart)), "tool reported an error")
        metadata = {
            "duration_ms": round(result.duration_ms, 3),
            "result_size": result.size,
            "is_error": result.is_error,
        }
        emit(record.injected_call(job, turn, call, tool, invocation_error, metadata))
        return call, result


async def stream(loop: Loop, response: httpx.Response) -> AsyncIterator[bytes]:
    """The tool loop, streamed: every round's visible events go out as they arrive."""
    engine, job, wire, state = loop.engine, loop.job, loop.wire, loop.state
    status, error = Status.CANCELLED, "client disconnected"
    http_status = response.status_code
    relayed = Relayed()
    try:
        while True:
            parser = engine.gated(job, wire.loop_parser(state))
            try:
                async for data in relay_round(wire, response, parser, relayed):
                    yield data
            finally:
                goes_on = loop.took(guarded(parser.turn) or Turn())
                await response.aclose()
            if not goes_on:
                status, error = loop.outcome()
                break
            results_task = asyncio.ensure_future(loop.run_tools())
            try:
                while not results_task.done():
                    await asyncio.wait({results_task}, timeout=engine.keepalive_interval)
                    if not results_task.done():
                        yield wire.ping_event()
                results = results_task.result()
            finally:
                if not results_task.done():
                    results_task.cancel()
            try:
                response = await loop.next_round(results)
            except UpstreamUnavailable as e:
                status, error = Status.FAILED, str(e)
                yield wire.error_event(error)
                break
            if not is_success(response):
                http_status = response.status_code
                try:
                    detail = (await read_whole(job.route.provider.name, response))[:300].decode("utf-8", "replace")
                except UpstreamUnavailable as e:
                    detail = str(e)
                status, error = Status.FAILED, f"upstream answered round {state.round} with {http_status}: {detail}"
                yield wire.error_event(error)
                break
    except httpx.HTTPError as e:
        status, error = Status.FAILED, f"upstream connection failed mid-response: {e or type(e).__name__}"
        yield wire.error_event(error)
    finally:
        await response.aclose()
        if status is Status.CANCELLED and relayed.final:  # the client had the last round's final event
            status, error = loop.outcome()
        engine.finish(job, status, error, http_status, loop.model)


async def blocking(loop: Loop, response: httpx.Response) -> Reply:
    """The tool loop, blocking: every round runs, then the client gets one merged answer."""
    engine, job, wire, state = loop.engine, loop.job, loop.wire, loop.state
    first = response
    bodies: list[dict[str, Any]] = []
    hidden = False
    while True:
        try:
            raw = await read_whole(job.route.provider.name, response)
        except UpstreamUnavailable as e:
            return engine.fail(job, wire, e.status, str(e))
        if not is_success(response):
            engine.finish(
                job,
                Status.FAILED,
                f"upstream answered round {state.round} with {response.status_code}",
                response.status_code,
                loop.model,
            )
            headers = upstream.response_headers(response.headers, keep_length=True)
            return Reply(response.status_code, [*headers, (INTERCEPTION_HEADER, str(job.id))], once(raw))
        parser = wire.loop_parser(state)
        decoded = decode_body(raw, response.headers.get("content-encoding"))
        guarded(parser.feed_body, decoded)
        turn = guarded(parser.turn) or Turn()
        goes_on = loop.took(turn)
        hidden = hidden or any(c.name in state.injected for c in turn.tool_calls)
        try:
            bodies.append(json.loads(decoded))
        except ValueError:
            bodies.append({})
        if not goes_on:
            break
        try:
            response = await loop.next_round(await loop.run_tools())
        except UpstreamUnavailable as e:
            return engine.fail(job, wire, e.status, str(e))
    status, error = loop.outcome()
    limited = loop.turn.next is Next.LIMIT
    engine.finish(job, status, error, first.status_code, loop.model)
    headers = upstream.response_headers(first.headers, keep_length=False)
    if len(bodies) == 1 and not hidden and not limited:
        final = raw  # the upstream's own bytes, encoding and all
    else:
        final = wire.merge_rounds(bodies, state, limited)
        headers = [(n, v) for n, v in headers if n.lower() != "content-encoding"]
    if job.gate is not None:  # a blocked client call replaced (re-serialized only then)
        plain = final if final is not raw else decode_body(raw, first.headers.get("content-encoding"))
        if (gated := job.gate.body(plain)) is not plain:
            final = gated
            headers = [(n, v) for n, v in headers if n.lower() != "content-encoding"]
    headers += [("content-length", str(len(final))), (INTERCEPTION_HEADER, str(job.id))]
    return Reply(first.status_code, headers, once(final))
