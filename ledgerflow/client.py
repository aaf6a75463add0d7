"""LedgerClient: the typed Python SDK, a thin wrapper over the Temporal client.

Writes go through workflows (`transfer`, `open_account`); reads come from the
read models of the account's home region (`balance`, `statement`).

    async with await LedgerClient.connect() as ledger:
        await ledger.open_account("acc-1", "USD")
        result = await ledger.transfer("t-1", "acc-1", "acc-2", "12.50", "USD",
                                       initiated_by="alice")
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from ledgerflow import search_attributes as sa
from ledgerflow.config import Settings
from ledgerflow.converter import data_converter
from ledgerflow.domain.errors import (
    AccountAlreadyExists,
    AccountNotFound,
    ConfirmationTimeout,
    DuplicateCaptureMismatch,
    DuplicateChangeMismatch,
    DuplicateHoldMismatch,
    DuplicateTransactionMismatch,
    DuplicateTransferMismatch,
    HoldExpired,
    HoldNotFound,
    HoldNotOpen,
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
    hold_workflow_id,
)
from ledgerflow.domain.model import (
    Account,
    AccountChangeRequest,
    AccountChangeResult,
    OpenAccountRequest,
    OpenAccountResult,
    Transfer,
    TransferRequest,
    TransferResult,
    TransferStatus,
)
from ledgerflow.domain.money import format_amount
from ledgerflow.domain.transactions import LegRequest, TransactionRequest, TransactionResult
from ledgerflow.domain.webhooks import (
    MAX_ATTEMPTS,
    Subscription,
    WebhookState,
    WebhookStatus,
    webhook_workflow_id,
)
from ledgerflow.reads import READ_RETRY_S, DatabaseReads, ReadSide
from ledgerflow.workflow_names import (
    ACCOUNT_CHANGE_WORKFLOW,
    HOLD_CAPTURE,
    HOLD_EXTEND,
    HOLD_PLACEMENT,
    HOLD_VOID,
    HOLD_WORKFLOW,
    OPEN_ACCOUNT_WORKFLOW,
    TRANSACTION_WORKFLOW,
    TRANSFER_CODE_MEMO,
    TRANSFER_CONFIRMATION,
    TRANSFER_WORKFLOW,
    WEBHOOK_CANCEL,
    WEBHOOK_REDELIVER,
    WEBHOOK_STATUS,
    WEBHOOK_WORKFLOW,
    account_workflow_id,
)

if TYPE_CHECKING:  # (types only: the transfer path loads no SQLAlchemy)
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ledgerflow.archive.reader import ArchiveReader
    from ledgerflow.audit.point_in_time import BalanceAsOf
    from ledgerflow.audit.trail import AuditTrail
    from ledgerflow.projections.views import Balance, StatementLine
    from ledgerflow.stream.consumer import StreamEvent

T = TypeVar("T")


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    """The Temporal client for these settings: the connection Temporal's
    client configuration describes (profile, `TEMPORAL_*`, TLS and mTLS, API
    key) with the `LEDGERFLOW_TEMPORAL_*` overrides, else the embedded server."""
    connect = settings.temporal_profile.to_client_connect_config()
    connect["target_host"] = settings.temporal_address
    connect["namespace"] = settings.temporal_namespace
    return await Client.connect(**connect, data_converter=data_converter(settings), runtime=runtime)


def ledger_error_from(exc: BaseException) -> LedgerError | None:
    """The typed ledger error inside a Temporal failure chain, if there is one."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type:
            details = cause.details[0] if cause.details else {}
            return error_from_type(
                cause.type, cause.message, **(details if isinstance(details, dict) else {})
            )
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return None


def _fingerprint(started: tuple[TransferRequest, str] | None) -> str | None:
    """The fingerprint of a run's request (None if it is not a valid one)."""
    if started is None:
        return None
    try:
        return started[0].validated().fingerprint()
    except LedgerError:
        return None


def _discard_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as lost


def _consume(start: WithStartWorkflowOperation[Any, Any]) -> None:
    """Retrieve the start operation's handle future in the background, so that
    its error (if any) is not logged as never retrieved."""
    asyncio.ensure_future(start.workflow_handle()).add_done_callback(_discard_outcome)


#: Server answers to an update-with-start that a fresh attempt can get past.
RETRIED_START_STATUSES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.ABORTED}
)
#: How long `transfer` keeps attaching through such answers without `confirm_within`.
ATTACH_WINDOW_S = 60.0


async def typed_errors(call: Callable[[], Awaitable[T]]) -> T:
    """Run a Temporal call; a workflow's domain error comes back as its `LedgerError`."""
    try:
        return await call()
    except (WorkflowFailureError, WorkflowUpdateFailedError) as exc:
        error = ledger_error_from(exc)
        if error is None:
            raise
        raise error from exc


class LedgerClient:
    def __init__(
        self,
        temporal: Client,
        settings: Settings,
        *,
        reads: ReadSide | None = None,
        read_retry_s: float = READ_RETRY_S,
    ) -> None:
        """Writes go through `temporal`; reads through `reads` (by default the
        regions' databases as the read-only role, riding out an unreachable
        database for `read_retry_s`)."""
        self.temporal = temporal
        self.settings = settings
        self.reads: ReadSide = reads or DatabaseReads(settings, read_retry_s=read_retry_s)
        #: Confirmations in flight, shared by concurrent calls for one transfer.
        self._confirming: dict[tuple[Any, ...], asyncio.Future[TransferResult]] = {}
        #: The event stream's connection, opened by the first `events` call.
        self._stream: Any = None

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        reads: ReadSide | None = None,
        read_retry_s: float = READ_RETRY_S,
    ) -> LedgerClient:
        settings = settings or Settings.from_env()
        temporal = await connect_temporal(settings)
        return cls(temporal, settings, reads=reads, read_retry_s=read_retry_s)

    async def close(self) -> None:
        await self.reads.close()
        if self._stream is not None:
            await self._stream.close()
            self._stream = None

    # -- webhooks --------------------------------------------------------

    async def subscribe(
        self,
        subscription_id: str,
        url: str,
        secret: str,
        *,
        region: str | None = None,
        account: str | None = None,
        event_type: str | None = None,
        created_by: str = "sdk",
        max_attempts: int = MAX_ATTEMPTS,
        backoff_s: float = 1.0,
    ) -> WebhookStatus:
        """POST every event of the global stream that matches (region,
        account, event type: each optional) to `url`, signed with `secret`,
        at least once each, from the stream's start (a `WebhookWorkflow`,
        `webhook-<subscription_id>`, in the default region). The same id
        again answers the running subscription."""
        subscription = Subscription(subscription_id, url, secret, region, account, event_type,
                                    created_by, max_attempts, backoff_s).validated()  # fmt: skip
        handle = await self.temporal.start_workflow(
            WEBHOOK_WORKFLOW, WebhookState(subscription), id=webhook_workflow_id(subscription_id),
            task_queue=self.settings.task_queue(self.settings.stream_region),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"webhook {url}",
        )  # fmt: skip
        return await self._webhook_status(handle)

    async def webhook_status(self, subscription_id: str) -> WebhookStatus:
        return await self._webhook_status(
            self.temporal.get_workflow_handle(webhook_workflow_id(subscription_id))
        )

    async def _webhook_status(self, handle: WorkflowHandle[Any, Any]) -> WebhookStatus:
        for _ in range(50):  # (its first workflow task sets it up)
            try:
                status: WebhookStatus = await handle.query(WEBHOOK_STATUS,
                                                           result_type=WebhookStatus)  # fmt: skip
                return status
            except WorkflowQueryFailedError:
                await asyncio.sleep(0.1)
        raise LedgerError(f"webhook {handle.id} does not answer")

    async def redeliver(self, subscription_id: str, event_id: str | None = None) -> int:
        """Deliver a subscription's dead letters again (all, or one event's);
        how many arrived (the others stay dead letters)."""
        handle = self.temporal.get_workflow_handle(webhook_workflow_id(subscription_id))
        arrived: int = await typed_errors(
            lambda: handle.execute_update(WEBHOOK_REDELIVER, event_id, result_type=int)
        )
        return arrived

    async def unsubscribe(self, subscription_id: str) -> WebhookStatus:
        handle = self.temporal.get_workflow_handle(webhook_workflow_id(subscription_id))
        status: WebhookStatus = await typed_errors(
            lambda: handle.execute_update(WEBHOOK_CANCEL, result_type=WebhookStatus)
        )
        return status

    async def events(
        self,
        *,
        start: int | datetime | None = None,
        region: str | None = None,
        account: str | None = None,
        event_type: str | None = None,
        durable: str | None = None,
        follow: bool = True,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Every region's events from the global stream, in its order: from
        `start` (a stream position, or a time-zone-aware time; default: the
        beginning), filtered by region, account and event type. With
        `durable` (a consumer name) it resumes after what that consumer
        acknowledged, and each event must be acknowledged (`await
        event.ack()`); one that is not comes again. Each event carries its
        hash and previous hash (`event.verified`). With `follow=False` it
        ends once it has caught up."""
        from ledgerflow.stream.consumer import read_events
        from ledgerflow.stream.topology import connect

        if self._stream is None:
            self._stream = await connect(
                self.settings.nats_url(self.settings.stream_region), name="ledgerflow-sdk"
            )
        async for item in read_events(
            self._stream.jetstream(), start=start, region=region, account=account,
            event_type=event_type, durable=durable, follow=follow,
        ):  # fmt: skip
            yield item

    async def __aenter__(self) -> LedgerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- writes (workflows) ------------------------------------------------

    async def open_account(
        self,
        account_id: str,
        currency: str,
        *,
        region: str | None = None,
        overdraft_limit: int | None = 0,
        initiated_by: str = "sdk",
        metadata: dict[str, Any] | None = None,
    ) -> Account:
        """Open an account (idempotent for identical attributes)."""
        region = region or self.settings.default_region
        self.settings.require_region(region)
        with contextlib.suppress(AccountNotFound):
            home = await self.locate(account_id)
            if home != region:
                raise AccountAlreadyExists(
                    f"account {account_id!r} already exists in region {home!r}",
                    account_id=account_id,
                )
        request = OpenAccountRequest(
            account_id=account_id,
            currency=currency,
            region=region,
            overdraft_limit=overdraft_limit,
            initiated_by=initiated_by,
            metadata=metadata or {},
        ).validated()
        workflow_id = account_workflow_id(account_id)
        result: OpenAccountResult
        try:
            result = await typed_errors(
                lambda: self.temporal.execute_workflow(
                    OPEN_ACCOUNT_WORKFLOW,
                    request,
                    result_type=OpenAccountResult,
                    id=workflow_id,
                    task_queue=self.settings.task_queue(region),
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    # One account id, one opening, in whichever region.
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"open {account_id} ({currency}, {region})",
                )
            )
        except WorkflowAlreadyStartedError:
            handle = self.temporal.get_workflow_handle(workflow_id, result_type=OpenAccountResult)
            result = await typed_errors(handle.result)
        account = result.account
        # The same attributes open the same account again (whoever asks: the
        # opening's principal stays the first's); other ones are a conflict.
        if (account.currency, account.region, account.overdraft_limit, account.metadata) != (
            request.currency,
            request.region,
            request.overdraft_limit,
            request.metadata,
        ):
            raise AccountAlreadyExists(
                f"account {account_id!r} already exists with currency {account.currency}, "
                f"region {account.region}, overdraft limit {account.overdraft_limit}"
                + (" and other metadata" if account.metadata != request.metadata else ""),
                account_id=account_id,
            )
        if isinstance(self.reads, DatabaseReads):
            self.reads.homes[account_id] = region
        return account

    async def change_account(
        self,
        account_id: str,
        action: str,
        *,
        reason: str,
        change_id: str | None = None,
        initiated_by: str = "sdk",
        region: str | None = None,
    ) -> AccountChangeResult:
        """Freeze, unfreeze or close an account (`action`), with why
        (`reason`, kept in the audit trail). Idempotent by `change_id` (one
        is generated when omitted: pass your own to retry safely). A change
        the account's state does not allow raises its typed error
        (`AccountStateConflict`, `AccountNotEmpty`, `AccountUnknown`), and is
        recorded as refused under its id."""
        request = AccountChangeRequest(
            change_id=change_id or f"c-{uuid.uuid4().hex[:16]}",
            account_id=account_id,
            action=action,
            initiated_by=initiated_by,
            reason=reason,
        ).validated()
        if region is None:
            region = await self._home_or_default(account_id)
        self.settings.require_region(region)
        result: AccountChangeResult = await typed_errors(
            lambda: self.temporal.execute_workflow(
                ACCOUNT_CHANGE_WORKFLOW,
                request,
                result_type=AccountChangeResult,
                id=request.workflow_id,
                task_queue=self.settings.task_queue(region),
                # A second start of the id waits for the first; a re-run of a
                # closed one is answered from the store with the same outcome.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"{action} {account_id}: {reason}"[:200],
            )
        )
        if result.fingerprint != request.fingerprint():
            # Attached to a run of the id still going with another request.
            raise DuplicateChangeMismatch(
                f"change id {request.change_id!r} was already used with another request",
                account_id=account_id,
                change_id=request.change_id,
            )
        if result.reason_type is not None:
            raise error_from_type(
                result.reason_type,
                result.reason or result.reason_type,
                account_id=account_id,
                change_id=request.change_id,
            )
        return result

    async def freeze_account(self, account_id: str, **kwargs: Any) -> AccountChangeResult:
        """A frozen account refuses debits and still accepts credits."""
        return await self.change_account(account_id, "freeze", **kwargs)

    async def unfreeze_account(self, account_id: str, **kwargs: Any) -> AccountChangeResult:
        return await self.change_account(account_id, "unfreeze", **kwargs)

    async def close_account(self, account_id: str, **kwargs: Any) -> AccountChangeResult:
        """Close an empty account, for good."""
        return await self.change_account(account_id, "close", **kwargs)

    # -- multi-leg transactions ------------------------------------------------

    async def transaction(
        self,
        transaction_id: str,
        legs: list[LegRequest],
        *,
        initiated_by: str = "sdk",
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        region: str | None = None,
        raise_on_rejection: bool = True,
    ) -> TransactionResult:
        """Post every leg at once, or none (`TransactionWorkflow`,
        `transaction-<id>`): each currency's legs must sum to zero, every
        account in one region, each once. A rejection (any leg's account
        refusing) raises its typed error, or is returned with
        `raise_on_rejection=False`. The transaction id is the idempotency key."""
        request = TransactionRequest(transaction_id, legs, initiated_by, description, metadata)
        transaction = request.validated()
        if region is None:
            region = await self._home_or_default(transaction.legs[0].account_id)
        self.settings.require_region(region)
        result: TransactionResult = await typed_errors(
            lambda: self.temporal.execute_workflow(
                TRANSACTION_WORKFLOW,
                request,
                result_type=TransactionResult,
                id=transaction.workflow_id,
                task_queue=self.settings.task_queue(region),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"transaction of {len(transaction.legs)} legs",
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(sa.REGION, region),
                     SearchAttributePair(sa.STATUS, "pending")]
                ),
            )
        )  # fmt: skip
        if result.fingerprint != transaction.fingerprint():
            # Attached to a run of the id still going with another request.
            raise DuplicateTransactionMismatch(
                f"transaction id {transaction_id!r} was already used with another request",
                transaction_id=transaction_id,
            )
        if result.reason_type is not None and raise_on_rejection:
            raise error_from_type(result.reason_type, result.reason or result.reason_type,
                                  transaction_id=transaction_id)  # fmt: skip
        return result

    # -- holds ------------------------------------------------------------

    async def hold(
        self,
        hold_id: str,
        from_account: str,
        to_account: str,
        amount: int | str,
        currency: str,
        *,
        expires_in: int,
        initiated_by: str = "sdk",
        over_capture: int = 0,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        region: str | None = None,
        raise_on_refusal: bool = True,
    ) -> HoldResult:
        """Reserve `amount` of `from_account` toward `to_account` (in any
        region) for `expires_in` seconds (a `HoldWorkflow`, `hold-<hold_id>`,
        in the held account's region). Returns
        once the placement is recorded; a refusal (insufficient available
        funds, a frozen or closed account...) raises its typed error, or is
        returned with `raise_on_refusal=False`. The hold id is the
        idempotency key, with the transfer id's rules."""
        request = HoldRequest(
            hold_id, from_account, to_account, amount, currency, initiated_by, expires_in,
            over_capture, description, metadata,
        )  # fmt: skip
        request.validated()  # bad input is refused before any lookup
        if region is None:
            region = await self._home_or_default(from_account)
        self.settings.require_region(region)
        # A target in another region: its captures travel through the saga.
        request = replace(request, to_region=await self._destination(to_account, region))
        held = request.validated()
        attributes: list[SearchAttributePair[Any]] = [
            SearchAttributePair(sa.REGION, region),
            SearchAttributePair(sa.STATUS, "placing"),
        ]
        if not self.settings.codec_keys:
            attributes += [
                SearchAttributePair(sa.FROM_ACCOUNT, held.from_account),
                SearchAttributePair(sa.TO_ACCOUNT, held.to_account),
                SearchAttributePair(sa.CURRENCY, held.currency),
                SearchAttributePair(sa.AMOUNT, held.amount),
            ]
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            HOLD_WORKFLOW, request, id=held.workflow_id,
            task_queue=self.settings.task_queue(region),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"hold {format_amount(held.amount, held.currency)} "
            f"{held.from_account} → {held.to_account}",
            search_attributes=TypedSearchAttributes(attributes),
        )  # fmt: skip
        try:
            result: HoldResult = await typed_errors(
                functools.partial(
                    self.temporal.execute_update_with_start_workflow,
                    HOLD_PLACEMENT,
                    start_workflow_operation=start,
                    result_type=HoldResult,
                )
            )
        except BaseException:
            _consume(start)
            raise
        if result.fingerprint != held.fingerprint():
            # The id's workflow was already running (the hold is open) with
            # another request: its placement is not this one's answer.
            raise DuplicateHoldMismatch(
                f"hold id {hold_id!r} was already used with another request", hold_id=hold_id
            )
        if result.reason_type is not None and raise_on_refusal:
            raise error_from_type(
                result.reason_type, result.reason or result.reason_type, hold_id=hold_id
            )
        return result

    async def _hold_update(self, hold_id: str, update: str, arg: Any, result_type: type[T]) -> T:
        """An update of the hold's workflow; once it closed (the hold ended),
        the store's records answer instead."""
        handle = self.temporal.get_workflow_handle(hold_workflow_id(hold_id))
        try:
            answer: T = await typed_errors(
                lambda: handle.execute_update(update, arg, result_type=result_type)
            )
            return answer
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        state = await self.reads.hold(hold_id)
        if state is None:
            raise HoldNotFound(f"no hold {hold_id!r} was placed", hold_id=hold_id)
        raise HoldNotOpen(
            f"hold {hold_id!r} is {state.status}", hold_id=hold_id, status=str(state.status)
        )

    async def capture(
        self,
        hold_id: str,
        amount: int | str,
        *,
        capture_id: str | None = None,
        initiated_by: str = "sdk",
    ) -> CaptureResult:
        """Capture `amount` of an open hold: a posting from the held account
        to the hold's target. Idempotent by `capture_id` (pass your own to
        retry safely); a refusal (`CaptureExceedsHold`, `HoldNotOpen`,
        `HoldExpired`...) raises its typed error and stands for that id.
        Toward another region, it returns once the amount arrived there
        (waiting while that region is down); refused there, the amount is
        back on the held account and the destination's typed error is
        raised (the capture is `reversed`, and still counts against the hold)."""
        request = CaptureRequest(
            hold_id, capture_id or f"k-{uuid.uuid4().hex[:16]}", amount, initiated_by
        )
        try:
            return await self._hold_update(hold_id, HOLD_CAPTURE, request, CaptureResult)
        except HoldNotOpen:
            recorded = await self.reads.capture(hold_id, request.capture_id)
            if recorded is None:
                raise
        state = await self.hold_state(hold_id)
        if request.validated(state.currency).amount != recorded.amount:
            raise DuplicateCaptureMismatch(
                f"capture id {request.capture_id!r} of hold {hold_id!r} was already used "
                "with another amount",
                hold_id=hold_id,
                capture_id=request.capture_id,
            )
        if recorded.reason_type is not None:
            raise error_from_type(recorded.reason_type, recorded.reason or "", hold_id=hold_id)
        return recorded

    async def void(self, hold_id: str, *, initiated_by: str = "sdk") -> ReleaseResult:
        """Release what the hold still reserves; the hold ends voided. A
        second void answers the first's release; a void of a hold that ended
        otherwise is `HoldNotOpen` (`HoldExpired` if it expired)."""
        try:
            return await self._hold_update(hold_id, HOLD_VOID, initiated_by, ReleaseResult)
        except HoldNotOpen:
            released = await self.reads.release(hold_id)
            if released is None:
                raise
        if released.ending == "voided":
            return released
        raise HoldExpired(f"hold {hold_id!r} expired at {released.recorded_at.isoformat()}",
                          hold_id=hold_id)  # fmt: skip

    async def extend(
        self,
        hold_id: str,
        expires_in: int,
        *,
        change_id: str | None = None,
        initiated_by: str = "sdk",
    ) -> HoldState:
        """Move an open hold's deadline to `expires_in` seconds from now
        (later or sooner)."""
        change = DeadlineChange(
            hold_id, change_id or f"d-{uuid.uuid4().hex[:16]}", expires_in, initiated_by
        ).validated()
        return await self._hold_update(hold_id, HOLD_EXTEND, change, HoldState)

    async def hold_state(self, hold_id: str) -> HoldState:
        state = await self.reads.hold(hold_id)
        if state is None:
            raise HoldNotFound(f"no hold {hold_id!r} was placed", hold_id=hold_id)
        return state

    async def start_transfer(
        self,
        transfer_id: str,
        from_account: str,
        to_account: str,
        amount: int | str | Decimal,
        currency: str,
        *,
        initiated_by: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        region: str | None = None,
    ) -> WorkflowHandle[Any, TransferResult]:
        """Start a transfer and return its workflow handle (`await handle.result()`)."""
        region = region or await self._home_or_default(from_account)
        request, transfer = self._request(
            transfer_id, from_account, to_account, amount, currency,
            initiated_by, description, metadata, await self._destination(to_account, region),
        )  # fmt: skip
        try:
            handle = await self.temporal.start_workflow(
                TRANSFER_WORKFLOW, request, result_type=TransferResult,
                **self._start_options(transfer, region),
            )  # fmt: skip
        except WorkflowAlreadyStartedError:
            handle = self._closed_transfer(transfer)
        # The handle may belong to a run that was already there (running or
        # closed): make sure it is this transfer, not another under the same id.
        return await self._run_of(transfer, region, handle)

    async def _run_of(
        self,
        transfer: Transfer,
        region: str,
        handle: WorkflowHandle[Any, TransferResult],
    ) -> WorkflowHandle[Any, TransferResult]:
        """A run of this id started with this very payload.

        The latest run usually is one. When it is not (a plain client re-ran
        the closed id with another payload, and that run failed), the id
        still stands for its *first* payload: if that is ours, the store has
        our outcome recorded, and a run of the first run's very request, on
        its task queue (which the saga makes answer with the recorded
        outcome), tells it: the first run's routing, not ours, since the
        store recorded that posting (a plain start without `to_region` posts
        locally and is refused where ours would go abroad). A resubmission's
        answer never depends on someone else's conflicting re-run."""
        fingerprint = transfer.fingerprint()
        if _fingerprint(await self._started_with(handle)) == fingerprint:
            return handle
        # The id's first run (a run after a closed one starts a chain of its
        # own, so only the list of runs says which came first).
        runs = [
            run
            async for run in self.temporal.list_workflows(f'WorkflowId = "{transfer.workflow_id}"')
        ]
        if not runs:
            raise DuplicateTransferMismatch.for_transfer(transfer.transfer_id)
        earliest = min(runs, key=lambda run: run.start_time)
        first = self.temporal.get_workflow_handle(
            transfer.workflow_id, run_id=earliest.run_id, result_type=TransferResult
        )
        started = await self._started_with(first)
        if started is None or _fingerprint(started) != fingerprint:
            raise DuplicateTransferMismatch.for_transfer(transfer.transfer_id)
        first_request, first_queue = started
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()  # that other run ends (refused) first
        options = self._start_options(transfer, region) | {
            "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            "task_queue": first_queue,
        }
        ours: WorkflowHandle[Any, TransferResult] = await self.temporal.start_workflow(
            TRANSFER_WORKFLOW, first_request, result_type=TransferResult, **options
        )
        return ours

    async def _started_with(
        self, handle: WorkflowHandle[Any, Any]
    ) -> tuple[TransferRequest, str] | None:
        """The request a workflow run was started with, and its task queue."""
        async for event in handle.fetch_history_events(page_size=1):
            attributes = event.workflow_execution_started_event_attributes
            payloads = attributes.input.payloads
            [request] = await self.temporal.data_converter.decode(payloads, [TransferRequest])
            return request, attributes.task_queue.name
        return None

    def _closed_transfer(self, transfer: Transfer) -> WorkflowHandle[Any, TransferResult]:
        return self.temporal.get_workflow_handle(transfer.workflow_id, result_type=TransferResult)

    async def transfer(
        self,
        transfer_id: str,
        from_account: str,
        to_account: str,
        amount: int | str | Decimal,
        currency: str,
        *,
        initiated_by: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        region: str | None = None,
        raise_on_rejection: bool = True,
        confirm_within: float | None = None,
    ) -> TransferResult:
        """Run a transfer and return as soon as it is durably confirmed or rejected.

        Resubmitting the same `transfer_id` returns the first outcome and never
        posts twice; the same id with a different payload raises
        `DuplicateTransferMismatch`. A rejected transfer raises its typed
        error (e.g. `InsufficientFunds`), and so does a reversed one (the money
        is back at its source), unless `raise_on_rejection=False`.
        Malformed input raises before anything is sent. A transfer to an account
        homed in another region runs as a cross-region saga and returns once it
        has arrived (`confirmed`) or been refused there and returned
        (`reversed`); while that region is down it waits `in_transit`.
        With `confirm_within` (seconds)
        and no answer by then, `ConfirmationTimeout` is raised: the transfer
        may still complete, and resubmitting the same id tells its outcome.
        """
        region = region or await self._home_or_default(from_account)
        request, transfer = self._request(
            transfer_id, from_account, to_account, amount, currency,
            initiated_by, description, metadata, await self._destination(to_account, region),
        )  # fmt: skip
        # Concurrent calls for the same transfer in this process share one
        # confirmation: one update on the server instead of one each. (Calls
        # that would wait differently long do not share: the confirmation's
        # retries stop at its caller's deadline.)
        key = (
            transfer.transfer_id, transfer.fingerprint(), region, request.to_region,
            confirm_within,
        )  # fmt: skip
        confirming = self._confirming.get(key)
        if confirming is None:
            deadline = time.monotonic() + (confirm_within or ATTACH_WINDOW_S)
            confirming = asyncio.ensure_future(self._confirm(request, transfer, region, deadline))
            self._confirming[key] = confirming
            confirming.add_done_callback(lambda _: self._confirming.pop(key, None))
        # Wait without cancelling the SDK call: cancelling it in flight left the
        # process unable to parse Python afterwards ("AST constructor recursion
        # depth mismatch"; temporalio 1.35, CPython 3.11.7). On timeout the call
        # finishes later, unobserved.
        await asyncio.wait([confirming], timeout=confirm_within)
        if not confirming.done():
            confirming.add_done_callback(_discard_outcome)
            regions = f"{region!r}" + (f" and {request.to_region!r}" if request.to_region else "")
            raise ConfirmationTimeout(
                f"no confirmation of transfer {transfer_id!r} within {confirm_within:g} s (are "
                f"workers for region {regions} running?); it may still complete: "
                f"resubmit the same id to learn its outcome",
                transfer_id=transfer_id,
            )
        result = confirming.result()
        if result.fingerprint != transfer.fingerprint():
            # We attached to a workflow already running for this id with
            # another payload.
            raise DuplicateTransferMismatch.for_transfer(transfer_id)
        if raise_on_rejection and result.status in (
            TransferStatus.REJECTED,
            TransferStatus.REVERSED,
        ):
            error = error_from_type(
                result.reason_type or "LedgerError", result.reason or "rejected",
                transfer_id=transfer_id,
            )  # fmt: skip
            raise error
        return result

    async def _confirm(
        self, request: TransferRequest, transfer: Transfer, region: str, deadline: float
    ) -> TransferResult:
        """Update-with-start until the server answers with an outcome.

        One round trip starts the workflow (or attaches to the running one
        with this id) and waits only until the outcome is recorded. A busy
        server can answer a start that raced another submitter of the same id
        with an error that a fresh attempt gets past: the start deduplicated
        but the update not applied (`StartDeduped`), the per-workflow limit on
        updates in flight reached, an update aborted. Every submitter of an id
        must get the id's outcome, not that error (issue 12, finding 6), so
        those are retried, each time with a new request, until `deadline`.
        """
        delay = 0.05
        while True:
            start: WithStartWorkflowOperation[Any, TransferResult] = WithStartWorkflowOperation(
                TRANSFER_WORKFLOW, request, result_type=TransferResult,
                **self._start_options(transfer, region),
            )  # fmt: skip
            try:
                result: TransferResult = await typed_errors(
                    functools.partial(
                        self.temporal.execute_update_with_start_workflow,
                        TRANSFER_CONFIRMATION,
                        start_workflow_operation=start,
                        result_type=TransferResult,
                    )
                )
                return result
            except DuplicateTransferMismatch:
                # The run we met was started with another payload (a plain
                # client re-running the id): the id may still be ours.
                _consume(start)
                closed = await self._run_of(transfer, region, self._closed_transfer(transfer))
                settled: TransferResult = await typed_errors(closed.result)
                return settled
            except WorkflowAlreadyStartedError:
                # A closed run holds this id: its outcome stands, if it is ours.
                _consume(start)
                closed = await self._run_of(transfer, region, self._closed_transfer(transfer))
                answered: TransferResult = await typed_errors(closed.result)
                return answered
            except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
                # The start operation's own future failed along with the call.
                _consume(start)
                transient = isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError) or (
                    exc.status in RETRIED_START_STATUSES
                )
                if not transient or time.monotonic() + delay > deadline:
                    raise
            except BaseException:
                _consume(start)
                raise
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)

    def _request(
        self,
        transfer_id: str,
        from_account: str,
        to_account: str,
        amount: int | str | Decimal,
        currency: str,
        initiated_by: str,
        description: str | None,
        metadata: dict[str, Any] | None,
        to_region: str | None = None,
    ) -> tuple[TransferRequest, Transfer]:
        if isinstance(amount, Decimal):
            amount = str(amount)
        request = TransferRequest(
            transfer_id=transfer_id,
            from_account=from_account,
            to_account=to_account,
            amount=amount,
            currency=currency,
            initiated_by=initiated_by,
            description=description,
            metadata=metadata,
            to_region=to_region,
        )
        return request, request.validated()

    def _start_options(self, transfer: Transfer, region: str) -> dict[str, Any]:
        attributes: list[SearchAttributePair[Any]] = [
            SearchAttributePair(sa.REGION, region),
            SearchAttributePair(sa.STATUS, str(TransferStatus.PENDING)),
        ]
        # Search attributes are indexed in clear: with payload encryption on,
        # no account id or amount goes there.
        if not self.settings.codec_keys:
            attributes += [
                SearchAttributePair(sa.FROM_ACCOUNT, transfer.from_account),
                SearchAttributePair(sa.TO_ACCOUNT, transfer.to_account),
                SearchAttributePair(sa.CURRENCY, transfer.currency),
                SearchAttributePair(sa.AMOUNT, transfer.amount),
            ]
        return {
            "id": transfer.workflow_id,
            "task_queue": self.settings.task_queue(region),
            # A running workflow with this id is joined, and a closed one is
            # never run again: the workflow id guards the transfer id across
            # every region. Past the namespace's retention the region's store,
            # which records every outcome, still refuses to post twice.
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
            "static_summary": transfer.summary(),
            "static_details": (
                f"transfer {transfer.transfer_id} initiated by {transfer.initiated_by}"
                + (f": {transfer.description}" if transfer.description else "")
            ),
            "search_attributes": TypedSearchAttributes(attributes),
            # The workflow's newest code path, chosen without a patch marker.
            "memo": TRANSFER_CODE_MEMO,
        }

    # -- reads (through the read side) -------------------------------------

    @property
    def engine(self) -> Callable[[str], AsyncEngine]:
        """A region's read-only engine (the database read side only)."""
        return self._database_reads().engine

    @property
    def archive(self) -> Callable[[str], ArchiveReader]:
        """A region's archive reader (the database read side only)."""
        return self._database_reads().archive

    def _database_reads(self) -> DatabaseReads:
        if not isinstance(self.reads, DatabaseReads):
            raise TypeError("this client reads through a remote read side, not the databases")
        return self.reads

    async def locate(self, account_id: str) -> str:
        """The account's home region; raises `AccountNotFound`."""
        return await self.reads.locate(account_id)

    async def _home_or_default(self, account_id: str) -> str:
        """Where a transfer from `account_id` runs; an unknown account is rejected there."""
        try:
            return await self.locate(account_id)
        except AccountNotFound:
            return self.settings.default_region

    async def _destination(self, to_account: str, region: str) -> str | None:
        """The credited account's home if it is another region (a cross-region
        transfer); `None` for a local transfer or an unknown account, which the
        source region then rejects."""
        try:
            home = await self.locate(to_account)
        except (AccountNotFound, InvalidRequest):
            return None
        return home if home != region else None

    async def account(self, account_id: str) -> Account:
        return await self.reads.account(account_id)

    async def balance(self, account_id: str) -> Balance:
        """The account's balance from the read model (it may lag the write by moments)."""
        return await self.reads.balance(account_id)

    async def balance_as_of(self, account_id: str, as_of: datetime) -> BalanceAsOf:
        """The balance at instant `as_of` (time-zone aware), from the event store."""
        return await self.reads.balance_as_of(account_id, as_of)

    async def audit(self, account_id: str, start: datetime, end: datetime) -> AuditTrail:
        """Every posting and rejected attempt of the account in [start, end], with proof."""
        return await self.reads.audit(account_id, start, end)

    async def statement(
        self, account_id: str, *, after_version: int = 0, limit: int = 100
    ) -> list[StatementLine]:
        """One page of postings; pass the last line's `version` to get the next."""
        return await self.reads.statement(account_id, after_version=after_version, limit=limit)
