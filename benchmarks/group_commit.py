"""Group commit: durable SubmitOrder throughput and latency at 1, 8 and 64 concurrent clients,
SQLite journal against a no-op journal, through the engine's single writer (no gRPC in between).

Run: .venv/bin/python -m benchmarks.group_commit [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from benchmarks.conftest import NOW, load_fund
from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.engine import Engine, NullJournal
from etf_engine.journal import SqliteJournal


async def measure(journal, clients: int, seconds: float) -> tuple[float, float, float]:
    ledger = Ledger()
    load_fund(ledger)
    ledger.execute(M.RegisterParticipant(participant_id="AP-B", name="bench", eligible_fund_ids=["F-1"],
                                         max_units_per_order=10, max_units_per_day=10**12), NOW)
    engine = Engine(ledger, journal, clock=lambda: NOW)
    await engine.start()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            request = M.OrderRequest(fund_id="F-1", side="CREATE", units=1, client_order_id=f"g-{c}-{i}")
            t0 = time.perf_counter()
            await engine.execute(M.SubmitOrder(participant_id="AP-B", request=request))
            latencies.append(time.perf_counter() - t0)
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    await engine.stop()
    latencies.sort()
    return len(latencies) / elapsed, statistics.median(latencies) * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(f"{'journal':8} {'clients':>7} {'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for clients in (1, 8, 64):
        for name in ("null", "sqlite"):
            with tempfile.TemporaryDirectory() as data_dir:
                journal = NullJournal() if name == "null" else SqliteJournal(data_dir)
                rate, p50, p99 = asyncio.run(measure(journal, clients, args.seconds))
            print(f"{name:8} {clients:>7} {rate:>10,.0f} {p50:>8.3f} {p99:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
