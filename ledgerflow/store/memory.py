"""An event store in memory, for fast tests of the domain and the workflows'
activities: the same contract as `PostgresEventStore` (tests/contract runs
one suite against both), without a database.

It applies postings with the very code the PostgreSQL store applies them
with (`PostingBatch`: the policy, the running balances, the hash chain, the
recorded outcome per id), so what differs between the two is only where the
rows go. It holds one region, in one process; it has no durability, no
concurrency beyond one event loop (an `asyncio.Lock` stands in for the
account locks), and no read models.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ledgerflow.domain.errors import (
    AccountAlreadyExists,
    ChangeRefused,
    HoldNotFound,
    InvalidRequest,
    LedgerError,
)
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, event_content
from ledgerflow.domain.holds import (
    CaptureRequest,
    CaptureResult,
    DeadlineChange,
    HoldRequest,
    HoldResult,
    HoldState,
    HoldStatus,
    ReleaseResult,
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
    TransferResult,
    TransferStatus,
)
from ledgerflow.domain.transactions import TransactionRequest, TransactionResult
from ledgerflow.store.base import LocalShorthands, TailCursor
from ledgerflow.store.batch import (
    PostingBatch,
    check_posting_policy,
    clearing_request,
    event_id_for,
    require_home,
    same_posting,
)
from ledgerflow.store.holds import (
    HoldRecords,
    Placement,
    Reversal,
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
from ledgerflow.store.rows import Recorded
from ledgerflow.store.transactions import post_or_reject, same_transaction


class InMemoryEventStore(LocalShorthands):
    """One region's accounts, events and outcomes, in memory."""

    def __init__(self, region: str, clock: Callable[[], datetime] | None = None) -> None:
        self.region = region
        self._clock = clock or (lambda: datetime.now(UTC))
        self._accounts: dict[str, Account] = {}
        self._events: list[Event] = []
        self._recorded: dict[str, Recorded] = {}
        self._changes: dict[tuple[str, str], AccountChangeResult] = {}
        self._transactions: dict[str, TransactionResult] = {}
        self._holds: dict[str, Placement] = {}
        self._captures: dict[str, dict[str, CaptureResult]] = {}
        self._releases: dict[str, ReleaseResult] = {}
        self._reversals: dict[str, dict[str, Reversal]] = {}
        #: hold id -> change id -> the deadline it set (deadlines only move
        #: by `expires_in_s` from the store's clock, so the latest is the max)
        self._deadlines: dict[str, dict[str, datetime]] = {}
        self._tx = 0
        self._lock = asyncio.Lock()
        #: The balance read model: account -> (balance, version), as projected.
        self.balances: dict[str, tuple[int, int]] = {}

    # -- accounts ---------------------------------------------------------

    async def open_account(
        self, request: OpenAccountRequest, occurred_at: datetime
    ) -> OpenAccountResult:
        return self._open(request.validated(), occurred_at)

    def _open(self, request: OpenAccountRequest, occurred_at: datetime) -> OpenAccountResult:
        if request.region != self.region:
            raise InvalidRequest(
                f"account {request.account_id!r} is homed in {request.region!r}; "
                f"this is the {self.region!r} store",
                field="region",
            )
        event_id = event_id_for(f"account/{request.account_id}/opened")
        existing = self._accounts.get(request.account_id)
        if existing is not None:
            if (existing.currency, existing.region, existing.overdraft_limit) != (
                request.currency, request.region, request.overdraft_limit,
            ):  # fmt: skip
                raise AccountAlreadyExists(
                    f"account {request.account_id!r} already exists with currency "
                    f"{existing.currency}, region {existing.region}, overdraft limit "
                    f"{existing.overdraft_limit}",
                    account_id=request.account_id,
                )
            return OpenAccountResult(account=existing, created=False, event_id=event_id)
        now = self._clock()
        fields: dict[str, Any] = dict(
            event_id=event_id, type=EventType.ACCOUNT_OPENED, account_id=request.account_id,
            version=1, amount=0, currency=request.currency, balance_after=0,
            occurred_at=occurred_at, recorded_at=now, region=request.region,
            initiated_by=request.initiated_by, transfer_id=None, leg=None, counterparty=None,
            description=None, metadata=request.metadata,
        )  # fmt: skip
        digest = chain_hash(GENESIS_HASH, event_content(**fields))
        self._tx += 1
        self._events.append(
            Event(
                **fields,
                prev_hash=GENESIS_HASH,
                hash=digest,
                position=len(self._events) + 1,
                tx_id=self._tx,
            )
        )
        account = Account(request.account_id, request.currency, request.region,
                          request.overdraft_limit, "open", 1, 0, now, digest,
                          dict(request.metadata), now)  # fmt: skip
        self._accounts[account.account_id] = account
        return OpenAccountResult(account=account, created=True, event_id=event_id)

    def _ensure_clearing(
        self, clearing: str | None, currency: str, peer_region: str | None, occurred_at: datetime
    ) -> None:
        if clearing is None or clearing in self._accounts:
            return
        self._open(clearing_request(clearing, currency, self.region, peer_region), occurred_at)

    async def get_account(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    async def change_account(
        self, request: AccountChangeRequest, occurred_at: datetime
    ) -> AccountChangeResult:
        request = request.validated()
        async with self._lock:
            key = (request.account_id, request.change_id)
            if key in self._changes:
                return same_change(self._changes[key], request)
            account = self._accounts.get(request.account_id)
            now = self._clock()
            try:
                change = apply_change(request, account, now, occurred_at, self.region)
            except ChangeRefused as error:
                self._changes[key] = refused(request, account, error, now)
                return self._changes[key]
            self._tx += 1
            self._events.append(
                replace(change.event, position=len(self._events) + 1, tx_id=self._tx)
            )
            self._accounts[change.head.account_id] = change.head
            self._changes[key] = change.result
            return change.result

    # -- transfers --------------------------------------------------------

    async def check_posting(self, posting: Posting) -> None:
        check_posting_policy(posting, self._accounts, self.region, self._clock())

    async def append_posting(self, posting: Posting, occurred_at: datetime) -> TransferResult:
        require_home(posting, self.region)
        async with self._lock:
            self._ensure_clearing(posting.clearing_account, posting.transfer.currency,
                                  posting.peer_region, occurred_at)  # fmt: skip
            batch = PostingBatch(self._clock(), self.region)
            accounts = dict(self._accounts)
            result = batch.post(posting, occurred_at, accounts, self._recorded)
            self._apply(batch)
            return result

    def _apply(self, batch: PostingBatch, *events: Event) -> None:
        """One transaction: `events` (single ones: a hold placed or
        released), then the batch's postings."""
        if not events and not batch.events["event_id"]:
            return
        self._tx += 1
        for event in events:
            self._events.append(replace(event, position=len(self._events) + 1, tx_id=self._tx))
        columns = batch.events
        for i in range(len(columns["event_id"])):
            row = {name: values[i] for name, values in columns.items()}
            row["metadata"] = json.loads(row["metadata"])
            self._events.append(
                Event(region=self.region, position=len(self._events) + 1, tx_id=self._tx, **row)
            )
        self._accounts.update(batch.touched)

    async def record_posting_rejection(
        self, posting: Posting, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        require_home(posting, self.region)
        async with self._lock:
            if posting.posting_id not in self._recorded:
                rejected = TransferResult(
                    transfer_id=posting.transfer.transfer_id, status=TransferStatus.REJECTED,
                    fingerprint=posting.transfer.fingerprint(), region=posting.region,
                    reason_type=error.type, reason=error.message,
                )  # fmt: skip
                self._recorded[posting.posting_id] = Recorded(
                    rejected, str(posting.kind), posting.peer_region
                )
            return same_posting(self._recorded[posting.posting_id], posting)

    # -- holds ------------------------------------------------------------

    def _records(self, hold_id: str) -> HoldRecords:
        placement = self._holds.get(hold_id)
        if placement is None:
            raise HoldNotFound(f"no hold {hold_id!r} was placed", hold_id=hold_id)
        deadlines = self._deadlines.get(hold_id, {})
        return HoldRecords(
            placement, list(self._captures.get(hold_id, {}).values()),
            self._releases.get(hold_id), max(deadlines.values(), default=None),
            dict(self._reversals.get(hold_id, {})),
        )  # fmt: skip

    def _settle(
        self, records: HoldRecords, now: datetime, occurred_at: datetime
    ) -> tuple[HoldRecords, list[Event]]:
        due = expiry_due(records, self._accounts, now, occurred_at, self.region)
        if due is None:
            return records, []
        written, result = due
        self._accounts[written.head.account_id] = written.head
        self._releases[result.hold_id] = result
        return replace(records, release=result), [written.event]

    async def place_hold(self, request: HoldRequest, occurred_at: datetime) -> HoldResult:
        hold = request.validated()
        async with self._lock:
            if hold.to_region is not None:
                self._ensure_clearing(hold_target(hold, self.region), hold.currency,
                                      hold.to_region, occurred_at)  # fmt: skip
            if hold.hold_id in self._holds:
                return same_hold(self._holds[hold.hold_id].result, hold)
            outcome = place_or_refuse(hold, self._accounts, self._clock(), occurred_at,
                                      self.region)  # fmt: skip
            if outcome.written is not None:
                self._apply(PostingBatch(self._clock(), self.region), outcome.written.event)
            self._holds[hold.hold_id] = Placement(outcome.result, hold.initiated_by,
                                                  hold.description)  # fmt: skip
            return outcome.result

    async def capture_hold(self, request: CaptureRequest, occurred_at: datetime) -> CaptureResult:
        async with self._lock:
            records = self._records(request.hold_id)
            capture = request.validated(records.placement.result.currency)
            if capture.capture_id in records.by_capture:
                return same_capture(records.by_capture[capture.capture_id], capture)
            now = self._clock()
            records, expired = self._settle(records, now, occurred_at)
            accounts = dict(self._accounts)
            outcome = capture_or_refuse(records, capture, accounts, now, occurred_at,
                                        self.region, self._recorded)  # fmt: skip
            self._apply(outcome.batch or PostingBatch(now, self.region), *expired)
            self._captures.setdefault(capture.hold_id, {})[capture.capture_id] = outcome.result
            return outcome.result

    async def return_capture(
        self,
        hold_id: str,
        capture_id: str,
        reason_type: str,
        reason: str,
        occurred_at: datetime,
    ) -> CaptureResult:
        async with self._lock:
            now = self._clock()
            accounts = dict(self._accounts)
            returned = return_capture(self._records(hold_id), capture_id, reason_type, reason,
                                      accounts, now, occurred_at, self.region,
                                      self._recorded)  # fmt: skip
            if returned.batch is not None and returned.reversal is not None:
                self._apply(returned.batch)
                self._reversals.setdefault(hold_id, {})[capture_id] = returned.reversal
            return returned.result

    async def release_hold(
        self, hold_id: str, ending: str, initiated_by: str, occurred_at: datetime
    ) -> ReleaseResult | None:
        async with self._lock:
            now = self._clock()
            records, expired = self._settle(self._records(hold_id), now, occurred_at)
            decided = decide_release(records, HoldStatus(ending), self._accounts, now,
                                     occurred_at, self.region, initiated_by)  # fmt: skip
            written = [decided.written.event] if decided.written else []
            self._apply(PostingBatch(now, self.region), *expired, *written)
            if decided.written is not None and decided.result is not None:
                self._releases[hold_id] = decided.result
        if decided.refusal is not None:
            raise decided.refusal
        return decided.result

    async def extend_hold(self, change: DeadlineChange, occurred_at: datetime) -> HoldState:
        change = change.validated()
        async with self._lock:
            records = self._records(change.hold_id)
            if change.change_id in self._deadlines.get(change.hold_id, {}):
                return records.state
            now = self._clock()
            records, expired = self._settle(records, now, occurred_at)
            self._apply(PostingBatch(now, self.region), *expired)
            moved = move_deadline(records, change, now)
            if moved.expires_at is not None:
                self._deadlines.setdefault(change.hold_id, {})[change.change_id] = moved.expires_at
        if moved.refusal is not None:
            raise moved.refusal
        return moved.state

    async def get_hold(self, hold_id: str) -> HoldState | None:
        try:
            return self._records(hold_id).state
        except HoldNotFound:
            return None

    # -- multi-leg transactions ------------------------------------------------

    async def append_transaction(
        self, request: TransactionRequest, occurred_at: datetime
    ) -> TransactionResult:
        transaction = request.validated()
        async with self._lock:
            known = self._transactions.get(transaction.transaction_id)
            if known is not None:
                return same_transaction(known, transaction)
            now = self._clock()
            accounts = dict(self._accounts)
            batch, result = post_or_reject(transaction, accounts, now, occurred_at, self.region)
            if batch is not None:
                self._apply(batch)
            self._transactions[transaction.transaction_id] = result
            return result

    async def get_transaction(self, transaction_id: str) -> TransactionResult | None:
        return self._transactions.get(transaction_id)

    async def get_transfer(self, transfer_id: str) -> TransferResult | None:
        recorded = self._recorded.get(transfer_id)
        return recorded.result if recorded is not None else None

    # -- reading events ---------------------------------------------------

    async def account_events(
        self, account_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[Event]:
        mine = [e for e in self._events if e.account_id == account_id and e.version > after_version]
        return sorted(mine, key=lambda e: e.version)[:limit]

    async def events_by_id(self, event_ids: list[str]) -> list[Event]:
        wanted = set(event_ids)
        return [e for e in self._events if e.event_id in wanted]

    async def project(self, event_ids: list[str]) -> int:
        events = await self.events_by_id(event_ids)
        for event in events:  # never backwards, whatever the order or repetition
            if self.balances.get(event.account_id, (0, 0))[1] < event.version:
                self.balances[event.account_id] = (event.balance_after, event.version)
        return len(events)

    async def read_events(self, after: TailCursor, limit: int = 1000) -> list[Event]:
        def place(event: Event) -> TailCursor:
            return TailCursor(event.tx_id or 0, event.position or 0)

        return [e for e in self._events if place(e) > after][:limit]


if TYPE_CHECKING:  # both stores are the seam, checked by mypy
    from ledgerflow.store.base import EventStore
    from ledgerflow.store.postgres import PostgresEventStore

    _memory: type[EventStore] = InMemoryEventStore
    _postgres: type[EventStore] = PostgresEventStore
