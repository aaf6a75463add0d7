"""The PostgreSQL event store against a real server: postings, idempotency,
concurrency, immutability and the hash chain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledgerflow.domain.errors import (
    AccountAlreadyExists,
    AccountNotFound,
    CurrencyMismatch,
    DuplicateTransferMismatch,
    InsufficientFunds,
    InvalidRequest,
    LedgerError,
)
from ledgerflow.domain.hashing import ChainBroken, verify_chain
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.postgres import PostgresEventStore
from tests.support import count_rows, postings

NOW = datetime.now(UTC)
Ids = Callable[[str], str]


async def open_accounts(
    store: PostgresEventStore, *ids: str, limit: int | None = 0, currency: str = "USD"
) -> None:
    for account_id in ids:
        await store.open_account(
            OpenAccountRequest(account_id, currency, "us", overdraft_limit=limit), NOW
        )


async def fund(store: PostgresEventStore, uid: Ids, account_id: str, amount: int) -> None:
    bank = uid("bank")
    await open_accounts(store, bank, limit=None)
    await store.append_transfer(
        Transfer(f"fund-{account_id}", bank, account_id, amount, "USD", "test"), "us", NOW
    )


async def test_a_transfer_posts_two_balanced_events_and_moves_balances(
    store: PostgresEventStore, uid: Ids
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 1000)
    result = await store.append_transfer(
        Transfer(uid("t"), a, b, 250, "USD", "alice", "rent", {"k": "v"}), "us", NOW
    )
    assert result.status == "confirmed"
    assert (result.from_balance_after, result.to_balance_after) == (750, 250)
    events = await store.events_by_id([result.debit_event_id or "", result.credit_event_id or ""])
    assert [(e.type, e.account_id, e.amount) for e in events] == [
        ("Debited", a, -250),
        ("Credited", b, 250),
    ]
    assert sum(e.amount for e in events) == 0
    assert {e.initiated_by for e in events} == {"alice"}
    assert {e.description for e in events} == {"rent"}
    source, target = await store.get_account(a), await store.get_account(b)
    assert source is not None and target is not None
    assert (source.balance, source.version, target.balance, target.version) == (750, 3, 250, 2)


async def test_a_retried_append_returns_the_original_result_and_posts_once(
    store: PostgresEventStore, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 500)
    transfer = Transfer(uid("t"), a, b, 100, "USD", "alice")
    first = await store.append_transfer(transfer, "us", NOW)
    again = await store.append_transfer(transfer, "us", NOW)
    assert again == first
    assert await postings(engines["us"], transfer.transfer_id) == 2
    source = await store.get_account(a)
    assert source is not None and source.balance == 400


async def test_the_same_id_with_another_payload_is_refused_and_writes_nothing(
    store: PostgresEventStore, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 500)
    tid = uid("t")
    await store.append_transfer(Transfer(tid, a, b, 100, "USD", "alice"), "us", NOW)
    with pytest.raises(DuplicateTransferMismatch):
        await store.append_transfer(Transfer(tid, a, b, 101, "USD", "alice"), "us", NOW)
    assert await postings(engines["us"], tid) == 2
    source = await store.get_account(a)
    assert source is not None and source.balance == 400


async def test_concurrent_duplicates_of_one_id_post_once(
    store: PostgresEventStore, engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 500)
    transfer = Transfer(uid("t"), a, b, 100, "USD", "alice")
    results = await asyncio.gather(*(store.append_transfer(transfer, "us", NOW) for _ in range(10)))
    assert len({r.debit_event_id for r in results}) == 1
    assert await postings(engines["us"], transfer.transfer_id) == 2
    source = await store.get_account(a)
    assert source is not None and source.balance == 400


async def test_concurrent_transfers_never_overdraw_a_no_overdraft_account(
    store: PostgresEventStore, uid: Ids
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 200)

    async def attempt(i: int) -> bool:
        try:
            await store.append_transfer(Transfer(uid(f"t{i}"), a, b, 10, "USD", "x"), "us", NOW)
        except InsufficientFunds:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(i) for i in range(60)))
    assert sum(outcomes) == 20
    source, target = await store.get_account(a), await store.get_account(b)
    assert source is not None and target is not None
    assert (source.balance, target.balance) == (0, 200)
    events = await store.account_events(a)
    assert min(e.balance_after for e in events) == 0
    verify_chain(events)


async def test_transfers_in_a_cycle_do_not_deadlock(store: PostgresEventStore, uid: Ids) -> None:
    ring = [uid(f"r{i}") for i in range(4)]
    await open_accounts(store, *ring, limit=None)
    transfers = [
        Transfer(uid(f"c{n}-{i}"), ring[i], ring[(i + 1) % 4], 1 + i, "USD", "x")
        for n in range(10)
        for i in range(4)
    ] + [
        Transfer(uid(f"r{n}-{i}"), ring[(i + 1) % 4], ring[i], 1, "USD", "x")
        for n in range(10)
        for i in range(4)
    ]
    async with asyncio.timeout(30):
        await asyncio.gather(*(store.append_transfer(t, "us", NOW) for t in transfers))
    balances = [(await store.get_account(r)) for r in ring]
    assert sum(acc.balance for acc in balances if acc) == 0


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda a, b, x: Transfer("T", a, x, 10, "USD", "u"), AccountNotFound),
        (lambda a, b, x: Transfer("T", x, b, 10, "USD", "u"), AccountNotFound),
        (lambda a, b, x: Transfer("T", a, b, 10, "EUR", "u"), CurrencyMismatch),
        (lambda a, b, x: Transfer("T", a, b, 10**6, "USD", "u"), InsufficientFunds),
    ],
)
async def test_refused_transfers_write_nothing_but_their_rejection(
    store: PostgresEventStore,
    engines: dict[str, AsyncEngine],
    uid: Ids,
    make: Callable[[str, str, str], Transfer],
    error: type[LedgerError],
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 100)
    transfer = replace(make(a, b, uid("missing")), transfer_id=uid("t"))
    events_before = await count_rows(engines["us"], "events")
    with pytest.raises(error) as caught:
        await store.append_transfer(transfer, "us", NOW)
    with pytest.raises(error):
        await store.check_transfer(transfer)
    assert await count_rows(engines["us"], "events") == events_before
    assert await store.get_transfer(transfer.transfer_id) is None
    rejected = await store.record_rejection(transfer, "us", caught.value, NOW)
    assert (rejected.status, rejected.reason_type) == ("rejected", error.type)
    # The outcome of an id never changes: appending it again returns the rejection.
    assert await store.append_transfer(transfer, "us", NOW) == rejected
    assert await count_rows(engines["us"], "events") == events_before


async def test_opening_an_account_is_idempotent_and_checked(
    store: PostgresEventStore, uid: Ids
) -> None:
    a = uid("a")
    first = await store.open_account(OpenAccountRequest(a, "USD", "us"), NOW)
    again = await store.open_account(OpenAccountRequest(a, "USD", "us"), NOW)
    assert first.created and not again.created
    assert first.account == again.account
    with pytest.raises(AccountAlreadyExists):
        await store.open_account(OpenAccountRequest(a, "EUR", "us"), NOW)
    with pytest.raises(InvalidRequest):
        await store.open_account(OpenAccountRequest(uid("b"), "USD", "eu"), NOW)
    events = await store.account_events(a)
    assert [e.type for e in events] == ["AccountOpened"]


async def test_the_database_refuses_to_change_history(
    store: PostgresEventStore,
    engines: dict[str, AsyncEngine],
    owner_engine: AsyncEngine,
    uid: Ids,
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 100)
    statements = [
        "UPDATE events SET amount = amount * 2 WHERE account_id = :a",
        "DELETE FROM events WHERE account_id = :a",
        "TRUNCATE events",
        "UPDATE transfers SET amount = 1 WHERE to_account = :a",
        "DELETE FROM transfers WHERE to_account = :a",
        "TRUNCATE transfers CASCADE",
    ]
    # The worker role lacks the privilege; the owner is stopped by the trigger.
    for engine, expected in ((engines["us"], "permission denied"), (owner_engine, "append-only")):
        for sql in statements:
            with pytest.raises(DBAPIError, match=expected):
                async with engine.begin() as conn:
                    await conn.execute(text(sql), {"a": a})
    verify_chain(await store.account_events(a))


async def test_the_hash_chain_verifies_and_detects_tampering(
    store: PostgresEventStore, superuser_engine: AsyncEngine, uid: Ids
) -> None:
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 1000)
    for i in range(5):
        await store.append_transfer(Transfer(uid(f"t{i}"), a, b, 10 + i, "USD", "x"), "us", NOW)
    events = await store.account_events(a)
    account = await store.get_account(a)
    assert account is not None
    assert verify_chain(events) == account.head_hash
    # Tamper as a superuser with the triggers off (replica role): an altered amount.
    async with superuser_engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text("UPDATE events SET amount = amount - 1 WHERE account_id = :a AND version = 4"),
            {"a": a},
        )
    with pytest.raises(ChainBroken) as caught:
        verify_chain(await store.account_events(a))
    assert (caught.value.account_id, caught.value.version) == (a, 4)


async def test_the_schema_refuses_states_the_ledger_never_produces(
    store: PostgresEventStore,
    engines: dict[str, AsyncEngine],
    owner_engine: AsyncEngine,
    uid: Ids,
) -> None:
    a = uid("a")
    await open_accounts(store, a)
    # The worker role may move balances but never re-denominate an account.
    with pytest.raises(DBAPIError, match="permission denied"):
        async with engines["us"].begin() as conn:
            await conn.execute(
                text("UPDATE accounts SET currency = 'EUR' WHERE account_id = :a"), {"a": a}
            )
    refused = [
        ("UPDATE accounts SET balance = -1 WHERE account_id = :a", "within_overdraft_limit"),
        (
            "INSERT INTO events (event_id, type, account_id, version, amount, currency, "
            "balance_after, occurred_at, recorded_at, region, initiated_by, prev_hash, hash) "
            "VALUES (gen_random_uuid(), 'Credited', :a, 2, 5, 'USD', 5, now(), now(), 'us', "
            "'x', 'p', 'h')",
            "events_leg_check",
        ),
        (
            "INSERT INTO transfers (transfer_id, fingerprint, status, region, from_account, "
            "to_account, amount, currency, initiated_by, occurred_at, recorded_at) VALUES "
            "(:a, 'f', 'confirmed', 'us', :a, :a, 5, 'USD', 'x', now(), now())",
            "transfers_outcome_complete",
        ),
    ]
    for sql, constraint in refused:
        with pytest.raises(DBAPIError, match=constraint):
            async with owner_engine.begin() as conn:
                await conn.execute(text(sql), {"a": a})


async def test_group_commit_shares_a_transaction_yet_behaves_like_one_by_one(
    engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    # One writer: the first append goes alone, the 31 that arrive meanwhile share one.
    store = PostgresEventStore(engines["us"], "us", max_batch=64, writers=1)
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b)
    await fund(store, uid, a, 95)
    transfers = [Transfer(uid(f"g{i}"), a, b, 10, "USD", "x") for i in range(30)]
    again, clash = transfers[3], replace(transfers[4], amount=11)
    outcomes = await asyncio.gather(
        *(store.append_transfer(t, "us", NOW) for t in [*transfers, again, clash]),
        return_exceptions=True,
    )
    confirmed = [o for o in outcomes[:30] if not isinstance(o, BaseException)]
    assert [o.transfer_id for o in confirmed] == [t.transfer_id for t in transfers[:9]]
    assert all(isinstance(o, InsufficientFunds) for o in outcomes[9:30])
    assert outcomes[30] == outcomes[3], "a duplicate in the same batch gets the first's outcome"
    assert isinstance(outcomes[31], DuplicateTransferMismatch)
    async with engines["us"].connect() as conn:
        transactions = (
            await conn.execute(
                text("SELECT count(DISTINCT tx_id) FROM events WHERE transfer_id = ANY(:ids)"),
                {"ids": [t.transfer_id for t in transfers]},
            )
        ).scalar_one()
    assert transactions == 2
    assert (
        await count_rows(
            engines["us"],
            "transfers",
            "transfer_id = ANY(:ids)",
            ids=[t.transfer_id for t in transfers],
        )
        == 9
    )
    source, target = await store.get_account(a), await store.get_account(b)
    assert source is not None and target is not None
    assert (source.balance, target.balance) == (5, 90)
    verify_chain(await store.account_events(a))
    verify_chain(await store.account_events(b))


async def test_a_posting_the_database_refuses_fails_alone_not_its_batch(
    engines: dict[str, AsyncEngine], uid: Ids
) -> None:
    store = PostgresEventStore(engines["us"], "us", max_batch=64, writers=1)
    a, b = uid("a"), uid("b")
    await open_accounts(store, a, b, limit=None)
    good = [Transfer(uid(f"ok{i}"), a, b, 1, "USD", "x") for i in range(3)]
    # PostgreSQL text cannot hold NUL: this one's INSERT fails in the database.
    poison = Transfer(uid("nul"), a, b, 1, "USD", "x", "bad\x00description")
    outcomes = await asyncio.gather(
        *(store.append_transfer(t, "us", NOW) for t in [good[0], good[1], poison, good[2]]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[2], DBAPIError)
    assert [o.status for o in outcomes if not isinstance(o, BaseException)] == ["confirmed"] * 3
    source = await store.get_account(a)
    assert source is not None and source.balance == -3
    assert await postings(engines["us"], poison.transfer_id) == 0
    verify_chain(await store.account_events(a))
