"""Account lifecycle, the pure parts: which changes an account's status
allows, what a change request must hold, what an applied change writes, and
the chain check's replay of the same rules (what `verify` reports)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledgerflow.domain.errors import (
    AccountNotEmpty,
    AccountStateConflict,
    AccountUnknown,
    DuplicateChangeMismatch,
    InvalidRequest,
    LedgerError,
)
from ledgerflow.domain.hashing import (
    GENESIS_HASH,
    AccountChain,
    ChainBroken,
    chain_hash,
    content_of,
    event_content,
    verify_chain,
)
from ledgerflow.domain.model import (
    Account,
    AccountAction,
    AccountChangeRequest,
    AccountChangeResult,
    Event,
    account_change_workflow_id,
)
from ledgerflow.domain.policy import check_change
from ledgerflow.store.batch import event_id_for
from ledgerflow.store.lifecycle import apply_change, refused, same_change
from ledgerflow.workflow_names import account_workflow_id

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def account(status: str = "open", balance: int = 0) -> Account:
    return Account("acct", "USD", "us", 0, status, 3, balance, T0, "ab" * 32, {}, T0)


def change(action: str = "freeze", **kw: Any) -> AccountChangeRequest:
    fields: dict[str, Any] = dict(
        change_id="c1", account_id="acct", action=action, initiated_by="ops", reason="kyc"
    )
    fields.update(kw)
    return AccountChangeRequest(**fields)


@pytest.mark.parametrize(
    ("status", "action", "after"),
    [("open", "freeze", "frozen"), ("frozen", "unfreeze", "open"), ("open", "close", "closed"),
     ("frozen", "close", "closed")],
)  # fmt: skip
def test_the_allowed_changes_and_what_they_leave(status: str, action: str, after: str) -> None:
    check_change(change(action), account(status))
    applied = apply_change(change(action), account(status), T0, T0, "us")
    assert (applied.head.status, applied.result.account_status) == (after, after)
    assert applied.result.applied and applied.result.status == "applied"
    assert AccountAction(action).status_after == after


@pytest.mark.parametrize(
    ("status", "action"),
    [("open", "unfreeze"), ("frozen", "freeze"), ("closed", "freeze"), ("closed", "unfreeze"),
     ("closed", "close")],
)  # fmt: skip
def test_a_change_the_status_does_not_allow_is_a_state_conflict(status: str, action: str) -> None:
    with pytest.raises(AccountStateConflict) as caught:
        check_change(change(action), account(status))
    assert caught.value.message == f"account 'acct' is {status}: it cannot {action}"
    assert caught.value.details == {"account_id": "acct", "status": status}


def test_only_an_empty_account_closes_and_an_unknown_one_changes_nothing() -> None:
    with pytest.raises(AccountNotEmpty) as caught:
        check_change(change("close"), account(balance=-1))
    assert caught.value.message == (
        "account 'acct' has a balance of -0.01 USD; only an empty account closes"
    )
    check_change(change("freeze"), account(balance=5))  # a freeze keeps the money in
    with pytest.raises(AccountUnknown) as unknown:
        check_change(change("freeze"), None)
    assert unknown.value.details == {"account_id": "acct"}


def test_an_applied_change_is_the_next_event_of_the_chain() -> None:
    before = account("open", balance=0)
    later = T0 + timedelta(seconds=5)
    applied = apply_change(change("freeze"), before, later, T0, "us")
    event = applied.event
    assert (event.type, event.version, event.amount, event.balance_after) == (
        "AccountFrozen", 4, 0, 0)  # fmt: skip
    assert event.prev_hash == before.head_hash
    assert event.hash == chain_hash(before.head_hash, content_of(event))
    assert (event.initiated_by, event.description, event.metadata) == (
        "ops", "kyc", {"change_id": "c1"})  # fmt: skip
    assert (event.transfer_id, event.leg, event.counterparty) == (None, None, None)
    assert applied.head.head_hash == event.hash and applied.head.version == 4
    assert applied.result.event_id == event.event_id and applied.result.recorded_at == later
    # Never before the account's head, whatever the clock says.
    ahead = replace(before, head_recorded_at=later)
    assert apply_change(change("freeze"), ahead, T0, T0, "us").event.recorded_at == later
    # The event id is the change's: a retry computes the same one.
    again = apply_change(change("freeze"), before, later, T0, "us")
    assert again.event.event_id == event.event_id
    other = apply_change(change("freeze", change_id="c2"), before, later, T0, "us")
    assert other.event.event_id != event.event_id


def test_a_change_id_answers_its_first_outcome_for_the_same_request_only() -> None:
    first = refused(change("close"), account(balance=3), AccountNotEmpty("not empty"), T0)
    assert (first.status, first.reason_type, first.account_status) == (
        "refused", "AccountNotEmpty", "open")  # fmt: skip
    assert same_change(first, change("close")) is first
    for other in (change("freeze"), change("close", reason="other"),
                  change("close", initiated_by="eve")):  # fmt: skip
        with pytest.raises(DuplicateChangeMismatch) as caught:
            same_change(first, other)
        assert caught.value.details == {"account_id": "acct", "change_id": "c1"}
    assert refused(change("freeze"), None, AccountUnknown("x"), T0).account_status == "unknown"


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"change_id": ""}, "fields"), ({"reason": ""}, "fields"), ({"action": "delete"}, "field"),
     ({"account_id": "clearing:us:eu:USD"}, "field"), ({"change_id": "a/b"}, "field"),
     ({"reason": "x" * 501}, "field"), ({"reason": "bad\x00"}, "field"),
     ({"initiated_by": "no spaces"}, "field")],
)  # fmt: skip
def test_a_malformed_change_request_is_refused_before_anything(
    changes: dict[str, Any], field: str
) -> None:
    fields: dict[str, Any] = {"action": "freeze", **changes}
    with pytest.raises(InvalidRequest) as caught:
        change(**fields).validated()
    named = next(iter(changes))
    assert caught.value.details == ({"fields": [named]} if field == "fields" else {"field": named})


def test_a_change_workflow_id_never_meets_an_accounts_opening() -> None:
    # Account ids may hold '-', never '/': "change-x-c1" opens as
    # account-change-x-c1, which no change's id can be.
    assert account_change_workflow_id("x", "c1") == "account-change/x/c1"
    assert account_workflow_id("change-x-c1") != account_change_workflow_id("x", "c1")


# -- the chain check replays the rules --------------------------------------------


def chained(*steps: tuple[str, int] | tuple[str, int, str]) -> list[Event]:
    """A history of (type, amount[, transfer_id]) steps after AccountOpened."""
    head, balance, events = GENESIS_HASH, 0, []
    for version, step in enumerate((("AccountOpened", 0), *steps), start=1):
        kind, amount = step[0], step[1]
        balance += amount
        draft = Event(
            event_id=f"e{version}", type=kind, account_id="acct", version=version,
            amount=amount, currency="USD", balance_after=balance, occurred_at=T0,
            recorded_at=T0 + timedelta(seconds=version), region="us", initiated_by="ops",
            transfer_id=step[2] if len(step) > 2 else None, leg=None, counterparty=None,  # type: ignore[misc]
            description=None, metadata={}, prev_hash=head, hash="",
        )  # fmt: skip
        head = chain_hash(head, content_of(draft))
        events.append(replace(draft, hash=head))
    return events


def chain_problem(events: list[Event]) -> tuple[int, str]:
    chain = AccountChain("acct")
    with pytest.raises(ChainBroken) as caught:
        for event in events:
            chain.feed(event)
    assert (caught.value.check, caught.value.account_id) == ("status", "acct")
    return caught.value.version, caught.value.problem


def test_a_lawful_lifecycle_verifies_and_ends_in_its_status() -> None:
    events = chained(("Credited", 5), ("AccountFrozen", 0), ("Credited", 2),
                     ("AccountUnfrozen", 0), ("Debited", -7), ("AccountFrozen", 0),
                     ("AccountClosed", 0), ("Credited", 4, "t9/reversal"))  # fmt: skip
    assert verify_chain(events) == events[-1].hash
    chain = AccountChain("acct")
    for event in events[:-1]:
        chain.feed(event)
    assert chain.status == "closed"


@pytest.mark.parametrize(
    ("steps", "version", "problem"),
    [((("Credited", 5), ("AccountFrozen", 0), ("Debited", -1)), 4, "debited while frozen"),
     ((("AccountClosed", 0), ("Debited", -1)), 3, "debited while closed"),
     ((("AccountClosed", 0), ("Credited", 1, "t1")), 3, "credited while closed"),
     ((("AccountUnfrozen", 0),), 2, "AccountUnfrozen while open"),
     ((("AccountFrozen", 0), ("AccountFrozen", 0)), 3, "AccountFrozen while frozen"),
     ((("AccountClosed", 0), ("AccountUnfrozen", 0)), 3, "AccountUnfrozen while closed"),
     ((("Credited", 5), ("AccountClosed", 0)), 3, "closed with a balance of 5")],
)  # fmt: skip
def test_the_chain_check_names_each_unlawful_step(
    steps: tuple[Any, ...], version: int, problem: str
) -> None:
    assert chain_problem(chained(*steps)) == (version, problem)


def test_after_a_checkpoint_the_status_is_unknown_until_a_status_event() -> None:
    events = chained(("Credited", 5), ("AccountFrozen", 0), ("Debited", -1))
    resumed = AccountChain("acct", 2, 5, events[1].hash, events[1].recorded_at)
    assert resumed.status is None
    resumed.feed(events[2])
    assert resumed.status == "frozen"
    with pytest.raises(ChainBroken):
        resumed.feed(events[3])


def test_every_lifecycle_error_is_typed_and_refuses_or_rejects() -> None:
    from ledgerflow.domain.errors import (
        ERROR_TYPES,
        REFUSAL_TYPES,
        REJECTION_TYPES,
        error_from_type,
    )

    assert {"AccountStateConflict", "AccountNotEmpty", "AccountUnknown"} <= REFUSAL_TYPES
    assert "AccountFrozen" in REJECTION_TYPES and not REFUSAL_TYPES & REJECTION_TYPES
    for name in ("AccountFrozen", "DuplicateChangeMismatch", *REFUSAL_TYPES):
        rebuilt = error_from_type(name, "m")
        assert type(rebuilt) is ERROR_TYPES[name] and isinstance(rebuilt, LedgerError)


def test_an_applied_change_writes_exactly_this_event_head_and_outcome() -> None:
    """Whole-value equality: every field of what a change writes is pinned
    (mutation testing found single fields unchecked)."""
    before = Account("acct", "EUR", "eu", 500, "open", 7, 40, T0, "cd" * 32, {"k": "v"}, T0)
    now, occurred = T0 + timedelta(minutes=1), T0 - timedelta(minutes=1)
    applied = apply_change(change("freeze", change_id="c9", reason="why"), before, now,
                           occurred, "eu")  # fmt: skip
    fields: dict[str, Any] = dict(
        event_id=applied.event.event_id, type="AccountFrozen", account_id="acct", version=8,
        amount=0, currency="EUR", balance_after=40, occurred_at=occurred, recorded_at=now,
        region="eu", initiated_by="ops", transfer_id=None, leg=None, counterparty=None,
        description="why", metadata={"change_id": "c9"},
    )  # fmt: skip
    digest = chain_hash("cd" * 32, event_content(**fields))
    assert applied.event == Event(**fields, prev_hash="cd" * 32, hash=digest)
    assert applied.event.event_id == event_id_for("account/acct/change/c9")
    assert applied.head == Account("acct", "EUR", "eu", 500, "frozen", 8, 40, T0, digest,
                                   {"k": "v"}, now)  # fmt: skip
    request = change("freeze", change_id="c9", reason="why")
    assert applied.result == AccountChangeResult(
        change_id="c9", account_id="acct", action="freeze", status="applied",
        fingerprint=request.fingerprint(), account_status="frozen",
        event_id=applied.event.event_id, reason_type=None, reason=None, recorded_at=now,
    )  # fmt: skip


def test_a_refusal_records_exactly_why_and_the_status_it_left() -> None:
    request = change("close", change_id="c5")
    result = refused(request, account("frozen", 9), AccountNotEmpty("it holds money"), T0)
    assert result == AccountChangeResult(
        change_id="c5", account_id="acct", action="close", status="refused",
        fingerprint=request.fingerprint(), account_status="frozen", event_id=None,
        reason_type="AccountNotEmpty", reason="it holds money", recorded_at=T0,
    )  # fmt: skip
    with pytest.raises(DuplicateChangeMismatch) as caught:
        same_change(result, change("freeze", change_id="c5"))
    assert caught.value.message == (
        "change id 'c5' of account 'acct' was already used for a different change"
    )


def test_a_well_formed_change_request_validates_to_itself_and_the_refusals_say_why() -> None:
    request = change("close", reason="x" * 500)
    assert request.validated() is request
    for changes, message in [
        ({"change_id": "", "reason": ""}, "missing field(s): change_id, reason"),
        ({"action": "delete"}, "action must be one of freeze, unfreeze, close, got 'delete'"),
        ({"reason": "x" * 501}, "reason must be text of at most 500 characters"),
        ({"reason": 7}, "reason must be text of at most 500 characters"),
    ]:
        fields: dict[str, Any] = {"action": "freeze", **changes}
        with pytest.raises(InvalidRequest) as caught:
            change(**fields).validated()
        assert caught.value.message == message


def test_the_refusals_name_the_account() -> None:
    with pytest.raises(AccountUnknown) as unknown:
        check_change(change("freeze", account_id="nobody"), None)
    assert unknown.value.message == "account 'nobody' does not exist"
    with pytest.raises(AccountNotEmpty) as full:
        check_change(change("close"), account(balance=1))
    assert full.value.details == {"account_id": "acct"}
