"""Crash safety: the real server, concurrent dealers, SIGKILL at random moments, restart.

Every acknowledged order must be there unchanged after the restart; resubmitting an unacknowledged
one applies it at most once; coins are conserved (orders only reserve, nothing is settled here);
the offline `etf-engine verify` reads the same directory. Bounded: three kills, well under a minute.
"""

from __future__ import annotations

import os
import queue
import random
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from etf_engine.api.auth import hash_token
from etf_engine.client import EtfClient, FundAssetTerms, OrderItem, Tick, side_name, status_name
from tests.pg_cluster import pg_cluster as pg_cluster  # the fixture, for the PostgreSQL backend

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOKENS = {"issuer": "crash-issuer", "AP-1": "crash-ap-1", "AP-2": "crash-ap-2"}
ROUNDS = 3


def write_config(tmp_path: Path, dsn: str = "", shard: str = "main") -> Path:
    """The servers' config; with ``dsn``, the journal is ``shard`` of that PostgreSQL database."""
    lines = ['listen = "127.0.0.1:0"', f'data_dir = "{tmp_path / "data"}"', "grace_seconds = 1",
             "[[principals]]", 'name = "ops"', 'role = "issuer"', f'token_sha256 = "{hash_token(TOKENS["issuer"])}"']
    for pid in ("AP-1", "AP-2"):
        lines += ["[[principals]]", f'name = "{pid}"', 'role = "participant"', f'participant_id = "{pid}"',
                  f'token_sha256 = "{hash_token(TOKENS[pid])}"']
    if dsn:
        lines += ["[journal]", 'backend = "postgresql"', f'dsn = "{dsn}"', f'shard = "{shard}"',
                  'node_name = "crash-node"', "lease_seconds = 2"]
    path = tmp_path / "engine.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(config)], env=ENV,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if "listening on" in line:
            return proc, line.split("listening on ")[1].split()[0]
        seen.append(line)
    raise AssertionError(f"the server did not start (exit {proc.poll()}): {''.join(seen)}")


def load_fund(target: str, issuer_token: str = TOKENS["issuer"]) -> None:
    """Fund F-1 (BTC, ETH at C-1 and C-2, 10M shares, fresh prices); AP-1 and AP-2 may deal 5 units an order."""
    with EtfClient(target, issuer_token) as ops:
        ops.register_asset("BTC", 8)
        ops.register_asset("ETH", 18)
        for cid in ("C-1", "C-2"):
            ops.register_custodian(cid, cid, "L-" + cid, "ACTIVE", 4_000_000_000)
        for pid in ("AP-1", "AP-2"):
            ops.register_participant(pid, pid, ["F-1"], 5, 1_000_000)
        ops.create_fund("F-1", "Fund", "HKD", 100, "C-1", ["C-1", "C-2"],
                        [FundAssetTerms("BTC"), FundAssetTerms("ETH")], max_price_age_seconds=86_400,
                        initial_shares_outstanding=10_000_000)
        for cid in ("C-1", "C-2"):
            ops.adjust_holding("F-1", cid, "BTC", "5000")
            ops.adjust_holding("F-1", cid, "ETH", "100000")
        ops.publish_prices([Tick("BTC", "HKD", "700000", int(time.time() * 1000)),
                            Tick("ETH", "HKD", "25000", int(time.time() * 1000))])


def deal(target: str, pid: str, round_no: int, acked: dict, tried: dict, stop: threading.Event) -> None:
    """Submit orders until the server dies; remember what was acknowledged and what was only tried."""
    rng = random.Random(f"{pid}-{round_no}")
    with EtfClient(target, TOKENS[pid], max_attempts=1, timeout=5) as client:
        for i in range(10_000):
            if stop.is_set():
                return
            items = [OrderItem("F-1", rng.choice(["CREATE", "REDEEM"]), rng.randint(1, 3), f"{pid}-{round_no}-{i}-{k}")
                     for k in range(1 if pid == "AP-1" else 5)]
            for item in items:
                tried[(pid, item.client_order_id)] = item
            try:
                one = items[0]
                replies = ([client.submit_order(one.fund_id, one.side, one.units, one.client_order_id)]
                           if len(items) == 1 else client.submit_orders(items))
            except grpc.RpcError:
                return
            for item, order in zip(items, replies, strict=True):
                acked[(pid, item.client_order_id)] = (order.order_id, status_name(order.status), order.reject_reason,
                                                      side_name(order.side), order.units)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_acknowledged_orders_survive_sigkill(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue("pg_cluster").dsn if backend == "postgresql" else ""
    shard = f"crash-{uuid.uuid4().hex[:12]}"
    config = write_config(tmp_path, dsn, shard)
    proc, target = start(config)
    load_fund(target)
    acked: dict = {}
    tried: dict = {}
    rng = random.Random(7)
    for round_no in range(ROUNDS):
        stop = threading.Event()
        dealers = [threading.Thread(target=deal, args=(target, pid, round_no, acked, tried, stop))
                   for pid in ("AP-1", "AP-2", "AP-1")]
        for dealer in dealers:
            dealer.start()
        time.sleep(rng.uniform(0.3, 1.0))
        proc.kill()  # SIGKILL: no clean stop, no snapshot
        proc.wait(timeout=30)
        stop.set()
        for dealer in dealers:
            dealer.join(timeout=30)
        proc, target = start(config)
    try:
        assert acked, "no order was acknowledged before the kills"
        # Each dealer was acknowledged at least once: a dealer thread that died of a bug would leave
        # only the others' orders, and the test would check less than it says.
        assert {pid for pid, _ in acked} == {"AP-1", "AP-2"}, sorted({pid for pid, _ in acked})
        with EtfClient(target, TOKENS["issuer"]) as ops:
            for (pid, client_id), (order_id, status, reason, side, units) in acked.items():
                order = ops.get_order(order_id)
                assert (order.client_order_id, order.participant_id, status_name(order.status), order.reject_reason,
                        side_name(order.side), order.units) == (client_id, pid, status, reason, side, units)
            # Unacknowledged orders: resubmitting applies each at most once.
            for pid in ("AP-1", "AP-2"):
                with EtfClient(target, TOKENS[pid]) as dealer:
                    for (owner, client_id), item in list(tried.items())[:200]:
                        if owner != pid or (owner, client_id) in acked:
                            continue
                        first = dealer.submit_order(item.fund_id, item.side, item.units, client_id)
                        again = dealer.submit_order(item.fund_id, item.side, item.units, client_id)
                        assert first.order_id == again.order_id
            # Conservation: nothing was settled, so the fund still holds exactly what was loaded, and what
            # is reserved is exactly the legs of the accepted redemptions.
            holdings = ops.get_holdings("F-1")
            totals = {a.asset: Decimal(a.total) for a in holdings.assets}
            assert totals == {"BTC": Decimal(10_000), "ETH": Decimal(200_000)}
            reserved = sum(Decimal(row.reserved) for row in holdings.holdings if row.asset == "BTC")
            accepted = [o for o in ops.list_orders("F-1", "ACCEPTED") if side_name(o.side) == "REDEEM"]
            assert reserved == sum(Decimal(leg.quantity) for o in accepted for leg in o.legs if leg.asset == "BTC")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    where = ["--dsn", dsn, "--shard", shard] if dsn else ["--data-dir", str(tmp_path / "data")]
    verified = subprocess.run([sys.executable, "-m", "etf_engine.cli", "verify", *where],
                              env=ENV, text=True, capture_output=True, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert "digest " in verified.stdout
