"""`verify` from PostgreSQL alone: every pruned range is a recorded,
digest-chained, verified archive segment.

Pruning deletes hot events and leaves, per account, a checkpoint that the
hot chain resumes from; `verify` starts each chain there. That is sound
only if the checkpoint itself is backed by the archive. This check ties
them together without S3 (`archive verify` then proves the objects):

* the segments are contiguous: numbers 1, 2, 3, ..., archive sequence and
  global-order ranges that join up;
* each archived segment's recorded manifest hashes to its recorded
  `manifest_sha256`, describes that segment (number, sequence, count), and
  its digest is SHA-256(previous digest || manifest_sha256) from the genesis;
* only verified segments are pruned;
* every checkpoint names a pruned segment, and the account's archive index
  says the checkpoint's version was archived at or before it.

A forged segment record (issue 12, finding 3) fails at least one of these
unless it was forged with full knowledge of the chain, and then `archive
verify` finds its objects missing from S3.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledgerflow.archive.segments import GENESIS_DIGEST, chain_digest
from ledgerflow.audit.verify import Finding, VerifyReport
from ledgerflow.domain.model import canonical_json

CHECK = "archive-record"


async def check_archive_records(conn: AsyncConnection, report: VerifyReport) -> None:
    def finding(problem: str, account: str | None = None, version: int | None = None) -> None:
        report.findings.append(Finding(report.region, CHECK, account, version, problem))

    segments = (
        await conn.execute(
            text(
                "SELECT segment_no, status, first_seq, last_seq, event_count, from_tx_id, "
                "from_position, to_tx_id, to_position, manifest_sha256, prev_digest, digest, "
                "manifest, verified_at, pruned_at FROM archive_segments ORDER BY segment_no"
            )
        )
    ).all()
    by_no: dict[int, Any] = {}
    prev_digest, prev_last_seq, prev_to = GENESIS_DIGEST, 0, (0, 0)
    for expected_no, seg in enumerate(segments, start=1):
        by_no[seg.segment_no] = seg
        where = f"segment {seg.segment_no}"
        if seg.segment_no != expected_no:
            finding(f"segment {expected_no} is missing; the next recorded is {seg.segment_no}")
        if seg.first_seq != prev_last_seq + 1 or (seg.from_tx_id, seg.from_position) != prev_to:
            finding(f"{where} does not start where the segment before it ended")
        prev_last_seq, prev_to = seg.last_seq, (seg.to_tx_id, seg.to_position)
        if seg.pruned_at is not None and seg.verified_at is None:
            finding(f"{where} is pruned but was never verified")
        if seg.status != "archived":
            continue
        manifest = seg.manifest or {}
        if hashlib.sha256(canonical_json(manifest)).hexdigest() != seg.manifest_sha256:
            finding(f"{where}: its recorded manifest does not hash to its manifest_sha256")
        described = (
            manifest.get("segment_no"),
            manifest.get("first_seq"),
            manifest.get("event_count"),
        )
        if described != (seg.segment_no, seg.first_seq, seg.event_count):
            finding(f"{where}: its manifest describes another segment")
        try:
            expected_digest = chain_digest(prev_digest, seg.manifest_sha256)
        except ValueError:
            expected_digest = None
        if seg.prev_digest != prev_digest or seg.digest != expected_digest:
            finding(f"{where}: its digest does not chain from the segment before it")
        prev_digest = seg.digest
    checkpoints = await conn.execute(
        text(
            "SELECT k.account_id, k.version, k.segment_no, EXISTS ("
            "  SELECT 1 FROM archive_account_index i WHERE i.account_id = k.account_id"
            "  AND i.segment_no <= k.segment_no AND i.first_version <= k.version"
            "  AND k.version <= i.last_version) AS indexed "
            "FROM account_checkpoints k ORDER BY k.account_id"
        )
    )
    for cp in checkpoints:
        named = by_no.get(cp.segment_no)
        if named is None or named.status != "archived" or named.pruned_at is None:
            finding(
                f"the prune checkpoint names segment {cp.segment_no}, which is not an "
                "archived, pruned segment",
                cp.account_id,
                cp.version,
            )
        elif not cp.indexed:
            finding(
                f"the prune checkpoint is not among the versions archived by segment "
                f"{cp.segment_no} or before",
                cp.account_id,
                cp.version,
            )
