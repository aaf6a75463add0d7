"""`ledgerflow bench <mode>`: benchmarks (numbers, not tests), each mode with
its own flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from ledgerflow.cli.ledger import with_ledger
from ledgerflow.cli.output import Commands, emit, run_async
from ledgerflow.config import Settings

if TYPE_CHECKING:
    from ledgerflow.client import LedgerClient


def progress(line: str) -> None:
    print(f"\r{line:<70}", end="", file=sys.stderr, flush=True)


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser("bench", parents=[common], help="benchmarks (numbers, not tests)")
    modes = bench.add_subparsers(dest="mode", required=True, metavar="MODE")

    def mode(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = modes.add_parser(
            name, parents=[common], help=help, description=help
        )
        return parser

    latency = mode("latency", "sequential confirmations, one transfer at a time")
    latency.add_argument("--count", type=int, default=100, help="transfers")
    latency.add_argument("--region", help="the debited accounts' region (default: the default)")
    latency.add_argument("--to-region", help="credit an account in this region (cross-region)")
    latency.set_defaults(handler=with_ledger(bench_latency))

    holds = mode("holds", "holds and transactions: latency, and their rates against transfers/s")
    holds.add_argument("--count", type=int, default=100, help="sequential rounds")
    holds.add_argument("--clients", type=int, default=8, help="concurrent callers")
    holds.add_argument("--seconds", type=float, default=10.0, help="each sustained run")
    holds.add_argument("--region")
    holds.set_defaults(handler=with_ledger(bench_holds))
    stream = mode("stream", "publish lag of the event stream and events/s through the relay")
    stream.add_argument("--rate", type=float, default=20.0, help="transfers started per second")
    stream.add_argument("--seconds", type=float, default=10.0)
    stream.add_argument("--backlog", type=int, default=5000, help="events the relay publishes")
    stream.add_argument("--region")
    stream.set_defaults(handler=with_ledger(bench_stream))

    query = mode("query", "point-in-time balance against history size")
    query.add_argument("--sizes", default="10000,100000,1000000", help="history sizes")
    query.add_argument("--probes", type=int, default=1000, help="lookups per size")
    query.add_argument("--region")
    query.add_argument("--chart", help="write an SVG chart of latency against size here")
    query.set_defaults(handler=with_ledger(bench_query))

    reconcile = mode("reconcile", "one region's reconciliation checks from its history's start")
    reconcile.add_argument("--events", type=int, default=1_000_000, help="events to check")
    reconcile.add_argument("--region")
    reconcile.set_defaults(handler=with_ledger(bench_reconcile))

    archive = mode("archive", "archive (and verify, prune) throughput in a scratch database")
    archive.add_argument("--events", type=int, default=1_000_000, help="history size")
    archive.add_argument("--accounts", type=int, default=1_000)
    archive.add_argument("--segment-events", type=int, default=10_000, help="events per segment")
    archive.add_argument("--prune", action="store_true", help="also time the prune")
    archive.set_defaults(handler=run_async(cmd_bench_archive))

    api = mode("api", "the latency the HTTP API adds over the SDK, against the running API")
    api.add_argument("--count", type=int, default=200, help="transfers of each")
    api.add_argument("--url", help="the API's URL (default: this machine's, from the settings)")
    api.add_argument("--token", help="a write token (default: make run's development token)")
    api.set_defaults(handler=with_ledger(bench_api))

    verify = mode("verify", "verify's throughput as a region's history grows (scratch databases)")
    verify.add_argument("--sizes", default="100000,1000000", help="history sizes (events)")
    verify.add_argument("--accounts", type=int, default=1_000)
    verify.add_argument(
        "--workers", help="chain walkers to verify each size with, e.g. 1,2 (default: one per core)"
    )
    verify.add_argument("--chart", help="write an SVG chart of events/s against size here")
    verify.set_defaults(handler=run_async(cmd_bench_verify))

    store = mode("store", "the append path alone, against pgbench")
    store.add_argument("--clients", type=int, default=16, help="concurrent writers")
    store.add_argument("--accounts", type=int, default=1_000)
    store.add_argument("--seconds", type=float, default=20.0, help="how long the run lasts")
    store.set_defaults(handler=run_async(cmd_bench_store))

    e2e = mode("e2e", "open-loop load through the SDK against a baseline workflow")
    e2e.add_argument("--rates", default="5,10,20,40", help="offered transfers/s, in ramp order")
    e2e.add_argument("--seconds", type=float, default=20.0, help="how long each run lasts")
    e2e.add_argument("--region")
    e2e.add_argument("--chart", help="write an SVG chart of p99 latency against rate here")
    e2e.set_defaults(handler=run_async(cmd_bench_e2e))


def _report(args: argparse.Namespace, reports: list[Any]) -> int:
    rows = [
        {k: f"{v:.2f}" if isinstance(v, float) else v for k, v in dataclasses.asdict(r).items()}
        for r in reports
    ]
    emit(args, reports, rows, list(rows[0]))
    return 0


async def bench_latency(ledger: LedgerClient, args: argparse.Namespace) -> int:
    from ledgerflow.bench.latency import sequential_latency

    region = args.region or ledger.settings.default_region
    latency = await sequential_latency(
        ledger, args.count, region, to_region=args.to_region, progress=progress
    )
    print(file=sys.stderr)
    return _report(args, [latency])


async def bench_holds(ledger: LedgerClient, args: argparse.Namespace) -> int:
    from ledgerflow.bench.holds import holds_bench

    region = args.region or ledger.settings.default_region
    report = await holds_bench(ledger, args.count, args.clients, args.seconds, region, progress)
    print(file=sys.stderr)
    return _report(args, [report])


async def bench_stream(ledger: LedgerClient, args: argparse.Namespace) -> int:
    from ledgerflow.bench.stream import stream_bench

    region = args.region or ledger.settings.default_region
    return _report(args, [await stream_bench(ledger, args.rate, args.seconds, region,
                                             args.backlog)])  # fmt: skip


async def bench_reconcile(ledger: LedgerClient, args: argparse.Namespace) -> int:
    from ledgerflow.bench.reconcile import reconcile_bench

    region = args.region or ledger.settings.default_region
    return _report(args, [await reconcile_bench(ledger.engine(region), region, args.events)])


async def bench_query(ledger: LedgerClient, args: argparse.Namespace) -> int:
    from ledgerflow.bench.history import query_bench
    from ledgerflow.bench.scratch import scratch_database
    from ledgerflow.store.postgres import PostgresEventStore, create_engine

    settings = ledger.settings
    region = args.region or settings.default_region
    sizes = [int(size) for size in args.sizes.split(",")]
    # A scratch database of the region's schema: the seeded millions stay out
    # of the live region (whose relay would stream them all, on the cores the
    # later steps measure with).
    async with scratch_database(settings, "query") as name:
        writer = create_engine(settings.embedded_url("ledgerflow_app", name), settings, pool_size=2)
        store = PostgresEventStore(writer, region)
        owner = create_engine(
            settings.embedded_url("ledgerflow_owner", name), settings, pool_size=1
        )
        try:
            reports = await query_bench(store, sizes, args.probes, progress, owner)
        finally:
            await owner.dispose()
            await writer.dispose()
    print(file=sys.stderr)
    if args.chart:
        from ledgerflow.bench.charts import Chart, Series

        points = [r.events for r in reports]
        write_chart(args.chart, Chart(
            "point-in-time balance: latency against history size", "events in the account",
            "ms", [Series("p99", list(zip(points, [r.p99_ms for r in reports], strict=True))),
                   Series("p50", list(zip(points, [r.p50_ms for r in reports], strict=True)))],
            log_x=True, targets=[(2.0, "p99 target 2 ms")],
        ))  # fmt: skip
    return _report(args, list(reports))


async def bench_api(ledger: LedgerClient, args: argparse.Namespace) -> int:
    from ledgerflow.bench.api import api_bench

    settings = ledger.settings
    url = args.url or f"http://{settings.api_host}:{settings.api_port}"
    token = args.token or (settings.state_dir / "api-token").read_text().strip()
    report = await api_bench(ledger, url, token, args.count, progress)
    print(file=sys.stderr)
    return _report(args, [report])


async def cmd_bench_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.bench.charts import Chart, Series
    from ledgerflow.bench.verify import verify_bench

    sizes = [int(size) for size in args.sizes.split(",")]
    workers = [int(n) for n in args.workers.split(",")] if args.workers else None
    reports = await verify_bench(settings, sizes, args.accounts, progress, workers)
    print(file=sys.stderr)
    if args.chart:
        counts = sorted({r.workers for r in reports})
        series = [
            Series(f"{n} walker{'s' if n > 1 else ''}",
                   [(r.events, r.events_per_s) for r in reports if r.workers == n])
            for n in counts
        ]  # fmt: skip
        chart = Chart(
            "verify: events proven per second", "events in the region", "events/s",
            series, log_x=True, targets=[(100_000, "target 100k/s")],
        )  # fmt: skip
        write_chart(args.chart, chart)
    return _report(args, list(reports))


def write_chart(path: str, chart: Any) -> None:
    from pathlib import Path

    from ledgerflow.bench.charts import render

    Path(path).write_text(render(chart))
    print(f"chart: {path}", file=sys.stderr)


async def cmd_bench_store(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.bench.store import store_bench

    report = await store_bench(settings, args.clients, args.accounts, args.seconds, progress)
    print(file=sys.stderr)
    row = {
        k: f"{v:,.2f}" if isinstance(v, float) else v for k, v in dataclasses.asdict(report).items()
    }
    emit(args, report, [row], list(row))
    return 0


async def cmd_bench_e2e(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ledgerflow.bench.e2e import e2e_bench, one_of_each, summary
    from ledgerflow.client import LedgerClient
    from ledgerflow.wire import plain

    rates = [float(r) for r in args.rates.split(",")]
    region = args.region or settings.default_region
    async with await LedgerClient.connect(settings) as ledger:
        results = await e2e_bench(ledger, region, rates, args.seconds, progress)
        # Where the difference goes: what one workflow of each costs the server.
        costs = await one_of_each(ledger, region)
    print(file=sys.stderr)
    totals = summary(results)
    if args.chart:
        from ledgerflow.bench.charts import Chart, Series

        write_chart(args.chart, Chart(
            "end to end: p99 confirmation latency against offered rate",
            "offered transfers/s", "p99 ms (log)",
            [Series(name, [(r.offered_per_s, max(r.p99_ms, 1.0)) for r in results
                           if r.workload == name and r.completed],
                    limit=totals[f"{name}_max_per_s"] or None)
             for name in ("ledger", "ceiling", "baseline")],
            log_y=True, targets=[(250.0, "p99 target at half load")],
        ))  # fmt: skip
    if args.json:
        print(json.dumps({"runs": plain(results), "summary": totals, "histories": plain(costs)},
                         indent=2, sort_keys=True))  # fmt: skip
        return 0
    rows = [
        {k: f"{v:,.1f}" if isinstance(v, float) else v for k, v in dataclasses.asdict(r).items()}
        | {"sustained": "yes" if r.sustained else "no"}
        for r in results
    ]
    emit(args, results, rows, list(rows[0]))
    print()
    for name, value in totals.items():
        print(f"{name}: {'-' if value is None else f'{value:,.2f}'}")
    print()
    for cost in costs:
        print(f"{cost.workload}: {cost.events} history events, {cost.history_bytes:,} bytes")
    return 0


async def cmd_bench_archive(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.bench.archive import archive_bench

    report = await archive_bench(
        settings, args.events, args.accounts, args.segment_events, args.prune, progress
    )
    print(file=sys.stderr)
    row = {
        k: f"{v:,.2f}" if isinstance(v, float) else v
        for k, v in dataclasses.asdict(report).items()
        if v is not None
    }
    emit(args, report, [row], list(row))
    return 0
