"""What a refusal says: its type, the field or account it names, its words.

Clients (the CLI, the HTTP API, a service in another language) act on the
type and the field and show the message as it is, so all three are the
contract of every refusal, pinned here case by case. (Found missing by
mutation testing: a mutant naming no field, or the wrong one, survived.)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledgerflow.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
    LedgerError,
    SameAccount,
    UnknownCurrency,
)
from ledgerflow.domain.hashing import GENESIS_HASH
from ledgerflow.domain.model import (
    MAX_DESCRIPTION_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    Account,
    OpenAccountRequest,
    Posting,
    PostingKind,
    Transfer,
    TransferRequest,
    base_transfer_id,
    canonical_json,
    clearing_account_id,
    parse_clearing_account,
    require_metadata,
    reversal_id,
)
from ledgerflow.domain.money import MAX_MINOR_UNITS, format_amount, parse_amount
from ledgerflow.domain.policy import check_policy

ID_RULE = (
    "must be 1-64 characters of letters, digits and . _ : @ - (starting with a letter or digit)"
)
REQUEST = TransferRequest("t1", "alice", "bob", "1.00", "USD", "ops")
CLEARING = "clearing:us:eu:USD"


def refusal(call: Any, *args: Any, **kwargs: Any) -> LedgerError:
    with pytest.raises(LedgerError) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize(
    ("changes", "error", "details", "message"),
    [
        ({"transfer_id": ""}, InvalidRequest, {"fields": ["transfer_id"]},
         "missing field(s): transfer_id"),
        ({"transfer_id": None, "initiated_by": "", "amount": ""}, InvalidRequest,
         {"fields": ["transfer_id", "initiated_by", "amount"]},
         "missing field(s): transfer_id, initiated_by, amount"),
        ({"amount": None}, InvalidRequest, {"fields": ["amount"]}, "missing field(s): amount"),
        ({"currency": ""}, InvalidRequest, {"fields": ["currency"]},
         "missing field(s): currency"),
        ({"transfer_id": "a b"}, InvalidRequest, {"field": "transfer_id"},
         f"transfer_id {ID_RULE}, got 'a b'"),
        ({"transfer_id": "t/reversal"}, InvalidRequest, {"field": "transfer_id"},
         f"transfer_id {ID_RULE}, got 't/reversal'"),
        ({"from_account": "-x"}, InvalidRequest, {"field": "from_account"},
         f"from_account {ID_RULE}, got '-x'"),
        ({"to_account": "x" * 65}, InvalidRequest, {"field": "to_account"},
         f"to_account {ID_RULE}, got '{'x' * 65}'"),
        ({"from_account": CLEARING}, InvalidRequest, {"field": "from_account"},
         f"from_account '{CLEARING}': ids starting with 'clearing:' are reserved for the "
         "ledger's clearing accounts"),
        ({"to_account": CLEARING}, InvalidRequest, {"field": "to_account"},
         f"to_account '{CLEARING}': ids starting with 'clearing:' are reserved for the "
         "ledger's clearing accounts"),
        ({"initiated_by": "a\nb"}, InvalidRequest, {"field": "initiated_by"},
         f"initiated_by {ID_RULE}, got 'a\\nb'"),
        ({"to_region": "no where"}, InvalidRequest, {"field": "to_region"},
         f"to_region {ID_RULE}, got 'no where'"),
        ({"to_account": "alice"}, SameAccount, {},
         "from_account and to_account are both 'alice'"),
        ({"description": "d" * (MAX_DESCRIPTION_CHARS + 1)}, InvalidRequest,
         {"field": "description"}, "description must be text of at most 500 characters"),
        ({"description": 7}, InvalidRequest, {"field": "description"},
         "description must be text of at most 500 characters"),
        ({"description": "a\x00b"}, InvalidRequest, {"field": "description"},
         "description must not contain NUL characters"),
        ({"description": "ab\ud800"}, InvalidRequest, {"field": "description"},
         "description is not valid UTF-8 text (a lone surrogate at position 2)"),
        ({"currency": "XYZ"}, UnknownCurrency, {"currency": "XYZ"},
         "unknown currency 'XYZ': expected an ISO 4217 code such as 'USD'"),
        ({"amount": "0"}, InvalidAmount, {}, "amount must be positive, got '0'"),
        ({"metadata": [1]}, InvalidRequest, {"field": "metadata"},
         "metadata must be a JSON object with string keys"),
    ],
)  # fmt: skip
def test_a_malformed_transfer_request_is_refused_naming_what_is_wrong(
    changes: dict[str, Any], error: type[LedgerError], details: dict[str, Any], message: str
) -> None:
    refused = refusal(replace(REQUEST, **changes).validated)
    assert type(refused) is error
    assert refused.details == details
    assert refused.message == message


def test_a_transfer_request_at_every_limit_is_accepted() -> None:
    at_limit = replace(
        REQUEST,
        transfer_id="t" * 64,
        description="d" * MAX_DESCRIPTION_CHARS,
        to_region="eu",
        metadata={"k": "v"},
        amount=MAX_MINOR_UNITS,
    )
    transfer = at_limit.validated()
    assert transfer == Transfer("t" * 64, "alice", "bob", MAX_MINOR_UNITS, "USD", "ops",
                                "d" * MAX_DESCRIPTION_CHARS, {"k": "v"})  # fmt: skip
    assert REQUEST.validated().metadata == {} and REQUEST.validated().amount == 100


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({1: "x"}, "metadata keys must be strings"),
        ({"a\x00": 1}, "metadata must not contain NUL characters"),
        ({"\udfff": 1}, "metadata is not valid UTF-8 text (a lone surrogate at position 0)"),
        ({"k": "v\x00"}, "metadata must not contain NUL characters"),
        ({"k": ["ok", {"deep": "\ud800"}]},
         "metadata is not valid UTF-8 text (a lone surrogate at position 0)"),
        ({"k": 1.5}, "metadata numbers must be integers (put decimals in strings)"),
        ({"k": [1, 2.0]}, "metadata numbers must be integers (put decimals in strings)"),
        ({"k": {"x"}}, "metadata holds a set, which is not JSON"),
        ({"k": b"x"}, "metadata holds a bytes, which is not JSON"),
        ({"k": "x" * MAX_METADATA_BYTES},
         f"metadata is {MAX_METADATA_BYTES + 8} bytes; at most 4096 are allowed"),
        ("{}", "metadata must be a JSON object with string keys"),
    ],
)  # fmt: skip
def test_metadata_that_is_not_plain_json_is_refused(metadata: Any, message: str) -> None:
    refused = refusal(require_metadata, metadata)
    assert type(refused) is InvalidRequest
    assert refused.details == {"field": "metadata"}
    assert refused.message == message


def nested(levels: int) -> dict[str, Any]:
    """An object nesting `levels` deep (itself level 1)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def test_metadata_nesting_is_bounded_even_when_it_contains_itself() -> None:
    assert require_metadata(nested(MAX_METADATA_DEPTH)) == nested(MAX_METADATA_DEPTH)
    looped: dict[str, Any] = {}
    looped["again"] = [looped]
    deep_list: list[Any] = []
    for _ in range(5_000):
        deep_list = [deep_list]
    # Lists count one level each too: the object, then 31 lists, is the limit.
    listed: list[Any] = []
    for _ in range(MAX_METADATA_DEPTH - 2):
        listed = [listed]
    assert require_metadata({"k": listed}) == {"k": listed}
    for value in (nested(MAX_METADATA_DEPTH + 1), looped, {"k": deep_list}, {"k": [listed]}):
        refused = refusal(require_metadata, value)
        assert type(refused) is InvalidRequest and refused.details == {"field": "metadata"}
        assert refused.message == "metadata nests deeper than 32 levels"


def test_metadata_of_plain_json_is_kept_as_given_up_to_its_limit() -> None:
    plain = {"a": None, "b": True, "c": -3, "d": ["x", {"e": []}], "é": "ü"}
    assert require_metadata(plain) == plain and require_metadata(None) == {}
    padding = MAX_METADATA_BYTES - len(canonical_json({"k": ""}))
    assert len(canonical_json({"k": "x" * padding})) == MAX_METADATA_BYTES
    assert require_metadata({"k": "x" * padding}) == {"k": "x" * padding}
    with pytest.raises(InvalidRequest):
        require_metadata({"k": "x" * (padding + 1)})


def test_canonical_json_is_one_byte_string_per_value() -> None:
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'.encode()
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


OPEN = OpenAccountRequest("acct", "USD", "us")


@pytest.mark.parametrize(
    ("changes", "clearing", "error", "details", "message"),
    [
        ({"account_id": "a b"}, False, InvalidRequest, {"field": "account_id"},
         f"account_id {ID_RULE}, got 'a b'"),
        ({"account_id": "a b"}, True, InvalidRequest, {"field": "account_id"},
         f"account_id {ID_RULE}, got 'a b'"),
        ({"account_id": CLEARING}, False, InvalidRequest, {"field": "account_id"},
         f"account_id '{CLEARING}': ids starting with 'clearing:' are reserved for the "
         "ledger's clearing accounts"),
        ({"currency": "usd"}, False, UnknownCurrency, {"currency": "usd"},
         "unknown currency 'usd': expected an ISO 4217 code such as 'USD'"),
        ({"currency": None}, False, UnknownCurrency, {"currency": "None"},
         "unknown currency None: expected an ISO 4217 code such as 'USD'"),
        ({"region": ""}, False, InvalidRequest, {"field": "region"},
         f"region {ID_RULE}, got ''"),
        ({"initiated_by": None}, False, InvalidRequest, {"field": "initiated_by"},
         f"initiated_by {ID_RULE}, got None"),
        ({"overdraft_limit": -1}, False, InvalidRequest, {"field": "overdraft_limit"},
         "overdraft_limit must be a non-negative integer of minor units or null"),
        ({"overdraft_limit": True}, False, InvalidRequest, {"field": "overdraft_limit"},
         "overdraft_limit must be a non-negative integer of minor units or null"),
        ({"overdraft_limit": 1.0}, False, InvalidRequest, {"field": "overdraft_limit"},
         "overdraft_limit must be a non-negative integer of minor units or null"),
        ({"overdraft_limit": MAX_MINOR_UNITS + 1}, False, InvalidRequest,
         {"field": "overdraft_limit"},
         "overdraft_limit must be a non-negative integer of minor units or null"),
        ({"metadata": {"k": 0.5}}, False, InvalidRequest, {"field": "metadata"},
         "metadata numbers must be integers (put decimals in strings)"),
    ],
)  # fmt: skip
def test_a_malformed_account_request_is_refused_naming_what_is_wrong(
    changes: dict[str, Any],
    clearing: bool,
    error: type[LedgerError],
    details: dict[str, Any],
    message: str,
) -> None:
    refused = refusal(replace(OPEN, **changes).validated, clearing=clearing)
    assert type(refused) is error
    assert refused.details == details
    assert refused.message == message


@pytest.mark.parametrize("limit", [0, 1, MAX_MINOR_UNITS, None])
def test_an_account_request_at_every_limit_is_accepted(limit: int | None) -> None:
    request = replace(OPEN, overdraft_limit=limit, metadata={"k": 1})
    assert request.validated() is request
    clearing = replace(OPEN, account_id=CLEARING, overdraft_limit=None)
    assert clearing.validated(clearing=True) is clearing


def test_only_the_ledger_opens_clearing_accounts() -> None:
    refused = refusal(replace(OPEN, account_id=CLEARING).validated)
    assert type(refused) is InvalidRequest and refused.details == {"field": "account_id"}


def test_clearing_ids_and_posting_ids_parse_back() -> None:
    assert clearing_account_id("us", "eu", "USD") == CLEARING
    assert parse_clearing_account(CLEARING) == ("us", "eu", "USD")
    for other in ("acct", "clearing:us:eu", "clearing:us:eu:USD:x", "xclearing:us:eu:USD"):
        assert parse_clearing_account(other) is None
    assert reversal_id("t1") == "t1/reversal"
    assert base_transfer_id("t1/reversal") == "t1" and base_transfer_id("t1") == "t1"
    # A capture's posting is its own transfer (two captures of a hold settle
    # apart in reconciliation), and so is its reversal's compensated leg.
    assert base_transfer_id("h/capture/c") == "h/capture/c"
    assert base_transfer_id("h/capture/c/reversal") == "h/capture/c"


TRANSFER = REQUEST.validated()


def test_each_kind_of_posting_moves_money_between_the_right_accounts() -> None:
    out_clearing, in_clearing = CLEARING, clearing_account_id("eu", "us", "USD")
    cases = [
        (Posting.of(TRANSFER, "local", "us", None), (
            PostingKind.LOCAL, None, "t1", "alice", "bob", "bob", "alice", None)),
        (Posting.of(TRANSFER, "local", "us", "eu"), (  # a local posting has no peer
            PostingKind.LOCAL, None, "t1", "alice", "bob", "bob", "alice", None)),
        (Posting.of(TRANSFER, "outbound", "us", "eu"), (
            PostingKind.OUTBOUND, "eu", "t1", "alice", out_clearing, "bob", "alice",
            out_clearing)),
        (Posting.of(TRANSFER, "inbound", "eu", "us"), (
            PostingKind.INBOUND, "us", "t1", in_clearing, "bob", "bob", "alice", in_clearing)),
        (Posting.of(TRANSFER, "reversal", "us", "eu"), (
            PostingKind.REVERSAL, "eu", "t1/reversal", out_clearing, "alice", "alice", "bob",
            out_clearing)),
    ]  # fmt: skip
    for posting, expected in cases:
        assert (
            posting.kind, posting.peer_region, posting.posting_id, posting.debit_account,
            posting.credit_account, posting.debit_counterparty, posting.credit_counterparty,
            posting.clearing_account,
        ) == expected  # fmt: skip
        assert posting.transfer == TRANSFER and posting.accounts == expected[3:5]
        assert posting.region in ("us", "eu")
        as_transfer = posting.as_transfer()
        assert (as_transfer.transfer_id, as_transfer.from_account, as_transfer.to_account) == (
            expected[2], expected[3], expected[4])  # fmt: skip
        assert (as_transfer.amount, as_transfer.currency) == (100, "USD")


@pytest.mark.parametrize(
    ("kind", "peer", "details", "message"),
    [
        ("outbound", None, {"field": "peer_region"}, "a outbound posting needs another region"),
        ("inbound", "eu", {"field": "peer_region"}, "a inbound posting needs another region"),
        ("sideways", "ap", {"field": "kind"}, "unknown posting kind 'sideways'"),
    ],
)
def test_a_posting_of_no_known_kind_or_without_a_peer_is_refused(
    kind: str, peer: str | None, details: dict[str, Any], message: str
) -> None:
    refused = refusal(Posting.of, TRANSFER, kind, "eu", peer)
    assert type(refused) is InvalidRequest
    assert (refused.details, refused.message) == (details, message)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def account(account_id: str, balance: int = 0, limit: int | None = 0, **kw: Any) -> Account:
    fields: dict[str, Any] = dict(
        account_id=account_id, currency="USD", region="us", overdraft_limit=limit,
        status="open", version=1, balance=balance, opened_at=NOW, head_hash=GENESIS_HASH,
    )  # fmt: skip
    fields.update(kw)
    return Account(**fields)


@pytest.mark.parametrize(
    ("source", "target", "amount", "error", "account_id", "message"),
    [
        (None, account("bob"), 1, AccountNotFound, "alice", "account 'alice' does not exist"),
        (account("alice", 9), None, 1, AccountNotFound, "bob", "account 'bob' does not exist"),
        (account("alice", 9, status="closed"), account("bob"), 1, AccountClosed, "alice",
         "account 'alice' is closed"),
        (account("alice", 9), account("bob", status="closed"), 1, AccountClosed, "bob",
         "account 'bob' is closed"),
        (account("alice", 9, status="frozen"), account("bob"), 1, AccountFrozen, "alice",
         "account 'alice' is frozen: it accepts credits only"),
        (account("alice", 9), account("bob", status="suspended"), 1, AccountClosed, "bob",
         "account 'bob' is suspended"),
        (account("alice", 9, currency="EUR"), account("bob"), 1, CurrencyMismatch, "alice",
         "account 'alice' holds EUR, the transfer is in USD"),
        (account("alice", 9), account("bob", currency="JPY"), 1, CurrencyMismatch, "bob",
         "account 'bob' holds JPY, the transfer is in USD"),
        (account("alice", 1250, limit=500), account("bob"), 1751, InsufficientFunds, "alice",
         "account 'alice' has a balance of 12.50 USD and an overdraft limit of 5.00 USD; "
         "17.51 USD exceeds what it may spend"),
    ],
)  # fmt: skip
def test_a_transfer_the_policy_refuses_names_the_account_and_why(
    source: Account | None,
    target: Account | None,
    amount: int,
    error: type[LedgerError],
    account_id: str,
    message: str,
) -> None:
    refused = refusal(check_policy, replace(TRANSFER, amount=amount), source, target)
    assert type(refused) is error
    assert refused.details == {"account_id": account_id}
    assert refused.message == message


def test_the_policy_allows_balances_up_to_the_ledgers_limits_and_not_beyond() -> None:
    big = replace(TRANSFER, amount=10)
    check_policy(big, account("alice", 10), account("bob", MAX_MINOR_UNITS - 10))
    refused = refusal(check_policy, big, account("alice", 10),
                      account("bob", MAX_MINOR_UNITS - 9))  # fmt: skip
    assert type(refused) is InvalidAmount
    assert refused.message == "the transfer would overflow an account balance"
    unlimited = account("alice", -(MAX_MINOR_UNITS - 10), limit=None)
    check_policy(big, unlimited, account("bob"))
    deeper = account("alice", -(MAX_MINOR_UNITS - 9), limit=None)
    assert type(refusal(check_policy, big, deeper, account("bob"))) is InvalidAmount


@pytest.mark.parametrize(
    ("value", "currency", "message"),
    [
        (1.5, "USD", "amount must be an integer of minor units or a decimal string, got float"),
        (True, "USD", "amount must be an integer of minor units or a decimal string, got bool"),
        (0, "USD", "amount must be positive, got 0"),
        ("-1.00", "USD", "amount must be positive, got '-1.00'"),
        (Decimal("-1"), "USD", "amount must be positive, got Decimal('-1')"),
        (Decimal("NaN"), "USD", "amount Decimal('NaN') is not a finite number"),
        (Decimal("1E+40"), "USD", "amount Decimal('1E+40') is not an amount the ledger can hold"),
        ("1.234", "USD", "amount '1.234' has more than 2 decimal places for USD"),
        ("1.5", "JPY", "amount '1.5' has more than 0 decimal places for JPY"),
        ("1e3", "EUR", "amount '1e3' is not a decimal amount: ASCII digits, optionally a point "
         "and at most 2 decimal place(s) for EUR, nothing before or after"),
        ("9" * 41, "USD", f"amount '{'9' * 40}'... is longer than any amount the ledger holds"),
        (MAX_MINOR_UNITS + 1, "USD",
         f"amount {MAX_MINOR_UNITS + 1} exceeds the largest amount the ledger holds"),
    ],
)  # fmt: skip
def test_an_amount_that_is_not_one_is_refused_saying_why(
    value: Any, currency: str, message: str
) -> None:
    refused = refusal(parse_amount, value, currency)
    assert type(refused) is InvalidAmount and refused.message == message


def test_decimals_at_the_edges_of_the_grammar() -> None:
    with pytest.raises(InvalidAmount, match="positive"):
        parse_amount(Decimal("-0"), "USD")  # zero, signed: refused as not positive
    assert parse_amount(Decimal("1"), "USD") == 100
    assert parse_amount(Decimal("1.5"), "USD") == 150
    assert parse_amount(Decimal("1" + "0" * 15), "USD") == 10**17
    # 40 digits: read (and refused as too large); 41 are refused unread.
    with pytest.raises(InvalidAmount, match="exceeds the largest amount"):
        parse_amount(Decimal("1" * 40), "USD")
    with pytest.raises(InvalidAmount, match="exceeds the largest amount"):
        parse_amount(Decimal("1E+39"), "USD")
    with pytest.raises(InvalidAmount, match="not an amount the ledger can hold"):
        parse_amount(Decimal("1" * 41), "USD")
    with pytest.raises(InvalidAmount, match="not an amount the ledger can hold"):
        parse_amount(Decimal("1E-41"), "USD")
    with pytest.raises(InvalidAmount, match="is longer than any amount the ledger holds"):
        parse_amount(Decimal("1E-40"), "USD")  # read, then too long as a decimal
    assert format_amount(-5, "USD") == "-0.05 USD" and format_amount(7, "JPY") == "7 JPY"
    assert format_amount(123456, "KWD") == "123.456 KWD" and format_amount(0, "USD") == "0.00 USD"
    assert format_amount(5, "XXX") == "5 XXX"


def test_a_frozen_account_still_takes_credits() -> None:
    check_policy(TRANSFER, account("alice", 1000), account("bob", status="frozen"))
