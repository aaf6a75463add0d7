"""Property tests (hypothesis) over random transfer sequences against the
real store, checked against a model that shares no code with it (issue 14).

The model is a dict of balances and a dict of recorded outcomes. It decides
every operation's outcome itself, from the accounts' currencies, overdraft
limits and its own balances, before the store is asked, and applies the
confirmed ones with its own arithmetic. The store must agree exactly:
a wrongful rejection fails as surely as a wrongful confirmation.

Operations run in rounds; a round's operations run concurrently (so they
share group-commit transactions). To keep every outcome independent of the
order in which concurrent operations commit, a round debits each account at
most once and never credits an account it also debits; everything else
(retries, id clashes, duplicates submitted concurrently in the same round)
is allowed. The CI profile (tests/conftest.py) is derandomised and prints
each failing example's reproduction blob.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from ledgerflow.audit.point_in_time import balance_as_of, replay_balance
from ledgerflow.domain.errors import AccountNotFound, LedgerError
from ledgerflow.domain.hashing import verify_chain
from ledgerflow.domain.model import OpenAccountRequest, Transfer, TransferResult
from ledgerflow.store.postgres import PostgresEventStore

Ids = Callable[[str], str]

#: (currency, overdraft limit): a funding account, two without overdraft, a
#: credit line of 2.50, a zero-limit EUR account; index 5 is never opened.
ACCOUNTS = [("USD", None), ("USD", 0), ("USD", 0), ("USD", 250), ("EUR", 0)]
UNKNOWN = len(ACCOUNTS)

operation = st.tuples(
    st.integers(0, UNKNOWN),  # from (UNKNOWN: an account that does not exist)
    st.integers(0, UNKNOWN),  # to
    st.one_of(st.integers(1, 400), st.sampled_from([1, 250, 251, 10_000])),  # minor units
    st.sampled_from(["new", "new", "new", "retry", "clash", "twice", "exact", "over"]),
)


@dataclass
class Model:
    """The ledger as the test believes it is: balances and recorded outcomes."""

    balances: list[int]
    #: transfer id -> (the transfer, the result the store answered with)
    confirmed: dict[str, tuple[Transfer, TransferResult | None]]

    def decide(self, transfer: Transfer, index: dict[str, int]) -> str:
        """The outcome's error type, or "confirmed", from the model alone."""
        if transfer.transfer_id in self.confirmed:
            first, _ = self.confirmed[transfer.transfer_id]
            return "confirmed" if first == transfer else "DuplicateTransferMismatch"
        # The documented precedence: the source account, then the target, each
        # must exist and hold the currency; then the funds.
        for account_id in (transfer.from_account, transfer.to_account):
            if account_id not in index:
                return "AccountNotFound"
            if ACCOUNTS[index[account_id]][0] != transfer.currency:
                return "CurrencyMismatch"
        src = index[transfer.from_account]
        limit = ACCOUNTS[src][1]
        if limit is not None and self.balances[src] - transfer.amount < -limit:
            return "InsufficientFunds"
        return "confirmed"


class RoundRule:
    """Admits a round's transfers only while no outcome can depend on the
    order in which the round's transfers commit: each account is debited at
    most once, and never both debited and credited."""

    def __init__(self) -> None:
        self.debited: set[str] = set()
        self.credited: set[str] = set()

    def admits(self, transfer: Transfer) -> bool:
        src, dst = transfer.from_account, transfer.to_account
        if src == dst or src in self.debited | self.credited or dst in self.debited:
            return False
        self.debited.add(src)
        self.credited.add(dst)
        return True


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(st.lists(operation, min_size=1, max_size=8), min_size=1, max_size=10))
async def test_the_store_agrees_with_an_independent_model(
    store: PostgresEventStore, uid: Ids, rounds: list[list[tuple[int, int, int, str]]]
) -> None:
    tag = uuid.uuid4().hex[:8]  # not `random`: hypothesis seeds it
    ids = [uid(f"h{tag}-{i}") for i in range(UNKNOWN + 1)]
    index = {account_id: i for i, account_id in enumerate(ids[:UNKNOWN])}
    for account_id, (currency, limit) in zip(ids, ACCOUNTS, strict=False):
        await store.open_account(
            OpenAccountRequest(account_id, currency, "us", limit), datetime.now(UTC)
        )
    model = Model([0] * len(ACCOUNTS), {})
    earlier: list[Transfer] = []
    for n, ops in enumerate(rounds):
        batch: list[Transfer] = []
        rule = RoundRule()
        for m, (src, dst, amount, kind) in enumerate(ops):
            currency = ACCOUNTS[src][0] if src < UNKNOWN and m % 3 else "USD"
            if kind in ("exact", "over") and src < UNKNOWN and ACCOUNTS[src][1] is not None:
                # The boundary: exactly what the account may spend, or a unit more.
                available = model.balances[src] + (ACCOUNTS[src][1] or 0)
                amount = max(1, available + (kind == "over"))
            transfer = Transfer(uid(f"t{tag}-{n}-{m}"), ids[src], ids[dst], amount, currency, "p")
            if kind in ("retry", "clash") and earlier:
                old = earlier[(n * 7 + m) % len(earlier)]
                # A retry resends a request; a clash reuses its id for another.
                transfer = old if kind == "retry" else Transfer(
                    old.transfer_id, ids[src], ids[dst], amount, currency, "p"
                )  # fmt: skip
            if any(t.transfer_id == transfer.transfer_id for t in batch):
                continue  # (one id per round, unless submitted "twice" below)
            if not rule.admits(transfer):
                continue
            batch += [transfer, transfer] if kind == "twice" else [transfer]
        expected = [model.decide(t, index) for t in batch]
        already = set(model.confirmed)
        results = await asyncio.gather(
            *(store.append_transfer(t, "us", datetime.now(UTC)) for t in batch),
            return_exceptions=True,
        )
        for transfer, outcome, result in zip(batch, expected, results, strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, LedgerError), result  # typed, never a crash
                assert result.type == outcome, (transfer, result)
                continue
            assert outcome == "confirmed", (transfer, outcome, result)
            first = model.confirmed.get(transfer.transfer_id)
            if first is not None and first[1] is not None:
                assert result == first[1], "a resubmission answers the first outcome"
            model.confirmed[transfer.transfer_id] = (transfer, result)
        # Apply the round with the model's own arithmetic, once per id it
        # confirmed for the first time.
        applied: set[str] = set()
        for transfer, outcome in zip(batch, expected, strict=True):
            first_time = transfer.transfer_id not in already | applied
            if outcome == "confirmed" and first_time:
                model.balances[index[transfer.from_account]] -= transfer.amount
                model.balances[index[transfer.to_account]] += transfer.amount
                applied.add(transfer.transfer_id)
        earlier += [t for t in batch if t not in earlier]

    for i, account_id in enumerate(ids[:UNKNOWN]):
        account = await store.get_account(account_id)
        assert account is not None and account.balance == model.balances[i], account_id
        events = await store.account_events(account_id, limit=10_000)
        assert verify_chain(events) == account.head_hash
        limit = ACCOUNTS[i][1]
        if limit is not None:
            assert min(e.balance_after for e in events) >= -limit
    async with store.engine.connect() as conn:
        legs = (
            await conn.execute(
                text(
                    "SELECT transfer_id, sum(amount) AS total, count(*) AS n FROM events "
                    "WHERE account_id = ANY(:ids) AND transfer_id IS NOT NULL "
                    "GROUP BY transfer_id"
                ),
                {"ids": ids},
            )
        ).all()
    assert {row.transfer_id for row in legs} == set(model.confirmed)
    assert all((row.total, row.n) == (0, 2) for row in legs)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moves=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 500)),
        min_size=1,
        max_size=25,
    ),
    probes=st.lists(st.floats(0, 1), min_size=1, max_size=10),
)
async def test_the_balance_at_any_instant_is_the_models(
    store: PostgresEventStore, uid: Ids, moves: list[tuple[int, int, int]], probes: list[float]
) -> None:
    """Point-in-time truth (invariant 6) against the model's own ledger of
    (instant, amount) per account, not against another query of the store."""
    tag = uuid.uuid4().hex[:8]
    accounts = [uid(f"p{tag}-{i}") for i in range(3)]
    limits = [None, 100, 100]
    opened: dict[str, datetime] = {}
    for account_id, limit in zip(accounts, limits, strict=True):
        result = await store.open_account(
            OpenAccountRequest(account_id, "USD", "us", limit), datetime.now(UTC)
        )
        opened[account_id] = result.account.opened_at
    posted: dict[str, list[tuple[datetime, int]]] = {a: [] for a in accounts}
    balances = [0, 0, 0]
    for n, (src, dst, amount) in enumerate(moves):
        if src == dst:
            continue
        limit = limits[src]
        allowed = limit is None or balances[src] - amount >= -limit
        transfer = Transfer(uid(f"m{tag}-{n}"), accounts[src], accounts[dst], amount, "USD", "p")
        try:
            result = await store.append_transfer(transfer, "us", datetime.now(UTC))
        except LedgerError as exc:
            assert not allowed and exc.type == "InsufficientFunds"
            continue
        assert allowed and result.confirmed_at is not None
        balances[src] -= amount
        balances[dst] += amount
        posted[accounts[src]].append((result.confirmed_at, -amount))
        posted[accounts[dst]].append((result.confirmed_at, amount))
    first, last = min(opened.values()), datetime.now(UTC)
    instants = [first - timedelta(seconds=1), last]
    instants += [first + (last - first) * p for p in probes]
    instants += [t + d for a in accounts for t, _ in posted[a] for d in (timedelta(0),
                 -timedelta(microseconds=1))]  # fmt: skip
    for account_id in accounts:
        for instant in instants:
            expected = sum(amount for at, amount in posted[account_id] if at <= instant)
            if instant < opened[account_id]:
                with pytest.raises(AccountNotFound):
                    await balance_as_of(store.engine, account_id, instant)
                continue
            fast = await balance_as_of(store.engine, account_id, instant)
            slow = await replay_balance(store.engine, account_id, instant)
            assert fast.balance == slow.balance == expected, (account_id, instant)
