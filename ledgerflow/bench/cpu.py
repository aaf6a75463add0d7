"""Where a benchmark's CPU goes: this process (Python: the client, the
store's code, the driver) against the rest of the machine (on the embedded
stack, mostly PostgreSQL). From `/proc/stat` and the process's own clock, so
it needs no extra package; on a shared machine "the rest" includes whatever
else ran, which is why it is reported beside a baseline measured alike."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _machine_busy_s() -> float | None:
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    values = [int(v) for v in first[1:]]
    busy = sum(values[:3]) + sum(values[5:8])
    return busy * _TICK_S


@dataclass(frozen=True)
class CpuSplit:
    """CPU microseconds per transfer: this process's, and the rest of the
    machine's (None where `/proc/stat` cannot be read)."""

    python_us: float
    server_us: float | None


class CpuMeter:
    """Started when made; `split(n)` divides what was spent since by n."""

    def __init__(self) -> None:
        self._process = time.process_time()
        self._machine = _machine_busy_s()

    def split(self, transfers: int) -> CpuSplit:
        process = time.process_time() - self._process
        machine = _machine_busy_s()
        n = max(1, transfers)
        rest = None
        if machine is not None and self._machine is not None:
            rest = max(0.0, machine - self._machine - process) / n * 1e6
        return CpuSplit(python_us=process / n * 1e6, server_us=rest)
