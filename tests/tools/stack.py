"""A whole ledger of its own, for the fault suite and the simulator.

Temporal dev server (with its database file), embedded PostgreSQL, moto S3
and one `ledgerflow worker` process per region, on free ports under a
scratch state directory, so it never touches `make run`'s. Workers can be
SIGKILLed, stopped and started again, with failpoints armed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.infra.nats import port_offsets
from ledgerflow.infra.process import StackError, find_free_base, find_free_port
from ledgerflow.infra.stack import DevStack


def isolated_env(state_dir: Path) -> dict[str, str]:
    """Environment of a stack of its own: free ports, scratch state."""
    ports = iter(find_free_ports(4))
    return {
        "LEDGERFLOW_STATE_DIR": str(state_dir),
        "LEDGERFLOW_TEMPORAL_PORT": str(next(ports)),
        "LEDGERFLOW_TEMPORAL_UI_PORT": str(next(ports)),
        "LEDGERFLOW_PG_PORT": str(next(ports)),
        "LEDGERFLOW_S3_PORT": str(next(ports)),
        "LEDGERFLOW_NATS_PORT": str(find_free_base(port_offsets(3))),
        "LEDGERFLOW_SCHEDULES": "off",
        # Everything is old enough to archive at once, in small segments.
        "LEDGERFLOW_ARCHIVE_MIN_AGE_S": "0",
        "LEDGERFLOW_RECONCILE_WINDOW_S": "0",
        "LEDGERFLOW_ARCHIVE_SEGMENT_EVENTS": "200",
        "LEDGERFLOW_ARCHIVE_RETENTION_DAYS": "1",
        "LEDGERFLOW_ARCHIVE_RETRY_WINDOW_S": "120",
        "LEDGERFLOW_RECONCILE_REGION_TIMEOUT_S": "20",
    }


def find_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(find_free_port())
    return sorted(ports)


#: What a worker prints once it polls its task queue (ledgerflow/workers/regional.py).
READY_LINE = b"ledgerflow worker: region"


class WorkerDied(RuntimeError):
    """A worker process exited without being told to."""


class Workers:
    """One `ledgerflow worker` process per region, killable."""

    def __init__(self, env: dict[str, str], regions: tuple[str, ...], logs: Path) -> None:
        self.env = env
        self.regions = regions
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        #: where each worker's log began when it was last started
        self.offsets: dict[str, int] = {}
        #: regions stopped or killed on purpose, not (yet) started again
        self.stopped: set[str] = set()

    def start(self, region: str, failpoints: str | None = None) -> None:
        """Start the region's worker (without waiting for it: `started` does)."""
        path = self.logs / f"worker-{region}.log"
        log = path.open("ab")
        self.offsets[region] = log.tell()
        env = self.env | ({"LEDGERFLOW_FAILPOINTS": failpoints} if failpoints else {})
        self.procs[region] = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", "worker", "--region", region],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.stopped.discard(region)

    async def started(
        self, region: str, failpoints: str | None = None, *, within_s: float = 90
    ) -> None:
        """Start the region's worker and wait until it serves: a fault injected
        while a worker is still starting meets another system than the one it
        means to test (and once left a region without a worker for good)."""
        self.start(region, failpoints)
        await self.serving(region, within_s)

    async def serving(self, region: str, within_s: float = 90) -> None:
        """Wait until the region's worker (as last started) polls its queue."""
        path, offset = self.logs / f"worker-{region}.log", self.offsets[region]
        deadline = time.monotonic() + within_s
        while READY_LINE not in path.read_bytes()[offset:]:
            self.require_running()
            if time.monotonic() > deadline:
                raise WorkerDied(f"worker {region} did not start serving in {within_s:.0f}s")
            await asyncio.sleep(0.1)

    def require_running(self) -> None:
        """Every worker started and not stopped is still alive: one that died
        by itself (a crash at start, say) is a finding, not a quiet outage."""
        for region, proc in self.procs.items():
            if proc.poll() is not None and region not in self.stopped:
                tail = (self.logs / f"worker-{region}.log").read_text(errors="replace")
                last = [line for line in tail.splitlines() if line.strip()][-3:]
                raise WorkerDied(f"worker {region} exited with {proc.returncode}: "
                                 + " | ".join(last))  # fmt: skip

    def running(self, region: str) -> bool:
        proc = self.procs.get(region)
        return proc is not None and proc.poll() is None

    def kill(self, region: str) -> None:
        self.stopped.add(region)
        proc = self.procs[region]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, region: str) -> None:
        self.stopped.add(region)
        proc = self.procs[region]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()


@dataclass
class Ledger:
    """A running ledger of its own."""

    state: Path
    env: dict[str, str]
    settings: Settings
    stack: DevStack
    workers: Workers
    client: LedgerClient


@contextlib.contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ledgerflow-"))
    try:
        yield path
    finally:
        if not keep:
            subprocess.run(["rm", "-rf", str(path)], check=False)


@contextlib.asynccontextmanager
async def own_ledger(
    keep: bool = False, extra: dict[str, str] | None = None
) -> AsyncIterator[Ledger]:
    """Bring a whole ledger up, migrated and hardened, workers running; tear
    it all down afterwards (the scratch state too, unless `keep`)."""
    with scratch_dir(keep) as state:
        env = os.environ | isolated_env(state) | (extra or {})
        settings = Settings.from_env(env)
        stack = DevStack(settings)
        stack.up()
        assert stack.postgres and stack.temporal and stack.s3
        workers = Workers(env, settings.regions, state)
        client: LedgerClient | None = None
        try:
            await stack.migrate()
            for region in settings.regions:
                workers.start(region)
            await asyncio.gather(*(workers.serving(region) for region in settings.regions))
            client = await LedgerClient.connect(settings)
            yield Ledger(state, env, settings, stack, workers, client)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
            workers.stop_all()
            with contextlib.suppress(StackError):
                stack.down()
