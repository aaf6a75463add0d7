"""`archive status`: where a region's archive stands, from PostgreSQL alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import backlog, hot_events


@dataclass(frozen=True)
class ArchiveStatus:
    region: str
    segments: int
    events_archived: int
    archived_through_seq: int
    last_archived_at: datetime | None
    last_digest: str | None
    #: A segment planned but not yet recorded (a run in flight, or one that failed).
    in_flight_segment: int | None
    verified_through_segment: int | None
    pruned_through_segment: int | None
    #: Accounts whose early history lives only in the archive now.
    pruned_accounts: int
    hot_events: int
    #: Events past the cut-off still waiting for the next run.
    backlog_events: int
    oldest_backlog_at: datetime | None


async def archive_status(engine: AsyncEngine, region: str, min_age: timedelta) -> ArchiveStatus:
    async with engine.connect() as conn:
        s = (
            await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE status = 'archived') AS segments, "
                    "coalesce(sum(event_count) FILTER (WHERE status = 'archived'), 0) AS events, "
                    "coalesce(max(last_seq) FILTER (WHERE status = 'archived'), 0) AS through, "
                    "max(archived_at) AS last_at, "
                    "max(segment_no) FILTER (WHERE status = 'planned') AS in_flight, "
                    "max(segment_no) FILTER (WHERE verified_at IS NOT NULL) AS verified, "
                    "max(segment_no) FILTER (WHERE pruned_at IS NOT NULL) AS pruned "
                    "FROM archive_segments"
                )
            )
        ).one()
        last = (
            await conn.execute(
                text(
                    "SELECT digest, to_tx_id, to_position FROM archive_segments "
                    "WHERE status = 'archived' ORDER BY segment_no DESC LIMIT 1"
                )
            )
        ).first()
        cursor = (last.to_tx_id, last.to_position) if last else (0, 0)
        waiting = await backlog(conn, TailCursor(*cursor), older_than_s=min_age.total_seconds())
        hot = await hot_events(conn)
        pruned_accounts = (
            await conn.execute(text("SELECT count(*) FROM account_checkpoints"))
        ).scalar_one()
    return ArchiveStatus(
        region=region,
        segments=s.segments,
        events_archived=int(s.events),
        archived_through_seq=int(s.through),
        last_archived_at=s.last_at,
        last_digest=last.digest if last else None,
        in_flight_segment=s.in_flight,
        verified_through_segment=s.verified,
        pruned_through_segment=s.pruned,
        pruned_accounts=pruned_accounts,
        hot_events=hot,
        backlog_events=waiting.events,
        oldest_backlog_at=waiting.oldest,
    )
