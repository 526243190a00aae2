"""``etf-engine apply`` and ``etf-engine prices publish`` as a newcomer runs them: subprocesses against
a real server (``etf-engine serve`` on a free loopback port). A first apply creates, a second has
nothing to do, an updatable change updates, a change the API cannot apply exits 2 naming the object
and field with nothing changed, --dry-run changes nothing, a malformed file is refused naming the
key; and ``init``'s own fund.toml, applied, then priced, takes a first order ACCEPTED.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from test_first_run import lines_of, read_until, tokens_in
from test_service_tls import TOKEN as TLS_TOKEN
from test_service_tls import _server as tls_server
from test_service_tls import pki as pki  # noqa: F401  (the fixture: a throwaway CA and certificates)

from etf_engine import apply
from etf_engine.api.auth import hash_token
from etf_engine.client import EtfClient
from etf_engine.v1 import engine_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "etf_engine.cli"]
ISSUER, DEALER = "apply-issuer-token", "apply-dealer-token"
FUND = "HK-BTCETH"  # the example's
CONFIG = f"""listen = "127.0.0.1:0"
data_dir = "data"

[[principals]]
name = "ops"
role = "issuer"
token_sha256 = "{hash_token(ISSUER)}"

[[principals]]
name = "dealer"
role = "participant"
participant_id = "AP-1"
token_sha256 = "{hash_token(DEALER)}"
"""


def serve(config: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*CLI, "serve", "--config", str(config)], env=ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        _, listening = read_until(lines_of(proc), r"listening on (127\.0\.0\.1:\d+)")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, listening[1]


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A served empty engine: its gRPC target."""
    config = tmp_path / "etf.toml"
    config.write_text(CONFIG)
    proc, target = serve(config)
    yield target
    stop(proc)


def run(*args: str, token: str = ISSUER, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env={**ENV, "ETF_ENGINE_TOKEN": token}, text=True, capture_output=True,
                          input=stdin, timeout=120)


def applied(target: str, path: Path, *more: str) -> subprocess.CompletedProcess:
    return run("apply", str(path), "--server", target, *more)


def journal_seq(target: str) -> int:
    """The server's last journal record: unchanged means nothing was written."""
    with EtfClient(target, ISSUER) as client:
        return client.get_leader().applied_seq


def example(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """init's fund.toml, with each (old, new) replaced once."""
    text = apply.example(date.today(), "AP-1")
    for old, new in edits:
        assert text.count(old) >= 1, old
        text = text.replace(old, new, 1)
    path = tmp_path / "fund.toml"
    path.write_text(text)
    return path


def test_first_apply_creates_a_second_has_nothing_to_do(server: str, tmp_path: Path) -> None:
    path = example(tmp_path)
    dry = applied(server, path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "create fund HK-BTCETH (CreateFund)" in dry.stdout
    assert "7 changes planned" in dry.stdout and journal_seq(server) == 0

    first = applied(server, path)
    assert first.returncode == 0, first.stderr
    creates = re.findall(r"^  created (\w+) (\S+) \((\w+)\)$", first.stdout, re.M)
    assert creates == [("asset", "BTC", "RegisterAsset"), ("asset", "ETH", "RegisterAsset"),
                       ("custodian", "CUST-A", "RegisterCustodian"), ("custodian", "CUST-B", "RegisterCustodian"),
                       ("calendar", "HK", "RegisterCalendar"), ("participant", "AP-1", "RegisterParticipant"),
                       ("fund", FUND, "CreateFund")]  # dependency order
    with EtfClient(server, ISSUER) as client:
        assert [(f.fund_id, f.base_currency, f.dealing_status) for f in client.list_funds()] == \
            [(FUND, "USD", pb.DealingStatus.OPEN)]
        eth = next(a for a in client.get_holdings(FUND).assets if a.asset == "ETH")
        assert (eth.staking_cap, eth.liquidity_buffer) == ("0.30", "0.10")
        assert client.get_basket(FUND).creation_unit == 50_000
        assert client.get_calendar("HK").time_zone == "Asia/Hong_Kong"
        (participant,) = client.list_participants()
        assert (participant.participant_id, list(participant.eligible_fund_ids)) == ("AP-1", [FUND])
    seq = journal_seq(server)

    second = applied(server, path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("nothing to do") and "1 fund" in second.stdout
    assert journal_seq(server) == seq
    again = applied(server, path, "--dry-run")
    assert again.returncode == 0 and again.stdout.startswith("nothing to do")


def test_a_changed_updatable_field_is_updated(server: str, tmp_path: Path) -> None:
    assert applied(server, example(tmp_path)).returncode == 0
    changed = example(
        tmp_path,
        ('creation_fee = "1500.00"', 'creation_fee = "1200"'),
        ('staking_cap = "0.30"', 'staking_cap = "0.25"'),
        ('custodian_priority = ["CUST-A", "CUST-B"]', 'custodian_priority = ["CUST-B", "CUST-A"]'),
        ('holidays = ["', 'holidays = ["2030-01-02", "'),
        ('licence_status = "ACTIVE"', 'licence_status = "SUSPENDED"'),
    )
    seq = journal_seq(server)
    dry = applied(server, changed, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 changes planned" in dry.stdout and journal_seq(server) == seq  # the plan only

    done = applied(server, changed)
    assert done.returncode == 0, done.stderr
    assert "updated custodian CUST-A (SetCustodianLicence): licence_status ACTIVE -> SUSPENDED" in done.stdout
    assert "updated calendar HK (SetHolidays)" in done.stdout
    fund_line = next(line for line in done.stdout.splitlines() if "updated fund" in line)
    for change in ("creation_fee 1500.00 -> 1200.00", "custodian_priority [CUST-A, CUST-B] -> [CUST-B, CUST-A]",
                   "assets[ETH].staking_cap 0.30 -> 0.25"):
        assert change in fund_line
    assert journal_seq(server) == seq + 3  # one call each
    with EtfClient(server, ISSUER) as client:
        assert "2030-01-02" in client.get_calendar("HK").holidays
        assert next(a for a in client.get_holdings(FUND).assets if a.asset == "ETH").staking_cap == "0.25"
    assert applied(server, changed).stdout.startswith("nothing to do")

    # The same values written otherwise are the same: figures by value, a date-time as unix seconds.
    expires = re.search(r"licence_expires_at = (\S+)", changed.read_text())[1]  # type: ignore[index]
    seconds = apply.unix_seconds(expires, "")
    same = example(
        tmp_path,
        ('creation_fee = "1500.00"', 'creation_fee = "1200.0"'),
        ('staking_cap = "0.30"', 'staking_cap = "0.2500"'),
        ('custodian_priority = ["CUST-A", "CUST-B"]', 'custodian_priority = ["CUST-B", "CUST-A"]'),
        ('holidays = ["', 'holidays = ["2030-01-02", "'),
        ('licence_status = "ACTIVE"', 'licence_status = "SUSPENDED"'),
        (f"licence_expires_at = {expires}", f"licence_expires_at = {seconds}"),
        (f"licence_expires_at = {expires}", f'licence_expires_at = "{expires}"'),
        ('dealing_cutoff = "16:00"', 'dealing_cutoff = "16:00:00"'),
    )
    assert applied(server, same).stdout.startswith("nothing to do")


def test_a_difference_the_api_cannot_apply_changes_nothing(server: str, tmp_path: Path) -> None:
    assert applied(server, example(tmp_path)).returncode == 0
    seq = journal_seq(server)
    path = example(
        tmp_path,
        ('name = "Harbour Bitcoin & Ether ETF"', 'name = "Renamed"'),  # updatable, but not applied either
        ('base_currency = "USD"', 'base_currency = "HKD"'),
        ("decimals = 8", "decimals = 9"),
        ("max_units_per_day = 50", "max_units_per_day = 60"),
    )
    refused = applied(server, path)
    assert refused.returncode == 2, refused.stdout
    lines = refused.stderr.splitlines()
    assert lines == [
        "etf-engine apply: asset BTC: decimals is 8 on the server and 9 in fund.toml (assets[0]); no RPC changes "
        "a registered asset",
        "etf-engine apply: participant AP-1: max_units_per_day is 50 on the server and 60 in fund.toml "
        "(participants[0]); no RPC changes a registered participant",
        "etf-engine apply: fund HK-BTCETH: base_currency is 'USD' on the server and 'HKD' in fund.toml (funds[0]); "
        "UpdateFund cannot change it",
        f"etf-engine apply: nothing was changed on {server}",
    ]
    assert journal_seq(server) == seq and refused.stdout == ""
    assert applied(server, path, "--dry-run").returncode == 2
    dealer = run("apply", str(path), "--server", server, token=DEALER)
    assert dealer.returncode == 1 and "PERMISSION_DENIED" in dealer.stderr and "issuer's token" in dealer.stderr

    # A fund's assets are fixed too: one more is named, and so is one fewer.
    text = example(tmp_path).read_text()
    more = text.replace('[[funds.assets]]\nasset = "BTC"', '[[funds.assets]]\nasset = "SOL"\n\n'
                        '[[funds.assets]]\nasset = "BTC"')
    path.write_text(more.replace("[[assets]]", '[[assets]]\nsymbol = "SOL"\ndecimals = 9\n\n[[assets]]', 1))
    added = applied(server, path)
    assert added.returncode == 2
    assert "fund HK-BTCETH: assets[SOL] is absent on the server and present in fund.toml (funds[0]); UpdateFund " \
           "cannot add an asset to a fund" in added.stderr
    assert journal_seq(server) == seq  # not even the asset SOL
    eth = text.index('[[funds.assets]]\nasset = "ETH"')
    path.write_text(text[:eth] + text[text.index("# Orders need prices"):])
    removed = applied(server, path)
    assert removed.returncode == 2
    assert "fund HK-BTCETH: assets[ETH] is present on the server and absent in fund.toml (funds[0]); UpdateFund " \
           "cannot remove an asset from a fund" in removed.stderr
    assert journal_seq(server) == seq


def test_references_and_values_are_checked_before_the_first_write(server: str, tmp_path: Path) -> None:
    cases = {
        ('creation_custodian_id = "CUST-A"', 'creation_custodian_id = "CUST-X"'):
            "fund HK-BTCETH (fund.toml funds[0]): creation_custodian_id: custodian 'CUST-X' is neither in fund.toml "
            "nor on the server",
        ('creation_custodian_id = "CUST-A"', ""):
            "fund HK-BTCETH (fund.toml funds[0]): creation_custodian_id: missing",
        ('calendar_id = "HK"\ndealing', 'calendar_id = "NYSE"\ndealing'):
            "funds[0]): calendar_id: calendar 'NYSE' is neither",
        ('creation_fee = "1500.00"', 'creation_fee = "1500.001"'): "fund.toml: funds[0].creation_fee: '1500.001' "
                                                                    "has more than 2 fraction digits",
        ('seed_quantity_per_unit = "5"', 'seed_quantity_per_unit = "0.000000001"'):
            "funds[0].assets[0].seed_quantity_per_unit: '0.000000001' has more than 8 fraction digits",
        ('dealing_cutoff = "16:00"', 'dealing_cutoff = "4pm"'): "funds[0].dealing_cutoff: '4pm' is not a local time",
        ('holidays = ["', 'holidays = ["2030-02-30", "'): "calendars[0].holidays[0]: '2030-02-30' is not a date",
    }
    for edit, message in cases.items():
        result = applied(server, example(tmp_path, edit))
        assert result.returncode == 2 and message in result.stderr, (edit, result.stderr)
    assert journal_seq(server) == 0


@pytest.mark.parametrize(("text", "names"), [
    ("[[funds]]\nfund_id = 'F'\ncreation_fe = '1'\n", "fund.toml: funds[0].creation_fe: CreateFundRequest has no "
                                                       "such field; its fields: fund_id, name"),
    ("[[funds]]\nfund_id = 'F'\n[[funds.assets]]\nasset = 'BTC'\nstaking_cap = 0.3\n",
     "funds[0].assets[0].staking_cap: 0.3 is a float; write an exact decimal as a string"),
    ("[[custodians]]\ncustodian_id = 'C'\nlicence_status = 'VALID'\n",
     "custodians[0].licence_status: 'VALID' is not one of ACTIVE, SUSPENDED, REVOKED"),
    ("[[custodians]]\ncustodian_id = 'C'\nlicence_expires_at = 'next year'\n",
     "custodians[0].licence_expires_at: 'next year' is neither unix seconds nor an ISO 8601 date-time"),
    ("[[assets]]\nsymbol = 'BTC'\ndecimals = 'eight'\n", "assets[0].decimals: 'eight' is not a whole number"),
    ("[[assets]]\nsymbol = 'BTC'\ndecimals = 4294967296\n", "fund.toml: assets[0]: Failed to parse decimals field"),
    ("[[assets]]\ndecimals = 8\n", "assets[0].symbol: missing"),
    ("[[assets]]\nsymbol = 'BTC'\n[[assets]]\nsymbol = 'BTC'\n", "assets[1].symbol: 'BTC' is also assets[0]"),
    ("[[fund]]\nfund_id = 'F'\n", "fund.toml: fund: not a table apply knows; expected [[assets]]"),
    ("[funds]\nfund_id = 'F'\n", "fund.toml: funds: expected an array of tables, [[funds]]"),
    ("[[participants]]\nparticipant_id = 'P'\neligible_fund_ids = 'F'\n",
     "participants[0].eligible_fund_ids: expected an array"),
    ("[[funds]]\nfund_id = \n", "fund.toml: not TOML: "),
])
def test_a_malformed_file_is_refused_naming_the_key(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "fund.toml"
    path.write_text(text)
    result = applied("127.0.0.1:1", path)  # refused before any call: no server is needed
    assert result.returncode == 2, result.stdout
    assert names in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_without_a_token_or_a_server(tmp_path: Path) -> None:
    path = example(tmp_path)
    no_token = run("apply", str(path), "--server", "127.0.0.1:1", token="")
    assert no_token.returncode == 2 and "ETF_ENGINE_TOKEN" in no_token.stderr
    nobody = run("apply", str(path), "--server", "127.0.0.1:1")
    assert nobody.returncode == 1 and "cannot read 127.0.0.1:1: UNAVAILABLE" in nobody.stderr
    publish = run("prices", "publish", "--from", "-", "--server", "127.0.0.1:1", stdin="BTC,USD,1\n")
    assert publish.returncode == 1 and "UNAVAILABLE" in publish.stderr


def test_init_apply_prices_then_a_first_order_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    made = run("init", str(folder))
    assert made.returncode == 0, made.stderr
    tokens = tokens_in(made.stdout)
    fund = folder / "fund.toml"
    assert fund.exists() and f"wrote {folder / 'etf.toml'} and {fund}" in made.stdout
    command = re.search(r"^A first fund:\s+ETF_ENGINE_TOKEN=<issuer-ops token> (\S+) apply (\S+)$", made.stdout, re.M)
    assert command is not None, made.stdout
    executable = Path(command[1])
    assert executable.is_absolute() and executable.name == "etf-engine" and os.access(executable, os.X_OK)
    assert Path(command[2]) == fund.absolute()
    config = folder / "etf.toml"  # on free ports: the written ones may be taken on a test machine
    config.write_text(config.read_text().replace("127.0.0.1:50051", "127.0.0.1:0").replace("127.0.0.1:8080",
                                                                                          "127.0.0.1:0"))
    proc, target = serve(config)
    try:
        with EtfClient(target, tokens["dealer"]) as dealer:
            first = run("apply", str(fund), "--server", target, token=tokens["issuer-ops"])
            assert first.returncode == 0, first.stderr
            assert "applied 7 changes" in first.stdout
            stale = dealer.submit_order(FUND, "CREATE", 1, "first-0001")
            assert (stale.status, stale.reject_reason) == (pb.OrderStatus.REJECTED, "STALE_PRICE")  # no price yet

            prices = run("prices", "publish", "--from", "-", "--server", target, token=tokens["issuer-ops"],
                         stdin="asset,currency,price\nBTC,USD,97250.00\nETH,USD,3412.55\n")
            assert prices.returncode == 0, prices.stderr
            assert f"published 2 ticks to {target}: 2 applied" in prices.stdout
            order = dealer.submit_order(FUND, "CREATE", 1, "first-0002")
            assert (order.status, order.reject_reason) == (pb.OrderStatus.ACCEPTED, ""), order
            assert [(d.asset, d.quantity) for d in order.deliverables] == [("BTC", "5"), ("ETH", "75")]
            assert order.fee == "1500.00"
        again = run("init", "--force", str(folder))  # a new config; fund.toml, perhaps edited, is kept
        assert again.returncode == 0 and "(kept as it was)" in again.stdout
    finally:
        stop(proc)


def test_prices_publish_from_a_file_and_every_few_seconds(server: str, tmp_path: Path) -> None:
    assert applied(server, example(tmp_path)).returncode == 0
    prices = tmp_path / "prices.csv"
    prices.write_text("# asset,currency,price,as_of\nBTC,USD,97000,2026-01-01T00:00:00Z\nETH,USD,3400.5\n"
                      "BTC,USD,97100.25,1767225601000\n")
    once = run("prices", "publish", "--from", str(prices), "--server", server)
    assert once.returncode == 0, once.stderr
    assert f"published 3 ticks to {server}: 3 applied" in once.stdout
    with EtfClient(server, ISSUER) as client:
        assert [(line.asset, line.price) for line in client.get_nav(FUND).lines] == \
            [("BTC", "97100.25"), ("ETH", "3400.5")]
        first_as_of = client.get_nav(FUND).as_of

        proc = subprocess.Popen([*CLI, "prices", "publish", "--from", str(prices), "--every", "0.2", "--server",
                                 server], env={**ENV, "ETF_ENGINE_TOKEN": ISSUER}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out = lines_of(proc)
            read_until(out, r"published 3 ticks .*: 1 applied, 2 ignored")  # the file again: its BTC not newer
            read_until(out, r"^  ignored BTC/USD: ")  # and why
            read_until(out, r"^\d\d:\d\d:\d\d published 2 ticks .*: 2 applied")  # the last BTC and ETH, as of now
            read_until(out, r"^\d\d:\d\d:\d\d published 2 ticks .*: 2 applied")
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        nav = client.get_nav(FUND)
        assert nav.as_of > first_as_of and not nav.stale
        assert [(line.asset, line.price) for line in nav.lines] == [("BTC", "97100.25"), ("ETH", "3400.5")]

    bad = run("prices", "publish", "--from", "-", "--server", server, stdin="BTC,USD,1\nETH,USD\n")
    assert bad.returncode == 2 and "stdin:2: 2 columns; expected asset,currency,price[,as_of]" in bad.stderr
    refused = run("prices", "publish", "--from", "-", "--server", server, stdin="BTC,USD,-1\n")
    assert refused.returncode == 1 and "INVALID_ARGUMENT ticks[0].price" in refused.stderr


def test_prices_are_as_of_the_engines_clock(tmp_path: Path) -> None:
    """An undated price is as of the engine's time (GetLeader), a test clock's included: stamped with this
    machine's time it would be two hours stale here."""
    config = tmp_path / "etf.toml"
    config.write_text("test_clock = true\n" + CONFIG)
    proc, target = serve(config)
    try:
        assert applied(target, example(tmp_path)).returncode == 0
        with EtfClient(target, ISSUER) as issuer, EtfClient(target, DEALER) as dealer:
            ahead = issuer.advance_clock(issuer.get_leader().now_unix_ms + 2 * 3_600_000)
            prices = run("prices", "publish", "--from", "-", "--server", target, stdin="BTC,USD,97250\nETH,USD,3412\n")
            assert prices.returncode == 0 and ": 2 applied" in prices.stdout, prices.stderr
            nav = issuer.get_nav(FUND)
            assert nav.as_of >= ahead and not nav.stale
            assert dealer.submit_order(FUND, "CREATE", 1, "ahead-1").status == pb.OrderStatus.ACCEPTED
    finally:
        stop(proc)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_over_mutual_tls(pki: Path, tmp_path: Path) -> None:
    """The client's TLS options: the CA to trust, and the client's key and certificate chain."""
    path = example(tmp_path)
    with tls_server(pki, mutual=True) as server:
        tls = ["--root-certificates", str(pki / "ca.pem"), "--private-key", str(pki / "client.key"),
               "--certificate-chain", str(pki / "client.pem")]
        done = run("apply", str(path), "--server", server.target, *tls, token=TLS_TOKEN)
        assert done.returncode == 0 and "applied 7 changes" in done.stdout, done.stderr
        prices = run("prices", "publish", "--from", "-", "--server", server.target, *tls, token=TLS_TOKEN,
                     stdin="BTC,USD,97250\n")
        assert prices.returncode == 0, prices.stderr
        anonymous = run("apply", str(path), "--server", server.target, *tls[:2], token=TLS_TOKEN)
        assert anonymous.returncode == 1 and "cannot read" in anonymous.stderr  # no client certificate
        half = run("apply", str(path), "--server", server.target, *tls[:4], token=TLS_TOKEN)
        assert half.returncode == 2 and "--private-key and --certificate-chain go together" in half.stderr
