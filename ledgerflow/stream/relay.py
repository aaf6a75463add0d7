"""The relay: one region's events, once each, in its order, onto its stream.

It tails the events below the transaction horizon, as the projector does
(so nothing can later commit behind it), and publishes each to the region's
stream `LEDGER_<REGION>`. Exactly once, whatever crashes:

- Its place is the stream's own last message: at start, and after any
  failed publish, it reads the region stream's last message and resumes
  after the event that message carries. An event is either in the stream or
  it is published again.
- Each message says which event must end the stream before it
  (`Nats-Expected-Last-Msg-Id`, or an empty stream for the first), so a
  message can never be stored after a gap, even when a batch is pipelined
  and one publish in its middle fails; and it carries the event id as
  `Nats-Msg-Id`, so a second copy within the duplicate window is dropped.
- Its cursor in the database (`projection_checkpoints`, name `stream`)
  advances only after the stream acknowledged: it is what `status` and the
  metrics report lag from, and what pruning waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.domain.model import Event
from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import events_below_horizon
from ledgerflow.stream.consumer import jetstream_api
from ledgerflow.stream.subjects import (
    MSG_ID,
    SUBJECT_ROOT,
    cursor_of,
    encode,
    region_stream,
    region_subjects,
)

log = logging.getLogger("stream.relay")

#: Its checkpoint row (the projector's is `views`).
CHECKPOINT = "stream"


@dataclass(frozen=True)
class Place:
    """Where the region's stream ends: after this event (None: empty)."""

    cursor: TailCursor
    last_event_id: str | None


class Relay:
    def __init__(
        self,
        engine: AsyncEngine,
        region: str,
        js: JetStreamContext,
        *,
        batch_size: int = 500,
        publish_timeout_s: float = 5.0,
        stream: str | None = None,
        root: str = SUBJECT_ROOT,
    ) -> None:
        """`stream` and `root` name another stream and subjects than the
        region's (only a benchmark's scratch stream does)."""
        self.engine = engine
        self.region = region
        self.js = js
        self.stream = stream or region_stream(region)
        self.root = root
        self.batch_size = batch_size
        self.publish_timeout_s = publish_timeout_s
        self._place: Place | None = None
        self.published = 0
        self.name = f"stream relay of region {region}"

    async def stream_end(self) -> Place:
        """The region stream's last message, as the place to resume after."""
        try:
            subjects = region_subjects(self.region, self.root)
            last = await jetstream_api(lambda: self.js.get_last_msg(self.stream, subjects))
        except NotFoundError:
            return Place(TailCursor(0, 0), None)
        cursor = cursor_of(last.headers)
        if cursor is None or last.headers is None:
            raise RuntimeError(
                f"the last message of {self.stream} (seq {last.seq}) was not "
                "published by a relay: it carries no event position"
            )
        return Place(cursor, last.headers[MSG_ID])

    async def run_once(self) -> int:
        """Publish one batch; how many events were stored (0: caught up)."""
        if self._place is None:
            self._place = await self.stream_end()
        place = self._place
        async with self.engine.connect() as conn:
            events = await events_below_horizon(conn, place.cursor, self.batch_size)
            await conn.rollback()
        if not events:
            return 0
        stored = await self._publish(events, place.last_event_id)
        if stored:
            last = events[stored - 1]
            assert last.tx_id is not None and last.position is not None
            self._place = Place(TailCursor(last.tx_id, last.position), last.event_id)
            if self.stream == region_stream(self.region):
                await self._record(self._place.cursor, stored)
            self.published += stored
        if stored < len(events):
            self._place = None  # read the stream's end again before going on
            raise PublishFailed(
                f"{len(events) - stored} of {len(events)} events of region {self.region} "
                "were not acknowledged; resuming after the stream's last message"
            )
        return stored

    async def _publish(self, events: Sequence[Event], previous: str | None) -> int:
        """Pipelined publishes, in order; how many at the front were stored.
        Each names its predecessor, so none is stored past a failed one."""
        messages = []
        for event in events:
            messages.append(encode(event, previous, self.root))
            previous = event.event_id
        answers = await asyncio.gather(
            *(self.js.publish(m.subject, m.body, timeout=self.publish_timeout_s,
                              stream=self.stream, headers=m.headers)
              for m in messages),
            return_exceptions=True,
        )  # fmt: skip
        stored = 0
        for answer in answers:
            if isinstance(answer, BaseException):
                log.warning("publish to %s failed: %s", self.stream, answer)
                break
            stored += 1
        return stored

    async def _record(self, cursor: TailCursor, count: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO projection_checkpoints (name, tx_id, position, events_applied) "
                    "VALUES (:name, :tx, :pos, :n) ON CONFLICT (name) DO UPDATE SET "
                    "tx_id = excluded.tx_id, position = excluded.position, "
                    "events_applied = projection_checkpoints.events_applied + :n, "
                    "updated_at = now(), last_error = NULL "
                    "WHERE (projection_checkpoints.tx_id, projection_checkpoints.position) "
                    "<= (excluded.tx_id, excluded.position)"
                ),
                {"name": CHECKPOINT, "tx": cursor.tx_id, "pos": cursor.position, "n": count},
            )

    def reset(self) -> None:
        """Read the stream's end again before the next batch."""
        self._place = None

    async def catch_up(self) -> int:
        total = 0
        while stored := await self.run_once():
            total += stored
        return total


class PublishFailed(Exception):
    """Part of a batch was not stored; the relay resumes from the stream's end."""


class Follower(Protocol):
    """A loop's unit of work: the relay, or the global directory."""

    name: str

    async def run_once(self) -> int: ...

    def reset(self) -> None:
        """After a failure: assume nothing about where the stream ends."""


async def keep_following(
    connect: Callable[[], Awaitable[Follower]],
    stop: asyncio.Event,
    interval_s: float = 0.2,
    retry_s: float = 2.0,
) -> None:
    """Run a follower until `stop`, batch after batch: a stream or database
    that is down is retried (the events wait where they are, nothing is lost)."""
    follower: Follower | None = None
    while not stop.is_set():
        wait = interval_s
        try:
            if follower is None:
                follower = await connect()
            while not stop.is_set() and await follower.run_once():
                pass
        except Exception as exc:
            log.warning("%s: %s; retrying in %.0f s", follower.name if follower else "stream",
                        exc, retry_s)  # fmt: skip
            if follower is not None:
                follower.reset()
            wait = retry_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)


async def relayed_through(conn: AsyncConnection) -> TailCursor | None:
    """What the region's relay has published through (None: it never has)."""
    row = (
        await conn.execute(
            text("SELECT tx_id, position FROM projection_checkpoints WHERE name = :n"),
            {"n": CHECKPOINT},
        )
    ).first()
    return None if row is None else TailCursor(row.tx_id, row.position)
