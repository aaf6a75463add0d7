"""The read side tells the truth whatever the timing (issue 13, findings 1, 2, 5):
a rebuild after a prune keeps every balance, a replay never meets a prune
half-way, and a rebuild during a stalled transaction horizon never swaps in
views older than the live ones. The timings are driven, not slept for: a
transaction is held open at the exact point, or the prune runs inside the
read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.archiver import ArchivePolicy, Archiver
from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.archive.prune import prune
from ledgerflow.archive.reader import ArchiveReader
from ledgerflow.audit.point_in_time import replay_balance
from ledgerflow.audit.verify import verify_region
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.infra.postgres import EmbeddedPostgres
from ledgerflow.projections.projector import CatchUpProjector
from ledgerflow.projections.rebuild import rebuild_views
from ledgerflow.projections.views import apply_events, get_balance
from ledgerflow.store.postgres import PostgresEventStore
from tests.conftest import RoleEngine
from tests.support import reconciled

Ids = Callable[[str], str]
Region = tuple[PostgresEventStore, AsyncEngine]


async def dormant_and_busy(store: PostgresEventStore, uid: Ids) -> tuple[str, str, str]:
    """A bank, a dormant account (all its history will be pruned) and a busy one."""
    bank, dormant, busy = uid("bank"), uid("dormant"), uid("busy")
    await store.open_account(OpenAccountRequest(bank, "USD", "us", None), datetime.now(UTC))
    for account in (dormant, busy):
        await store.open_account(OpenAccountRequest(account, "USD", "us", 0), datetime.now(UTC))
    await store.append_transfer(Transfer(uid("d"), bank, dormant, 700, "USD", "t"), "us",
                                datetime.now(UTC))  # fmt: skip
    for n in range(3):
        await store.append_transfer(Transfer(uid(f"b{n}"), bank, busy, 100, "USD", "t"), "us",
                                    datetime.now(UTC))  # fmt: skip
    return bank, dormant, busy


async def archive_and_prune(
    store: PostgresEventStore, objects: S3ObjectStore, pruner: AsyncEngine
) -> None:
    await Archiver(store.engine, objects, "us", ArchivePolicy(timedelta(0), 4, None)).archive_all()
    await CatchUpProjector(store.engine).catch_up()
    await reconciled(store.engine)
    await prune(pruner, objects)


async def test_a_rebuild_after_a_prune_keeps_every_balance(
    isolated_region: Region, archive_objects: S3ObjectStore, pruner: AsyncEngine,
    isolated_as: RoleEngine, uid: Ids,
) -> None:  # fmt: skip
    store, _ = isolated_region
    _, dormant, busy = await dormant_and_busy(store, uid)
    await archive_and_prune(store, archive_objects, pruner)
    async with store.engine.connect() as conn:
        hot = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
    assert hot == 0, "everything was pruned: every account is dormant now"

    await rebuild_views(isolated_as("ledgerflow_owner"))

    for account, balance in ((dormant, 700), (busy, 300)):
        view = await get_balance(store.engine, account)
        assert view is not None and view.balance == balance, account
    assert (await verify_region(store.engine, "us")).sound


async def test_a_replay_that_meets_a_prune_half_way_still_answers_the_truth(
    isolated_region: Region, archive_objects: S3ObjectStore, pg_server: EmbeddedPostgres,
    uid: Ids,
) -> None:  # fmt: skip
    store, _ = isolated_region
    _, _, busy = await dormant_and_busy(store, uid)
    await Archiver(store.engine, archive_objects, "us",
                   ArchivePolicy(timedelta(0), 4, None)).archive_all()  # fmt: skip
    await CatchUpProjector(store.engine).catch_up()
    await reconciled(store.engine)
    now = datetime.now(UTC)
    expected = await replay_balance(store.engine, busy, now)
    database = store.engine.url.database
    assert database is not None
    fired: list[bool] = []

    def prune_now(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Right after the first read of the account's state, before the next.
        if not fired and "account_checkpoints" in statement:
            fired.append(True)
            pg_server.psql(
                "UPDATE archive_segments SET verified_at = now();"
                " SELECT ledger_prune_through(max(segment_no)) FROM archive_segments;",
                database=database,
            )

    sa_event.listen(store.engine.sync_engine, "after_cursor_execute", prune_now)
    try:
        answer = await replay_balance(
            store.engine, busy, now, ArchiveReader(store.engine, archive_objects)
        )
    finally:
        sa_event.remove(store.engine.sync_engine, "after_cursor_execute", prune_now)
    assert fired
    assert answer == expected


async def test_a_rebuild_while_the_horizon_is_held_never_goes_backwards(
    isolated_region: Region, isolated_as: RoleEngine, uid: Ids
) -> None:
    """A transaction left open holds the horizon: the tail the rebuild reads
    stops there, but transfers go on and are projected in line. The views the
    rebuild swaps in must not be older than the live ones."""
    store, superuser = isolated_region
    bank, _, busy = await dormant_and_busy(store, uid)
    await CatchUpProjector(store.engine).catch_up()
    async with superuser.connect() as holder:
        # Any transaction with an id, in any database of the server, holds it.
        await holder.execute(text("SELECT pg_current_xact_id()"))
        result = await store.append_transfer(
            Transfer(uid("late"), bank, busy, 1, "USD", "t"), "us", datetime.now(UTC)
        )
        async with store.engine.begin() as conn:  # the transfer's own in-line projection
            events = await store.events_by_id([result.debit_event_id, result.credit_event_id])
            await apply_events(conn, events)
        live = await get_balance(store.engine, busy)
        assert live is not None and live.balance == 301
        # Who holds the horizon is said: the session, its role and its query.
        pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        status = await CatchUpProjector(store.engine).status(horizon_stall_s=0.0)
        assert status is not None and status.horizon_held_by is not None
        assert f"pid {pid}, postgres@" in status.horizon_held_by

        await rebuild_views(isolated_as("ledgerflow_owner"))

        after = await get_balance(store.engine, busy)
        assert after is not None and (after.balance, after.version) == (live.balance, live.version)
        await holder.rollback()
    await CatchUpProjector(store.engine).catch_up()
    assert (await verify_region(store.engine, "us")).sound
