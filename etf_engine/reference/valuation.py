"""Valuation: the sums per asset, prices as read, NAV and the basket; GetNav, GetBasket, GetHoldings (SPEC §2-4)."""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

from etf_engine import model as m
from etf_engine.numbers import MONEY_DP, NAV_PER_SHARE_DP, PRICE_SCALE, round_half_even
from etf_engine.reference.state import Fund


class Sums(NamedTuple):
    total: int
    committed: int
    liquid: int
    illiquid: int


class PricesRead(NamedTuple):
    by_asset: dict[str, int | None]  # None: missing
    stale: bool
    as_of: int


def _round(value: Fraction, dp: int) -> int:
    """An exact value in units 10^-dp, half-even."""
    return round_half_even(value.numerator * 10**dp, value.denominator)


def _worth(quantity: int, decimals: int, price: int) -> Fraction:
    """quantity smallest units of an asset at price (1e-8 base currency per whole unit)."""
    return Fraction(quantity, 10**decimals) * Fraction(price, PRICE_SCALE)


class Valuation:
    """What a fund holds and is worth now, exact (SPEC §2-4)."""

    def _sums(self, fund: Fund, asset: str, now: int) -> Sums:
        total = committed = liquid = illiquid = 0
        for (custodian_id, symbol), h in fund.holdings.items():
            if symbol != asset:
                continue
            free, unbonding = h.free(now), h.unbonding(now)
            total += free + h.reserved + h.staked + unbonding
            committed += free + h.staked + unbonding
            liquid += free if self._licensed(custodian_id, now) and not self._held_back(fund, custodian_id, symbol) \
                else 0
            illiquid += h.staked + unbonding
        return Sums(total, committed, liquid, illiquid)

    def _prices(self, fund: Fund, now: int) -> PricesRead:
        by_asset: dict[str, int | None] = {}
        stale, as_of = False, 0
        for a in fund.terms.assets:
            tick = self.prices.get((a.asset, fund.terms.base_currency))
            by_asset[a.asset] = None if tick is None else tick[0]
            if tick is None or now - tick[1] > fund.terms.max_price_age_seconds * 1000:
                stale = True
            if tick is not None:
                as_of = max(as_of, tick[1])
        return PricesRead(by_asset, stale, as_of)

    def _nav(self, fund: Fund, now: int, prices: PricesRead) -> Fraction | None:
        """NAV = sum of total(a) / 10^decimals x price(a) + cash - accrued_fees, exact; None when a price is
        missing."""
        if None in prices.by_asset.values():
            return None
        return sum((_worth(self._sums(fund, a, now).total, self.assets[a], p) for a, p in prices.by_asset.items()),
                   Fraction(fund.cash, 100)) - fund.accrued

    def _quantities_per_unit(self, fund: Fund, now: int) -> dict[str, int]:
        t, s = fund.terms, fund.shares
        if s == 0:
            return {a.asset: a.seed_quantity_per_unit for a in t.assets}
        return {a.asset: self._sums(fund, a.asset, now).total * t.creation_unit // s for a in t.assets}

    def _basket(self, fund: Fund, now: int) -> m.Basket:
        t, s = fund.terms, fund.shares
        prices = self._prices(fund, now)
        qpu = self._quantities_per_unit(fund, now)
        cash_component = nav_per_share = nav_per_unit = None  # while a price is missing
        priced = None not in prices.by_asset.values()
        if s == 0:  # the seed basket: its cash needs no price; no shares, so no nav_per_share (SPEC §3)
            cash_component = t.seed_cash_per_unit
        if priced:
            lines_worth = sum((_worth(q, self.assets[a], prices.by_asset[a]) for a, q in qpu.items()), Fraction(0))
            if s > 0:
                nav = self._nav(fund, now, prices)
                per_unit = nav * t.creation_unit / s
                cash_component = _round(per_unit - lines_worth, MONEY_DP)
                nav_per_share = _round(nav / s, NAV_PER_SHARE_DP)
            else:
                per_unit = lines_worth + Fraction(t.seed_cash_per_unit, 100)
            nav_per_unit = _round(per_unit, MONEY_DP)
        return m.Basket(
            fund_id=t.fund_id, creation_unit=t.creation_unit,
            lines=[m.BasketLine(asset=a, quantity_per_unit=q) for a, q in qpu.items()],
            cash_component=cash_component, nav_per_share=nav_per_share, nav_per_unit=nav_per_unit,
            shares_outstanding=s, as_of=prices.as_of, stale=prices.stale, accrued_fees=_round(fund.accrued, MONEY_DP),
        )

    def get_nav(self, fund_id: str, now_ms: int) -> m.Nav:
        fund = self._fund(fund_id)
        prices = self._prices(fund, now_ms)
        nav = self._nav(fund, now_ms, prices)
        lines = []
        for a, price in prices.by_asset.items():
            total = self._sums(fund, a, now_ms).total
            value = None if price is None else _round(_worth(total, self.assets[a], price), MONEY_DP)
            lines.append(m.NavLine(asset=a, quantity=total, price=price, value=value))
        return m.Nav(
            fund_id=fund_id, nav=None if nav is None else _round(nav, MONEY_DP),
            nav_per_share=None if nav is None or fund.shares == 0 else _round(nav / fund.shares, NAV_PER_SHARE_DP),
            shares_outstanding=fund.shares, cash=fund.cash, as_of=prices.as_of, stale=prices.stale, lines=lines,
            accrued_fees=_round(fund.accrued, MONEY_DP),
        )

    def get_basket(self, fund_id: str, now_ms: int) -> m.Basket:
        return self._basket(self._fund(fund_id), now_ms)

    def get_holdings(self, fund_id: str, now_ms: int) -> m.Holdings:
        fund = self._fund(fund_id)
        rows = [
            m.HoldingRow(custodian_id=c, asset=a, available=h.free(now_ms), reserved=h.reserved, staked=h.staked,
                         unbonding=h.unbonding(now_ms), licensed=self._licensed(c, now_ms),
                         tiers=self._tiers(fund, c, a, now_ms))
            for (c, a), h in sorted(fund.holdings.items()) if not h.is_empty(now_ms)
        ]
        assets = [
            m.AssetSummary(asset=a.asset, **self._sums(fund, a.asset, now_ms)._asdict(),
                           staking_cap=a.staking_cap, liquidity_buffer=a.liquidity_buffer)
            for a in fund.terms.assets
        ]
        return m.Holdings(fund_id=fund_id, holdings=rows, assets=assets,
                          fee_payable=list(self._fee_payable_lines(fund)))
