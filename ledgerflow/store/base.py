"""The event store's abstract seam."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ledgerflow.domain.errors import LedgerError
from ledgerflow.domain.holds import (
    CaptureRequest,
    CaptureResult,
    DeadlineChange,
    HoldRequest,
    HoldResult,
    HoldState,
    ReleaseResult,
)
from ledgerflow.domain.model import (
    Account,
    AccountChangeRequest,
    AccountChangeResult,
    Event,
    OpenAccountRequest,
    OpenAccountResult,
    Posting,
    Transfer,
    TransferResult,
)
from ledgerflow.domain.transactions import TransactionRequest, TransactionResult


@dataclass(frozen=True, order=True)
class TailCursor:
    """A reader's place in the global order, which is (tx_id, position).

    Ordering by the writing transaction's id first is what makes tailing safe:
    every transaction still in flight has an id at or above the horizon the
    reader stays below, so nothing can later commit *behind* the cursor.
    """

    tx_id: int = 0
    position: int = 0


class EventStore(Protocol):
    """One region's write model: accounts, their append-only events and the
    recorded outcome of every posting id. What the activities, the saga and
    the tests need of a store, and all of it: `PostgresEventStore` is the
    ledger's, `InMemoryEventStore` the fast tests'; tests/contract holds both
    to the same behaviour."""

    #: The region whose accounts this store holds.
    region: str

    async def open_account(
        self, request: OpenAccountRequest, occurred_at: datetime
    ) -> OpenAccountResult:
        """Open the account (its `AccountOpened` event), or return it if it is
        already open as requested; `AccountAlreadyExists` if otherwise."""
        ...

    async def get_account(self, account_id: str) -> Account | None: ...

    async def change_account(
        self, request: AccountChangeRequest, occurred_at: datetime
    ) -> AccountChangeResult:
        """Freeze, unfreeze or close the account (its status event), once per
        change id: the recorded outcome, applied or refused (a refusal is
        recorded, not raised); `DuplicateChangeMismatch` for another request
        under the same id."""
        ...

    async def place_hold(self, request: HoldRequest, occurred_at: datetime) -> HoldResult:
        """Reserve the amount (its `HoldPlaced` event), or record the hold id
        refused; the recorded outcome for the id ever after
        (`DuplicateHoldMismatch` for another hold under it)."""
        ...

    async def capture_hold(self, request: CaptureRequest, occurred_at: datetime) -> CaptureResult:
        """Post one capture of an open hold, or record it refused; once per capture id."""
        ...

    async def return_capture(
        self,
        hold_id: str,
        capture_id: str,
        reason_type: str,
        reason: str,
        occurred_at: datetime,
    ) -> CaptureResult:
        """Return a cross-region capture its destination refused for good: the
        saga's reversing leg to the held account, and the capture `reversed`
        with that refusal; once per capture id (`InvalidRequest` for a capture
        that does not travel or did not post)."""
        ...

    async def release_hold(
        self, hold_id: str, ending: str, initiated_by: str, occurred_at: datetime
    ) -> ReleaseResult | None:
        """Void (`voided`) or expire (`expired`) an open hold: its one release.
        Voiding a hold that ended is `HoldNotOpen` (`HoldExpired` if it
        expired); an expiry of a hold that ended otherwise is None."""
        ...

    async def extend_hold(self, change: DeadlineChange, occurred_at: datetime) -> HoldState:
        """Move an open hold's deadline, once per change id."""
        ...

    async def get_hold(self, hold_id: str) -> HoldState | None: ...

    async def append_transaction(
        self, request: TransactionRequest, occurred_at: datetime
    ) -> TransactionResult:
        """Post every leg atomically, or record the id rejected; the recorded
        outcome ever after (`DuplicateTransactionMismatch` for another
        transaction under the id)."""
        ...

    async def get_transaction(self, transaction_id: str) -> TransactionResult | None: ...

    async def check_transfer(self, transfer: Transfer) -> None:
        """Advisory validation without locks; raises the `LedgerError` the append would."""
        ...

    async def check_posting(self, posting: Posting) -> None:
        """The same for one region's posting of a transfer (a saga's leg)."""
        ...

    async def append_transfer(
        self, transfer: Transfer, region: str, occurred_at: datetime
    ) -> TransferResult:
        """Post both legs atomically, or return the result already recorded for this id."""
        ...

    async def append_posting(self, posting: Posting, occurred_at: datetime) -> TransferResult:
        """Write one region's posting exactly once per `posting_id`: the
        recorded outcome if that id was recorded with the same payload and
        part of the transfer, `DuplicateTransferMismatch` if not."""
        ...

    async def record_rejection(
        self, transfer: Transfer, region: str, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        """Record a refused transfer for audit, or return the outcome already recorded."""
        ...

    async def record_posting_rejection(
        self, posting: Posting, error: LedgerError, occurred_at: datetime
    ) -> TransferResult: ...

    async def get_transfer(self, transfer_id: str) -> TransferResult | None: ...

    async def account_events(
        self, account_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[Event]: ...

    async def events_by_id(self, event_ids: list[str]) -> list[Event]: ...

    async def read_events(self, after: TailCursor, limit: int = 1000) -> list[Event]:
        """Events after `after` in global order, never skipping one that commits late."""
        ...

    async def project(self, event_ids: list[str]) -> int:
        """Apply these events to the read models (idempotent); how many there were."""
        ...


class LocalShorthands:
    """A local transfer is one posting: the transfer-level calls of
    `EventStore`, in terms of its posting-level ones (shared by both stores)."""

    region: str

    async def check_posting(self, posting: Posting) -> None:
        raise NotImplementedError

    async def append_posting(self, posting: Posting, occurred_at: datetime) -> TransferResult:
        raise NotImplementedError

    async def record_posting_rejection(
        self, posting: Posting, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        raise NotImplementedError

    async def check_transfer(self, transfer: Transfer) -> None:
        await self.check_posting(Posting.local(transfer, self.region))

    async def append_transfer(
        self, transfer: Transfer, region: str, occurred_at: datetime
    ) -> TransferResult:
        return await self.append_posting(Posting.local(transfer, region), occurred_at)

    async def record_rejection(
        self, transfer: Transfer, region: str, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        return await self.record_posting_rejection(
            Posting.local(transfer, region), error, occurred_at
        )
