"""Amounts: integer minor units of one ISO 4217 currency, never floats.

An amount typed by a person ("4.50") is read with ``Decimal`` and must have no more decimals
than its currency has (a cent is the smallest EUR amount); what leaves for a display is
formatted from the integer.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

# Minor-unit exponents (ISO 4217) of the currencies a venue may run in.
EXPONENTS: Final = {
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HUF": 2,
    "JPY": 0,
    "NOK": 2,
    "NZD": 2,
    "PLN": 2,
    "SEK": 2,
    "USD": 2,
}
# The most one request may move: far below 2^53 (exact in any JSON reader) and 2^63.
MAX_AMOUNT: Final = 10**11


class AmountError(ValueError):
    """An amount or currency nobody can pay in; ``str()`` says why."""


def exponent(currency: str) -> int:
    try:
        return EXPONENTS[currency]
    except (KeyError, TypeError):
        raise AmountError(f"unknown currency {currency!r}: use an ISO 4217 code") from None


def check_minor(amount: object) -> int:
    """A positive whole number of minor units within MAX_AMOUNT."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise AmountError("an amount is a whole number of minor units (cents), not a fraction")
    if amount <= 0:
        raise AmountError("an amount must be above zero")
    if amount > MAX_AMOUNT:
        raise AmountError(f"an amount must be at most {MAX_AMOUNT} minor units")
    return amount


def parse_amount(text: str, currency: str) -> int:
    """ "4.50" in EUR -> 450."""
    places = exponent(currency)
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise AmountError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise AmountError(f"not an amount: {text!r}")
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        raise AmountError(f"{currency} has {places} decimal places: {text!r} has more")
    return check_minor(int(minor))


def format_amount(minor: int, currency: str) -> str:
    """450 in EUR -> "EUR 4.50"; negative amounts keep their sign."""
    places = EXPONENTS.get(currency, 2)
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), 10**places)
    return f"{currency} {sign}{units}.{cents:0{places}d}" if places else f"{currency} {sign}{units}"
