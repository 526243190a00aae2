"""The records a ReferenceLedger keeps per fund: the Fund and its Holdings (SPEC §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from etf_engine import model as m


@dataclass
class Holding:
    """One (fund, custodian, asset). A lot whose release time has passed counts as available."""

    available: int = 0
    reserved: int = 0
    staked: int = 0
    lots: list[tuple[int, int]] = field(default_factory=list)  # (release_at ms, quantity), one per Unstake

    def free(self, now: int) -> int:
        return self.available + sum(q for t, q in self.lots if t <= now)

    def unbonding(self, now: int) -> int:
        return sum(q for t, q in self.lots if t > now)

    def release(self, now: int) -> None:
        self.available += sum(q for t, q in self.lots if t <= now)
        self.lots = [(t, q) for t, q in self.lots if t > now]

    def is_empty(self, now: int) -> bool:
        return self.free(now) == self.reserved == self.staked == self.unbonding(now) == 0


@dataclass
class Fund:
    terms: m.FundTerms
    cash: int  # cents
    shares: int
    holdings: dict[tuple[str, str], Holding] = field(default_factory=dict)  # (custodian, asset)
    order_ids: list[str] = field(default_factory=list)
    navs: dict[str, m.OfficialNav] = field(default_factory=dict)  # dealing_date -> official NAV
    pcfs: dict[str, m.Pcf] = field(default_factory=dict)  # dealing_date -> PCF
    initial_shares: int = 0  # as created (check_invariants)
    came_in: dict[str, int] = field(default_factory=dict)  # asset -> every quantity that entered the holdings
    went_out: dict[str, int] = field(default_factory=dict)  # asset -> every quantity that left them
    accrued: Fraction = Fraction(0)  # the accrued management fee, exact (SPEC §17)
    fee_payable: dict[str, int] = field(default_factory=dict)  # asset -> taken in kind, not yet paid

    def flow(self, asset: str, quantity: int) -> None:
        """Count ``quantity`` of ``asset`` entering (> 0) or leaving (< 0) the fund's holdings."""
        if quantity > 0:
            self.came_in[asset] = self.came_in.get(asset, 0) + quantity
        else:
            self.went_out[asset] = self.went_out.get(asset, 0) - quantity

    def asset(self, symbol: str) -> m.FundAssetTerms | None:
        return next((a for a in self.terms.assets if a.asset == symbol), None)
