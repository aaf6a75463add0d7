"""ReconcileWorkflow: check every region and the money between them.

Started by the Temporal Schedule `reconcile` (every 5 minutes by default) and
on demand (`ledgerflow reconcile --now`), on the reconciling region's task
queue. It continues from the newest stored report: for each region it runs
the checks of `verify` over the events written since that report's cursor
(an activity on the region's own task queue, so each region reads its own
database), then does the cross-region checks (`ledgerflow.reconcile.matching`)
and stores the report in PostgreSQL and S3. The result is a summary; the
status (`clean`, `discrepancies_found`, `incomplete`) is also the
`LedgerStatus` search attribute, so runs that found something can be listed
in the Web UI: `WorkflowType = "ReconcileWorkflow" AND LedgerStatus =
"discrepancies_found"`.

Deterministic code only: the activities are called by name.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ledgerflow import search_attributes as sa
    from ledgerflow.reconcile.matching import (
        check_pairs,
        global_totals,
        itemise_pair,
        judge_orphans,
        match_legs,
        orphans,
        settle,
    )
    from ledgerflow.reconcile.messages import (
        RECONCILE_CLEARING_LEGS,
        RECONCILE_COLLECT,
        RECONCILE_LOAD,
        RECONCILE_MARK,
        RECONCILE_SOURCE_RECORDS,
        RECONCILE_STORE,
        ClearingLeg,
        ClearingLegsInput,
        ClearingLegsOutput,
        CollectInput,
        Cursor,
        Discrepancy,
        InTransit,
        MarkCheckedInput,
        PairCheck,
        PreviousState,
        ReconcileReport,
        ReconcileRequest,
        ReconcileStatus,
        ReconcileSummary,
        RegionSummary,
        RegionWindow,
        SourceRecordsInput,
        SourceRecordsOutput,
        StoreReportOutput,
    )
    from ledgerflow.workflows.policies import RETRY_POLICY

STEP_TIMEOUT = timedelta(minutes=2)
#: Storing retries an unreachable S3 for this long before the run fails.
STORE_WINDOW = timedelta(minutes=10)
#: Pages of one region's window per run; a bigger backlog is left to the next run.
MAX_PAGES = 25
#: Runs that raced (both continuing from one report) redo their work this often.
MAX_ATTEMPTS = 3
#: Findings that say what was not checked (the run is `incomplete`), as
#: opposed to money that does not add up (`discrepancies_found`).
NOT_CHECKED = frozenset({"region-unreachable", "region-partial"})
#: Patch marker: each region records how far a stored report checked it.
RECONCILE_MARKS = "reconcile-marks"
#: Patch marker: arrivals seen without their source leg are judged in the run.
RECONCILE_ORPHANS = "reconcile-orphans"


@workflow.defn
class ReconcileWorkflow:
    def __init__(self) -> None:
        self._details = "starting"

    @workflow.run
    async def run(self, request: ReconcileRequest) -> ReconcileSummary:
        for _ in range(MAX_ATTEMPTS):
            report = await self._reconcile(request)
            stored: StoreReportOutput = await workflow.execute_activity(
                RECONCILE_STORE,
                report,
                result_type=StoreReportOutput,
                start_to_close_timeout=STEP_TIMEOUT,
                schedule_to_close_timeout=STORE_WINDOW,
                retry_policy=RETRY_POLICY,
            )
            if stored.stored:
                break
            self._set_details("another run stored a report first; reconciling again from it")
        else:
            raise ApplicationError(
                f"{MAX_ATTEMPTS} attempts each lost the race to another reconciliation run",
                type="ReconcileRaced",
            )
        if workflow.patched(RECONCILE_MARKS):
            # Each region records how far this stored report checked it: the
            # prune function goes no further (issue 13, finding 6).
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        RECONCILE_MARK,
                        MarkCheckedInput(s.region, report.report_id, s.upto),
                        task_queue=request.task_queues[s.region],
                        start_to_close_timeout=STEP_TIMEOUT,
                        schedule_to_close_timeout=timedelta(seconds=request.region_timeout_s),
                        retry_policy=RETRY_POLICY,
                    )
                    for s in report.regions
                    if s.reached and s.upto != s.after
                ),
                return_exceptions=True,  # a region down now is marked by the next run
            )
        summary = _summary(report, stored.s3_key)
        workflow.upsert_search_attributes([sa.STATUS.value_set(report.status)])
        self._set_details(summary.text)
        return summary

    async def _reconcile(self, request: ReconcileRequest) -> ReconcileReport:
        started = workflow.now()
        previous: PreviousState = await workflow.execute_activity(
            RECONCILE_LOAD,
            result_type=PreviousState,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=RETRY_POLICY,
        )
        regions = sorted(request.task_queues)
        self._set_details(f"checking regions {', '.join(regions)}")
        collected = await asyncio.gather(
            *(self._collect(request, r, previous.cursors.get(r, Cursor())) for r in regions)
        )
        open_items = {item.transfer_id: item for item in previous.in_transit}
        summaries, found = [], []
        for region, (pages, error) in zip(regions, collected, strict=True):
            after = previous.cursors.get(region, Cursor())
            if not pages:
                summaries.append(RegionSummary(region, False, after, after))
                found.append(
                    Discrepancy("region-unreachable", f"not checked this run: {error}", region)
                )
                continue
            if error is not None:
                # Some pages were checked, then the region failed: what was
                # checked stands, the rest is not, and the run says so (issue
                # 13, finding 8); the region's sums are not compared.
                found.append(
                    Discrepancy("region-partial",
                                f"checked {len(pages)} page(s), then stopped: {error}", region)
                )  # fmt: skip
            legs = [leg for page in pages for leg in page.legs]
            match_legs(open_items, legs)
            found += [f for page in pages for f in page.findings]
            last = pages[-1]
            summaries.append(
                RegionSummary(
                    region, True, after, last.upto,
                    events_checked=sum(p.events_checked for p in pages),
                    accounts_checked=sum(p.accounts_checked for p in pages),
                    transfers_checked=sum(p.transfers_checked for p in pages),
                    legs_seen=len(legs), behind=last.more or error is not None,
                    summed=last.summed and error is None,
                    totals=last.totals, clearing=last.clearing,
                )
            )  # fmt: skip
        found += await self._judge_orphans(request, open_items, summaries)
        up_to_date = {s.region for s in summaries if s.reached and not s.behind}
        in_transit, overdue = settle(
            open_items, workflow.now(), timedelta(seconds=request.in_transit_sla_s), up_to_date
        )
        found += overdue
        # Sums are compared only where a region's were taken as of its cursor
        # (a run that stopped mid-window has none).
        reached = {s.region: s for s in summaries if s.reached and s.summed}
        pairs = check_pairs({r: s.clearing for r, s in reached.items()}, in_transit)
        for check in pairs:
            if not check.ok:
                found += await self._itemise(request, check, reached, in_transit)
        totals = global_totals(s.totals for s in reached.values())
        if len(reached) == len(regions):
            found += [
                Discrepancy("global-total", f"postings in {cur} sum to {total} across regions")
                for cur, total in totals.items()
                if total
            ]
        money = [d for d in found if d.kind not in NOT_CHECKED]
        status = (
            ReconcileStatus.DISCREPANCIES_FOUND
            if money
            else ReconcileStatus.INCOMPLETE
            if found
            else ReconcileStatus.CLEAN
        )
        info = workflow.info()
        return ReconcileReport(
            # The run id's tail: its head is a timestamp (UUIDv7), shared by runs
            # started in the same millisecond.
            report_id=f"reconcile-{started:%Y%m%dT%H%M%S}-{info.run_id[-12:]}",
            previous_id=previous.report_id,
            workflow_id=info.workflow_id,
            started_at=started,
            finished_at=workflow.now(),
            status=status,
            regions=summaries,
            pairs=pairs,
            global_totals=totals,
            in_transit=in_transit,
            discrepancies=found,
            carried={r: c for r, c in previous.cursors.items() if r not in request.task_queues},
        )

    async def _collect(
        self, request: ReconcileRequest, region: str, after: Cursor
    ) -> tuple[list[RegionWindow], str | None]:
        """The region's window, page by page; no pages if its worker did not answer."""
        pages: list[RegionWindow] = []
        for n in range(MAX_PAGES):
            try:
                page: RegionWindow = await workflow.execute_activity(
                    RECONCILE_COLLECT,
                    CollectInput(region, after, request.page_events, sums=n == MAX_PAGES - 1),
                    result_type=RegionWindow,
                    task_queue=request.task_queues[region],
                    start_to_close_timeout=STEP_TIMEOUT,
                    # A region that is down is reported, not waited for forever.
                    schedule_to_close_timeout=timedelta(seconds=request.region_timeout_s),
                    retry_policy=RETRY_POLICY,
                )
            except ActivityError as err:
                return pages, str(err.cause or err)
            pages.append(page)
            after = page.upto
            if not page.more:
                break
        return pages, None

    async def _judge_orphans(
        self,
        request: ReconcileRequest,
        open_items: dict[str, InTransit],
        summaries: list[RegionSummary],
    ) -> list[Discrepancy]:
        """An arrival seen without its source leg: ask the source region for
        its record of the transfer, now. Unless that region did post the leg
        (after it was read), it is money from nowhere or a contradiction, and
        reported in this run, not after the in-transit SLA. Reported items
        are no longer carried as in transit (the clearing pair then shows
        them too, run after run, until someone puts the ledger right)."""
        found = orphans(open_items)
        if not found or not workflow.patched(RECONCILE_ORPHANS):
            return []
        reached = {s.region for s in summaries if s.reached}
        wrong: list[Discrepancy] = []
        for region in sorted(found):
            if region not in reached or region not in request.task_queues:
                continue  # judged when that region answers (or after the SLA)
            items = found[region]
            try:
                records: SourceRecordsOutput = await workflow.execute_activity(
                    RECONCILE_SOURCE_RECORDS,
                    SourceRecordsInput(region, [item.transfer_id for item in items]),
                    result_type=SourceRecordsOutput,
                    task_queue=request.task_queues[region],
                    start_to_close_timeout=STEP_TIMEOUT,
                    schedule_to_close_timeout=timedelta(seconds=request.region_timeout_s),
                    retry_policy=RETRY_POLICY,
                )
            except ActivityError:
                continue
            judged = judge_orphans(region, items, {r.transfer_id: r for r in records.records})
            for discrepancy in judged:
                open_items.pop(discrepancy.transfer_id or "", None)
            wrong += judged
        return wrong

    async def _itemise(
        self,
        request: ReconcileRequest,
        check: PairCheck,
        reached: dict[str, RegionSummary],
        in_transit: list[InTransit],
    ) -> list[Discrepancy]:
        """A pair does not add up: list both clearing accounts' legs and name
        the transfers that do not net out."""
        legs: list[ClearingLeg] = []
        for region in check.regions:
            peer = next(r for r in check.regions if r != region)
            listed: ClearingLegsOutput = await workflow.execute_activity(
                RECONCILE_CLEARING_LEGS,
                ClearingLegsInput(region, peer, check.currency, reached[region].upto),
                result_type=ClearingLegsOutput,
                task_queue=request.task_queues[region],
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
            legs += listed.legs
        return itemise_pair(check, legs, in_transit)

    def _set_details(self, details: str) -> None:
        self._details = details
        workflow.set_current_details(details)

    @workflow.query
    def progress(self) -> str:
        return self._details


def _summary(report: ReconcileReport, s3_key: str | None) -> ReconcileSummary:
    unreachable = [s.region for s in report.regions if not s.reached]
    events = sum(s.events_checked for s in report.regions)
    text = (
        f"{report.status}: {len(report.discrepancies)} discrepancies, "
        f"{len(report.in_transit)} in transit, {events} events checked in "
        f"{', '.join(s.region for s in report.regions)}"
    )
    if unreachable:
        text += f" ({', '.join(unreachable)} unreachable)"
    behind = [s.region for s in report.regions if s.behind]
    if behind:
        text += f" ({', '.join(behind)} behind: the next run continues)"
    return ReconcileSummary(
        report_id=report.report_id,
        status=report.status,
        discrepancies=len(report.discrepancies),
        in_transit=len(report.in_transit),
        events_checked=events,
        regions=[s.region for s in report.regions],
        unreachable=unreachable,
        s3_key=s3_key,
        text=text,
    )
