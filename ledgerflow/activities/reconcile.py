"""Reconciliation's activities, bound to one region's database.

Every regional worker serves them: `collect` and `clearing_legs` read the
worker's own region; `load_previous` and `store_report` run on the
reconciling region's worker (the default region), where the reports live.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from ledgerflow.archive.objectstore import ObjectStore
from ledgerflow.reconcile.collect import clearing_legs, collect_window, source_records
from ledgerflow.reconcile.messages import (
    RECONCILE_CLEARING_LEGS,
    RECONCILE_COLLECT,
    RECONCILE_LOAD,
    RECONCILE_MARK,
    RECONCILE_SOURCE_RECORDS,
    RECONCILE_STORE,
    ClearingLegsInput,
    ClearingLegsOutput,
    CollectInput,
    MarkCheckedInput,
    PreviousState,
    ReconcileReport,
    RegionWindow,
    SourceRecordsInput,
    SourceRecordsOutput,
    StoreReportOutput,
)
from ledgerflow.reconcile.reports import mark_checked, previous_state, store_report


class ReconcileActivities:
    def __init__(
        self, engine: AsyncEngine, objects: ObjectStore, region: str, retention: timedelta
    ) -> None:
        self.engine = engine
        self.objects = objects
        self.region = region
        self.retention = retention

    def _check_region(self, region: str) -> None:
        if region != self.region:
            raise ValueError(f"reconcile step for {region!r} reached the worker of {self.region!r}")

    @activity.defn(name=RECONCILE_LOAD)
    async def load_previous(self) -> PreviousState:
        return await previous_state(self.engine)

    @activity.defn(name=RECONCILE_COLLECT)
    async def collect(self, data: CollectInput) -> RegionWindow:
        self._check_region(data.region)
        return await collect_window(self.engine, data)

    @activity.defn(name=RECONCILE_CLEARING_LEGS)
    async def clearing_legs(self, data: ClearingLegsInput) -> ClearingLegsOutput:
        self._check_region(data.region)
        return await clearing_legs(self.engine, data)

    @activity.defn(name=RECONCILE_SOURCE_RECORDS)
    async def source_records(self, data: SourceRecordsInput) -> SourceRecordsOutput:
        self._check_region(data.region)
        return await source_records(self.engine, data)

    @activity.defn(name=RECONCILE_MARK)
    async def mark_checked(self, data: MarkCheckedInput) -> None:
        self._check_region(data.region)
        await mark_checked(self.engine, data)

    @activity.defn(name=RECONCILE_STORE)
    async def store(self, report: ReconcileReport) -> StoreReportOutput:
        return await store_report(self.engine, self.objects, report, self.retention)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.load_previous,
            self.collect,
            self.clearing_legs,
            self.source_records,
            self.mark_checked,
            self.store,
        ]
