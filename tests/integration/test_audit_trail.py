"""The audit trail: every posting and refused attempt in range, with proof,
and opening/closing balances that reconcile with the postings."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.audit.trail import AUDIT_FIELDS, audit_trail
from ledgerflow.domain.errors import AccountNotFound, InsufficientFunds, InvalidRequest
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import cli

Region = tuple[PostgresEventStore, AsyncEngine]


async def history(store: PostgresEventStore) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    await store.open_account(OpenAccountRequest("bank", "EUR", "us", None), now)
    await store.open_account(OpenAccountRequest("anna", "EUR", "us"), now)
    await store.append_transfer(Transfer("t0", "bank", "anna", 500, "EUR", "ops"), "us", now)
    start = datetime.now(UTC)
    await store.append_transfer(
        Transfer("t1", "anna", "bank", 120, "EUR", "anna", "rent", {"ref": "R-1"}), "us", now
    )
    refused = Transfer("t2", "anna", "bank", 10_000, "EUR", "anna")
    with pytest.raises(InsufficientFunds) as caught:
        await store.append_transfer(refused, "us", now)
    await store.record_rejection(refused, "us", caught.value, now)
    await store.append_transfer(Transfer("t3", "bank", "anna", 30, "EUR", "ops"), "us", now)
    end = datetime.now(UTC)
    await store.append_transfer(Transfer("t4", "bank", "anna", 1, "EUR", "ops"), "us", now)
    return start, end


async def test_the_trail_lists_postings_and_rejections_and_reconciles(
    isolated_region: Region,
) -> None:
    store, _ = isolated_region
    start, end = await history(store)
    trail = await audit_trail(store.engine, "anna", start, end)
    assert (trail.opening_balance, trail.closing_balance) == (500, 410)
    assert [(e.kind, e.transfer_id, e.amount) for e in trail.entries] == [
        ("posting", "t1", -120),
        ("rejected", "t2", 0),
        ("posting", "t3", 30),
    ]
    rent, refused, _ = trail.entries
    assert (rent.workflow_id, rent.counterparty, rent.initiated_by) == (
        "transfer-t1",
        "bank",
        "anna",
    )
    assert rent.description == "rent" and rent.metadata == {"ref": "R-1"}
    assert rent.hash and rent.prev_hash and rent.balance_after == 380
    assert (refused.reason_type, refused.metadata) == ("InsufficientFunds", {"attempted": -10_000})
    assert trail.closing_balance - trail.opening_balance == sum(
        e.amount for e in trail.entries if e.kind == "posting"
    )
    with pytest.raises(AccountNotFound):
        await audit_trail(store.engine, "nobody", start, end)
    with pytest.raises(InvalidRequest):
        await audit_trail(store.engine, "anna", end, start)


async def test_the_cli_writes_json_and_csv_with_the_documented_fields(
    isolated_region: Region, cli_env: dict[str, str]
) -> None:
    store, _ = isolated_region
    start, end = await history(store)
    url = store.engine.url.render_as_string(hide_password=False)
    env = cli_env | {"LEDGERFLOW_DATABASE_URL_US": url, "LEDGERFLOW_REGIONS": "us"}
    span = ["--from", start.isoformat(), "--to", end.isoformat()]
    code, out, err = await cli(env, "audit", "anna", *span, "--format", "json")
    assert code == 0, err
    trail = json.loads(out)
    assert (trail["opening_balance"], trail["closing_balance"]) == (500, 410)
    assert [set(e) for e in trail["entries"]] == [set(AUDIT_FIELDS)] * 3
    code, out, err = await cli(env, "audit", "anna", *span, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == AUDIT_FIELDS
    # The opening and closing balances, as in the JSON (issue 13, finding 4).
    assert [r["kind"] for r in rows] == ["opening", "posting", "rejected", "posting", "closing"]
    assert (rows[0]["balance_after"], rows[-1]["balance_after"]) == ("500", "410")
    assert [r["transfer_id"] for r in rows[1:-1]] == ["t1", "t2", "t3"]
    assert json.loads(rows[1]["metadata"]) == {"ref": "R-1"}
    code, _, err = await cli(env, "audit", "anna", "--from", "2026-01-01", "--to", "x")
    assert code == 2 and "has no time zone" in err
