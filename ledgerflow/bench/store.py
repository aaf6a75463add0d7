"""`bench store`: the event store's append path alone, against `pgbench`.

In a scratch database, `clients` concurrent writers post transfers straight
into the store (`PostgresEventStore.append_transfer`: lock both accounts in
order, check, write two hash-chained events, the transfer record and both
balances, commit) among `accounts` accounts for `seconds`; then, in the same
run on the same server, pgbench runs its TPC-B-like script with the same
number of clients for the same time. The ratio is the store's transfers/s
over pgbench's transactions/s. Between the two, the same clients call a
SQL-function ledger of pgledger's design (`ledgerflow/bench/sqlledger.py`)
in a scratch database of its own: the store's transfers/s over its calls/s
is `sql_ratio`. Each run's CPU per transfer is split between this process
(Python) and the rest of the machine (PostgreSQL).

    .venv/bin/ledgerflow bench store --clients 16 --seconds 20
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from sqlalchemy import text

from ledgerflow.bench.cpu import CpuMeter, CpuSplit
from ledgerflow.bench.latency import percentile
from ledgerflow.bench.progress import report_rate
from ledgerflow.bench.scratch import embedded_server, scratch_database
from ledgerflow.bench.sqlledger import sql_function_load
from ledgerflow.config import Settings
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.infra.postgres import pg_install_dir
from ledgerflow.store.postgres import PostgresEventStore, create_engine


@dataclass(frozen=True)
class StoreBenchReport:
    clients: int
    accounts: int
    seconds: float
    #: The store as the workers run it: group commit on.
    transfers: int
    transfers_per_s: float
    transfers_per_commit: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: The same load with group commit off (each transfer its own transaction).
    unbatched_per_s: float
    unbatched_p99_ms: float
    pgbench_tps: float
    ratio: float
    unbatched_ratio: float
    #: The SQL-function ledger, same clients, same accounts, same time.
    sql_per_s: float = 0.0
    sql_p99_ms: float = 0.0
    sql_ratio: float = 0.0
    #: CPU µs per transfer: the store's (group commit on) and the SQL
    #: function's, in this process and in the rest of the machine.
    python_us: float = 0.0
    server_us: float | None = None
    sql_python_us: float = 0.0
    sql_server_us: float | None = None


@dataclass(frozen=True)
class _Run:
    latencies: list[float]
    errors: int
    commits: int
    cpu: CpuSplit


async def store_bench(
    settings: Settings,
    clients: int,
    accounts: int,
    seconds: float,
    progress: Callable[[str], None],
) -> StoreBenchReport:
    """Group commit off, then on (as configured), then pgbench: one run, one server."""
    off = await _store_run(settings, clients, accounts, seconds, progress, max_batch=1)
    on = await _store_run(
        settings, clients, accounts, seconds, progress,
        max_batch=settings.db_group_commit_max, writers=settings.db_group_commit_writers,
    )  # fmt: skip
    progress(f"SQL-function ledger: {clients} callers for {seconds:g} s")
    async with scratch_database(settings, "store", migrate=False) as name:
        dsn = settings.embedded_url("postgres", name).replace("postgresql+asyncpg", "postgresql")
        ids = [f"acct-{i:05d}" for i in range(accounts)]
        sql, sql_errors, sql_cpu = await sql_function_load(dsn, ids, clients, seconds, progress)
    progress(f"pgbench, {clients} clients for {seconds:g} s")
    tps = await asyncio.to_thread(pgbench_tps, settings, clients, seconds)
    rate, unbatched = len(on.latencies) / seconds, len(off.latencies) / seconds
    sql_rate = len(sql) / seconds
    return StoreBenchReport(
        clients=clients,
        accounts=accounts,
        seconds=seconds,
        transfers=len(on.latencies),
        transfers_per_s=rate,
        transfers_per_commit=len(on.latencies) / on.commits if on.commits else 0.0,
        p50_ms=percentile(on.latencies, 50) if on.latencies else 0.0,
        p99_ms=percentile(on.latencies, 99) if on.latencies else 0.0,
        errors=on.errors + off.errors + sql_errors,
        unbatched_per_s=unbatched,
        unbatched_p99_ms=percentile(off.latencies, 99) if off.latencies else 0.0,
        pgbench_tps=tps,
        ratio=rate / tps if tps else 0.0,
        unbatched_ratio=unbatched / tps if tps else 0.0,
        sql_per_s=sql_rate,
        sql_p99_ms=percentile(sql, 99) if sql else 0.0,
        sql_ratio=rate / sql_rate if sql_rate else 0.0,
        python_us=on.cpu.python_us,
        server_us=on.cpu.server_us,
        sql_python_us=sql_cpu.python_us,
        sql_server_us=sql_cpu.server_us,
    )


async def _store_run(
    settings: Settings,
    clients: int,
    accounts: int,
    seconds: float,
    progress: Callable[[str], None],
    *,
    max_batch: int,
    writers: int | None = None,
) -> _Run:
    """`clients` writers for `seconds` in a fresh scratch database."""
    async with scratch_database(settings, "store") as name:
        engine = create_engine(
            settings.embedded_url("ledgerflow_app", name), settings, pool_size=clients
        )
        try:
            store = PostgresEventStore(
                engine, "bench", max_batch=max_batch, writers=writers or clients
            )
            ids = [f"acct-{i:05d}" for i in range(accounts)]
            for account_id in ids:
                # No overdraft limit: every transfer posts, so we time the posting.
                request = OpenAccountRequest(account_id, "USD", "bench", None, "bench")
                await store.open_account(request, datetime.now(UTC))
            mode = f"group commit (up to {max_batch})" if max_batch > 1 else "one per commit"
            progress(f"store, {mode}: {clients} writers for {seconds:g} s")
            meter = CpuMeter()
            latencies, errors = await _append_load(store, ids, clients, seconds, progress)
            cpu = meter.split(len(latencies))
            async with engine.connect() as conn:
                commits = (
                    await conn.execute(
                        text("SELECT count(DISTINCT tx_id) FROM transfers WHERE kind = 'local'")
                    )
                ).scalar_one()
        finally:
            await engine.dispose()
    return _Run(latencies, errors, int(commits), cpu)


async def _append_load(
    store: PostgresEventStore,
    ids: list[str],
    clients: int,
    seconds: float,
    progress: Callable[[str], None],
) -> tuple[list[float], int]:
    started_at = time.perf_counter()
    deadline = started_at + seconds
    latencies: list[float] = []
    errors = 0
    run = uuid.uuid4().hex[:6]

    async def writer(n: int) -> None:
        nonlocal errors
        rng = random.Random(n)
        i = 0
        while time.perf_counter() < deadline:
            source, target = rng.sample(ids, 2)
            transfer = Transfer(f"s{run}-{n}-{i}", source, target, rng.randint(1, 999), "USD", "b")
            i += 1
            started = time.perf_counter()
            try:
                await store.append_transfer(transfer, store.region, datetime.now(UTC))
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(
        report_rate(started_at, seconds, latencies, progress), *(writer(n) for n in range(clients))
    )
    return latencies, errors


def pgbench_tps(settings: Settings, clients: int, seconds: float, scale: int = 10) -> float:
    """TPC-B-like transactions/s of pgbench on a scratch database of its own."""
    server = embedded_server(settings, "store")
    host, port = server.split(":")
    name = f"ledgerflow_pgbench_{uuid.uuid4().hex[:8]}"
    binary = str(pg_install_dir() / "bin" / "pgbench")
    base = ["-h", host, "-p", port, "-U", "postgres"]
    psql = str(pg_install_dir() / "bin" / "psql")

    password = urlsplit(settings.embedded_url("postgres", "postgres")).password or ""
    env = os.environ | {"PGPASSWORD": unquote(password)}

    def run(argv: list[str], timeout: float) -> str:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    run([psql, *base, "-d", "postgres", "-c", f"CREATE DATABASE {name}"], 60)
    try:
        run([binary, *base, "-i", "-q", "-s", str(scale), name], 600)
        out = run(
            [binary, *base, "-c", str(clients), "-j", "2", "-T", str(max(1, round(seconds))),
             "-n", name],
            seconds + 120,
        )  # fmt: skip
    finally:
        run([psql, *base, "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            60)  # fmt: skip
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if match is None:
        raise RuntimeError(f"no tps in pgbench's output: {out[-300:]}")
    return float(match.group(1))
