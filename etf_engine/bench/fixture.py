"""The server a benchmark drives when it is not given one, and the fund it loads into it.

The server runs as ``etf-engine serve`` in its own process, exactly as in production: the durable
SQLite journal in a throwaway data directory, the same interceptors, plaintext on loopback. Only
the bench's own two principals (an issuer to load the fund, a participant to deal) are configured.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from etf_engine.api.auth import hash_token
from etf_engine.client import EtfClient, FundAssetTerms, Tick

FUND_ID = "BENCH-1"
PARTICIPANT_ID = "AP-BENCH"
# The benchmark fund; benchmarks/conftest.py loads the same one straight into a ledger.
ASSETS = {"BTC": (8, "712345.67"), "ETH": (18, "24567.1"), "SOL": (9, "1234.5")}  # decimals, HKD price
CUSTODIANS = [f"CUS-{i}" for i in range(5)]
CREATION_UNIT = 50_000
SHARES_OUTSTANDING = 10_000_000
STAKING_CAP, LIQUIDITY_BUFFER, UNBONDING_SECONDS = "0.3", "0.1", 86_400  # every asset
OPENING_HOLDING = "123.456789"  # of every asset at every custodian
STAKED_ETH = "100"  # at the last custodian
START_TIMEOUT_SECONDS = 60.0


class LocalServer:
    """``etf-engine serve`` on 127.0.0.1 with a fresh data directory; stopped with SIGTERM."""

    def __init__(self, *, ledger: str = "core", data_dir: str | None = None, dsn: str | None = None,
                 http: bool = False) -> None:
        self.issuer_token = secrets.token_urlsafe(24)
        self.participant_token = secrets.token_urlsafe(24)
        self._tmp = tempfile.mkdtemp(prefix="etf-bench-")
        self.data_dir = Path(data_dir) if data_dir else Path(self._tmp, "data")
        self.log_path = Path(self._tmp, "server.log")
        config = Path(self._tmp, "engine.toml")
        # With a DSN, the journal is a fresh shard of that PostgreSQL database (SPEC §12).
        journal = (f'[journal]\nbackend = "postgresql"\ndsn = "{dsn}"\nshard = "bench-{secrets.token_hex(4)}"\n'
                   'node_name = "bench"\n\n' if dsn else "")
        listener = '[http]\nlisten = "127.0.0.1:0"\n\n' if http else ""  # SPEC §15: Connect, /metrics
        self.http_url: str | None = None
        config.write_text(
            f'listen = "127.0.0.1:0"\ndata_dir = "{self.data_dir}"\nreflection = false\n\n{listener}{journal}'
            f'[[principals]]\nname = "bench-issuer"\nrole = "issuer"\n'
            f'token_sha256 = "{hash_token(self.issuer_token)}"\n\n'
            f'[[principals]]\nname = "bench-dealer"\nrole = "participant"\nparticipant_id = "{PARTICIPANT_ID}"\n'
            f'token_sha256 = "{hash_token(self.participant_token)}"\n')
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the server writes to it until stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(config), "--ledger", ledger],
            # bufsize 0: readline then takes no more than its line, so select() sees the next one coming
            stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, "PYTHONUNBUFFERED": "1"}, bufsize=0)
        try:
            self.target = self._wait_listening()
            if http:
                self.http_url = self._wait_line(" console ").split(" console ", 1)[1].split()[0].rstrip("/")
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> str:
        return self._wait_line(" listening on ").split(" listening on ", 1)[1].split()[0]

    def _wait_line(self, marker: str) -> str:
        """The first line of the server's stdout holding ``marker``."""
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    break
                line = self.process.stdout.readline().decode()
                if not line:  # the server exited
                    break
                if marker in line:
                    return line
        raise RuntimeError(f"the bench server did not start; its log:\n{self.log_tail()}")

    def cpu_ns(self) -> tuple[int, int]:
        """CPU time (user + system) used so far by the server and the processes it started, and by the
        latter alone (its checkpointer): on a machine this small, a snapshot or a history state written
        beside the server is paid for by the same cores, so the first counts it, and the second shows it."""
        own, children = _cpu_ticks(self.process.pid), sum(map(_cpu_ticks, _children(self.process.pid)))
        tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        return (own + children) * tick_ns, children * tick_ns

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cpu_ticks(pid: int) -> int:
    """User + system clock ticks of process ``pid`` so far (0 if it has just exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (scanning /proc: not every kernel lists a task's children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def load_fund(target: str, issuer_token: str) -> None:
    """A fund like the core benchmarks' one: 3 assets at 5 licensed custodians, priced, 10M shares,
    some ETH staked; the bench participant may create or redeem up to 1,000 units per order and
    without a practical daily limit (every accepted creation counts against it)."""
    with EtfClient(target, issuer_token) as issuer:
        for symbol, (decimals, _price) in ASSETS.items():
            issuer.register_asset(symbol, decimals)
        expires = int(time.time()) + 365 * 86_400
        for cid in CUSTODIANS:
            issuer.register_custodian(cid, cid, "BENCH", "ACTIVE", expires)
        issuer.register_participant(PARTICIPANT_ID, "bench dealer", [FUND_ID], 1_000, 10**12)
        issuer.create_fund(FUND_ID, "bench fund", "HKD", CREATION_UNIT, CUSTODIANS[0], CUSTODIANS,
                           [FundAssetTerms(a, STAKING_CAP, LIQUIDITY_BUFFER, UNBONDING_SECONDS) for a in ASSETS],
                           initial_shares_outstanding=SHARES_OUTSTANDING, min_liquid_units=1,
                           max_price_age_seconds=86_400)  # prices stay fresh for a long run
        for cid in CUSTODIANS:
            for symbol in ASSETS:
                issuer.adjust_holding(FUND_ID, cid, symbol, OPENING_HOLDING, "bench opening balance")
        issuer.stake(FUND_ID, CUSTODIANS[-1], "ETH", STAKED_ETH)
        now_ms = int(time.time() * 1000)
        issuer.publish_prices([Tick(a, "HKD", price, now_ms) for a, (_d, price) in ASSETS.items()])
