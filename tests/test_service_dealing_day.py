"""The dealing day's wire and service layer (SPEC §13, §16): the real server on loopback, over gRPC.

Most tests run the engine on the test's ``Clock`` (T0: Sunday 2025-06-15, 23:06:40 in Hong Kong)
plus the offset of Diagnostics.AdvanceClock (``test_clock = true``), on a calendar with no weekend
and no holiday, so the dates below hold whatever the day and hour the tests run. One test runs on
the real wall clock and computes its dates from the server's own time. Nothing waits for a cut-off.
The server uses its default ledger (the compiled core). Refusals are followed by a comparison of the
whole canonical state: bad input changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_service import FUND, FUND2, T0, Clock, Desk, config, load_sample, refused

from etf_engine import calendar
from etf_engine.api.auth import ACCESS, ISSUER, OBSERVER, PACKAGE, PARTICIPANT
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, FundAssetTerms, Tick, status_name

HOUR = 3_600_000
DESK_CAL = calendar.Calendar("DESK", "Asia/Hong_Kong", frozenset(), frozenset())  # every day deals
CUTOFF = calendar.cutoff_seconds("16:00:00")
MONDAY, TUESDAY, WEDNESDAY = "2025-06-16", "2025-06-17", "2025-06-18"
MONDAY_CUTOFF = calendar.cutoff_ms(DESK_CAL, date(2025, 6, 16), CUTOFF)  # 16:00 HKT = 08:00 UTC
EARLY = [Tick("BTC", "USD", "97000", T0), Tick("ETH", "USD", "3400", T0)]  # the fixing's figures, at T0
OFFICIAL = [Tick(t.asset, t.currency, t.price, MONDAY_CUTOFF) for t in EARLY]
OTHER_FUND = ("F9", "Other", "USD", 10, "C1", ["C1"], [FundAssetTerms("BTC")])


def test_the_clock_and_calendar_of_these_tests() -> None:
    """What every date below rests on: T0 is after Sunday's cut-off in Hong Kong, so Monday deals."""
    assert datetime.fromtimestamp(T0 / 1000, UTC).isoformat() == "2025-06-15T15:06:40+00:00"
    assert calendar.dealing_date(DESK_CAL, CUTOFF, T0).isoformat() == MONDAY
    assert datetime.fromtimestamp(MONDAY_CUTOFF / 1000, UTC).isoformat() == "2025-06-16T08:00:00+00:00"


@contextmanager
def serving(data_dir: Path, clock: Clock | None, *, test_clock: bool = True) -> Iterator[Desk]:
    """A server on ``data_dir`` with the default ledger; ``clock`` None: the real wall clock."""
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    with BackgroundServer(config(data_dir=data_dir, test_clock=test_clock), **kwargs) as server:
        d = Desk(server, clock or Clock())
        try:
            yield d
        finally:
            d.close()


def forward_fund(issuer: EtfClient) -> None:
    """F1 on calendar DESK (Hong Kong, no weekend), cut-off 16:00, FORWARD, creations T+1, redemptions T+3."""
    issuer.register_calendar("DESK", "Asia/Hong_Kong", weekend_days=[])
    issuer.update_fund(FUND, calendar_id="DESK", dealing_cutoff="16:00", create_settlement_days=1,
                       redeem_settlement_days=3, pricing="FORWARD")


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with serving(tmp_path, Clock()) as d:
        load_sample(d.issuer)
        forward_fund(d.issuer)
        yield d


def unchanged(desk: Desk, call: Callable[[], object], code: grpc.StatusCode) -> str:
    """The call is refused with ``code`` and the state is the same after it."""
    before = desk.state()
    details = refused(call, code)
    assert desk.state() == before
    return details


# == the role table ===================================================================================
NEW_RPCS = {
    "Admin/RegisterCalendar": {ISSUER},
    "Admin/SetHolidays": {ISSUER},
    "Admin/CloseDealingDay": {ISSUER},
    "Admin/StrikeNav": {ISSUER},
    "Admin/GetCalendar": {ISSUER, OBSERVER},
    "Valuation/GetOfficialNav": {ISSUER, OBSERVER, PARTICIPANT},
    "Valuation/ListOfficialNavs": {ISSUER, OBSERVER, PARTICIPANT},
    "Valuation/GetPcf": {ISSUER, OBSERVER, PARTICIPANT},
    "Diagnostics/AdvanceClock": {ISSUER},
    "Diagnostics/GetLeader": {ISSUER, OBSERVER, PARTICIPANT},
}


def test_role_table_has_the_new_rpcs_with_the_roles_of_spec_16() -> None:
    for method, roles in NEW_RPCS.items():
        assert ACCESS[f"/{PACKAGE}.{method}"] == roles, method


# == calendars ==========================================================================================
def test_calendars_register_replace_close_and_read(desk: Desk) -> None:
    issuer, observer = desk.issuer, desk.observer
    issuer.register_calendar("HK", "Asia/Hong_Kong", ["2025-12-25", "2025-12-26"])  # weekend_days unset
    hk = observer.get_calendar("HK")
    assert (hk.calendar_id, hk.time_zone, list(hk.holidays), list(hk.weekend_days), list(hk.closed)) == (
        "HK", "Asia/Hong_Kong", ["2025-12-25", "2025-12-26"], [6, 7], [])
    issuer.register_calendar("FRI", "UTC", weekend_days=[5])
    assert list(issuer.get_calendar("FRI").weekend_days) == [5]
    assert list(issuer.get_calendar("DESK").weekend_days) == []  # set and empty: no weekend

    issuer.set_holidays("HK", ["2026-01-01", "2025-12-25"])  # replaces the list; read back sorted
    assert list(observer.get_calendar("HK").holidays) == ["2025-12-25", "2026-01-01"]
    issuer.set_holidays("HK", [])
    assert list(observer.get_calendar("HK").holidays) == []

    issuer.close_dealing_day("DESK", WEDNESDAY, "typhoon signal no. 8")
    closed = observer.get_calendar("DESK").closed
    assert [(c.date, c.reason) for c in closed] == [(WEDNESDAY, "typhoon signal no. 8")]
    # already closed: not a dealing day; before today: not closable
    assert unchanged(desk, lambda: issuer.close_dealing_day("DESK", WEDNESDAY),
                     grpc.StatusCode.FAILED_PRECONDITION).startswith("NOT_A_DEALING_DAY")
    assert unchanged(desk, lambda: issuer.close_dealing_day("DESK", "2025-06-01"),
                     grpc.StatusCode.FAILED_PRECONDITION).startswith("NOT_CLOSABLE")
    unchanged(desk, lambda: issuer.register_calendar("HK", "UTC"), grpc.StatusCode.ALREADY_EXISTS)


def test_closing_a_day_moves_its_orders(desk: Desk) -> None:
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "move-1")
    assert (order.dealing_date, order.settlement_date) == (MONDAY, TUESDAY)
    desk.issuer.close_dealing_day("DESK", MONDAY, "black rainstorm")
    moved = desk.observer.get_order(order.order_id)
    assert (moved.dealing_date, moved.settlement_date) == (TUESDAY, WEDNESDAY)
    assert desk.ap1.submit_order(FUND, "CREATE", 1, "move-2").dealing_date == TUESDAY


def test_calendar_rpcs_refuse_other_roles(desk: Desk) -> None:
    denied = grpc.StatusCode.PERMISSION_DENIED
    for client in (desk.observer, desk.ap1):
        unchanged(desk, lambda c=client: c.register_calendar("X", "UTC"), denied)
        unchanged(desk, lambda c=client: c.set_holidays("DESK", ["2025-12-25"]), denied)
        unchanged(desk, lambda c=client: c.close_dealing_day("DESK", WEDNESDAY), denied)
        unchanged(desk, lambda c=client: c.strike_nav(FUND, MONDAY, EARLY), denied)
    refused(lambda: desk.ap1.get_calendar("DESK"), denied)
    refused(lambda: desk.clients["ap-unregistered"].get_calendar("DESK"), denied)


# == bad input: INVALID_ARGUMENT naming the field, nothing recorded ====================================
BAD_INPUT: list[tuple[str, Callable[[EtfClient], object], str]] = [
    ("unknown time zone", lambda c: c.register_calendar("X", "Asia/Atlantis"), "time_zone"),
    ("empty time zone", lambda c: c.register_calendar("X", ""), "time_zone"),
    ("malformed holiday", lambda c: c.register_calendar("X", "UTC", ["2025-02-30"]), "holidays[0]"),
    ("duplicate holiday", lambda c: c.register_calendar("X", "UTC", ["2025-12-25", "2025-12-25"]), "holidays[1]"),
    ("weekend day 8", lambda c: c.register_calendar("X", "UTC", weekend_days=[8]), "weekend_days[0]"),
    ("SetHolidays malformed", lambda c: c.set_holidays("DESK", ["25/12/2025"]), "holidays[0]"),
    ("SetHolidays duplicate", lambda c: c.set_holidays("DESK", ["2025-12-25", "2025-12-25"]), "holidays[1]"),
    ("malformed close date", lambda c: c.close_dealing_day("DESK", "2025-6-18"), "date"),
    ("CreateFund cut-off", lambda c: c.create_fund(*OTHER_FUND, calendar_id="DESK", dealing_cutoff="25:00"),
     "dealing_cutoff"),
    ("UpdateFund cut-off", lambda c: c.update_fund(FUND, dealing_cutoff="4pm"), "dealing_cutoff"),
    ("create settlement days 31", lambda c: c.create_fund(*OTHER_FUND, calendar_id="DESK",
                                                          create_settlement_days=31), "create_settlement_days"),
    ("redeem settlement days -1", lambda c: c.update_fund(FUND, redeem_settlement_days=-1),
     "redeem_settlement_days"),
    ("create settlement days -1", lambda c: c.update_fund(FUND, create_settlement_days=-1),
     "create_settlement_days"),
    ("redeem settlement days 31", lambda c: c.create_fund(*OTHER_FUND, calendar_id="DESK",
                                                          redeem_settlement_days=31), "redeem_settlement_days"),
    ("CreateFund FORWARD without a calendar", lambda c: c.create_fund(*OTHER_FUND, pricing="FORWARD"), "pricing"),
    ("UpdateFund FORWARD without a calendar", lambda c: c.update_fund(FUND2, pricing="FORWARD"), "pricing"),
    ("calendar removed from a FORWARD fund", lambda c: c.update_fund(FUND, calendar_id=""), "pricing"),
    ("StrikeNav malformed date", lambda c: c.strike_nav(FUND, "16/06/2025", EARLY), "dealing_date"),
    ("StrikeNav a tick missing", lambda c: c.strike_nav(FUND, MONDAY, EARLY[:1]), "ticks"),
    ("StrikeNav malformed price", lambda c: c.strike_nav(FUND, MONDAY, [EARLY[0], Tick("ETH", "USD", "3.4e3", T0)]),
     "ticks[1].price"),
    ("AdvanceClock back", lambda c: c.advance_clock(T0 - 1), "to_unix_ms"),
    ("AdvanceClock to now", lambda c: c.advance_clock(T0), "to_unix_ms"),
]


@pytest.mark.parametrize(("call", "field"), [(call, f) for _, call, f in BAD_INPUT],
                         ids=[name for name, _, _ in BAD_INPUT])
def test_bad_input_names_the_field_and_changes_nothing(desk: Desk, call: Callable[[EtfClient], object],
                                                       field: str) -> None:
    details = unchanged(desk, lambda: call(desk.issuer), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"{field}:"), details


@pytest.mark.parametrize(("call", "field"), [
    (lambda c: c.get_official_nav(FUND, "2025-13-01"), "dealing_date"),
    (lambda c: c.get_pcf(FUND, "tomorrow"), "dealing_date"),
    (lambda c: c.list_official_navs(FUND, "2025-06"), "from_date"),
    (lambda c: c.list_official_navs(FUND, "", "2025-06-32"), "to_date"),
], ids=["GetOfficialNav", "GetPcf", "ListOfficialNavs from", "ListOfficialNavs to"])
def test_reads_name_a_malformed_date(desk: Desk, call: Callable[[EtfClient], object], field: str) -> None:
    assert refused(lambda: call(desk.observer), grpc.StatusCode.INVALID_ARGUMENT).startswith(f"{field}:")


def test_unknown_calendar_and_missing_figures_are_not_found(desk: Desk) -> None:
    issuer, missing = desk.issuer, grpc.StatusCode.NOT_FOUND
    assert "NOPE" in unchanged(desk, lambda: issuer.create_fund(*OTHER_FUND, calendar_id="NOPE"), missing)
    assert "NOPE" in unchanged(desk, lambda: issuer.update_fund(FUND2, calendar_id="NOPE"), missing)
    unchanged(desk, lambda: issuer.set_holidays("NOPE", []), missing)
    unchanged(desk, lambda: issuer.close_dealing_day("NOPE", WEDNESDAY), missing)
    refused(lambda: issuer.get_calendar("NOPE"), missing)
    unchanged(desk, lambda: issuer.strike_nav("F9", MONDAY, EARLY), missing)
    refused(lambda: issuer.get_official_nav(FUND, MONDAY), missing)  # not struck yet
    refused(lambda: issuer.get_pcf(FUND, TUESDAY), missing)
    refused(lambda: issuer.get_official_nav("F9", MONDAY), missing)
    refused(lambda: desk.ap1.list_official_navs("F9"), missing)  # an unknown fund first, as GetNav
    assert issuer.list_official_navs(FUND) == []


# == the test clock ====================================================================================
def test_advance_clock_is_refused_when_test_clock_is_off(tmp_path: Path) -> None:
    with serving(tmp_path, Clock(), test_clock=False) as d:
        details = refused(lambda: d.issuer.advance_clock(T0 + HOUR), grpc.StatusCode.FAILED_PRECONDITION)
        assert "test_clock is off" in details
        assert d.issuer.get_leader().test_clock is False
        assert d.ap1.get_leader().test_clock is False
        refused(lambda: d.observer.advance_clock(T0 + HOUR), grpc.StatusCode.PERMISSION_DENIED)


def test_advance_clock_moves_the_engines_time_forward_only(desk: Desk) -> None:
    assert desk.observer.get_leader().test_clock is True
    for client in (desk.observer, desk.ap1):
        unchanged(desk, lambda c=client: c.advance_clock(T0 + HOUR), grpc.StatusCode.PERMISSION_DENIED)
    assert desk.issuer.advance_clock(T0 + HOUR) == T0 + HOUR
    unchanged(desk, lambda: desk.issuer.advance_clock(T0 + HOUR), grpc.StatusCode.INVALID_ARGUMENT)
    desk.clock.now += 5_000  # the wall moves on: the engine keeps its lead
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "clock-1")
    assert order.created_at == T0 + HOUR + 5_000
    details = unchanged(desk, lambda: desk.issuer.advance_clock(T0 + HOUR), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith("to_unix_ms:")


# == a FORWARD fund through its dealing day ===========================================================
def test_forward_fund_through_the_dealing_day_and_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    with serving(tmp_path, clock) as desk:
        load_sample(desk.issuer)
        forward_fund(desk.issuer)
        struck, pcf, orders = dealing_day(desk)
        after_strike = desk.ap1.submit_order(FUND, "CREATE", 1, "day-4")  # at the cut-off: Tuesday's
        assert (after_strike.dealing_date, after_strike.priced, after_strike.created_at) == (
            TUESDAY, False, MONDAY_CUTOFF)
        before = {o: desk.observer.get_order(o) for o in [*orders, after_strike.order_id]}
        calendar_before = desk.observer.get_calendar("DESK")

    # A restart (the engine's clean stop wrote a snapshot): the same dates, official NAV, PCF and orders,
    # and the clock still ahead of the wall by the journaled offset while the wall moves on.
    clock.now += HOUR
    with serving(tmp_path, clock) as d:
        assert d.observer.get_official_nav(FUND, MONDAY) == struck.nav
        assert d.ap1.list_official_navs(FUND) == [struck.nav]
        assert d.ap1.get_pcf(FUND, TUESDAY) == pcf
        assert {o: d.observer.get_order(o) for o in before} == before
        assert d.observer.get_calendar("DESK") == calendar_before
        assert d.issuer.get_leader().test_clock is True
        later = d.ap1.submit_order(FUND, "CREATE", 1, "day-5")
        assert (later.created_at, later.dealing_date) == (MONDAY_CUTOFF + HOUR, TUESDAY)
        refused(lambda: d.issuer.advance_clock(MONDAY_CUTOFF + HOUR), grpc.StatusCode.INVALID_ARGUMENT)

    # Without test_clock the journaled offset no longer counts, and time still never runs back.
    with serving(tmp_path, clock, test_clock=False) as d:
        assert d.observer.get_official_nav(FUND, MONDAY) == struck.nav
        assert d.issuer.get_leader().test_clock is False
        refused(lambda: d.issuer.advance_clock(MONDAY_CUTOFF + 2 * HOUR), grpc.StatusCode.FAILED_PRECONDITION)
        assert d.ap1.submit_order(FUND, "CREATE", 1, "day-6").created_at >= later.created_at


def dealing_day(desk: Desk) -> tuple[Any, Any, list[str]]:
    """Monday for F1: two FORWARD creations and a rejection before the cut-off, refused settlement and
    strike, the clock to the cut-off, the strike, the priced orders, the reads, one settlement."""
    issuer, ap1, ap2, observer = desk.issuer, desk.ap1, desk.ap2, desk.observer
    first = ap1.submit_order(FUND, "CREATE", 2, "day-1")
    assert (status_name(first.status), first.dealing_date, first.settlement_date) == ("ACCEPTED", MONDAY, TUESDAY)
    assert (first.priced, first.cash_amount, first.basket.cash_component, first.official_nav_per_share) == (
        False, "", "", "")
    assert first.basket.nav_per_share == "14.9063"  # the live basket at acceptance
    assert [(x.asset, x.quantity) for x in first.deliverables] == [("BTC", "10"), ("ETH", "150")]
    second = ap2.submit_order(FUND, "CREATE", 1, "day-2")
    rejected = ap1.submit_order(FUND, "CREATE", 21, "day-3")  # above max_units_per_order
    assert (status_name(rejected.status), rejected.reject_reason, rejected.dealing_date,
            rejected.settlement_date) == ("REJECTED", "ORDER_LIMIT_EXCEEDED", MONDAY, "")

    details = unchanged(desk, lambda: issuer.settle_order(first.order_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert details.startswith("NOT_PRICED"), details
    details = unchanged(desk, lambda: issuer.strike_nav(FUND, MONDAY, EARLY), grpc.StatusCode.FAILED_PRECONDITION)
    assert details.startswith("BEFORE_CUTOFF"), details

    assert issuer.advance_clock(MONDAY_CUTOFF) == MONDAY_CUTOFF
    struck = issuer.strike_nav(FUND, MONDAY, OFFICIAL)
    nav = struck.nav
    # NAV = 200 x 97000 + 3000 x 3400 + 125,000.00 cash = 29,725,000.00 over 2,000,000 shares
    assert (nav.fund_id, nav.dealing_date, nav.nav, nav.nav_per_share, nav.shares_outstanding, nav.cash,
            nav.struck_at) == (FUND, MONDAY, "29725000.00", "14.8625", 2_000_000, "125000.00", MONDAY_CUTOFF)
    assert [(x.asset, x.quantity, x.price, x.value) for x in nav.lines] == [
        ("BTC", "200", "97000", "19400000.00"), ("ETH", "3000", "3400", "10200000.00")]
    assert struck.priced_orders == 2
    # The PCF for Tuesday: 5 BTC + 75 ETH per 50,000-share unit; 743,125.00 - 740,000.00 = 3,125.00 cash
    pcf = struck.pcf
    assert (pcf.fund_id, pcf.dealing_date, pcf.creation_unit, pcf.estimated_cash_component, pcf.nav_per_unit,
            pcf.nav_per_share, pcf.shares_outstanding, pcf.published_at) == (
        FUND, TUESDAY, 50_000, "3125.00", "743125.00", "14.8625", 2_000_000, MONDAY_CUTOFF)
    assert [(x.asset, x.quantity_per_unit) for x in pcf.lines] == [("BTC", "5"), ("ETH", "75")]
    assert [(x.asset, x.price) for x in pcf.prices] == [("BTC", "97000"), ("ETH", "3400")]
    unchanged(desk, lambda: issuer.strike_nav(FUND, MONDAY, OFFICIAL), grpc.StatusCode.ALREADY_EXISTS)

    priced = observer.get_order(first.order_id)
    assert (priced.priced, priced.cash_amount, priced.basket.cash_component, priced.official_nav_per_share,
            priced.basket.nav_per_share, priced.updated_at) == (
        True, "6250.00", "3125.00", "14.8625", "14.9063", MONDAY_CUTOFF)
    assert ap2.get_order(second.order_id).cash_amount == "3125.00"
    assert not observer.get_order(rejected.order_id).priced  # a rejected FORWARD order is never priced

    # Every role that may read the fund reads the same figures; a participant only its eligible funds.
    for client in (issuer, observer, ap1, ap2):
        assert client.get_official_nav(FUND, MONDAY) == nav
        assert client.list_official_navs(FUND) == [nav]
        assert client.list_official_navs(FUND, MONDAY, MONDAY) == [nav]
        assert client.get_pcf(FUND, TUESDAY) == pcf
    assert issuer.list_official_navs(FUND, TUESDAY) == []
    assert issuer.list_official_navs(FUND, "", "2025-06-15") == []
    refused(lambda: issuer.get_pcf(FUND, MONDAY), grpc.StatusCode.NOT_FOUND)  # no strike before Monday
    outsider = desk.clients["ap-unregistered"]
    for call in (lambda: outsider.get_official_nav(FUND, MONDAY), lambda: outsider.list_official_navs(FUND),
                 lambda: outsider.get_pcf(FUND, TUESDAY)):
        refused(call, grpc.StatusCode.PERMISSION_DENIED)
    # AP-1 is not eligible for F2: PERMISSION_DENIED, not what F2 has or lacks on that date
    refused(lambda: ap1.get_official_nav(FUND2, MONDAY), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: ap1.get_pcf(FUND2, TUESDAY), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: ap1.list_official_navs(FUND2), grpc.StatusCode.PERMISSION_DENIED)

    settled = issuer.settle_order(first.order_id)
    assert (status_name(settled.status), settled.cash_amount) == ("SETTLED", "6250.00")
    live = observer.get_nav(FUND)
    assert (live.shares_outstanding, live.cash) == (2_100_000, "131250.00")
    return struck, pcf, [first.order_id, second.order_id, rejected.order_id]


# == on the real wall clock ==========================================================================
def test_forward_day_on_the_wall_clock(tmp_path: Path) -> None:
    """Dates from the server's own time: the cut-off 5-6 hours ahead of now (in UTC, every day a dealing
    day), orders dated by it, the clock advanced past it, the strike."""
    hour = datetime.now(UTC).hour
    cutoff_text = f"{(hour + 6) % 24:02d}:00"
    cal = calendar.Calendar("ALL", "UTC", frozenset(), frozenset())
    with serving(tmp_path, None) as desk:
        issuer = desk.issuer
        now_ms = time.time_ns() // 1_000_000
        issuer.register_asset("BTC", 8)
        issuer.register_custodian("C1", "Harbour Custody", "BVX101", "ACTIVE", now_ms // 1000 + 3650 * 86_400)
        issuer.register_participant("AP-1", "Alpha PD", ["F3"], 20, 100)
        issuer.register_calendar("ALL", "UTC", weekend_days=[])
        issuer.create_fund("F3", "Wall BTC", "USD", 10, "C1", ["C1"], [FundAssetTerms("BTC")],
                           initial_shares_outstanding=100, calendar_id="ALL", dealing_cutoff=cutoff_text,
                           create_settlement_days=0, pricing="FORWARD")
        issuer.adjust_holding("F3", "C1", "BTC", "10", "opening")
        issuer.adjust_cash("F3", "1000.00", "opening")
        issuer.publish_prices([Tick("BTC", "USD", "50000", now_ms)])

        order = desk.ap1.submit_order("F3", "CREATE", 3, "wall-1")
        day = calendar.dealing_date(cal, calendar.cutoff_seconds(cutoff_text + ":00"), order.created_at)
        assert (status_name(order.status), order.dealing_date, order.settlement_date, order.priced) == (
            "ACCEPTED", day.isoformat(), day.isoformat(), False)  # 0 settlement days: settles on the day
        cutoff_at = calendar.cutoff_ms(cal, day, calendar.cutoff_seconds(cutoff_text + ":00"))
        assert 5 * HOUR - 60_000 < cutoff_at - order.created_at <= 6 * HOUR
        fixing = [Tick("BTC", "USD", "60000", order.created_at)]
        assert refused(lambda: issuer.strike_nav("F3", day.isoformat(), fixing),
                       grpc.StatusCode.FAILED_PRECONDITION).startswith("BEFORE_CUTOFF")

        assert issuer.advance_clock(cutoff_at) == cutoff_at
        struck = issuer.strike_nav("F3", day.isoformat(), [Tick("BTC", "USD", "60000", cutoff_at)])
        # NAV = 10 x 60000 + 1000.00 = 601,000.00 over 100 shares; a unit of 10 shares holds 1 BTC:
        # cash component 60,100.00 - 60,000.00 = 100.00
        assert (struck.nav.nav, struck.nav.nav_per_share, struck.pcf.estimated_cash_component) == (
            "601000.00", "6010.0000", "100.00")
        assert struck.nav.struck_at >= cutoff_at
        priced = desk.ap1.get_order(order.order_id)
        assert (priced.priced, priced.cash_amount, priced.official_nav_per_share) == (True, "300.00", "6010.0000")
        assert status_name(issuer.settle_order(order.order_id).status) == "SETTLED"
        assert desk.ap1.get_pcf("F3", calendar.next_dealing_day(cal, day).isoformat()) == struck.pcf

