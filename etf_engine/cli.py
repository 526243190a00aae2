"""The etf-engine command: serve, hash-token, demo, init, verify, journal, bench.

    etf-engine serve --config engine.toml
    etf-engine hash-token TOKEN
    etf-engine demo [--keep]
    etf-engine init [DIR]
    etf-engine verify --data-dir DIR | --dsn DSN [--shard S]
    etf-engine journal copy --from DATA_DIR --to DSN [--shard S]
    etf-engine bench --clients 1,64 --json run.json --plot run.png
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import grpc

from etf_engine import calendar
from etf_engine.api.auth import ISSUER, OBSERVER, PARTICIPANT, Principal, hash_token
from etf_engine.bench.run import add_arguments as add_bench_arguments
from etf_engine.bench.run import run as run_bench
from etf_engine.client import EtfClient, FundAssetTerms, Tick, side_name, status_name, wallet_status
from etf_engine.config import Config, ConfigError, load_config
from etf_engine.journal import JournalError
from etf_engine.journal.sqlite import DataDirInUse
from etf_engine.ledger import make_ledger
from etf_engine.numbers import format_scaled
from etf_engine.snapshot import LedgerState
from etf_engine.table import figure, table
from etf_engine.v1 import engine_pb2 as pb

LEDGERS = ("core", "reference", "auto")
LEDGER_HELP = "ledger: core (compiled), reference (pure Python) or auto (core when built, else reference)"


# == serve ==========================================================================================
def cmd_serve(args: argparse.Namespace) -> int:
    from etf_engine.api.server import EngineServer, serve

    logging.getLogger("etf_engine.engine").setLevel(logging.INFO)  # state digests at start and stop
    try:
        config = load_config(args.config) if args.config else Config()
    except ConfigError as e:
        print(f"etf-engine: {e}", file=sys.stderr)
        return 2
    if not config.principals:
        print("etf-engine: WARNING: no [[principals]] configured: every call will be refused "
              "(UNAUTHENTICATED). Add principals to a config file and pass --config.", file=sys.stderr)
    ledger = make_ledger(args.ledger)

    def ready(server: EngineServer) -> None:
        host = config.listen.rpartition(":")[0]
        security = "mutual TLS" if config.tls and config.tls.mutual else "TLS" if config.tls else "plaintext"
        j = config.journal
        journal = (f"journal shard {j.shard!r} in PostgreSQL, {server.engine.role.lower()} "
                   f"{server.engine.node_name}" if j.postgresql else f"journal in {config.data_dir}")
        print(f"etf-engine: listening on {host}:{server.port} ({security}, reflection "
              f"{'on' if config.reflection else 'off'}, {len(config.principals)} principals, {journal})", flush=True)
        if server.http_port is not None:
            web = f"http://{config.http_listen.rpartition(':')[0]}:{server.http_port}"  # type: ignore[union-attr]
            print(f"etf-engine: console {web}/  Connect {web}/etf_engine.v1.<Service>/<Method>  "
                  f"metrics {web}/metrics", flush=True)

    try:
        status = asyncio.run(serve(config, ledger=ledger, on_ready=ready))
    except DataDirInUse as e:  # a configuration mistake: two servers given one data directory
        print(f"etf-engine: {e}", file=sys.stderr)
        return 2
    except (OSError, JournalError) as e:
        print(f"etf-engine: {e}", file=sys.stderr)
        return 1
    if status:
        print("etf-engine: stopped itself (see the log); started again, it recovers from the journal",
              file=sys.stderr, flush=True)
        return status
    print("etf-engine: stopped", flush=True)
    return 0


# == hash-token =====================================================================================
def cmd_hash_token(args: argparse.Namespace) -> int:
    # "-" reads the token from stdin, keeping it out of shell history and process listings.
    token = sys.stdin.readline().rstrip("\r\n") if args.token == "-" else args.token
    if not token:
        print("etf-engine: empty token", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0


# == demo ===========================================================================================
def run_demo(out: TextIO, ledger_kind: str = "auto", keep: bool = False, http_listen: str = "127.0.0.1:0") -> int:
    """The demo; ``keep``: then serve on (the console at ``http_listen``) until SIGINT or SIGTERM."""
    from etf_engine.api.server import BackgroundServer

    tokens = {role: secrets.token_urlsafe(24) for role in (ISSUER, CHECKER, PARTICIPANT, OBSERVER)}
    principals = (
        Principal("demo-issuer", ISSUER, hash_token(tokens[ISSUER])),
        Principal("demo-checker", ISSUER, hash_token(tokens[CHECKER])),  # the second pair of eyes
        Principal("victory-pd", PARTICIPANT, hash_token(tokens[PARTICIPANT]), "AP-VICTORY"),
        Principal("auditor", OBSERVER, hash_token(tokens[OBSERVER])),
    )
    fund = "HK-BTCETH"
    with tempfile.TemporaryDirectory(prefix="etf-demo-") as data_dir:
        # The test clock lets the second act pass a 16:00 cut-off without waiting for it.
        config = Config(listen="127.0.0.1:0", data_dir=Path(data_dir), principals=principals, grace_seconds=2.0,
                        test_clock=True, http_listen=http_listen if keep else None)
        with BackgroundServer(config, ledger=make_ledger(ledger_kind)) as server:
            print(f"etf-engine demo: server on {server.target}, data in {data_dir}\n", file=out)
            issuer = EtfClient(server.target, tokens[ISSUER])
            dealer = EtfClient(server.target, tokens[PARTICIPANT])
            auditor = EtfClient(server.target, tokens[OBSERVER])
            checker = EtfClient(server.target, tokens[CHECKER])
            try:
                now = int(time.time())
                # -- the fund, as an issuer would load it ------------------------------------------
                issuer.register_asset("BTC", 8, min_confirmations=2)
                issuer.register_asset("ETH", 18, min_confirmations=12)
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
                clock_ms = _forward_act(issuer, dealer, auditor, out)
                issuer.publish_prices([Tick("BTC", "USD", "97400.00", clock_ms),  # fresh at the test clock's time
                                       Tick("ETH", "USD", "3420.10", clock_ms)])
                _in_kind_act(fund, issuer, checker, dealer, auditor, out)
            finally:
                for client in (issuer, dealer, auditor, checker):
                    client.close()
            print("\ndemo complete.", file=out)
            if keep:
                _serve_on(server.http_url, server.target, principals, tokens, out)
    return 0


def _serve_on(url: str, target: str, principals: Sequence[Principal], tokens: dict[str, str], out: TextIO) -> None:
    """demo --keep: the console's address and each principal's token, once; then wait for a signal."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"\nThe demo server keeps running: console {url}/  (gRPC {target}, Connect {url}/etf_engine.v1.*, "
          f"metrics {url}/metrics)\nTokens (shown once; enter one in the console):", file=out)
    roles = {p.name: role for p, role in zip(principals, tokens, strict=True)}
    table(["principal", "role", "token"], [(p.name, p.role, tokens[roles[p.name]]) for p in principals], out)
    print("Stop it with Ctrl-C (SIGINT) or SIGTERM.", file=out, flush=True)
    stop.wait()
    print("etf-engine demo: stopping.", file=out, flush=True)


HOLIDAYS = ("2026-12-25", "2026-12-26", "2027-01-01")  # a few Hong Kong holidays, for the calendar's sake
FORWARD_FUND = "HK-BTC-FWD"


def _forward_act(issuer: EtfClient, dealer: EtfClient, auditor: EtfClient, out: TextIO) -> int:
    """Act two: a FORWARD fund on the Hong Kong dealing calendar (SPEC §13). Orders before the cut-off
    wait for the official NAV; the strike prices them and publishes the next dealing day's PCF.
    Returns the time the test clock was moved to."""
    fund = FORWARD_FUND
    print("\n== Act two: a forward-priced fund on the Hong Kong dealing calendar ==\n", file=out)
    issuer.register_calendar("HKEX", "Asia/Hong_Kong", list(HOLIDAYS))
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

    hk = calendar.Calendar("HKEX", "Asia/Hong_Kong", frozenset(map(date.fromisoformat, HOLIDAYS)),
                           frozenset(calendar.DEFAULT_WEEKEND))
    cutoff = calendar.cutoff_ms(hk, date.fromisoformat(dealing_date), calendar.cutoff_seconds("16:00:00"))
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
                 out: TextIO) -> None:
    """Act three (SPEC §14): whitelisted wallets approved by a second principal, a creation delivered on
    chain in two transfers, and a redemption paid out to the dealer's whitelisted wallets."""
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


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(sys.stdout, args.ledger, keep=args.keep, http_listen=args.http_listen)


# == init ==========================================================================================
INIT_PRINCIPALS = (  # (name, role, participant_id): a second issuer approves what the first registers
    ("issuer-ops", ISSUER, None), ("issuer-checker", ISSUER, None), ("dealer", PARTICIPANT, "AP-1"),
    ("auditor", OBSERVER, None),
)


def cmd_init(args: argparse.Namespace) -> int:
    """A ready config in DIR with fresh tokens (their digests in the file); each token is printed once."""
    folder = Path(args.dir)
    path = folder / "etf.toml"
    if path.exists() and not args.force:
        print(f"etf-engine: {path} exists; it is never overwritten (pass --force to replace it)", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    tokens = {name: secrets.token_urlsafe(32) for name, _role, _pid in INIT_PRINCIPALS}
    lines = ["# etf-engine config, written by `etf-engine init`. Relative paths are relative to this file.",
             'listen = "127.0.0.1:50051"', 'data_dir = "etf-data"', "reflection = true", "",
             "[http]  # the console, Connect JSON and /metrics", 'listen = "127.0.0.1:8080"']
    for name, role, participant_id in INIT_PRINCIPALS:
        lines += ["", "[[principals]]", f'name = "{name}"', f'role = "{role}"']
        if participant_id:
            lines.append(f'participant_id = "{participant_id}"')
        lines.append(f'token_sha256 = "{hash_token(tokens[name])}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    load_config(path)  # what was written must load
    print(f"wrote {path}. Tokens, shown this once (the file keeps only their SHA-256):")
    table(["principal", "role", "token"], [(n, r + (f" ({p})" if p else ""), tokens[n]) for n, r, p in INIT_PRINCIPALS],
          sys.stdout)
    print(f"\nStart the server:  etf-engine serve --config {path}\nOpen the console:  http://127.0.0.1:8080/ "
          "(enter a token)\nRegister participant AP-1 before the dealer's token can deal.")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every record and the snapshot without serving. It takes no lock (a running server may own
    the directory) and opens SQLite read-only: it changes nothing it reads. On a PostgreSQL shard
    (``--dsn``) it reads in one read-only transaction: no lease, no schema, a standby will do."""
    if (args.data_dir is None) == (args.dsn is None):
        print("etf-engine verify: give exactly one of --data-dir DIR or --dsn DSN", file=sys.stderr)
        return 2
    if args.dsn is not None:
        return _verify_shard(args.dsn, args.shard or "main")
    if args.shard is not None:
        print("etf-engine verify: --shard goes with --dsn, not --data-dir", file=sys.stderr)
        return 2

    from etf_engine.journal import SqliteJournal
    from etf_engine.journal.verify import verify_journal

    if not Path(args.data_dir, "journal.sqlite3").exists():
        print(f"etf-engine verify: no journal in {args.data_dir}", file=sys.stderr)
        return 1
    try:
        journal = SqliteJournal(args.data_dir, lock=False, check=True)
        try:
            verified = verify_journal(journal)
        finally:
            journal.close()
    except JournalError as e:
        print(f"etf-engine verify: {e}", file=sys.stderr)
        return 1
    if journal.torn_tail_frames:
        print(f"torn tail: {journal.torn_tail_frames} WAL frame(s) after the last commit, never acknowledged; "
              "start-up discards them")
    _print_verified(verified.records, verified.state, verified.digest)
    return 0


def _print_verified(records: int, state: LedgerState, digest: str) -> None:
    print(f"records {records}, funds {len(state.funds)}, orders {len(state.orders)}, "
          f"participants {len(state.participants)}, prices {len(state.prices)}")
    print(f"digest {digest}")


def _tool_failed(command: str, error: BaseException) -> int:
    """One line, never a traceback: 2 for what was asked wrongly (bad arguments, a shard or data
    directory that may not be used), 1 for damage or a database that cannot be read."""
    from etf_engine.journal.verify import ToolRefused

    if isinstance(error, ToolRefused | DataDirInUse):
        print(f"etf-engine {command}: {error}", file=sys.stderr)
        return 2
    if isinstance(error, JournalError | OSError):
        print(f"etf-engine {command}: {error}", file=sys.stderr)
        return 1
    first = (str(error).strip().splitlines() or [""])[0]
    print(f"etf-engine {command}: {type(error).__name__}: {first}", file=sys.stderr)
    return 1


def _verify_shard(dsn: str, shard: str) -> int:
    from etf_engine.journal.verify import verify_shard

    try:
        verified = verify_shard(dsn, shard)
    except Exception as e:  # one line, whatever went wrong
        return _tool_failed("verify", e)
    _print_verified(verified.records, verified.state, verified.digest)
    return 0


# == journal ========================================================================================
def cmd_journal_copy(args: argparse.Namespace) -> int:
    """A stopped server's whole SQLite journal into an empty PostgreSQL shard, checked before and after."""
    from etf_engine.journal.copy import copy_to_shard

    try:
        copied = copy_to_shard(args.from_dir, args.to, args.shard)
    except Exception as e:  # one line, whatever went wrong
        return _tool_failed("journal copy", e)
    if copied.torn_tail_frames:
        print(f"torn tail: {copied.torn_tail_frames} WAL frame(s) after the last commit in {args.from_dir}, "
              "never acknowledged, discarded")
    if copied.snapshot_seq is not None:
        print(f"snapshot at record {copied.snapshot_seq} copied")
    else:
        print(f"no snapshot in {args.from_dir}: a server on the shard replays every record at start")
    print(f"copied {copied.target.records} records; digest {copied.target.digest}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etf-engine", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the gRPC server and, with [http] listen in the config, the HTTP listener",
        description="Run the gRPC server. With [http] listen in the config (etf-engine init writes it), the "
                    "same process also runs the HTTP listener: the operations console at /, Connect "
                    "(POST /etf_engine.v1.<Service>/<Method>) and /metrics for Prometheus.")
    serve.add_argument("--config", metavar="FILE", help="TOML config (default: 127.0.0.1:50051, ./etf-data)")
    serve.add_argument("--ledger", choices=LEDGERS, default="core", help=LEDGER_HELP)
    serve.set_defaults(func=cmd_serve)

    hash_cmd = sub.add_parser("hash-token", help="print the SHA-256 digest of a token for the config")
    hash_cmd.add_argument("token", help='the token, or "-" to read it from stdin')
    hash_cmd.set_defaults(func=cmd_hash_token)

    demo = sub.add_parser("demo", help="start a throwaway server with a sample Hong Kong fund and walk through it")
    demo.add_argument("--ledger", choices=LEDGERS, default="auto", help=LEDGER_HELP)
    demo.add_argument("--keep", action="store_true", help="then keep the server running, with the console, until "
                                                           "SIGINT or SIGTERM; prints the console URL and tokens once")
    demo.add_argument("--http-listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                      help="with --keep: where the console, Connect and /metrics listen (default %(default)s)")
    demo.set_defaults(func=cmd_demo)

    init = sub.add_parser("init", help="write a ready config with fresh tokens into DIR (etf.toml)")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR", help="created if missing (default: here)")
    init.add_argument("--force", action="store_true", help="replace an existing etf.toml")
    init.set_defaults(func=cmd_init)

    verify = sub.add_parser("verify", help="replay a data directory or a PostgreSQL shard offline; print counts "
                                           "and the state digest")
    verify.add_argument("--data-dir", metavar="DIR", help="the SQLite journal of this data directory")
    verify.add_argument("--dsn", metavar="DSN", help="a PostgreSQL journal (read only: a standby will do)")
    verify.add_argument("--shard", metavar="S", help='the shard of --dsn (default "main")')
    verify.set_defaults(func=cmd_verify)

    journal = sub.add_parser("journal", help="tools for the journal")
    journal_sub = journal.add_subparsers(dest="journal_command", required=True)
    copy = journal_sub.add_parser("copy", help="copy a stopped server's SQLite journal into an empty PostgreSQL "
                                               "shard")
    copy.add_argument("--from", dest="from_dir", required=True, metavar="DATA_DIR",
                      help="the data directory (no server may be running on it)")
    copy.add_argument("--to", required=True, metavar="DSN", help="the PostgreSQL database (read-write)")
    copy.add_argument("--shard", default="main", metavar="S", help='an empty shard (default "main")')
    copy.set_defaults(func=cmd_journal_copy)

    bench = sub.add_parser("bench", help="load a server with concurrent clients; latency and throughput per RPC "
                                         "against the gRPC floor")
    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    parser.description = f"The etf-engine command: {', '.join(sub.choices)}."  # every command, from the parser
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
