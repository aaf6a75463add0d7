"""Holds, the pure parts: what a hold request must hold, where a hold
stands from its records, the decisions of each step (placement, capture,
release, deadline), and the chain check's replay of the reservations."""

from __future__ import annotations

import hashlib
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
    event_content,
)
from ledgerflow.domain.holds import (
    Capture,
    CaptureRequest,
    CaptureResult,
    DeadlineChange,
    HoldRequest,
    HoldResult,
    HoldState,
    HoldStatus,
    ReleaseResult,
    Traveled,
    capture_posting_id,
    capture_transfer,
    hold_workflow_id,
)
from ledgerflow.domain.model import (
    Account,
    Event,
    Posting,
    PostingKind,
    Transfer,
    canonical_json,
    clearing_account_id,
)
from ledgerflow.store.batch import event_id_for
from ledgerflow.store.holds import (
    HoldRecords,
    NotDue,
    Placement,
    Reversal,
    capture_or_refuse,
    capture_posting,
    decide_release,
    expiry_due,
    hold_target,
    move_deadline,
    place_or_refuse,
    return_capture,
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


# -- every field of what the steps answer and write (whole-value equality) -------------


def test_state_of_answers_every_field_for_each_way_a_hold_stands() -> None:
    records, _ = placed(60, over_capture=5)
    result = records.placement.result
    deadline = T0 + timedelta(seconds=60)
    common: dict[str, Any] = dict(
        hold_id="h1", from_account="alice", to_account="shop", amount=60, currency="USD",
        over_capture=5, expires_at=deadline, region="us",
    )  # fmt: skip
    assert records.state == HoldState(status="open", captured=0, remaining=60, ended_at=None,
                                      **common)  # fmt: skip
    later = T0 + timedelta(seconds=9)
    part = CaptureResult("h1", "c1", 20, "captured", 20, "p", recorded_at=T0)
    rest = CaptureResult("h1", "c2", 45, "captured", 40, "p", recorded_at=later)
    refused = CaptureResult("h1", "c3", 1, "refused", 0, None, reason_type="X", recorded_at=later)
    assert replace(records, captures=[part, refused]).state == HoldState(
        status="open", captured=20, remaining=40, **common)  # fmt: skip
    assert replace(records, captures=[part, rest, refused]).state == HoldState(
        status="captured", captured=65, remaining=0, ended_at=later, **common)  # fmt: skip
    voided = ReleaseResult("h1", "voided", 40, "e", later)
    assert replace(records, captures=[part], release=voided).state == HoldState(
        status="voided", captured=20, remaining=0, ended_at=later, **common)  # fmt: skip
    no = replace(result, status="refused", reason_type="InsufficientFunds", reason="poor",
                 expires_at=None)  # fmt: skip
    refused_state = HoldRecords(Placement(no, "pos", None), [], None, None).state
    assert refused_state == HoldState(
        status="refused", captured=0, remaining=0, reason_type="InsufficientFunds",
        reason="poor", **(common | {"expires_at": None}))  # fmt: skip
    assert records.by_capture == {} and replace(records, captures=[part]).by_capture == {"c1": part}


def test_a_placement_writes_exactly_this_event_head_and_outcome() -> None:
    source = account("alice", pending_out=10, head_recorded_at=None)
    accounts = {"alice": source, "shop": account("shop", 0)}
    hold = request(30, over_capture=2, description="pump 4", metadata={"k": 1}).validated()
    outcome = place_or_refuse(hold, accounts, T0, T0 - timedelta(seconds=1), "us")
    assert outcome.written is not None
    expires_at = T0 + timedelta(seconds=60)
    fields: dict[str, Any] = dict(
        event_id=event_id_for("hold/h1/placed"), type="HoldPlaced", account_id="alice",
        version=3, amount=0, currency="USD", balance_after=100,
        occurred_at=T0 - timedelta(seconds=1), recorded_at=T0, region="us",
        initiated_by="pos", transfer_id=None, leg=None, counterparty="shop",
        description="pump 4", pending_after=40,
        metadata={"k": 1, "hold_id": "h1", "held": 30, "over_capture": 2,
                  "expires_at": expires_at.isoformat()},
    )  # fmt: skip
    digest = chain_hash("ab" * 32, event_content(**fields))
    assert outcome.written.event == Event(**fields, prev_hash="ab" * 32, hash=digest)
    assert outcome.written.head == replace(source, version=3, head_hash=digest,
                                           head_recorded_at=T0, pending_out=40)  # fmt: skip
    assert outcome.result == HoldResult(
        hold_id="h1", status="placed", fingerprint=hold.fingerprint(), region="us",
        from_account="alice", to_account="shop", amount=30, currency="USD", over_capture=2,
        expires_at=expires_at, event_id=fields["event_id"], placed_at=T0,
    )  # fmt: skip


def test_a_refusal_of_a_hold_or_a_capture_records_exactly_why() -> None:
    accounts = {"alice": account("alice", 5), "shop": account("shop")}
    hold = request(30, over_capture=3).validated()
    refused = place_or_refuse(hold, accounts, T0, T0, "eu").result
    assert refused == HoldResult(
        hold_id="h1", status="refused", fingerprint=hold.fingerprint(), region="eu",
        from_account="alice", to_account="shop", amount=30, currency="USD", over_capture=3,
        expires_at=None, event_id=None, reason_type="InsufficientFunds",
        reason=refused.reason, placed_at=T0,
    )  # fmt: skip
    assert refused.reason and "exceeds what it may spend" in refused.reason
    records, accounts = placed(60)
    later = T0 + timedelta(seconds=2)
    over = capture_or_refuse(records, Capture("h1", "c9", 61, "pos"), accounts, later, T0, "us")
    assert over.result == CaptureResult(
        hold_id="h1", capture_id="c9", amount=61, status="refused", consumed=0, posting_id=None,
        reason_type="CaptureExceedsHold",
        reason="hold 'h1' can take 0.60 USD more; 0.61 USD exceeds it", recorded_at=later,
        initiated_by="pos",
    )  # fmt: skip
    with pytest.raises(DuplicateHoldMismatch) as dup:
        same_hold(records.placement.result, request(61).validated())
    assert (dup.value.message, dup.value.details) == (
        "hold id 'h1' was already used for a different hold", {"hold_id": "h1"})  # fmt: skip
    with pytest.raises(DuplicateCaptureMismatch) as again:
        same_capture(over.result, Capture("h1", "c9", 60, "pos"))
    assert (again.value.message, again.value.details) == (
        "capture id 'c9' of hold 'h1' was already used with another amount",
        {"hold_id": "h1", "capture_id": "c9"})  # fmt: skip


def test_a_capture_is_exactly_this_posting_and_outcome() -> None:
    records, accounts = placed(60)
    later = T0 + timedelta(seconds=2)
    capture = Capture("h1", "c1", 25, "merchant")
    posting = capture_posting(records.state, capture, "us")
    transfer = Transfer("h1/capture/c1", "alice", "shop", 25, "USD", "merchant",
                        metadata={"hold_id": "h1", "capture_id": "c1"})  # fmt: skip
    assert posting == Posting(transfer, PostingKind.CAPTURE, "us", None, "h1/capture/c1",
                              "alice", "shop", "shop", "alice", pending_release=25)  # fmt: skip
    outcome = capture_or_refuse(records, capture, accounts, later, T0, "us")
    assert outcome.result == CaptureResult(
        hold_id="h1", capture_id="c1", amount=25, status="captured", consumed=25,
        posting_id="h1/capture/c1", from_balance_after=75, to_balance_after=25,
        recorded_at=later, initiated_by="merchant",
    )  # fmt: skip
    assert outcome.batch is not None and outcome.batch.region == "us"
    recorded: dict[str, Any] = {}
    capture_or_refuse(records, Capture("h1", "c2", 5, "m"), dict(accounts), later, T0, "us",
                      recorded)  # fmt: skip
    assert list(recorded) == ["h1/capture/c2"]


def test_a_release_writes_exactly_this_event_head_and_outcome() -> None:
    records, accounts = placed(60)
    later = T0 + timedelta(seconds=3)
    decided = decide_release(records, HoldStatus.VOIDED, accounts, later, T0, "us", "pos")
    assert decided.written is not None and decided.refusal is None
    source = decided.written.head
    fields: dict[str, Any] = dict(
        event_id=event_id_for("hold/h1/released"), type="HoldReleased", account_id="alice",
        version=4, amount=0, currency="USD", balance_after=100, occurred_at=T0,
        recorded_at=later, region="us", initiated_by="pos", transfer_id=None, leg=None,
        counterparty="shop", description=None, pending_after=0,
        metadata={"hold_id": "h1", "ending": "voided", "released": 60},
    )  # fmt: skip
    digest = chain_hash(decided.written.event.prev_hash, event_content(**fields))
    assert decided.written.event == Event(**fields, prev_hash=decided.written.event.prev_hash,
                                          hash=digest)  # fmt: skip
    assert (source.version, source.pending_out, source.head_hash) == (4, 0, digest)
    assert decided.result == ReleaseResult("h1", "voided", 60, fields["event_id"], later)
    assert accounts["alice"] == source


def test_the_refusals_of_an_ended_hold_say_how_it_ended() -> None:
    records, accounts = placed(60)
    due = expiry_due(records, accounts, T0 + timedelta(seconds=60), T0, "us")  # at the deadline
    assert due is not None
    when = T0 + timedelta(seconds=60)
    expired = replace(records, release=due[1])
    void = decide_release(expired, HoldStatus.VOIDED, accounts, when, T0, "us", "pos")
    assert isinstance(void.refusal, HoldExpired) and (void.written, void.result) == (None, None)
    assert (void.refusal.message, void.refusal.details) == (
        f"hold 'h1' expired at {when.isoformat()}", {"hold_id": "h1"})  # fmt: skip
    done = replace(records, captures=[CaptureResult("h1", "c", 60, "captured", 60, "p")])
    refused = decide_release(done, HoldStatus.VOIDED, accounts, when, T0, "us", "pos")
    assert isinstance(refused.refusal, HoldNotOpen)
    assert (refused.refusal.message, refused.refusal.details) == (
        "hold 'h1' is captured: there is nothing left to void",
        {"hold_id": "h1", "status": "captured"})  # fmt: skip
    moved = move_deadline(done, DeadlineChange("h1", "d", 5, "o"), T0)
    assert moved.refusal is not None and moved.refusal.message == (
        "hold 'h1' is captured: its deadline cannot move"
    )
    late = move_deadline(expired, DeadlineChange("h1", "d", 5, "o"), T0)
    assert isinstance(late.refusal, HoldExpired) and late.expires_at is None
    unknown_end = replace(records.state, status=HoldStatus.EXPIRED, ended_at=None)
    exp = capture_or_refuse(replace(records, release=due[1]), Capture("h1", "k", 1, "p"),
                            accounts, when, T0, "us")  # fmt: skip
    assert exp.result.reason == f"hold 'h1' expired at {when.isoformat()}"
    assert unknown_end.ended_at is None
    assert expiry_due(done, accounts, when, T0, "us") is None  # ended: nothing is due


def test_the_policy_words_for_holds_and_transactions() -> None:
    from ledgerflow.domain.errors import AccountHasOpenHolds, CurrencyMismatch
    from ledgerflow.domain.model import AccountChangeRequest
    from ledgerflow.domain.policy import check_capture, check_change, check_funds, check_hold
    from ledgerflow.domain.transactions import LegRequest, TransactionRequest

    held = account("alice", 100, pending_out=60, currency="EUR")
    with pytest.raises(InsufficientFunds) as funds:
        check_funds(held, 41, released=0)
    assert funds.value.message == (
        "account 'alice' has a balance of 1.00 EUR (0.60 EUR of it held) and an overdraft "
        "limit of 0.00 EUR; 0.41 EUR exceeds what it may spend"
    )
    check_funds(held, 40, released=0)
    check_funds(held, 100, released=60)
    close = AccountChangeRequest("c1", "alice", "close", "ops", "why")
    with pytest.raises(AccountHasOpenHolds) as holds:
        check_change(close, account("alice", 0, pending_out=250))
    assert (holds.value.message, holds.value.details) == (
        "account 'alice' has 2.50 USD held by open holds; void them or let them expire first",
        {"account_id": "alice"})  # fmt: skip
    check_change(replace(close, action="freeze"), account("alice", 0, pending_out=250))
    records, _ = placed(60)
    with pytest.raises(CaptureExceedsHold) as over:
        check_capture(records.state, 61)
    assert (over.value.message, over.value.details) == (
        "hold 'h1' can take 0.60 USD more; 0.61 USD exceeds it", {"hold_id": "h1"})  # fmt: skip
    check_capture(records.state, 60)
    voided = replace(records.state, status=HoldStatus.VOIDED)
    with pytest.raises(HoldNotOpen) as ended:
        check_capture(voided, 1)
    assert (ended.value.message, ended.value.details) == (
        "hold 'h1' is voided: nothing more can be captured",
        {"hold_id": "h1", "status": "voided"})  # fmt: skip
    with pytest.raises(CurrencyMismatch) as other:  # a hold is checked as its transfer would be
        check_hold(request().validated(), account("alice", 100), account("shop", currency="EUR"))
    assert other.value.message == "account 'shop' holds EUR, the transfer is in USD"
    from ledgerflow.domain.policy import check_transaction

    legs = [LegRequest("a", "debit", 1, "USD"), LegRequest("b", "credit", 1, "USD")]
    tx = TransactionRequest("x", legs, "ops").validated()
    with pytest.raises(CurrencyMismatch) as leg:
        check_transaction(tx, {"a": account("a", 5), "b": account("b", currency="EUR")})
    assert leg.value.message == "account 'b' holds EUR, the leg is in USD"
    from ledgerflow.domain.errors import InvalidAmount
    from ledgerflow.domain.money import MAX_MINOR_UNITS

    edge = {"a": account("a", 5), "b": account("b", MAX_MINOR_UNITS - 1)}
    check_transaction(tx, edge)  # lands exactly on the ledger's limit
    with pytest.raises(InvalidAmount) as flow:
        check_transaction(tx, edge | {"b": account("b", MAX_MINOR_UNITS)})
    assert flow.value.message == "the transaction would overflow an account balance"


@pytest.mark.parametrize(
    ("steps", "limit", "version", "problem"),
    [((("Credited", 5, -1, {}),), None, 2, "pending -1 is negative"),
     ((("HoldPlaced", 0, 1, {}),), None, 2, "a placement of None moves pending 0 to 1"),
     ((("HoldPlaced", 0, 0, {"held": 0}),), None, 2, "a placement of 0 moves pending 0 to 0"),
     ((("Credited", 100, 0, {}), ("HoldPlaced", 0, 60, {"held": 60}),
       ("HoldCaptured", -5, 60, {})), None, 4, None),
     ((("Credited", 100, 0, {}), ("HoldPlaced", 0, 60, {"held": 60}),
       ("HoldReleased", 0, 0, {})), None, 4, "a release of None moves pending 60 to 0"),
     ((("Credited", 100, 0, {}), ("HoldPlaced", 0, 61, {"held": 61}),), 40, None, None),
     ((("Credited", 10, 0, {}), ("HoldPlaced", 0, 51, {"held": 51}),), 40, 3,
      "available -41 is below the overdraft limit 40"),
     ((("Credited", 10, 0, {}), ("HoldPlaced", 0, 10, {"held": 10}),
       ("HoldCaptured", -50, 0, {})), 39, 4, "available -40 is below the overdraft limit 39")],
)  # fmt: skip
def test_the_reservation_replay_at_its_edges(
    steps: tuple[Any, ...], limit: int | None, version: int | None, problem: str | None
) -> None:
    events = chained(*steps)
    if version is None:  # lawful: a capture keeping part of its reservation, a limit met
        replay(events, limit=limit)
        return
    if problem is None:
        replay(events, limit=limit)  # the capture of 5 that keeps 60 pending is lawful
        return
    with pytest.raises(ChainBroken) as caught:
        replay(events, limit=limit)
    assert (caught.value.account_id, caught.value.version, caught.value.problem) == (
        "acct", version, problem)  # fmt: skip


# -- holds toward another region ---------------------------------------------------


def placed_abroad(amount: int = 60) -> tuple[HoldRecords, dict[str, Account]]:
    clearing = clearing_account_id("us", "eu", "USD")
    accounts = {"alice": account("alice"), clearing: account(clearing, 0, overdraft_limit=None)}
    outcome = place_or_refuse(request(amount, to_region="eu").validated(), accounts, T0, T0, "us")
    assert outcome.written is not None
    return HoldRecords(Placement(outcome.result, "pos", None), [], None, None), accounts


def test_a_hold_toward_another_region_is_its_own_hold_checked_on_its_source_alone() -> None:
    local, abroad = request().validated(), request(to_region="eu").validated()
    # Holds within their region keep the fingerprint they had before `to_region`.
    assert local.fingerprint() == fingerprint_of_fields(local, without="to_region")
    assert abroad.fingerprint() not in (
        local.fingerprint(),
        request(to_region="ap").validated().fingerprint(),
    )
    with pytest.raises(InvalidRequest) as caught:
        request(to_region="no where").validated()
    assert caught.value.details == {"field": "to_region"}
    # The target is no account here: the source and its funds decide.
    records, accounts = placed_abroad(60)
    result = records.placement.result
    assert (result.status, result.to_region) == ("placed", "eu")
    assert accounts["alice"].pending_out == 60
    too_much = place_or_refuse(request(101, to_region="eu").validated(),
                               {"alice": account("alice")}, T0, T0, "us")  # fmt: skip
    assert (too_much.result.status, too_much.result.reason_type, too_much.result.to_region) == (
        "refused", "InsufficientFunds", "eu")  # fmt: skip
    assert hold_target(result, "us") == clearing_account_id("us", "eu", "USD")
    assert hold_target(replace(result, to_region=None), "us") == "shop"
    assert records.accounts == {"alice", clearing_account_id("us", "eu", "USD")}


def test_a_capture_toward_another_region_is_the_sagas_source_leg() -> None:
    records, accounts = placed_abroad(60)
    capture = Capture("h1", "c1", 70, "merchant")
    posting = capture_posting(records.state, capture, "us")
    transfer = Transfer("h1/capture/c1", "alice", "shop", 70, "USD", "merchant",
                        metadata={"hold_id": "h1", "capture_id": "c1"})  # fmt: skip
    assert posting == replace(Posting.outbound(transfer, "us", "eu"), pending_release=60)
    assert capture_transfer(records.state, "c1", 70, "merchant") == transfer
    outcome = capture_or_refuse(replace(records, placement=replace(
        records.placement, result=replace(records.placement.result, over_capture=10))),
        capture, accounts, T0, T0, "us")  # fmt: skip
    assert outcome.result == CaptureResult(
        hold_id="h1", capture_id="c1", amount=70, status="captured", consumed=60,
        posting_id="h1/capture/c1", from_balance_after=30, to_balance_after=None,
        recorded_at=T0, initiated_by="merchant", to_region="eu",
    )  # fmt: skip
    assert outcome.batch is not None
    assert outcome.batch.events["type"] == ["HoldCaptured", "Credited"]
    assert outcome.batch.transfers["kind"] == ["outbound"]


def test_a_returned_capture_is_reversed_once_and_counts_against_the_hold() -> None:
    records, accounts = placed_abroad(60)
    captured = capture_or_refuse(records, Capture("h1", "c1", 25, "m"), accounts, T0, T0, "us")
    records = replace(records, captures=[captured.result])
    assert records.state.traveled == [Traveled("c1", 25, "m")]  # on its way, or arrived
    assert placed(60)[0].state.traveled == []
    with pytest.raises(InvalidRequest) as caught:
        return_capture(records, "c9", "AccountClosed", "x", accounts, T0, T0, "us")
    assert caught.value.message == (
        "capture 'c9' of hold 'h1' is no posted capture toward another region: there is "
        "nothing to return"
    )
    back = return_capture(records, "c1", "AccountClosed", "closed there", accounts, T0, T0, "us")
    assert back.batch is not None and back.reversal is not None
    assert back.batch.transfers["transfer_id"] == ["h1/capture/c1/reversal"]
    assert back.batch.transfers["kind"] == ["reversal"]
    assert back.batch.events["account_id"] == [clearing_account_id("us", "eu", "USD"), "alice"]
    assert back.reversal == Reversal("h1", "c1", "AccountClosed", "closed there", 100, T0)
    assert (back.result.status, back.result.reason_type, back.result.from_balance_after) == (
        "reversed", "AccountClosed", 100)  # fmt: skip
    returned = replace(records, reversals={"c1": back.reversal})
    assert returned.by_capture["c1"] == replace(back.result, to_balance_after=None)
    again = return_capture(returned, "c1", "AccountClosed", "later", accounts, T0, T0, "us")
    assert (again.batch, again.result) == (None, returned.by_capture["c1"])
    state = returned.state
    assert (state.status, state.captured, state.reversed, state.remaining, state.to_region) == (
        "open", 25, 25, 35, "eu")  # fmt: skip
    assert state.traveled == []  # back: nothing left to carry on
    refused = capture_or_refuse(records, Capture("h1", "c2", 999, "m"), accounts, T0, T0, "us")
    with pytest.raises(InvalidRequest):  # a refused capture posted nothing to return
        return_capture(replace(records, captures=[refused.result]), "c2", "AccountClosed", "x",
                       accounts, T0, T0, "us")  # fmt: skip
    local, local_accounts = placed(60)
    done = capture_or_refuse(local, Capture("h1", "c1", 5, "m"), local_accounts, T0, T0, "us")
    with pytest.raises(InvalidRequest):  # a capture within its region never travels
        return_capture(replace(local, captures=[done.result]), "c1", "AccountClosed", "x",
                       local_accounts, T0, T0, "us")  # fmt: skip


def fingerprint_of_fields(hold: Any, *, without: str) -> str:
    from dataclasses import fields

    content = {f.name: getattr(hold, f.name) for f in fields(hold) if f.name != without}
    return hashlib.sha256(canonical_json(content)).hexdigest()
