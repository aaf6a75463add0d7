"""The HTTP API end to end: a real uvicorn server on a port, the real
Temporal dev server, workers and PostgreSQL behind it, tokens stored hashed in
the default region's database, requests over TCP (httpx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ledgerflow.api.app import build_app
from ledgerflow.api.console import COOKIE
from ledgerflow.api.openapi import document
from ledgerflow.api.tokens import Authenticator, PostgresTokens
from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.infra.process import find_free_port
from ledgerflow.store.postgres import create_engine
from ledgerflow.wire import plain
from tests.support import stop_process
from tests.tools.api_server import Api, serve_api, served

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest_asyncio.fixture(scope="session")
async def api(migrated: Settings, workers: Any) -> AsyncIterator[Api]:
    async with serve_api(migrated, workers) as served:
        yield served


@pytest_asyncio.fixture
async def writer(api: Api, uid: Callable[[str], str]) -> AsyncIterator[httpx.AsyncClient]:
    ADMIN["Authorization"] = f"Bearer {await api.token(uid('bank-admin'), 'admin')}"
    async with api.client(await api.token(uid("svc"), "write")) as client:
        yield client


async def _open(client: httpx.AsyncClient, account_id: str, **body: Any) -> httpx.Response:
    return await client.post(
        "/v1/accounts", json={"currency": "USD", **body}, headers={"Idempotency-Key": account_id}
    )


#: An admin's Authorization header (the `writer` fixture mints it): a bank's
#: overdraft is an administrator's to grant.
ADMIN: dict[str, str] = {}


async def _funded(client: httpx.AsyncClient, uid: Callable[[str], str]) -> tuple[str, str]:
    bank, alice = uid("bank"), uid("alice")
    opened = await client.post(
        "/v1/accounts", json={"currency": "USD", "unlimited_overdraft": True},
        headers={"Idempotency-Key": bank} | ADMIN,
    )  # fmt: skip
    assert opened.status_code == 200, opened.text
    assert (await _open(client, alice)).status_code == 200
    funded = await client.post(
        "/v1/transfers",
        json={"from_account": bank, "to_account": alice, "amount": "100.00", "currency": "USD"},
        headers={"Idempotency-Key": uid("fund")},
    )
    assert funded.status_code == 200, funded.text
    return bank, alice


def _problem(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["error"], body["status"], body["title"]) == (error, status, error)
    assert body["type"] == f"urn:ledgerflow:error:{error}"
    return body


async def test_a_transfer_over_http_is_confirmed_once_and_answers_the_same_to_its_key(
    api: Api, writer: httpx.AsyncClient, uid: Callable[[str], str], ledger: LedgerClient
) -> None:
    _, alice = await _funded(writer, uid)
    shop = uid("shop")
    await _open(writer, shop)
    key = uid("t")
    body = {"from_account": alice, "to_account": shop, "amount": 1250, "currency": "USD"}
    first = await writer.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "confirmed" and first.json()["transfer_id"] == key
    again = await writer.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert again.json() == first.json()
    other = await writer.post(
        "/v1/transfers", json=body | {"amount": 1251}, headers={"Idempotency-Key": key}
    )
    _problem(other, 409, "DuplicateTransferMismatch")
    shown = (await writer.get(f"/v1/accounts/{alice}")).json()
    assert (shown["balance"], shown["available"]) == (10000 - 1250, 10000 - 1250)
    # Posted once, by the token's principal.
    now = datetime.now(UTC)
    trail = await ledger.audit(alice, now - timedelta(minutes=5), now + timedelta(minutes=1))
    mine = [e for e in trail.entries if e.transfer_id == key]
    assert len(mine) == 1 and mine[0].initiated_by.startswith("svc-")


async def test_a_rejection_is_its_typed_problem_and_stands_for_its_key(
    writer: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    bank, alice = await _funded(writer, uid)
    key = uid("big")
    body = {"from_account": alice, "to_account": bank, "amount": "5000.00", "currency": "USD"}
    refused = await writer.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    problem = _problem(refused, 422, "InsufficientFunds")
    assert problem["transfer"]["status"] == "rejected"
    again = await writer.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert again.json() == problem
    missing = await writer.get(f"/v1/accounts/{uid('nobody')}")
    _problem(missing, 404, "AccountNotFound")


async def test_holds_transactions_statements_and_the_trail_over_http(
    writer: httpx.AsyncClient, uid: Callable[[str], str], ledger: LedgerClient
) -> None:
    _, alice = await _funded(writer, uid)
    funded_at = datetime.now(UTC)
    await asyncio.sleep(0.05)
    shop, hold = uid("shop"), uid("h")
    await _open(writer, shop)
    placed = await writer.post(
        "/v1/holds",
        json={"from_account": alice, "to_account": shop, "amount": 3000, "currency": "USD",
              "expires_in": 600},
        headers={"Idempotency-Key": hold},
    )  # fmt: skip
    assert placed.status_code == 200 and placed.json()["status"] == "placed", placed.text
    shown = (await writer.get(f"/v1/accounts/{alice}")).json()
    assert (shown["pending_out"], shown["available"]) == (3000, 7000)
    held_at = datetime.now(UTC)
    await asyncio.sleep(0.05)
    took = await writer.post(
        f"/v1/holds/{hold}/captures", json={"amount": 1000}, headers={"Idempotency-Key": "c1"}
    )
    assert took.json()["status"] == "captured", took.text
    too_much = await writer.post(
        f"/v1/holds/{hold}/captures", json={"amount": 2001}, headers={"Idempotency-Key": "c2"}
    )
    _problem(too_much, 422, "CaptureExceedsHold")
    voided = await writer.post(f"/v1/holds/{hold}/void", json={})
    assert voided.json()["released"] == 2000, voided.text
    state = (await writer.get(f"/v1/holds/{hold}")).json()
    assert (state["status"], state["captured"], state["remaining"]) == ("voided", 1000, 0)

    fx = await writer.post(
        "/v1/transactions",
        json={"legs": [{"account_id": alice, "side": "debit", "amount": 500, "currency": "USD"},
                       {"account_id": shop, "side": "credit", "amount": 500, "currency": "USD"}]},
        headers={"Idempotency-Key": uid("tx")},
    )  # fmt: skip
    assert fx.json()["status"] == "confirmed", fx.text

    pages, after = [], 0
    while True:
        page = (
            await writer.get(f"/v1/accounts/{alice}/statement?after_version={after}&limit=2")
        ).json()
        pages.append(page["lines"])
        if page["next_after_version"] is None:
            break
        after = page["next_after_version"]
    lines = [line for page in pages for line in page]
    # Paged by twos, the same lines as the SDK reads in one go.
    whole = await ledger.statement(alice, limit=1000)
    assert lines == plain(whole) and len(pages) >= 3
    assert [line["amount"] for line in lines if line["type"] == "Credited"] == [10000]

    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    window = {"start": start, "end": end}
    trail = await writer.get(f"/v1/accounts/{alice}/audit", params=window)
    assert trail.json()["closing_balance"] == 10000 - 1000 - 500
    csv = await writer.get(f"/v1/accounts/{alice}/audit", params=window | {"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and alice in csv.text

    async def as_of(instant: datetime) -> dict[str, Any]:
        answer = await writer.get(
            f"/v1/accounts/{alice}/balance", params={"as_of": instant.isoformat()}
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    then, held = await as_of(funded_at), await as_of(held_at)
    assert (then["balance"], then["pending_out"]) == (10000, 0)
    assert (held["balance"], held["pending_out"]) == (10000, 3000)
    now = (await writer.get(f"/v1/accounts/{alice}/balance")).json()
    assert (now["balance"], now["pending_out"]) == (10000 - 1000 - 500, 0)


async def test_refusals_of_tokens_and_scopes_write_nothing(
    api: Api, uid: Callable[[str], str]
) -> None:
    account = uid("acct")
    good = await api.token(uid("admin"), "admin")
    reader = await api.token(uid("auditor"), "read")
    fenced = await api.token(uid("team"), "write", prefix="team-")
    forged = good.rsplit("_", 1)[0] + "_" + "A" * 43
    revoked_token = await api.token(uid("gone"), "write")
    revoked_id = revoked_token.split("_")[1]
    await api.tokens.revoke(revoked_id)
    await asyncio.sleep(0.6)  # the cache's life
    body = {"currency": "USD"}
    cases: list[tuple[str, dict[str, str], int, str]] = [
        ("no header", {}, 401, "Unauthorized"),
        ("wrong scheme", {"Authorization": f"Basic {good}"}, 401, "Unauthorized"),
        ("malformed", {"Authorization": "Bearer lft_nope"}, 401, "Unauthorized"),
        ("unknown id", {"Authorization": "Bearer lft_000000000000_" + "A" * 43}, 401,
         "Unauthorized"),
        ("forged secret", {"Authorization": f"Bearer {forged}"}, 401, "Unauthorized"),
        ("revoked", {"Authorization": f"Bearer {revoked_token}"}, 401, "Unauthorized"),
        ("read scope writes", {"Authorization": f"Bearer {reader}"}, 403, "Forbidden"),
        ("outside prefix", {"Authorization": f"Bearer {fenced}"}, 403, "Forbidden"),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as raw:
        for name, headers, status, error in cases:
            response = await raw.post(
                "/v1/accounts", json=body, headers=headers | {"Idempotency-Key": account}
            )
            assert response.status_code == status, (name, response.text)
            assert response.json()["error"] == error, name
        # Nothing anywhere without a token: not the document, not a route that does not exist.
        for path in ("/openapi.json", "/v1/nowhere", f"/v1/accounts/{account}"):
            _problem(await raw.get(path), 401, "Unauthorized")
    async with api.client(good) as admin:
        _problem(await admin.get(f"/v1/accounts/{account}"), 404, "AccountNotFound")
        _problem(await admin.get("/v1/nowhere"), 404, "RouteNotFound")
        _problem(await admin.delete("/v1/transfers"), 405, "MethodNotAllowed")
        # A write-scoped token may not freeze (admin may).
        await _open(admin, account)
    async with api.client(await api.token(uid("svc"), "write")) as w:
        frozen = await w.post(
            f"/v1/accounts/{account}/freeze", json={"reason": "x"},
            headers={"Idempotency-Key": uid("chg")},
        )  # fmt: skip
        _problem(frozen, 403, "Forbidden")
    async with api.client(good) as admin:
        assert (await admin.get(f"/v1/accounts/{account}")).json()["status"] == "open"
        done = await admin.post(
            f"/v1/accounts/{account}/freeze", json={"reason": "audit"},
            headers={"Idempotency-Key": uid("chg")},
        )  # fmt: skip
        assert done.json()["account_status"] == "frozen", done.text


async def test_malformed_requests_get_their_typed_problem_and_write_nothing(
    api: Api, writer: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    bank, alice = await _funded(writer, uid)
    key = uid("bad")
    good = {"from_account": alice, "to_account": bank, "amount": 100, "currency": "USD"}
    json_headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    big = settings_limit = api.settings.api_max_body_bytes
    cases: list[tuple[str, bytes | None, dict[str, str], int, str]] = [
        ("not JSON", b"{nope", json_headers, 400, "MalformedRequest"),
        ("an array", b"[1, 2]", json_headers, 400, "MalformedRequest"),
        ("NaN", b'{"amount": NaN}', json_headers, 400, "MalformedRequest"),
        ("not UTF-8", b'{"a": "\xff"}', json_headers, 400, "MalformedRequest"),
        ("float amount", json.dumps(good | {"amount": 1.5}).encode(), json_headers, 422,
         "InvalidRequest"),
        ("bool amount", json.dumps(good | {"amount": True}).encode(), json_headers, 422,
         "InvalidRequest"),
        ("negative amount", json.dumps(good | {"amount": -5}).encode(), json_headers, 422,
         "InvalidAmount"),
        ("amount with fractions of a cent", json.dumps(good | {"amount": "1.005"}).encode(),
         json_headers, 422, "InvalidAmount"),
        ("currency a number", json.dumps(good | {"currency": 840}).encode(), json_headers, 422,
         "InvalidRequest"),
        ("unknown currency", json.dumps(good | {"currency": "XXQ"}).encode(), json_headers, 422,
         "UnknownCurrency"),
        ("unknown field", json.dumps(good | {"ammount": 1}).encode(), json_headers, 422,
         "InvalidRequest"),
        ("missing field", json.dumps({"from_account": alice}).encode(), json_headers, 422,
         "InvalidRequest"),
        ("same account", json.dumps(good | {"to_account": alice}).encode(), json_headers, 422,
         "SameAccount"),
        ("no key", json.dumps(good).encode(), {"Content-Type": "application/json"}, 422,
         "InvalidRequest"),
        ("bad key", json.dumps(good).encode(),
         {"Content-Type": "application/json", "Idempotency-Key": "has space"}, 422,
         "InvalidRequest"),
        ("form body", b"a=1", {"Content-Type": "application/x-www-form-urlencoded",
                               "Idempotency-Key": key}, 415, "UnsupportedMediaType"),
        ("huge body", b'{"description": "' + b"x" * big + b'"}', json_headers, 413,
         "PayloadTooLarge"),
    ]  # fmt: skip
    for name, content, headers, status, error in cases:
        response = await writer.post("/v1/transfers", content=content, headers=headers)
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"] == error, (name, response.text)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until too much
        for _ in range(settings_limit // 1024 + 2):
            yield b" " * 1024

    chunked = await writer.post("/v1/transfers", content=chunks(), headers=json_headers)
    _problem(chunked, 413, "PayloadTooLarge")
    bad_time = await writer.get(f"/v1/accounts/{alice}/balance", params={"as_of": "yesterday"})
    _problem(bad_time, 422, "InvalidRequest")
    naive = await writer.get(f"/v1/accounts/{alice}/balance", params={"as_of": "2026-01-01T00:00"})
    _problem(naive, 422, "InvalidRequest")
    # Nothing was recorded under the key: its first valid use is a new transfer.
    first = await writer.post("/v1/transfers", json=good, headers={"Idempotency-Key": key})
    assert first.status_code == 200 and first.json()["status"] == "confirmed", first.text
    shown = (await writer.get(f"/v1/accounts/{alice}")).json()
    assert shown["balance"] == 10000 - 100


async def test_a_token_over_its_rate_is_told_when_to_come_back(
    api: Api, uid: Callable[[str], str]
) -> None:
    async with api.client(await api.token(uid("slow"), "read", rate=1)) as slow:
        answers = [await slow.get(f"/v1/accounts/{uid('a')}") for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [404, 404]  # a burst of twice the rate
    limited = _problem(answers[2], 429, "RateLimited")
    assert int(answers[2].headers["Retry-After"]) >= 1 and limited["retry_after_s"] > 0


async def test_the_served_openapi_document_is_the_checked_in_one(
    api: Api, writer: httpx.AsyncClient
) -> None:
    served = (await writer.get("/openapi.json")).json()
    assert served == document() == json.loads(OPENAPI.read_text()), (
        "docs/openapi.json is stale: `python -m ledgerflow.api.openapi > docs/openapi.json`"
    )
    documented = {(m.upper(), p) for p, ops in served["paths"].items() for m in ops}
    from ledgerflow.api.operations import API_ROUTES

    assert documented == {(r.method, r.path) for r in API_ROUTES}


@pytest.mark.slow
@contextlib.asynccontextmanager
async def _api_process(
    env: dict[str, str], principal: str, scope: str
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.subprocess.Process]]:
    """`ledgerflow token create`, then `ledgerflow api`, as processes: a
    client holding the token, and the server (stopped by SIGTERM, which must
    end it within 20 s)."""
    made = await asyncio.create_subprocess_exec(
        ".venv/bin/ledgerflow", "--json", "token", "create", "--principal", principal,
        "--scope", scope, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(made.communicate(), 60)
    assert made.returncode == 0
    token = json.loads(out)["token"]
    server = await asyncio.create_subprocess_exec(
        ".venv/bin/ledgerflow", "api", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 60)
        assert f":{env['LEDGERFLOW_API_PORT']}" in line.decode()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{env['LEDGERFLOW_API_PORT']}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as client:
            yield client, server
    finally:
        if not await stop_process(server, 20):
            raise AssertionError("`ledgerflow api` did not stop within 20 s of SIGTERM")


async def test_the_api_command_serves_with_a_token_from_the_cli(
    cli_env: dict[str, str], workers: Any, uid: Callable[[str], str]
) -> None:
    env = cli_env | {"LEDGERFLOW_API_PORT": str(find_free_port())}
    async with _api_process(env, uid("ops"), "write") as (client, _):
        opened = await _open(client, uid("cli-acct"))
        assert opened.status_code == 200, opened.text


async def test_a_write_no_worker_answers_is_a_timeout_in_bounded_time_and_sigterm_still_stops(
    cli_env: dict[str, str], uid: Callable[[str], str]
) -> None:
    """Regression: with no worker on its task queue, opening an account waited
    for ever, and SIGTERM then waited for that request (uvicorn's graceful
    shutdown has no bound of its own): `ledgerflow api` never stopped."""
    env = cli_env | {
        "LEDGERFLOW_API_PORT": str(find_free_port()),
        "LEDGERFLOW_TASK_QUEUE_PREFIX": uid("nobody-polls"),
        "LEDGERFLOW_API_CONFIRM_WITHIN_S": "2",
    }
    async with _api_process(env, uid("ops"), "write") as (client, _):
        started = asyncio.get_running_loop().time()
        opened = await _open(client, uid("never"))
        waited = asyncio.get_running_loop().time() - started
        assert opened.status_code == 504, opened.text
        assert opened.json()["type"].endswith("ConfirmationTimeout")
        assert "Idempotency-Key" in opened.json()["detail"]
        assert waited < 10
        # One still waiting when the server is told to stop.
        pending = asyncio.ensure_future(_open(client, uid("never-again")))
        await asyncio.sleep(0.5)
    with contextlib.suppress(httpx.HTTPError):
        await pending


async def test_the_sdk_reading_through_the_api_reads_what_the_databases_hold(
    api: Api, workers: Any, uid: Callable[[str], str]
) -> None:
    """One contract, two read sides: the SDK with `HttpReads` (a read-scoped
    token, no database credentials) and with `DatabaseReads` answer alike."""
    from ledgerflow.api.remote import HttpReads
    from ledgerflow.domain.errors import AccountNotFound
    from ledgerflow.reads import DatabaseReads

    remote = HttpReads(api.url, await api.token(uid("reader"), "read"))
    local = DatabaseReads(api.settings)
    # Writes through Temporal, reads (the SDK's own included) through the API.
    async with LedgerClient(workers, api.settings, reads=remote) as sdk:
        bank, alice, shop = uid("bank"), uid("alice"), uid("shop")
        await sdk.open_account(bank, "USD", overdraft_limit=None)
        await sdk.open_account(alice, "USD")
        await sdk.open_account(shop, "USD", region="eu")
        await sdk.transfer(uid("fund"), bank, alice, "50.00", "USD", initiated_by="t")
        middle = datetime.now(UTC)
        hold = uid("h")
        await sdk.hold(hold, alice, bank, "10.00", "USD", expires_in=600)
        await sdk.capture(hold, "4.00", capture_id="k1")
        await sdk.void(hold)
        await sdk.transfer(uid("far"), alice, shop, "1.00", "USD", initiated_by="t")
        end = datetime.now(UTC) + timedelta(seconds=1)
        try:
            for side in (remote, local):
                with pytest.raises(AccountNotFound):
                    await side.account(uid("nobody"))
                assert await side.hold(uid("nohold")) is None
                assert await side.capture(hold, "never") is None
            start = middle - timedelta(minutes=5)
            for read in (
                lambda s: s.locate(shop),
                lambda s: s.account(alice),
                lambda s: s.balance(alice),
                lambda s: s.balance_as_of(alice, middle),
                lambda s: s.audit(alice, start, end),
                lambda s: s.statement(alice, after_version=1, limit=3),
                lambda s: s.hold(hold),
                lambda s: s.capture(hold, "k1"),
                lambda s: s.release(hold),
            ):
                over_http, direct = await read(remote), await read(local)
                assert over_http == direct
                assert over_http is not None
            assert (await remote.account(alice)).balance == 5000 - 400 - 100
        finally:
            await local.close()


async def test_verify_reconciliation_and_the_archive_over_http(
    api: Api, uid: Callable[[str], str]
) -> None:
    async with api.client(await api.token(uid("auditor"), "read")) as auditor:
        proved = await auditor.get("/v1/verify", params={"region": "eu"})
        assert proved.status_code == 200, proved.text
        report = proved.json()
        assert [r["region"] for r in report["regions"]] == ["eu"]
        assert report["sound"] is True and report["regions"][0]["events_checked"] >= 0
        _problem(await auditor.get("/v1/verify", params={"region": "mars"}), 422, "InvalidRequest")
        archive = await auditor.get("/v1/archive/status")
        assert {r["region"] for r in archive.json()} == set(api.settings.regions)
        missing = await auditor.get("/v1/reconciliation", params={"report_id": uid("none")})
        _problem(missing, 404, "NoReport")


async def test_the_web_ui_decodes_sealed_payloads_through_the_api(
    api: Api, workers: Any, uid: Callable[[str], str]
) -> None:
    """The codec endpoints: the Web UI's preflight, a decode and an encode,
    and the refusals (no token, a fenced token, a malformed body)."""
    from dataclasses import replace

    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payload, Payloads

    from ledgerflow.api.app import web_ui_origins
    from ledgerflow.codec import EncryptionCodec, new_key

    settings = replace(api.settings, codec_keys=f"k1:{new_key()}", codec_key_id="k1")
    codec = EncryptionCodec.from_settings(settings)
    assert codec is not None
    reader = create_engine(settings.reader_url(settings.default_region), settings, pool_size=1)
    app = build_app(
        settings, LedgerClient(workers, settings), Authenticator(PostgresTokens(reader), 1)
    )
    plain_payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"amount": 1250}')
    sealed = json_format.MessageToDict(Payloads(payloads=[codec.seal(plain_payload)]))
    ui = web_ui_origins(settings)[0]
    try:
        token = await api.token(uid("ops"), "read")
        async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as raw:
            preflight = await raw.options("/codec/decode", headers={"Origin": ui})
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == ui
            stranger = await raw.options("/codec/decode", headers={"Origin": "http://evil.test"})
            assert "access-control-allow-origin" not in stranger.headers
            _problem(await raw.post("/codec/decode", json=sealed), 401, "Unauthorized")
            bearer = {"Authorization": f"Bearer {token}", "Origin": ui}
            opened = await raw.post("/codec/decode", json=sealed, headers=bearer)
            assert opened.status_code == 200, opened.text
            assert opened.headers["access-control-allow-origin"] == ui
            back = json_format.ParseDict(opened.json(), Payloads())
            assert back.payloads[0] == plain_payload
            # The Web UI sends the console's cookie, not a token, when told to
            # include credentials; a text/plain body (no preflight) is refused.
            raw.cookies.set(COOKIE, token)
            by_cookie = await raw.post("/codec/decode", json=sealed, headers={"Origin": ui})
            assert by_cookie.json() == opened.json()
            simple = {"Content-Type": "text/plain", "Origin": ui}
            sneaky = await raw.post("/codec/decode", content=json.dumps(sealed), headers=simple)
            _problem(sneaky, 415, "UnsupportedMediaType")
            raw.cookies.clear()
            # Encoding takes write; a token fenced to a prefix may do neither.
            _problem(await raw.post("/codec/encode", json=opened.json(), headers=bearer), 403,
                     "Forbidden")  # fmt: skip
            fenced = await api.token(uid("team"), "write", prefix="team-")
            _problem(await raw.post("/codec/decode", json=sealed,
                                    headers={"Authorization": f"Bearer {fenced}"}), 403,
                     "Forbidden")  # fmt: skip
            writer = {"Authorization": f"Bearer {await api.token(uid('w'), 'write')}"}
            encoded = await raw.post("/codec/encode", json=opened.json(), headers=writer)
            again = json_format.ParseDict(encoded.json(), Payloads())
            assert codec.open(again.payloads[0]) == plain_payload
            bad = await raw.post("/codec/decode", json={"payloads": "nope"}, headers=bearer)
            _problem(bad, 400, "MalformedRequest")
    finally:
        await reader.dispose()


async def test_the_console_needs_a_signed_in_token_and_runs_no_script(
    api: Api, uid: Callable[[str], str]
) -> None:
    """Without a browser (tests/browser has the journeys): the redirects, the
    cookie and the headers."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as raw:
        for path in ("/console", "/console/status", f"/console/accounts/{uid('a')}"):
            refused = await raw.get(path)
            assert (refused.status_code, refused.headers["location"]) == (303, "/console/login")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        bad = await raw.post("/console/login", content=b"token=lft_nope", headers=form)
        assert bad.headers["location"] == "/console/login?failed=1" and COOKIE not in bad.cookies
        token = await api.token(uid("fin"), "read")
        signed = await raw.post("/console/login", content=f"token={token}".encode(), headers=form)
        assert signed.headers["location"] == "/console"
        foreign = await raw.post("/console/login", content=f"token={token}".encode(),
                                 headers=form | {"Origin": "http://evil.test"})  # fmt: skip
        assert foreign.headers["location"] == "/console/login?failed=1"  # login CSRF
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert "max-age=28800" in cookie  # a working day, not until the browser quits
        raw.cookies.set(COOKIE, token)
        home = await raw.get("/console")
        assert home.status_code == 200 and "Find accounts" in home.text
        assert "default-src 'none'" in home.headers["content-security-policy"]
        assert "<script" not in home.text
        # Sign-out is a form's POST: a link another site sends cannot do it.
        assert "<form method=post action=/console/logout>" in home.text
        assert (await raw.get("/console/logout")).status_code in (401, 405)
        out = await raw.post("/console/logout")
        assert out.headers["location"] == "/console/login"
        assert 'lf_console=""' in out.headers["set-cookie"]


async def test_what_an_adversarial_review_found_is_refused(
    api: Api, writer: httpx.AsyncClient, ledger: LedgerClient, uid: Callable[[str], str]
) -> None:
    """Each of these answered wrongly before its fix (helper review, issue 18)."""
    _, alice = await _funded(writer, uid)
    shop, hold = uid("shop"), uid("h")
    await _open(writer, shop)
    body = {"from_account": alice, "to_account": shop, "amount": 1000, "currency": "USD",
            "expires_in": 600}  # fmt: skip
    placed = await writer.post("/v1/holds", json=body, headers={"Idempotency-Key": hold})
    assert placed.json()["status"] == "placed", placed.text
    # 1. The key of an open hold with another body: a conflict, not its placement.
    other = await writer.post("/v1/holds", json=body | {"amount": 999},
                              headers={"Idempotency-Key": hold})  # fmt: skip
    _problem(other, 409, "DuplicateHoldMismatch")
    again = await writer.post("/v1/holds", json=body, headers={"Idempotency-Key": hold})
    assert again.json() == placed.json()
    # 2. A token fenced to the held account's prefix may not move money to
    #    an account outside it by capturing someone else's hold.
    async with api.client(await api.token(uid("fence"), "write", prefix=alice)) as fenced:
        took = await fenced.post(f"/v1/holds/{hold}/captures", json={"amount": 1},
                                 headers={"Idempotency-Key": "c1"})  # fmt: skip
        _problem(took, 403, "Forbidden")
        _problem(await fenced.post(f"/v1/holds/{hold}/void", json={}), 403, "Forbidden")
        # 3. Ledger-wide reports are not for a fenced token.
        for path in ("/v1/verify", "/v1/reconciliation", "/v1/archive/status"):
            _problem(await fenced.get(path), 403, "Forbidden")
    assert (await ledger.hold_state(hold)).captured == 0
    # 4. An overdraft is credit: a write token may not grant it.
    mint = uid("mint")
    _problem(await _open(writer, mint, unlimited_overdraft=True), 403, "Forbidden")
    _problem(await _open(writer, mint, overdraft_limit=10**12), 403, "Forbidden")
    _problem(await writer.get(f"/v1/accounts/{mint}"), 404, "AccountNotFound")
    # 5. Bad input that was a 500.
    for params in ({"limit": "²"}, {"after_version": "⑨"}):
        _problem(await writer.get(f"/v1/accounts/{alice}/statement", params=params), 422,
                 "InvalidRequest")  # fmt: skip
    deep = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    nested = await writer.post("/v1/transfers", content=deep,
                               headers={"Content-Type": "application/json",
                                        "Idempotency-Key": uid("deep")})  # fmt: skip
    _problem(nested, 400, "MalformedRequest")
    ancient = await writer.get(f"/v1/accounts/{alice}/balance",
                               params={"as_of": "0001-01-01T00:00:00+14:00"})  # fmt: skip
    _problem(ancient, 422, "InvalidRequest")
    # 6. The key of an account with other metadata: a conflict, not the
    #    account as it was (the SDK compared currency, region and overdraft).
    tagged = uid("tagged")
    first = await _open(writer, tagged, metadata={"cost_centre": "ops"})
    assert first.status_code == 200, first.text
    _problem(await _open(writer, tagged, metadata={"cost_centre": "sales"}), 409,
             "AccountAlreadyExists")  # fmt: skip
    _problem(await _open(writer, tagged), 409, "AccountAlreadyExists")
    assert (await _open(writer, tagged, metadata={"cost_centre": "ops"})).json() == first.json()


async def test_the_api_bench_posts_over_both_paths_and_reports(
    api: Api, ledger: LedgerClient, uid: Callable[[str], str]
) -> None:
    from ledgerflow.bench.api import api_bench

    lines: list[str] = []
    report = await api_bench(ledger, api.url, await api.token(uid("bench"), "write"), 4,
                             lines.append)  # fmt: skip
    assert report.count == 4 and 0 < report.api_p50_ms <= report.api_p99_ms
    assert 0 < report.sdk_p50_ms <= report.sdk_p99_ms
    assert report.added_p50_ms == report.api_p50_ms - report.sdk_p50_ms
    assert lines and "of each" in lines[-1]


async def test_a_transfer_that_timed_out_answers_its_one_outcome_when_sent_again(
    api: Api, writer: httpx.AsyncClient, ledger: LedgerClient, workers: Any, engines: Any,
    uid: Callable[[str], str],
) -> None:  # fmt: skip
    """The deadline path: a transfer no worker answers yet is `504`; the
    workflow goes on; once a worker polls, the same key answers the outcome,
    and the money moved once (not once per attempt)."""
    from dataclasses import replace

    from ledgerflow.workers.regional import build_worker

    _, alice = await _funded(writer, uid)
    shop, key = uid("shop"), uid("late")
    await _open(writer, shop)
    stalled = replace(api.settings, task_queue_prefix=uid("later"),
                      api_confirm_within=timedelta(seconds=1))  # fmt: skip
    body = {"from_account": alice, "to_account": shop, "amount": 700, "currency": "USD"}
    async with (
        serve_api(stalled, workers) as late,
        late.client(await late.token(uid("svc"), "write")) as client,
    ):
        first = await client.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
        _problem(first, 504, "ConfirmationTimeout")
        _problem(await client.post("/v1/transfers", json=body,
                                   headers={"Idempotency-Key": key}), 504,
                 "ConfirmationTimeout")  # fmt: skip
        async with build_worker(workers, stalled, "us", engines["us"]):
            for _ in range(20):
                again = await client.post("/v1/transfers", json=body,
                                          headers={"Idempotency-Key": key})  # fmt: skip
                if again.status_code != 504:
                    break
            assert again.status_code == 200 and again.json()["status"] == "confirmed"
            other = await client.post("/v1/transfers", json=body | {"amount": 701},
                                      headers={"Idempotency-Key": key})  # fmt: skip
            _problem(other, 409, "DuplicateTransferMismatch")
    assert (await ledger.account(shop)).balance == 700
    assert [line.transfer_id for line in await ledger.statement(shop)].count(key) == 1
