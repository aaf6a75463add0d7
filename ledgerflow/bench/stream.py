"""The event stream, measured against a running system (`make run`):

- publish lag: transfers at a steady rate (the e2e bench's sustained rate),
  and for each of their events the time from its commit (`recorded_at`) to
  the global stream storing it (after the relay's poll, the publish and the
  global stream's sourcing), p50 and p99;
- events per second through the relay: the relay's own loop (read below
  the horizon, pipelined publishes, acknowledgements) over the region's
  history, into a scratch stream of the region's server (the region's own
  stream is the worker's relay's), deleted afterwards.

    .venv/bin/ledgerflow bench stream --rate 20 --seconds 10
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js.api import Placement, StorageType, StreamConfig

from ledgerflow.bench.latency import percentile
from ledgerflow.client import LedgerClient


@dataclass(frozen=True)
class StreamBenchReport:
    rate_per_s: float
    seconds: float
    events: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    #: A backlog published by one relay, from its store to the region's stream.
    backlog_events: int
    relay_events_per_s: float


async def _steady(ledger: LedgerClient, rate: float, seconds: float, key: str, region: str,
                  bank: str, shop: str) -> int:  # fmt: skip
    """Transfers started at `rate` per second for `seconds`; how many."""
    interval = 1.0 / rate
    pending: list[asyncio.Task[object]] = []
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        pending.append(asyncio.create_task(
            ledger.transfer(f"bs-{key}-{n}", bank, shop, 1, "USD", initiated_by="bench",
                            region=region)))  # fmt: skip
        n += 1
        await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))
    await asyncio.gather(*pending)
    return n


async def stream_bench(
    ledger: LedgerClient, rate: float, seconds: float, region: str, backlog: int = 2000
) -> StreamBenchReport:
    from ledgerflow.stream.consumer import read_events
    from ledgerflow.stream.relay import Relay
    from ledgerflow.stream.topology import connect

    run = uuid.uuid4().hex[:8]
    bank, shop = f"bench-bank-{run}", f"bench-shop-{run}"
    await ledger.open_account(bank, "USD", region=region, overdraft_limit=None)
    await ledger.open_account(shop, "USD", region=region)
    since = datetime.now(UTC)
    sent = await _steady(ledger, rate, seconds, run, region, bank, shop)
    settings = ledger.settings
    nc = await connect(settings.nats_url(region), name="ledgerflow-bench")
    scratch = f"BENCH_{run.upper()}"
    try:
        js = nc.jetstream()
        lags: list[float] = []
        wanted = f"bs-{run}-"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lags = [
                (item.stored_at - item.event.recorded_at).total_seconds() * 1000
                async for item in read_events(js, start=since, account=shop)
                if (item.event.transfer_id or "").startswith(wanted)
            ]
            if len(lags) >= sent:
                break
            await asyncio.sleep(0.5)
        await js.add_stream(StreamConfig(
            name=scratch, subjects=[f"bench{run}.{region}.>"], storage=StorageType.FILE,
            placement=Placement(cluster=region)))  # fmt: skip
        relay = Relay(ledger.engine(region), region, js, batch_size=500, stream=scratch,
                      root=f"bench{run}")  # fmt: skip
        started = time.perf_counter()
        while relay.published < backlog and await relay.run_once():
            pass
        took = time.perf_counter() - started
        published = relay.published
        await js.delete_stream(scratch)
    finally:
        await nc.close()
    return StreamBenchReport(
        rate_per_s=rate, seconds=seconds, events=len(lags),
        lag_p50_ms=percentile(lags, 50) if lags else 0.0,
        lag_p99_ms=percentile(lags, 99) if lags else 0.0,
        lag_max_ms=max(lags, default=0.0), backlog_events=published,
        relay_events_per_s=published / took if took and published else 0.0,
    )  # fmt: skip
