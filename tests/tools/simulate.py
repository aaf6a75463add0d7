"""The ledger simulator: seeded, randomised runs against a whole real ledger,
checked after every round against a model that decides everything itself.

    .venv/bin/python -m tests.tools.simulate --seeds 1,2,3,4 --ops 2500   # make simulate
    .venv/bin/python -m tests.tools.simulate --seeds 5 --ops 120          # the CI form

Each run brings up a ledger of its own (`tests.tools.stack`), opens accounts
in every region (banks, customers with and without credit, a EUR customer),
and plays rounds of operations chosen by the seed, concurrently within a
round: local and cross-region transfers through the SDK; raw starts through
the plain Temporal client (also misrouted ones); account freezes, unfreezes
and closes, and re-sent change ids (the same change, or another under its
id), through the SDK and raw starts; holds placed, captured in parts and
again under the same capture id (the same amount, or another), voided, their
deadlines moved, and holds left to expire by their workflow's timer, some
toward another region's account (each capture a saga, returned when the
destination refuses it);
resubmissions of closed ids through the SDK; raw re-runs of closed ids, with
the same payload and with another; concurrent duplicate submissions of a new
id from separate clients (local and cross-region); workflow resets of closed
transfers. Faults land in the middle of rounds: a worker SIGKILLed, a worker
killed exactly between a posting's commit and its answer (a failpoint), a
region's worker stopped and restarted, PostgreSQL restarted. Between rounds:
reconciliation, an archive run, a prune (as the pruner role) and a
projections rebuild (as the owner), with every balance checked before and
after.

After every round (`sim_checks`): every operation answered what the model
decided; every id answered the same through every path, every time; per
currency all postings of all regions sum to zero; nothing was credited
without its debit, or arrived and was paid back; clearing pairs net to what
is in transit (nothing, once a round is done); write model, read models and
`balance_as_of(now)` equal the model's balances; an account's audit trail
over a random range lists each posting once and closes at its balance.
Every few rounds and at the end: `verify`, `archive verify` and a clean
reconciliation. At the end it plants one fault of each kind (an edited
event, a deleted leg, a forged checkpoint, a stray inbound leg) and
requires each to be found.

A failure prints its seed and the operation sequence, then shrinks it
(replaying subsets on the same ledger with fresh accounts) and prints the
smallest sequence that still fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowFailureError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from ledgerflow.client import LedgerClient
from ledgerflow.domain.errors import ConfirmationTimeout, LedgerError, StoreUnavailable
from ledgerflow.domain.holds import HoldState, hold_workflow_id
from ledgerflow.domain.model import AccountChangeRequest, TransferRequest, TransferResult
from ledgerflow.domain.transactions import LegRequest
from ledgerflow.workflows.account_change import AccountChangeWorkflow
from ledgerflow.workflows.transfer import TransferWorkflow
from tests.tools.sim_checks import RoundFailure, check_maintenance, check_round, final_checks
from tests.tools.sim_model import Account, Change, Model, Outcome, Payload
from tests.tools.stack import Ledger, WorkerDied, own_ledger

TRANSIENT = (ConfirmationTimeout, StoreUnavailable, RPCError,
             WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError)  # fmt: skip
KINDS = ("sdk", "sdk", "sdk", "cross", "cross", "raw", "raw-misrouted", "resubmit", "rerun",
         "rerun-other", "dups", "dups-cross", "reset", "fund", "freeze", "unfreeze", "close",
         "change-again", "hold", "hold", "capture", "capture", "void", "extend", "hold-expire",
         "capture-again", "transaction", "transaction", "transaction-again")  # fmt: skip
#: Account changes: each touches its account alone in its round.
CHANGES = ("freeze", "unfreeze", "close", "change-again")
#: Hold operations: each touches its hold's two accounts alone in its round.
HOLD_KINDS = ("hold", "capture", "void", "extend", "hold-expire", "capture-again")
FAULTS = ("kill", "failpoint", "stop-region", "postgres")
#: Operations on an id submitted earlier: they move no money.
AGAIN = ("resubmit", "rerun", "rerun-other", "reset")


@dataclass(frozen=True)
class Op:
    """One operation, all its choices made (so a sequence replays exactly)."""

    kind: str
    tid: str
    payload: Payload
    #: An account change (its id is `tid`), and how it is sent: `sdk` or `raw`.
    change: Change | None = None
    via: str = "sdk"
    #: A hold operation on hold `tid` (a placement's payload is `payload`).
    hold: HoldOp | None = None
    #: A multi-leg transaction `tid`: (account, side, amount, currency) legs.
    legs: tuple[tuple[str, str, int, str], ...] | None = None


@dataclass(frozen=True)
class HoldOp:
    action: str  # place | expire | capture | void | extend
    amount: int = 0
    capture_id: str = ""
    over: int = 0


@dataclass
class Round:
    ops: list[Op]
    fault: str | None = None
    fault_region: str | None = None
    maintenance: bool = False


@dataclass
class RunReport:
    seed: int
    operations: int = 0
    rounds: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    #: operations played, by kind
    kinds: dict[str, int] = field(default_factory=dict)
    maintenance: int = 0
    #: holds toward another region placed, captures that arrived, that came back
    abroad: dict[str, int] = field(default_factory=dict)
    #: events in the global stream at the end, each once and in its region's order
    stream_events: int = 0
    planted_found: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0
    failure: str | None = None
    shrunk: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and all(self.planted_found.values())


class Simulation:
    def __init__(self, ledger: Ledger, seed: int, prefix: str, sabotage: str | None) -> None:
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.model = Model(sabotage=sabotage)
        #: every outcome each id answered, through every path
        self.observed: dict[str, list[str]] = defaultdict(list)
        self.done: list[Op] = []
        self.rounds = 0
        #: Events the final check found in the global stream, each once.
        self.stream_events = 0
        #: the payload each id's latest workflow run was started with (what a
        #: reset re-executes: a re-run with another payload is the latest too)
        self.latest: dict[str, Payload] = {}
        #: one round with each kind of fault first, so every run meets them all
        self.forced: list[str] = list(FAULTS)
        #: a recorded sequence being replayed (by the shrinker), or None
        self.rounds_given: list[Round] | None = None

    # -- set-up ------------------------------------------------------------

    async def open_accounts(self) -> None:
        client = self.ledger.client
        for region in self.ledger.settings.regions:
            specs = [("bank", "USD", None), ("c0", "USD", 0), ("c1", "USD", 0),
                     ("c2", "USD", 500), ("c3", "USD", 0), ("eur", "EUR", 0)]  # fmt: skip
            for name, currency, limit in specs:
                account_id = f"{name}-{region}-{self.prefix}"
                await client.open_account(account_id, currency, region=region,
                                          overdraft_limit=limit)  # fmt: skip
                self.model.accounts[account_id] = Account(account_id, region, currency, limit)

    def customers(self, region: str | None = None) -> list[Account]:
        return [
            a for a in self.model.accounts.values()
            if not a.account_id.startswith("bank-") and (region is None or a.region == region)
        ]  # fmt: skip

    # -- choosing operations ---------------------------------------------------

    def plan_round(self, size: int) -> Round:
        rng, regions = self.rng, list(self.ledger.settings.regions)
        debited: set[str] = set()
        credited: set[str] = set()
        ops: list[Op] = []
        for _ in range(size * 3):
            if len(ops) >= size:
                break
            kind = rng.choice(KINDS)
            op = self._choose(kind, regions)
            if op is None or any(other.tid == op.tid for other in ops):
                continue  # one operation per id a round (a raw start of a running id fails)
            if op.change is not None or op.hold is not None or op.legs is not None:
                # A change or a hold step and a transfer of one account in one
                # round would race: its accounts are the step's alone that round.
                touched = self.accounts_of(op)
                if touched & (debited | credited):
                    continue
                debited.update(touched)
                credited.update(touched)
                ops.append(op)
                continue
            if kind in AGAIN:
                ops.append(op)  # moves no money (the outcome is recorded)
                continue
            # Order independence: each account debited at most once a round,
            # never both debited and credited.
            src, dst = op.payload.source, op.payload.target
            if src == dst or src in debited | credited or dst in debited:
                continue
            debited.add(src)
            credited.add(dst)
            ops.append(op)
        round_ = Round(ops)
        if self.forced:  # every kind of fault early on, then by chance
            round_.fault = self.forced.pop(0)
        elif rng.random() < 0.25:
            round_.fault = rng.choice(FAULTS)
        if round_.fault:
            round_.fault_region = rng.choice(regions)
        round_.maintenance = rng.random() < 0.08 or self.rounds == 3
        return round_

    def _choose(self, kind: str, regions: list[str]) -> Op | None:
        rng = self.rng
        tid = f"{kind[:3]}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}-{self.prefix}"
        if kind in CHANGES:
            return self._choose_change(kind, tid, regions)
        if kind in HOLD_KINDS:
            return self._choose_hold(kind, tid, regions)
        if kind in ("transaction", "transaction-again"):
            return self._choose_transaction(kind, tid, regions)
        if kind in AGAIN:
            closed = [op for op in self.done
                      if op.kind not in ("dups", "dups-cross") and op.change is None
                      and op.hold is None and op.legs is None]  # fmt: skip
            if not closed:
                return None
            old = rng.choice(closed)
            payload = old.payload.other() if kind == "rerun-other" else old.payload
            if kind == "reset":
                payload = self.latest.get(old.tid, old.payload)
            return Op(kind, old.tid, payload)
        region = rng.choice(regions)
        if kind == "fund":
            target = rng.choice(self.customers(region))
            amount = rng.choice([100, 5_000, 50_000])
            return Op(kind, tid, Payload(f"bank-{region}-{self.prefix}", target.account_id,
                                          amount, target.currency))  # fmt: skip
        source = rng.choice(self.customers(region))
        far = kind in ("cross", "dups-cross", "raw-misrouted") or (
            kind == "raw" and rng.random() < 0.3
        )
        there = rng.choice([r for r in regions if r != region]) if far else region
        targets = [a for a in self.customers(there) if a.account_id != source.account_id]
        target = rng.choice(targets)
        if rng.random() < 0.05:  # a target that does not exist at all
            target = Account(f"ghost-{self.prefix}", there, "USD", 0)
        currency = source.currency if rng.random() < 0.9 else "USD"
        available = source.balance + (source.limit or 0)
        amount = rng.choice([1, 50, 999, max(1, available), available + 1, 10**6])
        return Op(kind, tid, Payload(source.account_id, target.account_id, max(1, amount),
                                     currency))  # fmt: skip

    def _choose_change(self, kind: str, tid: str, regions: list[str]) -> Op | None:
        rng = self.rng
        via = rng.choice(["sdk", "raw"])
        nothing = Payload("", "", 0, "")
        if kind == "change-again":  # a change id sent before: the same, or another change
            earlier = [op for op in self.done if op.change is not None]
            if not earlier:
                return None
            old = rng.choice(earlier)
            assert old.change is not None
            change = old.change
            if rng.random() < 0.3:
                change = replace(change, reason=change.reason + " (again)")
            return Op(kind, old.tid, nothing, change, via)
        account = rng.choice(self.customers(rng.choice(regions)))
        account_id = account.account_id
        if rng.random() < 0.05:  # an account that does not exist
            account_id = f"ghost-{self.prefix}"
        reason = rng.choice(["kyc review", "fraud signal", "customer request"])
        return Op(kind, tid, nothing, Change(account_id, kind, reason), via)

    def accounts_of(self, op: Op) -> set[str]:
        if op.change is not None:
            return {op.change.account_id}
        if op.legs is not None:
            return {leg[0] for leg in op.legs}
        if op.hold is not None and op.hold.action in ("place", "expire"):
            return {op.payload.source, op.payload.target}
        hold = self.model.holds[op.tid]
        return {hold.source, hold.target}

    def _choose_hold(self, kind: str, tid: str, regions: list[str]) -> Op | None:
        rng = self.rng
        if kind in ("hold", "hold-expire"):
            region = rng.choice(regions)
            source = rng.choice(self.customers(region))
            # Elsewhere: its captures travel through the saga.
            here = (
                rng.choice([r for r in regions if r != region]) if rng.random() < 0.35 else region
            )
            targets = [a for a in self.customers(here) if a.account_id != source.account_id]
            target = rng.choice(targets)
            available = source.balance - source.pending + (source.limit or 0)
            amount = max(1, rng.choice([1, 50, available // 4, available, available + 1, 999]))
            action = "place" if kind == "hold" else "expire"
            over = rng.choice([0, 0, 100])
            payload = Payload(source.account_id, target.account_id, amount, source.currency)
            return Op(kind, tid, payload, hold=HoldOp(action, over=over))
        held = [h for h in self.model.holds.values() if h.status != "refused" or rng.random() < 0.2]
        if not held:
            return None
        abroad = [h for h in held if h.to_region is not None and h.status == "open"]
        hold = rng.choice(abroad if abroad and rng.random() < 0.5 else held)
        nothing = Payload("", "", 0, "")
        if kind == "capture":
            capturable = hold.amount + hold.over - hold.captured
            amount = max(1, rng.choice([1, hold.remaining, capturable, capturable + 1]))
            capture_id = f"k-{uuid.UUID(int=rng.getrandbits(128)).hex[:10]}"
            return Op(kind, hold.hold_id, nothing, hold=HoldOp("capture", amount, capture_id))
        if kind == "capture-again":
            sent = [(cid, amount) for cid, (amount, _) in hold.captures.items()]
            if not sent:
                return None
            cid, amount = rng.choice(sent)
            if rng.random() < 0.3:
                amount += 1
            return Op(kind, hold.hold_id, nothing, hold=HoldOp("capture", amount, cid))
        return Op(kind, hold.hold_id, nothing, hold=HoldOp(kind))

    def _choose_transaction(self, kind: str, tid: str, regions: list[str]) -> Op | None:
        rng, nothing = self.rng, Payload("", "", 0, "")
        if kind == "transaction-again":
            sent = [op for op in self.done if op.legs is not None]
            if not sent:
                return None
            old = rng.choice(sent)
            assert old.legs is not None
            legs = old.legs
            if rng.random() < 0.3:  # another transaction under the id
                first = legs[0]
                legs = ((first[0], first[1], first[2] + 1, first[3]), *legs[1:])
            return Op(kind, old.tid, nothing, legs=legs)
        region = rng.choice(regions)
        usd = [a for a in self.model.accounts.values()
               if a.region == region and a.currency == "USD"]  # fmt: skip
        chosen = rng.sample(usd, rng.choice([2, 3, 4]))
        if rng.random() < 0.05:
            chosen[-1] = Account(f"ghost-{self.prefix}", region, "USD", 0)
        amount = rng.choice([1, 50, 999, 5_000])
        payers = chosen[: max(1, len(chosen) // 2)]
        payees = chosen[len(payers) :]
        legs = [(a.account_id, "debit", amount * len(payees), "USD") for a in payers]
        legs += [(a.account_id, "credit", amount * len(payers), "USD") for a in payees]
        if rng.random() < 0.05:  # does not sum to zero: refused before anything
            legs[-1] = (legs[-1][0], legs[-1][1], legs[-1][2] + 1, legs[-1][3])
        return Op(kind, tid, nothing, legs=tuple(legs))

    async def run_transaction(self, op: Op) -> str:
        assert op.legs is not None
        legs = [LegRequest(a, side, amount, currency) for a, side, amount, currency in op.legs]
        for _ in range(60):
            try:
                await self.ledger.client.transaction(op.tid, legs, initiated_by="sim")
                return "confirmed"
            except TRANSIENT:
                await asyncio.sleep(1)
            except LedgerError as exc:
                return exc.type
        return "unknown"

    def expect_hold(self, op: Op) -> str:
        """The model's answer, applied to it (the round's operations touch
        disjoint accounts and holds, so deciding them first is their order)."""
        step, model = op.hold, self.model
        assert step is not None
        if step.action in ("place", "expire"):
            answer = model.place(op.tid, op.payload, step.over)
            if step.action == "expire" and answer == "placed":
                return model.release(op.tid, "expired")
            return answer
        if step.action == "capture":
            return model.capture(op.tid, step.capture_id, step.amount)
        if step.action == "void":
            return model.release(op.tid, "voided")
        return model.extend(op.tid)

    async def run_hold(self, op: Op) -> str:
        step, client = op.hold, self.ledger.client
        assert step is not None
        p = op.payload
        for _ in range(60):
            try:
                if step.action in ("place", "expire"):
                    await client.hold(
                        op.tid, p.source, p.target, p.amount, p.currency,
                        expires_in=3600 if step.action == "place" else 1,
                        over_capture=step.over, initiated_by="sim",
                    )  # fmt: skip
                    if step.action == "place":
                        return "placed"
                    handle = client.temporal.get_workflow_handle(hold_workflow_id(op.tid),
                                                                 result_type=HoldState)  # fmt: skip
                    return str((await asyncio.wait_for(handle.result(), 120)).status)
                if step.action == "capture":
                    await client.capture(op.tid, step.amount, capture_id=step.capture_id,
                                         initiated_by="sim")  # fmt: skip
                    return "captured"
                if step.action == "void":
                    return (await client.void(op.tid, initiated_by="sim")).ending
                await client.extend(op.tid, 3600, initiated_by="sim")
                return "extended"
            except TRANSIENT:
                await asyncio.sleep(1)
            except LedgerError as exc:
                return exc.type
        return "unknown"

    def change_region(self, change: Change) -> str:
        account = self.model.accounts.get(change.account_id)
        return account.region if account else self.ledger.settings.default_region

    async def run_change(self, op: Op) -> str:
        """`applied`, or the refusal's type."""
        change = op.change
        assert change is not None
        for _ in range(60):
            try:
                if op.via == "sdk":
                    await self.ledger.client.change_account(
                        change.account_id, change.action, reason=change.reason,
                        change_id=op.tid, initiated_by="sim",
                    )  # fmt: skip
                    return "applied"
                request = AccountChangeRequest(op.tid, change.account_id, change.action, "sim",
                                               change.reason)  # fmt: skip
                result = await self.ledger.client.temporal.execute_workflow(
                    AccountChangeWorkflow.run, request, id=request.workflow_id,
                    task_queue=self.ledger.settings.task_queue(self.change_region(change)),
                )  # fmt: skip
                return "applied" if result.applied else str(result.reason_type)
            except TRANSIENT:
                await asyncio.sleep(1)
            except LedgerError as exc:
                return exc.type
            except WorkflowFailureError as exc:
                cause = exc.cause
                return (
                    cause.type if isinstance(cause, ApplicationError) and cause.type else "failed"
                )
        return "unknown"

    # -- running operations ------------------------------------------------

    def expected(self, op: Op) -> tuple[Outcome, str, str | None]:
        settings = self.ledger.settings
        if op.change is not None:
            answer = self.model.decide_change(op.tid, op.change)
            return Outcome(answer), self.change_region(op.change), None
        if op.hold is not None:
            return Outcome(self.expect_hold(op)), settings.default_region, None
        if op.legs is not None:
            first = self.model.accounts.get(op.legs[0][0])
            region = first.region if first else settings.default_region
            return Outcome(self.model.transact(op.tid, op.legs, region)), region, None
        if op.kind in AGAIN:
            _, _, region, to_region = self.model.transfers[op.tid]
        else:
            raw = self.model.accounts.get(op.payload.source)
            raw_region = raw.region if op.kind == "raw-misrouted" and raw else None
            region, to_region = self.model.route(op.payload, settings.default_region, raw_region)
        return self.model.decide(op.tid, op.payload, region, to_region), region, to_region

    async def run_op(self, op: Op, region: str, to_region: str | None) -> list[str]:
        """Every answer the operation got (several for concurrent duplicates)."""
        if op.change is not None:
            return [await self.run_change(op)]
        if op.hold is not None:
            return [await self.run_hold(op)]
        if op.legs is not None:
            return [await self.run_transaction(op)]
        if op.kind in ("dups", "dups-cross"):
            clients = [LedgerClient(self.ledger.client.temporal, self.ledger.settings)
                       for _ in range(6)]  # fmt: skip
            try:
                return list(
                    await asyncio.gather(
                        *(self._sdk(c, op) for c in clients),
                        self._raw(op, region, to_region, tolerate_running=True),
                    )
                )
            finally:
                for c in clients:
                    await c.close()
        if op.kind == "reset":
            return [await self._reset(op)]
        if op.kind in ("raw", "raw-misrouted", "rerun", "rerun-other"):
            return [await self._raw(op, region, to_region if op.kind != "raw-misrouted" else None)]
        return [await self._sdk(self.ledger.client, op)]

    async def _sdk(self, client: LedgerClient, op: Op) -> str:
        p = op.payload
        for _ in range(60):
            try:
                result = await client.transfer(
                    op.tid, p.source, p.target, p.amount, p.currency, initiated_by="sim",
                    raise_on_rejection=False, confirm_within=30,
                )  # fmt: skip
                return _status(result)
            except TRANSIENT:
                await asyncio.sleep(1)
            except LedgerError as exc:
                return exc.type
        return "unknown"

    async def _raw(
        self, op: Op, region: str, to_region: str | None, *, tolerate_running: bool = False
    ) -> str:
        p = op.payload
        request = TransferRequest(op.tid, p.source, p.target, p.amount, p.currency, "sim",
                                  to_region=to_region)  # fmt: skip
        temporal = self.ledger.client.temporal
        for _ in range(60):
            try:
                result = await temporal.execute_workflow(
                    TransferWorkflow.run, request, id=f"transfer-{op.tid}",
                    task_queue=self.ledger.settings.task_queue(region),
                )  # fmt: skip
                return _status(result)
            except WorkflowAlreadyStartedError:
                if not tolerate_running:
                    raise
                handle = temporal.get_workflow_handle_for(
                    TransferWorkflow.run, f"transfer-{op.tid}"
                )
                return await _answer(handle.result)
            except WorkflowFailureError as exc:
                cause = exc.cause
                return (
                    cause.type if isinstance(cause, ApplicationError) and cause.type else "failed"
                )
            except TRANSIENT:
                await asyncio.sleep(1)
        return "unknown"

    async def _reset(self, op: Op) -> str:
        temporal = self.ledger.client.temporal
        handle = temporal.get_workflow_handle(f"transfer-{op.tid}")
        history = await handle.fetch_history()
        first_task = next(
            e.event_id for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        )  # fmt: skip
        described = await handle.describe()
        answer = await temporal.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=temporal.namespace,
                workflow_execution=WorkflowExecution(
                    workflow_id=handle.id, run_id=described.run_id
                ),
                reason="simulator: reset to the first workflow task",
                workflow_task_finish_event_id=first_task,
                request_id=str(uuid.uuid4()),
            )
        )
        reset = temporal.get_workflow_handle_for(
            TransferWorkflow.run, handle.id, run_id=answer.run_id
        )
        return await _answer(reset.result)

    # -- faults ------------------------------------------------------------------

    async def arm(self, round_: Round) -> None:
        """Before the round: faults that must be in place when it starts."""
        workers, region = self.ledger.workers, round_.fault_region
        assert region is not None
        if round_.fault == "failpoint":
            # A new local transfer the model expects to post, in any region.
            local = [
                (op, where) for op in round_.ops if op.kind in ("sdk", "fund", "raw")
                for outcome, where, far in [self.expected(op)]
                if far is None and outcome.status == "confirmed"
            ]  # fmt: skip
            if not local:
                round_.fault = None
                if self.rounds_given is None:
                    self.forced.append("failpoint")  # a later round, then
                return
            op, region = local[0]
            round_.fault_region = region
            workers.stop(region)
            workers.start(region, failpoints=f"after-append={op.tid}")
        elif round_.fault == "stop-region":
            workers.stop(region)

    async def strike(self, round_: Round) -> None:
        """During the round."""
        workers, region = self.ledger.workers, round_.fault_region
        assert region is not None
        await asyncio.sleep(self.rng.uniform(0.05, 0.5))
        if round_.fault == "kill":
            workers.kill(region)
            await asyncio.sleep(self.rng.uniform(0.2, 1.5))
            workers.start(region)
        elif round_.fault == "stop-region":
            await asyncio.sleep(self.rng.uniform(1, 3))
            workers.start(region)
        elif round_.fault == "failpoint":
            for _ in range(300):
                if not workers.running(region):
                    break
                await asyncio.sleep(0.1)
            workers.stop(region)
            workers.start(region)
        elif round_.fault == "postgres":
            assert self.ledger.stack.postgres
            await asyncio.to_thread(self.ledger.stack.postgres.restart)

    # -- a round -------------------------------------------------------------------

    async def play(self, round_: Round) -> None:
        # (A replayed subset may have lost the first submission of an id.)
        round_.ops = [
            op for op in round_.ops
            if (op.kind not in AGAIN or op.tid in self.model.transfers)
            and (op.kind != "change-again" or any(op.tid == c for _, c in self.model.changes))
            and (op.hold is None or op.hold.action in ("place", "expire")
                 or op.tid in self.model.holds)
            and (op.kind != "transaction-again" or op.tid in self.model.txs)
        ]  # fmt: skip
        decided = [self.expected(op) for op in round_.ops]
        if round_.fault:
            await self.arm(round_)
        striking = asyncio.create_task(self.strike(round_)) if round_.fault else None
        answers = await asyncio.gather(
            *(self.run_op(op, region, to) for op, (_, region, to) in zip(round_.ops, decided,
                                                                         strict=True))
        )  # fmt: skip
        if striking is not None:
            await striking
        try:
            self.ledger.workers.require_running()
        except WorkerDied as exc:
            raise RoundFailure(str(exc)) from None
        for op, (outcome, region, to_region), got in zip(round_.ops, decided, answers,
                                                         strict=True):  # fmt: skip
            if op.hold is not None or op.legs is not None:
                if got != [outcome.status]:
                    raise RoundFailure(
                        f"{op.kind} {op.tid} {op.hold or op.legs} {op.payload}: answered {got}, "
                        f"the model says {outcome.status}"
                    )
                if op.kind != "transaction-again":
                    self.done.append(op)
                continue
            if op.change is not None:
                if got != [outcome.status]:
                    raise RoundFailure(
                        f"{op.kind} {op.tid} {op.change} via {op.via}: answered {got}, "
                        f"the model says {outcome.status}"
                    )
                self.model.record_change(op.tid, op.change, outcome.status)
                if op.kind != "change-again":
                    self.done.append(op)
                continue
            for answer in got:
                if answer != outcome.status:
                    raise RoundFailure(
                        f"{op.kind} {op.tid} {op.payload}: answered {answer}, "
                        f"the model says {outcome.status} ({outcome.reason_type})"
                    )
            if outcome.status != "DuplicateTransferMismatch":
                self.observed[op.tid] += got
            # The latest run of the id: any raw start or reset makes one; the
            # SDK makes one only when the latest run was started with another
            # payload (it then re-runs the id's first request, which is this
            # resubmission's payload), so the latest is this payload either way.
            if op.kind != "resubmit" or outcome.status != "DuplicateTransferMismatch":
                self.latest[op.tid] = op.payload
            self.model.record(op.tid, op.payload, outcome, region, to_region)
            if op.kind not in AGAIN:
                self.done.append(op)
        self.rounds += 1
        await check_round(self, round_)
        if round_.maintenance:
            await check_maintenance(self)


def _status(result: TransferResult) -> str:
    return str(result.status)


async def _answer(call: Callable[[], Awaitable[TransferResult]]) -> str:
    try:
        return _status(await call())
    except WorkflowFailureError as exc:
        cause = exc.cause
        return cause.type if isinstance(cause, ApplicationError) and cause.type else "failed"


async def simulate(
    ledger: Ledger, seed: int, ops: int, sabotage: str | None = None,
    rounds_given: list[Round] | None = None, plant: bool = True,
) -> tuple[RunReport, list[Round]]:  # fmt: skip
    report = RunReport(seed)
    began = time.monotonic()
    sim = Simulation(ledger, seed, f"s{seed}-{uuid.uuid4().hex[:6]}", sabotage)
    sim.rounds_given = rounds_given
    await sim.open_accounts()
    played: list[Round] = []
    faults: dict[str, int] = defaultdict(int)
    try:
        while report.operations < ops if rounds_given is None else len(played) < len(rounds_given):
            if rounds_given is None:
                round_ = sim.plan_round(sim.rng.randint(4, 12))
            else:
                round_ = _renamed(rounds_given[len(played)], sim)
            played.append(round_)
            report.rounds += 1
            try:
                await sim.play(round_)
            finally:  # (a failing round's operations were played too)
                report.operations += len(round_.ops)
                for op in round_.ops:
                    report.kinds[op.kind] = report.kinds.get(op.kind, 0) + 1
                report.maintenance += round_.maintenance
                if round_.fault:
                    faults[round_.fault] += 1
        report.abroad = dict(sim.model.abroad)
        report.planted_found = await final_checks(sim, plant=plant)
        report.stream_events = sim.stream_events
    except RoundFailure as exc:
        report.failure = f"round {len(played)}: {exc}"
    except Exception as exc:  # a path that raised what it never should: a finding too
        detail = (str(exc).strip().splitlines() or [""])[0]
        report.failure = f"round {len(played)}: raised {type(exc).__name__}: {detail}"
        traceback.print_exc()
    report.faults = dict(faults)
    report.seconds = time.monotonic() - began
    return report, played


def _renamed(round_: Round, sim: Simulation) -> Round:
    """A recorded round for a replay on fresh accounts (this run's prefix)."""
    ops = [
        Op(op.kind, _swap_prefix(op.tid, sim.prefix),
           replace(op.payload, source=_swap_prefix(op.payload.source, sim.prefix),
                   target=_swap_prefix(op.payload.target, sim.prefix)) if op.change is None
           else op.payload,
           replace(op.change, account_id=_swap_prefix(op.change.account_id, sim.prefix))
           if op.change is not None else None, op.via, op.hold,
           tuple((_swap_prefix(a, sim.prefix), *rest) for a, *rest in op.legs)
           if op.legs is not None else None)
        for op in round_.ops
    ]  # fmt: skip
    return replace(round_, ops=ops)


def _swap_prefix(value: str, prefix: str) -> str:
    """`name-<region>-s<seed>-<hex>` (or `<kind>-<hex>-s<seed>-<hex>`) with
    this run's prefix instead."""
    parts = value.split("-")
    return "-".join([*parts[:-2], *prefix.split("-")])


def signature(failure: str) -> str:
    """What kind of failure it is, whatever the ids and amounts."""
    words = re.sub(r"[\w.:-]*-s\d+-[0-9a-f]{6}|\d+", "#", failure.partition(": ")[2]).split()
    return " ".join(words[:6])


async def shrink(
    ledger: Ledger, seed: int, rounds: list[Round], sabotage: str | None, failure: str,
    budget_s: float = 600.0,
) -> list[Round]:  # fmt: skip
    """The smallest sequence of rounds (and operations in them) that still
    fails, by removing what is not needed, replayed on fresh accounts."""
    deadline = time.monotonic() + budget_s
    wanted = signature(failure)

    async def fails(candidate: list[Round]) -> bool:
        report, _ = await simulate(ledger, seed, 0, sabotage, candidate, plant=False)
        return report.failure is not None and signature(report.failure) == wanted

    current = [replace(r, fault=None, maintenance=False) for r in rounds]
    if not await fails(current):
        current = list(rounds)  # the faults are needed
    chunk = max(1, len(current) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        start, shrunk = 0, False
        while start < len(current) and time.monotonic() < deadline:
            candidate = current[:start] + current[start + chunk :]
            if candidate and await fails(candidate):
                current, shrunk = candidate, True
            else:
                start += chunk
        if not shrunk:
            chunk //= 2
    for i in range(len(current)):  # then the operations within each round
        j = 0
        while j < len(current[i].ops) and time.monotonic() < deadline:
            ops = current[i].ops[:j] + current[i].ops[j + 1 :]
            candidate = [*current[:i], replace(current[i], ops=ops), *current[i + 1 :]]
            if ops and await fails(candidate):
                current = candidate
            else:
                j += 1
    return current


def describe(rounds: list[Round]) -> list[dict[str, Any]]:
    return [
        {"fault": r.fault, "fault_region": r.fault_region, "maintenance": r.maintenance,
         "ops": [{"kind": o.kind, "tid": o.tid}
                 | (asdict(o.payload) if o.change is None else asdict(o.change) | {"via": o.via})
                 | (asdict(o.hold) if o.hold is not None else {})
                 | ({"legs": o.legs} if o.legs is not None else {})
                 for o in r.ops]}
        for r in rounds
    ]  # fmt: skip


async def run_seeds(
    seeds: list[int], ops: int, sabotage: str | None, keep: bool
) -> list[RunReport]:
    reports = []
    for seed in seeds:
        # A ledger of its own per seed: the planted faults at the end of a run
        # leave it broken on purpose.
        async with own_ledger(keep) as ledger:
            report, played = await simulate(ledger, seed, ops, sabotage)
            if report.failure is not None:
                print(f"seed {seed} FAILED: {report.failure}", file=sys.stderr, flush=True)
                print(f"seed {seed} sequence: {json.dumps(describe(played))}", file=sys.stderr)
                report.shrunk = describe(
                    await shrink(ledger, seed, played, sabotage, report.failure)
                )
        reports.append(report)
        print(json.dumps(asdict(report), default=str), flush=True)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.tools.simulate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--seeds", default="1", help="comma-separated seeds")
    parser.add_argument("--ops", type=int, default=200, help="operations per seed")
    parser.add_argument(
        "--sabotage",
        choices=["limit"],
        help="make the model wrong on purpose: the run must fail and shrink",
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    reports = asyncio.run(run_seeds(seeds, args.ops, args.sabotage, args.keep))
    total = sum(r.operations for r in reports)
    print(f"{total} operations, seeds {seeds}, {sum(r.seconds for r in reports):.0f} s, "
          f"{sum(not r.ok for r in reports)} failed", file=sys.stderr)  # fmt: skip
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
