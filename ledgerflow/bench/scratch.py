"""Scratch databases for the benchmarks: created on the embedded PostgreSQL,
migrated like a region's, dropped at the end whatever happens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ledgerflow.config import Settings
from ledgerflow.store.migrate import upgrade


def embedded_server(settings: Settings, bench: str) -> str:
    if settings.database_given:
        raise ValueError(f"bench {bench} creates scratch databases: it needs the embedded stack")
    return f"127.0.0.1:{settings.pg_port}"


@asynccontextmanager
async def scratch_database(
    settings: Settings, bench: str, *, migrate: bool = True
) -> AsyncIterator[str]:
    """Yield the name of a fresh database (the ledger's schema when `migrate`)."""
    embedded_server(settings, bench)
    name = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(
        settings.embedded_url("postgres", "postgres"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name} OWNER ledgerflow_owner"))
    try:
        if migrate:
            await upgrade(settings.embedded_url("ledgerflow_owner", name))
        yield name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()
