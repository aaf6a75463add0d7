"""Concurrency through the whole system (SDK → Temporal → workers → store):
a drained account never goes below zero and ends exact; transfers in a
cycle never deadlock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import InsufficientFunds
from ledgerflow.domain.hashing import verify_chain
from ledgerflow.store.postgres import PostgresEventStore

Ids = Callable[[str], str]


async def test_500_concurrent_transfers_drain_one_account_to_exactly_zero(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    bank, source, sink = uid("bank"), uid("drained"), uid("sink")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(source, "USD")  # no overdraft
    await ledger.open_account(sink, "USD")
    await ledger.transfer(uid("fund"), bank, source, "300.00", "USD", initiated_by="t")

    async def attempt(i: int) -> bool:
        try:
            await ledger.transfer(
                uid(f"d{i}"), source, sink, "1.00", "USD", initiated_by="t", confirm_within=180
            )
        except InsufficientFunds:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(i) for i in range(500)))
    assert sum(outcomes) == 300 and outcomes.count(False) == 200
    store = PostgresEventStore(engines["us"], "us")
    drained, filled = await store.get_account(source), await store.get_account(sink)
    assert drained is not None and filled is not None
    assert (drained.balance, filled.balance) == (0, 30_000)
    events = await store.account_events(source, limit=1000)
    assert min(e.balance_after for e in events) == 0  # never below zero, not even briefly
    verify_chain(events)
    async with engines["us"].connect() as conn:
        recorded = dict(
            (
                await conn.execute(
                    text(
                        "SELECT status, count(*) FROM transfers "
                        "WHERE from_account = :a AND to_account = :b GROUP BY status"
                    ),
                    {"a": source, "b": sink},
                )
            ).all()
        )
    assert recorded == {"confirmed": 300, "rejected": 200}  # each outcome recorded once


async def test_accounts_paying_each_other_in_a_cycle_never_deadlock(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    ring = [uid(f"ring{i}") for i in range(4)]
    for account in ring:
        await ledger.open_account(account, "USD", overdraft_limit=None)
    transfers = [
        (uid(f"c{n}-{i}-{d}"), ring[i], ring[(i + d) % 4], f"{i + 1}.00")
        for n in range(10)
        for i in range(4)
        for d in (1, 3)  # both directions around the ring at once
    ]
    async with asyncio.timeout(120):
        results = await asyncio.gather(
            *(
                ledger.transfer(t, a, b, amount, "USD", initiated_by="t")
                for t, a, b, amount in transfers
            )
        )
    assert {r.status for r in results} == {"confirmed"}
    balances = [await PostgresEventStore(engines["us"], "us").get_account(r) for r in ring]
    assert sum(a.balance for a in balances if a) == 0
    # Each account sent (i+1) ten times each way and received its neighbours' amounts.
    for i, account in enumerate(balances):
        assert account is not None
        received = 10 * ((i + 3) % 4 + 1) * 100 + 10 * ((i + 1) % 4 + 1) * 100
        assert account.balance == received - 2 * 10 * (i + 1) * 100
    store = PostgresEventStore(engines["us"], "us")
    for account_id in ring:
        verify_chain(await store.account_events(account_id, limit=1000))
