"""Exact decimal text <-> scaled integers, and the one rounding rule (half-even).

Every figure inside the engine is an integer count of a fixed unit: an asset's smallest unit,
1e-8 of base currency per whole asset for prices, cents for money, 1e-4 for fractions and
nav_per_share. No float is ever produced or accepted.
"""

import re

from etf_engine.errors import invalid, out_of_range, quote

PRICE_DP = 8
MONEY_DP = 2
FRACTION_DP = 4
NAV_PER_SHARE_DP = 4
RATE_DP = 6  # a fee rate (SPEC §17)
# An exact accrued fee (SPEC §17) is a whole number of 10^-ACCRUED_DP base currency: cents, and any
# quantity of any asset at any price (10^-decimals x 10^-PRICE_DP), are whole numbers of it.
ACCRUED_DP = 8 + 18  # PRICE_DP + MAX_DECIMALS

PRICE_SCALE = 10**PRICE_DP
FRACTION_SCALE = 10**FRACTION_DP
RATE_SCALE = 10**RATE_DP

MAX_QUANTITY = 10**30  # smallest units
MAX_PRICE = 10**12 * PRICE_SCALE
MAX_SHARES = 10**15
MAX_CREATION_UNIT = 10**8
MAX_SECONDS = 10**9  # a duration (price age, unbonding period): about 31 years
MAX_MONEY = 10**30  # cents; far beyond any fund, small enough to stay a sane number
MAX_DECIMALS = 18

_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def parse_scaled(text: str, field: str, dp: int, *, signed: bool = False, limit: int | None = None) -> int:
    """Parse a plain decimal string into an integer of units 10^-dp.

    Refuses (INVALID_ARGUMENT naming ``field``) empty text, exponents, '+', whitespace, a '-'
    where ``signed`` is false and more than ``dp`` fraction digits; refuses (OUT_OF_RANGE) a
    magnitude beyond ``limit``.
    """
    if not isinstance(text, str):
        raise invalid(field, f"expected a decimal string, got {type(text).__name__}")
    m = _DECIMAL.fullmatch(text)
    if m is None:
        raise invalid(field, f"{quote(text)} is not a plain decimal number")
    sign, whole, frac = m.groups()
    if sign and not signed:
        raise invalid(field, f"{quote(text)} must not be negative")
    frac = frac or ""
    if len(frac) > dp:
        raise invalid(field, f"{quote(text)} has more than {dp} fraction digits")
    if len(whole) > 40:
        raise out_of_range(field, f"{quote(text)} is too large")
    value = int(whole + frac.ljust(dp, "0"))
    if limit is not None and value > limit:
        raise out_of_range(field, f"{quote(text)} exceeds the limit {format_scaled(limit, dp)}")
    return -value if sign else value


def format_scaled(value: int, dp: int, *, min_dp: int | None = None) -> str:
    """Integer of units 10^-dp -> decimal text with at least ``min_dp`` (default: dp) fraction digits."""
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(dp + 1, "0")
    whole, frac = (digits[:-dp], digits[-dp:]) if dp else (digits, "")
    keep = dp if min_dp is None else min_dp
    frac = frac.rstrip("0").ljust(keep, "0") if keep < dp else frac
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def format_quantity(value: int, decimals: int) -> str:
    return format_scaled(value, decimals, min_dp=0)


def format_price(value: int) -> str:
    return format_scaled(value, PRICE_DP, min_dp=0)


def format_money(cents: int) -> str:
    return format_scaled(cents, MONEY_DP)


def format_fraction(value: int) -> str:
    return format_scaled(value, FRACTION_DP, min_dp=2)


def round_half_even(num: int, den: int) -> int:
    """num / den rounded to the nearest integer, ties to even; den > 0."""
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q % 2 == 1):
        q += 1
    return q

# Powers of ten as Python ints, for compiled code (where a literal 10**n may be folded as a C double).
POW10 = tuple(10**i for i in range(64))
