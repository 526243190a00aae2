"""Storage tiers: held coins by tier, Sweep, the storage-ratio policy, breach and idle (SPEC §18)."""

from __future__ import annotations

from typing import NamedTuple

from etf_engine import calendar as cal_
from etf_engine import model as m
from etf_engine.errors import invalid, precondition
from etf_engine.numbers import FRACTION_SCALE, MAX_SECONDS
from etf_engine.reference.checks import _at_least, _fraction, _one_of, _positive
from etf_engine.reference.state import Fund, Holding
from etf_engine.reference.state import leaving as leaving_tiers


class Figures(NamedTuple):
    """A holding's tiers against its policy at one instant."""

    cold: int
    warm: int
    hot: int
    cold_required: int
    hot_allowance: int

    @property
    def breach(self) -> bool:
        return self.cold < self.cold_required

    @property
    def over(self) -> bool:
        return self.hot > self.hot_allowance


class Storage:
    """Where a fund's held coins are kept, and whether that meets the custodian's storage ratio."""

    # -- instructions ------------------------------------------------------------------------------
    def _sweep(self, c: m.Sweep, now: int) -> tuple[None, list[m.Event]]:
        fund = self._fund(c.fund_id)
        self._custodian(c.custodian_id)
        if fund.asset(c.asset) is None:
            raise invalid("asset", f"{c.asset!r} is not an asset of fund {c.fund_id!r}")
        quantity = _positive(c.quantity, "quantity", self.assets[c.asset])
        _one_of(c.from_tier, m.TIERS, "from_tier")
        _one_of(c.to_tier, m.TIERS, "to_tier")
        if c.to_tier == c.from_tier:
            raise invalid("to_tier", f"{c.to_tier} is from_tier too")
        tiers = dict(zip(m.TIERS, self._holding(fund, c.custodian_id, c.asset).tiers(now), strict=True))
        if tiers[c.from_tier] < quantity:
            raise precondition(m.INSUFFICIENT_TIER_BALANCE, f"{c.from_tier} holds {tiers[c.from_tier]} < {quantity}")
        return None, self._commit(m.Swept(at=now, fund_id=c.fund_id, custodian_id=c.custodian_id, asset=c.asset,
                                          quantity=quantity, from_tier=c.from_tier, to_tier=c.to_tier))

    def _on_swept(self, e: m.Swept) -> None:
        holding = self._live(e.fund_id, e.custodian_id, e.asset, e.at)
        for tier, sign in ((e.from_tier, -1), (e.to_tier, 1)):
            if tier == m.HOT:
                holding.hot += sign * e.quantity
            elif tier == m.WARM:
                holding.warm += sign * e.quantity

    def _set_policy(self, c: m.SetStoragePolicy, now: int) -> tuple[None, list[m.Event]]:
        self._custodian(c.custodian_id)
        ratio = _fraction(c.min_cold_ratio, "min_cold_ratio")
        _at_least(c.max_hot_seconds, 0, "max_hot_seconds", MAX_SECONDS)
        return None, self._commit(m.StoragePolicySet(at=now, custodian_id=c.custodian_id, min_cold_ratio=ratio,
                                                     max_hot_seconds=c.max_hot_seconds))

    def _on_policy(self, e: m.StoragePolicySet) -> None:
        self.storage_policies[e.custodian_id] = (e.min_cold_ratio, e.max_hot_seconds)

    def _policy(self, custodian_id: str) -> tuple[int, int]:
        """(min_cold_ratio 1e-4, max_hot_seconds) of a custodian."""
        return self.storage_policies.get(custodian_id, (m.DEFAULT_MIN_COLD_RATIO, m.DEFAULT_MAX_HOT_SECONDS))

    # -- the figures -------------------------------------------------------------------------------
    def _payouts_due(self, fund: Fund, custodian_id: str, asset: str, t: int) -> int:
        """Legs there of the fund's ACCEPTED redemptions settling on or before the next dealing day."""
        next_day = ""
        if fund.terms.calendar_id:
            calendar = self.calendars[fund.terms.calendar_id]
            next_day = cal_.next_dealing_day(calendar, cal_.local_date(calendar, t)).isoformat()
        return sum(leg.quantity for o in self._fund_orders(fund)
                   if o.status == m.ACCEPTED and o.side == m.REDEEM
                   and (not next_day or not o.settlement_date or o.settlement_date <= next_day)
                   for leg in o.legs if (leg.custodian_id, leg.asset) == (custodian_id, asset))

    def _figures(self, fund: Fund, custodian_id: str, asset: str, t: int, leaving: int = 0) -> Figures:
        """The holding's figures at ``t``; ``leaving``: as if that quantity had left held (a strike's
        in-kind fee, before it applies)."""
        cold, warm, hot = leaving_tiers(self._holding(fund, custodian_id, asset).tiers(t), leaving)
        own = fund.asset(asset).min_cold_ratio
        ratio = own if own is not None else self._policy(custodian_id)[0]
        held = cold + warm + hot
        due = self._payouts_due(fund, custodian_id, asset, t)
        required = max(0, -(-ratio * held // FRACTION_SCALE) - due)
        allowance = (FRACTION_SCALE - ratio) * held // FRACTION_SCALE + due
        return Figures(cold, warm, hot, required, allowance)

    def _tiers(self, fund: Fund, custodian_id: str, asset: str, t: int) -> m.HoldingTiers:
        f = self._figures(fund, custodian_id, asset, t)
        since = self._holding(fund, custodian_id, asset).over_since
        idle = f.over and since is not None and t - since > self._policy(custodian_id)[1] * 1000
        return m.HoldingTiers(cold=f.cold, warm=f.warm, hot=f.hot, cold_required=f.cold_required,
                              hot_allowance=f.hot_allowance, breach=f.breach, idle=idle)

    def _storage_breaches(self, fund: Fund, t: int, leaving: dict[tuple[str, str], int]) -> tuple[m.StorageBreach, ...]:
        """The fund's holdings in breach at ``t`` (by custodian, then asset), as if ``leaving`` had left."""
        found = []
        for (custodian_id, asset), _ in sorted(fund.holdings.items()):
            f = self._figures(fund, custodian_id, asset, t, leaving.get((custodian_id, asset), 0))
            if f.breach:
                found.append(m.StorageBreach(custodian_id=custodian_id, asset=asset, cold=f.cold,
                                             cold_required=f.cold_required))
        return tuple(found)

    # -- idle: hot over its allowance since some record ----------------------------------------------
    def _funds_touched(self, e: m.Event) -> list[Fund]:
        """The funds whose tier figures a record may change (etf_engine/ledger.py, "idle")."""
        match e:
            case m.FundCreated() | m.FundUpdated():
                ids = [e.terms.fund_id]
            case m.OrderRecorded():
                ids = [e.order.fund_id]
            case m.OrderSettled() | m.OrderCancelled() | m.DeliveryRecorded() | m.PayoutRecorded():
                ids = [self.orders[e.order_id].fund_id]
            case m.NavStruck():
                ids = [e.nav.fund_id]
            case m.BreakResolved():
                ids = [self.breaks[e.break_id].fund_id]
            case m.CalendarRegistered() | m.HolidaysSet() | m.DealingDayClosed():
                ids = [f.terms.fund_id for f in self._funds_on(e.calendar_id)]
            case m.StoragePolicySet():
                ids = [fund_id for fund_id, f in sorted(self.funds.items())
                       if any(c == e.custodian_id for c, _ in f.holdings)]
            case _:
                ids = [e.fund_id] if isinstance(getattr(e, "fund_id", None), str) else []
        return [self.funds[i] for i in ids if i in self.funds]

    def _track_idle(self, e: m.Event) -> None:
        for fund in self._funds_touched(e):
            for (custodian_id, asset), holding in fund.holdings.items():
                if self._figures(fund, custodian_id, asset, e.at).over:
                    if holding.over_since is None:
                        holding.over_since = e.at
                else:
                    holding.over_since = None

    @staticmethod
    def _new_holding(fund: Fund) -> Holding:
        return Holding(entry=fund.entry_tier)
