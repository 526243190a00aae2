"""Every rule of SPEC §13 (the dealing day), with the decisions of etf_engine/ledger.py, made to fire and
probed at its boundary, on both ledgers (the ``ledger`` fixture: "core" and "reference").

The world is conftest's sample (F1: 1000 shares of creation unit 100, 10 BTC + 100 ETH at CUS-A, live
prices BTC 500000 / ETH 20000 HKD published at NOW, fresh for 40 days here), plus the calendar "HK"
(Asia/Hong_Kong, Saturday and Sunday off) that F1 joins at Monday 2026-01-05 09:00 Hong Kong time, so
its first dealing date is that Monday. Hong Kong is UTC+8 all year: ``hk`` writes its local times as
unix ms without the calendar module. Every call carries an explicit time; nothing reads the clock.

Expected figures are worked out by hand in the comments and checked again with Fraction arithmetic.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import msgspec
import pytest
from conftest import DECIMALS, EXPIRES, F1, F2, T0, btc, cents, eth, hk, plain, sample, units

from etf_engine import model as m
from etf_engine.errors import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OUT_OF_RANGE,
    EngineError,
)
from etf_engine.model import (
    ACCEPTED,
    BEFORE_CUTOFF,
    CANCELLED,
    CREATE,
    CUSTODIAN_NOT_LICENSED,
    DAILY_LIMIT_EXCEEDED,
    DAY_MS,
    EARLIER_DATE_NOT_STRUCK,
    FORWARD,
    FUND_SUSPENDED,
    LIVE,
    NOT_A_DEALING_DAY,
    NOT_CLOSABLE,
    NOT_PRICED,
    ORDER_LIMIT_EXCEEDED,
    ORDER_NOT_ACCEPTED,
    REDEEM,
    REJECTED,
    REVOKED,
    SETTLED,
    SUSPENDED,
)

pytestmark = pytest.mark.unit

replace = msgspec.structs.replace
SIDES = (CREATE, REDEEM)
HK = "HK"
AGE = 40 * 86_400  # max_price_age_seconds: the sample's live prices stay fresh through January
PREV_FRI, SUN_BEFORE = "2026-01-02", "2026-01-04"
MON, TUE, WED, THU, FRI, SAT, SUN = (f"2026-01-{d:02d}" for d in range(5, 12))
NEXT_MON, NEXT_TUE, NEXT_WED, NEXT_THU = "2026-01-12", "2026-01-13", "2026-01-14", "2026-01-15"
TYPHOON = "typhoon signal no. 8"
OFFICIAL = {"BTC": "510000.12345678", "ETH": "20100.5"}  # the fixing StrikeNav is given unless a test says




def test_hk_writes_hong_kong_time():
    assert hk(MON, "16:00") == T0 + 4 * DAY_MS + 8 * 3_600_000  # 08:00 UTC
    assert hk(MON) == T0 + 3 * DAY_MS + 16 * 3_600_000  # local midnight: 16:00 UTC the day before
    assert hk(MON, "15:59:59.999") == hk(MON, "16:00") - 1


def dealing(ledger, at: int = hk(MON, "09:00"), holidays: tuple[str, ...] = (), sample_kw: dict | None = None,
            **terms):
    """The sample with F1 on the HK calendar from ``at`` (its first dealing date: the dealing date of ``at``)."""
    desk = sample(ledger, max_price_age_seconds=AGE, **(sample_kw or {}))
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong", holidays=list(holidays)))
    desk.now = at
    desk.update(F1, calendar_id=HK, **terms)
    return desk


def ticks(prices: dict[str, str] | list[tuple[str, str]], as_of: int, currency: str = "HKD") -> list[m.PriceTick]:
    items = prices.items() if isinstance(prices, dict) else prices
    return [m.PriceTick(asset=a, currency=currency, price=p, as_of_unix_ms=as_of) for a, p in items]


def strike_cmd(desk, day: str, prices: dict[str, str] | list[tuple[str, str]] | None = None, fund: str = F1,
               currency: str = "HKD", as_of: int | None = None) -> m.StrikeNav:
    return m.StrikeNav(fund_id=fund, dealing_date=day,
                       ticks=ticks(OFFICIAL if prices is None else prices, desk.now if as_of is None else as_of,
                                   currency))


def strike(desk, day: str, at: int | None = None, **kw) -> m.StrikeResult:
    """StrikeNav of ``day``, at its 16:00 cut-off unless ``at`` says otherwise (desk.now moves there)."""
    desk.now = hk(day, "16:00") if at is None else at
    return desk.run(strike_cmd(desk, day, **kw))


def order_at(desk, at: int, side: str, n: int, **kw) -> m.Order:
    desk.now = at
    return desk.order(side, n, **kw)


def get(desk, order_id: str) -> m.Order:
    return desk.ledger.get_order(order_id)


def dates(order: m.Order) -> tuple[str, str]:
    return order.dealing_date, order.settlement_date


def terms_of(desk, fund: str = F1) -> dict:
    return next(t for t, *_ in desk.state()["funds"] if t["fund_id"] == fund)


def raises(call, *args, code: str, names: str) -> EngineError:
    with pytest.raises(EngineError) as info:
        call(*args)
    assert info.value.code == code, info.value
    assert names in info.value.message, info.value
    return info.value


def worth(quantity: int, asset: str, price: str) -> Fraction:
    """Exact value of ``quantity`` smallest units at a decimal price (independent of the engine)."""
    return Fraction(quantity, 10 ** DECIMALS[asset]) * Fraction(price)


def r(value: Fraction, dp: int) -> int:
    """value in units of 10^-dp, half-even (Fraction.__round__ rounds ties to even)."""
    return round(value * 10**dp)


# == calendars ===================================================================================
def test_register_calendar_and_read_it(ledger):
    desk = sample(ledger)
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong", holidays=["2026-12-25", "2026-01-01"]))
    desk.run(m.RegisterCalendar(calendar_id="GULF", time_zone="Asia/Dubai", weekend_days=[6, 5]))
    desk.run(m.RegisterCalendar(calendar_id="NONSTOP", time_zone="UTC", weekend_days=[]))
    assert ledger.get_calendar(HK) == m.CalendarInfo(calendar_id=HK, time_zone="Asia/Hong_Kong",
                                                     holidays=["2026-01-01", "2026-12-25"], weekend_days=[6, 7],
                                                     closed=[])
    assert ledger.get_calendar("GULF").weekend_days == [5, 6]
    assert ledger.get_calendar("NONSTOP").weekend_days == []
    assert desk.state()["calendars"] == [["GULF", "Asia/Dubai", [], [5, 6], []],
                                         [HK, "Asia/Hong_Kong", ["2026-01-01", "2026-12-25"], [6, 7], []],
                                         ["NONSTOP", "UTC", [], [], []]]
    assert desk.state()["official_navs"] == desk.state()["pcfs"] == []
    assert desk.replayed_state() == desk.state()
    raises(ledger.get_calendar, "NOPE", code=NOT_FOUND, names="NOPE")


@pytest.mark.parametrize(("fields", "code", "names"), [
    ({"calendar_id": "H K"}, INVALID_ARGUMENT, "calendar_id"),
    ({"calendar_id": ""}, INVALID_ARGUMENT, "calendar_id"),
    ({"time_zone": "Asia/Atlantis"}, INVALID_ARGUMENT, "time_zone"),
    ({"time_zone": ""}, INVALID_ARGUMENT, "time_zone"),
    ({"holidays": ["2026-12-25", "2026-12-26", "2026-12-25"]}, INVALID_ARGUMENT, "holidays[2]"),
    ({"holidays": ["2026-12-25", "2026-12-32"]}, INVALID_ARGUMENT, "holidays[1]"),
    ({"holidays": ["25/12/2026"]}, INVALID_ARGUMENT, "holidays[0]"),
    ({"weekend_days": [1, 2, 3, 4, 5, 6, 7]}, INVALID_ARGUMENT, "weekend_days"),
    ({"weekend_days": [6, 8]}, INVALID_ARGUMENT, "weekend_days[1]"),
    ({"weekend_days": [0]}, INVALID_ARGUMENT, "weekend_days[0]"),
    ({"weekend_days": [7, 7]}, INVALID_ARGUMENT, "weekend_days[1]"),
])
def test_register_calendar_refusals(ledger, fields, code, names):
    desk = sample(ledger)
    command = m.RegisterCalendar(**({"calendar_id": "NEW", "time_zone": "Asia/Hong_Kong"} | fields))
    desk.refused(command, code, names=names)


def test_register_calendar_twice_already_exists_after_its_fields(ledger):
    desk = sample(ledger)
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong"))
    desk.refused(m.RegisterCalendar(calendar_id=HK, time_zone="Europe/London"), ALREADY_EXISTS, names=HK)
    desk.refused(m.RegisterCalendar(calendar_id=HK, time_zone="Nowhere/Land"), INVALID_ARGUMENT, names="time_zone")
    assert ledger.get_calendar(HK).time_zone == "Asia/Hong_Kong"


def test_set_holidays_replaces_the_list(ledger):
    desk = dealing(ledger, holidays=(WED, THU))
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[NEXT_MON, TUE]))
    assert ledger.get_calendar(HK).holidays == [TUE, NEXT_MON]
    assert order_at(desk, hk(MON, "10:00"), CREATE, 1).settlement_date == THU  # Wed, Thu: no longer holidays
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[]))
    assert ledger.get_calendar(HK).holidays == []
    assert desk.replayed_state() == desk.state()


def test_set_holidays_refusals(ledger):
    desk = dealing(ledger, holidays=(WED,))
    desk.refused(m.SetHolidays(calendar_id="NOPE", holidays=["bad"]), NOT_FOUND, names="NOPE")  # calendar first
    desk.refused(m.SetHolidays(calendar_id=HK, holidays=[TUE, "2026-02-30"]), INVALID_ARGUMENT, names="holidays[1]")
    desk.refused(m.SetHolidays(calendar_id=HK, holidays=[TUE, THU, TUE]), INVALID_ARGUMENT, names="holidays[2]")
    assert ledger.get_calendar(HK).holidays == [WED]


# == fund terms ==================================================================================
def new_fund(**fields) -> m.CreateFund:
    return m.CreateFund(fund_id="F3", name="F3", base_currency="HKD", creation_unit=100, creation_custodian_id="CUS-A",
                        custodian_priority=["CUS-A"], assets=[m.FundAssetSpec(asset="BTC")], **fields)


def test_fund_terms_defaults_and_first_dealing_date(ledger):
    desk = dealing(ledger)
    assert {k: terms_of(desk)[k] for k in ("calendar_id", "dealing_cutoff", "create_settlement_days",
                                           "redeem_settlement_days", "pricing", "first_dealing_date")} == {
        "calendar_id": HK, "dealing_cutoff": "16:00:00", "create_settlement_days": 2, "redeem_settlement_days": 2,
        "pricing": LIVE, "first_dealing_date": MON}
    f2 = terms_of(desk, F2)  # no calendar: the terms of SPEC §1-10
    assert (f2["calendar_id"], f2["first_dealing_date"], f2["pricing"], f2["dealing_cutoff"]) == ("", "", LIVE,
                                                                                                 "16:00:00")
    # CreateFund on a calendar at Monday 15:30 with a 15:30 cut-off: the first dealing date is Tuesday
    desk.now = hk(MON, "15:30")
    desk.run(new_fund(calendar_id=HK, dealing_cutoff="15:30", create_settlement_days=1, redeem_settlement_days=3,
                      pricing=FORWARD))
    f3 = terms_of(desk, "F3")
    assert (f3["calendar_id"], f3["dealing_cutoff"], f3["create_settlement_days"], f3["redeem_settlement_days"],
            f3["pricing"], f3["first_dealing_date"]) == (HK, "15:30:00", 1, 3, FORWARD, TUE)
    desk.now = hk(WED, "10:00")
    desk.update("F3", name="F3 renamed", dealing_cutoff="09:00")  # the calendar unchanged: the date is kept
    assert terms_of(desk, "F3")["first_dealing_date"] == TUE
    desk.update("F3", calendar_id="", pricing=LIVE)  # off the calendar
    assert (terms_of(desk, "F3")["calendar_id"], terms_of(desk, "F3")["first_dealing_date"]) == ("", "")
    desk.update("F3", calendar_id=HK)  # back on at Wednesday 10:00, after its 09:00 cut-off: Thursday
    assert terms_of(desk, "F3")["first_dealing_date"] == THU
    desk.run(m.RegisterCalendar(calendar_id="HK2", time_zone="Asia/Hong_Kong"))
    desk.now = hk(WED, "08:59:59.999")  # a different calendar: the date is taken again
    desk.update("F3", calendar_id="HK2")
    assert terms_of(desk, "F3")["first_dealing_date"] == WED
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("days", [0, 30])
@pytest.mark.parametrize("name", ["create_settlement_days", "redeem_settlement_days"])
def test_settlement_days_bounds_accepted(ledger, name, days):
    desk = dealing(ledger)
    desk.run(new_fund(calendar_id=HK, **{name: days}))
    desk.update(F1, **{name: days})
    assert terms_of(desk, "F3")[name] == terms_of(desk)[name] == days


REFUSED_TERMS = [
    ({"calendar_id": "NOPE"}, NOT_FOUND, "NOPE"),
    ({"dealing_cutoff": "16:60"}, INVALID_ARGUMENT, "dealing_cutoff"),
    ({"dealing_cutoff": "24:00"}, INVALID_ARGUMENT, "dealing_cutoff"),
    ({"dealing_cutoff": "4pm"}, INVALID_ARGUMENT, "dealing_cutoff"),
    ({"dealing_cutoff": "16:00:00.000"}, INVALID_ARGUMENT, "dealing_cutoff"),
    ({"create_settlement_days": 31}, INVALID_ARGUMENT, "create_settlement_days"),
    ({"create_settlement_days": -1}, INVALID_ARGUMENT, "create_settlement_days"),
    ({"redeem_settlement_days": 31}, INVALID_ARGUMENT, "redeem_settlement_days"),
    ({"redeem_settlement_days": -1}, INVALID_ARGUMENT, "redeem_settlement_days"),
    ({"pricing": "SPOT"}, INVALID_ARGUMENT, "pricing"),
]


@pytest.mark.parametrize(("fields", "code", "names"), REFUSED_TERMS)
def test_fund_terms_refusals_on_create(ledger, fields, code, names):
    desk = dealing(ledger)
    desk.refused(new_fund(**({"calendar_id": HK} | fields)), code, names=names)


@pytest.mark.parametrize(("fields", "code", "names"), REFUSED_TERMS)
def test_fund_terms_refusals_on_update(ledger, fields, code, names):
    desk = dealing(ledger)
    desk.refused(m.UpdateFund(fund_id=F1, **fields), code, names=names)
    desk.refused(m.UpdateFund(fund_id=F2, **fields), code, names=names)  # a fund without a calendar too


def test_forward_needs_a_calendar(ledger):
    desk = dealing(ledger, pricing=FORWARD)
    desk.refused(new_fund(pricing=FORWARD), INVALID_ARGUMENT, names="pricing")
    desk.refused(m.UpdateFund(fund_id=F2, pricing=FORWARD), INVALID_ARGUMENT, names="pricing")
    desk.refused(m.UpdateFund(fund_id=F1, calendar_id=""), INVALID_ARGUMENT, names="pricing")  # F1 is FORWARD
    desk.update(F2, calendar_id=HK, pricing=FORWARD)  # both at once is fine
    desk.update(F1, calendar_id="", pricing=LIVE)
    assert (terms_of(desk)["pricing"], terms_of(desk, F2)["pricing"]) == (LIVE, FORWARD)


def test_a_fund_on_an_unknown_calendar_is_not_found_after_the_part_one_checks(ledger):
    desk = dealing(ledger)
    desk.refused(new_fund(calendar_id="NOPE"), NOT_FOUND, names="NOPE")
    desk.run(new_fund())
    desk.refused(new_fund(calendar_id="NOPE"), ALREADY_EXISTS, names="F3")  # Part I first (ledger.py)
    desk.refused(m.UpdateFund(fund_id="F9", calendar_id="NOPE"), NOT_FOUND, names="F9")


# == dealing and settlement dates ================================================================
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("clock", "dealt", "settles"), [
    ("00:00", MON, WED), ("15:59:59", MON, WED), ("15:59:59.999", MON, WED),
    ("16:00", TUE, THU), ("16:00:00.001", TUE, THU), ("16:00:01", TUE, THU), ("23:59:59.999", TUE, THU),
])
def test_dealing_date_at_the_cutoff(ledger, side, clock, dealt, settles):
    desk = dealing(ledger, at=hk(SUN_BEFORE, "12:00"))
    desk.now = hk(MON, clock)
    checked = desk.check(side, 1)
    order = desk.order(side, 1)
    assert (order.status, dates(order), order.priced) == (ACCEPTED, (dealt, settles), True)
    assert dates(checked) == dates(order) and checked.order_id == ""
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("at", "dealt", "settles"), [
    (hk(FRI, "15:59:59.999"), FRI, NEXT_TUE),
    (hk(FRI, "16:00"), NEXT_MON, NEXT_WED),  # Friday after the cut-off: Monday
    (hk(SAT, "10:00"), NEXT_MON, NEXT_WED),
    (hk(SUN, "23:59:59.999"), NEXT_MON, NEXT_WED),
    (hk(NEXT_MON, "00:00"), NEXT_MON, NEXT_WED),
])
def test_dealing_date_across_the_weekend(ledger, at, dealt, settles):
    desk = dealing(ledger)
    assert dates(order_at(desk, at, CREATE, 1)) == (dealt, settles)


@pytest.mark.parametrize(("holidays", "at", "dealt", "settles"), [
    ((TUE,), hk(MON, "10:00"), MON, THU),  # a holiday between dealing and settlement: it moves past it
    ((WED,), hk(MON, "10:00"), MON, THU),  # the holiday on the settlement date
    ((TUE, WED), hk(MON, "10:00"), MON, FRI),
    ((TUE,), hk(MON, "16:00"), WED, FRI),  # after the cut-off before a holiday: the day after it
    ((TUE,), hk(TUE, "10:00"), WED, FRI),  # on the holiday itself
    ((NEXT_MON,), hk(THU, "10:00"), THU, NEXT_TUE),  # T+2 across Friday, the weekend and a holiday
    ((FRI, NEXT_MON), hk(THU, "16:00"), NEXT_TUE, NEXT_THU),  # Tue, then Wed and Thu
])
def test_dealing_and_settlement_dates_skip_holidays(ledger, holidays, at, dealt, settles):
    desk = dealing(ledger, holidays=holidays)
    assert dates(order_at(desk, at, REDEEM, 1)) == (dealt, settles)


@pytest.mark.parametrize(("create_days", "redeem_days"), [(0, 30), (30, 0), (1, 3)])
def test_settlement_days_per_side(ledger, create_days, redeem_days):
    desk = dealing(ledger, create_settlement_days=create_days, redeem_settlement_days=redeem_days)
    after = {0: MON, 1: TUE, 3: THU, 30: "2026-02-16"}  # 30 dealing days from Monday: six weeks of five
    assert dates(order_at(desk, hk(MON, "10:00"), CREATE, 1)) == (MON, after[create_days])
    assert dates(order_at(desk, hk(MON, "10:00"), REDEEM, 1)) == (MON, after[redeem_days])


@pytest.mark.parametrize("pricing", [LIVE, FORWARD])
def test_rejected_order_has_a_dealing_date_and_no_settlement_date(ledger, pricing):
    desk = dealing(ledger, pricing=pricing, dealing_status=SUSPENDED)
    order = order_at(desk, hk(MON, "16:00"), CREATE, 1)
    assert (order.status, order.reject_reason, dates(order)) == (REJECTED, FUND_SUSPENDED, (TUE, ""))
    assert order.priced is (pricing == LIVE)
    assert (order.cash_amount is None) is (pricing == FORWARD)
    assert dates(desk.check(REDEEM, 51)) == (TUE, "")
    assert desk.replayed_state() == desk.state()


def test_live_orders_on_a_calendar_are_priced_at_acceptance(ledger):
    # cash 1000.01: NAV 7,001,000.01, per unit 700,100.001, basket 700,000: cash component 100.00
    desk = dealing(ledger, sample_kw={"cash": "1000.01"})
    order = order_at(desk, hk(MON, "10:00"), CREATE, 2)
    assert (order.priced, order.basket.cash_component, order.cash_amount, order.official_nav_per_share) == (
        True, cents("100.00"), cents("200.00"), None)
    assert dates(order) == (MON, WED)
    assert desk.settle(order.order_id).status == SETTLED  # no strike needed


def test_orders_without_a_calendar_have_no_dates(ledger):
    desk = sample(ledger)
    order = desk.order(CREATE, 1)
    assert (dates(order), order.priced, order.official_nav_per_share) == (("", ""), True, None)


def test_update_fund_never_changes_the_dates_of_existing_orders(ledger):
    desk = dealing(ledger)
    first = order_at(desk, hk(MON, "09:59:59.999"), CREATE, 1)
    desk.update(F1, create_settlement_days=5, dealing_cutoff="10:00")
    assert dates(get(desk, first.order_id)) == (MON, WED)
    second = order_at(desk, hk(MON, "10:00"), CREATE, 1)  # at the new cut-off: Tuesday, plus five
    assert dates(second) == (TUE, NEXT_TUE)
    desk.update(F1, calendar_id="")
    assert dates(get(desk, first.order_id)) == (MON, WED) and dates(get(desk, second.order_id)) == (TUE, NEXT_TUE)
    assert dates(order_at(desk, hk(MON, "10:00"), CREATE, 1)) == ("", "")
    assert desk.replayed_state() == desk.state()


# == the daily limit per dealing date ============================================================
def test_daily_limit_counts_per_dealing_date(ledger):
    desk = dealing(ledger)  # 50 units per order, 100 per day
    order_at(desk, hk(MON, "10:00"), CREATE, 50)
    order_at(desk, hk(MON, "15:00"), CREATE, 50)
    assert order_at(desk, hk(MON, "15:59:59.999"), CREATE, 1).reject_reason == DAILY_LIMIT_EXCEEDED
    # Monday 16:00 in Hong Kong is 08:00 UTC of the same UTC day, but Tuesday's dealing date
    tue_a = order_at(desk, hk(MON, "16:00"), CREATE, 50)
    assert (tue_a.status, tue_a.dealing_date) == (ACCEPTED, TUE)
    # Tuesday 09:00 in Hong Kong is the next UTC day, the same dealing date
    tue_b = order_at(desk, hk(TUE, "09:00"), REDEEM, 50 // 5)  # 10 units: all the shares there are
    tue_c = order_at(desk, hk(TUE, "09:00"), CREATE, 40)
    assert (tue_b.status, tue_c.status, tue_c.dealing_date) == (ACCEPTED, ACCEPTED, TUE)
    assert order_at(desk, hk(TUE, "15:59:59.999"), CREATE, 1).reject_reason == DAILY_LIMIT_EXCEEDED
    assert order_at(desk, hk(TUE, "10:00"), CREATE, 1, participant="AP-2").status == ACCEPTED  # per participant
    desk.cancel(tue_c.order_id)  # cancelled: no longer counted
    assert order_at(desk, hk(TUE, "10:00"), CREATE, 40).status == ACCEPTED
    desk.settle(tue_a.order_id)  # settled: still counted
    assert order_at(desk, hk(TUE, "10:00"), CREATE, 1).reject_reason == DAILY_LIMIT_EXCEEDED
    assert order_at(desk, hk(TUE, "16:00"), CREATE, 50).dealing_date == WED
    assert desk.replayed_state() == desk.state()


def test_daily_limit_capacity_and_check_follow_the_dealing_date(ledger):
    desk = dealing(ledger)
    order_at(desk, hk(MON, "10:00"), CREATE, 50)
    order_at(desk, hk(MON, "10:00"), CREATE, 10)
    desk.now = hk(MON, "15:59:59.999")
    create = ledger.get_capacity("AP-1", F1, desk.now).create
    assert (create.units, create.binding_reason) == (40, DAILY_LIMIT_EXCEEDED)
    assert (desk.check(CREATE, 41).reject_reason, dates(desk.check(CREATE, 41))) == (DAILY_LIMIT_EXCEEDED, (MON, ""))
    assert (desk.check(CREATE, 40).status, dates(desk.check(CREATE, 40))) == (ACCEPTED, (MON, WED))
    desk.now = hk(MON, "16:00")
    create = ledger.get_capacity("AP-1", F1, desk.now).create
    assert (create.units, create.binding_reason) == (50, ORDER_LIMIT_EXCEEDED)


def test_daily_limit_never_mixes_utc_days_and_dealing_dates(ledger):
    desk = sample(ledger, max_price_age_seconds=AGE)
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong"))
    order_at(desk, hk(MON, "09:00"), CREATE, 30)  # no calendar yet: counted by its UTC day (Monday)
    desk.update(F1, calendar_id=HK)
    for _ in range(2):  # 100 units dated Monday: the 30 undated units do not count toward a dealing date
        assert order_at(desk, hk(MON, "09:30"), CREATE, 50).status == ACCEPTED
    assert order_at(desk, hk(MON, "09:30"), CREATE, 1).reject_reason == DAILY_LIMIT_EXCEEDED
    desk.update(F1, calendar_id="")
    # by UTC day again (Monday 02:00 UTC): the 100 dated units do not count toward it, the 30 do
    assert order_at(desk, hk(MON, "10:00"), CREATE, 50).status == ACCEPTED
    assert order_at(desk, hk(MON, "10:00"), CREATE, 21).reject_reason == DAILY_LIMIT_EXCEEDED
    assert order_at(desk, hk(MON, "10:00"), CREATE, 20).status == ACCEPTED
    assert desk.replayed_state() == desk.state()


# == FORWARD pricing and StrikeNav ==============================================================
def all_hot_breaches(held: dict[tuple[str, str], int]) -> tuple[m.StorageBreach, ...]:
    """Every coin of a fund created now entered hot (SPEC §18), so at a strike each holding with any
    held (and no payout due) breaches the custodians' default ratio 0.98: cold 0 < ceil(0.98 x held)."""
    return tuple(m.StorageBreach(custodian_id=c, asset=a, cold=0, cold_required=-(-98 * q // 100))
                 for (c, a), q in sorted(held.items()))


def test_forward_order_is_priced_by_the_official_nav_with_its_own_quantities(ledger):
    desk = dealing(ledger, pricing=FORWARD, sample_kw={"cash": "1000.01"})
    create = order_at(desk, hk(MON, "10:00"), CREATE, 2)
    redeem = order_at(desk, hk(MON, "10:00"), REDEEM, 1, participant="AP-2")
    for o in (create, redeem):  # quantities fixed now (1 BTC + 10 ETH a unit), the cash component not
        assert (o.status, o.priced, o.basket.cash_component, o.cash_amount, o.official_nav_per_share) == (
            ACCEPTED, False, None, None, None)
        assert (o.basket.nav_per_share, o.basket.nav_per_unit) == (70_010_000, cents("700100.00"))  # live, 7001.0000
        assert dates(o) == (MON, WED)
    assert create.deliverables == (m.Line(asset="BTC", quantity=btc("2")), m.Line(asset="ETH", quantity=eth("20")))
    assert redeem.legs == (m.Leg(custodian_id="CUS-A", asset="BTC", quantity=btc("1")),
                           m.Leg(custodian_id="CUS-A", asset="ETH", quantity=eth("10")))
    for o in (create, redeem):
        desk.refused(m.SettleOrder(order_id=o.order_id), FAILED_PRECONDITION, reason=NOT_PRICED)
    desk.now = hk(MON, "11:00")
    desk.adjust("CUS-B", "BTC", "0.5")  # after the orders: the fund holds 10.5 BTC at the strike

    result = strike(desk, MON)
    # NAV = 10.5 x 510000.12345678 + 100 x 20100.5 + 1000.01 = 5355001.29629619 + 2010050 + 1000.01
    #     = 7366051.30629619 -> 7366051.31; per share 7366.05130629619 -> 7366.0513
    nav = Fraction(btc("10.5"), 10**8) * Fraction("510000.12345678") + 100 * Fraction("20100.5") + Fraction("1000.01")
    assert nav == Fraction("7366051.30629619")
    assert result.nav == m.OfficialNav(
        fund_id=F1, dealing_date=MON, nav=cents("7366051.31"), nav_per_share=73_660_513, shares_outstanding=1000,
        cash=cents("1000.01"), struck_at=hk(MON, "16:00"),
        lines=(m.OfficialLine(asset="BTC", quantity=btc("10.5"), price=51_000_012_345_678, value=cents("5355001.30")),
               m.OfficialLine(asset="ETH", quantity=eth("100"), price=2_010_050_000_000, value=cents("2010050.00"))),
        storage_breaches=all_hot_breaches({("CUS-A", "BTC"): btc("10"), ("CUS-A", "ETH"): eth("100"),
                                           ("CUS-B", "BTC"): btc("0.5")}))
    assert (result.nav.nav, result.nav.nav_per_share) == (r(nav, 2), r(nav / 1000, 4))
    # PCF for Tuesday: 1.05 BTC + 10 ETH a unit worth 535500.129629619 + 201005 = 736505.129629619;
    # NAV x 100 / 1000 = 736605.130629619 -> nav_per_unit 736605.13, estimated cash 100.001 -> 100.00
    per_unit = nav * 100 / 1000
    pcf_lines = worth(btc("1.05"), "BTC", OFFICIAL["BTC"]) + worth(eth("10"), "ETH", OFFICIAL["ETH"])
    assert result.pcf == m.Pcf(
        fund_id=F1, dealing_date=TUE, creation_unit=100,
        lines=(m.BasketLine(asset="BTC", quantity_per_unit=btc("1.05")),
               m.BasketLine(asset="ETH", quantity_per_unit=eth("10"))),
        estimated_cash_component=cents("100.00"), nav_per_unit=cents("736605.13"), nav_per_share=73_660_513,
        shares_outstanding=1000,
        prices=(m.PriceLine(asset="BTC", price=51_000_012_345_678), m.PriceLine(asset="ETH", price=2_010_050_000_000)),
        published_at=hk(MON, "16:00"))
    assert (result.pcf.estimated_cash_component, result.pcf.nav_per_unit) == (r(per_unit - pcf_lines, 2),
                                                                               r(per_unit, 2))
    assert result.priced_orders == 2
    # the orders keep their own 1 BTC + 10 ETH: 736605.130629619 - 711005.12345678 = 25600.007172839 -> 25600.01
    own = worth(btc("1"), "BTC", OFFICIAL["BTC"]) + worth(eth("10"), "ETH", OFFICIAL["ETH"])
    assert r(per_unit - own, 2) == cents("25600.01")
    for o, n in ((create, 2), (redeem, 1)):
        priced = get(desk, o.order_id)
        assert (priced.priced, priced.basket.cash_component, priced.cash_amount, priced.official_nav_per_share) == (
            True, cents("25600.01"), n * cents("25600.01"), 73_660_513)
        assert priced.basket.nav_per_share == 70_010_000  # the acceptance figures stay
        assert (priced.deliverables, priced.legs, dates(priced)) == (o.deliverables, o.legs, dates(o))
        assert priced.updated_at == hk(MON, "16:00")
    assert ledger.get_official_nav(F1, MON) == result.nav and ledger.get_pcf(F1, TUE) == result.pcf
    # the official prices are kept with the strike: the live prices of §7 are untouched
    assert desk.state()["prices"] == [["BTC", "HKD", 50_000_000_000_000, T0 + 12 * 3_600_000],
                                      ["ETH", "HKD", 2_000_000_000_000, T0 + 12 * 3_600_000]]
    assert desk.nav().nav == cents("7251000.01")  # 10.5 x 500000 + 100 x 20000 + 1000.01, live
    desk.settle(create.order_id)
    desk.settle(redeem.order_id)
    assert desk.fund_figures() == (cents("1000.01") + cents("25600.01"), 1100)  # + 2 x 25600.01 - 25600.01
    assert desk.replayed_state() == desk.state()


def test_forward_rejected_cancelled_and_other_dates_are_not_priced(ledger):
    desk = dealing(ledger, pricing=FORWARD)
    rejected = order_at(desk, hk(MON, "10:00"), CREATE, 51)
    assert (rejected.reject_reason, rejected.priced, rejected.cash_amount, rejected.basket.cash_component) == (
        ORDER_LIMIT_EXCEEDED, False, None, None)
    cancelled = order_at(desk, hk(MON, "10:00"), CREATE, 1)
    desk.cancel(cancelled.order_id)
    monday = order_at(desk, hk(MON, "15:59:59.999"), CREATE, 1)
    tuesday = order_at(desk, hk(MON, "16:00"), CREATE, 1)
    assert strike(desk, MON).priced_orders == 1
    assert [get(desk, o.order_id).priced for o in (rejected, cancelled, monday, tuesday)] == [False, False, True,
                                                                                             False]
    assert get(desk, cancelled.order_id).status == CANCELLED and get(desk, rejected.order_id).cash_amount is None
    assert strike(desk, TUE).priced_orders == 1 and get(desk, tuesday.order_id).priced
    assert get(desk, tuesday.order_id).official_nav_per_share == ledger.get_official_nav(F1, TUE).nav_per_share
    assert desk.replayed_state() == desk.state()


def test_settle_not_priced_comes_after_not_accepted_and_before_the_licence(ledger):
    desk = dealing(ledger, pricing=FORWARD)
    cancelled = order_at(desk, hk(MON, "10:00"), CREATE, 1)
    waiting = order_at(desk, hk(MON, "10:00"), CREATE, 1)
    desk.cancel(cancelled.order_id)
    desk.refused(m.SettleOrder(order_id=cancelled.order_id), FAILED_PRECONDITION, reason=ORDER_NOT_ACCEPTED)
    desk.licence("CUS-A", REVOKED)
    desk.refused(m.SettleOrder(order_id=waiting.order_id), FAILED_PRECONDITION, reason=NOT_PRICED)
    strike(desk, MON)
    desk.refused(m.SettleOrder(order_id=waiting.order_id), FAILED_PRECONDITION, reason=CUSTODIAN_NOT_LICENSED)
    desk.licence("CUS-A")
    settled = desk.settle(waiting.order_id)
    # NAV 10 x 510000.12345678 + 100 x 20100.5 = 7,110,051.2345678, x 100 / 1000 = 711,005.12345678 a unit,
    # exactly what the unit's 1 BTC + 10 ETH is worth: cash component 0.00
    assert (settled.status, settled.cash_amount) == (SETTLED, 0)
    assert desk.replayed_state() == desk.state()


def test_forward_on_a_seed_fund(ledger):
    desk = dealing(ledger)
    desk.update(F2, calendar_id=HK, pricing=FORWARD, seed_cash_per_unit="-12.35", max_price_age_seconds=AGE)
    order = order_at(desk, hk(MON, "10:00"), CREATE, 3, fund=F2)
    assert (order.priced, order.cash_amount, order.basket.cash_component, order.basket.nav_per_share) == (
        False, None, None, None)
    result = strike(desk, MON, fund=F2, prices={"BTC": "500000.5", "ETH": "20000.25"})
    assert result.nav == m.OfficialNav(
        fund_id=F2, dealing_date=MON, nav=0, nav_per_share=None, shares_outstanding=0, cash=0,
        lines=(m.OfficialLine(asset="BTC", quantity=0, price=50_000_050_000_000, value=0),
               m.OfficialLine(asset="ETH", quantity=0, price=2_000_025_000_000, value=0)),
        struck_at=hk(MON, "16:00"))
    # the seed basket, 1 BTC + 10 ETH - 12.35: 500000.5 + 200002.5 - 12.35 = 699990.65
    assert (result.pcf.dealing_date, result.pcf.lines, result.pcf.estimated_cash_component, result.pcf.nav_per_unit,
            result.pcf.nav_per_share) == (
        TUE, (m.BasketLine(asset="BTC", quantity_per_unit=btc("1")),
              m.BasketLine(asset="ETH", quantity_per_unit=eth("10"))), cents("-12.35"), cents("699990.65"), None)
    assert result.priced_orders == 1
    priced = get(desk, order.order_id)
    assert (priced.priced, priced.basket.cash_component, priced.cash_amount, priced.official_nav_per_share) == (
        True, cents("-12.35"), cents("-37.05"), None)
    desk.settle(order.order_id)
    assert desk.fund_figures(F2) == (cents("-37.05"), 300)
    assert desk.replayed_state() == desk.state()


def test_strike_of_a_live_fund_records_the_nav_and_prices_nothing(ledger):
    desk = dealing(ledger)
    order = order_at(desk, hk(MON, "10:00"), CREATE, 1)
    prices_before = desk.state()["prices"]
    result = strike(desk, MON)
    # 10 x 510000.12345678 + 100 x 20100.5 = 7,110,051.2345678 -> 7,110,051.23; per share 7110.0512345678
    assert (result.nav.nav, result.nav.nav_per_share, result.priced_orders) == (cents("7110051.23"), 71_100_512, 0)
    assert get(desk, order.order_id) == order
    assert desk.state()["prices"] == prices_before
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("btc_price", "eth_price", "btc_value", "eth_value", "nav"), [
    ("0.0005", "0.00005", 0, 0, 1),  # 0.005 -> 0.00 each, the NAV 0.01 exactly
    ("0.0015", "0.00015", 2, 2, 3),  # 0.015 -> 0.02 each, the NAV 0.03
    ("0.0025", "0.00025", 2, 2, 5),  # 0.025 -> 0.02 each (ties to even), the NAV 0.05
])
def test_official_values_round_half_even(ledger, btc_price, eth_price, btc_value, eth_value, nav):
    desk = dealing(ledger)
    result = strike(desk, MON, prices={"BTC": btc_price, "ETH": eth_price})
    assert [ln.value for ln in result.nav.lines] == [btc_value, eth_value] and result.nav.nav == nav


def test_strike_at_the_cutoff(ledger):
    desk = dealing(ledger)
    desk.now = hk(MON, "15:59:59.999")
    desk.refused(strike_cmd(desk, MON), FAILED_PRECONDITION, reason=BEFORE_CUTOFF)
    assert strike(desk, MON, at=hk(MON, "16:00")).nav.struck_at == hk(MON, "16:00")
    desk.update(F1, dealing_cutoff="12:30:15")
    desk.now = hk(TUE, "12:30:14.999")
    desk.refused(strike_cmd(desk, TUE), FAILED_PRECONDITION, reason=BEFORE_CUTOFF)
    assert strike(desk, TUE, at=hk(TUE, "12:30:15")).nav.dealing_date == TUE
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("kind", ["weekend", "holiday", "closed"])
def test_strike_of_a_day_that_does_not_deal(ledger, kind):
    desk = dealing(ledger, holidays=(TUE,) if kind == "holiday" else ())
    if kind == "closed":
        desk.run(m.CloseDealingDay(calendar_id=HK, date=TUE, reason=TYPHOON))
    day = SAT if kind == "weekend" else TUE
    for now in (hk(day, "09:00"), hk(NEXT_WED, "16:00")):  # before its cut-off too: this refusal comes first
        desk.now = now
        desk.refused(strike_cmd(desk, day), FAILED_PRECONDITION, reason=NOT_A_DEALING_DAY)


def test_strike_twice_already_exists(ledger):
    desk = dealing(ledger)
    strike(desk, MON)
    desk.now = hk(MON, "16:30")
    desk.refused(strike_cmd(desk, MON, prices={"BTC": "1", "ETH": "1"}), ALREADY_EXISTS, names=MON)
    desk.now = hk(MON, "15:00")  # before BEFORE_CUTOFF
    desk.refused(strike_cmd(desk, MON), ALREADY_EXISTS, names=MON)
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[MON]))  # NOT_A_DEALING_DAY comes first
    desk.now = hk(MON, "16:30")
    desk.refused(strike_cmd(desk, MON), FAILED_PRECONDITION, reason=NOT_A_DEALING_DAY)


def test_strike_dates_in_order(ledger):
    desk = dealing(ledger)  # first dealing date: Monday
    desk.now = hk(TUE, "15:59:59.999")
    desk.refused(strike_cmd(desk, TUE), FAILED_PRECONDITION, reason=BEFORE_CUTOFF)  # before EARLIER_DATE_NOT_STRUCK
    desk.now = hk(TUE, "16:00")
    error = desk.refused(strike_cmd(desk, TUE), FAILED_PRECONDITION, reason=EARLIER_DATE_NOT_STRUCK)
    assert MON in error.message
    strike(desk, MON, at=hk(TUE, "16:00"))  # late is fine
    strike(desk, TUE)
    desk.now = hk(THU, "16:00")
    error = desk.refused(strike_cmd(desk, THU), FAILED_PRECONDITION, reason=EARLIER_DATE_NOT_STRUCK)
    assert WED in error.message
    strike(desk, WED, at=hk(THU, "16:00"))
    strike(desk, THU)
    strike(desk, FRI)
    strike(desk, NEXT_MON)  # the weekend between needs no strike
    assert [n.dealing_date for n in ledger.list_official_navs(F1)] == [MON, TUE, WED, THU, FRI, NEXT_MON]
    assert desk.replayed_state() == desk.state()


def test_strike_skips_holidays_and_closed_days(ledger):
    desk = dealing(ledger, holidays=(TUE,))
    desk.run(m.CloseDealingDay(calendar_id=HK, date=THU, reason=TYPHOON))
    strike(desk, MON)
    strike(desk, WED)
    strike(desk, FRI)
    assert [n.dealing_date for n in ledger.list_official_navs(F1)] == [MON, WED, FRI]


def test_first_dealing_date_after_the_cutoff(ledger):
    desk = dealing(ledger, at=hk(MON, "16:00"))  # joins the calendar after Monday's cut-off
    assert terms_of(desk)["first_dealing_date"] == TUE
    desk.now = hk(TUE, "16:00")
    # Monday is before the fund's first dealing date: it did not deal then (ledger.py)
    desk.refused(strike_cmd(desk, MON), FAILED_PRECONDITION, reason=NOT_A_DEALING_DAY)
    assert strike(desk, TUE).nav.dealing_date == TUE  # with Monday unstruck


def bad_ticks(case: str, now: int) -> list[m.PriceTick]:
    good = [("BTC", "500000"), ("ETH", "20000")]
    return {
        "asset not of the fund": ticks([*good, ("SOL", "100")], now),
        "asset twice": ticks([good[0], good[0], good[1]], now),
        "currency": ticks([good[0]], now) + ticks([good[1]], now, "USD"),
        "missing asset": ticks([good[0]], now),
        "no ticks": [],
    }[case]


@pytest.mark.parametrize(("case", "names"), [
    ("asset not of the fund", "ticks[2].asset"), ("asset twice", "ticks[1].asset"),
    ("currency", "ticks[1].currency"), ("missing asset", "ticks: "), ("no ticks", "ticks: "),
])
def test_strike_ticks_refused(ledger, case, names):
    desk = dealing(ledger)
    desk.now = hk(MON, "16:00")
    error = desk.refused(m.StrikeNav(fund_id=F1, dealing_date=MON, ticks=bad_ticks(case, desk.now)),
                         INVALID_ARGUMENT, names=names)
    if names == "ticks: ":
        assert "ETH" in error.message or "BTC" in error.message


@pytest.mark.parametrize(("price", "code"), [
    ("1e5", INVALID_ARGUMENT), ("-1", INVALID_ARGUMENT), ("", INVALID_ARGUMENT), ("1.123456789", INVALID_ARGUMENT),
    ("0", INVALID_ARGUMENT), ("0.00000000", INVALID_ARGUMENT), (" 1", INVALID_ARGUMENT),
    ("1000000000000.00000001", OUT_OF_RANGE),
])
def test_strike_price_refused(ledger, price, code):
    desk = dealing(ledger)
    desk.now = hk(MON, "16:00")
    desk.refused(strike_cmd(desk, MON, prices={"BTC": "1", "ETH": price}), code, names="ticks[1].price")


@pytest.mark.parametrize("price", ["1000000000000", "0.00000001"])
def test_strike_price_bounds_accepted(ledger, price):
    desk = dealing(ledger)
    result = strike(desk, MON, prices={"BTC": price, "ETH": price})
    assert [ln.price for ln in result.nav.lines] == [int(Fraction(price) * 10**8)] * 2


@pytest.mark.parametrize(("offset", "ok"), [(-1, False), (0, True), (5_000, True), (5_001, False)])
def test_strike_tick_time(ledger, offset, ok):
    desk = dealing(ledger)
    desk.now = hk(MON, "16:00")
    as_of = -1 if offset == -1 else desk.now + offset
    command = strike_cmd(desk, MON, as_of=as_of)
    if ok:
        desk.run(command)
    else:
        desk.refused(command, INVALID_ARGUMENT, names="ticks[0].as_of_unix_ms")


def test_strike_refusals_of_the_fund_and_date(ledger):
    desk = dealing(ledger)
    desk.now = hk(MON, "16:00")
    desk.refused(strike_cmd(desk, MON, fund="F9"), NOT_FOUND, names="F9")
    desk.refused(strike_cmd(desk, MON, fund=F2), INVALID_ARGUMENT, names="fund_id")  # F2 has no calendar
    for bad in ("2026-1-05", "2026-02-30", "", "05/01/2026"):
        desk.refused(strike_cmd(desk, bad), INVALID_ARGUMENT, names="dealing_date")
    # INVALID_ARGUMENT before NOT_A_DEALING_DAY: a bad tick for a Saturday
    desk.refused(strike_cmd(desk, SAT, prices={"BTC": "1"}), INVALID_ARGUMENT, names="ticks")


# == PCFs ========================================================================================
def test_pcf_is_for_the_next_dealing_day(ledger):
    desk = dealing(ledger, at=hk(FRI, "09:00"), holidays=(NEXT_MON,))
    pcf = strike(desk, FRI).pcf
    assert pcf.dealing_date == NEXT_TUE  # over the weekend and the Monday holiday
    assert ledger.get_pcf(F1, NEXT_TUE) == pcf
    raises(ledger.get_pcf, F1, FRI, code=NOT_FOUND, names=FRI)
    raises(ledger.get_pcf, "F9", NEXT_TUE, code=NOT_FOUND, names="F9")
    raises(ledger.get_pcf, F1, "2026-1-13", code=INVALID_ARGUMENT, names="dealing_date")
    assert desk.state()["pcfs"] == [plain(pcf)]


def test_a_later_strike_replaces_the_pcf_of_the_same_date(ledger):
    desk = dealing(ledger, holidays=(TUE,))
    assert strike(desk, MON).pcf.dealing_date == WED
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[]))  # Tuesday deals after all
    second = strike(desk, TUE, prices={"BTC": "1", "ETH": "2"}).pcf
    assert second.dealing_date == WED and ledger.get_pcf(F1, WED) == second
    assert second.published_at == hk(TUE, "16:00") and [p.price for p in second.prices] == [10**8, 2 * 10**8]
    assert len(desk.state()["pcfs"]) == 1
    assert desk.replayed_state() == desk.state()


# == CloseDealingDay =============================================================================
def test_closing_a_day_moves_its_orders_and_their_settlement(ledger):
    desk = dealing(ledger, create_settlement_days=2, redeem_settlement_days=0)
    a = order_at(desk, hk(MON, "10:00"), CREATE, 5)  # Mon, settles Wed
    c = order_at(desk, hk(MON, "10:00"), REDEEM, 1)  # Mon, settles Mon: before the closed day
    e = order_at(desk, hk(MON, "10:00"), CREATE, 5)
    desk.settle(e.order_id)  # settled: not moved
    b = order_at(desk, hk(MON, "16:30"), CREATE, 5)  # Tue, settles Thu
    d = order_at(desk, hk(MON, "16:30"), REDEEM, 1)  # Tue, settles Tue
    f = order_at(desk, hk(MON, "16:30"), CREATE, 51)  # rejected, dated Tue: not moved
    assert [dates(o) for o in (a, c, e, b, d, f)] == [(MON, WED), (MON, MON), (MON, WED), (TUE, THU), (TUE, TUE),
                                                      (TUE, "")]
    desk.now = hk(MON, "17:00")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=TUE, reason=TYPHOON))
    assert desk.events[-1] == m.DealingDayClosed(
        at=hk(MON, "17:00"), calendar_id=HK, date=TUE, reason=TYPHOON, pcfs=(), orders=(
            m.OrderDates(order_id=a.order_id, dealing_date=MON, settlement_date=THU),
            m.OrderDates(order_id=b.order_id, dealing_date=WED, settlement_date=FRI),
            m.OrderDates(order_id=d.order_id, dealing_date=WED, settlement_date=WED)))
    assert [dates(get(desk, o.order_id)) for o in (a, c, e, b, d, f)] == [
        (MON, THU), (MON, MON), (MON, WED), (WED, FRI), (WED, WED), (TUE, "")]
    assert get(desk, b.order_id).updated_at == hk(MON, "17:00") and get(desk, c.order_id) == c
    assert ledger.get_calendar(HK).closed == [m.ClosedDay(date=TUE, reason=TYPHOON)]
    assert desk.state()["calendars"] == [[HK, "Asia/Hong_Kong", [], [6, 7], [[TUE, TYPHOON]]]]
    assert dates(order_at(desk, hk(MON, "17:00"), CREATE, 1)) == (WED, FRI)
    assert dates(order_at(desk, hk(TUE, "10:00"), CREATE, 1)) == (WED, FRI)  # on the closed day itself
    assert desk.replayed_state() == desk.state()


def test_closing_a_day_keeps_each_orders_own_settlement_count(ledger):
    desk = dealing(ledger)
    a = order_at(desk, hk(MON, "10:00"), CREATE, 1)  # 2 days: Wed
    desk.update(F1, create_settlement_days=5)
    b = order_at(desk, hk(MON, "10:00"), CREATE, 1)  # 5 days: next Monday
    assert (a.settlement_date, b.settlement_date) == (WED, NEXT_MON)
    desk.now = hk(MON, "11:00")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=WED, reason=TYPHOON))
    assert dates(get(desk, a.order_id)) == (MON, THU)  # Tue, Thu
    assert dates(get(desk, b.order_id)) == (MON, NEXT_TUE)  # Tue, Thu, Fri, Mon, Tue
    assert desk.replayed_state() == desk.state()


def test_closing_a_day_counts_with_the_calendar_as_it_is(ledger):
    desk = dealing(ledger)
    a = order_at(desk, hk(MON, "10:00"), CREATE, 1)  # Wed: two dealing days
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[TUE]))  # no move: its dates stay
    assert dates(get(desk, a.order_id)) == (MON, WED)
    desk.run(m.CloseDealingDay(calendar_id=HK, date=WED, reason=TYPHOON))
    # its count before the closure is now one (Wed; Tue is a holiday): Mon + 1 with Wed closed = Thu
    assert dates(get(desk, a.order_id)) == (MON, THU)


def test_closing_a_day_the_daily_limit_follows_the_move(ledger):
    desk = dealing(ledger)
    order_at(desk, hk(MON, "10:00"), CREATE, 50)  # Mon
    order_at(desk, hk(MON, "16:30"), CREATE, 30)  # Tue
    desk.run(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON))  # today, not struck: closable
    assert desk.reason(CREATE, 21) == DAILY_LIMIT_EXCEEDED  # Tue now holds 50 + 30
    assert dates(order_at(desk, hk(MON, "16:30"), CREATE, 20)) == (TUE, THU)
    desk.run(m.CloseDealingDay(calendar_id=HK, date=TUE, reason="black rainstorm"))
    assert desk.reason(CREATE, 1) == DAILY_LIMIT_EXCEEDED  # all 100 moved to Wed, with the dealing date of now
    assert {get(desk, o.order_id).dealing_date for o in ledger.list_orders(F1, ACCEPTED)} == {WED}
    assert desk.replayed_state() == desk.state()


def test_closing_a_day_moves_its_pcf(ledger):
    desk = dealing(ledger)
    pcf = strike(desk, MON).pcf
    assert pcf.dealing_date == TUE
    desk.now = hk(MON, "17:00")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=TUE, reason=TYPHOON))
    assert desk.events[-1].pcfs == (m.PcfMoved(fund_id=F1, to_date=WED),)
    assert ledger.get_pcf(F1, WED) == replace(pcf, dealing_date=WED)
    raises(ledger.get_pcf, F1, TUE, code=NOT_FOUND, names=TUE)
    assert desk.replayed_state() == desk.state()


def test_a_moved_pcf_is_kept_only_where_none_is(ledger):
    desk = dealing(ledger, holidays=(TUE, WED))
    monday = strike(desk, MON).pcf
    assert monday.dealing_date == THU
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[]))
    tuesday = strike(desk, TUE).pcf
    assert tuesday.dealing_date == WED
    desk.now = hk(TUE, "17:00")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=WED, reason=TYPHOON))
    assert desk.events[-1].pcfs == (m.PcfMoved(fund_id=F1, to_date=THU),)
    assert ledger.get_pcf(F1, THU) == monday  # the one already there stays
    raises(ledger.get_pcf, F1, WED, code=NOT_FOUND, names=WED)
    assert desk.replayed_state() == desk.state()


def test_close_day_refusals(ledger):
    desk = dealing(ledger, holidays=(WED,))
    desk.run(m.CloseDealingDay(calendar_id=HK, date=THU, reason=TYPHOON))

    def close(day: str, reason: str = TYPHOON, calendar: str = HK) -> m.CloseDealingDay:
        return m.CloseDealingDay(calendar_id=calendar, date=day, reason=reason)

    desk.refused(close("bad", calendar="NOPE"), NOT_FOUND, names="NOPE")  # the calendar first
    desk.refused(close("2026-01-32"), INVALID_ARGUMENT, names="date")
    desk.refused(close(TUE, "x" * 257), INVALID_ARGUMENT, names="reason")
    for day in (SAT, WED, THU, SUN_BEFORE):  # weekend, holiday, already closed; a past Sunday too
        desk.refused(close(day), FAILED_PRECONDITION, reason=NOT_A_DEALING_DAY)
    desk.refused(close(PREV_FRI), FAILED_PRECONDITION, reason=NOT_CLOSABLE)  # past
    desk.run(close(FRI, "x" * 256))
    assert ledger.get_calendar(HK).closed == [m.ClosedDay(date=THU, reason=TYPHOON),
                                              m.ClosedDay(date=FRI, reason="x" * 256)]


def test_close_day_at_local_midnight(ledger):
    desk = dealing(ledger)
    desk.refused(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON), FAILED_PRECONDITION,
                 reason=NOT_CLOSABLE, now=hk(TUE, "00:00"))  # Monday is past from Tuesday 00:00 Hong Kong time
    desk.now = hk(MON, "23:59:59.999")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON))
    assert ledger.get_calendar(HK).closed == [m.ClosedDay(date=MON, reason=TYPHOON)]


def test_a_struck_day_is_not_closable(ledger):
    desk = dealing(ledger)
    desk.update(F2, calendar_id=HK)  # another fund on the calendar, which has not struck Monday
    strike(desk, MON)
    desk.refused(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON), FAILED_PRECONDITION,
                 reason=NOT_CLOSABLE, now=hk(MON, "16:30"))


def test_a_closed_future_day(ledger):
    desk = dealing(ledger)
    desk.run(m.CloseDealingDay(calendar_id=HK, date=WED, reason=TYPHOON))  # on Monday, for Wednesday
    assert dates(order_at(desk, hk(MON, "10:00"), CREATE, 1)) == (MON, THU)
    assert dates(order_at(desk, hk(WED, "10:00"), CREATE, 1)) == (THU, NEXT_MON)
    desk.now = hk(WED, "16:00")
    desk.refused(strike_cmd(desk, WED), FAILED_PRECONDITION, reason=NOT_A_DEALING_DAY)
    strike(desk, MON)
    strike(desk, TUE)
    strike(desk, THU)  # the closed Wednesday needs no strike
    assert desk.replayed_state() == desk.state()


# == reads, state, replay ========================================================================
def test_official_nav_reads(ledger):
    desk = dealing(ledger)
    navs = [strike(desk, day).nav for day in (MON, TUE, WED)]
    assert ledger.get_official_nav(F1, TUE) == navs[1]
    assert ledger.list_official_navs(F1) == ledger.list_official_navs(F1, "", "") == navs
    assert ledger.list_official_navs(F1, TUE, TUE) == [navs[1]]  # inclusive bounds
    assert ledger.list_official_navs(F1, TUE, "") == navs[1:]
    assert ledger.list_official_navs(F1, "", MON) == navs[:1]
    assert ledger.list_official_navs(F1, THU, FRI) == ledger.list_official_navs(F1, WED, MON) == []
    assert ledger.list_official_navs(F2) == []
    raises(ledger.get_official_nav, F1, THU, code=NOT_FOUND, names=THU)
    raises(ledger.get_official_nav, "F9", MON, code=NOT_FOUND, names="F9")
    raises(ledger.get_official_nav, F1, "2026-01-5", code=INVALID_ARGUMENT, names="dealing_date")
    raises(ledger.list_official_navs, F1, "yesterday", "", code=INVALID_ARGUMENT, names="from_date")
    raises(ledger.list_official_navs, F1, "", "2026-13-01", code=INVALID_ARGUMENT, names="to_date")
    raises(ledger.list_official_navs, "F9", "", "", code=NOT_FOUND, names="F9")
    state = desk.state()
    assert state["official_navs"] == [plain(n) for n in navs]
    assert [p["dealing_date"] for p in state["pcfs"]] == [TUE, WED, THU]


def test_clock_advanced_changes_nothing(ledger):
    desk = dealing(ledger, pricing=FORWARD)
    order_at(desk, hk(MON, "10:00"), CREATE, 1)
    before = desk.state()
    event = m.ClockAdvanced(at=hk(MON, "16:00"), offset_ms=6 * 3_600_000)
    ledger.apply(event)
    desk.events.append(event)
    assert desk.state() == before
    assert desk.replayed_state() == before


def test_a_dealing_week_replays(ledger):
    desk = dealing(ledger, pricing=FORWARD, holidays=(THU,), sample_kw={"cash": "250.55"})
    desk.update(F2, calendar_id=HK, max_price_age_seconds=AGE)
    mon = order_at(desk, hk(MON, "10:00"), CREATE, 3)
    order_at(desk, hk(MON, "10:00"), CREATE, 1, fund=F2)
    red = order_at(desk, hk(MON, "16:00"), REDEEM, 2, participant="AP-2")
    strike(desk, MON, prices={"BTC": "499999.99999999", "ETH": "20000.00000001"})
    strike(desk, MON, fund=F2)
    desk.settle(mon.order_id)
    desk.now = hk(MON, "17:00")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=TUE, reason=TYPHOON))
    assert dates(get(desk, red.order_id)) == (WED, NEXT_MON)  # Wed, (Thu holiday) Fri, Mon
    strike(desk, WED)
    desk.settle(red.order_id)
    state = desk.state()
    assert desk.replayed_state() == state
    assert [(n["fund_id"], n["dealing_date"]) for n in state["official_navs"]] == [(F1, MON), (F1, WED), (F2, MON)]
    assert [(p["fund_id"], p["dealing_date"]) for p in state["pcfs"]] == [(F1, WED), (F1, FRI), (F2, WED)]
    assert state["calendars"] == [[HK, "Asia/Hong_Kong", [THU], [6, 7], [[TUE, TYPHOON]]]]


# == exact figures, computed here with Fraction ==================================================
def official_figures(totals: dict[str, int], cash: str, shares: int, unit: int, prices: dict[str, str]) -> dict:
    """What SPEC §3, §4 and §13 give for a strike, from the fund's totals (smallest units): every figure in
    the engine's integer units (cents, 1e-4 a share, smallest units)."""
    values = {a: worth(q, a, prices[a]) for a, q in totals.items()}
    nav = sum(values.values()) + Fraction(cash)
    per_unit = nav * unit / shares
    lines = {a: q * unit // shares for a, q in totals.items()}  # floor(total x U / S)
    return {
        "values": {a: r(v, 2) for a, v in values.items()}, "nav": r(nav, 2), "nav_per_share": r(nav / shares, 4),
        "lines": lines, "nav_per_unit": r(per_unit, 2),
        "estimated_cash": r(per_unit - sum(worth(q, a, prices[a]) for a, q in lines.items()), 2),
        "exact_nav": nav,
    }


def test_strike_figures_with_floored_quantities(ledger):
    # 1001 shares, 10.30000007 BTC and 100.000000000000000001 ETH over two custodians, cash 123.45:
    # neither total x 100 / 1001 is whole, so the PCF quantities are floored
    holdings = {("CUS-A", "BTC"): "10.00000007", ("CUS-B", "BTC"): "0.3", ("CUS-A", "ETH"): "100.000000000000000001"}
    desk = dealing(ledger, sample_kw={"shares": 1001, "holdings": holdings, "cash": "123.45"})
    prices = {"ETH": "20100.49999999", "BTC": "510000.12345678"}  # ETH first: the lines still come by symbol
    totals = {"BTC": btc("10.30000007"), "ETH": eth("100.000000000000000001")}
    want = official_figures(totals, "123.45", 1001, 100, prices)
    # floor(1030000007 x 100 / 1001) = floor(102897103.8961...); (10^20 + 1) x 100 / 1001 = 9990009990009990010.09...
    assert want["lines"] == {"BTC": 102_897_103, "ETH": 9_990_009_990_009_990_010}
    result = strike(desk, MON, prices=prices)
    assert result.nav == m.OfficialNav(
        fund_id=F1, dealing_date=MON, nav=want["nav"], nav_per_share=want["nav_per_share"], shares_outstanding=1001,
        cash=cents("123.45"), struck_at=hk(MON, "16:00"),
        lines=(m.OfficialLine(asset="BTC", quantity=totals["BTC"], price=51_000_012_345_678,
                              value=want["values"]["BTC"]),
               m.OfficialLine(asset="ETH", quantity=totals["ETH"], price=2_010_049_999_999,
                              value=want["values"]["ETH"])),
        storage_breaches=all_hot_breaches({key: units(q, DECIMALS[key[1]]) for key, q in holdings.items()}))
    assert result.pcf == m.Pcf(
        fund_id=F1, dealing_date=TUE, creation_unit=100,
        lines=(m.BasketLine(asset="BTC", quantity_per_unit=want["lines"]["BTC"]),
               m.BasketLine(asset="ETH", quantity_per_unit=want["lines"]["ETH"])),
        estimated_cash_component=want["estimated_cash"], nav_per_unit=want["nav_per_unit"],
        nav_per_share=want["nav_per_share"], shares_outstanding=1001,
        prices=(m.PriceLine(asset="BTC", price=51_000_012_345_678), m.PriceLine(asset="ETH", price=2_010_049_999_999)),
        published_at=hk(MON, "16:00"))
    # the PCF's quantities are the live basket's (they need no price)
    assert [ln.quantity_per_unit for ln in desk.basket().lines] == [ln.quantity_per_unit for ln in result.pcf.lines]
    assert desk.replayed_state() == desk.state()


def test_official_quantities_are_totals_with_staked_reserved_and_unbonding(ledger):
    desk = dealing(ledger, sample_kw={"eth_terms": {"staking_cap": "1"}})
    desk.now = hk(MON, "09:30")
    desk.stake("CUS-A", "ETH", "40")
    desk.unstake("CUS-A", "ETH", "15")  # an unbonding lot of a day
    redeem = desk.order(REDEEM, 2)  # 2 BTC + 20 ETH reserved
    assert redeem.status == ACCEPTED
    result = strike(desk, MON)
    assert [(ln.asset, ln.quantity) for ln in result.nav.lines] == [("BTC", btc("10")), ("ETH", eth("100"))]
    assert [ln.quantity for ln in result.nav.lines] == [desk.summary(a).total for a in ("BTC", "ETH")]
    assert result.nav.nav == r(worth(btc("10"), "BTC", OFFICIAL["BTC"]) + worth(eth("100"), "ETH", OFFICIAL["ETH"]), 2)


# BTC 545474.48007573, 0.5 BTC more after acceptance, cash 1000.01: NAV = 7738532.050795165, and
# NAV x 100 / 1000 - (1 BTC + 10 ETH) = 27373.7250037865 -> 27373.73; from the NAV rounded to cents
# (7738532.05) it would be 27373.72492427 -> 27373.72, so the exact NAV is what is tested
@pytest.mark.parametrize(("delta", "btc_price", "cash"), [
    ("0.5", "545474.48007573", "1000.01"),
    ("-0.5", "545474.48007573", "1000.01"),  # fewer BTC at the strike: a negative cash component
    ("0.5", "500000.12345678", "0"),
    ("-3", "499999.99999999", "-250.55"),
])
def test_forward_cash_component_is_exact_then_rounded(ledger, delta, btc_price, cash):
    desk = dealing(ledger, pricing=FORWARD)
    order = order_at(desk, hk(MON, "10:00"), CREATE, 2)
    own = {ln.asset: ln.quantity // 2 for ln in order.deliverables}
    assert own == {"BTC": btc("1"), "ETH": eth("10")}
    desk.now = hk(MON, "12:00")
    desk.adjust("CUS-A", "BTC", delta)  # holdings move between acceptance and strike
    if cash != "0":
        desk.cash(cash)
    prices = {"BTC": btc_price, "ETH": "20100.5"}
    result = strike(desk, MON, prices=prices)
    totals = {"BTC": btc("10") + units_of(delta), "ETH": eth("100")}
    want = official_figures(totals, cash, 1000, 100, prices)
    per_unit = want["exact_nav"] * 100 / 1000
    component = r(per_unit - sum(worth(q, a, prices[a]) for a, q in own.items()), 2)
    assert result.pcf.lines != tuple(m.BasketLine(asset=a, quantity_per_unit=q) for a, q in own.items())
    assert (result.nav.nav, result.nav.nav_per_share) == (want["nav"], want["nav_per_share"])
    assert (result.pcf.estimated_cash_component, result.pcf.nav_per_unit) == (want["estimated_cash"],
                                                                               want["nav_per_unit"])
    if (delta, btc_price) == ("0.5", "545474.48007573"):  # the NAV rounded to cents would give another cent
        rounded = Fraction(want["nav"], 100) * 100 / 1000
        assert r(rounded - sum(worth(q, a, prices[a]) for a, q in own.items()), 2) != component
    priced = get(desk, order.order_id)
    assert (priced.priced, priced.basket.cash_component, priced.cash_amount, priced.official_nav_per_share) == (
        True, component, 2 * component, want["nav_per_share"])
    cash_before = desk.fund_figures()[0]
    desk.settle(order.order_id)
    assert desk.fund_figures() == (cash_before + 2 * component, 1200)
    assert desk.replayed_state() == desk.state()


def units_of(delta: str) -> int:
    return -btc(delta[1:]) if delta.startswith("-") else btc(delta)


# 0.01 BTC more after acceptance, over 1000 shares: 0.001 BTC a unit beyond the order's own 1 BTC, so the
# cash component is 0.001 x the BTC price exactly (ETH 1: its 10 a unit match the fund's 100 over 1000 x 100)
@pytest.mark.parametrize(("price", "component"), [
    ("5", 0),  # 0.005 -> 0.00 (a tie: to even)
    ("15", 2),  # 0.015 -> 0.02
    ("25", 2),  # 0.025 -> 0.02
    ("35", 4),  # 0.035 -> 0.04
    ("25.00000001", 3),  # 0.02500000001 -> 0.03: just past the tie
    ("4.99999999", 0),  # 0.00499999999 -> 0.00: just short of it
])
def test_forward_cash_component_ties_to_even(ledger, price, component):
    desk = dealing(ledger, pricing=FORWARD)
    order = order_at(desk, hk(MON, "10:00"), CREATE, 3)
    desk.now = hk(MON, "12:00")
    desk.adjust("CUS-A", "BTC", "0.01")
    strike(desk, MON, prices={"BTC": price, "ETH": "1"})
    assert r(Fraction(price) / 1000, 2) == component
    priced = get(desk, order.order_id)
    assert (priced.basket.cash_component, priced.cash_amount) == (component, 3 * component)


# == more boundaries ============================================================================
def test_closing_a_day_moves_the_orders_of_every_fund_on_the_calendar_and_no_other(ledger):
    desk = dealing(ledger)
    desk.update(F2, calendar_id=HK, max_price_age_seconds=AGE)
    desk.run(m.RegisterCalendar(calendar_id="HK2", time_zone="Asia/Hong_Kong"))
    desk.run(new_fund(calendar_id="HK2", max_price_age_seconds=AGE))
    desk.run(m.RegisterParticipant(participant_id="AP-9", name="AP-9", eligible_fund_ids=["F3"],
                                   max_units_per_order=50, max_units_per_day=100))
    f1 = order_at(desk, hk(MON, "10:00"), CREATE, 1)
    f2 = order_at(desk, hk(MON, "10:00"), CREATE, 1, fund=F2)
    f3 = order_at(desk, hk(MON, "10:00"), CREATE, 1, fund="F3", participant="AP-9")
    assert [(o.status, dates(o)) for o in (f1, f2, f3)] == [(ACCEPTED, (MON, WED))] * 3
    desk.run(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON))
    assert [dates(get(desk, o.order_id)) for o in (f1, f2, f3)] == [(TUE, THU), (TUE, THU), (MON, WED)]
    assert [o.order_id for o in desk.events[-1].orders] == [f1.order_id, f2.order_id]  # in order-id order
    assert desk.replayed_state() == desk.state()


def test_a_moved_forward_order_is_priced_by_the_strike_of_its_new_date(ledger):
    desk = dealing(ledger, pricing=FORWARD)
    tuesday = order_at(desk, hk(MON, "16:30"), CREATE, 1)
    monday = order_at(desk, hk(MON, "10:00"), CREATE, 1)
    desk.now = hk(MON, "17:00")
    desk.run(m.CloseDealingDay(calendar_id=HK, date=TUE, reason=TYPHOON))
    assert dates(get(desk, tuesday.order_id)) == (WED, FRI)
    assert strike(desk, MON).priced_orders == 1 and not get(desk, tuesday.order_id).priced
    desk.now = hk(TUE, "16:00")
    desk.refused(strike_cmd(desk, TUE), FAILED_PRECONDITION, reason=NOT_A_DEALING_DAY)
    result = strike(desk, WED, prices={"BTC": "520000", "ETH": "20000"})
    assert result.priced_orders == 1
    priced = get(desk, tuesday.order_id)
    # NAV 10 x 520000 + 100 x 20000 = 7,200,000: 720,000 a unit against the order's own 1 BTC + 10 ETH = 720,000
    assert (priced.priced, priced.basket.cash_component, priced.official_nav_per_share) == (True, 0, 72_000_000)
    assert get(desk, monday.order_id).official_nav_per_share == ledger.get_official_nav(F1, MON).nav_per_share
    assert desk.replayed_state() == desk.state()


def test_the_first_dealing_date_closed_needs_no_strike(ledger):
    desk = dealing(ledger)  # first dealing date Monday
    desk.run(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON))
    assert strike(desk, TUE).nav.dealing_date == TUE
    desk.now = hk(TUE, "17:00")
    desk.refused(strike_cmd(desk, MON), FAILED_PRECONDITION, reason=NOT_A_DEALING_DAY)


def test_a_resubmitted_order_after_the_cutoff_is_the_original(ledger):
    desk = dealing(ledger)
    first = order_at(desk, hk(MON, "15:59:59.999"), CREATE, 1, coid="SAME")
    before, events = desk.state(), len(desk.events)
    again = order_at(desk, hk(MON, "16:00"), CREATE, 1, coid="SAME")
    assert again == first and dates(again) == (MON, WED)
    assert len(desk.events) == events and desk.state() == before


def test_pricing_is_the_funds_at_decision_time(ledger):
    desk = dealing(ledger, sample_kw={"cash": "1000.01"})
    live = order_at(desk, hk(MON, "09:30"), CREATE, 1)
    desk.update(F1, pricing=FORWARD)
    forward = order_at(desk, hk(MON, "10:00"), CREATE, 1)
    desk.update(F1, pricing=LIVE)  # back to LIVE with a FORWARD order waiting for its strike
    later = order_at(desk, hk(MON, "10:30"), CREATE, 1)
    assert [(o.priced, o.basket.cash_component) for o in (live, forward, later)] == [
        (True, cents("100.00")), (False, None), (True, cents("100.00"))]
    result = strike(desk, MON)
    assert result.priced_orders == 1
    assert get(desk, live.order_id) == live and get(desk, later.order_id) == later
    priced = get(desk, forward.order_id)
    nav = worth(btc("10"), "BTC", OFFICIAL["BTC"]) + worth(eth("100"), "ETH", OFFICIAL["ETH"]) + Fraction("1000.01")
    own = worth(btc("1"), "BTC", OFFICIAL["BTC"]) + worth(eth("10"), "ETH", OFFICIAL["ETH"])
    assert (priced.priced, priced.basket.cash_component) == (True, r(nav / 10 - own, 2))
    assert desk.settle(forward.order_id).status == SETTLED
    assert desk.replayed_state() == desk.state()


def test_submit_orders_batch_counts_per_dealing_date(ledger):
    desk = dealing(ledger)
    desk.now = hk(MON, "15:59:59.999")
    batch = desk.run(m.SubmitOrders(participant_id="AP-1", requests=[desk.request(CREATE, n) for n in (50, 50, 1)]))
    assert [(o.status, o.reject_reason, o.dealing_date) for o in batch] == [
        (ACCEPTED, "", MON), (ACCEPTED, "", MON), (REJECTED, DAILY_LIMIT_EXCEEDED, MON)]
    desk.now = hk(MON, "16:00")
    batch = desk.run(m.SubmitOrders(participant_id="AP-1", requests=[desk.request(CREATE, n) for n in (50, 50)]))
    assert [(o.status, dates(o)) for o in batch] == [(ACCEPTED, (TUE, THU))] * 2
    assert desk.replayed_state() == desk.state()


def test_capacity_on_a_weekend_counts_toward_monday(ledger):
    desk = dealing(ledger, at=hk(FRI, "09:00"))
    order_at(desk, hk(FRI, "16:00"), CREATE, 50)  # dated next Monday
    order_at(desk, hk(SAT, "10:00"), CREATE, 40)  # likewise
    create = ledger.get_capacity("AP-1", F1, hk(SUN, "23:00")).create
    assert (create.units, create.binding_reason) == (10, DAILY_LIMIT_EXCEEDED)
    assert ledger.get_capacity("AP-1", F1, hk(FRI, "15:59:59.999")).create.units == 50  # Friday: nothing yet


def test_reads_of_a_fund_without_a_calendar(ledger):
    desk = sample(ledger)
    raises(ledger.get_official_nav, F1, MON, code=NOT_FOUND, names=MON)
    raises(ledger.get_pcf, F1, MON, code=NOT_FOUND, names=MON)
    assert ledger.list_official_navs(F1, MON, FRI) == []
    desk.refused(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON), NOT_FOUND, names=HK)


def test_the_daily_limit_of_a_moved_order_cancelled_or_settled_on_its_new_date(ledger):
    desk = dealing(ledger)
    moved = order_at(desk, hk(MON, "10:00"), CREATE, 50)
    kept = order_at(desk, hk(MON, "10:00"), CREATE, 40)
    desk.run(m.CloseDealingDay(calendar_id=HK, date=MON, reason=TYPHOON))
    desk.now = hk(MON, "11:00")  # now dated Tuesday, with 90 units there
    assert desk.reason(CREATE, 11) == DAILY_LIMIT_EXCEEDED and desk.reason(CREATE, 10) == ""
    desk.cancel(moved.order_id)  # the 50 leave Tuesday's count
    assert desk.reason(CREATE, 50) == "" and desk.reason(CREATE, 61) == ORDER_LIMIT_EXCEEDED
    assert ledger.get_capacity("AP-1", F1, desk.now).create.units == 50
    desk.settle(kept.order_id)  # settled: still counted on Tuesday
    order_at(desk, hk(MON, "11:00"), CREATE, 50)
    assert desk.reason(CREATE, 11) == DAILY_LIMIT_EXCEEDED
    assert desk.replayed_state() == desk.state()


def test_new_holidays_and_closures_apply_to_the_next_order_at_once(ledger):
    desk = dealing(ledger)
    assert dates(order_at(desk, hk(MON, "10:00"), CREATE, 1)) == (MON, WED)
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[MON]))  # today, at short notice
    assert dates(order_at(desk, hk(MON, "10:00:00.001"), CREATE, 1)) == (TUE, THU)
    desk.run(m.SetHolidays(calendar_id=HK, holidays=[WED]))
    assert dates(order_at(desk, hk(MON, "10:00:00.002"), CREATE, 1)) == (MON, THU)
    desk.run(m.CloseDealingDay(calendar_id=HK, date=THU, reason=TYPHOON))
    assert dates(order_at(desk, hk(MON, "10:00:00.003"), CREATE, 1)) == (MON, FRI)
    # the answer is a function of the time given, in any order of calls (Tue + 2: Wed holiday, Thu closed, Fri, Mon)
    assert dates(desk.ledger.check_order("AP-1", desk.request(CREATE, 1), hk(TUE, "10:00"))) == (TUE, NEXT_MON)
    assert dates(desk.ledger.check_order("AP-1", desk.request(CREATE, 1), hk(MON, "10:00"))) == (MON, FRI)
    assert dates(desk.ledger.check_order("AP-1", desk.request(CREATE, 1), hk(MON, "16:00"))) == (TUE, NEXT_MON)
    assert dates(desk.ledger.check_order("AP-1", desk.request(CREATE, 1), hk(MON, "15:00"))) == (MON, FRI)
    assert desk.replayed_state() == desk.state()


def test_funds_on_one_calendar_with_their_own_cutoffs(ledger):
    desk = dealing(ledger, dealing_cutoff="11:00")
    desk.update(F2, calendar_id=HK, max_price_age_seconds=AGE, dealing_cutoff="16:00", create_settlement_days=0)
    desk.now = hk(MON, "12:00")
    assert dates(desk.check(CREATE, 1)) == (TUE, THU)
    assert dates(desk.check(CREATE, 1, fund=F2)) == (MON, MON)
    desk.now = hk(MON, "10:59:59.999")
    assert dates(desk.check(CREATE, 1)) == (MON, WED)


def test_a_new_york_calendar_across_daylight_saving(ledger):
    # New York: EST (UTC-5) until Sunday 2026-03-08, EDT (UTC-4) from then; 16:00 is 21:00 then 20:00 UTC
    desk = sample(ledger, max_price_age_seconds=120 * 86_400)
    for cid in ("CUS-A", "CUS-B"):
        desk.licence(cid, expires_at=EXPIRES + 120 * 86_400)
    desk.run(m.RegisterCalendar(calendar_id="NY", time_zone="America/New_York"))
    desk.update(F1, calendar_id="NY")
    day_ms = (date(2026, 3, 6) - date(1970, 1, 1)).days * DAY_MS  # Friday 2026-03-06, 00:00 UTC
    friday, monday = day_ms + 21 * 3_600_000, day_ms + 3 * DAY_MS + 20 * 3_600_000
    assert dates(order_at(desk, friday - 1, CREATE, 1)) == ("2026-03-06", "2026-03-10")
    assert dates(order_at(desk, friday, CREATE, 1)) == ("2026-03-09", "2026-03-11")
    assert dates(order_at(desk, monday - 1, CREATE, 1)) == ("2026-03-09", "2026-03-11")
    assert dates(order_at(desk, monday, CREATE, 1)) == ("2026-03-10", "2026-03-12")
    desk.now = monday - 1
    desk.refused(m.StrikeNav(fund_id=F1, dealing_date="2026-03-09", ticks=ticks(OFFICIAL, desk.now)),
                 FAILED_PRECONDITION, reason=BEFORE_CUTOFF)
    desk.now = monday
    desk.refused(m.StrikeNav(fund_id=F1, dealing_date="2026-03-09", ticks=ticks(OFFICIAL, desk.now)),
                 FAILED_PRECONDITION, reason=EARLIER_DATE_NOT_STRUCK)  # its first dealing date was in January
    assert desk.replayed_state() == desk.state()


# official prices BTC 500000 and ETH 20000 (the live ones): NAV = 7,000,000 + cash, exactly; a unit's
# 1 BTC + 10 ETH are worth 700,000
@pytest.mark.parametrize(("cash", "btc_price", "nav_per_share", "nav_per_unit", "estimated"), [
    ("0.05", "500000", 70_000_000, 70_000_000, 0),  # 7000.00005 -> 7000.0000, 700000.005 -> .00, 0.005 -> 0.00
    ("0.15", "500000", 70_000_002, 70_000_002, 2),  # 7000.00015 -> 7000.0002, 700000.015 -> .02, 0.015 -> 0.02
    ("0.25", "500000", 70_000_002, 70_000_002, 2),  # 7000.00025 -> 7000.0002, 700000.025 -> .02, 0.025 -> 0.02
    # 1e-8 more a BTC: 1e-7 more NAV, past each tie; the unit's BTC is worth 1e-8 more too: 0.025 still
    ("0.25", "500000.00000001", 70_000_003, 70_000_003, 2),
    ("-0.05", "500000", 70_000_000, 70_000_000, 0),  # 6999.99995 -> 7000.0000, 699999.995 -> 700000.00, -0.005 -> 0
])
def test_official_figures_tie_to_even(ledger, cash, btc_price, nav_per_share, nav_per_unit, estimated):
    desk = dealing(ledger, sample_kw={"cash": cash})
    result = strike(desk, MON, prices={"BTC": btc_price, "ETH": "20000"})
    nav = 10 * Fraction(btc_price) + 2_000_000 + Fraction(cash)
    unit = Fraction(btc_price) + 200_000
    assert (r(nav / 1000, 4), r(nav / 10, 2), r(nav / 10 - unit, 2)) == (nav_per_share, nav_per_unit, estimated)
    assert (result.nav.nav_per_share, result.pcf.nav_per_share, result.pcf.nav_per_unit,
            result.pcf.estimated_cash_component) == (nav_per_share, nav_per_share, nav_per_unit, estimated)
    assert (result.nav.nav, result.nav.cash) == (r(nav, 2), cents(cash))
