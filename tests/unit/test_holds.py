"""Holds, the pure parts: what a hold request must hold, where a hold
stands from its records, the decisions of each step (placement, capture,
release, deadline), and the chain check's replay of the reservations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledgerflow.domain.errors import (
    AccountFrozen,
    CaptureExceedsHold,
    DuplicateCaptureMismatch,
    DuplicateHoldMismatch,
    HoldExpired,
    HoldNotOpen,
    InsufficientFunds,
    InvalidRequest,
    SameAccount,
)
from ledgerflow.domain.hashing import (
    GENESIS_HASH,
    AccountChain,
    ChainBroken,
    chain_hash,
    content_of,
)
from ledgerflow.domain.holds import (
    Capture,
    CaptureRequest,
    CaptureResult,
    DeadlineChange,
    HoldRequest,
    HoldStatus,
    capture_posting_id,
    hold_workflow_id,
)
from ledgerflow.domain.model import Account, Event
from ledgerflow.store.holds import (
    HoldRecords,
    NotDue,
    Placement,
    capture_or_refuse,
    decide_release,
    expiry_due,
    move_deadline,
    place_or_refuse,
    same_capture,
    same_hold,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def account(account_id: str, balance: int = 100, **kw: Any) -> Account:
    fields: dict[str, Any] = dict(
        account_id=account_id, currency="USD", region="us", overdraft_limit=0, status="open",
        version=2, balance=balance, opened_at=T0, head_hash="ab" * 32, metadata={},
        head_recorded_at=T0,
    )  # fmt: skip
    fields.update(kw)
    return Account(**fields)


def request(amount: int | str = 60, **kw: Any) -> HoldRequest:
    fields: dict[str, Any] = dict(
        hold_id="h1", from_account="alice", to_account="shop", amount=amount, currency="USD",
        initiated_by="pos", expires_in_s=60,
    )  # fmt: skip
    fields.update(kw)
    return HoldRequest(**fields)


def placed(amount: int = 60, **kw: Any) -> tuple[HoldRecords, dict[str, Account]]:
    accounts = {"alice": account("alice"), "shop": account("shop", 0)}
    outcome = place_or_refuse(request(amount, **kw).validated(), accounts, T0, T0, "us")
    assert outcome.written is not None
    return HoldRecords(Placement(outcome.result, "pos", None), [], None, None), accounts


def test_a_hold_request_is_checked_before_anything() -> None:
    hold = request("12.50", over_capture=5).validated()
    assert (hold.amount, hold.over_capture, hold.workflow_id) == (1250, 5, "hold-h1")
    assert hold.fingerprint() == request("12.50", over_capture=5).validated().fingerprint()
    assert hold.fingerprint() != request("12.51", over_capture=5).validated().fingerprint()
    for changes, message in [
        ({"hold_id": ""}, "missing field(s): hold_id"),
        ({"expires_in_s": 0}, "expires_in_s must be between 1 and 7776000 seconds, got 0"),
        ({"expires_in_s": 1.5}, "expires_in_s must be a whole number of seconds"),
        ({"over_capture": -1}, "over_capture must be a non-negative integer of minor units"),
        ({"over_capture": True}, "over_capture must be a non-negative integer of minor units"),
        ({"description": "x" * 501}, "description must be text of at most 500 characters"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            request(**changes).validated()
        assert caught.value.message == message
    with pytest.raises(SameAccount):
        request(to_account="alice").validated()
    assert hold_workflow_id("h1") == "hold-h1"
    assert capture_posting_id("h1", "c1") == "h1/capture/c1"
    assert DeadlineChange("h1", "d1", 5, "ops").validated().expires_in_s == 5
    with pytest.raises(InvalidRequest):
        DeadlineChange("h1", "d1", 0, "ops").validated()
    assert CaptureRequest("h1", "c1", "1.50", "pos").validated("USD") == Capture(
        "h1", "c1", 150, "pos")  # fmt: skip


def test_a_placement_reserves_on_the_chain_and_a_refusal_writes_nothing() -> None:
    accounts = {"alice": account("alice"), "shop": account("shop", 0)}
    outcome = place_or_refuse(request().validated(), accounts, T0, T0, "us")
    assert outcome.written is not None
    event, head = outcome.written.event, outcome.written.head
    assert (event.type, event.amount, event.balance_after, event.pending_after) == (
        "HoldPlaced", 0, 100, 60)  # fmt: skip
    assert event.hash == chain_hash("ab" * 32, content_of(event))
    assert event.metadata == {
        "hold_id": "h1",
        "held": 60,
        "over_capture": 0,
        "expires_at": (T0 + timedelta(seconds=60)).isoformat(),
    }
    assert (head.version, head.pending_out, head.available) == (3, 60, 40)
    assert accounts["alice"] == head
    result = outcome.result
    assert (result.status, result.expires_at, result.event_id) == (
        "placed", T0 + timedelta(seconds=60), event.event_id)  # fmt: skip
    # Available counts what is held: a second hold of 41 is refused, recorded.
    second = place_or_refuse(request(41, hold_id="h2").validated(), accounts, T0, T0, "us")
    assert second.written is None and accounts["alice"] == head
    assert (second.result.status, second.result.reason_type) == ("refused", "InsufficientFunds")
    frozen = {"alice": account("alice", status="frozen"), "shop": account("shop")}
    refused = place_or_refuse(request().validated(), frozen, T0, T0, "us").result
    assert refused.reason_type == AccountFrozen.type and refused.expires_at is None
    assert same_hold(result, request().validated()) is result
    with pytest.raises(DuplicateHoldMismatch):
        same_hold(result, request(61).validated())


def test_captures_take_from_the_reservation_and_end_the_hold_at_its_amount() -> None:
    records, accounts = placed(60, over_capture=5)
    first = capture_or_refuse(records, Capture("h1", "c1", 25, "pos"), accounts, T0, T0, "us")
    assert first.batch is not None
    assert (first.result.status, first.result.consumed, first.result.from_balance_after) == (
        "captured", 25, 75)  # fmt: skip
    assert first.batch.events["type"] == ["HoldCaptured", "Credited"]
    assert first.batch.events["pending_after"] == [35, 0]
    assert first.batch.transfers["kind"] == ["capture"]
    records = replace(records, captures=[first.result])
    assert (records.state.status, records.state.remaining, records.state.capturable) == (
        "open", 35, 40)  # fmt: skip
    over = capture_or_refuse(records, Capture("h1", "c2", 41, "pos"), accounts, T0, T0, "us")
    assert (over.batch, over.result.reason_type) == (None, CaptureExceedsHold.type)
    last = capture_or_refuse(records, Capture("h1", "c3", 40, "pos"), accounts, T0, T0, "us")
    assert (last.result.consumed, accounts["alice"].pending_out, accounts["alice"].balance) == (
        35, 0, 35)  # fmt: skip
    done = replace(records, captures=[first.result, last.result]).state
    assert (done.status, done.captured, done.remaining) == ("captured", 65, 0)
    assert same_capture(first.result, Capture("h1", "c1", 25, "pos")) is first.result
    with pytest.raises(DuplicateCaptureMismatch):
        same_capture(first.result, Capture("h1", "c1", 26, "pos"))


def test_an_over_capture_must_still_fit_the_overdraft_limit() -> None:
    records, accounts = placed(100, over_capture=10)  # alice holds all she has
    refused = capture_or_refuse(records, Capture("h1", "c1", 105, "pos"), accounts, T0, T0, "us")
    assert refused.result.reason_type == InsufficientFunds.type


def test_the_one_ending_a_release_finds_stands() -> None:
    records, accounts = placed(60)
    with pytest.raises(NotDue):
        decide_release(records, HoldStatus.EXPIRED, accounts, T0, T0, "us", "ledgerflow")
    assert expiry_due(records, accounts, T0 + timedelta(seconds=59), T0, "us") is None
    voided = decide_release(records, HoldStatus.VOIDED, accounts, T0, T0, "us", "pos")
    assert voided.result is not None and voided.written is not None
    assert (voided.result.ending, voided.result.released) == ("voided", 60)
    assert voided.written.event.pending_after == 0
    ended = replace(records, release=voided.result)
    assert ended.state.status == "voided"
    again = decide_release(ended, HoldStatus.VOIDED, accounts, T0, T0, "us", "pos")
    assert (again.result, again.written) == (voided.result, None)
    nothing = decide_release(ended, HoldStatus.EXPIRED, accounts, T0, T0, "us", "ledgerflow")
    assert (nothing.result, nothing.refusal) == (None, None)
    late = capture_or_refuse(ended, Capture("h1", "c1", 1, "pos"), accounts, T0, T0, "us")
    assert late.result.reason_type == HoldNotOpen.type
    # At the deadline the expiry is due, whoever comes.
    due = expiry_due(records, accounts, T0 + timedelta(seconds=60), T0, "us")
    assert due is not None and due[1].ending == "expired"
    expired = replace(records, release=due[1])
    void = decide_release(expired, HoldStatus.VOIDED, accounts, T0, T0, "us", "pos")
    assert isinstance(void.refusal, HoldExpired)
    assert capture_or_refuse(expired, Capture("h1", "c", 1, "pos"), accounts, T0, T0,
                             "us").result.reason_type == HoldExpired.type  # fmt: skip


def test_a_deadline_moves_only_while_the_hold_is_open() -> None:
    records, _ = placed(60)
    moved = move_deadline(records, DeadlineChange("h1", "d1", 5, "ops"), T0)
    assert (
        moved.expires_at == T0 + timedelta(seconds=5) and moved.state.expires_at == moved.expires_at
    )
    later = replace(records, deadline=moved.expires_at)
    assert later.state.expires_at == T0 + timedelta(seconds=5)
    refused = replace(records, captures=[CaptureResult("h1", "c", 60, "captured", 60, "p")])
    assert isinstance(move_deadline(refused, DeadlineChange("h1", "d2", 5, "ops"), T0).refusal,
                      HoldNotOpen)  # fmt: skip


# -- the chain check replays the reservations ------------------------------------------


def chained(*steps: tuple[str, int, int, dict[str, Any]]) -> list[Event]:
    """(type, amount, pending_after, metadata) steps after AccountOpened."""
    head, balance, events = GENESIS_HASH, 0, []
    for version, (kind, amount, pending, meta) in enumerate(
        (("AccountOpened", 0, 0, {}), *steps), start=1
    ):
        balance += amount
        posting = kind in ("Debited", "Credited", "HoldCaptured")
        draft = Event(
            event_id=f"e{version}", type=kind, account_id="acct", version=version, amount=amount,
            currency="USD", balance_after=balance, occurred_at=T0,
            recorded_at=T0 + timedelta(seconds=version), region="us", initiated_by="ops",
            transfer_id=f"t{version}" if posting else None, leg=None, counterparty=None,
            description=None, metadata=meta, prev_hash=head, hash="", pending_after=pending,
        )  # fmt: skip
        head = chain_hash(head, content_of(draft))
        events.append(replace(draft, hash=head))
    return events


def replay(events: list[Event], limit: int | None = 0) -> AccountChain:
    chain = AccountChain("acct", limit=limit)
    for event in events:
        chain.feed(event)
    return chain


LAWFUL = (("Credited", 100, 0, {}), ("HoldPlaced", 0, 60, {"held": 60}),
          ("Debited", -40, 60, {}), ("HoldCaptured", -25, 35, {}),
          ("HoldReleased", 0, 0, {"released": 35}))  # fmt: skip


def test_a_lawful_history_of_holds_replays_to_its_pending_amount() -> None:
    assert replay(chained(*LAWFUL)).pending == 0
    assert replay(chained(*LAWFUL[:3])).pending == 60


@pytest.mark.parametrize(
    ("steps", "version", "problem"),
    [((("HoldPlaced", 0, 50, {"held": 60}),), 2, "a placement of 60 moves pending 0 to 50"),
     ((("Credited", 5, 3, {}),), 2, "a Credited event moves pending 0 to 3"),
     ((("Credited", 100, 0, {}), ("HoldPlaced", 0, 60, {"held": 60}),
       ("HoldReleased", 0, 10, {"released": 60})), 4, "a release of 60 moves pending 60 to 10"),
     ((("Credited", 100, 0, {}), ("HoldPlaced", 0, 60, {"held": 60}),
       ("HoldCaptured", -5, 50, {})), 4, "a capture of 5 moves pending 60 to 50"),
     ((("Credited", 100, 0, {}), ("HoldPlaced", 0, 60, {"held": 60}), ("Debited", -41, 60, {})),
      4, "available -1 is below the overdraft limit 0")],
)  # fmt: skip
def test_the_chain_check_names_each_reservation_that_does_not_add_up(
    steps: tuple[Any, ...], version: int, problem: str
) -> None:
    with pytest.raises(ChainBroken) as caught:
        replay(chained(*steps))
    assert (caught.value.check, caught.value.version, caught.value.problem) == (
        "pending", version, problem)  # fmt: skip


def test_pending_is_hashed_and_absent_means_zero() -> None:
    [_, placed_event] = chained(("HoldPlaced", 0, 60, {"held": 60}))
    assert content_of(placed_event)["pending_after"] == 60
    assert "pending_after" not in content_of(replace(placed_event, pending_after=0))
    with pytest.raises(ChainBroken):  # a tampered pending amount breaks the hash
        replay([chained()[0], replace(placed_event, pending_after=61)], limit=None)
