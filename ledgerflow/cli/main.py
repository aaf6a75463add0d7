"""`ledgerflow` command line: the dev stack, workers, accounts, transfers, reads.

Every command prints a readable table, or JSON with `--json`. An error prints
one line on stderr and exits non-zero: 2 for a malformed request, 3 for a
rejected transfer, 4 when a server cannot be reached, 5 when a confirmation
did not come in time, 6 when `verify`, `archive verify` or `reconcile` finds
the ledger, its archive or the regions not sound, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ledgerflow.cli.archive import add_parsers as archive_parsers
from ledgerflow.cli.archive import cmd_archive, cmd_bench_archive, cmd_schedules
from ledgerflow.cli.bench import cmd_bench_e2e, cmd_bench_store
from ledgerflow.cli.bench import progress as bench_progress
from ledgerflow.cli.output import Unreachable, emit
from ledgerflow.cli.read_side import cmd_projections, cmd_verify, print_audit
from ledgerflow.cli.reconcile import add_parsers as reconcile_parsers
from ledgerflow.cli.reconcile import cmd_reconcile
from ledgerflow.config import Settings
from ledgerflow.domain.errors import LedgerError, StoreUnavailable
from ledgerflow.domain.money import format_amount

EXIT_UNREACHABLE = 4


# -- dev stack ------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from infra.devrun import run_foreground
    from infra.stack import DevStack

    if args.dev_command == "run":
        exit_code: int = run_foreground(settings)
        return exit_code
    stack = DevStack(settings)
    if args.dev_command == "up":
        statuses = stack.up()
        asyncio.run(stack.migrate())
    elif args.dev_command == "down":
        statuses = stack.down()
    else:
        statuses = stack.status()
    emit(
        args,
        statuses,
        [dataclasses.asdict(s) for s in statuses],
        ["name", "state", "endpoint", "pid", "detail"],
    )
    return 0


# -- worker ---------------------------------------------------------------------


def cmd_codec_server(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.codec import EncryptionCodec, new_key
    from ledgerflow.codec_server import CodecServer

    if args.key:
        print(new_key())
        return 0
    codec = EncryptionCodec.from_settings(settings)
    if codec is None:
        raise ValueError("no codec keys: set LEDGERFLOW_CODEC_KEYS (make one with --key)")
    ui = settings.temporal_ui_port
    server = CodecServer(
        ("127.0.0.1", args.port or settings.codec_server_port),
        codec,
        settings.codec_server_token or "",
        (f"http://127.0.0.1:{ui}", f"http://localhost:{ui}"),
    )
    print(f"codec server on {server.url} for the Web UI at port {ui}; Ctrl-C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.store.migrate import SchemaNotCurrent
    from workers.regional import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run_worker(settings, args.region))
    except SchemaNotCurrent as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """The deploy step: migrate every region as the schema owner."""
    from ledgerflow.store.guard import HARDEN_SQL
    from ledgerflow.store.migrate import RoleRefused, head_revision

    if args.guard_sql:
        print(HARDEN_SQL)
        return 0
    try:
        if settings.database_given:
            from ledgerflow.store.migrate import upgrade_regions

            asyncio.run(upgrade_regions(settings))
            note = "install the DDL guard as a superuser: `ledgerflow migrate --guard-sql`"
        else:
            from infra.stack import DevStack

            asyncio.run(DevStack(settings).migrate())
            note = "DDL guard installed"
    except RoleRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [{"region": r, "revision": head_revision(), "note": note} for r in settings.regions]
    emit(args, rows, rows, ["region", "revision", "note"])
    return 0


# -- ledger operations (need Temporal and the databases) ---------------------------


async def ledger_command(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.client import LedgerClient

    try:
        ledger = await LedgerClient.connect(settings, read_retry_s=0)
    except RuntimeError as exc:  # the Temporal client's "failed client connect"
        raise Unreachable(f"cannot reach Temporal at {settings.temporal_address}") from exc
    async with ledger:
        if args.command == "account":
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
        elif args.command == "transfer":
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
            emit(
                args,
                result,
                [row],
                ["transfer_id", "status", "from_balance_after", "to_balance_after", "confirmed_at"],
            )
        elif args.command == "bench":
            region = args.region or settings.default_region
            reports = await run_bench(args, ledger, region)
            rows = [
                {
                    k: f"{v:.2f}" if isinstance(v, float) else v
                    for k, v in dataclasses.asdict(r).items()
                }
                for r in reports
            ]
            emit(args, reports, rows, list(rows[0]))
        elif args.command == "audit":
            trail = await ledger.audit(args.account_id, args.start, args.end)
            print_audit(args, trail)
        elif args.command == "balance" and args.as_of is not None:
            past = await ledger.balance_as_of(args.account_id, args.as_of)
            row = dataclasses.asdict(past) | {"balance": format_amount(past.balance, past.currency)}
            emit(args, past, [row], ["account_id", "balance", "version", "as_of"])
        elif args.command == "balance":
            balance = await ledger.balance(args.account_id)
            row = dataclasses.asdict(balance) | {
                "balance": format_amount(balance.balance, balance.currency)
            }
            emit(args, balance, [row], ["account_id", "balance", "version", "updated_at"])
        elif args.command == "statement":
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
            emit(
                args,
                lines,
                rows,
                ["version", "type", "amount", "balance_after", "counterparty", "transfer_id",
                 "recorded_at"],
            )  # fmt: skip
    return 0


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return value


async def run_bench(args: argparse.Namespace, ledger: Any, region: str) -> list[Any]:
    if args.mode == "latency":
        from ledgerflow.bench.latency import sequential_latency

        latency = await sequential_latency(
            ledger, args.count, region, to_region=args.to_region, progress=bench_progress
        )
        print(file=sys.stderr)
        return [latency]
    if args.mode == "reconcile":
        from ledgerflow.bench.reconcile import reconcile_bench

        return [await reconcile_bench(ledger.engine(region), region, args.events)]
    from ledgerflow.bench.history import query_bench
    from ledgerflow.store.postgres import PostgresEventStore, create_engine

    sizes = [int(size) for size in args.sizes.split(",")]
    # Seeding writes: the worker's role, not the client's read-only one.
    writer = create_engine(ledger.settings.database_url(region), ledger.settings, pool_size=2)
    store = PostgresEventStore(writer, region)
    owner = create_engine(ledger.settings.migration_url(region), ledger.settings, pool_size=1)
    try:
        reports = await query_bench(store, sizes, args.probes, bench_progress, owner)
    finally:
        await owner.dispose()
        await writer.dispose()
    print(file=sys.stderr)
    return reports


def _money(value: int | None, currency: str) -> str | None:
    return None if value is None else format_amount(value, currency)


# -- argument parsing -------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # `--json` is accepted before or after the command. The subcommands' copy
    # defaults to SUPPRESS so it cannot overwrite a `--json` given before them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="ledgerflow", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", parents=[common], help="the embedded local stack")
    dev.add_argument("dev_command", choices=["up", "down", "status", "run"])

    codec = sub.add_parser(
        "codec-server",
        parents=[common],
        help="serve payload decryption to the Web UI and the temporal CLI (needs the codec keys)",
    )
    codec.add_argument("--port", type=int, help="default LEDGERFLOW_CODEC_SERVER_PORT (8081)")
    codec.add_argument("--key", action="store_true", help="print a new key for the codec and exit")

    worker = sub.add_parser("worker", parents=[common], help="run one region's worker")
    worker.add_argument("--region", required=True)

    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="bring every region's schema to head, as the schema owner (the deploy step)",
    )
    migrate.add_argument(
        "--guard-sql",
        action="store_true",
        help="print the SQL a superuser runs once per region database to install the DDL guard",
    )

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

    audit = sub.add_parser("audit", parents=[common], help="an account's audit trail")
    audit.add_argument("account_id")
    audit.add_argument("--from", dest="start", type=_instant, required=True)
    audit.add_argument("--to", dest="end", type=_instant, required=True)
    audit.add_argument("--format", choices=["table", "json", "csv"], default="table")

    projections = sub.add_parser("projections", parents=[common], help="the read models")
    projections.add_argument(
        "projections_command",
        choices=["status", "rebuild"],
        help="status: position and lag; rebuild: from the events, swapped in without downtime",
    )
    projections.add_argument("--region", help="one region (default: all)")
    projections.add_argument(
        "--view", choices=["balance", "statement"], help="rebuild one view (default: both)"
    )

    verify = sub.add_parser(
        "verify", parents=[common], help="prove the ledger unaltered and balanced (exit 6 if not)"
    )
    verify.add_argument("--region", help="one region (default: all)")

    bench = sub.add_parser("bench", parents=[common], help="benchmarks (numbers, not tests)")
    bench.add_argument(
        "mode",
        choices=["latency", "query", "archive", "reconcile", "store", "e2e"],
        help="latency: sequential confirmations; query: point-in-time balance vs history size; "
        "archive: archive (and verify, prune) throughput in a scratch database; "
        "reconcile: one region's reconciliation checks from the start of its history; "
        "store: the append path alone against pgbench; "
        "e2e: open-loop load through the SDK against a baseline workflow",
    )
    bench.add_argument("--count", type=int, default=100, help="latency: transfers")
    bench.add_argument(
        "--to-region", help="latency: credit an account in this region (cross-region transfers)"
    )
    bench.add_argument("--sizes", default="10000,100000,1000000", help="query: history sizes")
    bench.add_argument("--probes", type=int, default=1000, help="query: lookups per size")
    bench.add_argument("--region")
    bench.add_argument(
        "--events", type=int, default=1_000_000, help="archive: history size; reconcile: events"
    )
    bench.add_argument("--accounts", type=int, default=1_000, help="archive, store: accounts")
    bench.add_argument("--clients", type=int, default=16, help="store: concurrent writers")
    bench.add_argument(
        "--seconds", type=float, default=20.0, help="store, e2e: how long each run lasts"
    )
    bench.add_argument(
        "--rates", default="5,10,20,40", help="e2e: offered transfers/s, in ramp order"
    )
    bench.add_argument(
        "--segment-events", type=int, default=10_000, help="archive: events per segment"
    )
    bench.add_argument("--prune", action="store_true", help="archive: also time the prune")

    balance = sub.add_parser("balance", parents=[common], help="an account's balance")
    balance.add_argument("account_id")
    balance.add_argument(
        "--as-of",
        type=_instant,
        help="ISO 8601 instant with a zone, e.g. 2026-11-23T21:00:00Z: the balance then",
    )

    archive_parsers(sub, common)
    reconcile_parsers(sub, common)

    statement = sub.add_parser("statement", parents=[common], help="an account's postings")
    statement.add_argument("account_id")
    statement.add_argument("--after-version", type=int, default=0)
    statement.add_argument("--limit", type=int, default=100)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "dev":
            return cmd_dev(args, settings)
        if args.command == "worker":
            return cmd_worker(args, settings)
        if args.command == "migrate":
            return cmd_migrate(args, settings)
        if args.command == "codec-server":
            return cmd_codec_server(args, settings)
        if args.command == "verify":
            return asyncio.run(cmd_verify(args, settings))
        if args.command == "projections":
            return asyncio.run(cmd_projections(args, settings))
        if args.command == "bench" and args.mode == "archive":
            return asyncio.run(cmd_bench_archive(args, settings))
        if args.command == "bench" and args.mode == "store":
            return asyncio.run(cmd_bench_store(args, settings))
        if args.command == "bench" and args.mode == "e2e":
            return asyncio.run(cmd_bench_e2e(args, settings))
        if args.command == "archive":
            return asyncio.run(cmd_archive(args, settings))
        if args.command == "schedules":
            return asyncio.run(cmd_schedules(args, settings))
        if args.command == "reconcile":
            return asyncio.run(cmd_reconcile(args, settings))
        return asyncio.run(ledger_command(args, settings))
    except StoreUnavailable as exc:  # (a command fails fast; run it again)
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except LedgerError as exc:
        print(f"error: {exc.type}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ValueError, *_dev_stack_errors()) as exc:  # type: ignore[misc]  # a bad setting, or the dev stack
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError) as exc:
        # Temporal's connection errors are handled above; this is the database.
        print(f"error: cannot reach PostgreSQL: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: still one line (LEDGERFLOW_DEBUG=1 for the trace)
        if os.environ.get("LEDGERFLOW_DEBUG") == "1":
            raise
        unreachable = _unreachable_database(exc)
        if unreachable:
            print(f"error: {unreachable}", file=sys.stderr)
            return EXIT_UNREACHABLE
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
        print(f"error: {type(exc).__name__}: {detail}", file=sys.stderr)
        return 1


def _dev_stack_errors() -> tuple[type[Exception], ...]:
    """The dev stack's error type, if a command loaded the dev stack (it can
    have raised one only then); the CLI does not load it to start."""
    process = sys.modules.get("infra.process")
    return (process.StackError,) if process is not None else ()


def _unreachable_database(exc: BaseException) -> str | None:
    """SQLAlchemy wraps a refused connection; name PostgreSQL instead."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionError | OSError) and not isinstance(cause, TimeoutError):
            return f"cannot reach PostgreSQL: {cause}"
        cause = cause.__cause__ or cause.__context__
    return None


def run() -> None:
    """Console entry point: run `main` and leave without interpreter teardown.

    The Temporal client's Rust runtime threads can outlive the event loop, and
    CPython's finalization then aborts the process with "PyGILState_Release:
    thread state must be current" (temporalio/sdk-python#300, still open):
    a command that succeeded would exit with SIGABRT. Everything this process
    owes is flushed first, so skipping the teardown loses nothing.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
