"""The dealing day: calendars, holidays, CloseDealingDay, StrikeNav, official NAVs, PCFs, their events (SPEC §13)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import msgspec

from etf_engine import calendar as cal_
from etf_engine import model as m
from etf_engine.errors import invalid, not_found, precondition
from etf_engine.numbers import MONEY_DP, NAV_PER_SHARE_DP
from etf_engine.reference.checks import _ID, _exists, _match, _text, _tick_price
from etf_engine.reference.state import Fund
from etf_engine.reference.valuation import _round, _worth


class DealingDay:
    """Calendars, the dealing date of an order, the closing of a day and the striking of its NAV."""

    # -- calendars ---------------------------------------------------------------------------------
    def _calendar(self, calendar_id: str) -> cal_.Calendar:
        if calendar_id not in self.calendars:
            raise not_found("calendar", calendar_id)
        return self.calendars[calendar_id]

    def _register_calendar(self, c: m.RegisterCalendar, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.calendar_id, "calendar_id")
        cal_.zone(c.time_zone)
        holidays = cal_.parse_holidays(c.holidays)
        weekend = cal_.parse_weekend(c.weekend_days)
        if c.calendar_id in self.calendars:
            raise _exists("calendar", c.calendar_id)
        return None, self._commit(m.CalendarRegistered(at=now, calendar_id=c.calendar_id, time_zone=c.time_zone,
                                                       holidays=holidays, weekend_days=weekend))

    def _on_calendar(self, e: m.CalendarRegistered) -> None:
        self.calendars[e.calendar_id] = cal_.Calendar(
            e.calendar_id, e.time_zone, frozenset(map(date.fromisoformat, e.holidays)), frozenset(e.weekend_days))

    def _set_holidays(self, c: m.SetHolidays, now: int) -> tuple[None, list[m.Event]]:
        self._calendar(c.calendar_id)
        holidays = cal_.parse_holidays(c.holidays)
        return None, self._commit(m.HolidaysSet(at=now, calendar_id=c.calendar_id, holidays=holidays))

    def _on_holidays(self, e: m.HolidaysSet) -> None:
        c = self.calendars[e.calendar_id]
        self.calendars[e.calendar_id] = c.with_holidays(e.holidays)

    def _dealing_date(self, terms: m.FundTerms, now: int) -> str:
        calendar = self.calendars[terms.calendar_id]
        return cal_.dealing_date(calendar, cal_.cutoff_seconds(terms.dealing_cutoff), now).isoformat()

    def get_calendar(self, calendar_id: str) -> m.CalendarInfo:
        c = self._calendar(calendar_id)
        return m.CalendarInfo(calendar_id=c.calendar_id, time_zone=c.time_zone,
                              holidays=sorted(d.isoformat() for d in c.holidays), weekend_days=sorted(c.weekend_days),
                              closed=[m.ClosedDay(date=d.isoformat(), reason=r) for d, r in sorted(c.closed.items())])

    # -- closing a dealing day ---------------------------------------------------------------------
    def _close_day(self, c: m.CloseDealingDay, now: int) -> tuple[None, list[m.Event]]:
        before = self._calendar(c.calendar_id)
        day = cal_.parse_date(c.date, "date")
        _text(c.reason, "reason")
        if not cal_.is_dealing_day(before, day):
            raise precondition(m.NOT_A_DEALING_DAY, f"{c.date} is not a dealing day")
        if day < cal_.local_date(before, now):
            raise precondition(m.NOT_CLOSABLE, f"{c.date} is past")
        funds = self._funds_on(c.calendar_id)
        if any(day.isoformat() in f.navs for f in funds):
            raise precondition(m.NOT_CLOSABLE, f"{c.date} is struck")
        after = before.closing(day, c.reason)
        to_day = cal_.next_dealing_day(after, day)
        moves = []
        for f in funds:
            for o in self._fund_orders(f):
                if o.status != m.ACCEPTED or not o.dealing_date:
                    continue
                dealt, settles = date.fromisoformat(o.dealing_date), date.fromisoformat(o.settlement_date)
                if dealt != day and settles < day:
                    continue
                n = cal_.dealing_days_between(before, dealt, settles)  # the order's own settlement period
                dealt = to_day if dealt == day else dealt
                moves.append(m.OrderDates(order_id=o.order_id, dealing_date=dealt.isoformat(),
                                          settlement_date=cal_.add_dealing_days(after, dealt, n).isoformat()))
        moves.sort(key=lambda move: move.order_id)
        pcfs = tuple(m.PcfMoved(fund_id=f.terms.fund_id, to_date=to_day.isoformat())
                     for f in funds if day.isoformat() in f.pcfs)
        return None, self._commit(m.DealingDayClosed(at=now, calendar_id=c.calendar_id, date=day.isoformat(),
                                                     reason=c.reason, orders=tuple(moves), pcfs=pcfs))

    def _on_day_closed(self, e: m.DealingDayClosed) -> None:
        c = self.calendars[e.calendar_id]
        self.calendars[e.calendar_id] = c.closing(date.fromisoformat(e.date), e.reason)
        for move in e.orders:
            self.orders[move.order_id] = msgspec.structs.replace(
                self.orders[move.order_id], dealing_date=move.dealing_date, settlement_date=move.settlement_date,
                updated_at=e.at)
        for move in e.pcfs:
            fund = self.funds[move.fund_id]
            pcf = fund.pcfs.pop(e.date)
            fund.pcfs.setdefault(move.to_date, msgspec.structs.replace(pcf, dealing_date=move.to_date))

    def _funds_on(self, calendar_id: str) -> list[Fund]:
        return [f for _, f in sorted(self.funds.items()) if f.terms.calendar_id == calendar_id]

    # -- the official NAV and the PCF --------------------------------------------------------------
    def _strike(self, c: m.StrikeNav, now: int) -> tuple[m.StrikeResult, list[m.Event]]:
        fund = self._fund(c.fund_id)
        t = fund.terms
        if not t.calendar_id:
            raise invalid("fund_id", f"fund {c.fund_id!r} has no calendar")
        day = cal_.parse_date(c.dealing_date, "dealing_date")
        official: dict[str, int] = {}
        for i, tick in enumerate(c.ticks):
            at = f"ticks[{i}]"
            if fund.asset(tick.asset) is None or tick.asset in official:
                raise invalid(f"{at}.asset", f"{tick.asset!r} is not an asset of the fund, or given twice")
            if tick.currency != t.base_currency:
                raise invalid(f"{at}.currency", f"{tick.currency!r} is not the base currency")
            price = _tick_price(tick, at, now)
            official[tick.asset] = price
        for a in t.assets:
            if a.asset not in official:
                raise invalid("ticks", f"no official price for {a.asset}")
        calendar = self.calendars[t.calendar_id]
        iso = day.isoformat()
        if not cal_.is_dealing_day(calendar, day) or iso < t.first_dealing_date:
            raise precondition(m.NOT_A_DEALING_DAY, f"{iso} is not a dealing day of the fund")
        if iso in fund.navs:
            raise _exists("official NAV for", iso)
        if now < cal_.cutoff_ms(calendar, day, cal_.cutoff_seconds(t.dealing_cutoff)):
            raise precondition(m.BEFORE_CUTOFF, f"the cut-off of {iso} has not passed")
        earlier = date.fromisoformat(t.first_dealing_date)
        while earlier < day:
            if cal_.is_dealing_day(calendar, earlier) and earlier.isoformat() not in fund.navs:
                raise precondition(m.EARLIER_DATE_NOT_STRUCK, f"{earlier.isoformat()} is not struck")
            earlier += timedelta(days=1)
        s, u = fund.shares, t.creation_unit
        totals = {a.asset: self._sums(fund, a.asset, now).total for a in t.assets}
        basis, fee, fee_days, taken = self._accrual(fund, day, official, totals, now)
        nav = basis - Fraction(fee, 100)
        accrued = fund.accrued + Fraction(fee, 100)
        payable = dict(fund.fee_payable)
        if taken:  # the fee taken in kind leaves the holdings (and the accrued fee): the NAV does not move
            totals[t.fee_asset] -= taken
            accrued -= _worth(taken, self.assets[t.fee_asset], official[t.fee_asset])
            payable[t.fee_asset] = payable.get(t.fee_asset, 0) + taken
        nps = _round(nav / s, NAV_PER_SHARE_DP) if s else None
        official_nav = m.OfficialNav(
            fund_id=c.fund_id, dealing_date=iso, nav=_round(nav, MONEY_DP), nav_per_share=nps, shares_outstanding=s,
            cash=fund.cash, lines=tuple(m.OfficialLine(asset=a, quantity=q, price=official[a],
                                                       value=_round(_worth(q, self.assets[a], official[a]), MONEY_DP))
                                        for a, q in totals.items()),
            struck_at=now, fee=fee, fee_days=fee_days, fee_basis=_round(basis, MONEY_DP) if fee_days else 0,
            accrued_fees=_round(accrued, MONEY_DP),
            storage_breaches=self._storage_breaches(fund, now, {(t.fee_custodian_id, t.fee_asset): taken}),
            fee_payable=tuple(m.Line(asset=a, quantity=q) for a, q in sorted(payable.items()) if q > 0))
        if s:
            qpu = {a: q * u // s for a, q in totals.items()}
            lines_worth = sum(_worth(q, self.assets[a], official[a]) for a, q in qpu.items())
            estimated, per_unit = _round(nav * u / s - lines_worth, MONEY_DP), _round(nav * u / s, MONEY_DP)
        else:
            qpu = {a.asset: a.seed_quantity_per_unit for a in t.assets}
            lines_worth = sum(_worth(q, self.assets[a], official[a]) for a, q in qpu.items())
            estimated, per_unit = t.seed_cash_per_unit, _round(lines_worth + Fraction(t.seed_cash_per_unit, 100),
                                                               MONEY_DP)
        pcf = m.Pcf(
            fund_id=c.fund_id, dealing_date=cal_.next_dealing_day(calendar, day).isoformat(), creation_unit=u,
            lines=tuple(m.BasketLine(asset=a, quantity_per_unit=q) for a, q in qpu.items()),
            estimated_cash_component=estimated, nav_per_unit=per_unit, nav_per_share=nps, shares_outstanding=s,
            prices=tuple(m.PriceLine(asset=a, price=official[a]) for a in totals), published_at=now)
        priced = sum(1 for o in self._fund_orders(fund) if self._unpriced_on(o, iso))
        in_kind = {"fee_taken": taken, "fee_asset": t.fee_asset, "fee_custodian_id": t.fee_custodian_id} \
            if taken else {}
        events = self._commit(m.NavStruck(at=now, nav=official_nav, pcf=pcf, **in_kind))
        return m.StrikeResult(nav=official_nav, pcf=pcf, priced_orders=priced), events

    def _on_struck(self, e: m.NavStruck) -> None:
        nav = e.nav
        fund = self.funds[nav.fund_id]
        fund.navs[nav.dealing_date] = nav
        fund.pcfs[e.pcf.dealing_date] = e.pcf
        self._on_accrual(fund, e)
        price = {line.asset: line.price for line in nav.lines}
        exact = sum((_worth(line.quantity, self.assets[line.asset], line.price) for line in nav.lines),
                    Fraction(nav.cash, 100)) - fund.accrued
        s = nav.shares_outstanding
        for o in self._fund_orders(fund):
            if not self._unpriced_on(o, nav.dealing_date):
                continue
            if s:
                own = sum(_worth(ln.quantity_per_unit, self.assets[ln.asset], price[ln.asset]) for ln in o.basket.lines)
                cash_component = _round(exact * o.basket.creation_unit / s - own, MONEY_DP)
            else:
                cash_component = fund.terms.seed_cash_per_unit
            self.orders[o.order_id] = msgspec.structs.replace(
                o, basket=msgspec.structs.replace(o.basket, cash_component=cash_component),
                cash_amount=o.units * cash_component, priced=True, official_nav_per_share=nav.nav_per_share,
                updated_at=e.at)

    @staticmethod
    def _unpriced_on(order: m.Order, dealing_date: str) -> bool:
        return order.status == m.ACCEPTED and not order.priced and order.dealing_date == dealing_date

    @staticmethod
    def _of_date(records: dict[str, Any], what: str, fund_id: str, dealing_date: str) -> Any:
        """The fund's record of ``dealing_date`` (an official NAV, a PCF), or NOT_FOUND naming it."""
        iso = cal_.parse_date(dealing_date, "dealing_date").isoformat()
        if iso not in records:
            raise not_found(f"{what} of {fund_id} for", iso)
        return records[iso]

    def get_official_nav(self, fund_id: str, dealing_date: str) -> m.OfficialNav:
        return self._of_date(self._fund(fund_id).navs, "official NAV", fund_id, dealing_date)

    def list_official_navs(self, fund_id: str, from_date: str = "", to_date: str = "") -> list[m.OfficialNav]:
        fund = self._fund(fund_id)
        low = cal_.parse_date(from_date, "from_date") if from_date else date.min
        high = cal_.parse_date(to_date, "to_date") if to_date else date.max
        return [nav for d, nav in sorted(fund.navs.items()) if low <= date.fromisoformat(d) <= high]

    def get_pcf(self, fund_id: str, dealing_date: str) -> m.Pcf:
        return self._of_date(self._fund(fund_id).pcfs, "PCF", fund_id, dealing_date)
