"""Small test helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.domain.errors import InsufficientFunds
from ledgerflow.domain.hashing import chain_hash, content_of
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.postgres import PostgresEventStore
from ledgerflow.store.rows import EVENT_COLUMNS, event_from_row


async def count_rows(engine: AsyncEngine, table: str, where: str = "true", **params: object) -> int:
    async with engine.connect() as conn:
        value = (
            await conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params)
        ).scalar_one()
    return int(value)


async def eventually(check: Callable[[], object], within: float = 10.0) -> None:
    """Wait until an async predicate holds (for the read model's short lag)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met within timeout")
        await asyncio.sleep(0.05)


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


async def postings(engine: AsyncEngine, transfer_id: str) -> int:
    """How many events a transfer id has posted (2 when it posted once)."""
    return await count_rows(engine, "events", "transfer_id = :t", t=transfer_id)


def distinct_free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            # Held open until all are chosen, so the kernel cannot hand out one twice.
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run `ledgerflow ARGS` as a separate process; return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledgerflow", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def trade(store: PostgresEventStore, prefix: str, rounds: int, width: int = 6) -> list[str]:
    """Open a funding account and three customer accounts (and an EUR pair),
    then run `rounds` rounds of `width` concurrent transfers among them, so the
    global order interleaves accounts (and is not quite their version order).
    Returns the account ids."""
    usd = [f"{prefix}-fund", f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    eur = [f"{prefix}-eur-fund", f"{prefix}-eur-a"]
    for account_id in usd + eur:
        funding = account_id.endswith("fund")
        currency = "EUR" if account_id in eur else "USD"
        await store.open_account(
            OpenAccountRequest(account_id, currency, store.region, None if funding else 0),
            datetime.now(UTC),
        )
    rng = random.Random(prefix)
    n = 0
    for _ in range(rounds):
        moves = []
        for _ in range(width):
            n += 1
            src, dst = rng.sample(usd, 2) if n % 5 else eur
            amount = rng.randint(1, 5_000)
            moves.append(
                Transfer(f"{prefix}-t{n}", src, dst, amount, "EUR" if n % 5 == 0 else "USD", "test")
            )

        async def post(transfer: Transfer) -> None:
            with contextlib.suppress(InsufficientFunds):
                await store.append_transfer(transfer, store.region, datetime.now(UTC))

        await asyncio.gather(*(post(m) for m in moves))
    return usd + eur


async def reconciled(engine: AsyncEngine, through: tuple[int, int] | None = None) -> None:
    """Record, as a stored reconciliation report would, that the region was
    checked up to `through` (default: everything there is now): pruning goes
    no further than what reconciliation has checked."""
    async with engine.begin() as conn:
        if through is None:
            row = (
                await conn.execute(
                    text("SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC")
                )
            ).first()
            through = (row.tx_id, row.position) if row else (0, 0)
        await conn.execute(
            text(
                "INSERT INTO reconciled_through (report_id, tx_id, position) "
                "VALUES (:id, :tx, :pos)"
            ),
            {"id": f"test-{uuid.uuid4().hex}", "tx": through[0], "pos": through[1]},
        )


async def shift_recorded_at(
    superuser: AsyncEngine,
    account_id: str,
    versions: set[int],
    shift: timedelta,
    *,
    to: datetime | None = None,
) -> None:
    """Rewrite history as if these versions had been recorded `shift` later
    (a clock that was ahead), hashes recomputed so the chain still verifies:
    what a database whose clock then stepped back would hold."""
    async with superuser.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        rows = await conn.execute(
            text(f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :a ORDER BY version"),
            {"a": account_id},
        )
        head = None
        for row in rows.all():
            event = event_from_row(row)
            recorded = event.recorded_at
            if event.version in versions:
                recorded = to if to is not None else recorded + shift
            prev = head if head is not None else event.prev_hash
            content = content_of(event) | {
                "recorded_at": recorded.isoformat(timespec="microseconds")
            }
            head = chain_hash(prev, content)
            await conn.execute(
                text(
                    "UPDATE events SET recorded_at = :r, prev_hash = :p, hash = :h "
                    "WHERE event_id = CAST(:id AS uuid)"
                ),
                {"r": recorded, "p": prev, "h": head, "id": event.event_id},
            )
        await conn.execute(
            text("UPDATE accounts SET head_hash = :h WHERE account_id = :a"),
            {"h": head, "a": account_id},
        )
        await conn.execute(
            text(
                "UPDATE accounts SET head_recorded_at = (SELECT recorded_at FROM events "
                "WHERE account_id = :a AND version = accounts.version) WHERE account_id = :a"
            ),
            {"a": account_id},
        )


async def stop_process(process: asyncio.subprocess.Process, grace_s: float = 20.0) -> bool:
    """SIGTERM, then SIGKILL after `grace_s`: whether it stopped in time."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace_s)
        return True
    except TimeoutError:
        process.kill()
        await process.wait()
        return False
