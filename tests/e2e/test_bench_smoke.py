"""The bench command runs (its numbers are reported, never asserted)."""

from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.audit.verify import verify_region
from ledgerflow.bench.archive import archive_bench
from ledgerflow.bench.e2e import e2e_bench, one_of_each, summary
from ledgerflow.bench.history import query_bench
from ledgerflow.bench.latency import percentile, sequential_latency
from ledgerflow.bench.reconcile import reconcile_bench
from ledgerflow.bench.store import store_bench
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.store.postgres import PostgresEventStore


async def test_latency_bench_runs_and_reports_consistent_numbers(ledger: LedgerClient) -> None:
    report = await sequential_latency(ledger, count=3, region="eu", warmup=1)
    assert report.count == 3 and (report.region, report.to_region) == ("eu", "eu")
    assert 0 < report.p50_ms <= report.p99_ms <= report.max_ms
    crossing = await sequential_latency(ledger, count=2, region="eu", warmup=0, to_region="ap")
    assert crossing.to_region == "ap" and 0 < crossing.p50_ms <= crossing.max_ms


async def test_reconcile_bench_checks_a_region_from_its_start(ledger: LedgerClient) -> None:
    await sequential_latency(ledger, count=2, region="ap", warmup=0)
    report = await reconcile_bench(ledger.engine("ap"), "ap", events=100_000)
    assert report.region == "ap" and report.pages >= 1
    assert report.events_checked >= 4 and report.events_per_s > 0


def test_percentiles_are_observed_samples() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile(samples, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([7.0], 99) == 7.0


async def test_query_bench_seeds_a_sound_history_and_reports(
    isolated_region: tuple[PostgresEventStore, AsyncEngine],
) -> None:
    store, superuser = isolated_region
    [report] = await query_bench(store, [2000], probes=20, owner=superuser)
    assert report.events == 2000 and report.probes == 20
    assert 0 < report.p50_ms <= report.p99_ms <= report.max_ms
    verified = await verify_region(store.engine, "us")
    assert verified.sound, [str(f) for f in verified.findings[:3]]
    assert verified.events_checked == 2 * 2000


async def test_archive_bench_archives_verifies_and_prunes_a_scratch_history(
    migrated: Settings,
) -> None:
    lines: list[str] = []
    report = await archive_bench(migrated, 3_000, 20, 500, True, lines.append)
    # The openings, then two seeding transactions (2,000 and 980 events): a
    # segment of 500 never splits a transaction.
    assert (report.events, report.segments) == (3_000, 3)
    assert report.pruned_events == 3_000  # everything archived, verified and projected
    assert report.archive_events_per_s > 0 and report.uploaded_mb > 0
    assert lines[-1] == "pruning"


async def test_store_bench_appends_concurrently_and_runs_pgbench(migrated: Settings) -> None:
    lines: list[str] = []
    report = await store_bench(migrated, clients=4, accounts=20, seconds=1.0, progress=lines.append)
    assert report.transfers > 0 and report.errors == 0
    assert report.transfers_per_s == report.transfers / report.seconds
    assert report.pgbench_tps > 0 and report.ratio == report.transfers_per_s / report.pgbench_tps
    assert 0 < report.p50_ms <= report.p99_ms
    # Group commit on: never fewer transfers than commits; off: measured too.
    assert report.transfers_per_commit >= 1 and report.unbatched_per_s > 0
    assert report.unbatched_ratio == report.unbatched_per_s / report.pgbench_tps
    # The SQL-function ledger ran in the same run, and each side's CPU split.
    assert report.sql_per_s > 0 and report.sql_ratio == report.transfers_per_s / report.sql_per_s
    assert report.python_us > 0 and report.sql_python_us > 0
    assert report.server_us is not None and report.sql_server_us is not None
    assert any("[" in line and "transfers/s" in line for line in lines), lines


async def test_e2e_bench_offers_load_to_the_ledger_the_ceiling_and_the_baseline(
    ledger: LedgerClient,
) -> None:
    lines: list[str] = []
    results = await e2e_bench(ledger, "us", [4.0], 1.0, lines.append, warmup_s=0.5)
    assert [r.workload for r in results] == ["ledger", "ceiling", "baseline"]
    for run in results:
        assert run.completed + run.errors == 4 and run.offered_per_s == 4.0
        assert 0 < run.p50_ms <= run.p99_ms <= run.max_ms
    assert results[0].lag_p50_ms is not None  # one transfer in ten is watched
    totals = summary(results)
    assert totals["ledger_peak_per_s"] == results[0].throughput_per_s
    assert totals["ceiling_peak_ratio"] == results[0].throughput_per_s / results[1].throughput_per_s
    assert lines[0].startswith("warm-up") and lines[1:4] == [
        "ledger at 4/s for 1 s",
        "ceiling at 4/s for 1 s",
        "baseline at 4/s for 1 s",
    ]
    # What one of each costs the server: the ceiling is the smallest history.
    costs = {c.workload: c for c in await one_of_each(ledger, "us")}
    assert set(costs) == {"ledger", "ceiling", "baseline"}
    assert 0 < costs["ceiling"].events <= costs["ledger"].events
    assert costs["ceiling"].history_bytes < costs["ledger"].history_bytes


async def test_holds_bench_runs_and_reports_consistent_numbers(ledger: LedgerClient) -> None:
    from ledgerflow.bench.holds import holds_bench

    report = await holds_bench(ledger, count=3, clients=2, seconds=1.0, region="us")
    assert report.count == 3 and report.clients == 2
    assert 0 < report.place_p50_ms <= report.place_p99_ms
    assert 0 < report.capture_p50_ms <= report.capture_p99_ms
    assert report.transfers_per_s > 0 and report.holds_per_s > 0
    assert report.ratio == report.holds_per_s / report.transfers_per_s
    assert 0 < report.transaction_p50_ms <= report.transaction_p99_ms
    assert report.transaction_ratio == report.transactions_per_s / report.transfers_per_s > 0


async def test_verify_bench_proves_a_seeded_history_and_reports(migrated: Settings) -> None:
    from ledgerflow.bench.verify import verify_bench

    lines: list[str] = []
    reports = await verify_bench(migrated, [2_000], 20, lines.append, workers=[1, 2])
    assert [(r.events, r.workers, r.findings) for r in reports] == [(2_000, 1, 0), (2_000, 2, 0)]
    for report in reports:
        assert report.events_per_s == report.events / report.verify_s > 0
    assert lines[-1] == "verifying 2,000 events with 2 walker(s)"


async def test_the_ceiling_workflow_on_the_ledger_s_worker_writes_nothing(
    ledger: LedgerClient, engines: dict[str, AsyncEngine]
) -> None:
    """`CeilingWorkflow` is registered on every regional worker (bench e2e's
    yardstick), so anyone able to start workflows there can start it, raw,
    as often as they like, with any input: it must post nothing and record
    nothing."""
    import uuid

    from ledgerflow.bench.e2e import empty_transfer
    from tests.support import count_rows

    tables = ("events", "transfers", "accounts")
    before = [await count_rows(engines["us"], t) for t in tables]
    queue = ledger.settings.task_queue("us")
    assert await empty_transfer(ledger.temporal, f"ceiling-{uuid.uuid4().hex}", queue) == 1
    for amount in (1, -5, 10**15):  # what a raw start may send
        start = await ledger.temporal.start_workflow(
            "CeilingWorkflow", amount, id=f"ceiling-raw-{uuid.uuid4().hex}", task_queue=queue
        )
        assert await start.result() == amount
    assert [await count_rows(engines["us"], t) for t in tables] == before
