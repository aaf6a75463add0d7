"""The S3 archive against real servers (PostgreSQL, moto S3): archive, prune,
and every read giving the same answers before and after; reruns after a crash
at each step; tampering detected; pruning guarded."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.archiver import ArchivePolicy, Archiver
from ledgerflow.archive.objectstore import InMemoryObjectStore, S3ObjectStore
from ledgerflow.archive.prune import prune
from ledgerflow.archive.reader import ArchiveReader
from ledgerflow.archive.status import archive_status
from ledgerflow.archive.verify import verify_archive, verify_region_and_archive
from ledgerflow.archive.verify_s3 import verify_archive_from_s3
from ledgerflow.audit.point_in_time import balance_as_of, replay_balance
from ledgerflow.audit.trail import audit_trail
from ledgerflow.domain.errors import AccountNotFound, ArchiveUnavailable
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.store.base import TailCursor
from ledgerflow.store.log import event_hashes_digest, event_hashes_in_range, hashes_digest
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import count_rows, reconciled, trade

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Region = tuple[PostgresEventStore, AsyncEngine]
POLICY = ArchivePolicy(min_age=timedelta(0), segment_events=5, retention=timedelta(days=1))


async def instants_of(engine: AsyncEngine) -> list[datetime]:
    """Every instant worth asking about: each event's time, a microsecond
    before it, and a moment before anything happened."""
    async with engine.connect() as conn:
        times = (await conn.execute(text("SELECT DISTINCT recorded_at FROM events"))).scalars()
        stamps = sorted(times)
    tick = timedelta(microseconds=1)
    return [stamps[0] - timedelta(seconds=1), *stamps, *(t - tick for t in stamps)]


async def answers(
    engine: AsyncEngine,
    accounts: list[str],
    instants: list[datetime],
    archive: ArchiveReader | None,
) -> dict[str, Any]:
    """Every point-in-time balance (indexed and replayed) and some audit trails."""
    out: dict[str, Any] = {}
    for account in accounts:
        for t in instants[::3]:
            try:
                fast = await balance_as_of(engine, account, t, archive)
            except AccountNotFound:
                fast = None
            try:
                slow = await replay_balance(engine, account, t, archive)
            except AccountNotFound:
                slow = None
            assert fast == slow, (account, t)
            out[f"{account}@{t.isoformat()}"] = fast
        ordered = sorted(instants)
        for start, end in [(ordered[0], ordered[-1]), (ordered[len(ordered) // 3], ordered[-5])]:
            trail = await audit_trail(engine, account, start, end, archive)
            out[f"{account}[{start}..{end}]"] = dataclasses.asdict(trail)
    return out


async def archived_everything(store: PostgresEventStore, objects: S3ObjectStore) -> Archiver:
    archiver = Archiver(store.engine, objects, "us", POLICY)
    await archiver.archive_all()
    return archiver


async def test_archive_prune_then_as_of_audit_and_verify_give_the_same_answers(
    isolated_region: Region, archive_objects: S3ObjectStore, pruner: AsyncEngine
) -> None:
    store, _ = isolated_region
    accounts = await trade(store, "cycle", rounds=8)
    instants = await instants_of(store.engine)
    before = await answers(store.engine, accounts, instants, None)
    hot_before = await count_rows(store.engine, "events")

    await archived_everything(store, archive_objects)
    status = await archive_status(store.engine, "us", timedelta(0))
    assert status.events_archived == hot_before and status.backlog_events == 0
    assert status.segments >= hot_before // 6 and status.in_flight_segment is None
    # Keys say where each segment sits; the archive's numbering has no gap.
    keys = await archive_objects.list_keys("us/events/")
    segments = [k for k in keys if k.endswith(".jsonl.gz")]
    assert len(segments) == status.segments
    assert segments[0].split("/")[-1].startswith("000000000001-")
    assert (await verify_archive(store.engine, archive_objects, "us")).sound

    await CatchUpProjector(store.engine).catch_up()
    await reconciled(store.engine)
    pruned = await prune(pruner, archive_objects)
    assert pruned.verified_segments == status.segments and pruned.events_pruned > 0
    assert await count_rows(store.engine, "events") == hot_before - pruned.events_pruned
    assert await count_rows(store.engine, "account_checkpoints") > 0

    archive = ArchiveReader(store.engine, archive_objects, cache_segments=64)
    assert await answers(store.engine, accounts, instants, archive) == before
    report = await verify_region_and_archive(store.engine, archive_objects, "us")
    assert report.sound, report.findings
    assert report.archive_events_checked == hot_before

    # Without the archive, a pruned period cannot be answered, and says so.
    with pytest.raises(ArchiveUnavailable):
        await balance_as_of(store.engine, accounts[1], instants[1])

    # History goes on from the checkpoints: new postings chain onto them, and
    # a second archive and prune still answers the old questions the same.
    await trade(store, "cycle2", rounds=3)
    await store.append_transfer(
        dataclasses.replace(_transfer("after-prune", accounts[0], accounts[1])),
        "us",
        datetime.now(UTC),
    )
    assert (await verify_region_and_archive(store.engine, archive_objects, "us")).sound
    await archived_everything(store, archive_objects)
    await CatchUpProjector(store.engine).catch_up()
    await reconciled(store.engine)
    await prune(pruner, archive_objects)
    assert await answers(store.engine, accounts, instants, archive) == before
    final = await verify_region_and_archive(store.engine, archive_objects, "us")
    assert final.sound, final.findings


def _transfer(transfer_id: str, src: str, dst: str) -> Any:
    from ledgerflow.domain.model import Transfer

    return Transfer(transfer_id, src, dst, 1, "USD", "test")


async def test_a_rerun_after_a_crash_at_any_step_neither_duplicates_nor_skips(
    isolated_region: Region, archive_objects: S3ObjectStore, raw_s3: S3Client
) -> None:
    store, _ = isolated_region
    await trade(store, "crash", rounds=4)
    archiver = Archiver(store.engine, archive_objects, "us", POLICY)

    # Crash after planning: the rerun resumes that exact plan.
    planned = await archiver.plan()
    assert planned is not None and await archiver.plan() == planned
    # Crash after uploading, before recording: the rerun finds the objects
    # (same bytes), keeps them, and records once.
    upload = await archiver.upload(planned)
    assert await archiver.upload(planned) == upload
    # Crash after recording: recording again is a no-op with the same answer.
    first = await archiver.record(planned, upload)
    assert await archiver.record(planned, upload) == first
    # Crash after planning the next one; then a full run to the end.
    assert (await archiver.plan()) is not None
    await archiver.archive_all()

    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT first_seq, last_seq, event_count, status FROM archive_segments "
                    "ORDER BY segment_no"
                )
            )
        ).all()
    assert all(r.status == "archived" for r in rows)
    assert [r.first_seq for r in rows] == [1] + [r.last_seq + 1 for r in rows[:-1]]
    assert sum(r.event_count for r in rows) == await count_rows(store.engine, "events")
    # Every object was written exactly once (one version each).
    versions = raw_s3.list_object_versions(Bucket=archive_objects.bucket, Prefix="us/")
    keys = [v["Key"] for v in versions.get("Versions", [])]
    assert len(keys) == len(set(keys)) == 3 * len(rows)
    assert (await verify_archive(store.engine, archive_objects, "us")).sound


async def test_objects_are_locked_in_compliance_mode_and_cannot_be_deleted(
    isolated_region: Region, archive_objects: S3ObjectStore, raw_s3: S3Client
) -> None:
    store, _ = isolated_region
    await trade(store, "lock", rounds=1)
    await archived_everything(store, archive_objects)
    key = (await archive_objects.list_keys("us/events/"))[0]
    info = await archive_objects.head(key)
    assert info is not None and info.lock_mode == "COMPLIANCE"
    assert info.retain_until is not None and info.retain_until > datetime.now(UTC)
    with pytest.raises(ClientError, match="AccessDenied"):
        raw_s3.delete_object(Bucket=archive_objects.bucket, Key=key, VersionId=info.version_id)


async def test_archive_verify_detects_a_tampered_segment_or_manifest(
    isolated_region: Region, archive_objects: S3ObjectStore, raw_s3: S3Client
) -> None:
    store, _ = isolated_region
    await trade(store, "tamper", rounds=3)
    await archived_everything(store, archive_objects)
    keys = await archive_objects.list_keys("us/events/")
    segment = next(k for k in keys if k.endswith(".jsonl.gz"))
    manifest = next(k for k in keys if k.endswith(".manifest.json"))

    # A new version of a segment with one amount changed (the locked original
    # cannot be altered, but a reader of the newest version would get the
    # forgery): reported, and never what the archive reads.
    lines = gzip.decompress(await archive_objects.get(segment)).replace(
        b'"amount":-', b'"amount":-1', 1
    )
    raw_s3.put_object(Bucket=archive_objects.bucket, Key=segment, Body=gzip.compress(lines))
    report = await verify_archive(store.engine, archive_objects, "us")
    assert not report.sound
    assert any(f.check == "rewritten" and segment in f.problem for f in report.findings)
    assert not any(f.check in ("checksum", "manifest", "hash-chain") for f in report.findings)

    raw_s3.put_object(Bucket=archive_objects.bucket, Key=manifest, Body=b"{}")
    report = await verify_archive(store.engine, archive_objects, "us")
    assert any(f.check == "rewritten" and manifest in f.problem for f in report.findings)


@pytest.mark.parametrize("object_kind", [".manifest.json", "digests/"])
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"[" * 5000])
async def test_an_archived_manifest_or_link_that_is_not_a_json_object_is_a_finding(
    isolated_region: Region, object_kind: str, body: bytes
) -> None:
    """The recorded version itself replaced (what only getting past object
    lock could do): both verifiers report it and go on; they used to stop
    with the JSON parser's error."""
    store, _ = isolated_region
    await trade(store, "notjson", rounds=2)
    objects = InMemoryObjectStore()
    await Archiver(store.engine, objects, "us", POLICY).archive_all()
    key = next(k for k in await objects.list_keys("us/") if object_kind in k)
    [(_, info)] = objects.written[key]
    objects.written[key] = [(body, info)]
    for report in (
        await verify_archive(store.engine, objects, "us"),
        await verify_archive_from_s3(objects, "us"),
    ):
        assert any(f.check == "checksum" for f in report.findings) or any(
            f.check == "digest-chain" for f in report.findings
        ), report.findings
        assert {f.check for f in report.findings} & {"manifest", "digest-chain"}, report.findings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("global_order", [1, 2]),
        ("global_order", {"after": ["a", 0], "through": [1, 2]}),
        ("first_seq", "1"),
        ("last_seq", None),
        ("segment_key", 7),
        ("cutoff", "yesterday"),
        ("cutoff", "2026-12-03T00:00:00"),
        ("currencies", [1]),
        ("currencies", {"USD": 5}),
        ("currencies", {"USD": {"debits": "-5", "credits": 5}}),
    ],
)
async def test_an_archived_manifest_with_a_field_of_the_wrong_type_is_a_finding(
    isolated_region: Region, field: str, value: Any
) -> None:
    """A JSON object, but not a manifest the archive wrote: both verifiers
    report it and go on. The S3-only verifier stopped with a TypeError,
    ValueError or AttributeError reading the field, and verify with an
    AttributeError on sums that were not a mapping."""
    store, _ = isolated_region
    await trade(store, "shape", rounds=2)
    objects = InMemoryObjectStore()
    await Archiver(store.engine, objects, "us", POLICY).archive_all()
    key = next(k for k in await objects.list_keys("us/") if k.endswith(".manifest.json"))
    [(body, info)] = objects.written[key]
    forged = {**json.loads(body), field: value}
    objects.written[key] = [(json.dumps(forged).encode(), info)]
    for report in (
        await verify_archive(store.engine, objects, "us"),
        await verify_archive_from_s3(objects, "us"),
    ):
        assert any(f.check == "manifest" and key in f.problem for f in report.findings), (
            report.findings
        )
        assert any(f.check in ("checksum", "digest-chain") for f in report.findings)


@pytest.mark.parametrize(
    ("field", "value"),
    [("manifest_sha256", "not hex"), ("digest", "not hex"), ("digest", None), ("prev_digest", 5)],
)
async def test_an_archived_digest_link_with_a_digest_that_is_not_hex_is_a_finding(
    isolated_region: Region, field: str, value: Any
) -> None:
    """A link whose digest or manifest checksum is not hexadecimal: the
    S3-only verifier reports the chain broken there and goes on (it stopped
    with bytes.fromhex's ValueError, at that link or the next)."""
    store, _ = isolated_region
    await trade(store, "links", rounds=2)
    objects = InMemoryObjectStore()
    await Archiver(store.engine, objects, "us", POLICY).archive_all()
    key = sorted(k for k in await objects.list_keys("us/digests/"))[0]
    [(body, info)] = objects.written[key]
    objects.written[key] = [(json.dumps({**json.loads(body), field: value}).encode(), info)]
    for report in (
        await verify_archive(store.engine, objects, "us"),
        await verify_archive_from_s3(objects, "us"),
    ):
        assert any(f.check == "digest-chain" for f in report.findings), report.findings


async def test_archive_verify_lists_no_versions_of_an_archive_nobody_wrote_over(
    isolated_region: Region, archive_objects: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version listing per key per segment cost moto a copy of the bucket
    each time: `make bench`'s 1M-event archive verify ran it out of memory.
    The newest version being the recorded one says the same for nothing."""
    store, _ = isolated_region
    await trade(store, "listing", rounds=2)
    await archived_everything(store, archive_objects)
    listed: list[str] = []
    versions = archive_objects.versions

    async def counted(key: str) -> list[str]:
        listed.append(key)
        return await versions(key)

    monkeypatch.setattr(archive_objects, "versions", counted)
    report = await verify_archive(store.engine, archive_objects, "us")
    assert report.sound and report.segments_checked > 1, report.findings
    assert listed == []


async def test_archive_verify_reports_a_deleted_key_and_still_reads_its_recorded_version(
    isolated_region: Region, archive_objects: S3ObjectStore, raw_s3: S3Client
) -> None:
    """A delete marker over a locked segment (the lock allows it): the newest
    version is no longer the recorded one, so the key is looked at again."""
    store, _ = isolated_region
    await trade(store, "deleted", rounds=2)
    await archived_everything(store, archive_objects)
    segment = next(k for k in await archive_objects.list_keys("us/events/") if k.endswith(".gz"))
    raw_s3.delete_object(Bucket=archive_objects.bucket, Key=segment)
    report = await verify_archive(store.engine, archive_objects, "us")
    assert [(f.check, segment in f.problem, "deleted" in f.problem) for f in report.findings] == [
        ("object", True, True)
    ]
    assert report.events_checked == await count_rows(store.engine, "events")


# Records of the wrong type, as a forger could write them (each hash may
# even be recomputed: the types are refused before any hash is checked).
WRONG_TYPES = pytest.mark.parametrize(
    ("field", "forgery"),
    [
        (rb'"amount":(-[0-9]+)', rb'"amount":"\1"'),
        # An instant without its offset: the manifest rebuilt from the events
        # compared it with aware ones and stopped both verifiers (TypeError).
        (rb'"recorded_at":"([^"]+)\+00:00"', rb'"recorded_at":"\1"'),
        (rb'"position":([0-9]+)', rb'"position":"\1"'),
    ],
    ids=["amount-a-string", "recorded-at-without-offset", "position-a-string"],
)


def forge_a_record(lines: bytes, field: bytes, forgery: bytes) -> bytes:
    forged = re.sub(field, forgery, lines, count=1)
    assert forged != lines
    return gzip.compress(forged)


@WRONG_TYPES
async def test_archive_verify_reports_a_segment_with_a_record_of_the_wrong_type(
    isolated_region: Region,
    archive_objects: S3ObjectStore,
    raw_s3: S3Client,
    field: bytes,
    forgery: bytes,
) -> None:
    """A forged segment the archive's own rows point at: a finding that it
    cannot be decoded, not a crash of verify. The S3-only verifier, which
    reads the first version, reports the rewrite."""
    store, superuser = isolated_region
    await trade(store, "types", rounds=2)
    await archived_everything(store, archive_objects)
    for segment in await archive_objects.list_keys("us/events/"):
        lines = (
            gzip.decompress(await archive_objects.get(segment)) if segment.endswith(".gz") else b""
        )
        if b'"amount":-' in lines:
            break
    forged = forge_a_record(lines, field, forgery)
    version = raw_s3.put_object(Bucket=archive_objects.bucket, Key=segment, Body=forged)
    async with superuser.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text("UPDATE archive_segments SET segment_version_id = :v WHERE segment_key = :k"),
            {"v": version["VersionId"], "k": segment},
        )
    report = await verify_archive(store.engine, archive_objects, "us")
    assert any(
        f.check == "segment" and "cannot be decoded" in f.problem for f in report.findings
    ), report.findings
    assert any(f.check == "checksum" for f in report.findings)
    from_s3 = await verify_archive_from_s3(archive_objects, "us")
    assert [(f.check, segment in f.problem) for f in from_s3.findings] == [("rewritten", True)]


@WRONG_TYPES
async def test_both_verifiers_report_a_recorded_segment_with_a_record_of_the_wrong_type(
    isolated_region: Region, field: bytes, forgery: bytes
) -> None:
    """The recorded version itself replaced (what only getting past object
    lock could do): both verifiers report it and go on."""
    store, _ = isolated_region
    await trade(store, "types", rounds=2)
    objects = InMemoryObjectStore()
    await Archiver(store.engine, objects, "us", POLICY).archive_all()
    segment = next(
        k
        for k, [(body, _)] in objects.written.items()
        if k.startswith("us/events/")
        and k.endswith(".gz")
        and b'"amount":-' in gzip.decompress(body)
    )
    [(body, info)] = objects.written[segment]
    objects.written[segment] = [(forge_a_record(gzip.decompress(body), field, forgery), info)]
    for report in (
        await verify_archive(store.engine, objects, "us"),
        await verify_archive_from_s3(objects, "us"),
    ):
        assert any(
            f.check == "segment" and "cannot be decoded" in f.problem for f in report.findings
        ), report.findings
        assert any(f.check == "checksum" for f in report.findings), report.findings


async def test_archive_verify_detects_a_hot_event_that_differs_from_its_archive(
    isolated_region: Region, archive_objects: S3ObjectStore
) -> None:
    store, superuser = isolated_region
    await trade(store, "hot", rounds=2)
    await archived_everything(store, archive_objects)
    async with superuser.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        victim = (
            await conn.execute(
                text(
                    "UPDATE events SET hash = repeat('f', 64) WHERE position = "
                    "(SELECT max(position) FROM events) RETURNING account_id, version"
                )
            )
        ).one()
    report = await verify_archive(store.engine, archive_objects, "us")
    assert any(
        f.check == "hot-store" and (f.account_id, f.version) == tuple(victim)
        for f in report.findings
    ), report.findings


async def test_the_hot_stores_digest_of_a_range_is_the_one_computed_from_its_rows(
    isolated_region: Region,
) -> None:
    """`archive verify` reads a segment's hot rows only when the hot store's
    digest of its range differs from its own copy's: the two computations
    must agree on every range, or every segment would read as different (or,
    were one to leave a field out, a changed field would go unseen)."""
    store, _ = isolated_region
    await trade(store, "digest", rounds=2)
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT event_id::text, account_id, version, hash, tx_id, position "
                    "FROM events ORDER BY tx_id, position"
                )
            )
        ).all()
        place = [TailCursor(r.tx_id, r.position) for r in rows]
        # (after, through] as indexes into the global order: all, a slice, none.
        for lo, hi in [(-1, len(rows) - 1), (2, 9), (4, 4)]:
            after = place[lo] if lo >= 0 else TailCursor(0, 0)
            expected = [tuple(r[:4]) for r in rows[lo + 1 : hi + 1]]
            assert sorted(await event_hashes_in_range(conn, after, place[hi])) == sorted(expected)
            assert await event_hashes_digest(conn, after, place[hi]) == (
                len(expected),
                hashes_digest(expected),
            )
    assert len(rows) > 10


async def test_pruning_is_guarded(
    isolated_region: Region, archive_objects: S3ObjectStore, pruner: AsyncEngine
) -> None:
    store, superuser = isolated_region
    await trade(store, "guard", rounds=2)
    await archived_everything(store, archive_objects)
    total = await count_rows(store.engine, "events")

    # The app role can neither prune nor vouch for a segment (issue 12, finding 3)...
    for sql in ("SELECT ledger_prune_through(1)", "SELECT ledger_mark_segment_verified(1)"):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with store.engine.begin() as conn:
                await conn.execute(text(sql))
    # ...and even the pruner's prune refuses a segment that was not verified...
    with pytest.raises(DBAPIError, match="not all archived and verified"):
        async with pruner.begin() as conn:
            await conn.execute(text("SELECT ledger_prune_through(1)"))
    # ...and anything past what the read models have applied...
    pruned = await prune(pruner, archive_objects)
    assert (pruned.verified_segments > 0, pruned.events_pruned) == (True, 0)
    with pytest.raises(DBAPIError, match="ahead of the read models"):
        async with pruner.begin() as conn:
            await conn.execute(text("SELECT ledger_prune_through(1)"))
    # ...or what no reconciliation run has checked (issue 13, finding 6).
    await CatchUpProjector(store.engine).catch_up()
    assert (await prune(pruner, archive_objects)).events_pruned == 0
    with pytest.raises(DBAPIError, match="ahead of what reconciliation has checked"):
        async with pruner.begin() as conn:
            await conn.execute(text("SELECT ledger_prune_through(1)"))
    # The app role may not delete events at all; the owner (here a superuser)
    # is refused by the trigger unless pruning, and even then only at or
    # below an account's checkpoint.
    with pytest.raises(DBAPIError, match="permission denied"):
        async with store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM events"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with superuser.begin() as conn:
            await conn.execute(text("DELETE FROM events"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with superuser.begin() as conn:
            await conn.execute(text("SELECT set_config('ledgerflow.pruning', 'on', true)"))
            await conn.execute(text("DELETE FROM events"))
    assert await count_rows(store.engine, "events") == total


async def test_only_events_older_than_the_cutoff_are_archived(
    isolated_region: Region, archive_objects: S3ObjectStore
) -> None:
    store, _ = isolated_region
    await trade(store, "young", rounds=1)
    policy = dataclasses.replace(POLICY, min_age=timedelta(hours=1))
    archiver = Archiver(store.engine, archive_objects, "us", policy)
    assert await archiver.plan() is None
    assert await archive_objects.list_keys("us/") == []
    status = await archive_status(store.engine, "us", policy.min_age)
    assert (status.segments, status.backlog_events) == (0, 0)


async def test_prune_waits_for_the_event_stream_once_a_relay_has_published(
    isolated_region: Region, archive_objects: S3ObjectStore, pruner: AsyncEngine
) -> None:
    """An event the relay has not published yet stays in the hot store: pruned,
    it could never reach the stream (the relay reads the hot store)."""
    store, _ = isolated_region
    await trade(store, "relayed", rounds=4)
    await archived_everything(store, archive_objects)
    await CatchUpProjector(store.engine).catch_up()
    await reconciled(store.engine)
    async with store.engine.begin() as conn:  # the relay has published nothing yet
        await conn.execute(
            text(
                "INSERT INTO projection_checkpoints (name, tx_id, position) VALUES ('stream', 0, 0)"
            )
        )
    held = await prune(pruner, archive_objects)
    assert (held.pruned_through_segment, held.events_pruned) == (None, 0)
    async with store.engine.begin() as conn:  # now it has published everything
        await conn.execute(
            text(
                "UPDATE projection_checkpoints SET (tx_id, position) = "
                "(SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1) "
                "WHERE name = 'stream'"
            )
        )
    assert (await prune(pruner, archive_objects)).events_pruned > 0
