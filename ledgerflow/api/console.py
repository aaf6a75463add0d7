# ruff: noqa: E501 - HTML fragments read better one element per line than split
"""The console: plain server-rendered pages for finance and audit, served
by the API app under `/console` over the same read side.

Sign in with an API token (any scope includes `read`); the token is kept in
an HttpOnly, SameSite=Strict cookie, checked on every page like a bearer
token (a revoked token signs the console out within the token cache's life)
and limited to its account prefix as over the API. Every page is a GET that
changes nothing; the only form that posts is the sign-in, so a cross-site
request can do nothing with the cookie. No JavaScript, no build step: the
balance picture is an SVG drawn here.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route as StarletteRoute

from ledgerflow.api.routes import DIGITS
from ledgerflow.api.tokens import ApiToken, Forbidden, Unauthorized
from ledgerflow.domain.errors import InvalidRequest, LedgerError
from ledgerflow.domain.holds import hold_workflow_id
from ledgerflow.domain.model import base_transfer_id, require_id
from ledgerflow.domain.money import format_amount

if TYPE_CHECKING:
    from ledgerflow.api.app import Api

COOKIE = "lf_console"
#: No script may run, nothing may frame the console, no page is cached.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",  # (no-referrer would send `Origin: null` on sign-in)
}
MAX_FORM_BYTES = 4096
Page = Callable[[Request, ApiToken], Awaitable[Response]]

#: Postings the balance chart draws (the account's latest).
CHART_POINTS = 1000

#: How long a console sign-in lasts (the cookie's Max-Age): a working day.
SIGNED_IN_S = 8 * 3600

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#12263a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#cfe3ff;text-decoration:none} header b{margin-right:auto}
main{max-width:72em;margin:1.2em auto;padding:0 1.2em}
table{border-collapse:collapse;width:100%;background:#fff;margin:.6em 0 1.4em}
th,td{padding:.35em .6em;border-bottom:1px solid #e3e6ea;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#fff;padding:.8em 1.2em;min-width:10em}
.card b{display:block;font-size:1.4em}.bad{color:#b3261e}.good{color:#1e7b34}
form{margin:.6em 0} input{font:inherit;padding:.3em}
header form{margin:0} header button{font:inherit;color:#cfe3ff;background:none;border:0;cursor:pointer}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def money(amount: int | None, currency: str) -> str:
    return "" if amount is None else format_amount(amount, currency)


def _like(text: str) -> str:
    """`text` as a LIKE pattern that matches itself only."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _ledger_wide(token: ApiToken) -> None:
    if token.account_prefix is not None:
        raise Forbidden(f"a token fenced to {token.account_prefix!r} may not read this page")


def layout(title: str, body: str, token: ApiToken | None = None) -> HTMLResponse:
    nav = (
        f'<a href="/console">Accounts</a><a href="/console/reconciliation">Reconciliation</a>'
        f'<a href="/console/status">Verify and archive</a>'
        f"<span>{_e(token.principal)}</span>"
        # A POST (a link to a GET would sign out whoever another site sends it).
        f"<form method=post action=/console/logout><button>Sign out</button></form>"
        if token
        else ""
    )
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · '
        f"Ledgerflow</title><style>{_STYLE}</style></head><body><header><b>Ledgerflow</b>{nav}"
        f"</header><main><h1>{_e(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(page, headers=PAGE_HEADERS)


def web_ui_link(api: Api, workflow_ids: list[str], text: str) -> str:
    settings = api.settings
    query = " OR ".join(f'WorkflowId="{w}"' for w in workflow_ids)
    url = (
        f"http://127.0.0.1:{settings.temporal_ui_port}/namespaces/"
        f"{quote(settings.temporal_namespace)}/workflows?{urlencode({'query': query})}"
    )
    return f'<a href="{_e(url)}" target="_blank" rel="noopener">{_e(text)}</a>'


def posting_link(api: Api, transfer_id: str | None) -> str:
    if not transfer_id:
        return ""
    if "/capture/" in transfer_id:
        hold = transfer_id.split("/capture/", 1)[0]
        return web_ui_link(api, [hold_workflow_id(hold)], transfer_id)
    base = base_transfer_id(transfer_id)
    return web_ui_link(api, [f"transfer-{base}", f"transaction-{base}"], transfer_id)


def balance_chart(points: list[tuple[datetime, int]], currency: str) -> str:
    """The balance after each posting, as a step line (SVG, no script)."""
    if len(points) < 2:
        return "<p>Too few postings to draw.</p>"
    width, height, pad = 720, 200, 36
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    low = min(0, *(b for _, b in points))
    high = max(b for _, b in points) or 1

    def x(t: datetime) -> float:
        return pad + (width - 2 * pad) * ((t.timestamp() - t0) / ((t1 - t0) or 1))

    def y(b: int) -> float:
        return height - pad - (height - 2 * pad) * ((b - low) / ((high - low) or 1))

    path = f"M{x(points[0][0]):.1f},{y(points[0][1]):.1f}"
    for when, after in points[1:]:
        path += f" H{x(when):.1f} V{y(after):.1f}"
    return (
        f'<svg role="img" aria-label="balance over time" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="background:#fff">'
        f'<path d="{path}" fill="none" stroke="#1f6feb" stroke-width="2"/>'
        f'<text x="{pad}" y="{pad - 12}" font-size="12">{_e(money(high, currency))}</text>'
        f'<text x="{pad}" y="{height - 10}" font-size="12">{_e(money(low, currency))} · '
        f"{_e(points[0][0].strftime('%Y-%m-%d %H:%M'))} → "
        f"{_e(points[-1][0].strftime('%Y-%m-%d %H:%M'))} UTC</text></svg>"
    )


class Console:
    def __init__(self, api: Api) -> None:
        self.api = api

    async def signed_in(self, request: Request) -> ApiToken:
        """The cookie's token, rate limited as a bearer token is."""
        if not request.cookies.get(COOKIE):
            raise Unauthorized("not signed in")
        record = await self.api.token_of(request, cookie=True)
        record.require("read")
        return record

    def page(self, render: Page) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            try:
                token = await self.signed_in(request)
            except LedgerError:
                return RedirectResponse("/console/login", status_code=303)
            try:
                return await render(request, token)
            except LedgerError as exc:
                return layout(
                    exc.type,
                    f'<p class="bad">{_e(exc.message)}</p><p><a href="/console">Back</a></p>',
                    token,
                )

        return serve

    async def login_form(self, request: Request) -> Response:
        failed = request.query_params.get("failed")
        note = '<p class="bad">That token was not accepted.</p>' if failed else ""
        return layout(
            "Sign in",
            f"{note}<form method=post action=/console/login><label>API token "
            f"<input name=token type=password size=60 autocomplete=off required></label> "
            f"<button>Sign in</button></form><p>Make one with <code>ledgerflow token create "
            f"--principal you --scope read</code>.</p>",
        )

    async def login(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return RedirectResponse("/console/login?failed=1", status_code=303)
        token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        try:
            record = await self.api.auth.authenticate(f"Bearer {token}")
            record.require("read")
        except LedgerError:
            return RedirectResponse("/console/login?failed=1", status_code=303)
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            # A sign-in posted from another site (login CSRF) is not taken.
            return RedirectResponse("/console/login?failed=1", status_code=303)
        response = RedirectResponse("/console", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=SIGNED_IN_S)  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def home(self, request: Request, token: ApiToken) -> Response:
        from sqlalchemy import text

        q = request.query_params.get("q", "").strip()
        rows: list[Any] = []
        if q:
            for region in self.api.settings.regions:
                async with self.api.ledger.engine(region).connect() as conn:
                    found = await conn.execute(
                        text(
                            "SELECT account_id, currency, balance, pending_out, status, region "
                            "FROM accounts WHERE account_id LIKE :p ESCAPE '\\' "
                            "AND account_id LIKE :fence ESCAPE '\\' "
                            "AND account_id NOT LIKE 'clearing:%' ORDER BY account_id LIMIT 50"
                        ),
                        {"p": _like(q) + "%", "fence": _like(token.account_prefix or "") + "%"},
                    )
                    rows += [r for r in found if token.covers(r.account_id)]
        cells = "".join(
            f'<tr><td><a href="/console/accounts/{quote(r.account_id)}">{_e(r.account_id)}</a></td>'
            f"<td>{_e(r.region)}</td><td>{_e(r.status)}</td>"
            f'<td class="n">{_e(money(r.balance, r.currency))}</td>'
            f'<td class="n">{_e(money(r.balance - r.pending_out, r.currency))}</td></tr>'
            for r in sorted(rows, key=lambda r: r.account_id)
        )
        table = (
            f"<table><tr><th>account</th><th>region</th><th>status</th><th class=n>posted</th>"
            f"<th class=n>available</th></tr>{cells}</table>"
            if q
            else ""
        )
        empty = "<p>No account starts with that.</p>" if q and not rows else ""
        return layout(
            "Accounts",
            f'<form><label>Find accounts starting with <input name=q value="{_e(q)}" '
            f"autofocus></label> <button>Find</button></form>{table}{empty}",
            token,
        )

    async def account(self, request: Request, token: ApiToken) -> Response:
        from sqlalchemy import text

        account_id = require_id(request.path_params["account_id"], "account_id")
        token.require("read", account_id)
        ledger = self.api.ledger
        account = await ledger.account(account_id)
        view = await ledger.balance(account_id)
        c = account.currency
        as_of_text = request.query_params.get("as_of", "").strip()
        past = ""
        if as_of_text:
            try:
                as_of = datetime.fromisoformat(as_of_text)
            except ValueError:
                raise InvalidRequest(f"not an instant: {as_of_text!r}", field="as_of") from None
            as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
            then = await ledger.balance_as_of(account_id, as_of)
            past = (
                f'<div class="card" id="as-of">At {_e(as_of.isoformat())}<b>'
                f"{_e(money(then.balance, c))}</b>pending out {_e(money(then.pending_out, c))}, "
                f"available {_e(money(then.balance - then.pending_out, c))}</div>"
            )
        cards = (
            f'<div class="cards"><div class="card">Posted<b id="posted">{_e(money(account.balance, c))}'
            f'</b></div><div class="card">Pending out<b>{_e(money(account.pending_out, c))}</b></div>'
            f'<div class="card">Pending in<b>{_e(money(view.pending_in, c))}</b></div>'
            f'<div class="card">Available<b id="available">'
            f"{_e(money(account.balance - account.pending_out, c))}</b></div>{past}</div>"
            f"<p>{_e(account.region)} · {_e(account.status)} · opened "
            f"{_e(account.opened_at.isoformat(timespec='seconds'))}</p>"
        )
        picker = (
            f"<form><label>Balance at <input type=datetime-local step=1 name=as_of "
            f'value="{_e(as_of_text[:19])}"></label> (UTC) <button>Show</button></form>'
        )
        async with ledger.engine(account.region).connect() as conn:
            hold_ids = [
                r.hold_id
                for r in await conn.execute(
                    text(
                        "SELECT hold_id FROM holds WHERE from_account = :a AND status = 'placed' "
                        "ORDER BY recorded_at DESC LIMIT 50"
                    ),
                    {"a": account_id},
                )
            ]
        holds = [
            s for s in [await ledger.reads.hold(h) for h in hold_ids] if s and s.status == "open"
        ]
        hold_rows = "".join(
            f"<tr><td>{web_ui_link(self.api, [hold_workflow_id(h.hold_id)], h.hold_id)}</td>"
            f"<td>{_e(h.to_account)}</td><td class=n>{_e(money(h.remaining, c))}</td>"
            f"<td>{_e(h.expires_at.isoformat(timespec='seconds') if h.expires_at else '')}</td></tr>"
            for h in holds
        )
        after_text = request.query_params.get("after", "0")
        after = int(after_text) if DIGITS.fullmatch(after_text) else 0
        lines = await ledger.statement(account_id, after_version=after, limit=50)
        line_rows = "".join(
            f"<tr><td>{_e(line.version)}</td><td>{_e(line.recorded_at.isoformat(timespec='seconds'))}</td>"
            f"<td>{_e(line.type)}</td><td>{posting_link(self.api, line.transfer_id)}</td>"
            f"<td>{_e(line.counterparty)}</td><td class=n>{_e(money(line.amount, c))}</td>"
            f"<td class=n>{_e(money(line.balance_after, c))}</td></tr>"
            for line in lines
        )
        more = (
            f'<p><a href="?after={lines[-1].version}">Next page</a></p>' if len(lines) == 50 else ""
        )
        # The chart shows the latest postings (the page may show older ones);
        # when the page is the latest, it is not read twice.
        latest = max(0, account.version - CHART_POINTS)
        recent = (
            lines
            if after == latest and len(lines) < 50
            else await ledger.statement(account_id, after_version=latest, limit=CHART_POINTS)
        )
        chart = balance_chart([(line.recorded_at, line.balance_after) for line in recent], c)
        today = datetime.now(UTC).date().isoformat()
        export = (
            f'<form action="/console/accounts/{quote(account_id)}/audit.csv"><label>Audit trail '
            f'from <input type=date name=start value="{today}"></label> <label>to <input type=date '
            f'name=end value="{today}"></label> <button>Export CSV</button></form>'
        )
        return layout(
            account_id,
            f"{cards}{picker}<h2>Balance over time</h2>{chart}<h2>Open holds</h2>"
            f"<table><tr><th>hold</th><th>toward</th><th class=n>held</th><th>expires</th></tr>"
            f"{hold_rows}</table><h2>Statement</h2><table id=statement><tr><th>version</th>"
            f"<th>recorded</th><th>event</th><th>posting</th><th>counterparty</th>"
            f"<th class=n>amount</th><th class=n>balance</th></tr>{line_rows}</table>{more}"
            f"<h2>Audit</h2>{export}",
            token,
        )

    async def audit_csv(self, request: Request, token: ApiToken) -> Response:
        from datetime import timedelta

        from ledgerflow.audit.export import trail_csv

        account_id = require_id(request.path_params["account_id"], "account_id")
        token.require("read", account_id)
        try:
            start = datetime.fromisoformat(request.query_params["start"]).replace(tzinfo=UTC)
            end = datetime.fromisoformat(request.query_params["end"]).replace(tzinfo=UTC)
        except (KeyError, ValueError):
            raise InvalidRequest("start and end must be dates", field="start") from None
        trail = await self.api.ledger.audit(account_id, start, end + timedelta(days=1))
        name = f"audit-{account_id}-{start.date()}-{end.date()}.csv"
        return Response(trail_csv(trail), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    async def reconciliation(self, request: Request, token: ApiToken) -> Response:
        from ledgerflow.reconcile.reports import latest_report

        _ledger_wide(token)
        engine = self.api.ledger.engine(self.api.settings.reconcile_region)
        report = await latest_report(engine, None)
        if report is None:
            return layout("Reconciliation", "<p>No reconciliation has run yet.</p>", token)
        rows = "".join(
            "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (d.get("kind"), d.get("region"),
                                                           d.get("transfer_id"), d.get("detail")))
            + "</tr>"
            for d in report["discrepancies"]
        )  # fmt: skip
        state = "good" if not report["discrepancies"] else "bad"
        return layout(
            "Reconciliation",
            f'<p class="{state}" id=recon-status>{_e(report["status"])}: '
            f"{len(report['discrepancies'])} discrepancies, {len(report['in_transit'])} in "
            f"transit (report {_e(report['report_id'])}, {_e(report['finished_at'])})</p>"
            f"<table><tr><th>kind</th><th>region</th><th>transfer</th><th>detail</th></tr>"
            f"{rows}</table>",
            token,
        )

    async def status(self, request: Request, token: ApiToken) -> Response:
        from ledgerflow.archive.status import archive_status

        _ledger_wide(token)
        settings, ledger = self.api.settings, self.api.ledger
        rows = ""
        for region in settings.regions:
            s = await archive_status(ledger.engine(region), region, settings.archive_min_age)
            rows += (
                f"<tr><td>{_e(region)}</td><td class=n>{_e(s.segments)}</td>"
                f"<td class=n>{_e(s.events_archived)}</td><td>{_e(s.last_archived_at)}</td>"
                f"<td class=n>{_e(s.hot_events)}</td><td class=n>{_e(s.backlog_events)}</td></tr>"
            )
        verified = ""
        if request.query_params.get("verify"):
            from ledgerflow.archive.objectstore import S3ObjectStore
            from ledgerflow.archive.verify import verify_region_and_archive

            objects = S3ObjectStore.from_settings(settings)
            for region in settings.regions:
                r = await verify_region_and_archive(ledger.engine(region), objects, region)
                findings = "".join(f"<li>{_e(f)}</li>" for f in r.findings)
                verified += (
                    f'<tr><td>{_e(region)}</td><td class="{"good" if r.sound else "bad"}">'
                    f"{'sound' if r.sound else 'NOT SOUND'}</td><td class=n>{r.events_checked}"
                    f"</td><td class=n>{r.archive_events_checked}</td><td><ul>{findings}</ul></td></tr>"
                )
            verified = (
                f"<table id=verify><tr><th>region</th><th>verdict</th><th class=n>events</th>"
                f"<th class=n>archived</th><th>findings</th></tr>{verified}</table>"
            )
        return layout(
            "Verify and archive",
            f"<h2>Archive</h2><table><tr><th>region</th><th class=n>segments</th>"
            f"<th class=n>archived</th><th>last archived</th><th class=n>hot</th>"
            f"<th class=n>backlog</th></tr>{rows}</table><h2>Verify</h2>"
            f"{verified or '<form><button name=verify value=1>Verify every region</button></form>'}",
            token,
        )


def console_routes(api: Api) -> list[StarletteRoute]:
    console = Console(api)
    return [
        StarletteRoute("/console/login", console.login_form, methods=["GET"]),
        StarletteRoute("/console/login", console.login, methods=["POST"]),
        StarletteRoute("/console/logout", console.logout, methods=["POST"]),
        StarletteRoute("/console", console.page(console.home), methods=["GET"]),
        StarletteRoute("/console/accounts/{account_id}", console.page(console.account),
                       methods=["GET"]),
        StarletteRoute("/console/accounts/{account_id}/audit.csv",
                       console.page(console.audit_csv), methods=["GET"]),
        StarletteRoute("/console/reconciliation", console.page(console.reconciliation),
                       methods=["GET"]),
        StarletteRoute("/console/status", console.page(console.status), methods=["GET"]),
    ]  # fmt: skip
