"""`bench store`'s SQL-function baseline: a ledger of pgledger's published
design, written here from that design (not copied): every transfer is one
call of one PL/pgSQL function in one transaction, which locks both account
rows in id order, checks currency and balance, inserts the transfer and two
entries (each with the account's balance before and after and its version),
and updates both balances. No hash chain, no events, no idempotency record:
what a plain SQL ledger does, with nothing of ours in the way.

The clients call it over asyncpg directly (the cheapest Python path there
is), one connection each, among the same accounts as the store's run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import asyncpg

from ledgerflow.bench.cpu import CpuMeter, CpuSplit
from ledgerflow.bench.progress import report_rate

SCHEMA = """
CREATE TABLE sql_accounts (
    id text PRIMARY KEY,
    currency text NOT NULL,
    balance bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    allow_negative boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sql_transfers (
    id bigserial PRIMARY KEY,
    from_account_id text NOT NULL REFERENCES sql_accounts (id),
    to_account_id text NOT NULL REFERENCES sql_accounts (id),
    amount bigint NOT NULL CHECK (amount > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sql_entries (
    id bigserial PRIMARY KEY,
    account_id text NOT NULL REFERENCES sql_accounts (id),
    transfer_id bigint NOT NULL REFERENCES sql_transfers (id),
    amount bigint NOT NULL,
    balance_before bigint NOT NULL,
    balance_after bigint NOT NULL,
    account_version bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, account_version)
);
CREATE FUNCTION sql_transfer(source text, target text, value bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    a sql_accounts;
    b sql_accounts;
    moved bigint;
BEGIN
    IF source = target THEN
        RAISE EXCEPTION 'a transfer needs two accounts';
    END IF;
    -- Both rows locked in one order, whichever way the money goes.
    PERFORM 1 FROM sql_accounts WHERE id IN (source, target) ORDER BY id FOR UPDATE;
    SELECT * INTO a FROM sql_accounts WHERE id = source;
    SELECT * INTO b FROM sql_accounts WHERE id = target;
    IF a.id IS NULL OR b.id IS NULL THEN
        RAISE EXCEPTION 'no such account';
    END IF;
    IF a.currency <> b.currency THEN
        RAISE EXCEPTION 'currencies differ';
    END IF;
    IF NOT a.allow_negative AND a.balance < value THEN
        RAISE EXCEPTION 'insufficient funds';
    END IF;
    INSERT INTO sql_transfers (from_account_id, to_account_id, amount)
        VALUES (source, target, value) RETURNING id INTO moved;
    INSERT INTO sql_entries (account_id, transfer_id, amount, balance_before, balance_after,
                             account_version)
        VALUES (source, moved, -value, a.balance, a.balance - value, a.version + 1),
               (target, moved, value, b.balance, b.balance + value, b.version + 1);
    UPDATE sql_accounts SET balance = balance - value, version = version + 1, updated_at = now()
        WHERE id = source;
    UPDATE sql_accounts SET balance = balance + value, version = version + 1, updated_at = now()
        WHERE id = target;
    RETURN moved;
END
$$;
"""


async def sql_function_load(
    dsn: str, ids: list[str], clients: int, seconds: float, progress: Callable[[str], None]
) -> tuple[list[float], int, CpuSplit]:
    """Latencies (ms) and errors of `clients` callers of `sql_transfer` for
    `seconds`, and the CPU they cost (this process, and the rest of the
    machine: PostgreSQL)."""
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(SCHEMA)
        await setup.executemany(
            "INSERT INTO sql_accounts (id, currency, allow_negative) VALUES ($1, 'USD', true)",
            [(i,) for i in ids],
        )
    finally:
        await setup.close()
    connections = [await asyncpg.connect(dsn) for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    started_at = time.perf_counter()
    deadline = started_at + seconds
    meter = CpuMeter()

    async def caller(n: int, conn: asyncpg.Connection) -> None:
        nonlocal errors
        rng = random.Random(1000 + n)
        statement = await conn.prepare("SELECT sql_transfer($1, $2, $3)")
        while time.perf_counter() < deadline:
            source, target = rng.sample(ids, 2)
            began = time.perf_counter()
            try:
                await statement.fetchval(source, target, rng.randint(1, 999))
            except asyncpg.PostgresError:
                errors += 1
                continue
            latencies.append((time.perf_counter() - began) * 1000)

    try:
        await asyncio.gather(
            report_rate(started_at, seconds, latencies, progress),
            *(caller(n, c) for n, c in enumerate(connections)),
        )
        cpu = meter.split(len(latencies))
        # The baseline did the work it is credited with: every call one
        # transfer and two entries, and the money still sums to zero.
        check = connections[0]
        moved = await check.fetchval("SELECT count(*) FROM sql_transfers")
        entries = await check.fetchval("SELECT count(*) FROM sql_entries")
        total = await check.fetchval("SELECT sum(balance) FROM sql_accounts")
        if (moved, entries, total) != (len(latencies), 2 * len(latencies), 0):
            raise RuntimeError(
                f"the SQL-function ledger is unsound: {moved} transfers, {entries} entries, "
                f"balances summing to {total}, for {len(latencies)} calls"
            )
    finally:
        for conn in connections:
            await conn.close()
    return latencies, errors, cpu
