"""API tokens, their scopes and prefixes, the authenticator and the rate
limiter (in memory: the stores' contract is tests/contract/test_token_store.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ledgerflow.api.app import RateLimiter
from ledgerflow.api.problems import STATUS, every_error_type, problem
from ledgerflow.api.tokens import (
    ApiToken,
    Authenticator,
    Forbidden,
    MemoryTokens,
    RateLimited,
    Unauthorized,
    issue,
)
from ledgerflow.domain.errors import (
    ERROR_TYPES,
    InsufficientFunds,
    InvalidRequest,
    StoreUnavailable,
)


def test_scopes_nest_and_a_prefix_fences_accounts() -> None:
    read = issue("a", ("read",), created_by="ops", rate_per_s=1).record
    write = issue("b", ("write",), created_by="ops", rate_per_s=1, account_prefix="team-").record
    admin = issue("c", ("admin",), created_by="ops", rate_per_s=1).record
    assert [read.may(s) for s in ("read", "write", "admin")] == [True, False, False]
    assert [write.may(s) for s in ("read", "write", "admin")] == [True, True, False]
    assert [admin.may(s) for s in ("read", "write", "admin")] == [True, True, True]
    write.require("write", "team-1", "team-2")
    with pytest.raises(Forbidden):
        write.require("write", "team-1", "other")
    with pytest.raises(Forbidden):
        read.require("write")


@pytest.mark.parametrize(
    ("principal", "scopes", "rate", "prefix"),
    [("", ("read",), 1, None), ("a b", ("read",), 1, None), ("a", (), 1, None),
     ("a", ("root",), 1, None), ("a", ("read",), 0, None), ("a", ("read",), True, None),
     ("a", ("read",), 1, "bad prefix")],
)  # fmt: skip
def test_a_bad_token_request_is_refused(
    principal: str, scopes: tuple[str, ...], rate: int, prefix: str | None
) -> None:
    with pytest.raises(InvalidRequest):
        issue(principal, scopes, created_by="ops", rate_per_s=rate, account_prefix=prefix)


async def test_the_authenticator_refuses_what_it_must_and_caches_what_it_checked() -> None:
    store = MemoryTokens()
    issued = issue("svc", ("write",), created_by="ops", rate_per_s=1)
    await store.add(issued.record)
    auth = Authenticator(store, cache_s=60)
    assert (await auth.authenticate(f"Bearer {issued.token}")).principal == "svc"
    assert (await auth.authenticate(f"bearer  {issued.token}")).principal == "svc"
    token_id = issued.record.token_id
    for header in (None, "", "Bearer", f"Basic {issued.token}", "Bearer lft_x_y",
                   f"Bearer lft_{token_id}_{'A' * 43}", f"Bearer lft_000000000000_{'A' * 43}",
                   f"Bearer {issued.token}x"):  # fmt: skip
        with pytest.raises(Unauthorized):
            await auth.authenticate(header)
    # Revoked: the cache answers for its life, then the store's word stands.
    store.records[token_id] = replace(store.records[token_id], revoked_at=datetime.now(UTC))
    assert (await auth.authenticate(f"Bearer {issued.token}")).principal == "svc"
    fresh = Authenticator(store, cache_s=0)
    with pytest.raises(Unauthorized, match="not valid"):
        await fresh.authenticate(f"Bearer {issued.token}")


def test_the_rate_limiter_allows_a_burst_of_twice_the_rate_then_the_rate() -> None:
    token = issue("svc", ("read",), created_by="ops", rate_per_s=2).record
    limiter = RateLimiter()
    assert [limiter.admit(token, now=100.0) for _ in range(4)] == [0.0] * 4
    wait = limiter.admit(token, now=100.0)
    assert wait == pytest.approx(0.5)
    assert limiter.admit(token, now=100.5) == 0.0  # one more came back
    assert limiter.admit(token, now=100.5) > 0


def test_every_error_type_has_its_documented_status() -> None:
    assert set(ERROR_TYPES) <= set(STATUS)
    assert set(every_error_type()) <= set(STATUS)
    status, body = problem(InsufficientFunds("no", account_id="alice"))
    assert (status, body["error"], body["account_id"]) == (422, "InsufficientFunds", "alice")
    assert body["type"] == "urn:ledgerflow:error:InsufficientFunds"
    # A database that cannot be reached: its host is the operator's (logged),
    # not the caller's to read.
    status, body = problem(StoreUnavailable("cannot reach PostgreSQL: db-7.internal:5432 refused"))
    assert status == 503 and "db-7" not in json.dumps(body)


def test_the_error_table_in_docs_is_the_declaration() -> None:
    from pathlib import Path

    from ledgerflow.api.problems import markdown_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "API.md").read_text()
    begin, end = "<!-- error status table: generated -->\n", "<!-- end of table -->"
    assert doc.split(begin, 1)[1].split(end, 1)[0] == markdown_table(), (
        "docs/API.md's error table differs from ledgerflow/api/problems.py"
    )


async def test_unknown_token_ids_cost_the_store_a_bounded_number_of_lookups() -> None:
    """Random ids must not turn every request into a query on the reader pool
    the API's reads share: a repeated unknown id is answered from memory, and
    new ones beyond a budget are told to wait (429), while a known token,
    once checked, still passes."""

    class Counting(MemoryTokens):
        lookups = 0

        async def get(self, token_id: str) -> ApiToken | None:
            Counting.lookups += 1
            return await super().get(token_id)

    store = Counting()
    known = issue("svc", ("read",), created_by="ops", rate_per_s=1)
    await store.add(known.record)
    auth = Authenticator(store, cache_s=60, misses_per_s=5)
    await auth.authenticate(f"Bearer {known.token}")
    stranger = f"Bearer lft_{'0' * 12}_{'A' * 43}"
    for _ in range(50):
        with pytest.raises(Unauthorized):
            await auth.authenticate(stranger)
    assert Counting.lookups == 2  # the known token's, and the stranger's once
    refused = 0
    for n in range(100):
        try:
            await auth.authenticate(f"Bearer lft_{n:012d}_{'A' * 43}")
        except RateLimited:
            refused += 1
        except Unauthorized:
            pass
    assert Counting.lookups <= 2 + 11  # a burst of twice the budget, and what it refills
    assert refused >= 85
    assert (await auth.authenticate(f"Bearer {known.token}")).principal == "svc"
