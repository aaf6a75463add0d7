"""What was an account's balance at instant T?

`balance_as_of` answers from the stored `balance_after` of the account's last
event recorded at or before T: one probe of the (account_id, recorded_at,
version) index, so its cost does not grow with the account's history.
`replay_balance` folds every event up to T from the beginning; it is the
definition the fast answer must always agree with (and what `verify` and the
property tests compare against).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.domain.errors import AccountNotFound, InvalidRequest


@dataclass(frozen=True)
class BalanceAsOf:
    """The balance right after the account's last event at or before `as_of`."""

    account_id: str
    currency: str
    as_of: datetime
    balance: int
    version: int


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None:
        raise InvalidRequest("the instant must carry a time zone (e.g. 2026-01-31T23:59:59Z)")


async def balance_as_of(engine: AsyncEngine, account_id: str, as_of: datetime) -> BalanceAsOf:
    _require_aware(as_of)
    async with engine.connect() as conn:
        # Per account, recorded_at grows with version (both are set under the
        # account's row lock), so the newest (recorded_at, version) at or
        # before T is the last event at T: a single backward index probe.
        row = (
            await conn.execute(
                text(
                    "SELECT currency, balance_after, version FROM events "
                    "WHERE account_id = :a AND recorded_at <= :t "
                    "ORDER BY recorded_at DESC, version DESC LIMIT 1"
                ),
                {"a": account_id, "t": as_of},
            )
        ).first()
    if row is None:
        raise AccountNotFound(
            f"account {account_id!r} did not exist at {as_of.isoformat()}", account_id=account_id
        )
    return BalanceAsOf(account_id, row.currency, as_of, row.balance_after, row.version)


async def replay_balance(engine: AsyncEngine, account_id: str, as_of: datetime) -> BalanceAsOf:
    """The same answer, by folding every event from the first one."""
    _require_aware(as_of)
    balance, version, currency = 0, 0, None
    async with engine.connect() as conn:
        result = await conn.stream(
            text(
                "SELECT currency, amount, version FROM events "
                "WHERE account_id = :a AND recorded_at <= :t ORDER BY version"
            ),
            {"a": account_id, "t": as_of},
        )
        async for row in result:
            balance += row.amount
            version, currency = row.version, row.currency
    if currency is None:
        raise AccountNotFound(
            f"account {account_id!r} did not exist at {as_of.isoformat()}", account_id=account_id
        )
    return BalanceAsOf(account_id, currency, as_of, balance, version)
