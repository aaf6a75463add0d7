"""Account lifecycle end to end: freeze, unfreeze and close through the SDK,
a raw workflow start with the plain Temporal client, a re-run of a closed
change id, concurrent duplicates, and the CLI; each change an event in the
audit trail with who and why."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError

from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotEmpty,
    AccountStateConflict,
    DuplicateChangeMismatch,
)
from ledgerflow.domain.model import AccountChangeRequest, AccountChangeResult
from ledgerflow.domain.model import account_change_workflow_id as first_workflow_id
from ledgerflow.workflows.account_change import AccountChangeWorkflow
from tests.support import cli

Ids = Callable[[str], str]


async def raw_change(
    workers: Client, ledger: LedgerClient, request: AccountChangeRequest
) -> AccountChangeResult:
    """What a user of the plain client does: start (or re-run) the id and wait."""
    result: AccountChangeResult = await workers.execute_workflow(
        AccountChangeWorkflow.run,
        request,
        id=request.workflow_id,
        task_queue=ledger.settings.task_queue("us"),
    )
    return result


async def test_freeze_unfreeze_and_close_through_the_sdk_with_an_audit_trail(
    ledger: LedgerClient, uid: Ids
) -> None:
    bank, alice = uid("bank"), uid("alice")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(alice, "USD")
    start = datetime.now(UTC) - timedelta(seconds=1)
    await ledger.transfer(uid("t1"), bank, alice, "10.00", "USD", initiated_by="ops")
    frozen = await ledger.freeze_account(alice, reason="chargeback review", initiated_by="risk")
    assert (frozen.status, frozen.account_status) == ("applied", "frozen")
    assert (await ledger.account(alice)).status == "frozen"
    with pytest.raises(AccountFrozen):
        await ledger.transfer(uid("t2"), alice, bank, "1.00", "USD", initiated_by="alice")
    landed = await ledger.transfer(uid("t3"), bank, alice, "2.00", "USD", initiated_by="ops")
    assert landed.to_balance_after == 1200
    with pytest.raises(AccountStateConflict):
        await ledger.freeze_account(alice, reason="again", initiated_by="risk")
    with pytest.raises(AccountNotEmpty):
        await ledger.close_account(alice, reason="customer left", initiated_by="ops")
    await ledger.unfreeze_account(alice, reason="review cleared", initiated_by="risk")
    await ledger.transfer(uid("t4"), alice, bank, "12.00", "USD", initiated_by="alice")
    closed = await ledger.close_account(
        alice, reason="customer left", initiated_by="ops", change_id=uid("close")
    )
    assert closed.account_status == "closed"
    with pytest.raises(AccountClosed):
        await ledger.transfer(uid("t5"), bank, alice, "1.00", "USD", initiated_by="ops")

    trail = await ledger.audit(alice, start, datetime.now(UTC) + timedelta(seconds=1))
    lines = [(e.kind, e.type, e.initiated_by, e.description, e.reason_type) for e in trail.entries]
    assert [line for line in lines if line[0] in ("status", "change-refused")] == [
        ("status", "AccountFrozen", "risk", "chargeback review", None),
        ("change-refused", None, "risk", "again", "AccountStateConflict"),
        ("change-refused", None, "ops", "customer left", "AccountNotEmpty"),
        ("status", "AccountUnfrozen", "risk", "review cleared", None),
        ("status", "AccountClosed", "ops", "customer left", None),
    ]
    closing = next(e for e in trail.entries if e.type == "AccountClosed")
    assert closing.workflow_id == f"account-change/{alice}/{uid('close')}"
    assert trail.closing_balance == 0


async def test_a_raw_start_a_rerun_and_concurrent_duplicates_answer_the_first_outcome(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    bank, alice = uid("bank"), uid("alice")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(alice, "USD")
    await ledger.transfer(uid("t1"), bank, alice, "5.00", "USD", initiated_by="ops")
    request = AccountChangeRequest(uid("c"), alice, "close", "ops", "customer left")
    first = await raw_change(workers, ledger, request)
    assert (first.status, first.reason_type) == ("refused", "AccountNotEmpty")
    # Emptied, the same id still answers its refusal, through every path.
    await ledger.transfer(uid("t2"), alice, bank, "5.00", "USD", initiated_by="alice")
    assert await raw_change(workers, ledger, request) == first
    with pytest.raises(AccountNotEmpty):
        await ledger.change_account(alice, "close", reason="customer left",
                                    change_id=request.change_id, initiated_by="ops")  # fmt: skip
    with pytest.raises(DuplicateChangeMismatch):
        await ledger.change_account(alice, "close", reason="another reason",
                                    change_id=request.change_id, initiated_by="ops")  # fmt: skip
    # The same through the plain client: the ledger's typed refusal, not
    # "activity failed" (found by the simulator, seed 11).
    with pytest.raises(WorkflowFailureError) as mismatch:
        await raw_change(workers, ledger, replace(request, reason="another reason"))
    assert getattr(mismatch.value.cause, "type", None) == "DuplicateChangeMismatch"
    # Ten concurrent submissions of a new id: one event, ten equal answers;
    # a raw re-run once it closed answers the same.
    freeze = AccountChangeRequest(uid("f"), alice, "freeze", "risk", "fraud signal")
    results = await asyncio.gather(
        *(ledger.freeze_account(alice, reason=freeze.reason, change_id=freeze.change_id,
                                initiated_by="risk") for _ in range(10)),
    )  # fmt: skip
    assert len(set(results)) == 1 and results[0].applied
    assert await raw_change(workers, ledger, freeze) == results[0]
    events = [e for e in await ledger.statement(alice) if e.type == "AccountFrozen"]
    assert len(events) == 1
    # A malformed raw start fails typed and writes nothing.
    bad = AccountChangeRequest(uid("b"), alice, "delete", "ops", "x")
    with pytest.raises(WorkflowFailureError) as caught:
        await raw_change(workers, ledger, bad)
    assert getattr(caught.value.cause, "type", None) == "InvalidRequest"
    assert (await ledger.account(alice)).status == "frozen"


async def test_the_cli_freezes_shows_and_refuses_with_exit_code_3(
    workers: Client, cli_env: dict[str, str], uid: Ids
) -> None:
    alice = uid("alice")
    code, _, err = await cli(cli_env, "account", "open", alice, "--currency", "USD")
    assert code == 0, err
    code, out, err = await cli(cli_env, "account", "freeze", alice, "--reason", "kyc", "--json")
    assert code == 0, err
    assert json.loads(out)["account_status"] == "frozen" and "change id c-" in err
    code, out, _ = await cli(cli_env, "account", "show", alice, "--json")
    assert code == 0 and json.loads(out)["status"] == "frozen"
    code, _, err = await cli(cli_env, "account", "freeze", alice, "--reason", "kyc", "--id", "x1")
    assert code == 3 and err.count("\n") == 1 and "AccountStateConflict" in err, err
    code, _, err = await cli(cli_env, "account", "close", alice)
    assert code == 2 and "--reason" in err


async def test_a_reset_account_change_answers_its_recorded_outcome(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    """Reset to its first workflow task: the change runs again and the store
    answers what it recorded; no second event."""
    alice = uid("alice")
    await ledger.open_account(alice, "USD")
    first = await ledger.freeze_account(alice, reason="kyc", change_id=uid("c"))
    handle = workers.get_workflow_handle(first_workflow_id(alice, uid("c")))
    history = await handle.fetch_history()
    task = next(e.event_id for e in history.events
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)  # fmt: skip
    described = await handle.describe()
    reset = await workers.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=workers.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=described.run_id),
            reason="test", workflow_task_finish_event_id=task, request_id=str(uuid.uuid4()),
        )
    )  # fmt: skip
    again = await workers.get_workflow_handle(
        handle.id, run_id=reset.run_id, result_type=AccountChangeResult
    ).result()
    assert again == first
    frozen = [e for e in await ledger.statement(alice) if e.type == "AccountFrozen"]
    assert len(frozen) == 1
