"""Sequential confirmation latency: one transfer at a time through the SDK.

Measures what a caller waits for `LedgerClient.transfer` (update-with-start:
the workflow starts, validates, appends durably and answers; projection
happens after the answer). Run against a running system (`make run`):

    .venv/bin/ledgerflow bench latency --count 100
    .venv/bin/ledgerflow bench latency --count 100 --to-region eu   # cross-region saga
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ledgerflow.bench.progress import bar
from ledgerflow.client import LedgerClient


@dataclass(frozen=True)
class LatencyReport:
    count: int
    region: str
    to_region: str
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 was observed)."""
    ordered = sorted(samples)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def sequential_latency(
    ledger: LedgerClient,
    count: int,
    region: str,
    warmup: int = 5,
    to_region: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> LatencyReport:
    """`to_region`: credit an account homed there (a cross-region transfer)."""
    to_region = to_region or region
    run = uuid.uuid4().hex[:8]
    source, target = f"bench-src-{run}", f"bench-dst-{run}"
    await ledger.open_account(source, "USD", region=region, overdraft_limit=None)
    await ledger.open_account(target, "USD", region=to_region)
    samples: list[float] = []
    for i in range(warmup + count):
        started = time.perf_counter()
        await ledger.transfer(
            f"bench-{run}-{i}", source, target, 1, "USD", initiated_by="bench", region=region
        )
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1000)
        if progress and i % 10 == 9:
            progress(f"  {bar((i + 1) / (warmup + count))} {i + 1:,} transfers")
    return LatencyReport(
        count=count,
        region=region,
        to_region=to_region,
        p50_ms=percentile(samples, 50),
        p95_ms=percentile(samples, 95),
        p99_ms=percentile(samples, 99),
        max_ms=max(samples),
        mean_ms=statistics.fmean(samples),
    )
