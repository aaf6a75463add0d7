"""The API's reads for finance and audit across regions: `verify` (each
region's hash chains, write model and archive), the latest reconciliation
report with its discrepancies, and the archive's status. They read with the
reader role, as the CLI's `verify`, `reconcile report` and `archive status`
do (the same functions)."""

from __future__ import annotations

from typing import Any

from ledgerflow.api.codec import CODEC_ROUTES
from ledgerflow.api.problems import NoReport
from ledgerflow.api.routes import ROUTES, Call, Route
from ledgerflow.api.tokens import Forbidden
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.wire import plain


def _ledger_wide(call: Call) -> None:
    """These reads span every account: not for a token fenced to a prefix."""
    call.token.require("read")
    if call.token.account_prefix is not None:
        raise Forbidden(
            f"a token fenced to {call.token.account_prefix!r} may not read ledger-wide reports"
        )


def _regions(call: Call) -> list[str]:
    region = call.query.get("region")
    if region is None:
        return list(call.settings.regions)
    if region not in call.settings.regions:
        raise InvalidRequest(f"unknown region {region!r}", field="region")
    return [region]


async def verify(call: Call) -> Any:
    _ledger_wide(call)
    from ledgerflow.archive.objectstore import S3ObjectStore
    from ledgerflow.archive.verify import verify_region_and_archive

    objects = S3ObjectStore.from_settings(call.settings)
    answers = []
    for region in _regions(call):
        report = await verify_region_and_archive(call.ledger.engine(region), objects, region)
        answers.append(plain(report) | {"sound": report.sound})
    return {"sound": all(a["sound"] for a in answers), "regions": answers}


async def reconciliation(call: Call) -> Any:
    _ledger_wide(call)
    from ledgerflow.reconcile.reports import latest_report

    report_id = call.query.get("report_id")
    engine = call.ledger.engine(call.settings.reconcile_region)
    report = await latest_report(engine, report_id)
    if report is None:
        raise NoReport(
            f"no reconciliation report {report_id!r}" if report_id else "no reconciliation yet"
        )
    return report


async def archive_status(call: Call) -> Any:
    _ledger_wide(call)
    from ledgerflow.archive.status import archive_status as status_of

    return [
        plain(await status_of(call.ledger.engine(r), r, call.settings.archive_min_age))
        for r in _regions(call)
    ]


_REGION = (("region", "string", "one region (default: every region)"),)
OPERATION_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/verify", "read",
          "Prove each region: hash chains, the write model against the events, the archive",
          verify, tags=("audit",), query=_REGION),
    Route("GET", "/v1/reconciliation", "read",
          "The latest reconciliation report (or one by id), with each discrepancy",
          reconciliation, tags=("audit",),
          query=(("report_id", "string", "a report's id (default: the latest)"),)),
    Route("GET", "/v1/archive/status", "read", "The S3 archive per region", archive_status,
          tags=("audit",), query=_REGION),
)  # fmt: skip

#: Every route the API serves (the app and the OpenAPI document take these).
API_ROUTES: tuple[Route, ...] = (*ROUTES, *OPERATION_ROUTES, *CODEC_ROUTES)
