"""The balance and statement views, and the writes that keep them current.

Both writes are idempotent and commutative per account: the statement has one
row per (account, version), inserted at most once; the balance row only moves
forward to a higher version. Applying an event twice changes nothing, and
applying one account's events in any order ends in the same state, so the
transfer's projection activity and the catch-up projector can race freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.domain.model import Event
from ledgerflow.store.log import PENDING_IN_SQL


@dataclass(frozen=True)
class Balance:
    """An account's balance as the read model holds it, at `version`."""

    account_id: str
    currency: str
    #: Posted: the sum of the account's postings.
    balance: int
    version: int
    updated_at: datetime
    #: What the account's open holds reserve (it may not spend it).
    pending_out: int = 0
    #: What open holds toward the account reserve elsewhere in its region.
    pending_in: int = 0

    @property
    def available(self) -> int:
        """Posted minus pending out: what the account may spend."""
        return self.balance - self.pending_out


@dataclass(frozen=True)
class StatementLine:
    """One posting on an account, with the running balance right after it."""

    account_id: str
    version: int
    event_id: str
    type: str
    transfer_id: str | None
    counterparty: str | None
    amount: int
    currency: str
    balance_after: int
    recorded_at: datetime
    description: str | None


#: The live view tables; a rebuild fills a copy with this suffix, then swaps.
VIEW_TABLES = ("balance_view", "statement_view")


async def apply_events(
    conn: AsyncConnection,
    events: list[Event],
    suffix: str = "",
    only: tuple[str, ...] = VIEW_TABLES,
) -> None:
    """Apply `events` to the views inside the caller's transaction.

    `suffix` names a shadow copy of the views (`_next` during a rebuild);
    `only` restricts the write to some of the views.
    """
    if not events:
        return
    if "statement_view" in only:
        await _apply_statement(conn, events, suffix)
    if "balance_view" in only:
        await _apply_balance(conn, events, suffix)


async def _apply_statement(conn: AsyncConnection, events: list[Event], suffix: str) -> None:
    await conn.execute(
        text(
            f"INSERT INTO statement_view{suffix} (account_id, version, event_id, type, "
            "transfer_id, "
            "counterparty, amount, currency, balance_after, recorded_at, description) "
            "VALUES (:account_id, :version, CAST(:event_id AS uuid), :type, :transfer_id, "
            ":counterparty, :amount, :currency, :balance_after, :recorded_at, :description) "
            "ON CONFLICT (account_id, version) DO NOTHING"
        ),
        [
            {
                "account_id": e.account_id,
                "version": e.version,
                "event_id": e.event_id,
                "type": e.type,
                "transfer_id": e.transfer_id,
                "counterparty": e.counterparty,
                "amount": e.amount,
                "currency": e.currency,
                "balance_after": e.balance_after,
                "recorded_at": e.recorded_at,
                "description": e.description,
            }
            for e in events
        ],
    )


async def _apply_balance(conn: AsyncConnection, events: list[Event], suffix: str) -> None:
    latest: dict[str, Event] = {}
    for e in events:
        if e.account_id not in latest or e.version > latest[e.account_id].version:
            latest[e.account_id] = e
    # Only a higher version may overwrite the balance: a late or repeated event
    # for an older version leaves the newer balance in place.
    await conn.execute(
        text(
            f"INSERT INTO balance_view{suffix} AS b (account_id, currency, balance, version, "
            "updated_at, pending_out) VALUES (:account_id, :currency, :balance, :version, "
            ":updated_at, :pending_out) "
            "ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance, "
            "version = excluded.version, updated_at = excluded.updated_at, "
            "pending_out = excluded.pending_out WHERE b.version < excluded.version"
        ),
        [
            {
                "account_id": e.account_id,
                "currency": e.currency,
                "balance": e.balance_after,
                "version": e.version,
                "updated_at": e.recorded_at,
                "pending_out": e.pending_after,
            }
            for e in sorted(latest.values(), key=lambda e: e.account_id)
        ],
    )


#: What open holds toward an account reserve (as of :t, when given): each
#: hold placed toward it, less what its captures took, unless it ended.
PENDING_IN = text(PENDING_IN_SQL)


async def pending_in(conn: AsyncConnection, account_id: str, at: datetime | None = None) -> int:
    """What open holds toward the account reserve (at instant `at`, when given).
    (A hold fully captured reserves nothing more: its captures took it all.)"""
    value = (await conn.execute(PENDING_IN, {"id": account_id, "t": at})).scalar_one()
    return max(0, int(value))


async def get_balance(engine: AsyncEngine, account_id: str) -> Balance | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT account_id, currency, balance, version, updated_at, pending_out "
                    "FROM balance_view WHERE account_id = :id"
                ),
                {"id": account_id},
            )
        ).first()
        if row is None:
            return None
        return Balance(**row._mapping, pending_in=await pending_in(conn, account_id))


async def get_statement(
    engine: AsyncEngine, account_id: str, after_version: int = 0, limit: int = 100
) -> list[StatementLine]:
    """One page of a statement, by keyset on version (constant time per page)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT account_id, version, event_id::text AS event_id, type, transfer_id, "
                "counterparty, amount, currency, balance_after, recorded_at, description "
                "FROM statement_view WHERE account_id = :id AND version > :after "
                "ORDER BY version LIMIT :limit"
            ),
            {"id": account_id, "after": after_version, "limit": limit},
        )
        return [StatementLine(**r._mapping) for r in rows]
