"""Holds (two-phase transfers): requests, outcomes and their rules.

A hold reserves `amount` of one account toward another until it is
captured (once or in parts, each capture a real posting), voided, or
expires at its deadline. While it is open, the reserved part is the
account's *pending out*: what it may spend is its available balance,
posted minus pending out. Pure standard-library code: workflows pass it
through the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ledgerflow.domain.errors import InvalidRequest, SameAccount
from ledgerflow.domain.model import (
    Transfer,
    fingerprint_of,
    require_client_account,
    require_id,
    require_metadata,
    require_short_text,
)
from ledgerflow.domain.money import MAX_MINOR_UNITS, parse_amount

#: The longest a hold may stay open, and the shortest deadline one may get.
MAX_HOLD_SECONDS = 90 * 24 * 3600
MIN_HOLD_SECONDS = 1


class HoldStatus(StrEnum):
    OPEN = "open"
    #: Captured in full (the captures reached the held amount).
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"
    #: Refused when placed: it never reserved anything and can never be captured.
    REFUSED = "refused"


def hold_workflow_id(hold_id: str) -> str:
    return f"hold-{hold_id}"


def capture_posting_id(hold_id: str, capture_id: str) -> str:
    """`/` is in no client id: a capture's posting never meets a transfer's id."""
    return f"{hold_id}/capture/{capture_id}"


def capture_transfer(
    hold: HoldResult | HoldState, capture_id: str, amount: int, initiated_by: str
) -> Transfer:
    """A capture as the transfer its postings carry: the same in each region
    (the destination's leg is matched to the source's by its fingerprint)."""
    return Transfer(
        transfer_id=capture_posting_id(hold.hold_id, capture_id),
        from_account=hold.from_account, to_account=hold.to_account, amount=amount,
        currency=hold.currency, initiated_by=initiated_by,
        metadata={"hold_id": hold.hold_id, "capture_id": capture_id},
    )  # fmt: skip


def _seconds(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be a whole number of seconds", field=what)
    if not MIN_HOLD_SECONDS <= value <= MAX_HOLD_SECONDS:
        raise InvalidRequest(
            f"{what} must be between {MIN_HOLD_SECONDS} and {MAX_HOLD_SECONDS} seconds, "
            f"got {value}",
            field=what,
        )
    return value


@dataclass(frozen=True)
class HoldRequest:
    """Reserve `amount` of `from_account` toward `to_account` for
    `expires_in_s` seconds. `over_capture` (minor units, default 0) is how
    far the captures together may exceed the held amount (a tip, a fuel
    pump's final figure); the hold id is the idempotency key.

    `to_region` names the region `to_account` lives in when it is not the
    held account's (the SDK fills it from the directory, as for transfers):
    each capture then travels there through the cross-region saga. It is
    part of the hold: the same id with another destination is another hold."""

    hold_id: str
    from_account: str
    to_account: str
    amount: int | str
    currency: str
    initiated_by: str
    expires_in_s: int
    over_capture: int = 0
    description: str | None = None
    metadata: dict[str, Any] | None = None
    to_region: str | None = None

    def validated(self) -> Hold:
        missing = [
            name
            for name in ("hold_id", "from_account", "to_account", "currency", "initiated_by")
            if getattr(self, name, None) in (None, "")
        ]
        if self.amount is None or self.amount == "":
            missing.append("amount")
        if missing:
            raise InvalidRequest(f"missing field(s): {', '.join(missing)}", fields=missing)
        require_id(self.hold_id, "hold_id")
        require_client_account(self.from_account, "from_account")
        require_client_account(self.to_account, "to_account")
        require_id(self.initiated_by, "initiated_by")
        amount = parse_amount(self.amount, self.currency)
        if self.from_account == self.to_account:
            raise SameAccount(f"from_account and to_account are both {self.from_account!r}")
        over = self.over_capture
        if isinstance(over, bool) or not isinstance(over, int) or not 0 <= over <= MAX_MINOR_UNITS:
            raise InvalidRequest(
                "over_capture must be a non-negative integer of minor units",
                field="over_capture",
            )
        if amount + over > MAX_MINOR_UNITS:
            raise InvalidRequest("amount plus over_capture is too large", field="over_capture")
        _seconds(self.expires_in_s, "expires_in_s")
        if self.description is not None:
            require_short_text(self.description, "description")
        if self.to_region is not None:
            require_id(self.to_region, "to_region")
        return Hold(
            hold_id=self.hold_id,
            from_account=self.from_account,
            to_account=self.to_account,
            amount=amount,
            currency=self.currency,
            initiated_by=self.initiated_by,
            expires_in_s=self.expires_in_s,
            over_capture=over,
            description=self.description,
            metadata=require_metadata(self.metadata),
            to_region=self.to_region,
        )


@dataclass(frozen=True)
class Hold:
    """A validated hold request: exact amount, known currency, well-formed ids."""

    hold_id: str
    from_account: str
    to_account: str
    amount: int
    currency: str
    initiated_by: str
    expires_in_s: int
    over_capture: int = 0
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The target's region, when it is not the hold's (captures cross over).
    to_region: str | None = None

    def fingerprint(self) -> str:
        # A hold to this region fingerprints as holds did before `to_region`.
        return fingerprint_of(self, optional=("to_region",))

    @property
    def workflow_id(self) -> str:
        return hold_workflow_id(self.hold_id)


@dataclass(frozen=True)
class HoldResult:
    """A hold's placement, identical on every resubmission of its id."""

    hold_id: str
    status: str  # placed | refused
    fingerprint: str
    region: str
    from_account: str
    to_account: str
    amount: int
    currency: str
    over_capture: int
    expires_at: datetime | None = None
    event_id: str | None = None
    reason_type: str | None = None
    reason: str | None = None
    placed_at: datetime | None = None
    to_region: str | None = None

    @property
    def placed(self) -> bool:
        return self.status == "placed"


@dataclass(frozen=True)
class CaptureRequest:
    """Capture `amount` of a hold, idempotently by `capture_id`."""

    hold_id: str
    capture_id: str
    amount: int | str
    initiated_by: str

    def validated(self, currency: str) -> Capture:
        require_id(self.hold_id, "hold_id")
        require_id(self.capture_id, "capture_id")
        require_id(self.initiated_by, "initiated_by")
        return Capture(
            self.hold_id, self.capture_id, parse_amount(self.amount, currency), self.initiated_by
        )


@dataclass(frozen=True)
class Capture:
    hold_id: str
    capture_id: str
    amount: int
    initiated_by: str

    @property
    def posting_id(self) -> str:
        return capture_posting_id(self.hold_id, self.capture_id)


class CaptureStatus(StrEnum):
    CAPTURED = "captured"
    REFUSED = "refused"
    #: A capture toward another region that the destination refused for
    #: good: its amount went back to the held account (posted, no longer
    #: reserved), and it still counts against the hold.
    REVERSED = "reversed"


@dataclass(frozen=True)
class CaptureResult:
    """A capture's outcome, identical on every resubmission of its id:
    `captured` (a posting, with the balances after it), `refused`, or, for
    a hold toward another region, `reversed`."""

    hold_id: str
    capture_id: str
    amount: int
    status: str  # captured | refused
    #: What the capture took from the hold's reservation (at most `amount`).
    consumed: int = 0
    posting_id: str | None = None
    from_balance_after: int | None = None
    to_balance_after: int | None = None
    reason_type: str | None = None
    reason: str | None = None
    recorded_at: datetime | None = None
    initiated_by: str | None = None
    #: The region the capture travels to (the hold's `to_region`), if any.
    to_region: str | None = None
    #: Routing, not a record: the destination's task queue, filled in by the
    #: worker that answers the capture (the saga's next leg runs there).
    to_task_queue: str | None = None

    @property
    def captured(self) -> bool:
        """Its source posting stands (it may since have been reversed)."""
        return self.status in (CaptureStatus.CAPTURED, CaptureStatus.REVERSED)


@dataclass(frozen=True)
class ReleaseResult:
    """A hold's one ending by release: `voided` or `expired`, with what it gave back."""

    hold_id: str
    ending: str
    released: int
    event_id: str
    recorded_at: datetime


@dataclass(frozen=True)
class Traveled:
    """A capture toward another region whose source leg posted and that did
    not come back: arrived there, or still on its way."""

    capture_id: str
    amount: int
    initiated_by: str


@dataclass(frozen=True)
class HoldState:
    """Where a hold stands: what `hold show`, the workflow's `status` query
    and the SDK answer."""

    hold_id: str
    status: str
    from_account: str
    to_account: str
    amount: int
    currency: str
    over_capture: int
    captured: int
    #: What it still reserves (0 once it ended).
    remaining: int
    expires_at: datetime | None
    region: str
    ended_at: datetime | None = None
    reason_type: str | None = None
    reason: str | None = None
    to_region: str | None = None
    #: What of `captured` the destination refused and was returned.
    reversed: int = 0
    #: Its captures toward `to_region` that posted and did not come back
    #: (a workflow run that starts drives each to its end: a reset or a
    #: re-run must not leave one on its way).
    traveled: list[Traveled] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status == HoldStatus.OPEN

    @property
    def capturable(self) -> int:
        """How much more the captures may take."""
        return max(0, self.amount + self.over_capture - self.captured) if self.open else 0


@dataclass(frozen=True)
class DeadlineChange:
    """Move an open hold's deadline to `expires_in_s` from now (later or
    sooner), idempotently by `change_id`."""

    hold_id: str
    change_id: str
    expires_in_s: int
    initiated_by: str

    def validated(self) -> DeadlineChange:
        require_id(self.hold_id, "hold_id")
        require_id(self.change_id, "change_id")
        require_id(self.initiated_by, "initiated_by")
        _seconds(self.expires_in_s, "expires_in_s")
        return self
