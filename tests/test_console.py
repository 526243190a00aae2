"""The operations console in a real browser: headless Chromium from Debian's ``chromium`` package, driven
by Playwright (``executable_path``: never a downloaded browser), against a real server on loopback.

The test enters an observer token, checks that the NAV shown equals GetNav, publishes a price and sees
the NAV change without a reload, opens the fund's order blotter and filters it, reloads without being
asked for the token again, and checks that no request left 127.0.0.1.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from playwright import sync_api as playwright_api
from test_service import FUND, TOKENS, Clock, Desk, config, load_sample

from etf_engine.api.server import BackgroundServer
from etf_engine.client import Tick
from etf_engine.table import figure  # the console formats as the CLI does

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
