"""Migrations run as the schema owner, never as the role that writes events
(issue 12, finding 12): with only `LEDGERFLOW_DATABASE_URL` given, nothing
migrates as the app role (which would then own the tables and could switch
the immutability triggers off); workers do not migrate at all."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from sqlalchemy.ext.asyncio import create_async_engine

from ledgerflow.infra.postgres import EmbeddedPostgres
from tests.support import count_rows


async def run_cli(env: dict[str, str], *args: str, within: float = 30) -> tuple[int | None, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledgerflow", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return None, out.decode()
    return proc.returncode, out.decode()


async def test_nothing_migrates_as_the_app_role(pg_server: EmbeddedPostgres) -> None:
    name = f"ledgerflow_m{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name} OWNER ledgerflow_owner")
    app_url = pg_server.url("ledgerflow_app", name)
    env = os.environ | {
        "LEDGERFLOW_REGIONS": "us",
        "LEDGERFLOW_DATABASE_URL": app_url,
        "LEDGERFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1",
        "LEDGERFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:1",
    }
    code, out = await run_cli(env, "migrate")
    assert code == 2, out
    assert "LEDGERFLOW_MIGRATION_DATABASE_URL" in out and "schema owner" in out
    code, out = await run_cli(env, "worker", "--region", "us", within=20)
    assert code not in (0, None), out
    assert "ledgerflow migrate" in out
    superuser = create_async_engine(pg_server.url("postgres", name))
    try:
        assert await count_rows(superuser, "pg_tables", "schemaname = 'public'") == 0
    finally:
        await superuser.dispose()
