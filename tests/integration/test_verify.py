"""`verify` finds every kind of tampering, done as a superuser behind the
ledger's back, and names the first bad event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.audit.chain_walk import AccountRange, instant_sql, walk_elsewhere
from ledgerflow.audit.verify import verify_region
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.hashing import _instant
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import cli

NOW = datetime.now(UTC)
Region = tuple[PostgresEventStore, AsyncEngine]


async def ledger_with_history(store: PostgresEventStore) -> None:
    for account_id, limit in (("bank", None), ("alice", 0), ("bob", 0)):
        await store.open_account(OpenAccountRequest(account_id, "USD", "us", limit), NOW)
    moves = [("bank", "alice", 1000), ("alice", "bob", 100), ("alice", "bob", 50),
             ("bob", "alice", 20), ("bank", "bob", 7)]  # fmt: skip
    for n, (source, target, amount) in enumerate(moves):
        await store.append_transfer(Transfer(f"t{n}", source, target, amount, "USD", "x"),
                                    "us", NOW)  # fmt: skip
    await CatchUpProjector(store.engine).catch_up()


async def test_a_clean_ledger_verifies(isolated_region: Region) -> None:
    store, _ = isolated_region
    await ledger_with_history(store)
    report = await verify_region(store.engine, "us")
    assert report.sound, [str(f) for f in report.findings]
    assert (report.events_checked, report.accounts_checked, report.transfers_checked) == (13, 3, 5)
    assert report.projection_lag_events == 0


async def test_walkers_on_one_snapshot_find_what_one_process_finds(
    isolated_region: Region,
) -> None:
    """The chain walk split over processes (each account range on the
    exported snapshot) reports the same counts and the same findings, in the
    same order, as the walk in this process; so does a split into more
    ranges than there are accounts, and one over events whose account row
    is gone."""
    store, superuser = isolated_region
    await ledger_with_history(store)
    one = await verify_region(store.engine, "us", workers=1)
    for workers in (2, 3, 7):
        split = await verify_region(store.engine, "us", workers=workers)
        assert split.sound, [str(f) for f in split.findings]
        assert (split.events_checked, split.accounts_checked, split.transfers_checked) == (
            one.events_checked, one.accounts_checked, one.transfers_checked,
        )  # fmt: skip
    async with superuser.begin() as conn:
        await conn.execute(text(UNGUARDED.strip("; ")))
        await conn.execute(text("UPDATE events SET hash = repeat('1', 64) WHERE version = 4"))
        await conn.execute(text("DELETE FROM accounts WHERE account_id = 'bank'"))
    one = await verify_region(store.engine, "us", workers=1)
    assert [f.account_id for f in one.findings[:3]] == ["alice", "bank", "bob"], one.findings
    for workers in (2, 3):
        split = await verify_region(store.engine, "us", workers=workers)
        assert split.findings == one.findings
    with pytest.raises(InvalidRequest, match="at least one walker"):
        await verify_region(store.engine, "us", workers=0)


async def test_walkers_see_the_verify_snapshot_while_transfers_keep_committing(
    isolated_region: Region,
) -> None:
    """Late writes between the snapshot's export and each walker's start
    (transfers committing all along): every walker and the set-wide checks
    see the one snapshot, so the region is sound and the walkers count
    exactly the events that snapshot holds, never a later one."""
    import asyncio

    store, _ = isolated_region
    await ledger_with_history(store)
    stop = asyncio.Event()

    async def keep_posting() -> int:
        n = 0
        while not stop.is_set():
            await store.append_transfer(
                Transfer(f"late-{n}", "bank", "bob", 1, "USD", "x"), "us", datetime.now(UTC)
            )
            n += 1
        return n

    posting = asyncio.ensure_future(keep_posting())
    try:
        for _ in range(3):
            report = await verify_region(store.engine, "us", workers=3)
            assert report.sound, [str(f) for f in report.findings]
            # Each transfer is two events and every snapshot holds whole ones.
            assert (report.events_checked - 13) % 2 == 0
            assert report.events_checked == 13 + 2 * (report.transfers_checked - 5)
    finally:
        stop.set()
    assert await posting > 0


async def test_a_walker_that_cannot_take_the_snapshot_is_an_error_not_a_sound_walk(
    isolated_region: Region,
) -> None:
    """A walker whose snapshot is gone (its exporter ended) fails loudly with
    the server's reason; it never answers an empty, sound walk."""
    store, _ = isolated_region
    await ledger_with_history(store)
    dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with pytest.raises(
        RuntimeError,
        match=r"a chain walker failed: .*snapshot \"00000003-0000001B-1\" does not exist",
    ):
        await walk_elsewhere(dsn, "00000003-0000001B-1", AccountRange())
    with pytest.raises(RuntimeError, match="not a snapshot id"):
        await walk_elsewhere(dsn, "x'; DROP TABLE events; --", AccountRange())


UNGUARDED = "SET LOCAL session_replication_role = replica; "
TAMPERING: dict[str, tuple[str, str, int | None, str]] = {
    "altered amount": (
        UNGUARDED + "UPDATE events SET amount = -99, balance_after = balance_after + 1 "
        "WHERE account_id = 'alice' AND version = 3",
        "alice", 3, "hash does not match content",
    ),
    "deleted event": (
        UNGUARDED + "DELETE FROM events WHERE account_id = 'alice' AND version = 3",
        "alice", 4, "expected version 3",
    ),
    "swapped versions": (
        UNGUARDED + "UPDATE events SET version = 1000 WHERE account_id = 'bob' AND version = 2; "
        "UPDATE events SET version = 2 WHERE account_id = 'bob' AND version = 3; "
        "UPDATE events SET version = 3 WHERE account_id = 'bob' AND version = 1000",
        "bob", 2, "prev_hash does not link",
    ),
    "forged hash": (
        UNGUARDED + "UPDATE events SET hash = repeat('0', 64) "
        "WHERE account_id = 'bob' AND version = 4",
        "bob", 4, "hash does not match content",
    ),
    "status without its event": (
        UNGUARDED + "UPDATE accounts SET status = 'frozen' WHERE account_id = 'bob'",
        "bob", 5, "accounts row says frozen; the events say open",
    ),
    "pending without a hold": (
        UNGUARDED + "UPDATE accounts SET pending_out = 5 WHERE account_id = 'bob'",
        "bob", 5, "accounts row says 5 pending; the events say 0",
    ),
    "edited projection": (
        "UPDATE balance_view SET balance = balance + 1 WHERE account_id = 'bob'",
        "bob", 5, "balance_view says",
    ),
    "edited statement": (
        "UPDATE statement_view SET amount = 1 WHERE account_id = 'alice' AND version = 2",
        "alice", 2, "statement_view line disagrees",
    ),
}  # fmt: skip


@pytest.mark.parametrize("workers", [1, 3], ids=["in-process", "three-walkers"])
@pytest.mark.parametrize("case", sorted(TAMPERING))
async def test_tampering_is_detected_and_the_first_bad_event_named(
    isolated_region: Region, case: str, workers: int
) -> None:
    store, superuser = isolated_region
    await ledger_with_history(store)
    sql, account_id, version, problem = TAMPERING[case]
    async with superuser.begin() as conn:
        for statement in sql.split("; "):
            await conn.execute(text(statement))
    report = await verify_region(store.engine, "us", workers=workers)
    assert not report.sound
    first = report.findings[0]
    assert (first.account_id, first.version) == (account_id, version), str(first)
    assert problem in first.problem, str(first)


async def test_the_verify_command_exits_non_zero_naming_the_first_bad_event(
    isolated_region: Region, cli_env: dict[str, str]
) -> None:
    store, superuser = isolated_region
    await ledger_with_history(store)
    url = store.engine.url.render_as_string(hide_password=False)
    env = cli_env | {"LEDGERFLOW_DATABASE_URL_US": url}
    code, out, err = await cli(env, "verify", "--region", "us", "--json")
    assert code == 0, err
    [summary] = json.loads(out)
    assert summary["sound"] and summary["events_checked"] == 13
    async with superuser.begin() as conn:
        await conn.execute(text(UNGUARDED.strip("; ")))
        await conn.execute(text("DELETE FROM events WHERE account_id = 'bob' AND version = 2"))
    # A walker count below one is bad input: a typed error, exit 2.
    code, _, err = await cli(env, "verify", "--region", "us", "--workers", "0")
    assert code == 2 and "InvalidRequest" in err and "at least one walker" in err, err
    code, out, err = await cli(env, "verify", "--region", "us")
    assert code == 6
    assert err.startswith(
        "error: NotSound: region us, account 'bob', version 3: expected version 2"
    )


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 12, 2, 9, 30, 0, 0, tzinfo=UTC),  # no microseconds
        datetime(2026, 12, 2, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 0, 7, tzinfo=timezone(timedelta(hours=2))),  # another offset
        datetime(1999, 12, 31, 23, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),  # new year
        datetime(999, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),  # a three-digit year
    ],
)
async def test_the_server_writes_an_instant_as_the_hash_does(
    isolated_region: Region, instant: datetime
) -> None:
    """The chain walk asks the server for each instant's hashed form; it
    must be `_instant`'s, byte for byte, or a sound ledger would fail."""
    store, _ = isolated_region
    async with store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        served = await raw.fetchval(f"SELECT {instant_sql('$1::timestamptz')}", instant)
    assert served == _instant(instant)
