"""The ledger's Temporal Schedules, created or updated idempotently.

`apply_schedules` runs at every worker start (unless LEDGERFLOW_SCHEDULES=off)
and from `ledgerflow schedules apply`. Each region gets `archive-<region>`:
every LEDGERFLOW_ARCHIVE_INTERVAL_S it starts an ArchiveWorkflow on the
region's task queue, and skips a run while the previous one is still going
(overlap policy SKIP), so archiving is never run twice at once by the
schedule. The ledger gets one `reconcile` schedule (applied with the
reconciling region, the default one): every LEDGERFLOW_RECONCILE_INTERVAL_S
a ReconcileWorkflow over all regions, also with overlap SKIP. The schedules
show on the Web UI's Schedules page.

A worker start only *creates* a schedule that is missing (`update=False`):
it never overwrites one, so an operator's edit in the Web UI (an interval,
the prune flag, a pause) stands, and workers started with different settings
cannot make the schedules flap (issue 13, finding 11). `ledgerflow schedules
apply` is the deliberate change: it updates existing schedules in place to
the settings it runs with, keeping their paused state and note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from ledgerflow.archive.messages import ArchiveRequest
from ledgerflow.config import Settings
from ledgerflow.reconcile.messages import ReconcileRequest
from ledgerflow.workflow_names import ARCHIVE_WORKFLOW, RECONCILE_WORKFLOW


@dataclass(frozen=True)
class AppliedSchedule:
    schedule_id: str
    created: bool


def archive_schedule(settings: Settings, region: str) -> Schedule:
    request = ArchiveRequest(
        region=region,
        prune=settings.archive_prune,
        retry_window_s=int(settings.archive_retry_window.total_seconds()),
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ARCHIVE_WORKFLOW,
            request,
            id=settings.archive_schedule_id(region),
            task_queue=settings.task_queue(region),
            static_summary=f"Archive region {region}'s events to S3",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.archive_interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            note=f"Segments region {region}'s events older than "
            f"{settings.archive_min_age} to s3://{settings.s3_bucket}/{region}/"
        ),
    )


def reconcile_request(settings: Settings) -> ReconcileRequest:
    return ReconcileRequest(
        task_queues={r: settings.task_queue(r) for r in settings.regions},
        in_transit_sla_s=int(settings.in_transit_sla.total_seconds()),
        region_timeout_s=int(settings.reconcile_region_timeout.total_seconds()),
    )


def reconcile_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW,
            reconcile_request(settings),
            id=settings.reconcile_schedule_id,
            task_queue=settings.task_queue(settings.reconcile_region),
            static_summary=f"Reconcile regions {', '.join(settings.regions)}",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.reconcile_interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            note="Verifies each region since the last run, pairs up cross-region legs and "
            "clearing accounts, and stores the report in PostgreSQL and S3"
        ),
    )


async def apply_schedules(
    client: Client,
    settings: Settings,
    regions: Sequence[str] | None = None,
    *,
    update: bool = True,
) -> list[AppliedSchedule]:
    """Create the missing schedules; with `update`, bring existing ones to
    these settings too."""
    applied = []
    wanted = [
        (settings.archive_schedule_id(region), archive_schedule(settings, region))
        for region in regions or settings.regions
    ]
    if settings.reconcile_region in (regions or settings.regions):
        wanted.append((settings.reconcile_schedule_id, reconcile_schedule(settings)))
    for schedule_id, schedule in wanted:
        try:
            await client.create_schedule(schedule_id, schedule)
            applied.append(AppliedSchedule(schedule_id, created=True))
        except ScheduleAlreadyRunningError:
            if not update:
                applied.append(AppliedSchedule(schedule_id, created=False))
                continue

            def keep_state(
                current: ScheduleUpdateInput, new: Schedule = schedule
            ) -> ScheduleUpdate:
                new.state = current.description.schedule.state
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(keep_state)
            applied.append(AppliedSchedule(schedule_id, created=False))
    return applied
