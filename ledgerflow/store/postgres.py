"""The PostgreSQL event store: one database per region.

Concurrency model, in one paragraph: a transfer is one READ COMMITTED
transaction that locks both account rows with `SELECT ... FOR UPDATE` in
sorted order, re-reads the idempotency record under those locks, checks the
policy, and writes the two events, the transfer record and the new balances
in a single statement. The row locks serialize writers per account (so the
per-account version and hash chain need no other coordination); sorted
order rules out deadlocks between transfers over the same pair.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ledgerflow.config import GROUP_COMMIT_MAX, GROUP_COMMIT_WRITERS, Settings
from ledgerflow.domain.errors import (
    AccountAlreadyExists,
    ChangeRefused,
    HoldNotFound,
    InvalidRequest,
    LedgerError,
)
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, event_content
from ledgerflow.domain.holds import (
    Capture,
    CaptureRequest,
    CaptureResult,
    DeadlineChange,
    Hold,
    HoldRequest,
    HoldResult,
    HoldState,
    HoldStatus,
    ReleaseResult,
    capture_posting_id,
)
from ledgerflow.domain.model import (
    Account,
    AccountChangeRequest,
    AccountChangeResult,
    Event,
    EventType,
    OpenAccountRequest,
    OpenAccountResult,
    Posting,
    Transfer,
    TransferResult,
    canonical_json,
    reversal_id,
)
from ledgerflow.domain.transactions import TransactionRequest, TransactionResult
from ledgerflow.store import log
from ledgerflow.store.base import EventStore, LocalShorthands, TailCursor
from ledgerflow.store.batch import (
    APPEND_WRITES,
    PostingBatch,
    check_posting_policy,
    clearing_request,
    event_id_for,
    require_home,
    same_posting,
)
from ledgerflow.store.group_commit import CallerGone, GroupCommit, Pending
from ledgerflow.store.holds import (
    EXPIRY_PRINCIPAL,
    HoldRecords,
    Reversal,
    Written,
    capture_or_refuse,
    decide_release,
    expiry_due,
    hold_target,
    move_deadline,
    place_or_refuse,
    return_capture,
    same_capture,
    same_hold,
)
from ledgerflow.store.lifecycle import apply_change, refused, same_change
from ledgerflow.store.rows import (
    ACCOUNT_COLUMNS,
    CAPTURE_COLUMNS,
    CHANGE_COLUMNS,
    EVENT_COLUMNS,
    HOLD_COLUMNS,
    RELEASE_COLUMNS,
    REVERSAL_COLUMNS,
    TRANSFER_COLUMNS,
    account_from_row,
    capture_from_row,
    change_from_row,
    event_from_row,
    placement_from_row,
    recorded_from_row,
    release_from_row,
    transfer_result_from_row,
)
from ledgerflow.store.transactions import (
    legs_record,
    post_or_reject,
    result_from_record,
    same_transaction,
)

#: `opened_at` of a clearing account the advisory check imagines before it exists.
occurred_at_unknown = datetime.min.replace(tzinfo=UTC)


def create_engine(
    url: str, settings: Settings, pool_size: int | None = None, *, pre_ping: bool = False
) -> AsyncEngine:
    """One pool per process and region; timeouts keep a stuck session from stalling others.

    `pre_ping`: test a pooled connection before handing it out (one round
    trip). For readers such as the SDK client, whose callers do not retry: a
    connection left over from before a database restart is replaced, not
    handed to them broken."""
    return create_async_engine(
        url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0,
        pool_pre_ping=pre_ping,
        # Give up waiting for a connection well inside the activity's 10 s
        # timeout, so a starved attempt fails and retries instead of running
        # late as a zombie. No pre-ping: it costs a round trip per transaction
        # on the hot path, and a dead connection fails one attempt, which
        # Temporal retries.
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={
            "server_settings": {
                "lock_timeout": str(settings.db_lock_timeout_ms),
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(
                    settings.db_idle_in_transaction_timeout_ms
                ),
                "application_name": "ledgerflow",
            }
        },
    )


class PostgresEventStore(LocalShorthands, EventStore):
    """`EventStore` on one region's PostgreSQL database.

    Appends are group-committed: up to `max_batch` concurrent postings share
    one transaction, with at most `writers` such transactions at a time
    (`max_batch=1` writes each posting in a transaction of its own).

    `before_commit` is called inside the append transaction, after the writes
    and before the commit, once per posting written; tests use it to hold a
    transaction open and prove that tailing readers never skip a late commit.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        region: str,
        before_commit: Callable[[Transfer], Awaitable[None]] | None = None,
        *,
        max_batch: int = GROUP_COMMIT_MAX,
        writers: int = GROUP_COMMIT_WRITERS,
    ) -> None:
        self.engine = engine
        self.region = region
        self._before_commit = before_commit
        self._clearing_open: set[str] = set()
        self._group_commit = GroupCommit(self._append_batch, max_batch, writers)

    # -- accounts ---------------------------------------------------------

    async def open_account(
        self, request: OpenAccountRequest, occurred_at: datetime
    ) -> OpenAccountResult:
        return await self._open_account(request.validated(), occurred_at)

    async def _ensure_clearing(
        self, clearing: str | None, currency: str, peer_region: str | None, occurred_at: datetime
    ) -> None:
        """Open a clearing account on first use (idempotent, its own
        transaction): unlimited overdraft, since its balance is what one region
        owes another and may go either way."""
        if clearing is None or clearing in self._clearing_open:
            return
        await self._open_account(clearing_request(clearing, currency, self.region, peer_region),
                                 occurred_at)  # fmt: skip
        self._clearing_open.add(clearing)

    async def _open_account(
        self, request: OpenAccountRequest, occurred_at: datetime
    ) -> OpenAccountResult:
        if request.region != self.region:
            raise InvalidRequest(
                f"account {request.account_id!r} is homed in {request.region!r}; "
                f"this is the {self.region!r} store",
                field="region",
            )
        event_id = event_id_for(f"account/{request.account_id}/opened")
        async with self.engine.begin() as conn:
            now = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
            content = event_content(
                event_id=event_id,
                type=EventType.ACCOUNT_OPENED,
                account_id=request.account_id,
                version=1,
                amount=0,
                currency=request.currency,
                balance_after=0,
                occurred_at=occurred_at,
                recorded_at=now,
                region=request.region,
                initiated_by=request.initiated_by,
                transfer_id=None,
                leg=None,
                counterparty=None,
                description=None,
                metadata=request.metadata,
            )
            digest = chain_hash(GENESIS_HASH, content)
            # One statement for the account row and its AccountOpened event:
            # the schema checks, at the end of each statement, that every new
            # account row is exactly its opening event (migration 0004).
            # ON CONFLICT DO NOTHING: a concurrent or repeated open of the same
            # id inserts nothing, and we compare against what is there instead.
            inserted = await conn.execute(
                text(
                    "WITH opened AS (INSERT INTO accounts (account_id, currency, region, "
                    "overdraft_limit, version, balance, head_hash, opened_at, metadata, "
                    "head_recorded_at) VALUES (:account_id, :currency, :region, "
                    ":overdraft_limit, 1, 0, :hash, :now, CAST(:metadata AS jsonb), :now) "
                    "ON CONFLICT (account_id) DO NOTHING RETURNING account_id) "
                    "INSERT INTO events (event_id, type, account_id, version, amount, "
                    "currency, balance_after, occurred_at, recorded_at, region, "
                    "initiated_by, metadata, prev_hash, hash) SELECT CAST(:event_id AS "
                    "uuid), 'AccountOpened', account_id, 1, 0, :currency, 0, :occurred_at, "
                    ":now, :region, :initiated_by, CAST(:metadata AS jsonb), :prev, :hash "
                    "FROM opened RETURNING account_id"
                ),
                {
                    "event_id": event_id,
                    "account_id": request.account_id,
                    "currency": request.currency,
                    "region": request.region,
                    "overdraft_limit": request.overdraft_limit,
                    "occurred_at": occurred_at,
                    "now": now,
                    "initiated_by": request.initiated_by,
                    "metadata": canonical_json(request.metadata).decode(),
                    "prev": GENESIS_HASH,
                    "hash": digest,
                },
            )
            created = inserted.first() is not None
            account = await self._account(conn, request.account_id)
        assert account is not None
        if not created and (
            account.currency != request.currency
            or account.region != request.region
            or account.overdraft_limit != request.overdraft_limit
        ):
            raise AccountAlreadyExists(
                f"account {request.account_id!r} already exists with currency "
                f"{account.currency}, region {account.region}, overdraft limit "
                f"{account.overdraft_limit}",
                account_id=request.account_id,
            )
        return OpenAccountResult(account=account, created=created, event_id=event_id)

    async def _account(self, conn: AsyncConnection, account_id: str) -> Account | None:
        row = (
            await conn.execute(
                text(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = :id"),
                {"id": account_id},
            )
        ).first()
        return account_from_row(row) if row else None

    async def get_account(self, account_id: str) -> Account | None:
        async with self.engine.connect() as conn:
            return await self._account(conn, account_id)

    async def change_account(
        self, request: AccountChangeRequest, occurred_at: datetime
    ) -> AccountChangeResult:
        request = request.validated()
        async with self.engine.begin() as conn:
            # The account's lock first: a change and a posting of one account
            # are decided one after the other, each on what the other left.
            row = (
                await conn.execute(
                    text(
                        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = :id FOR UPDATE"
                    ),
                    {"id": request.account_id},
                )
            ).first()
            account = account_from_row(row) if row else None
            key = {"a": request.account_id, "c": request.change_id}
            recorded = (
                await conn.execute(
                    text(
                        f"SELECT {CHANGE_COLUMNS} FROM account_changes "
                        "WHERE account_id = :a AND change_id = :c"
                    ),
                    key,
                )
            ).first()
            if recorded is not None:
                return same_change(change_from_row(recorded), request)
            now = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
            try:
                change = apply_change(request, account, now, occurred_at, self.region)
            except ChangeRefused as error:
                result = refused(request, account, error, now)
                await conn.execute(RECORD_CHANGE, change_params(request, result))
                return result
            await write_event(conn, change.event, change.head)
            await conn.execute(RECORD_CHANGE, change_params(request, change.result))
        return change.result

    # -- holds ------------------------------------------------------------

    async def _lock(self, conn: AsyncConnection, ids: set[str]) -> dict[str, Account]:
        """The accounts, locked in id order (as the append locks them)."""
        rows = await conn.execute(
            text(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ANY(:ids) "
                "ORDER BY account_id FOR UPDATE"
            ),
            {"ids": sorted(ids)},
        )
        return {r.account_id: account_from_row(r) for r in rows}

    async def _now(self, conn: AsyncConnection) -> datetime:
        now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return now

    async def _hold(self, conn: AsyncConnection, hold_id: str) -> HoldRecords:
        row = (
            await conn.execute(
                text(f"SELECT {HOLD_COLUMNS} FROM holds WHERE hold_id = :h"),
                {"h": hold_id, "region": self.region},
            )
        ).first()
        if row is None:
            raise HoldNotFound(f"no hold {hold_id!r} was placed", hold_id=hold_id)
        captures = [
            capture_from_row(r)
            for r in await conn.execute(
                text(
                    f"SELECT {CAPTURE_COLUMNS} FROM hold_captures c "
                    "LEFT JOIN transfers t ON t.transfer_id = c.posting_id "
                    "WHERE c.hold_id = :h ORDER BY c.recorded_at, c.capture_id"
                ),
                {"h": hold_id},
            )
        ]
        released = (
            await conn.execute(
                text(f"SELECT {RELEASE_COLUMNS} FROM hold_releases WHERE hold_id = :h"),
                {"h": hold_id},
            )
        ).first()
        deadline = (
            await conn.execute(
                text(
                    "SELECT expires_at FROM hold_deadlines WHERE hold_id = :h "
                    "ORDER BY recorded_at DESC, change_id DESC LIMIT 1"
                ),
                {"h": hold_id},
            )
        ).scalar()
        placement = placement_from_row(row)
        reversals: dict[str, Reversal] = {}
        if placement.result.to_region is not None:
            reversals = {
                r.capture_id: Reversal(
                    r.hold_id, r.capture_id, r.reason_type, r.reason, r.balance_after, r.recorded_at
                )
                for r in await conn.execute(
                    text(
                        f"SELECT {REVERSAL_COLUMNS} FROM hold_capture_reversals r "
                        "LEFT JOIN transfers t ON t.transfer_id = r.posting_id "
                        "WHERE r.hold_id = :h"
                    ),
                    {"h": hold_id},
                )
            }
        return HoldRecords(
            placement,
            captures,
            release_from_row(released) if released else None,
            deadline,
            reversals,
        )

    async def _locked_hold(
        self, conn: AsyncConnection, hold_id: str
    ) -> tuple[HoldRecords, dict[str, Account]]:
        """The hold's records, read again under its accounts' locks."""
        first = await self._hold(conn, hold_id)
        accounts = await self._lock(conn, first.accounts)
        return await self._hold(conn, hold_id), accounts

    async def _apply_release(
        self, conn: AsyncConnection, written: Written, result: ReleaseResult, by: str
    ) -> None:
        await write_event(conn, written.event, written.head)
        await conn.execute(
            text(
                "INSERT INTO hold_releases (hold_id, ending, released, event_id, initiated_by, "
                "recorded_at) VALUES (:h, :e, :r, CAST(:ev AS uuid), :by, :at)"
            ),
            {"h": result.hold_id, "e": result.ending, "r": result.released,
             "ev": result.event_id, "by": by, "at": result.recorded_at},
        )  # fmt: skip

    async def _settle(
        self,
        conn: AsyncConnection,
        records: HoldRecords,
        accounts: dict[str, Account],
        now: datetime,
        occurred_at: datetime,
    ) -> HoldRecords:
        """The store's clock decides: an open hold at or past its deadline
        expires now, whoever arrived; the records as they then stand."""
        due = expiry_due(records, accounts, now, occurred_at, self.region)
        if due is None:
            return records
        written, result = due
        await self._apply_release(conn, written, result, EXPIRY_PRINCIPAL)
        accounts[written.head.account_id] = written.head
        return replace(records, release=result)

    async def place_hold(self, request: HoldRequest, occurred_at: datetime) -> HoldResult:
        hold = request.validated()
        target = hold_target(hold, self.region)
        if hold.to_region is not None:
            # Its captures' source legs credit it: open before the first.
            await self._ensure_clearing(target, hold.currency, hold.to_region, occurred_at)
        async with self.engine.begin() as conn:
            accounts = await self._lock(conn, {hold.from_account, target})
            row = (
                await conn.execute(
                    text(f"SELECT {HOLD_COLUMNS} FROM holds WHERE hold_id = :h"),
                    {"h": hold.hold_id, "region": self.region},
                )
            ).first()
            if row is not None:
                return same_hold(placement_from_row(row).result, hold)
            now = await self._now(conn)
            outcome = place_or_refuse(hold, accounts, now, occurred_at, self.region)
            if outcome.written is not None:
                await write_event(conn, outcome.written.event, outcome.written.head)
            await conn.execute(RECORD_HOLD, hold_params(hold, outcome.result))
        return outcome.result

    async def capture_hold(self, request: CaptureRequest, occurred_at: datetime) -> CaptureResult:
        async with self.engine.begin() as conn:
            records, accounts = await self._locked_hold(conn, request.hold_id)
            capture = request.validated(records.placement.result.currency)
            if capture.capture_id in records.by_capture:
                return same_capture(records.by_capture[capture.capture_id], capture)
            now = await self._now(conn)
            settled = await self._settle(conn, records, accounts, now, occurred_at)
            outcome = capture_or_refuse(
                settled, capture, accounts, now, occurred_at, self.region
            )  # fmt: skip
            if outcome.batch is not None:
                await conn.execute(APPEND_WRITES, outcome.batch.params())
            await conn.execute(RECORD_CAPTURE, capture_params(capture, outcome.result))
        return outcome.result

    async def return_capture(
        self,
        hold_id: str,
        capture_id: str,
        reason_type: str,
        reason: str,
        occurred_at: datetime,
    ) -> CaptureResult:
        async with self.engine.begin() as conn:
            records, accounts = await self._locked_hold(conn, hold_id)
            now = await self._now(conn)
            returned = return_capture(records, capture_id, reason_type, reason, accounts, now,
                                      occurred_at, self.region)  # fmt: skip
            if returned.batch is not None and returned.reversal is not None:
                await conn.execute(APPEND_WRITES, returned.batch.params())
                await conn.execute(
                    text(
                        "INSERT INTO hold_capture_reversals (hold_id, capture_id, posting_id, "
                        "reason_type, reason, recorded_at) VALUES (:h, :c, :p, :t, :r, :at)"
                    ),
                    {"h": hold_id, "c": capture_id,
                     "p": reversal_id(capture_posting_id(hold_id, capture_id)),
                     "t": reason_type, "r": reason, "at": returned.reversal.recorded_at},
                )  # fmt: skip
        return returned.result

    async def release_hold(
        self, hold_id: str, ending: str, initiated_by: str, occurred_at: datetime
    ) -> ReleaseResult | None:
        async with self.engine.begin() as conn:
            records, accounts = await self._locked_hold(conn, hold_id)
            now = await self._now(conn)
            settled = await self._settle(conn, records, accounts, now, occurred_at)
            decided = decide_release(
                settled, HoldStatus(ending), accounts, now, occurred_at, self.region,
                initiated_by,
            )  # fmt: skip
            if decided.written is not None and decided.result is not None:
                await self._apply_release(conn, decided.written, decided.result, initiated_by)
        if decided.refusal is not None:
            raise decided.refusal
        return decided.result

    async def extend_hold(self, change: DeadlineChange, occurred_at: datetime) -> HoldState:
        change = change.validated()
        async with self.engine.begin() as conn:
            records, accounts = await self._locked_hold(conn, change.hold_id)
            seen = (
                await conn.execute(
                    text("SELECT 1 FROM hold_deadlines WHERE hold_id = :h AND change_id = :c"),
                    {"h": change.hold_id, "c": change.change_id},
                )
            ).first()
            if seen is not None:
                return records.state
            now = await self._now(conn)
            settled = await self._settle(conn, records, accounts, now, occurred_at)
            moved = move_deadline(settled, change, now)
            if moved.expires_at is not None:
                await conn.execute(
                    text(
                        "INSERT INTO hold_deadlines (hold_id, change_id, expires_at, "
                        "initiated_by, recorded_at) VALUES (:h, :c, :e, :by, :at)"
                    ),
                    {"h": change.hold_id, "c": change.change_id, "e": moved.expires_at,
                     "by": change.initiated_by, "at": now},
                )  # fmt: skip
        if moved.refusal is not None:
            raise moved.refusal
        return moved.state

    async def hold_records(self, hold_id: str) -> HoldRecords | None:
        async with self.engine.connect() as conn:
            try:
                return await self._hold(conn, hold_id)
            except HoldNotFound:
                return None

    async def get_hold(self, hold_id: str) -> HoldState | None:
        records = await self.hold_records(hold_id)
        return records.state if records else None

    # -- multi-leg transactions ------------------------------------------------

    async def append_transaction(
        self, request: TransactionRequest, occurred_at: datetime
    ) -> TransactionResult:
        transaction = request.validated()
        async with self.engine.begin() as conn:
            accounts = await self._lock(conn, {leg.account_id for leg in transaction.legs})
            known = await self._transaction(conn, transaction.transaction_id)
            if known is not None:
                return same_transaction(known, transaction)
            now = await self._now(conn)
            batch, result = post_or_reject(transaction, accounts, now, occurred_at, self.region)
            if batch is not None:
                await conn.execute(APPEND_WRITES, batch.params())
            await conn.execute(
                text(
                    "INSERT INTO transactions (transaction_id, fingerprint, status, legs, "
                    "event_ids, reason_type, reason, initiated_by, description, recorded_at) "
                    "VALUES (:id, :fp, :status, CAST(:legs AS jsonb), CAST(:events AS uuid[]), "
                    ":rt, :r, :by, :d, :at)"
                ),
                {"id": transaction.transaction_id, "fp": result.fingerprint,
                 "status": result.status, "legs": legs_record(transaction, result),
                 "events": result.event_ids, "rt": result.reason_type, "r": result.reason,
                 "by": transaction.initiated_by, "d": transaction.description,
                 "at": result.confirmed_at},
            )  # fmt: skip
        return result

    async def _transaction(
        self, conn: AsyncConnection, transaction_id: str
    ) -> TransactionResult | None:
        row = (
            await conn.execute(
                text("SELECT * FROM transactions WHERE transaction_id = :id"),
                {"id": transaction_id},
            )
        ).first()
        return result_from_record(row, self.region) if row is not None else None

    async def get_transaction(self, transaction_id: str) -> TransactionResult | None:
        async with self.engine.connect() as conn:
            return await self._transaction(conn, transaction_id)

    async def get_change(self, account_id: str, change_id: str) -> AccountChangeResult | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {CHANGE_COLUMNS} FROM account_changes "
                        "WHERE account_id = :a AND change_id = :c"
                    ),
                    {"a": account_id, "c": change_id},
                )
            ).first()
        return change_from_row(row) if row else None

    # -- transfers --------------------------------------------------------

    async def check_posting(self, posting: Posting) -> None:
        transfer = posting.as_transfer()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ANY(:ids)"),
                {"ids": [transfer.from_account, transfer.to_account]},
            )
            found = {a.account_id: a for a in map(account_from_row, rows)}
        check_posting_policy(posting, found, self.region, occurred_at_unknown)

    async def append_posting(self, posting: Posting, occurred_at: datetime) -> TransferResult:
        """Write one region's posting of a transfer, exactly once per `posting_id`.

        Concurrent calls share transactions (group commit, `max_batch`
        postings each); each call gets its own outcome or its own error.
        """
        require_home(posting, self.region)
        await self._ensure_clearing(
            posting.clearing_account, posting.transfer.currency, posting.peer_region, occurred_at
        )
        return await self._group_commit.submit((posting, occurred_at))

    async def _append_batch(
        self, batch: Sequence[Pending[tuple[Posting, datetime], TransferResult]]
    ) -> list[TransferResult | Exception]:
        """One transaction for a batch of postings, applied in order as if one by one."""
        ids = sorted({a for pending in batch for a in pending.item[0].accounts})
        async with self.engine.begin() as conn:
            # Lock every account of the batch in sorted order: the LockRows step
            # sits above the sort, so all batches acquire their locks in the
            # same order and two of them cannot deadlock.
            rows = await conn.execute(
                text(
                    f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ANY(:ids) "
                    "ORDER BY account_id FOR UPDATE"
                ),
                {"ids": ids},
            )
            accounts = {a.account_id: a for a in map(account_from_row, rows)}
            # Read the idempotency records only *after* taking the locks: a
            # concurrent attempt with the same id holds the same locks, so by
            # now its commit (if any) is visible to this statement's snapshot.
            heads = (
                await conn.execute(
                    text(
                        f"SELECT clock_timestamp() AS now, t.* FROM (SELECT 1) AS one "
                        f"LEFT JOIN (SELECT {TRANSFER_COLUMNS} FROM transfers "
                        f"WHERE transfer_id = ANY(:ids)) AS t ON true"
                    ),
                    {"ids": [pending.item[0].posting_id for pending in batch]},
                )
            ).all()
            now: datetime = heads[0].now
            recorded = {h.transfer_id: recorded_from_row(h) for h in heads if h.transfer_id}
            posting_batch = PostingBatch(now, self.region)
            outcomes: list[TransferResult | Exception] = []
            for pending in batch:
                # The last moment before writing, after the wait for a
                # connection and for the locks: a caller that gave up by now
                # (a timed-out activity) is not written. A later attempt of
                # its own may already have answered with another outcome.
                if pending.abandoned:
                    outcomes.append(CallerGone())
                    continue
                posting, occurred_at = pending.item
                try:
                    outcomes.append(posting_batch.post(posting, occurred_at, accounts, recorded))
                except LedgerError as exc:
                    outcomes.append(exc)
            if posting_batch.postings:
                await conn.execute(APPEND_WRITES, posting_batch.params())
                if self._before_commit is not None:
                    for transfer in posting_batch.postings:
                        await self._before_commit(transfer)
        return outcomes

    async def record_posting_rejection(
        self, posting: Posting, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        require_home(posting, self.region)
        transfer = posting.transfer
        async with self.engine.begin() as conn:
            # DO NOTHING on conflict: whatever was recorded first for this id
            # (a confirmation or an earlier rejection) is the outcome that stands.
            await conn.execute(
                text(
                    "INSERT INTO transfers (transfer_id, fingerprint, status, region, "
                    "from_account, to_account, amount, currency, initiated_by, description, "
                    "metadata, reason_type, reason, occurred_at, recorded_at, kind, "
                    "peer_region) VALUES "
                    "(:transfer_id, :fingerprint, 'rejected', :region, :from_account, "
                    ":to_account, :amount, :currency, :initiated_by, :description, "
                    "CAST(:metadata AS jsonb), :reason_type, :reason, :occurred_at, "
                    "clock_timestamp(), :kind, :peer_region) ON CONFLICT (transfer_id) DO NOTHING"
                ),
                {
                    "transfer_id": posting.posting_id,
                    "fingerprint": transfer.fingerprint(),
                    "region": posting.region,
                    "from_account": posting.debit_account,
                    "to_account": posting.credit_account,
                    "kind": str(posting.kind),
                    "peer_region": posting.peer_region,
                    "amount": transfer.amount,
                    "currency": transfer.currency,
                    "initiated_by": transfer.initiated_by,
                    "description": transfer.description,
                    "metadata": canonical_json(transfer.metadata).decode(),
                    "reason_type": error.type,
                    "reason": error.message,
                    "occurred_at": occurred_at,
                },
            )
            row = (
                await conn.execute(
                    text(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = :id"),
                    {"id": posting.posting_id},
                )
            ).one()
        return same_posting(recorded_from_row(row), posting)

    async def get_transfer(self, transfer_id: str) -> TransferResult | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = :id"),
                    {"id": transfer_id},
                )
            ).first()
        return transfer_result_from_row(row) if row else None

    # -- reading events ---------------------------------------------------

    async def account_events(
        self, account_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[Event]:
        async with self.engine.connect() as conn:
            return await log.account_events(
                conn, account_id, after_version=after_version, limit=limit
            )

    async def events_by_id(self, event_ids: list[str]) -> list[Event]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {EVENT_COLUMNS} FROM events "
                    "WHERE event_id = ANY(CAST(:ids AS uuid[])) ORDER BY position"
                ),
                {"ids": event_ids},
            )
            return [event_from_row(r) for r in rows]

    async def read_events(self, after: TailCursor, limit: int = 1000) -> list[Event]:
        async with self.engine.connect() as conn:
            return await log.events_below_horizon(conn, after, limit)

    async def project(self, event_ids: list[str]) -> int:
        from ledgerflow.projections.views import apply_events

        events = await self.events_by_id(event_ids)
        async with self.engine.begin() as conn:
            await apply_events(conn, events)
        return len(events)


#: One amount-0 event of an account's chain (a status change, a hold placed
#: or released) and the account's head moved onto it, in one statement: the
#: schema's triggers check the head against its events at its end.
WRITE_EVENT = text(
    "WITH written AS (INSERT INTO events (event_id, type, account_id, version, amount, "
    "currency, balance_after, occurred_at, recorded_at, region, initiated_by, counterparty, "
    "description, metadata, prev_hash, hash, pending_after) VALUES (CAST(:event_id AS uuid), "
    ":type, :account_id, :version, :amount, :currency, :balance, :occurred_at, :recorded_at, "
    ":region, :initiated_by, :counterparty, :description, CAST(:metadata AS jsonb), "
    ":prev_hash, :hash, :pending)) "
    "UPDATE accounts SET version = :version, head_hash = :hash, "
    "head_recorded_at = :recorded_at, status = :status, pending_out = :pending "
    "WHERE account_id = :account_id"
)


async def write_event(conn: AsyncConnection, event: Event, head: Account) -> None:
    await conn.execute(
        WRITE_EVENT,
        {
            "event_id": event.event_id,
            "type": str(event.type),
            "account_id": event.account_id,
            "version": event.version,
            "amount": event.amount,
            "currency": event.currency,
            "balance": event.balance_after,
            "occurred_at": event.occurred_at,
            "recorded_at": event.recorded_at,
            "region": event.region,
            "initiated_by": event.initiated_by,
            "counterparty": event.counterparty,
            "description": event.description,
            "metadata": canonical_json(event.metadata).decode(),
            "prev_hash": event.prev_hash,
            "hash": event.hash,
            "pending": event.pending_after,
            "status": str(head.status),
        },
    )


#: One account change's outcome, applied or refused, recorded once.
RECORD_CHANGE = text(
    "INSERT INTO account_changes (account_id, change_id, action, fingerprint, status, "
    "event_id, status_after, reason_type, reason, initiated_by, note, recorded_at) "
    "VALUES (:account_id, :change_id, :action, :fingerprint, :status, "
    "CAST(:event_id AS uuid), :status_after, :reason_type, :reason, :initiated_by, :note, "
    ":recorded_at)"
)


def change_params(request: AccountChangeRequest, result: AccountChangeResult) -> dict[str, Any]:
    return {
        "account_id": result.account_id,
        "change_id": result.change_id,
        "action": result.action,
        "fingerprint": result.fingerprint,
        "status": result.status,
        "event_id": result.event_id,
        "status_after": result.account_status,
        "reason_type": result.reason_type,
        "reason": result.reason,
        "initiated_by": request.initiated_by,
        "note": request.reason,
        "recorded_at": result.recorded_at,
    }


#: A hold's placement outcome, placed or refused, recorded once.
RECORD_HOLD = text(
    "INSERT INTO holds (hold_id, fingerprint, status, from_account, to_account, amount, "
    "currency, over_capture, expires_at, event_id, reason_type, reason, initiated_by, "
    "description, recorded_at, to_region) VALUES (:hold_id, :fingerprint, :status, "
    ":from_account, :to_account, :amount, :currency, :over_capture, :expires_at, "
    "CAST(:event_id AS uuid), :reason_type, :reason, :initiated_by, :description, "
    ":recorded_at, :to_region)"
)


def hold_params(hold: Hold, result: HoldResult) -> dict[str, Any]:
    return {
        "hold_id": hold.hold_id,
        "fingerprint": result.fingerprint,
        "status": result.status,
        "from_account": hold.from_account,
        "to_account": hold.to_account,
        "amount": hold.amount,
        "currency": hold.currency,
        "over_capture": hold.over_capture,
        "expires_at": result.expires_at,
        "event_id": result.event_id,
        "reason_type": result.reason_type,
        "reason": result.reason,
        "initiated_by": hold.initiated_by,
        "description": hold.description,
        "recorded_at": result.placed_at,
        "to_region": hold.to_region,
    }


#: One capture's outcome, captured or refused, recorded once.
RECORD_CAPTURE = text(
    "INSERT INTO hold_captures (hold_id, capture_id, amount, status, consumed, posting_id, "
    "reason_type, reason, initiated_by, recorded_at) VALUES (:hold_id, :capture_id, :amount, "
    ":status, :consumed, :posting_id, :reason_type, :reason, :initiated_by, :recorded_at)"
)


def capture_params(capture: Capture, result: CaptureResult) -> dict[str, Any]:
    return {
        "hold_id": result.hold_id,
        "capture_id": result.capture_id,
        "amount": result.amount,
        "status": result.status,
        "consumed": result.consumed,
        "posting_id": result.posting_id,
        "reason_type": result.reason_type,
        "reason": result.reason,
        "initiated_by": capture.initiated_by,
        "recorded_at": result.recorded_at,
    }
