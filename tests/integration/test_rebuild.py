"""Rebuilding the read models from the events, swapped in while they serve."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.audit.verify import verify_region
from ledgerflow.domain.model import Transfer
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.projections.rebuild import rebuild_views
from ledgerflow.projections.views import get_balance, get_statement
from ledgerflow.store.postgres import PostgresEventStore
from tests.conftest import RoleEngine
from tests.integration.test_verify import ledger_with_history
from tests.support import cli

Region = tuple[PostgresEventStore, AsyncEngine]


async def test_a_rebuild_repairs_the_views_and_keeps_them_writable(
    isolated_region: Region, cli_env: dict[str, str], isolated_as: RoleEngine
) -> None:
    store, superuser = isolated_region
    await ledger_with_history(store)
    async with superuser.begin() as conn:
        await conn.execute(text("UPDATE balance_view SET balance = 0 WHERE account_id = 'bob'"))
        await conn.execute(text("DELETE FROM statement_view WHERE account_id = 'alice'"))
    assert not (await verify_region(store.engine, "us")).sound
    owner = isolated_as("ledgerflow_owner")
    progress: list[int] = []
    applied = await rebuild_views(owner, progress.append)
    assert applied == 13 and progress[-1] == 13
    report = await verify_region(store.engine, "us")
    assert report.sound, [str(f) for f in report.findings]
    bob = await get_balance(store.engine, "bob")
    assert bob is not None and bob.balance == 137
    assert len(await get_statement(store.engine, "alice")) == 5
    # The swapped-in tables are the app role's to write, and the checkpoint moved.
    status = await CatchUpProjector(store.engine).status()
    assert status is not None and status.lag_events == 0 and status.events_applied == 13
    url = store.engine.url.render_as_string(hide_password=False)
    env = cli_env | {"LEDGERFLOW_DATABASE_URL_US": url, "LEDGERFLOW_REGIONS": "us"}
    code, out, err = await cli(env, "projections", "status", "--json")
    assert code == 0, err
    assert '"lag_events": 0' in out


async def test_one_view_rebuilt_while_the_other_lags_ends_at_one_position(
    isolated_region: Region,
    isolated_as: RoleEngine,
) -> None:
    store, superuser = isolated_region
    await ledger_with_history(store)
    now = datetime.now(UTC)
    for n in range(3):  # appended, never projected: the views lag by 6 events
        await store.append_transfer(Transfer(f"late{n}", "bank", "bob", 1, "USD", "x"), "us", now)
    async with superuser.begin() as conn:
        await conn.execute(text("DELETE FROM statement_view WHERE account_id = 'alice'"))
    owner = isolated_as("ledgerflow_owner")
    await rebuild_views(owner, views=("statement_view",))
    status = await CatchUpProjector(store.engine).status()
    assert status is not None and status.lag_events == 0
    bob = await get_balance(store.engine, "bob")
    assert bob is not None and bob.balance == 140  # the kept view caught up too
    report = await verify_region(store.engine, "us")
    assert report.sound, [str(f) for f in report.findings]


async def test_a_rebuild_races_appends_and_a_busy_projector_without_deadlock(
    isolated_region: Region,
    isolated_as: RoleEngine,
) -> None:
    store, _ = isolated_region
    await ledger_with_history(store)
    stop = asyncio.Event()

    async def keep_appending() -> None:
        n = 0
        while not stop.is_set():
            transfer = Transfer(f"busy{n}", "bank", "bob", 1, "USD", "x")
            await store.append_transfer(transfer, "us", datetime.now(UTC))
            n += 1

    async def keep_projecting() -> None:
        projector = CatchUpProjector(store.engine, batch_size=3)
        while not stop.is_set():
            with contextlib.suppress(DBAPIError):  # a write caught in the swap retries
                await projector.run_once()

    owner = isolated_as("ledgerflow_owner")
    background = [asyncio.create_task(keep_appending()), asyncio.create_task(keep_projecting())]
    try:
        async with asyncio.timeout(60):
            for _ in range(3):
                await rebuild_views(owner)
    finally:
        stop.set()
        await asyncio.gather(*background)
    await CatchUpProjector(store.engine).catch_up()
    report = await verify_region(store.engine, "us")
    assert report.sound, [str(f) for f in report.findings]
    assert report.projection_lag_events == 0
