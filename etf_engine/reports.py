"""The fund's reports (SPEC §21, R1-R7): figures read from the journal, computed exactly.

Every figure comes from the journal: states as of a time (``Engine.ledger_as_of``: the state right after
the last record at or before t, read at t) and the records between two such states. Only the records of the
period are read, and of those only the fund's: the journal's database chooses the records whose body names
the fund (``AsOfReader.select``, journal/history.py), and ``FundScan`` decodes only the types wanted. A
settlement names only its order, so it is not read at all: the fund's orders closed in a period are those
open in the opening state or recorded ACCEPTED in the period and no longer open in the closing state
(``closed_between``), and a closed order, which never changes again, is read from the ledger now. This
module computes; the servicer (api/reports.py) gathers the states, the records and the orders, and formats
the replies. Amounts are exact integers in the engine's units (smallest asset units, cents, shares); nothing
here rounds but where SPEC says, half-even.

Decisions where SPEC §21 leaves a choice:

* **Days.** Dates are local dates of the fund's calendar as it is now (UTC for a fund without one): day D
  runs from local 00:00:00.000 to 23:59:59.999. A period needs both dates (INVALID_ARGUMENT naming the
  missing one); ``from`` after ``to`` is INVALID_ARGUMENT naming ``from``. A time after the
  engine's now is read as now; one before the first record reads the empty ledger.
* **Roll-forward (R3).** The balance of an asset is the fund's holdings, Σ over custodians of available +
  reserved + staked + unbonding; ``fee_payable`` is outside it (the in-kind fee leaves the balance when a
  strike moves it there; PayFee in kind then pays it out of fee_payable, not out of the balance).
  ``opening`` = the balance as of (local start of ``from``) − 1 ms, ``closing`` = as of the end of
  ``to`` (or now); the movements are the records between those two states, each classified by what it
  does to the balance, as the ledgers apply it (etf_engine/reference):

  - assets: ``contributed`` (+ the deliverables of creations settled), ``redeemed`` (− the legs of
    redemptions settled), ``fees`` (− a strike's ``fee_taken`` in kind), ``rewards`` (+ the gross of each
    staking reward), ``staking_fees`` (− the staking provider's share of it), ``slashed`` (−), then each
    ``adjustment`` on a row of its own, in journal order: AdjustHolding (its reason and break id) and
    ResolveBreak's non-zero adjustment (the resolution's comment as reason, and its break id). A
    resolution of 0 moves nothing and is not a row (the break report shows it). Stake, Unstake, a lot's
    release, Sweep, a redemption's reservation and its cancellation move coins between buckets, tiers or
    custodians of the fund: not movements of the balance.
  - CASH: ``cash_components`` (+ a creation's cash amount, − a redemption's, as settled), ``fees_paid``
    (− PayFee in cash), each ``adjustment`` (AdjustCash; its event keeps no reason). Nothing else changes
    a fund's cash: the creation and redemption fees are charged to the dealer, not paid into the fund.
  - SHARES: ``initial`` (FundCreated's shares outstanding, when the fund was created in the period),
    ``created`` and ``redeemed`` (units × the order's creation unit, as settled).

  Every kind appears once per balance (0 when none; ``adjustment`` one row of 0 when none), in that order.
  ``check`` = opening + Σ movements − closing, computed, and 0: the movements are exactly the records
  between the two states.
* **Daily report (R1).** Everything is as of the date's strike (the state as of ``struck_at``), or as of
  the end of the local date (clamped to now) for what SPEC says "at the end of the date":
  - the actual cash component: round(NAV × U / S − Σ_a q(a) / 10^decimals × official_price(a), 2), with
    NAV the exact official NAV (the official lines, cash and the exact accrued fee after the strike), S
    the shares at the strike, q(a) and U those of the PCF published for the date, or — without one (the
    fund's first strike) — floor(quantity × U / S) of the official lines with the fund's U at the strike;
    with S = 0 it is the seed cash per unit (what FORWARD orders are priced at then).
    ``nav_per_creation_unit`` = round(NAV × U / S, 2). ``estimated_cash_component``: the PCF the strike
    published for the next dealing day.
  - **the date's orders** are the fund's orders whose ``dealing_date`` (after any move by a closed day)
    is the date, for LIVE and FORWARD funds alike (the dealing date is the day an order is dealt on; a
    LIVE order submitted after the cut-off belongs to the next day, as its daily limit does), with their
    status at the end of the date: by side, then status, each of the 8 (side, status) pairs once. They
    are found among the fund's orders recorded from the cut-off of the previous dealing day up to the
    date's cut-off.
  - shares created and redeemed: by the fund's orders settled within the local date (up to now).
  - ratios per asset at the strike (illiquid/committed against the cap, liquid/committed against the
    buffer); storage breaches as the official NAV record keeps them; breaks OPEN at the end of the date;
    orders overdue then (ACCEPTED past the end of their settlement date).
  - ``premium_discount`` = (closing_price − nav_per_share) / nav_per_share with the official NAV's
    nav_per_share (4 dp), rounded half-even to 4 dp; ``closing_price`` is positive, at most 4 fraction
    digits, shown with 4.
* **Holdings (R2).** A line per (custodian, asset, bucket, tier) that holds something, from the state as
  of the time asked (0: now). Held = available + reserved is split by tier (SPEC §18); the reserved coins
  are taken to be the ones that leave first on settlement (hot, then warm, then cold) and the available
  ones the rest. price = the fund's price as it stood then; value = round(quantity × price, 2);
  ``percent_of_nav`` = exact value / exact NAV × 100, 4 dp (empty while a price is missing or the NAV is
  not positive). Receivable: each deliverable of an ACCEPTED creation; payable: each leg of an ACCEPTED
  redemption; ``settlement_date_ms`` is the local start of the order's settlement date (0 without one).
* **Staking (R5).** Positions as of ``as_of`` (0: the end of ``to``, or now if that is later); the lots
  still unbonding then, by custodian and release time; rewards (gross, staking fee, net) and slashing of
  the records in the period.
* **Breaks (R6).** The breaks as they stood at the end of ``to`` (or now): those open then, and those
  resolved within the period; their age is the number of dealing days d of the fund's calendar (every day
  without one) with opened < d ≤ resolved (or ``to``'s end, or today), in local dates.
* **Participant activity (R7).** The fund's orders recorded in the period (the local date they were
  submitted), with their status at the end of the period: per participant, side and status (only pairs
  with orders), and per participant and reason the rejections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

import msgspec

from etf_engine import calendar as cal_
from etf_engine import model as M
from etf_engine.errors import invalid
from etf_engine.journal.records import check_stored
from etf_engine.numbers import (
    ACCRUED_DP,
    FRACTION_DP,
    MONEY_DP,
    NAV_PER_SHARE_DP,
    PRICE_DP,
    parse_scaled,
    round_half_even,
)
from etf_engine.snapshot import FundState

# -- the items and kinds of a roll-forward (engine.proto's RollForwardMovement) --------------------------
CASH_ITEM, SHARES_ITEM = "CASH", "SHARES"
CONTRIBUTED, REDEEMED, FEES, REWARDS, STAKING_FEES, SLASHED, ADJUSTMENT = (
    "contributed", "redeemed", "fees", "rewards", "staking_fees", "slashed", "adjustment")
CASH_COMPONENTS, FEES_PAID = "cash_components", "fees_paid"
INITIAL, CREATED = "initial", "created"
ASSET_KINDS = (CONTRIBUTED, REDEEMED, FEES, REWARDS, STAKING_FEES, SLASHED, ADJUSTMENT)
CASH_KINDS = (CASH_COMPONENTS, FEES_PAID, ADJUSTMENT)
SHARE_KINDS = (INITIAL, CREATED, REDEEMED)
STATUSES = (M.ACCEPTED, M.REJECTED, M.SETTLED, M.CANCELLED)  # the wire enum's order
UTC_DAYS = cal_.Calendar("", "UTC", frozenset(), frozenset())  # a fund without a calendar: every UTC day


# == days ===============================================================================================
class Days:
    """Local dates and instants of a fund's calendar (UTC, every day a dealing day, without one)."""

    def __init__(self, calendar: cal_.Calendar | None) -> None:
        self.calendar = calendar or UTC_DAYS

    @classmethod
    def of(cls, info: M.CalendarInfo | None) -> Days:
        if info is None:
            return cls(None)
        return cls(cal_.Calendar(info.calendar_id, info.time_zone, frozenset(map(date.fromisoformat, info.holidays)),
                                 frozenset(info.weekend_days),
                                 {date.fromisoformat(c.date): c.reason for c in info.closed}))

    def start(self, day: date) -> int:
        """Unix ms of the local 00:00:00.000 of ``day``."""
        return cal_.cutoff_ms(self.calendar, day, 0)

    def end(self, day: date) -> int:
        """Unix ms of the local 23:59:59.999 of ``day``."""
        if day == date.max:  # no next day to start: the last day of the calendar is 24 hours long
            return self.start(day) + M.DAY_MS - 1
        return self.start(day + timedelta(days=1)) - 1

    def cutoff(self, day: date, cutoff: str) -> int:
        return cal_.cutoff_ms(self.calendar, day, cal_.cutoff_seconds(cutoff))

    def date_of(self, ms: int) -> date:
        return cal_.local_date(self.calendar, ms)

    def previous_dealing_day(self, day: date) -> date:
        """The last dealing day before ``day`` (two years back at most, then that day)."""
        for _ in range(cal_.SEARCH_DAYS):
            day -= timedelta(days=1)
            if cal_.is_dealing_day(self.calendar, day):
                return day
        return day

    def dealing_days_between(self, start: date, end: date) -> int:
        """Dealing days d with start < d <= end (0 when end is not after start)."""
        return cal_.dealing_days_between(self.calendar, start, end)


@dataclass(frozen=True)
class Period:
    """Local dates ``first`` to ``last`` (inclusive): unix ms ``start`` (the first's 00:00:00.000) to
    ``end`` (the last's 23:59:59.999)."""

    first: date
    last: date
    start: int
    end: int


def period(from_date: str, to_date: str, days: Days) -> Period:
    """A report's period; INVALID_ARGUMENT naming the field that is missing or malformed, and naming
    ``from`` when it is after ``to`` (the request's names of the two dates, SPEC §21)."""
    for name, text in (("from", from_date), ("to", to_date)):
        if not text:
            raise invalid(name, "is required: a period needs both from and to")
    first, last = cal_.parse_date(from_date, "from"), cal_.parse_date(to_date, "to")
    if first > last:
        raise invalid("from", f"{first.isoformat()} is after to {last.isoformat()}")
    return Period(first, last, days.start(first), days.end(last))


def parse_closing_price(text: str) -> int | None:
    """DailyReport's optional ``closing_price`` (per share, at most 4 fraction digits, positive), in 1e-4."""
    if not text:
        return None
    value = parse_scaled(text, "closing_price", NAV_PER_SHARE_DP, limit=10**12 * 10**NAV_PER_SHARE_DP)
    if value <= 0:
        raise invalid("closing_price", "must be positive")
    return value


# == the journal, read raw =============================================================================
# (after, upto, needle, kinds) -> the records after seq ``after`` up to ``upto`` whose body names ``needle`` near
# its start, or whose type is one of ``kinds``, as stored (seq, crc, body): chosen by the journal's database
# (``AsOfReader.select``, journal/history.py).
Select = Callable[[int, int, bytes, Sequence[str]], list[tuple[int, int, bytes]]]
_TYPE_AT = len(b'{"type":"')  # a record's body starts with its tag (records.py: msgspec's tagged union)
_decoder = msgspec.json.Decoder(M.AnyEvent)


class _Ref(msgspec.Struct):
    """What a record says about the break or order it acts on (other fields are skipped, not built)."""

    order_id: str = ""
    break_id: str = ""
    at: int = 0


class _OrderHead(msgspec.Struct):
    order_id: str
    fund_id: str
    status: str


class _OrderRecorded(msgspec.Struct):
    order: _OrderHead


_ref, _order_recorded = msgspec.json.Decoder(_Ref), msgspec.json.Decoder(_OrderRecorded)
# Records whose body names their fund as "fund_id" near its start (nested in FundCreated's terms, OrderRecorded's
# order, NavStruck's nav); a resolution names only its break.
BY_FUND = frozenset({"FundCreated", "FundUpdated", "HoldingAdjusted", "CashAdjusted", "Staked", "Unstaked",
                     "RewardRecorded", "Slashed", "OrderRecorded", "NavStruck", "FeePaid", "Swept",
                     "StatementRecorded"})
BY_BREAK = frozenset({"BreakResolved"})


def needle(fund_id: str) -> bytes:
    """How a record's body names the fund."""
    return b'"fund_id":' + msgspec.json.encode(fund_id)


def kind_of(body: bytes) -> str:
    return body[_TYPE_AT:body.find(b'"', _TYPE_AT)].decode()


def fund_of(event: M.Event) -> str:
    """The fund a record of BY_FUND is about."""
    if isinstance(event, M.FundCreated | M.FundUpdated):
        return event.terms.fund_id
    if isinstance(event, M.OrderRecorded):
        return event.order.fund_id
    if isinstance(event, M.NavStruck):
        return event.nav.fund_id
    return getattr(event, "fund_id", "")


class FundScan:
    """The records of one fund over a stretch of the journal.

    ``keep``: the record types wanted (decoded and returned, in journal order). Beside them it gathers
    ``recorded``, the fund's orders recorded in the stretch (order_id -> status as recorded), and follows its
    breaks so that a resolution, which names only its break, is known as the fund's: ``break_assets`` starts
    with those open at the start of the stretch and grows with those its statements open."""

    def __init__(self, fund_id: str, keep: Iterable[str] = (), break_assets: Mapping[str, str] | None = None) -> None:
        self.fund_id = fund_id
        self.keep = frozenset(keep)
        self.recorded: dict[str, str] = {}
        self.break_assets = dict(break_assets or {})

    def run(self, select: Select, where: str, after: int, upto: int) -> list[M.Event]:
        """The wanted records of the fund among records ``after`` + 1 to ``upto``."""
        found: list[M.Event] = []
        for seq, crc, body in select(after, upto, needle(self.fund_id), sorted(self.keep & BY_BREAK)):
            kind = kind_of(body)
            if kind == "OrderRecorded" and kind not in self.keep:
                head = check_stored(where, seq, crc, body, _order_recorded).order
                if head.fund_id == self.fund_id:
                    self.recorded[head.order_id] = head.status
            elif kind in BY_FUND and (kind in self.keep or kind == "StatementRecorded"):
                event = check_stored(where, seq, crc, body, _decoder)
                if fund_of(event) != self.fund_id:
                    continue
                if isinstance(event, M.OrderRecorded):
                    self.recorded[event.order.order_id] = event.order.status
                elif isinstance(event, M.StatementRecorded):
                    self.break_assets.update({b.break_id: b.asset for b in event.opened})
                if kind in self.keep:
                    found.append(event)
            elif kind in BY_BREAK and kind in self.keep and _ref.decode(body).break_id in self.break_assets:
                found.append(check_stored(where, seq, crc, body, _decoder))
        return found

    def accepted(self) -> list[str]:
        """The fund's orders recorded ACCEPTED in the stretch."""
        return [order_id for order_id, status in self.recorded.items() if status == M.ACCEPTED]


def closed_between(opening_open: Iterable[str], accepted: Iterable[str], closing_open: Iterable[str]) -> list[str]:
    """The orders closed (settled or cancelled) between two states of a fund: those open at the first or recorded
    ACCEPTED between them, and no longer open at the second. A closed order never changes again: its status now
    says which."""
    return sorted({*opening_open, *accepted} - set(closing_open))


def day_records(select: Select, where: str, fund_id: str, after: int, upto: int,
                settled_from: int) -> tuple[list[str], list[str]]:
    """(the fund's orders recorded, every order settled at or after ``settled_from``) among records ``after``
    + 1 to ``upto``, by id: what R1 looks up in the ledger for the date's orders and its settlements (a
    settlement names only its order)."""
    recorded, settled = [], []
    for seq, crc, body in select(after, upto, needle(fund_id), ("OrderSettled",)):
        kind = kind_of(body)
        if kind == "OrderRecorded":
            head = check_stored(where, seq, crc, body, _order_recorded).order
            if head.fund_id == fund_id:
                recorded.append(head.order_id)
        elif kind == "OrderSettled":
            ref = check_stored(where, seq, crc, body, _ref)
            if ref.at >= settled_from:
                settled.append(ref.order_id)
    return recorded, settled


# == R3: the roll-forward ==============================================================================
class Movement(msgspec.Struct, frozen=True):
    kind: str
    amount: int  # signed as it changes the balance; smallest units, cents or shares
    reason: str = ""
    break_id: str = ""
    at: int = 0  # an adjustment's time


class Balance(msgspec.Struct, frozen=True):
    item: str  # an asset, CASH or SHARES
    opening: int
    movements: tuple[Movement, ...]
    closing: int

    @property
    def check(self) -> int:
        return self.opening + sum(m.amount for m in self.movements) - self.closing


class Books(msgspec.Struct, frozen=True):
    """A fund's balances at an instant: holdings per asset (Σ available + reserved + staked + unbonding),
    cash (cents), shares outstanding. All 0 before the fund existed."""

    holdings: dict[str, int]
    cash: int = 0
    shares: int = 0


def books(holdings: M.Holdings | None, nav: M.Nav | None) -> Books:
    """The balances from a fund's holdings and NAV read at an instant (None: the fund did not exist)."""
    if holdings is None or nav is None:
        return Books({})
    totals: dict[str, int] = {}
    for row in holdings.holdings:
        totals[row.asset] = totals.get(row.asset, 0) + row.available + row.reserved + row.staked + row.unbonding
    return Books(totals, nav.cash, nav.shares_outstanding)


def roll_forward(assets: Sequence[str], opening: Books, closing: Books, events: Iterable[M.Event],
                 closed: Iterable[M.Order], break_assets: Mapping[str, str]) -> list[Balance]:
    """Per asset (by code), CASH and SHARES: opening, each movement, closing. The movements are those of
    ``events`` (the fund's records between the two states: its FundCreated, strikes, rewards, slashings,
    adjustments, cash adjustments, fee payments and break resolutions) and of ``closed``, the fund's orders
    closed between them (``closed_between``: its settled ones count, its cancelled ones move nothing);
    ``break_assets``: the asset of every break a resolution names."""
    items = sorted({*assets, *opening.holdings, *closing.holdings})
    sums: dict[str, dict[str, int]] = {a: dict.fromkeys(ASSET_KINDS[:-1], 0) for a in items}
    adjustments: dict[str, list[Movement]] = {a: [] for a in items}
    cash = dict.fromkeys(CASH_KINDS[:-1], 0)
    cash_adjustments: list[Movement] = []
    shares = dict.fromkeys(SHARE_KINDS, 0)

    def asset(a: str) -> dict[str, int]:
        if a not in sums:
            sums[a], adjustments[a] = dict.fromkeys(ASSET_KINDS[:-1], 0), []
        return sums[a]

    for o in closed:
        if o.status != M.SETTLED:
            continue
        assert o.cash_amount is not None, f"settled order {o.order_id} without a cash amount"
        count = o.units * o.basket.creation_unit
        if o.side == M.CREATE:
            for line in o.deliverables:
                asset(line.asset)[CONTRIBUTED] += line.quantity
            cash[CASH_COMPONENTS] += o.cash_amount
            shares[CREATED] += count
        else:
            for leg in o.legs:
                asset(leg.asset)[REDEEMED] -= leg.quantity
            cash[CASH_COMPONENTS] -= o.cash_amount
            shares[REDEEMED] -= count
    for e in events:
        kind = type(e)
        if kind is M.RewardRecorded:
            asset(e.asset)[REWARDS] += e.gross or e.quantity  # records from before SPEC §17: the net was the gross
            sums[e.asset][STAKING_FEES] -= e.staking_fee
        elif kind is M.Slashed:
            asset(e.asset)[SLASHED] -= e.quantity
        elif kind is M.NavStruck:
            if e.fee_taken:
                asset(e.fee_asset)[FEES] -= e.fee_taken
        elif kind is M.HoldingAdjusted:
            asset(e.asset)
            adjustments[e.asset].append(Movement(ADJUSTMENT, e.delta, e.reason, e.break_id, e.at))
        elif kind is M.BreakResolved:
            if e.adjustment:
                a = break_assets[e.break_id]
                asset(a)
                adjustments[a].append(Movement(ADJUSTMENT, e.adjustment, e.comment, e.break_id, e.at))
        elif kind is M.CashAdjusted:
            cash_adjustments.append(Movement(ADJUSTMENT, e.delta, at=e.at))
        elif kind is M.FeePaid:
            if not e.asset:
                cash[FEES_PAID] -= e.amount
        elif kind is M.FundCreated:
            shares[INITIAL] += e.shares_outstanding

    balances = [Balance(a, opening.holdings.get(a, 0),
                        (*(Movement(k, sums[a][k]) for k in ASSET_KINDS[:-1]),
                         *(adjustments[a] or [Movement(ADJUSTMENT, 0)])),
                        closing.holdings.get(a, 0))
                for a in sorted(sums)]
    balances.append(Balance(CASH_ITEM, opening.cash, (*(Movement(k, cash[k]) for k in CASH_KINDS[:-1]),
                                                      *(cash_adjustments or [Movement(ADJUSTMENT, 0)])), closing.cash))
    balances.append(Balance(SHARES_ITEM, opening.shares, tuple(Movement(k, shares[k]) for k in SHARE_KINDS),
                            closing.shares))
    return balances


# record types a roll-forward reads
ROLL_FORWARD_RECORDS = ("FundCreated", "RewardRecorded", "Slashed", "NavStruck", "HoldingAdjusted",
                        "BreakResolved", "CashAdjusted", "FeePaid")


# == R1: the daily report ==============================================================================
def worth(quantity: int, decimals: int, price: int) -> Fraction:
    """quantity (smallest units) × price (1e-8 per whole unit), in base currency, exact."""
    return Fraction(quantity * price, 10 ** (decimals + PRICE_DP))


def cents(value: Fraction) -> int:
    return round_half_even(value.numerator * 10**MONEY_DP, value.denominator)


class AssetRatios(msgspec.Struct, frozen=True):
    asset: str
    illiquid: int
    liquid: int
    committed: int
    staking_cap: int  # 1e-4
    liquidity_buffer: int


class OrderTally(msgspec.Struct, frozen=True):
    participant_id: str  # "" over every participant
    side: str
    status: str
    count: int
    units: int


class DailyFigures(msgspec.Struct, frozen=True):
    """R1's figures beside the official NAV record itself."""

    nav_per_creation_unit: int | None  # cents; None while no shares were outstanding at the strike
    cash_component: int  # cents
    estimated_cash_component: int | None  # cents; None when no PCF of the strike is found
    shares_created: int
    shares_redeemed: int
    orders: list[OrderTally]  # by side, then status: all 8 pairs
    ratios: list[AssetRatios]  # by asset
    open_breaks: list[M.Break]  # by break_id
    overdue_orders: list[M.Order]  # by order_id
    premium_discount: int | None  # 1e-4; None without a closing price or without nav_per_share


def exact_nav(nav: M.OfficialNav | M.Nav, decimals: Mapping[str, int], accrued: int) -> Fraction:
    """A NAV exactly: its lines at their prices (the official ones for an official NAV; every one priced), its
    cash, less the exact accrued fee (10^-ACCRUED_DP units, FundState.accrued_fees)."""
    return sum((worth(line.quantity, decimals[line.asset], line.price) for line in nav.lines),
               Fraction(nav.cash, 10**MONEY_DP)) - Fraction(accrued, 10**ACCRUED_DP)


def status_at(order: M.Order, instant: int) -> str:
    """An order's status at ``instant`` (at or after its recording): a settlement or a cancellation is its
    last change, at ``updated_at``."""
    if order.status in (M.SETTLED, M.CANCELLED) and order.updated_at > instant:
        return M.ACCEPTED
    return order.status


def daily_figures(nav: M.OfficialNav, decimals: Mapping[str, int], *, strike_fund: FundState,
                  strike_holdings: M.Holdings, pcf: M.Pcf | None, next_pcf: M.Pcf | None,
                  orders_of_date: Iterable[M.Order], settled_on_date: Iterable[M.Order], end_of_date: int,
                  open_breaks: Sequence[M.Break], overdue_orders: Sequence[M.Order],
                  closing_price: int | None) -> DailyFigures:
    """R1 for the official NAV ``nav``: ``strike_fund`` and ``strike_holdings`` as of the strike, ``pcf`` the
    PCF published for the date (None: none was), ``next_pcf`` the one the strike published,
    ``orders_of_date`` the fund's orders dated the date (as they are now; their status is taken at
    ``end_of_date``), ``settled_on_date`` its orders settled within the date, the breaks and overdue orders
    as of the end of the date."""
    s = nav.shares_outstanding
    terms = strike_fund.terms
    nav_exact = exact_nav(nav, decimals, strike_fund.accrued_fees)
    price = {line.asset: line.price for line in nav.lines}
    if s:
        if pcf is not None:
            u, quantities = pcf.creation_unit, {line.asset: line.quantity_per_unit for line in pcf.lines}
        else:
            u = terms.creation_unit
            quantities = {line.asset: line.quantity * u // s for line in nav.lines}
        per_unit = nav_exact * u / s
        lines_worth = sum((worth(q, decimals[a], price[a]) for a, q in quantities.items()), Fraction(0))
        cash_component, nav_per_unit = cents(per_unit - lines_worth), cents(per_unit)
    else:
        cash_component, nav_per_unit = terms.seed_cash_per_unit, None
    tally = {(side, status): [0, 0] for side in M.SIDES for status in STATUSES}
    for o in orders_of_date:
        if o.created_at <= end_of_date:
            cell = tally[o.side, status_at(o, end_of_date)]
            cell[0] += 1
            cell[1] += o.units
    created = redeemed = 0
    for o in settled_on_date:
        if o.side == M.CREATE:
            created += o.units * o.basket.creation_unit
        else:
            redeemed += o.units * o.basket.creation_unit
    premium = None
    if closing_price is not None and nav.nav_per_share:
        premium = round_half_even((closing_price - nav.nav_per_share) * 10**FRACTION_DP, nav.nav_per_share)
    return DailyFigures(
        nav_per_creation_unit=nav_per_unit, cash_component=cash_component,
        estimated_cash_component=None if next_pcf is None else next_pcf.estimated_cash_component,
        shares_created=created, shares_redeemed=redeemed,
        orders=[OrderTally("", side, status, n, units) for (side, status), (n, units) in tally.items()],
        ratios=asset_ratios(strike_holdings), open_breaks=list(open_breaks), overdue_orders=list(overdue_orders),
        premium_discount=premium)


def asset_ratios(holdings: M.Holdings) -> list[AssetRatios]:
    return [AssetRatios(a.asset, a.illiquid, a.liquid, a.committed, a.staking_cap, a.liquidity_buffer)
            for a in holdings.assets]


# == R2: holdings as of a time =========================================================================
AVAILABLE_BUCKET, RESERVED_BUCKET = "AVAILABLE", "RESERVED"


class HoldingLine(msgspec.Struct, frozen=True):
    custodian_id: str
    asset: str
    bucket: str  # AVAILABLE, RESERVED, STAKED, UNBONDING
    tier: str  # COLD, WARM, HOT for AVAILABLE and RESERVED; "" for STAKED and UNBONDING
    quantity: int
    price: int | None
    value: int | None  # cents
    percent_of_nav: int | None  # 1e-4


class OrderLeg(msgspec.Struct, frozen=True):
    order_id: str
    participant_id: str
    custodian_id: str  # "" for a creation's deliverable
    asset: str
    quantity: int
    settlement_date_ms: int


class HoldingsFigures(msgspec.Struct, frozen=True):
    nav: int | None  # cents; None while a price is missing
    lines: list[HoldingLine]
    receivable: list[OrderLeg]
    payable: list[OrderLeg]
    fee_payable: list[M.Line]


def split_held(cold: int, warm: int, hot: int, reserved: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(available, reserved) each as (cold, warm, hot): the reserved coins are those that leave held first
    when the redemption settles, hot, then warm, then cold (SPEC §18)."""
    r_hot = min(hot, reserved)
    r_warm = min(warm, reserved - r_hot)
    r_cold = reserved - r_hot - r_warm
    return (cold - r_cold, warm - r_warm, hot - r_hot), (r_cold, r_warm, r_hot)


def holdings_figures(holdings: M.Holdings, nav: M.Nav, fund: FundState, decimals: Mapping[str, int],
                     open_orders: Iterable[M.Order], days: Days) -> HoldingsFigures:
    """R2 from the fund's holdings, NAV and canonical state as of the time, and its orders ACCEPTED then."""
    price = {line.asset: line.price for line in nav.lines}
    nav_exact: Fraction | None = None
    if all(p is not None for p in price.values()):
        nav_exact = exact_nav(nav, decimals, fund.accrued_fees)

    def line(custodian: str, asset: str, bucket: str, tier: str, quantity: int) -> HoldingLine:
        p = price.get(asset)
        if p is None:
            return HoldingLine(custodian, asset, bucket, tier, quantity, None, None, None)
        value = worth(quantity, decimals[asset], p)
        percent = None if nav_exact is None or nav_exact <= 0 else value * 100 / nav_exact
        return HoldingLine(custodian, asset, bucket, tier, quantity, p, cents(value),
                           None if percent is None else round_half_even(percent.numerator * 10**FRACTION_DP,
                                                                       percent.denominator))

    lines = []
    for row in holdings.holdings:
        t = row.tiers
        cold, warm, hot = (t.cold, t.warm, t.hot) if t is not None else (row.available + row.reserved, 0, 0)
        available, reserved = split_held(cold, warm, hot, row.reserved)
        for bucket, split in ((AVAILABLE_BUCKET, available), (RESERVED_BUCKET, reserved)):
            for tier, quantity in zip(M.TIERS, split, strict=True):
                if quantity:
                    lines.append(line(row.custodian_id, row.asset, bucket, tier, quantity))
        for bucket, quantity in ((M.STAKED, row.staked), (M.UNBONDING, row.unbonding)):
            if quantity:
                lines.append(line(row.custodian_id, row.asset, bucket, "", quantity))
    receivable, payable = [], []
    for o in open_orders:
        settles = days.start(date.fromisoformat(o.settlement_date)) if o.settlement_date else 0
        if o.side == M.CREATE:
            receivable += [OrderLeg(o.order_id, o.participant_id, "", d.asset, d.quantity, settles)
                           for d in o.deliverables]
        else:
            payable += [OrderLeg(o.order_id, o.participant_id, leg.custodian_id, leg.asset, leg.quantity, settles)
                        for leg in o.legs]
    return HoldingsFigures(nav.nav, lines, receivable, payable, list(holdings.fee_payable))


# == R5: staking =======================================================================================
class Lot(msgspec.Struct, frozen=True):
    custodian_id: str
    quantity: int
    release_at: int


class StakingLine(msgspec.Struct, frozen=True):
    asset: str
    staked: int
    unbonding: int
    lots: list[Lot]  # by custodian, then release time
    illiquid: int
    committed: int
    staking_cap: int  # 1e-4
    rewards_gross: int
    staking_fees: int
    rewards_net: int
    slashed: int


STAKING_RECORDS = ("RewardRecorded", "Slashed")


def staking_lines(holdings: M.Holdings | None, fund: FundState | None, assets: Sequence[str],
                  events: Iterable[M.Event]) -> list[StakingLine]:
    """R5 per asset of the fund: positions from its holdings and state as of the time (None: it did not
    exist then), rewards and slashing from ``events`` (the period's)."""
    flows = {a: [0, 0, 0, 0] for a in assets}  # gross, fee, net, slashed
    for e in events:
        if type(e) is M.RewardRecorded:
            flow = flows.setdefault(e.asset, [0, 0, 0, 0])
            flow[0] += e.gross or e.quantity
            flow[1] += e.staking_fee
            flow[2] += e.quantity
        elif type(e) is M.Slashed:
            flows.setdefault(e.asset, [0, 0, 0, 0])[3] += e.quantity
    summary = {a.asset: a for a in holdings.assets} if holdings is not None else {}
    lines = []
    for a in sorted({*flows, *summary}):
        rows = [r for r in holdings.holdings if r.asset == a] if holdings is not None else []
        lots = sorted((Lot(h.custodian_id, q, t) for h in (fund.holdings if fund is not None else ())
                       if h.asset == a for t, q in h.lots), key=lambda lot: (lot.custodian_id, lot.release_at))
        s = summary.get(a)
        gross, fee, net, slashed = flows.get(a, (0, 0, 0, 0))
        lines.append(StakingLine(a, sum(r.staked for r in rows), sum(r.unbonding for r in rows), lots,
                                 s.illiquid if s else 0, s.committed if s else 0, s.staking_cap if s else 0,
                                 gross, fee, net, slashed))
    return lines


# == R6: breaks ========================================================================================
def break_ages(breaks: Iterable[M.Break], span: Period, until: int, days: Days) -> list[tuple[M.Break, int]]:
    """The breaks (as they stood at ``until``: the end of the period, or now) open then or resolved within the
    period, each with its age in dealing days, by break_id."""
    found = []
    for b in breaks:
        if b.status == M.RESOLVED and b.resolved_at < span.start:
            continue
        closed = days.date_of(b.resolved_at if b.status == M.RESOLVED else until)
        found.append((b, days.dealing_days_between(days.date_of(b.opened_at), closed)))
    return sorted(found, key=lambda item: item[0].break_id)


# == R7: participant activity ==========================================================================
class RejectTally(msgspec.Struct, frozen=True):
    participant_id: str
    reason: str
    count: int


def participant_activity(orders: Iterable[M.Order], end: int) -> tuple[list[OrderTally], list[RejectTally]]:
    """R7 from the fund's orders recorded in the period (as they are now: their status is taken at ``end``)."""
    tally: dict[tuple[str, str, str], list[int]] = {}
    rejects: dict[tuple[str, str], int] = {}
    for o in orders:
        cell = tally.setdefault((o.participant_id, o.side, status_at(o, end)), [0, 0])
        cell[0] += 1
        cell[1] += o.units
        if o.status == M.REJECTED:
            rejects[o.participant_id, o.reject_reason] = rejects.get((o.participant_id, o.reject_reason), 0) + 1
    side_rank, status_rank = {s: i for i, s in enumerate(M.SIDES)}, {s: i for i, s in enumerate(STATUSES)}
    tallies = [OrderTally(p, side, st, n, units) for (p, side, st), (n, units) in
               sorted(tally.items(), key=lambda kv: (kv[0][0], side_rank[kv[0][1]], status_rank[kv[0][2]]))]
    return tallies, [RejectTally(p, reason, n) for (p, reason), n in sorted(rejects.items())]
