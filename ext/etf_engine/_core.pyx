# cython: language_level=3
"""The compiled ledger: every fund's exact state, NAV, basket and order decisions (SPEC §2-7).

Pure: no clock, no I/O; time comes in with each call. State changes only through ``apply``, so the
events ``execute`` returns rebuild the same state on replay. Quantities and money are Python ints:
exact at any size, so an 18-decimal asset above 10**24 units is as exact as a satoshi, and range
limits are checked explicitly (OUT_OF_RANGE) rather than by overflow.

Speed comes from keeping what an order needs at hand: per fund and asset the running total,
reserved and illiquid sums; per fund the exact NAV numerator, updated incrementally by every tick
and every change of holdings or cash; and the basket, cached until something it depends on changes
(a reservation does not: totals stay the same).
"""

from libc.limits cimport LLONG_MAX

from datetime import date as Date, timedelta

import msgspec

from etf_engine import addresses as ADDR
from etf_engine import calendar as CAL
from etf_engine import model as M
from etf_engine.errors import (
    ALREADY_EXISTS, EngineError, PERMISSION_DENIED, invalid, not_found, out_of_range, precondition, quote,
)
from etf_engine.numbers import (
    FRACTION_DP, FRACTION_SCALE, MAX_CREATION_UNIT, MAX_QUANTITY, MAX_SHARES, MONEY_DP, PRICE_DP,
    MAX_PRICE, POW10, format_quantity, parse_scaled,
)

# nav_num counts 1e-26 of base currency (a 1e-8 price unit times 1e-18 of an asset)
cdef object CENT = POW10[24]  # one cent in nav_num units
cdef object NPS = POW10[22]  # 1e-4 (nav_per_share unit) in nav_num units
cdef object FSCALE = FRACTION_SCALE
cdef object MAXQ = MAX_QUANTITY
cdef object MAXSH = MAX_SHARES
cdef long long DAY = M.DAY_MS
cdef str _ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"


# Module constants bound once: a lookup on the model module costs more than the check it serves.
cdef object REDEEM = M.REDEEM
cdef object CREATE = M.CREATE
cdef object ACCEPTED = M.ACCEPTED
cdef object REJECTED = M.REJECTED
cdef object SETTLED = M.SETTLED
cdef object CANCELLED = M.CANCELLED
cdef object SIDES = M.SIDES
cdef object FUND_SUSPENDED = M.FUND_SUSPENDED
cdef object ORDER_LIMIT_EXCEEDED = M.ORDER_LIMIT_EXCEEDED
cdef object DAILY_LIMIT_EXCEEDED = M.DAILY_LIMIT_EXCEEDED
cdef object STALE_PRICE = M.STALE_PRICE
cdef object CUSTODIAN_NOT_LICENSED = M.CUSTODIAN_NOT_LICENSED
cdef object INSUFFICIENT_SHARES = M.INSUFFICIENT_SHARES
cdef object INSUFFICIENT_LIQUID_BALANCE = M.INSUFFICIENT_LIQUID_BALANCE
cdef object STAKING_CAP_BREACH = M.STAKING_CAP_BREACH
cdef object LIQUIDITY_BUFFER_BREACH = M.LIQUIDITY_BUFFER_BREACH
cdef object INSUFFICIENT_STAKED_BALANCE = M.INSUFFICIENT_STAKED_BALANCE
cdef object Order = M.Order
cdef object Line = M.Line
cdef object Leg = M.Leg
cdef object BasketLine = M.BasketLine
cdef object Basket = M.Basket
cdef object NavLine = M.NavLine
cdef object Nav = M.Nav
cdef object HoldingRow = M.HoldingRow
cdef object AssetSummary = M.AssetSummary
cdef object CapacitySide = M.CapacitySide
cdef object Capacity = M.Capacity
cdef object NOT_PRICED = M.NOT_PRICED
cdef object FORWARD = M.FORWARD
cdef object APPROVED = M.APPROVED
cdef object WALLET_NOT_APPROVED = M.WALLET_NOT_APPROVED
cdef object Wallet = M.Wallet
cdef object ONE_DAY = timedelta(days=1)
_replace = msgspec.structs.replace
_builtins = msgspec.to_builtins


cdef inline object rhe(object num, object den):
    """num/den rounded half-even (den > 0)."""
    q, r = divmod(num, den)
    r2 = 2 * r
    if r2 > den or (r2 == den and (q & 1)):
        q += 1
    return q


cdef bint valid_id(object s) noexcept:
    cdef Py_UCS4 ch
    if not isinstance(s, str) or not 1 <= len(<str>s) <= 64:
        return False
    for ch in <str>s:
        if not ('a' <= ch <= 'z' or 'A' <= ch <= 'Z' or '0' <= ch <= '9' or ch in "._:-"):
            return False
    return True


cdef bint valid_code(object s, int lo, int hi, bint digits) noexcept:
    """Upper-case symbol of lo..hi characters (digits allowed when ``digits``)."""
    cdef Py_UCS4 ch
    if not isinstance(s, str) or not lo <= len(<str>s) <= hi:
        return False
    for ch in <str>s:
        if not ('A' <= ch <= 'Z' or (digits and '0' <= ch <= '9')):
            return False
    return True


def _need_id(value, str field):
    if not valid_id(value):
        raise invalid(field, f"{value!r} is not 1-64 of [A-Za-z0-9._:-]")


def _need_text(value, str field):
    """A free-text reason or label: a string of at most MAX_REASON characters."""
    if not isinstance(value, str) or len(value) > M.MAX_REASON:
        raise invalid(field, f"must be a text of at most {M.MAX_REASON} characters")


def _need_int(value, str field, lo, hi=None):
    if type(value) is not int:
        raise invalid(field, f"expected an integer, got {value!r}")
    if value < lo:
        raise invalid(field, f"{value} is below {lo}")
    if hi is not None and value > hi:
        raise out_of_range(field, f"{value} exceeds {hi}")


def _fraction(str text, str field):
    value = parse_scaled(text, field, FRACTION_DP)
    if value > FSCALE:
        raise invalid(field, f"{text!r} is above 1")
    return value


cdef inline object _day_key(object order):
    """What the daily limit counts an order by: its dealing date, or its UTC day without a calendar."""
    return order.dealing_date or order.created_at // DAY


def _tick_price(tick, str field, long long now_ms):
    """A §7 tick's price (> 0, at most 10^12) after its as-of time is checked (not ahead of now by more
    than 5 s); ``field`` is ``ticks[i].``. PublishPrices and StrikeNav both take ticks."""
    price = parse_scaled(tick.price, f"{field}price", PRICE_DP, limit=MAX_PRICE)
    if price == 0:
        raise invalid(f"{field}price", "must be greater than zero")
    if type(tick.as_of_unix_ms) is not int or tick.as_of_unix_ms < 0:
        raise invalid(f"{field}as_of_unix_ms", f"{tick.as_of_unix_ms!r} is not a time")
    if tick.as_of_unix_ms > now_ms + M.FUTURE_TOLERANCE_MS:
        raise invalid(f"{field}as_of_unix_ms", "more than 5 s in the future")
    return price


cdef long long _clamp_ms(object seconds):
    ms = seconds * 1000
    return LLONG_MAX if ms > LLONG_MAX else ms


cdef class Asset:
    def __cinit__(self, str symbol, int decimals):
        self.symbol = symbol
        self.decimals = decimals
        self.factor = POW10[18 - decimals]


cdef class Custodian:
    cdef bint licensed(self, long long now_ms) noexcept:
        return self.active and now_ms < self.expires_ms

    cdef set_licence(self, str status, object expires_at):
        self.status = status
        self.active = status == M.ACTIVE
        self.expires_at = expires_at
        self.expires_ms = _clamp_ms(expires_at)


cdef class Participant:
    pass


cdef class Holding:
    def __cinit__(self, Custodian custodian, str asset):
        self.custodian = custodian
        self.asset = asset
        self.available = self.reserved = self.staked = self.unbonding = 0
        self.lots = []


cdef class Price:
    def __cinit__(self):
        self.value = None
        self.as_of = -1


cdef class FundAsset:
    pass


cdef class Fund:
    pass


cdef object _add(object value, object delta, str field):
    out = value + delta
    if out > MAXQ:
        raise out_of_range(field, "a holding would exceed 10^30 smallest units")
    return out


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
        self._apply = {
            M.AssetRegistered: self._on_asset, M.CustodianRegistered: self._on_custodian,
            M.LicenceSet: self._on_licence, M.ParticipantRegistered: self._on_participant,
            M.FundCreated: self._on_fund_created, M.FundUpdated: self._on_fund_updated,
            M.HoldingAdjusted: self._on_holding_adjusted, M.CashAdjusted: self._on_cash,
            M.Staked: self._on_staked, M.Unstaked: self._on_unstaked, M.RewardRecorded: self._on_reward,
            M.Slashed: self._on_slashed, M.PriceSet: self._on_price, M.OrderRecorded: self._on_order,
            M.OrderSettled: self._on_settled, M.OrderCancelled: self._on_cancelled,
            M.CalendarRegistered: self._on_calendar, M.HolidaysSet: self._on_holidays,
            M.DealingDayClosed: self._on_day_closed, M.NavStruck: self._on_struck,
            M.ClockAdvanced: self._on_clock, M.WalletRegistered: self._on_wallet,
            M.WalletApproved: self._on_wallet_approved, M.WalletRevoked: self._on_wallet_revoked,
            M.DeliveryRecorded: self._on_delivery, M.PayoutRecorded: self._on_payout,
        }
        self._execute = {
            M.RegisterAsset: self._register_asset, M.RegisterCustodian: self._register_custodian,
            M.SetCustodianLicence: self._set_licence, M.RegisterParticipant: self._register_participant,
            M.CreateFund: self._create_fund, M.UpdateFund: self._update_fund,
            M.AdjustHolding: self._adjust_holding, M.AdjustCash: self._adjust_cash, M.Stake: self._stake,
            M.Unstake: self._unstake, M.RecordStakingReward: self._reward, M.RecordSlashing: self._slash,
            M.PublishPrices: self._publish, M.SettleOrder: self._settle, M.SubmitOrder: self._submit,
            M.SubmitOrders: self._submit_many, M.CancelOrder: self._cancel,
            M.RegisterCalendar: self._register_calendar, M.SetHolidays: self._set_holidays,
            M.CloseDealingDay: self._close_day, M.StrikeNav: self._strike,
            M.RegisterWallet: self._register_wallet, M.ApproveWallet: self._approve_wallet,
            M.RevokeWallet: self._revoke_wallet, M.RecordDelivery: self._record_delivery,
            M.RecordPayout: self._record_payout,
        }

    # ---------------------------------------------------------------- entry points
    def execute(self, command, long long now_ms):
        handler = self._execute.get(type(command))
        if handler is None:
            raise invalid("command", f"unknown command {type(command).__name__}")
        events = []
        result = handler(command, now_ms, events)
        return result, events

    def apply(self, event):
        cdef Fund f
        handler = self._apply.get(type(event))
        if handler is None:
            raise invalid("event", f"unknown event {type(event).__name__}")
        fund_id = getattr(event, "fund_id", None)
        if fund_id is not None:
            f = self.funds.get(fund_id)
            if f is not None:
                self._advance(f, event.at)
        handler(event)

    cdef _emit(self, list events, event):
        self.apply(event)
        events.append(event)

    # ---------------------------------------------------------------- lookups
    cdef Fund _fund(self, str fund_id):
        f = self.funds.get(fund_id)
        if f is None:
            raise not_found("fund", fund_id)
        return <Fund>f

    cdef Custodian _custodian(self, object custodian_id):
        c = self.custodians.get(custodian_id)
        if c is None:
            raise not_found("custodian", custodian_id)
        return <Custodian>c

    cdef FundAsset _fund_asset(self, Fund f, object asset):
        fa = f.asset_map.get(asset)
        if fa is None:
            raise invalid("asset", f"{asset!r} is not an asset of fund {f.fund_id!r}")
        return <FundAsset>fa

    cdef Holding _holding(self, FundAsset fa, Custodian c):
        """The holding of (fund, custodian, asset), created empty on first use."""
        h = fa.by_custodian.get(c.custodian_id)
        if h is None:
            h = Holding(c, fa.info.symbol)
            fa.by_custodian[c.custodian_id] = h
            fa.holdings.append(h)
            self._order_holdings(fa)
        return <Holding>h

    cdef _order_holdings(self, FundAsset fa):
        rank = fa.fund.rank
        n = len(rank)
        fa.holdings.sort(key=lambda h: (rank.get((<Holding>h).custodian.custodian_id, n),
                                        (<Holding>h).custodian.custodian_id))

    cdef void _advance(self, Fund f, long long now_ms) except *:
        """Release the unbonding lots of fund f that matured by now_ms into available."""
        cdef FundAsset fa
        cdef Holding h
        cdef long long nxt = LLONG_MAX
        cdef long long at
        if now_ms < f.next_release:
            return
        for fa in f.assets:
            for h in fa.holdings:
                if not h.lots:
                    continue
                keep = []
                for lot in h.lots:
                    at = lot[0]
                    if at <= now_ms:
                        h.unbonding -= lot[1]
                        h.available += lot[1]
                        fa.liquid = None
                        fa.illiquid -= lot[1]
                    else:
                        keep.append(lot)
                        if at < nxt:
                            nxt = at
                h.lots = keep
        f.next_release = nxt

    # ---------------------------------------------------------------- valuation
    cdef bint _stale(self, Fund f, long long now_ms):
        cdef FundAsset fa
        if f.missing_prices:
            return True
        for fa in f.assets:
            if now_ms - fa.price.as_of > f.max_age_ms:
                return True
        return False

    cdef object _basket(self, Fund f, long long now_ms):
        cdef FundAsset fa
        cdef bint stale = self._stale(f, now_ms)
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
                cash = rhe(f.nav_num * U - S * held, S * CENT)
                nps = rhe(f.nav_num, S * NPS)
                npu = rhe(f.nav_num * U, S * CENT)
        else:  # the seed basket: its cash needs no price; no shares, so no nav_per_share
            cash = f.seed_cash
            if priced:
                npu = rhe(held + f.seed_cash * CENT, CENT)
        f.basket = Basket(
            fund_id=f.fund_id, creation_unit=U, lines=lines, cash_component=cash, nav_per_share=nps,
            nav_per_unit=npu, shares_outstanding=S, as_of=as_of, stale=stale,
        )
        f.basket_stale = stale
        return f.basket

    cdef _total_changed(self, FundAsset fa, object delta):
        cdef Fund f = fa.fund
        fa.total += delta
        if fa.price.value is not None:
            f.nav_num += delta * fa.price.value * fa.info.factor
        f.basket = None

    cdef _cash_changed(self, Fund f, object delta):
        f.cash += delta
        f.nav_num += delta * CENT
        f.basket = None

    def get_nav(self, str fund_id, long long now_ms):
        cdef Fund f = self._fund(fund_id)
        cdef FundAsset fa
        self._advance(f, now_ms)
        cdef long long as_of = 0
        lines = []
        for fa in f.assets:
            p = fa.price.value
            value = None
            if p is not None:
                value = rhe(fa.total * p * fa.info.factor, CENT)
                if fa.price.as_of > as_of:
                    as_of = fa.price.as_of
            lines.append(NavLine(asset=fa.info.symbol, quantity=fa.total, price=p, value=value))
        priced = f.missing_prices == 0
        return Nav(
            fund_id=f.fund_id, nav=rhe(f.nav_num, CENT) if priced else None,
            nav_per_share=rhe(f.nav_num, f.shares * NPS) if priced and f.shares else None,
            shares_outstanding=f.shares, cash=f.cash, as_of=as_of, stale=self._stale(f, now_ms), lines=lines,
        )

    def get_basket(self, str fund_id, long long now_ms):
        cdef Fund f = self._fund(fund_id)
        self._advance(f, now_ms)
        return self._basket(f, now_ms)

    cdef object _liquid(self, FundAsset fa, long long now_ms):
        """liquid(a): available at licensed custodians. Cached per fund asset until an available
        balance or a licence changes, or time reaches the first expiry among the licensed."""
        cdef Holding h
        cdef long long until = LLONG_MAX
        if fa.liquid is not None and fa.liquid_epoch == self.licence_epoch and \
                fa.liquid_from <= now_ms < fa.liquid_until:
            return fa.liquid
        liquid = 0
        for h in fa.holdings:
            if h.custodian.licensed(now_ms):
                liquid += h.available
                if h.custodian.expires_ms < until:
                    until = h.custodian.expires_ms
        fa.liquid, fa.liquid_from, fa.liquid_until, fa.liquid_epoch = liquid, now_ms, until, self.licence_epoch
        return liquid

    def get_holdings(self, str fund_id, long long now_ms):
        cdef Fund f = self._fund(fund_id)
        cdef FundAsset fa
        cdef Holding h
        self._advance(f, now_ms)
        rows, summaries = [], []
        for fa in f.assets:
            for h in fa.holdings:
                if not (h.available or h.reserved or h.staked or h.lots):
                    continue  # as in state(): what a row once held is history, not a holding
                rows.append(HoldingRow(
                    custodian_id=h.custodian.custodian_id, asset=h.asset, available=h.available,
                    reserved=h.reserved, staked=h.staked, unbonding=h.unbonding,
                    licensed=h.custodian.licensed(now_ms),
                ))
            summaries.append(AssetSummary(
                asset=fa.info.symbol, total=fa.total, committed=fa.total - fa.reserved,
                liquid=self._liquid(fa, now_ms), illiquid=fa.illiquid, staking_cap=fa.cap,
                liquidity_buffer=fa.buffer,
            ))
        rows.sort(key=lambda r: (r.custodian_id, r.asset))
        return M.Holdings(fund_id=f.fund_id, holdings=rows, assets=summaries)

    # ---------------------------------------------------------------- order decisions
    cdef str _reason(self, Participant p, Fund f, bint redeem, object units, long long now_ms, bint no_wallets):
        """The first failing check of SPEC §5 for a fresh order, or "" to accept it; ``no_wallets``: the
        payout wallets of §14 are required and missing. The basket and the dates must be current
        (``_basket`` and ``_dates`` called at this now_ms)."""
        cdef FundAsset fa
        cdef Holding h
        if not f.open:
            return FUND_SUSPENDED
        if units > p.max_order:
            return ORDER_LIMIT_EXCEEDED
        days = p.daily.get(f.fund_id)
        if units + (days.get(f.day_key, 0) if days else 0) > p.max_day:
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
            liquid = self._liquid(fa, now_ms)
            if q > liquid:
                return INSUFFICIENT_LIQUID_BALANCE
            rest = fa.total - fa.reserved - q  # committed after this redemption
            if fa.illiquid * FSCALE > fa.cap * rest:
                return STAKING_CAP_BREACH
            left = liquid - q
            if left * FSCALE < fa.buffer * rest or left < f.min_liquid * fa.qpu:
                return LIQUIDITY_BUFFER_BREACH
        return ""

    cdef tuple _legs(self, Fund f, object units, long long now_ms, dict to):
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
                if h.available and h.custodian.licensed(now_ms):
                    take = h.available if h.available < left else left
                    left -= take
                    legs.append(Leg(h.custodian.custodian_id, fa.info.symbol, take, address))
        return tuple(legs)

    cdef dict _payout_addresses(self, Participant p, Fund f, object ids):
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

    cdef tuple _payout_route(self, Participant p, Fund f, object req):
        """(kept payout wallet ids, asset -> address or None) of a redemption on a fund that requires
        delivery; memoised per participant while no wallet changes."""
        given = tuple(req.payout_wallet_ids)
        if p.route_epoch == self.wallet_epoch and p.route_fund is f and p.route_given == given:
            return p.route
        kept = tuple(sorted(set(given)))
        p.route_given, p.route_fund, p.route_epoch = given, f, self.wallet_epoch
        p.route = (kept, self._payout_addresses(p, f, kept))
        return p.route

    cdef object _kept_wallets(self, object req):
        """The sorted distinct payout wallet ids an order of ``req`` keeps and is checked for (REDEEM of a
        fund that requires delivery), else None."""
        f = self.funds.get(req.fund_id)
        if req.side == REDEEM and f is not None and (<Fund>f).require_delivery:
            return tuple(sorted(set(req.payout_wallet_ids)))
        return None

    cdef object _decide(self, Participant p, Fund f, object req, str order_id, long long now_ms):
        """The order SubmitOrder would record now (not recorded here)."""
        cdef FundAsset fa
        cdef bint redeem = req.side == REDEEM
        self._advance(f, now_ms)
        basket = self._basket(f, now_ms)
        self._dates(f, now_ms)
        units = req.units
        wallets = to = None
        if f.require_delivery and redeem:
            wallets, to = self._payout_route(p, f, req)
        reason = self._reason(p, f, redeem, units, now_ms, wallets is not None and to is None)
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
            self._legs(f, units, now_ms, to) if accepted and redeem else (),
            now_ms, now_ms, f.deal_date, settles, not f.forward, None, wallets,
        )

    cdef _dates(self, Fund f, long long now_ms):
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

    cdef tuple _admit(self, str participant_id, object req, str field, dict pending):
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
                kept = self._kept_wallets(prior)
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
        if req.units * (<Fund>f).unit > MAXSH:
            raise out_of_range(f"{field}units", f"{req.units} units exceed 10^15 shares")
        return p, f, None

    def check_order(self, str participant_id, req, long long now_ms):
        p, f, prior = self._admit(participant_id, req, "", None)
        if prior is not None:
            return _replace(prior, order_id="")
        return self._decide(p, f, req, "", now_ms)

    def get_capacity(self, str participant_id, str fund_id, long long now_ms):
        p = self.participants.get(participant_id)
        if p is None:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} is not registered")
        cdef Fund f = self._fund(fund_id)
        if fund_id not in (<Participant>p).eligible_set:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} may not deal in {fund_id!r}")
        self._advance(f, now_ms)
        self._basket(f, now_ms)
        self._dates(f, now_ms)
        # SubmitOrder refuses (OUT_OF_RANGE) more than 10^15 shares: no capacity beyond that.
        share_cap = MAXSH // f.unit
        limit = min((<Participant>p).max_order, share_cap)
        sides = []
        for redeem in (False, True):
            lo, hi = 0, limit  # accepted at lo (or lo == 0); rejected or refused above hi
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._reason(p, f, redeem, mid, now_ms, False):
                    hi = mid - 1
                else:
                    lo = mid
            # At the share limit one more unit is refused outright: no reject reason binds.
            reason = self._reason(p, f, redeem, lo + 1, now_ms, False) if lo < share_cap else ""
            sides.append(CapacitySide(units=lo, binding_reason=reason))
        return Capacity(fund_id=fund_id, create=sides[0], redeem=sides[1])

    def _submit(self, cmd, long long now_ms, list events):
        p, f, prior = self._admit(cmd.participant_id, cmd.request, "", None)
        if prior is not None:
            return self._with_overdue(prior, now_ms)
        order = self._decide(p, f, cmd.request, "ORD-%08d" % self.next_seq, now_ms)
        self._emit(events, M.OrderRecorded(at=now_ms, order=order))
        return order

    def _submit_many(self, cmd, long long now_ms, list events):
        # Every refusal first, so that a refused item records nothing of the call; then each item
        # exactly as if submitted alone (a repeated key returns the order its first item recorded).
        pending = {}
        for i, req in enumerate(cmd.requests):
            self._admit(cmd.participant_id, req, f"requests[{i}].", pending)
            pending.setdefault(req.client_order_id, req)
        return [self._submit(M.SubmitOrder(participant_id=cmd.participant_id, request=req), now_ms, events)
                for req in cmd.requests]

    # ---------------------------------------------------------------- order lifecycle
    cdef object _own_order(self, object order_id, object participant_id):
        order = self.orders.get(order_id)
        if order is None or (participant_id is not None and order.participant_id != participant_id):
            raise not_found("order", order_id)
        return order

    cdef object _accepted_order(self, object order_id, object participant_id):
        """The order, refused unless it is ACCEPTED (the only status that settles or cancels)."""
        order = self._own_order(order_id, participant_id)
        if order.status != ACCEPTED:
            raise precondition(M.ORDER_NOT_ACCEPTED, f"order {order.order_id} is {order.status}")
        return order

    def get_order(self, order_id, participant_id=None, now_ms=None):
        return self._with_overdue(self._own_order(order_id, participant_id), now_ms)

    def list_orders(self, str fund_id="", str status="", participant_id=None, now_ms=None):
        return [self._with_overdue(o, now_ms) for o in self.orders.values()
                if (not fund_id or o.fund_id == fund_id) and (not status or o.status == status)
                and (participant_id is None or o.participant_id == participant_id)]

    cdef object _with_overdue(self, object order, object now_ms):
        """The order as read at now_ms: overdue when ACCEPTED past the end of its settlement date in its
        fund's calendar (ledger.py)."""
        if now_ms is None or order.status != ACCEPTED or not order.settlement_date:
            return order
        calendar_id = (<Fund>self.funds[order.fund_id]).calendar_id
        if not calendar_id:
            return order
        end = CAL.day_end_ms(self.calendars[calendar_id], Date.fromisoformat(order.settlement_date))
        return _replace(order, overdue=True) if now_ms >= end else order

    def _settle(self, cmd, long long now_ms, list events):
        cdef Fund f
        order = self._accepted_order(cmd.order_id, None)
        if not order.priced:
            raise precondition(NOT_PRICED, f"order {order.order_id} waits for the official NAV of {order.dealing_date}")
        f = self.funds[order.fund_id]
        if f.require_delivery:
            if order.side == CREATE:
                confirmed = self._confirmed(order)
                for line in order.deliverables:
                    got = confirmed.get(line.asset, 0)
                    if got < line.quantity:
                        raise precondition(M.DELIVERY_INCOMPLETE, f"order {order.order_id}: {line.asset} "
                                           f"{self._qty(line.asset, got)} of {self._qty(line.asset, line.quantity)} "
                                           "delivered and confirmed")
            else:
                paid = self._paid(order)
                for leg in order.legs:
                    got = paid.get((leg.custodian_id, leg.asset), 0)
                    if got < leg.quantity:
                        raise precondition(M.PAYOUT_INCOMPLETE, f"order {order.order_id}: leg {leg.custodian_id} "
                                           f"{leg.asset} paid {self._qty(leg.asset, got)} of "
                                           f"{self._qty(leg.asset, leg.quantity)}")
        self._advance(f, now_ms)
        shares = order.units * order.basket.creation_unit
        if order.side == CREATE:
            c = f.creation_custodian
            if not c.licensed(now_ms):
                raise precondition(CUSTODIAN_NOT_LICENSED, f"creation custodian {c.custodian_id} is not licensed")
            for line in order.deliverables:
                _add(self._available(f.asset_map[line.asset], c), line.quantity, "quantity")
            if f.shares + shares > MAX_SHARES:
                raise out_of_range("shares_outstanding", "would exceed 10^15")
        self._emit(events, M.OrderSettled(at=now_ms, order_id=order.order_id))
        return self.orders[order.order_id]

    def _cancel(self, cmd, long long now_ms, list events):
        self._own_order(cmd.order_id, cmd.participant_id)
        _need_text(cmd.reason, "reason")
        order = self._accepted_order(cmd.order_id, cmd.participant_id)
        self._emit(events, M.OrderCancelled(at=now_ms, order_id=order.order_id, reason=cmd.reason))
        return self.orders[order.order_id]

    def _on_order(self, event):
        cdef Fund f
        cdef Participant p
        order = event.order
        f = self.funds[order.fund_id]
        self._advance(f, event.at)
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
            self._reserve(f, order, 1)

    cdef _reserve(self, Fund f, object order, int sign):
        """Move a redemption's legs available -> reserved (sign 1, on acceptance) or back (-1, on cancel)."""
        cdef FundAsset fa
        cdef Holding h
        f.pending_redeem += sign * order.units * order.basket.creation_unit
        for leg in order.legs:
            fa = f.asset_map[leg.asset]
            h = fa.by_custodian[leg.custodian_id]
            q = sign * leg.quantity
            h.available -= q
            h.reserved += q
            fa.reserved += q
            fa.liquid = None

    def _on_settled(self, event):
        cdef Fund f
        cdef FundAsset fa
        cdef Holding h
        order = self.orders[event.order_id]
        f = self.funds[order.fund_id]
        self._advance(f, event.at)
        shares = order.units * order.basket.creation_unit
        if order.side == CREATE:
            for line in order.deliverables:
                fa = f.asset_map[line.asset]
                h = self._holding(fa, f.creation_custodian)
                h.available += line.quantity
                fa.liquid = None
                self._total_changed(fa, line.quantity)
            self._cash_changed(f, order.cash_amount)
            f.shares += shares
        else:
            for leg in order.legs:
                fa = f.asset_map[leg.asset]
                h = fa.by_custodian[leg.custodian_id]
                h.reserved -= leg.quantity
                fa.reserved -= leg.quantity
                self._total_changed(fa, -leg.quantity)
            self._cash_changed(f, -order.cash_amount)
            f.shares -= shares
            f.pending_redeem -= shares
        f.basket = None
        del f.open_orders[order.order_id]
        self.orders[order.order_id] = _replace(order, status=SETTLED, updated_at=event.at)

    def _on_cancelled(self, event):
        cdef Fund f
        cdef Participant p
        order = self.orders[event.order_id]
        f = self.funds[order.fund_id]
        self._advance(f, event.at)
        p = self.participants[order.participant_id]
        days = p.daily[f.fund_id]
        days[_day_key(order)] -= order.units
        del f.open_orders[order.order_id]
        if order.side == REDEEM:
            self._reserve(f, order, -1)
        self.orders[order.order_id] = _replace(order, status=CANCELLED, updated_at=event.at,
                                               cancel_reason=event.reason)

    # ---------------------------------------------------------------- registrations
    def _register_asset(self, cmd, long long now_ms, list events):
        if not valid_code(cmd.symbol, 2, 10, True):
            raise invalid("symbol", f"{cmd.symbol!r} is not 2-10 of [A-Z0-9]")
        _need_int(cmd.decimals, "decimals", 0, 18)
        _need_int(cmd.min_confirmations, "min_confirmations", 0, M.MAX_CONFIRMATIONS)
        if cmd.chain and cmd.chain not in ADDR.CHAINS:
            raise invalid("chain", f"{cmd.chain!r} is not BITCOIN, ETHEREUM, SOLANA or empty")
        if cmd.symbol in self.assets:
            raise EngineError(ALREADY_EXISTS, f"asset {cmd.symbol!r} exists")
        self._emit(events, M.AssetRegistered(at=now_ms, symbol=cmd.symbol, decimals=cmd.decimals,
                                             min_confirmations=cmd.min_confirmations,
                                             chain=ADDR.chain_of(cmd.symbol, cmd.chain)))

    def _on_asset(self, event):
        cdef Asset a = Asset(event.symbol, event.decimals)
        # chain_of: a record from before SPEC §14 has no chain; BTC, ETH and SOL take theirs then too
        a.min_conf, a.chain = event.min_confirmations, ADDR.chain_of(event.symbol, event.chain)
        self.assets[event.symbol] = a

    def _check_licence(self, cmd):
        _need_id(cmd.custodian_id, "custodian_id")
        if cmd.licence_status not in M.LICENCE_STATUSES:
            raise invalid("licence_status", f"{cmd.licence_status!r} is not ACTIVE, SUSPENDED or REVOKED")
        _need_int(cmd.licence_expires_at, "licence_expires_at", 0)

    def _register_custodian(self, cmd, long long now_ms, list events):
        self._check_licence(cmd)
        if cmd.custodian_id in self.custodians:
            raise EngineError(ALREADY_EXISTS, f"custodian {cmd.custodian_id!r} exists")
        self._emit(events, M.CustodianRegistered(
            at=now_ms, custodian_id=cmd.custodian_id, name=cmd.name, licence_number=cmd.licence_number,
            licence_status=cmd.licence_status, licence_expires_at=cmd.licence_expires_at))

    def _on_custodian(self, event):
        c = Custodian()
        c.custodian_id, c.name, c.licence_number = event.custodian_id, event.name, event.licence_number
        c.set_licence(event.licence_status, event.licence_expires_at)
        self.custodians[c.custodian_id] = c

    def _set_licence(self, cmd, long long now_ms, list events):
        self._check_licence(cmd)
        self._custodian(cmd.custodian_id)
        self._emit(events, M.LicenceSet(at=now_ms, custodian_id=cmd.custodian_id,
                                        licence_status=cmd.licence_status,
                                        licence_expires_at=cmd.licence_expires_at))

    def _on_licence(self, event):
        self.licence_epoch += 1  # every cached liquid() may have changed
        (<Custodian>self.custodians[event.custodian_id]).set_licence(event.licence_status, event.licence_expires_at)

    def _register_participant(self, cmd, long long now_ms, list events):
        _need_id(cmd.participant_id, "participant_id")
        for i, fund_id in enumerate(cmd.eligible_fund_ids):
            _need_id(fund_id, f"eligible_fund_ids[{i}]")
        _need_int(cmd.max_units_per_order, "max_units_per_order", 1, MAX_SHARES)
        _need_int(cmd.max_units_per_day, "max_units_per_day", 1, MAX_SHARES)
        if cmd.participant_id in self.participants:
            raise EngineError(ALREADY_EXISTS, f"participant {cmd.participant_id!r} exists")
        self._emit(events, M.ParticipantRegistered(
            at=now_ms, participant_id=cmd.participant_id, name=cmd.name,
            eligible_fund_ids=tuple(sorted(set(cmd.eligible_fund_ids))),
            max_units_per_order=cmd.max_units_per_order, max_units_per_day=cmd.max_units_per_day))

    def _on_participant(self, event):
        p = Participant()
        p.participant_id, p.name = event.participant_id, event.name
        p.eligible = tuple(event.eligible_fund_ids)
        p.eligible_set = set(p.eligible)
        p.max_order, p.max_day = event.max_units_per_order, event.max_units_per_day
        p.by_client_id, p.daily = {}, {}
        self.participants[p.participant_id] = p

    def list_prices(self):
        cdef Price price
        found = []
        for key in sorted(self.prices):
            price = self.prices[key]
            if price.value is not None:  # a fund's placeholder for a price not published yet
                found.append((key[0], key[1], price.value, price.as_of))
        return found

    def list_funds(self):
        return [(<Fund>self.funds[k]).terms for k in sorted(self.funds)]

    def list_participants(self):
        cdef Participant p
        found = []
        for k in sorted(self.participants):
            p = self.participants[k]
            found.append(M.ParticipantRegistered(at=0, participant_id=p.participant_id, name=p.name,
                                                 eligible_fund_ids=p.eligible, max_units_per_order=p.max_order,
                                                 max_units_per_day=p.max_day))
        return found

    def participant_funds(self, str participant_id):
        p = self.participants.get(participant_id)
        if p is None:
            raise not_found("participant", participant_id)
        return (<Participant>p).eligible

    # ---------------------------------------------------------------- funds
    def _asset_terms(self, spec, str field):
        asset = self.assets.get(spec.asset)
        if asset is None:
            raise not_found(f"{field}asset", spec.asset)
        _need_int(spec.unbonding_seconds, f"{field}unbonding_seconds", 0, POW10[9])
        return M.FundAssetTerms(
            asset=spec.asset, staking_cap=_fraction(spec.staking_cap, f"{field}staking_cap"),
            liquidity_buffer=_fraction(spec.liquidity_buffer, f"{field}liquidity_buffer"),
            unbonding_seconds=spec.unbonding_seconds,
            seed_quantity_per_unit=parse_scaled(spec.seed_quantity_per_unit, f"{field}seed_quantity_per_unit",
                                                (<Asset>asset).decimals, limit=MAX_QUANTITY),
        )

    def _check_custodians(self, creation_custodian_id, priority):
        self._custodian(creation_custodian_id)
        for cid in priority:
            self._custodian(cid)
        if len(set(priority)) != len(priority):
            raise invalid("custodian_priority", "lists a custodian twice")

    def _check_fund_scalars(self, terms):
        """Range checks shared by create and update, on the merged terms."""
        if terms.dealing_status not in M.DEALING_STATUSES:
            raise invalid("dealing_status", f"{terms.dealing_status!r} is not OPEN or SUSPENDED")
        _need_int(terms.max_price_age_seconds, "max_price_age_seconds", 1, POW10[9])
        _need_int(terms.min_liquid_units, "min_liquid_units", 0, MAX_SHARES)

    def _create_fund(self, cmd, long long now_ms, list events):
        _need_id(cmd.fund_id, "fund_id")
        if not valid_code(cmd.base_currency, 3, 10, False):
            raise invalid("base_currency", f"{cmd.base_currency!r} is not 3-10 of [A-Z]")
        _need_int(cmd.creation_unit, "creation_unit", 1, MAX_CREATION_UNIT)
        _need_int(cmd.initial_shares_outstanding, "initial_shares_outstanding", 0, MAX_SHARES)
        if cmd.fund_id in self.funds:
            raise EngineError(ALREADY_EXISTS, f"fund {cmd.fund_id!r} exists")
        self._check_custodians(cmd.creation_custodian_id, cmd.custodian_priority)
        if not cmd.assets:
            raise invalid("assets", "a fund holds at least one asset")
        terms = [self._asset_terms(spec, f"assets[{i}].") for i, spec in enumerate(cmd.assets)]
        if len({t.asset for t in terms}) != len(terms):
            raise invalid("assets", "lists an asset twice")
        fund_terms = M.FundTerms(
            fund_id=cmd.fund_id, name=cmd.name, base_currency=cmd.base_currency, creation_unit=cmd.creation_unit,
            dealing_status=cmd.dealing_status, max_price_age_seconds=cmd.max_price_age_seconds,
            creation_fee=parse_scaled(cmd.creation_fee, "creation_fee", MONEY_DP),
            redemption_fee=parse_scaled(cmd.redemption_fee, "redemption_fee", MONEY_DP),
            min_liquid_units=cmd.min_liquid_units, creation_custodian_id=cmd.creation_custodian_id,
            custodian_priority=tuple(cmd.custodian_priority),
            seed_cash_per_unit=parse_scaled(cmd.seed_cash_per_unit, "seed_cash_per_unit", MONEY_DP, signed=True),
            assets=tuple(sorted(terms, key=lambda t: t.asset)),
            calendar_id=cmd.calendar_id, dealing_cutoff=cmd.dealing_cutoff,
            create_settlement_days=cmd.create_settlement_days, redeem_settlement_days=cmd.redeem_settlement_days,
            pricing=cmd.pricing, require_delivery=cmd.require_delivery,
        )
        self._check_fund_scalars(fund_terms)
        fund_terms = self._dealing_terms(fund_terms, None, now_ms)
        self._emit(events, M.FundCreated(at=now_ms, terms=fund_terms,
                                         shares_outstanding=cmd.initial_shares_outstanding))

    def _update_fund(self, cmd, long long now_ms, list events):
        cdef Fund f = self._fund(cmd.fund_id)
        old = f.terms
        changes = {}
        for name in ("name", "dealing_status", "max_price_age_seconds", "min_liquid_units",
                     "creation_custodian_id"):
            value = getattr(cmd, name)
            if value is not None:
                changes[name] = value
        for name in ("creation_fee", "redemption_fee"):
            if getattr(cmd, name) is not None:
                changes[name] = parse_scaled(getattr(cmd, name), name, MONEY_DP)
        if cmd.seed_cash_per_unit is not None:
            changes["seed_cash_per_unit"] = parse_scaled(cmd.seed_cash_per_unit, "seed_cash_per_unit",
                                                         MONEY_DP, signed=True)
        if cmd.custodian_priority is not None:
            changes["custodian_priority"] = tuple(cmd.custodian_priority)
        if cmd.assets is not None:
            by_asset = {t.asset: t for t in old.assets}
            for i, spec in enumerate(cmd.assets):
                if spec.asset not in by_asset:
                    raise invalid(f"assets[{i}].asset", f"{spec.asset!r} is not an asset of fund {f.fund_id!r}")
                by_asset[spec.asset] = self._asset_terms(spec, f"assets[{i}].")
            changes["assets"] = tuple(sorted(by_asset.values(), key=lambda t: t.asset))
        for name in ("calendar_id", "dealing_cutoff", "create_settlement_days", "redeem_settlement_days", "pricing",
                     "require_delivery"):
            value = getattr(cmd, name)
            if value is not None:
                changes[name] = value
        terms = _replace(old, **changes)
        self._check_fund_scalars(terms)
        self._check_custodians(terms.creation_custodian_id, terms.custodian_priority)
        terms = self._dealing_terms(terms, old, now_ms)
        self._emit(events, M.FundUpdated(at=now_ms, terms=terms))

    cdef object _dealing_terms(self, object terms, object old, long long now_ms):
        """Check a fund's §13 terms (ledger.py order); return them normalised, with first_dealing_date."""
        cal = None
        if terms.calendar_id:
            cal = self._calendar(terms.calendar_id)
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

    cdef object _calendar(self, object calendar_id):
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise not_found("calendar", calendar_id)
        return cal

    def _on_fund_created(self, event):
        cdef Fund f = Fund()
        cdef FundAsset fa
        f.fund_id = event.terms.fund_id
        f.cash = f.pending_redeem = 0
        f.shares = event.shares_outstanding
        f.nav_num = 0
        f.next_release = LLONG_MAX
        f.assets, f.asset_map = [], {}
        f.open_orders, f.forward_orders, f.navs, f.pcfs = {}, {}, {}, {}
        for t in event.terms.assets:
            fa = FundAsset()
            fa.fund, fa.info = f, self.assets[t.asset]
            fa.holdings, fa.by_custodian = [], {}
            fa.total = fa.reserved = fa.illiquid = 0
            fa.qpu = 0
            f.assets.append(fa)
            f.asset_map[t.asset] = fa
        self._set_terms(f, event.terms)
        self.funds[f.fund_id] = f

    def _on_fund_updated(self, event):
        self._set_terms(self.funds[event.terms.fund_id], event.terms)

    cdef _set_terms(self, Fund f, object terms):
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
        for t in terms.assets:
            fa = f.asset_map[t.asset]
            fa.cap, fa.buffer, fa.seed_qpu = t.staking_cap, t.liquidity_buffer, t.seed_quantity_per_unit
            fa.unbonding_seconds = t.unbonding_seconds
            self._order_holdings(fa)
            if old_currency is None:
                key = (t.asset, terms.base_currency)
                fa.price = self.prices.get(key)
                if fa.price is None:
                    fa.price = self.prices[key] = Price()
                self.watchers.setdefault(key, []).append(fa)
                if fa.price.value is None:
                    f.missing_prices += 1
        f.basket = None

    # ---------------------------------------------------------------- holdings and cash
    cdef tuple _target(self, cmd):
        """(fund, fund asset, custodian) named by an instruction, validated."""
        cdef Fund f = self._fund(cmd.fund_id)
        c = self._custodian(cmd.custodian_id)
        return f, self._fund_asset(f, cmd.asset), c

    cdef object _quantity(self, FundAsset fa, object text, str field):
        q = parse_scaled(text, field, fa.info.decimals, limit=MAX_QUANTITY)
        if q == 0:
            raise invalid(field, "must be greater than zero")
        return q

    def _adjust_holding(self, cmd, long long now_ms, list events):
        cdef Fund f
        cdef FundAsset fa
        f, fa, c = self._target(cmd)
        delta = parse_scaled(cmd.delta, "delta", fa.info.decimals, signed=True, limit=MAX_QUANTITY)
        if delta == 0:
            raise invalid("delta", "must not be zero")
        self._advance(f, now_ms)
        available = self._available(fa, c)
        if available + delta < 0:
            raise precondition(INSUFFICIENT_LIQUID_BALANCE,
                               f"available {available} at {c.custodian_id} is less than {-delta}")
        _add(available, delta, "delta")
        self._emit(events, M.HoldingAdjusted(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                             asset=fa.info.symbol, delta=delta))

    def _on_holding_adjusted(self, event):
        self._credit(event, event.delta)

    cdef _credit(self, event, object delta):
        """available += delta at the event's (fund, custodian, asset); the fund's total moves with it."""
        cdef Fund f = self.funds[event.fund_id]
        cdef FundAsset fa = f.asset_map[event.asset]
        cdef Holding h = self._holding(fa, self.custodians[event.custodian_id])
        h.available += delta
        fa.liquid = None
        self._total_changed(fa, delta)

    def _adjust_cash(self, cmd, long long now_ms, list events):
        cdef Fund f = self._fund(cmd.fund_id)
        delta = parse_scaled(cmd.delta, "delta", MONEY_DP, signed=True)
        if delta == 0:
            raise invalid("delta", "must not be zero")
        if abs(f.cash + delta) > MAX_QUANTITY:
            raise out_of_range("delta", "cash would exceed 10^28")
        self._emit(events, M.CashAdjusted(at=now_ms, fund_id=f.fund_id, delta=delta))

    def _on_cash(self, event):
        self._cash_changed(self.funds[event.fund_id], event.delta)

    def _stake(self, cmd, long long now_ms, list events):
        cdef Fund f
        cdef FundAsset fa
        cdef Custodian c
        f, fa, c = self._target(cmd)
        q = self._quantity(fa, cmd.quantity, "quantity")
        self._advance(f, now_ms)
        self._basket(f, now_ms)
        if not c.licensed(now_ms):
            raise precondition(CUSTODIAN_NOT_LICENSED, f"custodian {c.custodian_id} is not licensed")
        available = self._available(fa, c)
        if available < q:
            raise precondition(INSUFFICIENT_LIQUID_BALANCE, f"available {available} at {c.custodian_id} < {q}")
        committed = fa.total - fa.reserved
        _add((<Holding>fa.by_custodian[c.custodian_id]).staked, q, "quantity")
        if (fa.illiquid + q) * FSCALE > fa.cap * committed:
            raise precondition(STAKING_CAP_BREACH, f"staked would exceed the cap on {fa.info.symbol}")
        liquid = self._liquid(fa, now_ms)
        if (liquid - q) * FSCALE < fa.buffer * committed or liquid - q < f.min_liquid * fa.qpu:
            raise precondition(LIQUIDITY_BUFFER_BREACH, f"liquid {fa.info.symbol} would fall below the buffer")
        self._emit(events, M.Staked(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                    asset=fa.info.symbol, quantity=q))

    cdef object _available(self, FundAsset fa, Custodian c):
        """available at (fund asset, custodian); 0 where the fund never held anything there."""
        h = fa.by_custodian.get(c.custodian_id)
        return 0 if h is None else (<Holding>h).available

    cdef Holding _need_staked(self, FundAsset fa, Custodian c, object q):
        """The holding at c, refused unless at least q of it is staked."""
        h = fa.by_custodian.get(c.custodian_id)
        staked = 0 if h is None else (<Holding>h).staked
        if staked < q:
            raise precondition(INSUFFICIENT_STAKED_BALANCE, f"staked {staked} at {c.custodian_id} < {q}")
        return h

    def _on_staked(self, event):
        cdef Fund f = self.funds[event.fund_id]
        cdef FundAsset fa = f.asset_map[event.asset]
        cdef Holding h = fa.by_custodian[event.custodian_id]
        h.available -= event.quantity
        fa.liquid = None
        h.staked += event.quantity
        fa.illiquid += event.quantity

    def _unstake(self, cmd, long long now_ms, list events):
        cdef Fund f
        cdef FundAsset fa
        f, fa, c = self._target(cmd)
        q = self._quantity(fa, cmd.quantity, "quantity")
        h = self._need_staked(fa, c, q)
        _add((<Holding>h).unbonding, q, "quantity")
        self._emit(events, M.Unstaked(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                      asset=fa.info.symbol, quantity=q,
                                      release_at=now_ms + fa.unbonding_seconds * 1000))

    def _on_unstaked(self, event):
        cdef Fund f = self.funds[event.fund_id]
        cdef FundAsset fa = f.asset_map[event.asset]
        cdef Holding h = fa.by_custodian[event.custodian_id]
        h.staked -= event.quantity
        h.unbonding += event.quantity
        h.lots.append([event.release_at, event.quantity])
        if event.release_at < f.next_release:
            f.next_release = event.release_at
        self._advance(f, event.at)  # a zero unbonding period releases at once

    def _reward(self, cmd, long long now_ms, list events):
        cdef Fund f
        cdef FundAsset fa
        f, fa, c = self._target(cmd)
        q = self._quantity(fa, cmd.quantity, "quantity")
        _add(self._available(fa, c), q, "quantity")
        self._emit(events, M.RewardRecorded(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                            asset=fa.info.symbol, quantity=q))

    def _on_reward(self, event):
        self._credit(event, event.quantity)

    def _slash(self, cmd, long long now_ms, list events):
        cdef Fund f
        cdef FundAsset fa
        f, fa, c = self._target(cmd)
        q = self._quantity(fa, cmd.quantity, "quantity")
        self._need_staked(fa, c, q)
        self._emit(events, M.Slashed(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                     asset=fa.info.symbol, quantity=q))

    def _on_slashed(self, event):
        cdef Fund f = self.funds[event.fund_id]
        cdef FundAsset fa = f.asset_map[event.asset]
        cdef Holding h = fa.by_custodian[event.custodian_id]
        h.staked -= event.quantity
        fa.illiquid -= event.quantity
        self._total_changed(fa, -event.quantity)

    # ---------------------------------------------------------------- prices
    def _publish(self, cmd, long long now_ms, list events):
        cdef Price current
        parsed = []
        for i, tick in enumerate(cmd.ticks):
            field = f"ticks[{i}]."
            if tick.asset not in self.assets:
                raise invalid(f"{field}asset", f"unknown asset {tick.asset!r}")
            if not valid_code(tick.currency, 3, 10, False):
                raise invalid(f"{field}currency", f"{tick.currency!r} is not 3-10 of [A-Z]")
            price = _tick_price(tick, field, now_ms)
            parsed.append((tick.asset, tick.currency, price, tick.as_of_unix_ms))
        latest = {}
        applied = 0
        for asset, currency, price, as_of in parsed:
            key = (asset, currency)
            current = self.prices.get(key)
            newest = latest.get(key, -1 if current is None else current.as_of)
            if as_of <= newest:
                continue
            latest[key] = as_of
            applied += 1
            self._emit(events, M.PriceSet(at=now_ms, asset=asset, currency=currency, price=price, as_of=as_of))
        return M.PublishResult(applied=applied, ignored=len(parsed) - applied)

    def _on_price(self, event):
        cdef Price p
        cdef FundAsset fa
        cdef Fund f
        key = (event.asset, event.currency)
        p = self.prices.get(key)
        if p is None:
            p = self.prices[key] = Price()
        old = p.value
        for fa in self.watchers.get(key, ()):
            f = fa.fund
            if old is None:
                f.missing_prices -= 1
                f.nav_num += fa.total * event.price * fa.info.factor
            else:
                f.nav_num += fa.total * (event.price - old) * fa.info.factor
            f.basket = None
        p.value = event.price
        p.as_of = event.as_of

    # ---------------------------------------------------------------- the dealing day (SPEC §13)
    def _register_calendar(self, cmd, long long now_ms, list events):
        _need_id(cmd.calendar_id, "calendar_id")
        CAL.zone(cmd.time_zone)
        holidays = CAL.parse_holidays(cmd.holidays)
        weekend = CAL.parse_weekend(cmd.weekend_days)
        if cmd.calendar_id in self.calendars:
            raise EngineError(ALREADY_EXISTS, f"calendar {cmd.calendar_id!r} exists")
        self._emit(events, M.CalendarRegistered(at=now_ms, calendar_id=cmd.calendar_id, time_zone=cmd.time_zone,
                                                holidays=holidays, weekend_days=weekend))

    def _on_calendar(self, event):
        self._put_calendar(CAL.Calendar(event.calendar_id, event.time_zone,
                                        frozenset(map(Date.fromisoformat, event.holidays)),
                                        frozenset(event.weekend_days)))

    def _put_calendar(self, cal):
        self.calendars[cal.calendar_id] = cal
        self.calendar_epoch += 1

    def _set_holidays(self, cmd, long long now_ms, list events):
        self._calendar(cmd.calendar_id)
        self._emit(events, M.HolidaysSet(at=now_ms, calendar_id=cmd.calendar_id,
                                         holidays=CAL.parse_holidays(cmd.holidays)))

    def _on_holidays(self, event):
        self._put_calendar(self.calendars[event.calendar_id].with_holidays(event.holidays))

    def _close_day(self, cmd, long long now_ms, list events):
        cdef Fund f
        cal = self._calendar(cmd.calendar_id)
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
        self._emit(events, M.DealingDayClosed(at=now_ms, calendar_id=cal.calendar_id, date=iso, reason=cmd.reason,
                                              orders=tuple(moves), pcfs=pcfs))

    def _on_day_closed(self, event):
        cdef Fund f
        cdef Participant p
        self._put_calendar(self.calendars[event.calendar_id].closing(Date.fromisoformat(event.date), event.reason))
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
            self.orders[o.order_id] = _replace(o, dealing_date=move.dealing_date,
                                               settlement_date=move.settlement_date, updated_at=event.at)
        for move in event.pcfs:
            f = self.funds[move.fund_id]
            pcf = f.pcfs.pop(event.date)
            if move.to_date not in f.pcfs:
                f.pcfs[move.to_date] = _replace(pcf, dealing_date=move.to_date)

    def _strike(self, cmd, long long now_ms, list events):
        cdef Fund f = self._fund(cmd.fund_id)
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
        self._advance(f, now_ms)
        U, S = f.unit, f.shares
        nav_num = f.cash * CENT
        lines, pcf_lines, held, prices = [], [], 0, []
        for fa in f.assets:
            price = official[fa.info.symbol]
            worth = fa.total * price * fa.info.factor
            nav_num += worth
            lines.append(M.OfficialLine(asset=fa.info.symbol, quantity=fa.total, price=price, value=rhe(worth, CENT)))
            qpu = fa.total * U // S if S else fa.seed_qpu
            held += qpu * price * fa.info.factor
            pcf_lines.append(BasketLine(asset=fa.info.symbol, quantity_per_unit=qpu))
            prices.append(M.PriceLine(asset=fa.info.symbol, price=price))
        nps = rhe(nav_num, S * NPS) if S else None
        if S:
            estimated, per_unit = rhe(nav_num * U - S * held, S * CENT), rhe(nav_num * U, S * CENT)
        else:
            estimated, per_unit = f.seed_cash, rhe(held + f.seed_cash * CENT, CENT)
        nav = M.OfficialNav(fund_id=f.fund_id, dealing_date=iso, nav=rhe(nav_num, CENT), nav_per_share=nps,
                            shares_outstanding=S, cash=f.cash, lines=tuple(lines), struck_at=now_ms)
        pcf = M.Pcf(fund_id=f.fund_id, dealing_date=CAL.next_dealing_day(cal, day).isoformat(), creation_unit=U,
                    lines=tuple(pcf_lines), estimated_cash_component=estimated, nav_per_unit=per_unit,
                    nav_per_share=nps, shares_outstanding=S, prices=tuple(prices), published_at=now_ms)
        priced = 0
        for order_id in f.forward_orders.get(iso, ()):
            priced += self.orders[order_id].status == ACCEPTED
        self._emit(events, M.NavStruck(at=now_ms, nav=nav, pcf=pcf))
        return M.StrikeResult(nav=nav, pcf=pcf, priced_orders=priced)

    def _on_struck(self, event):
        cdef Fund f
        cdef FundAsset fa
        nav = event.nav
        f = self.funds[nav.fund_id]
        f.navs[nav.dealing_date] = nav
        f.pcfs[event.pcf.dealing_date] = event.pcf
        S = nav.shares_outstanding
        nav_num = nav.cash * CENT
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
                    cc = rhe(nav_num * basket.creation_unit - S * held, S * CENT)
                else:
                    cc = f.seed_cash
                done = priced[id(basket)] = (basket, _replace(basket, cash_component=cc), cc)
            self.orders[order_id] = _replace(o, basket=done[1], cash_amount=o.units * done[2], priced=True,
                                             official_nav_per_share=nps, updated_at=event.at)

    # ---------------------------------------------------------------- wallets and deliveries (SPEC §14)
    def _wallet(self, wallet_id):
        w = self.wallets.get(wallet_id)
        if w is None:
            raise not_found("wallet", wallet_id)
        return w

    def _register_wallet(self, cmd, long long now_ms, list events):
        if cmd.participant_id not in self.participants:
            raise not_found("participant", cmd.participant_id)
        asset = self.assets.get(cmd.asset)
        if asset is None:
            raise not_found("asset", cmd.asset)
        ADDR.check_address((<Asset>asset).chain, cmd.address, "address")
        _need_text(cmd.label, "label")
        existing = self.live_wallets.get((cmd.participant_id, cmd.asset, cmd.address))
        if existing is not None:
            raise EngineError(ALREADY_EXISTS, f"wallet {existing} of {cmd.participant_id} has this address")
        wallet = Wallet(wallet_id="WAL-%08d" % self.next_wallet_seq, participant_id=cmd.participant_id,
                        asset=cmd.asset, address=cmd.address, label=cmd.label, status=M.PENDING,
                        registered_by=cmd.principal, registered_at=now_ms, updated_at=now_ms)
        self._emit(events, M.WalletRegistered(at=now_ms, wallet=wallet))
        return self.wallets[wallet.wallet_id]

    def _approve_wallet(self, cmd, long long now_ms, list events):
        w = self._wallet(cmd.wallet_id)
        if w.status != M.PENDING:
            raise precondition(M.WALLET_NOT_PENDING, f"wallet {w.wallet_id} is {w.status}")
        if cmd.principal == w.registered_by:
            raise EngineError(PERMISSION_DENIED, f"four eyes: {quote(cmd.principal)} registered wallet "
                                                 f"{w.wallet_id}; another issuer principal must approve it")
        self._emit(events, M.WalletApproved(at=now_ms, wallet_id=w.wallet_id, approved_by=cmd.principal))
        return self.wallets[w.wallet_id]

    def _revoke_wallet(self, cmd, long long now_ms, list events):
        w = self._wallet(cmd.wallet_id)
        _need_text(cmd.reason, "reason")
        if w.status == M.REVOKED:
            raise precondition(WALLET_NOT_APPROVED, f"wallet {w.wallet_id} is already REVOKED")
        self._emit(events, M.WalletRevoked(at=now_ms, wallet_id=w.wallet_id, revoked_by=cmd.principal,
                                           reason=cmd.reason))
        return self.wallets[w.wallet_id]

    def list_wallets(self, str participant_id=""):
        if participant_id and participant_id not in self.participants:
            raise not_found("participant", participant_id)
        return [self.wallets[k] for k in sorted(self.wallets)
                if not participant_id or self.wallets[k].participant_id == participant_id]

    def _on_wallet(self, event):
        self.wallet_epoch += 1
        w = event.wallet
        self.wallets[w.wallet_id] = w
        if w.status != M.REVOKED:  # a restored wallet may be
            self.live_wallets[(w.participant_id, w.asset, w.address)] = w.wallet_id
        if w.status == APPROVED:
            self.approved[w.wallet_id] = (w.participant_id, w.asset, w.address)
        self.next_wallet_seq = int(w.wallet_id[4:]) + 1

    def _on_wallet_approved(self, event):
        self.wallet_epoch += 1
        w = self.wallets[event.wallet_id]
        self.wallets[w.wallet_id] = _replace(w, status=APPROVED, approved_by=event.approved_by, updated_at=event.at)
        self.approved[w.wallet_id] = (w.participant_id, w.asset, w.address)

    def _on_wallet_revoked(self, event):
        self.wallet_epoch += 1
        w = self.wallets[event.wallet_id]
        self.wallets[w.wallet_id] = _replace(w, status=M.REVOKED, revoked_by=event.revoked_by,
                                             revoke_reason=event.reason, updated_at=event.at)
        del self.live_wallets[(w.participant_id, w.asset, w.address)]
        self.approved.pop(w.wallet_id, None)

    cdef object _transfer(self, object order, object asset, object quantity, object tx_hash):
        """The checked asset (one of the order's), quantity (parsed, > 0) and tx_hash of a transfer."""
        for line in order.deliverables:
            if line.asset == asset:
                break
        else:
            raise invalid("asset", f"{asset!r} is not an asset of order {order.order_id}")
        q = parse_scaled(quantity, "quantity", (<Asset>self.assets[asset]).decimals, limit=MAXQ)
        if q == 0:
            raise invalid("quantity", "must be positive")
        ADDR.check_printable(tx_hash, "tx_hash")
        return q

    def _qty(self, asset, quantity):
        """A quantity as the wire writes it (the asset's decimals), for messages."""
        return format_quantity(quantity, (<Asset>self.assets[asset]).decimals)

    cdef dict _confirmed(self, object order):
        """asset -> quantity delivered with at least the asset's min_confirmations."""
        total = {}
        for d in order.deliveries:
            if d.confirmations >= (<Asset>self.assets[d.asset]).min_conf:
                total[d.asset] = total.get(d.asset, 0) + d.quantity
        return total

    cdef dict _paid(self, object order):
        """(custodian_id, asset) -> quantity paid out on the order's payouts."""
        total = {}
        for p in order.payouts:
            key = (p.custodian_id, p.asset)
            total[key] = total.get(key, 0) + p.quantity
        return total

    def _record_delivery(self, cmd, long long now_ms, list events):
        order = self._own_order(cmd.order_id, None)
        q = self._transfer(order, cmd.asset, cmd.quantity, cmd.tx_hash)
        ADDR.check_address((<Asset>self.assets[cmd.asset]).chain, cmd.from_address, "from_address")
        _need_int(cmd.confirmations, "confirmations", 0, M.MAX_CONFIRMATIONS)
        if order.status != ACCEPTED or order.side != CREATE:
            raise precondition(M.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
        for known in order.deliveries:
            if known.tx_hash == cmd.tx_hash:
                if (known.asset, known.quantity, known.from_address) != (cmd.asset, q, cmd.from_address):
                    raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(cmd.tx_hash)} is recorded with other figures")
                if known.confirmations == cmd.confirmations:
                    return self._with_overdue(order, now_ms)
                delivery = _replace(known, confirmations=cmd.confirmations)
                break
        else:
            wallet_id = self.live_wallets.get((order.participant_id, cmd.asset, cmd.from_address))
            if wallet_id is None or self.wallets[wallet_id].status != APPROVED:
                raise precondition(WALLET_NOT_APPROVED, f"{quote(cmd.from_address)} is not an approved {cmd.asset} "
                                                        f"wallet of {order.participant_id}")
            delivery = M.Delivery(cmd.asset, q, cmd.tx_hash, cmd.from_address, cmd.confirmations, now_ms)
        self._emit(events, M.DeliveryRecorded(at=now_ms, order_id=order.order_id, delivery=delivery))
        return self._with_overdue(self.orders[order.order_id], now_ms)

    def _on_delivery(self, event):
        order = self.orders[event.order_id]
        d = event.delivery
        deliveries = list(order.deliveries)
        for i, known in enumerate(deliveries):
            if known.tx_hash == d.tx_hash:
                deliveries[i] = d
                break
        else:
            deliveries.append(d)
        order = _replace(order, deliveries=tuple(deliveries), updated_at=event.at)
        confirmed = self._confirmed(order)
        excess = []
        for line in order.deliverables:
            over = confirmed.get(line.asset, 0) - line.quantity
            if over > 0:
                excess.append(Line(line.asset, over))
        self.orders[order.order_id] = _replace(order, excess=tuple(excess))

    def _record_payout(self, cmd, long long now_ms, list events):
        order = self._own_order(cmd.order_id, None)
        _need_id(cmd.custodian_id, "custodian_id")
        q = self._transfer(order, cmd.asset, cmd.quantity, cmd.tx_hash)
        if order.status != ACCEPTED or order.side != REDEEM:
            raise precondition(M.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
        for leg in order.legs:
            if leg.custodian_id == cmd.custodian_id and leg.asset == cmd.asset:
                break
        else:
            raise invalid("custodian_id", f"order {order.order_id} has no {cmd.asset} leg at {quote(cmd.custodian_id)}")
        for known in order.payouts:
            if known.tx_hash == cmd.tx_hash:
                if (known.custodian_id, known.asset, known.quantity) != (cmd.custodian_id, cmd.asset, q):
                    raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(cmd.tx_hash)} is recorded with other figures")
                return self._with_overdue(order, now_ms)
        paid = self._paid(order).get((cmd.custodian_id, cmd.asset), 0)
        if paid + q > leg.quantity:
            raise precondition(M.PAYOUT_EXCEEDS_LEG, f"order {order.order_id}: leg {cmd.custodian_id} {cmd.asset} "
                               f"would be paid {self._qty(cmd.asset, paid + q)} of "
                               f"{self._qty(cmd.asset, leg.quantity)}")
        payout = M.Payout(cmd.custodian_id, cmd.asset, q, cmd.tx_hash, now_ms)
        self._emit(events, M.PayoutRecorded(at=now_ms, order_id=order.order_id, payout=payout))
        return self._with_overdue(self.orders[order.order_id], now_ms)

    def _on_payout(self, event):
        order = self.orders[event.order_id]
        self.orders[order.order_id] = _replace(order, payouts=order.payouts + (event.payout,), updated_at=event.at)

    def _on_clock(self, event):
        pass  # the engine's clock, not the ledger's

    def get_calendar(self, str calendar_id):
        cal = self._calendar(calendar_id)
        return M.CalendarInfo(
            calendar_id=cal.calendar_id, time_zone=cal.time_zone, holidays=sorted(d.isoformat() for d in cal.holidays),
            weekend_days=sorted(cal.weekend_days),
            closed=[M.ClosedDay(date=d.isoformat(), reason=r) for d, r in sorted(cal.closed.items())])

    def get_official_nav(self, str fund_id, dealing_date):
        cdef Fund f = self._fund(fund_id)
        iso = CAL.parse_date(dealing_date, "dealing_date").isoformat()
        if iso not in f.navs:
            raise not_found(f"official NAV of {fund_id} for", iso)
        return f.navs[iso]

    def list_official_navs(self, str fund_id, str from_date="", str to_date=""):
        cdef Fund f = self._fund(fund_id)
        low = CAL.parse_date(from_date, "from_date").isoformat() if from_date else ""
        high = CAL.parse_date(to_date, "to_date").isoformat() if to_date else "9999-99-99"
        return [f.navs[d] for d in sorted(f.navs) if low <= d <= high]

    def get_pcf(self, str fund_id, dealing_date):
        cdef Fund f = self._fund(fund_id)
        iso = CAL.parse_date(dealing_date, "dealing_date").isoformat()
        if iso not in f.pcfs:
            raise not_found(f"PCF of {fund_id} for", iso)
        return f.pcfs[iso]

    # ---------------------------------------------------------------- canonical state
    def state(self, long long now_ms):
        cdef Fund f
        cdef FundAsset fa
        cdef Holding h
        cdef Custodian c
        cdef Participant p
        cdef Price pr
        funds = []
        for fund_id in sorted(self.funds):
            f = self.funds[fund_id]
            self._advance(f, now_ms)
            rows = []
            for fa in f.assets:
                for h in fa.holdings:
                    if h.available or h.reserved or h.staked or h.lots:
                        rows.append([h.custodian.custodian_id, h.asset, h.available, h.reserved, h.staked,
                                     sorted([list(lot) for lot in h.lots])])
            rows.sort()
            funds.append([_builtins(f.terms), f.cash, f.shares, rows])
        return {
            "assets": [[s, (<Asset>self.assets[s]).decimals, (<Asset>self.assets[s]).min_conf,
                        (<Asset>self.assets[s]).chain] for s in sorted(self.assets)],
            "custodians": [[c.custodian_id, c.name, c.licence_number, c.status, c.expires_at]
                           for c in [self.custodians[k] for k in sorted(self.custodians)]],
            "participants": [[p.participant_id, p.name, list(p.eligible), p.max_order, p.max_day]
                             for p in [self.participants[k] for k in sorted(self.participants)]],
            "prices": [[k[0], k[1], (<Price>v).value, (<Price>v).as_of] for k, v in sorted(self.prices.items())
                       if (<Price>v).value is not None],
            "funds": funds,
            "orders": [_builtins(self.orders[k]) for k in sorted(self.orders)],
            "next_order_seq": self.next_seq,
            "calendars": [[cal.calendar_id, cal.time_zone, sorted(d.isoformat() for d in cal.holidays),
                           sorted(cal.weekend_days), [[d.isoformat(), r] for d, r in sorted(cal.closed.items())]]
                          for cal in [self.calendars[k] for k in sorted(self.calendars)]],
            "official_navs": [_builtins(f.navs[d]) for f in [self.funds[k] for k in sorted(self.funds)]
                              for d in sorted(f.navs)],
            "pcfs": [_builtins(f.pcfs[d]) for f in [self.funds[k] for k in sorted(self.funds)] for d in sorted(f.pcfs)],
            "wallets": [_builtins(self.wallets[k]) for k in sorted(self.wallets)],
            "next_wallet_seq": self.next_wallet_seq,
        }

    @classmethod
    def restore(cls, dict state):
        """A ledger holding exactly ``state`` (as ``state()`` returned it): the snapshot's way back."""
        cdef Ledger ledger = cls()
        cdef Fund f
        cdef FundAsset fa
        cdef Holding h
        cdef Participant p
        for symbol, decimals, *rules in state["assets"]:  # rules: [min_confirmations, chain] since SPEC §14
            ledger._on_asset(M.AssetRegistered(at=0, symbol=symbol, decimals=decimals,
                                               **dict(zip(("min_confirmations", "chain"), rules))))
        for cid, name, number, status, expires in state["custodians"]:
            ledger._on_custodian(M.CustodianRegistered(at=0, custodian_id=cid, name=name, licence_number=number,
                                                       licence_status=status, licence_expires_at=expires))
        for cid, zone_name, holidays, weekend, closed in state.get("calendars", ()):
            ledger._put_calendar(CAL.Calendar(cid, zone_name, frozenset(map(Date.fromisoformat, holidays)),
                                              frozenset(weekend), {Date.fromisoformat(d): r for d, r in closed}))
        for pid, name, funds, max_order, max_day in state["participants"]:
            ledger._on_participant(M.ParticipantRegistered(at=0, participant_id=pid, name=name,
                                                           eligible_fund_ids=tuple(funds),
                                                           max_units_per_order=max_order, max_units_per_day=max_day))
        for terms, cash, shares, rows in state["funds"]:
            ledger._on_fund_created(M.FundCreated(at=0, terms=msgspec.convert(terms, M.FundTerms),
                                                  shares_outstanding=shares))
            f = ledger.funds[terms["fund_id"]]
            ledger._cash_changed(f, cash)
            for cid, asset, available, reserved, staked, lots in rows:
                fa = f.asset_map[asset]
                h = ledger._holding(fa, ledger.custodians[cid])
                h.available, h.reserved, h.staked = available, reserved, staked
                fa.liquid = None
                h.lots = [list(lot) for lot in lots]
                h.unbonding = sum(lot[1] for lot in lots)
                fa.reserved += reserved
                fa.illiquid += staked + h.unbonding
                ledger._total_changed(fa, available + reserved + staked + h.unbonding)
                for lot in lots:
                    f.next_release = min(f.next_release, lot[0])
        for asset, currency, price, as_of in state["prices"]:
            ledger._on_price(M.PriceSet(at=0, asset=asset, currency=currency, price=price, as_of=as_of))
        for raw in state["orders"]:
            order = msgspec.convert(raw, Order)
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
            if order.status == ACCEPTED and order.side == REDEEM:
                f.pending_redeem += order.units * order.basket.creation_unit
        for raw in state.get("official_navs", ()):
            nav = msgspec.convert(raw, M.OfficialNav)
            (<Fund>ledger.funds[nav.fund_id]).navs[nav.dealing_date] = nav
        for raw in state.get("pcfs", ()):
            pcf = msgspec.convert(raw, M.Pcf)
            (<Fund>ledger.funds[pcf.fund_id]).pcfs[pcf.dealing_date] = pcf
        for raw in state.get("wallets", ()):
            ledger._on_wallet(M.WalletRegistered(at=0, wallet=msgspec.convert(raw, Wallet)))
        ledger.next_wallet_seq = state.get("next_wallet_seq", 1)
        ledger.next_seq = state["next_order_seq"]
        return ledger
