"""AccountChangeWorkflow: freeze, unfreeze or close an account, once per change id.

Its id is `account-change/<account>/<change id>` (ids cannot hold `/`, so it
never meets an account's opening workflow, `account-<account>`). Whatever
starts it (the SDK, a raw start, a re-run of a closed id, a reset), the
store answers with the change id's first recorded outcome: applied, with its
event, or refused, with the reason. A refusal is recorded and returned, not
raised, so the workflow completes either way and the Web UI shows why.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ledgerflow.domain.errors import LedgerError
    from ledgerflow.domain.messages import CHANGE_ACCOUNT
    from ledgerflow.domain.model import AccountChangeRequest, AccountChangeResult
    from ledgerflow.temporal_errors import to_application_error
    from ledgerflow.workflows.policies import store_step


@workflow.defn
class AccountChangeWorkflow:
    @workflow.run
    async def run(self, request: AccountChangeRequest) -> AccountChangeResult:
        try:
            request.validated()
        except LedgerError as exc:
            raise to_application_error(exc) from None
        return await store_step(CHANGE_ACCOUNT, request, AccountChangeResult)
