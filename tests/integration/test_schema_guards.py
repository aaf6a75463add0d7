"""The schema defends the ledger against the roles that write to it (issue 12,
findings 3, 4 and 12): a compromised worker (the app role) cannot make the
write model drift from the events, cannot place events behind the readers'
cursors, and cannot erase history that was never archived; and what an
owner can still do, `verify` catches."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.archive.verify import verify_region_and_archive
from ledgerflow.audit.verify import verify_region
from ledgerflow.config import Settings
from ledgerflow.domain.holds import HoldRequest
from ledgerflow.domain.model import AccountChangeRequest, OpenAccountRequest, Transfer
from ledgerflow.infra.postgres import EmbeddedPostgres
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.store.migrate import upgrade
from ledgerflow.store.postgres import PostgresEventStore, create_engine
from tests.support import count_rows

Ids = Callable[[str], str]


@dataclass
class Roles:
    """One fresh region database, an engine per role."""

    app: AsyncEngine
    owner: AsyncEngine
    pruner: AsyncEngine
    reader: AsyncEngine
    store: PostgresEventStore


@pytest_asyncio.fixture
async def roles(pg_server: EmbeddedPostgres, migrated: Settings) -> AsyncIterator[Roles]:
    name = f"ledgerflow_g{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name} OWNER ledgerflow_owner")
    await upgrade(pg_server.url("ledgerflow_owner", name))
    pg_server.harden(name)
    engines = {
        role: create_engine(pg_server.url(f"ledgerflow_{role}", name), migrated, pool_size=3)
        for role in ("app", "owner", "pruner", "reader")
    }
    try:
        yield Roles(**engines, store=PostgresEventStore(engines["app"], "us"))
    finally:
        for engine in engines.values():
            await engine.dispose()


async def history(store: PostgresEventStore, uid: Ids) -> tuple[str, str]:
    a, b = uid("a"), uid("b")
    await store.open_account(OpenAccountRequest(a, "USD", "us", None), datetime.now(UTC))
    await store.open_account(OpenAccountRequest(b, "USD", "us", 0), datetime.now(UTC))
    for n in range(3):
        await store.append_transfer(Transfer(uid(f"t{n}"), a, b, 100, "USD", "t"), "us",
                                    datetime.now(UTC))  # fmt: skip
    return a, b


async def refused(engine: AsyncEngine, sql: str, match: str, **params: object) -> None:
    with pytest.raises(DBAPIError, match=match):
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)


async def test_the_app_role_cannot_set_a_balance_the_events_do_not_say(
    roles: Roles, uid: Ids
) -> None:
    _, b = await history(roles.store, uid)
    for sql in (
        "UPDATE accounts SET balance = balance + 100000 WHERE account_id = :b",
        "UPDATE accounts SET version = version + 1 WHERE account_id = :b",
        "UPDATE accounts SET head_hash = repeat('0', 64) WHERE account_id = :b",
        "UPDATE accounts SET version = 1, balance = 0 WHERE account_id = :b",
    ):
        await refused(roles.app, sql, "write model|does not follow", b=b)
    # A new account cannot start with money either.
    await refused(
        roles.app,
        "INSERT INTO accounts (account_id, currency, region, overdraft_limit, version, balance,"
        " head_hash, opened_at, head_recorded_at) VALUES (:x, 'USD', 'us', 0, 1, 500,"
        " repeat('0', 64), now(), now())",
        "write model|does not follow",
        x=uid("rich"),
    )
    assert (await verify_region(roles.reader, "us")).sound


async def test_the_app_role_cannot_move_a_head_to_an_event_that_does_not_link(
    roles: Roles, uid: Ids
) -> None:
    """An event forged at the next version, and the head moved onto it in the
    same statement: refused unless the event links to the head before it
    (previous hash, running balance, time, currency, limit)."""
    _, b = await history(roles.store, uid)
    forge = (
        "WITH head AS (SELECT * FROM accounts WHERE account_id = :b), "
        "forged AS (INSERT INTO events (event_id, type, account_id, version, amount, currency,"
        " balance_after, occurred_at, recorded_at, region, initiated_by, transfer_id, leg,"
        " prev_hash, hash) SELECT gen_random_uuid(), 'Credited', account_id, version + 1, 1,"
        " currency, {balance}, now(), {at}, 'us', 'x', :t, 'credit', {prev}, repeat('e', 64)"
        " FROM head RETURNING version, balance_after, recorded_at) "
        "UPDATE accounts SET version = f.version, balance = f.balance_after,"
        " head_hash = repeat('e', 64), head_recorded_at = f.recorded_at FROM forged f"
        " WHERE account_id = :b"
    )
    for balance, at, prev in (
        ("balance + 100000", "clock_timestamp()", "head_hash"),  # not the running sum
        ("balance + 1", "clock_timestamp()", "repeat('0', 64)"),  # does not link
        ("balance + 1", "head_recorded_at - interval '1 hour'", "head_hash"),  # goes back
    ):
        await refused(
            roles.app,
            forge.format(balance=balance, at=at, prev=prev),
            "does not follow",
            b=b,
            t=uid("forged"),
        )
    assert (await verify_region(roles.reader, "us")).sound
    # One that links in every way the schema can check goes in, and `verify`
    # names it: its hash is not the hash of its content.
    async with roles.app.begin() as conn:
        await conn.execute(
            text(forge.format(balance="balance + 1", at="clock_timestamp()", prev="head_hash")),
            {"b": b, "t": uid("forged")},
        )
    findings = (await verify_region(roles.reader, "us")).findings
    assert [(f.check, f.account_id) for f in findings][:1] == [("hash-chain", b)]


async def test_no_temporary_table_or_sequence_can_shadow_the_ledgers(
    roles: Roles, pg_server: EmbeddedPostgres, uid: Ids
) -> None:
    """A temporary `events` table with a forged row, or a temporary
    `events_position_seq`, would have fooled guards that named them
    unqualified (found in review). The app role may create no temporary
    object; and were it granted that by hand, the guards still see through."""
    _, b = await history(roles.store, uid)
    await refused(roles.app, "CREATE TEMP TABLE events (x int)", "permission denied")
    database = roles.app.url.database
    assert database is not None
    pg_server.psql(f"GRANT TEMPORARY ON DATABASE {database} TO ledgerflow_app", database=database)
    shadow = (
        "CREATE TEMP TABLE events AS SELECT * FROM public.events WHERE account_id = :b; "
        "INSERT INTO events SELECT position + 1000000, tx_id, gen_random_uuid(), 'Credited',"
        " account_id, version + 1, 100000, currency, balance_after + 100000, occurred_at,"
        " clock_timestamp(), region, initiated_by, :t, 'credit', counterparty, description,"
        " metadata, hash, repeat('d', 64) FROM public.events WHERE account_id = :b"
        " ORDER BY version DESC LIMIT 1; "
        "UPDATE accounts SET version = e.version, balance = e.balance_after,"
        " head_hash = e.hash, head_recorded_at = e.recorded_at"
        " FROM events e WHERE accounts.account_id = :b AND e.account_id = :b"
        " AND e.version = accounts.version + 1"
    )
    with pytest.raises(DBAPIError, match="does not follow"):
        async with roles.app.begin() as conn:
            for statement in shadow.split("; "):
                await conn.execute(text(statement), {"b": b, "t": uid("t")})
    async with roles.app.connect() as conn:
        await conn.execute(text("CREATE TEMP SEQUENCE events_position_seq START -5 MINVALUE -9"))
        placed = (
            await conn.execute(
                text(
                    "INSERT INTO public.events (event_id, type, account_id, version, amount,"
                    " currency, balance_after, occurred_at, recorded_at, region, initiated_by,"
                    " prev_hash, hash) VALUES (gen_random_uuid(), 'AccountOpened', :b, 99, 0,"
                    " 'USD', 0, now(), now(), 'us', 'x', 'p', 'h') RETURNING position"
                ),
                {"b": b},
            )
        ).scalar_one()
        assert placed > 0, "the position came from the ledger's sequence, not the shadow"
        await conn.rollback()  # (the commit would refuse it anyway: not in b's chain)
    assert (await verify_region(roles.reader, "us")).sound


async def test_an_event_left_out_of_its_accounts_chain_is_refused(roles: Roles, uid: Ids) -> None:
    """An event that links to the head but is never made the head would take
    the next honest posting's version and wedge the account (found in review)."""
    a, b = await history(roles.store, uid)
    await refused(
        roles.app,
        "INSERT INTO events (event_id, type, account_id, version, amount, currency,"
        " balance_after, occurred_at, recorded_at, region, initiated_by, transfer_id, leg,"
        " prev_hash, hash) SELECT gen_random_uuid(), 'Credited', account_id, version + 1, 5,"
        " currency, balance + 5, now(), clock_timestamp(), 'us', 'x', :t, 'credit', head_hash,"
        " repeat('2', 64) FROM accounts WHERE account_id = :b",
        "not in its chain",
        b=b,
        t=uid("dangling"),
    )
    result = await roles.store.append_transfer(
        Transfer(uid("after"), a, b, 1, "USD", "t"), "us", datetime.now(UTC)
    )
    assert result.status == "confirmed"


async def test_the_app_role_cannot_place_events_behind_the_readers_cursors(
    roles: Roles, uid: Ids
) -> None:
    a, _ = await history(roles.store, uid)
    for column, value in (("tx_id", "1"), ("position", "1")):
        await refused(
            roles.app,
            f"INSERT INTO events ({column}, event_id, type, account_id, version, amount, currency,"
            " balance_after, occurred_at, recorded_at, region, initiated_by, prev_hash, hash)"
            f" OVERRIDING SYSTEM VALUE VALUES ({value}, gen_random_uuid(), 'AccountOpened', :a,"
            " 99, 0, 'USD', 0, now(), now(), 'us', 'x', 'p', 'h')",
            "tx_id|position|chosen by the database",
            a=a,
        )
    await refused(
        roles.app,
        "INSERT INTO transfers (tx_id, transfer_id, fingerprint, status, region, from_account,"
        " to_account, amount, currency, initiated_by, reason_type, reason, occurred_at,"
        " recorded_at) VALUES (1, :t, 'f', 'rejected', 'us', 'a', 'b', 1, 'USD', 'x',"
        " 'InsufficientFunds', 'r', now(), now())",
        "tx_id|chosen by the database",
        t=uid("t"),
    )


FORGED_SEGMENT = (
    "INSERT INTO archive_segments (segment_no, status, first_seq, last_seq, event_count,"
    " from_tx_id, from_position, to_tx_id, to_position, first_recorded_at, last_recorded_at,"
    " cutoff, segment_key, manifest_key, digest_key, segment_sha256, manifest_sha256,"
    " prev_digest, digest, manifest, archived_at, verified_at) VALUES (1, 'archived', 1,"
    " :n, :n, 0, 0, 9223372036854775807, 9223372036854775807, now(), now(), now(), 'k', 'm',"
    " 'd', 's', 's', 'p', 'd', '{}', now(), now())"
)


async def test_the_app_role_cannot_erase_history_that_was_never_archived(
    roles: Roles, uid: Ids
) -> None:
    """The attack of finding 3, step by step, as the worker role."""
    await history(roles.store, uid)
    await CatchUpProjector(roles.app).catch_up()
    events = await count_rows(roles.app, "events")
    await refused(roles.app, FORGED_SEGMENT, "permission denied", n=events)
    await refused(roles.app, "UPDATE archive_segments SET verified_at = now()", "permission denied")
    await refused(roles.app, "SELECT ledger_prune_through(1)", "permission denied")
    assert await count_rows(roles.app, "events") == events


async def test_verify_ties_every_pruned_range_to_a_recorded_digest_chained_segment(
    roles: Roles, archive_objects: S3ObjectStore, uid: Ids
) -> None:
    """What the owner can still do (forge a segment record and prune through
    it), `verify` catches, from PostgreSQL alone and against the archive."""
    await history(roles.store, uid)
    await CatchUpProjector(roles.app).catch_up()
    events = await count_rows(roles.app, "events")
    async with roles.owner.begin() as conn:
        await conn.execute(text(FORGED_SEGMENT), {"n": events})
        await conn.execute(
            text(
                "UPDATE projection_checkpoints SET tx_id = 9223372036854775807, "
                "position = 9223372036854775807 WHERE name = 'views'"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO reconciled_through VALUES ('forged', 9223372036854775807, "
                "9223372036854775807)"
            )
        )
        await conn.execute(text("SELECT ledger_prune_through(1)"))
    assert await count_rows(roles.app, "events") == 0
    hot = await verify_region(roles.reader, "us")
    assert not hot.sound
    assert {f.check for f in hot.findings} >= {"archive-record"}
    full = await verify_region_and_archive(roles.reader, archive_objects, "us")
    assert not full.sound


async def test_the_owner_cannot_switch_the_immutability_triggers_off(roles: Roles) -> None:
    for sql in (
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE events DISABLE TRIGGER USER",
        "ALTER TABLE accounts DISABLE TRIGGER accounts_follow_events",
        "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql"
        " AS 'BEGIN RETURN OLD; END'",
        "DROP TRIGGER events_append_only ON events",
        "ALTER TABLE transfers DISABLE TRIGGER transfers_append_only",
        "DROP TABLE events CASCADE",
    ):
        await refused(roles.owner, sql, "immutab|append-only|refused")


async def test_no_role_logs_in_without_its_password(pg_server: EmbeddedPostgres) -> None:
    for role in ("postgres", "ledgerflow_owner", "ledgerflow_app", "ledgerflow_reader"):
        url = f"postgresql+asyncpg://{role}@127.0.0.1:{pg_server.port}/postgres"
        engine = create_async_engine(url)
        try:
            with pytest.raises(Exception, match="password"):
                async with engine.connect():
                    pass
        finally:
            await engine.dispose()
    secrets = pg_server.secrets_path
    assert secrets.stat().st_mode & 0o077 == 0


async def test_the_app_role_cannot_change_a_status_without_its_event(
    roles: Roles, uid: Ids
) -> None:
    """Migration 0005: the status follows the status events, and the events
    follow the status (a debit needs an open account, a credit one that is
    not closed), whatever SQL a compromised worker sends."""
    _, b = await history(roles.store, uid)
    await refused(
        roles.app, "UPDATE accounts SET status = 'closed' WHERE account_id = :b",
        "status of account .* does not follow", b=b,
    )  # fmt: skip
    await roles.store.change_account(AccountChangeRequest("c1", b, "freeze", "ops", "x"),
                                     datetime.now(UTC))  # fmt: skip
    await refused(
        roles.app, "UPDATE accounts SET status = 'open' WHERE account_id = :b",
        "status of account .* does not follow", b=b,
    )  # fmt: skip
    forge = (
        "WITH head AS (SELECT * FROM accounts WHERE account_id = :b), "
        "forged AS (INSERT INTO events (event_id, type, account_id, version, amount, currency,"
        " balance_after, occurred_at, recorded_at, region, initiated_by, transfer_id, leg,"
        " prev_hash, hash) SELECT gen_random_uuid(), {type}, account_id, version + 1, {amount},"
        " currency, balance + {amount}, now(), clock_timestamp(), 'us', 'x', {transfer}, {leg},"
        " head_hash, repeat('e', 64) FROM head RETURNING version, balance_after, recorded_at) "
        "UPDATE accounts SET version = f.version, balance = f.balance_after,"
        " head_hash = repeat('e', 64), head_recorded_at = f.recorded_at, status = {status}"
        " FROM forged f WHERE account_id = :b"
    )
    cases = [
        # a debit of the frozen account, chained in every way the balance checks
        ("'Debited'", -1, ":t", "'debit'", "status"),
        # unfrozen by a freeze event, closed with money in it, closed and debited at once
        ("'AccountFrozen'", 0, "NULL", "NULL", "'open'"),
        ("'AccountClosed'", 0, "NULL", "NULL", "'closed'"),
    ]
    for kind, amount, transfer, leg, status in cases:
        await refused(
            roles.app,
            forge.format(type=kind, amount=amount, transfer=transfer, leg=leg, status=status),
            "status of account .* does not follow",
            b=b,
            t=uid("forged"),
        )
    assert (await verify_region(roles.reader, "us")).sound
    assert (await roles.store.get_account(b)).status == "frozen"  # type: ignore[union-attr]


async def test_the_app_role_cannot_move_a_pending_amount_without_its_event(
    roles: Roles, uid: Ids
) -> None:
    """Migration 0006: what holds reserve follows the events, whatever SQL a
    compromised worker sends (a reservation dropped would free money a hold
    promised to someone)."""
    a, b = await history(roles.store, uid)
    placed = await roles.store.place_hold(
        HoldRequest(uid("h"), b, a, 100, "USD", "pos", 3600), datetime.now(UTC)
    )
    assert placed.placed
    await refused(
        roles.app, "UPDATE accounts SET pending_out = 0 WHERE account_id = :b",
        "pending amount of account .* does not follow", b=b,
    )  # fmt: skip
    # A release forged as an event that links, with the head moved onto it.
    forge = (
        "WITH head AS (SELECT * FROM accounts WHERE account_id = :b), "
        "forged AS (INSERT INTO events (event_id, type, account_id, version, amount, currency,"
        " balance_after, occurred_at, recorded_at, region, initiated_by, transfer_id, leg,"
        " prev_hash, hash, pending_after) SELECT gen_random_uuid(), 'Debited', account_id,"
        " version + 1, -250, currency, balance - 250, now(), clock_timestamp(), 'us', 'x', :t,"
        " 'debit', head_hash, repeat('e', 64), pending_out FROM head RETURNING version,"
        " balance_after,"
        " recorded_at, pending_after) "
        "UPDATE accounts SET version = f.version, balance = f.balance_after,"
        " head_hash = repeat('e', 64), head_recorded_at = f.recorded_at"
        " FROM forged f WHERE account_id = :b"
    )
    # b holds 300 with 100 reserved: a debit of 250 would eat the reservation.
    await refused(roles.app, forge, "pending amount of account .* does not follow", b=b,
                  t=uid("forged"))  # fmt: skip
    assert (await verify_region(roles.reader, "us")).sound
    account = await roles.store.get_account(b)
    assert account is not None and (account.balance, account.pending_out) == (300, 100)
