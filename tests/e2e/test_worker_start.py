"""A worker started while its database or Temporal is down waits for them.

Found by CI: the fault suite restarted PostgreSQL while a region's worker
was still starting (after the failpoint had killed it); the worker exited on
its first query, nobody started it again, and the region's transfers stayed
unanswered for the rest of the run. A supervisor would restart it, but a
worker that exits because a dependency is restarting turns every deploy that
brings them up together into a race.
"""

from __future__ import annotations

import asyncio

from tests.tools.stack import own_ledger


async def test_a_worker_started_while_postgres_then_temporal_is_down_serves_once_back() -> None:
    async with own_ledger() as ledger:
        stack, workers, client = ledger.stack, ledger.workers, ledger.client
        assert stack.postgres and stack.temporal
        region = ledger.settings.regions[0]
        await client.open_account("bank", "USD", region=region, overdraft_limit=None)
        await client.open_account("alice", "USD", region=region)

        workers.stop(region)
        await asyncio.to_thread(stack.postgres.stop)
        workers.start(region)
        await asyncio.sleep(4)  # it has asked the database and been refused
        assert workers.running(region), "the worker gave up on a database that was down"
        await asyncio.to_thread(stack.postgres.start)
        await workers.serving(region)

        workers.stop(region)
        await asyncio.to_thread(stack.temporal.stop)
        workers.start(region)
        await asyncio.sleep(4)
        assert workers.running(region), "the worker gave up on a Temporal that was down"
        await asyncio.to_thread(stack.temporal.start)
        await workers.serving(region)

        result = await client.transfer(
            "after", "bank", "alice", "1.00", "USD", initiated_by="test", region=region
        )
        assert str(result.status) == "confirmed"
        workers.require_running()
