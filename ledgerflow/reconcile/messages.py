"""Inputs, outputs and the report of ReconcileWorkflow (standard library only:
the workflow imports this module through the sandbox)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

RECONCILE_LOAD = "reconcile_load_previous"
RECONCILE_COLLECT = "reconcile_collect_region"
RECONCILE_CLEARING_LEGS = "reconcile_clearing_legs"
RECONCILE_STORE = "reconcile_store_report"
RECONCILE_SOURCE_RECORDS = "reconcile_source_records"
RECONCILE_MARK = "reconcile_mark_checked"


class ReconcileStatus:
    CLEAN = "clean"
    DISCREPANCIES_FOUND = "discrepancies_found"
    #: Some region did not answer in time: what could be checked was, and the
    #: rest is checked by the next run (its cursor did not move).
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class ReconcileRequest:
    """`task_queues` maps each region to reconcile to its task queue (the
    schedule and the CLI fill it from the settings)."""

    task_queues: dict[str, str]
    in_transit_sla_s: int = 600
    #: How long to wait for one region's worker before reporting it unreachable.
    region_timeout_s: int = 120
    #: Events per collection page (one activity call).
    page_events: int = 20_000


@dataclass(frozen=True)
class Cursor:
    """A place in a region's global order (tx_id, position); see `TailCursor`."""

    tx_id: int = 0
    position: int = 0


@dataclass(frozen=True)
class Discrepancy:
    """One thing that does not reconcile, itemised."""

    kind: str
    detail: str
    region: str | None = None
    transfer_id: str | None = None
    account_id: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class ClearingLeg:
    """A posting on a clearing account: one region's side of a cross-region
    transfer. `amount` is signed as posted on the clearing account (+ when
    money left for `peer_region`, - when it arrived from it or was returned)."""

    transfer_id: str
    region: str
    peer_region: str
    currency: str
    amount: int
    kind: str
    recorded_at: datetime


@dataclass(frozen=True)
class CollectInput:
    """`sums`: also sum the region as of the page's end (always done on the
    page that ends the window; the workflow asks for it on its last page)."""

    region: str
    after: Cursor
    page_events: int = 20_000
    sums: bool = False


@dataclass(frozen=True)
class RegionWindow:
    """One page of a region's window, checked in one snapshot.

    Totals and clearing balances (only on a page asked for `sums` or ending
    the window; empty otherwise) are *as of `upto`* (every event at or before
    it in the global order), so they agree exactly with the legs seen so far,
    whatever moment the other regions were read at.
    """

    region: str
    after: Cursor
    upto: Cursor
    more: bool
    events_checked: int
    accounts_checked: int
    transfers_checked: int
    totals: dict[str, int] = field(default_factory=dict)
    clearing: dict[str, int] = field(default_factory=dict)
    legs: list[ClearingLeg] = field(default_factory=list)
    findings: list[Discrepancy] = field(default_factory=list)
    #: Whether `totals` and `clearing` were computed for this page.
    summed: bool = True


@dataclass(frozen=True)
class ClearingLegsInput:
    """Drill-down: every leg on one clearing account up to `upto`."""

    region: str
    peer_region: str
    currency: str
    upto: Cursor


@dataclass(frozen=True)
class ClearingLegsOutput:
    legs: list[ClearingLeg]
    #: Legs older than the hot store (pruned to the archive) are not listed.
    pruned_balance: int = 0


@dataclass(frozen=True)
class MarkCheckedInput:
    """A stored report checked `region` up to `upto`: pruning may go that far."""

    region: str
    report_id: str
    upto: Cursor


@dataclass(frozen=True)
class SourceRecordsInput:
    """The source region's records of transfers whose arrival was seen
    without their source leg."""

    region: str
    transfer_ids: list[str]


@dataclass(frozen=True)
class SourceRecord:
    """What a region recorded for a transfer id (its `transfers` row)."""

    transfer_id: str
    status: str
    kind: str
    peer_region: str | None
    amount: int
    currency: str


@dataclass(frozen=True)
class SourceRecordsOutput:
    records: list[SourceRecord] = field(default_factory=list)


@dataclass
class InTransit:
    """A cross-region transfer whose clearing legs do not net to zero yet."""

    transfer_id: str
    currency: str
    first_seen: datetime
    net: int = 0
    #: "kind@region" of each leg seen, in the order seen.
    legs: list[str] = field(default_factory=list)
    #: Sum of the amounts per region pair "a|b" (sorted), for the pair check.
    pair: str = ""


@dataclass(frozen=True)
class PreviousState:
    report_id: str | None = None
    cursors: dict[str, Cursor] = field(default_factory=dict)
    in_transit: list[InTransit] = field(default_factory=list)


@dataclass(frozen=True)
class RegionSummary:
    region: str
    reached: bool
    after: Cursor
    upto: Cursor
    events_checked: int = 0
    accounts_checked: int = 0
    transfers_checked: int = 0
    legs_seen: int = 0
    #: The window stopped at the run's page limit: the next run continues.
    behind: bool = False
    #: The sums below are as of `upto` (False if the run stopped mid-window).
    summed: bool = True
    totals: dict[str, int] = field(default_factory=dict)
    clearing: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PairCheck:
    """Region a's clearing account for b plus b's for a, against what is in transit."""

    regions: list[str]
    currency: str
    balance: int
    in_transit: int

    @property
    def ok(self) -> bool:
        return self.balance == self.in_transit


@dataclass(frozen=True)
class ReconcileReport:
    report_id: str
    previous_id: str | None
    workflow_id: str
    started_at: datetime
    finished_at: datetime
    status: str
    regions: list[RegionSummary]
    pairs: list[PairCheck]
    global_totals: dict[str, int]
    in_transit: list[InTransit]
    discrepancies: list[Discrepancy]
    s3_key: str | None = None
    #: Cursors of regions this run did not reconcile (a narrower run: `--now`
    #: for some regions, a worker with a shorter LEDGERFLOW_REGIONS), carried
    #: from the previous report so that the next full run resumes them there.
    carried: dict[str, Cursor] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreReportOutput:
    """`stored` is False when another run recorded a report continuing from the
    same previous one first: this run's work is then redone from that one."""

    stored: bool
    s3_key: str | None


@dataclass(frozen=True)
class ReconcileSummary:
    """The workflow's result: what the Web UI shows at a glance."""

    report_id: str
    status: str
    discrepancies: int
    in_transit: int
    events_checked: int
    regions: list[str]
    unreachable: list[str]
    s3_key: str | None
    text: str
