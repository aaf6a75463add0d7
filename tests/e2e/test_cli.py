"""The `ledgerflow` CLI as a user runs it: a separate process, real servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from tests.support import cli, count_rows, eventually

Ids = Callable[[str], str]


async def cli_json(env: dict[str, str], *args: str) -> Any:
    code, out, err = await cli(env, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_open_transfer_balance_and_statement_from_the_cli(
    workers: Client, cli_env: dict[str, str], uid: Ids
) -> None:
    bank, alice = uid("bank"), uid("alice")
    opened = await cli_json(
        cli_env, "account", "open", bank, "--currency", "EUR", "--unlimited-overdraft"
    )
    assert opened["overdraft_limit"] is None and opened["region"] == "us"
    code, out, _ = await cli(cli_env, "account", "open", alice, "--currency", "EUR")
    assert code == 0 and alice in out and "ACCOUNT_ID" in out
    tid = uid("t")
    result = await cli_json(
        cli_env, "transfer", "--id", tid, "--from", bank, "--to", alice,
        "--amount", "12.50", "--currency", "EUR", "--description", "welcome",
    )  # fmt: skip
    assert result["status"] == "confirmed" and result["to_balance_after"] == 1250
    code, out, _ = await cli(
        cli_env, "transfer", "--id", tid, "--from", bank, "--to", alice,
        "--amount", "12.50", "--currency", "EUR", "--description", "welcome",
    )  # fmt: skip
    assert code == 0 and "confirmed" in out and "12.50 EUR" in out

    async def projected() -> bool:
        return (await cli_json(cli_env, "balance", alice))["balance"] == 1250

    await eventually(projected)
    code, out, _ = await cli(cli_env, "balance", alice)
    assert code == 0 and "12.50 EUR" in out
    lines = await cli_json(cli_env, "statement", alice)
    assert [(x["type"], x["amount"], x["counterparty"]) for x in lines] == [
        ("AccountOpened", 0, None),
        ("Credited", 1250, bank),
    ]
    assert await cli_json(cli_env, "statement", alice, "--after-version", "2") == []


async def test_cli_errors_are_one_clear_line_with_a_distinct_exit_code(
    workers: Client, cli_env: dict[str, str], engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = uid("a"), uid("b")
    for account in (a, b):
        assert (await cli(cli_env, "account", "open", account, "--currency", "USD"))[0] == 0
    before = await count_rows(engines["us"], "events")
    cases = [
        (["--amount", "1.001", "--currency", "USD"], 2, "InvalidAmount"),
        (["--amount", "-1", "--currency", "USD"], 2, "InvalidAmount"),
        (["--amount", "1e999", "--currency", "USD"], 2, "InvalidAmount"),
        (["--amount", "nan", "--currency", "USD"], 2, "InvalidAmount"),
        (["--amount", "1", "--currency", "XYZ"], 2, "UnknownCurrency"),
        (["--amount", "1", "--currency", "USD"], 3, "InsufficientFunds"),
    ]
    for extra, exit_code, error_type in cases:
        code, out, err = await cli(cli_env, "transfer", "--from", a, "--to", b, *extra)
        assert code == exit_code, (extra, err)
        generated, _, error = err.partition("\n")
        assert generated.startswith("transfer id t-"), err  # said before sending
        assert error.startswith(f"error: {error_type}: ") and error.count("\n") == 1, err
        assert out == ""
    code, _, err = await cli(cli_env, "transfer", "--from", a, "--to", a, "--amount", "1",
                             "--currency", "USD")  # fmt: skip
    assert code == 2 and "SameAccount" in err
    code, _, err = await cli(cli_env, "balance", uid("nobody"))
    assert code == 3 and "AccountNotFound" in err
    code, _, err = await cli(cli_env, "account", "open", "bad id!", "--currency", "USD")
    assert code == 2 and "InvalidRequest" in err
    unreachable = cli_env | {"LEDGERFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    code, _, err = await cli(unreachable, "balance", a)
    assert code == 4 and err.startswith("error: cannot reach Temporal")
    no_database = cli_env | {"LEDGERFLOW_PG_PORT": "1"}
    code, _, err = await cli(no_database, "balance", a)
    assert code == 4 and err.startswith("error: cannot reach PostgreSQL") and err.count("\n") == 1
    code, _, err = await cli(cli_env, "statement", a, "--limit", "-1")
    assert code == 2 and "InvalidRequest" in err
    # --json works before the command as well as after it.
    code, out, _ = await cli(cli_env, "--json", "balance", a)
    assert code == 0 and json.loads(out)["account_id"] == a
    assert await count_rows(engines["us"], "events") == before
