"""Multi-leg transactions, the pure parts: what a request must hold, the
rules on the whole transaction, and the events its legs become."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledgerflow.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    CurrencyMismatch,
    DuplicateTransactionMismatch,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
)
from ledgerflow.domain.hashing import AccountChain, chain_hash, content_of, event_content
from ledgerflow.domain.model import Account
from ledgerflow.domain.money import MAX_MINOR_UNITS
from ledgerflow.domain.policy import check_transaction
from ledgerflow.domain.transactions import (
    Leg,
    LegRequest,
    TransactionRequest,
    transaction_of,
    transaction_posting_id,
    transaction_workflow_id,
)
from ledgerflow.store.batch import PostingBatch, event_id_for
from ledgerflow.store.transactions import legs_record, post_or_reject, same_transaction

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def account(account_id: str, balance: int = 0, **kw: Any) -> Account:
    fields: dict[str, Any] = dict(
        account_id=account_id, currency="USD", region="us", overdraft_limit=0, status="open",
        version=1, balance=balance, opened_at=T0, head_hash="cd" * 32, metadata={},
        head_recorded_at=T0,
    )  # fmt: skip
    fields.update(kw)
    return Account(**fields)


def fx(**kw: Any) -> TransactionRequest:
    legs = [
        LegRequest("alice", "debit", "100.00", "USD"),
        LegRequest("desk", "credit", 10000, "USD"),
        LegRequest("eurdesk", "debit", "92.00", "EUR"),
        LegRequest("alice-eur", "credit", 9200, "EUR"),
    ]
    fields: dict[str, Any] = dict(transaction_id="x1", legs=legs, initiated_by="fx")
    fields.update(kw)
    return TransactionRequest(**fields)


def debit(account_id: str, amount: int) -> LegRequest:
    return LegRequest(account_id, "debit", amount, "USD")


def credit(account_id: str, amount: int) -> LegRequest:
    return LegRequest(account_id, "credit", amount, "USD")


def books() -> dict[str, Account]:
    return {
        "alice": account("alice", 10000), "desk": account("desk", overdraft_limit=None),
        "eurdesk": account("eurdesk", currency="EUR", overdraft_limit=None),
        "alice-eur": account("alice-eur", currency="EUR"),
    }  # fmt: skip


def test_a_transaction_request_is_checked_whole_before_anything() -> None:
    tx = fx().validated()
    assert [leg.signed for leg in tx.legs] == [-10000, 10000, -9200, 9200]
    assert (tx.posting_id, tx.workflow_id) == ("x1/tx", "transaction-x1")
    assert (
        tx.fingerprint()
        == fx().validated().fingerprint()
        != fx(description="d").validated().fingerprint()
    )
    for changes, error, message in [
        ({"legs": fx().legs[:1]}, InvalidRequest, "a transaction has 2 to 64 legs"),
        ({"legs": fx().legs * 17}, InvalidRequest, "a transaction has 2 to 64 legs"),
        ({"legs": [debit("alice", 1), credit("desk", 2)]},
         InvalidAmount, "each currency's legs must sum to zero; USD sums to 1"),
        ({"legs": [debit("alice", 1), credit("alice", 1)]},
         InvalidRequest, "each account appears in one leg at most"),
        ({"legs": [LegRequest("alice", "take", 1, "USD"), credit("desk", 1)]},
         InvalidRequest, "leg 0: side must be debit or credit, got 'take'"),
        ({"legs": ["debit:alice:1:USD", "credit:desk:1:USD"]}, InvalidRequest,
         "leg 0 is not a leg"),
        ({"description": "x" * 501}, InvalidRequest,
         "description must be text of at most 500 characters"),
    ]:  # fmt: skip
        with pytest.raises(error) as caught:
            fx(**changes).validated()
        assert caught.value.message == message
    assert LegRequest.parse("debit:alice:12.50:USD") == LegRequest("alice", "debit", "12.50", "USD")
    with pytest.raises(InvalidRequest):
        LegRequest.parse("debit:alice:12.50")
    assert transaction_of(transaction_posting_id("x1")) == "x1" and transaction_of("t1") is None
    assert transaction_workflow_id("x1") == "transaction-x1"
    assert Leg("a", "credit", 5, "USD").signed == 5


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [({"alice": None}, AccountNotFound, "alice"),
     ({"alice-eur": account("alice-eur", currency="EUR", status="closed")}, AccountClosed,
      "alice-eur"),
     ({"alice": account("alice", 10000, status="frozen")}, AccountFrozen, "alice"),
     ({"desk": account("desk", currency="EUR")}, CurrencyMismatch, "desk"),
     ({"alice": account("alice", 9999)}, InsufficientFunds, "alice")],
)  # fmt: skip
def test_the_rules_apply_to_every_leg(
    change: dict[str, Account | None], error: type[Exception], named: str
) -> None:
    accounts = books() | change
    present = {k: v for k, v in accounts.items() if v is not None}
    with pytest.raises(error) as caught:
        check_transaction(fx().validated(), present)
    assert caught.value.details == {"account_id": named}  # type: ignore[attr-defined]


def test_the_account_rules_come_before_funds_and_a_frozen_account_takes_a_credit() -> None:
    accounts = books() | {"alice": account("alice", 0), "desk": account("desk", currency="EUR")}
    with pytest.raises(CurrencyMismatch):  # the second leg's account, before the first's funds
        check_transaction(fx().validated(), accounts)
    check_transaction(
        fx().validated(),
        books() | {"alice-eur": account("alice-eur", currency="EUR", status="frozen")},
    )
    big = books() | {"alice-eur": account("alice-eur", MAX_MINOR_UNITS, currency="EUR")}
    with pytest.raises(InvalidAmount):
        check_transaction(fx().validated(), big)


def test_the_legs_become_one_linked_event_each_all_or_none() -> None:
    accounts = books()
    later = T0 + timedelta(seconds=3)
    batch, result = post_or_reject(fx().validated(), accounts, later, T0, "us")
    assert batch is not None and result.confirmed and result.confirmed_at == later
    assert result.balances_after == {"alice": 0, "desk": 10000, "eurdesk": -9200, "alice-eur": 9200}
    assert result.event_ids == [event_id_for(f"transaction/x1/{a}") for a in accounts]
    events = batch.events
    assert events["type"] == ["Debited", "Credited", "Debited", "Credited"]
    assert events["leg"] == ["debit", "credit", "debit", "credit"]
    assert set(events["transfer_id"]) == {"x1/tx"} and batch.transfers["transfer_id"] == []
    assert events["amount"] == [-10000, 10000, -9200, 9200]
    for account_id in accounts:
        assert (
            accounts[account_id].version == 2 and batch.touched[account_id] is accounts[account_id]
        )
    # Each event links to its account's head and hashes its own content.
    from ledgerflow.domain.model import Event

    first = Event(**{k: v[0] for k, v in events.items() if k != "metadata"}, metadata={},
                  region="us")  # fmt: skip
    assert first.hash == chain_hash("cd" * 32, content_of(first))
    AccountChain("alice", 1, 10000, "cd" * 32, T0).feed(first)
    record = legs_record(fx().validated(), result)
    assert '"balance_after": 0' in record and '"side": "debit"' in record
    # One refused leg: nothing at all is built, the accounts stay as they were.
    poor = books() | {"alice": account("alice", 1)}
    before = dict(poor)
    none, rejected = post_or_reject(fx().validated(), poor, T0, T0, "us")
    assert none is None and poor == before
    assert (rejected.status, rejected.reason_type, rejected.event_ids) == (
        "rejected", "InsufficientFunds", [])  # fmt: skip
    assert same_transaction(rejected, fx().validated()) is rejected
    with pytest.raises(DuplicateTransactionMismatch):
        same_transaction(rejected, fx(initiated_by="other").validated())
    assert PostingBatch(T0, "us").events["event_id"] == []


def test_each_leg_writes_exactly_this_row_and_head() -> None:
    accounts = books() | {"alice": account("alice", 10005, metadata={"tier": "gold"},
                                           pending_out=5, head_recorded_at=None)}  # fmt: skip
    before = accounts["alice"]
    later = T0 + timedelta(seconds=3)
    tx = fx(description="fx", metadata={"rate": "0.92"}).validated()
    batch, result = post_or_reject(tx, accounts, later, T0 - timedelta(seconds=1), "us")
    assert batch is not None and result.fingerprint == tx.fingerprint()
    row = {name: values[0] for name, values in batch.events.items()}
    expected: dict[str, Any] = dict(
        event_id=event_id_for("transaction/x1/alice"), type="Debited", account_id="alice",
        version=2, amount=-10000, currency="USD", balance_after=5,
        occurred_at=T0 - timedelta(seconds=1), recorded_at=later, initiated_by="fx",
        transfer_id="x1/tx", leg="debit", counterparty=None, description="fx",
        metadata='{"rate":"0.92"}', prev_hash="cd" * 32, pending_after=5,
    )  # fmt: skip
    assert {k: v for k, v in row.items() if k != "hash"} == expected
    content = {k: v for k, v in expected.items() if k not in ("prev_hash", "metadata")}
    assert row["hash"] == chain_hash("cd" * 32, event_content(
        **content, region="us", metadata={"rate": "0.92"}))  # fmt: skip
    assert accounts["alice"] == Account(
        "alice", "USD", "us", 0, "open", 2, 5, T0, row["hash"], {"tier": "gold"}, later, 5
    )
    assert before.version == 1
    assert result.confirmed_at == later and result.region == "us"
