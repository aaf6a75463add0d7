"""`bench e2e`: open-loop load through the SDK against the running workers,
beside a baseline of the Temporal money-transfer sample's shape and the
server's ceiling for the ledger's own shape (`CeilingWorkflow`: an empty
transfer started by update-with-start on the regional worker).

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
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from ledgerflow.bench.baseline import ACTIVITIES as BASELINE_ACTIVITIES
from ledgerflow.bench.baseline import BaselineTransferWorkflow, CeilingWorkflow
from ledgerflow.bench.latency import percentile
from ledgerflow.bench.progress import bar
from ledgerflow.client import LedgerClient
from ledgerflow.domain.model import TransferResult, transfer_workflow_id

WORKLOADS = ("ledger", "ceiling", "baseline")

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


async def empty_transfer(client: Client, workflow_id: str, task_queue: str) -> int:
    """One `CeilingWorkflow`, started and answered as a transfer is."""
    start = WithStartWorkflowOperation(
        CeilingWorkflow.run, 1, id=workflow_id, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )  # fmt: skip
    return await client.execute_update_with_start_workflow(
        CeilingWorkflow.confirmation, start_workflow_operation=start
    )


async def ceiling_load(
    ledger: LedgerClient,
    region: str,
    rate: float,
    seconds: float,
    progress: Callable[[str], None] | None = None,
) -> LoadResult:
    """`CeilingWorkflow` started as `LedgerClient.transfer` starts a transfer
    (one update-with-start call, answered by the update), on the region's task
    queue: the regional worker runs it beside the ledger's workflows."""
    client = ledger.temporal
    queue = ledger.settings.task_queue(region)
    run = uuid.uuid4().hex[:6]

    async def submit(i: int) -> None:
        await empty_transfer(client, f"ceiling-{run}-{i}", queue)

    latencies, errors, elapsed = await open_loop(submit, rate, seconds, progress)
    return _result("ceiling", rate, latencies, errors, elapsed)


@dataclass(frozen=True)
class HistoryCost:
    """What one workflow of a workload costs the server: its history's
    events, and their size as the server stores them (payloads included)."""

    workload: str
    events: int
    history_bytes: int


async def history_cost(ledger: LedgerClient, workload: str, workflow_id: str) -> HistoryCost:
    history = await ledger.temporal.get_workflow_handle(workflow_id).fetch_history()
    return HistoryCost(workload, len(history.events), sum(e.ByteSize() for e in history.events))


async def one_of_each(ledger: LedgerClient, region: str) -> list[HistoryCost]:
    """One ledger transfer, one ceiling and one baseline workflow, and what
    each one's history holds."""
    run = uuid.uuid4().hex[:6]
    source, target = f"hist-{run}-a", f"hist-{run}-b"
    for account_id in (source, target):
        await ledger.open_account(account_id, "USD", region=region, overdraft_limit=None)
    await ledger.transfer(f"hist-{run}", source, target, 1, "USD", initiated_by="bench",
                          region=region)  # fmt: skip
    client = ledger.temporal
    await empty_transfer(client, f"ceiling-hist-{run}", ledger.settings.task_queue(region))
    queue = f"bench-baseline-{run}"
    async with Worker(client, task_queue=queue, workflows=[BaselineTransferWorkflow],
                      activities=BASELINE_ACTIVITIES):  # fmt: skip
        await client.execute_workflow(
            BaselineTransferWorkflow.run, 1, id=f"baseline-hist-{run}", task_queue=queue
        )
    # The ledger's and the ceiling's histories are complete once they close.
    await client.get_workflow_handle(transfer_workflow_id(f"hist-{run}")).result()
    await client.get_workflow_handle(f"ceiling-hist-{run}").result()
    return [
        await history_cost(ledger, "ledger", transfer_workflow_id(f"hist-{run}")),
        await history_cost(ledger, "ceiling", f"ceiling-hist-{run}"),
        await history_cost(ledger, "baseline", f"baseline-hist-{run}"),
    ]


async def e2e_bench(
    ledger: LedgerClient,
    region: str,
    rates: list[float],
    seconds: float,
    progress: Callable[[str], None],
    warmup_s: float = WARMUP_S,
) -> list[LoadResult]:
    """The ramp of `ramp` over the ledger, the ceiling and the baseline."""
    loads: dict[str, Load] = {
        "ledger": lambda rate, s, p: ledger_load(ledger, region, rate, s, progress=p),
        "ceiling": lambda rate, s, p: ceiling_load(ledger, region, rate, s, p),
        "baseline": lambda rate, s, p: baseline_load(ledger, rate, s, p),
    }
    # Warm them up (worker caches, connection pools, the server's task
    # queues) at the first rate; not counted.
    progress(f"warm-up at {rates[0]:g}/s for {warmup_s:g} s")
    for load in loads.values():
        await load(rates[0], warmup_s, None)
    return await ramp(loads, rates, seconds, progress)


#: One workload offered `rate` per second for `seconds`.
Load = Callable[[float, float, Callable[[str], None] | None], Awaitable[LoadResult]]

#: A workload leaves the ramp after this many rates in a row it did not sustain.
GIVE_UP_AFTER = 2


async def ramp(
    loads: dict[str, Load],
    rates: list[float],
    seconds: float,
    progress: Callable[[str], None],
    give_up_after: int = GIVE_UP_AFTER,
) -> list[LoadResult]:
    """Each rate in turn, each workload in `loads` order. A workload leaves
    the ramp once it has missed `give_up_after` rates in a row (one miss
    may be noise; two are its limit), so the others climb on without it and
    an overloaded run does not slow the rest: the ceiling can be pushed past
    where the ledger and the baseline stopped."""
    results: list[LoadResult] = []
    misses = dict.fromkeys(loads, 0)
    for rate in rates:
        climbing = [name for name in loads if misses[name] < give_up_after]
        if not climbing:
            break
        for name in climbing:
            progress(f"{name} at {rate:g}/s for {seconds:g} s")
            result = await loads[name](rate, seconds, progress)
            results.append(result)
            misses[name] = 0 if result.sustained else misses[name] + 1
    return results


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summary(results: list[LoadResult]) -> dict[str, float | None]:
    """Per workload, the highest sustained throughput and the peak throughput
    of any run (overloaded runs show what the system can do when pushed);
    the ledger's ratios to the baseline and to the ceiling; and, at half the
    ledger's sustained maximum, its p99 (the target: < 250 ms) beside the
    ceiling's at the same offered rate."""
    best = {
        name: max((r.throughput_per_s for r in results if r.workload == name and r.sustained),
                  default=0.0)
        for name in WORKLOADS
    }  # fmt: skip
    peak = {
        name: max((r.throughput_per_s for r in results if r.workload == name), default=0.0)
        for name in WORKLOADS
    }
    half = [
        r for r in results
        if r.workload == "ledger" and r.sustained and r.offered_per_s <= best["ledger"] / 2 + 1e-9
    ]  # fmt: skip
    at_half = max(half, key=lambda r: r.offered_per_s) if half else None
    ceiling_at_half = next(
        (r for r in results if at_half and r.workload == "ceiling"
         and r.offered_per_s == at_half.offered_per_s),
        None,
    )  # fmt: skip
    return {
        "ledger_max_per_s": best["ledger"],
        "ceiling_max_per_s": best["ceiling"],
        "baseline_max_per_s": best["baseline"],
        "ceiling_ratio": _ratio(best["ledger"], best["ceiling"]),
        "ratio": _ratio(best["ledger"], best["baseline"]),
        "ledger_peak_per_s": peak["ledger"],
        "ceiling_peak_per_s": peak["ceiling"],
        "baseline_peak_per_s": peak["baseline"],
        "ceiling_peak_ratio": _ratio(peak["ledger"], peak["ceiling"]),
        "peak_ratio": _ratio(peak["ledger"], peak["baseline"]),
        "half_load_per_s": at_half.offered_per_s if at_half else None,
        "ledger_p99_ms_at_half_max": at_half.p99_ms if at_half else None,
        "ceiling_p99_ms_at_half_max": ceiling_at_half.p99_ms if ceiling_at_half else None,
        "half_load_p50_ratio": _ratio(
            at_half.p50_ms if at_half else None, ceiling_at_half.p50_ms if ceiling_at_half else None
        ),
    }
