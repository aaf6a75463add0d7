"""How far each region's relay is: its checkpoint, the events not yet on
the stream (count and age), and the streams' own counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import backlog
from ledgerflow.stream.consumer import jetstream_api
from ledgerflow.stream.relay import CHECKPOINT
from ledgerflow.stream.subjects import GLOBAL_STREAM, region_stream, region_subjects


@dataclass(frozen=True)
class StreamStatus:
    region: str
    #: Events the relay has published (its checkpoint's count).
    relayed: int
    cursor: TailCursor
    updated_at: datetime | None
    #: Committed events not yet on the region's stream, and the oldest one's age.
    lag_events: int
    lag_seconds: float
    #: Messages in the region's stream, and the region's in the global stream.
    region_messages: int | None
    global_messages: int | None


async def stream_counts(js: JetStreamContext, region: str) -> tuple[int | None, int | None]:
    """Messages in the region's stream, and the region's in the global stream
    (None for a stream not created yet)."""
    try:
        own = await jetstream_api(lambda: js.stream_info(region_stream(region)))
        info = await jetstream_api(
            lambda: js.stream_info(GLOBAL_STREAM, subjects_filter=region_subjects(region))
        )
    except NotFoundError:
        return None, None
    return int(own.state.messages), sum((info.state.subjects or {}).values())


async def stream_status(engine: AsyncEngine, region: str, js: JetStreamContext) -> StreamStatus:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT tx_id, position, events_applied, updated_at "
                    "FROM projection_checkpoints WHERE name = :n"
                ),
                {"n": CHECKPOINT},
            )
        ).first()
        cursor = TailCursor(row.tx_id, row.position) if row else TailCursor(0, 0)
        lag = await backlog(conn, cursor)
        await conn.rollback()
    region_messages, global_messages = await stream_counts(js, region)
    return StreamStatus(
        region=region, relayed=int(row.events_applied) if row else 0, cursor=cursor,
        updated_at=row.updated_at if row else None, lag_events=lag.events,
        lag_seconds=lag.age_seconds, region_messages=region_messages,
        global_messages=global_messages,
    )  # fmt: skip
