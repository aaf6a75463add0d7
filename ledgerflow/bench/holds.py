"""Holds and multi-leg transactions against transfers, in the same run:
what a caller waits for a hold's placement, a capture and a three-leg
transaction (one at a time), next to a transfer's confirmation; and
sustained holds placed and transactions posted per second against transfers
per second from the same number of concurrent callers. Against a running
system (`make run`):

    .venv/bin/ledgerflow bench holds --count 100 --clients 8 --seconds 10
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ledgerflow.bench.latency import percentile
from ledgerflow.client import LedgerClient
from ledgerflow.domain.transactions import LegRequest


@dataclass(frozen=True)
class HoldsBenchReport:
    count: int
    transfer_p50_ms: float
    transfer_p99_ms: float
    place_p50_ms: float
    place_p99_ms: float
    capture_p50_ms: float
    capture_p99_ms: float
    clients: int
    seconds: float
    transfers_per_s: float
    holds_per_s: float
    #: holds/s over transfers/s, same callers, same run
    ratio: float
    #: a three-leg transaction (one debit, two credits), one at a time
    transaction_p50_ms: float = 0.0
    transaction_p99_ms: float = 0.0
    transactions_per_s: float = 0.0
    #: transactions/s over transfers/s, same callers, same run
    transaction_ratio: float = 0.0


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def _sustained(
    clients: int, seconds: float, step: Callable[[str], Awaitable[object]]
) -> float:
    """Operations per second from `clients` callers, each one after another."""
    done = 0
    deadline = time.monotonic() + seconds

    async def caller(n: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < deadline:
            await step(f"{n}-{i}")
            i += 1
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(caller(n) for n in range(clients)))
    return done / (time.monotonic() - started)


async def holds_bench(
    ledger: LedgerClient,
    count: int,
    clients: int,
    seconds: float,
    region: str,
    progress: Callable[[str], None] | None = None,
) -> HoldsBenchReport:
    run = uuid.uuid4().hex[:8]
    bank, shop, fees = f"bench-bank-{run}", f"bench-shop-{run}", f"bench-fees-{run}"
    await ledger.open_account(bank, "USD", region=region, overdraft_limit=None)
    await ledger.open_account(shop, "USD", region=region)
    await ledger.open_account(fees, "USD", region=region)
    # A card payment with its fee: the payer debited, merchant and fees credited.
    legs = [LegRequest(bank, "debit", 3, "USD"), LegRequest(shop, "credit", 2, "USD"),
            LegRequest(fees, "credit", 1, "USD")]  # fmt: skip

    def transaction(key: str) -> Awaitable[object]:
        return ledger.transaction(key, legs, initiated_by="bench", region=region)

    transfer_ms, place_ms, capture_ms, transaction_ms = [], [], [], []
    for i in range(count + 3):  # three warm-up rounds
        key = f"{run}-{i}"
        t = await _timed(functools.partial(ledger.transfer, f"bt-{key}", bank, shop, 1, "USD",
                                           initiated_by="bench"))  # fmt: skip
        p = await _timed(functools.partial(ledger.hold, f"bh-{key}", bank, shop, 2, "USD",
                                           expires_in=3600, initiated_by="bench"))  # fmt: skip
        c = await _timed(functools.partial(ledger.capture, f"bh-{key}", 2, capture_id="c1"))
        x = await _timed(functools.partial(transaction, f"bx-{key}"))
        if i >= 3:
            transfer_ms.append(t)
            place_ms.append(p)
            capture_ms.append(c)
            transaction_ms.append(x)
        if progress and i % 10 == 9:
            progress(f"  {i + 1} of {count + 3} transfer, hold, capture, transaction")
    transfers = await _sustained(
        clients, seconds,
        lambda k: ledger.transfer(f"st-{run}-{k}", bank, shop, 1, "USD", initiated_by="bench"),
    )  # fmt: skip
    holds = await _sustained(
        clients, seconds,
        lambda k: ledger.hold(f"sh-{run}-{k}", bank, shop, 1, "USD", expires_in=3600,
                              initiated_by="bench"),
    )  # fmt: skip
    transactions = await _sustained(clients, seconds, lambda k: transaction(f"sx-{run}-{k}"))
    return HoldsBenchReport(
        count=count,
        transfer_p50_ms=percentile(transfer_ms, 50),
        transfer_p99_ms=percentile(transfer_ms, 99),
        place_p50_ms=percentile(place_ms, 50),
        place_p99_ms=percentile(place_ms, 99),
        capture_p50_ms=percentile(capture_ms, 50),
        capture_p99_ms=percentile(capture_ms, 99),
        clients=clients,
        seconds=seconds,
        transfers_per_s=transfers,
        holds_per_s=holds,
        ratio=holds / transfers if transfers else 0.0,
        transaction_p50_ms=percentile(transaction_ms, 50),
        transaction_p99_ms=percentile(transaction_ms, 99),
        transactions_per_s=transactions,
        transaction_ratio=transactions / transfers if transfers else 0.0,
    )
