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
