"""`bench e2e`: open-loop load through the SDK against the running workers,
beside a baseline of the Temporal money-transfer sample's shape.

Open loop: transfer i is due at start + i / rate whatever happened to the
ones before, and its latency runs from that due time to its confirmation,
so a system that falls behind shows it in the latency (no coordinated
omission). The ledger's side is `LedgerClient.transfer` (update-with-start;
it answers once the append committed) between funded accounts of one region;
the baseline's is `BaselineTransferWorkflow` (three no-op regular
activities, run to completion) on a worker in this process, on the same
Temporal server. Projection lag is sampled on one confirmed transfer in
ten: from its confirmation until its credit shows in the statement view.

    .venv/bin/ledgerflow bench e2e --rates 5,10,20 --seconds 20
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from temporalio.worker import Worker

from ledgerflow.bench.baseline import ACTIVITIES as BASELINE_ACTIVITIES
from ledgerflow.bench.baseline import BaselineTransferWorkflow
from ledgerflow.bench.latency import percentile
from ledgerflow.bench.progress import bar
from ledgerflow.client import LedgerClient
from ledgerflow.domain.model import TransferResult

#: A rate is sustained when this share of the offered load completed in time.
SUSTAINED = 0.95
DRAIN_S = 30.0
WARMUP_S = 5.0


@dataclass(frozen=True)
class LoadResult:
    workload: str
    offered_per_s: float
    seconds: float
    completed: int
    errors: int
    throughput_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    lag_p50_ms: float | None = None
    lag_p99_ms: float | None = None

    @property
    def sustained(self) -> bool:
        return self.errors == 0 and self.throughput_per_s >= SUSTAINED * self.offered_per_s


async def open_loop(
    submit: Callable[[int], Awaitable[object]],
    rate: float,
    seconds: float,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[float], int, float]:
    """Latencies (ms, from each call's due time), errors, and the elapsed time."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    start = loop.time()
    total = max(1, round(rate * seconds))
    last_report = start

    async def one(i: int, due: float) -> None:
        nonlocal errors
        try:
            await submit(i)
        except Exception:
            errors += 1
            return
        latencies.append((loop.time() - due) * 1000)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
        if progress and loop.time() - last_report >= 1.0:
            last_report = loop.time()
            progress(f"  {bar(i / total)} sent {i:,}, confirmed {len(latencies):,}")
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_S)
    errors += len(pending)
    for task in pending:
        task.cancel()
    elapsed = max(loop.time() - start, seconds)
    return latencies, errors, elapsed


def _result(
    workload: str, rate: float, latencies: list[float], errors: int, elapsed: float,
    lags: list[float] | None = None,
) -> LoadResult:  # fmt: skip
    done = len(latencies)
    return LoadResult(
        workload=workload,
        offered_per_s=rate,
        seconds=elapsed,
        completed=done,
        errors=errors,
        throughput_per_s=done / elapsed,
        p50_ms=percentile(latencies, 50) if done else 0.0,
        p95_ms=percentile(latencies, 95) if done else 0.0,
        p99_ms=percentile(latencies, 99) if done else 0.0,
        max_ms=max(latencies) if done else 0.0,
        lag_p50_ms=percentile(lags, 50) if lags else None,
        lag_p99_ms=percentile(lags, 99) if lags else None,
    )


async def ledger_load(
    ledger: LedgerClient,
    region: str,
    rate: float,
    seconds: float,
    accounts: int = 100,
    progress: Callable[[str], None] | None = None,
) -> LoadResult:
    run = uuid.uuid4().hex[:6]
    ids = [f"e2e-{run}-{i}" for i in range(accounts)]
    for account_id in ids:
        # No overdraft limit: every transfer posts, so the run measures postings.
        await ledger.open_account(account_id, "USD", region=region, overdraft_limit=None)
    lags: list[float] = []
    engine = ledger.engine(region)
    loop = asyncio.get_running_loop()

    async def projected(result: TransferResult, account_id: str) -> None:
        confirmed = loop.time()
        while loop.time() - confirmed < DRAIN_S:
            async with engine.connect() as conn:
                seen = (
                    await conn.execute(
                        text(
                            "SELECT 1 FROM statement_view WHERE account_id = :a "
                            "AND event_id = CAST(:e AS uuid)"
                        ),
                        {"a": account_id, "e": result.credit_event_id},
                    )
                ).first()
            if seen:
                lags.append((loop.time() - confirmed) * 1000)
                return
            await asyncio.sleep(0.01)

    watchers: list[asyncio.Task[None]] = []

    async def submit(i: int) -> None:
        source, target = ids[i % accounts], ids[(i * 7 + 1) % accounts]
        if source == target:
            target = ids[(i + 1) % accounts]
        result = await ledger.transfer(
            f"e2e-{run}-t{i}", source, target, 1, "USD", initiated_by="bench", region=region
        )
        if i % 10 == 0:
            watchers.append(asyncio.create_task(projected(result, target)))

    latencies, errors, elapsed = await open_loop(submit, rate, seconds, progress)
    await asyncio.gather(*watchers)
    return _result("ledger", rate, latencies, errors, elapsed, lags)


async def baseline_load(
    ledger: LedgerClient,
    rate: float,
    seconds: float,
    progress: Callable[[str], None] | None = None,
) -> LoadResult:
    client = ledger.temporal
    queue = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:6]
    async with Worker(
        client,
        task_queue=queue,
        workflows=[BaselineTransferWorkflow],
        activities=BASELINE_ACTIVITIES,
    ):

        async def submit(i: int) -> None:
            await client.execute_workflow(
                BaselineTransferWorkflow.run, 1, id=f"baseline-{run}-{i}", task_queue=queue
            )

        latencies, errors, elapsed = await open_loop(submit, rate, seconds, progress)
    return _result("baseline", rate, latencies, errors, elapsed)


async def e2e_bench(
    ledger: LedgerClient,
    region: str,
    rates: list[float],
    seconds: float,
    progress: Callable[[str], None],
    warmup_s: float = WARMUP_S,
) -> list[LoadResult]:
    """Each rate in turn, ledger then baseline; the ramp stops after the first
    rate neither sustains."""
    results: list[LoadResult] = []
    # Warm both up (worker caches, connection pools, the server's task
    # queues) at the first rate; not counted.
    progress(f"warm-up at {rates[0]:g}/s for {warmup_s:g} s")
    await ledger_load(ledger, region, rates[0], warmup_s)
    await baseline_load(ledger, rates[0], warmup_s)
    for rate in rates:
        progress(f"ledger at {rate:g}/s for {seconds:g} s")
        mine = await ledger_load(ledger, region, rate, seconds, progress=progress)
        progress(f"baseline at {rate:g}/s for {seconds:g} s")
        theirs = await baseline_load(ledger, rate, seconds, progress)
        results += [mine, theirs]
        if not mine.sustained and not theirs.sustained:
            break
    return results


def summary(results: list[LoadResult]) -> dict[str, float | None]:
    """Per workload, the highest sustained throughput and the peak throughput
    of any run (overloaded runs show what the system can do when pushed);
    their ratios; and the ledger's p99 at half its sustained maximum (the
    design's confirmation target)."""
    best = {
        name: max((r.throughput_per_s for r in results if r.workload == name and r.sustained),
                  default=0.0)
        for name in ("ledger", "baseline")
    }  # fmt: skip
    peak = {
        name: max((r.throughput_per_s for r in results if r.workload == name), default=0.0)
        for name in ("ledger", "baseline")
    }
    half = [
        r for r in results
        if r.workload == "ledger" and r.sustained and r.offered_per_s <= best["ledger"] / 2 + 1e-9
    ]  # fmt: skip
    return {
        "ledger_max_per_s": best["ledger"],
        "baseline_max_per_s": best["baseline"],
        "ratio": best["ledger"] / best["baseline"] if best["baseline"] else None,
        "ledger_peak_per_s": peak["ledger"],
        "baseline_peak_per_s": peak["baseline"],
        "peak_ratio": peak["ledger"] / peak["baseline"] if peak["baseline"] else None,
        "ledger_p99_ms_at_half_max": max(half, key=lambda r: r.offered_per_s).p99_ms
        if half
        else None,
    }
