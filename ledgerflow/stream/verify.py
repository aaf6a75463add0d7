"""The global stream against the regional stores: counts, hashes, chain links.

For each region, the region's messages in the global stream are read in
order and compared with the region's hot store, below what the relay has
published (its checkpoint): every event exactly once (`missing`,
`duplicates`), in the region's order (`out_of_order`), carrying the hash the
store holds (`altered`) and a hash that is its content's (`bad_hash`), each
account's events linked, each to the one before it (`broken_links`). Events
pruned from the hot store are counted as `archived`, not compared.

The global stream sources each region's stream asynchronously, seconds
behind the relay at most. An event the relay has published but the global
stream has not yet sourced is not lost, so the proof first waits (up to
`settle_s`) for the global stream to hold as many of the region's messages
as the region's stream does; what is still short after that is reported as
`unsourced` and its events as `missing`, for a global stream that far
behind breaks the promise of "within seconds".
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.store.base import TailCursor
from ledgerflow.stream.consumer import read_events
from ledgerflow.stream.relay import CHECKPOINT
from ledgerflow.stream.status import stream_counts


@dataclass
class RegionStreamReport:
    region: str
    #: Hot events up to the relay's checkpoint, and their messages in the global stream.
    events: int = 0
    messages: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    altered: int = 0
    bad_hash: int = 0
    broken_links: int = 0
    #: Messages of events no longer in the hot store (pruned to the archive).
    archived: int = 0
    #: Messages in the region's stream the global stream had not sourced when read.
    unsourced: int = 0
    relayed_through: TailCursor = field(default_factory=TailCursor)
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.duplicates or self.out_of_order or self.altered
                    or self.bad_hash or self.broken_links)  # fmt: skip

    def count(self, name: str, example: str) -> None:
        setattr(self, name, getattr(self, name) + 1)
        if len(self.examples) < 10:
            self.examples.append(f"{name}: {example}")


#: How long the proof waits for the global stream to source what the relay published.
SETTLE_S = 10.0


async def _settled(js: JetStreamContext, region: str, patience_s: float) -> int:
    """Wait until the global stream holds every message of the region's
    stream; the shortfall when patience ran out (0 once settled)."""
    deadline = asyncio.get_running_loop().time() + patience_s
    while True:
        own, sourced = await stream_counts(js, region)
        short = max(0, (own or 0) - (sourced or 0))
        if not short or asyncio.get_running_loop().time() >= deadline:
            return short
        await asyncio.sleep(0.1)


async def verify_region_stream(
    engine: AsyncEngine, region: str, js: JetStreamContext, *, settle_s: float = SETTLE_S
) -> RegionStreamReport:
    report = RegionStreamReport(region)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT tx_id, position FROM projection_checkpoints WHERE name = :n"),
                {"n": CHECKPOINT},
            )
        ).first()
        through = TailCursor(row.tx_id, row.position) if row else TailCursor(0, 0)
        report.relayed_through = through
        rows = await conn.execute(
            text(
                "SELECT event_id::text AS event_id, hash, tx_id, position FROM events "
                "ORDER BY tx_id, position"
            )
        )
        hot = {r.event_id: (r.hash, (r.tx_id, r.position)) for r in rows}
        await conn.rollback()
    report.unsourced = await _settled(js, region, settle_s)
    due = [e for e, (_, place) in hot.items() if place <= (through.tx_id, through.position)]
    report.events = len(due)
    seen: Counter[str] = Counter()
    last_place: tuple[int, int] = (0, 0)
    heads: dict[str, str] = {}
    async for item in read_events(js, region=region):
        event = item.event
        report.messages += 1
        seen[event.event_id] += 1
        if seen[event.event_id] > 1:
            report.count("duplicates", f"{event.event_id} (seq {item.seq})")
            continue
        place = (event.tx_id or 0, event.position or 0)
        if place <= last_place:
            report.count("out_of_order", f"{event.event_id} at {place} after {last_place}")
        last_place = max(last_place, place)
        if not item.verified:
            report.count("bad_hash", f"{event.event_id}: its hash is not its content's")
        stored = hot.get(event.event_id)
        if stored is None:
            report.archived += 1
        elif stored[0] != event.hash:
            report.count("altered", f"{event.event_id}: the store holds another hash")
        previous = heads.get(event.account_id)
        if previous is not None and event.prev_hash != previous:
            report.count("broken_links", f"{event.event_id} of {event.account_id}")
        heads[event.account_id] = event.hash
    for event_id in due:
        if event_id not in seen:
            report.count("missing", event_id)
    return report
