# The invariants of the ledger (DESIGN: TigerBeetle's asserts): what must hold after every command and
# every event, checked by the property test after each step and by `etf-engine verify` on the state it
# replays. A broken one raises InvariantBroken naming it; the reference checks the same names.


def check_invariants(Ledger self, long long now_ms):
    cdef Fund f
    cdef FundAsset fa
    cdef Holding h
    for fund_id in sorted(self.funds):
        f = self.funds[fund_id]
        _advance(self, f, now_ms)
        legs, pending, settled = {}, 0, 0
        for order in self.orders.values():
            if order.fund_id != fund_id:
                continue
            shares = order.units * order.basket.creation_unit
            if order.status == SETTLED:
                settled += shares if order.side == CREATE else -shares
            elif order.status == ACCEPTED and order.side == REDEEM:
                pending += shares
                for leg in order.legs:
                    key = (leg.custodian_id, leg.asset)
                    legs[key] = legs.get(key, 0) + leg.quantity
        if f.shares < 0 or f.pending_redeem < 0:
            raise InvariantBroken(INV_NEGATIVE, f"fund {fund_id}: shares {f.shares}, pending {f.pending_redeem}")
        if f.shares != f.initial_shares + settled:
            raise InvariantBroken(INV_SHARES, f"fund {fund_id}: {f.shares} outstanding, {f.initial_shares} "
                                   f"created with {settled:+} settled")
        if f.pending_redeem != pending:
            raise InvariantBroken(INV_RESERVED, f"fund {fund_id}: {f.pending_redeem} shares pending, {pending} "
                                   "in accepted redemptions")
        if f.accrued < 0:
            raise InvariantBroken(INV_NEGATIVE, f"fund {fund_id}: accrued fee {f.accrued} (1e-26 of base currency)")
        for asset, q in f.fee_payable.items():
            if q < 0:
                raise InvariantBroken(INV_NEGATIVE, f"fund {fund_id}: fee payable {q} {asset}")
        nav_num = f.cash * CENT - f.accrued
        for fa in f.assets:
            held = reserved = illiquid = 0
            for h in fa.holdings:
                where = f"fund {fund_id} {h.custodian.custodian_id} {h.asset}"
                if h.available < 0 or h.reserved < 0 or h.staked < 0 or h.unbonding < 0:
                    raise InvariantBroken(INV_NEGATIVE, f"{where}: {h.available} available, {h.reserved} "
                                           f"reserved, {h.staked} staked, {h.unbonding} unbonding")
                if h.warm < 0 or h.hot < 0 or h.warm + h.hot > h.available + h.reserved:
                    raise InvariantBroken(INV_NEGATIVE, f"{where}: tiers warm {h.warm}, hot {h.hot} of "
                                           f"{h.available + h.reserved} held (SPEC §18: cold is the rest)")
                if h.unbonding != sum([lot[1] for lot in h.lots]):
                    raise InvariantBroken(INV_CACHES, f"{where}: unbonding {h.unbonding} is not its lots")
                if h.reserved != legs.get((h.custodian.custodian_id, h.asset), 0):
                    raise InvariantBroken(INV_RESERVED, f"{where}: {h.reserved} reserved, "
                                           f"{legs.get((h.custodian.custodian_id, h.asset), 0)} in open legs")
                if sum(h.due.values()) != h.reserved:
                    raise InvariantBroken(INV_CACHES, f"{where}: {sum(h.due.values())} due by settlement date, "
                                           f"{h.reserved} reserved")
                held += h.available + h.reserved + h.staked + h.unbonding
                reserved += h.reserved
                illiquid += h.staked + h.unbonding
            for custodian_id, asset in legs:
                if asset == fa.info.symbol and custodian_id not in fa.by_custodian:
                    raise InvariantBroken(INV_RESERVED, f"fund {fund_id}: an open leg at {custodian_id} {asset}, "
                                           "which holds nothing")
            if held != fa.came_in - fa.went_out:
                raise InvariantBroken(INV_CONSERVED, f"fund {fund_id} {fa.info.symbol}: {held} held, "
                                       f"{fa.came_in} came in, {fa.went_out} went out")
            if (fa.total, fa.reserved, fa.illiquid) != (held, reserved, illiquid):
                raise InvariantBroken(INV_CACHES, f"fund {fund_id} {fa.info.symbol}: cached total, reserved, "
                                       f"illiquid {fa.total}, {fa.reserved}, {fa.illiquid}; held {held}, "
                                       f"{reserved}, {illiquid}")
            if fa.price.value is not None:
                nav_num += held * fa.price.value * fa.info.factor
        if f.nav_num != nav_num:  # the priced assets' worth, the cash and the accrued fee, whether or not a price is missing
            raise InvariantBroken(INV_CACHES, f"fund {fund_id}: cached NAV {f.nav_num} is not {nav_num} "
                                   "(1e-26 of base currency)")
