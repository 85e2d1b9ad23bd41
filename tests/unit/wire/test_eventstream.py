"""AWS event-stream framing: frames decoded at any chunk boundary, checked against botocore's own decoder."""

import struct
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer

from addon.wire.eventstream import EventStreamDecoder, FramingError, encode

CHUNK = {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"}


def test_botocore_reads_the_frames_encode_writes() -> None:
    frames = [encode(CHUNK, b'{"bytes": "e30="}'), encode({":message-type": "exception"}, b"")]
    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(frames))
    decoded = list(buffer)
    assert [m.headers for m in decoded] == [CHUNK, {":message-type": "exception"}]
    assert [m.payload for m in decoded] == [b'{"bytes": "e30="}', b""]


@pytest.mark.parametrize("size", [1, 3, 12, 13, 50, 10_000])
def test_frames_split_anywhere_are_decoded_whole(size: int) -> None:
    data = b"".join(encode({**CHUNK, "n": str(i)}, b"payload %d" % i) for i in range(5))
    decoder = EventStreamDecoder()
    frames = [f for i in range(0, len(data), size) for f in decoder.feed(data[i : i + size])]
    assert [(f.headers["n"], f.payload, f.message_type) for f in frames] == [
        (str(i), b"payload %d" % i, "event") for i in range(5)
    ]
    assert decoder.pending == 0


def test_a_frame_cut_off_is_pending() -> None:
    frame = encode(CHUNK, b"x" * 100)
    decoder = EventStreamDecoder()
    assert decoder.feed(frame[:-10]) == []
    assert decoder.pending == len(frame) - 10


def test_non_string_headers_are_skipped() -> None:
    """botocore's header types other than strings (here a bool and an int32) are read past, not mistaken."""
    extra = b"\x04flag\x00" + b"\x03num\x04" + struct.pack(">i", 7)
    encoded = encode(CHUNK, b"p")
    headers_length = struct.unpack_from(">I", encoded, 4)[0]
    headers = encoded[12 : 12 + headers_length] + extra
    body = headers + b"p"
    total = 12 + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + body
    [frame] = EventStreamDecoder().feed(head + struct.pack(">I", zlib.crc32(head)))
    assert frame.headers == CHUNK and frame.payload == b"p"


@pytest.mark.parametrize("where", [8, -1])
def test_a_bad_checksum_is_a_framing_error(where: int) -> None:
    frame = bytearray(encode(CHUNK, b"payload"))
    frame[where] ^= 0xFF
    with pytest.raises(FramingError):
        EventStreamDecoder().feed(bytes(frame))
