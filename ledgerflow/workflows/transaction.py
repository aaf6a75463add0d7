"""TransactionWorkflow: one multi-leg transaction, validate → append → project.

Its id is `transaction-<transaction id>`, on the region of its accounts.
Whatever starts it (the SDK, a raw start, a re-run of a closed id, a reset),
the store answers with the id's first recorded outcome: confirmed, with its
events, or rejected, with the reason (returned, not raised, so the workflow
completes and the Web UI shows why). A malformed request fails typed and
writes nothing.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ledgerflow import search_attributes as sa
    from ledgerflow.domain.errors import InvalidRequest, LedgerError
    from ledgerflow.domain.messages import APPEND_TRANSACTION
    from ledgerflow.domain.transactions import TransactionRequest, TransactionResult
    from ledgerflow.temporal_errors import to_application_error
    from ledgerflow.workflows.policies import store_step


@workflow.defn
class TransactionWorkflow:
    @workflow.run
    async def run(self, request: TransactionRequest) -> TransactionResult:
        try:
            transaction = request.validated()
        except LedgerError as exc:
            raise to_application_error(exc) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise to_application_error(InvalidRequest(f"malformed request: {exc}")) from None
        workflow.set_current_details(f"{len(transaction.legs)} legs: pending")
        result = await store_step(APPEND_TRANSACTION, request, TransactionResult)
        workflow.upsert_search_attributes([sa.STATUS.value_set(result.status)])
        workflow.set_current_details(f"{len(transaction.legs)} legs: {result.status}")
        return result
