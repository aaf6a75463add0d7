"""The event stream's commands: `events tail`, `stream status`, `stream verify`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ledgerflow.cli.ledger import with_ledger
from ledgerflow.cli.output import Commands, emit, instant, run_async
from ledgerflow.cli.read_side import EXIT_NOT_SOUND
from ledgerflow.config import Settings
from ledgerflow.wire import plain

if TYPE_CHECKING:
    from ledgerflow.client import LedgerClient


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    events = sub.add_parser(
        "events",
        parents=[common],
        help="the global event stream: every region's events, as they happen",
        description="`events tail` prints the global stream's events (by default all of "
        "them, then stops; --follow keeps going), filtered by region, account or type.",
    )
    events.add_argument("events_command", choices=["tail"])
    start = events.add_mutually_exclusive_group()
    start.add_argument("--from", dest="from_seq", type=int, help="from this stream position")
    start.add_argument("--since", type=instant, help="from this time (stored at or after it)")
    events.add_argument("--region")
    events.add_argument("--account")
    events.add_argument("--type", dest="event_type", help="e.g. Debited, HoldPlaced")
    events.add_argument("--durable", help="a named consumer: resumes after what it acknowledged")
    events.add_argument("--follow", "-f", action="store_true", help="wait for new events")
    events.add_argument("--limit", type=int, help="stop after this many events")
    events.set_defaults(handler=run_async(cmd_events))
    stream = sub.add_parser(
        "stream",
        parents=[common],
        help="the event stream: how far each region's relay is, and verify it",
        description="`stream status`: each region's relay position and lag, and the streams; "
        "`stream verify`: the global stream against every region's store (exit 6 if not sound); "
        "`stream directory`: the global read model fed by the stream (where each account lives, "
        "each region's position per currency), `--rebuild` from the stream's start.",
    )
    stream.add_argument("stream_command", choices=["status", "verify", "directory"])
    stream.add_argument("--rebuild", action="store_true", help="directory: from the stream's start")
    stream.set_defaults(handler=run_async(cmd_stream))
    hook = sub.add_parser(
        "webhook",
        parents=[common],
        help="webhooks: the global stream's events POSTed, signed, to a URL",
        description="`webhook add --id ID --url URL --secret S [--region R] [--account A] "
        "[--type T]` subscribes (a WebhookWorkflow); `show ID` its progress and dead letters; "
        "`redeliver ID [--event E]` delivers dead letters again; `remove ID` ends it.",
    )
    hook.add_argument("webhook_command", choices=["add", "show", "redeliver", "remove"])
    hook.add_argument("subscription_id", nargs="?", help="(show, redeliver, remove)")
    hook.add_argument("--id", dest="new_id", help="add: the subscription id")
    hook.add_argument("--url")
    hook.add_argument("--secret", help="add: at least 16 characters (or LEDGERFLOW_WEBHOOK_SECRET)")
    hook.add_argument("--region")
    hook.add_argument("--account")
    hook.add_argument("--type", dest="event_type")
    hook.add_argument("--event", help="redeliver: only this event id")
    hook.set_defaults(handler=with_ledger(cmd_webhook))


async def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.stream.consumer import read_events
    from ledgerflow.stream.topology import connect

    nc = await connect(settings.nats_url(settings.stream_region), name="ledgerflow-cli")
    shown = 0
    as_json = getattr(args, "json", False)
    reader = read_events(
        nc.jetstream(), start=args.from_seq or args.since, region=args.region,
        account=args.account, event_type=args.event_type, durable=args.durable,
        follow=args.follow,
    )  # fmt: skip
    try:
        async for item in reader:
            e = item.event
            if as_json:
                record: dict[str, Any] = {"seq": item.seq, "stored_at": item.stored_at,
                                          "verified": item.verified,
                                          "event": plain(e)}  # fmt: skip
                print(json.dumps(plain(record), sort_keys=True), flush=True)
            else:
                print(f"{item.seq:>8}  {e.recorded_at.isoformat(timespec='milliseconds')}  "
                      f"{e.region:<4} {e.account_id:<28} {e.type:<16} {e.amount:>12} "
                      f"{e.currency}  {e.transfer_id or ''}", flush=True)  # fmt: skip
            await item.ack()
            shown += 1
            if args.limit is not None and shown >= args.limit:
                break
    finally:
        await reader.aclose()
        await nc.close()
    return 0


async def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.store.postgres import create_engine
    from ledgerflow.stream.status import stream_status
    from ledgerflow.stream.topology import connect
    from ledgerflow.stream.verify import verify_region_stream

    if args.stream_command == "directory":
        return await _directory(args, settings)
    nc = await connect(settings.nats_url(settings.stream_region), name="ledgerflow-cli")
    rows: list[dict[str, Any]] = []
    values: list[Any] = []
    sound = True
    try:
        js = nc.jetstream()
        for region in settings.regions:
            engine = create_engine(settings.reader_url(region), settings, pool_size=1)
            try:
                if args.stream_command == "status":
                    status = await stream_status(engine, region, js)
                    values.append(status)
                    rows.append(plain(status))
                else:
                    report = await verify_region_stream(engine, region, js)
                    values.append(report)
                    rows.append(plain(report) | {"sound": report.clean})
                    sound = sound and report.clean
            finally:
                await engine.dispose()
    finally:
        await nc.close()
    if args.stream_command == "status":
        emit(args, values, rows, ["region", "relayed", "lag_events", "lag_seconds",
                                  "region_messages", "global_messages"])  # fmt: skip
        return 0
    columns = ["region", "events", "messages", "missing", "duplicates", "out_of_order",
               "altered", "broken_links", "unsourced", "sound"]  # fmt: skip
    emit(args, values, rows, columns)
    if not sound:
        for report in values:
            for example in report.examples:
                print(f"{report.region}: {example}", file=sys.stderr)
        return EXIT_NOT_SOUND
    return 0


async def _directory(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.store.postgres import create_engine
    from ledgerflow.stream.directory import GlobalDirectory, positions
    from ledgerflow.stream.topology import connect

    region = settings.stream_region
    # A rebuild writes (the app role); showing it only reads.
    url = settings.database_url(region) if args.rebuild else settings.reader_url(region)
    engine = create_engine(url, settings, pool_size=1)
    nc = await connect(settings.nats_url(region), name="ledgerflow-cli")
    try:
        directory = GlobalDirectory(engine, nc.jetstream())
        if args.rebuild:
            print(f"rebuilt from the stream's start: {await directory.rebuild()} events",
                  file=sys.stderr)  # fmt: skip
        status = await directory.status()
        held = await positions(engine)
    finally:
        await nc.close()
        await engine.dispose()
    rows = [{"region": r, "currency": c, "balance": b, "events": n}
            for (r, c), (b, n) in sorted(held.items())]  # fmt: skip
    if not getattr(args, "json", False):
        print(f"applied through {status.applied_through} of {status.stream_last} "
              f"(lag {status.lag_events} events), {status.accounts} accounts")  # fmt: skip
    emit(args, {"status": status, "positions": rows}, rows,
         ["region", "currency", "balance", "events"])  # fmt: skip
    return 0


async def cmd_webhook(ledger: LedgerClient, args: argparse.Namespace) -> int:
    import os

    if args.webhook_command == "add":
        secret = args.secret or os.environ.get("LEDGERFLOW_WEBHOOK_SECRET")
        if not (args.new_id and args.url and secret):
            raise ValueError("webhook add needs --id, --url and --secret")
        status = await ledger.subscribe(args.new_id, args.url, secret, region=args.region,
                                        account=args.account, event_type=args.event_type,
                                        created_by="cli")  # fmt: skip
    elif not args.subscription_id:
        raise ValueError(f"webhook {args.webhook_command} needs the subscription id")
    elif args.webhook_command == "redeliver":
        arrived = await ledger.redeliver(args.subscription_id, args.event)
        print(f"{arrived} dead letter(s) delivered", file=sys.stderr)
        status = await ledger.webhook_status(args.subscription_id)
    elif args.webhook_command == "remove":
        status = await ledger.unsubscribe(args.subscription_id)
    else:
        status = await ledger.webhook_status(args.subscription_id)
    row = plain(status) | {"dead_letters": len(status.dead_letters)}
    emit(args, status, [row], ["subscription_id", "url", "cursor", "delivered", "dead_letters",
                               "cancelled"])  # fmt: skip
    return 0
