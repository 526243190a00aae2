"""The server as a process: graceful stop on SIGTERM with a call in flight, the command line
(serve, hash-token, demo) and config errors."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest

from etf_engine.api.auth import hash_token
from etf_engine.client import EtfClient, FundAssetTerms, Tick
from etf_engine.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOKEN = "proc-issuer"

# A server whose journal holds the append of asset "SLOW" for a second: a call reliably in flight.
SLOW_SERVER = """
import asyncio, os, sys
from etf_engine.api.server import serve
from etf_engine.ledger import make_ledger
from etf_engine.config import load_config
from etf_engine.engine import NullJournal

class SlowJournal(NullJournal):
    async def append(self, events):
        if any(getattr(e, "symbol", "") == "SLOW" for e in events):
            print("APPENDING", flush=True)
            await asyncio.sleep(1.0)

asyncio.run(serve(load_config(sys.argv[1]), ledger=make_ledger(os.environ.get("ETF_LEDGER", "auto")),
                  journal=SlowJournal(), on_ready=lambda s: print("READY", s.port, flush=True)))
print("STOPPED", flush=True)
"""


def _config(tmp_path: Path, principals: bool = True) -> Path:
    lines = ['listen = "127.0.0.1:0"', "heartbeat_seconds = 0.5", "grace_seconds = 10"]
    if principals:
        lines += ["[[principals]]", 'name = "ops"', 'role = "issuer"', f'token_sha256 = "{hash_token(TOKEN)}"']
    path = tmp_path / "engine.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """Lines of a child's output, read by a thread so that the test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _expect(lines: queue.Queue[str], prefix: str) -> str:
    while True:
        line = lines.get(timeout=30)
        if line.startswith(prefix):
            return line


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str], str]]:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(_config(tmp_path))], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines = _lines(proc.stdout)
    try:
        port = _expect(lines, "READY").split()[1]
        yield proc, lines, f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_sigterm_lets_the_call_in_flight_finish(
    slow_server: tuple[subprocess.Popen[str], queue.Queue[str], str],
) -> None:
    proc, lines, target = slow_server
    client = EtfClient(target, TOKEN, max_attempts=1, timeout=30)
    client.register_asset("BTC", 8)
    client.register_custodian("C1", "Harbour Custody", "BVX101", "ACTIVE", 4_000_000_000)
    client.create_fund("F1", "Fund", "USD", 100, "C1", ["C1"], [FundAssetTerms("BTC")])
    client.publish_prices([Tick("BTC", "USD", "100", 1)])
    stream = client.stream_nav("F1", timeout=30)
    assert next(stream).nav.fund_id == "F1"

    outcome: list[object] = []

    def in_flight() -> None:
        try:
            outcome.append(client.register_asset("SLOW", 0))
        except grpc.RpcError as e:  # recorded, so that the assertion below shows it
            outcome.append(e)

    caller = threading.Thread(target=in_flight)
    caller.start()
    _expect(lines, "APPENDING")  # the call is inside the writer, waiting for its journal append
    proc.send_signal(signal.SIGTERM)
    caller.join(timeout=30)
    assert len(outcome) == 1 and not isinstance(outcome[0], grpc.RpcError), outcome
    # The NAV stream ends cleanly instead of being cut off.
    assert all(update.heartbeat or update.nav.fund_id == "F1" for update in stream)
    _expect(lines, "STOPPED")
    assert proc.wait(timeout=30) == 0
    client.close()


def test_serve_without_principals_warns_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "serve", "--config",
                             str(_config(tmp_path, principals=False)), "--ledger", "auto"],
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines = _lines(proc.stdout)
    try:
        assert "principals" in _expect(lines, "etf-engine: WARNING")
        target = _expect(lines, "etf-engine: listening on").split()[3]
        with EtfClient(target, "any", max_attempts=1) as client:
            with pytest.raises(grpc.RpcError) as info:
                client.ping()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_hash_token_and_config_errors(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "etf_engine.cli", "hash-token", "s3cret"], env=ENV, text=True,
                         capture_output=True, check=True).stdout.strip()
    assert out == hashlib.sha256(b"s3cret").hexdigest() == hash_token("s3cret")

    bad = tmp_path / "bad.toml"
    cases = {
        'listen = "127.0.0.1:0"\nreflektion = false\n': "reflektion",
        'listen = "nowhere"\n': "listen",
        '[[principals]]\nname = "a"\nrole = "admin"\ntoken_sha256 = "' + "0" * 64 + '"\n': "principals[0].role",
        '[[principals]]\nname = "a"\nrole = "participant"\ntoken_sha256 = "' + "0" * 64 + '"\n':
            "principals[0].participant_id",
        '[[principals]]\nname = "a"\nrole = "issuer"\ntoken_sha256 = "abc"\n': "principals[0].token_sha256",
        '[tls]\ncert = "missing.pem"\nkey = "missing.key"\n': "tls.cert",
        "heartbeat_seconds = 60\n": "heartbeat_seconds",
    }
    for text, key in cases.items():
        bad.write_text(text)
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            load_config(bad)
    bad.write_text("listen = \n")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(bad)
    result = subprocess.run([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(bad)], env=ENV,
                            text=True, capture_output=True)
    assert result.returncode == 2 and "TOML" in result.stderr


def test_demo_runs_to_completion() -> None:
    result = subprocess.run([sys.executable, "-m", "etf_engine.cli", "demo"], env=ENV, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("NAV per share", "Basket per creation unit", "ACCEPTED", "SETTLED", "STAKING_CAP_BREACH",
                     "GetCapacity", "four eyes", "DELIVERY_INCOMPLETE", "PAYOUT_INCOMPLETE", "demo complete"):
        assert expected in out
