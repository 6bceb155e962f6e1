"""Amounts: typed text to minor units and back, exactly, with no float on the way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandlink.gateway.core.payments.money import (
    EXPONENTS,
    MAX_AMOUNT,
    AmountError,
    format_amount,
    parse_amount,
)


@given(st.integers(1, MAX_AMOUNT), st.sampled_from(sorted(EXPONENTS)))
def test_what_is_shown_reads_back_to_the_same_minor_units(minor: int, currency: str) -> None:
    shown = format_amount(minor, currency)
    code, number = shown.split(" ")
    assert code == currency
    assert parse_amount(number, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("4.50", "EUR", 450),
        ("4.5", "EUR", 450),
        ("4", "EUR", 400),
        (" 12.00 ", "EUR", 1200),
        ("1500", "JPY", 1500),
        ("0.01", "USD", 1),
    ],
)
def test_amounts_people_type(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "why"),
    [
        ("4.505", "EUR", "2 decimal places"),
        ("1.5", "JPY", "0 decimal places"),
        ("0", "EUR", "above zero"),
        ("-1", "EUR", "above zero"),
        ("NaN", "EUR", "not an amount"),
        ("Infinity", "EUR", "not an amount"),
        ("4,50", "EUR", "not an amount"),
        ("1e12", "EUR", "at most"),
        ("4.50", "XYZ", "unknown currency"),
    ],
)
def test_amounts_nobody_can_pay_are_refused(text: str, currency: str, why: str) -> None:
    with pytest.raises(AmountError, match=why):
        parse_amount(text, currency)


def test_negative_balances_keep_their_sign() -> None:
    assert format_amount(-40_000, "EUR") == "EUR -400.00"
    assert format_amount(5, "JPY") == "JPY 5"
