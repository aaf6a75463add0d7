"""OpenAccountWorkflow: open an account in its home region, idempotently."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ledgerflow.domain.errors import LedgerError
    from ledgerflow.domain.messages import OPEN_ACCOUNT
    from ledgerflow.domain.model import OpenAccountRequest, OpenAccountResult
    from ledgerflow.temporal_errors import to_application_error
    from ledgerflow.workflows.policies import ACTIVITY_TIMEOUT, RETRY_POLICY


@workflow.defn
class OpenAccountWorkflow:
    @workflow.run
    async def run(self, request: OpenAccountRequest) -> OpenAccountResult:
        try:
            request.validated()
        except LedgerError as exc:
            raise to_application_error(exc) from None
        result: OpenAccountResult = await workflow.execute_activity(
            OPEN_ACCOUNT,
            request,
            result_type=OpenAccountResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_POLICY,
        )
        return result
