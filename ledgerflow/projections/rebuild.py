"""Rebuild the read models from the events without taking them offline.

1. Create shadow copies (`balance_view_next`, `statement_view_next`) and fill
   them from every event, in global order, batch by batch. The live views keep
   serving reads and taking projection writes meanwhile.
2. In one short transaction: lock the live views, apply to the shadows what
   was appended since, swap the tables by renaming, re-grant, and move the
   catch-up checkpoint to where the shadows stopped. Readers and projection
   writers wait for that moment only; a projection write caught in it fails
   and is retried (every view write is idempotent).

Runs as the schema owner (it creates and renames tables).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.projections.projector import CHECKPOINT
from ledgerflow.projections.views import VIEW_TABLES, apply_events
from ledgerflow.store.base import TailCursor
from ledgerflow.store.postgres import read_events_below_horizon

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
    conn: AsyncConnection, cursor: TailCursor, applied: int, progress: Callable[[int], None] | None
) -> tuple[TailCursor, int]:
    """Apply one batch to the shadows; returns the new cursor and total applied."""
    events = await read_events_below_horizon(conn, cursor, BATCH)
    if not events:
        return cursor, applied
    await apply_events(conn, events, suffix=SHADOW)
    last = events[-1]
    applied += len(events)
    if progress:
        progress(applied)
    return TailCursor(last.tx_id or 0, last.position or 0), applied


async def rebuild_views(
    owner_engine: AsyncEngine, progress: Callable[[int], None] | None = None
) -> int:
    """Rebuild both views from the events and swap them in; returns events applied."""
    async with owner_engine.begin() as conn:
        for table in VIEW_TABLES:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}{SHADOW}"))
            await conn.execute(text(f"CREATE TABLE {table}{SHADOW} (LIKE {table} INCLUDING ALL)"))
    cursor, applied = TailCursor(), 0
    while True:  # bulk phase: the live views are untouched
        async with owner_engine.begin() as conn:
            moved, applied = await _fill(conn, cursor, applied, progress)
        if moved == cursor:
            break
        cursor = moved
    async with owner_engine.begin() as conn:
        # ACCESS EXCLUSIVE on the live views (not on events): appends go on,
        # view readers and writers wait for the swap, which takes milliseconds.
        await conn.execute(text("LOCK TABLE balance_view, statement_view IN ACCESS EXCLUSIVE MODE"))
        while True:  # what was appended during the bulk phase
            moved, applied = await _fill(conn, cursor, applied, progress)
            if moved == cursor:
                break
            cursor = moved
        for table in VIEW_TABLES:
            await conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_old"))
            await conn.execute(text(f"ALTER TABLE {table}{SHADOW} RENAME TO {table}"))
            await conn.execute(text(f"DROP TABLE {table}_old"))
        await conn.execute(text(GRANTS))
        await conn.execute(
            text(
                "INSERT INTO projection_checkpoints (name, tx_id, position, events_applied) "
                "VALUES (:name, :tx, :pos, :n) ON CONFLICT (name) DO UPDATE SET "
                "tx_id = excluded.tx_id, position = excluded.position, "
                "events_applied = excluded.events_applied, updated_at = now(), last_error = NULL"
            ),
            {"name": CHECKPOINT, "tx": cursor.tx_id, "pos": cursor.position, "n": applied},
        )
    return applied
