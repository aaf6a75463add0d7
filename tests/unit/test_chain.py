"""The hash chain check behind `verify`: what it accepts, and exactly what it
names when it refuses (the account, the version, the problem, the check),
since a finding is what an auditor acts on."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledgerflow.domain.hashing import (
    GENESIS_HASH,
    AccountChain,
    ChainBroken,
    chain_hash,
    content_of,
    event_content,
    verify_chain,
)
from ledgerflow.domain.model import Event

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def history(amounts: list[int], account_id: str = "acct", head: str = GENESIS_HASH,
            version: int = 0, balance: int = 0) -> list[Event]:  # fmt: skip
    """A well-formed history: each event linked to the one before."""
    events = []
    for i, amount in enumerate(amounts, start=1):
        balance += amount
        draft = Event(
            event_id=f"e{version + i}", type="Credited" if amount >= 0 else "Debited",
            account_id=account_id, version=version + i, amount=amount, currency="USD",
            balance_after=balance, occurred_at=T0,
            recorded_at=T0 + timedelta(seconds=version + i),
            region="us", initiated_by="ops", transfer_id=f"t{i}", leg="credit",
            counterparty="other", description=None, metadata={}, prev_hash=head, hash="",
        )  # fmt: skip
        head = chain_hash(head, content_of(draft))
        events.append(replace(draft, hash=head))
    return events


def broken(events: list[Event], **chain: object) -> ChainBroken:
    start = AccountChain(events[0].account_id, **chain)  # type: ignore[arg-type]
    with pytest.raises(ChainBroken) as caught:
        for event in events:
            start.feed(event)
    return caught.value


def test_a_well_formed_history_verifies_to_its_head() -> None:
    events = history([500, -200, 50])
    assert verify_chain(events) == events[-1].hash
    assert verify_chain([]) == GENESIS_HASH
    chain = AccountChain("acct")
    assert (chain.version, chain.balance, chain.head, chain.recorded_at) == (
        0, 0, GENESIS_HASH, None)  # fmt: skip
    for event in events:
        chain.feed(event)
    assert (chain.account_id, chain.version, chain.balance, chain.head) == (
        "acct", 3, 350, events[-1].hash)  # fmt: skip
    assert chain.recorded_at == events[-1].recorded_at


def test_a_chain_resumes_after_a_checkpoint() -> None:
    first = history([500, -200])
    rest = history([70], head=first[-1].hash, version=2, balance=300)
    chain = AccountChain("acct", 2, 300, first[-1].hash, first[-1].recorded_at)
    chain.feed(rest[0])
    assert (chain.version, chain.balance) == (3, 370)
    with pytest.raises(ChainBroken):
        verify_chain(rest)  # not from version 1


@pytest.mark.parametrize(
    ("tamper", "version", "problem"),
    [
        (lambda e: replace(e, version=5), 5, "expected version 2"),
        (lambda e: replace(e, prev_hash="f" * 64), 2, "prev_hash does not link"),
        (lambda e: replace(e, balance_after=e.balance_after + 1), 2,
         "balance_after is not the running sum 300"),
        (lambda e: replace(e, description="edited"), 2, "hash does not match content"),
        (lambda e: replace(e, amount=-201, balance_after=299), 2, "hash does not match content"),
    ],
)  # fmt: skip
def test_each_break_is_named_with_its_account_version_and_problem(
    tamper: object, version: int, problem: str
) -> None:
    events = history([500, -200, 50])
    events[1] = tamper(events[1])  # type: ignore[operator]
    found = broken(events)
    assert (found.account_id, found.version, found.problem, found.check) == (
        "acct", version, problem, "hash-chain")  # fmt: skip
    assert str(found) == f"account 'acct', version {version}: {problem}"
    with pytest.raises(ChainBroken, match=problem.replace("(", r"\(")) as whole:
        verify_chain(events)
    assert (whole.value.account_id, whole.value.version) == ("acct", version)


def test_an_event_recorded_before_the_one_it_follows_is_a_recorded_at_finding() -> None:
    events = history([500, -200, 50])
    # Re-hash a valid third event recorded before the second.
    early = replace(events[2], recorded_at=events[1].recorded_at - timedelta(microseconds=1))
    early = replace(early, hash=chain_hash(events[1].hash, content_of(early)))
    found = broken([events[0], events[1], early])
    assert (found.account_id, found.version, found.check) == ("acct", 3, "recorded-at")
    assert found.problem == (
        f"recorded at {early.recorded_at.isoformat()}, before the event it follows "
        f"({events[1].recorded_at.isoformat()})"
    )
    # The same instant is allowed (both events of a posting share one).
    same = replace(events[2], recorded_at=events[1].recorded_at)
    same = replace(same, hash=chain_hash(events[1].hash, content_of(same)))
    assert verify_chain([events[0], events[1], same]) == same.hash
    # And a resumed chain remembers its checkpoint's instant.
    resumed = history([1], head=events[0].hash, version=1, balance=500)
    before = replace(resumed[0], recorded_at=T0 - timedelta(days=1))
    before = replace(before, hash=chain_hash(events[0].hash, content_of(before)))
    found = broken([before], version=1, balance=500, head=events[0].hash,
                   recorded_at=events[0].recorded_at)  # fmt: skip
    assert found.check == "recorded-at"


def test_an_instant_is_hashed_as_the_utc_instant_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under another local time zone, so that "local" and "UTC" differ.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        eastern = T0.astimezone(timezone(timedelta(hours=-4)))
        fields = dict(
            event_id="e1", type="Credited", account_id="a", version=1, amount=1,
            currency="USD", balance_after=1, region="us", initiated_by="ops", transfer_id=None,
            leg=None, counterparty=None, description=None, metadata={},
        )  # fmt: skip
        here = event_content(occurred_at=eastern, recorded_at=eastern, **fields)  # type: ignore[arg-type]
        assert here["occurred_at"] == "2026-05-01T09:00:00.000000+00:00"
        assert here == event_content(occurred_at=T0, recorded_at=T0, **fields)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="a naive datetime is not an instant"):
            event_content(occurred_at=T0.replace(tzinfo=None), recorded_at=T0, **fields)  # type: ignore[arg-type]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
