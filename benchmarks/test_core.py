"""Core against reference, side by side in one run: a REDEEM decision (plain, with a dealing calendar,
with payout wallets), a tick over 1,000 funds, a basket, and StrikeNav over 10,000 FORWARD orders.

Run: .venv/bin/python -m pytest benchmarks/test_core.py --benchmark-group-by=func
Figures and their reading go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

from benchmarks.conftest import LEDGERS, NOW, load_fund
from etf_engine import calendar as CAL
from etf_engine import model as M

REDEEM = M.OrderRequest(fund_id="F-1", side="REDEEM", units=3, client_order_id="bench-redeem")
REDEEM_TO_WALLETS = msgspec.structs.replace(REDEEM, payout_wallet_ids=["WAL-00000003", "WAL-00000001",
                                                                       "WAL-00000002"])


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_redeem_decision(benchmark, impl: str) -> None:
    """CheckOrder for a 3-unit REDEEM: every check of SPEC §5, basket, legs over 5 custodians."""
    ledger = LEDGERS[impl]()
    load_fund(ledger)
    order = benchmark(ledger.check_order, "AP-1", REDEEM, NOW)
    assert order.status == M.ACCEPTED and len(order.legs) == 3


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_redeem_decision_calendar(benchmark, impl: str) -> None:
    """The same REDEEM on a fund with a dealing calendar: the order also gets its dealing and settlement
    dates and the daily limit counts per dealing date (the core keeps the dealing window cached)."""
    ledger = LEDGERS[impl]()
    load_fund(ledger, calendar=True)
    order = benchmark(ledger.check_order, "AP-1", REDEEM, NOW)
    assert order.status == M.ACCEPTED and order.dealing_date == "2026-01-01" and order.settlement_date == "2026-01-03"


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_redeem_decision_wallets(benchmark, impl: str) -> None:
    """The same REDEEM on a fund that requires delivery, naming one approved payout wallet per asset (in
    another order than the assets'): the wallet check of SPEC §14 and a destination on every leg."""
    ledger = LEDGERS[impl]()
    load_fund(ledger, delivery=True)
    order = benchmark(ledger.check_order, "AP-1", REDEEM_TO_WALLETS, NOW)
    assert order.status == M.ACCEPTED and all(leg.destination_address for leg in order.legs)


STRIKE_ORDERS = 10_000


@pytest.mark.parametrize("fee", [False, True], ids=["no-fee", "fee"])
@pytest.mark.parametrize("impl", ["core", "reference"])
def test_strike_10000_forward_orders(benchmark, impl: str, fee: bool) -> None:
    """StrikeNav of a FORWARD fund whose dealing date holds 10,000 ACCEPTED one-unit creations: the
    official NAV, the next day's PCF, and every order priced (decision and apply; a fresh fund each round);
    ``fee``: with a management fee under a waiver accrued and taken in kind (SPEC §17)."""
    cal = CAL.Calendar("HK", "Asia/Hong_Kong", frozenset(), frozenset())
    after_cutoff = CAL.cutoff_ms(cal, CAL.local_date(cal, NOW), CAL.cutoff_seconds("16:00:00"))
    strike = M.StrikeNav(fund_id="F-1", dealing_date="2026-01-01", ticks=[
        M.PriceTick(asset=a, currency="HKD", price=p, as_of_unix_ms=after_cutoff) for a, p in
        (("BTC", "712000.5"), ("ETH", "24500.25"), ("SOL", "1234.5"))])

    def fund_with_orders():
        ledger = LEDGERS[impl]()
        load_fund(ledger, calendar=True, pricing=M.FORWARD, fee=fee)
        requests = [M.OrderRequest(fund_id="F-1", side="CREATE", units=1, client_order_id=f"c-{i}")
                    for i in range(STRIKE_ORDERS)]
        for i in range(0, STRIKE_ORDERS, 1_000):
            ledger.execute(M.SubmitOrders(participant_id="AP-1", requests=requests[i:i + 1_000]), NOW)
        return (ledger,), {}

    result, _events = benchmark.pedantic(lambda ledger: ledger.execute(strike, after_cutoff), setup=fund_with_orders,
                                         rounds=7 if impl == "core" else 3, iterations=1)
    assert result.priced_orders == STRIKE_ORDERS
    assert (result.nav.fee > 0) == fee


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_tick_1000_funds(benchmark, impl: str) -> None:
    """One BTC price tick revaluing 1,000 funds that hold BTC (each fund's exact NAV is brought up to date)."""
    ledger = LEDGERS[impl]()
    for i in range(1_000):
        load_fund(ledger, f"F-{i + 1}")
    as_of = itertools.count(NOW + 1)
    prices = itertools.cycle(["712345.68", "712400.01", "711999.99"])

    def tick() -> None:
        ledger.execute(M.PublishPrices(ticks=[M.PriceTick(asset="BTC", currency="HKD", price=next(prices),
                                                          as_of_unix_ms=next(as_of))]), NOW + 1)

    benchmark.pedantic(tick, rounds=200 if impl == "core" else 20, iterations=1, warmup_rounds=2)
    assert ledger.get_nav("F-1000", NOW + 1).nav is not None


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_basket(benchmark, impl: str) -> None:
    """GetBasket right after a price tick, so the basket is computed afresh (the tick itself is not timed)."""
    ledger = LEDGERS[impl]()
    load_fund(ledger)
    as_of = itertools.count(NOW + 1)

    def fresh_tick() -> None:
        ledger.execute(M.PublishPrices(ticks=[M.PriceTick(asset="ETH", currency="HKD", price="24567.2",
                                                          as_of_unix_ms=next(as_of))]), NOW + 1)

    basket = benchmark.pedantic(ledger.get_basket, args=("F-1", NOW + 1), setup=fresh_tick, rounds=2_000)
    assert basket.cash_component is not None


STATEMENT_ASSETS = [f"C{i:02d}" for i in range(10)]  # 10 assets x 5 keys (AVAILABLE, its 3 tiers, STAKED) = 50 lines


@pytest.mark.parametrize("differ", [False, True], ids=["agreeing", "all-differ"])
@pytest.mark.parametrize("impl", ["core", "reference"])
def test_record_statement_50_lines(benchmark, impl: str, differ: bool) -> None:
    """RecordStatement of 50 lines against the ledger's own book (SPEC §19): all agreeing, or each a
    smallest unit off (50 breaks opened); a fresh ledger each round."""
    def fund_with_holdings():
        ledger = LEDGERS[impl]()
        run = ledger.execute
        run(M.RegisterCustodian(custodian_id="CUS-1", name="c", licence_number="L", licence_status="ACTIVE",
                                licence_expires_at=NOW // 1000 + 86_400), NOW)
        for symbol in STATEMENT_ASSETS:
            run(M.RegisterAsset(symbol=symbol, decimals=8), NOW)
        run(M.CreateFund(fund_id="F-1", name="F", base_currency="HKD", creation_unit=100,
                         creation_custodian_id="CUS-1", custodian_priority=["CUS-1"],
                         assets=[M.FundAssetSpec(asset=a, staking_cap="1") for a in STATEMENT_ASSETS]), NOW)
        for symbol in STATEMENT_ASSETS:
            run(M.AdjustHolding(fund_id="F-1", custodian_id="CUS-1", asset=symbol, delta="100"), NOW)
            run(M.Stake(fund_id="F-1", custodian_id="CUS-1", asset=symbol, quantity="10"), NOW)
            run(M.Sweep(fund_id="F-1", custodian_id="CUS-1", asset=symbol, quantity="60", from_tier="HOT",
                        to_tier="COLD"), NOW)
            run(M.Sweep(fund_id="F-1", custodian_id="CUS-1", asset=symbol, quantity="20", from_tier="HOT",
                        to_tier="WARM"), NOW)
        off = "1" if differ else "0"
        lines = [M.StatementLineSpec(asset=a, bucket=bucket, tier=tier, quantity=f"{q}.0000000{off}")
                 for a in STATEMENT_ASSETS
                 for bucket, tier, q in (("AVAILABLE", "", 90), ("AVAILABLE", "COLD", 60), ("AVAILABLE", "WARM", 20),
                                         ("AVAILABLE", "HOT", 10), ("STAKED", "", 10))]
        statement = M.RecordStatement(fund_id="F-1", custodian_id="CUS-1", as_of=NOW, source="CUSTODIAN",
                                      reference="st-1", lines=lines)
        return (ledger, statement), {}

    result, _events = benchmark.pedantic(lambda ledger, statement: ledger.execute(statement, NOW),
                                         setup=fund_with_holdings, rounds=50 if impl == "core" else 20, iterations=1)
    assert len(result.opened) == (50 if differ else 0)
