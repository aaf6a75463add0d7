"""ReconcileWorkflow against scripted regions (issue 13, findings 8 and 9).

The workflow runs on the real Temporal server; the regions are stand-in
activities answering as a region would that fails half-way through its
window, or as the previous report of a narrower run would."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ledgerflow.config import Settings
from ledgerflow.converter import data_converter
from ledgerflow.reconcile.messages import (
    RECONCILE_CLEARING_LEGS,
    RECONCILE_COLLECT,
    RECONCILE_LOAD,
    RECONCILE_SOURCE_RECORDS,
    RECONCILE_STORE,
    ClearingLegsInput,
    ClearingLegsOutput,
    CollectInput,
    Cursor,
    PreviousState,
    ReconcileReport,
    ReconcileRequest,
    ReconcileStatus,
    RegionWindow,
    SourceRecordsInput,
    SourceRecordsOutput,
    StoreReportOutput,
)
from ledgerflow.reconcile.reports import report_json, state_after
from ledgerflow.workflows.reconcile import ReconcileWorkflow


@dataclass
class ScriptedRegions:
    previous: PreviousState
    #: region -> pages to answer, in order; an exception is raised, not answered.
    pages: dict[str, list[RegionWindow | Exception]]
    stored: list[ReconcileReport] = field(default_factory=list)

    @activity.defn(name=RECONCILE_LOAD)
    async def load(self) -> PreviousState:
        return self.previous

    @activity.defn(name=RECONCILE_COLLECT)
    async def collect(self, data: CollectInput) -> RegionWindow:
        answer = self.pages[data.region].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @activity.defn(name=RECONCILE_CLEARING_LEGS)
    async def legs(self, data: ClearingLegsInput) -> ClearingLegsOutput:
        return ClearingLegsOutput([])

    @activity.defn(name=RECONCILE_SOURCE_RECORDS)
    async def records(self, data: SourceRecordsInput) -> SourceRecordsOutput:
        return SourceRecordsOutput([])

    @activity.defn(name=RECONCILE_STORE)
    async def store(self, report: ReconcileReport) -> StoreReportOutput:
        self.stored.append(report)
        return StoreReportOutput(True, None)

    def all(self) -> list[Callable[..., Any]]:
        return [self.load, self.collect, self.legs, self.records, self.store]


def page(region: str, after: Cursor, upto: Cursor, more: bool) -> RegionWindow:
    return RegionWindow(region, after, upto, more, 10, 2, 5, summed=not more)


async def reconcile(env: WorkflowEnvironment, regions: ScriptedRegions, *names: str) -> Any:
    queue = f"tq-{uuid.uuid4()}"
    config = env.client.config()
    config["data_converter"] = data_converter(Settings.from_env({}))
    client = Client(**config)
    request = ReconcileRequest(task_queues=dict.fromkeys(names, queue), region_timeout_s=5)
    async with Worker(client, task_queue=queue, workflows=[ReconcileWorkflow],
                      activities=regions.all()):  # fmt: skip
        return await client.execute_workflow(
            ReconcileWorkflow.run, request, id=f"reconcile-{uuid.uuid4()}", task_queue=queue
        )


async def test_a_region_that_fails_part_way_is_a_finding_never_a_clean_run(
    temporal_env: WorkflowEnvironment,
) -> None:
    start, middle = Cursor(), Cursor(7, 70)
    regions = ScriptedRegions(
        PreviousState(),
        {
            "us": [page("us", start, Cursor(9, 90), more=False)],
            "eu": [
                page("eu", start, middle, more=True),
                ApplicationError("the database went away", non_retryable=True),
            ],
        },
    )
    summary = await reconcile(temporal_env, regions, "us", "eu")
    assert summary.status == ReconcileStatus.INCOMPLETE, summary.text
    [report] = regions.stored
    assert [(d.kind, d.region) for d in report.discrepancies] == [("region-partial", "eu")]
    eu = next(r for r in report.regions if r.region == "eu")
    # What was checked moves the cursor; its sums are not compared.
    assert (eu.upto, eu.behind, eu.summed) == (middle, True, False)


async def test_a_narrower_run_keeps_the_other_regions_cursors(
    temporal_env: WorkflowEnvironment,
) -> None:
    ap = Cursor(40, 400)
    regions = ScriptedRegions(
        PreviousState("r0", {"us": Cursor(1, 1), "ap": ap}),
        {"us": [page("us", Cursor(1, 1), Cursor(2, 2), more=False)]},
    )
    await reconcile(temporal_env, regions, "us")
    [report] = regions.stored
    assert report.carried == {"ap": ap}
    # The next full run resumes ap where it was, not at the beginning.
    after = state_after(report_json(report))
    assert after.cursors == {"us": Cursor(2, 2), "ap": ap}
