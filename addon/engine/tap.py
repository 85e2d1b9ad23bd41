"""Passthrough exchanges the bridge reads for the audit as they pass, changing nothing (the Responses API).

mitmproxy relays the upstream's bytes itself; the tap is the response's `stream` callable, so it sees each
chunk on the way and returns it untouched (the in-process transport calls it the same way). A copy of an SSE
stream goes through an incremental decoder and SSE parser, event by event, never buffered; a whole (JSON) body
is kept, up to a limit, and parsed when it ends. The interception is recorded through the engine, as bridged
ones are, and ends exactly once: when the response ends, or when the flow fails (client gone, upstream
unreachable or broken).
"""

import logging
from collections.abc import Mapping

from addon.engine.core import Engine
from addon.engine.job import Job, Status
from addon.upstream.encoding import Decoder, decode_body, stream_decoder
from addon.wire import Turn
from addon.wire.openai_responses import ResponsesParser
from addon.wire.sse import SSEEvent, SSEParser

logger = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024
"""Bytes of a whole (non-SSE) response kept for the audit; beyond this it is relayed but not parsed."""


class ResponseTap:
    """Reads one passthrough response for the audit: `flow.response.stream = tap`."""

    def __init__(self, engine: Engine, job: Job) -> None:
        self.engine = engine
        self.job = job
        self.parser = ResponsesParser()
        self.status: int | None = None
        self._encoding = ""
        self._sse: SSEParser | None = None
        self._decode: Decoder | None = None
        self._body: list[bytes] | None = []
        self._size = 0
        self._broken = False

    def start(self, status: int, headers: Mapping[str, str]) -> None:
        """The response's head arrived."""
        self.status = status
        self._encoding = headers.get("content-encoding", "").strip().lower()
        if 200 <= status < 300 and headers.get("content-type", "").startswith("text/event-stream"):
            self._sse, self._decode = SSEParser(), stream_decoder(self._encoding)
            self._body = None
            if self._decode is None:
                logger.warning("aibridge: a Responses stream in %r encoding is relayed unread", self._encoding)

    def __call__(self, chunk: bytes) -> bytes:
        if chunk and not self._broken:
            try:
                self._feed(chunk)
            except Exception:  # boundary: audit parsing of third-party bytes must never cost the client a byte
                logger.exception("aibridge: could not read a passthrough response for the audit")
                self._broken = True
        return chunk

    def _feed(self, chunk: bytes) -> None:
        if self._sse is None:
            if self._body is not None:
                self._size += len(chunk)
                self._body.append(chunk)
                if self._size > MAX_BODY:
                    self._body = None
                    logger.warning("aibridge: a Responses body over %d bytes is relayed unread", MAX_BODY)
            return
        if self._decode is None:
            return  # an encoding the tap cannot read: relayed, not parsed
        for event in self._sse.feed(self._decode(chunk)):
            self._event(event)

    def _event(self, event: SSEEvent) -> None:
        self.parser.feed_event(event)

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
        if self.parser.finished and not self._broken:
            self.end()
            return
        self.engine.conclude(self.job, self._turn(final=False), status, message, self.status)

    def _turn(self, *, final: bool) -> Turn:
        try:
            if final and not self._broken:
                if self._sse is not None:
                    if (tail := self._sse.close()) is not None:
                        self._event(tail)
                elif self._body is not None:
                    self.parser.feed_body(decode_body(b"".join(self._body), self._encoding))
            return self.parser.turn()
        except Exception:  # boundary: as above; the interception still ends
            logger.exception("aibridge: could not read a passthrough response for the audit")
            return Turn()
