"""An account's status change, as both stores apply it: the decision, the
event it writes and the outcome recorded under its change id.

The rules are `check_change` (ledgerflow/domain/policy.py); the database
holds the same rules in a trigger (migration 0005), so a role that skips
this code still cannot change a status without its event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledgerflow.domain.errors import ChangeRefused, DuplicateChangeMismatch
from ledgerflow.domain.hashing import chain_hash, event_content
from ledgerflow.domain.model import (
    Account,
    AccountAction,
    AccountChangeRequest,
    AccountChangeResult,
    Event,
)
from ledgerflow.domain.policy import check_change
from ledgerflow.store.batch import event_id_for


@dataclass(frozen=True)
class StatusChange:
    """What an applied change writes: its event and the account's new head."""

    event: Event
    head: Account
    result: AccountChangeResult


def same_change(
    existing: AccountChangeResult, request: AccountChangeRequest
) -> AccountChangeResult:
    """A change id's outcome is its first recorded outcome, for the same request."""
    if existing.fingerprint != request.fingerprint():
        raise DuplicateChangeMismatch(
            f"change id {request.change_id!r} of account {request.account_id!r} was already "
            "used for a different change",
            account_id=request.account_id,
            change_id=request.change_id,
        )
    return existing


def refused(
    request: AccountChangeRequest, account: Account | None, error: ChangeRefused, now: datetime
) -> AccountChangeResult:
    return AccountChangeResult(
        change_id=request.change_id,
        account_id=request.account_id,
        action=request.action,
        status="refused",
        fingerprint=request.fingerprint(),
        account_status=account.status if account is not None else "unknown",
        reason_type=error.type,
        reason=error.message,
        recorded_at=now,
    )


def apply_change(
    request: AccountChangeRequest,
    account: Account | None,
    now: datetime,
    occurred_at: datetime,
    region: str,
) -> StatusChange:
    """The change applied to `account` as it stands (under its lock), or
    `ChangeRefused` when its status does not allow it."""
    check_change(request, account)
    assert account is not None
    action = AccountAction(request.action)
    # Monotonic per account, as for postings (PostingBatch.post).
    recorded_at = max(now, account.head_recorded_at or account.opened_at)
    fields: dict[str, Any] = dict(
        event_id=event_id_for(f"account/{account.account_id}/change/{request.change_id}"),
        type=action.event_type, account_id=account.account_id, version=account.version + 1,
        amount=0, currency=account.currency, balance_after=account.balance,
        occurred_at=occurred_at, recorded_at=recorded_at, region=region,
        initiated_by=request.initiated_by, transfer_id=None, leg=None, counterparty=None,
        description=request.reason, metadata={"change_id": request.change_id},
        pending_after=account.pending_out,
    )  # fmt: skip
    digest = chain_hash(account.head_hash, event_content(**fields))
    event = Event(**fields, prev_hash=account.head_hash, hash=digest)
    head = Account(account.account_id, account.currency, account.region,
                   account.overdraft_limit, action.status_after, event.version,
                   account.balance, account.opened_at, digest, account.metadata,
                   recorded_at, account.pending_out)  # fmt: skip
    result = AccountChangeResult(
        change_id=request.change_id,
        account_id=account.account_id,
        action=request.action,
        status="applied",
        fingerprint=request.fingerprint(),
        account_status=action.status_after,
        event_id=event.event_id,
        recorded_at=recorded_at,
    )
    return StatusChange(event, head, result)
