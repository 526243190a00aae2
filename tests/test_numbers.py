"""etf_engine.numbers: exact decimal text <-> scaled integers, and half-even rounding (SPEC §1)."""

from __future__ import annotations

import pytest

from etf_engine.errors import INVALID_ARGUMENT, OUT_OF_RANGE, EngineError
from etf_engine.numbers import (
    MAX_CREATION_UNIT,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SHARES,
    POW10,
    PRICE_SCALE,
    format_fraction,
    format_money,
    format_price,
    format_quantity,
    format_scaled,
    parse_scaled,
    round_half_even,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "dp", "signed", "expected"), [
    ("0", 2, False, 0),
    ("1", 2, False, 100),
    ("22.72", 2, False, 2272),
    ("22.7", 2, False, 2270),
    ("00012", 2, False, 1200),  # leading zeros are harmless
    ("0.30", 4, False, 3000),
    ("1.00000001", 8, False, 100_000_001),
    ("0.000000000000000001", 18, False, 1),
    ("1234567.891234567891234567", 18, False, 1_234_567_891_234_567_891_234_567),  # > 10^24: exact
    ("5", 0, False, 5),
    ("-765.44", 2, True, -76_544),
    ("-0", 2, True, 0),
])
def test_parse(text, dp, signed, expected):
    assert parse_scaled(text, "f", dp, signed=signed) == expected


def refusal(text, dp=2, **kw) -> EngineError:
    with pytest.raises(EngineError) as info:
        parse_scaled(text, "some.field", dp, **kw)
    assert info.value.message.startswith("some.field:"), info.value  # names the field
    return info.value


@pytest.mark.parametrize("text", [
    "", " ", " 1", "1 ", "1\n", "1e3", "1E3", "1e-2", "+1", "1.", ".5", "1,5", "1_000", "0x1", "--1", "-+1",
    "NaN", "nan", "inf", "Infinity", "1.2.3", "\u0661", "\uff11", "1.0\u0660",
])
def test_malformed_is_invalid_argument(text):
    assert refusal(text, signed=True).code == INVALID_ARGUMENT


@pytest.mark.parametrize(("text", "dp"), [("0.001", 2), ("1.000000001", 8), ("0.0000000000000000001", 18),
                                          ("1.5", 0), ("0.00001", 4)])
def test_too_many_fraction_digits(text, dp):
    assert refusal(text, dp).code == INVALID_ARGUMENT


def test_sign_only_where_allowed():
    assert refusal("-1").code == INVALID_ARGUMENT
    assert refusal("-0").code == INVALID_ARGUMENT
    assert parse_scaled("-1", "f", 2, signed=True) == -100


@pytest.mark.parametrize("value", [5, 5.0, None, b"5"])
def test_not_a_string(value):
    assert refusal(value).code == INVALID_ARGUMENT


@pytest.mark.parametrize(("text", "dp", "limit"), [
    ("1000000000000", 8, MAX_PRICE),  # 10^12 per whole unit
    ("10000000000000000000000", 8, MAX_QUANTITY),  # 10^30 satoshis
    ("1000000000000", 18, MAX_QUANTITY),  # 10^30 wei
])
def test_limit_is_inclusive(text, dp, limit):
    assert parse_scaled(text, "f", dp, limit=limit) == limit


@pytest.mark.parametrize(("text", "dp", "limit"), [
    ("1000000000000.00000001", 8, MAX_PRICE),
    ("10000000000000000000000.00000001", 8, MAX_QUANTITY),
    ("1000000000000.000000000000000001", 18, MAX_QUANTITY),
])
def test_beyond_the_limit_is_out_of_range(text, dp, limit):
    assert refusal(text, dp, limit=limit).code == OUT_OF_RANGE


def test_limit_bounds_the_magnitude_of_signed_values():
    assert parse_scaled("-10", "f", 0, signed=True, limit=10) == -10
    assert refusal("-11", 0, signed=True, limit=10).code == OUT_OF_RANGE


def test_absurdly_long_numbers_are_out_of_range_without_a_limit():
    assert parse_scaled("9" * 40, "f", 0) == 10**40 - 1
    assert refusal("9" * 41, 0).code == OUT_OF_RANGE


def test_limits():
    assert (MAX_QUANTITY, MAX_SHARES, MAX_CREATION_UNIT) == (10**30, 10**15, 10**8)
    assert MAX_PRICE == 10**12 * 10**8 == 10**12 * PRICE_SCALE
    assert POW10[30] == 10**30 and all(type(p) is int for p in POW10)


@pytest.mark.parametrize(("value", "dp", "expected"), [
    (2272, 2, "22.72"), (5, 2, "0.05"), (-5, 2, "-0.05"), (0, 2, "0.00"), (-76_544, 2, "-765.44"),
    (100_000_001, 8, "1.00000001"), (7, 0, "7"),
])
def test_format_scaled(value, dp, expected):
    assert format_scaled(value, dp) == expected


@pytest.mark.parametrize(("value", "decimals", "expected"), [
    (150_000_000, 8, "1.5"), (100_000_000, 8, "1"), (0, 8, "0"), (1, 18, "0.000000000000000001"),
    (2 * 10**24 + 2, 18, "2000000.000000000000000002"), (5, 0, "5"), (-1, 8, "-0.00000001"),
])
def test_format_quantity(value, decimals, expected):
    assert format_quantity(value, decimals) == expected


def test_format_price_money_fraction():
    assert format_price(50_000_000_000_000) == "500000"
    assert format_price(61_234_567_890_000) == "612345.6789"
    assert format_price(1) == "0.00000001"
    assert format_money(-1) == "-0.01"
    assert format_money(700_000_00) == "700000.00"
    assert (format_fraction(3000), format_fraction(10_000), format_fraction(1234), format_fraction(0)) == (
        "0.30", "1.00", "0.1234", "0.00")


@pytest.mark.parametrize(("text", "dp"), [("22.72", 2), ("-765.44", 2), ("1.00000001", 8), ("0.3000", 4),
                                          ("1234567.891234567891234567", 18)])
def test_round_trip(text, dp):
    assert format_scaled(parse_scaled(text, "f", dp, signed=True), dp) == text


@pytest.mark.parametrize(("num", "den", "expected"), [
    (5, 10, 0), (15, 10, 2), (25, 10, 2), (35, 10, 4),  # ties go to the even neighbour
    (-5, 10, 0), (-15, 10, -2), (-25, 10, -2), (-35, 10, -4),
    (14, 10, 1), (16, 10, 2), (-14, 10, -1), (-16, 10, -2),  # not ties: nearest
    (10, 10, 1), (-10, 10, -1), (0, 7, 0),
    (10**30 + 1, 2, 10**30 // 2), (10**30 + 3, 2, 10**30 // 2 + 2),  # big ties, exactly
    (2 * 10**40 + 1, 2 * 10**10, 10**30),
])
def test_round_half_even(num, den, expected):
    assert round_half_even(num, den) == expected
