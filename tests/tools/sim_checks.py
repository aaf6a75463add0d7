"""The simulator's checks: after every round, around every maintenance, at the end.

Everything is compared with the model (`sim_model`), never with another
answer of the ledger's own: balances of the write model, of the read models
and `balance_as_of(now)`; every id's recorded outcome and postings in every
region (`tests.tools.checks`); the clearing accounts; an audit trail.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ledgerflow.archive.messages import ArchiveRequest
from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.archive.prune import prune
from ledgerflow.archive.verify import verify_region_and_archive
from ledgerflow.domain.errors import AccountNotFound
from ledgerflow.domain.model import Posting, Transfer, clearing_account_id
from ledgerflow.infra.postgres import database_name
from ledgerflow.projections.rebuild import rebuild_views
from ledgerflow.reconcile.messages import ReconcileSummary
from ledgerflow.schedules import reconcile_request
from ledgerflow.store.postgres import PostgresEventStore, create_engine
from ledgerflow.stream.subjects import region_stream, region_subjects
from ledgerflow.stream.topology import connect
from ledgerflow.stream.verify import RegionStreamReport
from ledgerflow.workflows.archive import ArchiveWorkflow
from ledgerflow.workflows.reconcile import ReconcileWorkflow
from tests.tools.checks import Expected, gather, judge, stream_reports

if TYPE_CHECKING:
    from tests.tools.simulate import Round, Simulation

#: Full `verify` of every region every this many rounds (and at the end).
VERIFY_EVERY = 10


class RoundFailure(AssertionError):
    """A check failed: the ledger and the model disagree."""


def _fail(what: str) -> RoundFailure:
    return RoundFailure(what)


async def check_round(sim: Simulation, round_: Round) -> None:
    ids = {op.tid for op in round_.ops
           if op.change is None and op.hold is None and op.legs is None}  # fmt: skip
    expected = {
        tid: Expected(
            outcome.status if outcome.status != "DuplicateTransferMismatch" else "refused",
            region, to_region,
        )
        for tid, (_, outcome, region, to_region) in sim.model.transfers.items()
        if tid in ids
    }  # fmt: skip
    facts = await gather(sim.ledger.settings, ids, verify=sim.rounds % VERIFY_EVERY == 0)
    counters = judge(facts, expected, {tid: sim.observed[tid] for tid in ids})
    if not counters.clean:
        raise _fail(f"counters: {counters}")
    await check_balances(sim)


async def check_balances(sim: Simulation) -> None:
    """Write model, read model and `balance_as_of(now)` against the model."""
    client = sim.ledger.client
    now = datetime.now(UTC)
    for account in sim.model.accounts.values():
        stored = await client.account(account.account_id)
        if stored.balance != account.balance:
            raise _fail(f"{account.account_id}: write model {stored.balance}, "
                        f"model {account.balance}")  # fmt: skip
        if stored.status != account.status:
            raise _fail(f"{account.account_id}: status {stored.status}, model {account.status}")
        if stored.pending_out != account.pending:
            raise _fail(f"{account.account_id}: pending {stored.pending_out}, "
                        f"model {account.pending}")  # fmt: skip
        view = await client.balance(account.account_id)
        if view.balance != account.balance:
            raise _fail(f"{account.account_id}: read model {view.balance}, "
                        f"model {account.balance}")  # fmt: skip
        past = await client.balance_as_of(account.account_id, now)
        if past.balance != account.balance:
            raise _fail(f"{account.account_id}: as of now {past.balance}, "
                        f"model {account.balance}")  # fmt: skip
    for (home, peer, currency), balance in sim.model.clearing.items():
        clearing = clearing_account_id(home, peer, currency)
        stored = await client.account(clearing)
        if stored.balance != balance:
            raise _fail(f"{clearing}: {stored.balance}, model {balance}")
        other = sim.model.clearing.get((peer, home, currency), 0)
        if balance + other != 0:
            raise _fail(f"clearing {home}/{peer} {currency} nets to {balance + other}")
    await check_an_audit_trail(sim)


async def check_an_audit_trail(sim: Simulation) -> None:
    account = sim.rng.choice(list(sim.model.accounts.values()))
    opened = (await sim.ledger.client.account(account.account_id)).opened_at
    end = datetime.now(UTC)
    start = opened + (end - opened) * sim.rng.random()
    trail = await sim.ledger.client.audit(account.account_id, start, end)
    postings = [e for e in trail.entries if e.kind == "posting"]
    versions = [e.version for e in postings]
    if len(versions) != len(set(versions)):
        raise _fail(f"audit trail of {account.account_id} lists a posting twice: {versions}")
    if trail.closing_balance - trail.opening_balance != sum(e.amount for e in postings):
        raise _fail(f"audit trail of {account.account_id} does not add up")
    if trail.closing_balance != account.balance:
        raise _fail(f"audit trail of {account.account_id} closes at {trail.closing_balance}, "
                    f"model {account.balance}")  # fmt: skip


async def reconcile(sim: Simulation) -> ReconcileSummary:
    settings = sim.ledger.settings
    summary: ReconcileSummary = await sim.ledger.client.temporal.execute_workflow(
        ReconcileWorkflow.run,
        reconcile_request(settings),
        id=f"reconcile-sim-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue(settings.reconcile_region),
    )
    return summary


def _engine(sim: Simulation, role: str, region: str) -> AsyncEngine:
    postgres = sim.ledger.stack.postgres
    assert postgres is not None
    return create_engine(postgres.url(role, database_name(region)), sim.ledger.settings,
                         pool_size=2)  # fmt: skip


async def check_maintenance(sim: Simulation) -> None:
    """Reconcile, archive, prune and rebuild in the middle of it all; every
    balance, and the past, the same before and after."""
    settings, client = sim.ledger.settings, sim.ledger.client
    sample = sim.rng.sample(list(sim.model.accounts), min(4, len(sim.model.accounts)))
    instants = [datetime.now(UTC) - timedelta(seconds=sim.rng.uniform(0, 30)) for _ in range(3)]
    before = {(a, t): await _as_of(sim, a, t) for a in sample for t in instants}
    summary = await reconcile(sim)
    if summary.status != "clean":
        raise _fail(f"reconciliation before maintenance: {summary.text}")
    objects = S3ObjectStore.from_settings(settings)
    for region in settings.regions:
        await client.temporal.execute_workflow(
            ArchiveWorkflow.run,
            ArchiveRequest(region=region, retry_window_s=60),
            id=f"archive-sim-{region}-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue(region),
        )
        pruner, owner = (
            _engine(sim, "ledgerflow_pruner", region),
            _engine(sim, "ledgerflow_owner", region),
        )
        try:
            await prune(pruner, objects)
            await rebuild_views(owner)
        finally:
            await pruner.dispose()
            await owner.dispose()
    await check_balances(sim)
    after = {(a, t): await _as_of(sim, a, t) for a in sample for t in instants}
    if before != after:
        raise _fail(f"the past changed across a prune and a rebuild: {before} != {after}")


async def _as_of(sim: Simulation, account_id: str, instant: datetime) -> int | None:
    try:
        return (await sim.ledger.client.balance_as_of(account_id, instant)).balance
    except AccountNotFound:  # before it opened: that is an answer too
        return None


async def final_checks(sim: Simulation, *, plant: bool) -> dict[str, bool]:
    """A clean reconciliation, verify and archive verify everywhere; then one
    planted fault of each kind, each of which must be found."""
    settings = sim.ledger.settings
    if not sim.model.transfers:
        return {}
    await check_maintenance(sim)  # (archives and prunes: the checkpoints exist)
    objects = S3ObjectStore.from_settings(settings)
    for n, region in enumerate(settings.regions):
        reader = create_engine(settings.reader_url(region), settings, pool_size=1)
        try:
            # The chain walk in this process and in walker processes on the
            # exported snapshot, by turns: both must find a sound region.
            report = await verify_region_and_archive(reader, objects, region, workers=1 + n % 2)
        finally:
            await reader.dispose()
        if not report.sound:
            raise _fail(f"verify of {region}: {report.findings[:3]}")
    await check_stream(sim)
    if not plant:
        return {}
    found = await plant_faults(sim, objects)
    found["stream duplicate"] = await plant_stream_duplicate(sim)
    return found


async def _stream_reports(sim: Simulation) -> list[RegionStreamReport]:
    try:
        return await stream_reports(sim.ledger.settings)
    except AssertionError as exc:
        raise _fail(str(exc)) from None


async def check_stream(sim: Simulation) -> None:
    for report in await _stream_reports(sim):
        if not report.clean:
            raise _fail(f"the stream of {report.region}: {report.examples[:3]}")
        sim.stream_events += report.messages


async def plant_stream_duplicate(sim: Simulation) -> bool:
    """A copy of an event published behind the relay's back is found."""
    settings = sim.ledger.settings
    region = settings.regions[-1]
    nc = await connect(settings.nats_url(region), name="sim-plant")
    try:
        js = nc.jetstream()
        last = await js.get_last_msg(region_stream(region), region_subjects(region))
        await js.publish(last.subject, last.data)
    finally:
        await nc.close()
    for _ in range(40):  # (until the global stream has sourced it)
        reports = {r.region: r for r in await _stream_reports(sim)}
        if reports[region].duplicates:
            return True
        await asyncio.sleep(0.5)
    return False


async def _creditable(sim: Simulation, region: str) -> str:
    """A USD customer of `region` that takes credits (not closed): one of the
    run's, or a new one when the run closed them all."""
    for a in sim.model.accounts.values():
        if (a.region, a.currency, a.limit, a.status) == (region, "USD", 0, "open"):
            return a.account_id
    account_id = f"payee-{region}-{sim.prefix}"
    await sim.ledger.client.open_account(account_id, "USD", region=region)
    return account_id


async def plant_faults(sim: Simulation, objects: S3ObjectStore) -> dict[str, bool]:
    settings = sim.ledger.settings
    postgres = sim.ledger.stack.postgres
    assert postgres is not None
    found: dict[str, bool] = {}
    region = settings.regions[0]
    # A posting still in the hot store (the final maintenance pruned the rest).
    bank = next(a for a in sim.model.accounts if a.startswith(f"bank-{region}-"))
    payee = await _creditable(sim, region)
    await sim.ledger.client.transfer(f"planted-{uuid.uuid4().hex[:8]}", bank, payee, 1, "USD",
                                     initiated_by="sim")  # fmt: skip
    superuser = create_async_engine(postgres.url("postgres", database_name(region)))
    try:
        async with superuser.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            edited = (
                await conn.execute(
                    text(
                        "UPDATE events SET amount = amount + 1 WHERE position = "
                        "(SELECT max(position) FROM events WHERE type = 'Credited') "
                        "RETURNING account_id"
                    )
                )
            ).scalar_one()
            forged = (
                await conn.execute(
                    text(
                        "UPDATE account_checkpoints SET balance = balance + 1 WHERE account_id = "
                        "(SELECT min(account_id) FROM account_checkpoints) RETURNING account_id"
                    )
                )
            ).scalar()
    finally:
        await superuser.dispose()
    # A cross-region transfer still hot, whose destination leg then goes.
    to_region = settings.regions[1]
    abroad = await _creditable(sim, to_region)
    deleted = f"planted-x-{uuid.uuid4().hex[:8]}"
    await sim.ledger.client.transfer(deleted, bank, abroad, 1, "USD", initiated_by="sim")
    away = create_async_engine(postgres.url("postgres", database_name(to_region)))
    try:
        async with away.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text("DELETE FROM events WHERE transfer_id = :t"), {"t": deleted})
    finally:
        await away.dispose()
    # A stray inbound leg: money arriving from nowhere, posted by the app role.
    there = settings.regions[1]
    customer_id = await _creditable(sim, there)
    app = create_engine(settings.database_url(there), settings, pool_size=1)
    stray = f"stray-{uuid.uuid4().hex[:8]}"
    try:
        store = PostgresEventStore(app, there)
        await store.append_posting(
            Posting.inbound(
                Transfer(stray, f"nobody-{region}", customer_id, 777, "USD", "mallory"),
                there,
                region,
            ),
            datetime.now(UTC),
        )
    finally:
        await app.dispose()
    counted = await plant_for_counters(sim, bank, payee, abroad, customer_id)
    findings: list[str] = []
    for n, r in enumerate(settings.regions):
        reader = create_engine(settings.reader_url(r), settings, pool_size=1)
        try:
            report = await verify_region_and_archive(reader, objects, r, workers=2 - n % 2)
        finally:
            await reader.dispose()
        findings += [f"{f.check}:{f.account_id}" for f in report.findings]
    found["edited event"] = f"hash-chain:{edited}" in findings
    found["forged checkpoint"] = forged is None or any(
        f in findings for f in (f"checkpoint:{forged}", f"archive-record:{forged}")
    )
    summary = await reconcile(sim)
    report_json = await _last_report(sim)
    discrepancies = report_json["discrepancies"]
    assert isinstance(discrepancies, list)
    kinds = {(d["kind"], d.get("transfer_id")) for d in discrepancies}
    found["deleted leg"] = any(tid == deleted for _, tid in kinds)
    found["stray inbound leg"] = ("inbound-without-outbound", stray) in kinds
    if summary.status != "discrepancies_found":
        found["reconciliation saw them"] = False
    # The fault suite's counters, over the same broken databases.
    counted |= {stray: Expected("refused", region, there),
                deleted: Expected("confirmed", region, to_region)}  # fmt: skip
    counters = judge(await gather(settings, list(counted)), counted)
    for name in ("lost", "posted_twice", "arrival_and_reversal", "credited_without_debit",
                 "read_model_diverged", "double_entry", "verify_findings"):  # fmt: skip
        found[f"counter {name}"] = getattr(counters, name) > 0
    return found


async def plant_for_counters(
    sim: Simulation, bank: str, payee: str, abroad: str, customer: str
) -> dict[str, Expected]:
    """What a broken build would leave, for the counters to count: a local
    id posted again in another region, a transfer that arrived and was then
    paid back, and a balance view moved off its account."""
    settings, client = sim.ledger.settings, sim.ledger.client
    region, there, third = settings.regions[0], settings.regions[1], settings.regions[2]
    postgres = sim.ledger.stack.postgres
    assert postgres is not None
    twice, back = (f"planted-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("twice", "back"))
    await client.transfer(twice, bank, payee, 1, "USD", initiated_by="sim")
    await client.transfer(back, bank, abroad, 1, "USD", initiated_by="sim")
    there_bank = next(a for a in sim.model.accounts if a.startswith(f"bank-{there}-"))
    now = datetime.now(UTC)
    for home, posting in (
        (there, Posting.local(Transfer(twice, there_bank, customer, 1, "USD", "sim"), there)),
        (region, Posting.reversal(Transfer(back, bank, abroad, 1, "USD", "sim"), region, there)),
    ):
        app = create_engine(settings.database_url(home), settings, pool_size=1)
        try:
            await PostgresEventStore(app, home).append_posting(posting, now)
        finally:
            await app.dispose()
    untouched = next(a.account_id for a in sim.model.accounts.values() if a.region == third)
    superuser = create_async_engine(postgres.url("postgres", database_name(third)))
    try:
        async with superuser.begin() as conn:
            await conn.execute(
                text("UPDATE balance_view SET balance = balance + 1 WHERE account_id = :a"),
                {"a": untouched},
            )
    finally:
        await superuser.dispose()
    return {twice: Expected("confirmed", region), back: Expected("confirmed", region, there)}


async def _last_report(sim: Simulation) -> dict[str, object]:
    from ledgerflow.reconcile.reports import latest_report

    settings = sim.ledger.settings
    reader = create_engine(settings.reader_url(settings.reconcile_region), settings, pool_size=1)
    try:
        report = await latest_report(reader)
    finally:
        await reader.dispose()
    assert report is not None
    return report
