"""The benchmark's yardsticks, for `ledgerflow bench e2e` only.

- `BaselineTransferWorkflow`, the Temporal money-transfer sample's shape:
  three regular activities (withdraw, deposit, notify) that do nothing.
- `CeilingWorkflow`, the server's ceiling for the ledger's shape: started the
  way `LedgerClient.transfer` starts a transfer (update-with-start, answered
  by the update), one no-op local activity, on the regional worker itself.
  What the ledger costs beyond it is the ledger's own work.

The ledger's TransferWorkflow, doing its real database work, is measured
against both on the same server in the same run. (A workflow module:
standard library and temporalio only, and nothing runs at import time.)
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

CEILING_NOOP = "ceiling_noop"


@activity.defn(name=CEILING_NOOP)
async def ceiling_noop(amount: int) -> int:
    return amount


@workflow.defn
class CeilingWorkflow:
    """An empty transfer: the update answers once one no-op local activity
    has run, as the ledger's confirmation answers once its append has."""

    def __init__(self) -> None:
        self._result: int | None = None

    @workflow.run
    async def run(self, amount: int) -> int:
        self._result = await workflow.execute_local_activity(
            CEILING_NOOP, amount, result_type=int, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result

    @workflow.update
    async def confirmation(self) -> int:
        await workflow.wait_condition(lambda: self._result is not None)
        assert self._result is not None
        return self._result
