"""Archiving one region's events to the object store: plan, upload, record.

The three steps are separate activities so that each retries on its own, and
each is idempotent, so a rerun after a crash at any point neither duplicates
nor skips a segment:

1. `plan` fixes the next segment's exact range in PostgreSQL (status
   `planned`) before anything is uploaded, or returns the segment already in
   flight. A rerun therefore rebuilds the same segment, byte for byte.
2. `upload` writes the segment, its manifest and its digest link, each with
   its SHA-256 (S3 checks it on receipt) under object lock, then reads each
   back and compares. An object already there with the same checksum is the
   earlier attempt's upload and is kept; a different one is an integrity
   error, never overwritten.
3. `record` stores the manifest and digest in PostgreSQL and marks the
   segment `archived`, which is what marks its events archived (events are
   immutable; the archived set is the segments' ranges).

Pruning (`ledgerflow.archive.prune`) is a separate, later step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.messages import (
    RecordSegmentOutput,
    SegmentPlan,
    SegmentUpload,
)
from ledgerflow.archive.objectstore import (
    ObjectExists,
    ObjectMissing,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailable,
)
from ledgerflow.archive.segments import (
    GENESIS_DIGEST,
    SegmentKeys,
    build_digest,
    build_manifest,
    encode_segment,
    segment_keys,
    sha256_hex,
)
from ledgerflow.config import Settings
from ledgerflow.domain.errors import ArchiveIntegrityError, ArchiveMisconfigured
from ledgerflow.domain.model import canonical_json
from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import events_in_range, index_segment_accounts, places_below_horizon


@dataclass(frozen=True)
class ArchivePolicy:
    """How a region archives: from `Settings` (see `ArchivePolicy.from_settings`)."""

    #: Only events at least this old are archived (never inside the
    #: reconciliation window, which the settings enforce).
    min_age: timedelta
    segment_events: int
    #: Object lock retention; None writes without a lock.
    retention: timedelta | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchivePolicy:
        retention = settings.archive_retention
        return cls(
            min_age=settings.archive_min_age,
            segment_events=settings.archive_segment_events,
            retention=retention if retention.total_seconds() > 0 else None,
        )


def plan_from_row(row: Row[Any]) -> SegmentPlan:
    m = row._mapping
    return SegmentPlan(
        region=m["region"],
        segment_no=m["segment_no"],
        first_seq=m["first_seq"],
        last_seq=m["last_seq"],
        event_count=m["event_count"],
        from_tx_id=m["from_tx_id"],
        from_position=m["from_position"],
        to_tx_id=m["to_tx_id"],
        to_position=m["to_position"],
        first_recorded_at=m["first_recorded_at"],
        cutoff=m["cutoff"],
        segment_key=m["segment_key"],
        manifest_key=m["manifest_key"],
        digest_key=m["digest_key"],
        retain_until=m["retain_until"],
    )


_PLAN_COLUMNS = (
    "CAST(:region AS text) AS region, segment_no, first_seq, last_seq, event_count, "
    "from_tx_id, from_position, to_tx_id, to_position, first_recorded_at, cutoff, "
    "segment_key, manifest_key, digest_key, retain_until"
)


class Placed(Protocol):
    """Where an event sits in the global order, and when it was recorded."""

    @property
    def tx_id(self) -> int | None: ...

    @property
    def recorded_at(self) -> datetime: ...


P = TypeVar("P", bound=Placed)


def whole_transactions(events: Sequence[P], cutoff: datetime, limit: int) -> list[P]:
    """The longest prefix of `events` made of whole transactions, all recorded
    at or before `cutoff`, of at most `limit` events (but at least one whole
    transaction, however large). `events` must end on a transaction boundary."""
    chosen: list[P] = []
    i = 0
    while i < len(events):
        j = i
        while j < len(events) and events[j].tx_id == events[i].tx_id:
            j += 1
        group = events[i:j]
        if any(e.recorded_at > cutoff for e in group):
            break
        if chosen and len(chosen) + len(group) > limit:
            break
        chosen.extend(group)
        i = j
    return chosen


class Archiver:
    def __init__(
        self, engine: AsyncEngine, objects: ObjectStore, region: str, policy: ArchivePolicy
    ) -> None:
        self.engine = engine
        self.objects = objects
        self.region = region
        self.policy = policy

    async def require_lock(self) -> None:
        """With a retention set, the bucket must lock: a configuration decision
        checked before anything is written, never a silent fallback."""
        if self.policy.retention is None:
            return
        try:
            await self.objects.require_object_lock()
        except ObjectStoreUnavailable:
            raise
        except ObjectStoreError as exc:
            raise ArchiveMisconfigured(str(exc)) from exc

    async def plan(self) -> SegmentPlan | None:
        """The segment in flight, or a newly planned next one; None when
        nothing past the cut-off is left to archive."""
        await self.require_lock()
        async with self.engine.begin() as conn:
            planned = (
                await conn.execute(
                    text(f"SELECT {_PLAN_COLUMNS} FROM archive_segments WHERE status = 'planned'"),
                    {"region": self.region},
                )
            ).first()
            if planned is not None:
                return plan_from_row(planned)
            last = (
                await conn.execute(
                    text(
                        "SELECT segment_no, last_seq, to_tx_id, to_position FROM archive_segments "
                        "ORDER BY segment_no DESC LIMIT 1"
                    )
                )
            ).first()
            after = TailCursor(last.to_tx_id, last.to_position) if last else TailCursor()
            segment_no = last.segment_no + 1 if last else 1
            first_seq = last.last_seq + 1 if last else 1
            cutoff = (
                await conn.execute(
                    text("SELECT now() - make_interval(secs => :s)"),
                    {"s": self.policy.min_age.total_seconds()},
                )
            ).scalar_one()
            # Below the transaction horizon only (as `read_events_below_horizon`):
            # a planned range can never gain an event that commits later. Only
            # the places are read here; `upload` reads the events.
            # A segment never splits a transaction, so both legs of a
            # transfer always land in the same segment.
            places = await places_below_horizon(conn, after, self.policy.segment_events)
            chosen = whole_transactions(places, cutoff, self.policy.segment_events)
            if not chosen:
                return None
            last_event = chosen[-1]
            # Dated by the earliest instant in the segment, the same value its
            # manifest and `first_recorded_at` carry: the first event in the
            # global order may be recorded a moment later, across midnight UTC
            # (issue 13, finding 10).
            earliest = min(e.recorded_at for e in chosen)
            keys = segment_keys(
                self.region, segment_no, first_seq, first_seq + len(chosen) - 1, earliest
            )
            retain_days = self.policy.retention
            # ON CONFLICT: a concurrent run planned the same segment number
            # first; the SELECT below then returns its plan, not ours.
            await conn.execute(
                text(
                    "INSERT INTO archive_segments (segment_no, status, first_seq, last_seq, "
                    "event_count, from_tx_id, from_position, to_tx_id, to_position, "
                    "first_recorded_at, last_recorded_at, cutoff, segment_key, manifest_key, "
                    "digest_key, retain_until) VALUES (:no, 'planned', :fs, :ls, :n, :ftx, :fpos, "
                    ":ttx, :tpos, :first_at, :last_at, :cutoff, :sk, :mk, :dk, "
                    "CASE WHEN CAST(:retain_s AS double precision) IS NULL THEN NULL "
                    "ELSE now() + make_interval(secs => :retain_s) END) ON CONFLICT DO NOTHING"
                ),
                {
                    "no": segment_no,
                    "fs": first_seq,
                    "ls": first_seq + len(chosen) - 1,
                    "n": len(chosen),
                    "ftx": after.tx_id,
                    "fpos": after.position,
                    "ttx": last_event.tx_id,
                    "tpos": last_event.position,
                    "first_at": earliest,
                    "last_at": max(e.recorded_at for e in chosen),
                    "cutoff": cutoff,
                    "sk": keys.segment,
                    "mk": keys.manifest,
                    "dk": keys.digest,
                    "retain_s": retain_days.total_seconds() if retain_days else None,
                },
            )
            row = (
                await conn.execute(
                    text(f"SELECT {_PLAN_COLUMNS} FROM archive_segments WHERE segment_no = :no"),
                    {"region": self.region, "no": segment_no},
                )
            ).one()
            return plan_from_row(row)

    async def upload(self, plan: SegmentPlan) -> SegmentUpload:
        async with self.engine.connect() as conn:
            events = await events_in_range(
                conn,
                TailCursor(plan.from_tx_id, plan.from_position),
                TailCursor(plan.to_tx_id, plan.to_position),
            )
            prev = (
                await conn.execute(
                    text("SELECT digest FROM archive_segments WHERE segment_no = :no"),
                    {"no": plan.segment_no - 1},
                )
            ).scalar()
        if len(events) != plan.event_count:
            raise ArchiveIntegrityError(
                f"segment {plan.segment_no} of region {plan.region} was planned with "
                f"{plan.event_count} events but its range now holds {len(events)}"
            )
        if plan.segment_no > 1 and prev is None:
            raise ArchiveIntegrityError(
                f"segment {plan.segment_no - 1} of region {plan.region} has no digest"
            )
        prev_digest = prev or GENESIS_DIGEST
        body = encode_segment(plan.first_seq, events)
        segment_sha = sha256_hex(body)
        segment_version = await self.put_verified(
            plan.segment_key, body, segment_sha, plan.retain_until
        )
        manifest = build_manifest(
            region=plan.region,
            segment_no=plan.segment_no,
            first_seq=plan.first_seq,
            after=(plan.from_tx_id, plan.from_position),
            cutoff=plan.cutoff,
            # The keys the segment is written under, never recomputed: the
            # manifest must name the object that exists.
            keys=SegmentKeys(plan.segment_key, plan.manifest_key, plan.digest_key),
            segment_sha256=segment_sha,
            segment_bytes=len(body),
            events=events,
        )
        manifest_body = canonical_json(manifest)
        manifest_sha = sha256_hex(manifest_body)
        manifest_version = await self.put_verified(
            plan.manifest_key, manifest_body, manifest_sha, plan.retain_until
        )
        link = build_digest(
            plan.region, plan.segment_no, plan.manifest_key, manifest_sha, prev_digest
        )
        link_body = canonical_json(link)
        digest_version = await self.put_verified(
            plan.digest_key, link_body, sha256_hex(link_body), plan.retain_until
        )
        return SegmentUpload(
            segment_sha256=segment_sha,
            segment_bytes=len(body),
            manifest_sha256=manifest_sha,
            prev_digest=prev_digest,
            digest=link["digest"],
            manifest=manifest,
            segment_version_id=segment_version,
            manifest_version_id=manifest_version,
            digest_version_id=digest_version,
        )

    async def put_verified(
        self, key: str, body: bytes, sha256: str, retain_until: datetime | None
    ) -> str | None:
        """Upload unless the same bytes are already there, then read back and
        compare; returns the version that holds them (None: the store keeps no
        versions), which is the one the archive reads from then on."""
        written: str | None = None
        existing = await self.objects.head(key)
        if existing is None:
            # ObjectExists: an earlier attempt's write landed after our head;
            # the read-back below decides whether it is the same bytes.
            with contextlib.suppress(ObjectExists):
                written = (
                    await self.objects.put_immutable(key, body, sha256, retain_until)
                ).version_id
        if written is None:
            # Written before (an earlier attempt): its first version is ours; a
            # later one is somebody else's writing over the key.
            versions = await self.objects.versions(key)
            written = versions[0] if versions else None
        try:
            stored = await self.objects.get(key, written)
        except ObjectMissing as exc:
            raise ArchiveIntegrityError(f"{key} vanished right after its upload") from exc
        if sha256_hex(stored) != sha256:
            raise ArchiveIntegrityError(
                f"{key} already holds other bytes (SHA-256 {sha256_hex(stored)}, not "
                f"{sha256}): refusing to overwrite archived history"
            )
        return written

    async def record(self, plan: SegmentPlan, upload: SegmentUpload) -> RecordSegmentOutput:
        async with self.engine.begin() as conn:
            # The row lock makes a concurrent record of the same segment wait,
            # then find it archived and return the same answer.
            row = (
                await conn.execute(
                    text(
                        "SELECT status, digest FROM archive_segments WHERE segment_no = :no "
                        "FOR UPDATE"
                    ),
                    {"no": plan.segment_no},
                )
            ).one()
            if row.status == "archived":
                if row.digest != upload.digest:
                    raise ArchiveIntegrityError(
                        f"segment {plan.segment_no} is recorded with digest {row.digest}, "
                        f"not {upload.digest}"
                    )
                return RecordSegmentOutput(
                    plan.segment_no, plan.last_seq, plan.event_count, upload.digest
                )
            # Which accounts the segment holds, for point-in-time reads after pruning.
            await index_segment_accounts(
                conn,
                plan.segment_no,
                TailCursor(plan.from_tx_id, plan.from_position),
                TailCursor(plan.to_tx_id, plan.to_position),
            )
            await conn.execute(
                text(
                    "UPDATE archive_segments SET status = 'archived', segment_sha256 = :ss, "
                    "manifest_sha256 = :ms, prev_digest = :pd, digest = :d, "
                    "manifest = CAST(:m AS jsonb), archived_at = now(), "
                    "segment_version_id = :sv, manifest_version_id = :mv, "
                    "digest_version_id = :dv WHERE segment_no = :no"
                ),
                {
                    "no": plan.segment_no,
                    "ss": upload.segment_sha256,
                    "ms": upload.manifest_sha256,
                    "pd": upload.prev_digest,
                    "d": upload.digest,
                    "m": canonical_json(upload.manifest).decode(),
                    "sv": upload.segment_version_id,
                    "mv": upload.manifest_version_id,
                    "dv": upload.digest_version_id,
                },
            )
        return RecordSegmentOutput(plan.segment_no, plan.last_seq, plan.event_count, upload.digest)

    async def archive_all(self, max_segments: int | None = None) -> list[RecordSegmentOutput]:
        """Run the three steps in a loop, in this process (benchmarks, tests).
        The ArchiveWorkflow runs the same steps as activities."""
        done: list[RecordSegmentOutput] = []
        while max_segments is None or len(done) < max_segments:
            plan = await self.plan()
            if plan is None:
                break
            done.append(await self.record(plan, await self.upload(plan)))
        return done
