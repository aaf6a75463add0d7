"""The benchmark's baseline: the Temporal money-transfer sample's shape, for
`ledgerflow bench e2e` only. `BaselineTransferWorkflow` runs three regular
activities (withdraw, deposit, notify) that do nothing; the ledger's
TransferWorkflow, doing its real database work, is measured against it on
the same server in the same run. (A workflow module: standard library and
temporalio only, and nothing runs at import time.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

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


@activity.defn(name="baseline_withdraw")
async def withdraw(amount: int) -> int:
    return amount


@activity.defn(name="baseline_deposit")
async def deposit(amount: int) -> int:
    return amount


@activity.defn(name="baseline_notify")
async def notify(amount: int) -> int:
    return amount


ACTIVITIES: list[Callable[..., Any]] = [withdraw, deposit, notify]
