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

_AS_OF = "(tx_id, position) <= (:t1, :p1)"


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
        page = (
            await conn.execute(
                text(
                    "SELECT tx_id, position FROM events "
                    "WHERE (tx_id, position) > (:t0, :p0) "
                    "AND tx_id < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint "
                    "ORDER BY tx_id, position LIMIT :limit"
                ),
                {"t0": data.after.tx_id, "p0": data.after.position, "limit": data.page_events},
            )
        ).all()
        more = len(page) >= data.page_events
        if more:
            # Finish the last transaction: a page never ends inside one, so
            # sums taken where a run stops always see both legs of a posting
            # (issue 13, finding 3). (Below the horizon, it is complete.)
            rest = await conn.execute(
                text(
                    "SELECT tx_id, position FROM events WHERE tx_id = :tx "
                    "AND position > :pos ORDER BY position"
                ),
                {"tx": page[-1].tx_id, "pos": page[-1].position},
            )
            page = [*page, *rest]
        upto = Cursor(page[-1].tx_id, page[-1].position) if page else data.after
        window = Window((data.after.tx_id, data.after.position), (upto.tx_id, upto.position))
        report = VerifyReport(region)
        if page:
            await verify_window(conn, report, window)
        clearing_ids = await _clearing_accounts(conn)
        legs = await _legs(conn, region, clearing_ids, window) if page else []
        summed = data.sums or not more
        totals: dict[str, int] = {}
        clearing: dict[str, int] = {}
        if summed:
            # Whole-history sums: once per run, not once per page.
            totals = await _totals(conn, upto)
            clearing = await _clearing_balances(conn, clearing_ids, upto)
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
    conn: AsyncConnection, region: str, clearing_ids: list[str], window: Window
) -> list[ClearingLeg]:
    if not clearing_ids:
        return []
    rows = await conn.execute(
        text(
            "SELECT e.transfer_id, e.account_id, e.amount, e.currency, e.recorded_at, t.kind "
            "FROM events e LEFT JOIN transfers t ON t.transfer_id = e.transfer_id "
            f"WHERE e.account_id = ANY(:ids) AND {Window.events_of('e')} "
            "AND e.transfer_id IS NOT NULL ORDER BY e.tx_id, e.position"
        ),
        {"ids": clearing_ids, **window.params()},
    )
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


async def _totals(conn: AsyncConnection, upto: Cursor) -> dict[str, int]:
    """Postings per currency as of `upto`; pruned ones through their checkpoints."""
    rows = await conn.execute(
        text(
            "SELECT currency, sum(total)::bigint AS total FROM ("
            f"  SELECT currency, sum(amount) AS total FROM events WHERE {_AS_OF} "
            "   GROUP BY currency"
            "  UNION ALL SELECT currency, sum(balance) FROM account_checkpoints GROUP BY currency"
            ") t GROUP BY currency ORDER BY currency"
        ),
        {"t1": upto.tx_id, "p1": upto.position},
    )
    return {r.currency: int(r.total) for r in rows}


async def _clearing_balances(
    conn: AsyncConnection, clearing_ids: list[str], upto: Cursor
) -> dict[str, int]:
    if not clearing_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT a.account_id, coalesce(k.balance, 0) + coalesce(("
            "  SELECT sum(e.amount) FROM events e WHERE e.account_id = a.account_id "
            f"  AND {_AS_OF.replace('(tx_id', '(e.tx_id')}), 0) AS balance "
            "FROM unnest(CAST(:ids AS text[])) AS a (account_id) "
            "LEFT JOIN account_checkpoints k ON k.account_id = a.account_id"
        ),
        {"ids": clearing_ids, "t1": upto.tx_id, "p1": upto.position},
    )
    return {r.account_id: int(r.balance) for r in rows}


async def clearing_legs(engine: AsyncEngine, data: ClearingLegsInput) -> ClearingLegsOutput:
    """Every leg still in the hot store on the region's clearing account for
    `peer_region`, up to `upto`: the drill-down when a pair does not add up."""
    account_id = f"{CLEARING_PREFIX}{data.region}:{data.peer_region}:{data.currency}"
    window = Window((0, 0), (data.upto.tx_id, data.upto.position))
    async with engine.connect() as conn:
        await _begin_snapshot(conn)
        legs = await _legs(conn, data.region, [account_id], window)
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
