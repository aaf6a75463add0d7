"""TransferWorkflow: one transfer, validate → append → project, durably.

Deterministic code only. The domain modules are plain standard-library code
and are passed through the sandbox; activities are called by name so that
no database library is ever imported here. Nothing runs at import time.
"""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ledgerflow import search_attributes as sa
    from ledgerflow.domain.errors import REJECTION_TYPES, LedgerError
    from ledgerflow.domain.messages import (
        APPEND_TRANSFER,
        PROJECT_EVENTS,
        RECORD_REJECTION,
        VALIDATE_TRANSFER,
        AppendTransferInput,
        ProjectEventsInput,
        ProjectEventsOutput,
        RecordRejectionInput,
        TransferProgress,
        ValidateTransferInput,
        ValidateTransferOutput,
    )
    from ledgerflow.domain.model import Transfer, TransferRequest, TransferResult, TransferStatus
    from ledgerflow.temporal_errors import domain_cause, reraised, to_application_error
    from workflows.policies import ACTIVITY_TIMEOUT, RETRY_POLICY


@workflow.defn
class TransferWorkflow:
    def __init__(self) -> None:
        self._transfer: Transfer | None = None
        self._status: str = TransferStatus.PENDING
        self._result: TransferResult | None = None
        self._error: ApplicationError | None = None

    @workflow.run
    async def run(self, request: TransferRequest) -> TransferResult:
        try:
            transfer = request.validated()
        except LedgerError as exc:
            # A malformed request writes nothing, not even a rejection record.
            await self._fail(to_application_error(exc))
        self._transfer = transfer
        workflow.upsert_search_attributes(
            [
                sa.FROM_ACCOUNT.value_set(transfer.from_account),
                sa.TO_ACCOUNT.value_set(transfer.to_account),
                sa.CURRENCY.value_set(transfer.currency),
                sa.AMOUNT.value_set(transfer.amount),
                sa.STATUS.value_set(TransferStatus.PENDING),
            ]
        )
        workflow.set_current_details(f"{transfer.summary()}: pending")
        occurred_at = workflow.now()
        try:
            checked = await workflow.execute_activity(
                VALIDATE_TRANSFER,
                ValidateTransferInput(transfer),
                result_type=ValidateTransferOutput,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
            workflow.upsert_search_attributes([sa.REGION.value_set(checked.region)])
            result: TransferResult = await workflow.execute_activity(
                APPEND_TRANSFER,
                AppendTransferInput(transfer, occurred_at),
                result_type=TransferResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        except ActivityError as err:
            cause = domain_cause(err)
            if cause is None:
                raise
            if cause.type not in REJECTION_TYPES:
                await self._fail(reraised(cause))
            result = await self._record_rejection(transfer, cause, occurred_at)
        self._result = result
        self._status = result.status
        workflow.upsert_search_attributes([sa.STATUS.value_set(result.status)])
        detail = f": {result.reason}" if result.reason else ""
        workflow.set_current_details(f"{transfer.summary()}: {result.status}{detail}")
        if result.status == TransferStatus.CONFIRMED:
            # The confirmation update has already answered; the read model
            # catches up here (and the catch-up projector covers a crash).
            await workflow.execute_activity(
                PROJECT_EVENTS,
                ProjectEventsInput(
                    [e for e in (result.debit_event_id, result.credit_event_id) if e]
                ),
                result_type=ProjectEventsOutput,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _record_rejection(
        self, transfer: Transfer, cause: ApplicationError, occurred_at: datetime
    ) -> TransferResult:
        """The store records the refusal, or returns whatever was recorded for this
        id first: the outcome of a transfer id never changes."""
        try:
            rejected: TransferResult = await workflow.execute_activity(
                RECORD_REJECTION,
                RecordRejectionInput(transfer, cause.type or "", cause.message, occurred_at),
                result_type=TransferResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        except ActivityError as err:
            # e.g. DuplicateTransferMismatch: this id already stands for another transfer.
            recorded = domain_cause(err)
            if recorded is None:
                raise
            await self._fail(reraised(recorded))
        return rejected

    async def _fail(self, error: ApplicationError) -> NoReturn:
        """End the workflow with a typed error, after answering any waiting caller."""
        self._error = error
        self._status = TransferStatus.FAILED
        workflow.upsert_search_attributes([sa.STATUS.value_set(TransferStatus.FAILED)])
        workflow.set_current_details(f"failed: {error.type}: {error.message}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        raise error

    @workflow.update
    async def confirmation(self) -> TransferResult:
        """Answers as soon as the outcome is durably recorded (before projection)."""
        await workflow.wait_condition(lambda: self._result is not None or self._error is not None)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @workflow.query
    def status(self) -> TransferProgress:
        transfer = self._transfer
        result = self._result
        error = self._error
        return TransferProgress(
            transfer_id=transfer.transfer_id if transfer else None,
            status=self._status,
            summary=transfer.summary() if transfer else None,
            reason_type=(result.reason_type if result else None) or (error.type if error else None),
            reason=(result.reason if result else None) or (error.message if error else None),
            result=result,
        )
