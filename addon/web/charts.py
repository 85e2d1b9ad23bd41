"""Bar charts as plain geometry, which the templates draw as inline SVG: nothing to load from elsewhere, no
script, and the Content-Security-Policy needs no exception (SVG attributes are not style attributes)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    text: str
    """The value as shown (e.g. `$1.2345`)."""


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    title: str

    @property
    def empty(self) -> bool:
        return not self.bars


def columns(
    points: Sequence[tuple[str, int | float | None]],
    title: str,
    shown: Callable[[Any], str] = str,
    width: int = 960,
    height: int = 200,
    widest: float = 40,
) -> Chart:
    """Vertical bars, one per point in order (days: left to right), scaled to the largest; None counts 0. A bar
    is at most `widest` across, so a few days do not fill the chart with one slab."""
    top = max((v or 0 for _, v in points), default=0) or 1
    step = min(width / max(len(points), 1), widest)
    gap = min(2.0, step / 4)
    bars = tuple(
        Bar(
            x=round(n * step + gap / 2, 2),
            y=round(height - (h := height * (value or 0) / top), 2),
            width=round(step - gap, 2),
            height=round(h, 2),
            label=label,
            text=shown(value),
        )
        for n, (label, value) in enumerate(points)
    )
    return Chart(width, height, bars, title)


def rows(
    points: Sequence[tuple[str, int | float | None]],
    title: str,
    shown: Callable[[Any], str] = str,
    width: int = 960,
    bar: int = 22,
    label_width: int = 260,
) -> Chart:
    """Horizontal bars, one per point from the top, scaled to the largest, with room for the labels on the left
    and the values on the right."""
    top = max((v or 0 for _, v in points), default=0) or 1
    room = width - label_width - 140
    bars = tuple(
        Bar(
            x=label_width,
            y=n * bar,
            width=round(max(room * (value or 0) / top, 1 if value else 0), 2),
            height=bar - 6,
            label=label,
            text=shown(value),
        )
        for n, (label, value) in enumerate(points)
    )
    return Chart(width, max(len(points), 1) * bar, bars, title)
