"""Time in the hash chain and the audit trail (issue 12, findings 9, 10, 11).

* A database clock that steps back must not make an account's history run
  backwards: `recorded_at` is monotonic per account, so `balance_as_of(now)`
  still equals the replay, and `verify` checks the order.
* An instant given with an offset is hashed as the UTC instant it is, so the
  event it is written on verifies when read back (PostgreSQL answers in UTC).
* The audit trail reads an account's hot rows and its prune checkpoint in one
  snapshot: a prune that commits between them cannot list an entry twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.archiver import ArchivePolicy, Archiver
from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.archive.prune import prune
from ledgerflow.archive.reader import ArchiveReader
from ledgerflow.audit.point_in_time import balance_as_of, replay_balance
from ledgerflow.audit.trail import audit_trail
from ledgerflow.audit.verify import verify_region
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.infra.postgres import EmbeddedPostgres
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import reconciled, shift_recorded_at

Ids = Callable[[str], str]
Region = tuple[PostgresEventStore, AsyncEngine]


async def pair(store: PostgresEventStore, uid: Ids) -> tuple[str, str]:
    a, b = uid("a"), uid("b")
    await store.open_account(OpenAccountRequest(a, "USD", "us", None), datetime.now(UTC))
    await store.open_account(OpenAccountRequest(b, "USD", "us", 0), datetime.now(UTC))
    return a, b


async def test_a_clock_that_steps_back_keeps_each_accounts_history_in_order(
    isolated_region: Region, uid: Ids
) -> None:
    store, superuser = isolated_region
    a, b = await pair(store, uid)
    await store.append_transfer(Transfer(uid("t1"), a, b, 100, "USD", "t"), "us", datetime.now(UTC))
    # Both accounts' last events were recorded while the clock ran an hour ahead.
    for account in (a, b):
        await shift_recorded_at(superuser, account, {2}, timedelta(hours=1))
    assert (await verify_region(store.engine, "us")).sound
    await store.append_transfer(Transfer(uid("t2"), a, b, 50, "USD", "t"), "us", datetime.now(UTC))

    async with store.engine.connect() as conn:
        times = (
            await conn.execute(
                text("SELECT recorded_at FROM events WHERE account_id = :b ORDER BY version"),
                {"b": b},
            )
        ).scalars()
        recorded = list(times)
    assert recorded == sorted(recorded), "recorded_at must never go back within an account"
    now = datetime.now(UTC)
    for account in (a, b):
        assert await balance_as_of(store.engine, account, now) == await replay_balance(
            store.engine, account, now
        )
    assert (await verify_region(store.engine, "us")).sound


async def test_verify_names_an_account_whose_recorded_at_goes_back(
    isolated_region: Region, uid: Ids
) -> None:
    store, superuser = isolated_region
    a, b = await pair(store, uid)
    for n in range(2):
        await store.append_transfer(
            Transfer(uid(f"t{n}"), a, b, 100, "USD", "t"), "us", datetime.now(UTC)
        )
    # Version 2 of b recorded an hour ahead of version 3: the chain hashes
    # verify, the order does not.
    await shift_recorded_at(superuser, b, {2}, timedelta(hours=1))
    report = await verify_region(store.engine, "us")
    assert [(f.check, f.account_id, f.version) for f in report.findings] == [("recorded-at", b, 3)]


async def test_an_instant_with_an_offset_is_hashed_as_its_utc_instant(
    isolated_region: Region, uid: Ids
) -> None:
    store, _ = isolated_region
    five_east = timezone(timedelta(hours=5))
    a, b = uid("a"), uid("b")
    await store.open_account(OpenAccountRequest(a, "USD", "us", None), datetime.now(five_east))
    await store.open_account(OpenAccountRequest(b, "USD", "us", 0), datetime.now(UTC))
    await store.append_transfer(
        Transfer(uid("t"), a, b, 100, "USD", "t"), "us", datetime.now(five_east)
    )
    report = await verify_region(store.engine, "us")
    assert report.sound, report.findings


async def test_the_trail_does_not_list_entries_twice_when_a_prune_commits_while_it_reads(
    isolated_region: Region,
    archive_objects: S3ObjectStore,
    pg_server: EmbeddedPostgres,
    pruner: AsyncEngine,
    uid: Ids,
) -> None:
    store, _ = isolated_region
    a, b = await pair(store, uid)
    start = datetime.now(UTC)
    for n in range(5):
        await store.append_transfer(
            Transfer(uid(f"t{n}"), a, b, 100, "USD", "t"), "us", datetime.now(UTC)
        )
    end = datetime.now(UTC)
    await Archiver(store.engine, archive_objects, "us",
                   ArchivePolicy(timedelta(0), 4, None)).archive_all()  # fmt: skip
    await CatchUpProjector(store.engine).catch_up()
    await reconciled(store.engine)
    expected = await audit_trail(store.engine, b, start, end)
    assert expected.closing_balance == 500

    # The prune commits at the worst moment: right after the trail has read
    # the account's hot events, before it reads where pruning cut it.
    database = store.engine.url.database
    assert database is not None
    fired: list[bool] = []

    def prune_now(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not fired and re.search(r"FROM events\s+WHERE (events\.)?account_id", statement):
            fired.append(True)
            pg_server.psql(
                "UPDATE archive_segments SET verified_at = now();"
                " SELECT ledger_prune_through(max(segment_no)) FROM archive_segments;",
                database=database,
            )

    reader = ArchiveReader(store.engine, archive_objects)
    sa_event.listen(store.engine.sync_engine, "after_cursor_execute", prune_now)
    try:
        trail = await audit_trail(store.engine, b, start, end, reader)
    finally:
        sa_event.remove(store.engine.sync_engine, "after_cursor_execute", prune_now)
    assert fired, "the prune ran in the middle of the read"
    assert (trail.opening_balance, trail.closing_balance) == (0, 500)
    assert [e.version for e in trail.entries] == [e.version for e in expected.entries]
    await prune(pruner, archive_objects)  # (already pruned: nothing more to do)
