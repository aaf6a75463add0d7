"""The ArchiveWorkflow through real Temporal, PostgreSQL and S3 servers: its
Schedule, an S3 outage in the middle of a run, and the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from ledgerflow.archive.messages import ArchiveRequest
from ledgerflow.archive.objectstore import S3ObjectStore
from ledgerflow.archive.verify import verify_archive
from ledgerflow.config import Settings
from ledgerflow.infra.process import find_free_port
from ledgerflow.infra.s3 import EmbeddedS3, s3_client
from ledgerflow.schedules import apply_schedules
from ledgerflow.store.postgres import PostgresEventStore
from ledgerflow.workers.regional import build_worker
from ledgerflow.workflows.archive import ArchiveWorkflow
from tests.e2e.test_replay import HISTORIES, replayer
from tests.support import cli, count_rows, eventually, trade

BUCKET = "outage-archive"


@pytest_asyncio.fixture(autouse=True)
async def no_schedules_left(workers: Client) -> AsyncIterator[None]:
    """The schedules these tests create never outlive them (an hourly
    archive run would otherwise fire over the other tests' databases)."""
    yield
    for schedule_id in ("archive-us", "archive-eu", "archive-ap", "reconcile"):
        with contextlib.suppress(RPCError):  # (not created, or deleted already)
            await workers.get_schedule_handle(schedule_id).delete()


async def test_each_region_has_an_archive_schedule_created_once_and_updated_in_place(
    workers: Client, migrated: Settings
) -> None:
    await apply_schedules(workers, migrated)
    # Applying again changes nothing but reports "updated", never a duplicate.
    again = await apply_schedules(workers, migrated)
    assert [(a.schedule_id, a.created) for a in again] == [
        ("archive-us", False), ("archive-eu", False), ("archive-ap", False),
        ("reconcile", False),
    ]  # fmt: skip
    # What the Web UI's Schedules page lists.
    listed = {s.id async for s in await workers.list_schedules()}
    assert {"archive-us", "archive-eu", "archive-ap", "reconcile"} <= listed
    reconcile = (await workers.get_schedule_handle("reconcile").describe()).schedule
    assert reconcile.spec.intervals[0].every == timedelta(minutes=5)
    assert reconcile.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert isinstance(reconcile.action, ScheduleActionStartWorkflow)
    assert (reconcile.action.workflow, reconcile.action.task_queue) == (
        "ReconcileWorkflow", "ledger-us",
    )  # fmt: skip
    # Not left to fire over the other tests' shared databases.
    await workers.get_schedule_handle("reconcile").delete()

    handle = workers.get_schedule_handle("archive-eu")
    described = await handle.describe()
    schedule = described.schedule
    assert schedule.spec.intervals[0].every == migrated.archive_interval
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue) == ("ArchiveWorkflow", "ledger-eu")

    # An operator's pause survives a change of interval at the next apply.
    await handle.pause(note="maintenance")
    try:
        hourly_x2 = dataclasses.replace(migrated, archive_interval=timedelta(hours=2))
        await apply_schedules(workers, hourly_x2, ["eu"])
        updated = (await handle.describe()).schedule
        assert updated.spec.intervals[0].every == timedelta(hours=2)
        assert updated.state.paused and updated.state.note == "maintenance"
        # A worker starting with other settings creates what is missing and
        # reverts nothing (issue 13, finding 11).
        started = await apply_schedules(workers, migrated, ["eu"], update=False)
        assert [(a.schedule_id, a.created) for a in started] == [("archive-eu", False)]
        kept = (await handle.describe()).schedule
        assert kept.spec.intervals[0].every == timedelta(hours=2) and kept.state.paused
    finally:
        await apply_schedules(workers, migrated, ["eu"])
        await handle.unpause()

    # Triggered, the schedule starts an ArchiveWorkflow that the region's
    # worker runs to completion (nothing is old enough to archive yet).
    await workers.get_schedule_handle("archive-us").trigger()
    query = 'WorkflowType = "ArchiveWorkflow" AND TemporalScheduledById = "archive-us"'

    async def completed() -> bool:
        runs = [w async for w in workers.list_workflows(query)]
        return any(w.status == WorkflowExecutionStatus.COMPLETED for w in runs)

    await eventually(completed, within=30)
    # Not left to fire over the other tests' shared databases either.
    for region in ("us", "eu", "ap"):
        await workers.get_schedule_handle(f"archive-{region}").delete()


@pytest_asyncio.fixture
async def own_s3(tmp_path: Path) -> AsyncIterator[EmbeddedS3]:
    """An S3 server of this test's own, so that stopping it harms no other test."""
    server = EmbeddedS3(find_free_port(), tmp_path)
    server.start()
    server.ensure_bucket(BUCKET, "us-east-1")
    try:
        yield server
    finally:
        pid = server.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        server.stop()


async def test_an_s3_outage_mid_run_loses_nothing_and_the_next_run_completes(
    temporal_env: WorkflowEnvironment,
    migrated: Settings,
    isolated_region: tuple[PostgresEventStore, AsyncEngine],
    own_s3: EmbeddedS3,
) -> None:
    store, _ = isolated_region
    await trade(store, "outage", rounds=15)
    total = await count_rows(store.engine, "events")
    objects = S3ObjectStore(
        own_s3.endpoint_url, BUCKET, "us-east-1",
        connect_timeout_s=0.5, read_timeout_s=1.0, max_attempts=1,
    )  # fmt: skip
    settings = dataclasses.replace(
        migrated,
        task_queue_prefix=f"tq-{uuid.uuid4().hex[:8]}",
        archive_min_age=timedelta(0),
        archive_segment_events=4,
    )
    queue = settings.task_queue("us")
    client = temporal_env.client
    # Eight segments per run, then continue-as-new: a chain of runs.
    request = ArchiveRequest("us", retry_window_s=5, max_segments=8)
    async with build_worker(client, settings, "us", store.engine, objects):
        first = await client.start_workflow(
            ArchiveWorkflow.run, request, id=f"archive-outage-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )  # fmt: skip

        async def archived() -> int:
            return await count_rows(store.engine, "archive_segments", "status = 'archived'")

        async def under_way() -> bool:
            return await archived() >= 2

        await eventually(under_way, within=30)
        pid = own_s3.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # S3 stops answering, mid-run
        try:
            with pytest.raises(WorkflowFailureError):
                await first.result()
            during = await archived()
            assert 2 <= during < total // 4, "the outage must interrupt the run"
        finally:
            os.kill(pid, signal.SIGCONT)

        after = await client.start_workflow(
            ArchiveWorkflow.run, request, id=f"archive-after-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )  # fmt: skip
        second = await after.result()
    assert second.segments > 8 and second.events > 0  # carried across continue-as-new
    # The chain's first run (eight segments, then continue-as-new) replays on
    # the current code; it is the recorded ArchiveWorkflow history.
    first_run = client.get_workflow_handle(after.id, run_id=after.first_execution_run_id)
    history = await first_run.fetch_history()
    kinds = [e.WhichOneof("attributes") for e in history.events]
    assert "workflow_execution_continued_as_new_event_attributes" in kinds
    await replayer().replay_workflow(history)
    if os.environ.get("LEDGERFLOW_RECORD_HISTORIES") == "1":
        (HISTORIES / "archive_segments.json").write_text(history.to_json())

    # Nothing lost, nothing twice: the segments cover every event once, with
    # no gap in the archive's numbering, and each object was written once.
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT first_seq, last_seq, event_count FROM archive_segments "
                    "WHERE status = 'archived' ORDER BY segment_no"
                )
            )
        ).all()
    assert sum(r.event_count for r in rows) == total
    assert [r.first_seq for r in rows] == [1] + [r.last_seq + 1 for r in rows[:-1]]
    versions = s3_client(own_s3.endpoint_url, "us-east-1").list_object_versions(Bucket=BUCKET)
    keys = [v["Key"] for v in versions.get("Versions", [])]
    assert len(keys) == len(set(keys)) == 3 * len(rows)
    report = await verify_archive(store.engine, objects, "us")
    assert report.sound, report.findings
    assert report.events_checked == total


async def test_archive_commands(cli_env: dict[str, str], workers: Client) -> None:
    code, out, err = await cli(cli_env, "archive", "status", "--json")
    assert code == 0, err
    assert [s["region"] for s in json.loads(out)] == ["us", "eu", "ap"]

    code, out, err = await cli(cli_env, "archive", "verify", "--region", "eu")
    assert code == 0, err
    assert "yes" in out

    code, out, err = await cli(cli_env, "schedules", "apply", "--json")
    assert code == 0, err
    assert {s["schedule_id"] for s in json.loads(out)} == {
        "archive-us", "archive-eu", "archive-ap", "reconcile",
    }  # fmt: skip
    await workers.get_schedule_handle("reconcile").delete()

    code, out, err = await cli(cli_env, "archive", "--region", "ap", "--now", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["region"] == "ap" and result["segments"] == 0  # nothing an hour old yet

    code, _, err = await cli(cli_env, "archive")
    assert code == 1 and "--now" in err
    code, _, err = await cli(cli_env, "archive", "prune")
    assert code == 1 and "--region" in err
