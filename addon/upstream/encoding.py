"""Content-encodings the bridge reads itself, when an upstream ignores `accept-encoding: identity` or (for
passthrough) was never asked: one place for the bridged relay and the Responses tap alike."""

import zlib
from collections.abc import Callable

import brotli
import zstandard

Decoder = Callable[[bytes], bytes]


def stream_decoder(encoding: str | None) -> Decoder | None:
    """An incremental decoder for a body's content-encoding; None for one the bridge cannot read."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return _same
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(47).decompress  # 32 + 15: gzip or zlib header, detected
    if encoding == "deflate":
        return _Deflate()
    if encoding == "br":
        return brotli.Decompressor().process
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress
    return None


def decode_body(raw: bytes, encoding: str | None) -> bytes:
    """A whole body decoded for parsing: as it is when its encoding is unknown, empty when it does not decode."""
    decode = stream_decoder(encoding)
    if decode is None or not raw:
        return raw
    try:
        return decode(raw)
    except (zlib.error, brotli.error, zstandard.ZstdError):
        return b""


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped, or raw DEFLATE without the wrapper (which the first two bytes,
    the zlib header, tell apart: until they arrived, what was fed is kept to start over raw)."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(47)
        self._fed: bytes | None = b""

    def __call__(self, data: bytes) -> bytes:
        if self._fed is None:
            return self._inflate.decompress(data)
        self._fed += data
        try:
            out = self._inflate.decompress(data)
        except zlib.error:
            self._inflate, fed, self._fed = zlib.decompressobj(-15), self._fed, None
            return self._inflate.decompress(fed)
        if len(self._fed) >= 2:
            self._fed = None
        return out


def _same(data: bytes) -> bytes:
    return data
