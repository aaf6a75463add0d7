"""The local stack behind `ledgerflow dev up/down/status`: Temporal, PostgreSQL,
S3 and the event stream (a NATS JetStream server per region).

A server is started only when its endpoint was not given via the environment
(the `Settings.*_given` flags); a given endpoint is reported as "external" and
never started or stopped. Started servers are detached: they keep running after
`up` returns, and `down` finds them again through pid files in the state dir.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ledgerflow import search_attributes
from ledgerflow.config import Settings
from ledgerflow.infra.nats import EmbeddedNats, nats_server_binary
from ledgerflow.infra.postgres import EmbeddedPostgres, database_name, pg_install_dir
from ledgerflow.infra.process import LOCALHOST, StackError, require_free_port
from ledgerflow.infra.s3 import EmbeddedS3, moto_server_binary
from ledgerflow.infra.temporal import EmbeddedTemporal, temporal_binary
from ledgerflow.store.migrate import upgrade_regions

TEMPORAL_START_TIMEOUT_S = 30.0

Service = EmbeddedTemporal | EmbeddedPostgres | EmbeddedS3 | EmbeddedNats


@dataclass(frozen=True)
class ServiceStatus:
    name: str  # "temporal" | "postgres" | "s3" | "nats-<region>"
    endpoint: str
    state: str  # "running" | "stopped" | "external"
    pid: int | None
    detail: str = ""


def _port(endpoint: str) -> int:
    port = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").port
    if port is None:
        raise StackError(f"endpoint {endpoint!r} names no port")
    return port


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostport}"))


class DevStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        state = settings.state_dir
        self.temporal = (
            None
            if settings.temporal_address_given
            else EmbeddedTemporal(
                state / "temporal",
                _port(settings.temporal_address),
                settings.temporal_ui_port,
                namespace=settings.temporal_namespace,
                search_attributes=search_attributes.server_flags(),
            )
        )
        self.postgres = (
            None
            if settings.database_given
            else EmbeddedPostgres(state / "postgres" / "data", settings.pg_port)
        )
        self.s3 = (
            None
            if settings.s3_endpoint_given
            else EmbeddedS3(_port(settings.s3_endpoint_url), state / "s3")
        )
        self.nats = (
            []
            if settings.nats_given
            else [
                EmbeddedNats(state / "nats" / region, region, settings.regions, settings.nats_port)
                for region in settings.regions
            ]
        )

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise `up`/`down` on one state dir (two terminals, parallel CI steps)."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.settings.state_dir / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _preflight(self) -> None:
        """Fail before starting anything: missing binaries, clashing or occupied ports."""
        wanted: list[tuple[str, int, str]] = []
        if self.temporal is not None:
            temporal_binary()
            if not self.temporal.is_running():
                use_it = "or LEDGERFLOW_TEMPORAL_ADDRESS to use that server"
                wanted += [
                    ("temporal", self.temporal.port, f"set LEDGERFLOW_TEMPORAL_PORT ({use_it})"),
                    ("temporal web UI", self.temporal.ui_port, "set LEDGERFLOW_TEMPORAL_UI_PORT"),
                ]
        if self.postgres is not None:
            pg_install_dir()
            for region in self.settings.regions:
                database_name(region)
            if not self.postgres.is_running():
                use_it = "or LEDGERFLOW_DATABASE_URL to use that server"
                wanted.append(
                    ("postgres", self.postgres.port, f"set LEDGERFLOW_PG_PORT ({use_it})")
                )
        if self.s3 is not None:
            moto_server_binary()
            if not self.s3.is_running():
                use_it = "or LEDGERFLOW_S3_ENDPOINT_URL to use that server"
                wanted.append(("s3", self.s3.port, f"set LEDGERFLOW_S3_PORT ({use_it})"))
        if self.nats:
            nats_server_binary()
        for server in self.nats:
            if not server.is_running():
                hint = "set LEDGERFLOW_NATS_PORT (or LEDGERFLOW_NATS_URL to use that server)"
                wanted += [(f"nats {server.region}", port, hint) for port in server.ports()]
        claimed: dict[int, str] = {}
        for name, port, hint in wanted:
            if port in claimed:
                raise StackError(f"port {port} is configured for both {claimed[port]} and {name}")
            claimed[port] = name
            require_free_port(port, hint)

    def up(self) -> list[ServiceStatus]:
        """Start every embedded server that is not running yet; idempotent.

        On failure, the servers this call started are stopped again, so a failed
        `up` leaves nothing behind; servers that were already running stay up.
        """
        with self._exclusive():
            self._preflight()
            started: list[Callable[[], None]] = []

            def bring_up(service: Service, start: Callable[[], int]) -> None:
                # start/launch leave a running server alone, apart from checking its settings.
                was_running = service.is_running()
                start()
                if not was_running:
                    started.append(service.stop)

            try:
                # Temporal and moto boot in the background while pg_ctl start blocks;
                # each is then waited on.
                if self.temporal is not None:
                    bring_up(self.temporal, self.temporal.launch)
                if self.s3 is not None:
                    bring_up(self.s3, self.s3.launch)
                for server in self.nats:
                    bring_up(server, server.launch)
                if self.postgres is not None:
                    bring_up(self.postgres, self.postgres.start)
                    self.postgres.provision(self.settings.regions)
                if self.s3 is not None:
                    self.s3.wait_ready()
                    self.s3.ensure_bucket(self.settings.s3_bucket, self.settings.s3_region)
                if self.temporal is not None:
                    self.temporal.wait_ready(TEMPORAL_START_TIMEOUT_S)
                # Each is ready once the supercluster elected a JetStream leader.
                for server in self.nats:
                    server.wait_ready()
                if self.nats:
                    ensure_streams_now(self.settings)
            except BaseException:
                for stop in reversed(started):
                    with contextlib.suppress(Exception):
                        stop()
                raise
            return self.status()

    async def migrate(self) -> None:
        """`ledgerflow migrate` on this stack: every region's schema brought to
        head as its owner, then (on the embedded server, whose superuser we
        hold) the DDL guard installed, so not even the owner can switch the
        immutability triggers off (`ledgerflow.store.guard`)."""
        await upgrade_regions(self.settings)
        if self.postgres is not None:
            for region in self.settings.regions:
                self.postgres.harden(database_name(region))

    def down(self) -> list[ServiceStatus]:
        """Stop the servers this stack started (found by pid file); idempotent."""
        with self._exclusive():
            errors: list[str] = []
            for service in (self.temporal, self.s3, *self.nats, self.postgres):
                if service is None:
                    continue
                try:
                    service.stop()
                except StackError as exc:
                    errors.append(str(exc).splitlines()[0])
            if errors:
                raise StackError("; ".join(errors))
            return self.status()

    def status(self) -> list[ServiceStatus]:
        return [self._temporal_status(), self._postgres_status(), self._s3_status(),
                *self._nats_status()]  # fmt: skip

    def _nats_status(self) -> list[ServiceStatus]:
        if not self.nats:
            return [
                ServiceStatus(f"nats-{r}", self.settings.nats_url(r), "external", None,
                              "given by LEDGERFLOW_NATS_URL[_<REGION>]")
                for r in self.settings.regions
            ]  # fmt: skip
        found = []
        for server in self.nats:
            pid = server.pid()
            found.append(
                ServiceStatus(
                    f"nats-{server.region}",
                    server.endpoint,
                    "running" if pid else "stopped",
                    pid,
                    f"JetStream, gateway {server.gateway_port}",
                )
            )
        return found

    def _temporal_status(self) -> ServiceStatus:
        if self.temporal is None:
            return ServiceStatus(
                "temporal",
                self.settings.temporal_address,
                "external",
                None,
                "given by LEDGERFLOW_TEMPORAL_ADDRESS",
            )
        pid = self.temporal.pid()
        return ServiceStatus(
            "temporal",
            self.temporal.address,
            "running" if pid else "stopped",
            pid,
            f"Web UI {self.temporal.ui_url}",
        )

    def _postgres_status(self) -> ServiceStatus:
        if self.postgres is None:
            url = self.settings.database_url(self.settings.default_region)
            return ServiceStatus(
                "postgres",
                _without_password(url),
                "external",
                None,
                "given by LEDGERFLOW_DATABASE_URL[_<REGION>]",
            )
        pid = self.postgres.pid()
        databases = ", ".join(f"ledgerflow_{region}" for region in self.settings.regions)
        return ServiceStatus(
            "postgres",
            f"postgresql://{LOCALHOST}:{self.postgres.port}",
            "running" if pid else "stopped",
            pid,
            f"databases {databases}",
        )

    def _s3_status(self) -> ServiceStatus:
        if self.s3 is None:
            return ServiceStatus(
                "s3",
                _without_password(self.settings.s3_endpoint_url),
                "external",
                None,
                "given by LEDGERFLOW_S3_ENDPOINT_URL",
            )
        pid = self.s3.pid()
        return ServiceStatus(
            "s3",
            self.s3.endpoint_url,
            "running" if pid else "stopped",
            pid,
            f"bucket {self.settings.s3_bucket} (in memory: lost when the server stops)",
        )


def ensure_streams_now(settings: Settings) -> None:
    """Create the streams (idempotent), from synchronous code."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from ledgerflow.stream.topology import connect, ensure_streams

    async def ensure() -> None:
        nc = await connect(settings.nats_url(settings.stream_region))
        try:
            await ensure_streams(nc.jetstream(), settings)
        finally:
            await nc.close()

    try:
        # In a thread of its own: `up` may be called from a running event loop.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, ensure()).result()
    except Exception as exc:
        raise StackError(f"could not create the event streams: {exc}") from exc
