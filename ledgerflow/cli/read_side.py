"""The read-side commands: `verify`, `projections status|rebuild`, and the
audit trail's output. They read the databases directly (no Temporal)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

from ledgerflow.cli.output import Commands, emit, print_table, run_async
from ledgerflow.config import Settings
from ledgerflow.domain.money import format_amount
from ledgerflow.wire import plain

EXIT_NOT_SOUND = 6


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    projections = sub.add_parser("projections", parents=[common], help="the read models")
    projections.add_argument(
        "projections_command",
        choices=["status", "rebuild"],
        help="status: position and lag; rebuild: from the events, swapped in without downtime",
    )
    projections.add_argument("--region", help="one region (default: all)")
    projections.add_argument(
        "--view", choices=["balance", "statement"], help="rebuild one view (default: both)"
    )
    projections.set_defaults(handler=run_async(cmd_projections))

    verify = sub.add_parser(
        "verify", parents=[common], help="prove the ledger unaltered and balanced (exit 6 if not)"
    )
    verify.add_argument("--region", help="one region (default: all)")
    verify.add_argument(
        "--workers",
        type=int,
        help="processes for the hash-chain walk (default: one per core from 100,000 events, "
        "else this one)",
    )
    verify.set_defaults(handler=run_async(cmd_verify))


async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.archive.objectstore import S3ObjectStore
    from ledgerflow.archive.verify import verify_region_and_archive
    from ledgerflow.audit.verify import VerifyReport
    from ledgerflow.store.postgres import create_engine

    reports: list[VerifyReport] = []
    for region in [args.region] if args.region else list(settings.regions):
        engine = create_engine(settings.reader_url(region), settings, pool_size=1)
        try:
            objects = S3ObjectStore.from_settings(settings)
            reports.append(
                await verify_region_and_archive(engine, objects, region, workers=args.workers)
            )
        finally:
            await engine.dispose()
    rows = [
        {
            "region": r.region,
            "sound": "yes" if r.sound else "NO",
            "events": r.events_checked,
            "archived_events": r.archive_events_checked,
            "accounts": r.accounts_checked,
            "transfers": r.transfers_checked,
            "events_per_s": f"{r.events_per_second:,.0f}",
            "projection_lag": r.projection_lag_events,
            "findings": len(r.findings),
        }
        for r in reports
    ]
    emit(
        args,
        [dataclasses.asdict(r) | {"sound": r.sound} for r in reports],
        rows,
        list(rows[0]),
    )
    findings = [f for r in reports for f in r.findings]
    if findings:
        print(f"error: NotSound: {findings[0]} ({len(findings)} finding(s))", file=sys.stderr)
        return EXIT_NOT_SOUND
    return 0


def _progress_line(region: str) -> Callable[[int], None]:
    def show(applied: int) -> None:
        print(f"\r{region}: {applied:,} events applied", end="", file=sys.stderr, flush=True)

    return show


async def cmd_projections(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.projections.projector import CatchUpProjector
    from ledgerflow.projections.rebuild import rebuild_views
    from ledgerflow.projections.views import VIEW_TABLES
    from ledgerflow.store.postgres import create_engine

    rows: list[dict[str, Any]] = []
    for region in [args.region] if args.region else list(settings.regions):
        if args.projections_command == "rebuild":
            owner = create_engine(settings.migration_url(region), settings, pool_size=1)
            try:
                views = (f"{args.view}_view",) if args.view else VIEW_TABLES
                applied = await rebuild_views(owner, _progress_line(region), views)
            finally:
                await owner.dispose()
            print(file=sys.stderr)
            rows.append({"region": region, "rebuilt": ", ".join(views),
                         "events_applied": applied})  # fmt: skip
            continue
        engine = create_engine(settings.reader_url(region), settings, pool_size=1)
        try:
            status = await CatchUpProjector(engine).status()
        finally:
            await engine.dispose()
        rows.append(
            {
                "region": region,
                "position": None,
                "events_applied": 0,
                "lag_events": None,
                "lag_seconds": None,
                "last_error": "never run",
                "horizon_held_s": None,
                "horizon_held_by": None,
            }
            if status is None
            else {
                "region": region,
                "position": f"{status.cursor.tx_id}:{status.cursor.position}",
                "events_applied": status.events_applied,
                "lag_events": status.lag_events,
                "lag_seconds": round(status.lag_seconds, 3),
                "last_error": status.last_error,
                "horizon_held_s": round(status.horizon_age_seconds, 1),
                "horizon_held_by": status.horizon_held_by,
            }
        )
    emit(args, rows, rows, list(rows[0]))
    return 0


def print_audit(args: argparse.Namespace, trail: Any) -> None:
    fmt = "json" if args.json else args.format
    if fmt == "json":
        print(json.dumps(plain(trail), indent=2, sort_keys=True))
        return
    if fmt == "csv":
        from ledgerflow.audit.export import trail_csv

        sys.stdout.write(trail_csv(trail))
        return
    print(
        f"{trail.account_id}: opening {format_amount(trail.opening_balance, trail.currency)}, "
        f"closing {format_amount(trail.closing_balance, trail.currency)}"
    )
    print_table(
        [
            plain(e) | {"amount": format_amount(e.amount, e.currency)}
            for e in trail.entries
        ],
        ["recorded_at", "kind", "version", "transfer_id", "counterparty", "amount",
         "balance_after", "initiated_by", "reason_type"],
    )  # fmt: skip
