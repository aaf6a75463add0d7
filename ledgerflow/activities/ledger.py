"""The ledger's activities, bound to one region's event store.

One instance per worker process holds the region's connection pool; every
activity call shares it (docs/ARCHITECTURE.md section 4: never a pool per activity).
Domain errors leave as non-retryable `ApplicationError`s with the error's
stable type; anything else (a dropped connection, a lock timeout) is retried
by Temporal with backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from temporalio import activity

from ledgerflow import failpoints
from ledgerflow.domain.errors import (
    REJECTION_TYPES,
    InvalidRequest,
    LedgerError,
    error_from_type,
)
from ledgerflow.domain.holds import (
    CaptureRequest,
    CaptureResult,
    DeadlineChange,
    HoldRequest,
    HoldResult,
    HoldState,
    ReleaseResult,
)
from ledgerflow.domain.messages import (
    APPEND_LEG,
    APPEND_TRANSACTION,
    APPEND_TRANSFER,
    CAPTURE_HOLD,
    CHANGE_ACCOUNT,
    EXTEND_HOLD,
    GET_HOLD,
    OPEN_ACCOUNT,
    PLACE_HOLD,
    POST_TRANSFER,
    PROJECT_EVENTS,
    RECORD_REJECTION,
    RELEASE_HOLD,
    RETURN_CAPTURE,
    VALIDATE_TRANSFER,
    AppendLegInput,
    AppendTransferInput,
    PostTransferInput,
    PostTransferOutput,
    ProjectEventsInput,
    ProjectEventsOutput,
    RecordRejectionInput,
    ReleaseHoldInput,
    ReturnCaptureInput,
    ValidateTransferInput,
    ValidateTransferOutput,
)
from ledgerflow.domain.model import (
    AccountChangeRequest,
    AccountChangeResult,
    OpenAccountRequest,
    OpenAccountResult,
    Posting,
    PostingKind,
    TransferResult,
    reversal_id,
)
from ledgerflow.domain.transactions import TransactionRequest, TransactionResult
from ledgerflow.store.base import EventStore
from ledgerflow.temporal_errors import to_application_error
from ledgerflow.workflows.policies import PROJECT_IN_CALL

#: SQLSTATE classes that say the data itself is refused (22: data exception,
#: e.g. a NUL byte or an encoding PostgreSQL cannot store): retrying the same
#: request can never succeed. Every other database error (a dropped
#: connection, a lock timeout, a serialization failure) may heal and retries.
_DATA_REFUSED = ("22",)


@contextmanager
def domain_errors_as_application_errors() -> Iterator[None]:
    """Ledger errors leave typed and non-retryable; so does anything that says
    the request's own content cannot be stored (nothing in a request may
    retry forever, issue 12 finding 7). Infrastructure errors propagate, and
    Temporal retries them with backoff."""
    try:
        yield
    except LedgerError as exc:
        raise to_application_error(exc) from exc
    except UnicodeError as exc:
        raise to_application_error(
            InvalidRequest(f"the request holds text that is not valid UTF-8: {exc}")
        ) from exc
    except DBAPIError as exc:
        state = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
        if not state.startswith(_DATA_REFUSED):
            raise
        detail = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        raise to_application_error(
            InvalidRequest(f"the database refuses the request's data: {detail}")
        ) from exc


class LedgerActivities:
    """`task_queues` maps every configured region to its task queue: the
    destination leg of a cross-region transfer runs on the destination's."""

    def __init__(self, store: EventStore, task_queues: Mapping[str, str]) -> None:
        self.store = store
        self.task_queues = dict(task_queues)

    @activity.defn(name=VALIDATE_TRANSFER)
    async def validate_transfer(self, data: ValidateTransferInput) -> ValidateTransferOutput:
        """Advisory check without locks: cheap early rejection; the append decides."""
        region = self.store.region
        to_region = data.to_region if data.to_region != region else None
        with domain_errors_as_application_errors():
            if to_region is None:
                await self.store.check_transfer(data.transfer)
                return ValidateTransferOutput(region=region)
            if to_region not in self.task_queues:
                raise InvalidRequest(
                    f"to_region {to_region!r} is not one of the ledger's regions "
                    f"{sorted(self.task_queues)}",
                    field="to_region",
                )
            try:
                await self.store.check_posting(Posting.outbound(data.transfer, region, to_region))
            except LedgerError as refused:
                if refused.type not in REJECTION_TYPES:
                    raise
                # Returned, not raised: the saga records the refusal and then
                # obeys whatever the store recorded for the source leg, which
                # may be an earlier confirmation it must carry to the end.
                return ValidateTransferOutput(
                    region, to_region, self.task_queues[to_region], refused.type, refused.message
                )
        return ValidateTransferOutput(region, to_region, self.task_queues[to_region])

    @activity.defn(name=POST_TRANSFER)
    async def post_transfer(self, data: PostTransferInput) -> PostTransferOutput:
        """A local transfer in one call, one marker in its workflow's history:
        appended (the store's own checks decide, so the advisory check is not
        asked first), then projected. A projection that fails or is slow
        does not fail the call, whose posting stands: the workflow projects
        again, bounded, and the catch-up projector covers the rest. A
        cross-region transfer is only validated here."""
        region = self.store.region
        if data.to_region not in (None, region):
            checked = await self.validate_transfer(
                ValidateTransferInput(data.transfer, data.to_region)
            )
            return PostTransferOutput(checked)
        result = await self.append_transfer(AppendTransferInput(data.transfer, data.occurred_at))
        projected = False
        if result.confirmed:
            events = result.event_ids
            try:
                async with asyncio.timeout(PROJECT_IN_CALL.total_seconds()):
                    await self.store.project(events)
                projected = True
            except Exception as exc:  # the posting stands (see above)
                activity.logger.warning("projection of %s deferred: %r", events, exc)
        return PostTransferOutput(ValidateTransferOutput(region=region), result, projected)

    @activity.defn(name=APPEND_LEG)
    async def append_leg(self, data: AppendLegInput) -> TransferResult:
        with domain_errors_as_application_errors():
            posting = Posting.of(data.transfer, data.kind, self.store.region, data.peer_region)
            result = await self.store.append_posting(posting, data.occurred_at)
        failpoints.reached("after-append", data.transfer.transfer_id)
        return result

    @activity.defn(name=APPEND_TRANSFER)
    async def append_transfer(self, data: AppendTransferInput) -> TransferResult:
        with domain_errors_as_application_errors():
            result = await self.store.append_transfer(
                data.transfer, self.store.region, data.occurred_at
            )
        failpoints.reached("after-append", data.transfer.transfer_id)
        return result

    @activity.defn(name=RECORD_REJECTION)
    async def record_rejection(self, data: RecordRejectionInput) -> TransferResult:
        error = error_from_type(data.reason_type, data.reason)
        region = self.store.region
        # A refusal in the source region before anything was posted is recorded
        # as outbound; a "cross-region" transfer into this same region is local.
        kind = data.kind if data.peer_region not in (None, region) else PostingKind.LOCAL
        with domain_errors_as_application_errors():
            posting = Posting.of(data.transfer, kind, region, data.peer_region)
            return await self.store.record_posting_rejection(posting, error, data.occurred_at)

    @activity.defn(name=PROJECT_EVENTS)
    async def project_events(self, data: ProjectEventsInput) -> ProjectEventsOutput:
        return ProjectEventsOutput(applied=await self.store.project(data.event_ids))

    @activity.defn(name=OPEN_ACCOUNT)
    async def open_account(self, request: OpenAccountRequest) -> OpenAccountResult:
        with domain_errors_as_application_errors():
            result = await self.store.open_account(request, datetime.now(UTC))
        await self.project_events(ProjectEventsInput([result.event_id]))
        return result

    @activity.defn(name=CHANGE_ACCOUNT)
    async def change_account(self, request: AccountChangeRequest) -> AccountChangeResult:
        with domain_errors_as_application_errors():
            result = await self.store.change_account(request, datetime.now(UTC))
        if result.event_id is not None:
            await self.project_events(ProjectEventsInput([result.event_id]))
        return result

    # -- holds ------------------------------------------------------------

    @activity.defn(name=PLACE_HOLD)
    async def place_hold(self, request: HoldRequest) -> HoldResult:
        with domain_errors_as_application_errors():
            if request.to_region == self.store.region:
                request = replace(request, to_region=None)  # a hold within its region
            if request.to_region is not None and request.to_region not in self.task_queues:
                raise InvalidRequest(
                    f"to_region {request.to_region!r} is not one of the ledger's regions "
                    f"{sorted(self.task_queues)}",
                    field="to_region",
                )
            result = await self.store.place_hold(request, datetime.now(UTC))
        if result.event_id is not None:
            await self.project_events(ProjectEventsInput([result.event_id]))
        return result

    @activity.defn(name=CAPTURE_HOLD)
    async def capture_hold(self, request: CaptureRequest) -> CaptureResult:
        with domain_errors_as_application_errors():
            result = await self.store.capture_hold(request, datetime.now(UTC))
        await self._project_posting(result.posting_id)
        if result.to_region is not None:
            # Where the saga's destination leg runs (`capture_hold` only
            # ever answers with a region the placement accepted).
            result = replace(result, to_task_queue=self.task_queues[result.to_region])
        return result

    @activity.defn(name=RETURN_CAPTURE)
    async def return_capture(self, data: ReturnCaptureInput) -> CaptureResult:
        with domain_errors_as_application_errors():
            result = await self.store.return_capture(
                data.hold_id, data.capture_id, data.reason_type, data.reason, datetime.now(UTC)
            )
        if result.posting_id is not None:
            await self._project_posting(reversal_id(result.posting_id))
        return result

    async def _project_posting(self, posting_id: str | None) -> None:
        if posting_id is None:
            return
        posted = await self.store.get_transfer(posting_id)
        if posted is not None and posted.debit_event_id and posted.credit_event_id:
            await self.project_events(
                ProjectEventsInput([posted.debit_event_id, posted.credit_event_id])
            )

    @activity.defn(name=RELEASE_HOLD)
    async def release_hold(self, data: ReleaseHoldInput) -> ReleaseResult | None:
        # NotDue (the timer ran ahead of the store's clock) is not a ledger
        # error: it leaves as a plain failure, and the activity retries.
        with domain_errors_as_application_errors():
            result = await self.store.release_hold(
                data.hold_id, data.ending, data.initiated_by, datetime.now(UTC)
            )
        if result is not None:
            await self.project_events(ProjectEventsInput([result.event_id]))
        return result

    @activity.defn(name=EXTEND_HOLD)
    async def extend_hold(self, change: DeadlineChange) -> HoldState:
        with domain_errors_as_application_errors():
            return await self.store.extend_hold(change, datetime.now(UTC))

    @activity.defn(name=GET_HOLD)
    async def get_hold(self, hold_id: str) -> HoldState | None:
        return await self.store.get_hold(hold_id)

    @activity.defn(name=APPEND_TRANSACTION)
    async def append_transaction(self, request: TransactionRequest) -> TransactionResult:
        with domain_errors_as_application_errors():
            result = await self.store.append_transaction(request, datetime.now(UTC))
        if result.event_ids:
            await self.project_events(ProjectEventsInput(list(result.event_ids)))
        return result

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.validate_transfer,
            self.post_transfer,
            self.append_transfer,
            self.append_leg,
            self.record_rejection,
            self.project_events,
            self.open_account,
            self.change_account,
            self.place_hold,
            self.capture_hold,
            self.release_hold,
            self.extend_hold,
            self.get_hold,
            self.return_capture,
            self.append_transaction,
        ]
