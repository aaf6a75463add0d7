"""`bench store` (and the other benchmarks that need no ledger client)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ledgerflow.cli.output import emit
from ledgerflow.config import Settings


def progress(line: str) -> None:
    print(f"\r{line:<70}", end="", file=sys.stderr, flush=True)


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

    from ledgerflow.bench.e2e import e2e_bench, summary
    from ledgerflow.cli.output import plain
    from ledgerflow.client import LedgerClient

    rates = [float(r) for r in args.rates.split(",")]
    async with await LedgerClient.connect(settings) as ledger:
        results = await e2e_bench(
            ledger, args.region or settings.default_region, rates, args.seconds, progress
        )
    print(file=sys.stderr)
    totals = summary(results)
    if args.json:
        print(json.dumps({"runs": plain(results), "summary": totals}, indent=2, sort_keys=True))
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
    return 0
