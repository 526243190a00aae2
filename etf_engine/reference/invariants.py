"""The invariants of the ledger, checked by the property test after each step and by `etf-engine verify`
(etf_engine/ledger.py names them; the core checks the same ones and its running sums)."""

from __future__ import annotations

from etf_engine import model as m
from etf_engine.errors import INV_CONSERVED, INV_NEGATIVE, INV_RESERVED, INV_SHARES, InvariantBroken
from etf_engine.reference.state import Fund


class Invariants:
    funds: dict[str, Fund]
    orders: dict[str, m.Order]

    def check_invariants(self, now_ms: int) -> None:
        for fund_id, fund in sorted(self.funds.items()):
            orders = [o for o in self.orders.values() if o.fund_id == fund_id]
            settled = sum((1 if o.side == m.CREATE else -1) * o.units * o.basket.creation_unit
                          for o in orders if o.status == m.SETTLED)
            if fund.shares < 0:
                raise InvariantBroken(INV_NEGATIVE, f"fund {fund_id}: shares {fund.shares}")
            if fund.accrued < 0 or any(q < 0 for q in fund.fee_payable.values()):
                raise InvariantBroken(INV_NEGATIVE, f"fund {fund_id}: accrued fees {fund.accrued}, fee payable "
                                      f"{fund.fee_payable}")
            if fund.shares != fund.initial_shares + settled:
                raise InvariantBroken(INV_SHARES, f"fund {fund_id}: {fund.shares} outstanding, "
                                      f"{fund.initial_shares} created with {settled:+} settled")
            legs: dict[tuple[str, str], int] = {}
            for o in orders:
                if o.status == m.ACCEPTED and o.side == m.REDEEM:
                    for leg in o.legs:
                        legs[leg.custodian_id, leg.asset] = legs.get((leg.custodian_id, leg.asset), 0) + leg.quantity
            held: dict[str, int] = {}
            for (custodian_id, asset), h in sorted(fund.holdings.items()):
                where = f"fund {fund_id} {custodian_id} {asset}"
                buckets = (h.free(now_ms), h.reserved, h.staked, h.unbonding(now_ms))
                if min(buckets) < 0 or any(q < 0 for _, q in h.lots):
                    raise InvariantBroken(INV_NEGATIVE, f"{where}: available, reserved, staked, unbonding {buckets}")
                if h.reserved != legs.get((custodian_id, asset), 0):
                    raise InvariantBroken(INV_RESERVED, f"{where}: {h.reserved} reserved, "
                                          f"{legs.get((custodian_id, asset), 0)} in open legs")
                held[asset] = held.get(asset, 0) + sum(buckets)
            for custodian_id, asset in legs.keys() - fund.holdings.keys():
                raise InvariantBroken(INV_RESERVED, f"fund {fund_id}: an open leg at {custodian_id} {asset}, "
                                      "which holds nothing")
            for a in fund.terms.assets:
                came_in, went_out = fund.came_in.get(a.asset, 0), fund.went_out.get(a.asset, 0)
                if held.get(a.asset, 0) != came_in - went_out:
                    raise InvariantBroken(INV_CONSERVED, f"fund {fund_id} {a.asset}: {held.get(a.asset, 0)} held, "
                                          f"{came_in} came in, {went_out} went out")
