"""OpenAccountWorkflow: open an account in its home region, idempotently."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ledgerflow.domain.errors import LedgerError
    from ledgerflow.domain.messages import OPEN_ACCOUNT
    from ledgerflow.domain.model import OpenAccountRequest, OpenAccountResult
    from ledgerflow.temporal_errors import to_application_error
    from ledgerflow.workflows.policies import store_step


@workflow.defn
class OpenAccountWorkflow:
    @workflow.run
    async def run(self, request: OpenAccountRequest) -> OpenAccountResult:
        try:
            request.validated()
        except LedgerError as exc:
            raise to_application_error(exc) from None
        return await store_step(OPEN_ACCOUNT, request, OpenAccountResult)
