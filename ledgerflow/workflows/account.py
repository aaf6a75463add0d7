"""OpenAccountWorkflow: open an account in its home region, idempotently."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ledgerflow.domain.errors import LedgerError
    from ledgerflow.domain.messages import OPEN_ACCOUNT
    from ledgerflow.domain.model import OpenAccountRequest, OpenAccountResult
    from ledgerflow.temporal_errors import domain_cause, reraised, to_application_error
    from ledgerflow.workflows.policies import ACTIVITY_TIMEOUT, RETRY_POLICY


@workflow.defn
class OpenAccountWorkflow:
    @workflow.run
    async def run(self, request: OpenAccountRequest) -> OpenAccountResult:
        try:
            request.validated()
        except LedgerError as exc:
            raise to_application_error(exc) from None
        try:
            result: OpenAccountResult = await workflow.execute_activity(
                OPEN_ACCOUNT,
                request,
                result_type=OpenAccountResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        except ActivityError as err:
            # Typed for every caller, a raw start's included: the ledger's
            # refusal itself, not "activity failed".
            cause = domain_cause(err)
            if cause is None:
                raise
            raise reraised(cause) from None
        return result
