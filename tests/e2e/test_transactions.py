"""Multi-leg transactions end to end: an FX trade through the SDK, a raw
start and a re-run of its closed id with the plain client, a rejection that
writes nothing, and the CLI with `--leg` and a JSON file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import DuplicateTransactionMismatch, InsufficientFunds, InvalidAmount
from ledgerflow.domain.transactions import LegRequest, TransactionRequest, transaction_workflow_id
from ledgerflow.workflows.transaction import TransactionWorkflow
from tests.support import cli

Ids = Callable[[str], str]


async def desks(ledger: LedgerClient, uid: Ids) -> tuple[str, str, str, str]:
    alice, alice_eur = uid("alice"), uid("alice-eur")
    usd, eur = uid("usd-desk"), uid("eur-desk")
    bank = uid("bank")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(alice, "USD")
    await ledger.open_account(alice_eur, "EUR")
    await ledger.open_account(usd, "USD", overdraft_limit=None)
    await ledger.open_account(eur, "EUR", overdraft_limit=None)
    await ledger.transfer(uid("fund"), bank, alice, "100.00", "USD", initiated_by="ops")
    return alice, alice_eur, usd, eur


async def test_an_fx_trade_through_the_sdk_and_the_plain_client(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    alice, alice_eur, usd, eur = await desks(ledger, uid)
    legs = [
        LegRequest(alice, "debit", "100.00", "USD"),
        LegRequest(usd, "credit", "100.00", "USD"),
        LegRequest(eur, "debit", "92.00", "EUR"),
        LegRequest(alice_eur, "credit", "92.00", "EUR"),
    ]
    result = await ledger.transaction(uid("fx"), legs, initiated_by="fx-desk")
    assert result.confirmed and result.balances_after[alice_eur] == 9200
    assert await ledger.transaction(uid("fx"), legs, initiated_by="fx-desk") == result
    with pytest.raises(DuplicateTransactionMismatch):
        await ledger.transaction(uid("fx"), legs[:2] + legs[2:], initiated_by="someone-else")
    # A re-run of the closed id with the plain client: the recorded outcome.
    request = TransactionRequest(uid("fx"), legs, "fx-desk")
    again = await workers.execute_workflow(
        TransactionWorkflow.run, request, id=transaction_workflow_id(uid("fx")),
        task_queue=ledger.settings.task_queue("us"),
    )  # fmt: skip
    assert again == result
    assert (await ledger.account(alice)).balance == 0
    trail = await ledger.audit(alice_eur, datetime.now(UTC) - timedelta(minutes=5),
                               datetime.now(UTC) + timedelta(seconds=1))  # fmt: skip
    [credit] = [e for e in trail.entries if e.type == "Credited"]
    assert (credit.workflow_id, credit.amount) == (transaction_workflow_id(uid("fx")), 9200)
    # Rejected as a whole, and that stands; a malformed raw start fails typed.
    with pytest.raises(InsufficientFunds):
        await ledger.transaction(uid("fx2"), legs, initiated_by="fx-desk")
    assert (await ledger.account(eur)).balance == -9200
    lopsided = [LegRequest(alice, "debit", 1, "USD"), LegRequest(usd, "credit", 2, "USD")]
    unbalanced = TransactionRequest(uid("fx3"), lopsided, "x")
    with pytest.raises(WorkflowFailureError) as caught:
        await workers.execute_workflow(TransactionWorkflow.run, unbalanced,
                                       id=transaction_workflow_id(uid("fx3")),
                                       task_queue=ledger.settings.task_queue("us"))  # fmt: skip
    assert getattr(caught.value.cause, "type", None) == InvalidAmount.type


async def test_the_cli_posts_legs_from_flags_and_from_a_file(
    ledger: LedgerClient, cli_env: dict[str, str], uid: Ids, tmp_path: Path
) -> None:
    alice, _, usd, _ = await desks(ledger, uid)
    code, out, err = await cli(
        cli_env, "transaction", "--id", uid("t1"), "--leg", f"debit:{alice}:10.00:USD",
        "--leg", f"credit:{usd}:10.00:USD", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["balances_after"] == {alice: 9000, usd: 1000}
    file = tmp_path / "legs.json"
    file.write_text(json.dumps([
        {"side": "debit", "account_id": alice, "amount": "1.00", "currency": "USD"},
        {"side": "credit", "account_id": usd, "amount": "1.00", "currency": "USD"},
    ]))  # fmt: skip
    code, out, err = await cli(cli_env, "transaction", "--file", str(file), "--json")
    assert code == 0 and json.loads(out)["status"] == "confirmed", err
    code, _, err = await cli(cli_env, "transaction", "--leg", f"debit:{alice}:1.00:USD")
    assert code == 2 and "2 to 64 legs" in err
    code, _, err = await cli(cli_env, "transaction", "--leg", "nonsense", "--leg", "x")
    assert code == 2 and "side:account:amount:currency" in err


async def test_concurrent_submissions_of_one_transaction_id_post_it_once(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    alice, _, usd, _ = await desks(ledger, uid)
    legs = [LegRequest(alice, "debit", "1.00", "USD"), LegRequest(usd, "credit", "1.00", "USD")]
    clients = [LedgerClient(workers, ledger.settings) for _ in range(5)]
    try:
        results = await asyncio.gather(
            *(c.transaction(uid("t"), legs, initiated_by="ops") for c in clients)
        )
    finally:
        for c in clients:
            await c.close()
    assert len(set(map(repr, results))) == 1 and results[0].confirmed
    statement = await ledger.statement(alice)
    assert [line.transfer_id for line in statement].count(f"{uid('t')}/tx") == 1
    assert (await ledger.account(alice)).balance == 9900


async def test_a_running_transaction_s_id_sent_with_other_legs_is_a_conflict(
    ledger: LedgerClient, workers: Client, engines: dict[str, Any], uid: Ids
) -> None:
    """Both sent while the first is still running (no worker polls its task
    queue yet): the first posts, the second is `DuplicateTransactionMismatch`
    (not the first's outcome), and nothing posts twice."""
    from ledgerflow.workers.regional import build_worker

    alice, _, usd, _ = await desks(ledger, uid)
    stalled = replace(ledger.settings, task_queue_prefix=uid("later"))
    legs = [LegRequest(alice, "debit", "1.00", "USD"), LegRequest(usd, "credit", "1.00", "USD")]
    other = [LegRequest(alice, "debit", "2.00", "USD"), LegRequest(usd, "credit", "2.00", "USD")]
    first_client, second_client = LedgerClient(workers, stalled), LedgerClient(workers, stalled)
    try:
        first = asyncio.ensure_future(first_client.transaction(uid("t"), legs, region="us"))
        await asyncio.sleep(1)
        second = asyncio.ensure_future(second_client.transaction(uid("t"), other, region="us"))
        await asyncio.sleep(1)
        assert not first.done() and not second.done()  # both wait on the running one
        async with build_worker(workers, stalled, "us", engines["us"]):
            assert (await asyncio.wait_for(first, 60)).confirmed
            with pytest.raises(DuplicateTransactionMismatch):
                await asyncio.wait_for(second, 60)
    finally:
        await first_client.close()
        await second_client.close()
    assert (await ledger.account(alice)).balance == 9900
