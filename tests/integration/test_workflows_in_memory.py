"""The workflows on the in-memory store: TransferWorkflow and its saga, run
by a real Temporal dev server, with activities bound to `InMemoryEventStore`
instead of PostgreSQL. Seconds, not minutes: the fast way to test workflow
logic, on the store contract tests/contract holds both stores to."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime

import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ledgerflow.activities.ledger import LedgerActivities
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.converter import data_converter
from ledgerflow.domain.errors import AccountNotFound
from ledgerflow.domain.model import Account, TransferRequest, clearing_account_id
from ledgerflow.store.memory import InMemoryEventStore
from ledgerflow.workers.regional import workflow_runner
from ledgerflow.workflows.account import OpenAccountWorkflow
from ledgerflow.workflows.transfer import TransferWorkflow


class MemoryHomes:
    """A read side over the in-memory stores (where accounts live, and what
    they hold), enough for the SDK to route transfers."""

    def __init__(self, stores: dict[str, InMemoryEventStore]) -> None:
        self.stores = stores

    async def locate(self, account_id: str) -> str:
        for region, store in self.stores.items():
            if await store.get_account(account_id) is not None:
                return region
        raise AccountNotFound(f"account {account_id!r} does not exist", account_id=account_id)

    async def account(self, account_id: str) -> Account:
        found = await self.stores[await self.locate(account_id)].get_account(account_id)
        assert found is not None
        return found

    async def close(self) -> None:
        pass


@dataclasses.dataclass
class MemoryLedger:
    client: LedgerClient
    raw: Client
    stores: dict[str, InMemoryEventStore]
    settings: Settings


@asynccontextmanager
async def memory_workers(
    env: WorkflowEnvironment, stores: dict[str, InMemoryEventStore]
) -> AsyncIterator[MemoryLedger]:
    """A worker per region over the given in-memory stores, and the SDK on them."""
    settings = dataclasses.replace(
        Settings.from_env({}), regions=tuple(stores), default_region=next(iter(stores)),
        task_queue_prefix=f"mem-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    config = env.client.config()
    config["data_converter"] = data_converter(settings)
    client = Client(**config)
    queues = {region: settings.task_queue(region) for region in settings.regions}
    async with AsyncExitStack() as workers:
        for region, store in stores.items():
            await workers.enter_async_context(
                Worker(
                    client,
                    task_queue=queues[region],
                    workflows=[TransferWorkflow, OpenAccountWorkflow],
                    activities=LedgerActivities(store, queues).all(),
                    workflow_runner=workflow_runner("passthrough"),
                )
            )
        ledger = LedgerClient(client, settings, reads=MemoryHomes(stores))  # type: ignore[arg-type]
        yield MemoryLedger(ledger, client, stores, settings)


@pytest_asyncio.fixture
async def memory_ledger(temporal_env: WorkflowEnvironment) -> AsyncIterator[MemoryLedger]:
    stores = {region: InMemoryEventStore(region) for region in ("us", "eu")}
    async with memory_workers(temporal_env, stores) as ledger:
        yield ledger


async def balance(ledger: MemoryLedger, account_id: str) -> int:
    for store in ledger.stores.values():
        if (account := await store.get_account(account_id)) is not None:
            return account.balance
    raise AssertionError(account_id)


async def test_a_local_transfer_posts_once_through_every_path(
    memory_ledger: MemoryLedger, uid: Callable[[str], str]
) -> None:
    ledger = memory_ledger.client
    bank, alice, t1, t2 = uid("bank"), uid("alice"), uid("t1"), uid("t2")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    first = await ledger.transfer(t1, bank, alice, "12.50", "USD", initiated_by="test")
    assert first.confirmed and await balance(memory_ledger, alice) == 1250
    again = await ledger.transfer(t1, bank, alice, "12.50", "USD", initiated_by="test")
    assert again.debit_event_id == first.debit_event_id
    # A raw re-run of the closed id through the plain client: the same outcome.
    raw = await memory_ledger.raw.execute_workflow(
        TransferWorkflow.run, TransferRequest(t1, bank, alice, 1250, "USD", "test"),
        id=f"transfer-{t1}", task_queue=memory_ledger.settings.task_queue("us"),
    )  # fmt: skip
    assert raw.status == "confirmed" and raw.debit_event_id == first.debit_event_id
    assert await balance(memory_ledger, alice) == 1250
    # The projection activity ran: the in-memory read model holds the balance.
    assert memory_ledger.stores["us"].balances[alice][0] == 1250
    refused = await ledger.transfer(t2, alice, bank, 99_999, "USD", initiated_by="test",
                                    raise_on_rejection=False)  # fmt: skip
    assert (refused.status, refused.reason_type) == ("rejected", "InsufficientFunds")
    assert await balance(memory_ledger, alice) == 1250


async def test_the_saga_settles_or_reverses_through_the_clearing_accounts(
    memory_ledger: MemoryLedger, uid: Callable[[str], str]
) -> None:
    ledger = memory_ledger.client
    bank, bob, euro, x1, x2 = uid("bank"), uid("bob"), uid("euro"), uid("x1"), uid("x2")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(bob, "USD", region="eu")
    await ledger.open_account(euro, "EUR", region="eu")
    moved = await ledger.transfer(x1, bank, bob, 700, "USD", initiated_by="test")
    assert moved.confirmed and await balance(memory_ledger, bob) == 700
    us, eu = memory_ledger.stores["us"], memory_ledger.stores["eu"]
    out = await us.get_account(clearing_account_id("us", "eu", "USD"))
    inbound = await eu.get_account(clearing_account_id("eu", "us", "USD"))
    assert out is not None and inbound is not None
    assert out.balance + inbound.balance == 0 and out.balance == 700
    # The destination refuses (another currency there): paid back, not lost.
    back = await ledger.transfer(x2, bank, euro, 300, "USD", initiated_by="test",
                                 raise_on_rejection=False)  # fmt: skip
    assert back.status == "reversed"
    assert (await us.get_account(clearing_account_id("us", "eu", "USD"))).balance == 700  # type: ignore[union-attr]
    bank = await us.get_account(bank)
    assert bank is not None and bank.balance == -700
    # Every account's events still chain from the genesis.
    from ledgerflow.domain.hashing import verify_chain

    for store in (us, eu):
        for account_id in list(store._accounts):
            events = await store.account_events(account_id)
            assert verify_chain(events) == store._accounts[account_id].head_hash
    assert isinstance(back.confirmed_at, datetime | None)


class FlakyProjection(InMemoryEventStore):
    """A store whose read model refuses the first `failures` projections (a
    dropped connection, a lock timeout): postings stand regardless."""

    def __init__(self, region: str, failures: int) -> None:
        super().__init__(region)
        self.failures = failures
        self.projections = 0

    async def project(self, event_ids: list[str]) -> int:
        self.projections += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the read model's database went away")
        return await super().project(event_ids)


async def test_a_projection_that_fails_in_the_posting_call_is_retried_and_never_fails_the_posting(
    temporal_env: WorkflowEnvironment, uid: Callable[[str], str]
) -> None:
    """The one store call appends and projects; the posting stands whatever
    the projection does, and the workflow projects again (bounded) before
    it answers. For ever failing, the answer still comes: confirmed."""
    for failures, projected in ((1, True), (10_000, False)):
        store = FlakyProjection("us", 0)
        async with memory_workers(temporal_env, {"us": store}) as memory:
            ledger, client = memory.client, memory.raw
            bank, alice, tid = uid(f"bank{failures}"), uid(f"alice{failures}"), uid(f"t{failures}")
            await ledger.open_account(bank, "USD", overdraft_limit=None)
            await ledger.open_account(alice, "USD")
            store.failures, store.projections = failures, 0
            result = await asyncio.wait_for(  # before the fix: never answered
                ledger.transfer(tid, bank, alice, 500, "USD", initiated_by="test"), 30
            )
            assert result.confirmed and (await store.get_account(alice)).balance == 500  # type: ignore[union-attr]
            assert store.projections >= 2  # in the posting call, then the workflow's own
            assert (store.balances.get(alice, (0, 0))[0] == 500) is projected
            history = await client.get_workflow_handle(f"transfer-{tid}").fetch_history()
            markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
            assert len(markers) == 2  # the posting call, the workflow's projection
