"""One contract, two event stores: every test here runs against the
PostgreSQL store (a real server) and the in-memory one, so a fast test that
uses the in-memory store is testing the behaviour the ledger has.

What a store promises (ledgerflow/store/base.py, `EventStore`): accounts open
once; a posting id is written exactly once and answers its recorded outcome
ever after, or `DuplicateTransferMismatch` for another payload or another part
of a transfer; a recorded rejection stands; the policy refuses what it must
and a refusal writes nothing; every account's events chain from the genesis
with running balances; the global tail delivers every event once, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ledgerflow.domain.errors import (
    AccountAlreadyExists,
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    CurrencyMismatch,
    DuplicateCaptureMismatch,
    DuplicateChangeMismatch,
    DuplicateHoldMismatch,
    DuplicateTransactionMismatch,
    DuplicateTransferMismatch,
    HoldExpired,
    HoldNotFound,
    HoldNotOpen,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
)
from ledgerflow.domain.hashing import verify_chain
from ledgerflow.domain.holds import CaptureRequest, DeadlineChange, HoldRequest
from ledgerflow.domain.model import (
    AccountChangeRequest,
    OpenAccountRequest,
    Posting,
    Transfer,
    TransferStatus,
    clearing_account_id,
)
from ledgerflow.domain.transactions import LegRequest, TransactionRequest
from ledgerflow.store.base import EventStore, TailCursor
from ledgerflow.store.holds import NotDue
from ledgerflow.store.memory import InMemoryEventStore

Ids = Callable[[str], str]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
def es(request: pytest.FixtureRequest) -> EventStore:
    if request.param == "memory":
        return InMemoryEventStore("us")
    store: EventStore = request.getfixturevalue("store")
    return store


async def opened(es: EventStore, account_id: str, *, limit: int | None = 0) -> str:
    await es.open_account(OpenAccountRequest(account_id, "USD", "us", limit), NOW)
    return account_id


async def funded(es: EventStore, uid: Ids, amount: int = 1_000) -> tuple[str, str, str]:
    bank = await opened(es, uid("bank"), limit=None)
    alice, bob = await opened(es, uid("alice")), await opened(es, uid("bob"))
    await es.append_transfer(Transfer(uid("fund"), bank, alice, amount, "USD", "ops"), "us", NOW)
    return bank, alice, bob


async def test_an_account_opens_once_and_answers_as_it_was_opened(es: EventStore, uid: Ids) -> None:
    request = OpenAccountRequest(uid("a"), "USD", "us", 500, metadata={"k": "v"})
    first = await es.open_account(request, NOW)
    again = await es.open_account(request, NOW)
    assert first.created and not again.created and first.event_id == again.event_id
    account = first.account
    assert (account.currency, account.region, account.overdraft_limit, account.status) == (
        "USD", "us", 500, "open")  # fmt: skip
    assert (account.version, account.balance, account.metadata) == (1, 0, {"k": "v"})
    assert await es.get_account(request.account_id) == again.account
    with pytest.raises(AccountAlreadyExists):
        await es.open_account(OpenAccountRequest(request.account_id, "EUR", "us", 500), NOW)
    with pytest.raises(InvalidRequest):
        await es.open_account(OpenAccountRequest(uid("b"), "USD", "eu"), NOW)
    assert await es.get_account(uid("nobody")) is None
    [opening] = await es.account_events(request.account_id)
    assert (opening.type, opening.version, opening.amount, opening.balance_after) == (
        "AccountOpened", 1, 0, 0)  # fmt: skip
    assert verify_chain([opening]) == account.head_hash


async def test_a_posting_is_written_once_and_answers_its_outcome_ever_after(
    es: EventStore, uid: Ids
) -> None:
    _, alice, bob = await funded(es, uid)
    transfer = Transfer(uid("t"), alice, bob, 300, "USD", "ops", "rent", {"n": 1})
    first = await es.append_transfer(transfer, "us", NOW)
    assert first.status == TransferStatus.CONFIRMED and first.confirmed
    assert (first.from_balance_after, first.to_balance_after) == (700, 300)
    assert first.fingerprint == transfer.fingerprint()
    again = await es.append_transfer(transfer, "us", NOW)
    assert again == first
    assert (await es.get_account(alice)).balance == 700  # type: ignore[union-attr]
    recorded = await es.get_transfer(transfer.transfer_id)
    assert recorded is not None and recorded.status == TransferStatus.CONFIRMED
    assert recorded.debit_event_id == first.debit_event_id
    with pytest.raises(DuplicateTransferMismatch):
        await es.append_transfer(Transfer(transfer.transfer_id, alice, bob, 301, "USD", "ops",
                                          "rent", {"n": 1}), "us", NOW)  # fmt: skip
    # The same payload as another part of a transfer (a saga's source leg).
    with pytest.raises(DuplicateTransferMismatch):
        await es.append_posting(Posting.outbound(transfer, "us", "eu"), NOW)
    # Projecting the posting's events into the read models, once or again.
    both = [first.debit_event_id or "", first.credit_event_id or ""]
    assert await es.project(both) == 2 and await es.project(both) == 2
    debits = await es.events_by_id([first.debit_event_id or ""])
    assert [(e.account_id, e.amount, e.leg, e.transfer_id) for e in debits] == [
        (alice, -300, "debit", transfer.transfer_id)]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("too much", InsufficientFunds),
        ("unknown target", AccountNotFound),
        ("unknown source", AccountNotFound),
        ("other currency", CurrencyMismatch),
    ],
)
async def test_a_refused_posting_writes_nothing(
    es: EventStore, uid: Ids, case: str, error: type[Exception]
) -> None:
    _, alice, bob = await funded(es, uid, 100)
    source, target, amount, currency = {
        "too much": (alice, bob, 101, "USD"),
        "unknown target": (alice, uid("ghost"), 1, "USD"),
        "unknown source": (uid("ghost"), bob, 1, "USD"),
        "other currency": (alice, bob, 1, "EUR"),
    }[case]
    transfer = Transfer(uid("t"), source, target, amount, currency, "ops")
    with pytest.raises(error):
        await es.check_transfer(transfer)
    with pytest.raises(error):
        await es.append_transfer(transfer, "us", NOW)
    assert (await es.get_account(alice)).version == 2  # type: ignore[union-attr]
    assert await es.get_transfer(transfer.transfer_id) is None


async def test_a_recorded_rejection_is_the_ids_outcome(es: EventStore, uid: Ids) -> None:
    bank, alice, bob = await funded(es, uid, 100)
    transfer = Transfer(uid("t"), alice, bob, 500, "USD", "ops")
    refusal = InsufficientFunds("not enough", account_id=alice)
    rejected = await es.record_rejection(transfer, "us", refusal, NOW)
    assert (rejected.status, rejected.reason_type, rejected.reason) == (
        TransferStatus.REJECTED, "InsufficientFunds", "not enough")  # fmt: skip
    # Money arrives; the id still stands for its rejection.
    await es.append_transfer(Transfer(uid("more"), bank, alice, 1_000, "USD", "ops"), "us", NOW)
    again = await es.append_transfer(transfer, "us", NOW)
    assert (again.status, again.reason_type) == (TransferStatus.REJECTED, "InsufficientFunds")
    later = await es.record_rejection(transfer, "us", AccountClosed("x"), NOW)
    assert later.reason_type == "InsufficientFunds"
    with pytest.raises(DuplicateTransferMismatch):
        await es.record_rejection(Transfer(transfer.transfer_id, alice, bob, 1, "USD", "ops"),
                                  "us", refusal, NOW)  # fmt: skip
    stored = await es.get_transfer(transfer.transfer_id)
    assert stored is not None and stored.status == TransferStatus.REJECTED


async def test_saga_legs_open_their_clearing_account_and_reverse(es: EventStore, uid: Ids) -> None:
    _, alice, _ = await funded(es, uid, 100)
    far = Transfer(uid("x"), alice, uid("abroad"), 60, "USD", "ops")
    await es.check_posting(Posting.outbound(far, "us", "eu"))
    out = await es.append_posting(Posting.outbound(far, "us", "eu"), NOW)
    clearing = clearing_account_id("us", "eu", "USD")
    account = await es.get_account(clearing)
    assert out.confirmed and account is not None
    assert (account.balance, account.overdraft_limit) == (60, None)
    back = await es.append_posting(Posting.reversal(far, "us", "eu"), NOW)
    assert back.confirmed and (await es.get_account(alice)).balance == 100  # type: ignore[union-attr]
    again = await es.append_posting(Posting.reversal(far, "us", "eu"), NOW)
    assert again == back  # the recorded outcome, as the first append answered it
    assert back.transfer_id == far.transfer_id
    assert (await es.get_account(clearing)).balance == 0  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest):
        await es.append_posting(Posting.inbound(far, "eu", "us"), NOW)  # another region's


async def test_every_accounts_events_chain_and_the_tail_delivers_each_once(
    es: EventStore, uid: Ids
) -> None:
    bank, alice, bob = await funded(es, uid)
    for i in range(5):
        await es.append_transfer(Transfer(uid(f"t{i}"), alice, bob, 10 + i, "USD", "ops"),
                                 "us", NOW)  # fmt: skip
    for account_id in (bank, alice, bob):
        events = await es.account_events(account_id)
        head = (await es.get_account(account_id)).head_hash  # type: ignore[union-attr]
        assert verify_chain(events) == head
        assert [e.version for e in events] == list(range(1, len(events) + 1))
    page = await es.account_events(alice, after_version=2, limit=2)
    assert [e.version for e in page] == [3, 4]
    # The tail, in pages: every event of these accounts once, in one order.
    seen, cursor = [], TailCursor()
    while batch := await es.read_events(cursor, limit=7):
        seen += batch
        last = batch[-1]
        cursor = TailCursor(last.tx_id or 0, last.position or 0)
    ours = [e for e in seen if e.account_id in (bank, alice, bob)]
    assert len(ours) == len({e.event_id for e in ours}) == 3 + 2 + 10
    places = [(e.tx_id, e.position) for e in seen]
    assert places == sorted(places)  # type: ignore[type-var]


def change(
    account_id: str, action: str, change_id: str, reason: str = "kyc"
) -> AccountChangeRequest:
    return AccountChangeRequest(change_id, account_id, action, "ops", reason)


async def test_a_frozen_account_refuses_debits_takes_credits_and_thaws(
    es: EventStore, uid: Ids
) -> None:
    bank, alice, bob = await funded(es, uid, 100)
    frozen = await es.change_account(change(alice, "freeze", "c1"), NOW)
    assert (frozen.status, frozen.account_status, frozen.reason_type) == ("applied", "frozen", None)
    account = await es.get_account(alice)
    assert account is not None and (account.status, account.version) == ("frozen", 3)
    out = Transfer(uid("out"), alice, bob, 10, "USD", "ops")
    with pytest.raises(AccountFrozen):
        await es.check_transfer(out)
    with pytest.raises(AccountFrozen):
        await es.append_transfer(out, "us", NOW)
    landed = await es.append_transfer(Transfer(uid("in"), bank, alice, 5, "USD", "ops"), "us", NOW)
    assert landed.confirmed and landed.to_balance_after == 105
    thawed = await es.change_account(change(alice, "unfreeze", "c2"), NOW)
    assert thawed.account_status == "open"
    assert (await es.append_transfer(out, "us", NOW)).confirmed
    events = await es.account_events(alice)
    assert [e.type for e in events] == ["AccountOpened", "Credited", "AccountFrozen",
                                        "Credited", "AccountUnfrozen", "Debited"]  # fmt: skip
    assert verify_chain(events) == (await es.get_account(alice)).head_hash  # type: ignore[union-attr]
    status = events[2]
    assert (status.amount, status.balance_after, status.initiated_by, status.description) == (
        0, 100, "ops", "kyc")  # fmt: skip
    assert status.metadata == {"change_id": "c1"} and frozen.event_id == status.event_id


async def test_a_change_id_is_applied_or_refused_once_and_answers_so_ever_after(
    es: EventStore, uid: Ids
) -> None:
    bank, alice, _ = await funded(es, uid, 100)
    refused = await es.change_account(change(alice, "close", "c1"), NOW)
    assert (refused.status, refused.reason_type, refused.account_status) == (
        "refused", "AccountNotEmpty", "open")  # fmt: skip
    assert refused.event_id is None and (await es.get_account(alice)).version == 2  # type: ignore[union-attr]
    # The money leaves; the id still stands for its refusal, and a new id closes.
    await es.append_transfer(Transfer(uid("empty"), alice, bank, 100, "USD", "ops"), "us", NOW)
    assert await es.change_account(change(alice, "close", "c1"), NOW) == refused
    with pytest.raises(DuplicateChangeMismatch):
        await es.change_account(change(alice, "close", "c1", reason="other"), NOW)
    closed = await es.change_account(change(alice, "close", "c2"), NOW)
    assert closed.applied and closed.account_status == "closed"
    assert await es.change_account(change(alice, "close", "c2"), NOW) == closed
    again = await es.change_account(change(alice, "unfreeze", "c3"), NOW)
    assert (again.status, again.reason_type) == ("refused", "AccountStateConflict")
    for source, target in ((alice, bank), (bank, alice)):
        with pytest.raises(AccountClosed):
            await es.append_transfer(Transfer(uid("late"), source, target, 1, "USD", "ops"),
                                     "us", NOW)  # fmt: skip
    ghost = await es.change_account(change(uid("ghost"), "freeze", "c1"), NOW)
    assert (ghost.status, ghost.reason_type, ghost.account_status) == (
        "refused", "AccountUnknown", "unknown")  # fmt: skip
    with pytest.raises(InvalidRequest):
        await es.change_account(change(alice, "delete", "c9"), NOW)


async def test_a_reversal_returns_money_to_an_account_closed_while_it_was_away(
    es: EventStore, uid: Ids
) -> None:
    _, alice, _ = await funded(es, uid, 60)
    far = Transfer(uid("x"), alice, uid("abroad"), 60, "USD", "ops")
    assert (await es.append_posting(Posting.outbound(far, "us", "eu"), NOW)).confirmed
    assert (await es.change_account(change(alice, "close", "c1"), NOW)).applied
    back = await es.append_posting(Posting.reversal(far, "us", "eu"), NOW)
    account = await es.get_account(alice)
    assert back.confirmed and account is not None and (account.status, account.balance) == (
        "closed", 60)  # fmt: skip
    assert verify_chain(await es.account_events(alice)) == account.head_hash


# -- holds ------------------------------------------------------------------------


def hold(hold_id: str, source: str, target: str, amount: int, **kw: Any) -> HoldRequest:
    fields: dict[str, Any] = dict(expires_in_s=3600)
    fields.update(kw)
    return HoldRequest(hold_id, source, target, amount, "USD", "ops", **fields)


def capture(hold_id: str, capture_id: str, amount: int) -> CaptureRequest:
    return CaptureRequest(hold_id, capture_id, amount, "merchant")


async def test_a_hold_reserves_what_the_account_may_spend(es: EventStore, uid: Ids) -> None:
    _, alice, bob = await funded(es, uid, 100)
    placed = await es.place_hold(hold(uid("h"), alice, bob, 80), NOW)
    assert placed.placed and placed.expires_at is not None and placed.reason_type is None
    account = await es.get_account(alice)
    assert account is not None and (account.balance, account.pending_out, account.available) == (
        100, 80, 20)  # fmt: skip
    with pytest.raises(InsufficientFunds):
        await es.append_transfer(Transfer(uid("t"), alice, bob, 21, "USD", "ops"), "us", NOW)
    assert (await es.append_transfer(Transfer(uid("t2"), alice, bob, 20, "USD", "ops"), "us",
                                     NOW)).confirmed  # fmt: skip
    # A second hold sees what the first reserved; its refusal is its id's outcome.
    refused = await es.place_hold(hold(uid("h2"), alice, bob, 1), NOW)
    assert (refused.status, refused.reason_type) == ("refused", "InsufficientFunds")
    assert await es.place_hold(hold(uid("h2"), alice, bob, 1), NOW) == refused
    assert await es.place_hold(hold(uid("h"), alice, bob, 80), NOW) == placed
    with pytest.raises(DuplicateHoldMismatch):
        await es.place_hold(hold(uid("h"), alice, bob, 81), NOW)
    for source, target, error in ((alice, uid("ghost"), "AccountNotFound"),
                                  (uid("ghost"), bob, "AccountNotFound")):  # fmt: skip
        outcome = await es.place_hold(hold(uid(f"h-{error}-{source}"), source, target, 1), NOW)
        assert (outcome.status, outcome.reason_type) == ("refused", error)
    events = await es.account_events(alice)
    assert [e.type for e in events][-2:] == ["HoldPlaced", "Debited"]
    assert [e.pending_after for e in events][-2:] == [80, 80]
    assert events[-2].metadata["hold_id"] == uid("h") and events[-2].amount == 0
    assert verify_chain(events) == (await es.get_account(alice)).head_hash  # type: ignore[union-attr]


async def test_captures_post_in_parts_up_to_the_hold_and_end_it_once(
    es: EventStore, uid: Ids
) -> None:
    _, alice, bob = await funded(es, uid, 100)
    hid = uid("h")
    await es.place_hold(hold(hid, alice, bob, 60, over_capture=5), NOW)
    first = await es.capture_hold(capture(hid, "c1", 25), NOW)
    assert (first.status, first.consumed, first.from_balance_after, first.to_balance_after) == (
        "captured", 25, 75, 25)  # fmt: skip
    assert await es.capture_hold(capture(hid, "c1", 25), NOW) == first
    with pytest.raises(DuplicateCaptureMismatch):
        await es.capture_hold(capture(hid, "c1", 26), NOW)
    too_much = await es.capture_hold(capture(hid, "c2", 41), NOW)
    assert (too_much.status, too_much.reason_type) == ("refused", "CaptureExceedsHold")
    state = await es.get_hold(hid)
    assert state is not None and (state.status, state.captured, state.remaining) == (
        "open", 25, 35)  # fmt: skip
    last = await es.capture_hold(capture(hid, "c3", 40), NOW)  # 35 held + 5 tolerance
    assert (last.status, last.consumed) == ("captured", 35)
    state = await es.get_hold(hid)
    assert state is not None and (state.status, state.captured, state.remaining) == (
        "captured", 65, 0)  # fmt: skip
    account = await es.get_account(alice)
    assert account is not None and (account.balance, account.pending_out) == (35, 0)
    after = await es.capture_hold(capture(hid, "c4", 1), NOW)
    assert (after.status, after.reason_type) == ("refused", "HoldNotOpen")
    assert await es.release_hold(hid, "expired", "ledgerflow", NOW) is None
    with pytest.raises(HoldNotOpen):
        await es.release_hold(hid, "voided", "ops", NOW)
    events = await es.account_events(alice)
    captured = [e for e in events if e.type == "HoldCaptured"]
    assert [(e.amount, e.pending_after, e.transfer_id) for e in captured] == [
        (-25, 35, f"{hid}/capture/c1"), (-40, 0, f"{hid}/capture/c3")]  # fmt: skip
    assert (await es.get_transfer(f"{hid}/capture/c1")).confirmed  # type: ignore[union-attr]
    assert verify_chain(events) == account.head_hash
    with pytest.raises(HoldNotFound):
        await es.capture_hold(capture(uid("nothing"), "c1", 1), NOW)


async def test_a_void_gives_back_the_rest_and_stands(es: EventStore, uid: Ids) -> None:
    _, alice, bob = await funded(es, uid, 100)
    hid = uid("h")
    await es.place_hold(hold(hid, alice, bob, 50), NOW)
    await es.capture_hold(capture(hid, "c1", 10), NOW)
    voided = await es.release_hold(hid, "voided", "ops", NOW)
    assert voided is not None and (voided.ending, voided.released) == ("voided", 40)
    assert await es.release_hold(hid, "voided", "ops", NOW) == voided
    assert await es.release_hold(hid, "expired", "ledgerflow", NOW) is None
    late = await es.capture_hold(capture(hid, "c2", 1), NOW)
    assert (late.status, late.reason_type) == ("refused", "HoldNotOpen")
    with pytest.raises(HoldNotOpen):
        await es.extend_hold(DeadlineChange(hid, "d1", 60, "ops"), NOW)
    account = await es.get_account(alice)
    assert account is not None and (account.balance, account.pending_out) == (90, 0)
    refused = await es.place_hold(hold(uid("r"), alice, bob, 1000), NOW)
    with pytest.raises(HoldNotOpen):  # a hold refused when placed is never capturable
        await es.release_hold(refused.hold_id, "voided", "ops", NOW)
    never = await es.capture_hold(capture(refused.hold_id, "c1", 1), NOW)
    assert (never.status, never.reason_type) == ("refused", "HoldNotOpen")


async def test_at_the_deadline_the_hold_expires_once_whoever_arrives(
    es: EventStore, uid: Ids
) -> None:
    _, alice, bob = await funded(es, uid, 100)
    hid, other = uid("h"), uid("h2")
    await es.place_hold(hold(hid, alice, bob, 30, expires_in_s=1), NOW)
    await es.place_hold(hold(other, alice, bob, 20, expires_in_s=1), NOW)
    with pytest.raises(NotDue):
        await es.release_hold(hid, "expired", "ledgerflow", NOW)
    moved = await es.extend_hold(DeadlineChange(other, "d1", 3600, "ops"), NOW)
    assert moved.open and await es.extend_hold(DeadlineChange(other, "d1", 3600, "ops"), NOW)
    await asyncio.sleep(1.2)
    # A capture after the deadline finds it expired, and writes the expiry.
    late = await es.capture_hold(capture(hid, "c1", 5), NOW)
    assert (late.status, late.reason_type) == ("refused", "HoldExpired")
    expired = await es.release_hold(hid, "expired", "ledgerflow", NOW)
    assert expired is not None and (expired.ending, expired.released) == ("expired", 30)
    assert await es.release_hold(hid, "expired", "ledgerflow", NOW) == expired
    with pytest.raises(HoldExpired):
        await es.release_hold(hid, "voided", "ops", NOW)
    released = [e for e in await es.account_events(alice) if e.type == "HoldReleased"]
    assert len(released) == 1 and released[0].metadata["ending"] == "expired"
    # The extended one is still open and capturable.
    assert (await es.capture_hold(capture(other, "c1", 20), NOW)).captured
    account = await es.get_account(alice)
    assert account is not None and (account.balance, account.pending_out) == (80, 0)


async def test_an_account_with_an_open_hold_does_not_close(es: EventStore, uid: Ids) -> None:
    _, alice, _ = await funded(es, uid, 10)
    carol = await opened(es, uid("carol"), limit=500)  # empty, with credit
    hid = uid("h")
    assert (await es.place_hold(hold(hid, carol, alice, 5), NOW)).placed
    closing = await es.change_account(change(carol, "close", "c1"), NOW)
    assert (closing.status, closing.reason_type) == ("refused", "AccountHasOpenHolds")
    assert (await es.change_account(change(carol, "freeze", "c2"), NOW)).applied
    held = await es.capture_hold(capture(hid, "k1", 5), NOW)
    assert (held.status, held.reason_type) == ("refused", "AccountFrozen")
    await es.release_hold(hid, "voided", "ops", NOW)
    assert (await es.change_account(change(carol, "close", "c3"), NOW)).applied


async def test_a_hold_toward_another_region_captures_to_clearing_and_returns_once(
    es: EventStore, uid: Ids
) -> None:
    _, alice, _ = await funded(es, uid, 100)
    far, hid = uid("abroad"), uid("h")  # an account of region eu: unknown here
    placed = await es.place_hold(hold(hid, alice, far, 60, to_region="eu"), NOW)
    assert placed.placed and placed.to_region == "eu"
    clearing = clearing_account_id("us", "eu", "USD")
    assert (await es.get_account(clearing)) is not None  # opened for its captures
    # The destination is part of the hold: another, or none, is another hold.
    for other in ("ap", None):
        with pytest.raises(DuplicateHoldMismatch):
            await es.place_hold(hold(hid, alice, far, 60, to_region=other), NOW)
    first = await es.capture_hold(capture(hid, "c1", 25), NOW)
    assert (first.status, first.consumed, first.to_region, first.from_balance_after,
            first.to_balance_after) == ("captured", 25, "eu", 75, None)  # fmt: skip
    assert await es.capture_hold(capture(hid, "c1", 25), NOW) == first
    leg = await es.get_transfer(f"{hid}/capture/c1")
    assert leg is not None and leg.confirmed
    assert (await es.get_account(clearing)).balance == 25  # type: ignore[union-attr]
    back = await es.return_capture(hid, "c1", "AccountClosed", "closed there", NOW)
    assert (back.status, back.reason_type, back.reason, back.from_balance_after) == (
        "reversed", "AccountClosed", "closed there", 100)  # fmt: skip
    # Once: a second return (a re-run of the saga) answers the first.
    assert await es.return_capture(hid, "c1", "AccountClosed", "again", NOW) == back
    assert await es.capture_hold(capture(hid, "c1", 25), NOW) == back
    account = await es.get_account(alice)
    assert account is not None and (account.balance, account.pending_out) == (100, 35)
    assert (await es.get_account(clearing)).balance == 0  # type: ignore[union-attr]
    state = await es.get_hold(hid)
    assert state is not None and (state.status, state.captured, state.reversed,
                                  state.remaining) == ("open", 25, 25, 35)  # fmt: skip
    # Only a posted capture toward another region returns, and nothing is written.
    refused = await es.capture_hold(capture(hid, "c2", 99), NOW)
    for capture_id in ("c2", "nothing"):
        with pytest.raises(InvalidRequest):
            await es.return_capture(hid, capture_id, "AccountClosed", "x", NOW)
    assert refused.status == "refused"
    bob = await opened(es, uid("bob"))
    local = uid("local")
    await es.place_hold(hold(local, alice, bob, 5), NOW)
    await es.capture_hold(capture(local, "c1", 5), NOW)
    with pytest.raises(InvalidRequest):
        await es.return_capture(local, "c1", "AccountClosed", "x", NOW)
    events = await es.account_events(alice)
    assert [(e.type, e.amount, e.pending_after) for e in events][-5:] == [
        ("HoldPlaced", 0, 60), ("HoldCaptured", -25, 35), ("Credited", 25, 35),
        ("HoldPlaced", 0, 40), ("HoldCaptured", -5, 35)]  # fmt: skip
    assert events[-3].transfer_id == f"{hid}/capture/c1/reversal"
    assert verify_chain(events) == (await es.get_account(alice)).head_hash  # type: ignore[union-attr]


# -- multi-leg transactions --------------------------------------------------------


def legs(*specs: tuple[str, str, int, str]) -> list[LegRequest]:
    return [
        LegRequest(account, side, amount, currency) for side, account, amount, currency in specs
    ]


async def test_an_fx_trade_posts_four_legs_at_once_and_answers_so_ever_after(
    es: EventStore, uid: Ids
) -> None:
    _, alice, _ = await funded(es, uid, 10_000)
    usd_desk = await opened(es, uid("usd-desk"), limit=None)
    await es.open_account(OpenAccountRequest(uid("eur-desk"), "EUR", "us", None), NOW)
    await es.open_account(OpenAccountRequest(uid("alice-eur"), "EUR", "us", 0), NOW)
    trade = TransactionRequest(uid("fx"), legs(
        ("debit", alice, 10_000, "USD"), ("credit", usd_desk, 10_000, "USD"),
        ("debit", uid("eur-desk"), 9_200, "EUR"), ("credit", uid("alice-eur"), 9_200, "EUR"),
    ), "fx-desk", "USD 100.00 to EUR 92.00")  # fmt: skip
    result = await es.append_transaction(trade, NOW)
    assert result.confirmed and len(result.event_ids) == 4
    assert result.balances_after == {alice: 0, usd_desk: 10_000, uid("eur-desk"): -9_200,
                                     uid("alice-eur"): 9_200}  # fmt: skip
    assert await es.append_transaction(trade, NOW) == result
    assert await es.get_transaction(trade.transaction_id) == result
    with pytest.raises(DuplicateTransactionMismatch):
        await es.append_transaction(replace(trade, description="other"), NOW)
    [leg] = [e for e in await es.account_events(uid("alice-eur")) if e.type == "Credited"]
    assert (leg.transfer_id, leg.leg, leg.amount) == (f"{trade.transaction_id}/tx", "credit", 9_200)
    for account_id in (alice, usd_desk, uid("eur-desk"), uid("alice-eur")):
        assert verify_chain(await es.account_events(account_id)) == (
            await es.get_account(account_id)).head_hash  # type: ignore[union-attr]  # fmt: skip


async def test_one_refused_leg_rejects_the_whole_transaction_and_writes_nothing(
    es: EventStore, uid: Ids
) -> None:
    bank, alice, bob = await funded(es, uid, 100)
    carol = await opened(es, uid("carol"))
    poor = TransactionRequest(uid("t1"), legs(
        ("debit", alice, 60, "USD"), ("debit", bob, 40, "USD"), ("credit", carol, 100, "USD"),
    ), "ops")  # fmt: skip
    rejected = await es.append_transaction(poor, NOW)
    assert (rejected.status, rejected.reason_type, rejected.event_ids) == (
        "rejected", "InsufficientFunds", [])  # fmt: skip
    assert [(await es.get_account(a)).version for a in (alice, bob, carol)] == [2, 1, 1]  # type: ignore[union-attr]
    await es.append_transfer(Transfer(uid("more"), bank, bob, 40, "USD", "ops"), "us", NOW)
    assert await es.append_transaction(poor, NOW) == rejected  # its outcome stands
    ghost_legs = legs(("debit", alice, 1, "USD"), ("credit", uid("ghost"), 1, "USD"))
    ghost = TransactionRequest(uid("t2"), ghost_legs, "ops")
    assert (await es.append_transaction(ghost, NOW)).reason_type == "AccountNotFound"
    for bad in (
        legs(("debit", alice, 1, "USD"), ("credit", bob, 2, "USD")),  # does not sum to zero
        legs(("debit", alice, 1, "USD")),  # one leg
        legs(("debit", alice, 1, "USD"), ("credit", alice, 1, "USD")),  # one account twice
    ):
        with pytest.raises((InvalidRequest, InvalidAmount)):
            await es.append_transaction(TransactionRequest(uid("bad"), bad, "ops"), NOW)
    assert await es.get_transaction(uid("bad")) is None
