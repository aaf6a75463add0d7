"""What one region contributes to a reconciliation run, read in one snapshot.

A run reads each region's *window*: the events after the previous run's
cursor, in the global order (tx_id, position), below the transaction
horizon, so that nothing can later commit behind the new cursor (docs/ARCHITECTURE.md,
"Global order"). Over that window it runs the checks of `verify`
(`verify_window`), lists the postings on clearing accounts (each region's
side of the cross-region transfers) and sums, *as of the cursor*, the
region's postings per currency and its clearing balances. Because those sums
stop exactly where the listed legs stop, they agree with the legs however
far apart in time the regions were read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.audit.verify import Finding, VerifyReport, Window, check_transfers, verify_window
from ledgerflow.domain.model import CLEARING_PREFIX, parse_clearing_account
from ledgerflow.reconcile.messages import (
    ClearingLeg,
    ClearingLegsInput,
    ClearingLegsOutput,
    CollectInput,
    Cursor,
    Discrepancy,
    RegionWindow,
    SourceRecord,
    SourceRecordsInput,
    SourceRecordsOutput,
)
from ledgerflow.store.log import balances_as_of, places_below_horizon, postings_in, totals_as_of


def discrepancy_of(finding: Finding) -> Discrepancy:
    transfer_id = None
    if finding.check == "double-entry" and "'" in finding.problem:
        transfer_id = finding.problem.split("'")[1]
    return Discrepancy(
        kind=finding.check,
        detail=finding.problem,
        region=finding.region,
        transfer_id=transfer_id,
        account_id=finding.account_id,
        version=finding.version,
    )


async def _begin_snapshot(conn: AsyncConnection) -> None:
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))


async def _clearing_accounts(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(
        text("SELECT account_id FROM accounts WHERE starts_with(account_id, :prefix)"),
        {"prefix": CLEARING_PREFIX},
    )
    return [r.account_id for r in rows]


async def collect_window(engine: AsyncEngine, data: CollectInput) -> RegionWindow:
    region = data.region
    async with engine.connect() as conn:
        await _begin_snapshot(conn)
        # The first statement fixes the snapshot; its horizon bounds the window.
        # A page never ends inside a transaction, so sums taken where a run
        # stops always see both legs of a posting (issue 13, finding 3).
        page = await places_below_horizon(conn, data.after, data.page_events)
        more = len(page) >= data.page_events
        upto = Cursor(page[-1].tx_id, page[-1].position) if page else data.after
        window = Window((data.after.tx_id, data.after.position), (upto.tx_id, upto.position))
        report = VerifyReport(region)
        if page:
            await verify_window(conn, report, window)
        clearing_ids = await _clearing_accounts(conn)
        legs = await _legs(conn, region, clearing_ids, data.after, upto) if page else []
        summed = data.sums or not more
        totals: dict[str, int] = {}
        clearing: dict[str, int] = {}
        if summed:
            # Whole-history sums: once per run, not once per page.
            totals = await totals_as_of(conn, upto)
            clearing = await balances_as_of(conn, clearing_ids, upto)
        if any(totals.values()):
            # The region does not add up: name the transfers that do not.
            await check_transfers(conn, report)
        await conn.rollback()
    return RegionWindow(
        region=region,
        after=data.after,
        upto=upto,
        more=more,
        summed=summed,
        events_checked=report.events_checked,
        accounts_checked=report.accounts_checked,
        transfers_checked=report.transfers_checked,
        totals=totals,
        clearing=clearing,
        legs=legs,
        findings=[discrepancy_of(f) for f in report.findings]
        + [
            Discrepancy("region-total", f"postings in {cur} sum to {total}, not zero", region)
            for cur, total in sorted(totals.items())
            if total
        ],
    )


async def _legs(
    conn: AsyncConnection, region: str, clearing_ids: list[str], after: Cursor, upto: Cursor
) -> list[ClearingLeg]:
    if not clearing_ids:
        return []
    rows = await postings_in(conn, clearing_ids, after, upto)
    return [leg for row in rows if (leg := _leg(region, row)) is not None]


def _leg(region: str, row: Row[Any]) -> ClearingLeg | None:
    parsed = parse_clearing_account(row.account_id)
    if parsed is None:
        return None
    return ClearingLeg(
        transfer_id=row.transfer_id,
        region=region,
        peer_region=parsed[1],
        currency=row.currency,
        amount=row.amount,
        kind=row.kind or "unknown",
        recorded_at=row.recorded_at,
    )


async def clearing_legs(engine: AsyncEngine, data: ClearingLegsInput) -> ClearingLegsOutput:
    """Every leg still in the hot store on the region's clearing account for
    `peer_region`, up to `upto`: the drill-down when a pair does not add up."""
    account_id = f"{CLEARING_PREFIX}{data.region}:{data.peer_region}:{data.currency}"
    async with engine.connect() as conn:
        await _begin_snapshot(conn)
        legs = await _legs(conn, data.region, [account_id], Cursor(0, 0), data.upto)
        pruned = (
            await conn.execute(
                text("SELECT balance FROM account_checkpoints WHERE account_id = :a"),
                {"a": account_id},
            )
        ).scalar()
        await conn.rollback()
    return ClearingLegsOutput(legs=legs, pruned_balance=int(pruned or 0))


async def source_records(engine: AsyncEngine, data: SourceRecordsInput) -> SourceRecordsOutput:
    """This region's records of the given transfer ids (committed, whatever
    the horizon: an arrival seen elsewhere proves its source leg, if any,
    committed before it)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT transfer_id, status, kind, peer_region, amount, currency FROM transfers "
                "WHERE transfer_id = ANY(:ids)"
            ),
            {"ids": data.transfer_ids},
        )
        return SourceRecordsOutput([SourceRecord(*row) for row in rows])
