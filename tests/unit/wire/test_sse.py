"""SSE splitting: whole events at any chunk boundary, every byte kept."""

import random

import pytest

from addon.wire.sse import SSEEvent, SSEParser, parse_event

LF_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
    b": keep-alive comment\n\n"
    b'event: content_block_delta\ndata: {"type" :  "content_block_delta" ,\t"delta": {"text": "a\\nb"}  }\n\n'
    b"data: line one\ndata: line two\n\n"
    b"data:no-space\ndata:  two spaces\n\n"
    b"event: ping\ndata: h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\n\n"
    b"id: 7\nretry: 100\nevent: message_stop\n: inline comment\ndata: {}\n\n"
)
EXPECTED = [
    ("message_start", '{"type":"message_start","message":{"id":"msg_1"}}'),
    ("", ""),
    ("content_block_delta", '{"type" :  "content_block_delta" ,\t"delta": {"text": "a\\nb"}  }'),
    ("", "line one\nline two"),
    ("", "no-space\n two spaces"),
    ("ping", "héllo ✓ 😀"),
    ("message_stop", "{}"),
]
CRLF_STREAM = LF_STREAM.replace(b"\n", b"\r\n")


def feed_all(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    if (tail := parser.close()) is not None:
        events.append(tail)
    return events


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 20)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def summary(events: list[SSEEvent]) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in events]


@pytest.mark.parametrize("stream", [LF_STREAM, CRLF_STREAM], ids=["lf", "crlf"])
def test_whole_stream_in_one_chunk(stream: bytes) -> None:
    events = feed_all([stream])
    assert summary(events) == EXPECTED
    assert b"".join(e.raw for e in events) == stream


@pytest.mark.parametrize("stream", [LF_STREAM, CRLF_STREAM], ids=["lf", "crlf"])
def test_byte_by_byte_gives_the_same_events(stream: bytes) -> None:
    whole = feed_all([stream])
    events = feed_all([stream[i : i + 1] for i in range(len(stream))])
    assert events == whole
    assert b"".join(e.raw for e in events) == stream


@pytest.mark.parametrize("stream", [LF_STREAM, CRLF_STREAM], ids=["lf", "crlf"])
@pytest.mark.parametrize("seed", range(25))
def test_random_splits_give_the_same_events(stream: bytes, seed: int) -> None:
    events = feed_all(random_splits(stream, seed))
    assert events == feed_all([stream])
    assert b"".join(e.raw for e in events) == stream


def test_each_raw_ends_with_its_blank_line() -> None:
    for stream, terminator in ((LF_STREAM, b"\n\n"), (CRLF_STREAM, b"\r\n\r\n")):
        assert all(e.raw.endswith(terminator) for e in feed_all([stream]))


def test_feed_returns_only_complete_events() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: a\ndata: 1\n") == []
    assert parser.feed(b"\nevent: b\nda") == [SSEEvent(b"event: a\ndata: 1\n\n", "a", "1")]
    assert parser.feed(b"ta: 2\n\n") == [SSEEvent(b"event: b\ndata: 2\n\n", "b", "2")]
    assert parser.close() is None


def test_cr_only_line_endings() -> None:
    events = feed_all([b"event: a\rdata: 1\r\rdata: 2\r\r"])
    assert summary(events) == [("a", "1"), ("", "2")]


def test_mixed_line_endings_end_an_event_at_any_blank_line() -> None:
    """A line may end in LF and the blank line after it in CRLF (the SSE spec allows any mix)."""
    stream = b"data: a\n\r\ndata: b\r\n\ndata: c\n\n"
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        events = feed_all(chunks)
        assert summary(events) == [("", "a"), ("", "b"), ("", "c")]
        assert b"".join(e.raw for e in events) == stream


def test_close_returns_an_unterminated_trailing_event() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: first\n\nevent: last\ndata: {"x": 1}') == [SSEEvent(b"data: first\n\n", "", "first")]
    tail = parser.close()
    assert tail == SSEEvent(b'event: last\ndata: {"x": 1}', "last", '{"x": 1}')
    assert parser.close() is None


def test_close_with_a_single_line_terminator() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]\n") == []
    assert parser.close() == SSEEvent(b"data: [DONE]\n", "", "[DONE]")


@pytest.mark.parametrize("rest", [b"\n", b"\r\n", b"  \n", b" "])
def test_close_returns_stray_leftovers_so_no_byte_is_lost(rest: bytes) -> None:
    parser = SSEParser()
    parser.feed(b"data: x\n\n" + rest)
    assert parser.close() == SSEEvent(rest, "", "")
    assert parser.close() is None


def test_close_after_complete_events_returns_nothing() -> None:
    parser = SSEParser()
    assert len(parser.feed(b"data: x\n\n")) == 1
    assert parser.close() is None
    assert SSEParser().close() is None


def test_parse_event_fields() -> None:
    event = parse_event(b"event:x\ndata\ndata: \ndata:  y \nunknown: z\n\n")
    assert (event.event, event.data) == ("x", "\n\n y ")


def test_comment_only_event_is_kept_for_relay() -> None:
    (event,) = feed_all([b": ping\n\n"])
    assert event == SSEEvent(b": ping\n\n", "", "")


def test_invalid_utf8_is_replaced_in_data_but_raw_is_kept() -> None:
    (event,) = feed_all([b"data: \xff\xfe\n\n"])
    assert event.raw == b"data: \xff\xfe\n\n"
    assert event.data == "\ufffd\ufffd"
