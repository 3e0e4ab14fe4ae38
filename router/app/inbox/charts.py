"""Chart geometry for the reports page: where each bar, tick and label of an SVG chart
goes, computed here so the template only writes elements out (and escapes every label).

No JavaScript draws anything: the page's strict CSP allows no inline script, and a
chart drawn server-side is in the HTML a screenshot, a printout or a screen reader gets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import msgspec

WIDTH = 640  # viewBox units; the SVG scales to its container
CHAR_PX = 6.5  # the width of one label character at the charts' font size, near enough


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    x: float
    y: float
    width: float
    height: float
    value: float
    label: str  # the value as shown ("" : no label drawn, the bar is too small to matter)
    series: int  # its colour: series-0, series-1...
    category: str
    title: str  # the tooltip: category, series and value in words


class Tick(msgspec.Struct, frozen=True):
    at: float
    label: str
    title: str = ""


class ColumnChart(msgspec.Struct, frozen=True, kw_only=True):
    """Vertical bars, one group per category, one bar per series in each group."""

    width: int
    height: int
    left: float
    top: float
    bottom: float  # the baseline's y
    right: float
    series: list[str]
    bars: list[Bar]
    categories: list[Tick]  # x of each category's centre
    ticks: list[Tick]  # y of each grid line
    legend: list[Tick]  # x of each series' swatch (none for a single series)


class Row(msgspec.Struct, frozen=True, kw_only=True):
    y: float
    label: str
    title: str
    value: float | None
    value_label: str
    bar_width: float
    target_x: float | None  # where the row's target line stands
    target_label: str
    state: str  # met, missed, none (no target), empty (no value)


class BarChart(msgspec.Struct, frozen=True, kw_only=True):
    """Horizontal bars of a share (0-100 %), each row with its own target line."""

    width: int
    height: int
    left: float  # where the bars start (labels sit left of it)
    right: float
    top: float
    bottom: float
    row_height: float
    rows: list[Row]
    ticks: list[Tick]  # x of each grid line


def scale(largest: float, *, steps: int = 4, whole: bool = True) -> tuple[float, float]:
    """A round top for an axis holding `largest`, and its grid step (1, 2 or 5 x 10^k;
    counts get whole steps, so an axis of 3 contacts never reads 0.75)."""
    if largest <= 0:
        return (float(steps), 1.0) if whole else (1.0, 1.0 / steps)
    rough = largest / steps
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    if whole:
        step = max(1.0, step)
    return step * math.ceil(largest / step - 1e-9), step


def shorten(label: str, room_px: float) -> str:
    """The label cut to the room it has, with an ellipsis (the full text goes in a title)."""
    fits = max(2, int(room_px / CHAR_PX))
    return label if len(label) <= fits else label[: fits - 1] + "…"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def columns(
    categories: Sequence[str],
    series: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    height: int = 260,
    label_zero: bool = True,
    thin_labels: bool = False,
    titles: Sequence[str] = (),
) -> ColumnChart:
    """Bars of values[category][series]. `thin_labels` keeps every n-th category label where
    they would overlap (intervals of a day); otherwise each is shortened to its slot (queues).
    `titles` replaces a category's name in its bars' tooltips (a breakdown, say)."""
    left, right, top, bottom = 48.0, WIDTH - 12.0, 22.0 if len(series) < 2 else 36.0, height - 40.0
    top_value, step = scale(max((v for row in values for v in row), default=0))
    slot = (right - left) / max(1, len(categories))
    group = slot * 0.76
    width = group / max(1, len(series))
    plot = bottom - top
    bars, labels = [], []
    every = 1
    if thin_labels and categories:
        every = max(1, math.ceil((max(len(c) for c in categories) * CHAR_PX + 8) / slot))
    for i, (category, row) in enumerate(zip(categories, values, strict=True)):
        centre = left + slot * (i + 0.5)
        about = titles[i] if i < len(titles) else category
        for j, value in enumerate(row):
            tall = plot * value / top_value
            label = _number(value) if value or label_zero else ""
            if len(label) * CHAR_PX > width + 6:
                label = ""  # wider than its bar: it would run into the next one (the tooltip keeps it)
            bars.append(
                Bar(
                    x=round(centre - group / 2 + j * width, 2),
                    y=round(bottom - tall, 2),
                    width=round(max(1.0, width - 2), 2),
                    height=round(tall, 2),
                    value=value,
                    label=label,
                    series=j,
                    category=category,
                    title=f"{about}: {series[j]} {_number(value)}" if len(series) > 1 else f"{about}: {_number(value)}",
                )
            )
        if i % every == 0:
            text = category if thin_labels else shorten(category, slot)
            labels.append(Tick(round(centre, 2), text, category))
    count = round(top_value / step)
    ticks = [Tick(round(bottom - plot * k / count, 2), _number(step * k)) for k in range(count + 1)]
    legend, x = [], left
    for name in series if len(series) > 1 else ():
        legend.append(Tick(round(x, 2), name))
        x += 12 + 4 + len(name) * CHAR_PX + 14  # swatch, gap, text, gap
    return ColumnChart(
        width=WIDTH,
        height=height,
        left=left,
        top=top,
        bottom=bottom,
        right=right,
        series=list(series),
        bars=bars,
        categories=labels,
        ticks=ticks,
        legend=legend,
    )


def shares(
    rows: Sequence[tuple[str, float | None, float | None]],
    *,
    row_height: float = 30.0,
    describe: Callable[[float | None], str],
    empty: str = "no contacts",
) -> BarChart:
    """Rows of (label, share 0-1 or None, target share or None): a bar per row, its value
    at the end of it, the target as a line across the row; `met` when the bar reaches it."""
    left, right, top = 150.0, WIDTH - 70.0, 24.0
    plot = right - left
    out = []
    for i, (label, value, target) in enumerate(rows):
        if value is None:
            state = "empty"
        elif target is None:
            state = "none"
        else:
            state = "met" if value >= target - 1e-9 else "missed"
        out.append(
            Row(
                y=top + i * row_height,
                label=shorten(label, left - 12),
                title=label,
                value=value,
                value_label=describe(value) if value is not None else empty,
                bar_width=round(plot * min(1.0, max(0.0, value or 0.0)), 2),
                target_x=None if target is None else round(left + plot * min(1.0, target), 2),
                target_label="" if target is None else f"target {describe(target)}",
                state=state,
            )
        )
    bottom = top + len(rows) * row_height
    ticks = [Tick(round(left + plot * k / 4, 2), f"{25 * k} %") for k in range(5)]
    return BarChart(
        width=WIDTH,
        height=int(bottom + 8),
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        row_height=row_height,
        rows=out,
        ticks=ticks,
    )
