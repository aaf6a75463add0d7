"""The audit trail of one account between two instants.

Every posting recorded in [start, end] with what an auditor needs to trace
it (transfer and workflow ids, counterparty, principal, timestamps, metadata,
the event's hash and the hash it chains to), every rejected attempt touching
the account in that range with its reason, and the opening and closing
balances. The field names of `AuditEntry` are the stable, documented columns
of the JSON and CSV output.

Invariant: closing_balance - opening_balance = sum of the postings' amounts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.reader import ArchiveReader, read_checkpoint, snapshot
from ledgerflow.audit.point_in_time import last_balance
from ledgerflow.domain.errors import AccountNotFound, ArchiveUnavailable, InvalidRequest
from ledgerflow.domain.holds import hold_workflow_id
from ledgerflow.domain.model import (
    EventType,
    account_change_workflow_id,
    base_transfer_id,
    transfer_workflow_id,
)
from ledgerflow.domain.transactions import transaction_of, transaction_workflow_id
from ledgerflow.store.log import account_events


@dataclass(frozen=True)
class AuditEntry:
    """One line of the trail: a posting (`kind="posting"`), a status change
    (`kind="status"`: frozen, unfrozen, closed, with who and why), a refused
    transfer (`kind="rejected"`) or a refused status change
    (`kind="change-refused"`); a hold placed or released (`kind="hold"`,
    events with the hold id; each capture is a posting), a hold refused when
    placed (`kind="hold-refused"`), a capture refused
    (`kind="capture-refused"`) or a deadline moved (`kind="hold-deadline"`).
    The refusals have no event, and carry `reason_type` and `reason`."""

    kind: str
    recorded_at: datetime
    occurred_at: datetime
    account_id: str
    type: str | None
    version: int | None
    transfer_id: str | None
    workflow_id: str | None
    counterparty: str | None
    amount: int
    currency: str
    balance_after: int | None
    region: str
    initiated_by: str
    description: str | None
    metadata: dict[str, Any]
    event_id: str | None
    prev_hash: str | None
    hash: str | None
    reason_type: str | None
    reason: str | None


AUDIT_FIELDS = [f.name for f in fields(AuditEntry)]


@dataclass(frozen=True)
class AuditTrail:
    account_id: str
    currency: str
    start: datetime
    end: datetime
    opening_balance: int
    closing_balance: int
    entries: list[AuditEntry]


async def audit_trail(
    engine: AsyncEngine,
    account_id: str,
    start: datetime,
    end: datetime,
    archive: ArchiveReader | None = None,
) -> AuditTrail:
    """The trail, from the hot store and, for a pruned period, from the archive."""
    if start.tzinfo is None or end.tzinfo is None or start > end:
        raise InvalidRequest("the range needs two zoned instants with start <= end")
    # One snapshot for everything the hot store says: the account's events,
    # its rejections, where pruning cut it and its opening balance. A prune
    # committing between two separate reads would list the versions it moved
    # twice, once from each side (issue 12, finding 11).
    async with snapshot(engine) as conn:
        account = (
            await conn.execute(
                text("SELECT currency, region FROM accounts WHERE account_id = :a"),
                {"a": account_id},
            )
        ).first()
        if account is None:
            raise AccountNotFound(f"account {account_id!r} does not exist", account_id=account_id)
        events = await account_events(conn, account_id, since=start, until=end)
        rejected = await conn.execute(
            text(
                "SELECT * FROM transfers WHERE status = 'rejected' "
                "AND (from_account = :a OR to_account = :a) "
                "AND recorded_at >= :start AND recorded_at <= :end"
            ),
            {"a": account_id, "start": start, "end": end},
        )
        entries = [_rejection(account_id, row._mapping) for row in rejected]
        refused_changes = await conn.execute(
            text(
                "SELECT * FROM account_changes WHERE account_id = :a AND status = 'refused' "
                "AND recorded_at >= :start AND recorded_at <= :end"
            ),
            {"a": account_id, "start": start, "end": end},
        )
        entries += [
            _refused_change(row._mapping, account.currency, account.region)
            for row in refused_changes
        ]
        entries += await _hold_entries(conn, account_id, account.region, start, end)
        checkpoint = await read_checkpoint(conn, account_id)
        # Opening balance: right before `start`, wherever that event lives now.
        opening = await last_balance(engine, account_id, start, archive, strict=True, conn=conn)
    if checkpoint is not None and start <= checkpoint.recorded_at:
        # Part of the range was pruned: its postings come back from the archive
        # (archived segments never change, so reading them later is consistent).
        if archive is None:
            raise ArchiveUnavailable(
                f"account {account_id!r} before {checkpoint.recorded_at.isoformat()} "
                "is in the archive, and no archive reader was given"
            )
        events = await archive.events(account_id, start, end, checkpoint.version) + events
    entries += [_posting(event) for event in events]
    entries.sort(key=lambda e: (e.recorded_at, e.version or 0))
    opening_balance = opening[1] if opening else 0
    closing_balance = opening_balance + sum(e.amount for e in entries if e.kind == "posting")
    return AuditTrail(
        account_id, account.currency, start, end, opening_balance, closing_balance, entries
    )


def _posting(event: Any) -> AuditEntry:
    if event.type in STATUS_EVENTS:
        return _status(event)
    hold_id = event.metadata.get("hold_id")
    if hold_id is None:
        return _posting_entry(event)
    # A hold's events: its placement and release (`kind="hold"`), and both
    # legs of each capture (postings), all pointing at the hold's workflow.
    kind = "hold" if event.type in HOLD_EVENTS else "posting"
    return dataclasses.replace(
        _posting_entry(event), kind=kind, workflow_id=hold_workflow_id(hold_id)
    )


def _posting_entry(event: Any) -> AuditEntry:
    return AuditEntry(
        kind="posting",
        recorded_at=event.recorded_at,
        occurred_at=event.occurred_at,
        account_id=event.account_id,
        type=event.type,
        version=event.version,
        transfer_id=event.transfer_id,
        workflow_id=_workflow_of(event.transfer_id),
        counterparty=event.counterparty,
        amount=event.amount,
        currency=event.currency,
        balance_after=event.balance_after,
        region=event.region,
        initiated_by=event.initiated_by,
        description=event.description,
        metadata=event.metadata,
        event_id=event.event_id,
        prev_hash=event.prev_hash,
        hash=event.hash,
        reason_type=None,
        reason=None,
    )


def _rejection(account_id: str, row: Any) -> AuditEntry:
    outgoing = row["from_account"] == account_id
    return AuditEntry(
        kind="rejected",
        recorded_at=row["recorded_at"],
        occurred_at=row["occurred_at"],
        account_id=account_id,
        type=None,
        version=None,
        transfer_id=row["transfer_id"],
        workflow_id=transfer_workflow_id(base_transfer_id(row["transfer_id"])),
        counterparty=row["to_account"] if outgoing else row["from_account"],
        amount=0,  # nothing moved; the attempted amount is in `metadata.attempted`
        currency=row["currency"],
        balance_after=None,
        region=row["region"],
        initiated_by=row["initiated_by"],
        description=row["description"],
        metadata={"attempted": -row["amount"] if outgoing else row["amount"]},
        event_id=None,
        prev_hash=None,
        hash=None,
        reason_type=row["reason_type"],
        reason=row["reason"],
    )


#: A hold's own events (amount 0): its placement and its release.
HOLD_EVENTS = frozenset({EventType.HOLD_PLACED, EventType.HOLD_RELEASED})

#: Event types that change an account's status, not its balance.
STATUS_EVENTS = frozenset(
    {EventType.ACCOUNT_FROZEN, EventType.ACCOUNT_UNFROZEN, EventType.ACCOUNT_CLOSED}
)


def _status(event: Any) -> AuditEntry:
    change_id = event.metadata.get("change_id")
    return dataclasses.replace(
        _posting_entry(event),
        kind="status",
        transfer_id=None,
        workflow_id=account_change_workflow_id(event.account_id, change_id) if change_id else None,
    )


def _refused_change(row: Any, currency: str, region: str) -> AuditEntry:
    return AuditEntry(
        kind="change-refused",
        recorded_at=row["recorded_at"],
        occurred_at=row["recorded_at"],
        account_id=row["account_id"],
        type=None,
        version=None,
        transfer_id=None,
        workflow_id=account_change_workflow_id(row["account_id"], row["change_id"]),
        counterparty=None,
        amount=0,
        currency=currency,
        balance_after=None,
        region=region,
        initiated_by=row["initiated_by"],
        description=row["note"],
        metadata={"change_id": row["change_id"], "action": row["action"]},
        event_id=None,
        prev_hash=None,
        hash=None,
        reason_type=row["reason_type"],
        reason=row["reason"],
    )


async def _hold_entries(
    conn: Any, account_id: str, region: str, start: datetime, end: datetime
) -> list[AuditEntry]:
    """What the account's holds did that is not an event: a hold refused
    when placed, a capture refused, a deadline moved."""
    rows = await conn.execute(
        text(
            "SELECT 'hold-refused' AS kind, h.hold_id, NULL AS step, h.recorded_at, "
            "h.initiated_by, h.reason_type, h.reason, h.amount, h.currency, h.description, "
            "NULL::timestamptz AS expires_at FROM holds h "
            "WHERE h.status = 'refused' AND h.from_account = :a "
            "AND h.recorded_at BETWEEN :start AND :end "
            "UNION ALL "
            "SELECT 'capture-refused', c.hold_id, c.capture_id, c.recorded_at, c.initiated_by, "
            "c.reason_type, c.reason, c.amount, h.currency, NULL, NULL FROM hold_captures c "
            "JOIN holds h ON h.hold_id = c.hold_id WHERE c.status = 'refused' "
            "AND h.from_account = :a AND c.recorded_at BETWEEN :start AND :end "
            "UNION ALL "
            "SELECT 'hold-deadline', d.hold_id, d.change_id, d.recorded_at, d.initiated_by, "
            "NULL, NULL, 0, h.currency, NULL, d.expires_at FROM hold_deadlines d "
            "JOIN holds h ON h.hold_id = d.hold_id WHERE h.from_account = :a "
            "AND d.recorded_at BETWEEN :start AND :end"
        ),
        {"a": account_id, "start": start, "end": end},
    )
    return [
        AuditEntry(
            kind=row.kind,
            recorded_at=row.recorded_at,
            occurred_at=row.recorded_at,
            account_id=account_id,
            type=None,
            version=None,
            transfer_id=None,
            workflow_id=hold_workflow_id(row.hold_id),
            counterparty=None,
            amount=0,
            currency=row.currency,
            balance_after=None,
            region=region,
            initiated_by=row.initiated_by,
            description=row.description,
            metadata={"hold_id": row.hold_id}
            | ({"step": row.step} if row.step else {})
            | ({"attempted": row.amount} if row.kind != "hold-deadline" else {})
            | ({"expires_at": row.expires_at.isoformat()} if row.expires_at else {}),
            event_id=None,
            prev_hash=None,
            hash=None,
            reason_type=row.reason_type,
            reason=row.reason,
        )
        for row in rows
    ]


def _workflow_of(posting_id: str | None) -> str | None:
    """The workflow behind a posting: a transaction's (`<id>/tx`), or the
    transfer's (a reversal's posting id is `<id>/reversal`)."""
    if posting_id is None:
        return None
    transaction = transaction_of(posting_id)
    if transaction is not None:
        return transaction_workflow_id(transaction)
    return transfer_workflow_id(base_transfer_id(posting_id))
