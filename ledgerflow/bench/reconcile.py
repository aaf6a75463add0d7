"""Reconciliation throughput: one region's window checked from the start of
its history, page by page, exactly as ReconcileWorkflow's collect activity
does it (read-only; no report is stored, no cursor moves).

    .venv/bin/ledgerflow bench reconcile --region us --events 500000
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.reconcile.collect import collect_window
from ledgerflow.reconcile.messages import CollectInput, Cursor

PAGE_EVENTS = 20_000


@dataclass(frozen=True)
class ReconcileBench:
    region: str
    events_checked: int
    pages: int
    seconds: float
    events_per_s: float
    findings: int


async def reconcile_bench(engine: AsyncEngine, region: str, events: int) -> ReconcileBench:
    after, checked, pages, findings = Cursor(), 0, 0, 0
    started = time.perf_counter()
    while checked < events:
        last = checked + PAGE_EVENTS >= events
        window = await collect_window(engine, CollectInput(region, after, PAGE_EVENTS, sums=last))
        pages += 1
        checked += window.events_checked
        findings += len(window.findings)
        after = window.upto
        if not window.more:
            break
    seconds = time.perf_counter() - started
    return ReconcileBench(region, checked, pages, seconds, checked / seconds, findings)
