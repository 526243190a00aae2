# The fund's fees (SPEC §17): the fee terms, the management fee accrued at each strike (in cash or taken
# in kind), PayFee, and the staking provider's fee on rewards. The accrued fee is exact, in nav_num units
# (1e-26 of base currency: a cent, and any quantity at any price, are whole numbers of it), and always
# already subtracted from the fund's nav_num: every NAV, basket and cash component includes it.

cdef object YEAR_DAYS = 365 * 366  # Σ charge_d / Y(d) over one denominator: each day weighs YEAR_DAYS / Y(d)


cdef object _rate(object text, str field, object below):
    """A rate (SPEC §17): at most 6 fraction digits, 0 <= r < ``below`` (1e-6 units), else INVALID_ARGUMENT
    naming ``field`` (a number of more than 40 digits is OUT_OF_RANGE, as every number, numbers.parse_scaled)."""
    value = parse_scaled(text, field, RATE_DP)
    if value >= below:
        raise invalid(field, f"{quote(text)} is not below {format_scaled(below, RATE_DP, min_dp=1)}")
    return value


cdef object _fee_terms(Ledger self, Fund f, object cmd, object terms):
    """CreateFund's (``f`` None) or UpdateFund's fee terms, after the dealing terms: each given field in
    declaration order, then the rules on the terms as they would be (etf_engine/ledger.py)."""
    changes = {}
    for name in M.FEE_TERMS + M.BOOK_TERMS:  # SPEC §19's term of the books after the fee terms
        value = getattr(cmd, name)
        if f is None or value is not None:  # UpdateFund: None is not given
            changes[name] = _fund_field(self, f, name, value, terms)
    if changes:
        terms = _replace(terms, **changes)
    if terms.fee_payment == M.IN_KIND:
        if not terms.fee_asset:
            raise invalid("fee_asset", "is required with fee_payment IN_KIND: the asset the fee is taken in")
        if not terms.fee_custodian_id:
            raise invalid("fee_custodian_id", "is required with fee_payment IN_KIND: the custodian it is taken from")
    if (terms.management_fee_rate or terms.fee_waiver is not None) and not terms.calendar_id:
        raise invalid("management_fee_rate", "a management fee needs a calendar (it accrues at official valuations)")
    return terms


cdef _accrued_changed(Ledger self, Fund f, object delta):
    """The one way the accrued fee changes (nav_num units): the NAV moves the other way."""
    f.accrued += delta
    f.nav_num -= delta
    f.basket = None


cdef object _fee_cents(object terms, object basis, list days):
    """round(Σ_d charge_d(basis) / Y(d), 2) in cents; ``basis`` in nav_num units, ``days`` dates."""
    rate, waiver = terms.management_fee_rate, terms.fee_waiver
    if basis <= 0 or not days or (not rate and waiver is None):
        return 0
    act = terms.fee_day_count == M.ACT_ACT
    plain = basis * rate
    blended = None
    if waiver is not None:
        limit = waiver.nav_limit * CENT
        blended = min(basis, limit) * waiver.rate + max(0, basis - limit) * rate
    num = 0
    for d in days:
        charge = blended if waiver is not None and d.isoformat() <= waiver.until else plain
        num += charge * (YEAR_DAYS // (366 if act and isleap(d.year) else 365))
    return round_half_even(num, YEAR_DAYS * RATE_SCALE * CENT)


cdef list _fee_days(Fund f, object day):
    """The calendar days a strike of ``day`` accrues for: after the fund's latest struck date before it
    (none: ``day`` alone), up to ``day``."""
    iso = day.isoformat()
    prev = None
    for d in f.navs:
        if d < iso and (prev is None or d > prev):
            prev = d
    if prev is None:
        return [day]
    days = []
    d = Date.fromisoformat(prev) + ONE_DAY
    while d <= day:
        days.append(d)
        d += ONE_DAY
    return days


cdef tuple _strike_fee(Ledger self, Fund f, object day, dict official, object gross):
    """The fee of a strike of ``day``: (fee cents, fee days, basis, accrued after, in-kind quantity taken,
    the fee asset). ``gross`` = Σ total x official price + cash, nav_num units; state as at the strike.
    A fund without a management fee at the strike (rate 0 and no waiver) accrues nothing, takes nothing in
    kind and shows no fee days: its record is as before SPEC §17 (fee, fee_days and fee_basis 0)."""
    cdef FundAsset fa
    terms = f.terms
    basis = gross - f.accrued
    if not terms.management_fee_rate and terms.fee_waiver is None:
        return 0, 0, basis, f.accrued, 0, None  # no fee, no days, nothing taken in kind
    days = _fee_days(f, day)
    n_days = len(days)
    fee = _fee_cents(terms, basis, days)
    accrued = f.accrued + fee * CENT
    taken = 0
    fa = None
    if terms.fee_payment == M.IN_KIND:
        fa = f.asset_map[terms.fee_asset]
        worth = official[terms.fee_asset] * fa.info.factor  # one smallest unit, nav_num units
        taken = accrued // worth
        available = _available(self, fa, self.custodians[terms.fee_custodian_id])
        if taken > available:
            taken = available
        accrued -= taken * worth
    return fee, n_days, basis, accrued, taken, fa


cdef object _fee_payable(Fund f, object asset, object taken):
    """The fund's fee_payable as an official NAV shows it, with ``taken`` of ``asset`` added."""
    payable = dict(f.fee_payable)
    if taken:
        payable[asset] = payable.get(asset, 0) + taken
    return tuple([Line(a, payable[a]) for a in sorted(payable) if payable[a] > 0])


cdef _take_fee(Ledger self, Fund f, object event):
    """Apply a NavStruck's accrual and in-kind move: accrued += fee; fee_taken leaves the fee custodian's
    available for fee_payable, and the accrued fee falls by its worth at the official price."""
    cdef FundAsset fa
    cdef Holding h
    nav = event.nav
    if nav.fee:
        _accrued_changed(self, f, nav.fee * CENT)
    q = event.fee_taken
    if not q:
        return
    fa = f.asset_map[event.fee_asset]
    h = _holding(self, fa, self.custodians[event.fee_custodian_id])
    _keep_released(f, h)
    h.available -= q
    _leave(f, h, q)
    fa.liquid = None
    _total_changed(self, fa, -q)
    f.fee_payable[event.fee_asset] = f.fee_payable.get(event.fee_asset, 0) + q
    for line in nav.lines:
        if line.asset == event.fee_asset:
            _accrued_changed(self, f, -q * line.price * fa.info.factor)
            break


def _pay_fee(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f = _fund(self, cmd.fund_id)
    cdef FundAsset fa
    if not cmd.asset:  # in cash
        for name in ("quantity", "tx_hash", "to_address"):
            if getattr(cmd, name):
                raise invalid(name, "must be empty when the fee is paid in cash (no asset)")
        amount = parse_scaled(cmd.amount, "amount", MONEY_DP, limit=MAX_MONEY)
        if amount == 0:
            raise invalid("amount", "must be greater than zero")
        if amount * CENT > f.accrued:
            raise precondition(M.FEE_EXCEEDS_ACCRUED, f"{format_scaled(amount, MONEY_DP)} exceeds the accrued fee "
                                                      f"{format_scaled(round_half_even(f.accrued, CENT), MONEY_DP)}")
        if f.cash - amount < -MAX_MONEY:
            raise out_of_range("amount", "cash would pass -10^28")
        _emit(self, events, M.FeePaid(at=now_ms, fund_id=f.fund_id, amount=amount))
        return None
    if cmd.amount:
        raise invalid("amount", "must be empty when the fee is paid in kind (an asset)")
    fa = _fund_asset(self, f, cmd.asset)
    q = _quantity(self, fa, cmd.quantity, "quantity")
    ADDR.check_printable(cmd.tx_hash, "tx_hash")
    ADDR.check_address(fa.info.chain, cmd.to_address, "to_address")
    payable = f.fee_payable.get(fa.info.symbol, 0)
    if q > payable:
        raise precondition(M.FEE_EXCEEDS_ACCRUED, f"{_qty(self, fa.info.symbol, q)} {fa.info.symbol} exceeds the "
                                                  f"fee payable {_qty(self, fa.info.symbol, payable)}")
    _emit(self, events, M.FeePaid(at=now_ms, fund_id=f.fund_id, asset=fa.info.symbol, quantity=q,
                                 tx_hash=cmd.tx_hash, to_address=cmd.to_address))
    return None


def _on_fee_paid(Ledger self, event):
    cdef Fund f = self.funds[event.fund_id]
    if event.asset:
        left = f.fee_payable.get(event.asset, 0) - event.quantity
        if left:
            f.fee_payable[event.asset] = left
        else:
            f.fee_payable.pop(event.asset, None)
    else:
        _cash_changed(self, f, -event.amount)
        _accrued_changed(self, f, -event.amount * CENT)


cdef object _staking_fee(FundAsset fa, object gross):
    """The staking provider's share of a gross reward: floor(gross x staking_fee_rate)."""
    return gross * fa.staking_fee_rate // RATE_SCALE
