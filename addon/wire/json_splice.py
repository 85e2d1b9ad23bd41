"""Change one member of a JSON object in place, leaving every other byte of the document as it was.

The bridge must not re-serialize bodies it forwards (key order, spacing, number formats, unknown fields and
`cache_control` markers all survive a splice; they might not survive `json.loads` + `json.dumps`).
"""

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]

_WS = re.compile(r"[ \t\n\r]*")
_decoder = json.JSONDecoder()


def member_spans(text: str) -> tuple[dict[str, tuple[int, int]], int]:
    """Spans of the top-level object's member values, and the index of its closing brace."""
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    spans: dict[str, tuple[int, int]] = {}
    i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    if text[i : i + 1] == "}":
        return spans, i
    while True:
        if text[i : i + 1] != '"':
            raise ValueError(f"expected a member name at {i}")
        key, i = scanstring(text, i + 1)
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if text[i : i + 1] != ":":
            raise ValueError(f"expected ':' at {i}")
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        _, end = _decoder.raw_decode(text, i)
        spans[key] = (i, end)
        i = _WS.match(text, end).end()  # type: ignore[union-attr]
        if text[i : i + 1] == ",":
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        elif text[i : i + 1] == "}":
            return spans, i
        else:
            raise ValueError(f"expected ',' or '}}' at {i}")


def set_member(raw: bytes, key: str, value_json: str) -> bytes:
    """`raw` with top-level member `key` set to `value_json` (replaced in place, or appended last)."""
    text = raw.decode("utf-8")
    spans, close = member_spans(text)
    if key in spans:
        start, end = spans[key]
        return (text[:start] + value_json + text[end:]).encode("utf-8")
    member = json.dumps(key) + ":" + value_json
    if spans:
        last_end = max(end for _, end in spans.values())
        return (text[:last_end] + "," + member + text[last_end:]).encode("utf-8")
    return (text[:close] + member + text[close:]).encode("utf-8")


def extend_array(raw: bytes, key: str, items_json: list[str], *, at_start: bool = False) -> bytes:
    """`raw` with `items_json` added to the top-level array `key` (first or last; created if missing)."""
    if not items_json:
        return raw
    text = raw.decode("utf-8")
    spans, _ = member_spans(text)
    joined = ",".join(items_json)
    if key not in spans:
        return set_member(raw, key, f"[{joined}]")
    start, end = spans[key]
    if text[start] != "[":
        raise ValueError(f"member {key!r} is not an array")
    inner = text[start + 1 : end - 1]
    if not inner.strip():
        return (text[:start] + f"[{joined}]" + text[end:]).encode("utf-8")
    if at_start:
        return (text[: start + 1] + joined + "," + text[start + 1 :]).encode("utf-8")
    close = text.rindex("]", start, end)
    return (text[:close] + "," + joined + text[close:]).encode("utf-8")
