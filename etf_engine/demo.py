"""``etf-engine demo``: a throwaway server with a sample Hong Kong fund, walked through in four acts.

Act one loads a bitcoin and ether fund and deals in it (a creation settled, a redemption refused by
the staking cap, the capacity that would pass); act two is a forward-priced fund on the Hong Kong
dealing calendar (the test clock passes the cut-off, StrikeNav prices the orders); act three deals in
kind (whitelisted wallets, deliveries, payouts); act four keeps the books (the management fee accrued
at the strikes across a weekend, storage tiers and a breach, a custodian's statement and its breaks,
the daily report and the roll-forward, the signed checkpoints audited). With ``keep`` the server then
stays up: gRPC on a known address with reflection (README's grpcurl commands work against it), the
console, Connect and /metrics on the HTTP listener, and its funds live: a price every few seconds from
a seeded random walk (``LivePrices``), as of the engine's clock, so that nothing goes stale and the
console moves.
"""

from __future__ import annotations

import random
import secrets
import shlex
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import grpc

from etf_engine import calendar
from etf_engine.api.auth import ISSUER, OBSERVER, PARTICIPANT, Principal, hash_token
from etf_engine.audit import audit_records, prove
from etf_engine.client import (
    EtfClient,
    FundAssetTerms,
    StatementLine,
    Tick,
    break_classification,
    break_status,
    bucket_name,
    instruction_status,
    side_name,
    status_name,
    wallet_status,
)
from etf_engine.config import Config
from etf_engine.journal import SqliteJournal
from etf_engine.ledger import make_ledger
from etf_engine.numbers import format_money, format_quantity, format_scaled
from etf_engine.signing import new_key_file
from etf_engine.table import figure, table
from etf_engine.v1 import engine_pb2 as pb


def run_demo(out: TextIO, ledger_kind: str = "auto", keep: bool = False, http_listen: str = "127.0.0.1:0",
             listen: str = "127.0.0.1:0", tick_seconds: float = 3.0, seed: int = 2026) -> int:
    """The demo; ``keep``: then serve on until SIGINT or SIGTERM, gRPC at ``listen``, the console at
    ``http_listen``, the funds' prices moving every ``tick_seconds`` (a random walk from ``seed``)."""
    from etf_engine.api.server import BackgroundServer

    tokens = {role: secrets.token_urlsafe(24) for role in (ISSUER, CHECKER, PARTICIPANT, OBSERVER)}
    principals = (
        Principal("demo-issuer", ISSUER, hash_token(tokens[ISSUER])),
        Principal("demo-checker", ISSUER, hash_token(tokens[CHECKER])),  # the second pair of eyes
        Principal("victory-pd", PARTICIPANT, hash_token(tokens[PARTICIPANT]), "AP-VICTORY"),
        Principal("auditor", OBSERVER, hash_token(tokens[OBSERVER])),
    )
    fund = FUNDS[0]
    with tempfile.TemporaryDirectory(prefix="etf-demo-") as data_dir:
        # The key that signs the checkpoints of the audit trail (act four), as `etf-engine signing-key new` writes it.
        key_file = Path(data_dir, "checkpoint.pem")
        public_key = new_key_file(key_file)
        # The test clock lets the second act pass a 16:00 cut-off without waiting for it.
        config = Config(listen=listen if keep else "127.0.0.1:0", data_dir=Path(data_dir), principals=principals,
                        grace_seconds=2.0, test_clock=True, reflection=True, http_listen=http_listen if keep else None,
                        signing_key=key_file)
        with BackgroundServer(config, ledger=make_ledger(ledger_kind)) as server:
            print(f"etf-engine demo: server on {server.target}, data in {data_dir}\n", file=out)
            issuer = EtfClient(server.target, tokens[ISSUER])
            dealer = EtfClient(server.target, tokens[PARTICIPANT])
            auditor = EtfClient(server.target, tokens[OBSERVER])
            checker = EtfClient(server.target, tokens[CHECKER])
            try:
                now = int(time.time())
                # -- the fund, as an issuer would load it ------------------------------------------
                issuer.register_asset("BTC", DECIMALS["BTC"], min_confirmations=2)
                issuer.register_asset("ETH", DECIMALS["ETH"], min_confirmations=12)
                for cid, name, licence in (("HK-VATP-A", "Harbour Digital Custody Ltd", "BVX101"),
                                           ("HK-VATP-B", "Kowloon Virtual Asset Trust Ltd", "BVX202")):
                    issuer.register_custodian(cid, name, licence, "ACTIVE", now + 365 * 86_400)
                issuer.register_participant("AP-VICTORY", "Victory Securities (PD)", [fund, FORWARD_FUND], 20, 100)
                issuer.create_fund(
                    fund, "Harbour Bitcoin & Ether ETF", "USD", 50_000, "HK-VATP-A", ["HK-VATP-A", "HK-VATP-B"],
                    [FundAssetTerms("BTC", "0", "0", 0, "5"),
                     FundAssetTerms("ETH", "0.30", "0.10", 7 * 86_400, "75")],
                    creation_fee="1500.00", redemption_fee="1500.00", min_liquid_units=1,
                    initial_shares_outstanding=2_000_000)
                for cid, btc, eth in (("HK-VATP-A", "150", "2000"), ("HK-VATP-B", "50", "1000")):
                    issuer.adjust_holding(fund, cid, "BTC", btc, "opening balance")
                    issuer.adjust_holding(fund, cid, "ETH", eth, "opening balance")
                issuer.adjust_cash(fund, "125000.00", "opening cash")
                issuer.stake(fund, "HK-VATP-A", "ETH", "895")
                now_ms = int(time.time() * 1000)
                issuer.publish_prices([Tick("BTC", "USD", "97250.00", now_ms), Tick("ETH", "USD", "3412.55", now_ms)])
                print(f"Loaded {fund}: BTC (8 dp) and ETH (18 dp) at two SFC-licensed custodians, "
                      "50,000-share creation units,\nETH staking capped at 30% with a 10% liquidity buffer, "
                      "2,000,000 shares outstanding.\n", file=out)

                _print_nav(dealer, fund, out, "NAV (as the participant sees it)")
                basket = dealer.get_basket(fund)
                print(f"Basket per creation unit of {basket.creation_unit:,} shares", file=out)
                table(["asset", "quantity per unit"],
                      [(line.asset, line.quantity_per_unit) for line in basket.lines], out)
                print(f"  cash component {figure(basket.cash_component)}, NAV per unit "
                      f"{figure(basket.nav_per_unit)}\n", file=out)
                _print_holdings(auditor, fund, out, "Holdings (as the auditor sees them)")

                # -- a creation, accepted and settled ----------------------------------------------
                order = dealer.submit_order(fund, "CREATE", 2, "victory-create-0001")
                print(f"Creation of 2 units by AP-VICTORY: {order.order_id} {status_name(order.status)}, "
                      f"cash {figure(order.cash_amount)}, fee {figure(order.fee)}", file=out)
                table(["asset", "deliver"], [(d.asset, d.quantity) for d in order.deliverables], out)
                settled = issuer.settle_order(order.order_id)
                nav = auditor.get_nav(fund)
                print(f"  settled by the issuer: {status_name(settled.status)}; shares outstanding now "
                      f"{nav.shares_outstanding:,}, NAV per share {nav.nav_per_share}\n", file=out)

                # -- a redemption refused by the staking cap, and what would pass ------------------
                refused = dealer.submit_order(fund, "REDEEM", 3, "victory-redeem-0001")
                print(f"Redemption of 3 units: {refused.order_id} {status_name(refused.status)} "
                      f"({refused.reject_reason})", file=out)
                holdings = issuer.get_holdings(fund)
                eth = next(a for a in holdings.assets if a.asset == "ETH")
                paid = next(d.quantity for d in refused.deliverables if d.asset == "ETH")
                # Exact: a 4 dp cap times an 18 dp quantity has at most 22 fraction digits.
                limit = Fraction(eth.staking_cap) * (Fraction(eth.committed) - Fraction(paid))
                print(f"  ETH staked {eth.illiquid} > cap {eth.staking_cap} x (committed {eth.committed} - "
                      f"paid out {paid}) = {format_scaled(int(limit * 10**22), 22, min_dp=0)}", file=out)
                _print_holdings(issuer, fund, out, "", only="ETH")
                capacity = dealer.get_capacity(fund)
                print("Capacity for AP-VICTORY now (GetCapacity)", file=out)
                table(["side", "units", "binding reason (units + 1)"],
                      [("CREATE", capacity.create.units, capacity.create.binding_reason or "-"),
                       ("REDEEM", capacity.redeem.units, capacity.redeem.binding_reason or "-")], out)
                check = dealer.check_order(fund, "REDEEM", capacity.redeem.units)
                print(f"  CheckOrder REDEEM {capacity.redeem.units} units: {status_name(check.status)} "
                      "(nothing recorded)\n", file=out)

                orders = auditor.list_orders(fund)
                print("Orders (as the auditor sees them)", file=out)
                table(["order", "side", "units", "status", "reason", "cash amount"],
                      [(o.order_id, side_name(o.side), o.units, status_name(o.status),
                        o.reject_reason or "-", figure(o.cash_amount)) for o in orders], out)
                opened = calendar.local_date(HKEX, issuer.get_leader().now_unix_ms)  # the forward fund's first day
                clock_ms = _forward_act(issuer, dealer, auditor, out)
                issuer.publish_prices([Tick(asset, "USD", price, clock_ms)  # fresh at the test clock's time
                                       for asset, price in OPENING_PRICES.items()])
                in_flight = _in_kind_act(fund, issuer, checker, dealer, auditor, out)
                monday = _books_act(issuer, checker, auditor, out, opened=opened, in_flight=in_flight,
                                    data_dir=Path(data_dir), public_key=public_key)
                issuer.publish_prices([Tick(asset, "USD", price, issuer.get_leader().now_unix_ms)
                                       for asset, price in OPENING_PRICES.items()])  # fresh at act four's clock
            finally:
                for client in (issuer, dealer, auditor, checker):
                    client.close()
            print("\ndemo complete.", file=out)
            if keep:
                _serve_on(server.http_url, server.target, principals, tokens, out, tick_seconds, seed, monday)
    return 0


def _serve_on(url: str, target: str, principals: Sequence[Principal], tokens: dict[str, str], out: TextIO,
              tick_seconds: float, seed: int, monday: str) -> None:
    """demo --keep: where to reach it, each principal's token (once) and a grpcurl line ready to paste;
    the funds' prices kept moving; then wait for a signal."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    token = {p.name: tokens[role] for p, role in zip(principals, tokens, strict=True)}
    with EtfClient(target, token["auditor"]) as auditor:
        ahead_ms = auditor.get_leader().now_unix_ms - int(time.time() * 1000)
    print(f"\nThe demo server keeps running:\n  console {url}/ (enter a token below)\n"
          f"  gRPC {target} (plaintext, reflection on: README's grpcurl commands work against it)\n"
          f"  Connect {url}/etf_engine.v1.<Service>/<Method>\n  metrics {url}/metrics\n"
          f"  reports {url}/reports/daily.csv?fund_id={FORWARD_FUND}&dealing_date={monday} (act four's; the "
          "console's Reports download them)\n"
          "Tokens (shown once; enter one in the console):", file=out)
    table(["principal", "role", "token"], [(p.name, p.role, token[p.name]) for p in principals], out)
    print(f"Try it (the auditor's NAV of {FUNDS[0]}):\n  " + grpcurl_line(target, token["auditor"], "Valuation/GetNav",
                                                                          {"fund_id": FUNDS[0]}), file=out)
    print(f"README's commands take demo-issuer's token for s3cret-issuer and victory-pd's for s3cret-dealer.\n"
          f"Prices: BTC and ETH move every {tick_seconds:g} s (a random walk, seed {seed}), as of the engine's "
          f"clock, which the second and fourth acts moved {_duration(ahead_ms)} ahead of this machine's.", file=out)
    print("Stop it with Ctrl-C (SIGINT) or SIGTERM.", file=out, flush=True)
    prices = LivePrices(target, token["demo-issuer"], tick_seconds, seed)
    prices.start()
    try:
        stop.wait()
    finally:
        prices.stop()
    print("etf-engine demo: stopping.", file=out, flush=True)


def grpcurl_line(target: str, token: str, method: str, body: dict[str, str]) -> str:
    """A grpcurl command for ``method`` ("Service/Method") against the demo, ready for a POSIX shell."""
    data = "{" + ",".join(f'"{k}":"{v}"' for k, v in body.items()) + "}"
    return " ".join(["grpcurl", "-plaintext", "-H", shlex.quote(f"authorization: Bearer {token}"), "-d",
                     shlex.quote(data), target, f"etf_engine.v1.{method}"])


def _duration(ms: int) -> str:
    minutes = round(abs(ms) / 60_000)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


OPENING_PRICES = {"BTC": "97400.00", "ETH": "3420.10"}  # where the demo leaves them (USD)
FUNDS = ("HK-BTCETH", "HK-BTC-FWD")


def random_walk(opening: dict[str, str], seed: int) -> Iterator[dict[str, str]]:
    """Prices to the cent, each step about 0.1% up or down (Gaussian), from ``opening``; the same
    ``seed`` gives the same walk. Decimal strings: the engine never sees a float."""
    rng = random.Random(seed)
    cents = {asset: int(price.replace(".", "")) for asset, price in sorted(opening.items())}
    while True:
        for asset, value in cents.items():
            cents[asset] = max(1, value + round(value * rng.gauss(0.0, 0.001)))
        yield {asset: format_money(value) for asset, value in cents.items()}


class LivePrices:
    """demo --keep: a USD price for BTC and ETH every ``every`` seconds from ``random_walk``, as of the
    engine's clock (GetLeader), which the test clock runs ahead of the wall's."""

    def __init__(self, target: str, token: str, every: float, seed: int,
                 opening: dict[str, str] = OPENING_PRICES) -> None:
        self._client = EtfClient(target, token)
        self._every = every
        self._walk = random_walk(opening, seed)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etf-demo-prices", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._client.close()

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            try:
                now_ms = self._client.get_leader().now_unix_ms
                self._client.publish_prices([Tick(asset, "USD", price, now_ms)
                                             for asset, price in next(self._walk).items()])
            except grpc.RpcError:  # the server is stopping (or refused one step): try the next
                continue


HOLIDAYS = ("2026-12-25", "2026-12-26", "2027-01-01")  # a few Hong Kong holidays, for the calendar's sake
DECIMALS = {"BTC": 8, "ETH": 18}  # as act one registers the assets
FORWARD_FUND = FUNDS[1]
HKEX = calendar.Calendar("HKEX", "Asia/Hong_Kong", frozenset(map(date.fromisoformat, HOLIDAYS)),
                         frozenset(calendar.DEFAULT_WEEKEND))  # the second act registers it
CUTOFF = calendar.cutoff_seconds("16:00:00")


def _forward_act(issuer: EtfClient, dealer: EtfClient, auditor: EtfClient, out: TextIO) -> int:
    """Act two: a FORWARD fund on the Hong Kong dealing calendar (SPEC §13). Orders before the cut-off
    wait for the official NAV; the strike prices them and publishes the next dealing day's PCF.
    Returns the time the test clock was moved to."""
    fund = FORWARD_FUND
    print("\n== Act two: a forward-priced fund on the Hong Kong dealing calendar ==\n", file=out)
    issuer.register_calendar(HKEX.calendar_id, HKEX.time_zone, list(HOLIDAYS))
    issuer.create_fund(
        fund, "Harbour Bitcoin ETF (forward priced)", "USD", 50_000, "HK-VATP-A", ["HK-VATP-A", "HK-VATP-B"],
        [FundAssetTerms("BTC", "0", "0", 0, "5")], creation_fee="1500.00", redemption_fee="1500.00",
        initial_shares_outstanding=1_000_000, calendar_id="HKEX", dealing_cutoff="16:00", pricing="FORWARD")
    issuer.adjust_holding(fund, "HK-VATP-A", "BTC", "100", "opening balance")
    issuer.adjust_cash(fund, "25000.00", "opening cash")
    print(f"Loaded {fund}: 100 BTC, 1,000,000 shares, dealing on calendar HKEX (Asia/Hong_Kong, weekends "
          f"and {', '.join(HOLIDAYS)} closed),\ncut-off 16:00 local, settlement T+2 dealing days, FORWARD "
          "pricing: orders are priced at the official NAV of their dealing date.\n", file=out)

    orders = [dealer.submit_order(fund, "CREATE", units, f"victory-fwd-{units}") for units in (2, 1)]
    dealing_date = orders[0].dealing_date
    print(f"Creations before the cut-off of their dealing date {dealing_date}:", file=out)
    _print_forward_orders(orders, out)
    for refusal in (lambda: issuer.settle_order(orders[0].order_id),
                    lambda: issuer.strike_nav(fund, dealing_date, [Tick("BTC", "USD", "97400.00", 0)])):
        try:
            refusal()
        except grpc.RpcError as e:
            print(f"  refused: {e.code().name} {e.details()}", file=out)

    cutoff = calendar.cutoff_ms(HKEX, date.fromisoformat(dealing_date), CUTOFF)
    issuer.advance_clock(cutoff)
    print(f"\nTest clock advanced to the cut-off, 16:00 Hong Kong time on {dealing_date}. The benchmark's "
          "fixing is BTC 97,400.00 USD.", file=out)
    struck = issuer.strike_nav(fund, dealing_date, [Tick("BTC", "USD", "97400.00", cutoff)])
    nav = struck.nav
    print(f"StrikeNav {dealing_date}: official NAV {figure(nav.nav)}, NAV per share {nav.nav_per_share}, "
          f"shares {nav.shares_outstanding:,}, {struck.priced_orders} orders priced", file=out)
    table(["asset", "quantity", "official price", "value"],
          [(line.asset, line.quantity, figure(line.price), figure(line.value)) for line in nav.lines], out)
    priced = [auditor.get_order(o.order_id) for o in orders]
    print("\nThe same orders, priced:", file=out)
    _print_forward_orders(priced, out)
    settled = issuer.settle_order(priced[0].order_id)
    print(f"  {settled.order_id} settled by the issuer: {status_name(settled.status)}\n", file=out)

    pcf = dealer.get_pcf(fund, struck.pcf.dealing_date)
    print(f"PCF for the next dealing day, {pcf.dealing_date} (published at the strike)", file=out)
    table(["asset", "quantity per unit", "official price"],
          [(line.asset, line.quantity_per_unit, figure(price.price)) for line, price in zip(pcf.lines, pcf.prices,
                                                                                           strict=True)], out)
    print(f"  estimated cash component {figure(pcf.estimated_cash_component)}, NAV per unit "
          f"{figure(pcf.nav_per_unit)}\n", file=out)
    history = auditor.list_official_navs(fund)
    print("Official NAV history (as the auditor sees it)", file=out)
    table(["dealing date", "NAV", "NAV per share", "shares"],
          [(n.dealing_date, figure(n.nav), n.nav_per_share, f"{n.shares_outstanding:,}") for n in history], out)
    return cutoff


CHECKER = "checker"  # the demo's second issuer principal
DEMO_WALLETS = {"BTC": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",  # AP-VICTORY's (test vectors of BIP-173
                "ETH": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}  # and EIP-55)


def _in_kind_act(fund: str, issuer: EtfClient, checker: EtfClient, dealer: EtfClient, auditor: EtfClient,
                 out: TextIO) -> tuple[int, pb.Order]:
    """Act three (SPEC §14): whitelisted wallets approved by a second principal, a creation delivered on
    chain in two transfers, and a redemption paid out to the dealer's whitelisted wallets. Returns an
    instant at which the creation's ETH was delivered and confirmed but the order not settled (the ETH in
    flight), and the order as it stood then: act four's custodian statement is as of that instant."""
    print("\n== Act three: in kind, for real: whitelisted wallets, deliveries and payouts ==\n", file=out)
    issuer.update_fund(fund, require_delivery=True)
    wallets = [issuer.register_wallet("AP-VICTORY", asset, address, f"Victory {asset} settlement")
               for asset, address in DEMO_WALLETS.items()]
    try:
        issuer.approve_wallet(wallets[0].wallet_id)
    except grpc.RpcError as e:
        print(f"demo-issuer approving its own registration: refused, {e.code().name} {e.details()}", file=out)
    for w in wallets:
        checker.approve_wallet(w.wallet_id)
    print(f"{fund} now requires delivery. AP-VICTORY's wallets (as the auditor sees them):", file=out)
    table(["wallet", "asset", "address", "status", "registered by", "approved by"],
          [(w.wallet_id, w.asset, w.address, wallet_status(w.status), w.registered_by, w.approved_by)
           for w in auditor.list_wallets("AP-VICTORY")], out)

    order = dealer.submit_order(fund, "CREATE", 1, "victory-create-0002")
    print(f"\nCreation of 1 unit: {order.order_id} {status_name(order.status)}; BTC needs 2 confirmations, "
          "ETH 12.", file=out)
    (btc, eth) = order.deliverables
    issuer.record_delivery(order.order_id, "BTC", btc.quantity, "btc-tx-7f3a", DEMO_WALLETS["BTC"], 1)
    delivered = issuer.record_delivery(order.order_id, "ETH", eth.quantity, "eth-tx-91c2", DEMO_WALLETS["ETH"], 12)
    in_flight = (issuer.get_leader().now_unix_ms, delivered)  # at or after the delivery's record
    time.sleep(0.005)  # and before the next record's millisecond
    _print_deliveries(delivered, out)
    try:
        issuer.settle_order(order.order_id)
    except grpc.RpcError as e:
        print(f"  SettleOrder: refused, {e.code().name} {e.details()}", file=out)
    delivered = issuer.record_delivery(order.order_id, "BTC", btc.quantity, "btc-tx-7f3a", DEMO_WALLETS["BTC"], 2)
    print("  the custodian reports the BTC transfer at 2 confirmations:", file=out)
    _print_deliveries(delivered, out)
    print(f"  SettleOrder: {status_name(issuer.settle_order(order.order_id).status)}\n", file=out)

    ids = [w.wallet_id for w in wallets]
    redemption = dealer.submit_order(fund, "REDEEM", 1, "victory-redeem-0002", payout_wallet_ids=ids)
    print(f"Redemption of 1 unit to wallets {', '.join(ids)}: {redemption.order_id} "
          f"{status_name(redemption.status)}", file=out)
    table(["custodian", "asset", "quantity", "pay to"],
          [(leg.custodian_id, leg.asset, leg.quantity, leg.destination_address) for leg in redemption.legs], out)
    try:
        issuer.settle_order(redemption.order_id)
    except grpc.RpcError as e:
        print(f"  SettleOrder: refused, {e.code().name} {e.details()}", file=out)
    for i, leg in enumerate(redemption.legs):
        paid = issuer.record_payout(redemption.order_id, leg.custodian_id, leg.asset, leg.quantity, f"payout-tx-{i}")
    print(f"  {len(paid.payouts)} payouts recorded from the custodians' withdrawal reports; SettleOrder: "
          f"{status_name(issuer.settle_order(redemption.order_id).status)}", file=out)
    return in_flight


FEE_RATE = "0.0025"  # act four: the forward fund's management fee, a year's rate (0.25%)
FIXINGS = {1: "98120.00", 2: "97650.00", 3: "97400.00", 4: "97580.00", 5: "97850.00"}  # BTC by ISO weekday (USD)
COLD_RATIO = "0.95"  # HK-VATP-A's storage policy
NETWORK_FEE = "0.00042"  # BTC: what HK-VATP-A's statement is short of the book by
CLOSING_PRICE = "9.80"  # the exchange's closing price of a HK-BTC-FWD share on the Monday (USD)
WEEKDAYS = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _books_act(issuer: EtfClient, checker: EtfClient, auditor: EtfClient, out: TextIO, *, opened: date,
               in_flight: tuple[int, pb.Order], data_dir: Path, public_key: str) -> str:
    """Act four, the books (SPEC §17-§21): the forward fund's management fee accrued at a Friday's strike
    and the Monday's (three days), storage tiers swept and one custodian in breach, a custodian statement
    with a TIMING and an UNEXPLAINED break (resolved under four eyes), the daily report and the
    roll-forward, a PayFee left pending, and the signed checkpoints audited. Returns the Monday's date."""
    fund = FORWARD_FUND
    print("\n== Act four: the books: fees, storage tiers, reconciliation, reports, the audit trail ==\n", file=out)
    issuer.update_fund(fund, management_fee_rate=FEE_RATE, fee_day_count="ACT_365", fee_payment="CASH")
    print(f"{fund} now charges a management fee of 0.25% a year (UpdateFund: rate {FEE_RATE}, ACT_365, paid in "
          "cash).\nEach StrikeNav accrues it for the calendar days since the fund's previous strike: fee = "
          "basis x rate x days / 365,\nhalf-even to the cent, on the basis BTC x fixing + cash - accrued fees; "
          "the official NAV is basis - fee.", file=out)

    *week, monday = strike_dates(date.fromisoformat(auditor.list_official_navs(fund)[-1].dealing_date))
    unsettled = auditor.list_orders(fund, "ACCEPTED")  # act two's second creation
    navs = [_strike(issuer, fund, day, unsettled, out) for day in week]
    print(f"\nStrikeNav at each 16:00 cut-off up to Friday {week[-1]} (the test clock moved to each):", file=out)
    _print_strikes(navs, out)
    kept = auditor.get_checkpoint()  # journaled with Friday's strike: what an auditor keeps
    print(f"  An auditor keeps the checkpoint journaled with Friday's strike: tree_size {kept.tree_size}, root "
          f"{kept.root[:16]}...\n", file=out)

    # -- the weekend: storage tiers ---------------------------------------------------------------------
    print("Over the weekend, the storage tiers (GetHoldings). What enters a custodian's wallets enters hot; each "
          "custodian\nmust keep min_cold_ratio of what it holds cold (0.98 until SetStoragePolicy says otherwise).",
          file=out)
    issuer.set_storage_policy("HK-VATP-A", COLD_RATIO)
    swept = []
    for row in issuer.get_holdings(FUNDS[0]).holdings:
        excess = Fraction(row.tiers.hot) - Fraction(row.tiers.hot_allowance)
        if row.custodian_id == "HK-VATP-B" and excess > 0:
            quantity = _quantity(excess, row.asset)
            issuer.sweep(FUNDS[0], "HK-VATP-B", row.asset, quantity, "HOT", "COLD")
            swept.append(f"{figure(quantity)} {row.asset}")
    print(f"  SetStoragePolicy HK-VATP-A min_cold_ratio {COLD_RATIO}: nothing swept there, its coins still in hot.\n"
          f"  Sweep: HK-VATP-B reports it moved {' and '.join(swept)} of {FUNDS[0]} from hot to cold.", file=out)
    table(["fund", "custodian", "asset", "cold", "warm", "hot", "cold required", "hot allowance", "breach", "idle"],
          [(f, r.custodian_id, r.asset, figure(r.tiers.cold), figure(r.tiers.warm), figure(r.tiers.hot),
            figure(r.tiers.cold_required), figure(r.tiers.hot_allowance), "BREACH" if r.tiers.breach else "no",
            "yes" if r.tiers.idle else "no")
           for f in FUNDS for r in auditor.get_holdings(f).holdings
           if any(Fraction(q) for q in (r.tiers.cold, r.tiers.warm, r.tiers.hot))], out)
    print("  (idle: hot above its allowance for longer than the custodian's max_hot_seconds, 86,400 s)\n", file=out)

    # -- Monday: three days of fee, and the breach on the record -----------------------------------------
    nav = _strike(issuer, fund, monday, unsettled, out)
    print(f"StrikeNav Monday {monday}: the fee accrues for Saturday, Sunday and Monday, 3 calendar days", file=out)
    _print_strikes([nav], out)
    for b in nav.storage_breaches:
        print(f"  storage breach on the official NAV's record: {b.custodian_id} {b.asset}, cold {figure(b.cold)} < "
              f"{figure(b.cold_required)} required", file=out)
    print(file=out)

    _reconciliation(issuer, checker, auditor, in_flight, out)
    _reports(auditor, fund, opened, monday, out)

    proposal = issuer.pay_fee(fund, nav.accrued_fees)
    print(f"demo-issuer proposes PayFee {fund} {figure(nav.accrued_fees)}, the accrued fee, to the manager: "
          f"{proposal.instruction_id},\npending: {str(proposal.pending).lower()}; it waits for demo-checker "
          "(the console lists it)", file=out)
    print("Instructions (as the auditor sees them)", file=out)
    table(["instruction", "rpc", "status", "proposed by", "decided by"],
          [(i.instruction_id, i.rpc, instruction_status(i.status), i.proposed_by, i.decided_by or "-")
           for i in auditor.list_instructions()], out)

    # -- the audit trail ---------------------------------------------------------------------------------
    checkpoint = issuer.checkpoint()
    print(f"\nCheckpoint(): tree_size {checkpoint.tree_size}, root {checkpoint.root[:16]}..., signed (Ed25519) by "
          f"the key of the demo's config", file=out)
    journal = SqliteJournal(data_dir, lock=False, check=False)  # read only, beside the server
    try:
        audited = audit_records(journal.stored_records, shard="", public_key=public_key)
    finally:
        journal.close()
    print(f"etf-engine audit --data-dir {data_dir} --public-key {public_key[:16]}... (in process):", file=out)
    for line in audited.summary().splitlines():
        print(f"  {line}", file=out)
    proof = auditor.get_consistency_proof(kept.tree_size, checkpoint.tree_size)
    print(f"etf-engine audit --prove {kept.tree_size}:{kept.root[:16]}... (the root kept at Friday's strike):\n  "
          + prove(kept.tree_size, kept.root, checkpoint, list(proof.proof), proof.to_root, shard=checkpoint.shard,
                  public_key=public_key), file=out)
    return monday.isoformat()


def strike_dates(last: date) -> list[date]:
    """The dealing days after ``last`` (the last struck) up to the first Friday whose Monday is a dealing day
    too, and that Monday: three calendar days of fee at the Monday's strike."""
    friday = last + timedelta(days=1)
    while not (friday.isoweekday() == 5 and calendar.is_dealing_day(HKEX, friday)
               and calendar.is_dealing_day(HKEX, friday + timedelta(days=3))):
        friday += timedelta(days=1)
    days = [calendar.next_dealing_day(HKEX, last)]
    while days[-1] < friday:
        days.append(calendar.next_dealing_day(HKEX, days[-1]))
    return [*days, friday + timedelta(days=3)]


def _strike(issuer: EtfClient, fund: str, day: date, unsettled: list[pb.Order], out: TextIO) -> pb.OfficialNav:
    """The test clock to ``day``'s cut-off, orders due settled, and StrikeNav at the day's BTC fixing."""
    cutoff = issuer.advance_clock(calendar.cutoff_ms(HKEX, day, CUTOFF))
    for order in [o for o in unsettled if date.fromisoformat(o.settlement_date) <= day]:
        issuer.settle_order(order.order_id)
        unsettled.remove(order)
        print(f"{order.order_id} (act two's second creation) settles on its settlement date, {day}, before the "
              f"strike:\n  {' and '.join(f'{d.quantity} {d.asset}' for d in order.deliverables)} enter HK-VATP-A's "
              "hot wallet.", file=out)
    return issuer.strike_nav(fund, day.isoformat(), [Tick("BTC", "USD", FIXINGS[day.isoweekday()], cutoff)]).nav


def _print_strikes(navs: Sequence[pb.OfficialNav], out: TextIO) -> None:
    table(["dealing date", "day", "BTC", "fixing", "cash", "fee basis", "fee days", "fee", "accrued fees",
           "official NAV"],
          [(n.dealing_date, WEEKDAYS[date.fromisoformat(n.dealing_date).isoweekday()], n.lines[0].quantity,
            figure(n.lines[0].price), figure(n.cash), figure(n.fee_basis), n.fee_days, figure(n.fee),
            figure(n.accrued_fees), figure(n.nav)) for n in navs], out)


def _reconciliation(issuer: EtfClient, checker: EtfClient, auditor: EtfClient, in_flight: tuple[int, pb.Order],
                    out: TextIO) -> None:
    """HK-VATP-A's statement of HK-BTCETH as of act three's instant, against the book then: the ETH in
    flight (TIMING) and a network fee the book does not know of (UNEXPLAINED, resolved under four eyes)."""
    fund, custodian = FUNDS[0], "HK-VATP-A"
    as_of, order = in_flight
    delivered = {d.asset: Fraction(d.quantity) for d in order.deliveries if d.asset == "ETH"}  # 12 of 12 confirmations
    book, lines = [], []
    for row in issuer.get_holdings(fund, as_of=as_of).holdings:  # the book as it stood at as_of
        if row.custodian_id != custodian:
            continue
        available = Fraction(row.available) + Fraction(row.reserved)
        said = available + delivered.get(row.asset, 0) - (Fraction(NETWORK_FEE) if row.asset == "BTC" else 0)
        book.append((row.asset, "AVAILABLE", _quantity(available, row.asset), _quantity(said, row.asset)))
        book += [(row.asset, bucket, q, q) for bucket, q in (("STAKED", row.staked), ("UNBONDING", row.unbonding))
                 if Fraction(q)]
    lines = [StatementLine(asset, bucket, said) for asset, bucket, _, said in book]
    when = datetime.fromtimestamp(as_of // 1000, HKEX.zone)
    reference = f"VATP-A-{when:%Y%m%d-%H%M%S}"
    reply = issuer.record_statement(fund, custodian, as_of, reference, lines)
    print(f"Reconciliation: {custodian}'s statement {reference} of {fund}, as of {when:%Y-%m-%d %H:%M:%S}."
          f"{as_of % 1000:03d} Hong Kong\ntime (act three: {order.order_id}'s ETH delivered and confirmed, the "
          "order not yet settled), against the book then (RecordStatement):", file=out)
    table(["asset", "bucket", "book", "statement"], [(a, b, figure(q), figure(s)) for a, b, q, s in book], out)
    print(f"  {len(reply.opened)} breaks opened:", file=out)
    _print_breaks(reply.opened, out)

    unexplained = next(b for b in reply.opened if break_classification(b.classification) == "UNEXPLAINED")
    adjustment = f"-{NETWORK_FEE}"
    comment = "network fee of the custodian's consolidation, paid from the fund's wallet"
    proposed = issuer.resolve_break(unexplained.break_id, adjustment, comment)
    print(f"  demo-issuer proposes ResolveBreak {unexplained.break_id}, adjustment {adjustment} BTC, {comment!r}:\n"
          f"    {proposed.instruction_id}, pending: {str(proposed.pending).lower()} (four eyes)", file=out)
    decided = checker.approve_instruction(proposed.instruction_id)
    print(f"  demo-checker approves {decided.instruction_id}: {instruction_status(decided.status)}", file=out)
    resolved = auditor.get_break(unexplained.break_id)
    print(f"  {resolved.break_id} {break_status(resolved.status)}: adjustment {resolved.adjustment} BTC, proposed "
          f"by {resolved.proposed_by}, approved by {resolved.approved_by}", file=out)
    print("Open breaks (as the auditor sees them; a later statement that agrees with the book resolves a TIMING one)",
          file=out)
    _print_breaks(auditor.list_breaks(fund, "OPEN"), out)
    print(file=out)


def _print_breaks(breaks: Sequence[pb.Break], out: TextIO) -> None:
    table(["break", "asset", "bucket", "book", "statement", "difference", "classification", "status", "explained by"],
          [(b.break_id, b.asset, bucket_name(b.bucket), figure(b.book), figure(b.statement), figure(b.difference),
            break_classification(b.classification), break_status(b.status),
            " ".join([*b.order_ids, *b.tx_hashes]) or "-") for b in breaks], out)


def _reports(auditor: EtfClient, fund: str, opened: date, monday: date, out: TextIO) -> None:
    """The daily report of the Monday's strike (R1) and the roll-forward since the fund's first day (R3)."""
    try:
        daily = auditor.daily_report(fund, monday.isoformat(), closing_price=CLOSING_PRICE)
        roll = auditor.roll_forward(fund, opened.isoformat(), monday.isoformat())
    except grpc.RpcError as e:
        code = e.code()  # type: ignore[attr-defined]
        if code != grpc.StatusCode.UNIMPLEMENTED:
            raise
        print(f"Reports: this server does not serve them yet ({code.name})\n", file=out)
        return
    nav = daily.official_nav
    print(f"Daily report of {fund} for {monday} (DailyReport; etf-engine report daily; GET /reports/daily.csv)",
          file=out)
    breaches = ", ".join(f"{b.custodian_id} {b.asset} cold {figure(b.cold)} < {figure(b.cold_required)}"
                         for b in daily.storage_breaches)
    table(["figure", "value"], [
        ("official NAV", figure(nav.nav)), ("NAV per share", nav.nav_per_share),
        ("NAV per creation unit", figure(daily.nav_per_creation_unit)),
        ("cash component (struck)", figure(daily.cash_component)),
        ("next PCF's estimated cash component", figure(daily.estimated_cash_component)),
        ("shares outstanding", f"{daily.shares_outstanding:,}"),
        ("shares created / redeemed that day", f"{daily.shares_created:,} / {daily.shares_redeemed:,}"),
        ("fee accrued at the strike", figure(daily.fee)), ("accrued fees", figure(daily.accrued_fees)),
        ("storage breaches", breaches or "none"),
        ("open breaks", ", ".join(b.break_id for b in daily.open_breaks) or "none"),
        ("overdue orders", ", ".join(o.order_id for o in daily.overdue_orders) or "none"),
        ("closing price / premium (discount)", f"{daily.closing_price} / {daily.premium_discount}"),
    ], out)
    print(f"\nRoll-forward of {fund}, {getattr(roll, 'from')} (its first day) to {roll.to} (RollForward; etf-engine "
          "report roll-forward):\nopening + movements - closing = check, exactly", file=out)
    table(["item", "opening", "movements", "closing", "check"],
          [(b.item, figure(b.opening), ", ".join(_movement(m) for m in b.movements if Fraction(m.amount)) or "-",
            figure(b.closing), b.check) for b in roll.balances], out)
    print(file=out)


def _movement(m: pb.RollForwardMovement) -> str:
    sign = "-" if m.amount.startswith("-") else "+"
    label = m.kind.replace("_", " ") + (f" ({m.reason})" if m.reason else "")
    return f"{sign}{figure(m.amount.removeprefix('-'))} {label}"


def _quantity(value: Fraction, asset: str) -> str:
    """An exact quantity of ``asset`` as its decimal text."""
    scaled = value * 10 ** DECIMALS[asset]
    assert scaled.denominator == 1, value
    return format_quantity(int(scaled), DECIMALS[asset])


def _print_deliveries(order: pb.Order, out: TextIO) -> None:
    table(["asset", "quantity", "tx hash", "from", "confirmations"],
          [(d.asset, d.quantity, d.tx_hash, d.from_address, d.confirmations) for d in order.deliveries], out)


def _print_forward_orders(orders: Sequence[pb.Order], out: TextIO) -> None:
    table(["order", "units", "status", "dealing date", "settles", "priced", "cash component", "cash amount"],
          [(o.order_id, o.units, status_name(o.status), o.dealing_date, o.settlement_date or "-",
            "yes" if o.priced else "no", figure(o.basket.cash_component), figure(o.cash_amount)) for o in orders],
          out)


def _print_nav(client: EtfClient, fund: str, out: TextIO, title: str) -> None:
    nav = client.get_nav(fund)
    print(title, file=out)
    table(["asset", "quantity", "price", "value"],
          [(line.asset, line.quantity, figure(line.price), figure(line.value)) for line in nav.lines], out)
    print(f"  cash {figure(nav.cash)}   NAV {figure(nav.nav)}   shares {nav.shares_outstanding:,}   "
          f"NAV per share {nav.nav_per_share}   stale {str(nav.stale).lower()}\n", file=out)


def _print_holdings(client: EtfClient, fund: str, out: TextIO, title: str, only: str = "") -> None:
    h = client.get_holdings(fund)
    if title:
        print(title, file=out)
    if not only:
        table(["custodian", "asset", "available", "reserved", "staked", "unbonding", "licensed"],
              [(r.custodian_id, r.asset, r.available, r.reserved, r.staked, r.unbonding,
                "yes" if r.licensed else "no") for r in h.holdings], out)
    table(["asset", "committed", "liquid", "illiquid", "illiquid/committed", "cap", "liquid/committed",
           "buffer"],
          [(a.asset, a.committed, a.liquid, a.illiquid, a.illiquid_ratio or "-", a.staking_cap,
            a.liquid_ratio or "-", a.liquidity_buffer) for a in h.assets if not only or a.asset == only], out)
    print(file=out)
