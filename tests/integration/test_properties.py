"""Property tests (hypothesis) over random transfer sequences against the
real store: the invariants of DESIGN.md section 3 hold whatever the sequence,
and the store agrees with a plain model of the ledger.

Operations are applied in rounds; the transfers of a round run concurrently,
so they share group-commit transactions, and the model then replays the
round in the order the store recorded it (its events' global positions).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from ledgerflow.domain.errors import (
    CurrencyMismatch,
    DuplicateTransferMismatch,
    InsufficientFunds,
    LedgerError,
)
from ledgerflow.domain.hashing import verify_chain
from ledgerflow.domain.model import OpenAccountRequest, Transfer
from ledgerflow.store.postgres import PostgresEventStore

Ids = Callable[[str], str]

#: (currency, overdraft limit): a funding account, two without overdraft, one
#: with a credit line, and one in another currency.
ACCOUNTS = [("USD", None), ("USD", 0), ("USD", 0), ("USD", 250), ("EUR", 0)]

operation = st.tuples(
    st.integers(0, len(ACCOUNTS) - 1),  # from
    st.integers(0, len(ACCOUNTS) - 1),  # to
    st.integers(1, 400),  # amount, minor units
    st.sampled_from(["new", "new", "new", "retry", "clash"]),  # id: fresh, resent, reused
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rounds=st.lists(st.lists(operation, min_size=1, max_size=6), min_size=1, max_size=6))
async def test_the_invariants_hold_for_any_sequence_of_transfers(
    store: PostgresEventStore, uid: Ids, rounds: list[list[tuple[int, int, int, str]]]
) -> None:
    tag = uuid.uuid4().hex[:8]  # not `random`: hypothesis seeds it
    ids = [uid(f"h{tag}-{i}") for i in range(len(ACCOUNTS))]
    for account_id, (currency, limit) in zip(ids, ACCOUNTS, strict=True):
        await store.open_account(
            OpenAccountRequest(account_id, currency, "us", limit), datetime.now(UTC)
        )
    sent: list[Transfer] = []
    outcomes: dict[str, str] = {}  # transfer id -> confirmed | refused
    for n, ops in enumerate(rounds):
        batch: list[Transfer] = []
        for m, (src, dst, amount, kind) in enumerate(ops):
            if src == dst:
                continue
            transfer = Transfer(uid(f"t{tag}-{n}-{m}"), ids[src], ids[dst], amount, "USD", "p")
            if kind != "new" and sent:
                earlier = sent[(n + m) % len(sent)]
                # A retry resends the same request; a clash reuses its id for another.
                transfer = earlier if kind == "retry" else Transfer(
                    earlier.transfer_id, ids[src], ids[dst], amount, "USD", "p"
                )  # fmt: skip
            batch.append(transfer)
        results = await asyncio.gather(
            *(store.append_transfer(t, "us", datetime.now(UTC)) for t in batch),
            return_exceptions=True,
        )
        for transfer, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, LedgerError), result  # typed, never a crash
                expected = (InsufficientFunds, CurrencyMismatch, DuplicateTransferMismatch)
                assert isinstance(result, expected), result
                if isinstance(result, DuplicateTransferMismatch):
                    assert outcomes.get(transfer.transfer_id) == "confirmed"
                continue
            # Invariant 4, exactly once: a retried id returns its first outcome.
            assert result.transfer_id == transfer.transfer_id
            if outcomes.get(transfer.transfer_id) == "confirmed":
                assert transfer in sent
            outcomes[transfer.transfer_id] = "confirmed"
            if transfer not in sent:
                sent.append(transfer)

    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT account_id, transfer_id, amount, currency, balance_after, version "
                    "FROM events WHERE account_id = ANY(:ids) ORDER BY position"
                ),
                {"ids": ids},
            )
        ).all()
    postings = [r for r in rows if r.transfer_id is not None]
    # Invariant 1, double entry: every transfer's two legs sum to zero, and so
    # does each currency over all of these accounts.
    legs: dict[str, list[int]] = {}
    for row in postings:
        legs.setdefault(row.transfer_id, []).append(row.amount)
    assert all(len(pair) == 2 and sum(pair) == 0 for pair in legs.values())
    assert set(legs) == {t for t, outcome in outcomes.items() if outcome == "confirmed"}
    for currency in ("USD", "EUR"):
        assert sum(r.amount for r in postings if r.currency == currency) == 0

    # The model: replay the postings in the store's order; every balance
    # follows, no limited account ever went past its limit, and the stored
    # balances, versions and hash chains agree.
    model = dict.fromkeys(ids, 0)
    for row in rows:
        model[row.account_id] += row.amount
        assert row.balance_after == model[row.account_id]
    for account_id, (currency, limit) in zip(ids, ACCOUNTS, strict=True):
        events = await store.account_events(account_id, limit=10_000)
        verify_chain(events)
        account = await store.get_account(account_id)
        assert account is not None
        assert (account.balance, account.version) == (model[account_id], len(events))
        if limit is not None:
            assert min(e.balance_after for e in events) >= -limit
        assert {e.currency for e in events} == {currency}
