"""Custody: adjustments, staking, rewards, slashing, their events; the one cap-and-buffer check (SPEC §5, §6)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from etf_engine import model as m
from etf_engine.errors import invalid, out_of_range, precondition
from etf_engine.numbers import FRACTION_SCALE, MAX_MONEY, MAX_QUANTITY, parse_scaled
from etf_engine.reference.checks import _bucket, _money
from etf_engine.reference.state import Fund, Holding


def _ratio(value: int) -> Fraction:
    return Fraction(value, FRACTION_SCALE)


class Custody:
    """Issuer instructions on holdings and cash, and the cap and buffer a fund keeps."""

    def _instruction(self, c: Any, text: str, name: str, *, signed: bool = False) -> tuple[Fund, Holding, int]:
        """The target of an instruction and its parsed non-zero quantity (or delta)."""
        fund = self._fund(c.fund_id)
        self._custodian(c.custodian_id)
        if fund.asset(c.asset) is None:
            raise invalid("asset", f"{c.asset!r} is not an asset of fund {c.fund_id!r}")
        quantity = parse_scaled(text, name, self.assets[c.asset], signed=signed, limit=MAX_QUANTITY)
        if quantity == 0:
            raise invalid(name, "must not be zero")
        return fund, self._holding(fund, c.custodian_id, c.asset), quantity

    @staticmethod
    def _target(c: m.Stake) -> dict[str, str]:
        return {"fund_id": c.fund_id, "custodian_id": c.custodian_id, "asset": c.asset}

    # -- adjustments -------------------------------------------------------------------------------
    def _adjust_holding(self, c: m.AdjustHolding, now: int) -> tuple[None, list[m.Event]]:
        fund, holding, delta = self._instruction(c, c.delta, "delta", signed=True)
        self._break_required(fund, c)
        if holding.free(now) + delta < 0:
            raise precondition(m.INSUFFICIENT_LIQUID_BALANCE, f"available {holding.free(now)}, delta {delta}")
        _bucket(holding.free(now) + delta, "delta")
        event = m.HoldingAdjusted(at=now, fund_id=c.fund_id, custodian_id=c.custodian_id, asset=c.asset, delta=delta,
                                  reason=c.reason, break_id=c.break_id)
        return None, self._commit(event)

    def _on_holding(self, e: m.HoldingAdjusted) -> None:
        holding = self._live(e.fund_id, e.custodian_id, e.asset, e.at)
        holding.available += e.delta
        holding.enter(e.delta) if e.delta > 0 else holding.leave(-e.delta)
        self.funds[e.fund_id].flow(e.asset, e.delta)

    def _adjust_cash(self, c: m.AdjustCash, now: int) -> tuple[None, list[m.Event]]:
        fund = self._fund(c.fund_id)
        delta = _money(c.delta, "delta", signed=True)
        if delta == 0:
            raise invalid("delta", "must not be zero")
        if abs(fund.cash + delta) > MAX_MONEY:
            raise out_of_range("delta", "cash would exceed 10^28")
        return None, self._commit(m.CashAdjusted(at=now, fund_id=c.fund_id, delta=delta))

    def _on_cash(self, e: m.CashAdjusted) -> None:
        self.funds[e.fund_id].cash += e.delta

    # -- staking -----------------------------------------------------------------------------------
    def _stake(self, c: m.Stake, now: int) -> tuple[None, list[m.Event]]:
        fund, holding, q = self._instruction(c, c.quantity, "quantity")
        if not self._licensed(c.custodian_id, now):
            raise precondition(m.CUSTODIAN_NOT_LICENSED, f"custodian {c.custodian_id!r}")
        if holding.free(now) < q:
            raise precondition(m.INSUFFICIENT_LIQUID_BALANCE, f"available {holding.free(now)} < {q}")
        s = self._sums(fund, c.asset, now)
        qpu = self._quantities_per_unit(fund, now)[c.asset]
        reason = self._ratio_breach(fund, c.asset, qpu, s.illiquid + q, s.liquid - q, s.committed)
        if reason:
            raise precondition(reason, f"staking {q} of {c.asset}")
        _bucket(holding.staked + q, "quantity")
        return None, self._commit(m.Staked(at=now, **self._target(c), quantity=q))

    def _on_staked(self, e: m.Staked) -> None:
        holding = self._live(e.fund_id, e.custodian_id, e.asset, e.at)
        holding.available -= e.quantity
        holding.leave(e.quantity)
        holding.staked += e.quantity

    def _ratio_breach(self, fund: Fund, asset: str, qpu: int, illiquid: int, liquid: int, committed: int) -> str:
        """The one staking-cap and liquidity-buffer check (SPEC §5 checks 6b-c, §6), on the figures as they
        would be after a redemption (Orders._reason) or a stake (Stake); "" when neither is breached."""
        terms = fund.asset(asset)
        if illiquid > _ratio(terms.staking_cap) * committed:
            return m.STAKING_CAP_BREACH
        if liquid < _ratio(terms.liquidity_buffer) * committed or liquid < fund.terms.min_liquid_units * qpu:
            return m.LIQUIDITY_BUFFER_BREACH
        return ""

    def _unstake(self, c: m.Unstake, now: int) -> tuple[None, list[m.Event]]:
        fund, holding, q = self._instruction(c, c.quantity, "quantity")
        if holding.staked < q:
            raise precondition(m.INSUFFICIENT_STAKED_BALANCE, f"staked {holding.staked} < {q}")
        _bucket(holding.unbonding(now) + q, "quantity")
        release_at = now + fund.asset(c.asset).unbonding_seconds * 1000
        return None, self._commit(m.Unstaked(at=now, **self._target(c), quantity=q, release_at=release_at))

    def _on_unstaked(self, e: m.Unstaked) -> None:
        holding = self._live(e.fund_id, e.custodian_id, e.asset, e.at)
        holding.staked -= e.quantity
        holding.lots.append((e.release_at, e.quantity))

    def _record_reward(self, c: m.RecordStakingReward, now: int) -> tuple[None, list[m.Event]]:
        fund, holding, gross = self._instruction(c, c.quantity, "quantity")
        fee = self._staking_fee(fund, c.asset, gross)
        net = gross - fee
        _bucket(holding.free(now) + net, "quantity")
        return None, self._commit(m.RewardRecorded(at=now, **self._target(c), quantity=net, gross=gross,
                                                   staking_fee=fee, net=net))

    def _on_reward(self, e: m.RewardRecorded) -> None:
        holding = self._live(e.fund_id, e.custodian_id, e.asset, e.at)
        holding.available += e.quantity
        holding.enter(e.quantity)
        self.funds[e.fund_id].flow(e.asset, e.quantity)

    def _record_slashing(self, c: m.RecordSlashing, now: int) -> tuple[None, list[m.Event]]:
        _, holding, q = self._instruction(c, c.quantity, "quantity")
        if holding.staked < q:
            raise precondition(m.INSUFFICIENT_STAKED_BALANCE, f"staked {holding.staked} < {q}")
        return None, self._commit(m.Slashed(at=now, **self._target(c), quantity=q))

    def _on_slashed(self, e: m.Slashed) -> None:
        self._live(e.fund_id, e.custodian_id, e.asset, e.at).staked -= e.quantity
        self.funds[e.fund_id].flow(e.asset, -e.quantity)
