"""`DevStack` against real servers: the Temporal dev server, PostgreSQL and moto S3.

Every test uses its own state dir and free ports, so it never meets a stack
that runs on the default ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from ledgerflow import search_attributes
from ledgerflow.config import Settings
from ledgerflow.infra.nats import port_offsets
from ledgerflow.infra.process import (
    StackError,
    find_free_base,
    find_free_port,
    pid_alive,
    port_free,
)
from ledgerflow.infra.s3 import EmbeddedS3, s3_client
from ledgerflow.infra.stack import DevStack, ServiceStatus
from tests.support import distinct_free_ports

T = TypeVar("T")
PORT_VARIABLES = (
    "LEDGERFLOW_TEMPORAL_PORT",
    "LEDGERFLOW_TEMPORAL_UI_PORT",
    "LEDGERFLOW_PG_PORT",
    "LEDGERFLOW_S3_PORT",
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    # A private loop rather than asyncio.run, which would reset the event loop
    # pytest-asyncio keeps for the session's async tests.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def stack_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {"LEDGERFLOW_STATE_DIR": str(tmp_path / "state")}
    env.update(zip(PORT_VARIABLES, map(str, distinct_free_ports(len(PORT_VARIABLES))), strict=True))
    env["LEDGERFLOW_NATS_PORT"] = str(find_free_base(port_offsets(3)))
    env.update(overrides)
    return env


def by_name(statuses: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {status.name: status for status in statuses}


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in argv:
                found.append(argv)
    return found


@pytest.fixture
def make_stack() -> Iterator[Callable[[dict[str, str]], DevStack]]:
    stacks: list[DevStack] = []

    def make(env: dict[str, str]) -> DevStack:
        stack = DevStack(Settings.from_env(env))
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.down()


async def connect_as_app(settings: Settings) -> tuple[str, str, str]:
    url = settings.database_url(settings.default_region)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        row = await conn.fetchrow(
            "SELECT current_user, current_database(), pg_get_userbyid(datdba)"
            " FROM pg_database WHERE datname = current_database()"
        )
        assert row is not None
        return row[0], row[1], row[2]
    finally:
        await conn.close()


async def custom_search_attributes(settings: Settings) -> dict[str, int]:
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=settings.temporal_namespace)
    )
    return dict(response.custom_attributes)


def configured_ports(settings: Settings) -> dict[str, int]:
    return {
        "LEDGERFLOW_TEMPORAL_PORT": int(settings.temporal_address.rpartition(":")[2]),
        "LEDGERFLOW_TEMPORAL_UI_PORT": settings.temporal_ui_port,
        "LEDGERFLOW_PG_PORT": settings.pg_port,
        "LEDGERFLOW_S3_PORT": int(settings.s3_endpoint_url.rpartition(":")[2]),
    }


def test_up_is_idempotent_and_down_stops_everything(
    make_stack: Callable[[dict[str, str]], DevStack], tmp_path: Path
) -> None:
    stack = make_stack(stack_env(tmp_path))
    settings = stack.settings

    up = by_name(stack.up())
    assert {name: status.state for name, status in up.items()} == {
        "temporal": "running",
        "postgres": "running",
        "s3": "running",
        **{f"nats-{r}": "running" for r in settings.regions},
    }
    pids = {name: status.pid for name, status in up.items()}
    assert all(pids.values())

    assert run(connect_as_app(settings)) == ("ledgerflow_app", "ledgerflow_us", "ledgerflow_owner")

    s3 = s3_client(settings.s3_endpoint_url, settings.s3_region)
    lock = s3.get_object_lock_configuration(Bucket=settings.s3_bucket)
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"

    registered = run(custom_search_attributes(settings))
    for flag in search_attributes.server_flags():
        name, _, kind = flag.partition("=")
        assert registered.get(name) == IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")

    # Idempotent, also from a fresh object as a second `ledgerflow dev up` process would be.
    assert {s.name: s.pid for s in stack.up()} == pids
    assert {s.name: s.pid for s in DevStack(settings).status()} == pids

    down = stack.down()
    assert [(s.state, s.pid) for s in down] == [("stopped", None)] * 6
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    for variable, port in configured_ports(settings).items():
        assert port_free(port), f"{variable}={port} still taken after down"
    assert processes_mentioning(str(settings.state_dir)) == []
    assert [s.state for s in stack.status()] == ["stopped"] * 6
    assert stack.down() == down

    # The state dir survives down: PostgreSQL comes back without initdb, data intact.
    stack.up()
    assert run(connect_as_app(settings))[0] == "ledgerflow_app"


@pytest.mark.parametrize("variable", PORT_VARIABLES)
def test_port_taken_by_a_foreign_listener_is_named(
    make_stack: Callable[[dict[str, str]], DevStack], tmp_path: Path, variable: str
) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        stack = make_stack(stack_env(tmp_path, **{variable: str(port)}))

        expected = f"port {port} is already in use by another process; set {variable}"
        with pytest.raises(StackError, match=re.escape(expected)):
            stack.up()

    # Checked before anything starts: a failed up leaves no server behind.
    assert [s.state for s in stack.status()] == ["stopped"] * 6


def test_given_endpoints_are_external_and_never_started_or_stopped(
    make_stack: Callable[[dict[str, str]], DevStack], tmp_path: Path
) -> None:
    foreign_s3 = EmbeddedS3(find_free_port(), tmp_path / "foreign-s3")
    foreign_s3.start()
    try:
        stack = make_stack(
            stack_env(
                tmp_path,
                LEDGERFLOW_TEMPORAL_ADDRESS="temporal.example:7233",
                LEDGERFLOW_DATABASE_URL="postgresql+asyncpg://app:s3cret@db.example/ledgerflow_{region}",
                LEDGERFLOW_S3_ENDPOINT_URL=foreign_s3.endpoint_url,
                LEDGERFLOW_NATS_URL="nats://nats-{region}.example:4222",
                # The same port: starting an embedded S3 would fail on it.
                LEDGERFLOW_S3_PORT=str(foreign_s3.port),
            )
        )

        up = by_name(stack.up())
        assert {name: (s.state, s.pid) for name, s in up.items()} == {
            "temporal": ("external", None),
            "postgres": ("external", None),
            "s3": ("external", None),
            **{f"nats-{r}": ("external", None) for r in ("us", "eu", "ap")},
        }
        assert up["s3"].endpoint == foreign_s3.endpoint_url
        assert up["postgres"].endpoint == "postgresql+asyncpg://app:***@db.example/ledgerflow_us"

        assert [s.state for s in stack.down()] == ["external"] * 6
        assert foreign_s3.is_running()
        client = s3_client(foreign_s3.endpoint_url, "us-east-1")
        assert client.list_buckets()["Buckets"] == []
        assert not any((stack.settings.state_dir / name).exists() for name in up)
    finally:
        foreign_s3.stop()
    assert not foreign_s3.is_running()


async def test_the_embedded_server_runs_with_its_settings(superuser_engine: Any) -> None:
    """Each of SERVER_SETTINGS is in force on a started server (passed as
    `-c` at start, so a data directory made before a change takes it too)."""
    from sqlalchemy import text

    from ledgerflow.infra.postgres import SERVER_SETTINGS

    names = [setting.split("=", 1)[0] for setting in SERVER_SETTINGS]
    async with superuser_engine.connect() as conn:
        sources = dict(
            (
                await conn.execute(
                    text("SELECT name, source FROM pg_settings WHERE name = ANY(:names)"),
                    {"names": names},
                )
            ).all()
        )
        wal = await conn.execute(text("SELECT pg_size_bytes(current_setting('max_wal_size'))"))
        assert wal.scalar_one() == 4 * 1024**3
    assert sources == dict.fromkeys(names, "command line")
