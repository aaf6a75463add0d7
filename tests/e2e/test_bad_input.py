"""Malformed requests, table-driven, through every door: the SDK client, the
CLI (a separate process) and a raw workflow start with a plain dict, as a
client in another language would send it. Each gets its typed error, and
the databases of every region show that nothing at all was written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from ledgerflow.client import LedgerClient
from ledgerflow.config import Settings
from ledgerflow.domain.errors import LedgerError
from ledgerflow.domain.model import TransferResult
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import cli, count_rows

MISSING = object()  # the key is left out of the request altogether
SAME = object()  # the debited account again
TABLES = ("events", "transfers", "accounts")


@dataclass(frozen=True)
class Case:
    name: str
    change: dict[str, Any]
    error: str
    #: Expressible on the command line (text arguments only).
    cli: bool = True
    #: Expressible through the SDK's typed call (no missing or extra keys).
    sdk: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    # Amounts: zero, negative, too precise, too big, not numbers at all.
    Case("zero", {"amount": "0"}, "InvalidAmount"),
    Case("negative", {"amount": "-1.00"}, "InvalidAmount"),
    Case("three decimals", {"amount": "1.001"}, "InvalidAmount"),
    Case("beyond int64 minor units", {"amount": "92233720368547758.08"}, "InvalidAmount"),
    Case("forty digits", {"amount": "9" * 40}, "InvalidAmount"),
    Case("exponent", {"amount": "1e999"}, "InvalidAmount"),
    Case("NaN", {"amount": "NaN"}, "InvalidAmount"),
    Case("nan", {"amount": "nan"}, "InvalidAmount"),
    Case("Infinity", {"amount": "Infinity"}, "InvalidAmount"),
    Case("-inf", {"amount": "-inf"}, "InvalidAmount"),
    Case("empty", {"amount": ""}, "InvalidRequest"),  # "missing field(s): amount"
    Case("words", {"amount": "ten dollars"}, "InvalidAmount"),
    # The amount grammar: ASCII digits, optionally "." and at most the
    # currency's minor digits, nothing before or after (issue 12, finding 8).
    Case("exponent 1e3", {"amount": "1e3"}, "InvalidAmount"),
    Case("exponent 12E2", {"amount": "12E2"}, "InvalidAmount"),
    Case("leading spaces", {"amount": "  1.00"}, "InvalidAmount"),
    Case("trailing newline", {"amount": "1.00\n"}, "InvalidAmount"),
    Case("no-break space", {"amount": "\xa01.00"}, "InvalidAmount"),
    Case("plus sign", {"amount": "+1"}, "InvalidAmount"),
    Case("underscore", {"amount": "1_000"}, "InvalidAmount"),
    Case("Arabic-Indic digits", {"amount": "١٢"}, "InvalidAmount"),
    Case("full-width digits", {"amount": "１２"}, "InvalidAmount"),
    Case("bare point", {"amount": "1."}, "InvalidAmount"),
    Case("leading point", {"amount": ".50"}, "InvalidAmount"),
    Case("hexadecimal", {"amount": "0x10"}, "InvalidAmount"),
    Case("float", {"amount": 1.5}, "InvalidAmount", cli=False),
    Case("float NaN", {"amount": float("nan")}, "InvalidAmount", cli=False),
    Case("bool", {"amount": True}, "InvalidAmount", cli=False),
    Case("list", {"amount": [100]}, "InvalidAmount", cli=False),
    Case("null amount", {"amount": None}, "InvalidRequest", cli=False),
    Case("int over int64", {"amount": 2**63}, "InvalidAmount", cli=False),
    # Currencies.
    Case("unknown currency", {"currency": "ZZZ"}, "UnknownCurrency"),
    Case("lowercase currency", {"currency": "usd"}, "UnknownCurrency"),
    Case("SQL in currency", {"currency": "USD'; DROP TABLE events; --"}, "UnknownCurrency"),
    Case("null currency", {"currency": None}, "InvalidRequest", cli=False),
    # Ids: SQL and shell metacharacters, unicode, control characters, length.
    Case("same account", {"to_account": SAME}, "SameAccount"),
    Case("space in id", {"transfer_id": "has space"}, "InvalidRequest"),
    Case("SQL in account", {"from_account": "x'; DROP TABLE events; --"}, "InvalidRequest"),
    Case("unicode account", {"to_account": "名前"}, "InvalidRequest"),
    Case("emoji id", {"transfer_id": "💸💸"}, "InvalidRequest"),
    Case("NUL in id", {"transfer_id": "a\x00b"}, "InvalidRequest", cli=False),
    Case("65-character id", {"transfer_id": "x" * 65}, "InvalidRequest"),
    Case("path in id", {"transfer_id": "../../etc/passwd"}, "InvalidRequest"),
    Case("clearing account", {"to_account": "clearing:us:eu:USD"}, "InvalidRequest"),
    Case("account is a number", {"from_account": 42}, "InvalidRequest", cli=False),
    Case("newline in principal", {"initiated_by": "eve\nadmin"}, "InvalidRequest"),
    Case("null principal", {"initiated_by": None}, "InvalidRequest", cli=False),
    # Free text and metadata.
    Case("NUL in description", {"description": "a\x00b"}, "InvalidRequest", cli=False),
    # Text that is not valid UTF-8 (a lone surrogate) must be refused at the
    # door, not fail hashing inside an activity and retry forever (finding 7).
    Case("lone surrogate in description", {"description": "\udcff"}, "InvalidRequest"),
    Case("lone surrogate in metadata", {"metadata": {"k": "\ud800"}}, "InvalidRequest", cli=False),
    Case("lone surrogate metadata key", {"metadata": {"\ud800": 1}}, "InvalidRequest", cli=False),
    Case("description of 501", {"description": "x" * 501}, "InvalidRequest"),
    Case("metadata of 10 KB", {"metadata": {"blob": "x" * 10_000}}, "InvalidRequest", cli=False),
    Case("metadata not an object", {"metadata": "text"}, "InvalidRequest", cli=False),
    Case("float in metadata", {"metadata": {"rate": 0.1}}, "InvalidRequest", cli=False),
    Case("NUL in metadata", {"metadata": {"k": "\x00"}}, "InvalidRequest", cli=False),
    # Shape.
    Case("no transfer id", {"transfer_id": MISSING}, "InvalidRequest", cli=False, sdk=False),
    Case("no currency", {"currency": MISSING}, "InvalidRequest", cli=False, sdk=False),
    Case("unknown field", {"overdraft": "please"}, "InvalidRequest", cli=False, sdk=False),
]


@pytest_asyncio.fixture(scope="module")
async def pair(workers: Client, migrated: Settings) -> AsyncIterator[tuple[str, str]]:
    """Two funded accounts in `us`, shared by every case (none may touch them)."""
    async with LedgerClient(workers, migrated) as ledger:
        run = uuid.uuid4().hex[:8]
        bank, a, b = f"bad-bank-{run}", f"bad-a-{run}", f"bad-b-{run}"
        await ledger.open_account(bank, "USD", overdraft_limit=None)
        await ledger.open_account(a, "USD")
        await ledger.open_account(b, "USD")
        await ledger.transfer(f"bad-fund-{run}", bank, a, "100.00", "USD", initiated_by="t")
        yield a, b


def request(case: Case, pair: tuple[str, str]) -> dict[str, Any]:
    a, b = pair
    payload: dict[str, Any] = {
        "transfer_id": f"bad-{uuid.uuid4().hex[:12]}",
        "from_account": a,
        "to_account": b,
        "amount": "1.00",
        "currency": "USD",
        "initiated_by": "fuzzer",
    } | case.change
    if payload["to_account"] is SAME:
        payload["to_account"] = a
    return {key: value for key, value in payload.items() if value is not MISSING}


async def written(engines: dict[str, AsyncEngine]) -> list[int]:
    return [await count_rows(engine, t) for engine in engines.values() for t in TABLES]


def test_the_table_is_at_least_thirty_requests_wide() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c.sdk], ids=lambda c: c.name)
async def test_the_sdk_refuses_it_typed_and_writes_nothing(
    case: Case, pair: tuple[str, str], ledger: LedgerClient, engines: dict[str, AsyncEngine]
) -> None:
    payload = request(case, pair)
    before = await written(engines)
    with pytest.raises(LedgerError) as caught:
        await ledger.transfer(**payload)
    assert caught.value.type == case.error, caught.value
    assert await written(engines) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_a_raw_start_fails_typed_and_writes_nothing(
    case: Case, pair: tuple[str, str], workers: Client, engines: dict[str, AsyncEngine]
) -> None:
    payload = request(case, pair)
    before = await written(engines)
    with pytest.raises(WorkflowFailureError) as caught:
        await workers.execute_workflow(
            "TransferWorkflow",
            payload,
            id=f"transfer-raw-{uuid.uuid4().hex[:8]}",
            task_queue="ledger-us",
            result_type=TransferResult,
        )
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == (case.error, True), cause
    assert await written(engines) == before


async def test_the_cli_refuses_each_in_one_line_and_writes_nothing(
    pair: tuple[str, str], cli_env: dict[str, str], engines: dict[str, AsyncEngine]
) -> None:
    for case in [c for c in CASES if c.cli]:
        payload = request(case, pair)
        # --option=value: a value such as "-inf" must not read as an option.
        options = {
            "id": payload["transfer_id"], "from": payload["from_account"],
            "to": payload["to_account"], "amount": payload["amount"],
            "currency": payload["currency"], "initiated-by": payload["initiated_by"],
            "description": payload.get("description"),
        }  # fmt: skip
        args = ["transfer"] + [f"--{k}={v}" for k, v in options.items() if v is not None]
        before = await written(engines)
        code, out, err = await cli(cli_env, *args)
        assert code == 2, (case.name, err)
        assert err.startswith(f"error: {case.error}: ") and err.count("\n") == 1, (case.name, err)
        assert out == ""
        assert await written(engines) == before, case.name


async def test_sql_and_unicode_inside_metadata_and_description_are_data_not_errors(
    pair: tuple[str, str], ledger: LedgerClient, engines: dict[str, AsyncEngine]
) -> None:
    """Free text is free: metacharacters there are stored verbatim, never run."""
    a, b = pair
    metadata = {"note": "x'); DROP TABLE events; --", "名前": "Zoë ✓", "$where": "1=1"}
    description = "Robert'); DROP TABLE transfers;-- ✓"
    result = await ledger.transfer(
        f"meta-{uuid.uuid4().hex[:8]}", a, b, "0.01", "USD", initiated_by="t",
        description=description, metadata=metadata,
    )  # fmt: skip
    assert result.status == "confirmed" and result.credit_event_id
    store = PostgresEventStore(engines["us"], "us")
    [credit] = await store.events_by_id([result.credit_event_id])
    assert (credit.description, credit.metadata) == (description, metadata)
