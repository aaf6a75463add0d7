"""Least privilege, against the real server: migrations run as the schema
owner; workers use a role that can append but never rewrite history; reads
and reports use a role that can change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.postgres import PostgresEventStore, create_engine

TABLES = (
    "accounts", "events", "transfers", "balance_view", "statement_view",
    "projection_checkpoints", "archive_segments", "archive_account_index",
    "account_checkpoints", "reconciliation_reports",
)  # fmt: skip


@pytest_asyncio.fixture
async def reader(migrated: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated.reader_url("us"), migrated, pool_size=1)
    yield engine
    await engine.dispose()


async def refused(engine: AsyncEngine, sql: str, **params: object) -> None:
    with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)


async def test_each_role_is_who_the_configuration_says(
    migrated: Settings, engines: dict[str, AsyncEngine], owner_engine: AsyncEngine,
    reader: AsyncEngine,
) -> None:  # fmt: skip
    expected = {
        "ledgerflow_app": engines["us"],
        "ledgerflow_owner": owner_engine,
        "ledgerflow_reader": reader,
    }
    for role, engine in expected.items():
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT current_user"))).scalar_one() == role
    # The schema (tables, functions) belongs to the owner, never to the worker role.
    async with owner_engine.connect() as conn:
        owners = set(
            (
                await conn.execute(
                    text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
        )
    assert owners == {"ledgerflow_owner"}


async def test_the_reader_reads_everything_and_changes_nothing(
    reader: AsyncEngine, store: PostgresEventStore, uid: Callable[[str], str]
) -> None:
    a, b = uid("a"), uid("b")
    for account_id in (a, b):
        await store.open_account(
            OpenAccountRequest(account_id, "USD", "us", None), datetime.now(UTC)
        )
    await store.append_transfer(Transfer(uid("t"), a, b, 5, "USD", "x"), "us", datetime.now(UTC))
    async with reader.connect() as conn:
        for table in TABLES:
            await conn.execute(text(f"SELECT count(*) FROM {table}"))
    for sql in (
        "INSERT INTO accounts (account_id, currency, region, overdraft_limit, version, balance,"
        " head_hash, opened_at) VALUES (:a || '-x', 'USD', 'us', 0, 1, 0, 'h', now())",
        "UPDATE accounts SET balance = balance + 1 WHERE account_id = :a",
        "DELETE FROM statement_view WHERE account_id = :a",
        "UPDATE balance_view SET balance = 0 WHERE account_id = :a",
        "INSERT INTO events (event_id, type, account_id, version, amount, currency,"
        " balance_after, occurred_at, recorded_at, region, initiated_by, prev_hash, hash)"
        " VALUES (gen_random_uuid(), 'AccountOpened', :a, 99, 0, 'USD', 0, now(), now(),"
        " 'us', 'x', 'p', 'h')",
        "DELETE FROM events WHERE account_id = :a",
        "CREATE TABLE sneaky (x int)",
    ):
        await refused(reader, sql, a=a)


async def test_the_worker_role_appends_but_cannot_rewrite_or_reshape(
    engines: dict[str, AsyncEngine], store: PostgresEventStore, uid: Callable[[str], str]
) -> None:
    a = uid("a")
    await store.open_account(OpenAccountRequest(a, "USD", "us", 0), datetime.now(UTC))
    app = engines["us"]
    for sql in (
        # Only an account's version, balance, head hash and status may change.
        "UPDATE accounts SET currency = 'EUR' WHERE account_id = :a",
        "UPDATE accounts SET overdraft_limit = NULL WHERE account_id = :a",
        "DELETE FROM accounts WHERE account_id = :a",
        "UPDATE events SET amount = 0 WHERE account_id = :a",
        "DELETE FROM reconciliation_reports",
        "ALTER TABLE events DROP CONSTRAINT events_sign_check",
        "DROP TRIGGER IF EXISTS events_append_only ON events",
        "CREATE TABLE sneaky (x int)",
    ):
        await refused(app, sql, a=a)


async def test_the_sdk_client_reads_with_the_reader_role(ledger: LedgerClient) -> None:
    async with ledger.engine("us").connect() as conn:
        assert (await conn.execute(text("SELECT current_user"))).scalar_one() == (
            "ledgerflow_reader"
        )
