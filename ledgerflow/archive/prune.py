"""Pruning: remove archived events from the hot store, only after verification.

Off by default (LEDGERFLOW_ARCHIVE_PRUNE). Runs as the pruner role
(`ledgerflow_pruner`, LEDGERFLOW_PRUNER_DATABASE_URL), the only one that may
vouch for a segment and delete: a worker's app role can plan and record
segments, never verify them or prune. For every archived segment not yet
verified, in order: download the segment and its manifest again, check both
checksums against what PostgreSQL recorded, and check that every event of
the segment's range still in the hot store is byte-for-byte the archived one
(same event id, same hash). Only then is the segment marked verified.

The deletion itself is `ledger_prune_through` in the database (migration
0002, 0004): it writes each account's checkpoint (the version, balance and
hash its hot history continues from) and deletes, in one transaction, only
events at or below those checkpoints, never past what the read models have
applied or a reconciliation run has checked.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.messages import PruneOutput
from ledgerflow.archive.objectstore import ObjectMissing, ObjectStore
from ledgerflow.archive.segments import decode_segment, sha256_hex
from ledgerflow.domain.errors import ArchiveIntegrityError
from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import event_hashes_in_range


async def verify_segment_against_hot(
    engine: AsyncEngine, objects: ObjectStore, segment_no: int
) -> None:
    """Raise `ArchiveIntegrityError` unless the segment's objects and the hot
    store agree on every event of its range."""
    async with engine.connect() as conn:
        seg = (
            await conn.execute(
                text(
                    "SELECT segment_key, manifest_key, segment_sha256, manifest_sha256, "
                    "segment_version_id, manifest_version_id, "
                    "from_tx_id, from_position, to_tx_id, to_position, event_count "
                    "FROM archive_segments WHERE segment_no = :no AND status = 'archived'"
                ),
                {"no": segment_no},
            )
        ).one()
        hot = await event_hashes_in_range(
            conn,
            TailCursor(seg.from_tx_id, seg.from_position),
            TailCursor(seg.to_tx_id, seg.to_position),
        )
    try:
        body = await objects.get(seg.segment_key, seg.segment_version_id)
        manifest = await objects.get(seg.manifest_key, seg.manifest_version_id)
    except ObjectMissing as exc:
        raise ArchiveIntegrityError(f"archived segment {segment_no} is gone: {exc}") from exc
    if sha256_hex(body) != seg.segment_sha256:
        raise ArchiveIntegrityError(f"{seg.segment_key} no longer matches its recorded SHA-256")
    if sha256_hex(manifest) != seg.manifest_sha256:
        raise ArchiveIntegrityError(f"{seg.manifest_key} no longer matches its recorded SHA-256")
    archived = {e.event_id: e.hash for _, e in decode_segment(body)}
    if len(archived) != seg.event_count:
        raise ArchiveIntegrityError(
            f"{seg.segment_key} holds {len(archived)} events, not {seg.event_count}"
        )
    for event_id, account_id, version, hash_ in hot:
        if archived.get(event_id) != hash_:
            raise ArchiveIntegrityError(
                f"account {account_id!r} version {version} in the hot store "
                f"differs from {seg.segment_key}"
            )


async def prune(engine: AsyncEngine, objects: ObjectStore) -> PruneOutput:
    async with engine.connect() as conn:
        pending = (
            await conn.execute(
                text(
                    "SELECT segment_no FROM archive_segments "
                    "WHERE status = 'archived' AND verified_at IS NULL ORDER BY segment_no"
                )
            )
        ).scalars()
        to_verify = list(pending)
    for segment_no in to_verify:
        await verify_segment_against_hot(engine, objects, segment_no)
        async with engine.begin() as conn:
            # Only the pruner role may vouch for a segment (migration 0004).
            await conn.execute(text("SELECT ledger_mark_segment_verified(:no)"), {"no": segment_no})
    async with engine.begin() as conn:
        # The newest verified segment that the read models have fully applied,
        # a reconciliation run has checked and, once a relay has published
        # anything, the event stream carries; everything up to it is
        # prunable (the function re-checks the first three).
        target = (
            await conn.execute(
                text(
                    "SELECT max(s.segment_no) FROM archive_segments s, projection_checkpoints p, "
                    "(SELECT tx_id, position FROM reconciled_through "
                    " ORDER BY tx_id DESC, position DESC LIMIT 1) r "
                    "WHERE p.name = 'views' AND s.verified_at IS NOT NULL "
                    "AND (s.to_tx_id, s.to_position) <= (p.tx_id, p.position) "
                    "AND (s.to_tx_id, s.to_position) <= (r.tx_id, r.position) "
                    "AND NOT EXISTS (SELECT 1 FROM projection_checkpoints q "
                    "  WHERE q.name = 'stream' AND (s.to_tx_id, s.to_position) "
                    "  > (q.tx_id, q.position)) "
                    "AND NOT EXISTS (SELECT 1 FROM archive_segments u "
                    "  WHERE u.segment_no <= s.segment_no AND u.verified_at IS NULL)"
                )
            )
        ).scalar()
        first = (
            await conn.execute(
                text("SELECT min(segment_no) FROM archive_segments WHERE pruned_at IS NULL")
            )
        ).scalar()
    deleted = 0
    if target is not None and first is not None:
        # One segment per transaction: short transactions, and a crash in the
        # middle leaves a consistent prefix pruned.
        for segment_no in range(first, target + 1):
            async with engine.begin() as conn:
                await conn.execute(text("SET LOCAL statement_timeout = '10min'"))
                deleted += (
                    await conn.execute(text("SELECT ledger_prune_through(:no)"), {"no": segment_no})
                ).scalar_one()
    return PruneOutput(len(to_verify), target, deleted)
