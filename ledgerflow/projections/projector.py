"""The catch-up projector: tails the event store and keeps the views current.

It records its position in `projection_checkpoints` in the same transaction
as the view changes, so a crash can neither skip nor double-apply a batch
(and the view writes are idempotent besides). A failing batch is never
swallowed: the error is recorded on the checkpoint row, the position stays
where it was, and the exception propagates so the caller stops and reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.projections.views import apply_events
from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import backlog, events_below_horizon

CHECKPOINT = "views"


@dataclass(frozen=True)
class ProjectionStatus:
    """Where the catch-up projector stands, and how far behind the events it is."""

    name: str
    cursor: TailCursor
    events_applied: int
    updated_at: datetime
    last_error: str | None
    lag_events: int
    lag_seconds: float
    #: How long the oldest open transaction on the server has held the
    #: transaction horizon (0 when none has for a second), and who it is: no
    #: tail reads past it, in any region of the server (issue 13, finding 5).
    horizon_age_seconds: float = 0.0
    horizon_held_by: str | None = None


#: The oldest transaction with an id on the whole server: every tail (the
#: projector, the archive's plan, reconciliation) stops at it. Prepared
#: transactions hold it too. (Other roles' sessions are visible in full to a
#: member of pg_read_all_stats; the embedded roles are.)
HORIZON_HOLDER = text(
    r"""
    SELECT * FROM (
        SELECT extract(epoch FROM now() - xact_start) AS age,
               format('pid %s, %s@%s, %s since %s: %s', pid, usename, datname, state,
                      xact_start, left(regexp_replace(query, '\s+', ' ', 'g'), 120)) AS who
          FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND xact_start IS NOT NULL
        UNION ALL
        SELECT extract(epoch FROM now() - prepared),
               format('prepared transaction %s, %s@%s, since %s', gid, owner, database, prepared)
          FROM pg_prepared_xacts
    ) held ORDER BY age DESC LIMIT 1
    """
)
#: An open transaction younger than this is an append in flight, not a stall.
HORIZON_STALL_S = 1.0


async def horizon_holder(
    conn: AsyncConnection, stall_s: float = HORIZON_STALL_S
) -> tuple[float, str | None]:
    row = (await conn.execute(HORIZON_HOLDER)).first()
    if row is None or row.age is None or float(row.age) < stall_s:
        return 0.0, None
    return float(row.age), str(row.who)


async def lock_checkpoint(conn: AsyncConnection) -> TailCursor:
    """Lock the views' checkpoint row (creating it at the start) and return its cursor.

    Whoever writes the views in step with the checkpoint takes this row first,
    then the views: one lock order for all, so they wait instead of deadlocking.
    """
    await conn.execute(
        text("INSERT INTO projection_checkpoints (name) VALUES (:name) ON CONFLICT DO NOTHING"),
        {"name": CHECKPOINT},
    )
    row = (
        await conn.execute(
            text(
                "SELECT tx_id, position FROM projection_checkpoints WHERE name = :name FOR UPDATE"
            ),
            {"name": CHECKPOINT},
        )
    ).one()
    return TailCursor(row.tx_id, row.position)


class CatchUpProjector:
    """Applies every event, in global order, exactly once per checkpoint."""

    def __init__(self, engine: AsyncEngine, batch_size: int = 1000) -> None:
        self.engine = engine
        self.batch_size = batch_size

    async def run_once(self) -> int:
        """Apply one batch; returns how many events it applied (0 = caught up)."""
        try:
            async with self.engine.begin() as conn:
                # Locked: two projectors on one region take turns per batch
                # instead of applying the same batch side by side.
                cursor = await lock_checkpoint(conn)
                events = await events_below_horizon(conn, cursor, self.batch_size)
                if not events:
                    return 0
                await apply_events(conn, events)
                last = events[-1]
                await conn.execute(
                    text(
                        "UPDATE projection_checkpoints SET tx_id = :tx_id, position = :position, "
                        "events_applied = events_applied + :n, updated_at = now(), "
                        "last_error = NULL WHERE name = :name"
                    ),
                    {
                        "tx_id": last.tx_id,
                        "position": last.position,
                        "n": len(events),
                        "name": CHECKPOINT,
                    },
                )
                return len(events)
        except Exception as exc:
            await self._record_failure(exc)
            raise

    async def catch_up(self) -> int:
        """Apply batches until nothing is left below the horizon."""
        total = 0
        while applied := await self.run_once():
            total += applied
        return total

    async def _record_failure(self, exc: Exception) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO projection_checkpoints (name, last_error) VALUES (:name, :err) "
                    "ON CONFLICT (name) DO UPDATE SET last_error = excluded.last_error, "
                    "updated_at = now()"
                ),
                {"name": CHECKPOINT, "err": f"{type(exc).__name__}: {exc}"},
            )

    async def status(self, horizon_stall_s: float = HORIZON_STALL_S) -> ProjectionStatus | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT name, tx_id, position, events_applied, updated_at, last_error "
                        "FROM projection_checkpoints WHERE name = :name"
                    ),
                    {"name": CHECKPOINT},
                )
            ).first()
            if row is None:
                return None
            # Lag: committed events not yet applied, and the age of the oldest one.
            lag = await backlog(conn, TailCursor(row.tx_id, row.position))
            held_for, held_by = await horizon_holder(conn, horizon_stall_s)
        return ProjectionStatus(
            name=row.name,
            cursor=TailCursor(row.tx_id, row.position),
            events_applied=row.events_applied,
            updated_at=row.updated_at,
            last_error=row.last_error,
            lag_events=lag.events,
            lag_seconds=lag.age_seconds,
            horizon_age_seconds=held_for,
            horizon_held_by=held_by,
        )
