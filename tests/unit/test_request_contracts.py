"""The exact contracts of hold and transaction requests: which error class,
which whole message and which details each refusal carries, the values just
inside and just outside each bound, and every field of what a valid request
validates into.

Messages are written out by hand here (not rebuilt from the modules' format
strings), so a changed label, bound or separator shows as a failure.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ledgerflow.domain.errors import InvalidAmount, InvalidRequest, LedgerError, SameAccount
from ledgerflow.domain.holds import (
    MAX_HOLD_SECONDS,
    MIN_HOLD_SECONDS,
    Capture,
    CaptureRequest,
    DeadlineChange,
    Hold,
    HoldRequest,
    HoldState,
    HoldStatus,
)
from ledgerflow.domain.model import MAX_DESCRIPTION_CHARS
from ledgerflow.domain.money import MAX_MINOR_UNITS
from ledgerflow.domain.transactions import (
    MAX_LEGS,
    Leg,
    LegRequest,
    Transaction,
    TransactionRequest,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
#: The longest hold, written out: 90 days of seconds.
NINETY_DAYS = 7_776_000


def malformed_id(what: str, value: object) -> str:
    return (
        f"{what} must be 1-64 characters of letters, digits and . _ : @ - "
        f"(starting with a letter or digit), got {value!r}"
    )


def reserved_account(what: str, value: str) -> str:
    return (
        f"{what} {value!r}: ids starting with 'clearing:' are reserved for "
        "the ledger's clearing accounts"
    )


def refusal(call: Any, error: type[LedgerError]) -> LedgerError:
    """The error `call()` raises, which must be exactly of class `error`."""
    with pytest.raises(LedgerError) as caught:
        call()
    assert type(caught.value) is error
    return caught.value


def hold_request(**kw: Any) -> HoldRequest:
    fields: dict[str, Any] = dict(
        hold_id="h1", from_account="alice", to_account="shop", amount="12.50", currency="USD",
        initiated_by="pos", expires_in_s=60,
    )  # fmt: skip
    fields.update(kw)
    return HoldRequest(**fields)


def tx_request(**kw: Any) -> TransactionRequest:
    legs = [
        LegRequest("alice", "debit", "100.00", "USD"),
        LegRequest("desk", "credit", 10000, "USD"),
        LegRequest("eurdesk", "debit", "92.00", "EUR"),
        LegRequest("alice-eur", "credit", 9200, "EUR"),
    ]
    fields: dict[str, Any] = dict(transaction_id="x1", legs=legs, initiated_by="fx")
    fields.update(kw)
    return TransactionRequest(**fields)


def pairs(count: int) -> list[LegRequest]:
    """`count` legs over distinct accounts, balanced in USD (count is even)."""
    return [
        LegRequest(f"a{n}", "debit" if n % 2 == 0 else "credit", 1, "USD") for n in range(count)
    ]


# Holds: the validated hold ---------------------------------------------------------------


def test_a_valid_hold_request_becomes_a_hold_with_every_field_carried() -> None:
    hold = hold_request(
        over_capture=5, description="tip allowed", metadata={"order": "o-1", "lane": 3}
    ).validated()
    assert hold == Hold(
        hold_id="h1", from_account="alice", to_account="shop", amount=1250, currency="USD",
        initiated_by="pos", expires_in_s=60, over_capture=5, description="tip allowed",
        metadata={"order": "o-1", "lane": 3},
    )  # fmt: skip


def test_a_hold_request_without_description_or_metadata_gets_none_and_an_empty_object() -> None:
    hold = hold_request(amount=60).validated()
    assert hold == Hold("h1", "alice", "shop", 60, "USD", "pos", 60, 0, None, {})


# Holds: missing fields --------------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, ""])
@pytest.mark.parametrize(
    "name", ["hold_id", "from_account", "to_account", "amount", "currency", "initiated_by"]
)
def test_each_missing_hold_field_is_named_alone(name: str, empty: object) -> None:
    error = refusal(hold_request(**{name: empty}).validated, InvalidRequest)
    assert (error.message, error.details) == (f"missing field(s): {name}", {"fields": [name]})


def test_every_missing_hold_field_is_named_at_once_amount_last() -> None:
    names = ["hold_id", "from_account", "to_account", "currency", "initiated_by"]
    asked = hold_request(amount="", **dict.fromkeys(names))
    error = refusal(asked.validated, InvalidRequest)
    assert error.message == (
        "missing field(s): hold_id, from_account, to_account, currency, initiated_by, amount"
    )
    assert error.details == {"fields": [*names, "amount"]}


def test_two_missing_hold_fields_are_joined_by_a_comma_and_a_space() -> None:
    error = refusal(hold_request(hold_id="", amount=None).validated, InvalidRequest)
    assert (error.message, error.details) == (
        "missing field(s): hold_id, amount", {"fields": ["hold_id", "amount"]})  # fmt: skip


# Holds: malformed ids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message", "field"),
    [({"hold_id": "h 1"}, malformed_id("hold_id", "h 1"), "hold_id"),
     ({"from_account": "-alice"}, malformed_id("from_account", "-alice"), "from_account"),
     ({"from_account": "clearing:us:eu:USD"},
      reserved_account("from_account", "clearing:us:eu:USD"), "from_account"),
     ({"to_account": "shop/1"}, malformed_id("to_account", "shop/1"), "to_account"),
     ({"to_account": "clearing:eu:us:USD"},
      reserved_account("to_account", "clearing:eu:us:USD"), "to_account"),
     ({"initiated_by": "p" * 65}, malformed_id("initiated_by", "p" * 65), "initiated_by")],
)  # fmt: skip
def test_a_malformed_hold_id_is_refused_under_its_own_name(
    changes: dict[str, Any], message: str, field: str
) -> None:
    error = refusal(hold_request(**changes).validated, InvalidRequest)
    assert (error.message, error.details) == (message, {"field": field})


def test_a_hold_from_an_account_to_itself_names_the_account() -> None:
    error = refusal(hold_request(to_account="alice").validated, SameAccount)
    assert (error.message, error.details) == ("from_account and to_account are both 'alice'", {})


# Holds: over-capture ----------------------------------------------------------------------


@pytest.mark.parametrize("over", [-1, True, False, 1.0, "5", None, MAX_MINOR_UNITS + 1])
def test_an_over_capture_that_is_not_a_count_of_minor_units_is_refused(over: object) -> None:
    error = refusal(hold_request(amount=1, over_capture=over).validated, InvalidRequest)
    assert (error.message, error.details) == (
        "over_capture must be a non-negative integer of minor units",
        {"field": "over_capture"},
    )


@pytest.mark.parametrize(
    ("amount", "over"),
    [(1, MAX_MINOR_UNITS), (2, MAX_MINOR_UNITS - 1), (MAX_MINOR_UNITS, 1),
     (MAX_MINOR_UNITS // 2 + 1, MAX_MINOR_UNITS // 2 + 1)],
)  # fmt: skip
def test_an_amount_plus_over_capture_beyond_bigint_is_refused(amount: int, over: int) -> None:
    error = refusal(hold_request(amount=amount, over_capture=over).validated, InvalidRequest)
    assert (error.message, error.details) == (
        "amount plus over_capture is too large", {"field": "over_capture"})  # fmt: skip


@pytest.mark.parametrize(
    ("amount", "over"),
    [(1, 0), (1, MAX_MINOR_UNITS - 1), (MAX_MINOR_UNITS - 1, 1), (MAX_MINOR_UNITS, 0),
     (MAX_MINOR_UNITS // 2, MAX_MINOR_UNITS // 2 + 1)],
)  # fmt: skip
def test_an_amount_plus_over_capture_exactly_at_bigint_is_accepted(amount: int, over: int) -> None:
    assert amount + over <= 2**63 - 1
    hold = hold_request(amount=amount, over_capture=over).validated()
    assert (hold.amount, hold.over_capture) == (amount, over)


# Holds and deadline changes: seconds ------------------------------------------------------


def hold_with(seconds: object) -> Any:
    return hold_request(expires_in_s=seconds).validated


def deadline_with(seconds: object) -> Any:
    return DeadlineChange("h1", "d1", seconds, "ops").validated  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [hold_with, deadline_with])
@pytest.mark.parametrize("seconds", [1.5, 60.0, True, False, "60", None])
def test_seconds_that_are_not_a_whole_number_are_refused(make: Any, seconds: object) -> None:
    error = refusal(make(seconds), InvalidRequest)
    assert (error.message, error.details) == (
        "expires_in_s must be a whole number of seconds", {"field": "expires_in_s"})  # fmt: skip


@pytest.mark.parametrize("make", [hold_with, deadline_with])
@pytest.mark.parametrize("seconds", [-1, 0, NINETY_DAYS + 1, 10**12])
def test_seconds_outside_one_to_ninety_days_are_refused(make: Any, seconds: int) -> None:
    error = refusal(make(seconds), InvalidRequest)
    assert (error.message, error.details) == (
        f"expires_in_s must be between 1 and 7776000 seconds, got {seconds}",
        {"field": "expires_in_s"},
    )


@pytest.mark.parametrize("seconds", [1, 2, NINETY_DAYS - 1, NINETY_DAYS])
def test_seconds_from_one_to_ninety_days_inclusive_are_accepted(seconds: int) -> None:
    assert (MIN_HOLD_SECONDS, MAX_HOLD_SECONDS) == (1, NINETY_DAYS)
    assert hold_request(expires_in_s=seconds).validated().expires_in_s == seconds
    change = DeadlineChange("h1", "d1", seconds, "ops")
    assert change.validated() == DeadlineChange("h1", "d1", seconds, "ops")


# Holds: description -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "description", ["", "x", "x" * (MAX_DESCRIPTION_CHARS - 1), "é" * 500, "x" * 500, "名前 💸"]
)
def test_a_hold_description_of_at_most_500_characters_is_kept(description: str) -> None:
    assert len(description) <= 500
    assert hold_request(description=description).validated().description == description


@pytest.mark.parametrize("description", ["x" * 501, "x" * 5000, 5, b"bytes", ["x"]])
def test_a_hold_description_too_long_or_not_text_is_refused(description: object) -> None:
    error = refusal(hold_request(description=description).validated, InvalidRequest)
    assert (error.message, error.details) == (
        "description must be text of at most 500 characters", {"field": "description"})  # fmt: skip


@pytest.mark.parametrize(
    ("description", "message"),
    [("a\x00b", "description must not contain NUL characters"),
     ("ab\ud800", "description is not valid UTF-8 text (a lone surrogate at position 2)")],
)  # fmt: skip
def test_a_hold_description_the_store_cannot_keep_is_refused_as_description(
    description: str, message: str
) -> None:
    error = refusal(hold_request(description=description).validated, InvalidRequest)
    assert (error.message, error.details) == (message, {"field": "description"})


def test_a_hold_metadata_that_is_not_an_object_is_refused() -> None:
    error = refusal(hold_request(metadata=["x"]).validated, InvalidRequest)
    assert (error.message, error.details) == (
        "metadata must be a JSON object with string keys", {"field": "metadata"})  # fmt: skip


# Captures and deadline changes: ids -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [(("h 1", "c1", "1.50", "pos"), "hold_id", "h 1"),
     (("h1", "", "1.50", "pos"), "capture_id", ""),
     (("h1", None, "1.50", "pos"), "capture_id", None),
     (("h1", "c1", "1.50", "p/s"), "initiated_by", "p/s")],
)  # fmt: skip
def test_a_capture_with_a_malformed_id_names_that_id(
    args: tuple[Any, ...], field: str, value: object
) -> None:
    error = refusal(lambda: CaptureRequest(*args).validated("USD"), InvalidRequest)
    assert (error.message, error.details) == (malformed_id(field, value), {"field": field})


@pytest.mark.parametrize(
    ("amount", "currency", "minor"), [("1.50", "USD", 150), (7, "USD", 7), ("1.500", "KWD", 1500)]
)
def test_a_valid_capture_carries_its_ids_and_exact_amount(
    amount: object, currency: str, minor: int
) -> None:
    asked = CaptureRequest("h1", "c1", amount, "pos")  # type: ignore[arg-type]
    captured = asked.validated(currency)
    assert captured == Capture("h1", "c1", minor, "pos")
    assert captured.posting_id == "h1/capture/c1"


def test_a_capture_amount_is_checked_in_the_holds_currency() -> None:
    error = refusal(lambda: CaptureRequest("h1", "c1", "1.5", "pos").validated("JPY"),
                    InvalidAmount)  # fmt: skip
    assert error.message == "amount '1.5' has more than 0 decimal places for JPY"


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [(("h 1", "d1", 60, "ops"), "hold_id", "h 1"),
     (("h1", "d 1", 60, "ops"), "change_id", "d 1"),
     (("h1", "d1", 60, ""), "initiated_by", "")],
)  # fmt: skip
def test_a_deadline_change_with_a_malformed_id_names_that_id(
    args: tuple[Any, ...], field: str, value: object
) -> None:
    error = refusal(DeadlineChange(*args).validated, InvalidRequest)
    assert (error.message, error.details) == (malformed_id(field, value), {"field": field})


# Hold state: what may still be captured ---------------------------------------------------


def state(status: str, amount: int, over: int, captured: int) -> HoldState:
    return HoldState(
        hold_id="h1", status=status, from_account="alice", to_account="shop", amount=amount,
        currency="USD", over_capture=over, captured=captured, remaining=amount - captured,
        expires_at=T0, region="us",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "amount", "over", "captured", "capturable"),
    [(HoldStatus.OPEN, 60, 0, 0, 60), (HoldStatus.OPEN, 60, 5, 0, 65),
     (HoldStatus.OPEN, 60, 5, 20, 45), (HoldStatus.OPEN, 60, 5, 65, 0),
     (HoldStatus.OPEN, 60, 0, 70, 0), ("open", 10, 1, 10, 1),
     (HoldStatus.CAPTURED, 60, 5, 60, 0), (HoldStatus.VOIDED, 60, 5, 0, 0),
     (HoldStatus.EXPIRED, 60, 0, 10, 0), (HoldStatus.REFUSED, 60, 0, 0, 0)],
)  # fmt: skip
def test_an_open_hold_may_take_its_amount_plus_over_capture_less_what_was_taken(
    status: str, amount: int, over: int, captured: int, capturable: int
) -> None:
    held = state(status, amount, over, captured)
    assert held.open is (status == "open")
    assert held.capturable == capturable


# Transactions: legs -----------------------------------------------------------------------


def test_a_leg_parses_from_side_account_amount_currency() -> None:
    assert LegRequest.parse("credit:bob:7:JPY") == LegRequest("bob", "credit", "7", "JPY")


@pytest.mark.parametrize(
    "text", ["debit:alice:12.50", "debit:alice:12.50:USD:x", "", "debit", "debit:a:b:c:d:e"]
)
def test_a_leg_text_without_exactly_four_parts_is_refused_with_an_example(text: str) -> None:
    error = refusal(lambda: LegRequest.parse(text), InvalidRequest)
    assert (error.message, error.details) == (
        f"a leg is side:account:amount:currency, e.g. debit:alice:12.50:USD, got {text!r}",
        {"field": "legs"},
    )


def test_a_valid_transaction_request_becomes_a_transaction_with_every_field_carried() -> None:
    tx = tx_request(description="fx trade", metadata={"rate": "0.92", "desk": 4}).validated()
    assert tx == Transaction(
        "x1",
        [Leg("alice", "debit", 10000, "USD"), Leg("desk", "credit", 10000, "USD"),
         Leg("eurdesk", "debit", 9200, "EUR"), Leg("alice-eur", "credit", 9200, "EUR")],
        "fx",
        "fx trade",
        {"rate": "0.92", "desk": 4},
    )  # fmt: skip


def test_a_transaction_without_description_or_metadata_gets_none_and_an_empty_object() -> None:
    tx = tx_request(legs=pairs(2)).validated()
    assert tx == Transaction(
        "x1", [Leg("a0", "debit", 1, "USD"), Leg("a1", "credit", 1, "USD")], "fx", None, {}
    )


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [({"transaction_id": "x 1"}, "transaction_id", "x 1"),
     ({"transaction_id": None}, "transaction_id", None),
     ({"initiated_by": "f/x"}, "initiated_by", "f/x"),
     ({"initiated_by": ""}, "initiated_by", "")],
)  # fmt: skip
def test_a_transaction_with_a_malformed_id_names_that_id(
    changes: dict[str, Any], field: str, value: object
) -> None:
    error = refusal(tx_request(**changes).validated, InvalidRequest)
    assert (error.message, error.details) == (malformed_id(field, value), {"field": field})


@pytest.mark.parametrize("count", [2, 4, MAX_LEGS - 2, 64])
def test_two_to_sixty_four_legs_are_accepted(count: int) -> None:
    tx = tx_request(legs=pairs(count)).validated()
    assert [leg.account_id for leg in tx.legs] == [f"a{n}" for n in range(count)]


@pytest.mark.parametrize(
    "legs", [[], pairs(2)[:1], pairs(66), pairs(65), tuple(pairs(2)), None, "debit:a:1:USD"]
)
def test_fewer_than_two_more_than_sixty_four_or_no_list_of_legs_is_refused(legs: Any) -> None:
    error = refusal(tx_request(legs=legs).validated, InvalidRequest)
    assert (error.message, error.details) == ("a transaction has 2 to 64 legs", {"field": "legs"})


@pytest.mark.parametrize(
    ("legs", "message"),
    [(["debit:a0:1:USD", "credit:a1:1:USD"], "leg 0 is not a leg"),
     ([*pairs(2), Leg("a2", "debit", 1, "USD")], "leg 2 is not a leg"),
     ([pairs(2)[0], None], "leg 1 is not a leg"),
     ([LegRequest("a0", "take", 1, "USD"), pairs(2)[1]],
      "leg 0: side must be debit or credit, got 'take'"),
     ([pairs(2)[0], LegRequest("a1", "Credit", 1, "USD")],
      "leg 1: side must be debit or credit, got 'Credit'"),
     ([pairs(2)[0], LegRequest("a1", None, 1, "USD")],  # type: ignore[arg-type]
      "leg 1: side must be debit or credit, got None"),
     ([*pairs(2), LegRequest("a0", "credit", 1, "USD"), LegRequest("a3", "debit", 1, "USD")],
      "each account appears in one leg at most")],
)  # fmt: skip
def test_a_malformed_leg_is_refused_as_legs(legs: list[Any], message: str) -> None:
    error = refusal(tx_request(legs=legs).validated, InvalidRequest)
    assert (error.message, error.details) == (message, {"field": "legs"})


@pytest.mark.parametrize(
    ("n", "account", "message"),
    [(0, "a 0", malformed_id("legs[0].account_id", "a 0")),
     (1, "", malformed_id("legs[1].account_id", "")),
     (1, "clearing:us:eu:USD", reserved_account("legs[1].account_id", "clearing:us:eu:USD"))],
)  # fmt: skip
def test_a_legs_malformed_account_is_refused_under_its_position(
    n: int, account: str, message: str
) -> None:
    legs = pairs(2)
    legs[n] = LegRequest(account, legs[n].side, 1, "USD")
    error = refusal(tx_request(legs=legs).validated, InvalidRequest)
    assert (error.message, error.details) == (message, {"field": f"legs[{n}].account_id"})


@pytest.mark.parametrize(
    ("legs", "sums"),
    [([LegRequest("a", "debit", 1, "USD"), LegRequest("b", "credit", 2, "USD")],
      "USD sums to 1"),
     ([LegRequest("a", "debit", 1, "USD"), LegRequest("b", "credit", 2, "USD"),
       LegRequest("c", "debit", 3, "EUR"), LegRequest("d", "credit", 1, "EUR")],
      "EUR sums to -2, USD sums to 1"),
     ([LegRequest("a", "credit", 5, "USD"), LegRequest("b", "debit", 5, "USD"),
       LegRequest("c", "credit", 1, "JPY"), LegRequest("d", "debit", 1, "EUR")],
      "EUR sums to -1, JPY sums to 1")],
)  # fmt: skip
def test_unbalanced_currencies_are_each_named_in_code_order(
    legs: list[LegRequest], sums: str
) -> None:
    error = refusal(tx_request(legs=legs).validated, InvalidAmount)
    assert (error.message, error.details) == (
        f"each currency's legs must sum to zero; {sums}", {"field": "legs"})  # fmt: skip


# Transactions: description and metadata ---------------------------------------------------


@pytest.mark.parametrize("description", ["", "d", "x" * 499, "x" * 500, "é" * 500])
def test_a_transaction_description_of_at_most_500_characters_is_kept(description: str) -> None:
    assert tx_request(description=description).validated().description == description


@pytest.mark.parametrize("description", ["x" * 501, "é" * 501, 7, b"d", {"d": 1}])
def test_a_transaction_description_too_long_or_not_text_is_refused(description: object) -> None:
    error = refusal(tx_request(description=description).validated, InvalidRequest)
    assert (error.message, error.details) == (
        "description must be text of at most 500 characters", {"field": "description"})  # fmt: skip


@pytest.mark.parametrize(
    ("description", "message"),
    [("\x00", "description must not contain NUL characters"),
     ("\udcffab", "description is not valid UTF-8 text (a lone surrogate at position 0)")],
)  # fmt: skip
def test_a_transaction_description_the_store_cannot_keep_is_refused_as_description(
    description: str, message: str
) -> None:
    error = refusal(tx_request(description=description).validated, InvalidRequest)
    assert (error.message, error.details) == (message, {"field": "description"})


def test_a_transaction_metadata_with_a_float_is_refused() -> None:
    error = refusal(tx_request(metadata={"rate": 0.92}).validated, InvalidRequest)
    assert (error.message, error.details) == (
        "metadata numbers must be integers (put decimals in strings)",
        {"field": "metadata"},
    )


# Transactions: fingerprint ----------------------------------------------------------------


def test_a_transaction_fingerprint_is_the_hash_of_its_fields_with_legs_as_lists() -> None:
    tx = tx_request(legs=pairs(2), description="d", metadata={"k": "v"}).validated()
    expected = {
        "transaction_id": "x1",
        "legs": [["a0", "debit", 1, "USD"], ["a1", "credit", 1, "USD"]],
        "initiated_by": "fx",
        "description": "d",
        "metadata": {"k": "v"},
    }
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert tx.fingerprint() == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    "legs",
    [[LegRequest("a0", "debit", 2, "USD"), LegRequest("a1", "credit", 2, "USD")],
     [LegRequest("a0", "credit", 1, "USD"), LegRequest("a1", "debit", 1, "USD")],
     [LegRequest("a0", "debit", 1, "EUR"), LegRequest("a1", "credit", 1, "EUR")],
     [LegRequest("b0", "debit", 1, "USD"), LegRequest("a1", "credit", 1, "USD")],
     [LegRequest("a1", "credit", 1, "USD"), LegRequest("a0", "debit", 1, "USD")],
     [*pairs(2), LegRequest("a2", "debit", 1, "USD"), LegRequest("a3", "credit", 1, "USD")]],
)  # fmt: skip
def test_transactions_that_differ_only_in_their_legs_have_different_fingerprints(
    legs: list[LegRequest],
) -> None:
    base = tx_request(legs=pairs(2)).validated()
    other = tx_request(legs=legs).validated()
    assert other.legs != base.legs
    assert other.fingerprint() != base.fingerprint()
    assert other.fingerprint() == tx_request(legs=legs).validated().fingerprint()
