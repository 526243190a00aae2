"""The operations console in a real browser: headless Chromium from Debian's ``chromium`` package, driven
by Playwright (``executable_path``: never a downloaded browser), against a real server on loopback.

The test enters an observer token, checks that the NAV shown equals GetNav, publishes a price and sees
the NAV change without a reload, opens the fund's order blotter and filters it, reloads without being
asked for the token again, and checks that no request left 127.0.0.1.

As an operations person reads it (issue 19), for each role: who is signed in; shares outstanding and
cash beside the NAV; the price age on the engine's clock (the tests' engine runs on a fixed 2025 time,
so the browser's clock would make every price a year old); no call the role cannot make (not one 401 or
403, every request in what WhoAmI says the role may call); the gauges labelled as a cap (maximum) and a
buffer (minimum), red with a BREACH flag once the cap is breached; order timestamps, client order id and
fee in the blotter; capacity only for a participant; and the official NAV chart with its axes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlparse

import pytest
from playwright import sync_api as playwright_api
from test_service import FUND, TOKENS, Clock, Desk, config, load_sample
from test_service_dealing_day import MONDAY, MONDAY_CUTOFF, OFFICIAL, TUESDAY, forward_fund

from etf_engine.api.access import RULES
from etf_engine.api.server import BackgroundServer
from etf_engine.client import FundAssetTerms, Tick
from etf_engine.table import figure  # the console formats as the CLI does

DAY = 86_400_000

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    with BackgroundServer(config(http_listen="127.0.0.1:0"), clock=Clock()) as server:
        d = Desk(server, Clock())
        load_sample(d.issuer)
        d.ap1.submit_order(FUND, "CREATE", 1, "console-create")
        d.ap1.submit_order(FUND, "REDEEM", 1, "console-redeem")
        try:
            yield d
        finally:
            d.close()


def test_chromium_is_installed() -> None:
    assert CHROMIUM, "Debian's chromium is missing: .ci/run installs it (apt-get install chromium)"


def test_the_console_in_a_browser(desk: Desk) -> None:
    requests: list[str] = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.goto(desk.server.http_url + "/")
        page.fill("#token", TOKENS["observer"])
        page.click("button[type=submit]")
        nav_cell = page.locator(f'#funds tr[data-fund="{FUND}"] .nav')
        expected = figure(desk.issuer.get_nav(FUND).nav)
        playwright_api.expect(nav_cell).to_have_text(expected, timeout=10_000)

        # a new price: the NAV on the page follows without a reload (the stream)
        desk.issuer.publish_prices([Tick("BTC", "USD", "98000", desk.clock() - 500)])
        moved = figure(desk.issuer.get_nav(FUND).nav)
        assert moved != expected
        playwright_api.expect(nav_cell).to_have_text(moved, timeout=10_000)

        # the blotter, filtered
        page.click(f'#funds tr[data-fund="{FUND}"]')
        rows = page.locator("#orders tbody tr")
        playwright_api.expect(rows).to_have_count(2, timeout=10_000)
        page.select_option("#f-side", "REDEEM")
        playwright_api.expect(rows).to_have_count(1)
        assert "REDEEM" in rows.first.inner_text()
        page.fill("#f-participant", "AP-2")
        playwright_api.expect(rows).to_have_count(0)

        # a reload keeps the session's token
        page.reload()
        playwright_api.expect(nav_cell).to_have_text(moved, timeout=10_000)
        assert page.locator("#login").is_hidden()
        browser.close()
    assert requests and {urlparse(u).hostname for u in requests} == {"127.0.0.1"}, set(requests)


# == as an operations person reads it (issue 19) =======================================================
class Session:
    """One browser context signed in with one token; every request and every answer it saw."""

    def __init__(self, browser: playwright_api.Browser, url: str, token: str) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self.page.on("request", lambda r: self.requests.append(urlparse(r.url).path))
        self.page.on("response", lambda r: r.status >= 400 and self.refused.append((r.status, r.url)))
        self.page.goto(url + "/")
        self.page.fill("#token", token)
        self.page.click("button[type=submit]")

    def rpcs(self) -> set[str]:
        return {path for path in self.requests if path.startswith("/etf_engine.v1.")}


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_api.Browser]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def percent(fraction: str) -> str:
    return f"{Decimal(fraction) * 100:.2f}%"


def allowed(role: str) -> set[str]:
    return {path for path, rule in RULES.items() if role in rule.roles}


@pytest.mark.parametrize(("who", "principal", "role"), [
    ("observer", "auditor", "observer"), ("issuer", "ops", "issuer"), ("ap1", "ap1", "participant")])
def test_each_role_sees_its_page_and_makes_no_call_it_cannot(desk: Desk, browser: playwright_api.Browser, who: str,
                                                               principal: str, role: str) -> None:
    s = Session(browser, desk.server.http_url, TOKENS[who])
    page, expect = s.page, playwright_api.expect
    expect(page.locator("#who")).to_contain_text(f"Signed in as {principal} ({role}", timeout=10_000)
    row = page.locator(f'#funds tr[data-fund="{FUND}"]')
    nav = desk.issuer.get_nav(FUND)
    expect(row.locator(".shares")).to_have_text(f"{nav.shares_outstanding:,}", timeout=10_000)
    expect(row.locator(".cash")).to_have_text(figure(nav.cash))
    expect(row.locator(".stale-flag")).to_have_text("fresh")
    # the price age on the engine's clock (fixed at T0 here): seconds, not the year since 2025-06-15
    age = row.locator(".age").inner_text()
    assert re.fullmatch(r"\d+ s", age) and int(age.split()[0]) < 60, age
    expect(page.locator("#clock")).to_contain_text("engine clock 2025-06-15")

    row.click()
    first = page.locator("#orders tbody tr").first
    expect(first).to_contain_text("console-create", timeout=10_000)  # client order id
    order = desk.issuer.list_orders(FUND)[0]
    cells = first.locator("td").all_inner_texts()
    assert cells[1] == "console-create" and figure(order.fee) in cells and "2025-06-15 15:06:40Z" in cells, cells
    if role == "participant":
        expect(page.locator("#capacity-box")).to_be_visible()
        expect(page.locator("#capacity tbody tr")).to_have_count(2, timeout=10_000)
        expect(page.locator("#holdings-note")).to_contain_text("issuers and observers")
    else:
        expect(page.locator("#gauges .gauge")).to_have_count(4, timeout=10_000)  # BTC, ETH: a cap and a buffer each
        expect(page.locator("#capacity-box")).to_be_hidden()
        eth = next(a for a in desk.issuer.get_holdings(FUND).assets if a.asset == "ETH")
        expect(page.locator('#gauges .gauge.cap[data-asset="ETH"]')).to_contain_text(
            f"ETH staked / committed: {percent(eth.illiquid_ratio)} — cap (maximum) 30.00%")
        expect(page.locator('#gauges .gauge.buffer[data-asset="ETH"]')).to_contain_text(
            f"ETH liquid / committed: {percent(eth.liquid_ratio)} — buffer (minimum) 10.00%")
        assert page.locator("#gauges .breach").count() == 0
        expect(page.locator("#participants tbody tr")).to_have_count(2)
    page.wait_for_timeout(500)  # let the page's calls of the fund settle
    assert s.refused == [], s.refused
    assert s.rpcs() <= allowed(role), s.rpcs() - allowed(role)
    assert "/etf_engine.v1.Diagnostics/WhoAmI" in s.rpcs() and "/etf_engine.v1.Diagnostics/GetLeader" in s.rpcs()
    s.context.close()


def test_a_breached_cap_turns_red(desk: Desk, browser: playwright_api.Browser) -> None:
    s = Session(browser, desk.server.http_url, TOKENS["observer"])
    s.page.locator(f'#funds tr[data-fund="{FUND}"]').click(timeout=10_000)
    cap = s.page.locator('#gauges .gauge.cap[data-asset="ETH"]')
    playwright_api.expect(cap).to_contain_text("cap (maximum) 30.00%", timeout=10_000)
    desk.issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", "0.20", "0.10", 604_800, "75")])
    try:  # the fund's NAV stream tells the page, which reads the holdings again
        playwright_api.expect(cap).to_have_class(re.compile(r"\bbreach\b"), timeout=10_000)
        eth = next(a for a in desk.issuer.get_holdings(FUND).assets if a.asset == "ETH")
        playwright_api.expect(cap).to_contain_text(f"{percent(eth.illiquid_ratio)} — cap (maximum) 20.00% BREACH: "
                                                   "above the cap")
        assert cap.locator("rect.bar.breach").count() == 1
    finally:
        desk.issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", "0.30", "0.10", 604_800, "75")])
        s.context.close()


@pytest.fixture(scope="module")
def struck() -> Iterator[Desk]:
    """F1 forward priced on a calendar, its official NAV struck for two dealing days."""
    clock = Clock()
    with BackgroundServer(config(http_listen="127.0.0.1:0", test_clock=True), clock=clock) as server:
        d = Desk(server, clock)
        load_sample(d.issuer)
        forward_fund(d.issuer)
        d.issuer.advance_clock(MONDAY_CUTOFF)
        d.issuer.strike_nav(FUND, MONDAY, OFFICIAL)
        d.issuer.advance_clock(MONDAY_CUTOFF + DAY)
        d.issuer.strike_nav(FUND, TUESDAY, [Tick("BTC", "USD", "99000", MONDAY_CUTOFF + DAY),
                                            Tick("ETH", "USD", "3400", MONDAY_CUTOFF + DAY)])
        try:
            yield d
        finally:
            d.close()


def test_the_nav_chart_has_its_axes(struck: Desk, browser: playwright_api.Browser) -> None:
    navs = struck.observer.list_official_navs(FUND)
    assert [n.dealing_date for n in navs] == [MONDAY, TUESDAY]
    assert Decimal(navs[0].nav_per_share) < Decimal(navs[1].nav_per_share)
    s = Session(browser, struck.server.http_url, TOKENS["observer"])
    s.page.locator(f'#funds tr[data-fund="{FUND}"]').click(timeout=10_000)
    chart = s.page.locator("#history svg.chart")
    playwright_api.expect(chart).to_be_visible(timeout=10_000)
    assert chart.locator("line.x-axis").count() == 1 and chart.locator("line.y-axis").count() == 1
    assert chart.locator("text.x-tick").all_text_contents() == [MONDAY, TUESDAY]
    y_ticks = chart.locator("text.y-tick").all_text_contents()
    assert y_ticks[0] == figure(navs[0].nav_per_share) and y_ticks[-1] == figure(navs[1].nav_per_share), y_ticks
    assert set(chart.locator("text.axis-title").all_text_contents()) == {"dealing date", "NAV per share"}
    assert chart.locator("circle.point").count() == 2
    # the engine's clock is a day and more past T0: the header says so, and that it is a test clock
    playwright_api.expect(s.page.locator("#clock")).to_contain_text("engine clock 2025-06-17 08:00")
    playwright_api.expect(s.page.locator("#clock")).to_contain_text("test clock")
    assert s.refused == []
    s.context.close()
