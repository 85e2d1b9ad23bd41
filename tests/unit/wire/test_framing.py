"""Stream framings (addon/wire/framing.py): SSE, and Bedrock's event-stream frames relayed as they came or
written anew (checked with botocore's own decoder)."""

import base64
import json

from botocore.eventstream import EventStreamBuffer

from addon.wire.bedrock import BedrockInvoke
from addon.wire.framing import EventStreamFraming, SSEFraming, framing_for, is_stream
from tests.support.scenarios import anthropic_events, bedrock_frames


def decoded(data: bytes) -> list[tuple[str, dict]]:
    """What botocore reads of frames: each chunk's event, or an exception."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    out = []
    for message in buffer:
        headers = message.headers
        if headers[":message-type"] == "exception":
            out.append((headers[":exception-type"], json.loads(message.payload)))
        else:
            out.append(("chunk", json.loads(base64.b64decode(json.loads(message.payload)["bytes"]))))
    return out


def test_framing_by_content_type() -> None:
    assert isinstance(framing_for("text/event-stream; charset=utf-8"), SSEFraming)
    assert isinstance(framing_for("application/vnd.amazon.eventstream"), EventStreamFraming)
    assert framing_for("application/json") is None
    assert is_stream("application/vnd.amazon.eventstream") and not is_stream("application/json")


def test_sse_events_go_out_as_the_parser_says() -> None:
    frames = SSEFraming()
    events = frames.feed(b"".join(anthropic_events(["a"])))
    assert frames.out(events[0].raw, events[0]) == events[0].raw
    assert frames.out(b"event: x\ndata: {}\n\n", events[0]) == b"event: x\ndata: {}\n\n"


def test_bedrock_frames_unchanged_keep_their_bytes_and_changed_ones_are_framed_anew() -> None:
    wire = b"".join(bedrock_frames(anthropic_events(["Hi"])))
    frames = EventStreamFraming()
    events = frames.feed(wire[:50]) + frames.feed(wire[50:])  # any boundary
    assert b"".join(frames.out(e.raw, e) for e in events) == wire
    assert events[0].event == "message_start" and json.loads(events[0].data)["type"] == "message_start"
    rewritten = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 3}\n\n'
    assert decoded(frames.out(rewritten, events[2])) == [("chunk", {"type": "content_block_delta", "index": 3})]
    assert frames.close() is None


def test_bedrocks_ping_and_error_events_are_frames() -> None:
    wire = BedrockInvoke()
    assert decoded(wire.ping_event()) == [("chunk", {"type": "ping"})]
    assert decoded(wire.error_event("upstream gone")) == [("internalServerException", {"message": "upstream gone"})]
