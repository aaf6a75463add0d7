"""The archive's activities, bound to one region's database and the object store.

They share the worker's connection pool and one S3 client. An unreachable S3
raises an ordinary exception, which Temporal retries with backoff; an
integrity problem (`ArchiveIntegrityError`) is non-retryable and stops the
archive where it is, visibly, until an operator looks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from ledgerflow.activities.ledger import domain_errors_as_application_errors
from ledgerflow.archive.archiver import ArchivePolicy, Archiver
from ledgerflow.archive.messages import (
    PLAN_SEGMENT,
    PRUNE_ARCHIVE,
    RECORD_SEGMENT,
    UPLOAD_SEGMENT,
    PlanSegmentInput,
    PlanSegmentOutput,
    PruneInput,
    PruneOutput,
    RecordSegmentInput,
    RecordSegmentOutput,
    SegmentPlan,
    SegmentUpload,
)
from ledgerflow.archive.objectstore import ObjectStore
from ledgerflow.archive.prune import prune
from ledgerflow.domain.errors import PruningNotConfigured


class ArchiveActivities:
    """`pruner`: an engine of the pruner role, only in a worker configured to
    prune (LEDGERFLOW_ARCHIVE_PRUNE); without it the prune step refuses."""

    def __init__(
        self,
        engine: AsyncEngine,
        objects: ObjectStore,
        region: str,
        policy: ArchivePolicy,
        pruner: AsyncEngine | None = None,
    ) -> None:
        self.archiver = Archiver(engine, objects, region, policy)
        self.pruner = pruner

    def _check_region(self, region: str) -> None:
        if region != self.archiver.region:
            raise ValueError(
                f"archive step for region {region!r} reached the worker of {self.archiver.region!r}"
            )

    @activity.defn(name=PLAN_SEGMENT)
    async def plan_segment(self, data: PlanSegmentInput) -> PlanSegmentOutput:
        self._check_region(data.region)
        with domain_errors_as_application_errors():
            return PlanSegmentOutput(await self.archiver.plan())

    @activity.defn(name=UPLOAD_SEGMENT)
    async def upload_segment(self, plan: SegmentPlan) -> SegmentUpload:
        self._check_region(plan.region)
        with domain_errors_as_application_errors():
            return await self.archiver.upload(plan)

    @activity.defn(name=RECORD_SEGMENT)
    async def record_segment(self, data: RecordSegmentInput) -> RecordSegmentOutput:
        self._check_region(data.plan.region)
        with domain_errors_as_application_errors():
            return await self.archiver.record(data.plan, data.upload)

    @activity.defn(name=PRUNE_ARCHIVE)
    async def prune_archive(self, data: PruneInput) -> PruneOutput:
        self._check_region(data.region)
        with domain_errors_as_application_errors():
            if self.pruner is None:
                raise PruningNotConfigured(
                    f"the worker of region {data.region} does not prune: pruning runs as the "
                    "pruner role; set LEDGERFLOW_ARCHIVE_PRUNE=1 and "
                    "LEDGERFLOW_PRUNER_DATABASE_URL for the worker, or run `ledgerflow archive "
                    "prune` with them"
                )
            return await prune(self.pruner, self.archiver.objects)

    def all(self) -> list[Callable[..., Any]]:
        return [self.plan_segment, self.upload_segment, self.record_segment, self.prune_archive]
