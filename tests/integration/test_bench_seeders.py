"""The benchmarks' seeders write histories `verify` proves sound, however
many transactions they take, and keep the planner's statistics current."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.audit.verify import verify_region
from ledgerflow.store.postgres import PostgresEventStore


async def _estimated_events(superuser: AsyncEngine) -> float:
    async with superuser.connect() as conn:
        return float(
            (
                await conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'events'"))
            ).scalar_one()
        )


async def test_a_seed_of_many_pipelined_transactions_verifies_and_is_analyzed(
    isolated_region: tuple[PostgresEventStore, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each transaction is built while the one before it loads (a thread
    advancing the heads as it builds): every load must still move the heads
    exactly onto its own events, or the schema refuses the commit and verify
    finds the chains broken. With the owner's engine, the table is analyzed
    each time it has doubled (here from 2,000 rows on)."""
    from ledgerflow.bench import history
    from ledgerflow.bench.archive import seed_trading

    monkeypatch.setattr(history, "FIRST_ANALYZE", 2_000)
    store, superuser = isolated_region
    lines: list[str] = []
    # 20 openings and 4,500 transfers: five transactions of up to 1,000.
    await seed_trading(store, 9_020, 20, lines.append, owner=superuser)
    assert lines[-1] == "seeded 9,020 events"
    # Analyzed after the first transaction (2,020 rows) and after the third
    # (6,020, at least twice that); not again at 9,020 (under 12,040).
    assert await _estimated_events(superuser) == 6_020

    report = await verify_region(store.engine, "us")
    assert report.sound, [str(f) for f in report.findings[:3]]
    assert report.events_checked == 9_020


async def test_a_long_account_history_seeds_in_batches_onto_one_chain(
    isolated_region: tuple[PostgresEventStore, AsyncEngine],
) -> None:
    """seed_history's 60,000 events fill three COPY batches of 50,000 rows
    (each transfer is two events); the account ends at version 60,000 and
    the span ends one microsecond per transfer after it starts."""
    from datetime import timedelta

    from ledgerflow.audit.point_in_time import balance_as_of
    from ledgerflow.bench.history import seed_history

    store, superuser = isolated_region
    seen: list[int] = []
    account_id, start, end = await seed_history(store, 60_000, seen.append, owner=superuser)
    assert seen == [25_000, 50_000, 59_999]
    assert end - start == timedelta(microseconds=59_999)
    balance = await balance_as_of(store.engine, account_id, end)
    assert (balance.version, balance.balance) == (60_000, -1)
    report = await verify_region(store.engine, "us")
    assert report.sound, [str(f) for f in report.findings[:3]]
    assert report.events_checked == 2 + 2 * 59_999
