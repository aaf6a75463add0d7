"""`ledgerflow account`, `transfer`, `balance`, `statement`, `audit`: the
ledger through the SDK client (Temporal for writes, the read side for reads)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ledgerflow.cli.output import Commands, Handler, Unreachable, emit, instant
from ledgerflow.cli.read_side import print_audit
from ledgerflow.config import Settings
from ledgerflow.domain.money import format_amount

if TYPE_CHECKING:
    from ledgerflow.client import LedgerClient

LedgerCommand = Callable[["LedgerClient", argparse.Namespace], Awaitable[int]]


def with_ledger(command: LedgerCommand) -> Handler:
    """A handler that connects the SDK client, runs `command`, and closes it.
    A command fails fast on an unreachable database (`read_retry_s=0`): the
    operator runs it again."""

    async def run(args: argparse.Namespace, settings: Settings) -> int:
        from ledgerflow.client import LedgerClient

        try:
            ledger = await LedgerClient.connect(settings, read_retry_s=0)
        except RuntimeError as exc:  # the Temporal client's "failed client connect"
            raise Unreachable(f"cannot reach Temporal at {settings.temporal_address}") from exc
        async with ledger:
            return await command(ledger, args)

    def handle(args: argparse.Namespace, settings: Settings) -> int:
        return asyncio.run(run(args, settings))

    return handle


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    account = sub.add_parser("account", parents=[common], help="accounts")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    opener = account_sub.add_parser("open", parents=[common], help="open an account")
    opener.add_argument("account_id")
    opener.add_argument("--currency", required=True, help="ISO 4217 code, e.g. USD")
    opener.add_argument("--region", help="home region (default: LEDGERFLOW_DEFAULT_REGION)")
    limits = opener.add_mutually_exclusive_group()
    limits.add_argument(
        "--overdraft-limit", type=int, default=0, help="in minor units (default 0: none)"
    )
    limits.add_argument(
        "--unlimited-overdraft", action="store_true", help="for system/funding accounts"
    )
    opener.add_argument("--initiated-by", default="cli")
    opener.set_defaults(handler=with_ledger(open_account))
    shower = account_sub.add_parser("show", parents=[common], help="an account as it stands")
    shower.add_argument("account_id")
    shower.set_defaults(handler=with_ledger(show_account))
    for action, words in (
        ("freeze", "refuse debits (credits still land) until unfrozen"),
        ("unfreeze", "take debits again"),
        ("close", "close an empty account, for good"),
    ):
        changer = account_sub.add_parser(action, parents=[common], help=words)
        changer.add_argument("account_id")
        changer.add_argument("--reason", required=True, help="why, for the audit trail")
        changer.add_argument("--id", help="change id (idempotency key); generated if omitted")
        changer.add_argument("--initiated-by", default="cli")
        changer.add_argument("--region", help="override the account's home region")
        changer.set_defaults(handler=with_ledger(change_account), action=action)

    transfer = sub.add_parser("transfer", parents=[common], help="move money")
    transfer.add_argument("--id", help="transfer id (idempotency key); generated if omitted")
    transfer.add_argument("--from", dest="from_account", required=True)
    transfer.add_argument("--to", dest="to_account", required=True)
    transfer.add_argument("--amount", required=True, help="decimal in major units, e.g. 12.50")
    transfer.add_argument("--currency", required=True)
    transfer.add_argument("--initiated-by", default="cli")
    transfer.add_argument("--description")
    transfer.add_argument("--region", help="override the debited account's home region")
    transfer.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the confirmation"
    )
    transfer.set_defaults(handler=with_ledger(move_money))

    balance = sub.add_parser("balance", parents=[common], help="an account's balance")
    balance.add_argument("account_id")
    balance.add_argument(
        "--as-of",
        type=instant,
        help="ISO 8601 instant with a zone, e.g. 2026-11-23T21:00:00Z: the balance then",
    )
    balance.set_defaults(handler=with_ledger(show_balance))

    statement = sub.add_parser("statement", parents=[common], help="an account's postings")
    statement.add_argument("account_id")
    statement.add_argument("--after-version", type=int, default=0)
    statement.add_argument("--limit", type=int, default=100)
    statement.set_defaults(handler=with_ledger(show_statement))

    audit = sub.add_parser("audit", parents=[common], help="an account's audit trail")
    audit.add_argument("account_id")
    audit.add_argument("--from", dest="start", type=instant, required=True)
    audit.add_argument("--to", dest="end", type=instant, required=True)
    audit.add_argument("--format", choices=["table", "json", "csv"], default="table")
    audit.set_defaults(handler=with_ledger(show_audit))


async def open_account(ledger: LedgerClient, args: argparse.Namespace) -> int:
    limit = None if args.unlimited_overdraft else args.overdraft_limit
    account = await ledger.open_account(
        args.account_id,
        args.currency,
        region=args.region,
        overdraft_limit=limit,
        initiated_by=args.initiated_by,
    )
    emit(
        args,
        account,
        [dataclasses.asdict(account)],
        ["account_id", "currency", "region", "overdraft_limit", "status", "opened_at"],
    )
    return 0


_ACCOUNT_COLUMNS = ["account_id", "currency", "region", "status", "balance", "version"]


async def show_account(ledger: LedgerClient, args: argparse.Namespace) -> int:
    account = await ledger.account(args.account_id)
    row = dataclasses.asdict(account)
    row["balance"] = format_amount(account.balance, account.currency)
    emit(args, account, [row], _ACCOUNT_COLUMNS)
    return 0


async def change_account(ledger: LedgerClient, args: argparse.Namespace) -> int:
    if not args.id:
        args.id = f"c-{uuid.uuid4().hex[:16]}"
        print(f"change id {args.id} (retry with --id {args.id})", file=sys.stderr)
    result = await ledger.change_account(
        args.account_id,
        args.action,
        reason=args.reason,
        change_id=args.id,
        initiated_by=args.initiated_by,
        region=args.region,
    )
    emit(
        args,
        result,
        [dataclasses.asdict(result)],
        ["change_id", "account_id", "action", "status", "account_status", "recorded_at"],
    )
    return 0


async def move_money(ledger: LedgerClient, args: argparse.Namespace) -> int:
    if not args.id:
        # Said before sending: after a timeout or a dropped connection,
        # retrying with this id is what keeps the retry from posting twice.
        args.id = f"t-{uuid.uuid4().hex[:16]}"
        print(f"transfer id {args.id} (retry with --id {args.id})", file=sys.stderr)
    result = await ledger.transfer(
        args.id,
        args.from_account,
        args.to_account,
        args.amount,
        args.currency,
        initiated_by=args.initiated_by,
        description=args.description,
        region=args.region,
        confirm_within=args.timeout,
    )
    row = dataclasses.asdict(result) | {
        "from_balance_after": _money(result.from_balance_after, args.currency),
        "to_balance_after": _money(result.to_balance_after, args.currency),
    }
    columns = ["transfer_id", "status", "from_balance_after", "to_balance_after", "confirmed_at"]
    emit(args, result, [row], columns)
    return 0


async def show_balance(ledger: LedgerClient, args: argparse.Namespace) -> int:
    columns = ["account_id", "balance", "pending_out", "pending_in", "available", "version"]
    if args.as_of is not None:
        past = await ledger.balance_as_of(args.account_id, args.as_of)
        value = dataclasses.asdict(past) | {"available": past.available}
        row = value | {
            name: _money(value[name], past.currency)
            for name in ("balance", "pending_out", "pending_in", "available")
        }
        emit(args, value, [row], [*columns, "as_of"])
        return 0
    balance = await ledger.balance(args.account_id)
    value = dataclasses.asdict(balance) | {"available": balance.available}
    row = value | {
        name: format_amount(value[name], balance.currency)
        for name in ("balance", "pending_out", "pending_in", "available")
    }
    emit(args, value, [row], [*columns, "updated_at"])
    return 0


async def show_statement(ledger: LedgerClient, args: argparse.Namespace) -> int:
    lines = await ledger.statement(
        args.account_id, after_version=args.after_version, limit=args.limit
    )
    rows = [
        dataclasses.asdict(line)
        | {
            "amount": format_amount(line.amount, line.currency),
            "balance_after": format_amount(line.balance_after, line.currency),
        }
        for line in lines
    ]
    columns = ["version", "type", "amount", "balance_after", "counterparty", "transfer_id",
               "recorded_at"]  # fmt: skip
    emit(args, lines, rows, columns)
    return 0


async def show_audit(ledger: LedgerClient, args: argparse.Namespace) -> int:
    print_audit(args, await ledger.audit(args.account_id, args.start, args.end))
    return 0


def _money(value: int | None, currency: str) -> str | None:
    return None if value is None else format_amount(value, currency)
