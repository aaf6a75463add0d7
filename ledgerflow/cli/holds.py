"""`ledgerflow hold place|capture|void|extend|show` and `ledgerflow
transaction`: holds and multi-leg transactions through the SDK client."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

from ledgerflow.cli.ledger import with_ledger
from ledgerflow.cli.output import Commands, emit
from ledgerflow.domain.errors import InvalidRequest
from ledgerflow.domain.money import format_amount
from ledgerflow.domain.transactions import LegRequest

if TYPE_CHECKING:
    from ledgerflow.client import LedgerClient
    from ledgerflow.domain.holds import HoldState


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    hold = sub.add_parser("hold", parents=[common], help="holds: reserve, then capture or void")
    holds = hold.add_subparsers(dest="hold_command", required=True)

    place = holds.add_parser("place", parents=[common], help="reserve an amount")
    place.add_argument("--id", help="hold id (idempotency key); generated if omitted")
    place.add_argument("--from", dest="from_account", required=True)
    place.add_argument("--to", dest="to_account", required=True)
    place.add_argument("--amount", required=True, help="decimal in major units, e.g. 12.50")
    place.add_argument("--currency", required=True)
    place.add_argument("--expires-in", type=int, required=True, help="seconds until it expires")
    place.add_argument(
        "--over-capture", type=int, default=0,
        help="minor units the captures may exceed the amount by (default 0)",
    )  # fmt: skip
    place.add_argument("--initiated-by", default="cli")
    place.add_argument("--description")
    place.add_argument("--region", help="override the held account's home region")
    place.set_defaults(handler=with_ledger(place_hold))

    capture = holds.add_parser("capture", parents=[common], help="capture part or all of a hold")
    capture.add_argument("hold_id")
    capture.add_argument("--amount", required=True)
    capture.add_argument("--id", help="capture id (idempotency key); generated if omitted")
    capture.add_argument("--initiated-by", default="cli")
    capture.set_defaults(handler=with_ledger(capture_hold))

    void = holds.add_parser("void", parents=[common], help="release what a hold still reserves")
    void.add_argument("hold_id")
    void.add_argument("--initiated-by", default="cli")
    void.set_defaults(handler=with_ledger(void_hold))

    extend = holds.add_parser("extend", parents=[common], help="move a hold's deadline")
    extend.add_argument("hold_id")
    extend.add_argument("--expires-in", type=int, required=True, help="seconds from now")
    extend.add_argument("--id", help="change id (idempotency key); generated if omitted")
    extend.add_argument("--initiated-by", default="cli")
    extend.set_defaults(handler=with_ledger(extend_hold))

    show = holds.add_parser("show", parents=[common], help="where a hold stands")
    show.add_argument("hold_id")
    show.set_defaults(handler=with_ledger(show_hold))

    tx = sub.add_parser(
        "transaction", parents=[common], help="post several legs at once (all or none)"
    )
    tx.add_argument("--id", help="transaction id (idempotency key); generated if omitted")
    tx.add_argument(
        "--leg", action="append", default=[], metavar="SIDE:ACCOUNT:AMOUNT:CURRENCY",
        help="e.g. debit:alice:12.50:USD (repeat; each currency must sum to zero)",
    )  # fmt: skip
    tx.add_argument(
        "--file", type=argparse.FileType("r"),
        help='legs as JSON: [{"side": "debit", "account_id": "alice", "amount": "12.50", '
        '"currency": "USD"}, ...]',
    )  # fmt: skip
    tx.add_argument("--initiated-by", default="cli")
    tx.add_argument("--description")
    tx.set_defaults(handler=with_ledger(post_transaction))


def _generated(args: argparse.Namespace, prefix: str, what: str) -> str:
    if not args.id:
        args.id = f"{prefix}-{uuid.uuid4().hex[:16]}"
        print(f"{what} id {args.id} (retry with --id {args.id})", file=sys.stderr)
    value: str = args.id
    return value


_STATE_COLUMNS = ["hold_id", "status", "amount", "captured", "remaining", "expires_at"]
#: A hold toward another region also shows where, and what came back.
_ABROAD_COLUMNS = [*_STATE_COLUMNS, "to_region", "reversed"]


def _state_row(state: HoldState) -> dict[str, Any]:
    return dataclasses.asdict(state) | {
        name: format_amount(getattr(state, name), state.currency)
        for name in ("amount", "captured", "remaining", "reversed")
    }


def _state_columns(state: HoldState) -> list[str]:
    return _ABROAD_COLUMNS if state.to_region else _STATE_COLUMNS


async def place_hold(ledger: LedgerClient, args: argparse.Namespace) -> int:
    hold_id = _generated(args, "h", "hold")
    placed = await ledger.hold(
        hold_id, args.from_account, args.to_account, args.amount, args.currency,
        expires_in=args.expires_in, over_capture=args.over_capture,
        initiated_by=args.initiated_by, description=args.description, region=args.region,
    )  # fmt: skip
    row = dataclasses.asdict(placed) | {"amount": format_amount(placed.amount, placed.currency)}
    emit(args, placed, [row], ["hold_id", "status", "amount", "from_account", "expires_at"])
    return 0


async def capture_hold(ledger: LedgerClient, args: argparse.Namespace) -> int:
    capture_id = _generated(args, "k", "capture")
    result = await ledger.capture(
        args.hold_id, args.amount, capture_id=capture_id, initiated_by=args.initiated_by
    )
    emit(args, result, [dataclasses.asdict(result)],
         ["hold_id", "capture_id", "status", "amount", "from_balance_after",
          "to_balance_after"])  # fmt: skip
    return 0


async def void_hold(ledger: LedgerClient, args: argparse.Namespace) -> int:
    result = await ledger.void(args.hold_id, initiated_by=args.initiated_by)
    emit(args, result, [dataclasses.asdict(result)], ["hold_id", "ending", "released"])
    return 0


async def extend_hold(ledger: LedgerClient, args: argparse.Namespace) -> int:
    change_id = _generated(args, "d", "change")
    state = await ledger.extend(
        args.hold_id, args.expires_in, change_id=change_id, initiated_by=args.initiated_by
    )
    emit(args, state, [_state_row(state)], _state_columns(state))
    return 0


async def show_hold(ledger: LedgerClient, args: argparse.Namespace) -> int:
    state = await ledger.hold_state(args.hold_id)
    emit(args, state, [_state_row(state)], _state_columns(state))
    return 0


def _legs(args: argparse.Namespace) -> list[LegRequest]:
    legs = [LegRequest.parse(text) for text in args.leg]
    if args.file is not None:
        try:
            loaded = json.load(args.file)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"the legs file is not JSON: {exc}", field="legs") from None
        if not isinstance(loaded, list) or not all(isinstance(x, dict) for x in loaded):
            raise InvalidRequest("the legs file must hold a list of legs", field="legs")
        try:
            legs += [LegRequest(x["account_id"], x["side"], x["amount"], x["currency"])
                     for x in loaded]  # fmt: skip
        except KeyError as missing:
            raise InvalidRequest(f"a leg in the file has no {missing}", field="legs") from None
    return legs


async def post_transaction(ledger: LedgerClient, args: argparse.Namespace) -> int:
    transaction_id = _generated(args, "x", "transaction")
    result = await ledger.transaction(
        transaction_id, _legs(args), initiated_by=args.initiated_by,
        description=args.description,
    )  # fmt: skip
    rows = [{"transaction_id": result.transaction_id, "status": result.status,
             "account_id": account, "balance_after": balance}
            for account, balance in sorted(result.balances_after.items())]  # fmt: skip
    emit(args, result, rows, ["transaction_id", "status", "account_id", "balance_after"])
    return 0
