"""Content-encodings the bridge reads itself, when an upstream ignores `accept-encoding: identity` or (for
passthrough) was never asked: one place for the bridged relay and the Responses tap alike."""

import io
import zlib
from collections.abc import Callable

import brotli
import zstandard

Decoder = Callable[[bytes], bytes]


def stream_decoder(encoding: str | None) -> Decoder | None:
    """An incremental decoder for a streamed body's content-encoding; None for one the bridge cannot read."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return _same
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(47).decompress  # 32 + 15: gzip or zlib header, detected
    if encoding == "br":
        return brotli.Decompressor().process
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress
    return None


def decode_body(raw: bytes, encoding: str | None) -> bytes:
    """A whole body decoded for parsing: as it is when its encoding is unknown, empty when it does not decode."""
    encoding = (encoding or "identity").strip().lower()
    if not raw:
        return raw
    try:
        if encoding in ("gzip", "x-gzip"):
            inflate = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, detected
            return inflate.decompress(raw) + inflate.flush()
        if encoding == "deflate":
            try:
                return zlib.decompress(raw)
            except zlib.error:
                return zlib.decompress(raw, -15)  # some servers send raw DEFLATE, without the zlib wrapper
        if encoding == "br":
            return brotli.decompress(raw)
        if encoding == "zstd":
            return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()
    except (zlib.error, brotli.error, zstandard.ZstdError):
        return b""
    return raw


def _same(data: bytes) -> bytes:
    return data
