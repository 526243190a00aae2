"""``etf-engine demo --keep`` as an operations person meets it (issue 19): it prints its gRPC address and
a grpcurl line that works as printed; README's grpcurl commands ("Calling it") work against it with its
tokens; and its funds stay live (a price every few seconds from a seeded walk, as of the engine's
clock), so nothing reads STALE and a creation is not refused for a stale price.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_first_run import lines_of, read_until, tokens_in
from test_grpcurl import ADDRESS, grpcurl_binary, readme_commands

from etf_engine.client import EtfClient, status_name
from etf_engine.demo import OPENING_PRICES, random_walk

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, text: str) -> None:
        self.text = text
        self.target = re.search(r"^  gRPC (\S+) \(plaintext, reflection on", text, re.M)[1]  # type: ignore[index]
        self.tokens = tokens_in(text)
        self.grpcurl = next(line.strip() for line in text.splitlines() if line.strip().startswith("grpcurl "))


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "demo", "--keep", "--listen", f"127.0.0.1:{port}",
                             "--http-listen", "127.0.0.1:0", "--tick-seconds", "0.5"],
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = lines_of(proc)
        seen, _ = read_until(out, r"Stop it with", timeout=120)
        d = Demo("".join(seen))
        assert d.target == f"127.0.0.1:{port}"
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def grpcurl(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([grpcurl_binary(), *argv[1:]], capture_output=True, text=True, timeout=60)


def test_the_printed_grpcurl_line_works_as_printed(demo: Demo) -> None:
    argv = shlex.split(demo.grpcurl)
    assert argv[0] == "grpcurl" and demo.target in argv and demo.tokens["auditor"] in demo.grpcurl
    done = grpcurl(argv)
    assert done.returncode == 0, done.stderr
    nav = json.loads(done.stdout)
    assert nav["fund_id"] == "HK-BTCETH" and nav["nav"] and "stale" not in nav  # false is left out


def test_readmes_grpcurl_commands_work_against_it(demo: Demo) -> None:
    tokens = {"s3cret-issuer": demo.tokens["demo-issuer"], "s3cret-dealer": demo.tokens["victory-pd"]}
    commands = readme_commands()
    assert len(commands) >= 5
    for argv in commands:
        argv = [demo.target if a == ADDRESS else a for a in argv]
        for readme_token, token in tokens.items():
            argv = [a.replace(readme_token, token) for a in argv]
        done = grpcurl(argv)
        if not any(a.startswith("authorization:") for a in argv):
            assert done.returncode != 0 and "Unauthenticated" in done.stderr, done
            continue
        assert done.returncode == 0, (argv, done.stderr)
        if argv[-1].endswith("Dealing/SubmitOrder"):  # fresh prices: accepted, not STALE_PRICE
            order = json.loads(done.stdout)["order"]
            assert order["status"] == "ACCEPTED", order


def test_its_funds_stay_live(demo: Demo) -> None:
    with EtfClient(demo.target, demo.tokens["auditor"]) as auditor, \
            EtfClient(demo.target, demo.tokens["victory-pd"]) as dealer:
        first = auditor.get_nav("HK-BTCETH")
        time.sleep(1.5)  # three ticks
        for fund in ("HK-BTCETH", "HK-BTC-FWD"):
            nav = auditor.get_nav(fund)
            assert not nav.stale and nav.as_of > first.as_of, nav
            assert 0 <= auditor.get_leader().now_unix_ms - nav.as_of < 5_000  # fresh on the engine's clock
        assert [line.price for line in auditor.get_nav("HK-BTCETH").lines] != [line.price for line in first.lines]
        capacity = dealer.get_capacity("HK-BTCETH")
        assert capacity.create.units > 0 and capacity.create.binding_reason != "STALE_PRICE", capacity
        assert status_name(dealer.check_order("HK-BTCETH", "CREATE", 1).status) == "ACCEPTED"


def test_the_walk_is_seeded_and_in_cents() -> None:
    walk = list(itertools.islice(random_walk(OPENING_PRICES, 7), 200))
    assert walk == list(itertools.islice(random_walk(OPENING_PRICES, 7), 200))
    assert walk != list(itertools.islice(random_walk(OPENING_PRICES, 8), 200))
    assert all(re.fullmatch(r"\d+\.\d\d", p) for step in walk for p in step.values())
    btc = [float(step["BTC"]) for step in walk]
    assert all(abs(b / a - 1) < 0.01 for a, b in itertools.pairwise([97400.0, *btc]))  # small steps
