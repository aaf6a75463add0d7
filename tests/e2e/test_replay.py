"""Determinism: recorded workflow histories must replay on the current code.

`tests/histories/*.json` are real histories recorded from this code (a
confirmed transfer, a rejected one, a malformed one, cross-region transfers
confirmed and reversed, an account opening, an archive run over many
segments recorded by `tests/e2e/test_archive_workflow.py`, and a
reconciliation run recorded by `tests/e2e/test_reconcile.py`, and the
benchmark's baseline workflow), plus those
recorded before cross-region transfers existed (`*_before_regions`) and
before the store calls became local activities (`*_before_local`), and
before a local transfer became one store call (`*_before_one_call`), and
one-store-call runs that chose their path by a patch marker (`*_marked`,
as a raw start still does) rather than by the SDK's memo. A
change to workflow code that would break running workflows makes these
replays fail. To record them again after an intended, versioned change:

    LEDGERFLOW_RECORD_HISTORIES=1 .venv/bin/pytest tests/e2e/test_replay.py \
        tests/e2e/test_archive_workflow.py tests/e2e/test_reconcile.py
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.worker import Replayer, Worker

from ledgerflow.bench.baseline import ACTIVITIES as BASELINE_ACTIVITIES
from ledgerflow.bench.baseline import BaselineTransferWorkflow
from ledgerflow.client import LedgerClient
from ledgerflow.converter import DATA_CONVERTER
from ledgerflow.domain.errors import InsufficientFunds
from ledgerflow.domain.model import TransferRequest
from ledgerflow.workers.regional import WORKFLOWS
from ledgerflow.workflow_names import TRANSFER_CODE_MEMO, account_workflow_id
from ledgerflow.workflows.transfer import (
    LOCAL_STORE_CALLS,
    ONE_STORE_CALL,
    SAGA_OBEYS_STORE,
    TransferWorkflow,
)

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
OUTCOMES = ("confirmed", "rejected", "malformed", "cross_region", "reversed")
Ids = Callable[[str], str]


def replayer() -> Replayer:
    # Every workflow type there is: the workers' and the benchmark's baseline.
    return Replayer(workflows=[*WORKFLOWS, BaselineTransferWorkflow], data_converter=DATA_CONVERTER)


async def record(ledger: LedgerClient, client: Client, uid: Ids) -> dict[str, str]:
    """Run one workflow of every kind and outcome; return their histories as JSON."""
    bank, alice, bob = uid("bank"), uid("alice"), uid("bob")
    eve, yen = uid("eve"), uid("yen")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(alice, "USD")
    await ledger.open_account(bob, "USD")
    await ledger.open_account(eve, "USD", region="eu")
    await ledger.open_account(yen, "JPY", region="ap")
    confirmed, rejected, malformed = uid("ok"), uid("rejected"), uid("malformed")
    crossed, reversed_ = uid("crossed"), uid("reversed")
    await ledger.transfer(confirmed, bank, alice, "25.00", "USD", initiated_by="t")
    await ledger.transfer(crossed, bank, eve, "3.00", "USD", initiated_by="t")
    reversal = await ledger.transfer(
        reversed_, bank, yen, "2.00", "USD", initiated_by="t", raise_on_rejection=False
    )
    assert reversal.status == "reversed"
    with pytest.raises(InsufficientFunds):
        await ledger.transfer(rejected, alice, bob, "99.00", "USD", initiated_by="t")
    with pytest.raises(WorkflowFailureError):
        await client.execute_workflow(
            TransferWorkflow.run,
            TransferRequest(malformed, alice, alice, 1, "USD", "t"),
            id=f"transfer-{malformed}",
            task_queue=ledger.settings.task_queue("us"),
        )
    # A cross-region source leg refused: the saga obeys the recorded refusal.
    refused_abroad = uid("refused-abroad")
    await client.execute_workflow(
        TransferWorkflow.run,
        TransferRequest(refused_abroad, bob, eve, 10_000, "USD", "t", to_region="eu"),
        id=f"transfer-{refused_abroad}",
        task_queue=ledger.settings.task_queue("us"),
    )
    ids = {
        "transfer_confirmed": f"transfer-{confirmed}",
        "transfer_rejected": f"transfer-{rejected}",
        "transfer_malformed": f"transfer-{malformed}",
        "transfer_cross_region": f"transfer-{crossed}",
        "transfer_reversed": f"transfer-{reversed_}",
        "transfer_rejected_cross_region": f"transfer-{refused_abroad}",
        "account_opened": account_workflow_id(alice),
    }
    async with Worker(
        client, task_queue="replay-baseline", workflows=[BaselineTransferWorkflow],
        activities=BASELINE_ACTIVITIES,
    ):  # fmt: skip
        await client.execute_workflow(
            BaselineTransferWorkflow.run, 7, id=uid("baseline"), task_queue="replay-baseline"
        )
    ids["baseline_transfer"] = uid("baseline")
    histories = {}
    for name, workflow_id in ids.items():
        handle = client.get_workflow_handle(workflow_id)
        # Wait for the workflow to close, so the history is complete.
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
        histories[name] = (await handle.fetch_history()).to_json()
    return histories


async def test_fresh_histories_of_every_outcome_replay(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    histories = await record(ledger, workers, uid)
    for name, history_json in histories.items():
        await replayer().replay_workflow(WorkflowHistory.from_json(name, history_json))
    if os.environ.get("LEDGERFLOW_RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(exist_ok=True)
        for name, history_json in histories.items():
            (HISTORIES / f"{name}.json").write_text(history_json)


RECORDED = {path.stem: path.read_text() for path in sorted(HISTORIES.glob("*.json"))}


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_histories_replay_on_the_current_code(name: str) -> None:
    await replayer().replay_workflow(WorkflowHistory.from_json(name, RECORDED[name]))


def test_every_workflow_type_has_a_recorded_history() -> None:
    kinds = {name.split("_")[0] for name in RECORDED}
    assert kinds >= {"transfer", "account", "archive", "reconcile", "baseline"}
    assert {"transfer_cross_region", "transfer_reversed"} <= set(RECORDED)
    # Every side of the paths: new workflows started by the SDK (the memo, no
    # marker) and raw (the one-store-call marker), and those from before.
    sdk_started = [n for n in OUTCOMES if n != "malformed"]
    assert not any(patches(RECORDED[f"transfer_{n}"]) for n in sdk_started)
    assert all(memo(RECORDED[f"transfer_{n}"]) == TRANSFER_CODE_MEMO for n in sdk_started)
    assert patches(RECORDED["transfer_malformed"]) == {ONE_STORE_CALL}  # a raw start
    assert all(ONE_STORE_CALL in patches(RECORDED[f"transfer_{n}_marked"]) for n in OUTCOMES)
    assert all(
        LOCAL_STORE_CALLS in patches(RECORDED[f"transfer_{n}_before_one_call"]) for n in OUTCOMES
    )
    assert not any(patches(RECORDED[f"transfer_{n}_before_local"]) for n in OUTCOMES)
    # The saga that obeys the store's recorded outcomes (issue 12).
    assert SAGA_OBEYS_STORE in patches(RECORDED["transfer_rejected_cross_region"])
    assert SAGA_OBEYS_STORE in patches(RECORDED["transfer_rejected_cross_region_before_one_call"])


@pytest.mark.parametrize("outcome", [n for n in OUTCOMES if n != "malformed"])
async def test_a_run_a_newer_client_started_on_an_older_worker_replays_as_it_ran(
    outcome: str,
) -> None:
    """During a rolling deploy a new client's start (with the memo) can be run
    by a worker of the code before (which ignores it and takes the three-call
    path, marking `LOCAL_STORE_CALLS`): its history, the one such a worker
    writes, must replay on the current code as it ran, not on the memo's path."""
    history = json.loads(RECORDED[f"transfer_{outcome}_before_one_call"])
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    started["memo"] = json.loads(RECORDED[f"transfer_{outcome}"])["events"][0][
        "workflowExecutionStartedEventAttributes"]["memo"]  # fmt: skip
    assert memo(json.dumps(history)) == TRANSFER_CODE_MEMO
    await replayer().replay_workflow(WorkflowHistory.from_json(outcome, history))


def memo(history_json: str) -> dict[str, Any]:
    """The memo a history's run was started with (decoded)."""
    started = json.loads(history_json)["events"][0]["workflowExecutionStartedEventAttributes"]
    fields = (started.get("memo") or {}).get("fields", {})
    return {k: json.loads(base64.b64decode(v["data"])) for k, v in fields.items()}


def patches(history_json: str) -> set[str]:
    """The patch ids a history's workflow code took (its `core_patch` markers)."""
    found = set()
    for event in json.loads(history_json)["events"]:
        marker = event.get("markerRecordedEventAttributes", {})
        if marker.get("markerName") == "core_patch":
            for payload in marker["details"]["patch-data"]["payloads"]:
                found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


async def test_a_raw_start_with_any_memo_posts_once_and_replays_as_it_ran(
    ledger: LedgerClient, workers: Client, engines: dict[str, Any], uid: Ids
) -> None:
    """Whatever memo a raw start sends (none, junk under the key, or the
    SDK's own), the transfer posts once, a re-run of the closed id answers
    the same outcome, and the history replays: the memo chooses the path
    only when it is exactly the SDK's, and then no marker is recorded."""
    from tests.support import postings

    bank, alice = uid("bank"), uid("alice")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(alice, "USD")
    memos: dict[str, dict[str, Any] | None] = {
        "none": None,
        "junk": {"ledgerflow-code": 5},
        "other": {"ledgerflow-code": "two-store-calls"},
        "sdk": dict(TRANSFER_CODE_MEMO),
    }
    for name, sent in memos.items():
        tid = uid(f"memo-{name}")
        for _ in range(2):  # the start, then a re-run of the closed id
            result = await workers.execute_workflow(
                TransferWorkflow.run, TransferRequest(tid, bank, alice, 100, "USD", "t"),
                id=f"transfer-{tid}", task_queue=ledger.settings.task_queue("us"), memo=sent,
            )  # fmt: skip
            assert result.status == "confirmed"
        assert await postings(engines["us"], tid) == 2
        history = await workers.get_workflow_handle(f"transfer-{tid}").fetch_history()
        await replayer().replay_workflow(history)
        marked = ONE_STORE_CALL in patches(history.to_json())
        assert marked is (name != "sdk"), name
    assert (await ledger.account(alice)).balance == 100 * len(memos)
