"""The PostgreSQL journal measured (SPEC §12), on a real primary with a synchronous standby on loopback
(tests/pg_cluster.py starts them):

1. ``driver``: one group commit as one statement, three ways, with psycopg 3 (binary): the engine's
   fenced ``unnest`` statement, ``executemany`` in a transaction, and COPY in a transaction; median
   ms per commit of 1 and of 100 records.
2. ``bench``: ``etf-engine bench`` against the SQLite backend and against PostgreSQL, alternating,
   ``--rounds`` times (the bench's own ratios to its floor make runs comparable).
3. ``takeover``: two engine nodes; the leader SIGKILLed ``--kills`` times; from the kill to the first
   write the new leader acknowledges.

Run: .venv/bin/python -m benchmarks.postgres [driver] [bench] [takeover] [--rounds 2] [--kills 10]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import psycopg

from etf_engine.api.auth import hash_token
from etf_engine.client import EtfClient
from etf_engine.journal.postgres import APPEND, SCHEMA
from etf_engine.journal.records import encode_records
from tests.pg_cluster import PgCluster
from tests.test_crash import ENV, TOKENS, load_fund

ROOT = Path(__file__).resolve().parent.parent


def driver(cluster: PgCluster, commits: int = 200) -> None:
    from benchmarks.conftest import NOW
    from benchmarks.conftest import load_fund as load_ledger
    from etf_engine import model as M
    from etf_engine._core import Ledger

    ledger = Ledger()
    load_ledger(ledger)
    ledger.execute(M.RegisterParticipant(participant_id="AP-B", name="b", eligible_fund_ids=["F-1"],
                                         max_units_per_order=10, max_units_per_day=10**12), NOW)
    events = [ledger.execute(M.SubmitOrder(participant_id="AP-B", request=M.OrderRequest(
        fund_id="F-1", side="CREATE", units=1, client_order_id=f"d-{i}")), NOW)[1][0] for i in range(100 * commits)]
    db = psycopg.connect(cluster.primary_dsn, autocommit=True)
    db.execute(SCHEMA)
    print(f"{'way':28} {'records':>7} {'median ms':>10} {'p90 ms':>8}")
    for size in (1, 100):
        for way in ("unnest (fenced, engine)", "executemany in a txn", "COPY in a txn"):
            shard = f"drv-{size}-{way.split()[0]}"
            db.execute("INSERT INTO etf_lease VALUES (%s, 1, 'drv', 0, now() + interval '1 hour')", (shard,))
            seq, times = 0, []
            for c in range(commits):
                rows = encode_records(seq + 1, events[c * size:(c + 1) * size])
                start = time.perf_counter()
                if way.startswith("unnest"):
                    cursor = db.execute(APPEND, {"shard": shard, "epoch": 1, "lease": 60, "start": seq,
                                                 "end": seq + size, "seqs": [r[0] for r in rows],
                                                 "crcs": [r[1] for r in rows], "bodies": [r[2] for r in rows]})
                    assert cursor.rowcount == size
                elif way.startswith("executemany"):
                    with db.transaction():
                        db.cursor().executemany("INSERT INTO etf_events VALUES (%s, %s, %s, %s)",
                                                [(shard, *r) for r in rows])
                else:
                    with db.transaction(), db.cursor().copy(
                            "COPY etf_events (shard, seq, crc, body) FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row((shard, *r))
                times.append(time.perf_counter() - start)
                seq += size
            times.sort()
            p50, p90 = statistics.median(times) * 1e3, times[int(len(times) * .9)] * 1e3
            print(f"{way:28} {size:>7} {p50:>10.3f} {p90:>8.3f}", flush=True)
    db.close()


def bench(cluster: PgCluster, rounds: int, out: Path) -> None:
    for r in range(1, rounds + 1):
        for backend in ("sqlite", "postgresql"):
            report = out / f"{datetime.date.today()}-backends-{backend}-{r}.json"
            argv = [sys.executable, "-m", "etf_engine.cli", "bench", "--rpcs", "SubmitOrder,SubmitOrders",
                    "--clients", "1,64", "--duration", "5", "--json", str(report)]
            if backend == "postgresql":
                argv += ["--dsn", cluster.dsn]
            print(f"== round {r}, {backend}", flush=True)
            subprocess.run(argv, cwd=ROOT, check=True)


def node_config(out: Path, cluster: PgCluster, name: str, shard: str) -> Path:
    lines = ['listen = "127.0.0.1:0"', "grace_seconds = 1", "[journal]", 'backend = "postgresql"',
             f'dsn = "{cluster.dsn}"', f'shard = "{shard}"', "lease_seconds = 2", f'node_name = "{name}"',
             "[[principals]]", 'name = "ops"', 'role = "issuer"', f'token_sha256 = "{hash_token(TOKENS["issuer"])}"']
    for pid in ("AP-1", "AP-2"):
        lines += ["[[principals]]", f'name = "{pid}"', 'role = "participant"', f'participant_id = "{pid}"',
                  f'token_sha256 = "{hash_token(TOKENS[pid])}"']
    path = out / f"{shard}-{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_node(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(config)], env=ENV,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, line.split("listening on ")[1].split()[0]
    raise RuntimeError(f"{config}: the node did not start ({proc.wait()})")


def takeover(cluster: PgCluster, kills: int, out: Path) -> None:
    shard = f"takeover-{int(time.time())}"
    nodes = {name: start_node(node_config(out, cluster, name, shard)) for name in ("a", "b")}
    load_fund(nodes["a"][1])
    leader, times = "a", []
    for k in range(kills):
        follower = "b" if leader == "a" else "a"
        time.sleep(1.0)  # the follower is caught up and the leader has renewed its lease
        nodes[leader][0].kill()
        killed = time.perf_counter()
        target = nodes[follower][1]
        with EtfClient(target, TOKENS["AP-1"], max_attempts=1, timeout=2) as dealer:
            while True:
                try:
                    dealer.submit_order("F-1", "CREATE", 1, f"kill-{k}")
                    break
                except grpc.RpcError:
                    time.sleep(0.02)
        times.append(time.perf_counter() - killed)
        print(f"kill {k + 1}: {follower} acknowledged a write {times[-1]:.2f} s after {leader} died", flush=True)
        nodes[leader][0].wait()
        nodes[leader] = start_node(node_config(out, cluster, leader, shard))  # back, as a follower
        leader = follower
    print(f"takeover over {kills} kills (lease_seconds = 2): median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s")
    for proc, _ in nodes.values():
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="*", default=["driver", "bench", "takeover"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with PgCluster() as cluster, tempfile.TemporaryDirectory(prefix="etf-pg-bench-") as tmp:
        if "driver" in args.parts:
            driver(cluster)
        if "bench" in args.parts:
            bench(cluster, args.rounds, ROOT / "benchmarks" / "reports")
        if "takeover" in args.parts:
            takeover(cluster, args.kills, Path(tmp))


if __name__ == "__main__":
    main()
