"""BaselineTransferWorkflow: the Temporal money-transfer sample's shape, for
`ledgerflow bench e2e` only: three regular activities (withdraw, deposit,
notify) that do nothing. The ledger's TransferWorkflow, doing its real
database work, is measured against it on the same server in the same run.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

BASELINE_STEPS = ("baseline_withdraw", "baseline_deposit", "baseline_notify")


@workflow.defn
class BaselineTransferWorkflow:
    @workflow.run
    async def run(self, amount: int) -> int:
        for step in BASELINE_STEPS:
            amount = await workflow.execute_activity(
                step, amount, result_type=int, start_to_close_timeout=timedelta(seconds=10)
            )
        return amount
