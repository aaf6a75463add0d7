"""The archive can be checked from S3 alone, and what it says there is true
(issue 13, findings 10 and 12).

* A segment's manifest names the key its events are under: the key's date is
  the earliest `recorded_at` of the segment (the date of the first event in
  transaction order may be a day later, across midnight UTC), and the
  manifest says the key the segment was written under, never a recomputed
  one. `archive verify --s3-only` walks the digest chain and every manifest
  and segment from S3 with nothing from PostgreSQL, and finds a manifest
  that names a missing object.
* A new version written over an archived object (S3 keeps versions; object
  lock protects the old one, not the key) is never what the archive reads:
  it reads the version it recorded, and says the key was written again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ledgerflow.archive.archiver import ArchivePolicy, Archiver
from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.archive.verify import verify_archive
from ledgerflow.archive.verify_s3 import verify_archive_from_s3
from ledgerflow.domain.model import OpenAccountRequest
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import shift_recorded_at

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from sqlalchemy.ext.asyncio import AsyncEngine

Ids = Callable[[str], str]
Region = tuple[PostgresEventStore, "AsyncEngine"]
POLICY = ArchivePolicy(timedelta(0), 100, None)


async def test_a_segment_across_midnight_is_named_by_its_earliest_instant(
    isolated_region: Region, archive_objects: S3ObjectStore, uid: Ids
) -> None:
    store, superuser = isolated_region
    early, late = uid("early"), uid("late")
    # `early` is opened first (first in transaction order), `late` second;
    # then history says `early` opened just after midnight and `late` just before.
    for account in (early, late):
        await store.open_account(OpenAccountRequest(account, "USD", "us", 0), datetime.now(UTC))
    midnight = datetime(2026, 11, 30, tzinfo=UTC)
    await shift_recorded_at(superuser, early, {1}, timedelta(0), to=midnight + timedelta(seconds=1))
    await shift_recorded_at(superuser, late, {1}, timedelta(0), to=midnight - timedelta(seconds=1))

    [done] = await Archiver(store.engine, archive_objects, "us", POLICY).archive_all()
    keys = await archive_objects.list_keys("us/events/")
    assert all("/2026/11/29/" in key for key in keys), keys
    assert (await verify_archive(store.engine, archive_objects, "us")).sound
    from_s3 = await verify_archive_from_s3(archive_objects, "us")
    assert from_s3.sound, from_s3.findings
    assert from_s3.segments_checked == 1 and from_s3.events_checked == done.events


async def test_verify_from_s3_alone_finds_a_manifest_that_names_a_missing_object(
    isolated_region: Region, archive_objects: S3ObjectStore, raw_s3: S3Client, uid: Ids
) -> None:
    store, _ = isolated_region
    for account in (uid("a"), uid("b")):
        await store.open_account(OpenAccountRequest(account, "USD", "us", 0), datetime.now(UTC))
    await Archiver(store.engine, archive_objects, "us", POLICY).archive_all()
    [segment] = [k for k in await archive_objects.list_keys("us/events/") if k.endswith(".gz")]
    # What the old keying did across midnight: the events under one date, the
    # manifest naming another. (Moving the object away, every version of it,
    # stands in for that: the manifest names a key that holds nothing.)
    moved = segment.replace("/events/", "/events-elsewhere/")
    raw_s3.copy_object(
        Bucket=archive_objects.bucket, Key=moved,
        CopySource={"Bucket": archive_objects.bucket, "Key": segment},
    )  # fmt: skip
    for version in await archive_objects.versions(segment):
        raw_s3.delete_object(Bucket=archive_objects.bucket, Key=segment, VersionId=version)
    report = await verify_archive_from_s3(archive_objects, "us")
    assert not report.sound
    assert any("no such object" in f.problem for f in report.findings), report.findings


async def test_a_new_version_over_an_archived_object_is_not_read_and_is_reported(
    isolated_region: Region, archive_objects: S3ObjectStore, raw_s3: S3Client, uid: Ids
) -> None:
    store, _ = isolated_region
    for account in (uid("a"), uid("b")):
        await store.open_account(OpenAccountRequest(account, "USD", "us", 0), datetime.now(UTC))
    await Archiver(store.engine, archive_objects, "us", POLICY).archive_all()
    [segment] = [k for k in await archive_objects.list_keys("us/events/") if k.endswith(".gz")]
    original = await archive_objects.get(segment)
    raw_s3.put_object(Bucket=archive_objects.bucket, Key=segment, Body=b"rewritten")
    assert (await archive_objects.get(segment)) == b"rewritten"  # what "newest" would read

    report = await verify_archive(store.engine, archive_objects, "us")
    assert [f.check for f in report.findings] == ["rewritten"], report.findings
    from_s3 = await verify_archive_from_s3(archive_objects, "us")
    assert "rewritten" in {f.check for f in from_s3.findings}
    async with store.engine.connect() as conn:
        version = (
            await conn.exec_driver_sql("SELECT segment_version_id FROM archive_segments")
        ).scalar_one()
    assert await archive_objects.get(segment, version_id=version) == original
