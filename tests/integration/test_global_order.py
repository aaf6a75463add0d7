"""Tailing the global order never skips an event that commits late.

Positions come from a sequence at insert time, so they commit out of order: a
transaction that took position 10 may commit after one that took 11. A reader
that resumes "after position 11" would never see 10. The store's tail orders
by (tx_id, position) and reads only below the oldest running transaction
(docs/ARCHITECTURE.md, "Global order"); these tests hold transactions open on
purpose to prove it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.base import TailCursor
from ledgerflow.store.postgres import PostgresEventStore

NOW = datetime.now(UTC)


async def max_cursor(engine: AsyncEngine) -> TailCursor:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1"
                )
            )
        ).one()
    return TailCursor(row.tx_id, row.position)


async def open_pair(
    store: PostgresEventStore, uid: Callable[[str], str], tag: str
) -> tuple[str, str]:
    a, b = uid(f"{tag}-a"), uid(f"{tag}-b")
    for account_id in (a, b):
        await store.open_account(OpenAccountRequest(account_id, "USD", "us", None), NOW)
    return a, b


async def test_a_transaction_that_commits_late_is_not_skipped(
    engines: dict[str, AsyncEngine], uid: Callable[[str], str]
) -> None:
    engine = engines["us"]
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_open(transfer: Transfer) -> None:
        if transfer.transfer_id.startswith("slow"):
            held.set()
            await release.wait()

    # Two writers: the fast append must not queue behind the held transaction.
    store = PostgresEventStore(engine, "us", before_commit=hold_open, writers=2)
    a, b = await open_pair(store, uid, "slow")
    c, d = await open_pair(store, uid, "fast")
    start = await max_cursor(engine)

    slow = asyncio.create_task(
        store.append_transfer(Transfer(uid("slow"), a, b, 5, "USD", "x"), "us", NOW)
    )
    await held.wait()  # the slow transfer has written its events; not committed
    fast = await store.append_transfer(Transfer(uid("fast"), c, d, 7, "USD", "x"), "us", NOW)

    # The fast transfer is committed and has the higher position, yet the
    # tail must not hand it out while an older transaction is still open:
    # a reader that advanced past it would then skip the slow one for good.
    async with engine.connect() as conn:
        naive = (
            await conn.execute(
                text("SELECT count(*) FROM events WHERE position > :p AND transfer_id = :t"),
                {"p": start.position, "t": fast.transfer_id},
            )
        ).scalar_one()
    assert naive == 2, "a naive position tail would already see the fast transfer"
    tailed = await store.read_events(start)
    assert [e for e in tailed if e.transfer_id in (fast.transfer_id,)] == []

    release.set()
    slow_result = await slow
    tailed = await store.read_events(start)
    order = [e.transfer_id for e in tailed if e.transfer_id]
    assert order[:2] == [slow_result.transfer_id] * 2
    assert order[2:4] == [fast.transfer_id] * 2


async def test_a_tail_under_concurrent_writers_sees_every_event_exactly_once(
    engines: dict[str, AsyncEngine], uid: Callable[[str], str]
) -> None:
    engine = engines["us"]
    rng = random.Random(7)

    async def jitter(transfer: Transfer) -> None:
        # Stretch some transactions so commits interleave out of position order.
        await asyncio.sleep(rng.choice([0, 0, 0.001, 0.01, 0.05]))

    store = PostgresEventStore(engine, "us", before_commit=jitter)
    pairs = [await open_pair(store, uid, f"p{n}") for n in range(8)]
    start = await max_cursor(engine)
    seen: list[str] = []
    done = asyncio.Event()

    async def tail() -> None:
        cursor = start
        # After the writers finish, keep reading until the tail is drained: an
        # unrelated open transaction may hold the horizon back for a moment.
        drained_at: float | None = None
        while True:
            batch = await store.read_events(cursor, limit=7)
            for event in batch:
                seen.append(event.event_id)
                cursor = TailCursor(event.tx_id or 0, event.position or 0)
            if batch:
                drained_at = None
            elif done.is_set():
                now = asyncio.get_running_loop().time()
                drained_at = drained_at or now
                if now - drained_at > 1.0:
                    return
            if not batch:
                await asyncio.sleep(0.002)

    async def writer(w: int) -> list[str]:
        a, b = pairs[w]
        ids = []
        for i in range(15):
            result = await store.append_transfer(
                Transfer(uid(f"w{w}-{i}"), a, b, 1, "USD", "x"), "us", NOW
            )
            ids += [result.debit_event_id or "", result.credit_event_id or ""]
        return ids

    reader = asyncio.create_task(tail())
    written = await asyncio.gather(*(writer(w) for w in range(len(pairs))))
    done.set()
    await reader
    expected = {event_id for ids in written for event_id in ids}
    ours = [event_id for event_id in seen if event_id in expected]
    assert len(ours) == len(set(ours)), "an event was delivered twice"
    assert set(ours) == expected, f"{len(expected - set(ours))} events were skipped"
