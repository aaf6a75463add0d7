"""What was an account's balance at instant T?

`balance_as_of` answers from the stored `balance_after` of the account's last
event recorded at or before T: one probe of the (account_id, recorded_at,
version) index, so its cost does not grow with the account's history.
`replay_balance` folds every event up to T from the beginning; it is the
definition the fast answer must always agree with (and what `verify` and the
property tests compare against).

Once an account's early history is pruned to the S3 archive, both read it
from there: the fast answer from the account's checkpoint or a segment's last
balance (downloading one segment at most when T falls inside it), the replay
by downloading the account's segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.archive.reader import (
    ArchiveReader,
    Checkpoint,
    checkpoint_of,
    read_checkpoint,
    snapshot,
)
from ledgerflow.domain.errors import (
    AccountNotFound,
    ArchiveIntegrityError,
    ArchiveUnavailable,
    InvalidRequest,
)
from ledgerflow.projections.views import pending_in
from ledgerflow.store.log import account_amounts, account_with_last_event, last_event_at


@dataclass(frozen=True)
class BalanceAsOf:
    """The balance right after the account's last event at or before `as_of`."""

    account_id: str
    currency: str
    as_of: datetime
    #: Posted.
    balance: int
    version: int
    #: What open holds of the account reserved then.
    pending_out: int = 0
    #: What open holds toward the account reserved then.
    pending_in: int = 0

    @property
    def available(self) -> int:
        return self.balance - self.pending_out


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None:
        raise InvalidRequest("the instant must carry a time zone (e.g. 2026-01-31T23:59:59Z)")


async def last_balance(
    engine: AsyncEngine,
    account_id: str,
    instant: datetime,
    archive: ArchiveReader | None,
    *,
    strict: bool = False,
    conn: AsyncConnection | None = None,
) -> tuple[int, int] | None:
    """(version, balance_after) of the account's last event at or before
    `instant` (strictly before when `strict`), wherever it lives now: the hot
    store, the account's prune checkpoint, or an archived segment. The hot
    probe and the checkpoint are read in one snapshot (the caller's `conn`,
    if it holds one)."""
    if conn is None:
        async with snapshot(engine) as own:
            return await last_balance(engine, account_id, instant, archive, strict=strict, conn=own)
    found = await last_event_at(conn, account_id, instant, strict=strict)
    if found is not None:
        # Pruning removes a prefix of each account's versions, so a hot event
        # at or before T is newer than anything pruned.
        return found
    state = await _archived_last_state(
        await read_checkpoint(conn, account_id), account_id, instant, archive, strict=strict
    )
    return None if state is None else (state[0], state[1])


async def _archived_last_state(
    checkpoint: Checkpoint | None,
    account_id: str,
    instant: datetime,
    archive: ArchiveReader | None,
    *,
    strict: bool,
) -> tuple[int, int, int] | None:
    """(version, balance_after, pending_after) when no hot event is at or
    before `instant`: the account's prune checkpoint, or its archived segments."""
    if checkpoint is None:
        return None
    if checkpoint.recorded_at < instant or (not strict and checkpoint.recorded_at == instant):
        return checkpoint.version, checkpoint.balance, checkpoint.pending
    if archive is None:
        raise ArchiveUnavailable(
            f"account {account_id!r} before {instant.isoformat()} is in the archive, "
            "and no archive reader was given"
        )
    return await archive.last_state(account_id, instant, strict=strict)


def _not_yet(account_id: str, as_of: datetime) -> AccountNotFound:
    return AccountNotFound(
        f"account {account_id!r} did not exist at {as_of.isoformat()}", account_id=account_id
    )


async def balance_as_of(
    engine: AsyncEngine, account_id: str, as_of: datetime, archive: ArchiveReader | None = None
) -> BalanceAsOf:
    _require_aware(as_of)
    async with engine.connect() as conn:
        # The account, its last hot event at or before T and the holds toward
        # it in one statement, outside a transaction (no BEGIN and ROLLBACK
        # round trips; one statement is one snapshot): the common case. The
        # archive is consulted only when nothing is hot.
        solo = await conn.execution_options(isolation_level="AUTOCOMMIT")
        row = await account_with_last_event(solo, account_id, as_of)
        if row is None:
            raise _not_yet(account_id, as_of)
        incoming = max(0, int(row.pending_in))
    found = (row.version, row.balance_after, row.pending_after) if row.version is not None else None
    if found is None:
        # Nothing hot at or before T: read where pruning cut the account. (A
        # prune after the probe above only moves the checkpoint forward over
        # events that were not hot at or before T either, so this holds.)
        found = await _archived_last_state(
            await checkpoint_of(engine, account_id), account_id, as_of, archive, strict=False
        )
    if found is None:
        raise _not_yet(account_id, as_of)
    version, balance, pending = found
    return BalanceAsOf(account_id, row.currency, as_of, balance, version, pending, incoming)


async def replay_balance(
    engine: AsyncEngine, account_id: str, as_of: datetime, archive: ArchiveReader | None = None
) -> BalanceAsOf:
    """The same answer, by folding every event from the first one (archived
    events first, downloaded, then the hot store's)."""
    _require_aware(as_of)
    # The checkpoint and the hot events in one snapshot: read apart, a prune
    # between them would leave a gap of versions (a false integrity error).
    # Only the columns the fold needs, fetched last and by the driver itself
    # (its records are built while it reads), so the transaction ends as the
    # rows arrive: building a million events inside it left the session idle
    # in its transaction past the server's timeout, which killed it.
    async with snapshot(engine) as conn:
        checkpoint = await read_checkpoint(conn, account_id)
        incoming = await pending_in(conn, account_id, as_of)
        hot = await account_amounts(conn, account_id, as_of)
    folded: list[tuple[int, int, str, int | None]] = []
    if checkpoint is not None:
        if archive is None:
            raise ArchiveUnavailable(f"account {account_id!r} has archived history to replay")
        folded += [
            (e.version, e.amount, e.currency, e.pending_after)
            for e in await archive.events(account_id, None, as_of, checkpoint.version)
        ]
    folded += hot
    balance, version, currency, pending = 0, 0, None, 0
    for event_version, amount, event_currency, pending_after in folded:
        if event_version != version + 1:
            raise ArchiveIntegrityError(
                f"account {account_id!r}: version {event_version} follows {version}"
            )
        balance += amount
        version, currency, pending = event_version, event_currency, pending_after or 0
    if currency is None:
        raise _not_yet(account_id, as_of)
    return BalanceAsOf(account_id, currency, as_of, balance, version, pending, incoming)
