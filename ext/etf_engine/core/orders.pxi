# Creation and redemption orders: admission, the decision in SPEC §5 order, capacity, settlement, cancel.

cdef inline object _day_key(object order):
    """What the daily limit counts an order by: its dealing date, or its UTC day without a calendar."""
    return order.dealing_date or order.created_at // DAY



cdef str _reason(Ledger self, Participant p, Fund f, bint redeem, object units, long long now_ms, bint no_wallets):
    """The first failing check of SPEC §5 for a fresh order, or "" to accept it; ``no_wallets``: the
    payout wallets of §14 are required and missing. The basket and the dates must be current
    (``_basket`` and ``_dates`` called at this now_ms)."""
    cdef FundAsset fa
    cdef Holding h
    if not f.open:
        return FUND_SUSPENDED
    if units > p.max_units_per_order:
        return ORDER_LIMIT_EXCEEDED
    days = p.daily.get(f.fund_id)
    if units + (days.get(f.day_key, 0) if days else 0) > p.max_units_per_day:
        return DAILY_LIMIT_EXCEEDED
    if f.basket_stale:
        return STALE_PRICE
    if not redeem:
        return "" if f.creation_custodian.licensed(now_ms) else CUSTODIAN_NOT_LICENSED
    if units * f.unit > f.shares - f.pending_redeem:
        return INSUFFICIENT_SHARES
    if no_wallets:
        return WALLET_NOT_APPROVED
    for fa in f.assets:
        q = units * fa.qpu
        liquid = _liquid(self, fa, now_ms)
        if q > liquid:
            return INSUFFICIENT_LIQUID_BALANCE
        reason = _ratio_breach(f, fa, fa.illiquid, liquid - q, fa.total - fa.reserved - q)
        if reason:
            return reason
    return ""


cdef tuple _legs(Ledger self, Fund f, object units, long long now_ms, dict to):
    """The payout legs of a redemption; ``to``: asset -> destination address (None: none)."""
    cdef FundAsset fa
    cdef Holding h
    legs = []
    for fa in f.assets:
        left = units * fa.qpu
        address = "" if to is None else to[fa.info.symbol]
        for h in fa.holdings:
            if not left:
                break
            if h.available and not h.held and h.custodian.licensed(now_ms):  # held: SPEC §19
                take = h.available if h.available < left else left
                left -= take
                legs.append(Leg(h.custodian.custodian_id, fa.info.symbol, take, address))
    return tuple(legs)


cdef dict _payout_addresses(Ledger self, Participant p, Fund f, object ids):
    """asset -> address of the payout wallets ``ids``, or None unless they are exactly one APPROVED
    wallet of the participant per asset of the fund."""
    cdef tuple info
    found = {}
    pid, assets = p.participant_id, f.asset_map
    for wallet_id in ids:
        info = self.approved.get(wallet_id)
        if info is None or info[0] != pid or info[1] not in assets or info[1] in found:
            return None
        found[info[1]] = info[2]
    return found if len(found) == len(f.assets) else None


cdef tuple _payout_route(Ledger self, Participant p, Fund f, object req):
    """(kept payout wallet ids, asset -> address or None) of a redemption on a fund that requires
    delivery; memoised per participant while no wallet changes."""
    given = tuple(req.payout_wallet_ids)
    if p.route_epoch == self.wallet_epoch and p.route_fund is f and p.route_given == given:
        return p.route
    kept = tuple(sorted(set(given)))
    p.route_given, p.route_fund, p.route_epoch = given, f, self.wallet_epoch
    p.route = (kept, _payout_addresses(self, p, f, kept))
    return p.route


cdef object _kept_wallets(Ledger self, object req):
    """The sorted distinct payout wallet ids an order of ``req`` keeps and is checked for (REDEEM of a
    fund that requires delivery), else None."""
    f = self.funds.get(req.fund_id)
    if req.side == REDEEM and f is not None and (<Fund>f).require_delivery:
        return tuple(sorted(set(req.payout_wallet_ids)))
    return None


cdef object _decide(Ledger self, Participant p, Fund f, object req, str order_id, long long now_ms):
    """The order SubmitOrder would record now (not recorded here)."""
    cdef FundAsset fa
    cdef bint redeem = req.side == REDEEM
    _advance(self, f, now_ms)
    basket = _basket(self, f, now_ms)
    _dates(self, f, now_ms)
    units = req.units
    wallets = to = None
    if f.require_delivery and redeem:
        wallets, to = _payout_route(self, p, f, req)
    reason = _reason(self, p, f, redeem, units, now_ms, wallets is not None and to is None)
    accepted = not reason
    if f.forward:  # the cash component waits for the official valuation (StrikeNav)
        if f.fwd_of is not basket:
            f.fwd_basket, f.fwd_of = _replace(basket, cash_component=None), basket
        basket = f.fwd_basket
    cc = basket.cash_component
    settles = ""
    if accepted and f.calendar_id:
        settles = f.settle_redeem if redeem else f.settle_create
    # Positional, in Order's field order: the hot path of every decision.
    return Order(
        order_id, req.client_order_id, p.participant_id, f.fund_id, req.side, units,
        REJECTED if reason else ACCEPTED, reason, basket,
        tuple([Line(fa.info.symbol, units * fa.qpu) for fa in f.assets]),
        None if cc is None else units * cc,
        (f.redemption_fee if redeem else f.creation_fee) if accepted else 0,
        _legs(self, f, units, now_ms, to) if accepted and redeem else (),
        now_ms, now_ms, f.deal_date, settles, not f.forward, None, wallets,
    )


cdef tuple _admit(Ledger self, str participant_id, object req, str field, dict pending):
    """SubmitOrder's refusals (ledger.py order). Returns (participant, fund, existing order or None).
    ``pending`` maps client_order_id -> request for earlier items of the same batch."""
    if req.side not in SIDES:
        raise invalid(f"{field}side", f"{req.side!r} is not CREATE or REDEEM")
    if type(req.units) is not int or req.units <= 0:
        raise invalid(f"{field}units", f"{req.units!r} must be a positive integer")
    if not valid_id(req.client_order_id):
        raise invalid(f"{field}client_order_id", f"{req.client_order_id!r} is not 1-64 of [A-Za-z0-9._:-]")
    ids = req.payout_wallet_ids
    if ids:
        if len(ids) > M.MAX_PAYOUT_WALLETS:
            raise invalid(f"{field}payout_wallet_ids", f"{len(ids)} ids, more than {M.MAX_PAYOUT_WALLETS}")
        for i, wallet_id in enumerate(ids):
            if not valid_id(wallet_id):
                raise invalid(f"{field}payout_wallet_ids[{i}]", f"{wallet_id!r} is not 1-64 of [A-Za-z0-9._:-]")
    p = self.participants.get(participant_id)
    if p is None:
        raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} is not registered")
    prior = kept = None
    order_id = (<Participant>p).by_client_id.get(req.client_order_id)
    if order_id is not None:
        prior = self.orders[order_id]
        kept = prior.payout_wallet_ids
    elif pending is not None:
        prior = pending.get(req.client_order_id)
        if prior is not None:
            kept = _kept_wallets(self, prior)
    if prior is not None:
        if (prior.fund_id, prior.side, prior.units) != (req.fund_id, req.side, req.units):
            raise EngineError(ALREADY_EXISTS, f"{field}client_order_id {req.client_order_id!r} "
                              f"names another order ({prior.fund_id} {prior.side} {prior.units})")
        if kept is not None and kept != tuple(sorted(set(ids))):
            raise EngineError(ALREADY_EXISTS, f"{field}client_order_id {req.client_order_id!r} "
                              f"names an order with other payout_wallet_ids")
        return p, None, prior
    f = self.funds.get(req.fund_id)
    if f is None:
        raise not_found(f"{field}fund", req.fund_id)
    if req.fund_id not in (<Participant>p).eligible_set:
        raise EngineError(PERMISSION_DENIED, f"{field}participant {participant_id!r} may not deal in {req.fund_id!r}")
    if req.units * (<Fund>f).unit > MAX_SHARES:
        raise out_of_range(f"{field}units", f"{req.units} units exceed 10^15 shares")
    return p, f, None


def check_order(Ledger self, str participant_id, req, long long now_ms):
    p, f, prior = _admit(self, participant_id, req, "", None)
    if prior is not None:
        return _replace(prior, order_id="")
    return _decide(self, p, f, req, "", now_ms)


def get_capacity(Ledger self, str participant_id, str fund_id, long long now_ms):
    p = self.participants.get(participant_id)
    if p is None:
        raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} is not registered")
    cdef Fund f = _fund(self, fund_id)
    if fund_id not in (<Participant>p).eligible_set:
        raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} may not deal in {fund_id!r}")
    _advance(self, f, now_ms)
    _basket(self, f, now_ms)
    _dates(self, f, now_ms)
    # SubmitOrder refuses (OUT_OF_RANGE) more than 10^15 shares: no capacity beyond that.
    share_cap = MAX_SHARES // f.unit
    limit = min((<Participant>p).max_units_per_order, share_cap)
    sides = []
    for redeem in (False, True):
        lo, hi = 0, limit  # accepted at lo (or lo == 0); rejected or refused above hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _reason(self, p, f, redeem, mid, now_ms, False):
                hi = mid - 1
            else:
                lo = mid
        # At the share limit one more unit is refused outright: no reject reason binds.
        reason = _reason(self, p, f, redeem, lo + 1, now_ms, False) if lo < share_cap else ""
        sides.append(CapacitySide(units=lo, binding_reason=reason))
    return Capacity(fund_id=fund_id, create=sides[0], redeem=sides[1])


def _submit(Ledger self, cmd, long long now_ms, list events):
    p, f, prior = _admit(self, cmd.participant_id, cmd.request, "", None)
    if prior is not None:
        return _with_overdue(self, prior, now_ms)
    order = _decide(self, p, f, cmd.request, "ORD-%08d" % self.next_seq, now_ms)
    _emit(self, events, M.OrderRecorded(at=now_ms, order=order))
    return order


def _submit_many(Ledger self, cmd, long long now_ms, list events):
    # Every refusal first, so that a refused item records nothing of the call; then each item
    # exactly as if submitted alone (a repeated key returns the order its first item recorded).
    pending = {}
    for i, req in enumerate(cmd.requests):
        _admit(self, cmd.participant_id, req, f"requests[{i}].", pending)
        pending.setdefault(req.client_order_id, req)
    return [_submit(self, M.SubmitOrder(participant_id=cmd.participant_id, request=req), now_ms, events)
            for req in cmd.requests]


cdef object _own_order(Ledger self, object order_id, object participant_id):
    order = self.orders.get(order_id)
    if order is None or (participant_id is not None and order.participant_id != participant_id):
        raise not_found("order", order_id)
    return order


cdef object _accepted_order(Ledger self, object order_id, object participant_id):
    """The order, refused unless it is ACCEPTED (the only status that settles or cancels)."""
    order = _own_order(self, order_id, participant_id)
    if order.status != ACCEPTED:
        raise precondition(M.ORDER_NOT_ACCEPTED, f"order {order.order_id} is {order.status}")
    return order


def get_order(Ledger self, order_id, participant_id=None, now_ms=None):
    return _with_overdue(self, _own_order(self, order_id, participant_id), now_ms)


def list_orders(Ledger self, str fund_id="", str status="", participant_id=None, now_ms=None):
    return [_with_overdue(self, o, now_ms) for o in self.orders.values()
            if (not fund_id or o.fund_id == fund_id) and (not status or o.status == status)
            and (participant_id is None or o.participant_id == participant_id)]


cdef object _with_overdue(Ledger self, object order, object now_ms):
    """The order as read at now_ms: overdue when ACCEPTED past the end of its settlement date in its
    fund's calendar (ledger.py)."""
    if now_ms is None or order.status != ACCEPTED or not order.settlement_date:
        return order
    calendar_id = (<Fund>self.funds[order.fund_id]).calendar_id
    if not calendar_id:
        return order
    end = CAL.day_end_ms(self.calendars[calendar_id], Date.fromisoformat(order.settlement_date))
    return _replace(order, overdue=True) if now_ms >= end else order


def _settle(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    order = _accepted_order(self, cmd.order_id, None)
    if not order.priced:
        raise precondition(NOT_PRICED, f"order {order.order_id} waits for the official NAV of {order.dealing_date}")
    f = self.funds[order.fund_id]
    if f.require_delivery:
        if order.side == CREATE:
            confirmed = _confirmed(self, order)
            for line in order.deliverables:
                got = confirmed.get(line.asset, 0)
                if got < line.quantity:
                    raise precondition(M.DELIVERY_INCOMPLETE, f"order {order.order_id}: {line.asset} "
                                       f"{_qty(self, line.asset, got)} of {_qty(self, line.asset, line.quantity)} "
                                       "delivered and confirmed")
        else:
            paid = _paid(self, order)
            for leg in order.legs:
                got = paid.get((leg.custodian_id, leg.asset), 0)
                if got < leg.quantity:
                    raise precondition(M.PAYOUT_INCOMPLETE, f"order {order.order_id}: leg {leg.custodian_id} "
                                       f"{leg.asset} paid {_qty(self, leg.asset, got)} of "
                                       f"{_qty(self, leg.asset, leg.quantity)}")
    _advance(self, f, now_ms)
    shares = order.units * order.basket.creation_unit
    if order.side == CREATE:
        c = f.creation_custodian
        if not c.licensed(now_ms):
            raise precondition(CUSTODIAN_NOT_LICENSED, f"creation custodian {c.custodian_id} is not licensed")
        for line in order.deliverables:
            _add(_available(self, f.asset_map[line.asset], c), line.quantity, "order_id")
        if f.shares + shares > MAX_SHARES:  # the request's one field is named (SPEC §11)
            raise out_of_range("order_id", "shares outstanding would exceed 10^15")
    _emit(self, events, M.OrderSettled(at=now_ms, order_id=order.order_id))
    return self.orders[order.order_id]


def _cancel(Ledger self, cmd, long long now_ms, list events):
    _own_order(self, cmd.order_id, cmd.participant_id)
    _need_text(cmd.reason, "reason")
    order = _accepted_order(self, cmd.order_id, cmd.participant_id)
    _emit(self, events, M.OrderCancelled(at=now_ms, order_id=order.order_id, reason=cmd.reason))
    return self.orders[order.order_id]


def _on_order(Ledger self, event):
    cdef Fund f
    cdef Participant p
    order = event.order
    f = self.funds[order.fund_id]
    _advance(self, f, event.at)
    p = self.participants[order.participant_id]
    self.orders[order.order_id] = order
    p.by_client_id[order.client_order_id] = order.order_id
    self.next_seq = int(order.order_id[4:]) + 1
    if order.status != ACCEPTED:
        return
    days = p.daily.setdefault(f.fund_id, {})
    day = _day_key(order)
    days[day] = days.get(day, 0) + order.units
    f.open_orders[order.order_id] = None
    if not order.priced:
        f.forward_orders.setdefault(order.dealing_date, []).append(order.order_id)
    if order.side == REDEEM:
        _reserve(self, f, order, 1)


cdef _reserve(Ledger self, Fund f, object order, int sign):
    """Move a redemption's legs available -> reserved (sign 1, on acceptance) or back (-1, on cancel)."""
    cdef FundAsset fa
    cdef Holding h
    f.pending_redeem += sign * order.units * order.basket.creation_unit
    settles = order.settlement_date
    for leg in order.legs:
        fa = f.asset_map[leg.asset]
        h = fa.by_custodian[leg.custodian_id]
        _keep_released(f, h)
        q = sign * leg.quantity
        h.available -= q
        h.reserved += q
        fa.reserved += q
        fa.liquid = None
        _due_add(f, h, settles, q)  # SPEC §18: payouts_due (reserving moves no coin)


def _on_settled(Ledger self, event):
    cdef Fund f
    cdef FundAsset fa
    cdef Holding h
    order = self.orders[event.order_id]
    f = self.funds[order.fund_id]
    _advance(self, f, event.at)
    shares = order.units * order.basket.creation_unit
    if order.side == CREATE:
        for line in order.deliverables:
            fa = f.asset_map[line.asset]
            h = _holding(self, fa, f.creation_custodian)
            _keep_released(f, h)
            h.available += line.quantity
            _enter(f, h, line.quantity)
            fa.liquid = None
            _total_changed(self, fa, line.quantity)
        _cash_changed(self, f, order.cash_amount)
        f.shares += shares
    else:
        settles = order.settlement_date
        for leg in order.legs:
            fa = f.asset_map[leg.asset]
            h = fa.by_custodian[leg.custodian_id]
            _keep_released(f, h)
            h.reserved -= leg.quantity
            _leave(f, h, leg.quantity)
            _due_add(f, h, settles, -leg.quantity)
            fa.reserved -= leg.quantity
            _total_changed(self, fa, -leg.quantity)
        _cash_changed(self, f, -order.cash_amount)
        f.shares -= shares
        f.pending_redeem -= shares
    f.basket = None
    del f.open_orders[order.order_id]
    self.orders[order.order_id] = _replace(order, status=SETTLED, updated_at=event.at)


def _on_cancelled(Ledger self, event):
    cdef Fund f
    cdef Participant p
    order = self.orders[event.order_id]
    f = self.funds[order.fund_id]
    _advance(self, f, event.at)
    p = self.participants[order.participant_id]
    days = p.daily[f.fund_id]
    days[_day_key(order)] -= order.units
    del f.open_orders[order.order_id]
    if order.side == REDEEM:
        _reserve(self, f, order, -1)
    self.orders[order.order_id] = _replace(order, status=CANCELLED, updated_at=event.at,
                                           cancel_reason=event.reason)
