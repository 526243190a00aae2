"""A first run that works out of the box (SPEC §15), as a newcomer runs it: ``etf-engine init`` and
``etf-engine demo --keep`` as subprocesses, and the tokens they print work against the servers.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from etf_engine.client import EtfClient

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "etf_engine.cli"]


def lines_of(proc: subprocess.Popen) -> queue.Queue:
    out: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            out.put(line)
        out.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return out


def read_until(out: queue.Queue, pattern: str, timeout: float = 60) -> tuple[list[str], re.Match]:
    seen = []
    while True:
        line = out.get(timeout=timeout)
        assert line is not None, "".join(seen)
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return seen, found


def tokens_in(text: str) -> dict[str, str]:
    """principal -> token, from the table init and demo --keep print."""
    return {m[0]: m[-1] for m in re.findall(r"^\s+(\S+)\s+(\w+)(?: \(\S+\))?\s+(\S{30,})$", text, re.M)}


def connect(url: str, method: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{url}/etf_engine.v1.{method}", data=json.dumps(body or {}).encode(),
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_init_writes_a_config_whose_tokens_work(tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    made = subprocess.run([*CLI, "init", str(folder)], env=ENV, text=True, capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    tokens = tokens_in(made.stdout)
    assert set(tokens) == {"issuer-ops", "issuer-checker", "dealer", "auditor"}
    config = folder / "etf.toml"
    text = config.read_text()
    assert all(token not in text for token in tokens.values())  # only their digests
    assert "serve --config" in made.stdout and "http://127.0.0.1:8080/" in made.stdout
    again = subprocess.run([*CLI, "init", str(folder)], env=ENV, text=True, capture_output=True, timeout=60)
    assert again.returncode == 2 and "--force" in again.stderr and config.read_text() == text
    # The same file on free ports (the written ones may be taken on a test machine), then served.
    config.write_text(text.replace("127.0.0.1:50051", "127.0.0.1:0").replace("127.0.0.1:8080", "127.0.0.1:0"))
    proc = subprocess.Popen([*CLI, "serve", "--config", str(config)], env=ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out = lines_of(proc)
        _, listening = read_until(out, r"listening on 127\.0\.0\.1:(\d+)")
        _, console = read_until(out, r"console (http://127\.0\.0\.1:\d+)/")
        with EtfClient(f"127.0.0.1:{listening[1]}", tokens["issuer-ops"]) as issuer:
            issuer.register_participant("AP-1", "First PD", [], 10, 10)
            issuer.register_asset("BTC", 8)
            wallet = issuer.register_wallet("AP-1", "BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
        with EtfClient(f"127.0.0.1:{listening[1]}", tokens["issuer-checker"]) as checker:
            assert checker.approve_wallet(wallet.wallet_id).approved_by == "issuer-checker"
        assert connect(console[1], "Admin/ListParticipants", tokens["auditor"])["participants"][0]["participantId"] \
            == "AP-1"
        assert connect(console[1], "Valuation/ListFunds", tokens["dealer"]) == {}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_init_force_replaces(tmp_path: Path) -> None:
    first = subprocess.run([*CLI, "init", str(tmp_path)], env=ENV, text=True, capture_output=True, timeout=60)
    forced = subprocess.run([*CLI, "init", "--force", str(tmp_path)], env=ENV, text=True, capture_output=True,
                            timeout=60)
    assert forced.returncode == 0 and tokens_in(forced.stdout) != tokens_in(first.stdout)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_demo_keep_serves_the_console_until_a_signal(stop: signal.Signals) -> None:
    proc = subprocess.Popen([*CLI, "demo", "--keep", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = lines_of(proc)
        seen, console = read_until(out, r"console (http://127\.0\.0\.1:\d+)/", timeout=120)
        more, _ = read_until(out, r"Stop it with")
        tokens = tokens_in("".join(more))
        assert set(tokens) == {"demo-issuer", "demo-checker", "victory-pd", "auditor"}
        assert any("demo complete" in line for line in seen)
        with urllib.request.urlopen(console[1] + "/", timeout=10) as page:
            assert b"etf-engine console" in page.read()
        funds = connect(console[1], "Valuation/ListFunds", tokens["auditor"])["funds"]
        assert [f["fundId"] for f in funds] == ["HK-BTC-FWD", "HK-BTCETH"]
        assert connect(console[1], "Valuation/GetNav", tokens["victory-pd"], {"fund_id": "HK-BTCETH"})["nav"]
    finally:
        proc.send_signal(stop)
        assert proc.wait(timeout=60) == 0
