"""Reconciliation reports: kept in PostgreSQL (the reconciling region's
database, append-only) and in S3 beside the archive (object lock).

The newest report is where the next run continues: its per-region cursors
and the cross-region transfers it left in transit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.archive.objectstore import ObjectExists, ObjectStore
from ledgerflow.reconcile.messages import (
    Cursor,
    InTransit,
    MarkCheckedInput,
    PreviousState,
    ReconcileReport,
    StoreReportOutput,
)


def report_json(report: ReconcileReport) -> dict[str, Any]:
    encoded: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(report), default=str))
    encoded["discrepancy_count"] = len(report.discrepancies)
    return encoded


def report_key(report: ReconcileReport) -> str:
    return f"reconciliation/{report.started_at:%Y/%m/%d}/{report.report_id}.json"


async def store_report(
    engine: AsyncEngine, objects: ObjectStore, report: ReconcileReport, retention: timedelta
) -> StoreReportOutput:
    """Record the report, then copy it to S3; idempotent by report id."""
    body = json.dumps(report_json(report), sort_keys=True, indent=1).encode()
    key = report_key(report)
    try:
        async with engine.begin() as conn:
            # ON CONFLICT on the id only: a retry of this same report is fine,
            # another report continuing from the same previous one is a race.
            await conn.execute(
                text(
                    "INSERT INTO reconciliation_reports (report_id, previous_id, started_at, "
                    "finished_at, status, discrepancies, s3_key, report) VALUES (:id, :prev, "
                    ":started, :finished, :status, :n, :key, CAST(:report AS jsonb)) "
                    "ON CONFLICT (report_id) DO NOTHING"
                ),
                {
                    "id": report.report_id,
                    "prev": report.previous_id,
                    "started": report.started_at,
                    "finished": report.finished_at,
                    "status": report.status,
                    "n": len(report.discrepancies),
                    "key": key,
                    "report": body.decode(),
                },
            )
    except IntegrityError:
        return StoreReportOutput(stored=False, s3_key=None)
    retain_until = report.finished_at + retention if retention else None
    with contextlib.suppress(ObjectExists):
        await objects.put_immutable(key, body, hashlib.sha256(body).hexdigest(), retain_until)
    return StoreReportOutput(stored=True, s3_key=key)


async def latest_report(engine: AsyncEngine, report_id: str | None = None) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        if report_id is None:
            query = "SELECT report FROM reconciliation_reports ORDER BY recorded_at DESC LIMIT 1"
        else:
            query = "SELECT report FROM reconciliation_reports WHERE report_id = :id"
        value = (await conn.execute(text(query), {"id": report_id})).scalar()
    if value is None:
        return None
    return value if isinstance(value, dict) else json.loads(value)


async def previous_state(engine: AsyncEngine) -> PreviousState:
    report = await latest_report(engine)
    return PreviousState() if report is None else state_after(report)


def state_after(report: dict[str, Any]) -> PreviousState:
    """Where the run after `report` continues: each region's cursor (the
    regions it reconciled, and those it carried), what it left in transit."""
    cursors = {region: Cursor(**c) for region, c in (report.get("carried") or {}).items()}
    cursors |= {r["region"]: Cursor(**r["upto"]) for r in report["regions"]}
    return PreviousState(
        report_id=report["report_id"],
        cursors=cursors,
        in_transit=[
            InTransit(
                transfer_id=item["transfer_id"],
                currency=item["currency"],
                first_seen=datetime.fromisoformat(item["first_seen"]),
                net=item["net"],
                legs=list(item["legs"]),
                pair=item["pair"],
            )
            for item in report["in_transit"]
        ],
    )


async def mark_checked(engine: AsyncEngine, data: MarkCheckedInput) -> None:
    """Record in the region's own database how far a stored report checked it
    (idempotent by report id): the prune function's reconciliation gate."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO reconciled_through (report_id, tx_id, position) "
                "VALUES (:id, :tx, :pos) ON CONFLICT (report_id) DO NOTHING"
            ),
            {"id": data.report_id, "tx": data.upto.tx_id, "pos": data.upto.position},
        )
