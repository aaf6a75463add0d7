"""The fault suite: thousands of transfers from concurrent clients while the
system is hurt, then proof that nothing was lost or posted twice.

It runs a stack of its own (Temporal dev server with its database file,
embedded PostgreSQL, moto S3, one worker process per region) on free ports
under a scratch state directory, so it never touches `make run`'s. During
the run it:

- kills a random region's worker with SIGKILL at random moments, several
  times, and starts it again;
- restarts PostgreSQL (fast shutdown: every connection is cut);
- restarts the Temporal dev server, which keeps its database file;
- freezes S3 (SIGSTOP) during an archive run, then thaws it.

Clients behave as a careful client of any payment system does: on a timeout
or a connection error they resubmit the same transfer id until they learn
its outcome. Afterwards every submitted transfer must be confirmed exactly
once or rejected with a reason, the databases must hold exactly the
confirmed postings (no more, no fewer), every region's double-entry sums
must be zero and `verify` must be sound. It prints its counts:

    .venv/bin/python -m infra.faults --transfers 2000     # make faults
    .venv/bin/python -m infra.faults --transfers 200 --kills 1   # the CI form

and exits non-zero if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.process import StackError, find_free_port
from infra.stack import DevStack
from ledgerflow.archive.messages import ArchiveRequest
from ledgerflow.audit.verify import verify_region
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.domain.errors import RequestError
from ledgerflow.store.postgres import create_engine
from workflows.archive import ArchiveWorkflow

#: Outcomes a client can learn; anything else is retried with the same id.
FINAL = ("confirmed", "rejected", "reversed")


@dataclass
class FaultReport:
    submitted: int = 0
    confirmed: int = 0
    rejected: int = 0
    reversed: int = 0
    #: Submitted and never learned, or learned but not in the database.
    lost: int = 0
    #: Posted more than once (more than two events for one posting id).
    duplicated: int = 0
    #: The client's outcome and the database's disagree.
    mismatched: int = 0
    client_retries: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    double_entry_zero: bool = False
    verify_sound: bool = False
    archive_completed: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.mismatched == 0
            and self.double_entry_zero
            and self.verify_sound
            and self.submitted == self.confirmed + self.rejected + self.reversed
        )


def isolated_env(state_dir: Path) -> dict[str, str]:
    """Environment of a stack of its own: free ports, scratch state."""
    ports = iter(find_free_ports(4))
    return {
        "LEDGERFLOW_STATE_DIR": str(state_dir),
        "LEDGERFLOW_TEMPORAL_PORT": str(next(ports)),
        "LEDGERFLOW_TEMPORAL_UI_PORT": str(next(ports)),
        "LEDGERFLOW_PG_PORT": str(next(ports)),
        "LEDGERFLOW_S3_PORT": str(next(ports)),
        "LEDGERFLOW_SCHEDULES": "off",
        # Everything is old enough to archive at once, in small segments.
        "LEDGERFLOW_ARCHIVE_MIN_AGE_S": "0",
        "LEDGERFLOW_RECONCILE_WINDOW_S": "0",
        "LEDGERFLOW_ARCHIVE_SEGMENT_EVENTS": "200",
        "LEDGERFLOW_ARCHIVE_RETENTION_DAYS": "1",
        "LEDGERFLOW_ARCHIVE_RETRY_WINDOW_S": "120",
    }


def find_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(find_free_port())
    return sorted(ports)


class Workers:
    """One `ledgerflow worker` process per region, killable."""

    def __init__(self, env: dict[str, str], regions: tuple[str, ...], logs: Path) -> None:
        self.env = env
        self.regions = regions
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, region: str) -> None:
        log = (self.logs / f"worker-{region}.log").open("ab")
        self.procs[region] = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", "worker", "--region", region],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self, region: str) -> None:
        proc = self.procs[region]
        proc.send_signal(signal.SIGKILL)
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


@dataclass(frozen=True)
class Planned:
    transfer_id: str
    source: str
    target: str
    amount: int
    region: str
    to_region: str


async def run(transfers: int, clients: int, kills: int, seed: int, keep: bool) -> FaultReport:

    rng = random.Random(seed)
    report = FaultReport()
    faults: Counter[str] = Counter()
    began = time.monotonic()
    with scratch_dir(keep) as state:
        env = os.environ | isolated_env(state)
        settings = Settings.from_env(env)
        stack = DevStack(settings)
        stack.up()
        assert stack.postgres and stack.temporal and stack.s3
        workers = Workers(env, settings.regions, state)
        try:
            await stack.migrate()
            for region in settings.regions:
                workers.start(region)
            ledger = await LedgerClient.connect(settings)
            plan = await open_and_fund(ledger, settings, rng, transfers)
            report.submitted = len(plan)
            outcomes: dict[str, str] = {}
            queue: asyncio.Queue[Planned] = asyncio.Queue()
            for item in plan:
                queue.put_nowait(item)

            async def client() -> None:
                while not queue.empty():
                    item = queue.get_nowait()
                    outcomes[item.transfer_id] = await submit(ledger, item, report)

            def progress() -> float:
                return len(outcomes) / len(plan)

            async def hurt() -> None:
                await inject(stack, workers, settings, ledger, rng, kills, faults, report, progress)

            injector = asyncio.create_task(hurt())
            await asyncio.gather(*(client() for _ in range(clients)))
            await injector
            for outcome in outcomes.values():
                if outcome in FINAL:
                    setattr(report, outcome, getattr(report, outcome) + 1)
            await check(ledger, settings, plan, outcomes, report)
            await ledger.close()
        finally:
            workers.stop_all()
            with contextlib.suppress(StackError):
                stack.down()
    report.faults = dict(faults)
    report.seconds = time.monotonic() - began
    return report


@contextlib.contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ledgerflow-faults-"))
    try:
        yield path
    finally:
        if not keep:
            subprocess.run(["rm", "-rf", str(path)], check=False)


async def open_and_fund(
    ledger: LedgerClient, settings: Settings, rng: random.Random, transfers: int
) -> list[Planned]:
    """Per region a bank and six customers; transfers mostly local, one in
    ten to another region, and one in ten too large to be allowed."""
    run = f"{rng.getrandbits(32):08x}"
    customers: dict[str, list[str]] = {}
    for region in settings.regions:
        bank = f"bank-{region}-{run}"
        await ledger.open_account(bank, "USD", region=region, overdraft_limit=None)
        customers[region] = [f"c{i}-{region}-{run}" for i in range(6)]
        for account in customers[region]:
            await ledger.open_account(account, "USD", region=region)
            await ledger.transfer(f"fund-{account}", bank, account, "1000.00", "USD",
                                  initiated_by="faults", region=region)  # fmt: skip
    plan = []
    regions = list(settings.regions)
    for n in range(transfers):
        region = rng.choice(regions)
        source = rng.choice(customers[region])
        far = rng.random() < 0.1
        target_region = rng.choice([r for r in regions if r != region]) if far else region
        target = rng.choice([c for c in customers[target_region] if c != source])
        amount = rng.randint(100_000, 200_000) if rng.random() < 0.1 else rng.randint(1, 2_000)
        plan.append(Planned(f"f{run}-{n}", source, target, amount, region, target_region))
    return plan


async def submit(ledger: LedgerClient, item: Planned, report: FaultReport) -> str:
    """Resubmit the same id until its outcome is known (at most 10 minutes)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            result = await ledger.transfer(
                item.transfer_id, item.source, item.target, item.amount, "USD",
                initiated_by="faults", region=item.region, raise_on_rejection=False,
                confirm_within=20,
            )  # fmt: skip
            return str(result.status)
        except RequestError as exc:
            return f"error:{exc.type}"  # malformed: never happens with this plan
        except Exception:
            # A confirmation timeout, or the Temporal client's RPC errors while
            # a server restarts: the outcome is unknown, so ask again.
            pass
        report.client_retries += 1
        await asyncio.sleep(1.0)
    return "unknown"


async def inject(
    stack: DevStack,
    workers: Workers,
    settings: Settings,
    ledger: LedgerClient,
    rng: random.Random,
    kills: int,
    faults: Counter[str],
    report: FaultReport,
    progress: Callable[[], float],
) -> None:
    """The faults, in a random order, each when the clients have learned a
    given share of the outcomes (so every fault meets transfers in flight),
    each recovered from before the next."""
    assert stack.postgres and stack.temporal and stack.s3
    schedule = ["kill"] * kills + ["postgres", "temporal", "s3"]
    rng.shuffle(schedule)
    for n, fault in enumerate(schedule):
        due = (n + 1) / (len(schedule) + 1)
        while progress() < due:  # noqa: ASYNC110 - polling a plain counter
            await asyncio.sleep(0.05)
        if fault == "kill":
            region = rng.choice(list(settings.regions))
            workers.kill(region)
            await asyncio.sleep(rng.uniform(0.5, 3))
            workers.start(region)
        elif fault == "postgres":
            await asyncio.to_thread(stack.postgres.restart)
        elif fault == "temporal":
            await asyncio.to_thread(stack.temporal.stop)
            await asyncio.sleep(1)
            await asyncio.to_thread(stack.temporal.start)
        elif fault == "s3":
            report.archive_completed = await archive_through_s3_outage(stack, settings, ledger)
        faults[fault] += 1


async def archive_through_s3_outage(
    stack: DevStack, settings: Settings, ledger: LedgerClient
) -> bool:
    """Run the archive for the first region with S3 frozen for 5 s in the middle."""
    assert stack.s3
    region = settings.regions[0]
    pid = stack.s3.pid()
    assert pid is not None
    handle = await ledger.temporal.start_workflow(
        ArchiveWorkflow.run,
        ArchiveRequest(region=region, retry_window_s=120),
        id=f"archive-{region}-faults-{time.time_ns()}",
        task_queue=settings.task_queue(region),
    )
    await asyncio.sleep(0.5)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(5)
    finally:
        os.kill(pid, signal.SIGCONT)
    for _ in range(5):  # the client itself may meet a Temporal restart here
        try:
            result = await asyncio.wait_for(handle.result(), 300)
            return result.segments > 0 and result.events > 0
        except Exception:
            await asyncio.sleep(2)
    return False


async def check(
    ledger: LedgerClient,
    settings: Settings,
    plan: list[Planned],
    outcomes: dict[str, str],
    report: FaultReport,
) -> None:
    """Compare what the clients learned with what the databases hold."""
    ids = [p.transfer_id for p in plan]
    recorded: dict[str, str] = {}  # in the source region: local, outbound or reversal
    arrived: dict[str, str] = {}  # in the destination region: inbound
    legs: Counter[tuple[str, str]] = Counter()  # (posting key, leg) -> events
    sound: list[bool] = []
    sums_zero = True
    for region in settings.regions:
        # A fresh pool: the client's may hold connections from before a restart.
        engine: AsyncEngine = create_engine(settings.reader_url(region), settings, pool_size=1)
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT transfer_id, status, kind FROM transfers "
                    "WHERE transfer_id = ANY(:ids) OR transfer_id = ANY(:rev)"
                ),
                {"ids": ids, "rev": [f"{i}/reversal" for i in ids]},
            )
            for row in rows:
                if row.kind == "inbound":
                    arrived[row.transfer_id] = row.status
                elif row.kind == "reversal":
                    recorded[row.transfer_id.removesuffix("/reversal")] = "reversed"
                elif row.transfer_id not in recorded:
                    recorded[row.transfer_id] = row.status
            events = await conn.execute(
                text(
                    "SELECT transfer_id, leg, count(*) AS n FROM events "
                    "WHERE transfer_id = ANY(:ids) GROUP BY transfer_id, leg"
                ),
                {"ids": ids},
            )
            for row in events:
                legs[(f"{region}/{row.transfer_id}", row.leg)] = row.n
            total = (
                await conn.execute(text("SELECT coalesce(sum(amount), 0) FROM events"))
            ).scalar_one()
            sums_zero = sums_zero and total == 0
        sound.append((await verify_region(engine, region)).sound)
        await engine.dispose()
    report.verify_sound = all(sound)
    report.double_entry_zero = sums_zero
    report.duplicated = sum(1 for n in legs.values() if n > 1)
    planned = {p.transfer_id: p for p in plan}
    for transfer_id in ids:
        learned = outcomes.get(transfer_id, "unknown")
        stored = recorded.get(transfer_id)
        if learned not in FINAL or stored is None:
            report.lost += 1
            continue
        if learned != stored:
            report.mismatched += 1
            continue
        if learned == "confirmed":
            item = planned[transfer_id]
            home = f"{item.region}/{transfer_id}"
            posted = legs[(home, "debit")] == 1 and legs[(home, "credit")] == 1
            if item.to_region != item.region:
                away = [k for k in legs if k[0].endswith(f"/{transfer_id}") and k[0] != home]
                posted = posted and arrived.get(transfer_id) == "confirmed" and len(away) == 2
            if not posted:
                report.lost += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kills", type=int, default=3, help="worker SIGKILLs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the scratch state and logs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.transfers, args.clients, args.kills, args.seed, args.keep))
    if args.json:
        print(json.dumps(asdict(report) | {"ok": report.ok}, indent=2))
    else:
        for key, value in asdict(report).items():
            print(f"{key}: {value}")
        print(f"ok: {report.ok}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
