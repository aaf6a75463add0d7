"""Holds toward another region's account, end to end on the real servers: a
hold lives in the held account's region, and each capture travels through
the cross-region saga (source leg here, destination leg there, the amount
returned if the destination refuses for good). Through the SDK, the plain
Temporal client (a raw start with and without `to_region`, a re-run of the
closed id) and concurrent duplicates of one capture id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError

from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import AccountClosed, DuplicateHoldMismatch, HoldNotOpen
from ledgerflow.domain.holds import HoldRequest, hold_workflow_id
from ledgerflow.domain.model import clearing_account_id, reversal_id
from ledgerflow.workflows.hold import HoldWorkflow
from tests.e2e.test_cross_region import balance_of
from tests.support import cli, eventually, postings

Ids = Callable[[str], str]


async def funded(ledger: LedgerClient, uid: Ids, amount: str = "100.00") -> str:
    bank, alice = uid("bank-us"), uid("alice-us")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    await ledger.transfer(uid("fund"), bank, alice, amount, "USD", initiated_by="ops")
    return alice


async def clearing_net(engines: dict[str, AsyncEngine]) -> int:
    return await balance_of(engines["us"], clearing_account_id("us", "eu", "USD")) + (
        await balance_of(engines["eu"], clearing_account_id("eu", "us", "USD"))
    )


async def test_a_capture_toward_another_region_arrives_there_once(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    alice = await funded(ledger, uid)
    shop = uid("shop-eu")
    await ledger.open_account(shop, "USD", region="eu")
    net_before = await clearing_net(engines)
    hid = uid("h")
    placed = await ledger.hold(hid, alice, shop, "60.00", "USD", expires_in=3600,
                               initiated_by="pos")  # fmt: skip
    assert (placed.region, placed.to_region) == ("us", "eu")
    first = await ledger.capture(hid, "25.00", capture_id="c1", initiated_by="pos")
    assert (first.status, first.to_region, first.from_balance_after) == ("captured", "eu", 7500)
    assert first.to_task_queue is None  # routing stays inside the workflow
    posting = f"{hid}/capture/c1"
    assert await postings(engines["us"], posting) == 2  # alice → clearing for eu
    assert await postings(engines["eu"], posting) == 2  # clearing for us → shop
    assert await balance_of(engines["eu"], shop) == 2500
    # Five concurrent re-sends of the capture id: one posting in each region.
    again = await asyncio.gather(
        *(ledger.capture(hid, "25.00", capture_id="c1", initiated_by="pos") for _ in range(5))
    )
    assert {a.capture_id for a in again} == {"c1"} and all(a.status == "captured" for a in again)
    assert await postings(engines["us"], posting) == 2
    assert await postings(engines["eu"], posting) == 2
    balance = await ledger.balance(alice)
    assert (balance.balance, balance.pending_out, balance.available) == (7500, 3500, 4000)
    await eventually(lambda: _balance_is(ledger, shop, 2500))
    await ledger.void(hid)
    state = await ledger.hold_state(hid)
    assert (state.status, state.captured, state.reversed, state.to_region) == (
        "voided", 2500, 0, "eu")  # fmt: skip
    # The clearing pair nets to zero once the capture settled.
    assert await clearing_net(engines) == net_before
    # A re-send after the hold ended answers from the store, still once.
    closed = await ledger.capture(hid, "25.00", capture_id="c1", initiated_by="pos")
    assert (closed.status, closed.to_region) == ("captured", "eu")
    assert await postings(engines["eu"], posting) == 2


async def _balance_is(ledger: LedgerClient, account_id: str, amount: int) -> bool:
    return (await ledger.balance(account_id)).balance == amount


async def test_a_capture_the_destination_refuses_comes_back_once_and_stands(
    ledger: LedgerClient,
    workers: Client,
    engines: dict[str, AsyncEngine],
    uid: Ids,
    cli_env: dict[str, str],
) -> None:
    alice = await funded(ledger, uid)
    carol = uid("carol-eu")
    await ledger.open_account(carol, "USD", region="eu")
    net_before = await clearing_net(engines)
    hid = uid("h")
    await ledger.hold(hid, alice, carol, "60.00", "USD", expires_in=3600)
    # The target closes in its region after the hold was placed in ours.
    await ledger.close_account(carol, reason="merchant left", change_id="close")
    with pytest.raises(AccountClosed) as refused:
        await ledger.capture(hid, "30.00", capture_id="c1")
    assert "refused the capture" in str(refused.value) and "returned" in str(refused.value)
    posting = f"{hid}/capture/c1"
    assert await postings(engines["us"], posting) == 2
    assert await postings(engines["us"], reversal_id(posting)) == 2
    assert await postings(engines["eu"], posting) == 0  # refused there: nothing posted
    # The refusal stands for the id, also with the workflow still open, and
    # nothing is returned twice.
    with pytest.raises(AccountClosed):
        await ledger.capture(hid, "30.00", capture_id="c1")
    assert await postings(engines["us"], reversal_id(posting)) == 2
    balance = await ledger.balance(alice)
    assert (balance.balance, balance.pending_out) == (10000, 3000)  # back, no longer held
    state = await ledger.hold_state(hid)
    assert (state.status, state.captured, state.reversed, state.remaining) == (
        "open", 3000, 3000, 3000)  # fmt: skip
    code, out, _ = await cli(cli_env, "hold", "show", hid)
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[-2:] == ["TO_REGION", "REVERSED"] and row.split()[-3:] == [
        "eu",
        "30.00",
        "USD",
    ]
    recorded = await ledger.reads.capture(hid, "c1")
    assert recorded is not None and (recorded.status, recorded.reason_type) == (
        "reversed", "AccountClosed")  # fmt: skip
    # The destination's audit trail has the refused leg recorded.
    async with engines["eu"].connect() as conn:
        there = (
            await conn.execute(
                text("SELECT status, kind, reason_type FROM transfers WHERE transfer_id = :t"),
                {"t": posting},
            )
        ).one()
    assert tuple(there) == ("rejected", "inbound", "AccountClosed")
    await ledger.void(hid)
    with pytest.raises(AccountClosed):  # after the workflow closed: the store answers
        await ledger.capture(hid, "30.00", capture_id="c1")
    assert await clearing_net(engines) == net_before
    assert await balance_of(engines["us"], alice) == 10000


async def test_the_plain_client_cannot_route_a_hold_around_the_saga(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    alice = await funded(ledger, uid)
    shop = uid("shop-eu")
    await ledger.open_account(shop, "USD", region="eu")
    queue = ledger.settings.task_queue("us")
    # A raw start without `to_region`: the target is no account of us, so
    # the hold is refused there, recorded, and can never be captured.
    bare = uid("bare")
    ended = await workers.execute_workflow(
        HoldWorkflow.run, HoldRequest(bare, alice, shop, "5.00", "USD", "script", 60),
        id=hold_workflow_id(bare), task_queue=queue,
    )  # fmt: skip
    assert (ended.status, ended.reason_type) == ("refused", "AccountNotFound")
    with pytest.raises(HoldNotOpen):
        await ledger.capture(bare, "5.00")
    # A region that is not the ledger's: refused as malformed, nothing recorded.
    nowhere = uid("nowhere")
    with pytest.raises(WorkflowFailureError) as caught:
        await workers.execute_workflow(
            HoldWorkflow.run,
            HoldRequest(nowhere, alice, shop, "5.00", "USD", "script", 60, to_region="mars"),
            id=hold_workflow_id(nowhere), task_queue=queue,
        )  # fmt: skip
    assert getattr(caught.value.cause, "type", None) == "InvalidRequest"
    assert await ledger.reads.hold(nowhere) is None
    # A raw start with it works like the SDK; a re-run of the closed id, or
    # the same id routed elsewhere, posts nothing more.
    raw = uid("raw")
    request = HoldRequest(raw, alice, shop, "5.00", "USD", "script", 3600, to_region="eu")
    handle = await workers.start_workflow(
        HoldWorkflow.run, request, id=hold_workflow_id(raw), task_queue=queue
    )
    await eventually(lambda: _is_open(ledger, raw))
    captured = await ledger.capture(raw, "5.00", capture_id="all")
    assert captured.status == "captured"
    assert (await handle.result()).status == "captured"
    rerun = await workers.execute_workflow(
        HoldWorkflow.run, request, id=hold_workflow_id(raw), task_queue=queue
    )
    assert (rerun.status, rerun.captured) == ("captured", 500)
    local = HoldRequest(raw, alice, shop, "5.00", "USD", "script", 3600)  # to_region dropped
    with pytest.raises(WorkflowFailureError) as caught:
        await workers.execute_workflow(
            HoldWorkflow.run, local, id=hold_workflow_id(raw), task_queue=queue
        )
    assert getattr(caught.value.cause, "type", None) == "DuplicateHoldMismatch"
    with pytest.raises(DuplicateHoldMismatch):  # the SDK routes it to eu: another amount
        await ledger.hold(raw, alice, shop, "6.00", "USD", expires_in=3600, initiated_by="script")
    assert await postings(engines["eu"], f"{raw}/capture/all") == 2
    assert await balance_of(engines["eu"], shop) == 500
    assert (await ledger.balance(alice)).balance == 9500


async def _is_open(ledger: LedgerClient, hold_id: str) -> bool:
    try:
        return (await ledger.hold_state(hold_id)).open
    except Exception:
        return False
