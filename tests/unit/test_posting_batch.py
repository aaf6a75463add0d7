"""PostingBatch: one append transaction's postings, applied in memory.

The rows it builds are what `APPEND_WRITES` inserts, so each is checked here
against what the events must say: the amounts and running balances, the
versions, the links of every account's hash chain (fed to `AccountChain`,
pinned by the known-answer vectors), the clock, the event ids the retries
rely on, and the refusals that must leave the batch as it was.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledgerflow.domain.errors import (
    AccountClosed,
    AccountNotFound,
    CurrencyMismatch,
    DuplicateTransferMismatch,
    InsufficientFunds,
    InvalidRequest,
)
from ledgerflow.domain.hashing import GENESIS_HASH, AccountChain, ChainBroken
from ledgerflow.domain.model import (
    Account,
    Event,
    OpenAccountRequest,
    Posting,
    Transfer,
    TransferStatus,
    clearing_account_id,
)
from ledgerflow.store.batch import (
    PostingBatch,
    _append_row,
    check_posting_policy,
    clearing_request,
    clearing_stand_in,
    event_id_for,
    require_home,
    same_posting,
)
from ledgerflow.store.rows import Recorded

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPENED = NOW - timedelta(days=30)
HEAD_A = "a" * 64
HEAD_B = "b" * 64


def account(
    account_id: str,
    balance: int = 0,
    *,
    version: int = 1,
    limit: int | None = 0,
    status: str = "open",
    currency: str = "USD",
    head: str | None = None,
    head_at: datetime | None = None,
) -> Account:
    return Account(account_id, currency, "us", limit, status, version, balance, OPENED,
                   head or GENESIS_HASH, {}, head_at)  # fmt: skip


def transfer(tid: str = "t1", amount: int = 500, **kw: Any) -> Transfer:
    fields: dict[str, Any] = dict(
        transfer_id=tid, from_account="alice", to_account="bob", amount=amount,
        currency="USD", initiated_by="ops", description="rent", metadata={"k": "v"},
    )  # fmt: skip
    fields.update(kw)
    return Transfer(**fields)


def ledger(**accounts: Account) -> dict[str, Account]:
    base = {
        "alice": account("alice", 1_000, version=3, head=HEAD_A),
        "bob": account("bob", 0, version=1, head=HEAD_B),
    }
    base.update(accounts)
    return base


def events(batch: PostingBatch) -> list[Event]:
    """The batch's event rows as events, in the order they were built."""
    columns = batch.events
    out = []
    for i in range(len(columns["event_id"])):
        row = {name: values[i] for name, values in columns.items()}
        row["metadata"] = json.loads(row["metadata"])
        out.append(Event(region=batch.region, **row))
    return out


def test_a_local_posting_debits_and_credits_once_each_and_chains_to_the_heads() -> None:
    accounts = ledger()
    before = dict(accounts)
    batch = PostingBatch(NOW, "us")
    result = batch.post(Posting.local(transfer(), "us"), NOW, accounts, {})

    debit, credit = events(batch)
    assert (debit.account_id, debit.amount, debit.type, debit.leg) == (
        "alice", -500, "Debited", "debit")  # fmt: skip
    assert (credit.account_id, credit.amount, credit.type, credit.leg) == (
        "bob", 500, "Credited", "credit")  # fmt: skip
    assert (debit.version, debit.balance_after) == (4, 500)
    assert (credit.version, credit.balance_after) == (2, 500)
    assert (debit.counterparty, credit.counterparty) == ("bob", "alice")
    assert debit.transfer_id == credit.transfer_id == "t1"
    assert debit.description == "rent" and debit.metadata == {"k": "v"}
    assert debit.initiated_by == "ops" and debit.region == "us"
    # Each event links to its account's head and hashes its own content.
    for event, acct in ((debit, before["alice"]), (credit, before["bob"])):
        chain = AccountChain(acct.account_id, acct.version, acct.balance, acct.head_hash)
        chain.feed(event)
    assert debit.prev_hash == HEAD_A and credit.prev_hash == HEAD_B
    assert debit.hash != credit.hash

    assert result.status == TransferStatus.CONFIRMED and result.confirmed
    assert (result.from_balance_after, result.to_balance_after) == (500, 500)
    assert (result.debit_event_id, result.credit_event_id) == (debit.event_id, credit.event_id)
    assert result.fingerprint == transfer().fingerprint()
    assert result.region == "us" and result.confirmed_at == NOW
    # The callers' accounts are moved to the new heads.
    assert accounts["alice"].version == 4 and accounts["alice"].balance == 500
    assert accounts["alice"].head_hash == debit.hash
    assert accounts["bob"].head_hash == credit.hash
    assert accounts["bob"].head_recorded_at == NOW
    assert batch.postings == [transfer()]


def test_event_ids_are_derived_from_the_id_the_leg_and_the_kind() -> None:
    ns = uuid.UUID("6f1b9d1e-3c55-4c1a-9a53-1c2f0e8a7b10")
    assert event_id_for("x") == str(uuid.uuid5(ns, "x"))
    local = PostingBatch(NOW, "us")
    local.post(Posting.local(transfer(), "us"), NOW, ledger(), {})
    assert local.events["event_id"] == [
        str(uuid.uuid5(ns, "transfer/t1/debit")),
        str(uuid.uuid5(ns, "transfer/t1/credit")),
    ]
    clearing = clearing_account_id("us", "eu", "USD")
    out = PostingBatch(NOW, "us")
    out.post(Posting.outbound(transfer(), "us", "eu"), NOW,
             ledger(**{clearing: account(clearing, limit=None)}), {})  # fmt: skip
    assert out.events["event_id"] == [
        str(uuid.uuid5(ns, "transfer/t1/outbound/debit")),
        str(uuid.uuid5(ns, "transfer/t1/outbound/credit")),
    ]
    assert out.events["transfer_id"] == ["t1", "t1"]


def test_postings_of_a_batch_see_the_ones_before_them() -> None:
    accounts = ledger()
    batch = PostingBatch(NOW, "us")
    batch.post(Posting.local(transfer("t1", 600), "us"), NOW, accounts, {})
    batch.post(Posting.local(transfer("t2", 400), "us"), NOW, accounts, {})
    # The third would take alice below zero only after the first two.
    with pytest.raises(InsufficientFunds):
        batch.post(Posting.local(transfer("t3", 1), "us"), NOW, accounts, {})
    alice = [e for e in events(batch) if e.account_id == "alice"]
    assert [(e.version, e.balance_after) for e in alice] == [(4, 400), (5, 0)]
    assert alice[1].prev_hash == alice[0].hash
    chain = AccountChain("alice", 3, 1_000, HEAD_A)
    for event in alice:
        chain.feed(event)
    assert len(batch.events["event_id"]) == 4 and len(batch.transfers["transfer_id"]) == 2
    assert accounts["alice"].balance == 0 and accounts["bob"].balance == 1_000
    params = batch.params()
    heads = dict(zip(params["a_account_id"], params["a_balance"], strict=True))
    assert heads == {"alice": 0, "bob": 1_000}
    assert dict(zip(params["a_account_id"], params["a_version"], strict=True)) == {
        "alice": 5, "bob": 3}  # fmt: skip
    assert params["a_head_hash"] == [accounts["alice"].head_hash, accounts["bob"].head_hash]
    assert params["t_transfer_id"] == ["t1", "t2"]
    assert params["e_amount"] == [-600, 600, -400, 400]
    assert params["now"] == NOW and params["region"] == "us"


def test_the_overdraft_limit_is_the_last_unit_allowed() -> None:
    accounts = ledger(alice=account("alice", 100, limit=50))
    batch = PostingBatch(NOW, "us")
    batch.post(Posting.local(transfer("t1", 150), "us"), NOW, accounts, {})
    assert accounts["alice"].balance == -50
    with pytest.raises(InsufficientFunds):
        batch.post(Posting.local(transfer("t2", 1), "us"), NOW, accounts, {})


@pytest.mark.parametrize(
    ("changed", "error"),
    [
        ({"bob": None}, AccountNotFound),
        ({"alice": None}, AccountNotFound),
        ({"bob": account("bob", status="closed")}, AccountClosed),
        ({"alice": account("alice", 1_000, status="closed")}, AccountClosed),
        ({"bob": account("bob", currency="EUR")}, CurrencyMismatch),
    ],
)
def test_a_refused_posting_writes_nothing(
    changed: dict[str, Account | None], error: type[Exception]
) -> None:
    accounts = ledger()
    for key, value in changed.items():
        if value is None:
            del accounts[key]
        else:
            accounts[key] = value
    before = dict(accounts)
    batch = PostingBatch(NOW, "us")
    recorded: dict[str, Recorded] = {}
    with pytest.raises(error):
        batch.post(Posting.local(transfer(), "us"), NOW, accounts, recorded)
    assert accounts == before and recorded == {} and batch.touched == {}
    assert all(v == [] for v in batch.events.values())
    assert all(v == [] for v in batch.transfers.values())
    assert batch.postings == []


def test_text_no_encoder_accepts_is_refused_alone() -> None:
    accounts = ledger()
    batch = PostingBatch(NOW, "us")
    batch.post(Posting.local(transfer("t1", 100), "us"), NOW, accounts, {})
    snapshot = {k: list(v) for k, v in batch.events.items()}
    heads = dict(accounts)
    for bad in (transfer("t2", 100, description="\ud800"),
                transfer("t3", 100, metadata={"k": "\udfff"})):  # fmt: skip
        with pytest.raises(InvalidRequest):
            batch.post(Posting.local(bad, "us"), NOW, accounts, {})
    assert batch.events == snapshot and accounts == heads
    assert batch.transfers["transfer_id"] == ["t1"]


def test_a_repeated_id_returns_the_recorded_outcome_and_writes_nothing_again() -> None:
    accounts = ledger()
    batch = PostingBatch(NOW, "us")
    recorded: dict[str, Recorded] = {}
    first = batch.post(Posting.local(transfer(), "us"), NOW, accounts, recorded)
    again = batch.post(Posting.local(transfer(), "us"), NOW, accounts, recorded)
    assert again == first
    assert len(batch.events["event_id"]) == 2 and accounts["alice"].balance == 500
    assert recorded["t1"] == Recorded(first, "local", None)
    # Another payload under the id, or another part of a transfer under it.
    with pytest.raises(DuplicateTransferMismatch):
        batch.post(Posting.local(transfer(amount=501), "us"), NOW, accounts, recorded)
    clearing = clearing_account_id("us", "eu", "USD")
    accounts[clearing] = account(clearing, limit=None)
    with pytest.raises(DuplicateTransferMismatch):
        batch.post(Posting.outbound(transfer(), "us", "eu"), NOW, accounts, recorded)
    assert len(batch.events["event_id"]) == 2


def test_same_posting_compares_payload_kind_and_peer() -> None:
    result = PostingBatch(NOW, "us").post(Posting.local(transfer(), "us"), NOW, ledger(), {})
    clearing = clearing_account_id("us", "eu", "USD")
    outbound = Posting.outbound(transfer(), "us", "eu")
    assert same_posting(Recorded(result, "outbound", "eu"), outbound) == result
    for kind, peer in (("outbound", "ap"), ("local", None), ("inbound", "eu")):
        with pytest.raises(DuplicateTransferMismatch):
            same_posting(Recorded(result, kind, peer), outbound)
    with pytest.raises(DuplicateTransferMismatch):
        same_posting(Recorded(result, "local", None), Posting.local(transfer(amount=1), "us"))
    assert clearing in outbound.accounts


def test_saga_legs_move_the_clearing_accounts() -> None:
    out_clearing = clearing_account_id("us", "eu", "USD")
    accounts = ledger(**{out_clearing: account(out_clearing, limit=None)})
    batch = PostingBatch(NOW, "us")
    batch.post(Posting.outbound(transfer(), "us", "eu"), NOW, accounts, {})
    assert accounts[out_clearing].balance == 500 and accounts["alice"].balance == 500
    assert batch.transfers["kind"] == ["outbound"] and batch.transfers["peer_region"] == ["eu"]
    assert batch.transfers["to_account"] == [out_clearing]
    assert batch.events["counterparty"] == ["bob", "alice"]

    in_clearing = clearing_account_id("eu", "us", "USD")
    far = {"bob": account("bob"), in_clearing: account(in_clearing, limit=None)}
    inbound = PostingBatch(NOW, "eu")
    inbound.post(Posting.inbound(transfer(), "eu", "us"), NOW, far, {})
    assert far[in_clearing].balance == -500 and far["bob"].balance == 500
    assert inbound.transfers["from_account"] == [in_clearing]
    assert inbound.transfers["kind"] == ["inbound"]
    assert inbound.events["account_id"] == [in_clearing, "bob"]
    assert inbound.events["counterparty"] == ["bob", "alice"]


def test_a_reversal_returns_money_even_to_a_closed_account_but_needs_both() -> None:
    clearing = clearing_account_id("us", "eu", "USD")
    # The clearing account holds what left; the customer has since closed.
    accounts = ledger(
        alice=account("alice", 0, status="closed"),
        **{clearing: account(clearing, 500, limit=0)},
    )
    batch = PostingBatch(NOW, "us")
    result = batch.post(Posting.reversal(transfer(), "us", "eu"), NOW, accounts, {})
    assert result.confirmed and accounts["alice"].balance == 500
    assert accounts[clearing].balance == 0
    assert batch.transfers["transfer_id"] == ["t1/reversal"]
    assert batch.transfers["kind"] == ["reversal"]
    # Even past the clearing account's limit: a reversal is not a new spend.
    again = ledger(**{clearing: account(clearing, 0, limit=0)})
    PostingBatch(NOW, "us").post(Posting.reversal(transfer("t2"), "us", "eu"), NOW, again, {})
    assert again[clearing].balance == -500
    # A local posting to the closed account is refused.
    with pytest.raises(AccountClosed):
        PostingBatch(NOW, "us").post(
            Posting.local(transfer("t3", to_account="alice", from_account="bob"), "us"),
            NOW, ledger(alice=account("alice", status="closed"), bob=account("bob", 900)), {},
        )  # fmt: skip
    missing = ledger()
    with pytest.raises(AccountNotFound):
        PostingBatch(NOW, "us").post(Posting.reversal(transfer(), "us", "eu"), NOW, missing, {})
    lost = {clearing: account(clearing, 500)}
    with pytest.raises(AccountNotFound):
        PostingBatch(NOW, "us").post(Posting.reversal(transfer(), "us", "eu"), NOW, lost, {})


def test_recorded_at_never_runs_backwards_on_either_account() -> None:
    later = NOW + timedelta(seconds=7)
    even_later = NOW + timedelta(seconds=9)
    for alice_at, bob_at, expected in (
        (later, None, later),
        (None, even_later, even_later),
        (later, even_later, even_later),
        (None, None, NOW),
    ):
        accounts = ledger(
            alice=account("alice", 1_000, head_at=alice_at),
            bob=account("bob", head_at=bob_at),
        )
        batch = PostingBatch(NOW, "us")
        result = batch.post(Posting.local(transfer(), "us"), NOW - timedelta(days=1),
                            accounts, {})  # fmt: skip
        assert batch.events["recorded_at"] == [expected, expected]
        assert batch.transfers["recorded_at"] == [expected]
        assert result.confirmed_at == expected
        assert batch.events["occurred_at"] == [NOW - timedelta(days=1)] * 2
    # An account opened after the clock (and never moved) bounds it too.
    opened_late = Account("bob", "USD", "us", 0, "open", 1, 0, even_later, GENESIS_HASH)
    batch = PostingBatch(NOW, "us")
    batch.post(Posting.local(transfer(), "us"), NOW, ledger(bob=opened_late), {})
    assert batch.events["recorded_at"] == [even_later, even_later]


def test_a_forged_link_does_not_verify() -> None:
    """The chain check the batch tests lean on fails when it should."""
    accounts = ledger()
    batch = PostingBatch(NOW, "us")
    batch.post(Posting.local(transfer(), "us"), NOW, accounts, {})
    debit = events(batch)[0]
    with pytest.raises(ChainBroken):
        AccountChain("alice", 3, 1_000, HEAD_B).feed(debit)
    with pytest.raises(ChainBroken):
        AccountChain("alice", 3, 999, HEAD_A).feed(debit)


def test_rows_carry_every_column_and_no_other() -> None:
    columns: dict[str, list[Any]] = {"a": [], "b": []}
    _append_row(columns, a=1, b=2)
    assert columns == {"a": [1], "b": [2]}
    with pytest.raises(KeyError):
        _append_row(columns, a=1)
    with pytest.raises(KeyError):
        _append_row(columns, a=1, b=2, c=3)
    assert columns == {"a": [1], "b": [2]}


def test_the_transfer_row_and_the_heads_carry_every_field() -> None:
    clearing = clearing_account_id("us", "eu", "USD")
    accounts = ledger(**{clearing: account(clearing, 40, limit=None)})
    accounts["alice"] = replace(accounts["alice"], metadata={"tier": "gold"})
    recorded: dict[str, Recorded] = {}
    batch = PostingBatch(NOW, "us")
    occurred = NOW - timedelta(hours=1)
    result = batch.post(Posting.outbound(transfer(amount=300), "us", "eu"), occurred,
                        accounts, recorded)  # fmt: skip
    debit_id, credit_id = batch.events["event_id"]
    row = {name: values[0] for name, values in batch.transfers.items()}
    assert row == {
        "transfer_id": "t1", "fingerprint": transfer(amount=300).fingerprint(),
        "from_account": "alice", "to_account": clearing, "amount": 300, "currency": "USD",
        "initiated_by": "ops", "description": "rent", "metadata": '{"k":"v"}',
        "debit_event_id": debit_id, "credit_event_id": credit_id,
        "from_balance_after": 700, "to_balance_after": 340, "occurred_at": occurred,
        "recorded_at": NOW, "kind": "outbound", "peer_region": "eu",
    }  # fmt: skip
    assert (result.transfer_id, result.from_balance_after, result.to_balance_after) == (
        "t1", 700, 340)  # fmt: skip
    assert recorded["t1"] == Recorded(result, "outbound", "eu")
    alice = accounts["alice"]
    kept = (alice.region, alice.opened_at, alice.metadata, alice.currency, alice.status)
    assert kept == ("us", OPENED, {"tier": "gold"}, "USD", "open")
    assert alice.overdraft_limit == 0
    assert set(batch.params()) == (
        {"now", "region"} | {f"e_{k}" for k in batch.events}
        | {f"t_{k}" for k in batch.transfers}
        | {"a_account_id", "a_version", "a_balance", "a_head_hash", "a_head_recorded_at",
           "a_pending_out"}
    )  # fmt: skip
    assert batch.params()["a_head_recorded_at"] == [NOW, NOW]


def test_refusals_say_what_and_which_id() -> None:
    batch = PostingBatch(NOW, "us")
    recorded: dict[str, Recorded] = {}
    batch.post(Posting.local(transfer(), "us"), NOW, ledger(), recorded)
    with pytest.raises(DuplicateTransferMismatch) as mismatch:
        batch.post(Posting.local(transfer(amount=9), "us"), NOW, ledger(), recorded)
    assert mismatch.value.message == "transfer id 't1' was already used for a different transfer"
    with pytest.raises(InvalidRequest) as unstorable:
        batch.post(Posting.local(transfer("t2", description="\ud800"), "us"), NOW, ledger(), {})
    assert unstorable.value.message.startswith("the transfer cannot be stored as given: ")
    with pytest.raises(KeyError, match=r"row columns \['a'\] are not \['a', 'b'\]"):
        _append_row({"a": [], "b": []}, a=1)


def test_a_store_writes_only_its_own_regions_postings() -> None:
    require_home(Posting.local(transfer(), "us"), "us")
    with pytest.raises(InvalidRequest) as caught:
        require_home(Posting.inbound(transfer(), "eu", "us"), "us")
    assert caught.value.message == ("posting 't1' belongs to region 'eu'; this is the 'us' store")
    assert caught.value.details == {"field": "region"}


def test_the_advisory_check_stands_in_an_unopened_clearing_account_as_open_and_unlimited() -> None:
    # The clearing account for eu does not exist yet: the outbound leg passes,
    # since the append opens it without a limit.
    check_posting_policy(Posting.outbound(transfer(), "us", "eu"), ledger(), "us", NOW)
    # An inbound leg debits it: as the stand-in it has no limit either.
    inbound = Posting.inbound(transfer(amount=10**9), "us", "eu")
    check_posting_policy(inbound, ledger(), "us", NOW)
    # Its currency is the transfer's, so a mismatch is the customer's.
    euro = Posting.outbound(transfer(currency="EUR"), "us", "eu")
    with pytest.raises(CurrencyMismatch) as caught:
        check_posting_policy(euro, ledger(), "us", NOW)
    assert caught.value.details == {"account_id": "alice"}
    # A local posting gets no stand-in: an unknown account is unknown.
    with pytest.raises(AccountNotFound):
        check_posting_policy(Posting.local(transfer(to_account="carol"), "us"), ledger(), "us",
                             NOW)  # fmt: skip
    # The policy applies to the customer's side as it stands.
    with pytest.raises(InsufficientFunds):
        check_posting_policy(Posting.outbound(transfer(amount=1_001), "us", "eu"), ledger(),
                             "us", NOW)  # fmt: skip
    # An existing clearing account is taken as it is, not replaced by the stand-in.
    clearing = clearing_account_id("us", "eu", "USD")
    shut = ledger(**{clearing: account(clearing, status="closed", limit=None)})
    with pytest.raises(AccountClosed):
        check_posting_policy(Posting.outbound(transfer(), "us", "eu"), shut, "us", NOW)
    # The caller's accounts are never changed by the stand-in.
    accounts = ledger()
    check_posting_policy(Posting.outbound(transfer(), "us", "eu"), accounts, "us", NOW)
    assert clearing not in accounts


def test_a_clearing_account_is_opened_and_imagined_alike() -> None:
    """What opening a clearing account asks, and what the policy imagines
    before it is opened: open, empty, without limit, the ledger's own."""
    opened_at = datetime(2026, 6, 1, tzinfo=UTC)
    request = clearing_request("clearing:us:eu:USD", "USD", "us", "eu")
    assert (request.account_id, request.currency, request.region, request.overdraft_limit,
            request.initiated_by, request.metadata) == (
        "clearing:us:eu:USD", "USD", "us", None, "ledgerflow",
        {"role": "clearing", "peer_region": "eu"})  # fmt: skip
    with pytest.raises(InvalidRequest):  # only the ledger opens them, and only as such
        OpenAccountRequest("clearing:us:eu:USD", "USD", "us", None).validated()
    imagined = clearing_stand_in("clearing:us:eu:USD", "USD", "us", opened_at)
    assert imagined == Account("clearing:us:eu:USD", "USD", "us", None, "open", 1, 0, opened_at,
                               GENESIS_HASH, {}, opened_at)  # fmt: skip
