"""Point-in-time truth (invariant 6): the indexed answer equals the replay."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerflow.audit.point_in_time import balance_as_of, replay_balance
from ledgerflow.domain.errors import AccountNotFound, InsufficientFunds, InvalidRequest
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.postgres import PostgresEventStore

Ids = Callable[[str], str]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    moves=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 500)),
        min_size=1,
        max_size=25,
    ),
    seed=st.integers(0, 2**16),
)
async def test_balance_as_of_equals_the_replay_for_every_account_and_instant(
    store: PostgresEventStore, uid: Ids, moves: list[tuple[int, int, int]], seed: int
) -> None:
    tag = f"{seed}-{uuid.uuid4().hex[:8]}"  # not `random`: hypothesis seeds it
    accounts = [uid(f"p{tag}-{i}") for i in range(3)]
    for i, account_id in enumerate(accounts):
        limit = None if i == 0 else 100  # one funding account, two with a credit line
        await store.open_account(
            OpenAccountRequest(account_id, "USD", "us", limit), datetime.now(UTC)
        )
    instants = [datetime.now(UTC) - timedelta(seconds=1)]
    for n, (src, dst, amount) in enumerate(moves):
        if src == dst:
            continue
        transfer = Transfer(uid(f"m{tag}-{n}"), accounts[src], accounts[dst], amount, "USD", "p")
        try:
            result = await store.append_transfer(transfer, "us", datetime.now(UTC))
        except InsufficientFunds:
            continue
        assert result.confirmed_at is not None
        instants += [result.confirmed_at, result.confirmed_at - timedelta(microseconds=1)]
    instants.append(datetime.now(UTC))
    for account_id in accounts:
        for instant in instants:
            try:
                fast = await balance_as_of(store.engine, account_id, instant)
            except AccountNotFound:
                with pytest.raises(AccountNotFound):
                    await replay_balance(store.engine, account_id, instant)
                continue
            assert fast == await replay_balance(store.engine, account_id, instant)
        latest = await balance_as_of(store.engine, account_id, instants[-1])
        account = await store.get_account(account_id)
        assert account is not None and (latest.balance, latest.version) == (
            account.balance,
            account.version,
        )


async def test_an_instant_needs_a_time_zone(store: PostgresEventStore) -> None:
    with pytest.raises(InvalidRequest):
        await balance_as_of(store.engine, "any", datetime(2026, 1, 1))
