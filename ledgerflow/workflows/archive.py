"""ArchiveWorkflow: copy one region's old events to S3, segment by segment.

Started by the region's Temporal Schedule (`archive-<region>`) and on demand
(`ledgerflow archive --region R --now`). Each segment is three activities:
plan (fix its range in PostgreSQL), upload (write, read back, compare
checksums) and record (store the manifest, mark the events archived); each
is idempotent, so a retry or a rerun after a crash at any step neither
duplicates nor skips a segment. When pruning is on, a last activity verifies
the new segments once more and prunes the hot store.

Deterministic code only: the activities are called by name.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from ledgerflow.archive.messages import (
        PLAN_SEGMENT,
        PRUNE_ARCHIVE,
        RECORD_SEGMENT,
        UPLOAD_SEGMENT,
        ArchiveRequest,
        ArchiveResult,
        PlanSegmentInput,
        PlanSegmentOutput,
        PruneInput,
        PruneOutput,
        RecordSegmentInput,
        RecordSegmentOutput,
        SegmentUpload,
    )
    from ledgerflow.workflows.policies import RETRY_POLICY

T = TypeVar("T")

#: One segment's upload moves a few MB: generous, so a slow S3 is not a failure.
STEP_TIMEOUT = timedelta(minutes=2)
#: S3 errors retry with backoff up to the request's retry window.
S3_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=RETRY_POLICY.non_retryable_error_types,
)


@workflow.defn
class ArchiveWorkflow:
    def __init__(self) -> None:
        self._segments = 0
        self._events = 0

    @workflow.run
    async def run(self, request: ArchiveRequest) -> ArchiveResult:
        window = timedelta(seconds=request.retry_window_s)

        async def step(name: str, arg: object, result_type: type[T]) -> T:
            result: T = await workflow.execute_activity(
                name,
                arg,
                result_type=result_type,
                task_queue=workflow.info().task_queue,
                start_to_close_timeout=STEP_TIMEOUT,
                schedule_to_close_timeout=window,
                retry_policy=S3_RETRY,
            )
            return result

        self._segments, self._events = request.segments_before, request.events_before
        last_seq, digest = 0, None
        for _ in range(request.max_segments):
            planned = await step(PLAN_SEGMENT, PlanSegmentInput(request.region), PlanSegmentOutput)
            if planned.plan is None:
                break
            upload = await step(UPLOAD_SEGMENT, planned.plan, SegmentUpload)
            done = await step(
                RECORD_SEGMENT, RecordSegmentInput(planned.plan, upload), RecordSegmentOutput
            )
            self._segments += 1
            self._events += done.events
            last_seq, digest = done.last_seq, done.digest
            workflow.set_current_details(
                f"region {request.region}: {self._segments} segment(s), {self._events} events "
                f"archived; through seq {last_seq}"
            )
        else:
            # A large backlog: start afresh so the history stays short.
            workflow.continue_as_new(
                ArchiveRequest(
                    region=request.region,
                    prune=request.prune,
                    max_segments=request.max_segments,
                    retry_window_s=request.retry_window_s,
                    segments_before=self._segments,
                    events_before=self._events,
                )
            )
        pruned = PruneOutput(0, None, 0)
        if request.prune:
            pruned = await step(PRUNE_ARCHIVE, PruneInput(request.region), PruneOutput)
        return ArchiveResult(
            region=request.region,
            segments=self._segments,
            events=self._events,
            archived_through_seq=last_seq,
            last_digest=digest,
            pruned_events=pruned.events_pruned,
            pruned_through_segment=pruned.pruned_through_segment,
        )

    @workflow.query
    def progress(self) -> dict[str, int]:
        return {"segments": self._segments, "events": self._events}
