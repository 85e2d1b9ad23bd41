"""Types shared by the wire formats, and the contract each one fulfils."""

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .sse import SSEEvent

JSON = dict[str, Any]


@dataclass(slots=True)
class Usage:
    """Tokens of one upstream response. `input` never includes cached tokens, whatever the API reports."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Breakdowns kept apart from the columns: cache_write_5m/1h, reasoning, web_search_requests, ..."""


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """The arguments as the model produced them (JSON text; may be partial if the stream broke off)."""


@dataclass(slots=True)
class Thought:
    content: str
    source: Literal["thinking", "reasoning"]


@dataclass(slots=True)
class Turn:
    """What one upstream response said, as far as it got."""

    response_id: str | None = None
    model: str | None = None
    usage: Usage | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    thoughts: list[Thought] = field(default_factory=list)
    stop_reason: str | None = None
    error: str | None = None
    """An error the upstream reported inside a 2xx response (an SSE `error` event)."""


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the audit needs from a client request body."""

    model: str | None
    stream: bool
    prompt: str | None
    correlating_tool_call_id: str | None
    """The tool call whose result this request carries: links it to the interception that made the call."""


class ResponseParser(Protocol):
    """Reads one upstream response, streamed or whole, into a `Turn`."""

    def feed_event(self, event: SSEEvent) -> bytes | None:
        """Take one SSE event; return the bytes to relay to the client (None: relay nothing)."""
        ...

    def feed_body(self, body: bytes) -> None:
        """Take a whole non-streamed JSON body."""
        ...

    def turn(self) -> Turn: ...


class WireFormat(Protocol):
    provider_type: str

    def parse_request(self, body: JSON) -> RequestInfo: ...

    def prepare_request(self, raw: bytes, body: JSON) -> tuple[bytes, ResponseParser]:
        """The bytes to send upstream (changed only where the bridge must) and a parser for the answer."""
        ...

    def error_body(self, status: int, message: str) -> bytes:
        """A provider-shaped error response body."""
        ...

    def error_event(self, message: str) -> bytes:
        """A provider-shaped SSE error event, for failures after the stream started."""
        ...


def int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


WRAPPER_PREFIXES = ("<system-reminder>", "<environment_context>", "<user_instructions>")
"""Text blocks clients add to user turns that are not what the human typed."""


def human_text(parts: list[str]) -> str | None:
    """The human's text among a user turn's text parts, client-added wrappers left out."""
    texts = [p for p in parts if p.strip() and not p.lstrip().startswith(WRAPPER_PREFIXES)]
    return "\n\n".join(texts) if texts else None
