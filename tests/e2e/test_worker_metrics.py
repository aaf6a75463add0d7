"""A regional worker as `ledgerflow worker` runs it: the schema check, the
worker, the catch-up projector, the stream relay, and projection and stream
lag exported as Prometheus metrics."""

from __future__ import annotations

import asyncio
import urllib.request

from temporalio.testing import WorkflowEnvironment

from ledgerflow.config import Settings
from ledgerflow.infra.nats import EmbeddedNats
from ledgerflow.infra.postgres import EmbeddedPostgres
from ledgerflow.infra.process import find_free_port
from ledgerflow.workers.regional import run_worker
from tests.support import eventually


async def test_the_worker_exports_projection_lag_and_stops_on_request(
    temporal_env: WorkflowEnvironment,
    pg_server: EmbeddedPostgres,
    migrated: Settings,
    nats_servers: list[EmbeddedNats],
) -> None:
    port = find_free_port()
    settings = Settings.from_env(
        {
            "LEDGERFLOW_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "LEDGERFLOW_PG_PORT": str(pg_server.port),
            "LEDGERFLOW_REGIONS": "us,eu,ap",
            "LEDGERFLOW_TASK_QUEUE_PREFIX": "metrics-test",
            "LEDGERFLOW_METRICS_PORT": str(port),
            "LEDGERFLOW_STATE_DIR": str(migrated.state_dir),
            "LEDGERFLOW_NATS_PORT": str(nats_servers[0].base_port),
        }
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, "eu", stop))
    scraped: list[str] = []

    async def lag_exported() -> bool:
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/metrics", timeout=2) as r:
                return str(r.read().decode())

        try:
            text = await asyncio.to_thread(scrape)
        except OSError:
            return False
        scraped.append(text)
        return all(
            f'{name}{{region="eu"' in text
            for name in ("ledgerflow_projection_lag_events", "ledgerflow_stream_lag_events")
        )

    try:
        await eventually(lag_exported, within=20)
        assert 'ledgerflow_projection_lag_seconds{region="eu"' in scraped[-1]
        assert 'ledgerflow_stream_lag_seconds{region="eu"' in scraped[-1]
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    assert worker.exception() is None
