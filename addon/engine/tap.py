"""Passthrough exchanges the bridge reads for the audit as they pass, changing nothing (the Responses API,
Bedrock's InvokeModel and Converse).

mitmproxy relays the upstream's bytes itself; the tap is the response's `stream` callable, so it sees each
chunk on the way and returns it untouched (the in-process transport calls it the same way). A copy of a stream
goes through an incremental decoder and its framing (SSE, or AWS event-stream frames whose payloads carry the
API's events), event by event, never buffered; a whole (JSON) body is kept, up to a limit, and parsed when it
ends. The interception is recorded through the engine, as bridged ones are, and ends exactly once: when the
response ends, or when the flow fails (client gone, upstream unreachable or broken).
"""

import logging
from collections.abc import Mapping

from addon.engine.core import Engine
from addon.engine.job import Job, Status
from addon.upstream.encoding import Decoder, decode_body, stream_decoder
from addon.wire import Turn
from addon.wire.framing import Framing, framing_for
from addon.wire.sse import SSEEvent

logger = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024
"""Bytes of a whole (non-streamed) response kept for the audit; beyond this it is relayed but not parsed."""


class ResponseTap:
    """Reads one passthrough response for the audit: `flow.response.stream = tap`."""

    def __init__(self, engine: Engine, job: Job) -> None:
        self.engine = engine
        self.job = job
        self.reader = job.api.reader
        self.parser = self.reader.parser()
        self.status: int | None = None
        self._last: SSEEvent | None = None
        """The last event with a name or data: whether it was the stream's final one is asked only at the end."""
        self._encoding = ""
        self._frames: Framing | None = None
        self._decode: Decoder | None = None
        self._body: list[bytes] | None = []
        self._size = 0
        self._broken = False

    def start(self, status: int, headers: Mapping[str, str]) -> None:
        """The response's head arrived."""
        self.status = status
        self._encoding = headers.get("content-encoding", "").strip().lower()
        content_type = headers.get("content-type", "")
        if not 200 <= status < 300:
            return
        if (frames := framing_for(content_type)) is None:
            return
        self._frames = frames
        self._body, self._decode = None, stream_decoder(self._encoding)
        if self._decode is None:
            logger.warning("aibridge: a %s stream in %r encoding is relayed unread", self.job.api.value, self._encoding)

    def __call__(self, chunk: bytes) -> bytes:
        if chunk and not self._broken:
            try:
                self._feed(chunk)
            except Exception:  # boundary: audit parsing of third-party bytes must never cost the client a byte
                logger.exception("aibridge: could not read a passthrough response for the audit")
                self._broken = True
        return chunk

    def _feed(self, chunk: bytes) -> None:
        if self._frames is None:
            if self._body is not None:
                self._size += len(chunk)
                self._body.append(chunk)
                if self._size > MAX_BODY:
                    self._body = None
                    logger.warning("aibridge: a passthrough body over %d bytes is relayed unread", MAX_BODY)
            return
        if self._decode is None:
            return  # an encoding the tap cannot read: relayed, not parsed
        for event in self._frames.feed(self._decode(chunk)):
            self._event(event)

    def _event(self, event: SSEEvent) -> None:
        self.parser.feed_event(event)
        if event.event or event.data:
            self._last = event

    @property
    def finished(self) -> bool:
        """The stream's final event went by."""
        return self._last is not None and self.reader.ends_stream(self._last)

    def end(self) -> None:
        """The response ended (mitmproxy's `response` hook)."""
        turn = self._turn(final=True)
        http_status = self.status
        if http_status is not None and not 200 <= http_status < 300:
            error = turn.error or f"HTTP {http_status}"
            self.engine.conclude(self.job, turn, Status.FAILED, error, http_status)
        elif turn.error:
            self.engine.conclude(self.job, turn, Status.FAILED, turn.error, http_status)
        else:
            self.engine.conclude(self.job, turn, Status.COMPLETED, None, http_status)

    def fail(self, status: Status, message: str) -> None:
        """The flow failed before the response ended (mitmproxy's `error` hook): record what arrived. A stream
        whose final event went by has ended as it says, even if the client left before the last bytes."""
        if self.finished and not self._broken:
            self.end()
            return
        self.engine.conclude(self.job, self._turn(final=False), status, message, self.status)

    def _turn(self, *, final: bool) -> Turn:
        try:
            if final and not self._broken:
                if self._frames is not None:
                    if (tail := self._frames.close()) is not None:
                        self._event(tail)
                elif self._body is not None:
                    self.parser.feed_body(decode_body(b"".join(self._body), self._encoding))
            return self.parser.turn()
        except Exception:  # boundary: as above; the interception still ends
            logger.exception("aibridge: could not read a passthrough response for the audit")
            return Turn()
