"""The destination leg of the cross-region saga, shared by transfers and by
captures of a hold toward another region.

The leg runs on the destination region's task queue and waits there for as
long as that region is down. It answers with what the destination recorded
for the posting id, never with what was expected: a re-run meets recorded
outcomes, and a late commit of an earlier attempt can turn a refusal into
an arrival (issue 12, findings 1, 2, 5). Only a refusal that stands there
(recorded for the destination's audit trail first) may be compensated in
the source region.

Deterministic code only; activities are called by name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from ledgerflow.domain.errors import REJECTION_TYPES
from ledgerflow.domain.messages import (
    APPEND_LEG,
    RECORD_REJECTION,
    AppendLegInput,
    RecordRejectionInput,
)
from ledgerflow.domain.model import PostingKind, Transfer, TransferResult, TransferStatus
from ledgerflow.temporal_errors import domain_cause
from ledgerflow.workflows.policies import ACTIVITY_TIMEOUT, RETRY_POLICY


def _always() -> bool:
    return True


async def destination_leg(
    transfer: Transfer,
    region: str,
    to_task_queue: str,
    occurred_at: datetime,
    obey: Callable[[], bool] = _always,
) -> TransferResult | ApplicationError:
    """The inbound leg's outcome in the destination: the arrival (a confirmed
    `TransferResult`), or the refusal that stands there (an
    `ApplicationError`: the caller returns the money). `obey` is the
    transfer workflow's patch check (histories recorded before it replay
    the old path); every newer caller obeys the recorded outcome.

    No schedule-to-start limit: while the destination region is down the
    task waits in its queue, and the money stays in transit."""
    try:
        arrived: TransferResult = await workflow.execute_activity(
            APPEND_LEG,
            AppendLegInput(transfer, PostingKind.INBOUND, region, occurred_at),
            result_type=TransferResult,
            task_queue=to_task_queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_POLICY,
        )
    except ActivityError as err:
        refusal = domain_cause(err)
        if refusal is None:
            raise
    else:
        if arrived.status == TransferStatus.CONFIRMED or not obey():
            return arrived
        # The destination's recorded refusal (a re-run of a reversed id):
        # already recorded there, so only the compensation remains.
        return ApplicationError(arrived.reason or "", type=arrived.reason_type)
    if refusal.type not in REJECTION_TYPES:
        return refusal
    # Record the refusal there (for its audit trail). What the destination
    # recorded first is returned: if that is a confirmation (an earlier
    # attempt of the leg committed late), the money arrived and must not be
    # paid back.
    there: TransferResult | None = None
    try:
        there = await workflow.execute_activity(
            RECORD_REJECTION,
            RecordRejectionInput(transfer, refusal.type or "", refusal.message, occurred_at,
                                 PostingKind.INBOUND, region),
            result_type=TransferResult,
            task_queue=to_task_queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_POLICY,
        )  # fmt: skip
    except ActivityError as err:
        # The id already stands for another posting there: nothing of ours
        # was written in that region, so compensating is still right.
        if domain_cause(err) is None:
            raise
    if there is not None and there.status == TransferStatus.CONFIRMED and obey():
        return there
    return refusal
