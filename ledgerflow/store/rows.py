"""Column lists of the store's queries and the mapping of rows to domain records."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row

from ledgerflow.domain.holds import CaptureResult, HoldResult, ReleaseResult
from ledgerflow.domain.model import (
    Account,
    AccountChangeResult,
    Event,
    TransferResult,
    TransferStatus,
    base_transfer_id,
)

if TYPE_CHECKING:
    from ledgerflow.store.holds import Placement

ACCOUNT_COLUMNS = (
    "account_id, currency, region, overdraft_limit, status, version, balance, "
    "head_hash, opened_at, metadata, head_recorded_at, pending_out"
)
EVENT_COLUMNS = (
    "position, tx_id, event_id::text AS event_id, type, account_id, version, amount, currency, "
    "balance_after, occurred_at, recorded_at, region, initiated_by, transfer_id, leg, "
    "counterparty, description, metadata, prev_hash, hash, pending_after"
)
TRANSFER_COLUMNS = (
    "transfer_id, fingerprint, status, region, reason_type, reason, "
    "debit_event_id::text AS debit_event_id, credit_event_id::text AS credit_event_id, "
    "from_balance_after, to_balance_after, recorded_at, kind, peer_region"
)


CHANGE_COLUMNS = (
    "change_id, account_id, action, status, fingerprint, status_after, "
    "event_id::text AS event_id, reason_type, reason, recorded_at"
)


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        decoded: dict[str, Any] = json.loads(value)
        return decoded
    return dict(value)


def account_from_row(row: Row[Any] | Mapping[str, Any]) -> Account:
    m = row._mapping if isinstance(row, Row) else row
    return Account(
        account_id=m["account_id"],
        currency=m["currency"],
        region=m["region"],
        overdraft_limit=m["overdraft_limit"],
        status=m["status"],
        version=m["version"],
        balance=m["balance"],
        opened_at=m["opened_at"],
        head_hash=m["head_hash"],
        metadata=_json(m["metadata"]),
        head_recorded_at=m.get("head_recorded_at"),
        pending_out=m.get("pending_out") or 0,
    )


def event_from_row(row: Row[Any]) -> Event:
    m = row._mapping
    return Event(
        event_id=m["event_id"],
        type=m["type"],
        account_id=m["account_id"],
        version=m["version"],
        amount=m["amount"],
        currency=m["currency"],
        balance_after=m["balance_after"],
        occurred_at=m["occurred_at"],
        recorded_at=m["recorded_at"],
        region=m["region"],
        initiated_by=m["initiated_by"],
        transfer_id=m["transfer_id"],
        leg=m["leg"],
        counterparty=m["counterparty"],
        description=m["description"],
        metadata=_json(m["metadata"]),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
        position=m["position"],
        tx_id=m["tx_id"],
        pending_after=m.get("pending_after") or 0,
    )


def transfer_result_from_row(row: Row[Any]) -> TransferResult:
    m = row._mapping
    return TransferResult(
        # The client's transfer id, also for a reversal recorded under
        # `<id>/reversal`: what a fresh append of the posting answers too.
        transfer_id=base_transfer_id(m["transfer_id"]),
        status=m["status"],
        fingerprint=m["fingerprint"],
        region=m["region"],
        reason_type=m["reason_type"],
        reason=m["reason"],
        debit_event_id=m["debit_event_id"],
        credit_event_id=m["credit_event_id"],
        from_balance_after=m["from_balance_after"],
        to_balance_after=m["to_balance_after"],
        confirmed_at=m["recorded_at"] if m["status"] == TransferStatus.CONFIRMED else None,
    )


@dataclass(frozen=True)
class Recorded:
    """What the store recorded for a posting id: its outcome, and which part of
    which transfer it was (`PostingKind`, and the other region of a saga)."""

    result: TransferResult
    kind: str
    peer_region: str | None


def recorded_from_row(row: Row[Any]) -> Recorded:
    m = row._mapping
    return Recorded(transfer_result_from_row(row), m["kind"], m["peer_region"])


def change_from_row(row: Row[Any]) -> AccountChangeResult:
    return AccountChangeResult(
        change_id=row.change_id,
        account_id=row.account_id,
        action=row.action,
        status=row.status,
        fingerprint=row.fingerprint,
        account_status=row.status_after,
        event_id=row.event_id,
        reason_type=row.reason_type,
        reason=row.reason,
        recorded_at=row.recorded_at,
    )


def placement_from_row(row: Row[Any]) -> Placement:
    from ledgerflow.store.holds import Placement

    m = row._mapping
    result = HoldResult(
        hold_id=m["hold_id"], status=m["status"], fingerprint=m["fingerprint"],
        region=m["region"], from_account=m["from_account"], to_account=m["to_account"],
        amount=m["amount"], currency=m["currency"], over_capture=m["over_capture"],
        expires_at=m["expires_at"] if m["status"] == "placed" else None,
        event_id=m["event_id"], reason_type=m["reason_type"], reason=m["reason"],
        placed_at=m["recorded_at"], to_region=m["to_region"],
    )  # fmt: skip
    return Placement(result, m["initiated_by"], m["description"])


def capture_from_row(row: Row[Any]) -> CaptureResult:
    m = row._mapping
    return CaptureResult(
        hold_id=m["hold_id"], capture_id=m["capture_id"], amount=m["amount"],
        status=m["status"], consumed=m["consumed"], posting_id=m["posting_id"],
        from_balance_after=m["from_balance_after"], to_balance_after=m["to_balance_after"],
        reason_type=m["reason_type"], reason=m["reason"], recorded_at=m["recorded_at"],
        initiated_by=m["initiated_by"],
    )  # fmt: skip


def release_from_row(row: Row[Any]) -> ReleaseResult:
    m = row._mapping
    return ReleaseResult(m["hold_id"], m["ending"], m["released"], m["event_id"],
                         m["recorded_at"])  # fmt: skip


#: A hold's record, with its region (the store's).
HOLD_COLUMNS = (
    "hold_id, fingerprint, status, :region AS region, from_account, to_account, amount, "
    "currency, over_capture, expires_at, event_id::text AS event_id, reason_type, reason, "
    "initiated_by, description, recorded_at, to_region"
)
#: A capture's record, with the balances its posting left (from its transfer row).
CAPTURE_COLUMNS = (
    "c.hold_id, c.capture_id, c.amount, c.status, c.consumed, c.posting_id, c.reason_type, "
    "c.reason, c.recorded_at, c.initiated_by, t.from_balance_after, t.to_balance_after"
)
#: A cross-region capture's return, with the held account's balance after it.
REVERSAL_COLUMNS = (
    "r.hold_id, r.capture_id, r.reason_type, r.reason, r.recorded_at, "
    "t.to_balance_after AS balance_after"
)
RELEASE_COLUMNS = "hold_id, ending, released, event_id::text AS event_id, recorded_at"
