# NAV, the basket (PCF) and the holdings view, kept incrementally exact (SPEC §3, §4).

cdef bint _stale(Ledger self, Fund f, long long now_ms):
    cdef FundAsset fa
    if f.missing_prices:
        return True
    for fa in f.assets:
        if now_ms - fa.price.as_of > f.max_age_ms:
            return True
    return False


cdef object _basket(Ledger self, Fund f, long long now_ms):
    cdef FundAsset fa
    cdef bint stale = _stale(self, f, now_ms)
    cdef long long as_of = 0
    if f.basket is not None and f.basket_stale == stale:
        return f.basket
    U, S = f.unit, f.shares
    lines = []
    priced = f.missing_prices == 0
    held = 0  # value of the basket's quantities, nav_num units
    for fa in f.assets:
        fa.qpu = fa.total * U // S if S else fa.seed_qpu
        lines.append(BasketLine(asset=fa.info.symbol, quantity_per_unit=fa.qpu))
        if fa.price.value is not None:
            if fa.price.as_of > as_of:
                as_of = fa.price.as_of
            if priced:
                held += fa.qpu * fa.price.value * fa.info.factor
    cash = nps = npu = None
    if S:
        if priced:
            cash = round_half_even(f.nav_num * U - S * held, S * CENT)
            nps = round_half_even(f.nav_num, S * NPS)
            npu = round_half_even(f.nav_num * U, S * CENT)
    else:  # the seed basket: its cash needs no price; no shares, so no nav_per_share
        cash = f.seed_cash
        if priced:
            npu = round_half_even(held + f.seed_cash * CENT, CENT)
    f.basket = Basket(
        fund_id=f.fund_id, creation_unit=U, lines=lines, cash_component=cash, nav_per_share=nps,
        nav_per_unit=npu, shares_outstanding=S, as_of=as_of, stale=stale,
        accrued_fees=round_half_even(f.accrued, CENT) if f.accrued else 0,
    )
    f.basket_stale = stale
    return f.basket


cdef _total_changed(Ledger self, FundAsset fa, object delta):
    """The one way a fund asset's holdings grow or shrink: the total, the NAV and the flows follow."""
    cdef Fund f = fa.fund
    fa.total += delta
    if delta > 0:
        fa.came_in += delta
    else:
        fa.went_out -= delta
    if fa.price.value is not None:
        f.nav_num += delta * fa.price.value * fa.info.factor
    f.basket = None


cdef _cash_changed(Ledger self, Fund f, object delta):
    f.cash += delta
    f.nav_num += delta * CENT
    f.basket = None


def get_nav(Ledger self, str fund_id, long long now_ms):
    cdef Fund f = _fund(self, fund_id)
    cdef FundAsset fa
    _advance(self, f, now_ms)
    cdef long long as_of = 0
    lines = []
    for fa in f.assets:
        p = fa.price.value
        value = None
        if p is not None:
            value = round_half_even(fa.total * p * fa.info.factor, CENT)
            if fa.price.as_of > as_of:
                as_of = fa.price.as_of
        lines.append(NavLine(asset=fa.info.symbol, quantity=fa.total, price=p, value=value))
    priced = f.missing_prices == 0
    return Nav(
        fund_id=f.fund_id, nav=round_half_even(f.nav_num, CENT) if priced else None,
        nav_per_share=round_half_even(f.nav_num, f.shares * NPS) if priced and f.shares else None,
        shares_outstanding=f.shares, cash=f.cash, as_of=as_of, stale=_stale(self, f, now_ms), lines=lines,
        accrued_fees=round_half_even(f.accrued, CENT) if f.accrued else 0,
    )


def get_basket(Ledger self, str fund_id, long long now_ms):
    cdef Fund f = _fund(self, fund_id)
    _advance(self, f, now_ms)
    return _basket(self, f, now_ms)


cdef object _liquid(Ledger self, FundAsset fa, long long now_ms):
    """liquid(a): available at licensed custodians, but a holding held back by hold_redemptions_on_break
    (SPEC §19). Cached per fund asset until an available balance, a licence or a holding's flag changes, or
    time reaches the first expiry among the licensed."""
    cdef Holding h
    cdef long long until = LLONG_MAX
    if fa.liquid is not None and fa.liquid_epoch == self.licence_epoch and \
            fa.liquid_from <= now_ms < fa.liquid_until:
        return fa.liquid
    liquid = 0
    for h in fa.holdings:
        if h.custodian.licensed(now_ms) and not h.held:
            liquid += h.available
            if h.custodian.expires_ms < until:
                until = h.custodian.expires_ms
    fa.liquid, fa.liquid_from, fa.liquid_until, fa.liquid_epoch = liquid, now_ms, until, self.licence_epoch
    return liquid


def get_holdings(Ledger self, str fund_id, long long now_ms):
    cdef Fund f = _fund(self, fund_id)
    cdef FundAsset fa
    cdef Holding h
    _advance(self, f, now_ms)
    rows, summaries = [], []
    for fa in f.assets:
        for h in fa.holdings:
            if not (h.available or h.reserved or h.staked or h.lots):
                continue  # as in state(): what a row once held is history, not a holding
            rows.append(HoldingRow(
                custodian_id=h.custodian.custodian_id, asset=h.asset, available=h.available,
                reserved=h.reserved, staked=h.staked, unbonding=h.unbonding,
                licensed=h.custodian.licensed(now_ms), tiers=_tiers(self, f, fa, h, now_ms),
            ))
        summaries.append(AssetSummary(
            asset=fa.info.symbol, total=fa.total, committed=fa.total - fa.reserved,
            liquid=_liquid(self, fa, now_ms), illiquid=fa.illiquid, staking_cap=fa.cap,
            liquidity_buffer=fa.buffer,
        ))
    rows.sort(key=lambda r: (r.custodian_id, r.asset))
    return M.Holdings(fund_id=f.fund_id, holdings=rows, assets=summaries,
                      fee_payable=[Line(a, q) for a, q in sorted(f.fee_payable.items()) if q > 0])
