"""The CSV form of what a page shows: one row per listed item, the columns named as in the JSON.

Lists are joined with `; `. Text that a spreadsheet would take for a formula (`=`, `+`, `-`, `@` first) is
prefixed with `'`: prompts are whatever users typed, and opening a download must not run any of it.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return out.getvalue()


def dollars(micros: int | None) -> str:
    """Micro-dollars as a plain decimal for spreadsheets (empty when unpriced, never 0)."""
    return "" if micros is None else f"{micros / 1_000_000:.6f}"
