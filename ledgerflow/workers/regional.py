"""The regional worker: serves task queue `ledger-<region>` for one region.

One process per region holds one connection pool to that region's database
(shared by every activity), runs the Temporal worker, and runs the catch-up
projector in the background so that the read models heal even if a
workflow's projection step was lost. SIGINT/SIGTERM stop it gracefully:
in-flight activities finish, then the pool closes. At start it checks that
its database is migrated (it never migrates: that is `ledgerflow migrate`, as
the schema owner) and creates or updates the region's archive schedule (and,
in the reconciling region, the `reconcile` schedule).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ledgerflow.activities.archive import ArchiveActivities
from ledgerflow.activities.ledger import LedgerActivities
from ledgerflow.activities.reconcile import ReconcileActivities
from ledgerflow.activities.webhooks import WebhookActivities
from ledgerflow.archive.archiver import ArchivePolicy, Archiver
from ledgerflow.archive.objectstore import ObjectStore, S3ObjectStore
from ledgerflow.bench.baseline import CeilingWorkflow, ceiling_noop
from ledgerflow.client import connect_temporal
from ledgerflow.config import Settings
from ledgerflow.converter import data_converter
from ledgerflow.projections.projector import CatchUpProjector, ProjectionStatus
from ledgerflow.reads import reading
from ledgerflow.schedules import apply_schedules
from ledgerflow.store.migrate import pruner_url, require_schema_at_head
from ledgerflow.store.postgres import PostgresEventStore, create_engine
from ledgerflow.stream.directory import GlobalDirectory
from ledgerflow.stream.relay import Relay, keep_following
from ledgerflow.stream.topology import connect, ensure_streams
from ledgerflow.workflows.account import OpenAccountWorkflow
from ledgerflow.workflows.account_change import AccountChangeWorkflow
from ledgerflow.workflows.archive import ArchiveWorkflow
from ledgerflow.workflows.hold import HoldWorkflow
from ledgerflow.workflows.reconcile import ReconcileWorkflow
from ledgerflow.workflows.transaction import TransactionWorkflow
from ledgerflow.workflows.transfer import TransferWorkflow
from ledgerflow.workflows.webhook import WebhookWorkflow

log = logging.getLogger("ledgerflow.worker")

WORKFLOWS: Sequence[type] = (
    TransferWorkflow,
    OpenAccountWorkflow,
    AccountChangeWorkflow,
    HoldWorkflow,
    TransactionWorkflow,
    ArchiveWorkflow,
    ReconcileWorkflow,
    WebhookWorkflow,
    # `bench e2e`'s ceiling: an empty transfer on this very worker (it reads
    # and writes nothing; docs/PERFORMANCE.md).
    CeilingWorkflow,
)


def workflow_runner(mode: str) -> SandboxedWorkflowRunner:
    """The workflow sandbox. `passthrough` (the default) imports the workflow
    modules' dependencies once per process instead of once per workflow run,
    and still refuses non-deterministic calls (time, randomness, I/O) inside
    workflow code; `strict` re-imports them for every run, isolating module
    state at a cost in CPU per workflow that capped the transfer rate on the
    2-core machine (docs/PERFORMANCE.md). Our workflow modules keep no module
    state, and the replay tests run under the strict sandbox."""
    restrictions = SandboxRestrictions.default
    if mode == "passthrough":
        restrictions = restrictions.with_passthrough_all_modules()
    return SandboxedWorkflowRunner(restrictions=restrictions)


def build_worker(
    client: Client,
    settings: Settings,
    region: str,
    engine: AsyncEngine,
    objects: ObjectStore | None = None,
    pruner: AsyncEngine | None = None,
) -> Worker:
    activities = LedgerActivities(
        PostgresEventStore(
            engine,
            region,
            max_batch=settings.db_group_commit_max,
            writers=settings.db_group_commit_writers,
        ),
        {r: settings.task_queue(r) for r in settings.regions},
    )
    objects = objects or S3ObjectStore.from_settings(settings)
    archive = ArchiveActivities(
        engine, objects, region, ArchivePolicy.from_settings(settings), pruner
    )
    reconcile = ReconcileActivities(engine, objects, region, settings.archive_retention)
    # The worker decodes with the ledger's converter whatever client it was given.
    config = client.config()
    config["data_converter"] = data_converter(settings)
    return Worker(
        Client(**config),
        task_queue=settings.task_queue(region),
        workflows=list(WORKFLOWS),
        activities=activities.all()
        + archive.all()
        + reconcile.all()
        + WebhookActivities(settings).all()
        + [ceiling_noop],
        max_concurrent_activities=max(settings.db_pool_size * 2, 8),
        workflow_runner=workflow_runner(settings.workflow_sandbox),
        graceful_shutdown_timeout=settings.worker_shutdown_grace,
    )


class LagGauges:
    """Projection lag as metrics (`ledgerflow_projection_lag_events`, `..._seconds`)."""

    def __init__(self, runtime: Runtime, region: str) -> None:
        meter = runtime.metric_meter.with_additional_attributes({"region": region})
        self.events = meter.create_gauge(
            "ledgerflow_projection_lag_events", "committed events not yet in the read models"
        )
        self.seconds = meter.create_gauge_float(
            "ledgerflow_projection_lag_seconds", "age of the oldest unprojected event", "s"
        )
        self.horizon = meter.create_gauge_float(
            "ledgerflow_horizon_held_seconds",
            "how long the oldest open transaction on the server has held every tail back",
            "s",
        )
        self.stream_events = meter.create_gauge(
            "ledgerflow_stream_lag_events", "committed events not yet on the region's stream"
        )
        self.stream_seconds = meter.create_gauge_float(
            "ledgerflow_stream_lag_seconds", "age of the oldest event not yet on the stream", "s"
        )

    async def record_stream(self, engine: AsyncEngine) -> None:
        """The relay's lag, from its checkpoint (everything, before it published)."""
        from ledgerflow.store.base import TailCursor
        from ledgerflow.store.log import backlog
        from ledgerflow.stream.relay import relayed_through

        async with engine.connect() as conn:
            lag = await backlog(conn, await relayed_through(conn) or TailCursor(0, 0))
            await conn.rollback()
        self.stream_events.set(lag.events)
        self.stream_seconds.set(lag.age_seconds)

    def record(self, status: ProjectionStatus | None) -> None:
        if status is not None:
            self.events.set(status.lag_events)
            self.seconds.set(status.lag_seconds)
            self.horizon.set(status.horizon_age_seconds)
            if status.horizon_held_by is not None:
                log.warning(
                    "the transaction horizon has been held for %.0f s by %s",
                    status.horizon_age_seconds,
                    status.horizon_held_by,
                )


async def run_projector(
    engine: AsyncEngine,
    stop: asyncio.Event,
    interval_s: float = 1.0,
    gauges: LagGauges | None = None,
    stream: bool = False,
) -> None:
    """Keep the views caught up; on failure record it, stay put, and retry later."""
    projector = CatchUpProjector(engine)
    while not stop.is_set():
        try:
            # Batch by batch, so that a shutdown is noticed under sustained load.
            while not stop.is_set() and await projector.run_once():
                pass
            if gauges is not None:
                gauges.record(await projector.status())
                if stream:
                    await gauges.record_stream(engine)
        except Exception:
            log.exception("catch-up projector failed; position kept, retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


def global_directory(
    settings: Settings, engine: AsyncEngine
) -> Callable[[], Awaitable[GlobalDirectory]]:
    """How the default region's worker keeps the global directory (connecting again)."""

    async def connect_directory() -> GlobalDirectory:
        nc = await connect(settings.nats_url(settings.stream_region), name="ledgerflow-directory")
        return GlobalDirectory(engine, nc.jetstream())

    return connect_directory


def stream_relay(
    settings: Settings, region: str, engine: AsyncEngine
) -> Callable[[], Awaitable[Relay]]:
    """How the worker's relay connects (again): to its region's NATS server,
    the streams made sure of first (idempotent)."""

    async def connect_relay() -> Relay:
        nc = await connect(settings.nats_url(region), name=f"ledgerflow-relay-{region}")
        js = nc.jetstream()
        try:
            await ensure_streams(js, settings)
        except Exception:
            await nc.close()
            raise
        return Relay(engine, region, js)

    return connect_relay


async def _connect_waiting(settings: Settings, runtime: Runtime | None, wait_s: float) -> Client:
    """Connect to Temporal, trying again for up to `wait_s` seconds while it
    refuses (the SDK raises a plain RuntimeError for a server it cannot reach)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.2
    while True:
        try:
            return await connect_temporal(settings, runtime)
        except RuntimeError as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("Temporal is not answering yet (%s); trying again", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def run_worker(settings: Settings, region: str, stop: asyncio.Event | None = None) -> None:
    settings.require_region(region)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The worker holds the app role only: migrating is a deploy step
    # (`ledgerflow migrate`, as the schema owner), and a worker whose database
    # is not at the schema its code expects refuses to start.
    engine = create_engine(settings.database_url(region), settings)
    # A worker started while its database or Temporal is down (a restart, a
    # deploy bringing them up together) waits for them rather than exit: a
    # worker gone leaves its region's transfers waiting until someone notices.
    wait_s = settings.worker_start_wait.total_seconds()
    try:
        await reading(lambda: require_schema_at_head(engine, region), window=wait_s)
    except BaseException:
        await engine.dispose()
        raise
    pruner = None
    if settings.archive_prune:
        # Only a worker told to prune holds the pruner role's credentials.
        pruner = create_engine(pruner_url(settings, region), settings, pool_size=2)
    runtime, gauges = None, None
    if settings.metrics_port:
        port = settings.metrics_port + settings.regions.index(region)
        runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
        )
        gauges = LagGauges(runtime, region)
    try:
        client = await _connect_waiting(settings, runtime, wait_s)
        objects = S3ObjectStore.from_settings(settings)
        try:
            # Said at start, loudly; every archive run refuses until it is fixed.
            await Archiver(
                engine, objects, region, ArchivePolicy.from_settings(settings)
            ).require_lock()
        except Exception as exc:
            log.error("the archive of region %s cannot run: %s", region, exc)
        worker = build_worker(client, settings, region, engine, objects, pruner=pruner)
        if settings.schedules_on_worker_start:
            try:
                # Only the missing ones: an operator's edit stands.
                await apply_schedules(client, settings, [region], update=False)
            except Exception:
                # Transfers must not wait on the archive's schedule: say it loudly
                # and serve anyway (`ledgerflow schedules apply` can retry it).
                log.exception("could not apply the schedules of region %s", region)
        log.info("worker for region %s on task queue %s", region, settings.task_queue(region))
        async with worker:
            projector = asyncio.create_task(
                run_projector(engine, stop, gauges=gauges, stream=settings.stream_relay)
            )
            followers = []
            if settings.stream_relay:
                followers.append(keep_following(stream_relay(settings, region, engine), stop))
                if region == settings.stream_region:
                    followers.append(keep_following(global_directory(settings, engine), stop))
            following = [asyncio.create_task(f) for f in followers]
            print(
                f"ledgerflow worker: region {region}, task queue {settings.task_queue(region)}",
                flush=True,
            )
            await stop.wait()
            log.info("shutting down worker for region %s", region)
            await projector
            await asyncio.gather(*following)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await engine.dispose()
        if pruner is not None:
            await pruner.dispose()
