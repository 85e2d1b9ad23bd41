"""How a streamed answer's events are framed on the wire: server-sent events, or AWS event-stream frames
(Bedrock). Pure.

A framing splits the upstream's bytes into events, each keeping its exact bytes in `raw`, and turns what a
wire parser relays back into bytes: an event relayed as it came goes out as it came; one the parser rewrote
(SSE text: a renumbered block, summed usage, a notice) is framed anew.
"""

from typing import Protocol

from addon.wire.bedrock import chunk_frame, frame_event
from addon.wire.eventstream import EventStreamDecoder
from addon.wire.sse import SSEEvent, SSEParser

SSE = "text/event-stream"
EVENT_STREAM = "application/vnd.amazon.eventstream"


class Framing(Protocol):
    def feed(self, data: bytes) -> list[SSEEvent]:
        """Whole events from a chunk at any boundary."""
        ...

    def close(self) -> SSEEvent | None:
        """What followed the last whole event, if anything (relayed, so not a byte is lost)."""
        ...

    def out(self, data: bytes, event: SSEEvent) -> bytes:
        """The bytes to relay for what a parser made of `event` (`event.raw`, or SSE text of its own)."""
        ...


class SSEFraming:
    def __init__(self) -> None:
        self._parser = SSEParser()

    def feed(self, data: bytes) -> list[SSEEvent]:
        return self._parser.feed(data)

    def close(self) -> SSEEvent | None:
        return self._parser.close()

    def out(self, data: bytes, event: SSEEvent) -> bytes:
        return data


class EventStreamFraming:
    """Bedrock's frames: each event's `raw` is its frame. Events the bridge writes are InvokeModel's `chunk`
    frames (the only event-stream API it changes), checksums computed afresh."""

    def __init__(self) -> None:
        self._decoder = EventStreamDecoder()

    def feed(self, data: bytes) -> list[SSEEvent]:
        events = []
        for frame in self._decoder.feed(data):
            event = frame_event(frame)
            event.raw = frame.raw
            events.append(event)
        return events

    def close(self) -> SSEEvent | None:
        return None  # a frame not yet whole is cut off: its bytes mean nothing without the rest

    def out(self, data: bytes, event: SSEEvent) -> bytes:
        if data is event.raw:
            return data
        return b"".join(chunk_frame(e.data) for e in SSEParser().feed(data) if e.data)


def framing_for(content_type: str) -> Framing | None:
    """The framing of a streamed answer, by its content type; None: not a stream."""
    if content_type.startswith(SSE):
        return SSEFraming()
    if content_type.startswith(EVENT_STREAM):
        return EventStreamFraming()
    return None


def is_stream(content_type: str) -> bool:
    return content_type.startswith((SSE, EVENT_STREAM))
