"""The object-store contract, run against the real S3 server (moto) and the
in-memory fake alike: what the archive relies on must hold for both."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from ledgerflow.archive.objectstore import (
    InMemoryObjectStore,
    ObjectExists,
    ObjectMissing,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailable,
    S3ObjectStore,
)
from ledgerflow.infra.process import find_free_port
from ledgerflow.infra.s3 import EmbeddedS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(params=["s3", "memory"])
def objects(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "memory":
        return InMemoryObjectStore()
    store: ObjectStore = request.getfixturevalue("archive_objects")
    return store


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def test_an_object_is_written_once_and_reads_back(objects: ObjectStore) -> None:
    key = f"t/{uuid.uuid4().hex}/a.json"
    body = b'{"hello": "world"}'
    until = datetime.now(UTC) + timedelta(days=1)
    info = await objects.put_immutable(key, body, sha(body), until)
    assert (info.key, info.size, info.sha256) == (key, len(body), sha(body))
    assert info.lock_mode == "COMPLIANCE" and info.retain_until is not None
    assert await objects.get(key) == body
    assert await objects.head(key) == info
    # A second write of the key is refused, whatever its bytes: no second version.
    with pytest.raises(ObjectExists):
        await objects.put_immutable(key, b"other", sha(b"other"), None)
    assert await objects.get(key) == body


async def test_missing_keys_and_listing(objects: ObjectStore) -> None:
    prefix = f"t/{uuid.uuid4().hex}/"
    assert await objects.head(prefix + "none") is None
    with pytest.raises(ObjectMissing):
        await objects.get(prefix + "none")
    for name in ("b", "a", "c/d"):
        await objects.put_immutable(prefix + name, name.encode(), sha(name.encode()), None)
    assert await objects.list_keys(prefix) == [prefix + "a", prefix + "b", prefix + "c/d"]
    assert await objects.list_keys(prefix + "c/") == [prefix + "c/d"]


async def test_a_body_that_does_not_match_its_checksum_is_refused(objects: ObjectStore) -> None:
    key = f"t/{uuid.uuid4().hex}/corrupt"
    with pytest.raises(ObjectStoreError):
        await objects.put_immutable(key, b"sent", sha(b"meant"), None)
    assert await objects.head(key) is None


async def test_a_locked_object_cannot_be_deleted(
    archive_objects: S3ObjectStore, raw_s3: S3Client
) -> None:
    key = f"t/{uuid.uuid4().hex}/locked"
    info = await archive_objects.put_immutable(
        key, b"x", sha(b"x"), datetime.now(UTC) + timedelta(days=1)
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        raw_s3.delete_object(Bucket=archive_objects.bucket, Key=key, VersionId=info.version_id)
    assert await archive_objects.get(key) == b"x"


async def test_an_unreachable_endpoint_is_unavailable_not_an_error_of_the_request() -> None:
    down = S3ObjectStore(
        f"http://127.0.0.1:{find_free_port()}", "any", "us-east-1",
        connect_timeout_s=0.5, read_timeout_s=0.5, max_attempts=1,
    )  # fmt: skip
    with pytest.raises(ObjectStoreUnavailable):
        await down.head("k")
    with pytest.raises(ObjectStoreUnavailable):
        await down.get("k")
    with pytest.raises(ObjectStoreUnavailable):
        await down.put_immutable("k", b"x", sha(b"x"), None)
    with pytest.raises(ObjectStoreUnavailable):
        await down.list_keys("")


async def test_the_versions_written_are_listed_and_each_can_be_read(objects: ObjectStore) -> None:
    key = f"t/{uuid.uuid4().hex}/v"
    info = await objects.put_immutable(key, b"first", sha(b"first"), None)
    assert await objects.versions(key) == [info.version_id]
    assert await objects.get(key, info.version_id) == b"first"


async def test_a_version_written_behind_the_archives_back_does_not_replace_the_recorded_one(
    archive_objects: S3ObjectStore, raw_s3: S3Client
) -> None:
    key = f"t/{uuid.uuid4().hex}/v"
    info = await archive_objects.put_immutable(key, b"first", sha(b"first"), None)
    raw_s3.put_object(Bucket=archive_objects.bucket, Key=key, Body=b"second")
    assert await archive_objects.get(key) == b"second"  # the newest
    assert await archive_objects.get(key, info.version_id) == b"first"  # the recorded one
    assert len(await archive_objects.versions(key)) == 2


async def test_versions_are_listed_oldest_first_when_written_in_the_same_second(
    archive_objects: S3ObjectStore, raw_s3: S3Client
) -> None:
    """S3 lists a key's versions newest first, and its LastModified counts
    whole seconds: sorted by (LastModified, version id), versions written in
    one second came back in the order of their random ids, and the S3-only
    verifier could take a rewrite for the archive's own first version."""
    key = f"t/{uuid.uuid4().hex}/v"
    first = await archive_objects.put_immutable(key, b"first", sha(b"first"), None)
    later = []
    for n in range(7):
        later.append(raw_s3.put_object(Bucket=archive_objects.bucket, Key=key, Body=b"%d" % n))
        # A key the prefix also matches, written in between: not listed.
        raw_s3.put_object(Bucket=archive_objects.bucket, Key=f"{key}2", Body=b"other")
    assert await archive_objects.versions(key) == [
        first.version_id,
        *(v["VersionId"] for v in later),
    ]
    assert await archive_objects.get(key, (await archive_objects.versions(key))[0]) == b"first"


async def test_a_bucket_without_object_lock_is_refused_when_a_lock_is_asked_for(
    s3_server: EmbeddedS3, raw_s3: S3Client
) -> None:
    """A configuration decision, never a silent fallback (issue 13, finding 12)."""
    bucket = f"nolock-{uuid.uuid4().hex[:12]}"
    raw_s3.create_bucket(Bucket=bucket)
    unlocked = S3ObjectStore(s3_server.endpoint_url, bucket, "us-east-1")
    with pytest.raises(ObjectStoreError, match=r"no object lock|object lock off"):
        await unlocked.put_immutable("k", b"x", sha(b"x"), datetime.now(UTC) + timedelta(days=1))
    assert await unlocked.head("k") is None
    # Without a retention (LEDGERFLOW_ARCHIVE_RETENTION_DAYS=0) it writes, unlocked.
    assert (await unlocked.put_immutable("k", b"x", sha(b"x"), None)).lock_mode is None


async def test_a_conditional_write_that_loses_a_race_on_aws_is_an_existing_object() -> None:
    """AWS answers two racing conditional writes with 409 ConditionalRequestConflict
    (moto does not): that is the key already written, not an error."""
    store = S3ObjectStore("http://127.0.0.1:9", "b", "us-east-1")
    conflict = ClientError(
        {"Error": {"Code": "ConditionalRequestConflict", "Message": "retry"},
         "ResponseMetadata": {"HTTPStatusCode": 409}},
        "PutObject",
    )  # fmt: skip

    def raise_conflict(**_: object) -> None:
        raise conflict

    store.client.put_object = raise_conflict  # type: ignore[method-assign]
    with pytest.raises(ObjectExists):
        await store.put_immutable("k", b"x", sha(b"x"), None)
