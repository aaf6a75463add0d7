"""Small test helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


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
