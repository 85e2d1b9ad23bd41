"""Relaying an upstream response: a stream event by event through a wire parser, or a body read whole.

Parsing is for the audit and never costs the client a byte: a parser that fails is logged and the upstream's
bytes go out as they came.
"""

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from addon.engine.job import UpstreamUnavailable
from addon.upstream.encoding import decode_body, stream_decoder
from addon.wire import ResponseParser, WireFormat, framing
from addon.wire.eventstream import FramingError
from addon.wire.sse import SSEEvent

logger = logging.getLogger(__name__)


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def is_success(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def is_stream(response: httpx.Response) -> bool:
    """Server-sent events, or Bedrock's event-stream frames."""
    return framing.is_stream(response.headers.get("content-type", ""))


def decodes(response: httpx.Response) -> bool:
    """Whether the relay decodes this response's content-encoding (and so must drop the header)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    return encoding not in ("", "identity") and stream_decoder(encoding) is not None


def readable(response: httpx.Response) -> bool:
    """Whether the bridge can read (and so write events into) this response's encoding."""
    return stream_decoder(response.headers.get("content-encoding")) is not None


async def read_whole(provider: str, response: httpx.Response) -> bytes:
    """A whole upstream body; one that breaks off or stalls is the upstream's failure (502 / 504)."""
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    except httpx.TimeoutException as e:
        raise UpstreamUnavailable(504, f"upstream {provider} timed out mid-response: {type(e).__name__}") from e
    except httpx.HTTPError as e:
        raise UpstreamUnavailable(502, f"upstream failed mid-response: {e or type(e).__name__}") from e
    finally:
        await response.aclose()


@dataclass(slots=True)
class Relayed:
    """How far a stream's relay got."""

    final: bool = False
    """The client has been handed the stream's final event (`message_stop`, `[DONE]`, an error)."""


async def relay_round(
    wire: WireFormat, response: httpx.Response, parser: ResponseParser, relayed: Relayed
) -> AsyncIterator[bytes]:
    """One upstream response relayed through a parser: a stream event by event (in its own framing), or a
    body as it arrives."""
    frames = framing.framing_for(response.headers.get("content-type", ""))
    if frames is None:
        chunks: list[bytes] = []
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            yield chunk
        guarded(parser.feed_body, decode_body(b"".join(chunks), response.headers.get("content-encoding")))
        return
    decode = stream_decoder(response.headers.get("content-encoding"))
    if decode is None:
        async for chunk in response.aiter_raw():  # an encoding the bridge cannot read: relay as is, unparsed
            yield chunk
        return
    last: SSEEvent | None = None
    async for raw in response.aiter_raw():
        try:
            events = frames.feed(decode(raw))
        except FramingError as e:  # a bad checksum or length: the stream is broken from here on
            raise httpx.RemoteProtocolError(f"the upstream's event stream is malformed: {e}") from e
        if not events:
            continue
        last = _last_meaningful(events, last)
        out = []
        for event in events:
            if (data := _relayed(parser.feed_event, event)) is not None:
                out.append(frames.out(data, event))
                if event is last and wire.ends_stream(event):  # relayed, not hidden (a loop's inner rounds)
                    relayed.final = True
        if out:
            yield out[0] if len(out) == 1 else b"".join(out)
    if (tail := frames.close()) is not None:
        last = _last_meaningful([tail], last)
        if (data := _relayed(parser.feed_event, tail)) is not None:
            relayed.final = relayed.final or wire.ends_stream(tail)
            yield frames.out(data, tail)
    if last is None or not wire.ends_stream(last):  # a clean close before the final event is a cut-off stream
        raise httpx.RemoteProtocolError("the stream ended before its final event (message_stop / [DONE])")


def _last_meaningful(events: list[SSEEvent], last: SSEEvent | None) -> SSEEvent | None:
    """The last event carrying an event name or data (comments and stray blank lines do not count)."""
    for event in reversed(events):
        if event.event or event.data:
            return event
    return last


def _relayed(feed: Callable[[SSEEvent], bytes | None], event: SSEEvent) -> bytes | None:
    """Parse for the audit, relay regardless: a parser bug must never cost the client an event."""
    try:
        return feed(event)
    except Exception:  # boundary: audit parsing of third-party bytes
        logger.exception("aibridge: could not parse an upstream event; relaying it as is")
        return event.raw


def guarded[T](fn: Callable[..., T], *args: object) -> T | None:
    try:
        return fn(*args)
    except Exception:  # boundary: audit parsing of third-party bytes
        logger.exception("aibridge: could not parse an upstream response for the audit")
        return None
