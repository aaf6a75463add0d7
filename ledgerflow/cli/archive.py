"""The archive's commands: `archive --now`, `archive status|verify|prune`, and
`schedules apply`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ledgerflow.cli.output import Commands, Unreachable, emit, run_async
from ledgerflow.cli.read_side import EXIT_NOT_SOUND
from ledgerflow.config import Settings


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    archive = sub.add_parser(
        "archive",
        parents=[common],
        help="the S3 archive: run it now, its status, verify it, prune the hot store",
        description="`archive --region R --now` runs the ArchiveWorkflow at once and waits; "
        "`archive status|verify|prune` read or act on the archive directly.",
    )
    archive.add_argument(
        "archive_command",
        nargs="?",
        choices=["status", "verify", "prune"],
        help="status: progress and backlog; verify: download and check everything "
        "(exit 6 if not sound); prune: remove verified archived events from the hot store",
    )
    archive.add_argument("--region", help="one region (default: all; --now needs one)")
    archive.add_argument("--now", action="store_true", help="run the ArchiveWorkflow now")
    archive.add_argument("--prune", action="store_true", help="with --now: prune after archiving")
    archive.add_argument(
        "--s3-only",
        action="store_true",
        help="verify: from S3 alone, trusting nothing in PostgreSQL (the digest chain, every "
        "manifest and segment under the keys they name, every version)",
    )
    archive.set_defaults(handler=run_async(cmd_archive))
    schedules = sub.add_parser(
        "schedules",
        parents=[common],
        help="the Temporal Schedules (archive per region, reconcile)",
    )
    schedules.add_argument("schedules_command", choices=["apply"])
    schedules.set_defaults(handler=run_async(cmd_schedules))


async def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.archive.objectstore import S3ObjectStore
    from ledgerflow.store.postgres import create_engine

    if args.now:
        return await _archive_now(args, settings)
    if args.archive_command is None:
        raise ValueError("say what to do: archive --region R --now, or archive status|verify|prune")
    if args.archive_command == "prune" and not args.region:
        raise ValueError("archive prune needs --region")
    objects = S3ObjectStore.from_settings(settings)
    rows: list[dict[str, object]] = []
    values: list[object] = []
    findings: list[object] = []
    for region in [args.region] if args.region else list(settings.regions):
        settings.require_region(region)
        # Status and verify only read: the read-only role; prune deletes.
        if args.archive_command == "prune":
            from ledgerflow.store.migrate import pruner_url

            # Only the pruner role may vouch for segments and delete.
            url = pruner_url(settings, region)
        else:
            url = settings.reader_url(region)
        engine = create_engine(url, settings, pool_size=1)
        try:
            if args.archive_command == "status":
                from ledgerflow.archive.status import archive_status

                status = await archive_status(engine, region, settings.archive_min_age)
                values.append(status)
                rows.append(
                    {
                        "region": region,
                        "segments": status.segments,
                        "events_archived": status.events_archived,
                        "through_seq": status.archived_through_seq,
                        "last_archived_at": status.last_archived_at,
                        "in_flight": status.in_flight_segment,
                        "pruned_through": status.pruned_through_segment,
                        "hot_events": status.hot_events,
                        "backlog": status.backlog_events,
                    }
                )
            elif args.archive_command == "verify":
                from ledgerflow.archive.verify import verify_archive
                from ledgerflow.archive.verify_s3 import verify_archive_from_s3

                report = (
                    await verify_archive_from_s3(objects, region)
                    if args.s3_only
                    else await verify_archive(engine, objects, region)
                )
                values.append(dataclasses.asdict(report) | {"sound": report.sound})
                findings += report.findings
                rows.append(
                    {
                        "region": region,
                        "sound": "yes" if report.sound else "NO",
                        "segments": report.segments_checked,
                        "events": report.events_checked,
                        "mb": f"{report.bytes_downloaded / 1e6:.1f}",
                        "events_per_s": f"{report.events_per_second:,.0f}",
                        "findings": len(report.findings),
                    }
                )
            else:
                from ledgerflow.archive.prune import prune

                pruned = await prune(engine, objects)
                values.append(pruned)
                rows.append({"region": region} | dataclasses.asdict(pruned))
        finally:
            await engine.dispose()
    emit(args, values, rows, list(rows[0]))
    if findings:
        print(f"error: NotSound: {findings[0]} ({len(findings)} finding(s))", file=sys.stderr)
        return EXIT_NOT_SOUND
    return 0


async def _archive_now(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.common import WorkflowIDConflictPolicy

    from ledgerflow.archive.messages import ArchiveRequest
    from ledgerflow.client import connect_temporal, ledger_error_from
    from ledgerflow.workflows.archive import ArchiveWorkflow

    if not args.region:
        raise ValueError("archive --now needs --region")
    settings.require_region(args.region)
    try:
        client = await connect_temporal(settings)
    except RuntimeError as exc:
        raise Unreachable(f"cannot reach Temporal at {settings.temporal_address}") from exc
    request = ArchiveRequest(
        region=args.region,
        prune=args.prune or settings.archive_prune,
        retry_window_s=int(settings.archive_retry_window.total_seconds()),
    )
    print(
        f"workflow archive-{args.region}-now on {settings.task_queue(args.region)}", file=sys.stderr
    )
    try:
        # A fixed id: a second `--now` while one runs waits for that run.
        result = await client.execute_workflow(
            ArchiveWorkflow.run,
            request,
            id=f"archive-{args.region}-now",
            task_queue=settings.task_queue(args.region),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except Exception as exc:
        error = ledger_error_from(exc)
        if error is not None:
            raise error from exc
        raise
    emit(args, result, [dataclasses.asdict(result)], list(dataclasses.asdict(result)))
    return 0


async def cmd_schedules(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.client import connect_temporal
    from ledgerflow.schedules import apply_schedules

    try:
        client = await connect_temporal(settings)
    except RuntimeError as exc:
        raise Unreachable(f"cannot reach Temporal at {settings.temporal_address}") from exc
    applied = await apply_schedules(client, settings)
    emit(
        args,
        applied,
        [
            {
                "schedule_id": a.schedule_id,
                "action": "created" if a.created else "updated",
                "every": str(
                    settings.reconcile_interval
                    if a.schedule_id == settings.reconcile_schedule_id
                    else settings.archive_interval
                ),
            }
            for a in applied
        ],
        ["schedule_id", "action", "every"],
    )
    return 0
