"""Fees: the management fee accrued at each strike, its payment in cash or in kind, the staking fee (SPEC §17)."""

from __future__ import annotations

import calendar as stdcal
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from etf_engine import addresses
from etf_engine import calendar as cal_
from etf_engine import model as m
from etf_engine.errors import invalid, out_of_range, precondition
from etf_engine.numbers import MAX_MONEY, MONEY_DP, RATE_DP, RATE_SCALE, parse_scaled
from etf_engine.reference.checks import _money, _one_of, _positive
from etf_engine.reference.state import Fund
from etf_engine.reference.valuation import _round, _worth


def _rate(text: str, name: str, below: int) -> int:
    """A rate of at most 6 fraction digits in [0, below / 10^6)."""
    value = parse_scaled(text, name, RATE_DP)
    if value >= below:
        raise invalid(name, f"{text!r} must be below {Fraction(below, RATE_SCALE)}")
    return value


def _year_days(day: date, day_count: str) -> int:
    return 366 if day_count == m.ACT_ACT and stdcal.isleap(day.year) else 365


class Fees:
    """What the fund owes its manager, accrued at every strike, and how it is paid."""

    # -- the terms (called by Funds._fund_field and Funds._asset_terms) ----------------------------
    def _fee_field(self, name: str, value: Any, assets: tuple[m.FundAssetTerms, ...]) -> Any:
        match name:
            case "management_fee_rate":
                return _rate(value, name, m.MAX_FEE_RATE)
            case "fee_day_count":
                return _one_of(value, m.FEE_DAY_COUNTS, name)
            case "fee_waiver":
                if value is None or not value.until:
                    return None
                return m.FeeWaiver(rate=_rate(value.rate, "fee_waiver.rate", m.MAX_FEE_RATE),
                                   nav_limit=_money(value.nav_limit, "fee_waiver.nav_limit"),
                                   until=cal_.parse_date(value.until, "fee_waiver.until").isoformat())
            case "fee_payment":
                return _one_of(value, m.FEE_PAYMENTS, name)
            case "fee_asset":
                if value and not any(a.asset == value for a in assets):
                    raise invalid(name, f"{value!r} is not an asset of the fund")
                return value
            case "fee_custodian_id":
                return value and self._custodian(value).custodian_id
        raise AssertionError(name)

    @staticmethod
    def _check_fee_terms(terms: m.FundTerms) -> None:
        """The fee terms together, as they would be after a create or an update."""
        if terms.fee_payment == m.IN_KIND:
            if not terms.fee_asset:
                raise invalid("fee_asset", "is required with IN_KIND fee payment")
            if not terms.fee_custodian_id:
                raise invalid("fee_custodian_id", "is required with IN_KIND fee payment")
        if (terms.management_fee_rate or terms.fee_waiver is not None) and not terms.calendar_id:
            raise invalid("management_fee_rate", "a management fee needs a calendar_id: it accrues at official "
                                                 "valuations")

    @staticmethod
    def _staking_fee_rate(text: str, name: str) -> int:
        return _rate(text, name, RATE_SCALE)

    # -- the accrual at the strike (called by DealingDay._strike) ---------------------------------
    def _accrual(self, fund: Fund, day: date, official: dict[str, int], totals: dict[str, int],
                 now: int) -> tuple[Fraction, int, int, int]:
        """(basis, fee in cents, fee days, the in-kind quantity taken) of a strike of ``day``; no fee and
        no days for a fund without a management fee."""
        t = fund.terms
        basis = sum((_worth(q, self.assets[a], official[a]) for a, q in totals.items()),
                    Fraction(fund.cash, 100)) - fund.accrued
        if not t.management_fee_rate and t.fee_waiver is None:
            return basis, 0, 0, 0  # no management fee: the record is as before SPEC §17
        before = [date.fromisoformat(d) for d in fund.navs if d < day.isoformat()]
        first = max(before) + timedelta(days=1) if before else day
        days = [first + timedelta(days=i) for i in range((day - first).days + 1)]
        charge = Fraction(0)
        if basis > 0:
            for d in days:
                rate = Fraction(t.management_fee_rate, RATE_SCALE)
                w = t.fee_waiver
                if w is not None and d <= date.fromisoformat(w.until):
                    limit = Fraction(w.nav_limit, 100)
                    day_charge = (min(basis, limit) * Fraction(w.rate, RATE_SCALE)
                                  + max(Fraction(0), basis - limit) * rate)
                else:
                    day_charge = basis * rate
                charge += day_charge / _year_days(d, t.fee_day_count)
        fee = _round(charge, MONEY_DP)
        taken = 0
        if t.fee_payment == m.IN_KIND:
            accrued = fund.accrued + Fraction(fee, 100)
            price = official[t.fee_asset]
            worth_one = _worth(1, self.assets[t.fee_asset], price)
            held = self._holding(fund, t.fee_custodian_id, t.fee_asset).free(now)
            taken = max(0, min(accrued // worth_one, held))
        return basis, fee, len(days), taken

    def _on_accrual(self, fund: Fund, e: m.NavStruck) -> None:
        """NavStruck's fee: accrue it, then move what it takes in kind into fee_payable."""
        fund.accrued += Fraction(e.nav.fee, 100)
        if e.fee_taken:
            price = next(line.price for line in e.nav.lines if line.asset == e.fee_asset)
            holding = self._live(fund.terms.fund_id, e.fee_custodian_id, e.fee_asset, e.at)
            holding.available -= e.fee_taken
            holding.leave(e.fee_taken)
            fund.flow(e.fee_asset, -e.fee_taken)
            fund.fee_payable[e.fee_asset] = fund.fee_payable.get(e.fee_asset, 0) + e.fee_taken
            fund.accrued -= _worth(e.fee_taken, self.assets[e.fee_asset], price)

    # -- paying it ---------------------------------------------------------------------------------
    def _pay_fee(self, c: m.PayFee, now: int) -> tuple[None, list[m.Event]]:
        fund = self._fund(c.fund_id)
        if not c.asset:
            for name in ("quantity", "tx_hash", "to_address"):
                if getattr(c, name):
                    raise invalid(name, "is only for a fee paid in kind (with asset)")
            amount = _money(c.amount, "amount")
            if amount == 0:
                raise invalid("amount", "must be positive")
            if Fraction(amount, 100) > fund.accrued:
                raise precondition(m.FEE_EXCEEDS_ACCRUED, f"amount {amount} cents, accrued {fund.accrued * 100} cents")
            if fund.cash - amount < -MAX_MONEY:
                raise out_of_range("amount", "cash would pass -10^28")
            return None, self._commit(m.FeePaid(at=now, fund_id=c.fund_id, amount=amount))
        if c.amount:
            raise invalid("amount", "is only for a fee paid in cash (without asset)")
        if fund.asset(c.asset) is None:
            raise invalid("asset", f"{c.asset!r} is not an asset of fund {c.fund_id!r}")
        quantity = _positive(c.quantity, "quantity", self.assets[c.asset])
        addresses.check_printable(c.tx_hash, "tx_hash")
        addresses.check_address(self.asset_rules[c.asset][1], c.to_address, "to_address")
        payable = fund.fee_payable.get(c.asset, 0)
        if quantity > payable:
            raise precondition(m.FEE_EXCEEDS_ACCRUED, f"quantity {quantity} > fee payable {payable} of {c.asset}")
        return None, self._commit(m.FeePaid(at=now, fund_id=c.fund_id, asset=c.asset, quantity=quantity,
                                            tx_hash=c.tx_hash, to_address=c.to_address))

    def _on_fee_paid(self, e: m.FeePaid) -> None:
        fund = self.funds[e.fund_id]
        if e.asset:
            fund.fee_payable[e.asset] -= e.quantity
            if not fund.fee_payable[e.asset]:
                del fund.fee_payable[e.asset]
        else:
            fund.cash -= e.amount
            fund.accrued -= Fraction(e.amount, 100)

    # -- the staking fee (called by Custody._record_reward) -----------------------------------------
    @staticmethod
    def _staking_fee(fund: Fund, asset: str, gross: int) -> int:
        return gross * fund.asset(asset).staking_fee_rate // RATE_SCALE

    # -- reads -------------------------------------------------------------------------------------
    @staticmethod
    def _fee_payable_lines(fund: Fund) -> tuple[m.Line, ...]:
        return tuple(m.Line(asset=a, quantity=q) for a, q in sorted(fund.fee_payable.items()) if q > 0)

