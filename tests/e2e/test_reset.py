"""A workflow reset of a closed transfer (an operator's tool in the Web UI and
the CLI) re-executes it from its first workflow task: the store answers with
what it recorded, so the outcome is unchanged and nothing is posted again."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client

from ledgerflow.client import LedgerClient
from ledgerflow.domain.model import TransferResult
from ledgerflow.workflows.transfer import TransferWorkflow
from tests.support import postings

Ids = Callable[[str], str]


async def reset_to_first_task(client: Client, workflow_id: str) -> TransferResult:
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    first = next(
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    described = await handle.describe()
    answer = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=described.run_id),
            reason="test: reset to the first workflow task",
            workflow_task_finish_event_id=first,
            request_id=str(uuid.uuid4()),
        )
    )
    reset = client.get_workflow_handle_for(TransferWorkflow.run, workflow_id, run_id=answer.run_id)
    return await reset.result()


@pytest.mark.parametrize("to_region", ["us", "eu"])
async def test_a_reset_transfer_answers_as_before_and_posts_nothing_more(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids,
    to_region: str,
) -> None:  # fmt: skip
    bank, alice = uid("bank"), uid("alice")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(alice, "USD", region=to_region)
    tid = uid("t")
    first = await ledger.transfer(tid, bank, alice, "5.00", "USD", initiated_by="t")
    await workers.get_workflow_handle(f"transfer-{tid}").result()

    again = await reset_to_first_task(workers, f"transfer-{tid}")

    assert again == first
    assert await postings(engines["us"], tid) == 2
    assert await postings(engines[to_region], tid) == 2 if to_region != "us" else True
