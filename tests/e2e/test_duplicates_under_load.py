"""Every submitter of one transfer id gets the same typed outcome, however
busy the server (issue 12, finding 6): concurrent first submissions of an
id, local and cross-region, right behind a burst of other transfers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.client import LedgerClient
from tests.support import postings

Ids = Callable[[str], str]


@pytest.mark.parametrize(
    ("submitters", "to_region"), [("one client", "us"), ("a client each", "eu")]
)
async def test_twenty_concurrent_submissions_behind_a_burst_all_get_the_one_outcome(
    ledger: LedgerClient,
    engines: dict[str, AsyncEngine],
    uid: Ids,
    to_region: str,
    submitters: str,
) -> None:
    """ "A client each" is twenty services submitting the same id: nothing in
    one process can coalesce them, so each races the others on the server."""
    bank, alice, bob = uid("bank"), uid("alice"), uid("bob")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    await ledger.open_account(bob, "USD", region=to_region)
    burst = [
        ledger.transfer(uid(f"burst{n}"), bank, alice, 1, "USD", initiated_by="load")
        for n in range(200)
    ]
    tid = uid("dup")
    same = [ledger.transfer(tid, bank, bob, "2.50", "USD", initiated_by="dup") for _ in range(20)]
    results = await asyncio.gather(*burst, *same, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    outcomes = results[200:]
    assert all(r == outcomes[0] for r in outcomes)
    assert await postings(engines["us"], tid) == 2
    assert await postings(engines[to_region], tid) == 2
