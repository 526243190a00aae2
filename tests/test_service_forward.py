"""The dealing day over gRPC (SPEC §13, §16): a real server on loopback, its clock the test's.

The engine's clock is the test's ``Clock`` (T0 is Sunday 2025-06-15, 23:06:40 in Hong Kong), plus
the offset of Diagnostics.AdvanceClock where the config has ``test_clock = true``; nothing here
waits for a real cut-off, and the calendar's dates do not depend on the day the tests run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_service import FUND, T0, Clock, Desk, config, load_sample, make_ledger, refused

from etf_engine import calendar
from etf_engine.api.server import BackgroundServer
from etf_engine.client import FundAssetTerms, Tick, status_name

HK = calendar.Calendar("HK", "Asia/Hong_Kong", frozenset({date(2025, 6, 17)}), frozenset())
CUTOFF_16 = calendar.cutoff_ms(HK, date(2025, 6, 16), 16 * 3600)  # Monday 16:00 HKT
OFFICIAL = [Tick("BTC", "USD", "97000", CUTOFF_16), Tick("ETH", "USD", "3400", CUTOFF_16)]
EARLY = [Tick(t.asset, t.currency, t.price, T0) for t in OFFICIAL]  # the fixing's figures, timed at T0


def forward_fund(desk: Desk) -> None:
    """F1 on calendar HK (no weekend, 2025-06-17 a holiday), cut-off 16:00, FORWARD."""
    desk.issuer.register_calendar("HK", "Asia/Hong_Kong", ["2025-06-17"], weekend_days=[])
    desk.issuer.update_fund(FUND, calendar_id="HK", dealing_cutoff="16:00", pricing="FORWARD")


@contextmanager
def serving(data_dir: Path, clock: Clock, *, test_clock: bool = True) -> Iterator[Desk]:
    with BackgroundServer(config(data_dir=data_dir, test_clock=test_clock), ledger=make_ledger(),
                          clock=clock) as server:
        d = Desk(server, clock)
        try:
            yield d
        finally:
            d.close()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with serving(tmp_path, Clock()) as d:
        load_sample(d.issuer)
        forward_fund(d)
        yield d


def test_forward_order_waits_for_the_strike_then_settles(tmp_path: Path) -> None:
    clock = Clock()
    with serving(tmp_path, clock) as desk:
        load_sample(desk.issuer)
        forward_fund(desk)
        struck, pcf, order_id = forward_day(desk)
    # A restart: the same dates, official NAV and PCF from the journal, and the clock still ahead.
    with serving(tmp_path, clock) as d:
        assert d.observer.get_official_nav(FUND, "2025-06-16") == struck.nav
        assert d.ap1.get_pcf(FUND, "2025-06-18") == pcf
        after = d.observer.get_order(order_id)
        assert (after.dealing_date, after.settlement_date, after.cash_amount) == ("2025-06-16", "2025-06-19", "6250.00")
        refused(lambda: d.issuer.advance_clock(CUTOFF_16), grpc.StatusCode.INVALID_ARGUMENT)
        later = d.ap1.submit_order(FUND, "CREATE", 1, "fwd-2")  # after Monday's cut-off: Wednesday
        assert later.dealing_date == "2025-06-18"


def forward_day(desk: Desk) -> tuple[Any, Any, str]:
    """A FORWARD creation through its dealing day: refused until struck, priced by the strike, settled."""
    issuer, ap1, observer = desk.issuer, desk.ap1, desk.observer
    order = ap1.submit_order(FUND, "CREATE", 2, "fwd-1")
    # After Sunday's cut-off: dealt Monday; T+2 dealing days skips the Tuesday holiday.
    assert (status_name(order.status), order.dealing_date, order.settlement_date) == (
        "ACCEPTED", "2025-06-16", "2025-06-19")
    assert (order.priced, order.cash_amount, order.basket.cash_component) == (False, "", "")
    assert order.basket.nav_per_share == "14.9063"  # the live basket at acceptance, kept

    before = desk.state()
    assert refused(lambda: issuer.settle_order(order.order_id),
                   grpc.StatusCode.FAILED_PRECONDITION).startswith("NOT_PRICED")
    assert refused(lambda: issuer.strike_nav(FUND, "2025-06-16", EARLY),
                   grpc.StatusCode.FAILED_PRECONDITION).startswith("BEFORE_CUTOFF")
    assert desk.state() == before

    assert issuer.advance_clock(CUTOFF_16) == CUTOFF_16
    refused(lambda: issuer.advance_clock(CUTOFF_16 - 1), grpc.StatusCode.INVALID_ARGUMENT)
    assert issuer.get_leader().test_clock is True

    struck = issuer.strike_nav(FUND, "2025-06-16", OFFICIAL)
    # NAV = 200 x 97000 + 3000 x 3400 + 125000 = 29,725,000.00; / 2,000,000 shares = 14.8625
    assert (struck.nav.nav, struck.nav.nav_per_share, struck.priced_orders) == ("29725000.00", "14.8625", 1)
    assert [(x.asset, x.quantity, x.price, x.value) for x in struck.nav.lines] == [
        ("BTC", "200", "97000", "19400000.00"), ("ETH", "3000", "3400", "10200000.00")]
    # NAV per unit 743,125.00 - (5 x 97000 + 75 x 3400 = 740,000.00) = 3,125.00; the next dealing day is
    # Wednesday (Tuesday is a holiday)
    pcf = ap1.get_pcf(FUND, "2025-06-18")
    assert (pcf.estimated_cash_component, pcf.nav_per_unit, pcf.nav_per_share) == ("3125.00", "743125.00", "14.8625")
    assert [(x.asset, x.quantity_per_unit) for x in pcf.lines] == [("BTC", "5"), ("ETH", "75")]
    assert [(x.asset, x.price) for x in pcf.prices] == [("BTC", "97000"), ("ETH", "3400")]

    priced = observer.get_order(order.order_id)
    assert (priced.priced, priced.cash_amount, priced.basket.cash_component, priced.official_nav_per_share) == (
        True, "6250.00", "3125.00", "14.8625")
    assert observer.get_official_nav(FUND, "2025-06-16") == struck.nav
    assert ap1.list_official_navs(FUND, "2025-06-16", "2025-06-16") == [struck.nav]
    assert ap1.list_official_navs(FUND, "2025-06-17") == []
    refused(lambda: issuer.strike_nav(FUND, "2025-06-16", OFFICIAL), grpc.StatusCode.ALREADY_EXISTS)
    assert status_name(issuer.settle_order(order.order_id).status) == "SETTLED"
    nav = observer.get_nav(FUND)
    assert (nav.shares_outstanding, nav.cash) == (2_100_000, "131250.00")

    return struck, pcf, order.order_id


def test_roles_of_the_dealing_day_rpcs(desk: Desk) -> None:
    ap1, observer, issuer = desk.ap1, desk.observer, desk.issuer
    denied = grpc.StatusCode.PERMISSION_DENIED
    refused(lambda: ap1.register_calendar("X", "UTC"), denied)
    refused(lambda: observer.set_holidays("HK", []), denied)
    refused(lambda: ap1.close_dealing_day("HK", "2025-06-18"), denied)
    refused(lambda: observer.strike_nav(FUND, "2025-06-16", OFFICIAL), denied)
    refused(lambda: ap1.get_calendar("HK"), denied)
    refused(lambda: ap1.advance_clock(CUTOFF_16), denied)
    refused(lambda: observer.advance_clock(CUTOFF_16), denied)
    info = observer.get_calendar("HK")
    assert (info.time_zone, list(info.holidays), list(info.weekend_days)) == ("Asia/Hong_Kong", ["2025-06-17"], [])
    # a participant reads the official NAV of its eligible funds only (AP-X is not registered)
    refused(lambda: desk.clients["ap-unregistered"].list_official_navs(FUND), denied)
    refused(lambda: ap1.get_official_nav(FUND, "2025-06-16"), grpc.StatusCode.NOT_FOUND)
    issuer.close_dealing_day("HK", "2025-06-18", "typhoon signal no. 8")
    assert [(c.date, c.reason) for c in issuer.get_calendar("HK").closed] == [("2025-06-18", "typhoon signal no. 8")]


@pytest.mark.parametrize(("call", "field"), [
    (lambda c: c.register_calendar("X", "Asia/Atlantis"), "time_zone"),
    (lambda c: c.register_calendar("X", "UTC", ["2025-13-01"]), "holidays[0]"),
    (lambda c: c.register_calendar("X", "UTC", ["2025-12-25", "2025-12-25"]), "holidays[1]"),
    (lambda c: c.register_calendar("X", "UTC", weekend_days=[6, 6]), "weekend_days[1]"),
    (lambda c: c.close_dealing_day("HK", "18/06/2025"), "date"),
    (lambda c: c.update_fund(FUND, dealing_cutoff="4pm"), "dealing_cutoff"),
    (lambda c: c.update_fund(FUND, create_settlement_days=31), "create_settlement_days"),
    (lambda c: c.update_fund(FUND, redeem_settlement_days=-1), "redeem_settlement_days"),
    (lambda c: c.update_fund(FUND, calendar_id=""), "pricing"),  # FORWARD needs a calendar
    (lambda c: c.strike_nav(FUND, "2025-06-16", EARLY[:1]), "ticks"),
    (lambda c: c.strike_nav(FUND, "2025-06-16", [*EARLY, Tick("SOL", "USD", "1", 0)]), "ticks[2].asset"),
    (lambda c: c.strike_nav(FUND, "2025-06-16", [Tick("BTC", "HKD", "1", 0), EARLY[1]]), "ticks[0].currency"),
    (lambda c: c.strike_nav(FUND, "2025-06-16", [Tick("BTC", "USD", "1.5e3", 0), EARLY[1]]), "ticks[0].price"),
    (lambda c: c.strike_nav(FUND, "2025-06-16", OFFICIAL), "ticks[0].as_of_unix_ms"),  # hours ahead of now
])
def test_bad_input_names_the_field_and_changes_nothing(desk: Desk, call, field: str) -> None:
    before = desk.state()
    details = refused(lambda: call(desk.issuer), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"{field}:"), details
    assert desk.state() == before


def test_unknown_calendar_is_not_found(desk: Desk) -> None:
    before = desk.state()
    refused(lambda: desk.issuer.create_fund("F9", "x", "USD", 10, "C1", ["C1"], [FundAssetTerms("BTC")],
                                            calendar_id="NOPE"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.issuer.set_holidays("NOPE", []), grpc.StatusCode.NOT_FOUND)
    assert desk.state() == before


def test_advance_clock_needs_test_clock(tmp_path: Path) -> None:
    with serving(tmp_path, Clock(), test_clock=False) as d:
        details = refused(lambda: d.issuer.advance_clock(T0 + 1), grpc.StatusCode.FAILED_PRECONDITION)
        assert "test_clock" in details
        assert d.issuer.get_leader().test_clock is False
