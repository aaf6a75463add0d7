"""A load run through the HTTP API, with the fault suite's zero-loss checks.

Concurrent writers post transfers over HTTP, a share of them twice at once
under the same Idempotency-Key (both must answer the same) and a few again
with another body (409, nothing posted); one in ten is too large to allow
(422, recorded as rejected); one in ten crosses to another region. Then
every key once more, and the stores are judged with the fault suite's
counters (lost, posted twice, outcome mismatch, read model diverged, double
entry, verify findings). In the same run, the same number of transfers of the
same shape through the SDK gives the baseline: the API's added latency.

    python -m tests.tools.api_load --transfers 2000 --clients 16

(its own ledger; `tests/e2e/test_api_load.py` is the short form on the test
servers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from ledgerflow.bench.api import api_bench
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from tests.tools.checks import Counters, Expected, gather, judge


@dataclass
class LoadReport:
    transfers: int = 0
    requests: int = 0
    duplicates: int = 0
    conflicts: int = 0
    confirmed: int = 0
    rejected: int = 0
    reversed: int = 0
    #: answers a client did not expect (a bug): any non-zero fails the run
    errors: int = 0
    #: keys whose answers differed between the requests that carried them
    answers_changed: int = 0
    retried: int = 0
    #: requests cut off by the API process's death, asked again (same key)
    cut: int = 0
    #: times the API process was killed mid-load and started again
    api_kills: int = 0
    counters: Counters = field(default_factory=Counters)
    api_p50_ms: float = 0.0
    api_p99_ms: float = 0.0
    sdk_p50_ms: float = 0.0
    sdk_p99_ms: float = 0.0
    #: one caller at a time, API and SDK alternating: the latency the API adds
    api_alone_p50_ms: float = 0.0
    api_alone_p99_ms: float = 0.0
    sdk_alone_p50_ms: float = 0.0
    sdk_alone_p99_ms: float = 0.0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def added_p50_ms(self) -> float:
        return self.api_alone_p50_ms - self.sdk_alone_p50_ms

    @property
    def ok(self) -> bool:
        return (
            self.counters.clean
            and self.errors == 0
            and self.answers_changed == 0
            and self.confirmed + self.rejected + self.reversed == self.transfers
        )


@dataclass(frozen=True)
class Planned:
    key: str
    source: str
    target: str
    amount: int
    region: str
    to_region: str
    twice: bool
    conflicting: bool


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


async def prepare(
    ledger: LedgerClient, settings: Settings, rng: random.Random, transfers: int, tag: str
) -> tuple[list[Planned], list[Planned]]:
    """Accounts in two regions, funded; a plan for the API and one for the SDK."""
    home, far = settings.regions[0], settings.regions[1]
    bank = f"lb-{tag}"
    await ledger.open_account(bank, "USD", region=home, overdraft_limit=None)
    local = [f"lc{i}-{tag}" for i in range(8)]
    remote = [f"lr{i}-{tag}" for i in range(2)]
    for account in local:
        await ledger.open_account(account, "USD", region=home)
        await ledger.transfer(f"lf-{account}", bank, account, 10_000_000, "USD",
                              initiated_by="load", region=home)  # fmt: skip
    for account in remote:
        await ledger.open_account(account, "USD", region=far)

    def plan(prefix: str) -> list[Planned]:
        made = []
        for n in range(transfers):
            source = rng.choice(local)
            crossing = rng.random() < 0.1
            target = (
                rng.choice(remote) if crossing else rng.choice([a for a in local if a != source])
            )
            amount = 50_000_000 if rng.random() < 0.1 else rng.randint(1, 5_000)
            made.append(Planned(f"{prefix}{n}-{tag}", source, target, amount, home,
                                far if crossing else home, twice=rng.random() < 0.3,
                                conflicting=rng.random() < 0.05))  # fmt: skip
        return made

    return plan("la"), plan("ls")


class Writer:
    """Posts planned transfers over HTTP, asking again (same key) while the
    answer is not known yet (503, 504)."""

    def __init__(self, client: httpx.AsyncClient, report: LoadReport) -> None:
        self.client = client
        self.report = report
        self.answers: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        self.latencies: list[float] = []

    async def post(self, item: Planned, amount: int | None = None) -> tuple[int, Any]:
        body = {"from_account": item.source, "to_account": item.target,
                "amount": item.amount if amount is None else amount, "currency": "USD"}  # fmt: skip
        while True:
            began = time.perf_counter()
            self.report.requests += 1
            try:
                response = await self.client.post(
                    "/v1/transfers", json=body, headers={"Idempotency-Key": item.key}
                )
            except httpx.TransportError:
                # The API process died under the request (or is starting
                # again): what a client does, ask again with the same key.
                self.report.cut += 1
                await asyncio.sleep(0.2)
                continue
            if response.status_code in (503, 504):
                self.report.retried += 1
                await asyncio.sleep(0.5)
                continue
            if amount is None:
                self.latencies.append(time.perf_counter() - began)
            return response.status_code, response.json()

    async def run(self, item: Planned) -> None:
        if item.twice:
            self.report.duplicates += 1
            both = await asyncio.gather(self.post(item), self.post(item))
            self.answers[item.key] += both
        else:
            self.answers[item.key].append(await self.post(item))
        if item.conflicting:
            self.report.conflicts += 1
            status, body = await self.post(item, amount=item.amount + 1)
            if (status, body.get("error")) != (409, "DuplicateTransferMismatch"):
                self.report.errors += 1
                self.report.examples.append(f"{item.key}: another body answered {status}")


def outcome_of(status: int, body: Any) -> str:
    if status == 200:
        return str(body["status"])
    if status == 422 and body.get("error") == "InsufficientFunds":
        return "rejected"
    return f"error:{status}:{body.get('error')}"


async def run_load(
    api_url: str,
    token: str,
    ledger: LedgerClient,
    settings: Settings,
    *,
    transfers: int,
    clients: int,
    seed: int,
    catch_up_s: float = 60.0,
    latency_samples: int = 100,
    interrupt: Callable[[], Awaitable[None]] | None = None,
) -> LoadReport:
    """`catch_up_s`: how long to wait for each region's catch-up projector
    before judging (0 where none runs: the test servers project inline).
    `interrupt` runs once, a third of the way through the writers' queue,
    while they keep writing (it kills the API process and starts another)."""
    rng = random.Random(seed)
    report = LoadReport(transfers=transfers)
    began = time.monotonic()
    tag = f"{rng.getrandbits(32):08x}"
    over_api, over_sdk = await prepare(ledger, settings, rng, transfers, tag)
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120,
        limits=limits,
    ) as client:  # fmt: skip
        writer = Writer(client, report)
        queue = list(over_api)
        interrupting: list[asyncio.Task[None]] = []

        async def drain() -> None:
            while queue:
                if interrupt is not None and not interrupting and len(queue) <= 2 * transfers // 3:
                    interrupting.append(asyncio.create_task(interrupt()))
                await writer.run(queue.pop())

        await asyncio.gather(*(drain() for _ in range(clients)), *interrupting)
        await asyncio.gather(*interrupting)
        # Every key once more, after everything: the same answer.
        for item in over_api:
            writer.answers[item.key].append(await writer.post(item))

    sdk_latencies: list[float] = []
    sdk_queue = list(over_sdk)

    async def drain_sdk() -> None:
        while sdk_queue:
            item = sdk_queue.pop()
            started = time.perf_counter()
            await ledger.transfer(item.key, item.source, item.target, item.amount, "USD",
                                  initiated_by="load", region=item.region,
                                  raise_on_rejection=False)  # fmt: skip
            sdk_latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(drain_sdk() for _ in range(clients)))

    # One at a time, alternating, so neither path queues behind the other
    # (`bench api`'s measurement; a refused or unconfirmed post raises).
    alone = await api_bench(ledger, api_url, token, latency_samples, lambda _: None)

    expected: dict[str, Expected] = {}
    observed: dict[str, list[str]] = {}
    for item in over_api:
        answers = writer.answers[item.key]
        outcomes = [outcome_of(status, body) for status, body in answers]
        observed[item.key] = outcomes
        if len({json.dumps(body, sort_keys=True) for _, body in answers}) > 1:
            report.answers_changed += 1
            report.examples.append(f"{item.key}: answers differ: {sorted(set(outcomes))}")
        first = outcomes[0]
        if first.startswith("error:"):
            report.errors += 1
            report.examples.append(f"{item.key}: {first}")
            continue
        setattr(report, first, getattr(report, first) + 1)
        far = item.to_region if item.to_region != item.region else None
        expected[item.key] = Expected(first, item.region, far)
    facts = await gather(settings, [item.key for item in over_api], catch_up_s=catch_up_s)
    report.counters = judge(facts, expected, observed)
    report.api_p50_ms = 1000 * _quantile(writer.latencies, 0.5)
    report.api_p99_ms = 1000 * _quantile(writer.latencies, 0.99)
    report.sdk_p50_ms = 1000 * _quantile(sdk_latencies, 0.5)
    report.sdk_p99_ms = 1000 * _quantile(sdk_latencies, 0.99)
    report.api_alone_p50_ms, report.api_alone_p99_ms = alone.api_p50_ms, alone.api_p99_ms
    report.sdk_alone_p50_ms, report.sdk_alone_p99_ms = alone.sdk_p50_ms, alone.sdk_p99_ms
    report.seconds = time.monotonic() - began
    return report


async def run_own(
    transfers: int, clients: int, seed: int, latency_samples: int = 100, kill_api: bool = False
) -> LoadReport:
    """The load on a ledger of its own (worker processes, catch-up projectors,
    `ledgerflow api` as a process of its own), so the counters judge nothing
    but this run. With `kill_api`, the API process is SIGKILLed a third of the
    way through, requests in flight, and started again."""
    from ledgerflow.api.tokens import PostgresTokens, issue
    from ledgerflow.store.postgres import create_engine
    from tests.tools.api_server import ApiProcess
    from tests.tools.stack import own_ledger

    async with own_ledger() as ledger:
        settings = ledger.settings
        owner = create_engine(settings.migration_url(settings.default_region), settings)
        issued = issue("load", ("write",), created_by="load", rate_per_s=100_000)
        await PostgresTokens(owner).add(issued.record)
        api = ApiProcess(ledger.env)
        await api.start()
        try:
            report = await run_load(
                api.url, issued.token, ledger.client, settings,
                transfers=transfers, clients=clients, seed=seed,
                latency_samples=latency_samples, interrupt=api.restart if kill_api else None,
            )  # fmt: skip
            report.api_kills = api.kills
            return report
        finally:
            await api.stop()
            await owner.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.tools.api_load", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--kill-api", action="store_true",
        help="SIGKILL the API process a third of the way in, then start it again",
    )  # fmt: skip
    args = parser.parse_args(argv)
    report = asyncio.run(run_own(args.transfers, args.clients, args.seed, kill_api=args.kill_api))
    shown = asdict(report) | {"added_p50_ms": report.added_p50_ms, "ok": report.ok}
    print(json.dumps(shown, indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
