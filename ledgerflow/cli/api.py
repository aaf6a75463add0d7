"""`ledgerflow api` (serve the HTTP API) and `ledgerflow token create|list|revoke`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass

from ledgerflow.cli.output import Commands, emit, run_async
from ledgerflow.config import Settings
from ledgerflow.wire import plain


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    api = sub.add_parser("api", parents=[common], help="serve the HTTP API on 127.0.0.1")
    api.add_argument("--port", type=int, help="default LEDGERFLOW_API_PORT (8480)")
    api.set_defaults(handler=cmd_api)

    token = sub.add_parser(
        "token",
        parents=[common],
        help="API tokens: create (prints the token once), list, revoke",
        description="Tokens are stored hashed in the default region's database; creating "
        "and revoking them takes the owner role (as migrating does).",
    )
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", parents=[common])
    create.add_argument("--principal", required=True, help="who the token acts as (initiated_by)")
    create.add_argument(
        "--scope", required=True, help="read, write or admin (they nest), or a comma list"
    )
    create.add_argument("--accounts", help="limit the token to accounts starting with this")
    create.add_argument("--rate", type=int, help="requests a second (LEDGERFLOW_API_RATE_PER_S)")
    create.add_argument("--by", default=None, help="who creates it (default: the OS user)")
    create.set_defaults(handler=run_async(cmd_create))
    actions.add_parser("list", parents=[common]).set_defaults(handler=run_async(cmd_list))
    revoke = actions.add_parser("revoke", parents=[common])
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=run_async(cmd_revoke))


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.api.serve import serve

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, args.port))
    return 0


def _owner_tokens(settings: Settings):  # type: ignore[no-untyped-def]
    from ledgerflow.api.tokens import PostgresTokens
    from ledgerflow.store.postgres import create_engine

    engine = create_engine(settings.migration_url(settings.default_region), settings, pool_size=1)
    return engine, PostgresTokens(engine)


async def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.api.tokens import issue

    issued = issue(
        args.principal,
        tuple(s.strip() for s in args.scope.split(",") if s.strip()),
        created_by=args.by or getpass.getuser(),
        rate_per_s=args.rate if args.rate is not None else settings.api_rate_per_s,
        account_prefix=args.accounts,
    )
    engine, tokens = _owner_tokens(settings)
    try:
        record = await tokens.add(issued.record)
    finally:
        await engine.dispose()
    if args.json:
        emit(args, {"token": issued.token, "record": _shown(record)}, [], [])
    else:
        print(issued.token)
        print(f"(token {record.token_id} for {record.principal}, scopes {','.join(record.scopes)};"
              " it is shown only now)")  # fmt: skip
    return 0


def _shown(record: object) -> dict[str, object]:
    shown: dict[str, object] = plain(record)
    shown.pop("secret_sha256", None)
    return shown


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    engine, tokens = _owner_tokens(settings)
    try:
        records = [_shown(r) for r in await tokens.all()]
    finally:
        await engine.dispose()
    for r in records:
        r["scopes"] = ",".join(r["scopes"])  # type: ignore[arg-type]
    emit(args, records, records,
         ["token_id", "principal", "scopes", "account_prefix", "rate_per_s", "created_at",
          "revoked_at"])  # fmt: skip
    return 0


async def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    engine, tokens = _owner_tokens(settings)
    try:
        record = _shown(await tokens.revoke(args.token_id))
    finally:
        await engine.dispose()
    emit(args, record, [record], ["token_id", "principal", "revoked_at"])
    return 0
