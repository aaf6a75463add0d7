"""The ledger's activities, bound to one region's event store.

One instance per worker process holds the region's connection pool; every
activity call shares it (DESIGN.md section 5: never a pool per activity).
Domain errors leave as non-retryable `ApplicationError`s with the error's
stable type; anything else (a dropped connection, a lock timeout) is retried
by Temporal with backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from ledgerflow.domain.errors import LedgerError, error_from_type
from ledgerflow.domain.messages import (
    APPEND_TRANSFER,
    OPEN_ACCOUNT,
    PROJECT_EVENTS,
    RECORD_REJECTION,
    VALIDATE_TRANSFER,
    AppendTransferInput,
    ProjectEventsInput,
    ProjectEventsOutput,
    RecordRejectionInput,
    ValidateTransferInput,
    ValidateTransferOutput,
)
from ledgerflow.domain.model import OpenAccountRequest, OpenAccountResult, TransferResult
from ledgerflow.projections.views import apply_events
from ledgerflow.store.postgres import PostgresEventStore
from ledgerflow.temporal_errors import to_application_error


@contextmanager
def domain_errors_as_application_errors() -> Iterator[None]:
    try:
        yield
    except LedgerError as exc:
        raise to_application_error(exc) from exc


class LedgerActivities:
    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store

    @activity.defn(name=VALIDATE_TRANSFER)
    async def validate_transfer(self, data: ValidateTransferInput) -> ValidateTransferOutput:
        """Advisory check without locks: cheap early rejection; the append decides."""
        with domain_errors_as_application_errors():
            await self.store.check_transfer(data.transfer)
        return ValidateTransferOutput(region=self.store.region)

    @activity.defn(name=APPEND_TRANSFER)
    async def append_transfer(self, data: AppendTransferInput) -> TransferResult:
        with domain_errors_as_application_errors():
            return await self.store.append_transfer(
                data.transfer, self.store.region, data.occurred_at
            )

    @activity.defn(name=RECORD_REJECTION)
    async def record_rejection(self, data: RecordRejectionInput) -> TransferResult:
        error = error_from_type(data.reason_type, data.reason)
        with domain_errors_as_application_errors():
            return await self.store.record_rejection(
                data.transfer, self.store.region, error, data.occurred_at
            )

    @activity.defn(name=PROJECT_EVENTS)
    async def project_events(self, data: ProjectEventsInput) -> ProjectEventsOutput:
        events = await self.store.events_by_id(data.event_ids)
        async with self.store.engine.begin() as conn:
            await apply_events(conn, events)
        return ProjectEventsOutput(applied=len(events))

    @activity.defn(name=OPEN_ACCOUNT)
    async def open_account(self, request: OpenAccountRequest) -> OpenAccountResult:
        with domain_errors_as_application_errors():
            result = await self.store.open_account(request, datetime.now(UTC))
        await self.project_events(ProjectEventsInput([result.event_id]))
        return result

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.validate_transfer,
            self.append_transfer,
            self.record_rejection,
            self.project_events,
            self.open_account,
        ]
