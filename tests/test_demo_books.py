"""The demo's fourth act, the books (SPEC §17-§21), as ``etf-engine demo --keep`` prints it: every figure it
prints is checked here against what the test computes on its own (the fee to the cent from rate x basis x
days / 365, half-even; the storage ratio's cold requirement; the daily report's ratios; the roll-forward's
sums), and the server it leaves running shows the same books (the console's fees, tiers, breaks, pending
instruction and reports).
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from fractions import Fraction

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from test_demo import ENV, free_port
from test_first_run import lines_of, read_until, tokens_in

from etf_engine.client import EtfClient, break_classification, instruction_status
from etf_engine.demo import strike_dates

RATE = Fraction("0.0025")  # the act's management fee, a year's
COLD = {"HK-VATP-A": Fraction("0.95"), "HK-VATP-B": Fraction("0.98")}  # A's policy as set; B's the default
DECIMALS = {"BTC": 8, "ETH": 18}
SHARES = 1_150_000  # act two's 1,000,000 and its creations of 2 + 1 units of 50,000
UNIT = 50_000


class Demo:
    def __init__(self, text: str) -> None:
        self.text = text
        self.act = text.split("== Act four", 1)[1].split("demo complete.", 1)[0]
        self.target = re.search(r"^  gRPC (\S+) \(plaintext", text, re.M)[1]  # type: ignore[index]
        self.url = re.search(r"^  console (\S+)/ ", text, re.M)[1]  # type: ignore[index]
        self.report = re.search(r"^  reports (\S+) ", text, re.M)[1]  # type: ignore[index]
        self.tokens = tokens_in(text)


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "demo", "--keep", "--listen",
                             f"127.0.0.1:{free_port()}", "--http-listen", "127.0.0.1:0", "--tick-seconds", "0.5"],
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        seen, _ = read_until(lines_of(proc), r"Stop it with", timeout=120)
        yield Demo("".join(seen))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def tables(text: str, header: str) -> list[list[dict[str, str]]]:
    """Every table of ``text`` whose header row starts with ``header``: its rows as {column: cell}, the cells
    cut at the columns the dashes line marks (figures are right-aligned within them)."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if not line.strip().startswith(header) or i + 1 >= len(lines) or not lines[i + 1].strip().startswith("--"):
            continue
        spans = [m.span() for m in re.finditer(r"-+", lines[i + 1])]
        names = [line[a:b if k + 1 < len(spans) else None].strip() for k, (a, b) in enumerate(spans)]
        rows = []
        for row in lines[i + 2:]:
            if not row.startswith("  ") or any(row[a - 2:a].strip() for a, _ in spans[1:]):
                break  # not indented, or text across a column's gap: prose after the table
            cells = [row[a:spans[k + 1][0] if k + 1 < len(spans) else None].strip() for k, (a, _) in enumerate(spans)]
            rows.append(dict(zip(names, cells, strict=True)))
        found.append(rows)
    return found


def number(cell: str) -> Fraction:
    return Fraction(cell.replace(",", ""))


def cents(value: Fraction) -> Fraction:
    """To the cent, half-even (Python's round of a Fraction is)."""
    return Fraction(round(value * 100), 100)


def test_the_fee_accrues_at_each_strike_and_three_days_on_the_monday(demo: Demo) -> None:
    week, monday = tables(demo.act, "dealing date")
    assert len(monday) == 1 and week, demo.act
    accrued = Fraction(0)  # the fund's first strike (act two) was before the fee
    for row in [*week, *monday]:
        basis = number(row["BTC"]) * number(row["fixing"]) + number(row["cash"]) - accrued
        assert number(row["fee basis"]) == basis, row
        days = int(row["fee days"])
        fee = cents(basis * RATE * days / 365)
        assert number(row["fee"]) == fee, row
        accrued += fee
        assert number(row["accrued fees"]) == accrued and number(row["official NAV"]) == basis - fee, row
    friday, last = week[-1], monday[0]
    assert friday["day"] == "Friday" and all(r["fee days"] == "1" for r in week)
    assert last["day"] == "Monday" and last["fee days"] == "3"
    assert date.fromisoformat(last["dealing date"]) == date.fromisoformat(friday["dealing date"]) + timedelta(days=3)
    # act two's 100 BTC and 25,000.00, its two creations (5 BTC a unit; cash amounts 2,500.00 and 1,250.00)
    assert (number(last["BTC"]), number(last["cash"])) == (115, Fraction("28750.00"))


@pytest.mark.unit
def test_the_strike_dates_cross_a_weekend_and_skip_holidays() -> None:
    *week, monday = strike_dates(date(2026, 12, 8))  # the Tuesday the demo of 2026-12-07 struck
    assert week == [date(2026, 12, 9), date(2026, 12, 10), date(2026, 12, 11)] and monday == date(2026, 12, 14)
    *week, monday = strike_dates(date(2026, 12, 22))  # Christmas and New Year's Day are Fridays
    assert week[-1] == date(2027, 1, 8) and monday == date(2027, 1, 11) and date(2026, 12, 25) not in week
    *week, monday = strike_dates(date(2026, 12, 11))  # struck on a Friday: the next one
    assert week == [date(2026, 12, 14 + i) for i in range(5)] and monday == date(2026, 12, 21)


def required(custodian: str, asset: str, held: Fraction) -> Fraction:
    scale = 10 ** DECIMALS[asset]
    return Fraction(math.ceil(COLD[custodian] * held * scale), scale)  # nothing is due to be paid out


def test_one_custodian_is_swept_and_the_other_in_breach(demo: Demo) -> None:
    (tiers,) = tables(demo.act, "fund ")
    assert {(r["fund"], r["custodian"], r["asset"]) for r in tiers} == {
        ("HK-BTCETH", "HK-VATP-A", "BTC"), ("HK-BTCETH", "HK-VATP-A", "ETH"), ("HK-BTCETH", "HK-VATP-B", "BTC"),
        ("HK-BTCETH", "HK-VATP-B", "ETH"), ("HK-BTC-FWD", "HK-VATP-A", "BTC")}
    for r in tiers:
        cold, warm, hot = (number(r[k]) for k in ("cold", "warm", "hot"))
        need = required(r["custodian"], r["asset"], cold + warm + hot)
        assert number(r["cold required"]) == need, r
        assert (r["breach"] == "BREACH") == (cold < need) == (r["custodian"] == "HK-VATP-A"), r
        if r["custodian"] == "HK-VATP-B":  # swept: exactly what its ratio requires is cold
            assert cold == need and warm == 0, r
        else:  # nothing swept: all of it still in hot, and for longer than a day
            assert cold == 0 and r["idle"] == "yes", r
    swept = re.search(r"HK-VATP-B reports it moved (\S+) BTC and (\S+) ETH of HK-BTCETH from hot to cold", demo.act)
    assert swept and [number(swept[1]), number(swept[2])] == [number(r["cold"]) for r in tiers
                                                             if r["custodian"] == "HK-VATP-B"]
    need = required("HK-VATP-A", "BTC", Fraction(115))  # 109.25
    assert f"storage breach on the official NAV's record: HK-VATP-A BTC, cold 0 < {float(need):g} required" in demo.act


def test_the_statement_opens_a_timing_and_an_unexplained_break(demo: Demo) -> None:
    creation = re.search(r"Creation of 1 unit: (ORD-\d+) ACCEPTED", demo.text)[1]  # type: ignore[index]
    eth = next(r for r in tables(demo.text, "asset  quantity  tx hash")[0] if r["asset"] == "ETH")
    statement = next(t for t in tables(demo.act, "asset  bucket") if t)
    lines = {(r["asset"], r["bucket"]): (number(r["book"]), number(r["statement"])) for r in statement}
    book, said = lines["BTC", "AVAILABLE"]
    assert said == book - Fraction("0.00042")
    book, said = lines["ETH", "AVAILABLE"]
    assert said == book + number(eth["quantity"])  # the ETH delivered and confirmed, the order not yet settled
    assert lines["ETH", "STAKED"] == (895, 895)
    opened, still_open = tables(demo.act, "break ")
    by_asset = {r["asset"]: r for r in opened}
    assert len(opened) == 2 and {r["status"] for r in opened} == {"OPEN"}
    btc, timing = by_asset["BTC"], by_asset["ETH"]
    assert btc["classification"] == "UNEXPLAINED" and btc["explained by"] == "-"
    assert number(btc["difference"]) == number(btc["book"]) - number(btc["statement"]) == Fraction("0.00042")
    assert timing["classification"] == "TIMING" and timing["explained by"] == f"{creation} {eth['tx hash']}"
    assert number(timing["difference"]) == -number(eth["quantity"])
    unexplained = btc["break"]
    proposed = re.search(rf"demo-issuer proposes ResolveBreak {unexplained}, adjustment -0.00042 BTC, .*\n"
                         r"\s+(INS-\d+), pending: true \(four eyes\)", demo.act)
    assert proposed, demo.act
    assert f"demo-checker approves {proposed[1]}: EXECUTED" in demo.act
    assert (f"{unexplained} RESOLVED: adjustment -0.00042 BTC, proposed by demo-issuer, approved by demo-checker"
            in demo.act)
    assert [r["break"] for r in still_open] == [timing["break"]]


def test_the_daily_report_and_the_roll_forward(demo: Demo) -> None:
    if "does not serve them yet" in demo.act:
        pytest.fail("the Reports service is not served: " + demo.act)
    (monday,) = tables(demo.act, "dealing date")[1]
    (report,) = tables(demo.act, "figure ")
    figures = {r["figure"]: r["value"] for r in report}
    nav = number(monday["official NAV"])
    assert number(figures["official NAV"]) == nav
    per_share = Fraction(round(nav / SHARES * 10_000), 10_000)
    assert number(figures["NAV per share"]) == per_share
    assert number(figures["NAV per creation unit"]) == cents(nav * UNIT / SHARES)
    # the PCF published at Friday's strike: floor(115 BTC x 50,000 / 1,150,000) = 5 BTC a unit
    assert number(figures["cash component (struck)"]) == cents(nav * UNIT / SHARES - 5 * number(monday["fixing"]))
    assert figures["shares outstanding"] == f"{SHARES:,}"
    assert (figures["fee accrued at the strike"], figures["accrued fees"]) == (monday["fee"], monday["accrued fees"])
    assert figures["storage breaches"] == "HK-VATP-A BTC cold 0 < 109.25"
    assert figures["open breaks"] == "none" and figures["overdue orders"] == "none"  # the breaks are HK-BTCETH's
    closing, premium = figures["closing price / premium (discount)"].split(" / ")
    assert number(premium) == Fraction(round((number(closing) - per_share) / per_share * 10_000), 10_000)

    (roll,) = tables(demo.act, "item ")
    assert [r["item"] for r in roll] == ["BTC", "CASH", "SHARES"]
    expected = {"BTC": {"contributed": 15, "adjustment (opening balance)": 100},
                "CASH": {"cash components": Fraction("3750.00"), "adjustment": 25_000},
                "SHARES": {"initial": 1_000_000, "created": 150_000}}
    for r in roll:
        moves = {}
        for move in r["movements"].split(", "):
            amount, kind = move.split(" ", 1)
            moves[kind] = number(amount)
        assert moves == expected[r["item"]], r
        assert number(r["opening"]) == 0 and number(r["check"]) == 0
        assert number(r["closing"]) == sum(moves.values())
    assert [number(r["closing"]) for r in roll] == [115, Fraction("28750.00"), SHARES]


def test_the_signed_checkpoints_are_audited(demo: Demo) -> None:
    week, monday = tables(demo.act, "dealing date")
    strikes = 1 + len(week) + len(monday)  # act two's and act four's; each journals a checkpoint
    audited = re.search(r"records (\d+), checkpoints (\d+) \(signed (\d+)\), every root matches the records "
                        r"before it; 0 record\(s\) after the last checkpoint", demo.act)
    assert audited and int(audited[2]) == int(audited[3]) == strikes + 1, demo.act  # and Checkpoint()
    key = re.search(r"signatures checked with public key ([0-9a-f]{64})", demo.act)[1]  # type: ignore[index]
    latest = re.search(r"latest checkpoint: tree_size (\d+) root ([0-9a-f]{64})", demo.act)
    assert latest, demo.act
    size, root = latest.groups()
    assert int(size) == int(audited[1]) - 1
    kept = re.search(r"An auditor keeps the checkpoint journaled with Friday's strike: tree_size (\d+)", demo.act)
    assert kept and re.search(rf"extends the kept tree of {kept[1]} records", demo.act), demo.act
    with EtfClient(demo.target, demo.tokens["auditor"]) as auditor:
        checkpoint = auditor.get_checkpoint()
    assert (checkpoint.tree_size, checkpoint.root, checkpoint.public_key) == (int(size), root, key)
    # checked here with another Ed25519 implementation than the server's
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
        bytes.fromhex(checkpoint.signature), f"etf-engine checkpoint v1\n\n{size}\n{root}".encode())


def test_the_server_left_running_shows_the_books(demo: Demo) -> None:
    (monday,) = tables(demo.act, "dealing date")[1]
    with EtfClient(demo.target, demo.tokens["auditor"]) as auditor:
        (pending,) = auditor.list_instructions("PENDING")
        assert pending.rpc == "PayFee" and '"HK-BTC-FWD"' in pending.request
        assert number(auditor.get_nav("HK-BTC-FWD").accrued_fees) == number(monday["accrued fees"])
        assert [break_classification(b.classification) for b in auditor.list_breaks("HK-BTCETH", "OPEN")] == ["TIMING"]
        assert {(r.custodian_id, r.tiers.breach) for r in auditor.get_holdings("HK-BTCETH").holdings} == {
            ("HK-VATP-A", True), ("HK-VATP-B", False)}
        assert [instruction_status(i.status) for i in auditor.list_instructions()] == ["EXECUTED", "PENDING"]
    request = urllib.request.Request(demo.report, headers={"Authorization": f"Bearer {demo.tokens['auditor']}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        csv = reply.read().decode()
    nav = monday["official NAV"].replace(",", "")
    assert reply.status == 200 and f"official_nav.nav,{nav}" in csv and "cold_required,109.25" in csv, csv
