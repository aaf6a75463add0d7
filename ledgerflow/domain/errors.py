"""The ledger's error hierarchy.

Every error has a stable `type` name. The workflow turns it into a
non-retryable Temporal `ApplicationError` with that type; the SDK client turns
such a Temporal error back into the same class; the CLI prints one line and
exits with `exit_code`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    type: ClassVar[str] = "LedgerError"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class RequestError(LedgerError):
    """The request itself is malformed: nothing is written, not even a rejection."""

    exit_code = 2


class InvalidRequest(RequestError):
    """A missing field, a malformed id, a value of the wrong type."""

    type = "InvalidRequest"


class InvalidAmount(RequestError):
    """Zero, negative, fractional-minor-unit, non-numeric or overflowing amounts."""

    type = "InvalidAmount"


class UnknownCurrency(RequestError):
    """Not an ISO 4217 currency code the ledger knows."""

    type = "UnknownCurrency"


class SameAccount(RequestError):
    type = "SameAccount"


class DuplicateTransferMismatch(RequestError):
    """The transfer id was already used with a different payload."""

    type = "DuplicateTransferMismatch"

    @classmethod
    def for_transfer(cls, transfer_id: str) -> DuplicateTransferMismatch:
        return cls(
            f"transfer id {transfer_id!r} was already used for a different transfer",
            transfer_id=transfer_id,
        )


class AccountAlreadyExists(RequestError):
    """An account id was already opened with different attributes."""

    type = "AccountAlreadyExists"


class DuplicateTransactionMismatch(RequestError):
    """A transaction id was already used for a different transaction."""

    type = "DuplicateTransactionMismatch"


class DuplicateHoldMismatch(RequestError):
    """A hold id was already used for a different hold."""

    type = "DuplicateHoldMismatch"


class DuplicateCaptureMismatch(RequestError):
    """A capture id of a hold was already used with another amount."""

    type = "DuplicateCaptureMismatch"


class HoldNotFound(RequestError):
    """No hold was placed under this id."""

    type = "HoldNotFound"


class DuplicateChangeMismatch(RequestError):
    """An account change id was already used for a different change."""

    type = "DuplicateChangeMismatch"


class ConfirmationTimeout(LedgerError):
    """The caller stopped waiting; the transfer's outcome is not known to it yet."""

    type = "ConfirmationTimeout"
    exit_code = 5


class TransferRejected(LedgerError):
    """A well-formed transfer the ledger refused; recorded for audit, posts nothing."""

    exit_code = 3


class AccountNotFound(TransferRejected):
    type = "AccountNotFound"


class AccountClosed(TransferRejected):
    type = "AccountClosed"


class AccountFrozen(TransferRejected):
    """A frozen account refuses debits (it still accepts credits)."""

    type = "AccountFrozen"


class HoldNotOpen(TransferRejected):
    """The hold already ended (captured in full, voided, expired) or was
    refused when placed: nothing more can be captured, voided or moved."""

    type = "HoldNotOpen"


class HoldExpired(TransferRejected):
    """The hold's deadline has passed: it expired (now, if nobody had
    written the expiry yet)."""

    type = "HoldExpired"


class CaptureExceedsHold(TransferRejected):
    """The captures would take more than the hold holds (plus its over-capture tolerance)."""

    type = "CaptureExceedsHold"


class ChangeRefused(LedgerError):
    """A well-formed account change the account's state does not allow;
    recorded for audit under its change id, changes nothing."""

    exit_code = 3


class AccountStateConflict(ChangeRefused):
    """Freezing an account that is not open, unfreezing one that is not
    frozen, closing one already closed."""

    type = "AccountStateConflict"


class AccountNotEmpty(ChangeRefused):
    """Closing an account whose balance is not zero."""

    type = "AccountNotEmpty"


class AccountUnknown(ChangeRefused):
    """A change of an account that does not exist."""

    type = "AccountUnknown"


class AccountHasOpenHolds(ChangeRefused):
    """Closing an account while a hold still reserves part of it."""

    type = "AccountHasOpenHolds"


class CurrencyMismatch(TransferRejected):
    type = "CurrencyMismatch"


class InsufficientFunds(TransferRejected):
    type = "InsufficientFunds"


class ArchiveIntegrityError(LedgerError):
    """The archive disagrees with itself or with the hot store (a checksum, a
    manifest, the digest chain or an event differs). Archiving stops there,
    visibly, until an operator looks; it is never retried."""

    type = "ArchiveIntegrityError"
    exit_code = 6


class ArchiveUnavailable(LedgerError):
    """The answer needs archived history and the object store cannot be reached."""

    type = "ArchiveUnavailable"
    exit_code = 4


class StoreUnavailable(LedgerError):
    """A read could not reach the region's database (down, restarting, or
    refusing connections) within the client's retry window. Nothing was
    written; ask again."""

    type = "StoreUnavailable"
    exit_code = 4


class ArchiveMisconfigured(LedgerError):
    """The archive's object store cannot keep the promise configured for it
    (object lock asked for, the bucket has none): archiving stops, loudly."""

    type = "ArchiveMisconfigured"
    exit_code = 2


class PruningNotConfigured(LedgerError):
    """Pruning was asked of a process that holds no pruner role credentials."""

    type = "PruningNotConfigured"
    exit_code = 2


ERROR_TYPES: dict[str, type[LedgerError]] = {
    cls.type: cls
    for cls in (
        InvalidRequest,
        InvalidAmount,
        UnknownCurrency,
        SameAccount,
        DuplicateTransferMismatch,
        AccountAlreadyExists,
        AccountNotFound,
        AccountClosed,
        AccountFrozen,
        DuplicateChangeMismatch,
        DuplicateHoldMismatch,
        DuplicateTransactionMismatch,
        DuplicateCaptureMismatch,
        HoldNotFound,
        HoldNotOpen,
        HoldExpired,
        CaptureExceedsHold,
        AccountHasOpenHolds,
        AccountStateConflict,
        AccountNotEmpty,
        AccountUnknown,
        CurrencyMismatch,
        InsufficientFunds,
        ArchiveIntegrityError,
        ArchiveUnavailable,
        ArchiveMisconfigured,
        PruningNotConfigured,
        StoreUnavailable,
    )
}

#: Error types that must never be retried by Temporal (an unreachable archive
#: or database are the errors that heal by themselves).
NON_RETRYABLE_TYPES: list[str] = sorted(
    set(ERROR_TYPES) - {ArchiveUnavailable.type, StoreUnavailable.type}
)

#: Error types that end a transfer as "rejected" (recorded, posts nothing).
REJECTION_TYPES: frozenset[str] = frozenset(
    name for name, cls in ERROR_TYPES.items() if issubclass(cls, TransferRejected)
)


#: Error types that end an account change as "refused" (recorded, changes nothing).
REFUSAL_TYPES: frozenset[str] = frozenset(
    name for name, cls in ERROR_TYPES.items() if issubclass(cls, ChangeRefused)
)


def error_from_type(type_name: str, message: str, **details: Any) -> LedgerError:
    """Rebuild a typed error from its stable type name (e.g. from Temporal)."""
    return ERROR_TYPES.get(type_name, LedgerError)(message, **details)
