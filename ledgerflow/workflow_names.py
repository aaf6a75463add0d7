"""The names the ledger's workflows, updates and queries are registered
under, for the code that starts and talks to them (the SDK client, the
schedules, the CLI) without importing the workflow code itself: that lives
above the core, with the workers. A test checks each name against its
definition."""

from __future__ import annotations

TRANSFER_WORKFLOW = "TransferWorkflow"
#: Answered once the transfer's outcome is recorded (update-with-start).
TRANSFER_CONFIRMATION = "confirmation"
#: The transfer's progress (`TransferProgress`), for the Web UI and `status`.
TRANSFER_STATUS = "status"
#: The memo a client starts a transfer with to ask for the workflow's newest
#: code path without a patch marker (ledgerflow/workflows/transfer.py).
TRANSFER_CODE_MEMO = {"ledgerflow-code": "one-store-call"}
OPEN_ACCOUNT_WORKFLOW = "OpenAccountWorkflow"
ACCOUNT_CHANGE_WORKFLOW = "AccountChangeWorkflow"
HOLD_WORKFLOW = "HoldWorkflow"
TRANSACTION_WORKFLOW = "TransactionWorkflow"
#: Answered once the hold's placement is recorded (update-with-start).
HOLD_PLACEMENT = "placement"
HOLD_CAPTURE = "capture"
HOLD_VOID = "void"
HOLD_EXTEND = "extend"
#: Where the hold stands (`HoldState`), for the Web UI and `hold show`.
HOLD_STATUS = "status"
WEBHOOK_WORKFLOW = "WebhookWorkflow"
#: Deliver a subscription's dead letters again (all, or one event id).
WEBHOOK_REDELIVER = "redeliver"
WEBHOOK_CANCEL = "cancel"
WEBHOOK_STATUS = "status"
ARCHIVE_WORKFLOW = "ArchiveWorkflow"
RECONCILE_WORKFLOW = "ReconcileWorkflow"


def account_workflow_id(account_id: str) -> str:
    return f"account-{account_id}"
