"""The global event stream end to end: three fresh regions, a JetStream
server per region joined by gateways, the relays, and the global stream
that sources every region's. Exactly once and in each region's order
whatever happens to a relay (cut off mid-batch) or to a region's NATS
server (stopped and restarted); consumers by position, time and subject,
durable ones that get again what they did not acknowledge; and the stream
verified against the stores, with a planted duplicate found."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ledgerflow import search_attributes as sa
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.infra.nats import EmbeddedNats
from ledgerflow.infra.postgres import EmbeddedPostgres
from ledgerflow.store.migrate import upgrade_regions
from ledgerflow.store.postgres import create_engine
from ledgerflow.stream.consumer import jetstream_api, read_events
from ledgerflow.stream.relay import Relay
from ledgerflow.stream.subjects import GLOBAL_STREAM, region_stream
from ledgerflow.stream.topology import ensure_streams
from ledgerflow.stream.verify import verify_region_stream
from ledgerflow.workers.regional import build_worker
from tests.conftest import REGIONS
from tests.support import cli, eventually


@dataclass
class Streamed:
    settings: Settings
    ledger: LedgerClient
    engines: dict[str, AsyncEngine]
    servers: dict[str, EmbeddedNats]
    env: dict[str, str]
    nc: dict[str, NatsClient] = field(default_factory=dict)

    def js(self, region: str) -> JetStreamContext:
        return self.nc[region].jetstream()

    def relay(self, region: str, **kw: Any) -> Relay:
        return Relay(self.engines[region], region, self.js(region), **kw)

    async def relay_all(self) -> None:
        for region in REGIONS:
            await self.relay(region).catch_up()

    async def global_events(self, **filters: Any) -> list[Any]:
        return [e async for e in read_events(self.js(self.settings.stream_region), **filters)]

    async def sourced(self) -> int:
        js = self.js(self.settings.stream_region)
        info = await jetstream_api(lambda: js.stream_info(GLOBAL_STREAM))
        return int(info.state.messages)


@pytest_asyncio.fixture
async def streamed(
    pg_server: EmbeddedPostgres,
    temporal_env: WorkflowEnvironment,
    migrated: Settings,
    nats_servers: list[EmbeddedNats],
    cli_env: dict[str, str],
) -> AsyncIterator[Streamed]:
    tag = uuid.uuid4().hex[:10]
    env = {
        "LEDGERFLOW_STATE_DIR": str(migrated.state_dir),
        "LEDGERFLOW_PG_PORT": str(pg_server.port),
        "LEDGERFLOW_REGIONS": ",".join(REGIONS),
        "LEDGERFLOW_TASK_QUEUE_PREFIX": f"tq-{tag}",
        "LEDGERFLOW_NATS_PORT": str(nats_servers[0].base_port),
        "LEDGERFLOW_DB_POOL_SIZE": "6",
    }
    for region in REGIONS:
        name = f"ledgerflow_{tag}_{region}"
        pg_server.psql(f"CREATE DATABASE {name} OWNER ledgerflow_owner")
        url = f"postgresql+asyncpg://{{}}@127.0.0.1:{pg_server.port}/{name}"
        env[f"LEDGERFLOW_DATABASE_URL_{region.upper()}"] = url.format("ledgerflow_app")
        env[f"LEDGERFLOW_MIGRATION_DATABASE_URL_{region.upper()}"] = url.format("ledgerflow_owner")
        env[f"LEDGERFLOW_READER_DATABASE_URL_{region.upper()}"] = url.format("ledgerflow_reader")
    settings = Settings.from_env(env)
    await upgrade_regions(settings)
    engines = {r: create_engine(settings.database_url(r), settings) for r in REGIONS}
    under_test = Streamed(settings, LedgerClient(temporal_env.client, settings), engines,
                          dict(zip(REGIONS, nats_servers, strict=True)),
                          dict(cli_env) | env)  # fmt: skip
    for region in REGIONS:
        under_test.nc[region] = await nats.connect(
            settings.nats_url(region), max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
    js = under_test.js(settings.stream_region)
    for name in (GLOBAL_STREAM, *(region_stream(r) for r in REGIONS)):
        with contextlib.suppress(NotFoundError):  # a fresh stream for fresh databases
            await js.delete_stream(name)
    await ensure_streams(js, settings)
    async with contextlib.AsyncExitStack() as stack:
        for region in REGIONS:
            worker: Worker = build_worker(temporal_env.client, settings, region, engines[region])
            await stack.enter_async_context(worker)
        try:
            yield under_test
        finally:
            await under_test.ledger.close()
            for client in under_test.nc.values():
                await client.close()
            for engine in engines.values():
                await engine.dispose()


async def trade(ledger: LedgerClient, tag: str) -> dict[str, str]:
    customers = {}
    for region in REGIONS:
        bank, customer = f"bank.{region}.{tag}", f"cust-{region}-{tag}"  # a dot in an id
        await ledger.open_account(bank, "USD", region=region, overdraft_limit=None)
        await ledger.open_account(customer, "USD", region=region)
        await ledger.transfer(f"fund-{region}-{tag}", bank, customer, "100.00", "USD",
                              initiated_by="ops")  # fmt: skip
        customers[region] = customer
    await ledger.transfer(f"x-{tag}", customers["us"], customers["eu"], "10.00", "USD",
                          initiated_by="ops")  # fmt: skip
    return customers


async def test_every_event_of_every_region_reaches_the_global_stream_once_in_order(
    streamed: Streamed,
) -> None:
    tag = uuid.uuid4().hex[:6]
    customers = await trade(streamed.ledger, tag)
    # Two relays of one region at once (a worker started twice): each
    # publish names the event before it, so the loser's are refused.
    one, two = streamed.relay("us", batch_size=3), streamed.relay("us", batch_size=5)
    raced = await asyncio.gather(one.catch_up(), two.catch_up(), return_exceptions=True)
    assert any(isinstance(r, int) for r in raced), raced
    await streamed.relay_all()
    await streamed.relay("us").catch_up()  # a second pass publishes nothing
    counts = {}
    for region in REGIONS:
        report = await verify_region_stream(streamed.engines[region], region, streamed.js(region))
        assert report.clean, report.examples
        counts[region] = report.events
        assert report.messages == report.events > 0
    await eventually(lambda: _sourced_is(streamed, sum(counts.values())), within=20)
    before = datetime.now(UTC)  # (a start time is when the stream stored an event)
    everything = await streamed.global_events()
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    assert all(e.verified for e in everything)
    # Filters: a region, an account (with a dot in its id), a type.
    eu = await streamed.global_events(region="eu")
    assert len(eu) == counts["eu"] and {e.event.region for e in eu} == {"eu"}
    bank = await streamed.global_events(account=f"bank.us.{tag}")
    assert [e.event.type for e in bank] == ["AccountOpened", "Debited"]
    debits = await streamed.global_events(event_type="Debited")
    assert debits and {e.event.type for e in debits} == {"Debited"}
    # From a position, and from a time.
    assert [e.seq for e in await streamed.global_events(start=5)][:1] == [5]
    await streamed.ledger.transfer(f"late-{tag}", customers["eu"], customers["us"], "1.00",
                                   "USD", initiated_by="ops")  # fmt: skip
    assert await streamed.global_events(start=before) == []
    await streamed.relay_all()  # (a cross-region transfer: two events in each region)
    await eventually(lambda: _sourced_is(streamed, sum(counts.values()) + 4), within=20)
    late = await streamed.global_events(start=before)
    assert {e.event.transfer_id for e in late} == {f"late-{tag}"}
    # The SDK, the CLI, and the stream's own status and proof.
    sdk = [e async for e in streamed.ledger.events(region="us", follow=False)]
    assert [e.event.event_id for e in sdk] == [
        e.event.event_id for e in await streamed.global_events(region="us")]  # fmt: skip
    code, out, _ = await cli(streamed.env, "events", "tail", "--account", f"bank.us.{tag}",
                             "--json")  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["event"]["type"] for r in lines] == ["AccountOpened", "Debited"]
    assert all(r["verified"] for r in lines)
    code, out, _ = await cli(streamed.env, "stream", "status", "--json")
    status = {r["region"]: r for r in json.loads(out)}
    assert code == 0 and {r["lag_events"] for r in status.values()} == {0}
    assert status["eu"]["region_messages"] == status["eu"]["global_messages"] == counts["eu"] + 2
    code, out, err = await cli(streamed.env, "stream", "verify")
    assert code == 0, err


async def test_the_proof_waits_for_the_global_stream_to_source_and_reports_what_it_never_did(
    streamed: Streamed,
) -> None:
    """Sourcing is asynchronous: an event the relay published is in the
    region's stream before the global stream has it. (CI once read the
    global stream in that gap and called eu's seven events missing.)"""
    from nats.js.api import StreamConfig

    tag = uuid.uuid4().hex[:6]
    await trade(streamed.ledger, tag)
    js = streamed.js(streamed.settings.stream_region)
    info = await js.stream_info(GLOBAL_STREAM)
    config = info.config
    sources = list(config.sources or [])
    # The global stream stops sourcing eu (a gateway down, a slow link).
    cut = StreamConfig.from_response(config.as_dict())
    cut.sources = [s for s in sources if s.name != region_stream("eu")]
    await js.update_stream(cut)
    await streamed.relay_all()
    behind = await verify_region_stream(streamed.engines["eu"], "eu", streamed.js("eu"),
                                        settle_s=0.5)  # fmt: skip
    assert behind.unsourced == behind.events > 0 and behind.messages == 0
    assert behind.missing == behind.events and not behind.clean
    # Sourcing resumes while the proof waits: nothing is called missing.
    proof = asyncio.create_task(
        verify_region_stream(streamed.engines["eu"], "eu", streamed.js("eu"), settle_s=20)
    )
    await asyncio.sleep(1)
    await js.update_stream(config)
    report = await proof
    assert report.clean and report.unsourced == 0
    assert report.messages == report.events == behind.events


async def _sourced_is(streamed: Streamed, count: int) -> bool:
    return await streamed.sourced() == count


class CutOff(Exception):
    """The relay's process, gone in the middle of a batch."""


async def test_a_relay_cut_off_mid_batch_and_a_stopped_region_server_lose_and_double_nothing(
    streamed: Streamed,
) -> None:
    tag = uuid.uuid4().hex[:6]
    await trade(streamed.ledger, tag)
    # A relay whose publishes stop after three messages of a batch: the rest
    # of the batch is never sent, as when its process is killed.
    relay = streamed.relay("us", batch_size=50)
    real = relay.js.publish
    sent = 0

    async def publish(*args: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        if sent > 3:
            raise CutOff("killed")
        return await real(*args, **kwargs)

    relay.js.publish = publish  # type: ignore[method-assign]
    with pytest.raises(Exception, match="not acknowledged"):
        await relay.run_once()
    # A new relay (a restarted process) resumes after the stream's last message.
    await streamed.relay("us").catch_up()
    # eu's server stops: its relay cannot publish, and events wait in the store.
    await asyncio.to_thread(streamed.servers["eu"].stop)
    await streamed.ledger.transfer(f"while-{tag}", f"bank.eu.{tag}", f"cust-eu-{tag}", "2.00",
                                   "USD", initiated_by="ops")  # fmt: skip
    with pytest.raises(Exception):  # noqa: B017 (no server to answer)
        await asyncio.wait_for(streamed.relay("eu", publish_timeout_s=1).run_once(), 15)
    await asyncio.to_thread(streamed.servers["eu"].start)
    await eventually(lambda: _caught_up(streamed, "eu"), within=30)
    await streamed.relay("ap").catch_up()
    # Once the global stream has sourced eu's stream again, all is there once.
    await eventually(lambda: _verified(streamed), within=60)
    total = sum([(await verify_region_stream(streamed.engines[r], r, streamed.js(r))).events
                 for r in REGIONS])  # fmt: skip
    everything = await streamed.global_events()
    ids = [e.event.event_id for e in everything]
    assert len(ids) == len(set(ids)) == total
    for region in REGIONS:  # each region's order, in the global stream too
        places = [(e.event.tx_id, e.event.position) for e in everything
                  if e.event.region == region]  # fmt: skip
        assert places == sorted(places)
    # A duplicate planted behind the relay's back is found.
    planted = everything[-1]
    await streamed.js("eu").publish(planted.subject, _body(planted))
    report = await verify_region_stream(
        streamed.engines[planted.event.region], planted.event.region,
        streamed.js(planted.event.region),
    )  # fmt: skip
    assert report.duplicates == 1 and not report.clean


async def _verified(streamed: Streamed) -> bool:
    for region in REGIONS:
        try:
            report = await verify_region_stream(
                streamed.engines[region], region, streamed.js(region)
            )
        except Exception:  # the cluster still electing a leader after the restart
            return False
        if not (report.clean and report.messages == report.events):
            return False
    return True


def _body(item: Any) -> bytes:
    from ledgerflow.stream.subjects import encode

    return encode(item.event, None).body


async def _caught_up(streamed: Streamed, region: str) -> bool:
    try:
        await asyncio.wait_for(streamed.relay(region).catch_up(), 10)
        return True
    except Exception:
        return False


async def test_a_durable_consumer_gets_again_what_it_did_not_acknowledge(
    streamed: Streamed,
) -> None:
    tag = uuid.uuid4().hex[:6]
    await trade(streamed.ledger, tag)
    await streamed.relay_all()
    js = streamed.js(streamed.settings.stream_region)
    name = f"risk-{tag}"
    reader = read_events(js, region="us", durable=name, batch=3)
    first = [await anext(reader) for _ in range(3)]
    await first[0].ack()
    await reader.aclose()  # the consumer crashes before acknowledging the others
    await asyncio.sleep(0.1)
    # Its next run resumes after what it acknowledged; the rest comes again
    # once the acknowledgement window has passed (shortened here).
    info = await js.consumer_info(GLOBAL_STREAM, name)
    assert info.num_ack_pending == 2
    config = info.config
    config.ack_wait = 1.0
    await js.add_consumer(GLOBAL_STREAM, config)
    await asyncio.sleep(1.5)
    again = []
    async for item in read_events(js, region="us", durable=name, batch=10):
        again.append(item)
        await item.ack()
    assert [e.event.event_id for e in again[:2]] == [e.event.event_id for e in first[1:]]
    assert all(e.delivered == 2 for e in again[:2])
    assert first[0].event.event_id not in {e.event.event_id for e in again}


async def test_the_stream_bench_measures_lag_and_relay_throughput(streamed: Streamed) -> None:
    from ledgerflow.bench.stream import stream_bench

    relays = [asyncio.create_task(_relay_forever(streamed, r)) for r in REGIONS]
    try:
        report = await stream_bench(streamed.ledger, rate=5, seconds=2, region="us", backlog=20)
    finally:
        for task in relays:
            task.cancel()
    assert report.events >= 9 and 0 < report.lag_p50_ms <= report.lag_p99_ms <= report.lag_max_ms
    assert report.backlog_events >= 20 and report.relay_events_per_s > 0
    names = [n async for n in _stream_names(streamed)]
    assert not [n for n in names if n.startswith("BENCH_")]  # the scratch stream is gone


async def _relay_forever(streamed: Streamed, region: str) -> None:
    relay = streamed.relay(region)
    while True:
        await relay.run_once()
        await asyncio.sleep(0.1)


async def _stream_names(streamed: Streamed) -> AsyncIterator[str]:
    for info in await streamed.js("us").streams_info():
        yield info.config.name or ""


async def test_the_global_directory_follows_the_stream_and_locates_accounts(
    streamed: Streamed,
) -> None:
    from ledgerflow.reads import DatabaseReads
    from ledgerflow.stream.directory import GlobalDirectory, positions

    tag = uuid.uuid4().hex[:6]
    customers = await trade(streamed.ledger, tag)
    await streamed.relay_all()
    region = streamed.settings.stream_region
    directory = GlobalDirectory(streamed.engines[region], streamed.js(region), batch_size=7)
    expected_total = 0
    for r in REGIONS:
        expected_total += (
            await verify_region_stream(streamed.engines[r], r, streamed.js(r))
        ).events
    await eventually(lambda: _sourced_is(streamed, expected_total), within=20)
    assert await directory.catch_up() == expected_total
    assert await directory.catch_up() == 0  # each event once
    status = await directory.status()
    assert (status.applied_through, status.lag_events) == (expected_total, 0)
    held = await positions(streamed.engines[region])
    for r in REGIONS:  # a region's position: its postings outside its clearing accounts
        async with streamed.engines[r].connect() as conn:
            total = (
                await conn.execute(
                    text(
                        "SELECT coalesce(sum(amount), 0) FROM events "
                        "WHERE account_id NOT LIKE 'clearing:%'"
                    )
                )
            ).scalar_one()
        assert held[(r, "USD")][0] == int(total)
    # us sent 10.00 to eu: us is 10.00 down, eu 10.00 up; over all regions, zero.
    assert (held[("us", "USD")][0], held[("eu", "USD")][0]) == (-1000, 1000)
    assert sum(balance for balance, _ in held.values()) == 0
    # The SDK asks the directory where an account lives, not every region.
    reads = DatabaseReads(streamed.settings)

    async def nowhere(*args: Any) -> Any:
        if len(args) == 2:  # a region's own `accounts` row: not asked
            raise AssertionError("asked a region's database")
        return await real(*args)

    real = reads._home_in
    reads._home_in = nowhere  # type: ignore[method-assign]
    try:
        assert await reads.locate(customers["ap"]) == "ap"
        assert await reads.locate(f"bank.eu.{tag}") == "eu"
    finally:
        await reads.close()
    # Rebuilt from the stream's start: the same.
    assert await directory.rebuild() == expected_total
    assert await positions(streamed.engines[region]) == held
    # Two appliers at once (a worker started twice) take turns: each event once.
    async with streamed.engines[region].begin() as conn:
        await conn.execute(text("DELETE FROM global_directory"))
        await conn.execute(text("DELETE FROM global_positions"))
        await conn.execute(
            text("UPDATE projection_checkpoints SET position = 0 WHERE name = 'directory'")
        )
    other = GlobalDirectory(streamed.engines[region], streamed.js(region), batch_size=5)

    async def drain(applier: GlobalDirectory) -> None:
        # (A batch the other took counts 0: read again, until all is applied.)
        while (await applier.status()).applied_through < expected_total:
            await applier.catch_up()

    await asyncio.gather(drain(directory), drain(other))
    assert await positions(streamed.engines[region]) == held
    assert (await directory.status()).applied_through == expected_total
    code, out, _ = await cli(streamed.env, "stream", "directory", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"]["lag_events"] == 0
    assert {(p["region"], p["currency"]) for p in shown["positions"]} == set(held)


class Receiver:
    """A webhook endpoint on 127.0.0.1: records every delivery; refuses those
    of the event ids in `refuse` (HTTP 500), and the first `flaky` ones."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.deliveries: list[tuple[str, str, bytes]] = []
        self.refuse: set[str] = set()
        self.flaky = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event_id = self.headers["Ledgerflow-Event-Id"]
                receiver.deliveries.append((event_id, self.headers["Ledgerflow-Signature"], body))
                failing = event_id in receiver.refuse or receiver.flaky > 0
                receiver.flaky = max(0, receiver.flaky - 1)
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self) -> set[str]:
        """Event ids delivered at least once with a 2xx answer."""
        return {e for e, _, _ in self.deliveries if e not in self.refuse}

    def close(self) -> None:
        self.server.shutdown()


async def test_webhooks_deliver_signed_at_least_once_with_dead_letters_and_redelivery(
    streamed: Streamed,
) -> None:
    from ledgerflow.domain.webhooks import signature_valid

    tag = uuid.uuid4().hex[:6]
    await trade(streamed.ledger, tag)
    await streamed.relay_all()
    wanted = [e.event for e in await streamed.global_events(region="us")]
    await eventually(lambda: _sourced_us(streamed, len(wanted)), within=20)
    receiver = Receiver()
    receiver.flaky = 2  # the first two attempts fail: retried
    poisoned = wanted[3].event_id
    receiver.refuse.add(poisoned)  # this one fails every attempt: a dead letter
    secret = "s3cret-for-the-hook"
    try:
        status = await streamed.ledger.subscribe(
            f"h-{tag}", receiver.url, secret, region="us", max_attempts=3, backoff_s=0.1
        )
        assert status.subscription_id == f"h-{tag}"

        async def through() -> bool:
            s = await streamed.ledger.webhook_status(f"h-{tag}")
            return s.cursor >= max(e.seq for e in await streamed.global_events(region="us"))

        await eventually(through, within=90)
        status = await streamed.ledger.webhook_status(f"h-{tag}")
        assert [d.event_id for d in status.dead_letters] == [poisoned]
        assert status.dead_letters[0].attempts == 3
        assert receiver.accepted() == {e.event_id for e in wanted} - {poisoned}
        assert status.delivered == len(wanted) - 1
        for event_id, signature, body in receiver.deliveries:  # each one signed
            assert signature_valid(secret, signature, body)
            assert json.loads(body)["event_id"] == event_id
        assert not signature_valid("another-secret-entirely", signature, body)
        described = await streamed.ledger.temporal.get_workflow_handle(
            f"webhook-h-{tag}"
        ).describe()
        assert described.typed_search_attributes.get(sa.STATUS) == "dead-letters"
        # The receiver is fixed: the dead letter goes out again, and arrives.
        receiver.refuse.clear()
        assert await streamed.ledger.redeliver(f"h-{tag}") == 1
        status = await streamed.ledger.webhook_status(f"h-{tag}")
        assert status.dead_letters == [] and status.delivered == len(wanted)
        assert poisoned in {e for e, _, _ in receiver.deliveries}
        code, out, _ = await cli(streamed.env, "webhook", "show", f"h-{tag}", "--json")
        assert code == 0 and json.loads(out)["delivered"] == len(wanted)
        code, out, _ = await cli(streamed.env, "webhook", "remove", f"h-{tag}", "--json")
        assert code == 0 and json.loads(out)["cancelled"] is True
    finally:
        receiver.close()


async def _sourced_us(streamed: Streamed, count: int) -> bool:
    return len(await streamed.global_events(region="us")) >= count


async def test_the_api_streams_every_region_s_events_as_server_sent_events(
    streamed: Streamed, temporal_env: WorkflowEnvironment
) -> None:
    """`GET /v1/events`: what the stream holds, in its order, filtered, with
    each message's hashes; resumed after `Last-Event-ID`; a fenced token must
    name an account it covers."""

    from ledgerflow.api.tokens import parse as parse_token
    from tests.tools.api_server import serve_api

    tag = uuid.uuid4().hex[:8]
    customers = await trade(streamed.ledger, tag)
    await streamed.relay_all()
    relayed = 0
    for region in REGIONS:
        js = streamed.js(region)
        info = await jetstream_api(lambda js=js, r=region: js.stream_info(region_stream(r)))
        relayed += int(info.state.messages)
    await eventually(lambda: _sourced_is(streamed, relayed))  # the global stream has them all
    want = await streamed.global_events()

    def parse(text: str) -> list[dict[str, Any]]:
        frames = []
        for block in text.strip().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            frames.append(fields | {"data": json.loads(fields["data"])})
        return frames

    async with serve_api(streamed.settings, temporal_env.client) as api:
        token = await api.token(f"sse-{tag}", "read")
        async with api.client(token) as client:
            everything = parse((await client.get("/v1/events")).text)
            assert [int(f["id"]) for f in everything] == [e.seq for e in want]
            assert [f["data"]["event_id"] for f in everything] == [e.event.event_id for e in want]
            assert all(f["data"]["hash"] and "prev_hash" in f["data"] for f in everything)
            mine = parse((await client.get("/v1/events", params={"account": customers["eu"]})).text)
            assert {f["data"]["account_id"] for f in mine} == {customers["eu"]}
            resumed = await client.get(
                "/v1/events", headers={"Last-Event-ID": everything[-3]["id"]}
            )
            assert [f["id"] for f in parse(resumed.text)] == [f["id"] for f in everything[-2:]]
            for params in ({"from_seq": "x"}, {"type": "Debited.*"}, {"from_seq": "²"}):
                bad = await client.get("/v1/events", params=params)  # refused before the 200
                assert (bad.status_code, bad.json()["error"]) == (422, "InvalidRequest"), params
        fenced = await api.token(f"f-{tag}", "read", prefix="cust-eu")
        async with api.client(fenced) as client:
            refused = await client.get("/v1/events")
            assert (refused.status_code, refused.json()["error"]) == (403, "Forbidden")
            allowed = await client.get("/v1/events", params={"account": customers["eu"]})
            assert allowed.status_code == 200
        # A stream that follows ends once its token is revoked (regression: it
        # stayed open for as long as the client kept it).
        following = await api.token(f"follow-{tag}", "read")
        async with api.client(following) as client:
            async with client.stream("GET", "/v1/events", params={"follow": "true"}) as answer:
                assert answer.status_code == 200
                chunks = answer.aiter_text()
                assert "id: " in await anext(chunks)
                await api.tokens.revoke(parse_token(following)[0])

                async def rest() -> str:
                    return "".join([chunk async for chunk in chunks])

                assert "no longer valid" in await asyncio.wait_for(rest(), 15)
            again = await client.get("/v1/events")
            assert again.status_code == 401
