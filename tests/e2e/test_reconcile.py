"""Three regional write nodes end to end: cross-region transfers in every
direction while one region's worker is stopped and restarted, then
ReconcileWorkflow; and a leg deleted behind the ledger's back, which
reconciliation names by its transfer id.

Each test gets three fresh databases and its own workers on a task-queue
prefix of its own, so it sees whole regions and can stop one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ledgerflow import search_attributes as sa
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.domain.errors import AccountClosed, InsufficientFunds, LedgerError
from ledgerflow.domain.holds import HoldRequest, hold_workflow_id
from ledgerflow.domain.model import Posting, Transfer, TransferStatus, clearing_account_id
from ledgerflow.infra.postgres import EmbeddedPostgres
from ledgerflow.reconcile.messages import ReconcileStatus, ReconcileSummary
from ledgerflow.schedules import reconcile_request
from ledgerflow.store.migrate import upgrade_regions
from ledgerflow.store.postgres import PostgresEventStore, create_engine
from ledgerflow.workers.regional import build_worker
from ledgerflow.workflows.hold import HoldWorkflow
from ledgerflow.workflows.reconcile import ReconcileWorkflow
from ledgerflow.workflows.transfer import TransferWorkflow
from tests.conftest import REGIONS
from tests.support import cli, eventually, repo_root

Ids = Callable[[str], str]


@dataclass
class Regions:
    """Three fresh regions with workers that a test may stop and start."""

    settings: Settings
    env: dict[str, str]
    client: Client
    engines: dict[str, AsyncEngine]
    superusers: dict[str, AsyncEngine]
    workers: dict[str, Worker] = field(default_factory=dict)
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def start(self, region: str) -> None:
        worker = build_worker(self.client, self.settings, region, self.engines[region])
        self.workers[region] = worker
        self.running[region] = asyncio.create_task(worker.run())

    async def stop(self, region: str) -> None:
        await self.workers.pop(region).shutdown()
        await self.running.pop(region)

    async def reconcile(self, name: str) -> ReconcileSummary:
        return await self.client.execute_workflow(
            ReconcileWorkflow.run,
            reconcile_request(self.settings),
            id=f"reconcile-{name}-{uuid.uuid4().hex[:8]}",
            task_queue=self.settings.task_queue(self.settings.reconcile_region),
        )


@pytest_asyncio.fixture
async def regions(
    pg_server: EmbeddedPostgres,
    temporal_env: WorkflowEnvironment,
    cli_env: dict[str, str],
    migrated: Settings,
) -> AsyncIterator[Regions]:
    tag = uuid.uuid4().hex[:10]
    names = {r: f"ledgerflow_{tag}_{r}" for r in REGIONS}
    env = dict(cli_env) | {
        "LEDGERFLOW_TASK_QUEUE_PREFIX": f"tq-{tag}",
        "LEDGERFLOW_SCHEDULES": "off",
        "LEDGERFLOW_RECONCILE_REGION_TIMEOUT_S": "3",
        "LEDGERFLOW_DB_POOL_SIZE": "6",
    }
    for region, name in names.items():
        pg_server.psql(f"CREATE DATABASE {name} OWNER ledgerflow_owner")
        url = f"postgresql+asyncpg://{{}}@127.0.0.1:{pg_server.port}/{name}"
        env[f"LEDGERFLOW_DATABASE_URL_{region.upper()}"] = url.format("ledgerflow_app")
        env[f"LEDGERFLOW_MIGRATION_DATABASE_URL_{region.upper()}"] = url.format("ledgerflow_owner")
    settings = Settings.from_env(env)
    await upgrade_regions(settings)
    under_test = Regions(
        settings,
        env,
        temporal_env.client,
        engines={r: create_engine(settings.database_url(r), settings) for r in REGIONS},
        superusers={r: create_async_engine(pg_server.url("postgres", n)) for r, n in names.items()},
    )
    for region in REGIONS:
        await under_test.start(region)
    try:
        yield under_test
    finally:
        for region in list(under_test.workers):
            with contextlib.suppress(Exception):
                await under_test.stop(region)
        for engine in [*under_test.engines.values(), *under_test.superusers.values()]:
            await engine.dispose()


async def sums(engine: AsyncEngine, where: str = "true") -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(f"SELECT currency, sum(amount) AS s FROM events WHERE {where} GROUP BY currency")
        )
        return {r.currency: int(r.s) for r in rows}


async def open_customers(ledger: LedgerClient, tag: str) -> dict[str, str]:
    """A funded USD customer per region (and each region's bank)."""
    customers = {}
    for region in REGIONS:
        bank, customer = f"bank-{region}-{tag}", f"cust-{region}-{tag}"
        await ledger.open_account(bank, "USD", region=region, overdraft_limit=None)
        await ledger.open_account(customer, "USD", region=region)
        await ledger.transfer(f"fund-{region}-{tag}", bank, customer, "1000.00", "USD",
                              initiated_by="treasury")  # fmt: skip
        customers[region] = customer
    return customers


async def test_transfers_in_every_direction_survive_a_stopped_region_and_reconcile_clean(
    regions: Regions,
) -> None:
    ledger = LedgerClient(regions.client, regions.settings)
    tag = uuid.uuid4().hex[:6]
    customers = await open_customers(ledger, tag)
    directions = [(a, b) for a in REGIONS for b in REGIONS if a != b]

    async def start_round(n: int) -> list[WorkflowHandle[Any, Any]]:
        return [
            await ledger.start_transfer(f"x{n}-{a}-{b}-{tag}", customers[a], customers[b],
                                        100 + n, "USD", initiated_by="e2e")
            for a, b in directions
        ]  # fmt: skip

    first = await start_round(1)
    await asyncio.gather(*(h.result() for h in first))
    assert (await regions.reconcile("before")).status == ReconcileStatus.CLEAN

    # eu's worker stops mid-run: transfers into eu wait in transit, visibly.
    await regions.stop("eu")
    second = await start_round(2)
    into_eu = ledger.temporal.get_workflow_handle(f"transfer-x2-us-eu-{tag}")

    async def waiting_in_transit() -> bool:
        described = await into_eu.describe()
        return described.typed_search_attributes.get(sa.STATUS) == TransferStatus.IN_TRANSIT

    await eventually(waiting_in_transit, within=20)
    assert (await into_eu.query(TransferWorkflow.status)).status == TransferStatus.IN_TRANSIT
    during = await regions.reconcile("during")
    assert during.status == ReconcileStatus.INCOMPLETE and during.unreachable == ["eu"]

    await regions.start("eu")
    results = await asyncio.gather(*(h.result() for h in second))
    assert {r.status for r in results} == {TransferStatus.CONFIRMED}
    # Every transfer posted exactly once in each of its two regions.
    for n in (1, 2):
        for a, b in directions:
            tid = f"x{n}-{a}-{b}-{tag}"
            for region in (a, b):
                async with regions.engines[region].connect() as conn:
                    count = (
                        await conn.execute(
                            text("SELECT count(*) FROM events WHERE transfer_id = :t"), {"t": tid}
                        )
                    ).scalar_one()
                assert count == 2, (tid, region)

    after = await regions.reconcile("after")
    assert (after.status, after.discrepancies, after.in_transit) == (ReconcileStatus.CLEAN, 0, 0)
    # Each region records how far the stored report checked it: pruning's gate.
    for region in REGIONS:
        async with regions.engines[region].connect() as conn:
            marked = (
                await conn.execute(
                    text("SELECT count(*) FROM reconciled_through WHERE report_id = :r"),
                    {"r": after.report_id},
                )
            ).scalar_one()
        assert marked == 1, region
    if os.environ.get("LEDGERFLOW_RECORD_HISTORIES") == "1":
        queue = regions.settings.task_queue("us")
        [run] = [w async for w in regions.client.list_workflows(
            f"WorkflowType = 'ReconcileWorkflow' AND TaskQueue = '{queue}'"
            " AND ExecutionStatus = 'Completed'", limit=1)]  # fmt: skip
        history = await regions.client.get_workflow_handle(run.id).fetch_history()
        (repo_root() / "tests" / "histories" / "reconcile_clean.json").write_text(history.to_json())
    # Global per-currency sums are zero, and every clearing pair nets to zero.
    totals = [await sums(regions.engines[r]) for r in REGIONS]
    assert sum(t.get("USD", 0) for t in totals) == 0
    for a, b in directions:
        pair = (
            await sums(regions.engines[a], f"account_id = '{clearing_account_id(a, b, 'USD')}'")
            | {}
        )
        back = await sums(regions.engines[b], f"account_id = '{clearing_account_id(b, a, 'USD')}'")
        assert pair.get("USD", 0) + back.get("USD", 0) == 0
    # Each customer: +1000 funding, paid 2 rounds to two regions, received the same.
    for region in REGIONS:
        assert (await ledger.balance(customers[region])).balance == 100_000


async def test_captures_into_a_stopped_region_wait_then_arrive_and_reconcile_clean(
    regions: Regions,
) -> None:
    """A hold in us toward eu: with eu's worker stopped, a capture posts its
    source leg and waits in transit; a capture toward an account eu closed
    comes back once eu answers; afterwards every leg is settled."""
    ledger = LedgerClient(regions.client, regions.settings)
    tag = uuid.uuid4().hex[:6]
    customers = await open_customers(ledger, tag)
    alice, shop = customers["us"], customers["eu"]
    gone = f"gone-eu-{tag}"
    await ledger.open_account(gone, "USD", region="eu")
    await ledger.close_account(gone, reason="left", change_id="close")
    await ledger.hold(f"h-{tag}", alice, shop, "50.00", "USD", expires_in=3600)
    await ledger.hold(f"g-{tag}", alice, gone, "20.00", "USD", expires_in=3600)
    await regions.stop("eu")
    arriving = asyncio.create_task(ledger.capture(f"h-{tag}", "30.00", capture_id="c1"))
    returning = asyncio.create_task(ledger.capture(f"g-{tag}", "20.00", capture_id="c1"))

    async def source_legs_posted() -> bool:
        async with regions.engines["us"].connect() as conn:
            count = (
                await conn.execute(
                    text("SELECT count(*) FROM transfers WHERE transfer_id = ANY(:ids)"),
                    {"ids": [f"h-{tag}/capture/c1", f"g-{tag}/capture/c1"]},
                )
            ).scalar_one()
        return bool(count == 2)

    await eventually(source_legs_posted, within=20)
    assert not arriving.done() and not returning.done()  # in transit while eu is down
    during = await regions.reconcile("holds-during")
    assert during.status == ReconcileStatus.INCOMPLETE and during.unreachable == ["eu"]
    await regions.start("eu")
    assert (await arriving).status == "captured"
    with pytest.raises(AccountClosed):  # refused there: the amount came back
        await returning
    await eventually(lambda: _balance_is(ledger, shop, 100_000 + 3000), within=20)
    balance = await ledger.balance(alice)
    assert (balance.balance, balance.pending_out) == (100_000 - 3000, 2000)
    after = await regions.reconcile("holds-after")
    assert (after.status, after.discrepancies, after.in_transit) == (ReconcileStatus.CLEAN, 0, 0)


async def test_a_capture_left_on_its_way_by_a_terminated_run_arrives_on_the_next(
    regions: Regions,
) -> None:
    """A careless operator terminates a hold's workflow while a capture into
    a stopped region is in transit (its source leg posted, the money in
    clearing); the next run of the id, a plain client's raw start, carries
    the capture on, and it arrives once."""
    ledger = LedgerClient(regions.client, regions.settings)
    tag = uuid.uuid4().hex[:6]
    customers = await open_customers(ledger, tag)
    alice, shop = customers["us"], customers["eu"]
    hid = f"t-{tag}"
    await ledger.hold(hid, alice, shop, "40.00", "USD", expires_in=3600, initiated_by="pos")
    await regions.stop("eu")
    capturing = asyncio.create_task(ledger.capture(hid, "15.00", capture_id="c1"))
    handle = regions.client.get_workflow_handle(hold_workflow_id(hid))

    async def in_transit() -> bool:
        state = await ledger.hold_state(hid)
        return [t.capture_id for t in state.traveled] == ["c1"]

    await eventually(in_transit, within=20)
    await handle.terminate(reason="careless operator")
    with pytest.raises(LedgerError, match="completed before the Update completed"):
        await capturing
    request = HoldRequest(hid, alice, shop, "40.00", "USD", "pos", 3600, to_region="eu")
    rerun = await regions.client.start_workflow(
        HoldWorkflow.run, request, id=hold_workflow_id(hid),
        task_queue=regions.settings.task_queue("us"),
    )  # fmt: skip
    await regions.start("eu")
    await eventually(lambda: _balance_is(ledger, shop, 100_000 + 1500), within=30)
    await ledger.void(hid)
    assert (await rerun.result()).status == "voided"
    async with regions.engines["eu"].connect() as conn:
        posted = (
            await conn.execute(
                text("SELECT count(*) FROM events WHERE transfer_id = :t"),
                {"t": f"{hid}/capture/c1"},
            )
        ).scalar_one()
    assert posted == 2
    assert (await ledger.capture(hid, "15.00", capture_id="c1")).status == "captured"
    after = await regions.reconcile("terminated-after")
    assert (after.status, after.discrepancies, after.in_transit) == (ReconcileStatus.CLEAN, 0, 0)


async def _balance_is(ledger: LedgerClient, account_id: str, amount: int) -> bool:
    return (await ledger.balance(account_id)).balance == amount


async def test_a_leg_deleted_behind_the_ledgers_back_is_reported_with_its_transfer_id(
    regions: Regions,
) -> None:
    ledger = LedgerClient(regions.client, regions.settings)
    tag = uuid.uuid4().hex[:6]
    customers = await open_customers(ledger, tag)
    victim = f"gone-{tag}"
    await ledger.transfer(victim, customers["us"], customers["ap"], "5.00", "USD",
                          initiated_by="e2e")  # fmt: skip
    await ledger.transfer(f"kept-{tag}", customers["ap"], customers["eu"], "7.00", "USD",
                          initiated_by="e2e")  # fmt: skip
    code, out, err = await cli(regions.env, "reconcile", "--now")
    assert code == 0, err
    assert "clean" in out

    # As superuser, with the append-only trigger disabled: the destination leg goes.
    async with regions.superusers["ap"].begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        deleted = await conn.execute(
            text("DELETE FROM events WHERE transfer_id = :t"), {"t": victim}
        )
        assert deleted.rowcount == 2

    summary = await regions.reconcile("planted")
    assert summary.status == ReconcileStatus.DISCREPANCIES_FOUND
    handle = regions.client.get_workflow_handle(
        (await regions.client.list_workflows(
            f"WorkflowType = 'ReconcileWorkflow' AND LedgerStatus = 'discrepancies_found' "
            f"AND TaskQueue = '{regions.settings.task_queue('us')}'"
        ).__anext__()).id
    )  # fmt: skip
    assert (await handle.describe()).typed_search_attributes.get(sa.STATUS) == (
        ReconcileStatus.DISCREPANCIES_FOUND
    )
    code, out, err = await cli(regions.env, "reconcile", "report", "--last", "--json")
    assert code == 6, out + err
    report = json.loads(out)
    assert report["report_id"] == summary.report_id
    named = [d for d in report["discrepancies"] if d["transfer_id"] == victim]
    assert named and named[0]["kind"] == "missing-leg"
    assert all(d["transfer_id"] != f"kept-{tag}" for d in report["discrepancies"])
    code, out, _ = await cli(regions.env, "reconcile", "report")
    assert code == 6 and victim in out and "discrepancies_found" in out


async def test_an_inbound_leg_without_its_outbound_leg_is_a_discrepancy_in_the_same_run(
    regions: Regions,
) -> None:
    """Money from nowhere (issue 12, finding 1): an arrival in eu whose source
    leg us never posted is not "in transit"; the run that first sees it says so."""
    ledger = LedgerClient(regions.client, regions.settings)
    tag = uuid.uuid4().hex[:6]
    customers = await open_customers(ledger, tag)
    assert (await regions.reconcile("before")).status == ReconcileStatus.CLEAN
    stray = Transfer(f"stray-{tag}", customers["us"], customers["eu"], 4000, "USD", "mallory")
    eu = PostgresEventStore(regions.engines["eu"], "eu")
    await eu.append_posting(Posting.inbound(stray, "eu", "us"), datetime.now(UTC))
    # And one whose source leg was refused in us (recorded), yet arrived in eu.
    refused = Transfer(f"refused-{tag}", customers["us"], customers["eu"], 10**9, "USD", "m")
    us = PostgresEventStore(regions.engines["us"], "us")
    await us.record_posting_rejection(
        Posting.outbound(refused, "us", "eu"), InsufficientFunds("no"), datetime.now(UTC)
    )
    await eu.append_posting(Posting.inbound(refused, "eu", "us"), datetime.now(UTC))

    summary = await regions.reconcile("stray")

    assert summary.status == ReconcileStatus.DISCREPANCIES_FOUND
    code, out, err = await cli(regions.env, "reconcile", "report", "--last", "--json")
    assert code == 6, out + err
    found = {(d["kind"], d["transfer_id"]) for d in json.loads(out)["discrepancies"]}
    assert ("inbound-without-outbound", stray.transfer_id) in found
    assert ("leg-contradiction", refused.transfer_id) in found


async def test_a_run_that_stops_at_its_page_limit_never_splits_a_transaction(
    regions: Regions,
) -> None:
    """A backlog bigger than one run's pages (issue 13, finding 3): the run
    stops at whole transactions, so the sums taken where it stopped add up,
    and the next run goes on from there."""
    ledger = LedgerClient(regions.client, regions.settings)
    tag = uuid.uuid4().hex[:6]
    bank, payee = f"bank-{tag}", f"payee-{tag}"
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(payee, "USD", region="us")
    for n in range(70):
        await ledger.transfer(f"p{n}-{tag}", bank, payee, 1, "USD", initiated_by="e2e")
    # Three events a page, 25 pages a run: a run stops after some 75-100 of the
    # region's 142 events, in the middle of a two-event transaction unless it
    # takes care.
    small = dataclasses.replace(reconcile_request(regions.settings), page_events=3)
    first = await regions.client.execute_workflow(
        ReconcileWorkflow.run, small, id=f"reconcile-paged-{tag}",
        task_queue=regions.settings.task_queue(regions.settings.reconcile_region),
    )  # fmt: skip
    assert (first.status, first.discrepancies) == (ReconcileStatus.CLEAN, 0), first.text
    assert "behind" in first.text
    second = await regions.client.execute_workflow(
        ReconcileWorkflow.run, small, id=f"reconcile-paged2-{tag}",
        task_queue=regions.settings.task_queue(regions.settings.reconcile_region),
    )  # fmt: skip
    assert (second.status, second.discrepancies) == (ReconcileStatus.CLEAN, 0), second.text
