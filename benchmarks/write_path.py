"""The durable write path in process (no gRPC): CPU per order on the loop's thread and on the others
(the journal's), and commits, for CheckOrder-like reads, SubmitOrder through a journal that keeps
nothing, and durable SubmitOrder (SQLite with the audit trail, the server's metrics attached).

``--busy N`` adds N tasks that keep the loop busy with reads, as a loaded server's handlers do: the
journal's thread then has to take the GIL from a running loop, which is what a commit costs under load.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.write_path [--kinds read,null,durable] [--clients 5,64]
     [--busy 4] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.conftest import NOW, load_fund
from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.api.metrics import Metrics
from etf_engine.engine import Engine, NullJournal
from etf_engine.journal import SqliteJournal
from etf_engine.journal.postgres import PgJournal
from etf_engine.journal.trail import AuditTrail

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def threads() -> dict[int, tuple[int, int]]:
    """thread id -> (CPU ticks, context switches) of every thread of this process."""
    found = {}
    for task in Path("/proc/self/task").iterdir():
        stat = (task / "stat").read_text().rpartition(")")[2].split()
        switches = sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", (task / "status").read_text()))
        found[int(task.name)] = (int(stat[11]) + int(stat[12]), switches)
    return found


async def started_engine(kind: str, data_dir: str, dsn: str = "") -> Engine:
    """The fund of benchmarks/conftest.py with dealer AP-B, behind a started engine with the server's
    metrics; its journal, with the audit trail as the server's: SQLite in ``data_dir`` for ``durable``, a
    fresh shard of the PostgreSQL database ``dsn`` for ``postgres`` (the lease taken), else one that keeps
    nothing. (benchmarks/rpc_path.py starts its engine with it too.)"""
    ledger = Ledger()
    load_fund(ledger)
    ledger.execute(M.RegisterParticipant(participant_id="AP-B", name="bench", eligible_fund_ids=["F-1"],
                                         max_units_per_order=10, max_units_per_day=10**12), NOW)
    journal: SqliteJournal | PgJournal | NullJournal
    if kind == "durable":
        journal = SqliteJournal(data_dir)
        journal.trail = AuditTrail()
    elif kind == "postgres":
        journal = PgJournal(dsn, f"bench-{uuid.uuid4().hex[:12]}", node_name="bench")
        if not journal.take_lease():
            raise RuntimeError("a fresh shard's lease was taken by another node")
        journal.trail = AuditTrail(journal.shard)
    else:
        journal = NullJournal()
    engine = Engine(ledger, journal, clock=lambda: NOW)
    Metrics(engine)
    await engine.start()
    return engine


async def measure(kind: str, clients: int, busy: int, seconds: float, data_dir: str) -> str:
    engine = await started_engine(kind, data_dir)
    commits = [0]
    engine.on_commit.append(lambda _seconds, _events: commits.__setitem__(0, commits[0] + 1))
    orders, reads = [0], [0]
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            request = M.OrderRequest(fund_id="F-1", side="CREATE", units=1, client_order_id=f"w-{c}-{i}")
            if kind == "read":
                await engine.read(lambda ledger, now_ms, r=request: ledger.check_order("AP-B", r, now_ms))
            else:
                await engine.execute(M.SubmitOrder(participant_id="AP-B", request=request))
            orders[0] += 1
            i += 1

    async def keep_busy() -> None:
        request = M.OrderRequest(fund_id="F-1", side="CREATE", units=1, client_order_id="busy")
        while time.perf_counter() < deadline:
            await engine.read(lambda ledger, now_ms: ledger.check_order("AP-B", request, now_ms))
            await asyncio.sleep(0)
            reads[0] += 1

    before, started = threads(), time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)), *(keep_busy() for _ in range(busy)))
    elapsed, after = time.perf_counter() - started, threads()
    await engine.stop()
    loop_id = os.getpid()
    cpu = {t: (after[t][0] - before.get(t, (0, 0))[0]) * TICK_US for t in after}
    switches = sum(after[t][1] - before.get(t, (0, 0))[1] for t in after if t != loop_id)
    others = sum(v for t, v in cpu.items() if t != loop_id)
    per_commit = f"{orders[0] / commits[0]:.1f}" if commits[0] else "-"
    line = (f"{kind:8} {clients:>7} {busy:>4} {orders[0] / elapsed:>10,.0f} {per_commit:>8} "
            f"{cpu[loop_id] / orders[0]:>8.1f} {others / orders[0]:>8.1f} {switches / max(commits[0], 1):>9.1f}")
    if busy:
        line += f" {sum(cpu.values()) / (orders[0] + reads[0]):>10.1f}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kinds", default="read,null,durable")
    parser.add_argument("--clients", default="5,64")
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(f"{'kind':8} {'clients':>7} {'busy':>4} {'orders/s':>10} {'/commit':>8} {'loop us':>8} {'other us':>8} "
          f"{'ctxsw/cm':>9}{' us/op all' if args.busy else ''}")
    for clients in (int(c) for c in args.clients.split(",")):
        for kind in args.kinds.split(","):
            with tempfile.TemporaryDirectory() as data_dir:
                print(asyncio.run(measure(kind, clients, args.busy, args.seconds, data_dir)), flush=True)


if __name__ == "__main__":
    main()
