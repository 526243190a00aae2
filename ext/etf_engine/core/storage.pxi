# Storage tiers and the storage-ratio policy (SPEC §18): where each holding's held coins (available +
# reserved) are kept — cold, warm, hot; cold is held - warm - hot —, Sweep and SetStoragePolicy, the
# figures against the policy (payouts_due, cold_required, hot_allowance, breach, idle) and the breaches a
# strike records.
#
# What enters held lands in the fund's entry tier (_enter); what leaves leaves hot, then warm, then cold
# (_leave). Each change marks its holding dirty, so that the idle evaluation after a record (_track_idle)
# looks only at what may have changed: the holdings marked, or all of the fund's when its terms, the
# policy of one of its custodians, its calendar or the next dealing day changed. A holding not looked at
# has the figures of the fund's previous evaluation, so evaluating it would leave over_since as it is.

cdef object TIER_SCALE = FRACTION_SCALE  # min_cold_ratio is a fraction, 1e-4
cdef dict TIER_CODES = {M.COLD: TIER_COLD, M.WARM: TIER_WARM, M.HOT: TIER_HOT}
cdef tuple TIER_NAMES = (M.COLD, M.WARM, M.HOT)
# the records without a fund_id of their own that touch a fund (_track_record)
cdef object OrderRecorded = M.OrderRecorded
cdef object OrderSettled = M.OrderSettled
cdef object OrderCancelled = M.OrderCancelled
cdef object DeliveryRecorded = M.DeliveryRecorded
cdef object PayoutRecorded = M.PayoutRecorded
cdef object FundCreated = M.FundCreated
cdef object FundUpdated = M.FundUpdated
cdef object NavStruck = M.NavStruck
cdef object CalendarRegistered = M.CalendarRegistered
cdef object HolidaysSet = M.HolidaysSet
cdef object DealingDayClosed = M.DealingDayClosed
cdef object StoragePolicySet = M.StoragePolicySet
cdef object BreakResolved = M.BreakResolved


# -- tier moves -------------------------------------------------------------------------------------------

cdef inline void _touch(Fund f, Holding h) noexcept:
    """h's tier figures may have changed: the fund's next idle evaluation looks at it."""
    if not h.dirty:
        h.dirty = True
        f.tier_dirty.append(h)


cdef _enter(Fund f, Holding h, object q):
    """q entered held at h: it lands in the fund's entry tier (cold: nothing to count)."""
    if f.entry == TIER_HOT:
        h.hot += q
    elif f.entry == TIER_WARM:
        h.warm += q
    _touch(f, h)


cdef _leave(Fund f, Holding h, object q):
    """q left held at h: out of hot, then warm, then cold."""
    hot = h.hot
    if q <= hot:
        h.hot = hot - q
    else:
        h.hot = 0
        q -= hot
        warm = h.warm
        h.warm = warm - q if q < warm else 0
    _touch(f, h)


cdef inline _due_add(Fund f, Holding h, object settles, object q):
    """q more (or less) of h's open legs settle on ``settles`` ("": no settlement date); they sum to reserved."""
    left = h.due.get(settles, 0) + q
    if left:
        h.due[settles] = left
    else:
        del h.due[settles]
    # Only what is due changed: more due cannot bring a holding under its allowance over it, nor less due
    # one over it under, nor anything hot 0 over; more due than its slack may bring one over it under. (A
    # holding marked already, or a fund to be evaluated in full, is evaluated whatever this decides.)
    if h.over_since is None:
        if q < 0 and h.hot:
            _touch(f, h)
    elif q > 0:
        h.slack -= q  # a leg not due by the next dealing day counts too: the slack only errs low
        if h.slack < 0:
            _touch(f, h)


cdef _due_changed(Fund f, object order, int sign):
    """The open legs of an ACCEPTED redemption count (sign 1) or no longer count (-1) in payouts_due."""
    cdef FundAsset fa
    settles = order.settlement_date
    for leg in order.legs:
        fa = f.asset_map[leg.asset]
        _due_add(f, fa.by_custodian[leg.custodian_id], settles, sign * leg.quantity)


cdef _due_moved(Fund f, object order, str settles):
    """A DealingDayClosed moved the settlement date of an ACCEPTED redemption to ``settles``."""
    _due_changed(f, order, -1)
    _due_changed(f, _replace(order, settlement_date=settles), 1)


# -- the figures ------------------------------------------------------------------------------------------

cdef str _next_day(Ledger self, Fund f, long long t):
    """The next dealing day (ISO) after the local date of t in the fund's calendar; cached per local day."""
    if f.nd_epoch != self.calendar_epoch or not f.nd_from <= t < f.nd_until:
        cal = self.calendars[f.calendar_id]
        local = CAL.local_date(cal, t)
        f.nd_date = CAL.next_dealing_day(cal, local).isoformat()
        f.nd_from, f.nd_until = t, CAL.day_end_ms(cal, local)
        f.nd_epoch = self.calendar_epoch
    return f.nd_date


cdef object _payouts_due(Ledger self, Fund f, Holding h, long long t):
    """The legs at h of the fund's ACCEPTED redemptions settling on or before the next dealing day (every
    one without a calendar; one without a settlement date, "", always counts)."""
    if not f.calendar_id or not h.reserved:
        return h.reserved  # the open legs at h sum to reserved
    upto = _next_day(self, f, t)
    due = h.reserved
    for settles, q in h.due.items():
        if settles > upto:
            due -= q
    return due


cdef inline object _ratio(FundAsset fa, Holding h):
    return h.custodian.min_cold if fa.min_cold is None else fa.min_cold


cdef tuple _figures(Ledger self, Fund f, FundAsset fa, Holding h, long long t, object leaving):
    """(cold, warm, hot, cold_required, hot_allowance) of h at t (its lots released by t), as if
    ``leaving`` had left held (a strike's in-kind fee, before it applies)."""
    warm, hot = h.warm, h.hot
    held = h.available + h.reserved
    if leaving:
        held -= leaving
        if leaving <= hot:
            hot -= leaving
        else:
            leaving -= hot
            hot = 0
            warm = warm - leaving if leaving < warm else 0
    r = _ratio(fa, h)
    due = _payouts_due(self, f, h, t)
    required = -(-r * held // TIER_SCALE) - due
    if required < 0:
        required = 0
    return held - warm - hot, warm, hot, required, (TIER_SCALE - r) * held // TIER_SCALE + due


cdef object _tiers(Ledger self, Fund f, FundAsset fa, Holding h, long long t):
    """A holding's HoldingTiers as read at t."""
    cold, warm, hot, required, allowance = _figures(self, f, fa, h, t, 0)
    since = h.over_since
    idle = hot > allowance and since is not None and t - <long long>since > h.custodian.max_hot_seconds * 1000
    return HoldingTiers(cold, warm, hot, required, allowance, cold < required, idle)


cdef tuple _storage_breaches(Ledger self, Fund f, long long t, FundAsset fee_fa, Custodian fee_custodian,
                             object taken):
    """The fund's holdings in breach at t (by custodian, then asset), after ``taken`` of the fee asset has
    left the fee custodian's holding (the strike's in-kind move, not applied yet)."""
    cdef FundAsset fa
    cdef Holding h
    found = []
    for fa in f.assets:
        for h in fa.holdings:
            leaving = taken if fa is fee_fa and h.custodian is fee_custodian else 0
            held = h.available + h.reserved
            cold = held - h.warm - h.hot
            if leaving:
                held -= leaving
                spill = leaving - h.hot - h.warm  # what leaves cold
                if spill > 0:
                    cold -= spill
            if cold * TIER_SCALE >= _ratio(fa, h) * held:
                continue  # cold >= ceil(r x held) >= cold_required, whatever is due
            cold, _, _, required, _ = _figures(self, f, fa, h, t, leaving)
            if cold < required:
                found.append(StorageBreach(custodian_id=h.custodian.custodian_id, asset=h.asset, cold=cold,
                                           cold_required=required))
    found.sort(key=lambda b: (b.custodian_id, b.asset))
    return tuple(found)


# -- idle: hot above its allowance since some record --------------------------------------------------------

cdef _evaluate(Ledger self, Fund f, FundAsset fa, Holding h, long long t):
    """Set over_since (kept, or t) while hot > hot_allowance at t, else clear it."""
    hot = h.hot
    if not hot:  # hot 0 is never above an allowance
        h.over_since = None
        return
    # over: hot > hot_allowance = floor((1 - r) x held) + due, i.e. slack = hot - hot_allowance - 1 >= 0
    slack = hot - (TIER_SCALE - _ratio(fa, h)) * (h.available + h.reserved) // TIER_SCALE - 1
    if slack >= 0 and h.reserved:  # nothing reserved: nothing due
        slack -= _payouts_due(self, f, h, t)
    if slack >= 0:
        h.slack = slack
        if h.over_since is None:
            h.over_since = t
    else:
        h.over_since = None


cdef _track_idle(Ledger self, Fund f, long long t):
    """Evaluate the fund's holdings at the time t of a record that touched it (etf_engine/ledger.py, idle):
    those that may have changed since its previous evaluation."""
    cdef FundAsset fa
    cdef Holding h
    cdef list dirty
    _advance(self, f, t)  # the lots matured by t are held (and marked)
    if f.calendar_id:
        upto = _next_day(self, f, t)
        if upto != f.eval_next:  # what is due may have changed for every holding
            f.eval_next = upto
            f.tiers_all = True
    dirty = f.tier_dirty
    if not dirty and not f.tiers_all:
        return
    f.tier_dirty = []
    for h in dirty:
        h.dirty = False
    if f.tiers_all:
        f.tiers_all = False
        for fa in f.assets:
            for h in fa.holdings:
                _evaluate(self, f, fa, h, t)
    else:
        for h in dirty:
            _evaluate(self, f, <FundAsset>f.asset_map[h.asset], h, t)


cdef _track_record(Ledger self, object event):
    """The idle evaluation after a record without a fund_id of its own: the funds it touches (an order's,
    the terms', a strike's; every fund on a calendar it changes; every fund holding something at a
    custodian whose policy it sets)."""
    cdef Fund f
    kind = type(event)
    if kind is OrderRecorded:
        fund_id = event.order.fund_id
    elif kind is OrderSettled or kind is OrderCancelled or kind is DeliveryRecorded or kind is PayoutRecorded:
        fund_id = self.orders[event.order_id].fund_id
    elif kind is FundCreated or kind is FundUpdated:
        fund_id = event.terms.fund_id
    elif kind is NavStruck:
        fund_id = event.nav.fund_id
    elif kind is BreakResolved:  # SPEC §19: its adjustment moves the break's holding
        fund_id = self.breaks[event.break_id].fund_id
    elif kind is CalendarRegistered or kind is HolidaysSet or kind is DealingDayClosed:
        for f in self.funds.values():
            if f.calendar_id == event.calendar_id:
                f.tiers_all = True
                _track_idle(self, f, event.at)
        return
    elif kind is StoragePolicySet:
        for f in self.funds.values():
            if _holds_at(f, event.custodian_id):
                f.tiers_all = True
                _track_idle(self, f, event.at)
        return
    else:
        return
    f = self.funds.get(fund_id)
    if f is not None:
        _track_idle(self, f, event.at)


cdef bint _holds_at(Fund f, object custodian_id):
    """The fund has a holding (if empty) at the custodian."""
    cdef FundAsset fa
    for fa in f.assets:
        if custodian_id in fa.by_custodian:
            return True
    return False


# -- Sweep and SetStoragePolicy ---------------------------------------------------------------------------

cdef object _tier_balance(Holding h, object tier):
    """What a tier of h holds (h None: nothing)."""
    if h is None:
        return 0
    if tier == HOT:
        return h.hot
    if tier == WARM:
        return h.warm
    return h.available + h.reserved - h.warm - h.hot


def _sweep(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cdef FundAsset fa
    cdef Custodian c
    f, fa, c = _target(self, cmd, now_ms)  # the lots matured by now are held, in the entry tier
    q = _quantity(self, fa, cmd.quantity, "quantity")
    if cmd.from_tier not in TIER_CODES:
        raise invalid("from_tier", f"{quote(cmd.from_tier)} is not COLD, WARM or HOT")
    if cmd.to_tier not in TIER_CODES:
        raise invalid("to_tier", f"{quote(cmd.to_tier)} is not COLD, WARM or HOT")
    if cmd.to_tier == cmd.from_tier:
        raise invalid("to_tier", f"{cmd.to_tier} is from_tier too")
    have = _tier_balance(fa.by_custodian.get(c.custodian_id), cmd.from_tier)
    if have < q:
        raise precondition(M.INSUFFICIENT_TIER_BALANCE, f"{cmd.from_tier} at {c.custodian_id} holds "
                                                        f"{_qty(self, fa.info.symbol, have)} {fa.info.symbol}, "
                                                        f"less than {_qty(self, fa.info.symbol, q)}")
    _emit(self, events, M.Swept(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id, asset=fa.info.symbol,
                               quantity=q, from_tier=cmd.from_tier, to_tier=cmd.to_tier))
    return None


def _on_swept(Ledger self, event):
    cdef Fund f = self.funds[event.fund_id]
    cdef FundAsset fa = f.asset_map[event.asset]
    cdef Holding h = _holding(self, fa, self.custodians[event.custodian_id])
    _keep_released(f, h)
    q = event.quantity
    for tier, sign in ((event.from_tier, -1), (event.to_tier, 1)):
        if tier == HOT:
            h.hot += sign * q
        elif tier == WARM:
            h.warm += sign * q
    _touch(f, h)


def _set_storage_policy(Ledger self, cmd, long long now_ms, list events):
    _custodian(self, cmd.custodian_id)
    ratio = _fraction(cmd.min_cold_ratio, "min_cold_ratio")
    _need_int(cmd.max_hot_seconds, "max_hot_seconds", 0, MAX_SECONDS)
    _emit(self, events, M.StoragePolicySet(at=now_ms, custodian_id=cmd.custodian_id, min_cold_ratio=ratio,
                                          max_hot_seconds=cmd.max_hot_seconds))
    return None


def _on_storage_policy(Ledger self, event):
    cdef Custodian c = self.custodians[event.custodian_id]
    c.min_cold, c.max_hot_seconds = event.min_cold_ratio, event.max_hot_seconds
