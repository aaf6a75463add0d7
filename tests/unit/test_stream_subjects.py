"""The event stream's names, subjects and message form (pure)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, content_of, event_record
from ledgerflow.domain.model import Event
from ledgerflow.store.base import TailCursor
from ledgerflow.stream.subjects import (
    EXPECTED_LAST_ID,
    EXPECTED_LAST_SEQ,
    MSG_ID,
    POSITION,
    TX_ID,
    cursor_of,
    decode,
    encode,
    filter_subject,
    hash_matches,
    region_stream,
    region_subjects,
    subject_of,
    token,
    untoken,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def event(**kw: object) -> Event:
    fields: dict[str, object] = dict(
        event_id="e1", type="Debited", account_id="bank.us:1", version=2, amount=-5,
        currency="USD", balance_after=95, occurred_at=T0, recorded_at=T0, region="us",
        initiated_by="ops", transfer_id="t1", leg="debit", counterparty="bob",
        description=None, metadata={"k": "v"}, prev_hash=GENESIS_HASH, hash="", position=7,
        tx_id=42, pending_after=3,
    )  # fmt: skip
    fields.update(kw)
    e = Event(**fields)  # type: ignore[arg-type]
    return replace(e, hash=chain_hash(e.prev_hash, content_of(e)))


def test_names_and_subjects() -> None:
    assert (region_stream("eu"), region_subjects("eu")) == ("LEDGER_EU", "ledger.eu.>")
    assert region_subjects("eu", "bench1") == "bench1.eu.>"
    assert subject_of(event()) == "ledger.us.bank%2Eus:1.Debited"
    assert subject_of(event(), "bench1") == "bench1.us.bank%2Eus:1.Debited"
    for raw in ("a.b", "a%b", "a%2Eb", "plain", "x.%.y"):
        assert untoken(token(raw)) == raw and "." not in token(raw)
    assert filter_subject() == "ledger.>"
    assert filter_subject(region="eu") == "ledger.eu.*.*"
    assert filter_subject(account="a.b") == "ledger.*.a%2Eb.*"
    assert filter_subject(event_type="HoldPlaced") == "ledger.*.*.HoldPlaced"
    assert filter_subject("us", "a", "Credited") == "ledger.us.a.Credited"
    for bad in ("", "a b", "a*", "a>", "a\tb"):
        with pytest.raises(InvalidRequest) as caught:
            filter_subject(account=bad)
        assert caught.value.details == {"field": "account"}
        assert caught.value.message == f"account {bad!r} cannot be filtered on"


def test_a_message_carries_the_event_its_place_and_its_guard() -> None:
    e = event()
    first = encode(e, None)
    assert first.subject == subject_of(e)
    assert first.headers == {MSG_ID: "e1", TX_ID: "42", POSITION: "7", EXPECTED_LAST_SEQ: "0"}
    then = encode(e, "e0", "bench1")
    assert then.headers == {MSG_ID: "e1", TX_ID: "42", POSITION: "7", EXPECTED_LAST_ID: "e0"}
    assert then.subject.startswith("bench1.")
    assert json.loads(first.body) == json.loads(json.dumps(event_record(e), default=str))
    assert decode(first.body) == e
    assert cursor_of(first.headers) == TailCursor(42, 7)
    for headers in (None, {}, {TX_ID: "1"}, {POSITION: "1"}):
        assert cursor_of(headers) is None
    assert hash_matches(e)
    assert not hash_matches(replace(e, amount=-6))
    assert not hash_matches(replace(e, prev_hash="ab" * 32))
