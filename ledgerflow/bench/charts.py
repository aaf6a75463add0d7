"""SVG charts of benchmark results, written by `ledgerflow bench ... --chart
PATH` (`make bench` puts them in docs/). Plain SVG text: no plotting
library, no script, readable on GitHub and in any browser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f6feb", "#d4762c", "#2da44e", "#8250df", "#cf222e")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    #: an x where this series stops being sustained (a dashed vertical line)
    limit: float | None = None


@dataclass(frozen=True)
class Chart:
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    log_x: bool = False
    log_y: bool = False
    #: horizontal lines worth marking (a target), as (y, label)
    targets: Sequence[tuple[float, str]] = field(default=())


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        return [10.0**e for e in range(first, last + 1)]
    span = (high - low) or 1.0
    step = 10 ** math.floor(math.log10(span / 4))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 6:
            step *= factor
            break
    start = math.floor(low / step) * step
    return [start + i * step for i in range(int((high - start) / step) + 2)]


def _label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def render(chart: Chart, width: int = 720, height: int = 360) -> str:
    """The chart as an SVG document."""
    left, right, top, bottom = 64, 200, 36, 48
    points = [p for s in chart.series for p in s.points]
    if not points:
        raise ValueError(f"nothing to draw in {chart.title!r}")
    xs = [x for x, _ in points] + [s.limit for s in chart.series if s.limit is not None]
    ys = [y for _, y in points] + [t for t, _ in chart.targets]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = (min(ys), max(ys)) if chart.log_y else (0.0, max(ys) * 1.05)
    x_ticks = _ticks(x_low, x_high, chart.log_x)
    y_ticks = _ticks(y_low, y_high, chart.log_y)
    x_low, x_high = min(x_ticks[0], x_low), max(x_ticks[-1], x_high)
    y_low, y_high = min(y_ticks[0], y_low), max(y_ticks[-1], y_high)

    def scale(value: float, low: float, high: float, log: bool) -> float:
        if log:
            value, low, high = math.log10(value), math.log10(low), math.log10(high)
        return (value - low) / ((high - low) or 1.0)

    def px(x: float) -> float:
        return left + (width - left - right) * scale(x, x_low, x_high, chart.log_x)

    def py(y: float) -> float:
        return height - bottom - (height - top - bottom) * scale(y, y_low, y_high, chart.log_y)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui,sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(chart.title)}</text>',
    ]
    for tick in y_ticks:
        if y_low <= tick <= y_high:
            y = py(tick)
            out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#e3e6ea"/>')  # fmt: skip
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                       f"{_label(tick)}</text>")  # fmt: skip
    for tick in x_ticks:
        if x_low <= tick <= x_high:
            x = px(tick)
            out.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                       f"{_label(tick)}</text>")  # fmt: skip
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 10}" '
               f'text-anchor="middle">{escape(chart.x_label)}</text>')  # fmt: skip
    out.append(f'<text transform="translate(16 {(top + height - bottom) / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle">{escape(chart.y_label)}</text>')  # fmt: skip
    for value, text in chart.targets:
        y = py(value)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#cf222e" stroke-dasharray="2 3"/>')  # fmt: skip
        out.append(f'<text x="{width - right - 4}" y="{y - 4:.1f}" text-anchor="end" '
                   f'fill="#cf222e">{escape(text)}</text>')  # fmt: skip
    for n, series in enumerate(chart.series):
        colour = PALETTE[n % len(PALETTE)]
        ordered = sorted(series.points)
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(ordered)
        )
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in ordered:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        if series.limit is not None:
            x = px(series.limit)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" '
                       f'stroke="{colour}" stroke-dasharray="5 4"/>')  # fmt: skip
        legend_y = top + 18 * n + 8
        limit = f" (sustains {series.limit:.1f}/s)" if series.limit is not None else ""
        out.append(f'<rect x="{width - right + 12}" y="{legend_y - 8}" width="10" height="10" '
                   f'fill="{colour}"/>')  # fmt: skip
        out.append(f'<text x="{width - right + 26}" y="{legend_y + 1}">'
                   f"{escape(series.name + limit)}</text>")  # fmt: skip
    out.append("</svg>")
    return "\n".join(out) + "\n"
