"""`bench query`: point-in-time balance latency as an account's history grows.

For each size it writes a real history to the region's database: a pair of
accounts (unlimited overdraft) trading 1 minor unit back and forth, each
event hash-chained exactly as the append path does, a microsecond apart,
loaded with COPY (each transfer is 2 events, so 1M events in the measured
account means 2M rows). `verify` still finds the region sound afterwards.
Then it asks `balance_as_of` at random instants and reports p50/p99/max.

    .venv/bin/ledgerflow bench query --sizes 10000,100000,1000000
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledgerflow.audit.point_in_time import balance_as_of, replay_balance
from ledgerflow.bench.latency import percentile
from ledgerflow.bench.progress import bar
from ledgerflow.domain.hashing import chain_hash, event_content
from ledgerflow.domain.model import OpenAccountRequest
from ledgerflow.store.batch import event_id_for
from ledgerflow.store.postgres import PostgresEventStore

COLUMNS = [
    "event_id", "type", "account_id", "version", "amount", "currency", "balance_after",
    "occurred_at", "recorded_at", "region", "initiated_by", "transfer_id", "leg",
    "counterparty", "description", "metadata", "prev_hash", "hash",
]  # fmt: skip


@dataclass(frozen=True)
class QueryReport:
    events: int
    seed_seconds: float
    probes: int
    p50_ms: float
    p99_ms: float
    max_ms: float


#: Rows loaded before the first ANALYZE of a seed.
FIRST_ANALYZE = 50_000


class FreshStatistics:
    """ANALYZE events (as the schema owner) each time a bulk load has doubled it.

    The write-model triggers join the accounts a statement moved to their new
    events. A load grows the table faster than autovacuum analyses it, and on
    statistics of a table a tenth its size the planner hashes or merges the
    whole table into every transaction of a thousand accounts: a seed's cost
    then grows with the square of its size. With current statistics (as a
    region has them) it probes the (account, version) index per account.
    Without an owner's engine it does nothing."""

    def __init__(self, owner: AsyncEngine | None) -> None:
        self.owner = owner
        self.analyzed_at = 0

    async def grew_to(self, rows: int) -> None:
        if self.owner is None or rows < max(2 * self.analyzed_at, FIRST_ANALYZE):
            return
        async with self.owner.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("ANALYZE events"))
        self.analyzed_at = rows


async def seed_history(
    store: PostgresEventStore,
    events: int,
    progress: Callable[[int], None] | None = None,
    owner: AsyncEngine | None = None,
) -> tuple[str, datetime, datetime]:
    """Give a fresh account `events` events; return it and the span they cover
    (`owner`: see FreshStatistics)."""
    statistics = FreshStatistics(owner)
    run = uuid.uuid4().hex[:8]
    subject, other = f"hist-{run}-a", f"hist-{run}-b"
    heads: dict[str, tuple[str, int, int]] = {}
    for account_id in (subject, other):
        opened = await store.open_account(
            OpenAccountRequest(account_id, "USD", store.region, None, "bench"), datetime.now(UTC)
        )
        heads[account_id] = (opened.account.head_hash, 0, 1)
    # After the openings and one microsecond apart, so recorded_at grows with
    # version exactly as real postings (taken under the account lock) do.
    start = datetime.now(UTC)
    transfers = events - 1  # version 1 is AccountOpened

    def batches() -> Iterator[list[tuple[Any, ...]]]:
        batch: list[tuple[Any, ...]] = []
        for n in range(transfers):
            source, target = (subject, other) if n % 2 == 0 else (other, subject)
            instant = start + timedelta(microseconds=n + 1)
            batch += chained_transfer_rows(
                store.region, heads, f"hist-{run}-{n}", source, target, instant
            )
            if len(batch) >= 50_000 or n + 1 == transfers:
                yield batch
                batch = []

    loaded = 0

    async def after(rows: int) -> None:
        nonlocal loaded
        loaded += rows
        await statistics.grew_to(loaded)
        if progress:
            progress(loaded // 2)

    await load_pipelined(store, batches(), heads, after)
    return subject, start, start + timedelta(microseconds=transfers)


async def load_pipelined(
    store: PostgresEventStore,
    batches: Iterator[list[tuple[Any, ...]]],
    heads: dict[str, tuple[str, int, int]],
    after: Callable[[int], Awaitable[None]],
) -> None:
    """Load each batch of chained rows (`load_chained`) while a thread builds
    the next: building is Python (hashing, mostly), loading is PostgreSQL,
    and each has a core. `batches` advances `heads` as it builds; each load
    moves the heads to where its own batch left them. `after(rows)` runs
    after each load."""

    def build() -> tuple[list[tuple[Any, ...]], dict[str, tuple[str, int, int]]] | None:
        rows = next(batches, None)
        return None if rows is None else (rows, dict(heads))

    pending = await asyncio.to_thread(build)
    while pending is not None:
        rows, heads_after = pending
        building = asyncio.ensure_future(asyncio.to_thread(build))
        try:
            await load_chained(store, rows, heads_after)
        except BaseException:
            # The thread cannot be cancelled: let it finish before unwinding.
            await asyncio.gather(building, return_exceptions=True)
            raise
        await after(len(rows))
        pending = await building


async def load_chained(
    store: PostgresEventStore, rows: list[tuple[Any, ...]], heads: dict[str, tuple[str, int, int]]
) -> None:
    """COPY chained event rows and move the accounts' heads onto them, in one
    transaction: the schema checks at commit that every event is in its
    account's chain, and on the update that each head follows its events."""
    async with store.engine.begin() as conn:
        # A statement through SQLAlchemy first, so that the driver's COPY runs
        # inside this transaction rather than committing on its own.
        await conn.execute(text("SELECT 1"))
        raw = await conn.get_raw_connection()
        copy = raw.driver_connection  # asyncpg: COPY is the fast way to load rows
        assert copy is not None
        await copy.copy_records_to_table("events", records=rows, columns=COLUMNS)
        moved = sorted({row[2] for row in rows})
        for chunk in range(0, len(moved), HEADS_PER_STATEMENT):
            await _move_heads(conn, moved[chunk : chunk + HEADS_PER_STATEMENT], heads)


#: Accounts whose heads one UPDATE moves: a group commit's size. The triggers
#: join a statement's moved accounts to their new events; for a statement of
#: a thousand accounts (all of a small seeded ledger) the planner expects a
#: tenth of the table and hashes all of it, in every transaction, so that a
#: seed's cost grows with the square of its size. For a few dozen it probes
#: the (account, version) index per account, as it does for the append.
HEADS_PER_STATEMENT = 64


async def _move_heads(
    conn: AsyncConnection, moved: list[str], heads: dict[str, tuple[str, int, int]]
) -> None:
    await conn.execute(
        text(
            "UPDATE accounts AS a SET head_hash = h.head_hash, balance = h.balance, "
            "version = h.version, head_recorded_at = e.recorded_at "
            "FROM unnest(CAST(:ids AS text[]), CAST(:hashes AS text[]), "
            "CAST(:balances AS bigint[]), CAST(:versions AS bigint[])) "
            "AS h (account_id, head_hash, balance, version) "
            "JOIN events e ON e.account_id = h.account_id AND e.version = h.version "
            "WHERE a.account_id = h.account_id"
        ),
        {
            "ids": moved,
            "hashes": [heads[a][0] for a in moved],
            "balances": [heads[a][1] for a in moved],
            "versions": [heads[a][2] for a in moved],
        },
    )


def chained_transfer_rows(
    region: str,
    heads: dict[str, tuple[str, int, int]],
    transfer_id: str,
    source: str,
    target: str,
    instant: datetime,
) -> list[tuple[Any, ...]]:
    """COPY rows of both events of a 1-unit transfer, chained to (and
    advancing) each account's (head hash, balance, version) in `heads`."""
    rows = []
    for account_id, amount, leg, kind, counterparty in (
        (source, -1, "debit", "Debited", target),
        (target, 1, "credit", "Credited", source),
    ):
        prev, balance, version = heads[account_id]
        balance, version = balance + amount, version + 1
        event_id = event_id_for(f"transfer/{transfer_id}/{leg}")
        content = event_content(
            event_id=event_id, type=kind, account_id=account_id, version=version,
            amount=amount, currency="USD", balance_after=balance, occurred_at=instant,
            recorded_at=instant, region=region, initiated_by="bench",
            transfer_id=transfer_id, leg=leg, counterparty=counterparty,
            description=None, metadata={},
        )  # fmt: skip
        digest = chain_hash(prev, content)
        heads[account_id] = (digest, balance, version)
        rows.append(
            (uuid.UUID(event_id), kind, account_id, version, amount, "USD", balance,
             instant, instant, region, "bench", transfer_id, leg, counterparty,
             None, "{}", prev, digest)
        )  # fmt: skip
    return rows


WARMUP_PROBES = 100


async def vacuum_analyze(owner: AsyncEngine) -> None:
    """What autovacuum would soon do after a bulk load, done now (as the
    table's owner), so that the probes measure the steady state and not a
    vacuum running beside them."""
    async with owner.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM (ANALYZE) events"))


async def measure_as_of(
    engine: AsyncEngine, account_id: str, start: datetime, end: datetime, probes: int
) -> tuple[float, float, float]:
    rng = random.Random(7)
    span = (end - start).total_seconds()
    for _ in range(WARMUP_PROBES):  # caches and prepared statements, not counted
        await balance_as_of(engine, account_id, start + timedelta(seconds=rng.uniform(0, span)))
    samples = []
    for _ in range(probes):
        at = start + timedelta(seconds=rng.uniform(0, span))
        began = time.perf_counter()
        await balance_as_of(engine, account_id, at)
        samples.append((time.perf_counter() - began) * 1000)
    # One spot check that the fast answer is the replayed truth.
    at = start + timedelta(seconds=span / 2)
    assert await balance_as_of(engine, account_id, at) == await replay_balance(
        engine, account_id, at
    )
    return percentile(samples, 50), percentile(samples, 99), max(samples)


async def query_bench(
    store: PostgresEventStore,
    sizes: list[int],
    probes: int = 1000,
    progress: Callable[[str], None] | None = None,
    owner: AsyncEngine | None = None,
) -> list[QueryReport]:
    """`owner`: an engine of the schema owner, to vacuum after each bulk load."""
    reports = []
    for size in sizes:
        began = time.perf_counter()

        def report_progress(n: int, size: int = size) -> None:
            if progress:
                progress(f"{size:,} events: {bar(n / size)} seeded")

        account_id, start, end = await seed_history(store, size, report_progress, owner)
        seeded = time.perf_counter() - began
        if owner is not None:
            await vacuum_analyze(owner)
        if progress:
            progress(f"{size:,} events: {probes:,} point-in-time lookups")
        p50, p99, worst = await measure_as_of(store.engine, account_id, start, end, probes)
        reports.append(QueryReport(size, seeded, probes, p50, p99, worst))
    return reports
