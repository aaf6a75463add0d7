"""The transfer policy (pure) and the hash chain, without a database."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.domain.errors import (
    AccountClosed,
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
)
from ledgerflow.domain.hashing import GENESIS_HASH, chain_hash, event_content
from ledgerflow.domain.model import Account, Transfer
from ledgerflow.domain.money import MAX_MINOR_UNITS
from ledgerflow.domain.policy import check_policy

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def account(account_id: str, balance: int = 0, limit: int | None = 0, **kw: object) -> Account:
    fields = dict(
        account_id=account_id, currency="USD", region="us", overdraft_limit=limit,
        status="open", version=1, balance=balance, opened_at=NOW, head_hash=GENESIS_HASH,
    )  # fmt: skip
    fields.update(kw)
    return Account(**fields)  # type: ignore[arg-type]


def transfer(amount: int) -> Transfer:
    return Transfer("t-1", "a", "b", amount, "USD", "alice")


def test_funds_within_balance_or_limit_pass() -> None:
    check_policy(transfer(100), account("a", 100), account("b"))
    check_policy(transfer(150), account("a", 100, limit=50), account("b"))
    check_policy(transfer(10**12), account("a", 0, limit=None), account("b"))


@pytest.mark.parametrize(
    ("source", "target", "error"),
    [
        (None, account("b"), AccountNotFound),
        (account("a", 500), None, AccountNotFound),
        (account("a", 500, status="closed"), account("b"), AccountClosed),
        (account("a", 500), account("b", status="closed"), AccountClosed),
        (account("a", 500, currency="EUR"), account("b"), CurrencyMismatch),
        (account("a", 500), account("b", currency="EUR"), CurrencyMismatch),
        (account("a", 99), account("b"), InsufficientFunds),
        (account("a", 0, limit=99), account("b"), InsufficientFunds),
        (account("a", 500), account("b", MAX_MINOR_UNITS - 50), InvalidAmount),
    ],
)
def test_policy_violations_raise_typed_errors(
    source: Account | None, target: Account | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check_policy(transfer(100), source, target)


@given(
    balance=st.integers(min_value=-(10**6), max_value=10**6),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
    amount=st.integers(min_value=1, max_value=10**6),
)
def test_a_transfer_passes_exactly_when_the_overdraft_policy_allows(
    balance: int, limit: int | None, amount: int
) -> None:
    allowed = limit is None or balance - amount >= -limit
    try:
        check_policy(transfer(amount), account("a", balance, limit), account("b"))
    except InsufficientFunds:
        assert not allowed
    else:
        assert allowed


def _content(**change: object) -> dict[str, object]:
    fields: dict[str, object] = dict(
        event_id="e", type="Credited", account_id="a", version=2, amount=5, currency="USD",
        balance_after=5, occurred_at=NOW, recorded_at=NOW, region="us", initiated_by="x",
        transfer_id="t", leg="credit", counterparty="b", description=None, metadata={},
    )  # fmt: skip
    fields.update(change)
    return event_content(**fields)  # type: ignore[arg-type]


def test_the_hash_covers_every_field_and_the_previous_hash() -> None:
    base = chain_hash(GENESIS_HASH, _content())
    assert chain_hash(GENESIS_HASH, _content()) == base
    assert chain_hash("1" * 64, _content()) != base
    changes = {
        "amount": 6,
        "balance_after": 6,
        "version": 3,
        "metadata": {"a": 1},
        "recorded_at": NOW.replace(microsecond=1),
        "counterparty": "c",
    }
    for field, value in changes.items():
        assert chain_hash(GENESIS_HASH, _content(**{field: value})) != base, field


def test_account_records_are_immutable() -> None:
    with pytest.raises(AttributeError):
        account("a").balance = 5  # type: ignore[misc]
    assert replace(account("a"), balance=5).balance == 5
