"""A caller that has given up is not written (issue 12, finding 5).

An append whose caller timed out (an activity past its start-to-close
timeout, cancelled by the worker) while it waited in the group-commit queue,
for a connection or on a lock must not commit afterwards: a later attempt
may already have answered with another outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import text

from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import count_rows

Ids = Callable[[str], str]
Region = tuple[PostgresEventStore, object]


async def test_an_append_abandoned_while_it_waits_on_a_lock_is_not_written(
    isolated_region: Region, uid: Ids
) -> None:
    store, _ = isolated_region
    a, b = uid("a"), uid("b")
    for account in (a, b):
        await store.open_account(OpenAccountRequest(account, "USD", "us", None), datetime.now(UTC))
    tid = uid("t")
    async with store.engine.connect() as holder:
        # Another transaction holds the debited account's row lock.
        await holder.execute(
            text("SELECT 1 FROM accounts WHERE account_id = :a FOR UPDATE"), {"a": a}
        )
        attempt = asyncio.create_task(
            store.append_transfer(Transfer(tid, a, b, 100, "USD", "t"), "us", datetime.now(UTC))
        )
        await asyncio.sleep(0.5)  # the batch is now waiting on the lock
        attempt.cancel()  # the caller gives up, as a timed-out activity does
        await asyncio.sleep(0.1)
        await holder.rollback()
    await asyncio.sleep(1.0)  # whatever the batch was going to do, it has done
    assert await count_rows(store.engine, "transfers", "transfer_id = :t", t=tid) == 0
    assert await count_rows(store.engine, "events", "transfer_id = :t", t=tid) == 0
