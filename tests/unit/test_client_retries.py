"""`LedgerClient.transfer` gets past a busy server's transient answers to
update-with-start (issue 12, finding 6), without a server: a stand-in
Temporal client answers the first attempts as the dev server did under load
(`StartDeduped`, the per-workflow limit on updates in flight), then with the
outcome. Every submitter gets the outcome, not the error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import WithStartWorkflowOperation
from temporalio.service import RPCError, RPCStatusCode

from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.domain.model import TransferRequest, TransferResult, TransferStatus


class BusyServer:
    """Answers update-with-start with `errors` first, then with `result`."""

    def __init__(self, errors: list[RPCError]) -> None:
        self.errors = list(errors)
        self.attempts = 0
        self.result: TransferResult | None = None

    async def execute_update_with_start_workflow(
        self,
        update: Any,
        *,
        start_workflow_operation: WithStartWorkflowOperation[Any, Any],
        result_type: type | None = None,
    ) -> TransferResult:
        self.attempts += 1
        handle_future = start_workflow_operation._workflow_handle
        if self.errors:
            error = self.errors.pop(0)
            handle_future.set_exception(error)
            raise error
        request = start_workflow_operation._start_workflow_input.args[0]
        assert isinstance(request, TransferRequest)
        self.result = TransferResult(
            request.transfer_id, TransferStatus.CONFIRMED, request.validated().fingerprint(),
            "us", confirmed_at=datetime.now(UTC),
        )  # fmt: skip
        handle_future.set_result(None)
        return self.result


class KnownHomes:
    """A read side that knows where two accounts live, and nothing else (no
    database to ask: the SDK's read side is an interface)."""

    async def locate(self, account_id: str) -> str:
        return {"alice": "us", "bob": "us"}[account_id]

    async def close(self) -> None:
        pass


def client_for(server: BusyServer) -> LedgerClient:
    return LedgerClient(server, Settings.from_env({}), reads=KnownHomes())  # type: ignore[arg-type]


DEDUPED = RPCError("Workflow was not started: StartDeduped", RPCStatusCode.UNAVAILABLE, b"")
TOO_MANY = RPCError(
    "limit on number of concurrent in-flight updates has been reached (10)",
    RPCStatusCode.RESOURCE_EXHAUSTED,
    b"",
)


async def test_transient_answers_are_retried_until_the_outcome_comes() -> None:
    server = BusyServer([DEDUPED, TOO_MANY, DEDUPED])
    result = await client_for(server).transfer(
        "t-1", "alice", "bob", 100, "USD", initiated_by="t", region="us"
    )
    assert result == server.result and server.attempts == 4


async def test_concurrent_submitters_in_one_process_share_one_confirmation() -> None:
    server = BusyServer([DEDUPED])
    client = client_for(server)
    results = await asyncio.gather(
        *(client.transfer("t-2", "alice", "bob", 100, "USD", initiated_by="t", region="us")
          for _ in range(20))
    )  # fmt: skip
    assert all(r == server.result for r in results)
    assert server.attempts == 2  # one failed attempt, one that answered, for all twenty


async def test_a_permanent_error_is_not_retried() -> None:
    refused = RPCError("namespace not found", RPCStatusCode.NOT_FOUND, b"")
    server = BusyServer([refused])
    with pytest.raises(RPCError, match="namespace"):
        await client_for(server).transfer(
            "t-3", "alice", "bob", 100, "USD", initiated_by="t", region="us"
        )
    assert server.attempts == 1
