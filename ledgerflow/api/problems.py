"""Errors over HTTP: `application/problem+json` (RFC 9457) with the ledger's
stable error type, one documented status code per type.

The body is `{"type": "urn:ledgerflow:error:<Type>", "title": "<Type>",
"status": <code>, "detail": "<message>", "error": "<Type>", ...details}`:
`error` is the same stable name the SDK raises and the CLI prints, and the
error's own details (the field at fault, the account, the transfer's
recorded outcome) follow as members.
"""

from __future__ import annotations

import logging
from typing import Any

from ledgerflow.api.tokens import Forbidden, RateLimited, Unauthorized
from ledgerflow.domain.errors import ERROR_TYPES, LedgerError
from ledgerflow.wire import plain

log = logging.getLogger("ledgerflow.api")

PROBLEM_JSON = "application/problem+json"


class MalformedRequest(LedgerError):
    """The body is not JSON, not an object, or not UTF-8 (400)."""

    type = "MalformedRequest"


class RouteNotFound(LedgerError):
    """No such path (404)."""

    type = "RouteNotFound"


class MethodNotAllowed(LedgerError):
    """The path exists, the method does not (405)."""

    type = "MethodNotAllowed"


class CodecNotConfigured(LedgerError):
    """Encryption is off here: nothing to encode or decode with (404)."""

    type = "CodecNotConfigured"


class NoReport(LedgerError):
    """No reconciliation report (yet, or by that id) (404)."""

    type = "NoReport"


class PayloadTooLarge(LedgerError):
    """The body is larger than `LEDGERFLOW_API_MAX_BODY_BYTES` (413)."""

    type = "PayloadTooLarge"


class UnsupportedMediaType(LedgerError):
    """A body that is not `application/json` (415)."""

    type = "UnsupportedMediaType"


class InternalError(LedgerError):
    """Anything unexpected (500): logged with its trace, never shown."""

    type = "InternalError"


API_ERRORS: tuple[type[LedgerError], ...] = (
    MalformedRequest,
    Unauthorized,
    Forbidden,
    RouteNotFound,
    NoReport,
    CodecNotConfigured,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    InternalError,
)

#: The status code of every error type (the README's table is this one).
STATUS: dict[str, int] = {
    "MalformedRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "RouteNotFound": 404,
    "NoReport": 404,
    "CodecNotConfigured": 404,
    "MethodNotAllowed": 405,
    "PayloadTooLarge": 413,
    "UnsupportedMediaType": 415,
    "RateLimited": 429,
    "InternalError": 500,
    # the request is well formed JSON but not a valid request: nothing written
    "InvalidRequest": 422,
    "InvalidAmount": 422,
    "UnknownCurrency": 422,
    "SameAccount": 422,
    # the id (the Idempotency-Key) was used with another body
    "DuplicateTransferMismatch": 409,
    "DuplicateTransactionMismatch": 409,
    "DuplicateHoldMismatch": 409,
    "DuplicateCaptureMismatch": 409,
    "DuplicateChangeMismatch": 409,
    "AccountAlreadyExists": 409,
    # what the request names does not exist
    "AccountNotFound": 404,
    "AccountUnknown": 404,
    "HoldNotFound": 404,
    # the ledger refused the operation (recorded: the same key answers the same)
    "AccountClosed": 422,
    "AccountFrozen": 422,
    "CurrencyMismatch": 422,
    "InsufficientFunds": 422,
    "HoldNotOpen": 422,
    "HoldExpired": 422,
    "CaptureExceedsHold": 422,
    # the account's state does not allow the change
    "AccountStateConflict": 409,
    "AccountNotEmpty": 409,
    "AccountHasOpenHolds": 409,
    # not known yet: ask again with the same key
    "ConfirmationTimeout": 504,
    "StoreUnavailable": 503,
    "ArchiveUnavailable": 503,
    # the ledger's own integrity or configuration: an operator must look
    "ArchiveIntegrityError": 500,
    "ArchiveMisconfigured": 500,
    "PruningNotConfigured": 500,
}

#: Errors whose answer may change by asking again later (`Retry-After`).
RETRY_LATER = frozenset(
    {"RateLimited", "ConfirmationTimeout", "StoreUnavailable", "ArchiveUnavailable"}
)


def every_error_type() -> list[str]:
    """Every type an API answer can carry (the ledger's and the API's own)."""
    return sorted({*ERROR_TYPES, *(cls.type for cls in API_ERRORS), "ConfirmationTimeout"})


#: Errors whose detail describes the deployment (hosts, ports, buckets): the
#: API logs it and tells its callers only this.
UNAVAILABLE_DETAIL = {
    "StoreUnavailable": "the ledger's database is unavailable; try again shortly",
    "ArchiveUnavailable": "the ledger's archive is unavailable; try again shortly",
}


def problem(exc: LedgerError, **extra: Any) -> tuple[int, dict[str, Any]]:
    """(status, body) of a ledger error."""
    status = STATUS.get(exc.type, 500)
    hidden = exc.type in UNAVAILABLE_DETAIL
    if hidden:
        log.warning("answered %s: %s", exc.type, exc.message)
    body: dict[str, Any] = {
        "type": f"urn:ledgerflow:error:{exc.type}",
        "title": exc.type,
        "status": status,
        "detail": UNAVAILABLE_DETAIL[exc.type] if hidden else exc.message,
        "error": exc.type,
    }
    for key, value in ({} if hidden else exc.details | extra).items():
        if key not in body:
            body[key] = plain(value)
    return status, body


def markdown_table() -> str:
    """docs/API.md's table of error types and their status codes (a test
    compares the two)."""
    rows = sorted(every_error_type(), key=lambda name: (STATUS.get(name, 500), name))
    lines = ["| status | error |", "|---|---|"]
    for status in sorted({STATUS.get(name, 500) for name in rows}):
        names = ", ".join(f"`{n}`" for n in rows if STATUS.get(n, 500) == status)
        lines.append(f"| {status} | {names} |")
    return "\n".join(lines) + "\n"
