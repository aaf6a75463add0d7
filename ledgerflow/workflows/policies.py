"""Activity timeouts and retries shared by the ledger's workflows.

They are part of the workflow code: changing them is a workflow change.
Infrastructure errors retry with backoff for as long as it takes (a region's
database may be down for a while); the ledger's domain errors never retry.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from ledgerflow.domain.errors import NON_RETRYABLE_TYPES

ACTIVITY_TIMEOUT = timedelta(seconds=10)
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)

#: How long a transfer's in-line projection may hold up its answer; past it,
#: the worker's catch-up projector applies the events instead.
PROJECT_WITHIN = timedelta(seconds=2)
