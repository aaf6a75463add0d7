"""Holds end to end on the real servers: placed, captured in parts, voided,
expired by the workflow's durable timer, the deadline moved, through the SDK
and through the plain Temporal client; each race rule of the README's
"Holds" section, and balances (posted, pending, available) at every step."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError

from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import (
    CaptureExceedsHold,
    DuplicateCaptureMismatch,
    DuplicateHoldMismatch,
    HoldExpired,
    HoldNotOpen,
    InsufficientFunds,
)
from ledgerflow.domain.holds import HoldRequest, HoldState, hold_workflow_id
from ledgerflow.workflows.hold import HoldWorkflow
from tests.support import cli, eventually

Ids = Callable[[str], str]


async def funded(ledger: LedgerClient, uid: Ids, amount: str = "100.00") -> tuple[str, str, str]:
    bank, alice, shop = uid("bank"), uid("alice"), uid("shop")
    await ledger.open_account(bank, "USD", overdraft_limit=None)
    await ledger.open_account(alice, "USD")
    await ledger.open_account(shop, "USD")
    await ledger.transfer(uid("fund"), bank, alice, amount, "USD", initiated_by="ops")
    return bank, alice, shop


async def hold_events(engine: AsyncEngine, account_id: str) -> list[tuple[str, int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, amount, pending_after FROM events WHERE account_id = :a "
                "AND type LIKE 'Hold%' ORDER BY version"
            ),
            {"a": account_id},
        )
        return [(r.type, r.amount, r.pending_after) for r in rows]


async def test_a_hold_captured_in_parts_moves_pending_then_posted(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    _, alice, shop = await funded(ledger, uid)
    hid = uid("h")
    placed = await ledger.hold(hid, alice, shop, "60.00", "USD", expires_in=3600,
                               initiated_by="pos")  # fmt: skip
    assert placed.placed and placed.expires_at is not None

    async def pending() -> bool:
        b = await ledger.balance(alice)
        return (b.balance, b.pending_out, b.available) == (10000, 6000, 4000)

    await eventually(pending)
    assert (await ledger.balance(shop)).pending_in == 6000
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    with pytest.raises(InsufficientFunds):  # what is held cannot be spent
        await ledger.transfer(uid("t"), alice, shop, "40.01", "USD", initiated_by="alice")
    first = await ledger.capture(hid, "25.00", capture_id="c1", initiated_by="pos")
    assert (first.amount, first.consumed, first.from_balance_after) == (2500, 2500, 7500)
    assert await ledger.capture(hid, "25.00", capture_id="c1") == first  # idempotent
    with pytest.raises(DuplicateCaptureMismatch):
        await ledger.capture(hid, "26.00", capture_id="c1")
    with pytest.raises(CaptureExceedsHold):
        await ledger.capture(hid, "35.01", capture_id="c2")
    last = await ledger.capture(hid, "35.00", capture_id="c3")
    assert last.from_balance_after == 4000
    handle = workers.get_workflow_handle(hold_workflow_id(hid), result_type=HoldState)
    ended = await handle.result()
    assert (ended.status, ended.captured, ended.remaining) == ("captured", 6000, 0)
    with pytest.raises(HoldNotOpen):  # its workflow closed: the store answers
        await ledger.capture(hid, "1.00", capture_id="c4")
    assert await ledger.capture(hid, "25.00", capture_id="c1") == first  # still its outcome
    with pytest.raises(DuplicateCaptureMismatch):
        await ledger.capture(hid, "26.00", capture_id="c1")
    assert await hold_events(engines["us"], alice) == [
        ("HoldPlaced", 0, 6000),
        ("HoldCaptured", -2500, 3500),
        ("HoldCaptured", -3500, 0),
    ]

    async def settled() -> bool:
        b, s = await ledger.balance(alice), await ledger.balance(shop)
        return (b.balance, b.pending_out, s.balance, s.pending_in) == (4000, 0, 6000, 0)

    await eventually(settled)
    # As of a moment between placement and capture, the hold was pending.
    then = await ledger.balance_as_of(alice, between)
    assert (then.balance, then.pending_out, then.available) == (10000, 6000, 4000)
    assert (await ledger.balance_as_of(shop, between)).pending_in == 6000
    now = await ledger.balance_as_of(alice, datetime.now(UTC))
    assert (now.balance, now.pending_out) == (4000, 0)
    # The audit trail: each hold event with its hold id and workflow.
    trail = await ledger.audit(alice, between - timedelta(minutes=1),
                               datetime.now(UTC) + timedelta(seconds=1))  # fmt: skip
    lines = [(e.kind, e.type, e.reason_type, e.workflow_id) for e in trail.entries
             if e.workflow_id == hold_workflow_id(hid)]  # fmt: skip
    assert lines == [
        ("hold", "HoldPlaced", None, f"hold-{hid}"),
        ("posting", "HoldCaptured", None, f"hold-{hid}"),
        ("capture-refused", None, "CaptureExceedsHold", f"hold-{hid}"),
        ("posting", "HoldCaptured", None, f"hold-{hid}"),
    ]
    assert trail.closing_balance == 4000
    # The target's trail: each capture's credit is a posting of the hold.
    received = await ledger.audit(shop, between - timedelta(minutes=1),
                                  datetime.now(UTC) + timedelta(seconds=1))  # fmt: skip
    credits = [(e.kind, e.type, e.amount) for e in received.entries
               if e.workflow_id == hold_workflow_id(hid)]  # fmt: skip
    assert credits == [("posting", "Credited", 2500), ("posting", "Credited", 3500)]
    assert received.closing_balance == 6000


async def test_a_void_ends_the_hold_once_and_nothing_captures_after_it(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    _, alice, shop = await funded(ledger, uid)
    hid = uid("h")
    await ledger.hold(hid, alice, shop, "30.00", "USD", expires_in=3600)
    voided = await ledger.void(hid, initiated_by="pos")
    assert (voided.ending, voided.released) == ("voided", 3000)
    state = await workers.get_workflow_handle(hold_workflow_id(hid), result_type=HoldState).result()
    assert state.status == "voided"
    with pytest.raises(HoldNotOpen):
        await ledger.capture(hid, "1.00")
    assert await ledger.void(hid) == voided  # its workflow closed: the store answers
    assert (await ledger.account(alice)).pending_out == 0


async def test_the_timer_expires_the_hold_and_a_moved_deadline_holds(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    _, alice, shop = await funded(ledger, uid)
    short, moved, sooner = uid("short"), uid("moved"), uid("sooner")
    await ledger.hold(short, alice, shop, "10.00", "USD", expires_in=2)
    await ledger.hold(moved, alice, shop, "10.00", "USD", expires_in=2)
    await ledger.hold(sooner, alice, shop, "10.00", "USD", expires_in=3600)
    extended = await ledger.extend(moved, 3600, change_id="d1")
    assert extended.open and extended.expires_at is not None
    assert extended.expires_at > datetime.now(UTC) + timedelta(minutes=50)
    await ledger.extend(sooner, 1, change_id="d1")
    state = await workers.get_workflow_handle(
        hold_workflow_id(short), result_type=HoldState
    ).result()
    assert (state.status, state.remaining) == ("expired", 0)
    gone = await workers.get_workflow_handle(
        hold_workflow_id(sooner), result_type=HoldState
    ).result()
    assert gone.status == "expired"
    with pytest.raises((HoldExpired, HoldNotOpen)):
        await ledger.capture(short, "1.00")
    with pytest.raises(HoldExpired):
        await ledger.void(short)
    assert (await ledger.hold_state(moved)).open
    assert (await ledger.capture(moved, "10.00")).captured
    released = [e for e in await hold_events(engines["us"], alice) if e[0] == "HoldReleased"]
    assert len(released) == 2  # short and sooner, once each
    assert (await ledger.account(alice)).pending_out == 0


async def test_a_refused_hold_is_never_capturable_and_ids_keep_their_outcome(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    _, alice, shop = await funded(ledger, uid, "5.00")
    hid = uid("h")
    with pytest.raises(InsufficientFunds):
        await ledger.hold(hid, alice, shop, "6.00", "USD", expires_in=60)
    refused = await ledger.hold(hid, alice, shop, "6.00", "USD", expires_in=60,
                                raise_on_refusal=False)  # fmt: skip
    assert (refused.status, refused.reason_type) == ("refused", "InsufficientFunds")
    with pytest.raises(HoldNotOpen):
        await ledger.capture(hid, "1.00")
    with pytest.raises(DuplicateHoldMismatch):
        await ledger.hold(hid, alice, shop, "5.00", "USD", expires_in=60)
    # The plain client: a raw start, and a re-run of the closed id.
    raw = uid("raw")
    request = HoldRequest(raw, alice, shop, "2.00", "USD", "script", 3600)
    handle = await workers.start_workflow(
        HoldWorkflow.run,
        request,
        id=hold_workflow_id(raw),
        task_queue=ledger.settings.task_queue("us"),
    )
    await eventually(lambda: _is_open(ledger, raw))
    await ledger.void(raw)
    first = await handle.result()
    rerun = await workers.execute_workflow(
        HoldWorkflow.run,
        request,
        id=hold_workflow_id(raw),
        task_queue=ledger.settings.task_queue("us"),
    )
    assert (first.status, rerun.status, rerun.remaining) == ("voided", "voided", 0)
    assert (await ledger.account(alice)).pending_out == 0
    other = HoldRequest(raw, alice, shop, "3.00", "USD", "script", 3600)
    with pytest.raises(WorkflowFailureError) as caught:
        await workers.execute_workflow(HoldWorkflow.run, other, id=hold_workflow_id(raw),
                                       task_queue=ledger.settings.task_queue("us"))  # fmt: skip
    assert getattr(caught.value.cause, "type", None) == "DuplicateHoldMismatch"


async def _is_open(ledger: LedgerClient, hold_id: str) -> bool:
    try:
        return (await ledger.hold_state(hold_id)).open
    except Exception:
        return False


async def test_concurrent_captures_and_a_void_end_the_hold_exactly_once(
    ledger: LedgerClient, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    _, alice, shop = await funded(ledger, uid)
    hid = uid("h")
    await ledger.hold(hid, alice, shop, "50.00", "USD", expires_in=3600)

    async def attempt(call: Callable[[], object]) -> str:
        try:
            await call()  # type: ignore[misc]
            return "ok"
        except Exception as exc:
            return type(exc).__name__

    answers = await asyncio.gather(
        *(attempt(lambda i=i: ledger.capture(hid, "20.00", capture_id=f"c{i}")) for i in range(4)),
        attempt(lambda: ledger.void(hid)),
        attempt(lambda: ledger.void(hid)),
    )
    state = await ledger.hold_state(hid)
    captured = answers[:4].count("ok")
    assert state.status in ("voided", "captured") and state.remaining == 0
    assert state.captured == captured * 2000 <= 5000 + 0
    account = await ledger.account(alice)
    assert (account.balance, account.pending_out) == (10000 - state.captured, 0)
    endings = [e for e in await hold_events(engines["us"], alice) if e[0] == "HoldReleased"]
    assert len(endings) == (1 if state.status == "voided" else 0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"expires_in_s": 0}, "expires_in_s"), ({"amount": "12.5.0"}, None),
     ({"over_capture": -5}, "over_capture"), ({"to_account": "clearing:us:eu:USD"}, "to_account")],
)  # fmt: skip
async def test_a_malformed_raw_start_fails_typed_and_writes_nothing(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids,
    changes: dict[str, object], field: str | None,
) -> None:  # fmt: skip
    _, alice, shop = await funded(ledger, uid)
    hid = uid("bad")
    fields: dict[str, object] = dict(hold_id=hid, from_account=alice, to_account=shop,
                                     amount="1.00", currency="USD", initiated_by="x",
                                     expires_in_s=60) | changes  # fmt: skip
    with pytest.raises(WorkflowFailureError) as caught:
        await workers.execute_workflow(
            HoldWorkflow.run, HoldRequest(**fields), id=hold_workflow_id(hid),  # type: ignore[arg-type]
            task_queue=ledger.settings.task_queue("us"),
        )  # fmt: skip
    assert getattr(caught.value.cause, "type", None) in ("InvalidRequest", "InvalidAmount")
    async with engines["us"].connect() as conn:
        written = (await conn.execute(text("SELECT count(*) FROM holds WHERE hold_id = :h"),
                                      {"h": hid})).scalar_one()  # fmt: skip
    assert written == 0 and (await ledger.account(alice)).version == 2


async def test_concurrent_submissions_of_one_hold_id_place_it_once(
    ledger: LedgerClient, workers: Client, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    _, alice, shop = await funded(ledger, uid)
    hid = uid("h")
    clients = [LedgerClient(workers, ledger.settings) for _ in range(5)]
    try:
        results = await asyncio.gather(
            *(c.hold(hid, alice, shop, "10.00", "USD", expires_in=3600) for c in clients)
        )
    finally:
        for c in clients:
            await c.close()
    assert len(set(results)) == 1 and results[0].placed
    assert [e[0] for e in await hold_events(engines["us"], alice)] == ["HoldPlaced"]
    assert (await ledger.account(alice)).pending_out == 1000
    await ledger.void(hid)


async def test_a_reset_hold_workflow_answers_from_the_store(
    ledger: LedgerClient, workers: Client, uid: Ids
) -> None:
    """Reset to its first workflow task after a capture: the placement and
    the capture are not run again (the store answers them), and the hold
    carries on from where the store says it is."""
    _, alice, shop = await funded(ledger, uid)
    hid = uid("h")
    await ledger.hold(hid, alice, shop, "30.00", "USD", expires_in=3600)
    await ledger.capture(hid, "10.00", capture_id="c1")
    handle = workers.get_workflow_handle(hold_workflow_id(hid))
    history = await handle.fetch_history()
    first_task = next(
        e.event_id for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )  # fmt: skip
    described = await handle.describe()
    await workers.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=workers.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=described.run_id),
            reason="test: reset to the first workflow task",
            workflow_task_finish_event_id=first_task,
            request_id=str(uuid.uuid4()),
        )
    )
    await eventually(lambda: _is_open(ledger, hid))
    state = await ledger.hold_state(hid)
    assert (state.captured, state.remaining) == (1000, 2000)
    assert (await ledger.capture(hid, "10.00", capture_id="c1")).consumed == 1000  # as recorded
    last = await ledger.capture(hid, "20.00", capture_id="c2")
    assert last.from_balance_after == 7000
    account = await ledger.account(alice)
    assert (account.balance, account.pending_out) == (7000, 0)


async def test_the_cli_places_captures_shows_extends_and_voids_a_hold(
    ledger: LedgerClient, cli_env: dict[str, str], uid: Ids
) -> None:
    _, alice, shop = await funded(ledger, uid)
    hid = uid("h")

    async def run(*args: str) -> dict[str, object]:
        code, out, err = await cli(cli_env, "hold", *args, "--json")
        assert code == 0, err
        answer: dict[str, object] = json.loads(out)
        return answer

    placed = await run("place", "--id", hid, "--from", alice, "--to", shop, "--amount", "30.00",
                       "--currency", "USD", "--expires-in", "3600")  # fmt: skip
    assert placed["status"] == "placed" and placed["amount"] == 3000
    captured = await run("capture", hid, "--amount", "10.00", "--id", "c1")
    assert (captured["status"], captured["from_balance_after"]) == ("captured", 9000)
    shown = await run("show", hid)
    assert (shown["status"], shown["captured"], shown["remaining"]) == ("open", 1000, 2000)
    moved = await run("extend", hid, "--expires-in", "60", "--id", "d1")
    assert moved["status"] == "open"
    voided = await run("void", hid)
    assert (voided["ending"], voided["released"]) == ("voided", 2000)
    code, _, err = await cli(cli_env, "hold", "capture", hid, "--amount", "1.00", "--id", "c2")
    assert code == 3 and "HoldNotOpen" in err and err.count("\n") == 1, err
    bad = ["place", "--id", uid("bad"), "--from", alice, "--to", shop, "--amount", "1.00",
           "--currency", "USD", "--expires-in", "0"]  # fmt: skip
    code, _, err = await cli(cli_env, "hold", *bad)
    assert code == 2 and "expires_in_s must be between 1 and" in err, err
    code, out, _ = await cli(cli_env, "balance", alice, "--json")
    assert code == 0 and json.loads(out)["pending_out"] == 0
