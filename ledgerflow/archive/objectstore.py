"""The object store seam: one small interface, S3 behind it, a fake for unit tests.

The archive needs four things from an object store: write an object once,
immutably, with its SHA-256 checked on receipt; read its metadata; read it;
list a prefix. `S3ObjectStore` does them with boto3 against AWS S3, MinIO or
the embedded moto server; `InMemoryObjectStore` does them in a dict.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ledgerflow.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("ledgerflow.archive")

DUMMY_CREDENTIALS = "ledgerflow"


class ObjectStoreError(Exception):
    """The object store refused a request."""


class ObjectStoreUnavailable(ObjectStoreError):
    """Unreachable, timed out, throttled or failing (5xx): transient, retry later."""


class ObjectMissing(ObjectStoreError):
    """No object under that key."""


class ObjectExists(ObjectStoreError):
    """`put_immutable` found the key already written (a conditional write lost)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    #: Lowercase hex SHA-256 of the body, from the metadata `put_immutable` writes.
    sha256: str | None
    version_id: str | None
    lock_mode: str | None
    retain_until: datetime | None


class ObjectStore(ABC):
    @abstractmethod
    async def put_immutable(
        self, key: str, body: bytes, sha256: str, retain_until: datetime | None
    ) -> ObjectInfo:
        """Write `body` unless the key exists (then `ObjectExists`); the store
        refuses it unless its SHA-256 is `sha256`. With `retain_until`, lock it
        in compliance mode until then."""

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """The newest version's metadata, or None."""

    @abstractmethod
    async def get(self, key: str, version_id: str | None = None) -> bytes:
        """The body of version `version_id` (the newest if None); raises
        `ObjectMissing`. The archive reads the versions it recorded: on a
        versioned bucket anyone with write access can put a new version over
        a locked object (the lock keeps the old version, not the key)."""

    @abstractmethod
    async def versions(self, key: str) -> list[str]:
        """The version ids written under `key`, oldest first (delete markers
        are not versions)."""

    @abstractmethod
    async def list_keys(self, prefix: str) -> list[str]: ...

    @abstractmethod
    async def require_object_lock(self) -> None:
        """Raise `ObjectStoreError` unless the store locks what it is asked to
        (object lock enabled on the bucket)."""


def boto3_s3_client(
    endpoint_url: str | None,
    region: str,
    *,
    connect_timeout_s: float = 2.0,
    read_timeout_s: float = 10.0,
    max_attempts: int = 2,
) -> S3Client:
    """A boto3 S3 client. For an explicit endpoint (moto, MinIO) any credentials
    do, so dummy ones unless AWS_* are set, which also keeps boto3 from probing
    the EC2 metadata service; for AWS itself, the default credential chain."""
    # (Imported here: boto3 takes a fifth of a second to import, and a CLI
    # command or an SDK client that never reads the archive must not pay it.)
    import boto3
    from botocore.config import Config

    from_env = "AWS_ACCESS_KEY_ID" in os.environ and "AWS_SECRET_ACCESS_KEY" in os.environ
    dummy = endpoint_url is not None and not from_env
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=DUMMY_CREDENTIALS if dummy else None,
        aws_secret_access_key=DUMMY_CREDENTIALS if dummy else None,
        config=Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
        ),
    )
    return client


_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError"}


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 10.0,
        max_attempts: int = 2,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.client = boto3_s3_client(
            endpoint_url,
            region,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            max_attempts=max_attempts,
        )
        self._lock_checked = False

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        return cls(
            settings.s3_endpoint_url,
            settings.s3_bucket,
            settings.s3_region,
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
        )

    async def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        where = f"s3://{self.bucket}/{key} at {self.endpoint_url or 'AWS'}"
        try:
            return await asyncio.to_thread(getattr(self.client, operation), **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(f"{operation} {where}: no such object") from exc
            # 412: the key exists. 409: AWS's answer when two conditional writes
            # of one key race; one of them wrote it, so for us it exists too.
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ObjectExists(f"{operation} {where}: already written") from exc
            if _status(exc) >= 500 or code in _TRANSIENT_CODES:
                raise ObjectStoreUnavailable(f"{operation} {where}: {code}") from exc
            raise ObjectStoreError(f"{operation} {where}: {code}: {exc}") from exc
        except BotoCoreError as exc:  # connection refused, timeouts, dropped connections
            raise ObjectStoreUnavailable(f"{operation} {where}: {exc}") from exc

    async def put_immutable(
        self, key: str, body: bytes, sha256: str, retain_until: datetime | None
    ) -> ObjectInfo:
        # Checked here too: AWS refuses a mismatch (BadDigest), moto does not.
        if hashlib.sha256(body).hexdigest() != sha256:
            raise ObjectStoreError(f"s3://{self.bucket}/{key}: the body does not match {sha256}")
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            # S3 recomputes the checksum on receipt and refuses a mismatch (and
            # a locked object must carry a checksum anyway).
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode(),
            "Metadata": {"sha256": sha256},
            # A conditional write: an earlier attempt whose answer was lost (a
            # timeout while S3 was stalled) may land at any moment; this write
            # then fails instead of adding a second version.
            "IfNoneMatch": "*",
        }
        if retain_until is not None:
            # A configuration decision, never a fallback: with a retention set,
            # a bucket that cannot lock is an error (LEDGERFLOW_ARCHIVE_RETENTION_DAYS=0
            # is how to say "no lock"), checked before the first write.
            await self.require_object_lock()
            params |= {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until}
        answer = await self._call("put_object", key, **params)
        info = await self.head(key)
        if info is None:
            raise ObjectStoreUnavailable(f"s3://{self.bucket}/{key} is not visible after its put")
        # The version this put wrote (the newest may already be another's).
        written = answer.get("VersionId") if isinstance(answer, dict) else None
        return replace(info, version_id=written or info.version_id)

    async def require_object_lock(self) -> None:
        if self._lock_checked:
            return
        try:
            answer = await self._call("get_object_lock_configuration", "", Bucket=self.bucket)
        except ObjectStoreUnavailable:
            raise
        except ObjectStoreError as exc:
            raise ObjectStoreError(
                f"bucket {self.bucket} has no object lock ({exc}); create it with object lock "
                "enabled, or set LEDGERFLOW_ARCHIVE_RETENTION_DAYS=0 to archive without a lock"
            ) from exc
        enabled = (answer.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise ObjectStoreError(
                f"bucket {self.bucket} has object lock {enabled or 'off'}; enable it, or set "
                "LEDGERFLOW_ARCHIVE_RETENTION_DAYS=0 to archive without a lock"
            )
        self._lock_checked = True

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            r = await self._call("head_object", key, Bucket=self.bucket, Key=key)
        except ObjectMissing:
            return None
        return ObjectInfo(
            key=key,
            size=int(r.get("ContentLength", 0)),
            sha256=(r.get("Metadata") or {}).get("sha256"),
            version_id=r.get("VersionId"),
            lock_mode=r.get("ObjectLockMode"),
            retain_until=r.get("ObjectLockRetainUntilDate"),
        )

    async def get(self, key: str, version_id: str | None = None) -> bytes:
        which = {"VersionId": version_id} if version_id else {}
        r = await self._call("get_object", key, Bucket=self.bucket, Key=key, **which)
        try:
            body: bytes = await asyncio.to_thread(r["Body"].read)
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"reading s3://{self.bucket}/{key}: {exc}") from exc
        return body

    async def versions(self, key: str) -> list[str]:
        def listed() -> list[str]:
            # S3 lists a key's versions newest first, in the order they were
            # stored. Their LastModified counts whole seconds, so it cannot
            # order versions written in the same one.
            newest_first: list[str] = []
            for page in self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=key
            ):
                newest_first += [
                    v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key
                ]
            return newest_first[::-1]

        try:
            return await asyncio.to_thread(listed)
        except ClientError as exc:
            raise ObjectStoreError(f"versions of s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"versions of s3://{self.bucket}/{key}: {exc}") from exc

    async def list_keys(self, prefix: str) -> list[str]:
        def pages() -> list[str]:
            keys: list[str] = []
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                keys += [o["Key"] for o in page.get("Contents", [])]
            return keys

        try:
            return sorted(await asyncio.to_thread(pages))
        except ClientError as exc:
            raise ObjectStoreError(f"list s3://{self.bucket}/{prefix}: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"list s3://{self.bucket}/{prefix}: {exc}") from exc


class InMemoryObjectStore(ObjectStore):
    """A dict with the same semantics (conditional writes; versions kept when
    written behind the interface's back, newest read). Unit tests only."""

    def __init__(self) -> None:
        #: Every version written under each key, oldest first.
        self.written: dict[str, list[tuple[bytes, ObjectInfo]]] = {}

    async def put_immutable(
        self, key: str, body: bytes, sha256: str, retain_until: datetime | None
    ) -> ObjectInfo:
        if hashlib.sha256(body).hexdigest() != sha256:
            raise ObjectStoreError(f"{key}: the body does not match its SHA-256")
        if key in self.written:
            raise ObjectExists(key)
        versions = self.written.setdefault(key, [])
        info = ObjectInfo(
            key, len(body), sha256, str(len(versions) + 1),
            "COMPLIANCE" if retain_until else None, retain_until,
        )  # fmt: skip
        versions.append((body, info))
        return info

    async def head(self, key: str) -> ObjectInfo | None:
        versions = self.written.get(key)
        return versions[-1][1] if versions else None

    async def get(self, key: str, version_id: str | None = None) -> bytes:
        for body, info in reversed(self.written.get(key, [])):
            if version_id is None or info.version_id == version_id:
                return body
        raise ObjectMissing(key)

    async def versions(self, key: str) -> list[str]:
        return [info.version_id or "" for _, info in self.written.get(key, [])]

    async def require_object_lock(self) -> None:
        pass  # it keeps every version and locks what it is asked to

    def overwrite(self, key: str, body: bytes) -> None:
        """What a writer behind the interface's back does: a new version."""
        versions = self.written.setdefault(key, [])
        info = ObjectInfo(key, len(body), None, str(len(versions) + 1), None, None)
        versions.append((body, info))

    async def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.written if k.startswith(prefix))
