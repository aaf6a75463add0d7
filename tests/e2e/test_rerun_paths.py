"""Re-runs of closed transfer ids through the plain Temporal client, as the
README documents it (`execute_workflow(TransferWorkflow.run, ...)` with the
default id reuse policy, which lets a closed id run again).

The outcome of a transfer id never changes, whichever path runs it again:
every saga step obeys the outcome the store recorded for its leg, not the
one the workflow expected (issue 12, findings 1 and 2).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import DuplicateTransferMismatch
from ledgerflow.domain.model import (
    TransferRequest,
    TransferResult,
    TransferStatus,
    reversal_id,
)
from ledgerflow.workflows.transfer import TransferWorkflow
from tests.e2e.test_cross_region import balance_of
from tests.support import postings

Ids = Callable[[str], str]


async def raw_run(
    workers: Client, ledger: LedgerClient, request: TransferRequest, region: str = "us"
) -> TransferResult:
    """What a user of the plain client does: start (or re-run) the id and wait."""
    result: TransferResult = await workers.execute_workflow(
        TransferWorkflow.run,
        request,
        id=f"transfer-{request.transfer_id}",
        task_queue=ledger.settings.task_queue(region),
    )
    return result


async def test_a_raw_rerun_of_a_rejected_cross_region_id_stays_rejected_and_credits_nobody(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    bank, alice, bob = uid("bank"), uid("alice"), uid("bob")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    await ledger.open_account(bob, "USD", region="eu")
    tid = uid("x")
    request = TransferRequest(tid, alice, bob, "40.00", "USD", "alice", to_region="eu")

    first = await raw_run(workers, ledger, request)
    assert (first.status, first.reason_type) == (TransferStatus.REJECTED, "InsufficientFunds")

    await ledger.transfer(uid("fund"), bank, alice, "100.00", "USD", initiated_by="treasury")
    again = await raw_run(workers, ledger, request)

    assert again == first
    assert await balance_of(engines["eu"], bob) == 0
    assert await balance_of(engines["us"], alice) == 10000
    assert await postings(engines["eu"], tid) == 0
    assert await postings(engines["us"], tid) == 0


async def test_a_raw_rerun_of_a_reversed_transfer_answers_reversed_again(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    bank, alice, euro = uid("bank"), uid("alice"), uid("euro")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    await ledger.open_account(euro, "EUR", region="ap")
    await ledger.transfer(uid("fund"), bank, alice, "100.00", "USD", initiated_by="treasury")
    tid = uid("x")
    request = TransferRequest(tid, alice, euro, "40.00", "USD", "alice", to_region="ap")

    first = await raw_run(workers, ledger, request)
    assert first.status == TransferStatus.REVERSED
    again = await raw_run(workers, ledger, request)

    assert again == first
    assert await balance_of(engines["us"], alice) == 10000
    assert await postings(engines["us"], tid) == 2
    assert await postings(engines["us"], reversal_id(tid)) == 2
    assert await postings(engines["ap"], tid) == 0
    # The audit trail names the workflow that posted the reversal: the transfer's.
    trail = await ledger.audit(alice, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
    reversal = [e for e in trail.entries if e.transfer_id == reversal_id(tid)]
    assert [e.workflow_id for e in reversal] == [f"transfer-{tid}"]


async def test_a_raw_rerun_of_a_confirmed_cross_region_id_after_the_source_was_drained(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    """The advisory check now refuses the source (it was spent since), yet the
    id's recorded outcome is a confirmation: the re-run answers it, and posts
    nothing."""
    bank, alice, bob, carol = uid("bank"), uid("alice"), uid("bob"), uid("carol")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    await ledger.open_account(carol, "USD", region="us")
    await ledger.open_account(bob, "USD", region="eu")
    await ledger.transfer(uid("fund"), bank, alice, "50.00", "USD", initiated_by="treasury")
    tid = uid("x")
    request = TransferRequest(tid, alice, bob, "50.00", "USD", "alice", to_region="eu")
    first = await raw_run(workers, ledger, request)
    assert first.status == TransferStatus.CONFIRMED
    await ledger.transfer(uid("spend"), bank, carol, "1.00", "USD", initiated_by="treasury")

    again = await raw_run(workers, ledger, request)

    assert again == first
    assert await balance_of(engines["us"], alice) == 0
    assert await balance_of(engines["eu"], bob) == 5000
    assert [await postings(engines[r], tid) for r in ("us", "eu")] == [2, 2]


async def test_a_local_outcome_cannot_be_taken_for_a_source_leg_by_a_rerun_with_to_region(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    """An id confirmed as a local transfer, re-run raw as a cross-region one
    (same payload, a `to_region` added): the recorded local posting is not a
    source leg, so nothing may arrive in the other region."""
    bank, alice, bob = uid("bank"), uid("alice"), uid("bob")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    await ledger.open_account(bob, "USD", region="us")
    # The same account id opened in eu too, behind the SDK's back.
    await workers.execute_workflow(
        "OpenAccountWorkflow",
        {"account_id": bob, "currency": "USD", "region": "eu"},
        id=f"account-{bob}-eu",
        task_queue=ledger.settings.task_queue("eu"),
    )
    await ledger.transfer(uid("fund"), bank, alice, "10.00", "USD", initiated_by="treasury")
    tid = uid("x")
    local = await raw_run(workers, ledger, TransferRequest(tid, alice, bob, 500, "USD", "alice"))
    assert local.status == TransferStatus.CONFIRMED

    crossed = TransferRequest(tid, alice, bob, 500, "USD", "alice", to_region="eu")
    with pytest.raises(WorkflowFailureError) as caught:
        await raw_run(workers, ledger, crossed)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "DuplicateTransferMismatch"
    assert await postings(engines["eu"], tid) == 0
    assert await balance_of(engines["eu"], bob) == 0
    assert await balance_of(engines["us"], bob) == 500


async def test_a_resubmission_answers_its_outcome_after_a_conflicting_raw_rerun(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    """Found by the simulator (shrunk to these three steps): a plain client
    re-runs a closed id with another payload (that run fails, typed); the
    original submitter resubmitting its own payload must still learn its own
    outcome, not the other run's refusal."""
    alice, bob = uid("alice"), uid("bob")
    await ledger.open_account(alice, "USD", region="ap")
    await ledger.open_account(bob, "USD", region="eu")
    tid = uid("x")
    first = await ledger.transfer(tid, alice, bob, 999, "USD", initiated_by="sim",
                                  raise_on_rejection=False)  # fmt: skip
    assert (first.status, first.reason_type) == ("rejected", "InsufficientFunds")
    other = TransferRequest(tid, alice, bob, 1000, "USD", "sim", to_region="eu")
    with pytest.raises(WorkflowFailureError):
        await raw_run(workers, ledger, other, region="ap")

    again = await ledger.transfer(tid, alice, bob, 999, "USD", initiated_by="sim",
                                  raise_on_rejection=False)  # fmt: skip
    assert again == first
    handle = await ledger.start_transfer(tid, alice, bob, 999, "USD", initiated_by="sim")
    assert await handle.result() == first
    with pytest.raises(DuplicateTransferMismatch):
        await ledger.transfer(tid, alice, bob, 1000, "USD", initiated_by="sim")


async def test_a_resubmission_follows_the_first_runs_routing_after_a_conflicting_rerun(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    """Found by the simulator (seed 1, round 18): a plain start without
    `to_region` posts locally (the credited account is abroad, so it is
    refused `AccountNotFound`); a plain re-run with another payload fails;
    the SDK, resubmitting the first payload, routes it abroad. It must be
    told the recorded refusal, not `DuplicateTransferMismatch` (a run with
    its own routing would meet the recorded local posting)."""
    bank, alice, bob = uid("bank"), uid("alice"), uid("bob")
    await ledger.open_account(bank, "USD", region="us", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region="us")
    await ledger.open_account(bob, "USD", region="ap")
    await ledger.transfer(uid("f"), bank, alice, 5_000, "USD", initiated_by="sim")
    tid = uid("x")
    misrouted = TransferRequest(tid, alice, bob, 50, "USD", "sim")  # no to_region
    first = await raw_run(workers, ledger, misrouted, region="us")
    assert (first.status, first.reason_type) == ("rejected", "AccountNotFound")
    other = TransferRequest(tid, alice, bob, 51, "USD", "sim")
    with pytest.raises(WorkflowFailureError):
        await raw_run(workers, ledger, other, region="us")

    again = await ledger.transfer(tid, alice, bob, 50, "USD", initiated_by="sim",
                                  raise_on_rejection=False)  # fmt: skip
    assert (again.status, again.reason_type) == ("rejected", "AccountNotFound")
    assert (await ledger.account(alice)).balance == 5_000
    assert (await ledger.account(bob)).balance == 0
