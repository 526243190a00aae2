"""The console's Reports panel (SPEC §21) in a real browser: headless Chromium from Debian's ``chromium``
package driven by Playwright (``executable_path``: never a downloaded browser), against a real server on
loopback with test_http_reports' books (F1 struck on Monday and Tuesday, breaks resolved, a creation
settled).

For the selected fund the panel offers each report the role may call as a CSV download (fetched with the
session's token, then saved from a Blob: the file is the CSV GET /reports/NAME.csv gives, which is the
gRPC reply's), and shows the daily report of a chosen dealing date on screen, its figures as GetNav's
are shown (exact, thousands separators). A participant is offered its own activity only, and the page
makes no call its role would be refused. The console's CSP holds: nothing is blocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api as playwright_api
from test_console import CHROMIUM, Session, percent
from test_console import browser as browser  # noqa: F401  (the fixture: one Chromium for the module)
from test_http_reports import books
from test_service import FUND, TOKENS, Desk
from test_service_books import serving_sample
from test_service_dealing_day import MONDAY, TUESDAY

from etf_engine.report_csv import report_csv
from etf_engine.table import figure

expect = playwright_api.expect
SUNDAY = "2025-06-15"


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    with serving_sample(tmp_path_factory.mktemp("console-reports"), books) as d:
        yield d


class Console(Session):
    """A signed-in session on the fund's page; what the browser logged as errors (a CSP violation is one)."""

    def __init__(self, browser: playwright_api.Browser, desk: Desk, who: str) -> None:
        super().__init__(browser, desk.server.http_url, TOKENS[who])
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.locator(f'#funds tr[data-fund="{FUND}"]').click(timeout=10_000)
        expect(self.page.locator("#fund")).to_be_visible()

    def figure_of(self, field: str) -> playwright_api.Locator:
        return self.page.locator(f'#daily-report tr[data-field="{field}"] td')

    def download(self, name: str) -> tuple[str, bytes]:
        with self.page.expect_download(timeout=10_000) as info:
            self.page.click(f'#report-links a[data-report="{name}"]')
        download = info.value
        return download.suggested_filename, Path(download.path()).read_bytes()


def test_chromium_is_installed() -> None:
    assert CHROMIUM, "Debian's chromium is missing: .ci/run installs it (apt-get install chromium)"


def test_the_daily_report_on_screen(desk: Desk, browser: playwright_api.Browser) -> None:  # noqa: F811
    s = Console(browser, desk, "observer")
    page = s.page
    expect(page.locator("#reports-box")).to_be_visible()
    expect(page.locator("#r-date option")).to_have_count(2, timeout=10_000)
    assert page.locator("#r-date option").all_inner_texts() == [TUESDAY, MONDAY]  # newest first, chosen
    tuesday = desk.observer.daily_report(FUND, TUESDAY)
    expect(page.locator("#daily-caption")).to_have_text(f"Daily report: {FUND}, dealing date {TUESDAY}")
    expect(s.figure_of("nav")).to_have_text(figure(tuesday.official_nav.nav), timeout=10_000)
    expect(s.figure_of("nav_per_share")).to_have_text(figure(tuesday.official_nav.nav_per_share))
    expect(s.figure_of("cash_component")).to_have_text(figure(tuesday.cash_component))
    expect(s.figure_of("shares_created")).to_have_text(f"{tuesday.shares_created:,}")
    assert tuesday.shares_created == 50_000  # the creation settled on Tuesday
    eth = next(r for r in tuesday.ratios if r.asset == "ETH")
    expect(s.figure_of("staking_ratio ETH")).to_have_text(f"{percent(eth.staking_ratio)} ({percent(eth.staking_cap)})")

    # another date, then a closing price: the premium or discount to the NAV per share
    page.select_option("#r-date", MONDAY)
    monday = desk.observer.daily_report(FUND, MONDAY)
    expect(page.locator("#daily-caption")).to_have_text(f"Daily report: {FUND}, dealing date {MONDAY}")
    expect(s.figure_of("nav")).to_have_text(figure(monday.official_nav.nav))
    expect(s.figure_of("shares_outstanding")).to_have_text(f"{monday.shares_outstanding:,}")
    page.fill("#r-closing", "14.95")
    page.dispatch_event("#r-closing", "change")
    priced = desk.observer.daily_report(FUND, MONDAY, closing_price="14.95")
    expect(s.figure_of("premium_discount")).to_have_text(percent(priced.premium_discount))
    expect(s.figure_of("closing_price")).to_have_text(figure(priced.closing_price))
    assert s.refused == [] and s.errors == [], (s.refused, s.errors)
    s.context.close()


def test_a_download_is_the_reports_csv(desk: Desk, browser: playwright_api.Browser) -> None:  # noqa: F811
    s = Console(browser, desk, "observer")
    page = s.page
    expect(page.locator("#report-links a")).to_have_count(6, timeout=10_000)
    assert page.locator("#report-links a").all_inner_texts() == [
        "daily.csv", "holdings.csv", "roll-forward.csv", "staking.csv", "breaks.csv", "participant-activity.csv"]
    expect(page.locator("#r-date option")).to_have_count(2, timeout=10_000)

    name, body = s.download("daily")
    assert name == f"daily-{FUND}-{TUESDAY}.csv"
    assert body == report_csv(desk.observer.daily_report(FUND, TUESDAY)).encode()

    # the period: from the first official NAV's date to the engine's date, or as chosen
    assert page.input_value("#r-from") == MONDAY
    page.fill("#r-from", SUNDAY)
    page.fill("#r-to", TUESDAY)
    name, body = s.download("roll-forward")
    assert name == f"roll-forward-{FUND}-{SUNDAY}_{TUESDAY}.csv"
    assert body == report_csv(desk.observer.roll_forward(FUND, SUNDAY, TUESDAY)).encode()
    name, body = s.download("breaks")
    assert body == report_csv(desk.observer.break_report(FUND, SUNDAY, TUESDAY)).encode()
    assert b'"held back, ""per"" the custodian\nletter 7, line 2"' in body

    # a refusal is said on the page, not saved
    page.fill("#r-from", TUESDAY)
    page.fill("#r-to", MONDAY)
    page.click('#report-links a[data-report="staking"]')
    expect(page.locator("#report-error")).to_contain_text("staking.csv: HTTP 400: INVALID_ARGUMENT: ", timeout=10_000)
    assert all(e.startswith("Failed to load resource: the server responded with a status of 400") for e in s.errors)
    assert [status for status, _url in s.refused] == [400]
    s.context.close()


def test_a_participant_is_offered_its_own_activity(desk: Desk, browser: playwright_api.Browser) -> None:  # noqa: F811
    s = Console(browser, desk, "ap2")
    page = s.page
    expect(page.locator("#report-links a")).to_have_count(1, timeout=10_000)
    assert page.locator("#report-links a").inner_text() == "participant-activity.csv"
    page.fill("#r-from", SUNDAY)
    page.fill("#r-to", TUESDAY)
    name, body = s.download("participant-activity")
    assert name == f"participant-activity-{FUND}-{SUNDAY}_{TUESDAY}.csv"
    ap2 = desk.clients["ap2"].participant_activity(FUND, SUNDAY, TUESDAY)
    assert body == report_csv(ap2).encode() and b"AP-2" in body and b"AP-1" not in body
    assert page.locator("#daily-report tr").count() == 0  # DailyReport is not the participant's
    page.wait_for_timeout(300)
    assert s.refused == [] and s.errors == [], (s.refused, s.errors)
    assert not {p for p in s.requests if p.startswith("/etf_engine.v1.Reports/")}
    s.context.close()
