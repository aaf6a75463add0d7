"""The console's main journeys in headless Chromium (Debian's `chromium`,
driven by Playwright), against the real app over the test servers. `make
browser` runs them (`.ci/run` installs the browser first); they also make the
screenshots in docs/ (docs/console-*.png)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio
from playwright.async_api import Browser, Page

from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from tests.tools.api_server import Api, serve_api

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest_asyncio.fixture(scope="session")
async def api(migrated: Settings, workers: Any) -> AsyncIterator[Api]:
    async with serve_api(migrated, workers) as served:
        yield served


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 900},
                                        accept_downloads=True)  # fmt: skip
    opened = await context.new_page()
    yield opened
    await context.close()


async def sign_in(page: Page, api: Api, token: str) -> None:
    await page.goto(f"{api.url}/console")
    assert page.url.endswith("/console/login")  # not signed in: sent to sign in
    await page.fill("input[name=token]", token)
    await page.click("button")
    await page.wait_for_url(f"{api.url}/console")


async def test_finance_finds_an_account_and_reads_its_balances_holds_and_past(
    api: Api, ledger: LedgerClient, page: Page, uid: Callable[[str], str]
) -> None:
    prefix = uid("acme")
    bank, shop, cafe = f"{prefix}-bank", f"{prefix}-shop", f"{prefix}-cafe"
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(shop, "USD")
    await ledger.open_account(cafe, "USD")
    for n, amount in enumerate(("120.00", "35.50", "250.00", "12.25")):
        await ledger.transfer(f"{prefix}-t{n}", bank, shop, amount, "USD", initiated_by="ops")
        await asyncio.sleep(0.3)
    # The picker has whole seconds: a second clear of both sides.
    await asyncio.sleep(1.1)
    before_hold = datetime.now(UTC)
    await asyncio.sleep(1.1)
    await ledger.hold(f"{prefix}-h", shop, cafe, "40.00", "USD", expires_in=3600)

    # A bad token first: refused, still outside.
    await page.goto(f"{api.url}/console/login")
    await page.fill("input[name=token]", "lft_000000000000_" + "A" * 43)
    await page.click("button")
    assert "not accepted" in await page.content()
    await sign_in(page, api, await api.token(uid("finance"), "read"))

    await page.fill("input[name=q]", prefix)
    await page.click("main button")
    rows = page.locator("table tr td:first-child a")
    assert sorted(await rows.all_inner_texts()) == sorted([bank, shop, cafe])
    await page.screenshot(path=str(DOCS / "console-accounts.png"), full_page=True)

    await page.click(f"text={shop}")
    await page.wait_for_url(f"**/console/accounts/{shop}")
    assert await page.inner_text("#posted") == "417.75 USD"
    assert await page.inner_text("#available") == "377.75 USD"
    assert await page.locator("svg[aria-label='balance over time'] path").count() == 1
    statement = page.locator("#statement tr")
    assert await statement.count() == 1 + 1 + 4 + 1  # header, opened, four credits, the hold
    hold_link = page.locator(f"a:has-text('{prefix}-h')")
    assert "hold-" in (await hold_link.get_attribute("href") or "")
    await page.screenshot(path=str(DOCS / "console-account.png"), full_page=True)

    # The point-in-time picker: before the hold, nothing was pending.
    await page.fill("input[name=as_of]", before_hold.strftime("%Y-%m-%dT%H:%M:%S"))
    await page.click("form:has(input[name=as_of]) button")
    card = await page.inner_text("#as-of")
    assert "417.75 USD" in card and "pending out 0.00 USD" in card

    # The audit trail, exported.
    async with page.expect_download() as downloading:
        await page.click("text=Export CSV")
    download = await downloading.value
    exported = await asyncio.to_thread(Path(await download.path()).read_text)
    assert f"{prefix}-t3" in exported and ",1225," in exported and ",41775," in exported


async def test_audit_proves_the_regions_and_reads_reconciliation_then_signs_out(
    api: Api, page: Page, uid: Callable[[str], str]
) -> None:
    await sign_in(page, api, await api.token(uid("auditor"), "read"))
    await page.click("text=Reconciliation")
    text = await page.inner_text("main")
    assert "No reconciliation has run yet" in text or "discrepancies" in text
    await page.click("text=Verify and archive")
    await page.click("text=Verify every region")
    await page.wait_for_selector("#verify")
    verdicts = await page.locator("#verify tr td:nth-child(2)").all_inner_texts()
    assert len(verdicts) == len(api.settings.regions) and set(verdicts) <= {"sound", "NOT SOUND"}
    await page.screenshot(path=str(DOCS / "console-verify.png"), full_page=True)
    await page.click("text=Sign out")
    await page.wait_for_url(f"{api.url}/console/login")
    await page.goto(f"{api.url}/console")
    assert page.url.endswith("/console/login")


async def test_a_fenced_token_sees_only_its_accounts(
    api: Api, ledger: LedgerClient, page: Page, uid: Callable[[str], str]
) -> None:
    team = uid("team")
    await ledger.open_account(f"{team}-a", "USD")
    other = uid("other")
    await ledger.open_account(other, "USD")
    await sign_in(page, api, await api.token(uid("t"), "read", prefix=team))
    await page.goto(f"{api.url}/console/accounts/{other}")
    assert "Forbidden" in await page.inner_text("h1")
    await page.goto(f"{api.url}/console?q={team}")
    assert await page.locator("table tr td:first-child a").all_inner_texts() == [f"{team}-a"]
