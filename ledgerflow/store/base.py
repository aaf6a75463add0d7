"""The event store's abstract seam."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from ledgerflow.domain.errors import LedgerError
from ledgerflow.domain.model import (
    Account,
    Event,
    OpenAccountRequest,
    OpenAccountResult,
    Transfer,
    TransferResult,
)


@dataclass(frozen=True, order=True)
class TailCursor:
    """A reader's place in the global order, which is (tx_id, position).

    Ordering by the writing transaction's id first is what makes tailing safe:
    every transaction still in flight has an id at or above the horizon the
    reader stays below, so nothing can later commit *behind* the cursor.
    """

    tx_id: int = 0
    position: int = 0


class EventStore(ABC):
    """One region's write model: accounts and their append-only events."""

    @abstractmethod
    async def open_account(
        self, request: OpenAccountRequest, occurred_at: datetime
    ) -> OpenAccountResult: ...

    @abstractmethod
    async def get_account(self, account_id: str) -> Account | None: ...

    @abstractmethod
    async def check_transfer(self, transfer: Transfer) -> None:
        """Advisory validation without locks; raises the `LedgerError` the append would."""

    @abstractmethod
    async def append_transfer(
        self, transfer: Transfer, region: str, occurred_at: datetime
    ) -> TransferResult:
        """Post both legs atomically, or return the result already recorded for this id."""

    @abstractmethod
    async def record_rejection(
        self, transfer: Transfer, region: str, error: LedgerError, occurred_at: datetime
    ) -> TransferResult:
        """Record a refused transfer for audit, or return the outcome already recorded."""

    @abstractmethod
    async def get_transfer(self, transfer_id: str) -> TransferResult | None: ...

    @abstractmethod
    async def account_events(
        self, account_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[Event]: ...

    @abstractmethod
    async def events_by_id(self, event_ids: list[str]) -> list[Event]: ...

    @abstractmethod
    async def read_events(self, after: TailCursor, limit: int = 1000) -> list[Event]:
        """Events after `after` in global order, never skipping one that commits late."""
