"""Exact money: integer minor units with the currency beside them.

An amount is stored and moved as an `int` count of the currency's minor unit
(cents for USD, yen for JPY, fils for KWD). Decimal strings are accepted at the
edges and converted exactly; floats are refused, because `0.1 + 0.2` is not a
price anyone agreed to.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ledgerflow.domain.errors import InvalidAmount, UnknownCurrency

#: ISO 4217 minor-unit exponents for the currencies the ledger accepts.
MINOR_UNITS: dict[str, int] = {
    "AED": 2, "ARS": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0,
    "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2,
    "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0,
    "KWD": 3, "MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2,
    "PLN": 2, "QAR": 2, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3,
    "TRY": 2, "TWD": 2, "UAH": 2, "USD": 2, "VND": 0, "ZAR": 2,
}  # fmt: skip

#: Largest amount or balance, in minor units: PostgreSQL's BIGINT.
MAX_MINOR_UNITS = 2**63 - 1


def minor_units(currency: str) -> int:
    """The number of decimal places of `currency`'s minor unit."""
    if not isinstance(currency, str) or currency not in MINOR_UNITS:
        raise UnknownCurrency(
            f"unknown currency {currency!r}: expected an ISO 4217 code such as 'USD'",
            currency=str(currency),
        )
    return MINOR_UNITS[currency]


def parse_amount(value: object, currency: str) -> int:
    """Convert an amount to integer minor units of `currency`, exactly.

    `value` is either an `int` (already minor units) or a decimal string in
    major units (`"12.50"` USD is 1250). Anything else, a non-positive amount,
    more decimals than the currency has, or a value beyond BIGINT is refused.
    """
    exponent = minor_units(currency)
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidAmount(
            f"amount must be an integer of minor units or a decimal string, "
            f"got {type(value).__name__}",
        )
    minor = value if isinstance(value, int) else _decimal_to_minor(value, exponent, currency)
    if minor <= 0:
        raise InvalidAmount(f"amount must be positive, got {value!r}")
    if minor > MAX_MINOR_UNITS:
        raise InvalidAmount(f"amount {value!r} exceeds the largest amount the ledger holds")
    return minor


def _decimal_to_minor(value: str | Decimal, exponent: int, currency: str) -> int:
    """Exact conversion by integer arithmetic on the decimal's digits.

    No `Decimal` arithmetic is used: it rounds to the context's precision
    (28 digits by default), which would accept "1.0000000000000000000000000001"
    as 1.00, and it raises on huge exponents.
    """
    try:
        major = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise InvalidAmount(f"amount {value!r} is not a decimal number") from None
    if not major.is_finite():
        raise InvalidAmount(f"amount {value!r} is not a finite number")
    sign, digits, power = major.as_tuple()
    assert isinstance(power, int)
    shift = power + exponent  # the decimal point's move, in minor units
    if len(digits) + shift > 40:  # far beyond BIGINT; do not build the number
        raise InvalidAmount(f"amount {value!r} exceeds the largest amount the ledger holds")
    coefficient: int = int("".join(map(str, digits)) or "0")
    if shift >= 0:
        minor: int = coefficient * 10**shift
    else:
        minor, remainder = divmod(coefficient, 10**-shift)
        if remainder:
            raise InvalidAmount(
                f"amount {value!r} has more than {exponent} decimal places for {currency}"
            )
    return -minor if sign else minor


def format_amount(minor: int, currency: str) -> str:
    """`1250, "USD"` → `"12.50 USD"`; exact for any size."""
    exponent = MINOR_UNITS.get(currency, 0)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    whole, frac = (digits[:-exponent], digits[-exponent:]) if exponent else (digits, "")
    return f"{sign}{whole}{'.' + frac if frac else ''} {currency}"
