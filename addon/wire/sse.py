"""Server-sent events, split without losing a byte: each event keeps the exact raw bytes it came in."""

import re
from dataclasses import dataclass

# A line end (CRLF, LF, or a CR not followed by LF) and then an empty line: any mix, as the SSE spec allows.
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)")
_LINE_END = re.compile(r"\r\n|\n|\r")


@dataclass(slots=True)
class SSEEvent:
    raw: bytes
    """The event as received, its terminating blank line included."""
    event: str
    data: str


class SSEParser:
    """Incremental SSE splitter. Feed it chunks at arbitrary boundaries; it returns whole events."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        while match := _EVENT_END.search(buffer, start):
            end = match.end()
            if end == len(buffer) and buffer.endswith(b"\r"):
                break  # that CR may be the first half of a CRLF: wait for the next byte
            events.append(parse_event(buffer[start:end]))
            start = end
        self._buffer = buffer[start:]
        return events

    def close(self) -> SSEEvent | None:
        """Whatever followed the last complete event (an unterminated event, stray newlines), if anything:
        relayed like any other event so not a byte is lost."""
        rest, self._buffer = self._buffer, b""
        return parse_event(rest) if rest else None


def parse_event(raw: bytes) -> SSEEvent:
    event = ""
    data: list[str] = []
    for line in _LINE_END.split(raw.decode("utf-8", "replace")):
        if not line or line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    return SSEEvent(raw, event, "\n".join(data))
