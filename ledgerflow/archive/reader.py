"""Reading an account's archived events back from the object store.

Used once an account's early history has been pruned from the hot store:
`archive_account_index` says which segments hold the account's events and
over which instants, so a query downloads only the segments it needs (and
none at all when a whole segment's last balance answers it). Every download
is checked against the SHA-256 recorded when it was archived.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.archive.objectstore import ObjectMissing, ObjectStore, ObjectStoreUnavailable
from ledgerflow.archive.segments import decode_segment, sha256_hex
from ledgerflow.domain.errors import ArchiveIntegrityError, ArchiveUnavailable
from ledgerflow.domain.model import Event


@dataclass(frozen=True)
class Checkpoint:
    """Where an account's hot history continues after pruning."""

    account_id: str
    version: int
    balance: int
    hash: str
    recorded_at: datetime
    #: What the account's open holds reserved at that version.
    pending: int = 0


async def checkpoint_of(engine: AsyncEngine, account_id: str) -> Checkpoint | None:
    async with engine.connect() as conn:
        return await read_checkpoint(conn, account_id)


async def read_checkpoint(conn: AsyncConnection, account_id: str) -> Checkpoint | None:
    """The account's checkpoint as the caller's snapshot sees it. A reader
    that also reads the account's hot events must read both in one snapshot:
    a prune committing between two reads would otherwise count the versions
    it moved twice, or not at all (issue 12, finding 11; issue 13, finding 2)."""
    row = (
        await conn.execute(
            text(
                "SELECT account_id, version, balance, hash, recorded_at, pending "
                "FROM account_checkpoints WHERE account_id = :a"
            ),
            {"a": account_id},
        )
    ).first()
    return Checkpoint(*row) if row else None


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One read-only REPEATABLE READ snapshot: every statement on it sees the
    same committed state, whatever commits meanwhile."""
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        try:
            yield conn
        finally:
            await conn.rollback()


class ArchiveReader:
    def __init__(self, engine: AsyncEngine, objects: ObjectStore, cache_segments: int = 4) -> None:
        self.engine = engine
        self.objects = objects
        self.cache_segments = cache_segments
        self._cache: OrderedDict[int, list[Event]] = OrderedDict()

    async def segment(self, segment_no: int) -> list[Event]:
        if segment_no in self._cache:
            self._cache.move_to_end(segment_no)
            return self._cache[segment_no]
        async with self.engine.connect() as conn:
            key, sha, version = (
                await conn.execute(
                    text(
                        "SELECT segment_key, segment_sha256, segment_version_id "
                        "FROM archive_segments WHERE segment_no = :no AND status = 'archived'"
                    ),
                    {"no": segment_no},
                )
            ).one()
        try:
            body = await self.objects.get(key, version)
        except ObjectStoreUnavailable as exc:
            raise ArchiveUnavailable(f"the archive is unreachable: {exc}") from exc
        except ObjectMissing as exc:
            raise ArchiveIntegrityError(f"archived segment {segment_no} is gone: {exc}") from exc
        if sha256_hex(body) != sha:
            raise ArchiveIntegrityError(f"{key} does not match its recorded SHA-256 {sha}")
        events = [e for _, e in decode_segment(body)]
        self._cache[segment_no] = events
        if len(self._cache) > self.cache_segments:
            self._cache.popitem(last=False)
        return events

    async def last_balance(
        self, account_id: str, instant: datetime, *, strict: bool
    ) -> tuple[int, int] | None:
        """(version, balance_after) of the account's last archived event at or
        before `instant` (strictly before when `strict`), or None."""
        state = await self.last_state(account_id, instant, strict=strict)
        return None if state is None else (state[0], state[1])

    async def last_state(
        self, account_id: str, instant: datetime, *, strict: bool
    ) -> tuple[int, int, int] | None:
        """`last_balance` with the pending amount after that event."""
        before = "<" if strict else "<="
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT segment_no, last_version, last_balance, "
                        "coalesce(last_pending, 0) AS last_pending, "
                        f"last_recorded_at {before} :t AS whole "
                        "FROM archive_account_index "
                        f"WHERE account_id = :a AND first_recorded_at {before} :t"
                    ),
                    {"a": account_id, "t": instant},
                )
            ).all()
        best: tuple[int, int, int] | None = None
        for row in rows:
            if row.whole:  # the whole segment is before the instant: no download
                candidate = (row.last_version, row.last_balance, row.last_pending)
                best = candidate if best is None or candidate > best else best
                continue
            for e in await self.segment(row.segment_no):
                if e.account_id == account_id and (
                    e.recorded_at < instant if strict else e.recorded_at <= instant
                ):
                    candidate = (e.version, e.balance_after, e.pending_after)
                    best = candidate if best is None or candidate > best else best
        return best

    async def events(
        self, account_id: str, start: datetime | None, end: datetime, through_version: int
    ) -> list[Event]:
        """The account's archived events recorded in [start, end] (from the first
        when `start` is None) with version <= `through_version`, by version."""
        async with self.engine.connect() as conn:
            segments = (
                await conn.execute(
                    text(
                        "SELECT segment_no FROM archive_account_index WHERE account_id = :a "
                        "AND first_recorded_at <= :end "
                        "AND (CAST(:start AS timestamptz) IS NULL OR last_recorded_at >= :start) "
                        "AND first_version <= :v ORDER BY segment_no"
                    ),
                    {"a": account_id, "start": start, "end": end, "v": through_version},
                )
            ).scalars()
            wanted = list(segments)
        found: dict[int, Event] = {}
        for segment_no in wanted:
            for e in await self.segment(segment_no):
                if (
                    e.account_id == account_id
                    and e.version <= through_version
                    and (start is None or e.recorded_at >= start)
                    and e.recorded_at <= end
                ):
                    found[e.version] = e
        return [found[v] for v in sorted(found)]
