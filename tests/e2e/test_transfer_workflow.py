"""TransferWorkflow end to end: SDK client → real Temporal → regional worker →
real PostgreSQL, and back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from ledgerflow import search_attributes as sa
from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import (
    AccountAlreadyExists,
    AccountClosed,
    AccountNotFound,
    ConfirmationTimeout,
    CurrencyMismatch,
    DuplicateTransferMismatch,
    InsufficientFunds,
    LedgerError,
)
from ledgerflow.domain.model import TransferRequest, TransferResult
from ledgerflow.workflows.transfer import TransferWorkflow
from tests.support import count_rows, eventually, postings

Ids = Callable[[str], str]


async def funded_pair(ledger: LedgerClient, uid: Ids, amount: str = "100.00") -> tuple[str, str]:
    bank, a, b = uid("bank"), uid("alice"), uid("bob")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(a, "USD")
    await ledger.open_account(b, "USD")
    await ledger.transfer(uid("fund"), bank, a, amount, "USD", initiated_by="treasury")
    return a, b


async def test_a_transfer_is_confirmed_posted_projected_and_visible_in_temporal(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    tid = uid("t")
    result = await ledger.transfer(
        tid, a, b, "12.50", "USD", initiated_by="alice", description="lunch"
    )
    assert result.status == "confirmed"
    assert (result.from_balance_after, result.to_balance_after) == (8750, 1250)
    assert result.confirmed_at is not None and result.region == "us"
    assert await postings(engines["us"], tid) == 2

    # Read your writes: a local transfer is projected before its caller is answered.
    assert (await ledger.balance(b)).balance == 1250
    lines = await ledger.statement(b)
    assert [(x.type, x.amount, x.balance_after) for x in lines] == [
        ("AccountOpened", 0, 0),
        ("Credited", 1250, 1250),
    ]
    assert lines[1].counterparty == a and lines[1].description == "lunch"

    handle = workers.get_workflow_handle_for(TransferWorkflow.run, f"transfer-{tid}")
    status = await handle.query(TransferWorkflow.status)
    assert status.status == "confirmed" and status.summary == f"12.50 USD {a} → {b}"
    described = await handle.describe()
    attributes = described.typed_search_attributes
    assert attributes.get(sa.FROM_ACCOUNT) == a
    assert attributes.get(sa.TO_ACCOUNT) == b
    assert attributes.get(sa.AMOUNT) == 1250
    assert attributes.get(sa.CURRENCY) == "USD"
    assert attributes.get(sa.REGION) == "us"
    assert attributes.get(sa.STATUS) == "confirmed"
    assert await described.static_summary() == f"12.50 USD {a} → {b}"
    assert await handle.result() == result

    # Operators filter on these attributes in the Web UI; visibility is eventual.
    async def listed() -> bool:
        query = f'LedgerFromAccount = "{a}" AND LedgerStatus = "confirmed"'
        return [w.id async for w in workers.list_workflows(query)] == [f"transfer-{tid}"]

    await eventually(listed)


async def test_plain_execute_workflow_works_without_the_sdk(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    tid = uid("raw")
    result = await workers.execute_workflow(
        TransferWorkflow.run,
        TransferRequest(tid, a, b, 300, "USD", initiated_by="script"),
        id=f"transfer-{tid}",
        task_queue=ledger.settings.task_queue("us"),
    )
    assert isinstance(result, TransferResult)
    assert (result.status, result.from_balance_after) == ("confirmed", 9700)
    # The region attribute is set by the workflow itself when a client did not.
    described = await workers.get_workflow_handle(f"transfer-{tid}").describe()
    assert described.typed_search_attributes.get(sa.REGION) == "us"


async def test_resubmitting_an_id_returns_the_first_result_and_never_posts_twice(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    tid = uid("t")
    first = await ledger.transfer(tid, a, b, "10.00", "USD", initiated_by="alice")
    await ledger.temporal.get_workflow_handle(f"transfer-{tid}").result()  # closed
    again = await ledger.transfer(tid, a, b, "10.00", "USD", initiated_by="alice")
    assert again == first
    concurrent = await asyncio.gather(
        *(ledger.transfer(tid, a, b, 1000, "USD", initiated_by="alice") for _ in range(5))
    )
    assert all(r == first for r in concurrent)
    with pytest.raises(DuplicateTransferMismatch):
        await ledger.transfer(tid, a, b, "10.01", "USD", initiated_by="alice")
    assert await postings(engines["us"], tid) == 2
    assert (await ledger.account(a)).balance == 9000


async def test_concurrent_first_submissions_of_one_id_post_once(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    tid = uid("race")
    results = await asyncio.gather(
        *(ledger.transfer(tid, a, b, 500, "USD", initiated_by="alice") for _ in range(8))
    )
    assert len({r.debit_event_id for r in results}) == 1
    assert await postings(engines["us"], tid) == 2
    assert (await ledger.account(a)).balance == 9500


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("insufficient", InsufficientFunds),
        ("unknown_target", AccountNotFound),
        ("unknown_source", AccountNotFound),
        ("currency", CurrencyMismatch),
        ("closed", AccountClosed),
    ],
)
async def test_a_rejected_transfer_posts_nothing_and_is_recorded_with_its_reason(
    ledger: LedgerClient,
    workers: Client,
    engines: dict[str, AsyncEngine],
    owner_engine: AsyncEngine,
    uid: Ids,
    case: str,
    error: type[LedgerError],
) -> None:
    a, b = await funded_pair(ledger, uid)
    eur = uid("eur")
    await ledger.open_account(eur, "EUR")
    if case == "closed":  # b is empty: it closes (an event of its own)
        await ledger.close_account(b, reason="test", initiated_by="ops")
    source, target, amount, currency = {
        "insufficient": (a, b, "100.01", "USD"),
        "unknown_target": (a, uid("ghost"), "1.00", "USD"),
        "unknown_source": (uid("ghost"), b, "1.00", "USD"),
        "currency": (a, eur, "1.00", "USD"),
        "closed": (a, b, "1.00", "USD"),
    }[case]
    tid = uid("t")
    events_before = await count_rows(engines["us"], "events")
    with pytest.raises(error) as caught:
        await ledger.transfer(tid, source, target, amount, currency, initiated_by="alice")
    assert caught.value.message
    assert await count_rows(engines["us"], "events") == events_before
    assert (await ledger.account(a)).balance == 10000
    async with engines["us"].connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, reason_type, reason FROM transfers WHERE transfer_id = :t"),
                {"t": tid},
            )
        ).one()
    assert (row.status, row.reason_type) == ("rejected", error.type)
    assert row.reason == caught.value.message
    # The workflow completes with the rejection as its result (not a failure),
    # and the Web UI can filter rejected transfers.
    result = await workers.get_workflow_handle_for(TransferWorkflow.run, f"transfer-{tid}").result()
    assert (result.status, result.reason_type) == ("rejected", error.type)
    not_raised = await ledger.transfer(
        tid, source, target, amount, currency, initiated_by="alice", raise_on_rejection=False
    )
    assert not_raised == result


async def test_start_transfer_returns_a_handle_to_the_running_workflow(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    tid = uid("async")
    handle = await ledger.start_transfer(tid, a, b, "1.00", "USD", initiated_by="batch")
    assert handle.id == f"transfer-{tid}"
    result = await handle.result()
    assert (result.status, result.to_balance_after) == ("confirmed", 100)
    # After `result()` the workflow has also projected: the read model is current.
    assert (await ledger.balance(b)).balance == 100
    assert await postings(engines["us"], tid) == 2


async def test_a_finished_transfer_id_cannot_post_again_in_another_region(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    bank_eu, carol = uid("bank-eu"), uid("carol")
    await ledger.open_account(bank_eu, "USD", region="eu", overdraft_limit=None)
    await ledger.open_account(carol, "USD", region="eu")
    tid = uid("t")
    first = await ledger.transfer(tid, a, b, "5.00", "USD", initiated_by="alice")
    await ledger.temporal.get_workflow_handle(f"transfer-{tid}").result()  # closed
    with pytest.raises(DuplicateTransferMismatch):
        await ledger.transfer(tid, bank_eu, carol, "9.99", "USD", initiated_by="mallory")
    # The same payload routed elsewhere still answers with the original outcome.
    again = await ledger.transfer(tid, a, b, "5.00", "USD", initiated_by="alice", region="ap")
    assert again == first
    assert [await postings(engines[r], tid) for r in ("us", "eu", "ap")] == [2, 0, 0]


async def test_a_raw_rerun_with_another_payload_fails_typed_even_when_it_would_be_refused(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    tid = uid("t")
    await ledger.transfer(tid, a, b, "5.00", "USD", initiated_by="alice")
    handle = workers.get_workflow_handle_for(TransferWorkflow.run, f"transfer-{tid}")
    await handle.result()
    # A plain client re-runs the closed id (default reuse policy) with an amount
    # that also fails validation: the recorded transfer decides, typed.
    with pytest.raises(WorkflowFailureError) as caught:
        await workers.execute_workflow(
            TransferWorkflow.run,
            TransferRequest(tid, a, b, 10**6, "USD", initiated_by="alice"),
            id=f"transfer-{tid}",
            task_queue=ledger.settings.task_queue("us"),
        )
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "DuplicateTransferMismatch"
    described = await workers.get_workflow_handle(f"transfer-{tid}").describe()
    assert described.typed_search_attributes.get(sa.STATUS) == "failed"
    assert await postings(engines["us"], tid) == 2


async def test_an_account_id_opens_in_one_region_only(ledger: LedgerClient, uid: Ids) -> None:
    x = uid("x")
    opened = await ledger.open_account(x, "USD", region="us")
    assert await ledger.open_account(x, "USD", region="us") == opened
    fresh = LedgerClient(ledger.temporal, ledger.settings)  # no cached home region
    try:
        with pytest.raises(AccountAlreadyExists):
            await fresh.open_account(x, "EUR", region="eu")
        with pytest.raises(AccountAlreadyExists):
            await fresh.open_account(x, "EUR", region="us")
        assert await fresh.locate(x) == "us"
    finally:
        await fresh.close()


async def test_no_confirmation_in_time_is_a_typed_timeout(ledger: LedgerClient, uid: Ids) -> None:
    a, b = await funded_pair(ledger, uid)
    # Nobody serves this task queue, as when a region's workers are all down.
    unserved = LedgerClient(
        ledger.temporal, replace(ledger.settings, task_queue_prefix=uid("nobody"))
    )
    tid = uid("t")
    try:
        with pytest.raises(ConfirmationTimeout, match="resubmit the same id"):
            await unserved.transfer(tid, a, b, 100, "USD", initiated_by="alice",
                                    confirm_within=1.0)  # fmt: skip
    finally:
        await unserved.close()
        # Not left waiting on a queue nobody serves.
        await ledger.temporal.get_workflow_handle(f"transfer-{tid}").terminate("test over")
    assert (await ledger.account(a)).balance == 10000


async def test_start_transfer_refuses_a_handle_to_another_transfer_under_the_same_id(
    ledger: LedgerClient, uid: Ids
) -> None:
    a, b = await funded_pair(ledger, uid)
    tid = uid("t")
    handle = await ledger.start_transfer(tid, a, b, "1.00", "USD", initiated_by="batch")
    again = await ledger.start_transfer(tid, a, b, "1.00", "USD", initiated_by="batch")
    assert again.id == handle.id
    with pytest.raises(DuplicateTransferMismatch):
        await ledger.start_transfer(tid, a, b, "2.00", "USD", initiated_by="batch")
    await handle.result()
    with pytest.raises(DuplicateTransferMismatch):  # closed: the same check holds
        await ledger.start_transfer(tid, a, b, "2.00", "USD", initiated_by="batch")
    same = await ledger.start_transfer(tid, a, b, "1.00", "USD", initiated_by="batch")
    assert (await same.result()).confirmed
