"""HoldWorkflow: one hold, from its placement to its one ending.

Its id is `hold-<hold id>`, on the held account's region. It places the
hold, then lives until the hold ends: captures, a void and deadline changes
arrive as Temporal Updates (each answered with its recorded outcome, or its
typed refusal), and a durable timer expires the hold at its deadline (a
worker down then expires it when it is back, once). Whatever path runs it
(the SDK's update-with-start, a raw start, a re-run of a closed id, a
reset), the store answers each step with what it recorded first.

The race rules (README, "Holds"): the store's clock decides the deadline,
and every step takes the held account's lock, so exactly one ending wins.
Steps also run one at a time here, in the order the workflow received them.

A hold toward another region's account captures through the cross-region
saga: the capture posts its source leg here (held account → clearing),
then its destination leg runs on that region's task queue, and if the
destination refuses for good the amount comes back (`return_capture`).
That part of a capture runs outside the one-at-a-time steps (a region down
for an hour must not hold up a void here); the workflow ends only once
every capture's saga has.

Deterministic code only; store calls are activities called by name.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from ledgerflow import search_attributes as sa
    from ledgerflow.domain.errors import InvalidRequest, LedgerError
    from ledgerflow.domain.holds import (
        CaptureRequest,
        CaptureResult,
        CaptureStatus,
        DeadlineChange,
        HoldRequest,
        HoldResult,
        HoldState,
        HoldStatus,
        ReleaseResult,
        capture_transfer,
    )
    from ledgerflow.domain.messages import (
        CAPTURE_HOLD,
        EXTEND_HOLD,
        GET_HOLD,
        PLACE_HOLD,
        PROJECT_EVENTS,
        RELEASE_HOLD,
        RETURN_CAPTURE,
        ProjectEventsInput,
        ProjectEventsOutput,
        ReleaseHoldInput,
        ReturnCaptureInput,
    )
    from ledgerflow.domain.model import TransferResult
    from ledgerflow.domain.money import format_amount
    from ledgerflow.temporal_errors import to_application_error
    from ledgerflow.workflow_names import (
        HOLD_CAPTURE,
        HOLD_EXTEND,
        HOLD_PLACEMENT,
        HOLD_STATUS,
        HOLD_VOID,
    )
    from ledgerflow.workflows.policies import ACTIVITY_TIMEOUT, RETRY_POLICY, store_step
    from ledgerflow.workflows.saga import destination_leg

T = TypeVar("T")


@workflow.defn
class HoldWorkflow:
    def __init__(self) -> None:
        self._placed: HoldResult | None = None
        self._failed: ApplicationError | None = None
        self._state: HoldState | None = None
        self._changed = False
        self._steps = asyncio.Lock()
        #: Projections of captures' destination legs, each in its region.
        self._projections: list[asyncio.Future[ProjectEventsOutput]] = []
        #: Captures toward another region this run drives to their end.
        self._driving: list[asyncio.Task[CaptureResult]] = []

    @workflow.run
    async def run(self, request: HoldRequest) -> HoldState:
        try:
            hold = request.validated()
        except LedgerError as exc:
            await self._fail(to_application_error(exc))
        except (TypeError, ValueError) as exc:
            await self._fail(to_application_error(InvalidRequest(f"malformed request: {exc}")))
        if workflow.info().typed_search_attributes.get(sa.STATUS) is None:
            workflow.upsert_search_attributes(
                [sa.FROM_ACCOUNT.value_set(hold.from_account),
                 sa.TO_ACCOUNT.value_set(hold.to_account),
                 sa.CURRENCY.value_set(hold.currency), sa.AMOUNT.value_set(hold.amount)]
            )  # fmt: skip
        async with self._steps:
            try:
                self._placed = await store_step(PLACE_HOLD, request, HoldResult)
            except ApplicationError as refused:  # another hold under this id, say
                await self._fail(refused)
            self._state = await self._refresh(hold.hold_id)
        # A run that finds captures on their way to another region (a reset,
        # a re-run after a terminated run) carries each on: idempotent, each
        # step answering what its region recorded. (A fresh hold has none.)
        for traveled in self._state.traveled if self._state else []:
            request_ = CaptureRequest(hold.hold_id, traveled.capture_id, traveled.amount,
                                      traveled.initiated_by)  # fmt: skip
            self._driving.append(asyncio.create_task(self._capture(request_)))
        while self._state is not None and self._state.open:
            expires_at = self._state.expires_at
            assert expires_at is not None
            wait = max(0.0, (expires_at - workflow.now()).total_seconds())
            self._changed = False
            try:
                await workflow.wait_condition(
                    lambda: self._changed, timeout=timedelta(seconds=wait)
                )
            except TimeoutError:
                async with self._steps:
                    state = self._state
                    if state.open and state.expires_at == expires_at:
                        await store_step(
                            RELEASE_HOLD,
                            ReleaseHoldInput(hold.hold_id, HoldStatus.EXPIRED, "ledgerflow"),
                            ReleaseResult,
                        )
                    self._state = await self._refresh(hold.hold_id)
        await workflow.wait_condition(workflow.all_handlers_finished)
        # (By design a drive only ends with the capture's outcome; anything
        # else fails the run loudly, the money possibly still in clearing,
        # where reconciliation names it.)
        await asyncio.gather(*self._driving)
        await asyncio.gather(*self._projections)
        assert self._state is not None
        return self._state

    async def _fail(self, error: ApplicationError) -> NoReturn:
        """End the workflow failed, once the placement update has answered with it."""
        self._failed = error
        await workflow.wait_condition(workflow.all_handlers_finished)
        raise error

    # -- updates and the query ---------------------------------------------

    @workflow.update(name=HOLD_PLACEMENT)
    async def placement(self) -> HoldResult:
        """The placement's outcome, once recorded (what update-with-start waits for)."""
        await workflow.wait_condition(lambda: self._placed is not None or self._failed is not None)
        if self._placed is None:
            assert self._failed is not None
            raise self._failed
        return self._placed

    @workflow.update(name=HOLD_CAPTURE)
    async def capture(self, request: CaptureRequest) -> CaptureResult:
        result = await self._capture(request)
        if result.reason_type is not None:
            raise _refusal(result.reason_type, result.reason or result.reason_type)
        return replace(result, to_task_queue=None)

    async def _capture(self, request: CaptureRequest) -> CaptureResult:
        result = await self._step(CAPTURE_HOLD, request, CaptureResult, request.hold_id)
        if result.status == CaptureStatus.CAPTURED and result.to_task_queue is not None:
            result = await self._deliver(result, result.to_task_queue)
        return result

    async def _deliver(self, captured: CaptureResult, to_task_queue: str) -> CaptureResult:
        """A capture toward another region, its source leg posted: the
        destination's leg, or, refused there for good, the amount returned.
        Every re-sent capture id drives it again, each step answering what
        its region recorded (a re-run of a closed hold id included)."""
        hold = self._placed
        assert hold is not None and captured.recorded_at is not None
        transfer = capture_transfer(hold, captured.capture_id, captured.amount,
                                    captured.initiated_by or "")  # fmt: skip
        there = await destination_leg(transfer, hold.region, to_task_queue, captured.recorded_at)
        if isinstance(there, TransferResult):
            self._projections.append(
                workflow.start_activity(
                    PROJECT_EVENTS,
                    ProjectEventsInput(there.event_ids),
                    result_type=ProjectEventsOutput,
                    task_queue=to_task_queue,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=RETRY_POLICY,
                )
            )
            return captured
        reason = (
            f"region {captured.to_region} refused the capture ({there.message}); "
            f"the amount was returned to {hold.from_account}"
        )
        return await self._step(
            RETURN_CAPTURE,
            ReturnCaptureInput(hold.hold_id, captured.capture_id, there.type or "InvalidRequest",
                               reason),
            CaptureResult, hold.hold_id,
        )  # fmt: skip

    @workflow.update(name=HOLD_VOID)
    async def void(self, initiated_by: str) -> ReleaseResult:
        hold_id = self._hold_id()
        return await self._step(
            RELEASE_HOLD, ReleaseHoldInput(hold_id, HoldStatus.VOIDED, initiated_by),
            ReleaseResult, hold_id,
        )  # fmt: skip

    @workflow.update(name=HOLD_EXTEND)
    async def extend(self, change: DeadlineChange) -> HoldState:
        return await self._step(EXTEND_HOLD, change, HoldState, change.hold_id)

    @workflow.query(name=HOLD_STATUS)
    def status(self) -> HoldState | None:
        return self._state

    # -- steps ---------------------------------------------------------------

    def _hold_id(self) -> str:
        if self._placed is None:
            raise ApplicationError("the hold is not placed yet", type="InvalidRequest",
                                   non_retryable=True)  # fmt: skip
        return self._placed.hold_id

    async def _step(self, name: str, arg: Any, result_type: type[T], hold_id: str) -> T:
        """One store step, after the placement and one at a time; the hold's
        state refreshed after it, whatever it answered."""
        await workflow.wait_condition(lambda: self._placed is not None or self._failed is not None)
        if self._placed is None or hold_id != self._placed.hold_id:
            raise ApplicationError(
                f"this workflow holds {self._placed.hold_id if self._placed else 'nothing'}, "
                f"not {hold_id!r}",
                type="InvalidRequest",
                non_retryable=True,
            )
        async with self._steps:
            try:
                return await store_step(name, arg, result_type)
            finally:
                self._state = await self._refresh(hold_id)
                self._changed = True

    async def _refresh(self, hold_id: str) -> HoldState | None:
        state = await store_step(GET_HOLD, hold_id, HoldState)
        if state is not None:
            workflow.upsert_search_attributes(
                [sa.STATUS.value_set(str(state.status))]
                + ([sa.DEADLINE.value_set(state.expires_at)] if state.expires_at else [])
            )
            workflow.set_current_details(
                f"{state.status}: {format_amount(state.captured, state.currency)} captured of "
                f"{format_amount(state.amount, state.currency)}, "
                f"{format_amount(state.remaining, state.currency)} still held"
                + (f", until {state.expires_at.isoformat()}" if state.open and state.expires_at
                   else "")
            )  # fmt: skip
        return state


def _refusal(reason_type: str, reason: str) -> ApplicationError:
    return ApplicationError(reason, type=reason_type, non_retryable=True)
