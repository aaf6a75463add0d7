"""The names the core starts workflows by are the names they are defined under."""

from __future__ import annotations

from temporalio import workflow

from ledgerflow import workflow_names as names
from ledgerflow.workflows import transfer as transfer_code
from ledgerflow.workflows.account import OpenAccountWorkflow
from ledgerflow.workflows.account_change import AccountChangeWorkflow
from ledgerflow.workflows.archive import ArchiveWorkflow
from ledgerflow.workflows.hold import HoldWorkflow
from ledgerflow.workflows.reconcile import ReconcileWorkflow
from ledgerflow.workflows.transaction import TransactionWorkflow
from ledgerflow.workflows.transfer import TransferWorkflow


def test_each_name_is_its_definitions() -> None:
    for cls, name in (
        (TransferWorkflow, names.TRANSFER_WORKFLOW),
        (OpenAccountWorkflow, names.OPEN_ACCOUNT_WORKFLOW),
        (AccountChangeWorkflow, names.ACCOUNT_CHANGE_WORKFLOW),
        (HoldWorkflow, names.HOLD_WORKFLOW),
        (TransactionWorkflow, names.TRANSACTION_WORKFLOW),
        (ArchiveWorkflow, names.ARCHIVE_WORKFLOW),
        (ReconcileWorkflow, names.RECONCILE_WORKFLOW),
    ):
        assert workflow._Definition.must_from_class(cls).name == name
    transfer = workflow._Definition.must_from_class(TransferWorkflow)
    assert names.TRANSFER_CONFIRMATION in transfer.updates
    assert names.TRANSFER_STATUS in transfer.queries
    assert names.TRANSFER_CODE_MEMO == {transfer_code.CODE_MEMO: transfer_code.ONE_STORE_CALL}

    hold = workflow._Definition.must_from_class(HoldWorkflow)
    for update in (names.HOLD_PLACEMENT, names.HOLD_CAPTURE, names.HOLD_VOID, names.HOLD_EXTEND):
        assert update in hold.updates
    assert names.HOLD_STATUS in hold.queries
