"""`reconcile --now` and `reconcile report [--last | --id ID]`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ledgerflow.cli.output import Commands, Unreachable, emit, print_table, run_async
from ledgerflow.cli.read_side import EXIT_NOT_SOUND
from ledgerflow.config import Settings

EXIT_INCOMPLETE = 4


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    reconcile = sub.add_parser(
        "reconcile",
        parents=[common],
        help="reconcile the regions: run it now, or print a report",
        description="`reconcile --now` runs the ReconcileWorkflow at once and waits (exit 6 "
        "when it finds discrepancies, 4 when a region could not be checked); "
        "`reconcile report` prints the latest report (or --id ID).",
    )
    reconcile.add_argument("reconcile_command", nargs="?", choices=["report"])
    reconcile.add_argument("--now", action="store_true", help="run the ReconcileWorkflow now")
    reconcile.add_argument("--last", action="store_true", help="report: the latest (default)")
    reconcile.add_argument("--id", dest="report_id", help="report: this report id")
    reconcile.set_defaults(handler=run_async(cmd_reconcile))


def exit_code(status: str) -> int:
    from ledgerflow.reconcile.messages import ReconcileStatus

    return {
        ReconcileStatus.CLEAN: 0,
        ReconcileStatus.DISCREPANCIES_FOUND: EXIT_NOT_SOUND,
        ReconcileStatus.INCOMPLETE: EXIT_INCOMPLETE,
    }.get(status, 1)


async def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    if args.now:
        return await _reconcile_now(args, settings)
    if args.reconcile_command != "report":
        raise ValueError("say what to do: reconcile --now, or reconcile report [--last]")
    from ledgerflow.reconcile.reports import latest_report
    from ledgerflow.store.postgres import create_engine

    engine = create_engine(settings.reader_url(settings.reconcile_region), settings, pool_size=1)
    try:
        report = await latest_report(engine, args.report_id)
    finally:
        await engine.dispose()
    if report is None:
        what = f"report {args.report_id!r}" if args.report_id else "reconciliation report"
        print(f"error: no {what} yet (run `ledgerflow reconcile --now`)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)
    return exit_code(report["status"])


def print_report(report: dict[str, Any]) -> None:
    print(
        f"report {report['report_id']} ({report['workflow_id']}): {report['status']}, "
        f"{len(report['discrepancies'])} discrepancies, {len(report['in_transit'])} in transit"
    )
    print(f"  from {report['started_at']} to {report['finished_at']}; previous: "
          f"{report['previous_id'] or '(none: the first run)'}")  # fmt: skip
    print()
    print_table(
        [
            {
                "region": r["region"],
                "checked": ("behind" if r.get("behind") else "yes")
                if r["reached"]
                else "UNREACHABLE",
                "events": r["events_checked"],
                "transfers": r["transfers_checked"],
                "legs": r["legs_seen"],
                "through": f"{r['upto']['tx_id']}/{r['upto']['position']}",
                "totals": " ".join(f"{c}:{t}" for c, t in sorted(r["totals"].items())) or "-",
            }
            for r in report["regions"]
        ],
        ["region", "checked", "events", "transfers", "legs", "through", "totals"],
    )
    if report["pairs"]:
        print()
        print_table(
            [
                {
                    "pair": "/".join(p["regions"]),
                    "currency": p["currency"],
                    "clearing_sum": p["balance"],
                    "in_transit": p["in_transit"],
                    "ok": "yes" if p["balance"] == p["in_transit"] else "NO",
                }
                for p in report["pairs"]
            ],
            ["pair", "currency", "clearing_sum", "in_transit", "ok"],
        )
    if report["discrepancies"]:
        print()
        print_table(
            report["discrepancies"], ["kind", "region", "transfer_id", "account_id", "detail"]
        )


async def _reconcile_now(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.common import WorkflowIDConflictPolicy

    from ledgerflow.client import connect_temporal
    from ledgerflow.schedules import reconcile_request
    from ledgerflow.workflows.reconcile import ReconcileWorkflow

    try:
        client = await connect_temporal(settings)
    except RuntimeError as exc:
        raise Unreachable(f"cannot reach Temporal at {settings.temporal_address}") from exc
    queue = settings.task_queue(settings.reconcile_region)
    print(f"workflow reconcile-now on {queue}", file=sys.stderr)
    # A fixed id: a second `--now` while one runs waits for that run.
    summary = await client.execute_workflow(
        ReconcileWorkflow.run,
        reconcile_request(settings),
        id="reconcile-now",
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="Reconcile the regions now (ledgerflow reconcile --now)",
    )
    row = {
        "report_id": summary.report_id,
        "status": summary.status,
        "discrepancies": summary.discrepancies,
        "in_transit": summary.in_transit,
        "events_checked": summary.events_checked,
        "unreachable": ",".join(summary.unreachable) or "-",
    }
    emit(args, summary, [row], list(row))
    return exit_code(summary.status)
