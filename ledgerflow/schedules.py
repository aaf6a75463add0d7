"""The ledger's Temporal Schedules, created or updated idempotently.

`apply_schedules` runs at every worker start (unless LEDGERFLOW_SCHEDULES=off)
and from `ledgerflow schedules apply`. Each region gets `archive-<region>`:
every LEDGERFLOW_ARCHIVE_INTERVAL_S it starts an ArchiveWorkflow on the
region's task queue, and skips a run while the previous one is still going
(overlap policy SKIP), so archiving is never run twice at once by the
schedule. The schedules show on the Web UI's Schedules page.

An existing schedule is updated in place (its paused state and note are
kept), so changing the interval or the prune setting takes effect at the next
worker start without losing an operator's pause.
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
from workflows.archive import ArchiveWorkflow


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
            ArchiveWorkflow.run,
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


async def apply_schedules(
    client: Client, settings: Settings, regions: Sequence[str] | None = None
) -> list[AppliedSchedule]:
    applied = []
    for region in regions or settings.regions:
        schedule_id = settings.archive_schedule_id(region)
        schedule = archive_schedule(settings, region)
        try:
            await client.create_schedule(schedule_id, schedule)
            applied.append(AppliedSchedule(schedule_id, created=True))
        except ScheduleAlreadyRunningError:

            def keep_state(
                current: ScheduleUpdateInput, new: Schedule = schedule
            ) -> ScheduleUpdate:
                new.state = current.description.schedule.state
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(keep_state)
            applied.append(AppliedSchedule(schedule_id, created=False))
    return applied
