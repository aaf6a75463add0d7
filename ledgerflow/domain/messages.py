"""Inputs and outputs of the ledger's activities, and their registered names.

Workflows refer to activities by these names so that workflow modules never
import the activity implementations (and with them SQLAlchemy and asyncpg).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ledgerflow.domain.model import Transfer, TransferResult

VALIDATE_TRANSFER = "validate_transfer"
POST_TRANSFER = "post_transfer"
APPEND_TRANSFER = "append_transfer"
RECORD_REJECTION = "record_rejection"
APPEND_LEG = "append_leg"
PROJECT_EVENTS = "project_events"
OPEN_ACCOUNT = "open_account"
CHANGE_ACCOUNT = "change_account"
PLACE_HOLD = "place_hold"
CAPTURE_HOLD = "capture_hold"
RELEASE_HOLD = "release_hold"
EXTEND_HOLD = "extend_hold"
GET_HOLD = "get_hold"
RETURN_CAPTURE = "return_capture"
FETCH_WEBHOOK_EVENTS = "fetch_webhook_events"
DELIVER_WEBHOOK = "deliver_webhook"
APPEND_TRANSACTION = "append_transaction"


@dataclass(frozen=True)
class ValidateTransferInput:
    transfer: Transfer
    #: The credited account's home region, if it is not this one.
    to_region: str | None = None


@dataclass(frozen=True)
class ValidateTransferOutput:
    """The region whose store validated the transfer (the debited account's home).

    For a cross-region transfer, also the destination region and the task
    queue its legs run on; both `None` for a local transfer.
    """

    region: str
    to_region: str | None = None
    to_task_queue: str | None = None
    #: Cross-region: the source leg's refusal by the advisory check (its
    #: error type and message), returned rather than raised, so that the saga
    #: knows the destination's task queue whatever the store then says.
    refusal_type: str | None = None
    refusal: str | None = None


@dataclass(frozen=True)
class PostTransferInput:
    """A transfer in one store call: a local one appended and projected, a
    cross-region one validated (its saga's legs follow as calls of their own)."""

    transfer: Transfer
    to_region: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class PostTransferOutput:
    checked: ValidateTransferOutput
    #: A local transfer's outcome as the store recorded it; None for a cross-region one.
    result: TransferResult | None = None
    #: Whether its events were projected in the same call (if not, the
    #: workflow projects them, bounded, and the catch-up projector covers the rest).
    projected: bool = False


@dataclass(frozen=True)
class AppendLegInput:
    """One leg of a cross-region saga (`PostingKind`: outbound, inbound or
    reversal), posted in the region of the worker that runs it."""

    transfer: Transfer
    kind: str
    peer_region: str
    occurred_at: datetime


@dataclass(frozen=True)
class AppendTransferInput:
    transfer: Transfer
    occurred_at: datetime


@dataclass(frozen=True)
class RecordRejectionInput:
    transfer: Transfer
    reason_type: str
    reason: str
    occurred_at: datetime
    #: Which leg was refused, for a cross-region transfer (`PostingKind`).
    kind: str = "local"
    peer_region: str | None = None


@dataclass(frozen=True)
class ProjectEventsInput:
    event_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProjectEventsOutput:
    applied: int


@dataclass(frozen=True)
class TransferProgress:
    """What the workflow's `status` query answers."""

    transfer_id: str | None
    status: str
    summary: str | None = None
    reason_type: str | None = None
    reason: str | None = None
    result: TransferResult | None = None


@dataclass(frozen=True)
class ReleaseHoldInput:
    hold_id: str
    #: `voided` or `expired`
    ending: str
    initiated_by: str


@dataclass(frozen=True)
class ReturnCaptureInput:
    """A cross-region capture to return: its destination refused it for good."""

    hold_id: str
    capture_id: str
    reason_type: str
    reason: str
