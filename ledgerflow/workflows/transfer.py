"""TransferWorkflow: one transfer, validate → append → project, durably.

A transfer between two regions is a saga through clearing accounts: the
source leg posts here (customer → clearing for the destination), the
destination leg runs on the destination region's task queue (clearing for
the source → customer) and waits there, `in_transit`, for as long as that
region is down. If the destination refuses for good, a reversing posting
returns the money here. Each leg is idempotent by its id in its region, so
retries and crashes post each at most once.

Store calls in the workflow's own region (validate, append, the source
legs, rejections) run as local activities: in the workflow task itself, on
the worker that holds this region's connection pool, without a round trip
through the server's task queues each (docs/ARCHITECTURE.md section 5; the numbers are
in docs/PERFORMANCE.md). A local transfer's projection is one too, so the
whole transfer is a single workflow task, and the caller, answered when it
completes, reads its own write. Calls to another region, and the
projections of a cross-region saga's legs, are regular activities. Workflows
started before this change (no `LOCAL_STORE_CALLS` marker) keep regular
activities throughout, and answer before projecting.

Since `ONE_STORE_CALL`, a local transfer is a single local activity:
append (whose own checks decide, so the advisory validation is not asked
first) and project, one marker in the history where there were three, and
one database round trip fewer. A projection that fails there is retried
here, bounded, as before. A cross-region transfer's first call validates,
and its saga goes on as before. Histories recorded before replay on the
three-call path.

Deterministic code only. The domain modules are plain standard-library code
and are passed through the sandbox; activities are called by name so that
no database library is ever imported here. Nothing runs at import time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from ledgerflow import search_attributes as sa
    from ledgerflow.domain.errors import REJECTION_TYPES, InvalidRequest, LedgerError
    from ledgerflow.domain.messages import (
        APPEND_LEG,
        APPEND_TRANSFER,
        POST_TRANSFER,
        PROJECT_EVENTS,
        RECORD_REJECTION,
        VALIDATE_TRANSFER,
        AppendLegInput,
        AppendTransferInput,
        PostTransferInput,
        PostTransferOutput,
        ProjectEventsInput,
        ProjectEventsOutput,
        RecordRejectionInput,
        TransferProgress,
        ValidateTransferInput,
        ValidateTransferOutput,
    )
    from ledgerflow.domain.model import (
        PostingKind,
        Transfer,
        TransferRequest,
        TransferResult,
        TransferStatus,
    )
    from ledgerflow.temporal_errors import domain_cause, reraised, to_application_error
    from ledgerflow.workflows.policies import (
        ACTIVITY_TIMEOUT,
        PROJECT_ATTEMPT,
        PROJECT_RETRY,
        PROJECT_WITHIN,
        RETRY_POLICY,
    )
    from ledgerflow.workflows.saga import destination_leg


T = TypeVar("T")

#: Patch marker: store calls in this region run as local activities.
LOCAL_STORE_CALLS = "local-store-calls"
#: Patch marker: a local transfer is one store call (append and project; a
#: cross-region one's first call validates), one marker in its history
#: where there were three. It implies `LOCAL_STORE_CALLS`, which is then not
#: asked (so a new history carries one patch marker, not two); histories
#: recorded before it replay on the three-call path.
ONE_STORE_CALL = "one-store-call"
#: Memo key the SDK client sets at the start to `ONE_STORE_CALL`: the path is
#: then chosen without a patch marker, for a patch costs every new history a
#: marker and a search attribute upsert (`TemporalChangeVersion`, a
#: visibility write on the server) of its own. See `_store_call_path`.
CODE_MEMO = "ledgerflow-code"
#: Patch marker: every saga step obeys the outcome the store recorded for its
#: leg (a recorded refusal ends or reverses the saga; a recorded confirmation
#: of a refused leg carries it on). Histories recorded before it replay on
#: the old path.
SAGA_OBEYS_STORE = "saga-obeys-store"


@workflow.defn
class TransferWorkflow:
    def __init__(self) -> None:
        self._local = False
        self._transfer: Transfer | None = None
        self._status: str = TransferStatus.PENDING
        self._result: TransferResult | None = None
        self._error: ApplicationError | None = None
        #: Projections of a cross-region transfer's legs, each in its region.
        self._projections: list[asyncio.Future[ProjectEventsOutput]] = []

    @workflow.run
    async def run(self, request: TransferRequest) -> TransferResult:
        one_call, self._local = self._store_call_path()
        try:
            transfer = request.validated()
        except LedgerError as exc:
            # A malformed request writes nothing, not even a rejection record.
            await self._fail(to_application_error(exc))
        except (TypeError, ValueError) as exc:
            # Whatever else a raw start can send: refused, never a workflow
            # task that fails and is retried for ever.
            await self._fail(to_application_error(InvalidRequest(f"malformed request: {exc}")))
        self._transfer = transfer
        # Whoever starts the workflow decides which attributes are indexed:
        # the SDK client sets them at the start (only region and status when
        # payloads are encrypted, so no account id or amount is stored in
        # clear); a start that sets none gets them all here.
        started_with = workflow.info().typed_search_attributes.get(sa.STATUS)
        if not self._local or started_with is None:
            self._set_attributes(
                sa.FROM_ACCOUNT.value_set(transfer.from_account),
                sa.TO_ACCOUNT.value_set(transfer.to_account),
                sa.CURRENCY.value_set(transfer.currency),
                sa.AMOUNT.value_set(transfer.amount),
                sa.STATUS.value_set(TransferStatus.PENDING),
            )
        workflow.set_current_details(f"{transfer.summary()}: pending")
        occurred_at = workflow.now()
        cross_region = False
        posted: PostTransferOutput | None = None
        try:
            if one_call:
                posted = await self._here(
                    POST_TRANSFER,
                    PostTransferInput(transfer, request.to_region, occurred_at),
                    PostTransferOutput,
                )
                checked = posted.checked
            else:
                checked = await self._here(
                    VALIDATE_TRANSFER,
                    ValidateTransferInput(transfer, request.to_region),
                    ValidateTransferOutput,
                )
            self._set_attributes(sa.REGION.value_set(checked.region))
            if checked.to_region is not None and checked.to_task_queue is not None:
                cross_region = True
                result = await self._cross_region(
                    transfer, checked.region, checked.to_region, checked.to_task_queue,
                    occurred_at, checked,
                )  # fmt: skip
            elif posted is not None and posted.result is not None:
                result = posted.result
            else:
                result = await self._here(
                    APPEND_TRANSFER, AppendTransferInput(transfer, occurred_at), TransferResult
                )
        except ActivityError as err:
            # Refused before anything was posted (in the source region). The
            # store answers with whatever it recorded for the id first, which
            # stands (a local transfer confirmed by an earlier attempt is
            # confirmed); a cross-region source leg's refusal is handled by
            # the saga itself, except in histories recorded before it was.
            cause = await self._refusal(err)
            leg = (PostingKind.OUTBOUND, request.to_region) if request.to_region else None
            result = await self._record_rejection(transfer, cause, occurred_at, leg)
        self._result = result
        self._status = result.status
        self._set_attributes(sa.STATUS.value_set(result.status))
        detail = f": {result.reason}" if result.reason else ""
        workflow.set_current_details(f"{transfer.summary()}: {result.status}{detail}")
        if cross_region:
            await asyncio.gather(*self._projections)
        elif result.confirmed and not (posted and posted.projected):
            events = ProjectEventsInput(result.event_ids)
            if self._local:
                await self._project_here(events)
            else:
                # The confirmation update has already answered; the read model
                # catches up here (and the catch-up projector covers a crash).
                await workflow.execute_activity(
                    PROJECT_EVENTS,
                    events,
                    result_type=ProjectEventsOutput,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=RETRY_POLICY,
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    @staticmethod
    def _store_call_path() -> tuple[bool, bool]:
        """(one store call, local store calls): what the code that wrote this
        history did, so that every history replays as it ran.

        A new run started with the memo takes the newest path and records no
        marker; one started without it (a raw start) records `ONE_STORE_CALL`.
        In a replay the markers tell: `ONE_STORE_CALL`, or `LOCAL_STORE_CALLS`
        (written by the code before it, even for a run started with the memo
        by a newer client), and neither marker means the memo's path if the
        run has the memo, and the path from before both patches otherwise.
        That last rule cannot tell a memo run of this code from one a worker
        of the code before `LOCAL_STORE_CALLS` ran (it ignored the memo and
        recorded no marker): upgrade workers before clients
        (docs/ARCHITECTURE.md, "One store call per local transfer")."""
        try:
            with_memo = workflow.memo_value(CODE_MEMO, None, type_hint=str) == ONE_STORE_CALL
        except Exception:  # whatever a raw start put there: not ours
            with_memo = False
        if not workflow.unsafe.is_replaying_history_events() and with_memo:
            return True, True
        # Live without the memo (a raw start), this records the marker.
        one = workflow.patched(ONE_STORE_CALL)
        local = one or workflow.patched(LOCAL_STORE_CALLS)
        if with_memo and not local:
            return True, True
        return one, local

    async def _cross_region(
        self,
        transfer: Transfer,
        region: str,
        to_region: str,
        to_task_queue: str,
        occurred_at: datetime,
        checked: ValidateTransferOutput,
    ) -> TransferResult:
        """The saga. Every step branches on the outcome the store returned for
        its leg, never on the one it expected: a re-run of a closed id (the
        plain client, a reset, a start after retention) meets recorded
        outcomes, and a late commit of an earlier attempt can turn a refusal
        into a confirmation (issue 12, findings 1, 2, 5)."""
        if checked.refusal_type is not None:
            refused = ApplicationError(checked.refusal or "", type=checked.refusal_type)
            source = await self._record_rejection(
                transfer, refused, occurred_at, (PostingKind.OUTBOUND, to_region)
            )
        else:
            try:
                source = await self._here(
                    APPEND_LEG,
                    AppendLegInput(transfer, PostingKind.OUTBOUND, to_region, occurred_at),
                    TransferResult,
                )
            except ActivityError as err:
                cause = await self._refusal(err)
                source = await self._record_rejection(
                    transfer, cause, occurred_at, (PostingKind.OUTBOUND, to_region)
                )
                if not workflow.patched(SAGA_OBEYS_STORE):
                    # Histories recorded before the patch ended here, whatever
                    # the store recorded (tests/histories/*_before_obey.json).
                    return source
        if source.status != TransferStatus.CONFIRMED and workflow.patched(SAGA_OBEYS_STORE):
            # The source leg is refused, now or by a recorded outcome: nothing
            # left this region, so nothing may arrive in the other.
            return source
        self._project(source)
        self._status = TransferStatus.IN_TRANSIT
        self._set_attributes(sa.STATUS.value_set(TransferStatus.IN_TRANSIT))
        workflow.set_current_details(f"{transfer.summary()}: in transit {region} → {to_region}")
        there = await destination_leg(
            transfer, region, to_task_queue, occurred_at,
            obey=lambda: workflow.patched(SAGA_OBEYS_STORE),
        )  # fmt: skip
        if isinstance(there, TransferResult):
            return self._arrived(transfer, region, to_region, to_task_queue, source, there)
        return await self._compensate(transfer, region, to_region, there, source, occurred_at)

    def _arrived(
        self,
        transfer: Transfer,
        region: str,
        to_region: str,
        to_task_queue: str,
        source: TransferResult,
        arrived: TransferResult,
    ) -> TransferResult:
        self._project(arrived, to_task_queue)
        return TransferResult(
            transfer_id=transfer.transfer_id,
            status=TransferStatus.CONFIRMED,
            fingerprint=source.fingerprint,
            region=region,
            debit_event_id=source.debit_event_id,
            credit_event_id=arrived.credit_event_id,
            from_balance_after=source.from_balance_after,
            to_balance_after=arrived.to_balance_after,
            confirmed_at=arrived.confirmed_at,
            to_region=to_region,
        )

    async def _compensate(
        self,
        transfer: Transfer,
        region: str,
        to_region: str,
        refusal: ApplicationError,
        source: TransferResult,
        occurred_at: datetime,
    ) -> TransferResult:
        """The destination refused for good (its refusal recorded there):
        post the reversing leg here. Never delete anything."""
        try:
            returned = await self._here(
                APPEND_LEG,
                AppendLegInput(transfer, PostingKind.REVERSAL, to_region, occurred_at),
                TransferResult,
            )
        except ActivityError as err:
            # Never reachable by design (both accounts exist, the id is ours):
            # the money is in the clearing account, so fail loudly, never as a
            # "rejection" (reconciliation then reports the stranded leg).
            cause = domain_cause(err)
            if cause is None:
                raise
            await self._fail(reraised(cause))
        if returned.status != TransferStatus.CONFIRMED and workflow.patched(SAGA_OBEYS_STORE):
            await self._fail(
                ApplicationError(
                    f"the reversal of transfer {transfer.transfer_id} is recorded as "
                    f"{returned.status} ({returned.reason}); the amount is still in clearing",
                    type=returned.reason_type or "ReversalNotPosted",
                    non_retryable=True,
                )
            )
        self._project(returned)
        return TransferResult(
            transfer_id=transfer.transfer_id,
            status=TransferStatus.REVERSED,
            fingerprint=source.fingerprint,
            region=region,
            reason_type=refusal.type,
            reason=f"region {to_region} refused the transfer ({refusal.message}); "
            f"the amount was returned to {transfer.from_account}",
            debit_event_id=source.debit_event_id,
            from_balance_after=returned.to_balance_after,
            confirmed_at=returned.confirmed_at,
            to_region=to_region,
        )

    async def _refusal(self, err: ActivityError) -> ApplicationError:
        """The rejection behind a failed store call; anything else ends here:
        an infrastructure failure is re-raised (the task retries), a malformed
        request fails the workflow typed."""
        cause = domain_cause(err)
        if cause is None:
            raise err
        if cause.type not in REJECTION_TYPES:
            await self._fail(reraised(cause))
        return cause

    def _set_attributes(self, *updates: SearchAttributeUpdate[Any]) -> None:
        """Upsert search attributes. With `LOCAL_STORE_CALLS`, only those that
        change: the SDK client sets them all at the start, and every upsert is
        a history event and a visibility write on the server."""
        if self._local:
            current = workflow.info().typed_search_attributes
            updates = tuple(u for u in updates if current.get(u.key) != u.value)
        if updates:
            workflow.upsert_search_attributes(list(updates))

    async def _here(self, activity: str, arg: Any, result_type: type[T]) -> T:
        """A store call in this workflow's own region: a local activity, or a
        regular one for a workflow started before `LOCAL_STORE_CALLS`."""
        execute = workflow.execute_local_activity if self._local else workflow.execute_activity
        try:
            result: T = await execute(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        except ApplicationError as err:
            # A local activity's failure arrives as the activity's own error,
            # a regular one's wrapped in ActivityError: wrap it the same way,
            # so that one set of handlers serves both.
            raise ActivityError(
                f"local activity {activity} failed",
                scheduled_event_id=0,
                started_event_id=0,
                identity="",
                activity_type=activity,
                activity_id="",
                retry_state=None,
            ) from err
        return result

    async def _project_here(self, events: ProjectEventsInput) -> None:
        """Project in the same workflow task, so that the transfer needs one
        workflow task in all and its caller, answered when that task
        completes, reads its own write in the views. Bounded: if projection
        keeps failing, the answer goes out anyway and the worker's catch-up
        projector (which records its failures) applies the events."""
        try:
            await workflow.execute_local_activity(
                PROJECT_EVENTS,
                events,
                result_type=ProjectEventsOutput,
                start_to_close_timeout=PROJECT_ATTEMPT,
                schedule_to_close_timeout=PROJECT_WITHIN,
                retry_policy=PROJECT_RETRY,
            )
        except FailureError as err:  # the activity's error, or its timeout
            workflow.logger.warning(
                "projection of %s left to the catch-up projector: %s", events.event_ids, err
            )

    def _project(self, posted: TransferResult, task_queue: str | None = None) -> None:
        """Project a leg's events in its own region, alongside the saga."""
        self._projections.append(
            workflow.start_activity(
                PROJECT_EVENTS,
                ProjectEventsInput(posted.event_ids),
                result_type=ProjectEventsOutput,
                task_queue=task_queue,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        )

    async def _record_rejection(
        self,
        transfer: Transfer,
        cause: ApplicationError,
        occurred_at: datetime,
        leg: tuple[str, str] | None = None,
    ) -> TransferResult:
        """The store records the refusal, or returns whatever was recorded for this
        id first: the outcome of a transfer id never changes. `leg` is the
        (kind, peer region) of a cross-region transfer's refused leg."""
        kind, peer = leg or (PostingKind.LOCAL, None)
        try:
            rejected = await self._here(
                RECORD_REJECTION,
                RecordRejectionInput(
                    transfer, cause.type or "", cause.message, occurred_at, kind, peer
                ),
                TransferResult,
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
        self._set_attributes(sa.STATUS.value_set(TransferStatus.FAILED))
        workflow.set_current_details(f"failed: {error.type}: {error.message}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        raise error

    @workflow.update
    async def confirmation(self) -> TransferResult:
        """Answers once the outcome is durably recorded: for a local transfer,
        once it is projected too (read your writes), or after at most
        `PROJECT_WITHIN` if projection fails; otherwise before projection."""
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
