"""The embedded S3 server: `moto_server` from the moto[server] package.

moto keeps every bucket and object in memory: stopping or restarting the server
loses the archive, and `DevStack.up` recreates the (empty) bucket. Use a real
S3 endpoint (LEDGERFLOW_S3_ENDPOINT_URL) for anything that must survive.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from ledgerflow.archive.objectstore import boto3_s3_client
from ledgerflow.infra.process import (
    EMBEDDED_EXTRA,
    LOCALHOST,
    DetachedServer,
    PidFile,
    StackError,
    http_status,
    venv_tool,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType


def moto_server_binary() -> Path:
    path = venv_tool("moto_server")
    if path is None:
        raise StackError(
            f"`moto_server` (moto[server]) was found neither in {Path(sys.executable).parent} "
            f"nor on PATH: {EMBEDDED_EXTRA}"
        )
    return path


def s3_client(endpoint_url: str, region: str) -> S3Client:
    """A client for an embedded endpoint (dummy credentials unless AWS_* are set)."""
    return boto3_s3_client(endpoint_url, region)


class EmbeddedS3(DetachedServer):
    """A moto S3 server on 127.0.0.1:`port`. State is in memory only (see the module doc).

    Files in `work_dir` (a fresh temp dir when not given): `pid`, `moto.log`.
    """

    name = "s3"
    start_timeout = 20.0
    stop_timeout = 10.0
    ready_interval = 0.1

    def __init__(self, port: int, work_dir: Path | None = None) -> None:
        self.port = port
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="ledgerflow-s3-"))
        self.log_path = self.work_dir / "moto.log"
        self.pid_file = PidFile(self.work_dir / "pid")

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.endpoint_url

    def pid_marker(self) -> str:
        return "moto_server"

    def ports(self) -> list[int]:
        return [self.port]

    def runs_command(self, argv: list[str]) -> bool:
        # The script runs under its interpreter: argv is [python, *command].
        expected = self.command()
        return argv[-len(expected) :] == expected

    def command(self) -> list[str]:
        return [str(moto_server_binary()), "-H", LOCALHOST, "-p", str(self.port)]

    def is_healthy(self) -> bool:
        return http_status(f"{self.endpoint_url}/") == 200

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """Create `bucket` with Object Lock enabled unless it exists; idempotent."""
        client = s3_client(self.endpoint_url, region)
        try:
            if region == "us-east-1":
                client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            else:
                client.create_bucket(
                    Bucket=bucket,
                    ObjectLockEnabledForBucket=True,
                    CreateBucketConfiguration={
                        "LocationConstraint": cast("BucketLocationConstraintType", region)
                    },
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise StackError(f"could not create bucket {bucket}: {exc}") from exc
        try:
            lock = client.get_object_lock_configuration(Bucket=bucket)
        except ClientError as exc:
            raise StackError(f"bucket {bucket} has no Object Lock configuration: {exc}") from exc
        if lock["ObjectLockConfiguration"].get("ObjectLockEnabled") != "Enabled":
            raise StackError(f"bucket {bucket} exists without Object Lock enabled")
