"""The global read model fed by the event stream: where every account lives
(the account directory) and each region's position per currency: the net of
what its accounts received from and sent to other regions (the sum of its
postings outside its clearing accounts; over all regions, once every
transfer between them has settled, each currency's positions sum to zero).

It runs in the default region (the global stream's), reads the global
stream after its checkpoint and applies each batch with the checkpoint in
one transaction, so each event counts once whatever crashes. Rebuildable
from the stream's start (`rebuild`). The SDK asks it first where an account
lives (`locate_in_directory`), and every region's database only for an
account it has not seen yet (one opened moments ago).
"""

from __future__ import annotations

from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.domain.model import EventType, parse_clearing_account
from ledgerflow.stream.consumer import jetstream_api, read_events
from ledgerflow.stream.subjects import GLOBAL_STREAM

CHECKPOINT = "directory"
#: What each status event leaves an account as.
_STATUS = {
    EventType.ACCOUNT_FROZEN: "frozen",
    EventType.ACCOUNT_UNFROZEN: "open",
    EventType.ACCOUNT_CLOSED: "closed",
}


@dataclass(frozen=True)
class DirectoryStatus:
    #: The global stream's sequence applied through, and the stream's last.
    applied_through: int
    stream_last: int | None
    lag_events: int | None
    accounts: int


class GlobalDirectory:
    def __init__(self, engine: AsyncEngine, js: JetStreamContext, batch_size: int = 1000) -> None:
        self.engine = engine
        self.js = js
        self.batch_size = batch_size
        self.name = "global directory"

    def reset(self) -> None:
        """(Its place is its checkpoint: nothing to forget.)"""

    async def _checkpoint(self, conn: AsyncConnection) -> int:
        await conn.execute(
            text("INSERT INTO projection_checkpoints (name) VALUES (:n) ON CONFLICT DO NOTHING"),
            {"n": CHECKPOINT},
        )
        seq = (
            await conn.execute(
                text("SELECT position FROM projection_checkpoints WHERE name = :n FOR UPDATE"),
                {"n": CHECKPOINT},
            )
        ).scalar_one()
        return int(seq)

    async def run_once(self) -> int:
        """Apply the next batch of the global stream; how many events (0: caught up).

        The batch is read with no transaction open (one held open would hold
        back every tail below the transaction horizon), then applied under
        the checkpoint's lock if the checkpoint has not moved meanwhile."""
        async with self.engine.begin() as conn:
            seq = await self._checkpoint(conn)
        batch = []
        reader = read_events(self.js, start=seq + 1 if seq else None, batch=self.batch_size,
                             wait_s=0.5)  # fmt: skip
        async with aclosing(reader):
            async for item in reader:
                batch.append(item)
                if len(batch) >= self.batch_size:
                    break
        if not batch:
            return 0
        async with self.engine.begin() as conn:
            if await self._checkpoint(conn) != seq:
                return 0  # another applier took this batch: read again
            positions: Counter[tuple[str, str]] = Counter()
            counts: Counter[tuple[str, str]] = Counter()
            for item in batch:
                e = item.event
                # A region's position: what its own accounts gained from the
                # others (its clearing accounts hold the other side).
                if parse_clearing_account(e.account_id) is None:
                    positions[(e.region, e.currency)] += e.amount
                counts[(e.region, e.currency)] += 1
                if e.type == EventType.ACCOUNT_OPENED:
                    await conn.execute(
                        text(
                            "INSERT INTO global_directory (account_id, region, currency, status, "
                            "opened_at, seq) VALUES (:a, :r, :c, 'open', :t, :s) "
                            "ON CONFLICT (account_id) DO NOTHING"
                        ),
                        {"a": e.account_id, "r": e.region, "c": e.currency,
                         "t": e.recorded_at, "s": item.seq},
                    )  # fmt: skip
                elif e.type in _STATUS:
                    await conn.execute(
                        text("UPDATE global_directory SET status = :st WHERE account_id = :a"),
                        {"st": _STATUS[EventType(e.type)], "a": e.account_id},
                    )
            for (region, currency), amount in positions.items():
                await conn.execute(
                    text(
                        "INSERT INTO global_positions (region, currency, balance, events) "
                        "VALUES (:r, :c, :b, :n) ON CONFLICT (region, currency) DO UPDATE SET "
                        "balance = global_positions.balance + excluded.balance, "
                        "events = global_positions.events + excluded.events"
                    ),
                    {"r": region, "c": currency, "b": amount, "n": counts[(region, currency)]},
                )
            await conn.execute(
                text(
                    "UPDATE projection_checkpoints SET position = :s, "
                    "events_applied = events_applied + :n, updated_at = now(), last_error = NULL "
                    "WHERE name = :name"
                ),
                {"s": batch[-1].seq, "n": len(batch), "name": CHECKPOINT},
            )
            return len(batch)

    async def catch_up(self) -> int:
        total = 0
        while applied := await self.run_once():
            total += applied
        return total

    async def rebuild(self) -> int:
        """Forget everything and apply the global stream from its start."""
        async with self.engine.begin() as conn:
            await self._checkpoint(conn)
            await conn.execute(text("DELETE FROM global_directory"))
            await conn.execute(text("DELETE FROM global_positions"))
            await conn.execute(
                text(
                    "UPDATE projection_checkpoints SET position = 0, events_applied = 0, "
                    "updated_at = now() WHERE name = :n"
                ),
                {"n": CHECKPOINT},
            )
        return await self.catch_up()

    async def status(self) -> DirectoryStatus:
        async with self.engine.connect() as conn:
            seq = (
                await conn.execute(
                    text("SELECT position FROM projection_checkpoints WHERE name = :n"),
                    {"n": CHECKPOINT},
                )
            ).scalar()
            accounts = (await conn.execute(text("SELECT count(*) FROM global_directory"))).scalar()
        try:
            info = await jetstream_api(lambda: self.js.stream_info(GLOBAL_STREAM))
            last = int(info.state.last_seq)
        except NotFoundError:
            last = None
        applied = int(seq or 0)
        return DirectoryStatus(applied, last, None if last is None else max(0, last - applied),
                               int(accounts or 0))  # fmt: skip


async def positions(engine: AsyncEngine) -> dict[tuple[str, str], tuple[int, int]]:
    """(region, currency) -> (balance, events), as the directory holds them."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT region, currency, balance, events FROM global_positions")
        )
        return {(r.region, r.currency): (int(r.balance), int(r.events)) for r in rows}
