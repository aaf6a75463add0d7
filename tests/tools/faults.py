"""The fault suite: thousands of transfers from concurrent clients while the
system is hurt, then proof that nothing was lost, posted twice, paid back
after arriving, credited without a debit, or answered two ways.

It runs a ledger of its own (`tests.tools.stack`). During the run, each
fault triggered by what it observes, not by a timer:

- a worker is SIGKILLed exactly between a posting's commit and its caller's
  answer (a failpoint armed for one planned transfer, `after-append`), and
  started again without it;
- a worker is SIGKILLed while transfers are in flight, and started again;
- PostgreSQL restarts (fast shutdown: every connection cut) while an append
  is executing;
- the Temporal dev server restarts on its database file;
- S3 freezes (SIGSTOP) while a segment upload is in flight, then thaws;
- one region's NATS server stops while its relay has events to publish,
  and starts again; a worker SIGKILL meets its relay in the middle of a
  batch besides;
- a durable consumer of the global stream crashes (goes away without
  acknowledging what it was given), and a new one under its name resumes.

At the end every event of every region must be in the global stream exactly
once, in its region's order, verified against the stores (`stream verify`),
and the consumer must have received every one of them.

The plan mixes local and cross-region transfers, transfers too large to be
allowed (rejected), and cross-region transfers whose destination refuses
them (reversed). Clients behave as a careful client of any payment system
does: on a timeout or a connection error they resubmit the same id until
they learn its outcome; any other error is counted, never swallowed. After
the faults every id is submitted once more, and must answer as it did.
Then `tests.tools.checks` counts what went wrong against the databases, the
read models (once caught up) and `verify`:

    .venv/bin/python -m tests.tools.faults --transfers 2000     # make faults
    .venv/bin/python -m tests.tools.faults --transfers 200 --kills 1   # the CI form

It exits non-zero if any counter is not zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from ledgerflow.archive.messages import UPLOAD_SEGMENT, ArchiveRequest
from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import ConfirmationTimeout, LedgerError
from ledgerflow.stream.consumer import read_events
from ledgerflow.stream.subjects import GLOBAL_STREAM
from ledgerflow.stream.topology import connect
from ledgerflow.workflows.archive import ArchiveWorkflow
from tests.tools.checks import Counters, Expected, gather, judge, stream_reports
from tests.tools.stack import Ledger, own_ledger

#: Outcomes a client can learn; anything else is retried with the same id.
FINAL = ("confirmed", "rejected", "reversed")
#: What a careful client retries: the outcome is unknown, ask again.
TRANSIENT = (ConfirmationTimeout, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError)


@dataclass
class FaultReport:
    submitted: int = 0
    confirmed: int = 0
    rejected: int = 0
    reversed: int = 0
    unknown: int = 0
    client_retries: int = 0
    #: Errors a client does not expect (a bug): counted, never retried away.
    client_errors: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    #: The worker died on the failpoint, between a commit and its answer.
    failpoint_fired: bool = False
    archive_completed: bool = False
    #: the S3 freeze began while an upload activity was in flight
    s3_froze_an_upload: bool = False
    counters: Counters = field(default_factory=Counters)
    #: The global stream against the stores, at the end.
    stream_events: int = 0
    stream_missing: int = 0
    stream_duplicates: int = 0
    stream_unsound: list[str] = field(default_factory=list)
    #: Events the crashing consumer never received (it must be none).
    consumer_missed: int = 0
    consumer_redelivered: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.counters.clean
            and self.client_errors == 0
            and self.unknown == 0
            and self.archive_completed
            and self.submitted == self.confirmed + self.rejected + self.reversed
            and self.stream_events > 0
            and self.stream_missing == self.stream_duplicates == self.consumer_missed == 0
            and not self.stream_unsound
        )


@dataclass(frozen=True)
class Planned:
    transfer_id: str
    source: str
    target: str
    amount: int
    region: str
    to_region: str
    #: The destination holds another currency: the saga will pay it back.
    refused_abroad: bool = False


async def run(
    transfers: int, clients: int, kills: int, seed: int, keep: bool, give_up_s: float = 600
) -> FaultReport:
    """`give_up_s`: how long a client asks again for one transfer's outcome
    before it counts it unknown (so a stuck region fails the run in minutes)."""
    rng = random.Random(seed)
    report = FaultReport()
    faults: Counter[str] = Counter()
    began = time.monotonic()
    async with own_ledger(keep) as ledger:
        plan = await open_and_fund(ledger, rng, transfers)
        report.submitted = len(plan)
        observed: dict[str, list[str]] = defaultdict(list)
        queue: asyncio.Queue[Planned] = asyncio.Queue()
        for item in plan:
            queue.put_nowait(item)

        async def client() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                observed[item.transfer_id].append(
                    await submit(ledger.client, item, report, give_up_s)
                )

        def progress() -> float:
            return len(observed) / len(plan)

        injector = asyncio.create_task(inject(ledger, plan, rng, kills, faults, report, progress))
        consumer = ConsumerThatCrashes(ledger)
        consuming = asyncio.create_task(consumer.run(progress))
        await asyncio.gather(*(client() for _ in range(clients)))
        await injector
        # Every id once more, after everything: it must answer as it did.
        await asyncio.gather(
            *(_again(ledger.client, item, report, observed, give_up_s) for item in plan)
        )
        ledger.workers.require_running()
        learned = {tid: outcomes[0] for tid, outcomes in observed.items()}
        for outcome in learned.values():
            if outcome in FINAL:
                setattr(report, outcome, getattr(report, outcome) + 1)
            else:
                report.unknown += 1
        expected = {
            item.transfer_id: Expected(
                learned[item.transfer_id],
                item.region,
                item.to_region if item.to_region != item.region else None,
            )
            for item in plan
            if learned[item.transfer_id] in FINAL
        }
        facts = await gather(ledger.settings, [item.transfer_id for item in plan])
        report.counters = judge(facts, expected, observed)
        await check_stream(ledger, report)
        consumer.done.set()
        await consuming
        everything = {e for e in await stream_event_ids(ledger)}
        report.consumer_missed = len(everything - consumer.received)
        report.consumer_redelivered = consumer.redelivered
    report.faults = dict(faults)
    report.seconds = time.monotonic() - began
    return report


async def open_and_fund(ledger: Ledger, rng: random.Random, transfers: int) -> list[Planned]:
    """Per region a bank, six USD customers and one EUR one; transfers mostly
    local, one in ten to another region (one in four of those to its EUR
    customer, which refuses USD), and one in ten too large to be allowed."""
    client, settings = ledger.client, ledger.settings
    run = f"{rng.getrandbits(32):08x}"
    customers: dict[str, list[str]] = {}
    euro: dict[str, str] = {}
    for region in settings.regions:
        bank = f"bank-{region}-{run}"
        await client.open_account(bank, "USD", region=region, overdraft_limit=None)
        euro[region] = f"eur-{region}-{run}"
        await client.open_account(euro[region], "EUR", region=region)
        customers[region] = [f"c{i}-{region}-{run}" for i in range(6)]
        for account in customers[region]:
            await client.open_account(account, "USD", region=region)
            await client.transfer(f"fund-{account}", bank, account, "1000.00", "USD",
                                  initiated_by="faults", region=region)  # fmt: skip
    plan = []
    regions = list(settings.regions)
    for n in range(transfers):
        region = rng.choice(regions)
        source = rng.choice(customers[region])
        far = rng.random() < 0.1
        target_region = rng.choice([r for r in regions if r != region]) if far else region
        refused = far and rng.random() < 0.25
        target = euro[target_region] if refused else rng.choice(
            [c for c in customers[target_region] if c != source]
        )  # fmt: skip
        amount = rng.randint(100_000, 200_000) if rng.random() < 0.1 else rng.randint(1, 2_000)
        plan.append(Planned(f"f{run}-{n}", source, target, amount, region, target_region, refused))
    return plan


async def submit(
    ledger: LedgerClient, item: Planned, report: FaultReport, give_up_s: float = 600
) -> str:
    """Resubmit the same id until its outcome is known (at most `give_up_s`)."""
    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        try:
            result = await ledger.transfer(
                item.transfer_id, item.source, item.target, item.amount, "USD",
                initiated_by="faults", region=item.region, raise_on_rejection=False,
                confirm_within=20,
            )  # fmt: skip
            return str(result.status)
        except TRANSIENT:
            pass  # the outcome is unknown: ask again
        except LedgerError as exc:
            report.client_errors += 1
            return f"error:{exc.type}"
        except Exception as exc:
            report.client_errors += 1
            return f"error:{type(exc).__name__}: {exc}"
        report.client_retries += 1
        await asyncio.sleep(1.0)
    return "unknown"


async def _again(
    ledger: LedgerClient,
    item: Planned,
    report: FaultReport,
    observed: dict[str, list[str]],
    give_up_s: float,
) -> None:
    observed[item.transfer_id].append(await submit(ledger, item, report, give_up_s))


async def inject(
    ledger: Ledger,
    plan: list[Planned],
    rng: random.Random,
    kills: int,
    faults: Counter[str],
    report: FaultReport,
    progress: Callable[[], float],
) -> None:
    """The faults, in a random order, each once the clients have learned a
    given share of the outcomes (so it meets transfers in flight), each
    triggered by the state it must meet, and recovered from before the next."""
    stack, workers, settings = ledger.stack, ledger.workers, ledger.settings
    assert stack.postgres and stack.temporal and stack.s3
    schedule = ["kill"] * kills + ["postgres", "temporal", "s3", "nats"]
    rng.shuffle(schedule)
    # First: it needs a planned transfer not yet submitted, and the others
    # take long enough (an archive through an S3 outage) for the clients to
    # have submitted everything by the end.
    schedule.insert(0, "kill-after-append")
    for n, fault in enumerate(schedule):
        due = (n + 1) / (len(schedule) + 1)
        while progress() < due:  # noqa: ASYNC110 - polling a plain counter
            await asyncio.sleep(0.05)
        if fault == "kill":
            region = rng.choice(list(settings.regions))
            workers.kill(region)
            await asyncio.sleep(rng.uniform(0.5, 3))
            await workers.started(region)
        elif fault == "kill-after-append":
            report.failpoint_fired = await kill_after_append(ledger, plan, progress)
        elif fault == "postgres":
            await _while_an_append_runs(ledger)
            await asyncio.to_thread(stack.postgres.restart)
        elif fault == "temporal":
            await asyncio.to_thread(stack.temporal.stop)
            await asyncio.sleep(1)
            await asyncio.to_thread(stack.temporal.start)
        elif fault == "s3":
            completed, met = await archive_through_s3_outage(ledger)
            report.archive_completed, report.s3_froze_an_upload = completed, met
        elif fault == "nats":
            server = rng.choice(stack.nats)
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(rng.uniform(1, 3))  # its region's relay cannot publish
            await asyncio.to_thread(server.start)
        # A worker that died of a fault is a finding (and a region without
        # one would only show, much later, as transfers that never end).
        workers.require_running()
        faults[fault] += 1


async def kill_after_append(
    ledger: Ledger, plan: list[Planned], progress: Callable[[], float]
) -> bool:
    """Arm the failpoint for a local transfer not yet submitted, in its region's
    worker, wait for the worker to die on it, and start it again disarmed."""
    start = int(progress() * len(plan))
    # Far enough ahead that no client has it yet, near enough to come.
    skip = min(50, (len(plan) - start) // 2)
    ahead = [p for p in plan[start + skip :] if p.region == p.to_region]
    if not ahead:
        return False
    victim = ahead[0]
    workers = ledger.workers
    workers.stop(victim.region)
    workers.start(victim.region, failpoints=f"after-append={victim.transfer_id}")
    deadline = time.monotonic() + 120
    while workers.running(victim.region) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    fired = not workers.running(victim.region)
    if not fired:
        workers.stop(victim.region)
    await workers.started(victim.region)
    return fired


async def _while_an_append_runs(ledger: Ledger, within_s: float = 30.0) -> None:
    """Wait (briefly) until some session is executing an append."""
    assert ledger.stack.postgres
    superuser = create_async_engine(ledger.stack.postgres.url("postgres", "postgres"))
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            async with superuser.connect() as conn:
                busy = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                            "AND query LIKE '%INSERT INTO events%' AND pid <> pg_backend_pid()"
                        )
                    )
                ).scalar_one()
            if busy:
                return
            await asyncio.sleep(0.01)
    finally:
        await superuser.dispose()


async def archive_through_s3_outage(ledger: Ledger) -> tuple[bool, bool]:
    """Archive the first region with S3 frozen for 5 s while an upload is in
    flight: whether the run completed, and whether the freeze met an upload."""
    stack, settings = ledger.stack, ledger.settings
    assert stack.s3
    region = settings.regions[0]
    pid = stack.s3.pid()
    assert pid is not None
    handle = await ledger.client.temporal.start_workflow(
        ArchiveWorkflow.run,
        ArchiveRequest(region=region, retry_window_s=120),
        id=f"archive-{region}-faults-{time.time_ns()}",
        task_queue=settings.task_queue(region),
    )
    deadline, uploading = time.monotonic() + 60, False
    while time.monotonic() < deadline and not uploading:
        described = await handle.describe()
        pending = described.raw_description.pending_activities
        uploading = any(a.activity_type.name == UPLOAD_SEGMENT for a in pending)
        if not uploading:
            await asyncio.sleep(0.02)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(5)
    finally:
        os.kill(pid, signal.SIGCONT)
    for _ in range(5):  # the client itself may meet a Temporal restart here
        try:
            result = await asyncio.wait_for(handle.result(), 300)
            return result.segments >= 1 and result.events > 0, uploading
        except TRANSIENT:
            await asyncio.sleep(2)
    return False, uploading


class ConsumerThatCrashes:
    """A durable consumer of the global stream that, a third of the way in,
    goes away holding a batch it never acknowledged; a new one under its
    name carries on. At the end it has received every event (some twice)."""

    NAME = "faults-audit"

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.received: set[str] = set()
        self.redelivered = 0
        self.done = asyncio.Event()

    async def run(self, progress: Callable[[], float]) -> None:
        crashed = False
        settings = self.ledger.settings
        while True:
            try:
                nc = await connect(settings.nats_url(settings.stream_region))
            except Exception:
                await asyncio.sleep(1)
                continue
            try:
                # Until caught up (what it was given and did not acknowledge
                # comes again after the acknowledgement window).
                reader = read_events(nc.jetstream(), durable=self.NAME, batch=50, wait_s=0.5)
                async with aclosing(reader):
                    async for item in reader:
                        self.received.add(item.event.event_id)
                        self.redelivered += item.delivered > 1
                        if not crashed and progress() > 1 / 3:
                            crashed = True  # gone, this batch unacknowledged
                            break
                        await item.ack()
                if self.done.is_set() and await self._caught_up(nc):
                    return
            except Exception:
                pass  # its server went away: connect again
            finally:
                await nc.close()
            await asyncio.sleep(0.5)

    async def _caught_up(self, nc: Any) -> bool:
        info = await nc.jetstream().consumer_info(GLOBAL_STREAM, self.NAME)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def check_stream(ledger: Ledger, report: FaultReport) -> None:
    """Every region's relay caught up, then the global stream verified."""
    try:
        verified = await stream_reports(ledger.settings, patience_s=120)
    except AssertionError as exc:
        report.stream_unsound.append(str(exc))
        return
    for region_report in verified:
        report.stream_events += region_report.messages
        report.stream_missing += region_report.missing
        report.stream_duplicates += region_report.duplicates
        if not region_report.clean:
            report.stream_unsound += [
                f"{region_report.region}: {e}" for e in region_report.examples
            ]


async def stream_event_ids(ledger: Ledger) -> list[str]:
    nc = await connect(ledger.settings.nats_url(ledger.settings.stream_region))
    try:
        return [item.event.event_id async for item in read_events(nc.jetstream())]
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.tools.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kills", type=int, default=3, help="worker SIGKILLs (in flight)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the scratch state and logs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.transfers, args.clients, args.kills, args.seed, args.keep))
    if args.json:
        print(json.dumps(asdict(report) | {"ok": report.ok}, indent=2, default=str))
    else:
        for key, value in asdict(report).items():
            print(f"{key}: {value}")
        print(f"ok: {report.ok}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
