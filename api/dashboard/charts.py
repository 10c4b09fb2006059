"""The Overview page's charts, drawn on the server as inline SVG.

No chart library: the page stays within the dashboard's CSP (its own assets only, no
inline script or style), renders with JavaScript off, and a test reads the numbers from
the markup. Colours are CSS classes (``.chart .s-failed`` …) taking the dashboard's light
or dark palette; every bar carries its number in ``data-value`` and a ``<title>`` (the
browser's tooltip, read by screen readers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from reprise_server.shared.overview.queries import CATEGORIES, Bucket, Window

# The viewBox's width is about the width the chart is shown at, so its text stays ~11px:
# full width of the page's main column, or half of it in a two-column grid.
WIDTH = 1180
HALF_WIDTH = 560
HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 22


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _time_label(moment: datetime, window: Window) -> str:
    if window.span.days >= 7:
        return moment.strftime("%a %H:%M")
    return moment.strftime("%H:%M")


def runs_chart(buckets: Sequence[Bucket], window: Window, label: str) -> Markup:
    """Stacked bars: the runs created in each bucket, by final status (or active)."""
    peak = max((b.total for b in buckets), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(buckets), 1)
    gap = min(2.0, step * 0.2)
    parts = [
        (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" data-chart="runs" data-peak="{peak}" '
        f'preserveAspectRatio="xMidYMid meet">'),
        (f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" '
        f'y2="{TOP + plot_h}"/>'),
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, bucket in enumerate(buckets):
        x = LEFT + i * step
        y: float = TOP + plot_h
        when = bucket.start.strftime("%Y-%m-%d %H:%M")
        for category in CATEGORIES:
            count = bucket.counts.get(category, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(
                f'<rect class="bar s-{category}" x="{_num(x + gap / 2)}" y="{_num(y)}" '
                f'width="{_num(max(step - gap, 0.5))}" height="{_num(h)}" '
                f'data-bucket="{i}" data-series="{category}" data-value="{count}">'
                f'<title>{when} UTC · {category}: {count}</title></rect>')
    for i in sorted({0, len(buckets) // 2, len(buckets) - 1}) if buckets else []:
        anchor = "start" if i == 0 else "end" if i == len(buckets) - 1 else "middle"
        x = LEFT + i * step + (step if anchor == "end" else 0)
        parts.append(f'<text class="tick" x="{_num(x)}" y="{HEIGHT - 6}" '
                     f'text-anchor="{anchor}">{_time_label(buckets[i].start, window)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Bar:
    series: str  # a CSS class suffix: s-<series>
    value: float | None
    text: str  # the value as shown


@dataclass(frozen=True)
class Row:
    label: str
    bars: Sequence[Bar]


def bars_chart(rows: Sequence[Row], name: str, label: str, *, width: int = WIDTH,
               scale: Callable[[float], float] | None = None) -> Markup:
    """Horizontal bars, one group per row (a task), each bar labelled with its value."""
    bar_h, row_gap, label_w, text_w = 12, 10, 170, 110
    per_row = max((len(r.bars) for r in rows), default=1) * bar_h + row_gap
    height = max(len(rows), 1) * per_row + 6
    values = [b.value for r in rows for b in r.bars if b.value is not None]
    peak = (scale or (lambda v: v))(max(values, default=0.0)) or 1.0
    plot_w = width - label_w - text_w
    parts = [(f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(label)}" data-chart="{escape(name)}">')]
    if not rows:
        parts.append(f'<text class="tick" x="{width / 2}" y="14" text-anchor="middle">'
                     'No runs in this window</text>')
    for r, row in enumerate(rows):
        top = 3 + r * per_row
        short = row.label if len(row.label) <= 28 else row.label[:27] + "…"
        parts.append(f'<text class="label" x="{label_w - 8}" '
                     f'y="{top + len(row.bars) * bar_h / 2 + 4}" text-anchor="end">'
                     f'<title>{escape(row.label)}</title>{escape(short)}</text>')
        for b, bar in enumerate(row.bars):
            y = top + b * bar_h
            size = (scale or (lambda v: v))(bar.value) if bar.value is not None else 0.0
            w = plot_w * size / peak
            parts.append(
                f'<rect class="bar s-{bar.series}" x="{label_w}" y="{y + 1}" '
                f'width="{_num(max(w, 1.0) if bar.value else 0)}" height="{bar_h - 2}" '
                f'data-task="{escape(row.label)}" data-series="{bar.series}" '
                f'data-value="{"" if bar.value is None else _num(bar.value)}">'
                f'<title>{escape(row.label)} · {bar.series}: {escape(bar.text)}</title></rect>'
                f'<text class="value" x="{_num(label_w + w + 4)}" y="{y + bar_h - 2}">'
                f'{escape(bar.text)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
