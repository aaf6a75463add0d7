"""The saga branches on the outcome the store recorded for each leg, never on
the one it expected (issue 12, findings 1, 2 and 5).

The store's answers are scripted here: the workflow runs on the real
Temporal server, but against stand-in activities that answer each call as a
store that met a late commit, a recorded refusal or a zombie attempt would.
Each script is a timing the real store can produce:

* the source leg was refused, yet recording the refusal finds a confirmation
  (an earlier attempt of the append, queued when its caller gave up,
  committed in between): the money left, so the saga must go on;
* the destination refused, yet recording that refusal finds the leg
  confirmed there (same race, other region): the money arrived, so no
  reversal may pay it back;
* a leg's append answers with a recorded rejection (a re-run of a closed id):
  that is a refusal, not a posting.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ledgerflow.config import Settings
from ledgerflow.converter import data_converter
from ledgerflow.domain.errors import AccountClosed, InsufficientFunds, LedgerError
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
    ValidateTransferInput,
    ValidateTransferOutput,
)
from ledgerflow.domain.model import TransferRequest, TransferResult, TransferStatus
from ledgerflow.temporal_errors import to_application_error
from ledgerflow.workflows.transfer import TransferWorkflow

Answer = TransferResult | LedgerError


@dataclass
class ScriptedStore:
    """Answers per (activity, leg kind); records every call it got."""

    dst_queue: str
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, name: str, kind: str, transfer_id: str) -> TransferResult:
        self.calls.append((name, kind))
        outcome = self.answers.get((name, kind))
        if outcome is None:
            outcome = confirmed(transfer_id, kind)
        if isinstance(outcome, LedgerError):
            raise to_application_error(outcome)
        return outcome

    @activity.defn(name=VALIDATE_TRANSFER)
    async def validate(self, data: ValidateTransferInput) -> ValidateTransferOutput:
        self.calls.append((VALIDATE_TRANSFER, ""))
        return ValidateTransferOutput("us", data.to_region, self.dst_queue)

    @activity.defn(name=POST_TRANSFER)
    async def post(self, data: PostTransferInput) -> PostTransferOutput:
        if data.to_region is None:  # local: appended (and projected) in the one call
            result = self.answer(APPEND_TRANSFER, "local", data.transfer.transfer_id)
            return PostTransferOutput(ValidateTransferOutput("us"), result, projected=True)
        self.calls.append((VALIDATE_TRANSFER, ""))  # cross-region: only validates
        return PostTransferOutput(ValidateTransferOutput("us", data.to_region, self.dst_queue))

    @activity.defn(name=APPEND_LEG)
    async def append_leg(self, data: AppendLegInput) -> TransferResult:
        return self.answer(APPEND_LEG, data.kind, data.transfer.transfer_id)

    @activity.defn(name=APPEND_TRANSFER)
    async def append_transfer(self, data: AppendTransferInput) -> TransferResult:
        return self.answer(APPEND_TRANSFER, "local", data.transfer.transfer_id)

    @activity.defn(name=RECORD_REJECTION)
    async def record_rejection(self, data: RecordRejectionInput) -> TransferResult:
        recorded = self.answers.get((RECORD_REJECTION, data.kind))
        if recorded is None:
            self.answers[(RECORD_REJECTION, data.kind)] = rejected(
                data.transfer.transfer_id, data.reason_type, data.reason
            )
        return self.answer(RECORD_REJECTION, data.kind, data.transfer.transfer_id)

    @activity.defn(name=PROJECT_EVENTS)
    async def project(self, data: ProjectEventsInput) -> ProjectEventsOutput:
        return ProjectEventsOutput(applied=len(data.event_ids))

    def all(self) -> list[Callable[..., Any]]:
        return [self.validate, self.post, self.append_leg, self.append_transfer,
                self.record_rejection, self.project]  # fmt: skip


def confirmed(transfer_id: str, kind: str) -> TransferResult:
    return TransferResult(
        transfer_id, TransferStatus.CONFIRMED, FINGERPRINT, "us",
        debit_event_id=f"{kind}-debit", credit_event_id=f"{kind}-credit",
        from_balance_after=0, to_balance_after=100, confirmed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


def rejected(transfer_id: str, reason_type: str, reason: str) -> TransferResult:
    return TransferResult(
        transfer_id, TransferStatus.REJECTED, FINGERPRINT, "us", reason_type, reason
    )


FINGERPRINT = "f" * 64


async def run_saga(
    env: WorkflowEnvironment, answers: dict[tuple[str, str], Answer]
) -> tuple[TransferResult | ApplicationError, list[tuple[str, str]]]:
    src, dst = f"tq-{uuid.uuid4()}", f"tq-{uuid.uuid4()}"
    store = ScriptedStore(dst, dict(answers))
    config = env.client.config()
    config["data_converter"] = data_converter(Settings.from_env({}))
    client = Client(**config)
    request = TransferRequest(f"t-{uuid.uuid4().hex[:8]}", "alice", "bob", 100, "USD", "test",
                              to_region="eu")  # fmt: skip
    async with (
        Worker(client, task_queue=src, workflows=[TransferWorkflow], activities=store.all()),
        Worker(client, task_queue=dst, activities=store.all()),
    ):
        try:
            outcome: TransferResult | ApplicationError = await client.execute_workflow(
                TransferWorkflow.run, request, id=f"transfer-{request.transfer_id}", task_queue=src
            )
        except WorkflowFailureError as err:
            assert isinstance(err.cause, ApplicationError)
            outcome = err.cause
    return outcome, [c for c in store.calls if c[0] not in (VALIDATE_TRANSFER,)]


REFUSED = InsufficientFunds("no money")
CLOSED = AccountClosed("closed")


async def test_a_recorded_confirmation_of_a_refused_source_leg_goes_on_to_the_destination(
    temporal_env: WorkflowEnvironment,
) -> None:
    outcome, calls = await run_saga(
        temporal_env,
        {(APPEND_LEG, "outbound"): REFUSED, (RECORD_REJECTION, "outbound"): confirmed("t", "out")},
    )
    assert isinstance(outcome, TransferResult) and outcome.status == TransferStatus.CONFIRMED
    assert (APPEND_LEG, "inbound") in calls
    assert (APPEND_LEG, "reversal") not in calls


async def test_a_recorded_rejection_of_the_source_leg_ends_the_transfer_rejected(
    temporal_env: WorkflowEnvironment,
) -> None:
    outcome, calls = await run_saga(
        temporal_env,
        {(APPEND_LEG, "outbound"): rejected("t", "InsufficientFunds", "no money")},
    )
    assert isinstance(outcome, TransferResult)
    assert (outcome.status, outcome.reason_type) == (TransferStatus.REJECTED, "InsufficientFunds")
    assert (APPEND_LEG, "inbound") not in calls


async def test_a_destination_refusal_whose_leg_was_confirmed_after_all_is_not_reversed(
    temporal_env: WorkflowEnvironment,
) -> None:
    outcome, calls = await run_saga(
        temporal_env,
        {(APPEND_LEG, "inbound"): CLOSED, (RECORD_REJECTION, "inbound"): confirmed("t", "in")},
    )
    assert isinstance(outcome, TransferResult) and outcome.status == TransferStatus.CONFIRMED
    assert (APPEND_LEG, "reversal") not in calls


async def test_a_recorded_rejection_of_the_destination_leg_is_reversed(
    temporal_env: WorkflowEnvironment,
) -> None:
    outcome, calls = await run_saga(
        temporal_env,
        {(APPEND_LEG, "inbound"): rejected("t", "AccountClosed", "closed")},
    )
    assert isinstance(outcome, TransferResult)
    assert (outcome.status, outcome.reason_type) == (TransferStatus.REVERSED, "AccountClosed")
    assert (APPEND_LEG, "reversal") in calls


@pytest.mark.parametrize("answer", [CLOSED, rejected("t", "AccountClosed", "closed")])
async def test_a_reversal_that_is_not_posted_fails_loudly_never_as_a_rejection(
    temporal_env: WorkflowEnvironment, answer: Answer
) -> None:
    outcome, _ = await run_saga(
        temporal_env, {(APPEND_LEG, "inbound"): CLOSED, (APPEND_LEG, "reversal"): answer}
    )
    assert isinstance(outcome, ApplicationError)
