"""`verify`: prove that a region's ledger was not altered and adds up.

Checks, in this order, and reports every finding (the first one first):

1. every account's hash chain and version sequence, event by event (from
   its prune checkpoint, where its early history is in the archive), and
   that no event was recorded before the one it follows;
   every pruned range a recorded, digest-chained, verified segment
   (`ledgerflow.audit.archive_records`);
2. the write model (`accounts`) against the replay of the chain: balance,
   version and head hash;
3. every transfer: both legs present, postings summing to zero per currency;
   a confirmed transfer's recorded event ids exist;
4. the region's postings per currency sum to zero;
5. the read models against the events they were built from. A view that is
   merely behind (projection lag) is reported as lag, not as a finding; a view
   that disagrees with the event at the same version is a finding.

It only reads, so it can run on a live ledger.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.audit.chain_walk import AccountRange, split, walk, walk_elsewhere
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.hashing import AccountChain, ChainBroken
from ledgerflow.store.rows import EVENT_COLUMNS, event_from_row


@dataclass(frozen=True)
class Finding:
    """One thing that is wrong, precise enough to find the row."""

    region: str
    check: str
    account_id: str | None
    version: int | None
    problem: str

    def __str__(self) -> str:
        where = f"region {self.region}"
        if self.account_id is not None:
            where += f", account {self.account_id!r}"
        if self.version is not None:
            where += f", version {self.version}"
        return f"{where}: {self.problem} [{self.check}]"


@dataclass
class VerifyReport:
    region: str
    events_checked: int = 0
    accounts_checked: int = 0
    transfers_checked: int = 0
    projection_lag_events: int = 0
    #: Pruned history checked in the S3 archive (`verify_region_and_archive`).
    archive_events_checked: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.findings

    @property
    def events_per_second(self) -> float:
        return self.events_checked / self.seconds if self.seconds else 0.0


#: From about this many events (the account rows' versions), the chain walk
#: runs in worker processes; below it, in this one.
PARALLEL_FROM = 100_000


def default_workers() -> int:
    """One chain-walking process per core (the server's work rides along)."""
    return max(1, min(os.cpu_count() or 1, 8))


async def verify_region(
    engine: AsyncEngine, region: str, *, workers: int | None = None
) -> VerifyReport:
    """`workers`: processes for the chain walk; by default one per core from
    `PARALLEL_FROM` events, else the walk runs in this process. Every walker
    and every other check reads the same snapshot."""
    if workers is not None and workers < 1:
        raise InvalidRequest(f"verify needs at least one walker, not {workers}")
    report = VerifyReport(region)
    started = time.perf_counter()
    # One REPEATABLE READ snapshot: every check sees the same ledger even while
    # transfers keep committing.
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        # The transaction waits, idle, on the walkers that share its snapshot.
        await conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
        if workers is None:
            events = (
                await conn.execute(text("SELECT coalesce(sum(version), 0) FROM accounts"))
            ).scalar_one()
            workers = default_workers() if events >= PARALLEL_FROM else 1
        if workers > 1:
            sizes = [
                (row.account_id, row.version)
                for row in await conn.execute(
                    text("SELECT account_id, version FROM accounts ORDER BY account_id")
                )
            ]
            snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
            dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            walks = [
                asyncio.ensure_future(walk_elsewhere(dsn, snapshot, accounts))
                for accounts in split(sizes, workers)
            ]
            try:
                # The set-wide checks run here meanwhile, on the same snapshot.
                rest = await _check_the_rest(conn, region)
                walked = await asyncio.gather(*walks)
            finally:
                for pending in walks:
                    pending.cancel()  # (a walk that failed ends the others: each kills its child)
                await asyncio.gather(*walks, return_exceptions=True)
        else:
            raw = await conn.get_raw_connection()
            assert raw.driver_connection is not None
            walked = [await walk(raw.driver_connection, AccountRange())]
            rest = await _check_the_rest(conn, region)
        await conn.rollback()
    for part in walked:
        report.events_checked += part.events
        report.accounts_checked += part.accounts
        report.findings += [Finding(region, *found) for found in part.found]
    report.findings += rest.findings
    report.transfers_checked = rest.transfers_checked
    report.projection_lag_events = rest.projection_lag_events
    report.seconds = time.perf_counter() - started
    return report


async def _check_the_rest(conn: AsyncConnection, region: str) -> VerifyReport:
    """Checks 1 (the archive's records) to 5 after the chain walk, in their order."""
    # (Imported here: it builds on this module's Finding and VerifyReport.)
    from ledgerflow.audit.archive_records import check_archive_records

    rest = VerifyReport(region)
    await check_archive_records(conn, rest)
    await check_transfers(conn, rest)
    await _check_totals(conn, rest)
    await _check_holds(conn, rest)
    await _check_projections(conn, rest)
    return rest


async def check_transfers(
    conn: AsyncConnection, report: VerifyReport, window: Window | None = None
) -> None:
    """Every transfer, or (with `window`) those written in it."""
    where_events, where_rows, params = "true", "true", {}
    if window is not None:
        params = window.params()
        # = ANY(ARRAY(...)): the ids are few; look each up by index rather than
        # letting the planner hash-join against the whole table.
        where_events = (
            "transfer_id = ANY(ARRAY(SELECT DISTINCT transfer_id FROM events "
            f"WHERE transfer_id IS NOT NULL AND {Window.EVENTS}))"
        )
        where_rows = "t.tx_id > :t0 AND t.tx_id <= :t1"
    report.transfers_checked = (
        await conn.execute(text(f"SELECT count(*) FROM transfers t WHERE {where_rows}"), params)
    ).scalar_one()
    # A transfer at or behind the last pruned segment may have one leg pruned
    # (each account is cut at its own version); `archive verify` checks those
    # against the archive.
    pruned_tx = (
        await conn.execute(
            text(
                "SELECT coalesce(max(to_tx_id), 0) FROM archive_segments "
                "WHERE pruned_at IS NOT NULL"
            )
        )
    ).scalar_one()
    unbalanced = await conn.execute(
        text(
            "SELECT transfer_id, currency, sum(amount) AS total, count(*) AS legs "
            f"FROM events WHERE transfer_id IS NOT NULL AND {where_events} "
            "GROUP BY transfer_id, currency "
            # A transfer's posting has two legs; a transaction's (`<id>/tx`) two or more.
            "HAVING (sum(amount) <> 0 OR count(*) < 2 "
            "        OR (count(*) > 2 AND transfer_id NOT LIKE '%/tx')) "
            "AND NOT (count(*) = 1 AND max(tx_id) <= :pruned) ORDER BY transfer_id"
        ),
        {"pruned": pruned_tx, **params},
    )
    for row in unbalanced:
        report.findings.append(
            Finding(report.region, "double-entry", None, None,
                    f"transfer {row.transfer_id!r} has {row.legs} posting(s) in "
                    f"{row.currency} summing to {row.total}, not two (a transaction: two "
                    "or more) summing to zero")
        )  # fmt: skip
    missing = await conn.execute(
        text(
            "SELECT t.transfer_id FROM transfers t "
            "LEFT JOIN events d ON d.event_id = t.debit_event_id "
            "LEFT JOIN events c ON c.event_id = t.credit_event_id "
            "WHERE t.status = 'confirmed' AND (d.position IS NULL OR c.position IS NULL) "
            f"AND t.tx_id > :pruned AND {where_rows} ORDER BY t.transfer_id"
        ),
        {"pruned": pruned_tx, **params},
    )
    for row in missing:
        report.findings.append(
            Finding(report.region, "double-entry", None, None,
                    f"confirmed transfer {row.transfer_id!r} is missing a posted event")
        )  # fmt: skip
    where_tx = "t.tx_id > :t0 AND t.tx_id <= :t1" if window is not None else "true"
    legless = await conn.execute(
        text(
            "SELECT t.transaction_id FROM transactions t WHERE t.status = 'confirmed' "
            f"AND t.tx_id > :pruned AND {where_tx} AND EXISTS (SELECT 1 FROM unnest(t.event_ids) "
            "AS x (id) WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = x.id)) "
            "ORDER BY t.transaction_id"
        ),
        {"pruned": pruned_tx, **params},
    )
    for row in legless:
        report.findings.append(
            Finding(report.region, "double-entry", None, None,
                    f"confirmed transaction {row.transaction_id!r} is missing a posted event")
        )  # fmt: skip


async def _check_holds(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each hold's captures and release add up to what it held (exactly, once
    it ended by release), and each account's pending amount is what its open
    holds still reserve."""
    holds = (
        "SELECT h.hold_id, h.from_account, h.amount, "
        "  coalesce((SELECT sum(c.consumed) FROM hold_captures c WHERE c.hold_id = h.hold_id "
        "            AND c.status = 'captured'), 0) AS consumed, "
        "  r.released, r.hold_id IS NOT NULL AS ended "
        "FROM holds h LEFT JOIN hold_releases r ON r.hold_id = h.hold_id "
        "WHERE h.status = 'placed'"
    )
    unbalanced = await conn.execute(
        text(
            f"SELECT hold_id, amount, consumed, released FROM ({holds}) h "
            "WHERE consumed + coalesce(released, 0) > amount "
            "OR (ended AND consumed + released <> amount) ORDER BY hold_id"
        )
    )
    for row in unbalanced:
        report.findings.append(
            Finding(report.region, "hold", None, None,
                    f"hold {row.hold_id!r} held {row.amount}; its captures took "
                    f"{row.consumed} and its release gave back {row.released or 0}")
        )  # fmt: skip
    pending = await conn.execute(
        text(
            f"SELECT a.account_id, a.pending_out, coalesce(o.open, 0) AS open FROM accounts a "
            f"LEFT JOIN (SELECT from_account, sum(amount - consumed) AS open FROM ({holds}) h "
            "  WHERE NOT ended AND consumed < amount GROUP BY from_account) o "
            "ON o.from_account = a.account_id "
            "WHERE a.pending_out <> coalesce(o.open, 0) ORDER BY a.account_id"
        )
    )
    for row in pending:
        report.findings.append(
            Finding(report.region, "hold", row.account_id, None,
                    f"accounts row says {row.pending_out} pending; its open holds reserve "
                    f"{row.open}")
        )  # fmt: skip


async def _check_totals(conn: AsyncConnection, report: VerifyReport) -> None:
    totals = await conn.execute(
        text(
            # Pruned postings count through their accounts' checkpoint balances.
            "SELECT currency, sum(total) AS total FROM ("
            "  SELECT currency, sum(amount) AS total FROM events GROUP BY currency"
            "  UNION ALL SELECT currency, sum(balance) FROM account_checkpoints GROUP BY currency"
            ") t GROUP BY currency HAVING sum(total) <> 0 ORDER BY currency"
        )
    )
    for row in totals:
        report.findings.append(
            Finding(report.region, "region-total", None, None,
                    f"postings in {row.currency} sum to {row.total}, not zero")
        )  # fmt: skip


async def _check_projections(
    conn: AsyncConnection, report: VerifyReport, window: Window | None = None
) -> None:
    """The read models of every account, or only of the versions `window` wrote."""
    scope, params, lines = "true", {}, ""
    if window is not None:
        params = window.params()
        # The lines of the window's events, found through the events (by index).
        lines = (
            "JOIN (SELECT account_id AS a, version AS v FROM events "
            f"WHERE {Window.EVENTS}) w ON w.a = s.account_id AND w.v = s.version "
        )
        scope = (
            "s.account_id = ANY(ARRAY(SELECT DISTINCT account_id FROM events "
            f"WHERE {Window.EVENTS}))"
        )
    statement = await conn.execute(
        text(
            "SELECT s.account_id, s.version, e.position IS NULL AS orphan FROM statement_view s "
            f"{lines}"
            "LEFT JOIN events e ON e.account_id = s.account_id AND e.version = s.version "
            f"WHERE {scope} AND (e.position IS NULL OR s.event_id <> e.event_id "
            "OR s.amount <> e.amount OR s.balance_after <> e.balance_after "
            "OR s.currency <> e.currency OR s.type <> e.type) ORDER BY s.account_id, s.version"
        ),
        params,
    )
    for row in statement:
        problem = "has no event" if row.orphan else "disagrees with its event"
        report.findings.append(
            Finding(report.region, "projection", row.account_id, row.version,
                    f"statement_view line {problem}")
        )  # fmt: skip
    balances = await conn.execute(
        text(
            "SELECT b.account_id, b.version, b.balance, "
            "coalesce(e.balance_after, k.balance) AS balance_after "
            "FROM balance_view b "
            "LEFT JOIN events e ON e.account_id = b.account_id AND e.version = b.version "
            "LEFT JOIN account_checkpoints k "
            "  ON k.account_id = b.account_id AND k.version = b.version "
            "LEFT JOIN accounts a ON a.account_id = b.account_id "
            f"WHERE {scope.replace('s.', 'b.')} AND "
            "(coalesce(e.balance_after, k.balance) IS DISTINCT FROM b.balance "
            "OR b.version > a.version) ORDER BY b.account_id"
        ),
        params,
    )
    for row in balances:
        report.findings.append(
            Finding(report.region, "projection", row.account_id, row.version,
                    f"balance_view says {row.balance}; the event at that version says "
                    f"{row.balance_after}")
        )  # fmt: skip
    report.projection_lag_events = (
        await conn.execute(
            text(
                "SELECT coalesce(sum(a.version - coalesce(b.version, 0)), 0)::bigint "
                "FROM accounts a LEFT JOIN balance_view b ON b.account_id = a.account_id "
                f"WHERE {scope.replace('s.', 'a.')}"
            ),
            params,
        )
    ).scalar_one()


@dataclass(frozen=True)
class Window:
    """The events after `after` up to and including `upto` in the global order
    (tx_id, position): what one reconciliation run checks."""

    after: tuple[int, int]
    upto: tuple[int, int]

    #: The plain range on tx_id lets the planner use the (tx_id, position)
    #: index; the row comparisons then cut it exactly.
    EVENTS: ClassVar[str] = (
        "tx_id BETWEEN :t0 AND :t1 "
        "AND (tx_id, position) > (:t0, :p0) AND (tx_id, position) <= (:t1, :p1)"
    )

    @classmethod
    def events_of(cls, alias: str) -> str:
        """`EVENTS` for an events table named `alias` in a join."""
        return cls.EVENTS.replace("tx_id", f"{alias}.tx_id").replace(
            "position", f"{alias}.position"
        )

    def params(self) -> dict[str, int]:
        return {"t0": self.after[0], "p0": self.after[1], "t1": self.upto[0], "p1": self.upto[1]}


async def verify_window(conn: AsyncConnection, report: VerifyReport, window: Window) -> list[str]:
    """The checks of `verify` for what was written in `window`, inside the
    caller's snapshot: the hash chain of every account it touched, from the
    event before its first version in the window to its last (and, where that
    is the account's head, the head against `accounts`); its transfers' double
    entry; those accounts' read models. Returns the accounts touched.

    Bounded by the window's versions, so a long history is read once across
    runs, not once per run. The anchor (the event before) was checked by an
    earlier window, or is the checkpoint where pruning cut the account."""
    rows = await conn.execute(
        text(
            "WITH w AS (SELECT account_id, min(version) AS first, max(version) AS last "
            f"FROM events WHERE {Window.EVENTS} GROUP BY account_id) "
            f"SELECT w.first, {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))}, "
            "a.version AS head_version, a.balance AS head_balance, a.head_hash, "
            "k.version AS cp_version, k.balance AS cp_balance, k.hash AS cp_hash, "
            "k.recorded_at AS cp_recorded_at, k.pending AS cp_pending "
            "FROM w JOIN accounts a ON a.account_id = w.account_id "
            "LEFT JOIN account_checkpoints k ON k.account_id = w.account_id "
            "JOIN events e ON e.account_id = w.account_id "
            "AND e.version BETWEEN w.first - 1 AND w.last "
            "ORDER BY e.account_id, e.version"
        ),
        window.params(),
    )
    touched: list[str] = []
    chain: AccountChain | None = None
    head: Any = None
    broken = False

    def close() -> None:
        if chain is None or broken or chain.version < head.head_version:
            return  # the head lies beyond the window: a later run reaches it
        if (head.head_balance, head.head_version, head.head_hash) != (
            chain.balance, chain.version, chain.head,
        ):  # fmt: skip
            report.findings.append(
                Finding(report.region, "write-model", chain.account_id, chain.version,
                        f"accounts row says balance {head.head_balance} at version "
                        f"{head.head_version}; the events replay to {chain.balance} at "
                        f"version {chain.version}")
            )  # fmt: skip

    for row in rows:
        event = event_from_row(row)
        if chain is None or chain.account_id != event.account_id:
            close()
            touched.append(event.account_id)
            report.accounts_checked += 1
            head, broken = row, False
            first: int = row.first
            if event.version == first - 1:
                # The event before the window, checked by an earlier run: the anchor.
                chain = AccountChain(event.account_id, event.version, event.balance_after,
                                     event.hash, event.recorded_at,
                                     event.pending_after)  # fmt: skip
                continue
            if first == 1:
                chain = AccountChain(event.account_id)
            elif row.cp_version == first - 1:
                chain = AccountChain(event.account_id, row.cp_version, row.cp_balance,
                                     row.cp_hash, row.cp_recorded_at,
                                     row.cp_pending)  # fmt: skip
            else:
                chain = AccountChain(event.account_id, first - 1, 0, "")
                broken = True
                report.findings.append(
                    Finding(report.region, "hash-chain", event.account_id, first - 1,
                            "the event before the window is missing")
                )  # fmt: skip
        if broken:
            continue
        report.events_checked += 1
        try:
            chain.feed(event)
        except ChainBroken as exc:
            broken = True
            report.findings.append(
                Finding(report.region, exc.check, exc.account_id, exc.version, exc.problem)
            )
    close()
    await check_transfers(conn, report, window)
    await _check_projections(conn, report, window)
    return touched
