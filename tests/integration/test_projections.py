"""The read models: idempotent, order-independent, rebuildable, never silently wrong."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.domain.model import Event, OpenAccountRequest, Transfer
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.projections.views import Balance, apply_events, get_balance, get_statement
from ledgerflow.store.postgres import PostgresEventStore

NOW = datetime.now(UTC)
Ids = Callable[[str], str]


async def history(store: PostgresEventStore, uid: Ids, transfers: int = 6) -> tuple[str, str]:
    a, b = uid("a"), uid("b")
    await store.open_account(OpenAccountRequest(a, "USD", "us", None), NOW)
    await store.open_account(OpenAccountRequest(b, "USD", "us", None), NOW)
    for i in range(transfers):
        source, target = (a, b) if i % 3 else (b, a)
        await store.append_transfer(Transfer(uid(f"t{i}"), source, target, 10 + i, "USD", "x"),
                                    "us", NOW)  # fmt: skip
    return a, b


async def views(engine: AsyncEngine, account_id: str) -> tuple[Balance | None, list[object]]:
    return await get_balance(engine, account_id), await get_statement(engine, account_id)


async def reset_views(engine: AsyncEngine, *accounts: str) -> None:
    async with engine.begin() as conn:
        for table in ("statement_view", "balance_view"):
            await conn.execute(text(f"DELETE FROM {table} WHERE account_id = ANY(:a)"),
                               {"a": list(accounts)})  # fmt: skip


async def apply(engine: AsyncEngine, events: list[Event]) -> None:
    async with engine.begin() as conn:
        await apply_events(conn, events)


async def test_applying_twice_or_in_any_order_ends_in_the_same_state(
    store: PostgresEventStore, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    engine = engines["us"]
    a, b = await history(store, uid)
    events = await store.account_events(a) + await store.account_events(b)
    await reset_views(engine, a, b)
    await apply(engine, events)
    expected = (await views(engine, a), await views(engine, b))
    account = await store.get_account(a)
    assert expected[0][0] is not None and account is not None
    assert (expected[0][0].balance, expected[0][0].version) == (account.balance, account.version)
    rng = random.Random(3)
    for _ in range(5):
        await reset_views(engine, a, b)
        shuffled = events * 2
        rng.shuffle(shuffled)
        for event in shuffled:  # one at a time, duplicated, out of order
            await apply(engine, [event])
        assert (await views(engine, a), await views(engine, b)) == expected


async def test_the_catch_up_projector_rebuilds_what_was_lost(
    store: PostgresEventStore, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    engine = engines["us"]
    projector = CatchUpProjector(engine, batch_size=50)
    await projector.catch_up()
    a, b = await history(store, uid)  # written, never projected
    assert await get_balance(engine, a) is None
    applied = await projector.catch_up()
    assert applied >= 14
    balance = await get_balance(engine, a)
    account = await store.get_account(a)
    assert balance is not None and account is not None and balance.balance == account.balance
    assert len(await get_statement(engine, b)) == 7
    assert await projector.catch_up() == 0  # nothing twice
    status = await projector.status()
    assert status is not None and status.last_error is None


async def test_a_projection_failure_is_recorded_and_the_position_holds(
    store: PostgresEventStore,
    engines: dict[str, AsyncEngine],
    owner_engine: AsyncEngine,
    uid: Ids,
) -> None:
    engine = engines["us"]
    projector = CatchUpProjector(engine)
    await projector.catch_up()
    before = await projector.status()
    a, _ = await history(store, uid, transfers=2)
    async with owner_engine.begin() as conn:
        await conn.execute(text("REVOKE INSERT ON statement_view FROM ledgerflow_app"))
    try:
        with pytest.raises(DBAPIError):
            await projector.catch_up()
        failed = await projector.status()
        assert failed is not None and before is not None
        assert failed.cursor == before.cursor, "the position must not move past a failure"
        assert failed.last_error and "permission denied" in failed.last_error
    finally:
        async with owner_engine.begin() as conn:
            await conn.execute(text("GRANT INSERT ON statement_view TO ledgerflow_app"))
    assert await projector.catch_up() > 0
    healed = await projector.status()
    assert healed is not None and healed.last_error is None
    assert len(await get_statement(engine, a)) == 3
