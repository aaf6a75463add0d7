"""A hold's deadline passes while its region's worker is SIGKILLed: nothing
expires it meanwhile (no other process may), and when a worker is back the
durable timer fires and the hold expires exactly once. On a ledger of its
own, with workers as separate processes."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from ledgerflow.domain.holds import HoldState, hold_workflow_id
from ledgerflow.store.postgres import create_engine
from tests.tools.stack import own_ledger


async def test_a_worker_killed_across_a_deadline_expires_the_hold_once_when_back() -> None:
    async with own_ledger() as ledger:
        client, region = ledger.client, "us"
        await client.open_account("bank", "USD", region=region, overdraft_limit=None)
        await client.open_account("alice", "USD", region=region)
        await client.open_account("shop", "USD", region=region)
        await client.transfer("fund", "bank", "alice", "50.00", "USD", initiated_by="ops")
        placed = await client.hold("h1", "alice", "shop", "20.00", "USD", expires_in=3)
        assert placed.placed
        ledger.workers.kill(region)
        await asyncio.sleep(5)  # the deadline passes with no worker anywhere
        stalled = await client.hold_state("h1")
        assert (stalled.status, stalled.remaining) == ("open", 2000)  # nobody expired it
        assert (await client.account("alice")).pending_out == 2000
        ledger.workers.start(region)
        handle = client.temporal.get_workflow_handle(hold_workflow_id("h1"), result_type=HoldState)
        ended = await asyncio.wait_for(handle.result(), 60)
        assert (ended.status, ended.remaining) == ("expired", 0)
        engine = create_engine(ledger.settings.reader_url(region), ledger.settings, pool_size=1)
        try:
            async with engine.connect() as conn:
                releases = (
                    await conn.execute(
                        text("SELECT count(*) FROM events WHERE type = 'HoldReleased'")
                    )
                ).scalar_one()
                rows = (await conn.execute(text("SELECT count(*) FROM hold_releases"))).scalar_one()
        finally:
            await engine.dispose()
        assert (releases, rows) == (1, 1)
        account = await client.account("alice")
        assert (account.balance, account.pending_out, account.available) == (5000, 0, 5000)
