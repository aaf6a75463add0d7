"""The embedded S3 server: `moto_server` from the moto[server] package.

moto keeps every bucket and object in memory: stopping or restarting the server
loses the archive, and `DevStack.up` recreates the (empty) bucket. Use a real
S3 endpoint (LEDGERFLOW_S3_ENDPOINT_URL) for anything that must survive.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.process import (
    LOCALHOST,
    PidFile,
    StackError,
    failure,
    http_status,
    process_cmdline,
    require_free_port,
    spawn_detached,
    terminate,
    venv_tool,
    wait_for,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

DUMMY_CREDENTIALS = "ledgerflow"


def moto_server_binary() -> Path:
    path = venv_tool("moto_server")
    if path is None:
        raise StackError(
            f"`moto_server` was found neither in {Path(sys.executable).parent} nor on PATH; "
            "install the PyPI package moto[server]"
        )
    return path


def s3_client(endpoint_url: str, region: str) -> S3Client:
    """A client for an embedded endpoint: any credentials do, so dummy ones unless AWS_* are set.

    Explicit dummies also keep boto3 from probing the EC2 metadata service for credentials.
    """
    from_env = "AWS_ACCESS_KEY_ID" in os.environ and "AWS_SECRET_ACCESS_KEY" in os.environ
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=None if from_env else DUMMY_CREDENTIALS,
        aws_secret_access_key=None if from_env else DUMMY_CREDENTIALS,
        config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10),
    )
    return client


class EmbeddedS3:
    """A moto S3 server on 127.0.0.1:`port`. State is in memory only (see the module doc).

    Files in `work_dir` (a fresh temp dir when not given): `pid`, `moto.log`.
    """

    def __init__(self, port: int, work_dir: Path | None = None) -> None:
        self.port = port
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="ledgerflow-s3-"))
        self.log_path = self.work_dir / "moto.log"
        self.pid_file = PidFile(self.work_dir / "pid")

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def command(self) -> list[str]:
        return [str(moto_server_binary()), "-H", LOCALHOST, "-p", str(self.port)]

    def pid(self) -> int | None:
        return self.pid_file.live_pid(marker="moto_server")

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_healthy(self) -> bool:
        return http_status(f"{self.endpoint_url}/") == 200

    def launch(self) -> int:
        """Spawn the server unless it is already running; return its pid without waiting."""
        pid = self.pid()
        if pid is not None:
            argv, expected = process_cmdline(pid), self.command()
            # The script runs under its interpreter: argv is [python, *expected].
            if argv is not None and argv[-len(expected) :] != expected:
                raise StackError(
                    f"s3 (pid {pid}) is running with different settings; "
                    "stop it first (`ledgerflow dev down`)"
                )
            return pid
        argv = self.command()
        require_free_port(self.port)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        pid = spawn_detached(argv, self.log_path)
        self.pid_file.write(pid)
        return pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.pid() is None:
                raise failure("moto_server exited during startup", self.log_path)
            return self.is_healthy()

        if not wait_for(ready, timeout, interval=0.1):
            raise failure(
                f"s3 (moto) did not answer on {self.endpoint_url} within {timeout:.0f}s",
                self.log_path,
            )

    def start(self, timeout: float = 20.0) -> int:
        pid = self.launch()
        self.wait_ready(timeout)
        return pid

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout)
        self.pid_file.remove()

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
