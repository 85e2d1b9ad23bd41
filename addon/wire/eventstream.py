"""AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock streams its answers. Pure.

A frame: total length and headers length (big-endian u32 each), the prelude's CRC32, the headers (a name of
one length byte, a value type byte, the value), the payload, and the whole frame's CRC32. Bedrock's headers are
strings: `:message-type` (`event` or `exception`), `:event-type` (`chunk`), `:exception-type`, `:content-type`.
"""

import struct
import zlib
from dataclasses import dataclass

_PRELUDE = 12
_MAX_FRAME = 16 * 1024 * 1024
_STRING, _BYTES = 7, 6
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
"""Value sizes of the header types other than strings and byte arrays (true, false, byte, short, int, long,
timestamp, uuid)."""


class FramingError(ValueError):
    """The bytes are not a valid event stream (a bad length or checksum)."""


@dataclass(frozen=True, slots=True)
class Frame:
    headers: dict[str, str]
    payload: bytes
    raw: bytes = b""
    """The frame as received, checksums and all."""

    @property
    def message_type(self) -> str:
        return self.headers.get(":message-type", "")


class EventStreamDecoder:
    """Incremental: feed chunks at any boundary, get whole frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _PRELUDE:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if zlib.crc32(self._buffer[:8]) != prelude_crc or not _PRELUDE + 4 <= total <= _MAX_FRAME:
                raise FramingError("bad event-stream prelude")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            if zlib.crc32(frame[:-4]) != struct.unpack_from(">I", frame, total - 4)[0]:
                raise FramingError("bad event-stream frame checksum")
            end = _PRELUDE + headers_length
            frames.append(Frame(_headers(frame[_PRELUDE:end]), frame[end:-4], frame))
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet whole (a stream that ends with some was cut off)."""
        return len(self._buffer)


def _headers(data: bytes) -> dict[str, str]:
    headers, i = {}, 0
    while i < len(data):
        name_length = data[i]
        name = data[i + 1 : i + 1 + name_length].decode("utf-8", "replace")
        i += 1 + name_length
        kind = data[i]
        i += 1
        if kind in (_STRING, _BYTES):
            (length,) = struct.unpack_from(">H", data, i)
            value = data[i + 2 : i + 2 + length]
            i += 2 + length
            if kind == _STRING:
                headers[name] = value.decode("utf-8", "replace")
        elif kind in _FIXED:
            i += _FIXED[kind]
        else:
            raise FramingError(f"unknown event-stream header type {kind}")
    return headers


def encode(headers: dict[str, str], payload: bytes) -> bytes:
    """One frame with string headers (the bridge's own events, and the tests' provider)."""
    encoded = b"".join(
        bytes([len(n.encode())]) + n.encode() + bytes([_STRING]) + struct.pack(">H", len(v.encode())) + v.encode()
        for n, v in headers.items()
    )
    total = _PRELUDE + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return head + struct.pack(">I", zlib.crc32(head))
