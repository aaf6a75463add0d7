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
        ("0.01", "USD", 1),
        ("0012.50", "USD", 1250),
        ("1000", "JPY", 1000),
        ("1.234", "KWD", 1234),
        (Decimal("7.10"), "EUR", 710),
        ("92233720368547758.07", "USD", MAX_MINOR_UNITS),
        (Decimal("1E+3"), "USD", 100000),
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
        ("NaN", "USD", "not a decimal"),
        ("Infinity", "USD", "not a decimal"),
        ("-inf", "USD", "not a decimal"),
        (Decimal("NaN"), "USD", "finite"),
        (Decimal("-1.00"), "USD", "positive"),
        ("12,50", "USD", "not a decimal"),
        ("", "USD", "not a decimal"),
        ("1e400", "USD", "not a decimal"),
        # The grammar: nothing but ASCII digits and one point (issue 12, finding 8).
        ("1e3", "USD", "not a decimal"),
        ("12E2", "USD", "not a decimal"),
        ("  1.00", "USD", "not a decimal"),
        (" 0.01 ", "USD", "not a decimal"),
        ("\xa01.00", "USD", "not a decimal"),
        ("1.00\n", "USD", "not a decimal"),
        ("+1", "USD", "not a decimal"),
        ("1_000", "USD", "not a decimal"),
        ("١٢", "USD", "not a decimal"),
        ("１２", "USD", "not a decimal"),
        ("1.", "USD", "not a decimal"),
        (".5", "USD", "not a decimal"),
        ("1.2.3", "USD", "not a decimal"),
        ("1.50000000000000000000000000000000", "USD", "decimal places"),
        ("1.0", "JPY", "decimal places"),
        ("9" * 41, "USD", "longer than"),
        (MAX_MINOR_UNITS + 1, "USD", "exceeds"),
        ("92233720368547758.08", "USD", "exceeds"),
        ([100], "USD", "list"),
        ("1.0000000000000000000000000001", "USD", "decimal places"),
        ("1e999999", "USD", "not a decimal"),
        ("1e-999999", "USD", "not a decimal"),
        (Decimal("1e999999"), "USD", "can hold"),
        (Decimal("1e-999999"), "USD", "can hold"),
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


def reference_minor(text: str, exponent: int) -> int | None:
    """The amount grammar, written out by hand (no regex, no int() on the
    text): what `parse_amount` must agree with."""
    digits = "0123456789"
    whole, point, fraction = text.partition(".")
    if not whole or any(c not in digits for c in whole):
        return None
    if point and (not fraction or any(c not in digits for c in fraction)):
        return None
    if len(fraction) > exponent or len(text) > 40:
        return None
    value = 0
    for c in whole + fraction.ljust(exponent, "0"):
        value = value * 10 + digits.index(c)
    return value if 0 < value <= MAX_MINOR_UNITS else None


@given(
    text=st.one_of(
        st.text(max_size=24),
        st.text(alphabet="0123456789.", max_size=24),
        st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,4})?", fullmatch=True),
    ),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_any_text_is_an_amount_exactly_when_the_grammar_says_so(text: str, currency: str) -> None:
    expected = reference_minor(text, MINOR_UNITS[currency])
    try:
        got: int | None = parse_amount(text, currency)
    except InvalidAmount:
        got = None
    assert got == expected
