# The Ledger: state, dispatch of commands and events to the concept modules, lookups, canonical state.

cdef class Ledger:
    """The exact ledger of every fund (see etf_engine/ledger.py for the contract)."""

    def __init__(self):
        self.assets = {}
        self.custodians = {}
        self.participants = {}
        self.funds = {}
        self.prices = {}  # (asset, currency) -> Price
        self.watchers = {}  # (asset, currency) -> [FundAsset]
        self.orders = {}  # order_id -> Order (replaced, never mutated)
        self.calendars = {}  # calendar_id -> calendar.Calendar (replaced, never mutated)
        self.next_seq = 1
        self.licence_epoch = 0
        self.calendar_epoch = 0  # bumped by every calendar change: every cached dealing window is void
        self.wallets, self.live_wallets, self.approved = {}, {}, {}
        self.next_wallet_seq = 1
        self.wallet_epoch = 1  # bumped by every wallet change: every memoised payout route is void
        self.instructions = {}
        self.next_instruction_seq = 1
        self.dry = False
        self.statements, self.breaks = {}, {}  # SPEC §19
        self.next_break_seq = 1
        self._apply = {
            M.AssetRegistered: _on_asset, M.CustodianRegistered: _on_custodian,
            M.LicenceSet: _on_licence, M.ParticipantRegistered: _on_participant,
            M.FundCreated: _on_fund_created, M.FundUpdated: _on_fund_updated,
            M.HoldingAdjusted: _on_holding_adjusted, M.CashAdjusted: _on_cash,
            M.Staked: _on_staked, M.Unstaked: _on_unstaked, M.RewardRecorded: _on_reward,
            M.Slashed: _on_slashed, M.PriceSet: _on_price, M.OrderRecorded: _on_order,
            M.OrderSettled: _on_settled, M.OrderCancelled: _on_cancelled,
            M.CalendarRegistered: _on_calendar, M.HolidaysSet: _on_holidays,
            M.DealingDayClosed: _on_day_closed, M.NavStruck: _on_struck,
            M.ClockAdvanced: _on_clock, M.CheckpointRecorded: _on_clock, M.WalletRegistered: _on_wallet,
            M.WalletApproved: _on_wallet_approved, M.WalletRevoked: _on_wallet_revoked,
            M.DeliveryRecorded: _on_delivery, M.PayoutRecorded: _on_payout,
            M.FeePaid: _on_fee_paid, M.InstructionProposed: _on_instruction_proposed,
            M.InstructionDecided: _on_instruction_decided, M.Swept: _on_swept,
            M.StoragePolicySet: _on_storage_policy, M.StatementRecorded: _on_statement,
            M.BreakResolved: _on_break_resolved,
        }
        self._execute = {
            M.RegisterAsset: _register_asset, M.RegisterCustodian: _register_custodian,
            M.SetCustodianLicence: _set_licence, M.RegisterParticipant: _register_participant,
            M.CreateFund: _create_fund, M.UpdateFund: _update_fund,
            M.AdjustHolding: _adjust_holding, M.AdjustCash: _adjust_cash, M.Stake: _stake,
            M.Unstake: _unstake, M.RecordStakingReward: _reward, M.RecordSlashing: _slash,
            M.PublishPrices: _publish, M.SettleOrder: _settle, M.SubmitOrder: _submit,
            M.SubmitOrders: _submit_many, M.CancelOrder: _cancel,
            M.RegisterCalendar: _register_calendar, M.SetHolidays: _set_holidays,
            M.CloseDealingDay: _close_day, M.StrikeNav: _strike,
            M.RegisterWallet: _register_wallet, M.ApproveWallet: _approve_wallet,
            M.RevokeWallet: _revoke_wallet, M.RecordDelivery: _record_delivery,
            M.RecordPayout: _record_payout, M.PayFee: _pay_fee,
            M.ProposeInstruction: _propose, M.ApproveInstruction: _approve_instruction,
            M.RejectInstruction: _reject_instruction, M.Sweep: _sweep,
            M.SetStoragePolicy: _set_storage_policy, M.RecordStatement: _record_statement,
            M.ResolveBreak: _resolve_break,
        }

    def execute(self, command, long long now_ms):
        handler = self._execute.get(type(command))
        if handler is None:
            raise invalid("command", f"unknown command {type(command).__name__}")
        events = []
        result = handler(self, command, now_ms, events)
        return result, events

    def apply(self, event):
        cdef Fund f = None
        handler = self._apply.get(type(event))
        if handler is None:
            raise invalid("event", f"unknown event {type(event).__name__}")
        fund_id = getattr(event, "fund_id", None)
        if fund_id is not None:
            f = self.funds.get(fund_id)
            if f is not None:
                _advance(self, f, event.at)
        handler(self, event)
        # SPEC §18: every holding of a fund the record touched is evaluated at its time (idle)
        if f is not None:
            _track_idle(self, f, event.at)
        else:
            _track_record(self, event)

    @classmethod
    def restore(cls, state):
        """A ledger holding exactly ``state`` (a LedgerState, as ``state()`` returns it): the snapshot's
        way back."""
        cdef Ledger ledger = cls()
        _restore(ledger, state)
        return ledger

    def get_nav(self, str fund_id, long long now_ms):
        return get_nav(self, fund_id, now_ms)

    def get_basket(self, str fund_id, long long now_ms):
        return get_basket(self, fund_id, now_ms)

    def get_holdings(self, str fund_id, long long now_ms):
        return get_holdings(self, fund_id, now_ms)

    def check_order(self, str participant_id, req, long long now_ms):
        return check_order(self, participant_id, req, now_ms)

    def get_capacity(self, str participant_id, str fund_id, long long now_ms):
        return get_capacity(self, participant_id, fund_id, now_ms)

    def get_order(self, order_id, participant_id=None, now_ms=None):
        return get_order(self, order_id, participant_id, now_ms)

    def list_orders(self, str fund_id="", str status="", participant_id=None, now_ms=None):
        return list_orders(self, fund_id, status, participant_id, now_ms)

    def list_prices(self, ):
        return list_prices(self)

    def list_funds(self, ):
        return list_funds(self)

    def list_participants(self, ):
        return list_participants(self)

    def participant_funds(self, str participant_id):
        return participant_funds(self, participant_id)

    def list_wallets(self, str participant_id=""):
        return list_wallets(self, participant_id)

    def get_calendar(self, str calendar_id):
        return get_calendar(self, calendar_id)

    def get_official_nav(self, str fund_id, dealing_date):
        return get_official_nav(self, fund_id, dealing_date)

    def list_official_navs(self, str fund_id, str from_date="", str to_date=""):
        return list_official_navs(self, fund_id, from_date, to_date)

    def get_pcf(self, str fund_id, dealing_date):
        return get_pcf(self, fund_id, dealing_date)

    def list_instructions(self, str status=""):
        return list_instructions(self, status)

    def list_breaks(self, str fund_id="", str status=""):
        return list_breaks(self, fund_id, status)

    def get_break(self, break_id):
        return get_break(self, break_id)

    def statement_book(self, str fund_id, custodian_id, long long now_ms):
        return statement_book(self, fund_id, custodian_id, now_ms)

    def check_invariants(self, long long now_ms):
        return check_invariants(self, now_ms)

    def state(self, long long now_ms):
        return state(self, now_ms)


cdef _emit(Ledger self, list events, event):
    if self.dry:  # a proposed instruction: its checks have passed, nothing applies (instructions.pxi)
        events.append(event)
        raise _Checked()
    self.apply(event)
    events.append(event)


cdef Fund _fund(Ledger self, str fund_id):
    f = self.funds.get(fund_id)
    if f is None:
        raise not_found("fund", fund_id)
    return <Fund>f


cdef Custodian _custodian(Ledger self, object custodian_id):
    c = self.custodians.get(custodian_id)
    if c is None:
        raise not_found("custodian", custodian_id)
    return <Custodian>c


cdef FundAsset _fund_asset(Ledger self, Fund f, object asset):
    fa = f.asset_map.get(asset)
    if fa is None:
        raise invalid("asset", f"{asset!r} is not an asset of fund {f.fund_id!r}")
    return <FundAsset>fa


cdef Holding _holding(Ledger self, FundAsset fa, Custodian c):
    """The holding of (fund, custodian, asset), created empty on first use."""
    h = fa.by_custodian.get(c.custodian_id)
    if h is None:
        h = Holding(c, fa.info.symbol)
        (<Holding>h).held = _held(fa.fund, c.custodian_id, fa.info.symbol)  # SPEC §19
        fa.by_custodian[c.custodian_id] = h
        fa.holdings.append(h)
        _order_holdings(self, fa)
    return <Holding>h


cdef _order_holdings(Ledger self, FundAsset fa):
    rank = fa.fund.rank
    n = len(rank)
    fa.holdings.sort(key=lambda h: (rank.get((<Holding>h).custodian.custodian_id, n),
                                    (<Holding>h).custodian.custodian_id))


def _on_clock(Ledger self, event):
    pass  # the engine's clock, not the ledger's; a checkpoint is the journal's (SPEC §21)


def state(Ledger self, long long now_ms):
    cdef Fund f
    cdef FundAsset fa
    cdef Holding h
    cdef Asset a
    cdef Custodian c
    cdef Participant p
    cdef Price pr
    funds = []
    for fund_id in sorted(self.funds):
        f = self.funds[fund_id]
        _advance(self, f, now_ms)
        rows = []
        for fa in f.assets:
            for h in fa.holdings:
                if h.available or h.reserved or h.staked or h.lots:
                    rows.append(S.HoldingState(h.custodian.custodian_id, h.asset, h.available, h.reserved, h.staked,
                                               sorted([(lot[0], lot[1]) for lot in h.lots]), h.warm, h.hot,
                                               h.over_since))
        rows.sort(key=lambda r: (r.custodian_id, r.asset))
        funds.append(S.FundState(f.terms, f.cash, f.shares, rows, f.accrued,
                                 [(k, q) for k, q in sorted(f.fee_payable.items()) if q > 0], TIER_NAMES[f.entry]))
    by_fund = [self.funds[k] for k in sorted(self.funds)]
    return S.LedgerState(
        assets=[S.AssetState(a.symbol, a.decimals, a.min_conf, a.chain)
                for a in [self.assets[k] for k in sorted(self.assets)]],
        custodians=[S.CustodianState(c.custodian_id, c.name, c.licence_number, c.status, c.expires_at, c.min_cold,
                                     c.max_hot_seconds)
                    for c in [self.custodians[k] for k in sorted(self.custodians)]],
        participants=[S.ParticipantState(p.participant_id, p.name, list(p.eligible), p.max_units_per_order,
                                         p.max_units_per_day)
                      for p in [self.participants[k] for k in sorted(self.participants)]],
        prices=[S.PriceState(k[0], k[1], (<Price>v).value, (<Price>v).as_of) for k, v in sorted(self.prices.items())
                if (<Price>v).value is not None],
        funds=funds,
        orders=[self.orders[k] for k in sorted(self.orders)],
        next_order_seq=self.next_seq,
        calendars=[S.CalendarState(cal.calendar_id, cal.time_zone, sorted(d.isoformat() for d in cal.holidays),
                                   sorted(cal.weekend_days), [(d.isoformat(), r) for d, r in sorted(cal.closed.items())])
                   for cal in [self.calendars[k] for k in sorted(self.calendars)]],
        official_navs=[(<Fund>f).navs[d] for f in by_fund for d in sorted((<Fund>f).navs)],
        pcfs=[(<Fund>f).pcfs[d] for f in by_fund for d in sorted((<Fund>f).pcfs)],
        wallets=[self.wallets[k] for k in sorted(self.wallets)],
        next_wallet_seq=self.next_wallet_seq,
        instructions=[self.instructions[k] for k in sorted(self.instructions)],
        next_instruction_seq=self.next_instruction_seq,
        statements=[s for k in sorted(self.statements) for s in self.statements[k].values()],
        breaks=[self.breaks[k] for k in sorted(self.breaks)],
        next_break_seq=self.next_break_seq,
    )


cdef _restore(Ledger ledger, state):
    cdef Fund f
    cdef FundAsset fa
    cdef Holding h
    cdef Participant p
    for a in state.assets:
        _on_asset(ledger, M.AssetRegistered(at=0, symbol=a.symbol, decimals=a.decimals,
                                            min_confirmations=a.min_confirmations, chain=a.chain))
    for c in state.custodians:
        _on_custodian(ledger, M.CustodianRegistered(
            at=0, custodian_id=c.custodian_id, name=c.name, licence_number=c.licence_number,
            licence_status=c.licence_status, licence_expires_at=c.licence_expires_at))
        _on_storage_policy(ledger, M.StoragePolicySet(at=0, custodian_id=c.custodian_id, min_cold_ratio=c.min_cold_ratio,
                                                      max_hot_seconds=c.max_hot_seconds))
    for cal in state.calendars:
        _put_calendar(ledger, CAL.Calendar(cal.calendar_id, cal.time_zone,
                                           frozenset(map(Date.fromisoformat, cal.holidays)),
                                           frozenset(cal.weekend_days),
                                           {Date.fromisoformat(d): r for d, r in cal.closed}))
    for x in state.participants:
        _on_participant(ledger, M.ParticipantRegistered(
            at=0, participant_id=x.participant_id, name=x.name, eligible_fund_ids=tuple(x.eligible_fund_ids),
            max_units_per_order=x.max_units_per_order, max_units_per_day=x.max_units_per_day))
    for fs in state.funds:
        _on_fund_created(ledger, M.FundCreated(at=0, terms=fs.terms, shares_outstanding=fs.shares_outstanding,
                                               entry_tier=fs.entry_tier))
        f = ledger.funds[fs.terms.fund_id]
        _cash_changed(ledger, f, fs.cash)
        _accrued_changed(ledger, f, fs.accrued_fees)
        for asset, q in fs.fee_payable:
            f.fee_payable[asset] = q
        for row in fs.holdings:
            fa = f.asset_map[row.asset]
            h = _holding(ledger, fa, ledger.custodians[row.custodian_id])
            h.available, h.reserved, h.staked = row.available, row.reserved, row.staked
            h.warm, h.hot, h.over_since = row.warm, row.hot, row.over_since  # a snapshot before SPEC §18: all cold
            fa.liquid = None
            h.lots = [[t, q] for t, q in row.lots]
            h.unbonding = sum(q for _, q in row.lots)
            fa.reserved += row.reserved
            fa.illiquid += row.staked + h.unbonding
            _total_changed(ledger, fa, row.available + row.reserved + row.staked + h.unbonding)
            for t, _ in row.lots:
                f.next_release = min(f.next_release, t)
    for x in state.prices:
        _on_price(ledger, M.PriceSet(at=0, asset=x.asset, currency=x.currency, price=x.price, as_of=x.as_of))
    for order in state.orders:
        ledger.orders[order.order_id] = order
        p = ledger.participants[order.participant_id]
        p.by_client_id[order.client_order_id] = order.order_id
        if order.status in (ACCEPTED, SETTLED):
            days = p.daily.setdefault(order.fund_id, {})
            day = _day_key(order)
            days[day] = days.get(day, 0) + order.units
        f = ledger.funds[order.fund_id]
        if order.status == ACCEPTED:
            f.open_orders[order.order_id] = None
            if not order.priced:
                f.forward_orders.setdefault(order.dealing_date, []).append(order.order_id)
            if order.side == REDEEM:
                f.pending_redeem += order.units * order.basket.creation_unit
                _due_changed(f, order, 1)
    for order in state.orders:  # what a snapshot does not keep: the shares the fund was created with
        if order.status == SETTLED:
            f = ledger.funds[order.fund_id]
            f.initial_shares -= (1 if order.side == CREATE else -1) * order.units * order.basket.creation_unit
    for nav in state.official_navs:
        (<Fund>ledger.funds[nav.fund_id]).navs[nav.dealing_date] = nav
    for pcf in state.pcfs:
        (<Fund>ledger.funds[pcf.fund_id]).pcfs[pcf.dealing_date] = pcf
    for wallet in state.wallets:
        _on_wallet(ledger, M.WalletRegistered(at=0, wallet=wallet))
    ledger.next_wallet_seq = state.next_wallet_seq
    for instruction in state.instructions:
        ledger.instructions[instruction.instruction_id] = instruction
    ledger.next_instruction_seq = state.next_instruction_seq
    ledger.next_seq = state.next_order_seq
    _restore_books(ledger, state)  # SPEC §19: statements, breaks, and the holdings they hold back
