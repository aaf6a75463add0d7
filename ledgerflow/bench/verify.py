"""`bench verify`: how fast `ledgerflow verify` proves a region, as its
history grows. Each size is seeded in a scratch database of its own (the
archive bench's trading history: hash-chained, a transaction per 1,000
transfers), then `verify_region` runs over it once; the report gives events
per second, the process's peak memory growth, and the findings (there must
be none).

    .venv/bin/ledgerflow bench verify --sizes 100000,1000000 --workers 1,2

`--workers 1` walks the chains in the verifying process; more walk them in
that many processes on one exported snapshot: the ratio between them, in the
same run on the same history, is what the walkers buy.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

from ledgerflow.audit.verify import default_workers, verify_region
from ledgerflow.bench.archive import seed_trading
from ledgerflow.bench.history import vacuum_analyze
from ledgerflow.bench.scratch import scratch_database
from ledgerflow.config import Settings
from ledgerflow.store.postgres import PostgresEventStore, create_engine


@dataclass(frozen=True)
class VerifyBenchReport:
    events: int
    accounts: int
    #: chain-walking processes (1: in the verifying process itself)
    workers: int
    seed_s: float
    verify_s: float
    events_per_s: float
    #: growth of this process's peak resident memory during the verify
    peak_rss_growth_mb: float
    findings: int


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def verify_bench(
    settings: Settings,
    sizes: list[int],
    accounts: int,
    progress: Callable[[str], None],
    workers: list[int] | None = None,
) -> list[VerifyBenchReport]:
    """Each size seeded once, then verified with each count of `workers`
    (default: one per core), in that order, on the same history."""
    reports = []
    for size in sizes:
        async with scratch_database(settings, "verify") as name:
            engine = create_engine(settings.embedded_url("ledgerflow_app", name), settings)
            owner = create_engine(settings.embedded_url("ledgerflow_owner", name), settings)
            try:
                began = time.perf_counter()
                store = PostgresEventStore(engine, "bench")
                await seed_trading(store, size, accounts, progress, owner)
                seed_s = time.perf_counter() - began
                # The steady state a ledger is verified in: the bulk load
                # vacuumed (visibility and hint bits set) as autovacuum soon
                # would, not a first read of freshly written pages racing it.
                await vacuum_analyze(owner)
                for count in workers or [default_workers()]:
                    progress(f"verifying {size:,} events with {count} walker(s)")
                    before = _peak_rss_mb()
                    report = await verify_region(engine, "bench", workers=count)
                    reports.append(
                        VerifyBenchReport(
                            events=report.events_checked,
                            accounts=accounts,
                            workers=count,
                            seed_s=seed_s,
                            verify_s=report.seconds,
                            events_per_s=report.events_per_second,
                            peak_rss_growth_mb=_peak_rss_mb() - before,
                            findings=len(report.findings),
                        )
                    )
            finally:
                await engine.dispose()
                await owner.dispose()
    return reports
