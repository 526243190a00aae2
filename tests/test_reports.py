"""The Reports service (SPEC §21, §22) over the wire: the real server on loopback, spoken to over gRPC.

Every expected figure is computed here, by hand, from the commands the test sent (with ``fractions`` and
Python's own half-even ``round``), never by etf_engine.reports. The sample fund F1 (tests/test_service.py:
200 BTC, 3,000 ETH of which 895 staked, 125,000.00 cash, 2,000,000 shares, unit 50,000, live prices BTC
97,250 and ETH 3,412.55) is put on the calendar DESK (Hong Kong, every day a dealing day) by each scenario;
the test clock starts at T0, Sunday 2025-06-15 23:06:40 in Hong Kong, after Sunday's cut-off, so Monday
2025-06-16 is the fund's first dealing day. Official prices: BTC 97,000 and ETH 3,400.

- **The roll-forward** (``rolled``): Monday a creation of 2 units and a redemption of 1 settled, a
  redemption cancelled and one rejected, a staking reward of 10 ETH gross at a staking fee of 18%, 0.5 ETH
  slashed, an AdjustHolding without a break, an AdjustCash, an Unstake and a Sweep (these two move
  nothing out of the balance), and the strike, whose fee is taken in kind in BTC; Tuesday a statement opens
  a break, an AdjustHolding names it, ResolveBreak adjusts it (four eyes), the strike takes the fee in kind
  again and PayFee pays some of it out of fee_payable (no movement of the balance); Wednesday the fee is
  switched to cash, struck and paid.
- **The daily report** (``dealt``): F1 FORWARD, creations settling on their dealing date, a management fee
  in cash, 3,806.50 more cash so that Monday's official NAV per share is 14.8640 (= 2^5 x 4645: a closing
  price can then sit exactly half-way between two 4 dp premiums), the holdings swept to cold but C1's BTC
  (a storage breach), a break opened Monday, an order left unsettled past its settlement date (overdue),
  Tuesday closed by a typhoon with an order on it (it moves to Wednesday).
- Holdings as of a time between two records; the refusals, each naming its field; a random walk of
  commands with roll-forwards over random periods, each checking to 0 and chaining to the next.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest
from conftest import hk
from test_service import FUND, FUND2, T0, TOKENS, Clock, Desk, config, load_sample, make_ledger, refused
from test_service import journal as journal  # the fixture: SQLite, and a shard of the PostgreSQL test cluster
from test_service_books import BTC_WALLET, serving_sample

from etf_engine import model as M
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, FundAssetTerms, StatementLine, Tick, instruction_status, status_name
from etf_engine.config import JournalConfig
from etf_engine.journal import SqliteJournal
from etf_engine.journal.history import select_records
from etf_engine.journal.sqlite import SqliteHistory
from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc
from tests.pg_cluster import pg_cluster as pg_cluster  # the fixture ``journal`` asks for

Code = grpc.StatusCode
SUN, MON, TUE, WED = "2025-06-15", "2025-06-16", "2025-06-17", "2025-06-18"
RATE = Fraction("0.0099")
P_BTC, P_ETH = 97_000, 3_400  # the official prices
U = 50_000  # F1's creation unit
KINDS = ["contributed", "redeemed", "fees", "rewards", "staking_fees", "slashed"]


# == figures, written by hand ==========================================================================
def qty(x: Fraction | int | str) -> str:
    """An exact quantity as the wire shows it: no trailing zeros ("204.75", "-0.0085201", "10")."""
    x = Fraction(x)
    with localcontext() as ctx:
        ctx.prec = 80
        text = format((Decimal(x.numerator) / Decimal(x.denominator)).normalize(), "f")
    return "0" if text in ("-0", "0") else text


def money(x: Fraction | int | str) -> str:
    """Money, 2 fraction digits, half-even."""
    return fixed(x, 2)


def fixed(x: Fraction | int | str, dp: int) -> str:
    value = round(Fraction(x), dp)  # Fraction's round is half-even
    with localcontext() as ctx:
        ctx.prec = 80
        return format(Decimal(value.numerator) / Decimal(value.denominator), f".{dp}f")


def fee(basis: Fraction, days: int = 1) -> Fraction:
    """SPEC §17: a day's charge is basis x rate / 365 (2025 is no leap year), the sum rounded to cents."""
    return round(basis * RATE * days / 365, 2)


def in_kind(accrued: Fraction) -> Fraction:
    """The BTC a strike takes for ``accrued`` at the official price: whole satoshis, rounded down."""
    return Fraction(int(accrued * 10**8 / P_BTC), 10**8)


# == the service =======================================================================================
class Reports:
    """The Reports service for one principal."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = rpc.ReportsStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    def call(self, method: str, **fields: Any) -> Any:
        stub_method = getattr(self.stub, method)
        request = getattr(pb, f"{method}Request")(**fields)
        return stub_method(request, metadata=self.metadata, timeout=30)

    def roll_forward(self, from_date: str, to_date: str, fund_id: str = FUND) -> pb.RollForwardReply:
        return self.call("RollForward", fund_id=fund_id, **{"from": from_date, "to": to_date})

    def daily(self, dealing_date: str, closing_price: str = "", fund_id: str = FUND) -> pb.DailyReportReply:
        return self.call("DailyReport", fund_id=fund_id, dealing_date=dealing_date, closing_price=closing_price)

    def holdings(self, as_of: int = 0, fund_id: str = FUND) -> pb.HoldingsReportReply:
        return self.call("HoldingsReport", fund_id=fund_id, as_of=as_of)

    def staking(self, from_date: str, to_date: str, as_of: int = 0, fund_id: str = FUND) -> pb.StakingReportReply:
        return self.call("StakingReport", fund_id=fund_id, as_of=as_of, **{"from": from_date, "to": to_date})

    def breaks(self, from_date: str, to_date: str, fund_id: str = FUND) -> pb.BreakReportReply:
        return self.call("BreakReport", fund_id=fund_id, **{"from": from_date, "to": to_date})

    def activity(self, from_date: str, to_date: str, participant_id: str = "",
                 fund_id: str = FUND) -> pb.ParticipantActivityReply:
        return self.call("ParticipantActivity", fund_id=fund_id, **{"from": from_date, "to": to_date},
                         participant_id=participant_id)

    def close(self) -> None:
        self.channel.close()


@contextmanager
def reporting(tmp_path: Path, prepare: Callable[[Desk], object],
              journal: JournalConfig | None = None) -> Iterator[tuple[Desk, dict[str, Reports]]]:
    """The sample funds on a server (test clock; a SQLite journal unless ``journal`` says otherwise),
    ``prepare``d, and a Reports client per principal."""
    with serving_sample(tmp_path, prepare, journal=journal or JournalConfig()) as desk:
        clients = {name: Reports(desk.target, token) for name, token in TOKENS.items()}
        try:
            yield desk, clients
        finally:
            for client in clients.values():
                client.close()


def at(desk: Desk, day: str, clock: str) -> int:
    """Move the engine's clock to ``clock`` in Hong Kong on ``day``; that time."""
    t = hk(day, clock)
    desk.issuer.advance_clock(t)
    return t


def live_prices(desk: Desk, t: int) -> None:
    desk.issuer.publish_prices([Tick("BTC", "USD", "97250", t), Tick("ETH", "USD", "3412.55", t)])


def official(t: int) -> list[Tick]:
    return [Tick("BTC", "USD", str(P_BTC), t), Tick("ETH", "USD", str(P_ETH), t)]


def approve(desk: Desk, reply: Any) -> None:
    """A call recorded under four eyes, approved by the second issuer principal."""
    assert reply.pending, reply
    done = desk.clients["issuer2"].approve_instruction(reply.instruction_id)
    assert instruction_status(done.status) == "EXECUTED", done.error


def view(reply: pb.RollForwardReply) -> list[tuple[Any, ...]]:
    return [(b.item, b.opening, [(m.kind, m.amount, m.reason, m.break_id, m.at) for m in b.movements], b.closing,
             b.check) for b in reply.balances]


def sums(movements: list[tuple[str, str, str, str, int]]) -> list[tuple[str, str]]:
    return [(kind, amount) for kind, amount, *_ in movements]


def rows(balance: tuple[Any, ...]) -> dict[str, str]:
    """A balance's movements that are not adjustments, by kind."""
    return {kind: amount for kind, amount, *_ in balance[2] if kind != "adjustment"}


# == R3: the roll-forward ==============================================================================
def in_kind_fund(desk: Desk) -> None:
    """F1 on DESK, a management fee of 0.99% a year taken in kind in BTC at C1, ETH rewards at a staking fee
    of 18%."""
    desk.issuer.register_calendar("DESK", "Asia/Hong_Kong", weekend_days=[])
    desk.issuer.update_fund(FUND, calendar_id="DESK", management_fee_rate="0.0099", fee_payment="IN_KIND",
                            fee_asset="BTC", fee_custodian_id="C1",
                            assets=[FundAssetTerms("ETH", "0.30", "0.10", 604_800, "75", "0.18")])


@pytest.fixture
def rolled(tmp_path: Path, journal: JournalConfig) -> Iterator[tuple[Desk, dict[str, Reports], dict[str, Any]]]:
    """The roll-forward scenario of the module's docstring, played on each journal backend; the figures worked
    out by hand."""
    with reporting(tmp_path, in_kind_fund, journal) as (desk, reports):
        issuer, ap1, ap2 = desk.issuer, desk.ap1, desk.ap2
        mon9 = at(desk, MON, "09:00")
        live_prices(desk, mon9)
        created = ap1.submit_order(FUND, "CREATE", 2, "rf-c1")
        # NAV 29,812,650.00: per unit 745,316.25 - (5 x 97,250 + 75 x 3,412.55 = 742,191.25) = 3,125.00
        assert (status_name(created.status), created.cash_amount) == ("ACCEPTED", "6250.00")
        assert [(d.asset, d.quantity) for d in created.deliverables] == [("BTC", "10"), ("ETH", "150")]
        issuer.settle_order(created.order_id)
        redeemed = ap2.submit_order(FUND, "REDEEM", 1, "rf-r1")
        # after it: NAV 31,303,282.50 over 2,100,000 shares, the same 745,316.25 per unit: 3,125.00 again
        assert (status_name(redeemed.status), redeemed.cash_amount) == ("ACCEPTED", "3125.00")
        assert [(x.custodian_id, x.asset, x.quantity) for x in redeemed.legs] == [("C1", "BTC", "5"),
                                                                                 ("C1", "ETH", "75")]
        issuer.settle_order(redeemed.order_id)
        ap1.cancel_order(ap1.submit_order(FUND, "REDEEM", 1, "rf-r2").order_id)
        assert status_name(ap1.submit_order(FUND, "REDEEM", 20, "rf-r3").status) == "REJECTED"

        mon10 = at(desk, MON, "10:00")
        issuer.record_staking_reward(FUND, "C1", "ETH", "10")  # 1.8 to the staking provider, 8.2 to the fund
        issuer.record_slashing(FUND, "C1", "ETH", "0.5")
        issuer.adjust_holding(FUND, "C2", "BTC", "-0.25", "recount")
        issuer.adjust_cash(FUND, "-100.00", "bank charge")
        issuer.unstake(FUND, "C1", "ETH", "5")
        issuer.sweep(FUND, "C2", "ETH", "100", "HOT", "COLD")

        btc = Fraction(200 + 10 - 5) - Fraction("0.25")  # 204.75
        eth = Fraction(3000 + 150 - 75) + Fraction("8.2") - Fraction("0.5")  # 3,082.7
        cash = Fraction(125_000 + 6_250 - 3_125 - 100)  # 128,025.00
        mon16 = at(desk, MON, "16:00")
        fee_mon = fee(btc * P_BTC + eth * P_ETH + cash)
        taken_mon = in_kind(fee_mon)
        accrued = fee_mon - taken_mon * P_BTC
        struck = issuer.strike_nav(FUND, MON, official(mon16)).nav
        assert (struck.fee, [(x.asset, x.quantity) for x in struck.fee_payable]) == (money(fee_mon),
                                                                                     [("BTC", qty(taken_mon))])

        tue10 = at(desk, TUE, "10:00")
        opened = issuer.record_statement(FUND, "C2", tue10, "ST-1", [StatementLine("BTC", "AVAILABLE", "49.70"),
                                                                    StatementLine("ETH", "AVAILABLE", "1000")])
        assert [(b.break_id, b.difference) for b in opened.opened] == [("BRK-00000001", "0.05")]
        issuer.adjust_holding(FUND, "C2", "BTC", "-0.03", "statement ST-1", break_id="BRK-00000001")
        approve(desk, issuer.resolve_break("BRK-00000001", "-0.02", "agreed with Kowloon Trust"))
        btc -= taken_mon + Fraction("0.05")
        tue16 = at(desk, TUE, "16:00")
        fee_tue = fee(btc * P_BTC + eth * P_ETH + cash - accrued)
        taken_tue = in_kind(accrued + fee_tue)
        accrued += fee_tue - taken_tue * P_BTC
        assert issuer.strike_nav(FUND, TUE, official(tue16)).nav.fee == money(fee_tue)
        at(desk, TUE, "16:30")
        approve(desk, issuer.pay_fee(FUND, asset="BTC", quantity=qty(taken_mon), tx_hash="fee-tx-1",
                                     to_address=BTC_WALLET))
        btc -= taken_tue

        at(desk, WED, "09:00")
        issuer.update_fund(FUND, fee_payment="CASH")
        wed16 = at(desk, WED, "16:00")
        fee_wed = fee(btc * P_BTC + eth * P_ETH + cash - accrued)
        assert issuer.strike_nav(FUND, WED, official(wed16)).nav.fee == money(fee_wed)
        now = at(desk, WED, "16:30")
        approve(desk, issuer.pay_fee(FUND, money(fee_wed)))
        figures = {"mon10": mon10, "tue10": tue10, "now": now, "taken_mon": taken_mon, "taken_tue": taken_tue,
                   "fee_wed": fee_wed, "btc": btc, "eth": eth, "cash": cash - fee_wed}
        yield desk, reports, figures


def test_a_roll_forward_through_every_kind_of_movement(rolled: Any) -> None:
    desk, reports, f = rolled
    got = view(reports["observer"].roll_forward(MON, WED))
    assert got == [
        ("BTC", "200", [("contributed", "10", "", "", 0), ("redeemed", "-5", "", "", 0),
                        ("fees", qty(-f["taken_mon"] - f["taken_tue"]), "", "", 0), ("rewards", "0", "", "", 0),
                        ("staking_fees", "0", "", "", 0), ("slashed", "0", "", "", 0),
                        ("adjustment", "-0.25", "recount", "", f["mon10"]),
                        ("adjustment", "-0.03", "statement ST-1", "BRK-00000001", f["tue10"]),
                        ("adjustment", "-0.02", "agreed with Kowloon Trust", "BRK-00000001", f["tue10"])],
         qty(f["btc"]), "0"),
        ("ETH", "3000", [("contributed", "150", "", "", 0), ("redeemed", "-75", "", "", 0), ("fees", "0", "", "", 0),
                         ("rewards", "10", "", "", 0), ("staking_fees", "-1.8", "", "", 0),
                         ("slashed", "-0.5", "", "", 0), ("adjustment", "0", "", "", 0)],
         "3082.7", "0"),
        ("CASH", "125000.00", [("cash_components", "3125.00", "", "", 0),
                               ("fees_paid", money(-f["fee_wed"]), "", "", 0),
                               ("adjustment", "-100.00", "", "", f["mon10"])],
         money(f["cash"]), "0.00"),
        ("SHARES", "2000000", [("initial", "0", "", "", 0), ("created", "100000", "", "", 0),
                               ("redeemed", "-50000", "", "", 0)], "2050000", "0"),
    ]
    # The closing balances are the fund's own figures now (fee_payable is outside the balance).
    holdings, nav = desk.observer.get_holdings(FUND), desk.observer.get_nav(FUND)
    assert [(a.asset, a.total) for a in holdings.assets] == [("BTC", got[0][3]), ("ETH", got[1][3])]
    assert [(x.asset, x.quantity) for x in holdings.fee_payable] == [("BTC", qty(f["taken_tue"]))]
    assert (nav.cash, nav.shares_outstanding) == (got[2][3], 2_050_000)
    # The issuer reads the same report; the period's dates come back as asked.
    same = reports["issuer"].roll_forward(MON, WED)
    assert (same.fund_id, getattr(same, "from"), same.to, view(same)) == (FUND, MON, WED, got)


def test_periods_chain_and_one_day_holds_that_days_movements(rolled: Any) -> None:
    desk, reports, f = rolled
    monday, rest, whole = (view(reports["observer"].roll_forward(a, b)) for a, b in ((MON, MON), (TUE, WED),
                                                                                       (MON, WED)))
    for first, second, both in zip(monday, rest, whole, strict=True):
        assert (first[1], first[3], second[1], second[3]) == (both[1], second[1], first[3], both[3])
        assert first[4] == second[4] == both[4] and set(first[4]) <= {"0", "."}
    btc, cash = monday[0], monday[2]
    assert sums(btc[2]) == [("contributed", "10"), ("redeemed", "-5"), ("fees", qty(-f["taken_mon"])),
                            ("rewards", "0"), ("staking_fees", "0"), ("slashed", "0"), ("adjustment", "-0.25")]
    assert btc[3] == qty(Fraction("204.75") - f["taken_mon"])
    assert sums(cash[2]) == [("cash_components", "3125.00"), ("fees_paid", "0.00"), ("adjustment", "-100.00")]
    assert cash[3] == "128025.00"
    assert rows(rest[0]) == {"contributed": "0", "redeemed": "0", "fees": qty(-f["taken_tue"]), "rewards": "0",
                             "staking_fees": "0", "slashed": "0"}


def test_a_period_from_the_funds_creation_and_one_before_it(rolled: Any) -> None:
    desk, reports, f = rolled
    created = view(reports["observer"].roll_forward(SUN, WED))  # F1 was created on Sunday, at T0
    assert [(b[0], b[1], b[4]) for b in created] == [("BTC", "0", "0"), ("ETH", "0", "0"), ("CASH", "0.00", "0.00"),
                                                    ("SHARES", "0", "0")]
    assert [m for m in created[0][2] if m[0] == "adjustment"][:2] == [("adjustment", "150", "opening", "", T0),
                                                                     ("adjustment", "50", "opening", "", T0)]
    assert [m for m in created[2][2] if m[0] == "adjustment"] == [("adjustment", "125000.00", "", "", T0),
                                                                 ("adjustment", "-100.00", "", "", f["mon10"])]
    assert sums(created[3][2]) == [("initial", "2000000"), ("created", "100000"), ("redeemed", "-50000")]
    assert created[0][3] == qty(f["btc"])

    before = view(reports["observer"].roll_forward("2025-06-01", "2025-06-14"))
    zero = [(k, "0", "", "", 0) for k in KINDS] + [("adjustment", "0", "", "", 0)]
    assert before == [
        ("BTC", "0", zero, "0", "0"), ("ETH", "0", zero, "0", "0"),
        ("CASH", "0.00", [(k, "0.00", "", "", 0) for k in ("cash_components", "fees_paid", "adjustment")], "0.00",
         "0.00"),
        ("SHARES", "0", [(k, "0", "", "", 0) for k in ("initial", "created", "redeemed")], "0", "0")]
    # A period still to come: the balance now, and nothing moves.
    ahead = view(reports["observer"].roll_forward("2025-07-01", "2025-07-31"))
    assert [(b[0], b[1], b[3], b[4]) for b in ahead] == [(b[0], b[3], b[3], b[4]) for b in view(
        reports["observer"].roll_forward(MON, WED))]
    assert all(m[1] in ("0", "0.00") for b in ahead for m in b[2])


def test_the_staking_report_of_the_period(rolled: Any) -> None:
    desk, reports, f = rolled
    report = reports["observer"].staking(MON, WED)
    assert report.as_of == f["now"]  # the end of Wednesday is still to come: now
    btc, eth = report.lines
    assert (btc.asset, btc.staked, btc.unbonding, list(btc.unbonding_lots), btc.staked_ratio, btc.staking_cap,
            btc.rewards_gross, btc.staking_fees, btc.rewards_net, btc.slashed) == (
        "BTC", "0", "0", [], "0.0000", "0.00", "0", "0", "0", "0")
    # 895 staked - 0.5 slashed - 5 unbonding; illiquid / committed = 894.5 / 3,082.7
    assert (eth.asset, eth.staked, eth.unbonding, eth.staked_ratio, eth.staking_cap) == (
        "ETH", "889.5", "5", fixed(Fraction("894.5") / f["eth"], 4), "0.30")
    assert [(x.custodian_id, x.quantity, x.release_at) for x in eth.unbonding_lots] == [
        ("C1", "5", f["mon10"] + 604_800_000)]
    assert (eth.rewards_gross, eth.staking_fees, eth.rewards_net, eth.slashed) == ("10", "1.8", "8.2", "0.5")
    # Positions as of Monday 09:30, before the unstake; the flows stay the period's.
    early = reports["issuer"].staking(MON, WED, hk(MON, "09:30")).lines[1]
    assert (early.staked, early.unbonding, list(early.unbonding_lots), early.rewards_gross) == ("895", "0", [], "10")
    assert [x.rewards_gross for x in reports["issuer"].staking(TUE, WED).lines] == ["0", "0"]


def test_the_break_report_of_a_period(rolled: Any) -> None:
    desk, reports, f = rolled
    lines = reports["observer"].breaks(MON, WED).breaks
    assert [(x.break_record.break_id, x.break_record.status, x.break_record.adjustment, x.age_dealing_days)
            for x in lines] == [("BRK-00000001", pb.BreakStatus.RESOLVED, "-0.02", 0)]
    assert lines[0].break_record == desk.observer.get_break("BRK-00000001")
    assert list(reports["observer"].breaks(MON, MON).breaks) == []  # not opened yet
    assert list(reports["observer"].breaks(WED, WED).breaks) == []  # resolved before the period


# == R1: the daily report ==============================================================================
def forward_fund(desk: Desk) -> None:
    """F1 FORWARD on DESK, creations settling on their dealing date, redemptions a day after, a management fee
    of 0.99% a year in cash; 3,806.50 more cash; every holding swept to cold but C1's BTC."""
    issuer = desk.issuer
    issuer.register_calendar("DESK", "Asia/Hong_Kong", weekend_days=[])
    issuer.update_fund(FUND, calendar_id="DESK", pricing="FORWARD", create_settlement_days=0,
                       redeem_settlement_days=1, management_fee_rate="0.0099")
    issuer.adjust_cash(FUND, "3806.50", "income")
    for custodian, asset, quantity in (("C2", "BTC", "50"), ("C2", "ETH", "1000"), ("C1", "ETH", "1105")):
        issuer.sweep(FUND, custodian, asset, quantity, "HOT", "COLD")


@pytest.fixture
def dealt(tmp_path: Path) -> Iterator[tuple[Desk, dict[str, Reports], dict[str, Any]]]:
    with reporting(tmp_path, forward_fund) as (desk, reports):
        issuer, ap1, ap2 = desk.issuer, desk.ap1, desk.ap2
        mon10 = at(desk, MON, "10:00")
        live_prices(desk, mon10)
        issuer.record_statement(FUND, "C2", mon10, "ST-M", [StatementLine("BTC", "AVAILABLE", "49.9"),
                                                           StatementLine("ETH", "AVAILABLE", "1000")])
        mon1 = ap1.submit_order(FUND, "CREATE", 2, "d-c1")
        mon2 = ap2.submit_order(FUND, "CREATE", 1, "d-c2")  # never settled: overdue from Tuesday on
        assert ap1.submit_order(FUND, "REDEEM", 25, "d-r1").reject_reason == "ORDER_LIMIT_EXCEEDED"
        mon16 = at(desk, MON, "16:00")
        issuer.strike_nav(FUND, MON, official(mon16))
        at(desk, MON, "17:00")
        issuer.settle_order(mon1.order_id)
        tue9 = at(desk, TUE, "09:00")
        live_prices(desk, tue9)
        tue = ap1.submit_order(FUND, "CREATE", 1, "d-c3")
        assert tue.dealing_date == TUE
        issuer.close_dealing_day("DESK", TUE, "typhoon signal no. 8")
        assert desk.observer.get_order(tue.order_id).dealing_date == WED
        wed16 = at(desk, WED, "16:00")
        issuer.strike_nav(FUND, WED, official(wed16))
        now = at(desk, WED, "16:30")
        issuer.settle_order(tue.order_id)
        yield desk, reports, {"mon1": mon1.order_id, "mon2": mon2.order_id, "tue": tue.order_id, "now": now}


def tallies(reply: Any) -> list[tuple[str, str, str, int, int]]:
    return [(x.participant_id, pb.Side.Value.Name(x.side), pb.OrderStatus.Value.Name(x.status), x.count, x.units)
            for x in reply.orders]


def grid(**cells: tuple[int, int]) -> list[tuple[str, str, str, int, int]]:
    """The 8 (side, status) tallies of a daily report, 0 but for ``cells`` (CREATE_SETTLED=(count, units))."""
    return [("", side, status, *cells.get(f"{side}_{status}", (0, 0)))
            for side in ("CREATE", "REDEEM") for status in ("ACCEPTED", "REJECTED", "SETTLED", "CANCELLED")]


def test_the_daily_report_of_a_first_strike(dealt: Any) -> None:
    desk, reports, ids = dealt
    report = reports["observer"].daily(MON, "14.9569")
    # basis 200 x 97,000 + 3,000 x 3,400 + 128,806.50 cash; its day's fee; NAV per share 14.8640
    basis = Fraction(200 * P_BTC + 3000 * P_ETH) + Fraction("128806.50")
    nav = basis - fee(basis)
    assert (money(fee(basis)), fixed(nav / 2_000_000, 4)) == ("806.34", "14.8640")
    assert report.official_nav == desk.observer.get_official_nav(FUND, MON)
    assert (report.official_nav.nav, report.official_nav.nav_per_share) == (money(nav), "14.8640")
    # No PCF was published for a first strike: the holdings' own 5 BTC and 75 ETH per unit.
    per_unit = nav * U / 2_000_000
    assert (report.nav_per_creation_unit, report.cash_component, report.estimated_cash_component) == (
        money(per_unit), money(per_unit - 5 * P_BTC - 75 * P_ETH), money(per_unit - 5 * P_BTC - 75 * P_ETH))
    assert report.cash_component == "3200.00" == desk.observer.get_order(ids["mon1"]).basket.cash_component
    assert (report.shares_outstanding, report.shares_created, report.shares_redeemed) == (2_000_000, 100_000, 0)
    # d-c2 is ACCEPTED at the end of Monday, d-c1 settled at 17:00; the rejected redemption counts too.
    assert tallies(report) == grid(CREATE_ACCEPTED=(1, 1), CREATE_SETTLED=(1, 2), REDEEM_REJECTED=(1, 25))
    assert (report.fee, report.accrued_fees) == ("806.34", "806.34")
    assert [(r.asset, r.staking_ratio, r.staking_cap, r.liquid_ratio, r.liquidity_buffer) for r in report.ratios] == [
        ("BTC", "0.0000", "0.00", "1.0000", "0.00"), ("ETH", fixed(Fraction(895, 3000), 4), "0.30",
                                                      fixed(Fraction(2105, 3000), 4), "0.10")]
    # C1's 150 BTC, all hot: 0.98 x 150 = 147 required cold
    assert [(b.custodian_id, b.asset, b.cold, b.cold_required) for b in report.storage_breaches] == [
        ("C1", "BTC", "0", "147")]
    assert [(b.break_id, b.custodian_id, b.difference) for b in report.open_breaks] == [("BRK-00000001", "C2", "0.1")]
    assert list(report.overdue_orders) == []  # d-c2 settles on Monday: it is not past it at 23:59:59.999
    # (14.9569 - 14.8640) / 14.8640 = 0.00625 exactly: half-even to 0.0062 (half-up would say 0.0063)
    assert (report.closing_price, report.premium_discount) == ("14.9569", "0.0062")
    assert Fraction(149569 - 148640, 148640) == Fraction("0.00625")
    assert reports["issuer"].daily(MON, "14.7711").premium_discount == "-0.0062"
    assert reports["issuer"].daily(MON, "14.9570").premium_discount == "0.0063"
    assert reports["issuer"].daily(MON, "15").premium_discount == fixed(Fraction(150000 - 148640, 148640), 4)
    assert (reports["issuer"].daily(MON, "14.864").premium_discount, reports["issuer"].daily(MON).premium_discount,
            reports["issuer"].daily(MON).closing_price) == ("0.0000", "", "")


def test_the_daily_report_after_a_closed_day(dealt: Any) -> None:
    desk, reports, ids = dealt
    report = reports["observer"].daily(WED)
    # Tuesday and Wednesday accrue (calendar days since Monday's strike, the closed day too) on the basis
    # of Wednesday: 210 BTC and 3,150 ETH after d-c1's settlement, its cash 2 x 3,200.00, less Monday's fee.
    basis = Fraction(210 * P_BTC + 3150 * P_ETH) + Fraction("128806.50") + Fraction("6400.00") - Fraction("806.34")
    wed_fee = fee(basis, 2)
    nav = basis - wed_fee
    assert report.official_nav == desk.observer.get_official_nav(FUND, WED)
    assert (report.official_nav.nav, report.fee, report.accrued_fees, report.official_nav.fee_days) == (
        money(nav), money(wed_fee), money(Fraction("806.34") + wed_fee), 2)
    # The PCF Monday's strike published for Tuesday moved to Wednesday with the closure: 5 BTC and 75 ETH.
    pcf = desk.observer.get_pcf(FUND, WED)
    assert [(x.asset, x.quantity_per_unit) for x in pcf.lines] == [("BTC", "5"), ("ETH", "75")]
    per_unit = nav * U / 2_100_000
    assert (report.nav_per_creation_unit, report.cash_component, report.estimated_cash_component) == (
        money(per_unit), money(per_unit - 5 * P_BTC - 75 * P_ETH), money(per_unit - 5 * P_BTC - 75 * P_ETH))
    assert report.cash_component == desk.observer.get_order(ids["tue"]).basket.cash_component  # d-c3's pricing
    assert (report.shares_outstanding, report.shares_created, report.shares_redeemed) == (2_100_000, 50_000, 0)
    assert tallies(report) == grid(CREATE_SETTLED=(1, 1))  # d-c3, moved from the closed Tuesday
    assert [(r.asset, r.staking_ratio, r.liquid_ratio) for r in report.ratios] == [
        ("BTC", "0.0000", "1.0000"), ("ETH", fixed(Fraction(895, 3150), 4), fixed(Fraction(2255, 3150), 4))]
    # C1 holds 160 BTC, all hot (0.98 x 160 = 156.8 required cold: a whole number of satoshis), and 1,255 ETH
    # of which 1,105 cold (1,229.9 required)
    assert [(b.custodian_id, b.asset, b.cold, b.cold_required) for b in report.storage_breaches] == [
        ("C1", "BTC", "0", "156.8"), ("C1", "ETH", "1105", "1229.9")]
    assert [b.break_id for b in report.open_breaks] == ["BRK-00000001"]
    assert [(o.order_id, o.client_order_id, o.overdue, o.settlement_date) for o in report.overdue_orders] == [
        (ids["mon2"], "d-c2", True, MON)]
    assert (report.closing_price, report.premium_discount) == ("", "")
    # The closed day has no official NAV.
    details = refused(lambda: reports["observer"].daily(TUE), Code.NOT_FOUND)
    assert "dealing_date" in details and TUE in details


def test_breaks_age_in_dealing_days_and_a_closed_day_does_not_count(dealt: Any) -> None:
    desk, reports, ids = dealt
    lines = reports["observer"].breaks(MON, WED).breaks
    assert [(x.break_record.break_id, x.break_record.status, x.age_dealing_days) for x in lines] == [
        ("BRK-00000001", pb.BreakStatus.OPEN, 1)]  # Monday to Wednesday: Tuesday was closed
    assert [x.age_dealing_days for x in reports["observer"].breaks(MON, MON).breaks] == [0]
    assert list(reports["observer"].breaks(SUN, SUN).breaks) == []


def test_participant_activity_seen_by_each_principal(dealt: Any) -> None:
    desk, reports, ids = dealt
    everyone = reports["observer"].activity(MON, WED)
    assert tallies(everyone) == [("AP-1", "CREATE", "SETTLED", 2, 3), ("AP-1", "REDEEM", "REJECTED", 1, 25),
                                 ("AP-2", "CREATE", "ACCEPTED", 1, 1)]
    assert [(r.participant_id, r.reason, r.count) for r in everyone.rejects] == [("AP-1", "ORDER_LIMIT_EXCEEDED", 1)]
    assert reports["issuer"].activity(MON, WED) == everyone
    own = reports["ap1"].activity(MON, WED)
    assert (tallies(own), list(own.rejects)) == (tallies(everyone)[:2], list(everyone.rejects))
    assert reports["ap1"].activity(MON, WED, "AP-1") == own
    assert tallies(reports["ap2"].activity(MON, WED)) == [("AP-2", "CREATE", "ACCEPTED", 1, 1)]
    assert tallies(reports["observer"].activity(MON, WED, "AP-2")) == [("AP-2", "CREATE", "ACCEPTED", 1, 1)]
    # Statuses at the end of the period: d-c3, submitted on Tuesday, settled on Wednesday.
    assert tallies(reports["observer"].activity(TUE, TUE)) == [("AP-1", "CREATE", "ACCEPTED", 1, 1)]
    assert tallies(reports["observer"].activity(SUN, SUN)) == []
    # Refused: another participant's activity, a fund the participant may not read, an unknown participant.
    assert "participant_id" in refused(lambda: reports["ap1"].activity(MON, WED, "AP-2"), Code.PERMISSION_DENIED)
    assert "fund_id" in refused(lambda: reports["ap1"].activity(MON, WED, fund_id=FUND2), Code.PERMISSION_DENIED)
    assert "fund_id" in refused(lambda: reports["ap-unregistered"].activity(MON, WED), Code.PERMISSION_DENIED)
    assert "participant_id" in refused(lambda: reports["observer"].activity(MON, WED, "AP-9"), Code.NOT_FOUND)


# == R2: holdings as of a time =========================================================================
def test_holdings_as_of_a_time_between_two_records(tmp_path: Path) -> None:
    with reporting(tmp_path, lambda desk: None) as (desk, reports):
        issuer, ap1, ap2 = desk.issuer, desk.ap1, desk.ap2
        issuer.settle_order(ap1.submit_order(FUND, "CREATE", 2, "h-c1").order_id)  # 210 BTC, 3,150 ETH
        redemption = ap2.submit_order(FUND, "REDEEM", 1, "h-r1")  # reserves 5 BTC and 75 ETH at C1
        creation = ap1.submit_order(FUND, "CREATE", 1, "h-c2")  # 5 BTC and 75 ETH receivable
        issuer.sweep(FUND, "C1", "BTC", "100", "HOT", "COLD")
        issuer.sweep(FUND, "C2", "BTC", "20", "HOT", "WARM")
        later = T0 + 10_000
        issuer.advance_clock(later)
        issuer.adjust_holding(FUND, "C2", "BTC", "1", "found")

        report = reports["observer"].holdings(T0 + 5_000)
        nav = Fraction(210 * 97_250) + Fraction("3150") * Fraction("3412.55") + 125_000 + 6_250
        price = {"BTC": Fraction(97_250), "ETH": Fraction("3412.55")}

        def line(custodian: str, asset: str, bucket: str, tier: str, quantity: str) -> tuple[str, ...]:
            value = Fraction(quantity) * price[asset]
            return (custodian, asset, bucket, tier, quantity, qty(price[asset]), money(value),
                    fixed(value * 100 / nav, 4))

        # C1's 160 BTC held: 100 cold, 60 hot; the 5 reserved are the first to leave, from hot.
        expected = [line("C1", "BTC", "AVAILABLE", "COLD", "100"), line("C1", "BTC", "AVAILABLE", "HOT", "55"),
                    line("C1", "BTC", "RESERVED", "HOT", "5"), line("C1", "ETH", "AVAILABLE", "HOT", "1180"),
                    line("C1", "ETH", "RESERVED", "HOT", "75"), line("C1", "ETH", "STAKED", "", "895"),
                    line("C2", "BTC", "AVAILABLE", "WARM", "20"), line("C2", "BTC", "AVAILABLE", "HOT", "30"),
                    line("C2", "ETH", "AVAILABLE", "HOT", "1000")]

        def lines(reply: pb.HoldingsReportReply) -> list[tuple[str, ...]]:
            return [(x.custodian_id, x.asset, x.bucket, pb.Tier.Value.Name(x.tier) if x.tier else "", x.quantity,
                     x.price, x.value, x.percent_of_nav) for x in reply.lines]

        assert (report.fund_id, report.as_of, report.nav) == (FUND, T0 + 5_000, money(nav))
        assert lines(report) == expected
        assert [(x.order_id, x.participant_id, x.custodian_id, x.asset, x.quantity, x.settlement_date_ms)
                for x in report.receivable] == [(creation.order_id, "AP-1", "", "BTC", "5", 0),
                                                (creation.order_id, "AP-1", "", "ETH", "75", 0)]
        assert [(x.order_id, x.participant_id, x.custodian_id, x.asset, x.quantity) for x in report.payable] == [
            (redemption.order_id, "AP-2", "C1", "BTC", "5"), (redemption.order_id, "AP-2", "C1", "ETH", "75")]
        assert list(report.fee_payable) == []

        now = reports["observer"].holdings()  # the adjustment's record: C2's BTC hot 31
        nav += 97_250
        expected[6:8] = [line("C2", "BTC", "AVAILABLE", "WARM", "20"), line("C2", "BTC", "AVAILABLE", "HOT", "31")]
        expected = [line(*x[:5]) for x in expected]
        assert (now.as_of, now.nav, lines(now)) == (later, money(nav), expected)
        assert lines(reports["issuer"].holdings(later)) == expected  # at the record's very millisecond
        assert reports["issuer"].holdings(later + 10**9).as_of == later  # after now: now
        assert "as_of" in refused(lambda: reports["observer"].holdings(1_000), Code.NOT_FOUND)  # F1 did not exist
        assert "as_of" in refused(lambda: reports["observer"].holdings(-1), Code.INVALID_ARGUMENT)


# == refusals ==========================================================================================
def test_every_refusal_names_its_field(tmp_path: Path) -> None:
    with reporting(tmp_path, in_kind_fund) as (desk, reports):
        observer = reports["observer"]
        for call in (lambda: observer.roll_forward(MON, MON, "NOPE"), lambda: observer.daily(MON, fund_id="NOPE"),
                     lambda: observer.holdings(fund_id="NOPE"), lambda: observer.staking(MON, MON, fund_id="NOPE"),
                     lambda: observer.breaks(MON, MON, "NOPE"), lambda: observer.activity(MON, MON, fund_id="NOPE")):
            assert "NOPE" in refused(call, Code.NOT_FOUND)
        periodic = {"RollForward": observer.roll_forward, "StakingReport": observer.staking,
                    "BreakReport": observer.breaks, "ParticipantActivity": observer.activity}
        for name, report in periodic.items():
            for from_date, to_date, field in (("", MON, "from"), (MON, "", "to"),
                                              ("2025-6-16", MON, "from"), (MON, "2025-02-30", "to"),
                                              ("16/06/2025", MON, "from"), (TUE, MON, "from")):
                details = refused(lambda r=report, a=from_date, b=to_date: r(a, b), Code.INVALID_ARGUMENT)
                assert details.startswith(field), (name, from_date, to_date, details)
        assert "as_of" in refused(lambda: observer.staking(MON, MON, -5), Code.INVALID_ARGUMENT)
        # The widest period there is: from before the epoch (nothing then) to the last date (now).
        first, last = "0001-01-01", "9999-12-31"
        assert [(b.opening, b.check) for b in observer.roll_forward(first, last).balances] == [
            ("0", "0"), ("0", "0"), ("0.00", "0.00"), ("0", "0")]
        assert [x.staked for x in observer.staking(first, last).lines] == ["0", "895"]
        assert (list(observer.breaks(first, last).breaks), list(observer.activity(first, last).orders)) == ([], [])
        assert [b.closing for b in observer.roll_forward(first, first).balances] == ["0", "0", "0.00", "0"]
        for day in ("", "2025-06-31", "Monday"):
            assert refused(lambda d=day: observer.daily(d), Code.INVALID_ARGUMENT).startswith("dealing_date")
        assert "dealing_date" in refused(lambda: observer.daily(MON), Code.NOT_FOUND)  # not struck yet
        desk.issuer.advance_clock(hk(MON, "16:00"))
        desk.issuer.strike_nav(FUND, MON, official(hk(MON, "16:00")))
        assert observer.daily(MON).official_nav.dealing_date == MON
        for price in ("1e2", "-14", "0", "14.00001", " 14"):
            assert refused(lambda p=price: observer.daily(MON, p), Code.INVALID_ARGUMENT).startswith("closing_price")
        # Participants read none of the fund's books but their own activity.
        ap1 = reports["ap1"]
        for call in (lambda: ap1.roll_forward(MON, MON), lambda: ap1.daily(MON), lambda: ap1.holdings(),
                     lambda: ap1.staking(MON, MON), lambda: ap1.breaks(MON, MON)):
            refused(call, Code.PERMISSION_DENIED)
        assert ap1.activity(MON, MON).fund_id == FUND


# == a random walk =====================================================================================
def walk(desk: Desk, rng: random.Random) -> list[str]:
    """Random commands over six days, each day struck after its cut-off; returns the days walked. Refusals
    are part of the walk (they record nothing)."""
    issuer, aps = desk.issuer, {"AP-1": desk.ap1, "AP-2": desk.ap2}
    days = [f"2025-06-{d}" for d in range(16, 22)]
    open_orders: list[str] = []
    keys = iter(range(1, 10**6))
    fee_paid = False

    def attempt(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except grpc.RpcError as e:
            assert e.code() in (Code.FAILED_PRECONDITION, Code.INVALID_ARGUMENT), e.details()
            return None

    for day in days:
        for hour in range(9, 16):
            t = at(desk, day, f"{hour:02d}:{rng.randrange(60):02d}")
            live_prices(desk, t)
            for _ in range(rng.randrange(1, 4)):
                move = rng.randrange(10)
                if move < 3:
                    side, pid = rng.choice(("CREATE", "REDEEM")), rng.choice(("AP-1", "AP-2"))
                    order = aps[pid].submit_order(FUND, side, rng.randrange(1, 4), f"w-{next(keys)}")
                    if status_name(order.status) == "ACCEPTED":
                        open_orders.append(order.order_id)
                elif move < 5 and open_orders:
                    order_id = open_orders.pop(rng.randrange(len(open_orders)))
                    if rng.random() < 0.8:
                        issuer.settle_order(order_id)
                    else:
                        issuer.cancel_order(order_id, "walk")
                elif move == 5:
                    delta = rng.choice(("-0.5", "0.25", "1", "-0.00000001"))
                    attempt(lambda d=delta: issuer.adjust_holding(FUND, rng.choice(("C1", "C2")), "BTC", d, "walk"))
                elif move == 6:
                    attempt(lambda: issuer.adjust_cash(FUND, rng.choice(("-12.34", "56.78")), "walk"))
                elif move == 7:
                    attempt(lambda: issuer.record_staking_reward(FUND, "C1", "ETH", rng.choice(("1", "0.333"))))
                    attempt(lambda: issuer.record_slashing(FUND, "C1", "ETH", "0.1"))
                elif move == 8:
                    attempt(lambda: issuer.unstake(FUND, "C1", "ETH", "2"))
                    attempt(lambda: issuer.stake(FUND, "C1", "ETH", "1"))
                else:
                    attempt(lambda: issuer.sweep(FUND, "C1", "BTC", "1", "HOT", rng.choice(("COLD", "WARM"))))
        t = at(desk, day, "16:00")
        issuer.strike_nav(FUND, day, official(t))
        if not fee_paid:
            payable = desk.observer.get_holdings(FUND).fee_payable
            if payable:
                approve(desk, issuer.pay_fee(FUND, asset="BTC", quantity=payable[0].quantity, tx_hash="walk-fee",
                                             to_address=BTC_WALLET))
                fee_paid = True
    return days


@pytest.mark.parametrize("seed", [1, 2])
def test_random_walks_roll_forward_to_zero_over_random_periods(tmp_path: Path, seed: int,
                                                                journal: JournalConfig) -> None:
    rng = random.Random(seed)
    with reporting(tmp_path, in_kind_fund, journal) as (desk, reports):
        days = [SUN, *walk(desk, rng)]
        observer = reports["observer"]
        for _ in range(8):
            first, last = sorted(rng.sample(range(len(days)), 2))
            cut = rng.randrange(first, last)  # [first, cut] then [cut + 1, last]
            whole, head, tail = (view(observer.roll_forward(days[a], days[b]))
                                 for a, b in ((first, last), (first, cut), (cut + 1, last)))
            for b_whole, b_head, b_tail in zip(whole, head, tail, strict=True):
                assert b_whole[4] == b_head[4] == b_tail[4] and set(b_whole[4]) <= {"0", "."}, b_whole
                assert (b_head[1], b_head[3], b_tail[3]) == (b_whole[1], b_tail[1], b_whole[3])
        everything = view(observer.roll_forward(SUN, days[-1]))
        nav, holdings = desk.observer.get_nav(FUND), desk.observer.get_holdings(FUND)
        assert [b[3] for b in everything] == [a.total for a in holdings.assets] + [nav.cash,
                                                                                   str(nav.shares_outstanding)]
        assert [b[1] for b in everything] == ["0", "0", "0.00", "0"]


# == the journal's select ==============================================================================
def test_the_database_chooses_the_same_records_as_a_read_of_every_record(tmp_path: Path) -> None:
    """history.select_records: SQLite's query (and so the SQL of PostgreSQL, exercised by the roll-forward tests
    on that backend) keeps exactly what reading every record and looking at it keeps."""
    journal = SqliteJournal(tmp_path)
    events: list[M.Event] = []
    for i in range(300):
        fund = f"F{i % 7}"
        events += [M.HoldingAdjusted(at=i, fund_id=fund, custodian_id="C1", asset="BTC", delta=i + 1, reason="r"),
                   M.OrderSettled(at=i, order_id=f"ORD-{i:08d}"),
                   M.BreakResolved(at=i, break_id=f"BRK-{i:08d}", adjustment=0, comment="")]
    journal.append_sync(events)
    journal.close()
    store = SqliteHistory(tmp_path)

    class Plain:  # a store whose database select_records does not know: read whole, looked at here
        name = "plain"

        def records(self, after: int, upto: int) -> Iterator[M.Event]:
            return store.records(after, upto)

    for needle, kinds in ((b'"fund_id":"F3"', ()), (b'"fund_id":"F1"', ("BreakResolved",)), (b"nothing", ())):
        chosen = select_records(store, 10, 800, needle, kinds)
        assert [seq for seq, _, _ in chosen] == [seq for seq, _, _ in select_records(Plain(), 10, 800, needle, kinds)]
        assert all(msgspec.json.decode(body)["at"] < 300 for _, _, body in chosen)
    # records 11-800: F3's adjustments are records 3i + 1 with i % 7 == 3 (i = 10, 17, ..., 262: 37 of them),
    # the resolutions records 3i + 3 (i = 3 ... 265: 263)
    assert len(select_records(store, 10, 800, b'"fund_id":"F3"', ("BreakResolved",))) == 37 + 263
    store.close()


# == a follower ========================================================================================
def test_a_follower_reports_as_the_leader(pg_cluster: Any) -> None:
    """A follower (SPEC §12) reads the same journal: every report it gives equals the leader's."""
    journal = JournalConfig(backend="postgresql", dsn=pg_cluster.dsn, shard=f"rep-{uuid.uuid4().hex[:10]}",
                            node_name="reports-leader", lease_seconds=2)
    with BackgroundServer(config(journal=journal, test_clock=True), ledger=make_ledger(), clock=Clock()) as leader:
        desk = Desk(leader, Clock())
        follower = BackgroundServer(config(journal=dataclasses.replace(journal, node_name="reports-follower"),
                                           test_clock=True), ledger=make_ledger(), clock=Clock()).start()
        on_leader = Reports(leader.target, TOKENS["observer"])
        on_follower = Reports(follower.target, TOKENS["observer"])
        watcher = EtfClient(follower.target, TOKENS["observer"], timeout=10)
        try:
            load_sample(desk.issuer)
            in_kind_fund(desk)
            live_prices(desk, at(desk, MON, "09:00"))
            desk.issuer.settle_order(desk.ap1.submit_order(FUND, "CREATE", 2, "f-c1").order_id)
            desk.ap2.submit_order(FUND, "REDEEM", 1, "f-r1")
            desk.issuer.record_staking_reward(FUND, "C1", "ETH", "10")
            desk.issuer.adjust_holding(FUND, "C2", "BTC", "-0.25", "recount")
            desk.issuer.strike_nav(FUND, MON, official(at(desk, MON, "16:00")))
            last, deadline = desk.issuer.get_leader().applied_seq, time.monotonic() + 20
            while watcher.get_leader().applied_seq != last:
                assert time.monotonic() < deadline, "the follower did not catch up"
                time.sleep(0.05)
            assert watcher.get_leader().role == pb.Role.FOLLOWER
            for ask in (lambda r: r.roll_forward(SUN, MON), lambda r: r.roll_forward(MON, MON),
                        lambda r: r.daily(MON, "15"), lambda r: r.holdings(hk(MON, "12:00")),
                        lambda r: r.staking(MON, MON), lambda r: r.breaks(SUN, MON), lambda r: r.activity(SUN, MON)):
                assert ask(on_follower) == ask(on_leader)
            assert [b.check for b in on_follower.roll_forward(SUN, MON).balances] == ["0", "0", "0.00", "0"]
        finally:
            for client in (on_leader, on_follower, watcher):
                client.close()
            follower.stop()
            desk.close()
