"""Types shared by the wire formats, and the contract each one fulfils."""

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from addon.wire.sse import SSEEvent

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
    source: Literal["thinking", "reasoning", "commentary"]
    """Anthropic thinking; reasoning text or summaries (OpenAI); Responses messages in the commentary phase."""


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
    assistant: JSON | None = None
    """The turn as an assistant message for the next round's request (set when tools are injected)."""
    next: "Next | None" = None
    """What the bridge does after this turn (set when tools are injected)."""


class Next(enum.Enum):
    """After a turn that called tools the bridge injected."""

    FINAL = enum.auto()
    """Relay the turn as the client's answer: no injected calls, a mixed turn, or not stopped for tools."""
    CONTINUE = enum.auto()
    """Run the injected calls and call the upstream again."""
    LIMIT = enum.auto()
    """The model wants more tools but max_tool_rounds is reached: end with a notice."""


def decide(calls: Sequence[ToolCall], injected: frozenset[str], stopped_for_tools: bool, last_round: bool) -> Next:
    """The loop's one decision. A turn that mixes injected and client calls goes to the client as it is, the
    injected calls hidden and not run: their results could not reach the model without the client's, and the
    client's history then holds no `tool_use` without a result. A call whose stream was cut short
    (`max_tokens`) is never run either."""
    own = [c for c in calls if c.name in injected]
    if not own or not stopped_for_tools or len(own) < len(calls):
        return Next.FINAL
    return Next.LIMIT if last_round else Next.CONTINUE


class ToolSpec(Protocol):
    """An injected tool as the model sees it."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def input_schema(self) -> dict[str, Any]: ...


class ToolOutput(Protocol):
    """A tool's result: text and image parts (`.text`, or `.media_type` and base64 `.data`)."""

    @property
    def parts(self) -> tuple[Any, ...]: ...
    @property
    def is_error(self) -> bool: ...


@dataclass(slots=True)
class LoopState:
    """What one bridged response carries across upstream rounds while injected tools run."""

    injected: frozenset[str]
    max_rounds: int
    client_wants_usage: bool = True
    round: int = 1
    usage: Usage = field(default_factory=Usage)
    """Summed over the finished rounds."""
    next_index: int = 0
    """The next content-block (Anthropic) or tool-call (chat) index the client sees."""
    first_id: str | None = None
    text_sent: bool = False

    @property
    def last_round(self) -> bool:
        return self.round >= self.max_rounds

    def add_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage = sum_usage(self.usage, usage)


def sum_usage(a: Usage, b: Usage) -> Usage:
    extra = dict(a.extra)
    for key, value in b.extra.items():
        both_counts = isinstance(value, int) and isinstance(extra.get(key, 0), int)
        extra[key] = extra.get(key, 0) + value if both_counts else value
    return Usage(
        a.input + b.input, a.output + b.output, a.cache_read + b.cache_read, a.cache_write + b.cache_write, extra
    )


LIMIT_NOTICE = "[aibridge] Stopped after {rounds} rounds of tool calls (max_tool_rounds); ask me to continue."


def result_text(output: ToolOutput) -> str:
    """A tool result as plain text, for APIs whose tool results carry no images."""
    texts = []
    for part in output.parts:
        if hasattr(part, "text"):
            texts.append(part.text)
        else:
            texts.append(f"[image {part.media_type}, {len(part.data) * 3 // 4} bytes, not shown]")
    return "\n".join(texts)


def parse_arguments(arguments: str) -> dict[str, Any] | None:
    """Tool arguments as an object, or None when they are not a JSON object (e.g. cut off by max_tokens)."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A client tool's result as the client sends it back to the model."""

    call_id: str
    is_error: bool | None
    """None where the API has no error flag (OpenAI's tool outputs)."""
    size: int
    """UTF-8 bytes of its text (and of any other part as JSON)."""
    text: str
    """Its text parts, joined; other parts (images, files) as `[<type>]`."""


def result_parts(content: Any) -> tuple[int, str]:
    """(size, text) of a tool result's content: a string, or a list of parts with `text` (any API's)."""
    if isinstance(content, str):
        return len(content.encode()), content
    texts, size = [], 0
    for part in content if isinstance(content, list) else [content] if content is not None else []:
        text = part.get("text") if isinstance(part, dict) else None
        if isinstance(text, str):
            texts.append(text)
            size += len(text.encode())
        else:
            texts.append(f"[{part.get('type', 'part') if isinstance(part, dict) else 'part'}]")
            size += len(dumps(part).encode())
    return size, "\n".join(texts)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the audit needs from a client request body."""

    model: str | None
    stream: bool
    prompt: str | None
    correlating_tool_call_id: str | None
    """The tool call whose result this request carries: links it to the interception that made the call."""
    max_output: int | None = None
    """The most output tokens the request allows, where it says (a budget reservation assumes them all)."""
    takes_tools: bool = True
    """Whether injected tools may go into this request at all (each API's own rules)."""
    tool_results: tuple[ToolResult, ...] = ()
    """The results of the client's tool calls this request brings back (its last turn's, not the history's)."""


class ResponseParser(Protocol):
    """Reads one upstream response, streamed or whole, into a `Turn`."""

    def feed_event(self, event: SSEEvent) -> bytes | None:
        """Take one SSE event; return the bytes to relay to the client (None: relay nothing)."""
        ...

    def feed_body(self, body: bytes) -> None:
        """Take a whole non-streamed JSON body."""
        ...

    def turn(self) -> Turn: ...


class WireReader(Protocol):
    """What recording an interception needs of an API: enough for an exchange the bridge only reads."""

    provider_type: str

    def parse_request(self, body: JSON) -> RequestInfo: ...

    def error_body(self, status: int, message: str) -> bytes:
        """A provider-shaped error response body."""
        ...

    def ends_stream(self, event: SSEEvent) -> bool:
        """Whether an upstream event may be its stream's last (a stream that closes after any other was cut off)."""
        ...

    def parser(self) -> "ResponseParser":
        """A parser for a response relayed as it is."""
        ...


class WireFormat(WireReader, Protocol):
    """One provider API the bridge intercepts. The engine runs the same loop for every API; these are its steps."""

    def prepare_request(self, raw: bytes, body: JSON) -> tuple[bytes, bool]:
        """The bytes to send upstream (changed only where the bridge must), and whether the usage chunk the
        bridge asked for must be hidden from the client."""
        ...

    def parser(self, *, hide_usage_chunk: bool = False) -> ResponseParser:
        """A parser for a response relayed as it is."""
        ...

    def loop_parser(self, state: LoopState) -> ResponseParser:
        """A parser for one round of a response whose injected tools the bridge runs: it hides what the
        client must not see and sets `Turn.next` and `Turn.assistant`."""
        ...

    def inject_tools(self, raw: bytes, tools: Sequence[ToolSpec]) -> bytes: ...

    def next_request(self, raw: bytes, turn: Turn, results: Sequence[tuple[ToolCall, ToolOutput]]) -> bytes:
        """The previous request with the turn and the tools' results appended."""
        ...

    def merge_rounds(self, bodies: Sequence[JSON], state: LoopState, limited: bool) -> bytes:
        """The one blocking answer the client gets for several rounds."""
        ...

    def ping_event(self) -> bytes:
        """Keeps a stream alive while tools run."""
        ...

    def error_event(self, message: str) -> bytes:
        """A provider-shaped SSE error event, for failures after the stream started."""
        ...


def json_object(data: str | bytes) -> JSON | None:
    """A JSON object from third-party bytes, or None when they are not one."""
    try:
        value = json.loads(data)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return None
    return value if isinstance(value, dict) else None


def first_positive(body: JSON, *keys: str) -> int | None:
    """The first of `keys` whose value is a positive integer."""
    for key in keys:
        if isinstance(value := body.get(key), int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def tool_names(body: JSON) -> frozenset[str]:
    """The names a request's `tools` declare, in any API's shape: `{"name"}`, `{"function": {"name"}}`, or
    Gemini's `{"functionDeclarations": [{"name"}]}`."""
    tools = body.get("tools")
    names = set()
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        function, declarations = tool.get("function"), tool.get("functionDeclarations")
        if isinstance(declarations, list):
            names.update(d["name"] for d in declarations if isinstance(d, dict) and isinstance(d.get("name"), str))
        elif isinstance(name := function.get("name") if isinstance(function, dict) else tool.get("name"), str):
            names.add(name)
    return frozenset(names)


def int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ToolDefinitions:
    """Injected tools as one API declares them, each serialized once: the same tools go into every request."""

    def __init__(self, render: Callable[[ToolSpec], Any]) -> None:
        self._render = render
        self._cache: dict[str, tuple[ToolSpec, str]] = {}
        """By name: the tool object last rendered (held, so its identity stays its own) and its JSON."""

    def __call__(self, tools: Sequence[ToolSpec]) -> list[str]:
        specs = []
        for tool in tools:
            cached = self._cache.get(tool.name)
            if cached is None or cached[0] is not tool:  # a new or changed tool (the manager makes new objects)
                cached = self._cache[tool.name] = (tool, dumps(self._render(tool)))
            specs.append(cached[1])
        return specs


WRAPPER_PREFIXES = ("<system-reminder>", "<environment_context>", "<user_instructions>", "<session_context>")
"""Text blocks clients add to user turns that are not what the human typed."""


def human_text(parts: list[str]) -> str | None:
    """The human's text among a user turn's text parts, client-added wrappers left out."""
    texts = [p for p in parts if p.strip() and not p.lstrip().startswith(WRAPPER_PREFIXES)]
    return "\n\n".join(texts) if texts else None
