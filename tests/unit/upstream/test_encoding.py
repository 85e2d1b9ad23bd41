"""Content-encodings the bridge reads itself: whole bodies and streams, every encoding, and what does not decode."""

import gzip
import zlib

import brotli
import pytest
import zstandard

from addon.upstream.encoding import decode_body, stream_decoder

TEXT = b'{"id": "msg_01", "content": "' + b"tokens " * 500 + b'"}'


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT, mtime=0)),
        (" X-Gzip ", gzip.compress(TEXT, mtime=0)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", raw_deflate(TEXT)),  # no zlib wrapper, as some servers send it
        ("br", brotli.compress(TEXT)),
        ("zstd", zstandard.ZstdCompressor().compress(TEXT[:100]) + zstandard.ZstdCompressor().compress(TEXT[100:])),
        ("identity", TEXT),
        (None, TEXT),
    ],
)
def test_whole_bodies_decode(encoding: str | None, encoded: bytes) -> None:
    assert decode_body(encoded, encoding) == TEXT


def test_what_does_not_decode_is_empty_and_unknown_encodings_are_left_alone() -> None:
    for encoding in ("gzip", "deflate", "br", "zstd"):
        assert decode_body(b"not compressed at all", encoding) == b""
    assert decode_body(b"\x00opaque", "x-unknown") == b"\x00opaque"
    assert decode_body(b"", "gzip") == b""


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT, mtime=0)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", raw_deflate(TEXT)),
        ("br", brotli.compress(TEXT)),
        ("zstd", zstandard.ZstdCompressor().compress(TEXT[:100]) + zstandard.ZstdCompressor().compress(TEXT[100:])),
        ("", TEXT),
    ],
)
def test_streams_decode_split_anywhere(encoding: str, encoded: bytes) -> None:
    decode = stream_decoder(encoding)
    assert decode is not None
    assert b"".join(decode(encoded[i : i + 7]) for i in range(0, len(encoded), 7)) == TEXT
    byte_by_byte = stream_decoder(encoding)
    assert byte_by_byte is not None
    assert b"".join(byte_by_byte(encoded[i : i + 1]) for i in range(len(encoded))) == TEXT


def test_an_unknown_stream_encoding_has_no_decoder() -> None:
    assert stream_decoder("x-unknown") is None
