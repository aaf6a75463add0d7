"""`bench archive`: archive throughput on a history of a million events.

It creates a scratch database on the embedded PostgreSQL (migrated like a
region's), loads `events` events of `accounts` accounts trading with each
other (hash-chained exactly as the append path chains them, loaded with COPY,
2,000 events per transaction), then times the archiver's three steps over
all of it into a fresh Object Lock bucket, then `archive verify`, and, with
`--prune`, the read models' catch-up and the prune. The scratch database is
dropped at the end; moto keeps the bucket in memory until it stops.

    .venv/bin/ledgerflow bench archive --events 1000000

The archiver runs in this process, exactly the code the ArchiveWorkflow's
activities run; the workflow adds three activity round trips per segment.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.archiver import ArchivePolicy, Archiver
from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.archive.prune import prune
from ledgerflow.archive.verify import verify_archive
from ledgerflow.bench.history import (
    FreshStatistics,
    chained_transfer_rows,
    load_pipelined,
)
from ledgerflow.bench.scratch import scratch_database
from ledgerflow.config import Settings
from ledgerflow.domain.model import OpenAccountRequest
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.store.postgres import PostgresEventStore, create_engine

TRANSFERS_PER_TRANSACTION = 1_000


@dataclass(frozen=True)
class ArchiveBenchReport:
    events: int
    accounts: int
    seed_s: float
    segments: int
    archive_s: float
    archive_events_per_s: float
    uploaded_mb: float
    verify_s: float
    verify_events_per_s: float
    project_s: float | None = None
    prune_s: float | None = None
    pruned_events: int | None = None


async def archive_bench(
    settings: Settings,
    events: int,
    accounts: int,
    segment_events: int,
    with_prune: bool,
    progress: Callable[[str], None],
) -> ArchiveBenchReport:
    async with scratch_database(settings, "archive") as name:
        engine = create_engine(settings.embedded_url("ledgerflow_app", name), settings)
        pruner = create_engine(settings.embedded_url("ledgerflow_pruner", name), settings)
        owner = create_engine(settings.embedded_url("ledgerflow_owner", name), settings)
        try:
            store = PostgresEventStore(engine, "bench")
            began = time.perf_counter()
            await seed_trading(store, events, accounts, progress, owner)
            seed_s = time.perf_counter() - began
            return await _archive_bench(
                settings, store, pruner, seed_s, accounts, segment_events, with_prune, progress
            )
        finally:
            await engine.dispose()
            await pruner.dispose()
            await owner.dispose()


async def _archive_bench(
    settings: Settings,
    store: PostgresEventStore,
    pruner: AsyncEngine,
    seed_s: float,
    accounts: int,
    segment_events: int,
    with_prune: bool,
    progress: Callable[[str], None],
) -> ArchiveBenchReport:
    run = uuid.uuid4().hex[:8]
    engine = store.engine

    bucket = f"ledgerflow-bench-{run}"
    objects = S3ObjectStore.from_settings(settings)
    objects.bucket = bucket
    objects.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    policy = ArchivePolicy(timedelta(0), segment_events, timedelta(days=1))
    archiver = Archiver(engine, objects, "bench", policy)
    began = time.perf_counter()
    done = []
    while True:
        batch = await archiver.archive_all(max_segments=10)
        done += batch
        progress(f"archived {sum(d.events for d in done):,} events")
        if len(batch) < 10:
            break
    archive_s = time.perf_counter() - began
    archived = sum(d.events for d in done)
    progress("verifying the archive")
    report = await verify_archive(engine, objects, "bench")
    if not report.sound:
        raise AssertionError(f"the archive does not verify: {report.findings[0]}")
    result = ArchiveBenchReport(
        events=archived,
        accounts=accounts,
        seed_s=seed_s,
        segments=len(done),
        archive_s=archive_s,
        archive_events_per_s=archived / archive_s,
        uploaded_mb=report.bytes_downloaded / 1e6,
        verify_s=report.seconds,
        verify_events_per_s=report.events_per_second,
    )
    if with_prune:
        progress("projecting (prune waits for the read models)")
        began = time.perf_counter()
        await CatchUpProjector(engine).catch_up()
        project_s = time.perf_counter() - began
        # As a reconciliation run would have recorded by now: pruning goes no
        # further than what reconciliation has checked.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO reconciled_through (report_id, tx_id, position) "
                    "SELECT 'bench', tx_id, position FROM events "
                    "ORDER BY tx_id DESC, position DESC LIMIT 1"
                )
            )
        progress("pruning")
        began = time.perf_counter()
        pruned = await prune(pruner, objects)
        result = ArchiveBenchReport(
            **(
                result.__dict__
                | {
                    "project_s": project_s,
                    "prune_s": time.perf_counter() - began,
                    "pruned_events": pruned.events_pruned,
                }
            )
        )
    return result


async def seed_trading(
    store: PostgresEventStore,
    events: int,
    accounts: int,
    progress: Callable[[str], None],
    owner: AsyncEngine | None = None,
) -> None:
    """`events` events (openings included) of `accounts` accounts paying each
    other 1 minor unit, in transactions of 1,000 transfers, a microsecond
    apart (`owner`: see FreshStatistics)."""
    statistics = FreshStatistics(owner)
    ids = [f"bench-{i:06d}" for i in range(accounts)]
    heads: dict[str, tuple[str, int, int]] = {}
    for account_id in ids:
        opened = await store.open_account(
            OpenAccountRequest(account_id, "USD", store.region, None, "bench"), datetime.now(UTC)
        )
        heads[account_id] = (opened.account.head_hash, 0, 1)
    rng = random.Random(11)
    start = datetime.now(UTC)
    transfers = (events - accounts) // 2

    def batches() -> Iterator[list[tuple[Any, ...]]]:
        batch: list[tuple[Any, ...]] = []
        for n in range(transfers):
            source, target = rng.sample(ids, 2)
            instant = start + timedelta(microseconds=n + 1)
            batch += chained_transfer_rows(
                store.region, heads, f"bench-t{n}", source, target, instant
            )
            if len(batch) == 2 * TRANSFERS_PER_TRANSACTION or n + 1 == transfers:
                yield batch
                batch = []

    loaded = accounts

    async def after(rows: int) -> None:
        nonlocal loaded
        loaded += rows
        await statistics.grew_to(loaded)
        if (loaded - accounts) % 100_000 == 0 or loaded == accounts + 2 * transfers:
            progress(f"seeded {loaded:,} events")

    await load_pipelined(store, batches(), heads, after)
