"""The benchmarks' progress bar: one line on stderr, redrawn in place."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sized

WIDTH = 24


def bar(fraction: float) -> str:
    """`[#########...............]  37%` for a fraction done in [0, 1]."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * WIDTH)
    return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%}"


async def report_rate(
    started_at: float, seconds: float, done: Sized, progress: Callable[[str], None]
) -> None:
    """Once a second until `seconds` after `started_at` (perf_counter): the
    bar and the rate of `done` (a list the load appends to)."""
    while time.perf_counter() < started_at + seconds:
        await asyncio.sleep(1.0)
        elapsed = time.perf_counter() - started_at
        progress(f"  {bar(elapsed / seconds)} {len(done) / elapsed:,.0f} transfers/s")
