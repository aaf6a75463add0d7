"""`archive verify`: download the archive again and prove it is whole and unaltered.

For each archived segment of a region, in order:

1. the segments are contiguous: numbers 1, 2, 3, ..., archive sequence
   numbers without a gap or overlap, global-order ranges that join up;
2. the segment, its manifest and its digest link are in the object store and
   match the SHA-256s recorded in PostgreSQL when they were archived;
3. the manifest is the one recorded, and it describes the segment: recomputed
   from the downloaded events it is identical (counts, ranges, first and last
   hash, per-currency sums), and each currency's postings net to zero (a
   segment holds whole transactions, so both legs of each transfer);
4. the digest chain: each link names the previous digest and hashes it with
   its manifest's checksum;
5. every event's hash chain, across segments, in each account's version order;
6. the hot store agrees: each event of the range still in PostgreSQL is the
   archived one, each one no longer there is covered by its account's prune
   checkpoint, and each checkpoint is exactly the archived event at its version.

Every problem is reported as a `Finding`; it only reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.objectstore import ObjectMissing, ObjectStore
from ledgerflow.archive.segments import (
    GENESIS_DIGEST,
    ArchivedEvent,
    SegmentKeys,
    build_digest,
    build_manifest,
    chained_digest,
    decode_checkable,
    json_object,
    manifest_problem,
    sha256_hex,
)
from ledgerflow.audit.verify import Finding, VerifyReport, verify_region
from ledgerflow.domain.hashing import AccountChain, ChainBroken
from ledgerflow.domain.model import Event
from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import (
    event_hashes_digest,
    event_hashes_in_range,
    hashes_digest,
    is_hot_past,
)

#: Segments downloading while the one before them is checked.
FETCH_AHEAD = 3


@dataclass
class ArchiveVerifyReport:
    region: str
    segments_checked: int = 0
    events_checked: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.findings

    @property
    def events_per_second(self) -> float:
        return self.events_checked / self.seconds if self.seconds else 0.0


class AccountChains:
    """Per-account hash chains fed in the global order, which is not quite each
    account's version order: an event that arrives early waits in a small
    per-account buffer until the versions before it have been fed."""

    def __init__(self, report: ArchiveVerifyReport, checkpoints: dict[str, tuple[int, int, str]]):
        self.report = report
        self.checkpoints = checkpoints
        self.chains: dict[str, AccountChain] = {}
        self.waiting: dict[str, dict[int, tuple[Event | ArchivedEvent, bytes | None]]] = {}
        self.broken: set[str] = set()

    def feed(self, event: Event | ArchivedEvent, body: bytes | None = None) -> None:
        """The next event in the global order; `body`: its hashed bytes, where
        the caller has them (`decode_checkable`)."""
        if event.account_id in self.broken:
            return
        chain = self.chains.setdefault(event.account_id, AccountChain(event.account_id))
        waiting = self.waiting.setdefault(event.account_id, {})
        waiting[event.version] = (event, body)
        while chain.version + 1 in waiting:
            next_event, next_body = waiting.pop(chain.version + 1)
            try:
                chain.feed(next_event, next_body)
            except ChainBroken as exc:
                self.broken.add(event.account_id)
                self._finding(exc.check, exc.account_id, exc.version, exc.problem)
                return
            self._check_checkpoint(chain)
        if not waiting:
            del self.waiting[event.account_id]

    def feed_segment(
        self, events: Sequence[ArchivedEvent], manifest: dict[str, Any], where: str
    ) -> None:
        """A segment's events, after its manifest's sums: each currency's
        postings net to zero (a segment holds whole transactions)."""
        for currency, sums in (manifest.get("currencies") or {}).items():
            if sums.get("debits", 0) + sums.get("credits", 0) != 0:
                self._finding(
                    "double-entry", None, None, f"{where}: {currency} postings do not net to zero"
                )
        for event in events:
            self.feed(event, event.body)

    def _check_checkpoint(self, chain: AccountChain) -> None:
        cp = self.checkpoints.get(chain.account_id)
        if (
            cp is not None
            and cp[0] == chain.version
            and (cp[1], cp[2])
            != (
                chain.balance,
                chain.head,
            )
        ):
            self._finding(
                "checkpoint", chain.account_id, chain.version,
                f"the prune checkpoint says balance {cp[1]} and hash {cp[2][:12]}…; the "
                f"archive says {chain.balance} and {chain.head[:12]}…",
            )  # fmt: skip

    def _finding(
        self, check: str, account_id: str | None, version: int | None, problem: str
    ) -> None:
        self.report.findings.append(
            Finding(self.report.region, check, account_id, version, problem)
        )


async def verify_archive(
    engine: AsyncEngine, objects: ObjectStore, region: str
) -> ArchiveVerifyReport:
    report = ArchiveVerifyReport(region)
    started = time.perf_counter()

    def finding(
        check: str, problem: str, account: str | None = None, version: int | None = None
    ) -> None:
        report.findings.append(Finding(region, check, account, version, problem))

    async with engine.connect() as conn:
        segments = (
            await conn.execute(
                text("SELECT * FROM archive_segments WHERE status = 'archived' ORDER BY segment_no")
            )
        ).all()
        checkpoints = {
            r.account_id: (r.version, r.balance, r.hash)
            for r in await conn.execute(
                text("SELECT account_id, version, balance, hash FROM account_checkpoints")
            )
        }
    chains = AccountChains(report, checkpoints)
    prev_digest, prev_last_seq, prev_to = GENESIS_DIGEST, 0, (0, 0)
    # The next segments download (and their hot rows are read) while this one
    # is checked: the object store and PostgreSQL work while Python hashes.
    queued = iter(segments)
    ahead: deque[asyncio.Task[_Fetched]] = deque()

    def top_up() -> None:
        while len(ahead) < FETCH_AHEAD and (next_seg := next(queued, None)) is not None:
            ahead.append(asyncio.ensure_future(_fetch(engine, objects, next_seg)))

    top_up()
    try:
        for expected_no, seg in enumerate(segments, start=1):
            fetched = await ahead.popleft()
            top_up()
            where = f"segment {seg.segment_no} ({seg.segment_key})"
            report.segments_checked += 1
            if seg.segment_no != expected_no:
                finding("continuity", f"segment {expected_no} is missing; next is {seg.segment_no}")
            if seg.first_seq != prev_last_seq + 1:
                finding(
                    "continuity", f"{where} starts at seq {seg.first_seq}, not {prev_last_seq + 1}"
                )
            if (seg.from_tx_id, seg.from_position) != prev_to:
                finding(
                    "continuity", f"{where} does not start where segment {expected_no - 1} ended"
                )
            prev_last_seq, prev_to = seg.last_seq, (seg.to_tx_id, seg.to_position)
            if isinstance(fetched.bodies, ObjectMissing):
                finding("object", f"{where}: {fetched.bodies}")
                prev_digest = seg.digest
                continue
            body, manifest_body, link_body = fetched.bodies
            for key, written, there in zip(
                (seg.segment_key, seg.manifest_key, seg.digest_key),
                fetched.versions,
                fetched.there,
                strict=True,
            ):
                if written > 1:
                    finding(
                        "rewritten",
                        f"{where}: {key} was written again after it was archived "
                        f"({written} versions); the archive reads the one it recorded",
                    )
                if not there:
                    finding("object", f"{where}: {key} was deleted; its recorded version is kept")
            report.bytes_downloaded += len(body) + len(manifest_body) + len(link_body)
            body_sha256 = sha256_hex(body)
            if body_sha256 != seg.segment_sha256:
                finding("checksum", f"{where}: the segment's SHA-256 is not the one recorded")
            if sha256_hex(manifest_body) != seg.manifest_sha256:
                finding(
                    "checksum",
                    f"{where}: its manifest {seg.manifest_key} does not have the recorded SHA-256",
                )
            # (Not an object, it differs from the recorded one: reported below.)
            manifest = json_object(manifest_body) or {}
            if manifest != seg.manifest:
                finding("manifest", f"{where}: the stored manifest differs from the recorded one")
            # The digest chain.
            link = json_object(link_body) or {}
            expected_digest = chained_digest(prev_digest, seg.manifest_sha256)
            if link.get("prev_digest") != prev_digest or link.get("digest") != expected_digest:
                finding(
                    "digest-chain",
                    f"{where}: the digest link {seg.digest_key} does not chain from the previous",
                )
            elif expected_digest is None or link != build_digest(
                region, seg.segment_no, seg.manifest_key, seg.manifest_sha256, prev_digest
            ):
                finding(
                    "digest-chain",
                    f"{where}: the digest link {seg.digest_key} is not the one the archive wrote "
                    "(it names another region, segment, manifest or checksum)",
                )
            if seg.digest != expected_digest:
                finding("digest-chain", f"{where}: the recorded digest does not chain")
            prev_digest = seg.digest
            # The events themselves.
            try:
                # In a thread, so that the event loop meanwhile drives the
                # next segment's downloads and its hot rows' query.
                events, archived = await asyncio.to_thread(_decode, body)
            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                finding("segment", f"{where}: cannot be decoded ({exc})")
                continue
            if [e.seq for e in events] != list(
                range(seg.first_seq, seg.first_seq + len(events))
            ) or len(events) != (seg.event_count):
                finding(
                    "segment", f"{where}: its events are not seq {seg.first_seq}..{seg.last_seq}"
                )
            report.events_checked += len(events)
            if events:
                rebuilt = build_manifest(
                    region=region,
                    segment_no=seg.segment_no,
                    first_seq=seg.first_seq,
                    after=(seg.from_tx_id, seg.from_position),
                    cutoff=seg.cutoff,
                    keys=SegmentKeys(seg.segment_key, seg.manifest_key, seg.digest_key),
                    segment_sha256=body_sha256,
                    segment_bytes=len(body),
                    events=events,
                )
                if rebuilt != manifest:
                    finding("manifest", f"{where}: the manifest does not describe the segment")
            if manifest and (problem := manifest_problem(manifest)) is not None:
                # (Reported above as differing from the recorded one, too.)
                finding("manifest", f"{where}: its manifest {seg.manifest_key}: {problem}")
                manifest = {}
            chains.feed_segment(events, manifest, where)
            # Held to the hot store: at once when the two agree row for row;
            # otherwise (pruned, or not the same) event by event.
            if fetched.hot != archived:
                async with engine.connect() as conn:
                    hot = await event_hashes_in_range(
                        conn,
                        TailCursor(seg.from_tx_id, seg.from_position),
                        TailCursor(seg.to_tx_id, seg.to_position),
                    )
                _compare_with_hot(seg, events, hot, checkpoints, finding)
    finally:
        for task in ahead:
            task.cancel()
        await asyncio.gather(*ahead, return_exceptions=True)
    # Versions that arrived early and still wait must be hot, past the archive.
    async with engine.connect() as conn:
        for account_id, waiting in sorted(chains.waiting.items()):
            if account_id in chains.broken:
                continue
            missing = chains.chains[account_id].version + 1
            if not await is_hot_past(conn, account_id, missing, TailCursor(*prev_to)):
                finding(
                    "hash-chain",
                    f"version {missing} is in no segment (later versions up to {max(waiting)} are)",
                    account_id,
                    missing,
                )
    for account_id, (version, _, _) in sorted(checkpoints.items()):
        chain = chains.chains.get(account_id)
        if account_id not in chains.broken and (chain is None or chain.version < version):
            finding("checkpoint", "the prune checkpoint is beyond the archive", account_id, version)
    report.seconds = time.perf_counter() - started
    return report


def _decode(body: bytes) -> tuple[list[ArchivedEvent], tuple[int, str]]:
    """A segment's events, and their count and `hashes_digest` to hold
    against the hot store's."""
    events = decode_checkable(body)
    digest = hashes_digest((e.event_id, e.account_id, e.version, e.hash) for e in events)
    return events, (len(events), digest)


@dataclass
class _Fetched:
    """One segment's objects (or why they could not be read), how many
    versions each key has and whether it is still there, and how many events
    the hot store has in its range with their `hashes_digest`."""

    bodies: tuple[bytes, bytes, bytes] | ObjectMissing
    versions: list[int]
    there: list[bool]
    hot: tuple[int, str]


async def _fetch(engine: AsyncEngine, objects: ObjectStore, seg: Row[Any]) -> _Fetched:
    """Everything `verify_archive` reads for one segment, read at once."""
    keys = (seg.segment_key, seg.manifest_key, seg.digest_key)
    recorded = (seg.segment_version_id, seg.manifest_version_id, seg.digest_version_id)

    async def hot() -> tuple[int, str]:
        async with engine.connect() as conn:
            return await event_hashes_digest(
                conn,
                TailCursor(seg.from_tx_id, seg.from_position),
                TailCursor(seg.to_tx_id, seg.to_position),
            )

    # The versions recorded when they were written and read back: a newer
    # version over one of them is reported, never read. Everything is asked
    # for at once.
    got, heads, hot_rows = await asyncio.gather(
        asyncio.gather(
            *(objects.get(key, version) for key, version in zip(keys, recorded, strict=True)),
            return_exceptions=True,
        ),
        asyncio.gather(*(objects.head(key) for key in keys)),
        hot(),
    )
    missing = next((g for g in got if isinstance(g, ObjectMissing)), None)
    if missing is not None:
        return _Fetched(missing, [], [], (0, ""))
    for g in got:
        if isinstance(g, BaseException):
            raise g
    body, manifest_body, link_body = (g for g in got if isinstance(g, bytes))
    # The versions are listed only where the newest is not the recorded one
    # (or the key is deleted). None can come before the recorded one: the
    # archive writes a key only where it is absent, and otherwise takes its
    # first version. A listing per key per segment cost a copy of the bucket
    # in moto's memory each time (a 1M-event verify ran it out of 24 GB).
    written = [
        1
        if version is not None and head is not None and head.version_id == version
        else len(await objects.versions(key))
        for key, version, head in zip(keys, recorded, heads, strict=True)
    ]
    return _Fetched(
        (body, manifest_body, link_body), written, [h is not None for h in heads], hot_rows
    )


def _compare_with_hot(
    seg: Row[Any],
    events: Sequence[Event | ArchivedEvent],
    hot: list[tuple[str, str, int, str]],
    checkpoints: dict[str, tuple[int, int, str]],
    finding: Callable[..., None],
) -> None:
    archived = {e.event_id: e for e in events}
    for event_id, account_id, version, hash_ in hot:
        copy = archived.pop(event_id, None)
        if copy is None or copy.hash != hash_ or copy.version != version:
            finding(
                "hot-store",
                f"the hot store's event differs from segment {seg.segment_no}",
                account_id,
                version,
            )
    for event in archived.values():
        cp = checkpoints.get(event.account_id)
        if cp is None or event.version > cp[0]:
            finding(
                "hot-store",
                f"archived in segment {seg.segment_no} but gone from the hot store "
                "without being pruned",
                event.account_id,
                event.version,
            )


async def verify_region_and_archive(
    engine: AsyncEngine, objects: ObjectStore | None, region: str, *, workers: int | None = None
) -> VerifyReport:
    """`verify` of a region whose early history may be pruned: the hot store
    from the accounts' checkpoints on, and, when anything was pruned, the
    archive that holds the rest (downloaded and checked in full)."""
    report = await verify_region(engine, region, workers=workers)
    async with engine.connect() as conn:
        pruned = (
            await conn.execute(
                text("SELECT count(*) FROM archive_segments WHERE pruned_at IS NOT NULL")
            )
        ).scalar_one()
    if pruned:
        if objects is None:
            report.findings.append(
                Finding(region, "archive", None, None, "history was pruned; the archive is needed")
            )
            return report
        archived = await verify_archive(engine, objects, region)
        report.findings += archived.findings
        report.archive_events_checked = archived.events_checked
        report.seconds += archived.seconds
    return report
