"""Rebuild the read models from the events without taking them offline.

1. Create shadow copies (`balance_view_next`, `statement_view_next`) and fill
   them from every event, in global order, batch by batch. The live views keep
   serving reads and taking projection writes meanwhile.
   A pruned account's balance starts from its checkpoint.
2. In one short transaction: lock the live views, apply to the shadows what
   was appended since (the tail below the transaction horizon, then every
   committed event past the shadows' heads, so the swap never goes back),
   swap the tables by renaming, re-grant, and move the catch-up checkpoint
   to where the tail stopped. Readers and projection
   writers wait for that moment only; a projection write caught in it fails
   and is retried (every view write is idempotent).

Runs as the schema owner (it creates and renames tables).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.projections.projector import CHECKPOINT, lock_checkpoint
from ledgerflow.projections.views import VIEW_TABLES, apply_events
from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import events_below_horizon, events_past_heads

SHADOW = "_next"
BATCH = 5000
GRANTS = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledgerflow_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON balance_view, statement_view TO ledgerflow_app;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledgerflow_reader') THEN
        GRANT SELECT ON balance_view, statement_view TO ledgerflow_reader;
    END IF;
END
$$
"""


async def _fill(
    conn: AsyncConnection,
    cursor: TailCursor,
    applied: int,
    progress: Callable[[int], None] | None,
    views: tuple[str, ...],
) -> tuple[TailCursor, int]:
    """Apply one batch to the shadows of `views`; returns the new cursor and total."""
    events = await events_below_horizon(conn, cursor, BATCH)
    if not events:
        return cursor, applied
    await apply_events(conn, events, suffix=SHADOW, only=views)
    last = events[-1]
    applied += len(events)
    if progress:
        progress(applied)
    return TailCursor(last.tx_id or 0, last.position or 0), applied


async def _catch_up_heads(conn: AsyncConnection, views: tuple[str, ...]) -> int:
    """Apply to the shadows every committed event past what they hold."""
    if "balance_view" in views:
        held = f"SELECT account_id, version FROM balance_view{SHADOW}"
    else:
        held = (
            f"SELECT account_id, max(version) AS version FROM statement_view{SHADOW} "
            "GROUP BY account_id"
        )
    events = await events_past_heads(conn, held)
    await apply_events(conn, events, suffix=SHADOW, only=views)
    return len(events)


async def rebuild_views(
    owner_engine: AsyncEngine,
    progress: Callable[[int], None] | None = None,
    views: tuple[str, ...] = VIEW_TABLES,
) -> int:
    """Rebuild `views` from the events and swap them in; returns events applied."""
    unknown = set(views) - set(VIEW_TABLES)
    if unknown or not views:
        raise ValueError(f"views must be among {VIEW_TABLES}, got {views}")
    async with owner_engine.begin() as conn:
        for table in views:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}{SHADOW}"))
            await conn.execute(text(f"CREATE TABLE {table}{SHADOW} (LIKE {table} INCLUDING ALL)"))
        if "balance_view" in views:
            # A pruned account's history before its checkpoint is in the
            # archive, not in `events`: its balance starts from the checkpoint
            # (an account whose every event was pruned keeps its balance).
            await conn.execute(
                text(
                    f"INSERT INTO balance_view{SHADOW} (account_id, currency, balance, version, "
                    "updated_at, pending_out) SELECT account_id, currency, balance, version, "
                    "recorded_at, pending FROM account_checkpoints"
                )
            )
    cursor, applied = TailCursor(), 0
    while True:  # bulk phase: the live views are untouched
        async with owner_engine.begin() as conn:
            moved, applied = await _fill(conn, cursor, applied, progress, views)
        if moved == cursor:
            break
        cursor = moved
    async with owner_engine.begin() as conn:
        # Lock order matters: the catch-up projector takes its checkpoint row,
        # then writes the views. Taking them in the same order here means the
        # two wait for each other instead of deadlocking.
        live = await lock_checkpoint(conn)
        # ACCESS EXCLUSIVE on the live views (not on events): appends go on,
        # view readers and writers wait for the swap, which takes milliseconds.
        await conn.execute(text("LOCK TABLE balance_view, statement_view IN ACCESS EXCLUSIVE MODE"))
        while True:  # what was appended during the bulk phase
            moved, applied = await _fill(conn, cursor, applied, progress, views)
            if moved == cursor:
                break
            cursor = moved
        # Never backwards: the tail stops at the transaction horizon, which
        # one long transaction anywhere on the server can hold back, while
        # transfers go on being projected in line. Every account whose
        # committed head is past what the shadows hold gets its missing events
        # (by account and version, under the views' lock), so the views
        # swapped in are never older than the live ones. The catch-up
        # projector meets them again later, harmlessly (every write is
        # idempotent).
        applied += await _catch_up_heads(conn, views)
        # A view not being rebuilt is brought to the same position, so that the
        # one checkpoint stays true for both.
        kept = tuple(t for t in VIEW_TABLES if t not in views)
        position = live
        while kept and position < cursor:
            events = [
                e
                for e in await events_below_horizon(conn, position, BATCH)
                if TailCursor(e.tx_id or 0, e.position or 0) <= cursor
            ]
            if not events:
                break
            await apply_events(conn, events, only=kept)
            position = TailCursor(events[-1].tx_id or 0, events[-1].position or 0)
        for table in views:
            await conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_old"))
            await conn.execute(text(f"ALTER TABLE {table}{SHADOW} RENAME TO {table}"))
            await conn.execute(text(f"DROP TABLE {table}_old"))
        await conn.execute(text(GRANTS))
        await conn.execute(
            text(
                "UPDATE projection_checkpoints SET tx_id = :tx, position = :pos, "
                "events_applied = :n, updated_at = now(), last_error = NULL WHERE name = :name"
            ),
            {"name": CHECKPOINT, "tx": cursor.tx_id, "pos": cursor.position, "n": applied},
        )
    return applied
