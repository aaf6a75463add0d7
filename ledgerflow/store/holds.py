"""Holds as both stores apply them: where a hold stands, the events its
placement and its release write, and the posting a capture is.

Every operation on a hold runs under the lock of the held account, so a
placement, each capture, a void, a deadline change and the expiry are
decided one after the other, each on what the one before left. The store's
clock is the deadline's authority: whatever arrives at or after the
deadline finds the hold expired (and writes the expiry, if nobody has yet).
A hold ends exactly once: captured in full, or by its one release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ledgerflow.domain.errors import (
    REJECTION_TYPES,
    DuplicateCaptureMismatch,
    DuplicateHoldMismatch,
    HoldExpired,
    HoldNotOpen,
    InvalidRequest,
    LedgerError,
)
from ledgerflow.domain.hashing import chain_hash, event_content
from ledgerflow.domain.holds import (
    Capture,
    CaptureResult,
    CaptureStatus,
    DeadlineChange,
    Hold,
    HoldResult,
    HoldState,
    HoldStatus,
    ReleaseResult,
    Traveled,
    capture_transfer,
)
from ledgerflow.domain.model import (
    Account,
    Event,
    EventType,
    Posting,
    PostingKind,
    clearing_account_id,
)
from ledgerflow.domain.policy import check_capture, check_hold
from ledgerflow.store.batch import PostingBatch, clearing_stand_in, event_id_for
from ledgerflow.store.rows import Recorded


@dataclass(frozen=True)
class Placement:
    """A hold's record as stored: its placement outcome and who placed it."""

    result: HoldResult
    initiated_by: str
    description: str | None


@dataclass(frozen=True)
class Written:
    """One event of a hold (placed or released) and the account's new head."""

    event: Event
    head: Account


@dataclass(frozen=True)
class Reversal:
    """A cross-region capture returned: its destination refused it for good."""

    hold_id: str
    capture_id: str
    reason_type: str
    reason: str
    #: The held account's balance once the amount was back.
    balance_after: int | None
    recorded_at: datetime


def state_of(
    placement: Placement,
    captures: list[CaptureResult],
    release: ReleaseResult | None,
    expires_at: datetime | None,
) -> HoldState:
    """Where the hold stands, from its records alone (captures as they stand,
    reversals applied)."""
    hold = placement.result
    reversed_ = sum(c.amount for c in captures if c.status == CaptureStatus.REVERSED)
    captured = sum(c.amount for c in captures if c.captured)
    consumed = sum(c.consumed for c in captures if c.captured)
    status, ended_at, remaining = HoldStatus.OPEN, None, hold.amount - consumed
    if not hold.placed:
        status, remaining = HoldStatus.REFUSED, 0
    elif release is not None:
        status, ended_at, remaining = HoldStatus(release.ending), release.recorded_at, 0
    elif remaining <= 0:
        last = max((c.recorded_at for c in captures if c.captured and c.recorded_at), default=None)
        status, ended_at, remaining = HoldStatus.CAPTURED, last, 0
    return HoldState(
        hold_id=hold.hold_id, status=status, from_account=hold.from_account,
        to_account=hold.to_account, amount=hold.amount, currency=hold.currency,
        over_capture=hold.over_capture, captured=captured, remaining=remaining,
        expires_at=expires_at, region=hold.region, ended_at=ended_at,
        reason_type=hold.reason_type, reason=hold.reason, to_region=hold.to_region,
        reversed=reversed_,
        traveled=[Traveled(c.capture_id, c.amount, c.initiated_by or "") for c in captures
                  if c.status == CaptureStatus.CAPTURED and hold.to_region is not None],
    )  # fmt: skip


def same_hold(existing: HoldResult, hold: Hold) -> HoldResult:
    if existing.fingerprint != hold.fingerprint():
        raise DuplicateHoldMismatch(
            f"hold id {hold.hold_id!r} was already used for a different hold",
            hold_id=hold.hold_id,
        )
    return existing


def same_capture(existing: CaptureResult, capture: Capture) -> CaptureResult:
    if existing.amount != capture.amount:
        raise DuplicateCaptureMismatch(
            f"capture id {capture.capture_id!r} of hold {capture.hold_id!r} was already used "
            "with another amount",
            hold_id=capture.hold_id,
            capture_id=capture.capture_id,
        )
    return existing


def refused_hold(hold: Hold, error: LedgerError, now: datetime, region: str) -> HoldResult:
    return HoldResult(
        hold_id=hold.hold_id, status="refused", fingerprint=hold.fingerprint(), region=region,
        from_account=hold.from_account, to_account=hold.to_account, amount=hold.amount,
        currency=hold.currency, over_capture=hold.over_capture, reason_type=error.type,
        reason=error.message, placed_at=now, to_region=hold.to_region,
    )  # fmt: skip


def refused_capture(capture: Capture, error: LedgerError, now: datetime) -> CaptureResult:
    return CaptureResult(
        hold_id=capture.hold_id, capture_id=capture.capture_id, amount=capture.amount,
        status=CaptureStatus.REFUSED, reason_type=error.type, reason=error.message,
        recorded_at=now, initiated_by=capture.initiated_by,
    )  # fmt: skip


def _event(
    account: Account,
    kind: EventType,
    pending: int,
    now: datetime,
    occurred_at: datetime,
    region: str,
    initiated_by: str,
    key: str,
    counterparty: str | None,
    description: str | None,
    metadata: dict[str, Any],
) -> Written:
    """An amount-0 event of the account's chain that moves its pending amount."""
    recorded_at = max(now, account.head_recorded_at or account.opened_at)
    fields: dict[str, Any] = dict(
        event_id=event_id_for(key), type=kind, account_id=account.account_id,
        version=account.version + 1, amount=0, currency=account.currency,
        balance_after=account.balance, occurred_at=occurred_at, recorded_at=recorded_at,
        region=region, initiated_by=initiated_by, transfer_id=None, leg=None,
        counterparty=counterparty, description=description, metadata=metadata,
        pending_after=pending,
    )  # fmt: skip
    digest = chain_hash(account.head_hash, event_content(**fields))
    event = Event(**fields, prev_hash=account.head_hash, hash=digest)
    head = Account(account.account_id, account.currency, account.region,
                   account.overdraft_limit, account.status, event.version, account.balance,
                   account.opened_at, digest, account.metadata, recorded_at,
                   pending)  # fmt: skip
    return Written(event, head)


def place(
    hold: Hold,
    source: Account | None,
    target: Account | None,
    now: datetime,
    occurred_at: datetime,
    region: str,
    expires_at: datetime,
) -> tuple[Written, HoldResult]:
    """The placement's event and outcome, or the `LedgerError` that refuses it."""
    check_hold(hold, source, target)
    assert source is not None
    written = _event(
        source, EventType.HOLD_PLACED, source.pending_out + hold.amount, now, occurred_at,
        region, hold.initiated_by, f"hold/{hold.hold_id}/placed", hold.to_account,
        hold.description,
        hold.metadata | {"hold_id": hold.hold_id, "held": hold.amount,
                         "over_capture": hold.over_capture,
                         "expires_at": expires_at.isoformat()},
    )  # fmt: skip
    result = HoldResult(
        hold_id=hold.hold_id, status="placed", fingerprint=hold.fingerprint(), region=region,
        from_account=hold.from_account, to_account=hold.to_account, amount=hold.amount,
        currency=hold.currency, over_capture=hold.over_capture, expires_at=expires_at,
        event_id=written.event.event_id, placed_at=written.event.recorded_at,
        to_region=hold.to_region,
    )  # fmt: skip
    return written, result


def release(
    state: HoldState,
    source: Account,
    ending: HoldStatus,
    now: datetime,
    occurred_at: datetime,
    region: str,
    initiated_by: str,
) -> tuple[Written, ReleaseResult]:
    """An open hold's void or expiry: what it still reserves goes back."""
    assert state.open and ending in (HoldStatus.VOIDED, HoldStatus.EXPIRED)
    written = _event(
        source, EventType.HOLD_RELEASED, source.pending_out - state.remaining, now, occurred_at,
        region, initiated_by, f"hold/{state.hold_id}/released", state.to_account, None,
        {"hold_id": state.hold_id, "ending": str(ending), "released": state.remaining},
    )  # fmt: skip
    return written, ReleaseResult(
        state.hold_id,
        str(ending),
        state.remaining,
        written.event.event_id,
        written.event.recorded_at,
    )


def hold_target(hold: HoldResult | HoldState | Hold, region: str) -> str:
    """The account a hold's captures credit in its own region: the target,
    or the clearing account for the target's region."""
    if hold.to_region is None:
        return hold.to_account
    return clearing_account_id(region, hold.to_region, hold.currency)


def capture_posting(state: HoldState, capture: Capture, region: str) -> Posting:
    """A capture as a posting of the hold's region, consuming up to what the
    hold still reserves: the held account to the hold's target, or, for a
    target in another region, the saga's source leg (to the clearing
    account for that region, kind `outbound`)."""
    transfer = capture_transfer(state, capture.capture_id, capture.amount, capture.initiated_by)
    if state.to_region is None:
        posting = Posting(transfer, PostingKind.CAPTURE, region, None, capture.posting_id,
                          state.from_account, state.to_account, state.to_account,
                          state.from_account)  # fmt: skip
    else:
        posting = Posting.outbound(transfer, region, state.to_region)
    return replace(posting, pending_release=min(capture.amount, state.remaining))


#: Who an expiry is attributed to: the ledger, at the deadline.
EXPIRY_PRINCIPAL = "ledgerflow"


class NotDue(Exception):
    """An expiry asked before the deadline by the store's clock (the
    workflow's timer ran ahead of it): not a ledger error, so the activity
    retries until it is due."""


@dataclass(frozen=True)
class HoldRecords:
    """Everything a store holds about one hold."""

    placement: Placement
    captures: list[CaptureResult]
    release: ReleaseResult | None
    #: The latest deadline change, if any (else the placement's).
    deadline: datetime | None
    #: Cross-region captures returned, by capture id.
    reversals: Mapping[str, Reversal] = field(default_factory=dict)

    @property
    def outcomes(self) -> list[CaptureResult]:
        """The captures as they stand: a returned one is `reversed`, with
        the destination's refusal; one that travels names its region."""
        to_region = self.placement.result.to_region
        found = []
        for c in self.captures:
            if c.captured and to_region is not None:
                # The target's balance is its own region's to tell.
                c = replace(c, to_region=to_region, to_balance_after=None)
            back = self.reversals.get(c.capture_id)
            if back is not None:
                c = replace(c, status=CaptureStatus.REVERSED, reason_type=back.reason_type,
                            reason=back.reason, from_balance_after=back.balance_after)  # fmt: skip
            found.append(c)
        return found

    @property
    def state(self) -> HoldState:
        return state_of(
            self.placement, self.outcomes, self.release,
            self.deadline or self.placement.result.expires_at,
        )  # fmt: skip

    @property
    def by_capture(self) -> dict[str, CaptureResult]:
        return {c.capture_id: c for c in self.outcomes}

    @property
    def accounts(self) -> set[str]:
        """The accounts an operation on the hold locks, in its region."""
        hold = self.placement.result
        return {hold.from_account, hold_target(hold, hold.region)}


def expiry_due(
    records: HoldRecords,
    accounts: dict[str, Account],
    now: datetime,
    occurred_at: datetime,
    region: str,
) -> tuple[Written, ReleaseResult] | None:
    """The expiry to write now, if the hold is open and its deadline passed."""
    state = records.state
    if not state.open or state.expires_at is None or now < state.expires_at:
        return None
    return release(state, accounts[state.from_account], HoldStatus.EXPIRED, now, occurred_at,
                   region, EXPIRY_PRINCIPAL)  # fmt: skip


def _expired(state: HoldState) -> HoldExpired:
    when = state.ended_at.isoformat() if state.ended_at else "its deadline"
    return HoldExpired(f"hold {state.hold_id!r} expired at {when}", hold_id=state.hold_id)


def _not_open(state: HoldState, what: str) -> HoldNotOpen:
    return HoldNotOpen(
        f"hold {state.hold_id!r} is {state.status}: {what}",
        hold_id=state.hold_id,
        status=str(state.status),
    )


@dataclass(frozen=True)
class Placed:
    written: Written | None
    result: HoldResult


def place_or_refuse(
    hold: Hold, accounts: dict[str, Account], now: datetime, occurred_at: datetime, region: str
) -> Placed:
    """A new hold id: placed, or refused (and recorded so) by the policy."""
    expires_at = now + timedelta(seconds=hold.expires_in_s)
    target = accounts.get(hold.to_account)
    if hold.to_region is not None:
        # Checked here as the saga's source leg is: toward the clearing
        # account (open, without limit); the target's own rules are its
        # region's, when a capture arrives there.
        target = clearing_stand_in(hold_target(hold, region), hold.currency, region, now)
    try:
        written, result = place(hold, accounts.get(hold.from_account), target, now,
                                occurred_at, region, expires_at)  # fmt: skip
    except LedgerError as error:
        if error.type not in REJECTION_TYPES:
            raise
        return Placed(None, refused_hold(hold, error, now, region))
    accounts[written.head.account_id] = written.head
    return Placed(written, result)


@dataclass(frozen=True)
class Captured:
    batch: PostingBatch | None
    result: CaptureResult


def capture_or_refuse(
    records: HoldRecords,
    capture: Capture,
    accounts: dict[str, Account],
    now: datetime,
    occurred_at: datetime,
    region: str,
    recorded: dict[str, Recorded] | None = None,
) -> Captured:
    """A new capture id of the hold: its posting, or its refusal
    (`recorded`: the store's posting outcomes, where it keeps them in memory)."""
    state = records.state
    try:
        if state.status == HoldStatus.EXPIRED:
            raise _expired(state)
        check_capture(state, capture.amount)
        batch = PostingBatch(now, region)
        posted = batch.post(
            capture_posting(state, capture, region), occurred_at, accounts,
            {} if recorded is None else recorded,
        )  # fmt: skip
    except LedgerError as error:
        if error.type not in REJECTION_TYPES:
            raise
        return Captured(None, refused_capture(capture, error, now))
    return Captured(
        batch,
        CaptureResult(
            hold_id=capture.hold_id, capture_id=capture.capture_id, amount=capture.amount,
            status=CaptureStatus.CAPTURED, consumed=min(capture.amount, state.remaining),
            posting_id=capture.posting_id, from_balance_after=posted.from_balance_after,
            to_balance_after=None if state.to_region else posted.to_balance_after,
            recorded_at=posted.confirmed_at, initiated_by=capture.initiated_by,
            to_region=state.to_region,
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class Released:
    written: Written | None
    result: ReleaseResult | None
    refusal: LedgerError | None = None


def decide_release(
    records: HoldRecords,
    ending: HoldStatus,
    accounts: dict[str, Account],
    now: datetime,
    occurred_at: datetime,
    region: str,
    initiated_by: str,
) -> Released:
    """A void or the expiry, after any expiry due was written: the one
    ending it finds stands. An expiry of a hold that ended otherwise is
    nothing to do; a void of one that ended is refused."""
    state, existing = records.state, records.release
    if existing is not None:
        if existing.ending == ending:
            return Released(None, existing)  # the same ending, asked again
        if ending == HoldStatus.EXPIRED:
            return Released(None, None)
        return Released(None, None, _expired(state))
    if not state.open:
        if ending == HoldStatus.EXPIRED:
            return Released(None, None)
        return Released(None, None, _not_open(state, "there is nothing left to void"))
    if ending == HoldStatus.EXPIRED:
        raise NotDue(f"hold {state.hold_id!r} is not due until {state.expires_at}")
    written, result = release(state, accounts[state.from_account], ending, now, occurred_at,
                              region, initiated_by)  # fmt: skip
    accounts[written.head.account_id] = written.head
    return Released(written, result)


@dataclass(frozen=True)
class Moved:
    state: HoldState
    expires_at: datetime | None = None
    refusal: LedgerError | None = None


def move_deadline(records: HoldRecords, change: DeadlineChange, now: datetime) -> Moved:
    """An open hold's new deadline, `expires_in_s` from now."""
    state = records.state
    if state.status == HoldStatus.EXPIRED:
        return Moved(state, None, _expired(state))
    if not state.open:
        return Moved(state, None, _not_open(state, "its deadline cannot move"))
    expires_at = now + timedelta(seconds=change.expires_in_s)
    return Moved(replace(state, expires_at=expires_at), expires_at)


@dataclass(frozen=True)
class Returned:
    batch: PostingBatch | None
    result: CaptureResult
    reversal: Reversal | None = None


def return_capture(
    records: HoldRecords,
    capture_id: str,
    reason_type: str,
    reason: str,
    accounts: dict[str, Account],
    now: datetime,
    occurred_at: datetime,
    region: str,
    recorded: dict[str, Recorded] | None = None,
) -> Returned:
    """The reversal of a cross-region capture its destination refused for
    good (the saga decides that; this writes it): the saga's reversing leg,
    clearing account → held account, under `<posting id>/reversal`. Once
    per capture id; a capture that does not travel, or did not post, has
    nothing to return."""
    existing = records.by_capture.get(capture_id)
    hold = records.placement.result
    if existing is None or hold.to_region is None or not existing.captured:
        raise InvalidRequest(
            f"capture {capture_id!r} of hold {hold.hold_id!r} is no posted capture toward "
            "another region: there is nothing to return",
            field="capture_id",
        )
    if existing.status == CaptureStatus.REVERSED:
        return Returned(None, existing)
    transfer = capture_transfer(hold, capture_id, existing.amount, existing.initiated_by or "")
    batch = PostingBatch(now, region)
    posted = batch.post(Posting.reversal(transfer, region, hold.to_region), occurred_at,
                        accounts, {} if recorded is None else recorded)  # fmt: skip
    reversal = Reversal(hold.hold_id, capture_id, reason_type, reason, posted.to_balance_after,
                        posted.confirmed_at or now)  # fmt: skip
    outcome = replace(existing, status=CaptureStatus.REVERSED, reason_type=reason_type,
                      reason=reason, from_balance_after=posted.to_balance_after)  # fmt: skip
    return Returned(batch, outcome, reversal)
