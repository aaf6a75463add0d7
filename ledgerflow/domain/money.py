"""Exact money: integer minor units with the currency beside them.

An amount is stored and moved as an `int` count of the currency's minor unit
(cents for USD, yen for JPY, fils for KWD). Decimal strings are accepted at the
edges and converted exactly; floats are refused, because `0.1 + 0.2` is not a
price anyone agreed to.
"""

from __future__ import annotations

import re
from decimal import Decimal

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


#: The decimal grammar of an amount in major units: ASCII digits, optionally
#: a point followed by one or more digits, nothing before or after. No sign,
#: no exponent, no spaces, no separators, no digits from other scripts.
_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]+))?", re.ASCII)
#: Longer than any BIGINT amount in any currency: refused before any parsing.
_MAX_DECIMAL_CHARS = 40


def parse_amount(value: object, currency: str) -> int:
    """Convert an amount to integer minor units of `currency`, exactly.

    `value` is either an `int` (already minor units) or a decimal string in
    major units (`"12.50"` USD is 1250): ASCII digits, optionally a point and
    at most the currency's minor digits, nothing before or after. A `Decimal`
    is read through the same grammar (in plain notation). Anything else, a
    non-positive amount, more decimals than the currency has, or a value
    beyond BIGINT is refused.
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
    as 1.00. Python's own number parsing is not used either: it accepts
    exponents, signs, underscores, surrounding space and digits of every
    script ("١٢" is 12 to `int`), none of which belongs in an amount.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidAmount(f"amount {value!r} is not a finite number")
        if value.is_signed() and value != 0:
            raise InvalidAmount(f"amount must be positive, got {value!r}")
        digits, power = value.as_tuple()[1:]
        assert isinstance(power, int)
        if len(digits) + max(power, 0) > _MAX_DECIMAL_CHARS or power < -_MAX_DECIMAL_CHARS:
            raise InvalidAmount(f"amount {value!r} is not an amount the ledger can hold")
        value = format(abs(value), "f")
    if len(value) > _MAX_DECIMAL_CHARS:
        raise InvalidAmount(
            f"amount {value[:_MAX_DECIMAL_CHARS]!r}... is longer than any amount the ledger holds"
        )
    match = _DECIMAL.fullmatch(value)
    if match is None and _DECIMAL.fullmatch(value[1:]) and value.startswith("-"):
        raise InvalidAmount(f"amount must be positive, got {value!r}")
    if match is None:
        raise InvalidAmount(
            f"amount {value!r} is not a decimal amount: ASCII digits, optionally a point and "
            f"at most {exponent} decimal place(s) for {currency}, nothing before or after"
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > exponent:
        raise InvalidAmount(
            f"amount {value!r} has more than {exponent} decimal places for {currency}"
        )
    return int(whole + fraction.ljust(exponent, "0"))


def format_amount(minor: int, currency: str) -> str:
    """`1250, "USD"` → `"12.50 USD"`; exact for any size."""
    exponent = MINOR_UNITS.get(currency, 0)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    whole, frac = (digits[:-exponent], digits[-exponent:]) if exponent else (digits, "")
    return f"{sign}{whole}{'.' + frac if frac else ''} {currency}"
