"""Prices: PublishPrices and its PriceSet event, ListPrices (SPEC §7)."""

from __future__ import annotations

from etf_engine import model as m
from etf_engine.errors import invalid
from etf_engine.reference.checks import _CURRENCY, _match, _tick_price


class Prices:
    """The latest accepted price per (asset, currency)."""

    def _publish_prices(self, c: m.PublishPrices, now: int) -> tuple[m.PublishResult, list[m.Event]]:
        ticks = []
        for i, tick in enumerate(c.ticks):
            at = f"ticks[{i}]"
            if tick.asset not in self.assets:
                raise invalid(f"{at}.asset", f"unknown asset {tick.asset!r}")
            _match(_CURRENCY, tick.currency, f"{at}.currency")
            price = _tick_price(tick, at, now)
            ticks.append(m.PriceSet(at=now, asset=tick.asset, currency=tick.currency, price=price,
                                    as_of=tick.as_of_unix_ms))
        events: list[m.Event] = []
        ignored = []
        for i, tick in enumerate(ticks):  # in order: a later tick compares against an earlier one of the batch
            current = self.prices.get((tick.asset, tick.currency))
            if current is None or tick.as_of > current[1]:
                events += self._commit(tick)
            else:
                ignored.append(m.IgnoredTick(index=i, asset=tick.asset, currency=tick.currency,
                                             as_of_unix_ms=tick.as_of, current_as_of_unix_ms=current[1]))
        return m.PublishResult(applied=len(events), ignored=len(ignored), ignored_ticks=ignored), events

    def _on_price(self, e: m.PriceSet) -> None:
        self.prices[(e.asset, e.currency)] = (e.price, e.as_of)

    def list_prices(self) -> list[tuple[str, str, int, int]]:
        return [(a, cur, p, as_of) for (a, cur), (p, as_of) in sorted(self.prices.items())]
