"""Cross-region transfers end to end: a saga through clearing accounts, with
the source leg in the debited account's region and the destination leg run by
the destination region's worker (docs/ARCHITECTURE.md section 2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from ledgerflow import search_attributes as sa
from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import CurrencyMismatch, InvalidRequest
from ledgerflow.domain.model import TransferStatus, clearing_account_id, reversal_id
from tests.support import postings

Ids = Callable[[str], str]


async def balance_of(engine: AsyncEngine, account_id: str) -> int:
    """The account's balance as its events add up (not the write model's copy)."""
    async with engine.connect() as conn:
        value = (
            await conn.execute(
                text("SELECT coalesce(sum(amount), 0) FROM events WHERE account_id = :a"),
                {"a": account_id},
            )
        ).scalar_one()
    return int(value)


async def funded(ledger: LedgerClient, uid: Ids, region: str, amount: str = "100.00") -> str:
    bank, account = uid(f"bank-{region}"), uid(f"acc-{region}")
    await ledger.open_account(bank, "USD", region=region, overdraft_limit=None)
    await ledger.open_account(account, "USD", region=region)
    await ledger.transfer(uid(f"fund-{region}"), bank, account, amount, "USD", initiated_by="t")
    return account


async def test_a_cross_region_transfer_posts_both_legs_through_clearing_accounts(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    alice = await funded(ledger, uid, "us")
    bob = uid("bob-eu")
    await ledger.open_account(bob, "USD", region="eu")
    us_eu, eu_us = clearing_account_id("us", "eu", "USD"), clearing_account_id("eu", "us", "USD")
    before = await balance_of(engines["us"], us_eu) + await balance_of(engines["eu"], eu_us)
    tid = uid("x")

    result = await ledger.transfer(tid, alice, bob, "30.00", "USD", initiated_by="alice")

    assert result.status == TransferStatus.CONFIRMED
    assert (result.region, result.to_region) == ("us", "eu")
    assert (result.from_balance_after, result.to_balance_after) == (7000, 3000)
    # Each region posted one balanced leg of the transfer under its id.
    assert await postings(engines["us"], tid) == 2
    assert await postings(engines["eu"], tid) == 2
    assert await balance_of(engines["us"], alice) == 7000
    assert await balance_of(engines["eu"], bob) == 3000
    # The two clearing accounts of the pair still net to zero.
    after = await balance_of(engines["us"], us_eu) + await balance_of(engines["eu"], eu_us)
    assert after == before
    # Resubmitting posts nothing more and answers the same.
    assert await ledger.transfer(tid, alice, bob, "30.00", "USD", initiated_by="alice") == result
    assert await postings(engines["us"], tid) == 2 and await postings(engines["eu"], tid) == 2
    handle = workers.get_workflow_handle(f"transfer-{tid}")
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.STATUS) == TransferStatus.CONFIRMED
    async with engines["eu"].connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT kind, peer_region, from_account FROM transfers WHERE transfer_id = :t"
                ),
                {"t": tid},
            )
        ).one()
    assert tuple(row) == ("inbound", "us", eu_us)


async def test_a_destination_that_refuses_for_good_gets_the_source_leg_reversed(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    alice = await funded(ledger, uid, "us")
    euro = uid("euro-ap")
    await ledger.open_account(euro, "EUR", region="ap")
    tid = uid("x")

    with pytest.raises(CurrencyMismatch):
        await ledger.transfer(tid, alice, euro, "40.00", "USD", initiated_by="alice")
    result = await ledger.transfer(
        tid, alice, euro, "40.00", "USD", initiated_by="alice", raise_on_rejection=False
    )

    assert result.status == TransferStatus.REVERSED
    assert result.reason_type == "CurrencyMismatch" and result.from_balance_after == 10000
    assert await balance_of(engines["us"], alice) == 10000
    # Source leg and its reversal in us, the refusal recorded (not posted) in ap.
    assert await postings(engines["us"], tid) == 2
    assert await postings(engines["us"], reversal_id(tid)) == 2
    assert await postings(engines["ap"], tid) == 0
    async with engines["ap"].connect() as conn:
        status = (
            await conn.execute(
                text("SELECT status FROM transfers WHERE transfer_id = :t"), {"t": tid}
            )
        ).scalar_one()
    assert status == "rejected"
    assert await balance_of(engines["us"], clearing_account_id("us", "ap", "USD")) == (
        -await balance_of(engines["ap"], clearing_account_id("ap", "us", "USD"))
    )


async def test_clearing_accounts_are_the_ledgers_own(ledger: LedgerClient, uid: Ids) -> None:
    alice = await funded(ledger, uid, "us")
    with pytest.raises(InvalidRequest, match="reserved"):
        await ledger.open_account(clearing_account_id("us", "zz", "USD"), "USD")
    with pytest.raises(InvalidRequest, match="reserved"):
        await ledger.transfer(
            uid("x"), clearing_account_id("us", "eu", "USD"), alice, 1, "USD", initiated_by="m"
        )
