"""The benchmarks' progress bar: one line on stderr, redrawn in place."""

from __future__ import annotations

WIDTH = 24


def bar(fraction: float) -> str:
    """`[#########...............]  37%` for a fraction done in [0, 1]."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * WIDTH)
    return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%}"
