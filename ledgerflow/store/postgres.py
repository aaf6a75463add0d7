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

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ledgerflow.config import Settings
from ledgerflow.domain.errors import (
    AccountAlreadyExists,
    DuplicateTransferMismatch,
    InvalidRequest,
    LedgerError,
)
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, event_content
from ledgerflow.domain.model import (
    Account,
    Event,
    EventType,
    Leg,
    OpenAccountRequest,
    OpenAccountResult,
    Posting,
    PostingKind,
    Transfer,
    TransferResult,
    TransferStatus,
    canonical_json,
)
from ledgerflow.domain.policy import check_policy
from ledgerflow.store.base import EventStore, TailCursor
from ledgerflow.store.group_commit import GroupCommit
from ledgerflow.store.rows import (
    ACCOUNT_COLUMNS,
    EVENT_COLUMNS,
    TRANSFER_COLUMNS,
    account_from_row,
    event_from_row,
    transfer_result_from_row,
)

#: Event ids are derived from business keys, so a retried append that lost its
#: reply computes the same ids and collides with what it already wrote.
_EVENT_NAMESPACE = uuid.UUID("6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b10")


def event_id_for(key: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, key))


#: `opened_at` of a clearing account the advisory check imagines before it exists.
occurred_at_unknown = datetime.min.replace(tzinfo=UTC)


def create_engine(url: str, settings: Settings, pool_size: int | None = None) -> AsyncEngine:
    """One pool per process and region; timeouts keep a stuck session from stalling others."""
    return create_async_engine(
        url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0,
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


def _same_transfer(existing: TransferResult, transfer: Transfer) -> TransferResult:
    """Exactly-once: the recorded outcome stands, if and only if the payload is the same."""
    if existing.fingerprint != transfer.fingerprint():
        raise DuplicateTransferMismatch.for_transfer(transfer.transfer_id)
    return existing


#: The writes of a batch of postings, in one statement: their events, their
#: transfer records and the accounts' new heads, each column an array.
_APPEND_WRITES = text(
    """
    WITH posted AS (
        INSERT INTO events (event_id, type, account_id, version, amount, currency,
            balance_after, occurred_at, recorded_at, region, initiated_by, transfer_id, leg,
            counterparty, description, metadata, prev_hash, hash)
        SELECT e.event_id, e.type, e.account_id, e.version, e.amount, e.currency,
               e.balance_after, e.occurred_at, :now, :region, e.initiated_by, e.transfer_id,
               e.leg, e.counterparty, e.description, CAST(e.metadata AS jsonb), e.prev_hash,
               e.hash
          FROM unnest(CAST(:e_event_id AS uuid[]), CAST(:e_type AS text[]),
                      CAST(:e_account_id AS text[]), CAST(:e_version AS bigint[]),
                      CAST(:e_amount AS bigint[]), CAST(:e_currency AS text[]),
                      CAST(:e_balance_after AS bigint[]),
                      CAST(:e_occurred_at AS timestamptz[]),
                      CAST(:e_initiated_by AS text[]), CAST(:e_transfer_id AS text[]),
                      CAST(:e_leg AS text[]), CAST(:e_counterparty AS text[]),
                      CAST(:e_description AS text[]), CAST(:e_metadata AS text[]),
                      CAST(:e_prev_hash AS text[]), CAST(:e_hash AS text[]))
            AS e (event_id, type, account_id, version, amount, currency, balance_after,
                  occurred_at, initiated_by, transfer_id, leg, counterparty, description,
                  metadata, prev_hash, hash)
    ), recorded AS (
        INSERT INTO transfers (transfer_id, fingerprint, status, region, from_account,
            to_account, amount, currency, initiated_by, description, metadata,
            debit_event_id, credit_event_id, from_balance_after, to_balance_after,
            occurred_at, recorded_at, kind, peer_region)
        SELECT t.transfer_id, t.fingerprint, 'confirmed', :region, t.from_account,
               t.to_account, t.amount, t.currency, t.initiated_by, t.description,
               CAST(t.metadata AS jsonb), t.debit_event_id, t.credit_event_id,
               t.from_balance_after, t.to_balance_after, t.occurred_at, :now, t.kind,
               t.peer_region
          FROM unnest(CAST(:t_transfer_id AS text[]), CAST(:t_fingerprint AS text[]),
                      CAST(:t_from_account AS text[]), CAST(:t_to_account AS text[]),
                      CAST(:t_amount AS bigint[]), CAST(:t_currency AS text[]),
                      CAST(:t_initiated_by AS text[]), CAST(:t_description AS text[]),
                      CAST(:t_metadata AS text[]), CAST(:t_debit_event_id AS uuid[]),
                      CAST(:t_credit_event_id AS uuid[]),
                      CAST(:t_from_balance_after AS bigint[]),
                      CAST(:t_to_balance_after AS bigint[]),
                      CAST(:t_occurred_at AS timestamptz[]), CAST(:t_kind AS text[]),
                      CAST(:t_peer_region AS text[]))
            AS t (transfer_id, fingerprint, from_account, to_account, amount, currency,
                  initiated_by, description, metadata, debit_event_id, credit_event_id,
                  from_balance_after, to_balance_after, occurred_at, kind, peer_region)
    )
    UPDATE accounts AS a
       SET version = v.version, balance = v.balance, head_hash = v.head_hash
      FROM unnest(CAST(:a_account_id AS text[]), CAST(:a_version AS bigint[]),
                  CAST(:a_balance AS bigint[]), CAST(:a_head_hash AS text[]))
           AS v (account_id, version, balance, head_hash)
     WHERE a.account_id = v.account_id
    """
)


class PostgresEventStore(EventStore):
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
        max_batch: int = Settings.db_group_commit_max,
        writers: int = Settings.db_group_commit_writers,
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

    async def _ensure_clearing(self, posting: Posting, occurred_at: datetime) -> None:
        """Open the posting's clearing account on first use (idempotent, its own
        transaction): unlimited overdraft, since its balance is what one region
        owes another and may go either way."""
        clearing = posting.clearing_account
        if clearing is None or clearing in self._clearing_open:
            return
        request = OpenAccountRequest(
            account_id=clearing,
            currency=posting.transfer.currency,
            region=self.region,
            overdraft_limit=None,
            initiated_by="ledgerflow",
            metadata={"role": "clearing", "peer_region": posting.peer_region},
        )
        await self._open_account(request.validated(clearing=True), occurred_at)
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
            # ON CONFLICT DO NOTHING: a concurrent or repeated open of the same id
            # inserts nothing, and we compare against what is there instead.
            inserted = await conn.execute(
                text(
                    "INSERT INTO accounts (account_id, currency, region, overdraft_limit, "
                    "version, balance, head_hash, opened_at, metadata) VALUES (:account_id, "
                    ":currency, :region, :overdraft_limit, 1, 0, :hash, :now, "
                    "CAST(:metadata AS jsonb)) ON CONFLICT (account_id) DO NOTHING "
                    "RETURNING account_id"
                ),
                {
                    "account_id": request.account_id,
                    "currency": request.currency,
                    "region": request.region,
                    "overdraft_limit": request.overdraft_limit,
                    "hash": digest,
                    "now": now,
                    "metadata": canonical_json(request.metadata).decode(),
                },
            )
            created = inserted.first() is not None
            if created:
                await conn.execute(
                    text(
                        "INSERT INTO events (event_id, type, account_id, version, amount, "
                        "currency, balance_after, occurred_at, recorded_at, region, "
                        "initiated_by, metadata, prev_hash, hash) VALUES (CAST(:event_id AS "
                        "uuid), 'AccountOpened', :account_id, 1, 0, :currency, 0, :occurred_at, "
                        ":now, :region, :initiated_by, CAST(:metadata AS jsonb), :prev, :hash)"
                    ),
                    {
                        "event_id": event_id,
                        "account_id": request.account_id,
                        "currency": request.currency,
                        "occurred_at": occurred_at,
                        "now": now,
                        "region": request.region,
                        "initiated_by": request.initiated_by,
                        "metadata": canonical_json(request.metadata).decode(),
                        "prev": GENESIS_HASH,
                        "hash": digest,
                    },
                )
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

    # -- transfers --------------------------------------------------------

    async def check_transfer(self, transfer: Transfer) -> None:
        await self.check_posting(Posting.local(transfer, self.region))

    async def check_posting(self, posting: Posting) -> None:
        transfer = posting.as_transfer()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ANY(:ids)"),
                {"ids": [transfer.from_account, transfer.to_account]},
            )
            found = {a.account_id: a for a in map(account_from_row, rows)}
        clearing = posting.clearing_account
        if clearing is not None and clearing not in found:
            # Not opened yet: the append opens it, open and without limit.
            found[clearing] = Account(
                clearing, transfer.currency, self.region, None, "open", 1, 0,
                occurred_at_unknown, GENESIS_HASH,
            )  # fmt: skip
        check_policy(transfer, found.get(transfer.from_account), found.get(transfer.to_account))

    async def append_transfer(
        self, transfer: Transfer, region: str, occurred_at: datetime
    ) -> TransferResult:
        return await self.append_posting(Posting.local(transfer, region), occurred_at)

    async def append_posting(self, posting: Posting, occurred_at: datetime) -> TransferResult:
        """Write one region's posting of a transfer, exactly once per `posting_id`.

        Concurrent calls share transactions (group commit, `max_batch`
        postings each); each call gets its own outcome or its own error.
        """
        self._require_home(posting)
        await self._ensure_clearing(posting, occurred_at)
        return await self._group_commit.submit((posting, occurred_at))

    async def _append_batch(
        self, items: Sequence[tuple[Posting, datetime]]
    ) -> list[TransferResult | LedgerError]:
        """One transaction for a batch of postings, applied in order as if one by one."""
        ids = sorted({a for posting, _ in items for a in posting.accounts})
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
                    {"ids": [posting.posting_id for posting, _ in items]},
                )
            ).all()
            now: datetime = heads[0].now
            recorded = {h.transfer_id: transfer_result_from_row(h) for h in heads if h.transfer_id}
            batch = _Batch(now, self.region)
            outcomes: list[TransferResult | LedgerError] = []
            for posting, occurred_at in items:
                try:
                    outcomes.append(batch.post(posting, occurred_at, accounts, recorded))
                except LedgerError as exc:
                    outcomes.append(exc)
            if batch.postings:
                await conn.execute(_APPEND_WRITES, batch.params())
                if self._before_commit is not None:
                    for transfer in batch.postings:
                        await self._before_commit(transfer)
        return outcomes

    def _require_home(self, posting: Posting) -> None:
        if posting.region != self.region:
            raise InvalidRequest(
                f"posting {posting.posting_id!r} belongs to region {posting.region!r}; "
                f"this is the {self.region!r} store",
                field="region",
            )

    async def record_rejection(
        self, transfer: Transfer, region: str, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        return await self.record_posting_rejection(
            Posting.local(transfer, region), error, occurred_at
        )

    async def record_posting_rejection(
        self, posting: Posting, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        self._require_home(posting)
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
        return _same_transfer(transfer_result_from_row(row), transfer)

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
            rows = await conn.execute(
                text(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :id "
                    "AND version > :after ORDER BY version LIMIT :limit"
                ),
                {"id": account_id, "after": after_version, "limit": limit},
            )
            return [event_from_row(r) for r in rows]

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
            return await read_events_below_horizon(conn, after, limit)


class _Batch:
    """The postings of one append transaction, applied in order in memory.

    Each posting is checked against the accounts as the postings before it
    left them, so a batch behaves exactly like its postings appended one by
    one; its writes are columns of arrays for `_APPEND_WRITES`.
    """

    def __init__(self, now: datetime, region: str) -> None:
        self.now = now
        self.region = region
        self.postings: list[Transfer] = []
        self.touched: dict[str, Account] = {}
        self.events: dict[str, list[Any]] = {k: [] for k in _EVENT_FIELDS}
        self.transfers: dict[str, list[Any]] = {k: [] for k in _TRANSFER_FIELDS}

    def post(
        self,
        posting: Posting,
        occurred_at: datetime,
        accounts: dict[str, Account],
        recorded: dict[str, TransferResult],
    ) -> TransferResult:
        existing = recorded.get(posting.posting_id)
        if existing is not None:
            return _same_transfer(existing, posting.transfer)
        transfer = posting.transfer
        source = accounts.get(posting.debit_account)
        target = accounts.get(posting.credit_account)
        # A reversal returns money to where it came from: not a new spend
        # (the clearing account has no limit, the customer only gains), so
        # only the accounts' existence is checked.
        if posting.kind != PostingKind.REVERSAL or source is None or target is None:
            check_policy(posting.as_transfer(), source, target)
        assert source is not None and target is not None
        # A local posting keeps the original key; a saga's legs add their kind,
        # so the two regions' events of one transfer never share an id.
        key = posting.posting_id
        if posting.kind != PostingKind.LOCAL:
            key = f"{key}/{posting.kind}"
        metadata = canonical_json(transfer.metadata).decode()
        legs = (
            (source, -transfer.amount, Leg.DEBIT, EventType.DEBITED, posting.debit_counterparty),
            (target, transfer.amount, Leg.CREDIT, EventType.CREDITED,
             posting.credit_counterparty),
        )  # fmt: skip
        heads: list[Account] = []
        for account, amount, leg, kind, counterparty in legs:
            event_id = event_id_for(f"transfer/{key}/{leg}")
            version, balance = account.version + 1, account.balance + amount
            content = event_content(
                event_id=event_id,
                type=kind,
                account_id=account.account_id,
                version=version,
                amount=amount,
                currency=transfer.currency,
                balance_after=balance,
                occurred_at=occurred_at,
                recorded_at=self.now,
                region=self.region,
                initiated_by=transfer.initiated_by,
                transfer_id=posting.posting_id,
                leg=leg,
                counterparty=counterparty,
                description=transfer.description,
                metadata=transfer.metadata,
            )
            digest = chain_hash(account.head_hash, content)
            row: tuple[Any, ...] = (
                event_id,
                str(kind),
                account.account_id,
                version,
                amount,
                transfer.currency,
                balance,
                occurred_at,
                transfer.initiated_by,
                posting.posting_id,
                str(leg),
                counterparty,
                transfer.description,
                metadata,
                account.head_hash,
                digest,
            )
            for name, value in zip(_EVENT_FIELDS, row, strict=True):
                self.events[name].append(value)
            # (Positional, not dataclasses.replace: this runs twice per transfer.)
            head = Account(account.account_id, account.currency, account.region,
                           account.overdraft_limit, account.status, version, balance,
                           account.opened_at, digest, account.metadata)  # fmt: skip
            accounts[account.account_id] = self.touched[account.account_id] = head
            heads.append(head)
        debit_id, credit_id = self.events["event_id"][-2:]
        result = TransferResult(
            transfer_id=transfer.transfer_id,
            status=TransferStatus.CONFIRMED,
            fingerprint=transfer.fingerprint(),
            region=self.region,
            debit_event_id=debit_id,
            credit_event_id=credit_id,
            from_balance_after=heads[0].balance,
            to_balance_after=heads[1].balance,
            confirmed_at=self.now,
        )
        row = (
            posting.posting_id,
            result.fingerprint,
            posting.debit_account,
            posting.credit_account,
            transfer.amount,
            transfer.currency,
            transfer.initiated_by,
            transfer.description,
            metadata,
            debit_id,
            credit_id,
            heads[0].balance,
            heads[1].balance,
            occurred_at,
            str(posting.kind),
            posting.peer_region,
        )
        for name, value in zip(_TRANSFER_FIELDS, row, strict=True):
            self.transfers[name].append(value)
        # A later posting of the batch with the same id sees this one's outcome.
        recorded[posting.posting_id] = result
        self.postings.append(transfer)
        return result

    def params(self) -> dict[str, Any]:
        heads = list(self.touched.values())
        return (
            {"now": self.now, "region": self.region}
            | {f"e_{k}": v for k, v in self.events.items()}
            | {f"t_{k}": v for k, v in self.transfers.items()}
            | {
                "a_account_id": [a.account_id for a in heads],
                "a_version": [a.version for a in heads],
                "a_balance": [a.balance for a in heads],
                "a_head_hash": [a.head_hash for a in heads],
            }
        )


_EVENT_FIELDS = ("event_id", "type", "account_id", "version", "amount", "currency",
                 "balance_after", "occurred_at", "initiated_by", "transfer_id", "leg",
                 "counterparty", "description", "metadata", "prev_hash", "hash")  # fmt: skip
_TRANSFER_FIELDS = ("transfer_id", "fingerprint", "from_account", "to_account", "amount",
                    "currency", "initiated_by", "description", "metadata", "debit_event_id",
                    "credit_event_id", "from_balance_after", "to_balance_after", "occurred_at",
                    "kind", "peer_region")  # fmt: skip


async def read_events_below_horizon(
    conn: AsyncConnection, after: TailCursor, limit: int
) -> list[Event]:
    """The global-order tail (DESIGN.md section 4, first pitfall).

    Contract: every event is delivered exactly once, in one total order that
    every reader sees alike. That order is *not* each account's version order
    (a transaction's id is taken at its first lock, before it waits for the
    second): a consumer that needs per-account order sorts by (account_id,
    version) within what it has read.

    Only rows written by transactions older than the oldest one still running
    (`pg_snapshot_xmin`) are returned. Those transactions are all finished,
    and any transaction that commits later has an id at or above that horizon,
    so it sorts after everything returned here: ordering by (tx_id, position)
    and resuming after the last row read can never skip a late commit.
    """
    rows = await conn.execute(
        text(
            f"SELECT {EVENT_COLUMNS} FROM events "
            "WHERE (tx_id, position) > (:tx_id, :position) "
            "AND tx_id < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint "
            "ORDER BY tx_id, position LIMIT :limit"
        ),
        {"tx_id": after.tx_id, "position": after.position, "limit": limit},
    )
    return [event_from_row(r) for r in rows]
