"""What the engine asks of the rest of the bridge, and what it hands back: the recorder its audit events go to,
the tool source (the MCP side) and its results, and the observer that sees every upstream call.

Observers (`addon.observe`, the circuit breaker) implement `Observer`; everything they are told runs on the
event loop and must not block: they update in-memory state or hand work to their own threads.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import httpx

from addon.audit import AuditEvent
from addon.config import McpServer
from addon.policy import Refusal
from addon.wire.base import ToolSpec

if TYPE_CHECKING:
    from addon.engine.job import Job

Headers = Sequence[tuple[str, str]]
"""Request headers as they go upstream (credentials included: observers mask or drop them)."""


class Recorder(Protocol):
    """Where the engine's audit events go (the audit writer, or an `ObservedRecorder` around it), and the one
    question it asks back: which interception made a tool call."""

    def emit(self, event: AuditEvent) -> None: ...

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None: ...


# --- tools ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    media_type: str
    """e.g. "image/png"."""
    data: str
    """Base64."""


ResultPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave, already out of MCP's types, so the engine and the wire formats never see them."""

    parts: tuple[ResultPart, ...]
    is_error: bool
    error: str | None = None
    """Set when the call itself failed (timeout, server down or died, exception), for the audit."""
    duration_ms: float = 0.0
    size: int = 0
    """Bytes of the result content: UTF-8 text plus decoded image bytes."""


class Tool(ToolSpec, Protocol):
    """An injected tool: what the model sees, and where it runs."""

    @property
    def server(self) -> McpServer: ...
    @property
    def tool(self) -> str: ...


class ToolSource(Protocol):
    """What the engine needs of the MCP side (`tools.ToolManager`)."""

    def tools(self) -> Sequence[Tool]: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult: ...


# --- observers -----------------------------------------------------------------------------------------------


class UpstreamCall:
    """One upstream call. `responded` or `failed` comes first, then `chunk` per body chunk, then `closed`."""

    def responded(self, response: httpx.Response) -> None:
        pass

    def failed(self, status: int | None, error: BaseException) -> None:
        """No response: `status` is what the client is told (502/504), None when the caller went away."""

    def chunk(self, data: bytes) -> None:
        pass

    def closed(self, error: BaseException | None) -> None:
        """The body ended (read through, abandoned, or broken by `error`)."""


NO_CALL = UpstreamCall()


class Observer:
    """A no-op observer; subclasses override what they need.

    An observer sees an interception two ways: its audit events (`event()`: start, token usage, tool calls,
    prompt, end), teed off the engine's recorder so every observer sees the same facts the audit file does;
    and its upstream calls (`upstream()`: one per round of the tool loop), told how each call went and shown
    the response bytes as they stream. Before the first call, `refuse()` may answer the client instead.
    """

    def event(self, event: AuditEvent) -> None:
        pass

    def upstream(self, job: "Job", url: str, headers: Headers, body: bytes) -> UpstreamCall | None:
        """A POST of `body` to `url` is about to go out."""
        return None

    def refuse(self, job: "Job") -> Refusal | None:
        """Refuse a job before its upstream call (the circuit breaker)."""
        return None

    def close(self) -> None:
        pass
