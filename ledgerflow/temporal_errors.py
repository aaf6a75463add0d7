"""The one mapping between ledger errors and Temporal failures.

Workflows, activities and the client all use it, so a `LedgerError` keeps its
stable type across every hop: raised in an activity, seen by the workflow,
surfaced to the caller. Imports only the standard library and the SDK, so
workflows may pass it through the sandbox.
"""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError

from ledgerflow.domain.errors import NON_RETRYABLE_TYPES, LedgerError


def to_application_error(exc: LedgerError) -> ApplicationError:
    """A Temporal error carrying the ledger error's type and details; non-retryable
    unless the error heals by itself (an unreachable archive)."""
    return ApplicationError(
        exc.message, exc.details, type=exc.type, non_retryable=exc.type in NON_RETRYABLE_TYPES
    )


def domain_cause(err: ActivityError) -> ApplicationError | None:
    """The ledger error behind a failed activity, or None for an infrastructure failure."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type in NON_RETRYABLE_TYPES:
        return cause
    return None


def reraised(cause: ApplicationError) -> ApplicationError:
    """The same domain error, raised again by a workflow (details preserved)."""
    return ApplicationError(cause.message, *cause.details, type=cause.type, non_retryable=True)
