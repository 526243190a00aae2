"""The records a ReferenceLedger keeps per fund: the Fund and its Holdings (SPEC §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from etf_engine import model as m


def leaving(tiers: tuple[int, int, int], quantity: int) -> tuple[int, int, int]:
    """(cold, warm, hot) once ``quantity`` left them: out of hot, then warm, then cold (SPEC §18)."""
    cold, warm, hot = tiers
    from_hot = min(hot, quantity)
    from_warm = min(warm, quantity - from_hot)
    return cold - (quantity - from_hot - from_warm), warm - from_warm, hot - from_hot


@dataclass
class Holding:
    """One (fund, custodian, asset). A lot whose release time has passed counts as available."""

    available: int = 0
    reserved: int = 0
    staked: int = 0
    lots: list[tuple[int, int]] = field(default_factory=list)  # (release_at ms, quantity), one per Unstake
    # SPEC §18: held (available + reserved) by tier; cold is the rest. Lots released later enter
    # ``entry`` (the fund's entry tier) when released.
    warm: int = 0
    hot: int = 0
    entry: str = m.COLD
    over_since: int | None = None  # since which record hot > hot_allowance (idle)

    def free(self, now: int) -> int:
        return self.available + sum(q for t, q in self.lots if t <= now)

    def unbonding(self, now: int) -> int:
        return sum(q for t, q in self.lots if t > now)

    def release(self, now: int) -> None:
        released = sum(q for t, q in self.lots if t <= now)
        self.available += released
        self.enter(released)
        self.lots = [(t, q) for t, q in self.lots if t > now]

    # -- storage tiers (SPEC §18) ----------------------------------------------------------------
    def enter(self, quantity: int) -> None:
        """``quantity`` entered held: it lands in the fund's entry tier."""
        if self.entry == m.HOT:
            self.hot += quantity
        elif self.entry == m.WARM:
            self.warm += quantity

    def leave(self, quantity: int) -> None:
        """``quantity`` left held: out of hot, then warm, then cold."""
        _, self.warm, self.hot = leaving((0, self.warm, self.hot), quantity)  # cold: the rest of held

    def tiers(self, now: int) -> tuple[int, int, int]:
        """(cold, warm, hot) at ``now``: lots matured by then in the entry tier."""
        matured = sum(q for t, q in self.lots if t <= now)
        warm = self.warm + (matured if self.entry == m.WARM else 0)
        hot = self.hot + (matured if self.entry == m.HOT else 0)
        return self.free(now) + self.reserved - warm - hot, warm, hot

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
    entry_tier: str = m.COLD  # SPEC §18: where what enters held lands (FundCreated)

    def flow(self, asset: str, quantity: int) -> None:
        """Count ``quantity`` of ``asset`` entering (> 0) or leaving (< 0) the fund's holdings."""
        if quantity > 0:
            self.came_in[asset] = self.came_in.get(asset, 0) + quantity
        else:
            self.went_out[asset] = self.went_out.get(asset, 0) - quantity

    def asset(self, symbol: str) -> m.FundAssetTerms | None:
        return next((a for a in self.terms.assets if a.asset == symbol), None)
