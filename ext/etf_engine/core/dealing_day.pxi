# The dealing day: calendars, cut-offs and settlement dates, closures, StrikeNav, official NAV and PCF
# (SPEC §13).

cdef _dates(Ledger self, Fund f, long long now_ms):
    """Set the fund's dealing and settlement dates for an order at now_ms, and the daily limit's key."""
    if not f.calendar_id:
        f.day_key = now_ms // DAY
        return
    if f.win_epoch != self.calendar_epoch or not f.win_from <= now_ms < f.win_until:
        cal = self.calendars[f.calendar_id]
        day = CAL.dealing_date(cal, f.cutoff, now_ms)
        f.deal_date = day.isoformat()
        f.settle_create = CAL.add_dealing_days(cal, day, f.create_days).isoformat()
        f.settle_redeem = CAL.add_dealing_days(cal, day, f.redeem_days).isoformat()
        f.win_from, f.win_until = now_ms, CAL.cutoff_ms(cal, day, f.cutoff)
        f.win_epoch = self.calendar_epoch
    f.day_key = f.deal_date


cdef object _calendar(Ledger self, object calendar_id):
    cal = self.calendars.get(calendar_id)
    if cal is None:
        raise not_found("calendar", calendar_id)
    return cal


def _register_calendar(Ledger self, cmd, long long now_ms, list events):
    _need_id(cmd.calendar_id, "calendar_id")
    CAL.zone(cmd.time_zone)
    holidays = CAL.parse_holidays(cmd.holidays)
    weekend = CAL.parse_weekend(cmd.weekend_days)
    if cmd.calendar_id in self.calendars:
        raise EngineError(ALREADY_EXISTS, f"calendar {cmd.calendar_id!r} exists")
    _emit(self, events, M.CalendarRegistered(at=now_ms, calendar_id=cmd.calendar_id, time_zone=cmd.time_zone,
                                            holidays=holidays, weekend_days=weekend))


def _on_calendar(Ledger self, event):
    _put_calendar(self, CAL.Calendar(event.calendar_id, event.time_zone,
                                    frozenset(map(Date.fromisoformat, event.holidays)),
                                    frozenset(event.weekend_days)))


def _put_calendar(Ledger self, cal):
    self.calendars[cal.calendar_id] = cal
    self.calendar_epoch += 1


def _set_holidays(Ledger self, cmd, long long now_ms, list events):
    _calendar(self, cmd.calendar_id)
    _emit(self, events, M.HolidaysSet(at=now_ms, calendar_id=cmd.calendar_id,
                                     holidays=CAL.parse_holidays(cmd.holidays)))


def _on_holidays(Ledger self, event):
    _put_calendar(self, self.calendars[event.calendar_id].with_holidays(event.holidays))


def _close_day(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cal = _calendar(self, cmd.calendar_id)
    day = CAL.parse_date(cmd.date, "date")
    _need_text(cmd.reason, "reason")
    iso = day.isoformat()
    if not CAL.is_dealing_day(cal, day):
        raise precondition(M.NOT_A_DEALING_DAY, f"{iso} is not a dealing day of {cal.calendar_id}")
    if day < CAL.local_date(cal, now_ms):
        raise precondition(M.NOT_CLOSABLE, f"{iso} is in the past")
    funds = [self.funds[k] for k in sorted(self.funds) if (<Fund>self.funds[k]).calendar_id == cal.calendar_id]
    for f in funds:
        if iso in f.navs:
            raise precondition(M.NOT_CLOSABLE, f"fund {f.fund_id} has struck its NAV of {iso}")
    after = cal.closing(day, cmd.reason)
    to_day = CAL.next_dealing_day(after, day)
    moves = []
    for f in funds:
        for order_id in f.open_orders:
            o = self.orders[order_id]
            if o.dealing_date != iso and o.settlement_date < iso:
                continue
            dealt = Date.fromisoformat(o.dealing_date)
            n = CAL.dealing_days_between(cal, dealt, Date.fromisoformat(o.settlement_date))
            if dealt == day:
                dealt = to_day
            moves.append(M.OrderDates(order_id=order_id, dealing_date=dealt.isoformat(),
                                      settlement_date=CAL.add_dealing_days(after, dealt, n).isoformat()))
    moves.sort(key=lambda m: m.order_id)
    pcfs = tuple([M.PcfMoved(fund_id=f.fund_id, to_date=to_day.isoformat()) for f in funds if iso in f.pcfs])
    _emit(self, events, M.DealingDayClosed(at=now_ms, calendar_id=cal.calendar_id, date=iso, reason=cmd.reason,
                                          orders=tuple(moves), pcfs=pcfs))


def _on_day_closed(Ledger self, event):
    cdef Fund f
    cdef Participant p
    _put_calendar(self, self.calendars[event.calendar_id].closing(Date.fromisoformat(event.date), event.reason))
    for move in event.orders:
        o = self.orders[move.order_id]
        f = self.funds[o.fund_id]
        if move.dealing_date != o.dealing_date:
            p = self.participants[o.participant_id]
            days = p.daily[o.fund_id]
            days[o.dealing_date] -= o.units
            days[move.dealing_date] = days.get(move.dealing_date, 0) + o.units
            if not o.priced:
                f.forward_orders[o.dealing_date].remove(o.order_id)
                f.forward_orders.setdefault(move.dealing_date, []).append(o.order_id)
        if o.side == REDEEM and move.settlement_date != o.settlement_date:
            _due_moved(f, o, move.settlement_date)  # SPEC §18: what is due by the next dealing day
        self.orders[o.order_id] = _replace(o, dealing_date=move.dealing_date,
                                           settlement_date=move.settlement_date, updated_at=event.at)
    for move in event.pcfs:
        f = self.funds[move.fund_id]
        pcf = f.pcfs.pop(event.date)
        if move.to_date not in f.pcfs:
            f.pcfs[move.to_date] = _replace(pcf, dealing_date=move.to_date)


def _strike(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f = _fund(self, cmd.fund_id)
    cdef FundAsset fa
    if not f.calendar_id:
        raise invalid("fund_id", f"fund {f.fund_id} has no calendar: it has no dealing dates to strike")
    day = CAL.parse_date(cmd.dealing_date, "dealing_date")
    official = {}
    for i, tick in enumerate(cmd.ticks):
        field = f"ticks[{i}]."
        if tick.asset not in f.asset_map:
            raise invalid(f"{field}asset", f"{tick.asset!r} is not an asset of fund {f.fund_id}")
        if tick.asset in official:
            raise invalid(f"{field}asset", f"{tick.asset} is given twice")
        if tick.currency != f.terms.base_currency:
            raise invalid(f"{field}currency", f"{tick.currency!r} is not the fund's base currency "
                                              f"{f.terms.base_currency}")
        price = _tick_price(tick, field, now_ms)
        official[tick.asset] = price
    for fa in f.assets:
        if fa.info.symbol not in official:
            raise invalid("ticks", f"no official price for {fa.info.symbol}")
    cal = self.calendars[f.calendar_id]
    iso = day.isoformat()
    if not CAL.is_dealing_day(cal, day):
        raise precondition(M.NOT_A_DEALING_DAY, f"{iso} is not a dealing day of {cal.calendar_id}")
    if iso < f.terms.first_dealing_date:
        raise precondition(M.NOT_A_DEALING_DAY, f"{iso} is before the fund's first dealing date "
                                                f"{f.terms.first_dealing_date}")
    if iso in f.navs:
        raise EngineError(ALREADY_EXISTS, f"the official NAV of {f.fund_id} for {iso} is struck")
    if now_ms < CAL.cutoff_ms(cal, day, f.cutoff):
        raise precondition(M.BEFORE_CUTOFF, f"the cut-off of {iso} ({f.terms.dealing_cutoff} "
                                            f"{cal.time_zone}) has not passed")
    earlier = Date.fromisoformat(f.terms.first_dealing_date)
    while earlier < day:
        if CAL.is_dealing_day(cal, earlier) and earlier.isoformat() not in f.navs:
            raise precondition(M.EARLIER_DATE_NOT_STRUCK, f"{earlier.isoformat()} is not struck yet")
        earlier += ONE_DAY
    _advance(self, f, now_ms)
    U, S = f.unit, f.shares
    gross = f.cash * CENT  # Σ total x official price + cash, before the fee (SPEC §17)
    for fa in f.assets:
        gross += fa.total * official[fa.info.symbol] * fa.info.factor
    fee, fee_days, basis, accrued, taken, fee_fa = _strike_fee(self, f, day, official, gross)
    nav_num = basis - fee * CENT  # = the lines after the in-kind move + cash - accrued after
    breaches = _storage_breaches(self, f, now_ms, fee_fa, self.custodians[f.terms.fee_custodian_id] if taken else None,
                                 taken)  # SPEC §18: at the strike, after its in-kind move
    lines, pcf_lines, held, prices = [], [], 0, []
    for fa in f.assets:
        price = official[fa.info.symbol]
        total = fa.total - taken if fa is fee_fa else fa.total
        worth = total * price * fa.info.factor
        lines.append(M.OfficialLine(asset=fa.info.symbol, quantity=total, price=price, value=round_half_even(worth, CENT)))
        qpu = total * U // S if S else fa.seed_qpu
        held += qpu * price * fa.info.factor
        pcf_lines.append(BasketLine(asset=fa.info.symbol, quantity_per_unit=qpu))
        prices.append(M.PriceLine(asset=fa.info.symbol, price=price))
    nps = round_half_even(nav_num, S * NPS) if S else None
    if S:
        estimated, per_unit = round_half_even(nav_num * U - S * held, S * CENT), round_half_even(nav_num * U, S * CENT)
    else:
        estimated, per_unit = f.seed_cash, round_half_even(held + f.seed_cash * CENT, CENT)
    nav = M.OfficialNav(fund_id=f.fund_id, dealing_date=iso, nav=round_half_even(nav_num, CENT), nav_per_share=nps,
                        shares_outstanding=S, cash=f.cash, lines=tuple(lines), struck_at=now_ms,
                        fee=fee, fee_days=fee_days, fee_basis=round_half_even(basis, CENT) if fee_days else 0,
                        accrued_fees=round_half_even(accrued, CENT),
                        fee_payable=_fee_payable(f, f.terms.fee_asset, taken), storage_breaches=breaches)
    pcf = M.Pcf(fund_id=f.fund_id, dealing_date=CAL.next_dealing_day(cal, day).isoformat(), creation_unit=U,
                lines=tuple(pcf_lines), estimated_cash_component=estimated, nav_per_unit=per_unit,
                nav_per_share=nps, shares_outstanding=S, prices=tuple(prices), published_at=now_ms)
    priced = 0
    for order_id in f.forward_orders.get(iso, ()):
        priced += self.orders[order_id].status == ACCEPTED
    if taken:  # the fee taken in kind (fee_taken 0: none moved, and the event says nothing of it)
        struck = M.NavStruck(at=now_ms, nav=nav, pcf=pcf, fee_taken=taken, fee_asset=f.terms.fee_asset,
                             fee_custodian_id=f.terms.fee_custodian_id)
    else:
        struck = M.NavStruck(at=now_ms, nav=nav, pcf=pcf)
    _emit(self, events, struck)
    return M.StrikeResult(nav=nav, pcf=pcf, priced_orders=priced)


def _on_struck(Ledger self, event):
    cdef Fund f
    cdef FundAsset fa
    nav = event.nav
    f = self.funds[nav.fund_id]
    _advance(self, f, event.at)  # replay: the lots matured by the strike, as its decision saw them
    f.navs[nav.dealing_date] = nav
    f.pcfs[event.pcf.dealing_date] = event.pcf
    _take_fee(self, f, event)
    S = nav.shares_outstanding
    nav_num = nav.cash * CENT - f.accrued  # the official NAV, exact: after the accrual and the in-kind move
    price_factor = {}
    for line in nav.lines:
        fa = f.asset_map[line.asset]
        price_factor[line.asset] = line.price * fa.info.factor
        nav_num += line.quantity * line.price * fa.info.factor
    priced = {}  # id of an acceptance-time basket -> (the basket priced, its cash component)
    nps = nav.nav_per_share
    for order_id in f.forward_orders.pop(nav.dealing_date, ()):
        o = self.orders[order_id]
        if o.status != ACCEPTED:
            continue
        basket = o.basket
        done = priced.get(id(basket))
        if done is None or done[0] is not basket:
            if S:
                held = 0
                for bl in basket.lines:
                    held += bl.quantity_per_unit * price_factor[bl.asset]
                cc = round_half_even(nav_num * basket.creation_unit - S * held, S * CENT)
            else:
                cc = f.seed_cash
            done = priced[id(basket)] = (basket, _replace(basket, cash_component=cc), cc)
        self.orders[order_id] = _replace(o, basket=done[1], cash_amount=o.units * done[2], priced=True,
                                         official_nav_per_share=nps, updated_at=event.at)


def get_calendar(Ledger self, str calendar_id):
    cal = _calendar(self, calendar_id)
    return M.CalendarInfo(
        calendar_id=cal.calendar_id, time_zone=cal.time_zone, holidays=sorted(d.isoformat() for d in cal.holidays),
        weekend_days=sorted(cal.weekend_days),
        closed=[M.ClosedDay(date=d.isoformat(), reason=r) for d, r in sorted(cal.closed.items())])


cdef object _of_date(dict records, str what, str fund_id, object dealing_date):
    """The fund's record of ``dealing_date`` (an official NAV, a PCF), or NOT_FOUND naming it."""
    iso = CAL.parse_date(dealing_date, "dealing_date").isoformat()
    if iso not in records:
        raise not_found(f"{what} of {fund_id} for", iso)
    return records[iso]


def get_official_nav(Ledger self, str fund_id, dealing_date):
    return _of_date(_fund(self, fund_id).navs, "official NAV", fund_id, dealing_date)


def list_official_navs(Ledger self, str fund_id, str from_date="", str to_date=""):
    cdef Fund f = _fund(self, fund_id)
    low = CAL.parse_date(from_date, "from_date").isoformat() if from_date else ""
    high = CAL.parse_date(to_date, "to_date").isoformat() if to_date else "9999-99-99"
    return [f.navs[d] for d in sorted(f.navs) if low <= d <= high]


def get_pcf(Ledger self, str fund_id, dealing_date):
    return _of_date(_fund(self, fund_id).pcfs, "PCF", fund_id, dealing_date)
