"""The txtar archive format of the conformance recordings: a preamble, then `-- name --` sections."""

import re
from dataclasses import dataclass
from pathlib import Path

from .mock_upstream import Answer

_MARKER = re.compile(rb"^-- (.+?) --$", re.MULTILINE)


@dataclass
class Archive:
    name: str
    preamble: str
    sections: dict[str, bytes]


def load(path: Path) -> Archive:
    data = path.read_bytes()
    markers = list(_MARKER.finditer(data))
    preamble = data[: markers[0].start()] if markers else data
    sections = {}
    for marker, following in zip(markers, [*markers[1:], None], strict=True):
        start = marker.end() + 1  # the newline ending the marker line
        end = following.start() if following else len(data)
        sections[marker.group(1).decode()] = data[start:end]
    return Archive(path.stem, preamble.decode(), sections)


def sse_lines(section: bytes) -> list[bytes]:
    """An SSE section as the reference harness writes it: line by line, a flush after each."""
    return section.splitlines(keepends=True)


def answer(section: bytes, *, streaming: bool) -> Answer:
    """The mock answer for a section: a raw HTTP response (`HTTP/...`), an SSE stream, or a JSON body."""
    if section.startswith(b"HTTP/"):
        head, _, body = section.partition(b"\n\n")
        status_line, *header_lines = head.decode().splitlines()
        headers = dict(line.split(": ", 1) for line in header_lines)
        length = int(headers.pop("Content-Length", len(body)))
        return Answer(int(status_line.split()[1]), headers, body[:length])
    if streaming:
        return Answer.sse(sse_lines(section))
    return Answer(200, {"content-type": "application/json"}, section)
