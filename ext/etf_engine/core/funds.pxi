# Assets, custodians and licences, participants, funds and their terms (SPEC §2, §3, §6, §13 terms).

def _register_asset(Ledger self, cmd, long long now_ms, list events):
    if not valid_code(cmd.symbol, 2, 10, True):
        raise invalid("symbol", f"{cmd.symbol!r} is not 2-10 of [A-Z0-9]")
    _need_int(cmd.decimals, "decimals", 0, 18)
    _need_int(cmd.min_confirmations, "min_confirmations", 0, M.MAX_CONFIRMATIONS)
    if cmd.chain and cmd.chain not in ADDR.CHAINS:
        raise invalid("chain", f"{cmd.chain!r} is not BITCOIN, ETHEREUM, SOLANA or empty")
    if cmd.symbol in self.assets:
        raise EngineError(ALREADY_EXISTS, f"asset {cmd.symbol!r} exists")
    _emit(self, events, M.AssetRegistered(at=now_ms, symbol=cmd.symbol, decimals=cmd.decimals,
                                         min_confirmations=cmd.min_confirmations,
                                         chain=ADDR.chain_of(cmd.symbol, cmd.chain)))


def _on_asset(Ledger self, event):
    cdef Asset a = Asset(event.symbol, event.decimals)
    # chain_of: a record from before SPEC §14 has no chain; BTC, ETH and SOL take theirs then too
    a.min_conf, a.chain = event.min_confirmations, ADDR.chain_of(event.symbol, event.chain)
    self.assets[event.symbol] = a


def _check_licence(Ledger self, cmd):
    _need_id(cmd.custodian_id, "custodian_id")
    if cmd.licence_status not in M.LICENCE_STATUSES:
        raise invalid("licence_status", f"{cmd.licence_status!r} is not ACTIVE, SUSPENDED or REVOKED")
    _need_int(cmd.licence_expires_at, "licence_expires_at", 0)


def _register_custodian(Ledger self, cmd, long long now_ms, list events):
    _check_licence(self, cmd)
    if cmd.custodian_id in self.custodians:
        raise EngineError(ALREADY_EXISTS, f"custodian {cmd.custodian_id!r} exists")
    _emit(self, events, M.CustodianRegistered(
        at=now_ms, custodian_id=cmd.custodian_id, name=cmd.name, licence_number=cmd.licence_number,
        licence_status=cmd.licence_status, licence_expires_at=cmd.licence_expires_at))


def _on_custodian(Ledger self, event):
    c = Custodian()
    c.custodian_id, c.name, c.licence_number = event.custodian_id, event.name, event.licence_number
    c.set_licence(event.licence_status, event.licence_expires_at)
    c.min_cold, c.max_hot_seconds = M.DEFAULT_MIN_COLD_RATIO, M.DEFAULT_MAX_HOT_SECONDS  # SPEC §18
    self.custodians[c.custodian_id] = c


def _set_licence(Ledger self, cmd, long long now_ms, list events):
    _check_licence(self, cmd)
    _custodian(self, cmd.custodian_id)
    _emit(self, events, M.LicenceSet(at=now_ms, custodian_id=cmd.custodian_id,
                                    licence_status=cmd.licence_status,
                                    licence_expires_at=cmd.licence_expires_at))


def _on_licence(Ledger self, event):
    self.licence_epoch += 1  # every cached liquid() may have changed
    (<Custodian>self.custodians[event.custodian_id]).set_licence(event.licence_status, event.licence_expires_at)


def _register_participant(Ledger self, cmd, long long now_ms, list events):
    _need_id(cmd.participant_id, "participant_id")
    for i, fund_id in enumerate(cmd.eligible_fund_ids):
        _need_id(fund_id, f"eligible_fund_ids[{i}]")
    _need_int(cmd.max_units_per_order, "max_units_per_order", 1, MAX_SHARES)
    _need_int(cmd.max_units_per_day, "max_units_per_day", 1, MAX_SHARES)
    if cmd.participant_id in self.participants:
        raise EngineError(ALREADY_EXISTS, f"participant {cmd.participant_id!r} exists")
    _emit(self, events, M.ParticipantRegistered(
        at=now_ms, participant_id=cmd.participant_id, name=cmd.name,
        eligible_fund_ids=tuple(sorted(set(cmd.eligible_fund_ids))),
        max_units_per_order=cmd.max_units_per_order, max_units_per_day=cmd.max_units_per_day))


def _on_participant(Ledger self, event):
    p = Participant()
    p.participant_id, p.name = event.participant_id, event.name
    p.eligible = tuple(event.eligible_fund_ids)
    p.eligible_set = set(p.eligible)
    p.max_units_per_order, p.max_units_per_day = event.max_units_per_order, event.max_units_per_day
    p.by_client_id, p.daily = {}, {}
    self.participants[p.participant_id] = p


def list_funds(Ledger self):
    return [(<Fund>self.funds[k]).terms for k in sorted(self.funds)]


def list_participants(Ledger self):
    cdef Participant p
    found = []
    for k in sorted(self.participants):
        p = self.participants[k]
        found.append(M.ParticipantRegistered(at=0, participant_id=p.participant_id, name=p.name,
                                             eligible_fund_ids=p.eligible, max_units_per_order=p.max_units_per_order,
                                             max_units_per_day=p.max_units_per_day))
    return found


def participant_funds(Ledger self, str participant_id):
    p = self.participants.get(participant_id)
    if p is None:
        raise not_found("participant", participant_id)
    return (<Participant>p).eligible


def _asset_terms(Ledger self, spec, str field):
    asset = self.assets.get(spec.asset)
    if asset is None:
        raise not_found(f"{field}asset", spec.asset)
    cap = _fraction(spec.staking_cap, f"{field}staking_cap")  # FundAssetSpec's fields in their order
    buffer = _fraction(spec.liquidity_buffer, f"{field}liquidity_buffer")
    _need_int(spec.unbonding_seconds, f"{field}unbonding_seconds", 0, MAX_SECONDS)
    seed = parse_scaled(spec.seed_quantity_per_unit, f"{field}seed_quantity_per_unit", (<Asset>asset).decimals,
                        limit=MAX_QUANTITY)
    return M.FundAssetTerms(
        asset=spec.asset, staking_cap=cap, liquidity_buffer=buffer, unbonding_seconds=spec.unbonding_seconds,
        seed_quantity_per_unit=seed,
        staking_fee_rate=_rate(spec.staking_fee_rate, f"{field}staking_fee_rate", RATE_SCALE),
        min_cold_ratio=_fraction(spec.min_cold_ratio, f"{field}min_cold_ratio") if spec.min_cold_ratio else None,
    )


cdef object _fund_field(Ledger self, Fund f, str name, object value, object terms=None):
    """One field of CreateFund (``f`` None) or UpdateFund, checked, as FundTerms holds it. The dealing
    terms of SPEC §13 pass as given: _dealing_terms checks them on the merged terms. The fee terms of
    SPEC §17 are checked after those, with ``terms`` the merged terms (fee_asset needs their assets)."""
    cdef dict by_asset
    if name == "base_currency":
        if not valid_code(value, 3, 10, False):
            raise invalid(name, f"{value!r} is not 3-10 of [A-Z]")
    elif name == "creation_unit":
        _need_int(value, name, 1, MAX_CREATION_UNIT)
    elif name == "creation_custodian_id":
        if f is None and not value:  # required, not a custodian to look up ('' would be NOT_FOUND)
            raise invalid(name, "is required: the custodian that receives creations")
        _custodian(self, value)
    elif name == "custodian_priority":
        for i, cid in enumerate(value):
            _custodian(self, cid)
            if cid in value[:i]:
                raise invalid(f"custodian_priority[{i}]", f"{cid!r} is repeated")
        return tuple(value)
    elif name == "assets":
        if f is None and not value:
            raise invalid(name, "a fund holds at least one asset")
        by_asset = {} if f is None else {t.asset: t for t in f.terms.assets}
        given = set()
        for i, spec in enumerate(value):
            if f is not None and spec.asset not in by_asset:
                raise invalid(f"assets[{i}].asset", f"{spec.asset!r} is not an asset of fund {f.fund_id!r}")
            if spec.asset in given:
                raise invalid(f"assets[{i}].asset", f"{spec.asset!r} is repeated")
            given.add(spec.asset)
            by_asset[spec.asset] = _asset_terms(self, spec, f"assets[{i}].")
        return tuple([by_asset[a] for a in sorted(by_asset)])
    elif name == "dealing_status":
        if value not in M.DEALING_STATUSES:
            raise invalid(name, f"{value!r} is not OPEN or SUSPENDED")
    elif name == "max_price_age_seconds":
        _need_int(value, name, 1, MAX_SECONDS)
    elif name in ("creation_fee", "redemption_fee", "seed_cash_per_unit"):
        return parse_scaled(value, name, MONEY_DP, signed=name == "seed_cash_per_unit", limit=MAX_MONEY)
    elif name == "min_liquid_units":
        _need_int(value, name, 0, MAX_SHARES)
    elif name == "management_fee_rate":
        return _rate(value, name, M.MAX_FEE_RATE)
    elif name == "fee_day_count":
        if value not in M.FEE_DAY_COUNTS:
            raise invalid(name, f"{quote(value)} is not ACT_365 or ACT_ACT")
    elif name == "fee_waiver":
        if value is None or not value.until:  # no waiver (UpdateFund: the fund's waiver removed)
            return None
        rate = _rate(value.rate, "fee_waiver.rate", M.MAX_FEE_RATE)
        limit = parse_scaled(value.nav_limit, "fee_waiver.nav_limit", MONEY_DP, limit=MAX_MONEY)
        until = CAL.parse_date(value.until, "fee_waiver.until").isoformat()
        return M.FeeWaiver(rate=rate, nav_limit=limit, until=until)
    elif name == "fee_payment":
        if value not in M.FEE_PAYMENTS:
            raise invalid(name, f"{quote(value)} is not CASH or IN_KIND")
    elif name == "fee_asset":
        if value and value not in [t.asset for t in terms.assets]:
            raise invalid(name, f"{quote(value)} is not an asset of the fund")
    elif name == "fee_custodian_id":
        if value:
            _custodian(self, value)
    elif name == "hold_redemptions_on_break":  # SPEC §19, after the fee terms (model.BOOK_TERMS)
        if type(value) is not bool:
            raise invalid(name, f"{quote(value)} is not true or false")
    return value


def _create_fund(Ledger self, cmd, long long now_ms, list events):
    # CreateFund's fields in declaration order, the dealing terms of SPEC §13 aside; then the shares,
    # ALREADY_EXISTS, and the dealing terms (etf_engine/ledger.py)
    _need_id(cmd.fund_id, "fund_id")
    terms = {name: _fund_field(self, None, name, getattr(cmd, name)) for name in cmd.__struct_fields__
             if name not in ("fund_id", "initial_shares_outstanding") and name not in M.DEALING_TERMS
             and name not in M.FEE_TERMS and name not in M.BOOK_TERMS}
    _need_int(cmd.initial_shares_outstanding, "initial_shares_outstanding", 0, MAX_SHARES)
    if cmd.fund_id in self.funds:
        raise EngineError(ALREADY_EXISTS, f"fund {cmd.fund_id!r} exists")
    terms.update({name: getattr(cmd, name) for name in M.DEALING_TERMS})
    fund_terms = _fee_terms(self, None, cmd, _dealing_terms(self, M.FundTerms(fund_id=cmd.fund_id, **terms), None,
                                                            now_ms))
    _emit(self, events, M.FundCreated(at=now_ms, terms=fund_terms,
                                     shares_outstanding=cmd.initial_shares_outstanding, entry_tier=HOT))


def _update_fund(Ledger self, cmd, long long now_ms, list events):
    # the fields given, each checked in UpdateFund's declaration order (etf_engine/ledger.py); the dealing
    # terms of SPEC §13, declared last, by _dealing_terms on the merged terms
    cdef Fund f = _fund(self, cmd.fund_id)
    old = f.terms
    changes = {name: _fund_field(self, f, name, getattr(cmd, name)) for name in cmd.__struct_fields__
               if name != "fund_id" and getattr(cmd, name) is not None and name not in M.FEE_TERMS
               and name not in M.BOOK_TERMS}
    terms = _fee_terms(self, f, cmd, _dealing_terms(self, _replace(old, **changes), old, now_ms))
    _emit(self, events, M.FundUpdated(at=now_ms, terms=terms))


cdef object _dealing_terms(Ledger self, object terms, object old, long long now_ms):
    """Check a fund's §13 terms (ledger.py order); return them normalised, with first_dealing_date."""
    cal = None
    if terms.calendar_id:
        cal = _calendar(self, terms.calendar_id)
    cutoff = CAL.parse_cutoff(terms.dealing_cutoff, "dealing_cutoff")
    for name in ("create_settlement_days", "redeem_settlement_days"):
        value = getattr(terms, name)
        if type(value) is not int or not 0 <= value <= M.MAX_SETTLEMENT_DAYS:
            raise invalid(name, f"{value!r} is not a number of dealing days 0-{M.MAX_SETTLEMENT_DAYS}")
    if terms.pricing not in M.PRICINGS:
        raise invalid("pricing", f"{terms.pricing!r} is not LIVE or FORWARD")
    if terms.pricing == FORWARD and cal is None:
        raise invalid("pricing", "FORWARD pricing needs a calendar (calendar_id)")
    if type(terms.require_delivery) is not bool:
        raise invalid("require_delivery", f"{terms.require_delivery!r} is not true or false")
    first = ""
    if cal is not None:
        if old is not None and old.calendar_id == terms.calendar_id:
            first = old.first_dealing_date
        else:
            first = CAL.dealing_date(cal, CAL.cutoff_seconds(cutoff), now_ms).isoformat()
    return _replace(terms, dealing_cutoff=cutoff, first_dealing_date=first)


def _on_fund_created(Ledger self, event):
    cdef Fund f = Fund()
    cdef FundAsset fa
    f.fund_id = event.terms.fund_id
    f.cash = f.pending_redeem = 0
    f.shares = f.initial_shares = event.shares_outstanding
    f.nav_num = 0
    f.next_release = LLONG_MAX
    f.read_lots, f.read_max = [], LLONG_MIN
    f.assets, f.asset_map = [], {}
    f.open_orders, f.forward_orders, f.navs, f.pcfs = {}, {}, {}, {}
    f.accrued, f.fee_payable = 0, {}
    f.entry = TIER_CODES[event.entry_tier]  # SPEC §18: COLD for a fund journaled before it
    f.tier_dirty, f.eval_next, f.nd_date = [], "", ""
    f.open_breaks, f.unexplained = {}, {}  # SPEC §19
    for t in event.terms.assets:
        fa = FundAsset()
        fa.fund, fa.info = f, self.assets[t.asset]
        fa.holdings, fa.by_custodian = [], {}
        fa.total = fa.reserved = fa.illiquid = fa.came_in = fa.went_out = 0
        fa.qpu = 0
        f.assets.append(fa)
        f.asset_map[t.asset] = fa
    _set_terms(self, f, event.terms)
    self.funds[f.fund_id] = f


def _on_fund_updated(Ledger self, event):
    _set_terms(self, self.funds[event.terms.fund_id], event.terms)


cdef _set_terms(Ledger self, Fund f, object terms):
    cdef FundAsset fa
    old_currency = None if f.terms is None else f.terms.base_currency
    f.terms = terms
    f.unit = terms.creation_unit
    f.open = terms.dealing_status == M.OPEN
    f.max_age_ms = terms.max_price_age_seconds * 1000
    f.creation_fee, f.redemption_fee = terms.creation_fee, terms.redemption_fee
    f.min_liquid, f.seed_cash = terms.min_liquid_units, terms.seed_cash_per_unit
    f.creation_custodian = self.custodians[terms.creation_custodian_id]
    f.rank = {cid: i for i, cid in enumerate(terms.custodian_priority)}
    f.calendar_id = terms.calendar_id
    f.cutoff = CAL.cutoff_seconds(terms.dealing_cutoff)
    f.create_days, f.redeem_days = terms.create_settlement_days, terms.redeem_settlement_days
    f.forward = terms.pricing == FORWARD
    f.require_delivery = terms.require_delivery
    f.fwd_basket = f.fwd_of = None
    f.win_epoch = -1
    f.deal_date = ""
    f.nd_epoch = -1  # the calendar may have changed: the next dealing day too
    f.tiers_all = True  # the ratios and the calendar: every holding's figures may have changed
    if f.hold_on_break != terms.hold_redemptions_on_break:  # SPEC §19: which holdings are held back
        f.hold_on_break = terms.hold_redemptions_on_break
        _hold_all(f)
    for t in terms.assets:
        fa = f.asset_map[t.asset]
        fa.cap, fa.buffer, fa.seed_qpu = t.staking_cap, t.liquidity_buffer, t.seed_quantity_per_unit
        fa.unbonding_seconds = t.unbonding_seconds
        fa.staking_fee_rate = t.staking_fee_rate
        fa.min_cold = t.min_cold_ratio
        _order_holdings(self, fa)
        if old_currency is None:
            key = (t.asset, terms.base_currency)
            fa.price = self.prices.get(key)
            if fa.price is None:
                fa.price = self.prices[key] = Price()
            self.watchers.setdefault(key, []).append(fa)
            if fa.price.value is None:
                f.missing_prices += 1
    f.basket = None
