"""Activity timeouts and retries shared by the ledger's workflows.

They are part of the workflow code: changing them is a workflow change.
Infrastructure errors retry with backoff for as long as it takes (a region's
database may be down for a while); the ledger's domain errors never retry.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from ledgerflow.domain.errors import NON_RETRYABLE_TYPES
from ledgerflow.temporal_errors import domain_cause, reraised

T = TypeVar("T")

ACTIVITY_TIMEOUT = timedelta(seconds=10)
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)

#: How long a transfer's in-line projection may hold up its answer, about;
#: past it, the worker's catch-up projector applies the events instead. One
#: attempt inside the posting call (`PROJECT_IN_CALL`), then, if that
#: failed, the workflow's own: `PROJECT_RETRY`'s attempts of at most
#: `PROJECT_ATTEMPT` each, with backoff (at most about 2.7 s in all).
PROJECT_WITHIN = timedelta(seconds=2)
PROJECT_IN_CALL = timedelta(seconds=1)
PROJECT_ATTEMPT = timedelta(milliseconds=250)
#: Bounded by attempts, not only by time: the SDK (temporalio 1.35) does not
#: end a local activity that keeps failing at its schedule-to-close timeout,
#: it retries it for ever, and the answer waited with it
#: (tests/integration/test_workflows_in_memory.py, a projection that always fails).
PROJECT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(milliseconds=400),
    maximum_attempts=4,
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


async def store_step(name: str, arg: Any, result_type: type[T]) -> T:
    """One store call as an activity with the ledger's timeout and retries; a
    ledger error comes back as itself (typed for every caller, a raw start's
    included), not as "activity failed"."""
    try:
        result: T = await workflow.execute_activity(
            name, arg, result_type=result_type, start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_POLICY,
        )  # fmt: skip
    except ActivityError as err:
        cause = domain_cause(err)
        if cause is None:
            raise
        raise reraised(cause) from None
    return result
