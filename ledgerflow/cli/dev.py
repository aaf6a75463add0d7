"""`ledgerflow dev`, `worker`, `migrate`, `codec-server`: running the ledger."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys

from ledgerflow.cli.output import Commands, emit
from ledgerflow.config import Settings


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    dev = sub.add_parser("dev", parents=[common], help="the embedded local stack")
    dev.add_argument("dev_command", choices=["up", "down", "status", "run"])
    dev.set_defaults(handler=cmd_dev)

    codec = sub.add_parser(
        "codec-server",
        parents=[common],
        help="serve payload decryption to the Web UI and the temporal CLI (needs the codec keys)",
    )
    codec.add_argument("--port", type=int, help="default LEDGERFLOW_CODEC_SERVER_PORT (8081)")
    codec.add_argument("--key", action="store_true", help="print a new key for the codec and exit")
    codec.set_defaults(handler=cmd_codec_server)

    worker = sub.add_parser("worker", parents=[common], help="run one region's worker")
    worker.add_argument("--region", required=True)
    worker.set_defaults(handler=cmd_worker)

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
    migrate.set_defaults(handler=cmd_migrate)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.infra.devrun import run_foreground
    from ledgerflow.infra.stack import DevStack

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
    from ledgerflow.workers.regional import run_worker

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
            from ledgerflow.infra.stack import DevStack

            asyncio.run(DevStack(settings).migrate())
            note = "DDL guard installed"
    except RoleRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [{"region": r, "revision": head_revision(), "note": note} for r in settings.regions]
    emit(args, rows, rows, ["region", "revision", "note"])
    return 0
