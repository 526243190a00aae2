"""Input checks and small helpers several concepts use: ids, codes, money, fractions, ticks, text (SPEC §1, §11)."""

from __future__ import annotations

import re

from etf_engine import model as m
from etf_engine.errors import ALREADY_EXISTS, EngineError, invalid, out_of_range
from etf_engine.numbers import (
    FRACTION_DP,
    FRACTION_SCALE,
    MAX_MONEY,
    MAX_PRICE,
    MAX_QUANTITY,
    MONEY_DP,
    PRICE_DP,
    parse_scaled,
)

_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SYMBOL = re.compile(r"[A-Z0-9]{2,10}")
_CURRENCY = re.compile(r"[A-Z]{3,10}")


def _match(pattern: re.Pattern[str], value: str, name: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise invalid(name, f"{value!r} does not match {pattern.pattern}")
    return value


def _at_least(value: int, low: int, name: str, high: int | None = None) -> int:
    if value < low:
        raise invalid(name, f"must be at least {low}")
    if high is not None and value > high:
        raise out_of_range(name, f"must be at most {high}")
    return value


def _one_of(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise invalid(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _money(text: str, name: str, *, signed: bool = False) -> int:
    return parse_scaled(text, name, MONEY_DP, signed=signed, limit=MAX_MONEY)


def _fraction(text: str, name: str) -> int:
    value = parse_scaled(text, name, FRACTION_DP)
    if value > FRACTION_SCALE:
        raise invalid(name, f"{text!r} is above 1")
    return value


def _tick_price(tick: m.PriceTick, at: str, now: int) -> int:
    """A §7 tick's price, checked with its as-of time; ``at`` is ``ticks[i]`` (PublishPrices, StrikeNav)."""
    price = parse_scaled(tick.price, f"{at}.price", PRICE_DP, limit=MAX_PRICE)
    if price == 0:
        raise invalid(f"{at}.price", "must be positive")
    _at_least(tick.as_of_unix_ms, 0, f"{at}.as_of_unix_ms")
    if tick.as_of_unix_ms > now + m.FUTURE_TOLERANCE_MS:
        raise invalid(f"{at}.as_of_unix_ms", "more than 5 s in the future")
    return price


def _text(value: str, name: str) -> str:
    """A free-text reason or label: a string of at most 256 characters."""
    if not isinstance(value, str) or len(value) > m.MAX_REASON:
        raise invalid(name, f"must be a text of at most {m.MAX_REASON} characters")
    return value


def _positive(text: str, name: str, decimals: int) -> int:
    quantity = parse_scaled(text, name, decimals, limit=MAX_QUANTITY)
    if quantity == 0:
        raise invalid(name, "must be positive")
    return quantity


def _sorted_ids(ids: list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(ids)))


def _bucket(value: int, name: str) -> None:
    if value > MAX_QUANTITY:
        raise out_of_range(name, "a holding would exceed 10^30 smallest units")


def _exists(what: str, ident: str) -> EngineError:
    return EngineError(ALREADY_EXISTS, f"{what} {ident!r} already exists")
