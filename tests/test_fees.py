"""SPEC §17 (the fund's fees) with the decisions of etf_engine/ledger.py ("Fees (SPEC §17)"): the test
vectors of SPEC to the cent and to the smallest unit, then every rule made to fire and probed at its
boundary, on both ledgers (the ``ledger`` fixture: "core" and "reference").

Most tests run on ``books``: one fund FX (USD, BTC only, held at CUS-A) on the calendar HK
(Asia/Hong_Kong, Saturday and Sunday off), created on Friday 2026-01-09 09:00 Hong Kong time, so its
first dealing date is that Friday. By default it is SPEC's CASH example: 2,000 BTC, cash 0, S =
150,000,000 shares, U = 100,000, live price 100,000.00 USD. Its custodians stay licensed until 2033, so
years of strikes need no renewal. Others use conftest's sample (F1: 10 BTC + 100 ETH, 1000 shares).

Expected figures come from SPEC's own numbers where it gives them, and are recomputed from the formulas
of SPEC §17 with Fraction arithmetic (``expected_fee``), which never looks at the engine. Every refusal
goes through ``Desk.refused`` (the state is unchanged after it) and the events replay into the same state.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from fractions import Fraction

import msgspec
import pytest
from conftest import DECIMALS, F1, F2, Desk, btc, cents, eth, hk, sample

from etf_engine import model as m
from etf_engine.errors import ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND
from etf_engine.model import (
    ACCEPTED,
    ACT_365,
    ACT_ACT,
    CASH,
    CREATE,
    DAY_MS,
    FEE_EXCEEDS_ACCRUED,
    FORWARD,
    IN_KIND,
)

pytestmark = pytest.mark.unit

replace = msgspec.structs.replace
FX = "FX"
USD = "USD"
HK, NONSTOP = "HK", "NONSTOP"
FAR = 2_000_000_000  # licence expiry, unix seconds: 2033
AGE = 40 * 86_400  # max_price_age_seconds
ACCRUED_SCALE = 10**26  # state()'s exact accrued fee: units of 10^-26 base currency (numbers.ACCRUED_DP)
THU, FRI, SAT, SUN = "2026-01-08", "2026-01-09", "2026-01-10", "2026-01-11"
MON, TUE, WED = "2026-01-12", "2026-01-13", "2026-01-14"
BTC_A = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"  # BIP-173 P2WPKH
ETH_A = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55


# -- time ------------------------------------------------------------------------------------------


def utc(day: str, clock: str = "00:00") -> int:
    h, mi = (int(x) for x in clock.split(":"))
    return (date.fromisoformat(day) - date(1970, 1, 1)).days * DAY_MS + (h * 60 + mi) * 60_000


def days(first: str, last: str) -> list[date]:
    """The calendar days first..last, both included."""
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [a + timedelta(n) for n in range((b - a).days + 1)]


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# -- SPEC §17's formula, independent of the engine -------------------------------------------------
def expected_fee(basis: Fraction, fee_days: list[date], rate: str, *, waiver: tuple[str, str, str] | None = None,
                 act_act: bool = False) -> int:
    """round(sum over d of charge_d(basis) / Y(d), 2 dp) in cents, half-even; 0 for a negative basis.
    ``waiver`` is (rate, nav_limit, until)."""
    if basis < 0:
        return 0
    total = Fraction(0)
    for d in fee_days:
        year = 366 if act_act and is_leap(d.year) else 365
        if waiver is not None and d <= date.fromisoformat(waiver[2]):
            limit = Fraction(waiver[1])
            charge = min(basis, limit) * Fraction(waiver[0]) + max(Fraction(0), basis - limit) * Fraction(rate)
        else:
            charge = basis * Fraction(rate)
        total += charge / year
    return round(total * 100)


def value(quantity: int, price: str, decimals: int = 8) -> Fraction:
    return Fraction(quantity, 10**decimals) * Fraction(price)


def r2(x: Fraction) -> int:
    """x in cents, half-even."""
    return round(x * 100)


# -- the world ---------------------------------------------------------------------------------------
def books(ledger, *, quantity: str = "2000", price: str = "100000", shares: int = 150_000_000, unit: int = 100_000,
          at: int = hk(FRI, "09:00"), holdings: dict[str, str] | None = None, cash: str | None = None,
          calendar: str = HK, holidays: tuple[str, ...] = (), **fund_fields) -> Desk:
    """FX on ``calendar`` from ``at``: ``quantity`` BTC at CUS-A (or ``holdings``: custodian -> BTC), the live
    price ``price`` USD published at ``at``, AP-1 eligible for it."""
    desk = Desk(ledger, now=at)
    for symbol, decimals in DECIMALS.items():
        desk.run(m.RegisterAsset(symbol=symbol, decimals=decimals))
    for cid in ("CUS-A", "CUS-B"):
        desk.run(m.RegisterCustodian(custodian_id=cid, name=cid, licence_number=f"LIC-{cid}",
                                     licence_status=m.ACTIVE, licence_expires_at=FAR))
    desk.run(m.RegisterParticipant(participant_id="AP-1", name="AP-1", eligible_fund_ids=[FX],
                                   max_units_per_order=1000, max_units_per_day=10_000))
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong", holidays=list(holidays)))
    desk.run(m.RegisterCalendar(calendar_id=NONSTOP, time_zone="UTC", weekend_days=[]))
    desk.run(fund(calendar_id=calendar, creation_unit=unit, initial_shares_outstanding=shares, **fund_fields))
    for custodian, q in (holdings or {"CUS-A": quantity}).items():
        desk.adjust(custodian, "BTC", q, fund=FX)
    if cash:
        desk.cash(cash, fund=FX)
    desk.publish(fund_prices={"BTC": price}, currency=USD)
    return desk


def fund(**fields) -> m.CreateFund:
    defaults = dict(fund_id=FX, name="FX", base_currency=USD, creation_unit=100_000, creation_custodian_id="CUS-A",
                    custodian_priority=["CUS-A"], assets=[m.FundAssetSpec(asset="BTC")], max_price_age_seconds=AGE,
                    calendar_id=HK)
    return m.CreateFund(**(defaults | fields))


def in_kind(custodian: str = "CUS-A") -> dict:
    return dict(fee_payment=IN_KIND, fee_asset="BTC", fee_custodian_id=custodian)


def strike_cmd(day: str, prices: dict[str, str], at: int, fund_id: str = FX, currency: str = USD) -> m.StrikeNav:
    ticks = [m.PriceTick(asset=a, currency=currency, price=p, as_of_unix_ms=at) for a, p in prices.items()]
    return m.StrikeNav(fund_id=fund_id, dealing_date=day, ticks=ticks)


def strike(desk: Desk, day: str, price: str = "100000", *, at: int | None = None, fund_id: str = FX,
           prices: dict[str, str] | None = None, currency: str = USD) -> m.StrikeResult:
    """StrikeNav of ``day`` at its 16:00 Hong Kong cut-off (desk.now moves there)."""
    desk.now = hk(day, "16:00") if at is None else at
    return desk.run(strike_cmd(day, prices or {"BTC": price}, desk.now, fund_id, currency))


def struck(desk: Desk) -> m.NavStruck:
    """The NavStruck event of the last strike."""
    return next(e for e in reversed(desk.events) if isinstance(e, m.NavStruck))


def fund_state(desk: Desk, fund_id: str = FX):
    return next(f for f in desk.ledger.state(desk.now).funds if f.terms.fund_id == fund_id)


def accrued(desk: Desk, fund_id: str = FX) -> Fraction:
    """The exact accrued fee of state(), in base currency."""
    return Fraction(fund_state(desk, fund_id).accrued_fees, ACCRUED_SCALE)


def terms(desk: Desk, fund_id: str = FX) -> m.FundTerms:
    return fund_state(desk, fund_id).terms


def available(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", fund_id: str = FX) -> int:
    rows = desk.ledger.get_holdings(fund_id, desk.now).holdings
    return sum(h.available for h in rows if (h.custodian_id, h.asset) == (custodian, asset))


def pay(fund_id: str = FX, **fields) -> m.PayFee:
    return m.PayFee(fund_id=fund_id, **fields)


def pay_kind(quantity: str, asset: str = "BTC", tx: str = "0xfee1", to: str = BTC_A, fund_id: str = FX) -> m.PayFee:
    return m.PayFee(fund_id=fund_id, asset=asset, quantity=quantity, tx_hash=tx, to_address=to)


# == SPEC's test vectors ===========================================================================
BIG = dict(quantity="738400", price="107000.00", shares=1_300_000_000, unit=40_000, management_fee_rate="0.0025")
BIG_BASIS = 738_400 * 107_000  # 79,008,800,000.00


def test_vector_one_day_act_365_cash(ledger):
    desk = books(ledger, **BIG)
    assert desk.basket(FX).lines == [m.BasketLine(asset="BTC", quantity_per_unit=btc("22.72"))]
    result = strike(desk, FRI, "107000.00")
    nav = result.nav
    assert nav.fee == cents("541156.16") == expected_fee(Fraction(BIG_BASIS), days(FRI, FRI), "0.0025")
    assert (nav.fee_days, nav.fee_basis, nav.accrued_fees, nav.fee_payable) == (
        1, cents("79008800000.00"), cents("541156.16"), ())
    assert nav.nav == cents("79008258843.84")  # basis - fee
    assert nav.lines == (m.OfficialLine(asset="BTC", quantity=btc("738400"), price=107_000 * 10**8,
                                        value=cents("79008800000.00")),)
    assert nav.nav_per_share == round(Fraction(cents("79008258843.84"), 100) / 1_300_000_000 * 10**4)
    assert struck(desk).fee_taken == 0
    assert accrued(desk) == Fraction("541156.16")
    live = desk.nav(FX)  # the live price is the official one: the same NAV, lower by the accrued fee
    assert (live.nav, live.accrued_fees, live.cash) == (cents("79008258843.84"), cents("541156.16"), 0)
    assert desk.basket(FX).accrued_fees == cents("541156.16")
    assert desk.basket(FX).lines == [m.BasketLine(asset="BTC", quantity_per_unit=btc("22.72"))]  # CASH: no move
    assert ledger.get_official_nav(FX, FRI) == nav
    assert desk.replayed_state() == desk.state()


def test_vector_in_kind_moves_the_fee_and_carries_what_is_left(ledger):
    desk = books(ledger, **BIG, **in_kind())
    moved = btc("5.05753420")
    left = btc("738400") - moved
    result = strike(desk, FRI, "107000.00")
    nav = result.nav
    assert (nav.fee, nav.fee_days, nav.fee_basis) == (cents("541156.16"), 1, cents("79008800000.00"))
    # 541,156.16 x 10^8 / 107,000 = 505,753,420.56...: 5.05753420 BTC worth 541,156.1594; 0.0006 is left
    assert moved == math.floor(Fraction("541156.16") * 10**8 / 107_000)
    event = struck(desk)
    assert (event.fee_taken, event.fee_asset, event.fee_custodian_id) == (moved, "BTC", "CUS-A")
    assert nav.fee_payable == (m.Line(asset="BTC", quantity=moved),)
    assert nav.accrued_fees == 0  # 0.0006, shown to the cent
    assert accrued(desk) == Fraction("0.0006")
    # the record's lines and the next PCF are after the move; the NAV does not move with it
    assert nav.lines == (m.OfficialLine(asset="BTC", quantity=left, price=107_000 * 10**8,
                                        value=r2(value(left, "107000"))),)
    assert nav.nav == cents("79008258843.84")
    assert value(left, "107000") - Fraction("0.0006") == Fraction("79008258843.84")
    assert result.pcf.dealing_date == MON
    assert result.pcf.lines == (m.BasketLine(asset="BTC", quantity_per_unit=btc("22.71984438")),)
    per_unit = Fraction(cents("79008258843.84"), 100) * 40_000 / 1_300_000_000
    assert result.pcf.estimated_cash_component == r2(per_unit - value(btc("22.71984438"), "107000"))
    assert ledger.get_pcf(FX, MON) == result.pcf
    # the live reads: the basket 22.72 -> 22.71984438 BTC a unit, the fee payable apart from the holdings
    basket = desk.basket(FX)
    assert (basket.lines, basket.accrued_fees) == ([m.BasketLine(asset="BTC", quantity_per_unit=btc("22.71984438"))], 0)
    holdings = ledger.get_holdings(FX, desk.now)
    assert holdings.fee_payable == [m.Line(asset="BTC", quantity=moved)]
    assert available(desk) == left
    assert [(a.asset, a.total) for a in holdings.assets] == [("BTC", left)]
    live = desk.nav(FX)
    assert (live.nav, live.accrued_fees, live.lines[0].quantity) == (cents("79008258843.84"), 0, left)
    state = fund_state(desk)
    assert (state.fee_payable, state.accrued_fees) == ([("BTC", moved)], 6 * 10**22)
    assert desk.replayed_state() == desk.state()

    # Monday: Saturday, Sunday and Monday on the basis 79,008,258,843.84 (the 0.0006 is still in it), and
    # the in-kind quantity is taken for the whole accrued balance, the 0.0006 included
    monday = strike(desk, MON, "107000.00").nav
    basis = value(left, "107000") - Fraction("0.0006")
    fee = expected_fee(basis, days(SAT, MON), "0.0025")
    assert (monday.fee, monday.fee_days, monday.fee_basis) == (fee, 3, r2(basis))
    whole = Fraction("0.0006") + Fraction(fee, 100)
    taken = math.floor(whole * 10**8 / 107_000)
    assert struck(desk).fee_taken == taken
    assert accrued(desk) == whole - value(taken, "107000")
    assert monday.fee_payable == (m.Line(asset="BTC", quantity=moved + taken),)
    assert monday.nav == r2(basis - Fraction(fee, 100))
    assert desk.replayed_state() == desk.state()


def test_vector_waiver(ledger):
    waiver = m.FeeWaiverSpec(rate="0.0012", nav_limit="5000000000.00", until="2026-12-31")
    desk = books(ledger, **BIG, fee_waiver=waiver)
    nav = strike(desk, FRI, "107000.00").nav
    assert nav.fee == cents("523347.95") == expected_fee(Fraction(BIG_BASIS), days(FRI, FRI), "0.0025",
                                                         waiver=("0.0012", "5000000000.00", "2026-12-31"))
    assert nav.nav == cents("79008800000.00") - cents("523347.95")
    assert desk.replayed_state() == desk.state()


def test_vector_cash_friday_then_monday(ledger):
    desk = books(ledger, management_fee_rate="0.0099", pricing=FORWARD)
    friday = desk.order(CREATE, 1, participant="AP-1", fund=FX)
    assert (friday.status, friday.priced, friday.deliverables) == (ACCEPTED, False, (m.Line(asset="BTC",
                                                                                             quantity=btc("1.33333333")),))
    result = strike(desk, FRI)
    nav = result.nav
    assert (nav.fee, nav.fee_days, nav.fee_basis) == (cents("5424.66"), 1, cents("200000000.00"))
    assert (nav.nav, nav.accrued_fees, nav.cash) == (cents("199994575.34"), cents("5424.66"), 0)
    assert result.pcf.estimated_cash_component == cents("-3.62")
    assert result.pcf.lines == (m.BasketLine(asset="BTC", quantity_per_unit=btc("1.33333333")),)
    assert result.pcf.nav_per_unit == cents("133329.72")  # 199,994,575.34 / 1,500 = 133,329.716893...
    # the FORWARD order of Friday is priced with the NAV after the fee: -3.62 (without it, 0.00)
    priced = ledger.get_order(friday.order_id)
    assert (priced.priced, priced.basket.cash_component, priced.cash_amount) == (True, cents("-3.62"),
                                                                                 cents("-3.62"))
    # the live NAV and basket (the live price is the official one) are lower by the accrued fee too
    live = desk.nav(FX)
    assert (live.nav, live.accrued_fees, live.nav_per_share) == (cents("199994575.34"), cents("5424.66"), 13_333)
    basket = desk.basket(FX)
    assert (basket.cash_component, basket.accrued_fees, basket.nav_per_unit) == (cents("-3.62"), cents("5424.66"),
                                                                               cents("133329.72"))
    assert desk.replayed_state() == desk.state()

    desk.now = hk(MON, "10:00")
    monday_order = desk.order(CREATE, 2, participant="AP-1", fund=FX)
    result = strike(desk, MON)
    nav = result.nav
    assert (nav.fee, nav.fee_days, nav.fee_basis) == (cents("16273.53"), 3, cents("199994575.34"))
    assert nav.fee == expected_fee(Fraction("199994575.34"), days(SAT, MON), "0.0099")
    assert nav.accrued_fees == cents("5424.66") + cents("16273.53")
    assert nav.nav == cents("199994575.34") - cents("16273.53")
    per_unit = Fraction(nav.nav, 100) / 1500
    expected_cc = r2(per_unit - value(btc("1.33333333"), "100000"))
    priced = ledger.get_order(monday_order.order_id)
    assert (priced.basket.cash_component, priced.cash_amount) == (expected_cc, 2 * expected_cc)
    assert result.pcf.estimated_cash_component == expected_cc
    assert desk.nav(FX).nav == nav.nav and desk.nav(FX).accrued_fees == nav.accrued_fees
    assert accrued(desk) == Fraction("21698.19")
    assert desk.replayed_state() == desk.state()


# == day counts =====================================================================================
@pytest.mark.parametrize(("day_count", "fee"), [(ACT_365, cents("5424.66")), (ACT_ACT, cents("5409.84"))])
def test_a_leap_year_day(ledger, day_count, fee):
    # 2028-02-29 (a Tuesday): 200,000,000 x 0.0099 / 365 = 5,424.657...; / 366 = 5,409.836...
    day = "2028-02-29"
    desk = books(ledger, management_fee_rate="0.0099", fee_day_count=day_count, at=hk(day, "09:00"))
    nav = strike(desk, day).nav
    assert (nav.fee, nav.fee_days) == (fee, 1)
    assert fee == expected_fee(Fraction(200_000_000), days(day, day), "0.0099", act_act=day_count == ACT_ACT)
    assert terms(desk).fee_day_count == day_count
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("day_count", [ACT_365, ACT_ACT])
def test_a_strike_across_new_year_into_a_leap_year(ledger, day_count):
    # Thursday 2027-12-30 struck; Friday 12-31 a holiday; Monday 2028-01-03 accrues 12-31 (a day of 365),
    # 01-01, 01-02 and 01-03 (days of 366 under ACT_ACT), summed and then rounded once
    desk = books(ledger, management_fee_rate="0.0099", fee_day_count=day_count, at=hk("2027-12-30", "09:00"),
                 holidays=("2027-12-31",))
    first = strike(desk, "2027-12-30").nav
    assert (first.fee, first.fee_days) == (cents("5424.66"), 1)  # 2027 is no leap year: 365 either way
    second = strike(desk, "2028-01-03").nav
    basis = Fraction(200_000_000) - Fraction("5424.66")
    fee = expected_fee(basis, days("2027-12-31", "2028-01-03"), "0.0099", act_act=day_count == ACT_ACT)
    assert (second.fee, second.fee_days, second.fee_basis) == (fee, 4, r2(basis))
    by_365 = r2(basis * Fraction("0.0099") * 4 / 365)
    by_act = r2(basis * Fraction("0.0099") * (Fraction(1, 365) + Fraction(3, 366)))
    assert by_365 != by_act and fee == (by_act if day_count == ACT_ACT else by_365)
    assert desk.replayed_state() == desk.state()


def test_a_refused_strike_accrues_nothing(ledger):
    desk = books(ledger, management_fee_rate="0.0099", **in_kind())
    desk.now = hk(FRI, "15:59")
    desk.refused(strike_cmd(FRI, {"BTC": "100000"}, desk.now), FAILED_PRECONDITION, reason=m.BEFORE_CUTOFF)
    desk.now = hk(MON, "16:00")
    desk.refused(strike_cmd(MON, {"BTC": "100000"}, desk.now), FAILED_PRECONDITION,
                 reason=m.EARLIER_DATE_NOT_STRUCK)
    desk.refused(strike_cmd(FRI, {"BTC": "0"}, desk.now), INVALID_ARGUMENT, names="price")
    assert accrued(desk) == 0 and ledger.get_holdings(FX, desk.now).fee_payable == []
    strike(desk, FRI)
    desk.refused(strike_cmd(FRI, {"BTC": "100000"}, desk.now), ALREADY_EXISTS)  # struck once, accrued once
    assert accrued(desk) == Fraction("5424.66") - value(struck(desk).fee_taken, "100000")


def test_the_first_strike_accrues_its_own_day_only(ledger):
    # created on Monday morning: the weekend before is not the fund's
    desk = books(ledger, management_fee_rate="0.0099", at=hk(MON, "09:00"))
    nav = strike(desk, MON).nav
    assert (nav.fee, nav.fee_days) == (cents("5424.66"), 1)


def test_a_typhoon_day_is_accrued_by_the_next_strike(ledger):
    desk = books(ledger, management_fee_rate="0.0099")
    strike(desk, FRI)
    strike(desk, MON)
    desk.now = hk(MON, "20:00")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=TUE, reason="typhoon signal no. 8"))
    before = accrued(desk)
    wednesday = strike(desk, WED).nav
    basis = Fraction(200_000_000) - before
    assert wednesday.fee_days == 2  # Tuesday (closed) and Wednesday
    assert wednesday.fee == expected_fee(basis, days(TUE, WED), "0.0099")
    assert wednesday.fee_basis == r2(basis)
    assert accrued(desk) == before + Fraction(wednesday.fee, 100)
    assert desk.replayed_state() == desk.state()


def test_holidays_and_weekends_are_fee_days_of_the_strike_after_them(ledger):
    desk = books(ledger, management_fee_rate="0.0099", at=hk(THU, "09:00"), holidays=(FRI, MON))
    strike(desk, THU)
    tuesday = strike(desk, TUE).nav  # Friday, Saturday, Sunday, Monday and Tuesday
    basis = Fraction(200_000_000) - Fraction("5424.66")
    assert (tuesday.fee_days, tuesday.fee) == (5, expected_fee(basis, days(FRI, TUE), "0.0099"))


def test_the_terms_in_force_at_the_strike_apply_to_all_its_days(ledger):
    desk = books(ledger, management_fee_rate="0.0099")
    strike(desk, FRI)
    desk.now = hk(SUN, "12:00")
    desk.update(FX, management_fee_rate="0.0012")
    monday = strike(desk, MON).nav
    basis = Fraction("199994575.34")
    assert monday.fee == expected_fee(basis, days(SAT, MON), "0.0012") == r2(basis * Fraction("0.0012") * 3 / 365)
    desk.now = hk(MON, "18:00")
    desk.update(FX, management_fee_rate="0")  # no fee at the strike: its record is as before SPEC §17
    tuesday = strike(desk, TUE).nav
    assert (tuesday.fee, tuesday.fee_days, tuesday.fee_basis) == (0, 0, 0)
    assert tuesday.accrued_fees == cents("5424.66") + monday.fee  # what was accrued stays accrued
    assert tuesday.nav == cents("200000000.00") - tuesday.accrued_fees
    assert desk.replayed_state() == desk.state()


# == the waiver =====================================================================================
@pytest.mark.parametrize("until", [THU, FRI, SAT, SUN, MON, TUE])
def test_waiver_until_is_inclusive(ledger, until):
    waiver = ("0.0012", "1000000000000", until)
    desk = books(ledger, management_fee_rate="0.0099",
                 fee_waiver=m.FeeWaiverSpec(rate=waiver[0], nav_limit=waiver[1], until=until))
    friday = strike(desk, FRI).nav
    # 200,000,000 x 0.0012 / 365 = 657.534... when Friday is waived, else 5,424.66
    assert friday.fee == (cents("657.53") if until >= FRI else cents("5424.66"))
    assert friday.fee == expected_fee(Fraction(200_000_000), days(FRI, FRI), "0.0099", waiver=waiver)
    monday = strike(desk, MON).nav
    basis = Fraction(200_000_000) - Fraction(friday.fee, 100)
    assert monday.fee == expected_fee(basis, days(SAT, MON), "0.0099", waiver=waiver)
    waived = sum(d <= date.fromisoformat(until) for d in days(SAT, MON))
    assert monday.fee == r2(basis * (waived * Fraction("0.0012") + (3 - waived) * Fraction("0.0099")) / 365)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("nav_limit", "fee"), [
    # basis 100 x 100,050 = 10,005,000.00; at the waiver's 0.000365 a day costs basis / 10^6 = 10.005 exactly,
    # which rounds half-even to 10.00: one cent of basis above the limit (charged at 0.099999) tips it to 10.01
    ("10005000.00", cents("10.00")),
    ("10005000.01", cents("10.00")),
    ("20000000.00", cents("10.00")),
    ("10004999.99", cents("10.01")),
    ("0", cents("2741.07")),  # all of it at 0.099999: 10,005,000 x 0.099999 / 365 = 2,741.0684...
])
def test_waiver_nav_limit_at_the_basis(ledger, nav_limit, fee):
    waiver = ("0.000365", nav_limit, FRI)
    desk = books(ledger, quantity="100", price="100050", management_fee_rate="0.099999",
                 fee_waiver=m.FeeWaiverSpec(rate=waiver[0], nav_limit=nav_limit, until=FRI))
    nav = strike(desk, FRI, "100050").nav
    assert (nav.fee, nav.fee_basis) == (fee, cents("10005000.00"))
    assert fee == expected_fee(Fraction(10_005_000), days(FRI, FRI), "0.099999", waiver=waiver)


def test_waiver_terms_are_kept_and_removed(ledger):
    desk = books(ledger, management_fee_rate="0.0025",
                 fee_waiver=m.FeeWaiverSpec(rate="0.0012", nav_limit="5000000000.00", until="2026-06-30"))
    assert terms(desk).fee_waiver == m.FeeWaiver(rate=1200, nav_limit=cents("5000000000.00"), until="2026-06-30")
    assert terms(desk).management_fee_rate == 2500
    desk.update(FX, fee_waiver=m.FeeWaiverSpec(until=""))
    assert terms(desk).fee_waiver is None
    nav = strike(desk, FRI).nav
    assert nav.fee == expected_fee(Fraction(200_000_000), days(FRI, FRI), "0.0025")
    assert desk.replayed_state() == desk.state()


def test_a_waiver_alone_is_a_fee(ledger):
    # management_fee_rate 0 and a waiver: the first nav_limit is charged at the waiver's rate, the rest free
    waiver = ("0.0099", "100000000", FRI)
    desk = books(ledger, fee_waiver=m.FeeWaiverSpec(rate="0.0099", nav_limit="100000000", until=FRI))
    nav = strike(desk, FRI).nav
    assert nav.fee == expected_fee(Fraction(200_000_000), days(FRI, FRI), "0", waiver=waiver) == cents("2712.33")
    assert (nav.fee_days, nav.fee_basis) == (1, cents("200000000.00"))


# == the basis ======================================================================================
def test_the_basis_includes_cash_and_a_negative_basis_accrues_nothing(ledger):
    desk = books(ledger, management_fee_rate="0.0099", cash="-250000000.00")
    nav = strike(desk, FRI).nav  # 200,000,000 - 250,000,000
    assert (nav.fee, nav.fee_days, nav.fee_basis, nav.accrued_fees) == (0, 1, cents("-50000000.00"), 0)
    assert nav.nav == cents("-50000000.00")
    desk.now = hk(FRI, "18:00")
    desk.cash("300000000.00", fund=FX)  # cash 50,000,000: basis 250,000,000 for the three days to Monday
    monday = strike(desk, MON).nav
    assert monday.fee == expected_fee(Fraction(250_000_000), days(SAT, MON), "0.0099")
    assert monday.fee_basis == cents("250000000.00")
    assert desk.replayed_state() == desk.state()


def test_the_basis_uses_the_official_prices_not_the_live_ones(ledger):
    desk = books(ledger, management_fee_rate="0.0099")  # live 100,000
    nav = strike(desk, FRI, "90000.12345678").nav
    basis = value(btc("2000"), "90000.12345678")
    assert (nav.fee_basis, nav.fee) == (r2(basis), expected_fee(basis, days(FRI, FRI), "0.0099"))
    assert nav.nav == r2(basis - Fraction(nav.fee, 100))
    live = desk.nav(FX)  # the live NAV: at the live price, less the exact accrued fee
    assert live.nav == r2(Fraction(200_000_000) - Fraction(nav.fee, 100))


# == IN_KIND ========================================================================================
def test_in_kind_takes_no_more_than_the_fee_custodian_has_available(ledger):
    # 0.001 BTC at CUS-A (the fee custodian), the rest at CUS-B: 0.001 BTC moves, the rest stays accrued
    desk = books(ledger, management_fee_rate="0.0099", holdings={"CUS-A": "0.001", "CUS-B": "1999.999"},
                 **in_kind("CUS-A"))
    nav = strike(desk, FRI).nav
    assert nav.fee == cents("5424.66")
    assert struck(desk).fee_taken == btc("0.001")
    assert nav.fee_payable == (m.Line(asset="BTC", quantity=btc("0.001")),)
    assert accrued(desk) == Fraction("5424.66") - Fraction("100")  # 0.001 BTC at 100,000
    assert nav.accrued_fees == cents("5324.66")
    assert available(desk, "CUS-A") == 0 and available(desk, "CUS-B") == btc("1999.999")
    assert nav.nav == cents("199994575.34")
    assert desk.replayed_state() == desk.state()
    # nothing at the fee custodian: nothing moves, all of it stays accrued and is carried
    monday = strike(desk, MON).nav
    assert struck(desk).fee_taken == 0
    assert accrued(desk) == Fraction("5324.66") + Fraction(monday.fee, 100)
    assert monday.fee_payable == (m.Line(asset="BTC", quantity=btc("0.001")),)
    assert desk.replayed_state() == desk.state()


def test_in_kind_takes_only_the_available_bucket(ledger):
    desk = books(ledger, management_fee_rate="0.0099", holdings={"CUS-A": "2000"}, **in_kind("CUS-A"),
                 assets=[m.FundAssetSpec(asset="BTC", staking_cap="1")])
    desk.now = hk(FRI, "10:00")
    desk.stake("CUS-A", "BTC", "1999.99", fund=FX)  # 0.01 BTC (worth 1,000.00) left available
    nav = strike(desk, FRI).nav
    assert nav.fee == cents("5424.66")  # staked coins are in total(a) and in the basis
    assert struck(desk).fee_taken == btc("0.01")
    assert accrued(desk) == Fraction("4424.66")
    assert desk.replayed_state() == desk.state()


def test_in_kind_remainder_carried_over_a_thousand_strikes(ledger):
    # every day a dealing day (UTC, no weekend); a price whose smallest unit is worth 0.00098765432100...:
    # each strike leaves a remainder under one satoshi's worth, and none is ever rounded away
    price = "98765.43210000"
    start = date(2026, 1, 5)
    desk = books(ledger, quantity="10", price=price, shares=1000, unit=100, calendar=NONSTOP,
                 at=utc(start.isoformat(), "09:00"), management_fee_rate="0.099", **in_kind())
    total_fee = 0
    for n in range(1000):
        day = (start + timedelta(n)).isoformat()
        desk.now = utc(day, "16:00")
        result = desk.run(strike_cmd(day, {"BTC": price}, desk.now))
        assert result.nav.fee_days == 1
        assert result.nav.accrued_fees == 0  # what is left is worth less than a satoshi: 0.00 to the cent
        total_fee += result.nav.fee
    taken = sum(e.fee_taken for e in desk.events if isinstance(e, m.NavStruck))
    fees = Fraction(total_fee, 100)
    assert taken == math.floor(fees * 10**8 / Fraction(price))
    assert accrued(desk) == fees - value(taken, price)
    assert 0 <= accrued(desk) < value(1, price)
    assert ledger.get_holdings(FX, desk.now).fee_payable == [m.Line(asset="BTC", quantity=taken)]
    assert available(desk) == btc("10") - taken
    assert desk.replayed_state() == desk.state()


# == PayFee =========================================================================================
def cash_accrued(ledger) -> Desk:
    """The CASH example struck on Friday: 5,424.66 accrued, cash 0."""
    desk = books(ledger, management_fee_rate="0.0099")
    strike(desk, FRI)
    desk.now = hk(FRI, "18:00")
    return desk


def kind_accrued(ledger) -> Desk:
    """The IN_KIND vector struck on Friday: 5.05753420 BTC fee payable, 0.0006 accrued."""
    desk = books(ledger, **BIG, **in_kind())
    strike(desk, FRI, "107000.00")
    desk.now = hk(FRI, "18:00")
    return desk


def test_pay_fee_in_cash(ledger):
    desk = cash_accrued(ledger)
    nav_before = desk.nav(FX).nav
    desk.refused(pay(amount="5424.67"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)  # one cent over
    desk.run(pay(amount="5000.00"))
    assert desk.events[-1] == m.FeePaid(at=desk.now, fund_id=FX, amount=cents("5000.00"))
    assert accrued(desk) == Fraction("424.66")
    desk.refused(pay(amount="424.67"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)
    desk.run(pay(amount="424.66"))  # exactly what is accrued
    assert accrued(desk) == 0
    nav = desk.nav(FX)
    assert (nav.cash, nav.accrued_fees, nav.nav) == (cents("-5424.66"), 0, nav_before)  # the NAV does not move
    desk.refused(pay(amount="0.01"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)
    assert desk.replayed_state() == desk.state()


def test_pay_fee_in_cash_never_takes_the_sub_cent_remainder_as_a_cent(ledger):
    desk = kind_accrued(ledger)  # 0.0006 accrued: a cent is more than that
    desk.refused(pay(amount="0.01"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)
    desk.refused(pay(amount="0.0006"), INVALID_ARGUMENT, names="amount")  # money has 2 fraction digits


def test_pay_fee_in_kind(ledger):
    desk = kind_accrued(ledger)
    nav_before, left = desk.nav(FX).nav, available(desk)
    desk.refused(pay_kind("5.05753421"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)  # one satoshi over
    desk.run(pay_kind("5.00000000", tx="0xaa"))
    assert desk.events[-1] == m.FeePaid(at=desk.now, fund_id=FX, asset="BTC", quantity=btc("5"), tx_hash="0xaa",
                                        to_address=BTC_A)
    assert ledger.get_holdings(FX, desk.now).fee_payable == [m.Line(asset="BTC", quantity=btc("0.0575342"))]
    desk.refused(pay_kind("0.05753421"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)
    desk.run(pay_kind("0.0575342", tx="0xbb"))  # exactly what is payable
    assert ledger.get_holdings(FX, desk.now).fee_payable == []
    assert fund_state(desk).fee_payable == []
    assert (desk.nav(FX).nav, available(desk), accrued(desk)) == (nav_before, left, Fraction("0.0006"))
    desk.refused(pay_kind("0.00000001"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)
    assert desk.replayed_state() == desk.state()


def test_pay_fee_of_a_fund_without_a_fee(ledger):
    desk = sample(ledger)
    desk.refused(pay(F1, amount="0.01"), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)
    desk.refused(pay_kind("0.000000000000000001", asset="ETH", to=ETH_A, fund_id=F1), FAILED_PRECONDITION,
                 reason=FEE_EXCEEDS_ACCRUED)


@pytest.mark.parametrize(("fields", "code", "names"), [
    ({"fund_id": "NOPE", "amount": "-1"}, NOT_FOUND, "NOPE"),  # the fund first
    # in cash: the in-kind fields must be empty, the first given is named; then the amount
    ({"amount": "1.00", "quantity": "1"}, INVALID_ARGUMENT, "quantity"),
    ({"amount": "1.00", "tx_hash": "0xaa"}, INVALID_ARGUMENT, "tx_hash"),
    ({"amount": "1.00", "to_address": BTC_A}, INVALID_ARGUMENT, "to_address"),
    ({"amount": "1.00", "tx_hash": "0xaa", "to_address": BTC_A}, INVALID_ARGUMENT, "tx_hash"),
    ({"amount": "x", "quantity": "1"}, INVALID_ARGUMENT, "quantity"),
    ({}, INVALID_ARGUMENT, "amount"),
    ({"amount": ""}, INVALID_ARGUMENT, "amount"),
    ({"amount": "0"}, INVALID_ARGUMENT, "amount"),
    ({"amount": "0.00"}, INVALID_ARGUMENT, "amount"),
    ({"amount": "-0.01"}, INVALID_ARGUMENT, "amount"),
    ({"amount": "1.001"}, INVALID_ARGUMENT, "amount"),
    ({"amount": "1e3"}, INVALID_ARGUMENT, "amount"),
    ({"amount": " 1"}, INVALID_ARGUMENT, "amount"),
    # in kind: no amount, then asset, quantity, tx_hash, to_address
    ({"amount": "1.00", "asset": "BTC", "quantity": "1", "tx_hash": "0xaa", "to_address": BTC_A},
     INVALID_ARGUMENT, "amount"),
    ({"asset": "SOL", "quantity": "1", "tx_hash": "0xaa", "to_address": BTC_A}, INVALID_ARGUMENT, "asset"),
    ({"asset": "DOGE", "quantity": "1", "tx_hash": "0xaa", "to_address": BTC_A}, INVALID_ARGUMENT, "asset"),
    ({"asset": "BTC", "quantity": "0", "tx_hash": "0xaa", "to_address": BTC_A}, INVALID_ARGUMENT, "quantity"),
    ({"asset": "BTC", "quantity": "-1", "tx_hash": "0xaa", "to_address": BTC_A}, INVALID_ARGUMENT, "quantity"),
    ({"asset": "BTC", "quantity": "0.000000001", "tx_hash": "0xaa", "to_address": BTC_A}, INVALID_ARGUMENT,
     "quantity"),
    ({"asset": "BTC", "quantity": "", "tx_hash": "0xaa", "to_address": BTC_A}, INVALID_ARGUMENT, "quantity"),
    ({"asset": "BTC", "quantity": "0", "tx_hash": "", "to_address": ""}, INVALID_ARGUMENT, "quantity"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "", "to_address": BTC_A}, INVALID_ARGUMENT, "tx_hash"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "x" * 129, "to_address": BTC_A}, INVALID_ARGUMENT, "tx_hash"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "two words", "to_address": BTC_A}, INVALID_ARGUMENT, "tx_hash"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "é", "to_address": BTC_A}, INVALID_ARGUMENT, "tx_hash"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "0xaa", "to_address": ""}, INVALID_ARGUMENT, "to_address"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "0xaa", "to_address": ETH_A}, INVALID_ARGUMENT, "to_address"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "0xaa", "to_address": BTC_A[:-1] + "p"}, INVALID_ARGUMENT,
     "to_address"),
    ({"asset": "BTC", "quantity": "1", "tx_hash": "", "to_address": "nope"}, INVALID_ARGUMENT, "tx_hash"),
])
def test_pay_fee_refusals(ledger, fields, code, names):
    desk = kind_accrued(ledger)
    desk.refused(m.PayFee(**({"fund_id": FX} | fields)), code, names=names)


def test_pay_fee_fields_before_fee_exceeds_accrued(ledger):
    desk = sample(ledger)  # nothing accrued, nothing payable
    desk.refused(pay(F1, amount="-1"), INVALID_ARGUMENT, names="amount")
    desk.refused(pay_kind("1", to=ETH_A, fund_id=F1), INVALID_ARGUMENT, names="to_address")
    desk.refused(pay_kind("1", tx="x" * 128, fund_id=F1), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)


# == staking fee ====================================================================================
def reward(quantity: str, asset: str = "ETH", custodian: str = "CUS-A", fund_id: str = F1) -> m.RecordStakingReward:
    return m.RecordStakingReward(fund_id=fund_id, custodian_id=custodian, asset=asset, quantity=quantity)


def test_staking_fee_ten_eth_at_eighteen_percent(ledger):
    desk = sample(ledger, eth_terms={"staking_fee_rate": "0.18"})  # no calendar needed
    assert next(a for a in terms(desk, F1).assets if a.asset == "ETH").staking_fee_rate == 180_000
    desk.run(reward("10"))
    assert desk.events[-1] == m.RewardRecorded(at=desk.now, fund_id=F1, custodian_id="CUS-A", asset="ETH",
                                               quantity=eth("8.2"), gross=eth("10"), staking_fee=eth("1.8"),
                                               net=eth("8.2"))
    assert available(desk, asset="ETH", fund_id=F1) == eth("108.2")
    assert desk.summary("ETH").total == eth("108.2")
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("rate", "gross", "fee"), [
    ("0.18", 7, 1),  # 1.26 -> 1
    ("0.18", 5, 0),  # 0.9 -> 0: the fund keeps the whole smallest unit
    ("0.5", 1, 0),
    ("0.5", 3, 1),
    ("0.999999", 1, 0),
    ("0.999999", 999_999, 999_998),  # 999,998.000001 -> 999,998
    ("0.999999", 1_000_000, 999_999),  # exact
    ("0.999999", 1_000_001, 999_999),  # 999,999.999999 -> 999,999
    ("0.000001", 999_999, 0),
    ("0.000001", 1_000_000, 1),
    ("0", 10**18, 0),
])
def test_staking_fee_is_floored(ledger, rate, gross, fee):
    assert fee == math.floor(gross * Fraction(rate))
    desk = sample(ledger, eth_terms={"staking_fee_rate": rate})
    desk.run(reward(f"0.{gross:018d}" if gross < 10**18 else str(gross // 10**18)))
    assert desk.events[-1] == m.RewardRecorded(at=desk.now, fund_id=F1, custodian_id="CUS-A", asset="ETH",
                                               quantity=gross - fee, gross=gross, staking_fee=fee, net=gross - fee)
    assert available(desk, asset="ETH", fund_id=F1) == eth("100") + gross - fee
    assert desk.replayed_state() == desk.state()


def test_staking_fee_rate_follows_the_terms(ledger):
    desk = sample(ledger)
    desk.run(reward("1", "BTC"))
    assert desk.events[-1] == m.RewardRecorded(at=desk.now, fund_id=F1, custodian_id="CUS-A", asset="BTC",
                                               quantity=btc("1"), gross=btc("1"), staking_fee=0, net=btc("1"))
    desk.terms("BTC", staking_fee_rate="0.25")
    desk.run(reward("1", "BTC"))
    assert (desk.events[-1].gross, desk.events[-1].staking_fee, desk.events[-1].net) == (
        btc("1"), btc("0.25"), btc("0.75"))
    desk.terms("BTC", staking_fee_rate="0")
    desk.run(reward("1", "BTC"))
    assert desk.events[-1].quantity == btc("1")
    assert available(desk, fund_id=F1) == btc("10") + btc("2.75")
    assert desk.replayed_state() == desk.state()


# == fee terms ======================================================================================
def calendar_sample(ledger) -> Desk:
    """The sample with the HK calendar registered and F1 on it from Monday 2026-01-05 09:00."""
    desk = sample(ledger, max_price_age_seconds=AGE)
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong"))
    desk.now = hk("2026-01-05", "09:00")
    desk.update(F1, calendar_id=HK)
    return desk


def new_fund(**fields) -> m.CreateFund:
    return m.CreateFund(**({"fund_id": "F3", "name": "F3", "base_currency": "HKD", "creation_unit": 100,
                            "creation_custodian_id": "CUS-A", "custodian_priority": ["CUS-A"],
                            "assets": [m.FundAssetSpec(asset="BTC"), m.FundAssetSpec(asset="ETH")],
                            "calendar_id": HK} | fields))


def waiver(**fields) -> m.FeeWaiverSpec:
    return m.FeeWaiverSpec(**({"rate": "0.001", "nav_limit": "1000000.00", "until": "2026-12-31"} | fields))


REFUSED_FEE_TERMS = [
    ({"management_fee_rate": "0.1"}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"management_fee_rate": "0.100000"}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"management_fee_rate": "1"}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"management_fee_rate": "0.0999999"}, INVALID_ARGUMENT, "management_fee_rate"),  # 7 fraction digits
    ({"management_fee_rate": "0.0000001"}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"management_fee_rate": "-0.001"}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"management_fee_rate": "1e-3"}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"management_fee_rate": ""}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"fee_day_count": "ACT_360"}, INVALID_ARGUMENT, "fee_day_count"),
    ({"fee_day_count": "act_365"}, INVALID_ARGUMENT, "fee_day_count"),
    ({"fee_waiver": waiver(rate="0.1")}, INVALID_ARGUMENT, "fee_waiver.rate"),
    ({"fee_waiver": waiver(rate="0.0000001")}, INVALID_ARGUMENT, "fee_waiver.rate"),
    ({"fee_waiver": waiver(rate="-0.001")}, INVALID_ARGUMENT, "fee_waiver.rate"),
    ({"fee_waiver": waiver(nav_limit="-0.01")}, INVALID_ARGUMENT, "fee_waiver.nav_limit"),
    ({"fee_waiver": waiver(nav_limit="1.001")}, INVALID_ARGUMENT, "fee_waiver.nav_limit"),
    ({"fee_waiver": waiver(nav_limit="")}, INVALID_ARGUMENT, "fee_waiver.nav_limit"),
    ({"fee_waiver": waiver(until="2026-02-30")}, INVALID_ARGUMENT, "fee_waiver.until"),
    ({"fee_waiver": waiver(until="31/12/2026")}, INVALID_ARGUMENT, "fee_waiver.until"),
    ({"fee_waiver": waiver(rate="0.5", until="nope")}, INVALID_ARGUMENT, "fee_waiver.rate"),  # field order
    ({"fee_payment": "STOCK"}, INVALID_ARGUMENT, "fee_payment"),
    ({"fee_payment": "in_kind"}, INVALID_ARGUMENT, "fee_payment"),
    ({"fee_asset": "SOL"}, INVALID_ARGUMENT, "fee_asset"),  # registered, not an asset of the fund
    ({"fee_asset": "DOGE"}, INVALID_ARGUMENT, "fee_asset"),
    ({"fee_custodian_id": "CUS-Z"}, NOT_FOUND, "CUS-Z"),
    ({"fee_payment": IN_KIND}, INVALID_ARGUMENT, "fee_asset"),
    ({"fee_payment": IN_KIND, "fee_custodian_id": "CUS-A"}, INVALID_ARGUMENT, "fee_asset"),
    ({"fee_payment": IN_KIND, "fee_asset": "BTC"}, INVALID_ARGUMENT, "fee_custodian_id"),
    ({"management_fee_rate": "0.1", "fee_day_count": "ACT_360"}, INVALID_ARGUMENT, "management_fee_rate"),
    ({"fee_day_count": "ACT_360", "fee_payment": "STOCK"}, INVALID_ARGUMENT, "fee_day_count"),
    ({"fee_payment": "STOCK", "fee_custodian_id": "CUS-Z"}, INVALID_ARGUMENT, "fee_payment"),
    ({"fee_asset": "SOL", "fee_custodian_id": "CUS-Z"}, INVALID_ARGUMENT, "fee_asset"),
    ({"pricing": "SPOT", "management_fee_rate": "0.5"}, INVALID_ARGUMENT, "pricing"),  # dealing terms first
]


@pytest.mark.parametrize(("fields", "code", "names"), REFUSED_FEE_TERMS)
def test_fee_terms_refused_on_create(ledger, fields, code, names):
    desk = calendar_sample(ledger)
    desk.refused(new_fund(**fields), code, names=names)


@pytest.mark.parametrize(("fields", "code", "names"), REFUSED_FEE_TERMS)
def test_fee_terms_refused_on_update(ledger, fields, code, names):
    desk = calendar_sample(ledger)
    desk.refused(m.UpdateFund(fund_id=F1, **fields), code, names=names)


@pytest.mark.parametrize(("fields", "field", "value"), [
    ({"management_fee_rate": "0.099999"}, "management_fee_rate", 99_999),
    ({"management_fee_rate": "0.09"}, "management_fee_rate", 90_000),
    ({"management_fee_rate": "0.000001"}, "management_fee_rate", 1),
    ({"management_fee_rate": "0"}, "management_fee_rate", 0),
    ({"fee_day_count": ACT_ACT}, "fee_day_count", ACT_ACT),
    ({"fee_waiver": waiver(rate="0.099999", nav_limit="0", until="2026-01-05")}, "fee_waiver",
     m.FeeWaiver(rate=99_999, nav_limit=0, until="2026-01-05")),
    ({"fee_waiver": waiver(rate="0", nav_limit="12.34")}, "fee_waiver", m.FeeWaiver(rate=0, nav_limit=1234,
                                                                                    until="2026-12-31")),
    ({"fee_waiver": m.FeeWaiverSpec(until="")}, "fee_waiver", None),  # no waiver
    ({"fee_asset": "ETH", "fee_custodian_id": "CUS-B"}, "fee_payment", CASH),  # kept for IN_KIND, unused in CASH
    ({"fee_payment": IN_KIND, "fee_asset": "ETH", "fee_custodian_id": "CUS-B"}, "fee_payment", IN_KIND),
])
def test_fee_terms_accepted(ledger, fields, field, value):
    desk = calendar_sample(ledger)
    desk.run(new_fund(**fields))
    desk.update(F1, **fields)
    assert getattr(terms(desk, "F3"), field) == getattr(terms(desk, F1), field) == value
    assert desk.replayed_state() == desk.state()


def test_fee_term_defaults(ledger):
    desk = calendar_sample(ledger)
    desk.run(new_fund())
    for fund_id in ("F3", F1, F2):
        t = terms(desk, fund_id)
        assert (t.management_fee_rate, t.fee_day_count, t.fee_waiver, t.fee_payment, t.fee_asset,
                t.fee_custodian_id) == (0, ACT_365, None, CASH, "", "")
        assert all(a.staking_fee_rate == 0 for a in t.assets)


def test_a_management_fee_needs_a_calendar(ledger):
    desk = calendar_sample(ledger)  # F1 on HK, F2 on none
    for fields in ({"management_fee_rate": "0.000001"}, {"fee_waiver": waiver()},
                   {"fee_waiver": waiver(rate="0")}):
        desk.refused(new_fund(calendar_id="", **fields), INVALID_ARGUMENT, names="management_fee_rate")
        desk.refused(m.UpdateFund(fund_id=F2, **fields), INVALID_ARGUMENT, names="management_fee_rate")
    desk.run(new_fund(calendar_id="", fee_waiver=m.FeeWaiverSpec(until=""), management_fee_rate="0"))
    desk.update(F2, calendar_id=HK, management_fee_rate="0.0025")  # both at once is fine
    desk.update(F1, management_fee_rate="0.0025")
    desk.refused(m.UpdateFund(fund_id=F1, calendar_id=""), INVALID_ARGUMENT, names="management_fee_rate")
    desk.update(F1, calendar_id="", management_fee_rate="0")
    desk.update(F2, fee_waiver=waiver())
    desk.refused(m.UpdateFund(fund_id=F2, calendar_id="", management_fee_rate="0"), INVALID_ARGUMENT,
                 names="management_fee_rate")  # the waiver is a fee too
    desk.update(F2, calendar_id="", management_fee_rate="0", fee_waiver=m.FeeWaiverSpec(until=""))
    assert (terms(desk, F2).calendar_id, terms(desk, F2).fee_waiver) == ("", None)
    assert desk.replayed_state() == desk.state()


def test_in_kind_terms_are_checked_as_they_would_be(ledger):
    desk = calendar_sample(ledger)
    desk.refused(m.UpdateFund(fund_id=F1, fee_payment=IN_KIND), INVALID_ARGUMENT, names="fee_asset")
    desk.update(F1, fee_asset="BTC")
    desk.refused(m.UpdateFund(fund_id=F1, fee_payment=IN_KIND), INVALID_ARGUMENT, names="fee_custodian_id")
    desk.update(F1, fee_custodian_id="CUS-A")
    desk.update(F1, fee_payment=IN_KIND)
    desk.refused(m.UpdateFund(fund_id=F1, fee_asset=""), INVALID_ARGUMENT, names="fee_asset")
    desk.refused(m.UpdateFund(fund_id=F1, fee_custodian_id=""), INVALID_ARGUMENT, names="fee_custodian_id")
    desk.refused(m.UpdateFund(fund_id=F1, fee_asset="SOL"), INVALID_ARGUMENT, names="fee_asset")
    desk.update(F1, fee_asset="ETH", fee_custodian_id="CUS-B")
    desk.update(F1, fee_payment=CASH, fee_asset="", fee_custodian_id="")
    t = terms(desk, F1)
    assert (t.fee_payment, t.fee_asset, t.fee_custodian_id) == (CASH, "", "")
    # IN_KIND without a rate needs no calendar (no management fee)
    desk.update(F2, fee_payment=IN_KIND, fee_asset="BTC", fee_custodian_id="CUS-A")
    assert terms(desk, F2).fee_payment == IN_KIND
    assert desk.replayed_state() == desk.state()


def test_fee_terms_after_the_part_one_checks(ledger):
    desk = calendar_sample(ledger)
    desk.run(new_fund())
    desk.refused(new_fund(management_fee_rate="0.5"), ALREADY_EXISTS, names="F3")
    desk.refused(new_fund(fund_id="F4", creation_unit=0, management_fee_rate="0.5"), INVALID_ARGUMENT,
                 names="creation_unit")
    desk.refused(m.UpdateFund(fund_id="F9", management_fee_rate="0.5"), NOT_FOUND, names="F9")


@pytest.mark.parametrize(("rate", "ok"), [
    ("0.999999", True), ("0", True), ("0.18", True), ("1", False), ("1.0", False), ("0.9999999", False),
    ("-0.1", False), ("", False), ("0.1e1", False),
])
def test_staking_fee_rate_terms(ledger, rate, ok):
    desk = sample(ledger)  # no calendar: a staking fee needs none
    spec = m.FundAssetSpec(asset="ETH", staking_fee_rate=rate)
    create = m.CreateFund(fund_id="F3", name="F3", base_currency="HKD", creation_unit=100,
                          creation_custodian_id="CUS-A", custodian_priority=["CUS-A"],
                          assets=[m.FundAssetSpec(asset="BTC"), spec])
    update = m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="ETH", unbonding_seconds=86_400,
                                                              staking_fee_rate=rate)])
    if ok:
        desk.run(create)
        desk.run(update)
        want = round(Fraction(rate) * 10**6)
        for fund_id in ("F3", F1):
            assert next(a for a in terms(desk, fund_id).assets if a.asset == "ETH").staking_fee_rate == want
        assert desk.replayed_state() == desk.state()
    else:
        desk.refused(create, INVALID_ARGUMENT, names="assets[1].staking_fee_rate")
        desk.refused(update, INVALID_ARGUMENT, names="assets[0].staking_fee_rate")


# == a fund without fee terms ======================================================================
def test_a_fund_without_fee_terms_behaves_as_before(ledger):
    desk = calendar_sample(ledger)  # F1: 10 BTC + 100 ETH, live 500,000 / 20,000 HKD, no fee terms
    official = {"BTC": "510000.12345678", "ETH": "20100.5"}
    gross = value(btc("10"), official["BTC"]) + value(eth("100"), official["ETH"], 18)
    for day in ("2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09", "2026-01-12"):
        nav = strike(desk, day, fund_id=F1, prices=official, currency="HKD").nav
        # ledger.py: a fund without a management fee at the strike keeps fee, fee_days and fee_basis 0
        assert (nav.fee, nav.fee_days, nav.fee_basis, nav.accrued_fees, nav.fee_payable) == (0, 0, 0, 0, ())
        assert nav.nav == r2(gross)
        assert struck(desk).fee_taken == 0
    assert accrued(desk, F1) == 0 and fund_state(desk, F1).fee_payable == []
    live = desk.nav(F1)
    assert (live.nav, live.accrued_fees) == (cents("7000000.00"), 0)
    basket = desk.basket(F1)
    assert (basket.cash_component, basket.accrued_fees) == (0, 0)
    assert ledger.get_holdings(F1, desk.now).fee_payable == []
    desk.run(m.RecordStakingReward(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="0.5"))
    assert desk.events[-1] == m.RewardRecorded(at=desk.now, fund_id=F1, custodian_id="CUS-A", asset="BTC",
                                               quantity=btc("0.5"), gross=btc("0.5"), staking_fee=0, net=btc("0.5"))
    assert desk.replayed_state() == desk.state()
