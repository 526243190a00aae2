"""The PostgreSQL journal's hand-over to its writer thread and back, without PostgreSQL: what a lone
client's commit pays on top of the statement. A call goes from the loop to the thread, runs a stand-in
for the statement there (``time.sleep``: the thread waits with the GIL released, as psycopg does for the
answer) and its result comes back on the loop; then the loop idles, as a server does between a lone
client's calls. journal/postgres.py's ``WriterThread`` against the ThreadPoolExecutor of one worker it
replaced, the two taking turns in one loop that keeps running (as the server's does), so that the host's
noise falls on both alike. Printed: the median time of a call less the statement's, in µs.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.writer_hop [--calls 3000] [--statement-ms 0.5] [--gap-ms 0.7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from etf_engine.journal.postgres import WriterThread


async def measure(calls: int, statement: float, gap: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    writer, executor = WriterThread("writer"), ThreadPoolExecutor(max_workers=1)
    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "WriterThread": lambda: writer.run(time.sleep, statement),
        "ThreadPoolExecutor": lambda: loop.run_in_executor(executor, time.sleep, statement),
    }
    took: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(calls):
            for name, hand_over in ways.items():
                time.sleep(gap)  # the loop idle, its thread asleep
                started = time.perf_counter()
                await hand_over()
                took[name].append(time.perf_counter() - started)
    finally:
        writer.stop()
        executor.shutdown()
    warm = calls // 10
    return {name: (statistics.median(times[warm:]) - statement) * 1e6 for name, times in took.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--statement-ms", type=float, default=0.5)
    parser.add_argument("--gap-ms", type=float, default=0.7)
    args = parser.parse_args()
    over = asyncio.run(measure(args.calls, args.statement_ms / 1e3, args.gap_ms / 1e3))
    for name, us in over.items():
        print(f"{name:18} {us:7.1f} µs over the statement (median of {args.calls})")


if __name__ == "__main__":
    main()
