from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.domain.errors import InvalidAmount, UnknownCurrency
from ledgerflow.domain.money import MAX_MINOR_UNITS, MINOR_UNITS, format_amount, parse_amount


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        (1250, "USD", 1250),
        ("12.50", "USD", 1250),
        ("12.5", "USD", 1250),
        (" 0.01 ", "USD", 1),
        ("1000", "JPY", 1000),
        ("1.234", "KWD", 1234),
        (Decimal("7.10"), "EUR", 710),
        ("92233720368547758.07", "USD", MAX_MINOR_UNITS),
        ("1.50000000000000000000000000000000", "USD", 150),
        ("12E2", "USD", 120000),
    ],
)
def test_amounts_convert_exactly(value: object, currency: str, minor: int) -> None:
    assert parse_amount(value, currency) == minor


@pytest.mark.parametrize(
    ("value", "currency", "message"),
    [
        (0, "USD", "positive"),
        (-5, "USD", "positive"),
        ("-0.01", "USD", "positive"),
        ("0.00", "USD", "positive"),
        ("1.001", "USD", "decimal places"),
        ("1.5", "JPY", "decimal places"),
        (12.5, "USD", "float"),
        (True, "USD", "bool"),
        (None, "USD", "NoneType"),
        ("NaN", "USD", "finite"),
        ("Infinity", "USD", "finite"),
        ("-inf", "USD", "finite"),
        ("12,50", "USD", "not a decimal"),
        ("", "USD", "not a decimal"),
        ("1e400", "USD", "exceeds"),
        (MAX_MINOR_UNITS + 1, "USD", "exceeds"),
        ("92233720368547758.08", "USD", "exceeds"),
        ([100], "USD", "list"),
        ("1.0000000000000000000000000001", "USD", "decimal places"),
        ("1e999999", "USD", "exceeds"),
        ("1e-999999", "USD", "decimal places"),
        ("123456789012345678901234567890.5", "USD", "exceeds"),
    ],
)
def test_bad_amounts_are_refused_with_a_reason(value: object, currency: str, message: str) -> None:
    with pytest.raises(InvalidAmount, match=message):
        parse_amount(value, currency)


@pytest.mark.parametrize("currency", ["usd", "XXX", "US", "", None, 840])
def test_unknown_currencies_are_refused(currency: object) -> None:
    with pytest.raises(UnknownCurrency):
        parse_amount(100, currency)  # type: ignore[arg-type]


@given(
    minor=st.integers(min_value=1, max_value=MAX_MINOR_UNITS),
    currency=st.sampled_from(sorted(MINOR_UNITS)),
)
def test_formatting_round_trips_exactly(minor: int, currency: str) -> None:
    text, code = format_amount(minor, currency).split(" ")
    assert code == currency
    assert parse_amount(text, currency) == minor


def test_negative_and_small_amounts_format() -> None:
    assert format_amount(-5, "USD") == "-0.05 USD"
    assert format_amount(7, "JPY") == "7 JPY"
    assert format_amount(1, "KWD") == "0.001 KWD"
