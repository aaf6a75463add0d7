"""Point-in-time truth (invariant 6): the indexed answer equals the replay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from ledgerflow.audit.point_in_time import balance_as_of
from ledgerflow.config import Settings
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.store.postgres import PostgresEventStore

Ids = Callable[[str], str]


async def test_an_instant_needs_a_time_zone(store: PostgresEventStore) -> None:
    with pytest.raises(InvalidRequest):
        await balance_as_of(store.engine, "any", datetime(2026, 1, 1))


async def test_replaying_a_long_history_does_not_idle_in_its_transaction(
    isolated_region: tuple[PostgresEventStore, Any], migrated: Settings
) -> None:
    """Regression: the replay built every event inside its snapshot, so a
    long history kept the session idle in its transaction past the server's
    timeout, and the server killed it (`bench query` at 1M events, with the
    embedded 10 s). Here the timeout is 1 s and the history 100,000 events."""
    from dataclasses import replace

    from ledgerflow.audit.point_in_time import replay_balance
    from ledgerflow.bench.history import seed_history
    from ledgerflow.store.postgres import create_engine

    store, _ = isolated_region
    account_id, _, end = await seed_history(store, 100_000)
    impatient = create_engine(
        store.engine.url.render_as_string(hide_password=False),
        replace(migrated, db_idle_in_transaction_timeout_ms=1000),
    )
    try:
        replayed = await replay_balance(impatient, account_id, end)
        assert replayed == await balance_as_of(store.engine, account_id, end)
        assert replayed.version == 100_000
    finally:
        await impatient.dispose()


async def test_the_probe_is_answered_from_the_index_alone(
    isolated_region: tuple[PostgresEventStore, Any],
) -> None:
    """The probe's last event at or before T comes from one index (migration
    0011), without a visit to the table: the plan is an index-only scan of
    `events_account_as_of_idx`, and once the table is vacuumed it fetches no
    table page at all. (Without the included amounts it is an index scan
    with one heap fetch per probe, which this refuses.)"""
    import json

    from sqlalchemy import text

    from ledgerflow.bench.history import seed_history, vacuum_analyze
    from ledgerflow.store.log import _ACCOUNT_AS_OF

    store, superuser = isolated_region
    account_id, start, end = await seed_history(store, 2_000)
    await vacuum_analyze(superuser)
    async with store.engine.connect() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))  # a small table: be sure
        [[plan]] = (
            await conn.execute(
                text(f"EXPLAIN (ANALYZE, FORMAT JSON) {_ACCOUNT_AS_OF.text}"),
                {"id": account_id, "t": start + (end - start) / 2},
            )
        ).all()
    nodes = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    [probe] = [n for n in nodes if n.get("Relation Name") == "events"]
    assert (probe["Node Type"], probe["Index Name"]) == (
        "Index Only Scan",
        "events_account_as_of_idx",
    ), probe
    assert probe["Heap Fetches"] == 0, probe
