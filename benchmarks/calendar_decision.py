"""The REDEEM decision with and without a dealing calendar, interleaved in one process.

pytest-benchmark runs one test after the other, and on a shared, noisy machine its medians for two
tests can differ by more than the thing measured. Here the two ledgers alternate in 40 batches of
5,000 decisions each, so drift hits both alike; the medians and their ratio are printed.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.calendar_decision
"""

from __future__ import annotations

import statistics
import time

from benchmarks.conftest import NOW, load_fund
from benchmarks.test_core import REDEEM
from etf_engine._core import Ledger

BATCHES, CALLS = 40, 5_000


def main() -> None:
    plain, calendar = Ledger(), Ledger()
    load_fund(plain)
    load_fund(calendar, calendar=True)
    micros: dict[str, list[float]] = {"plain": [], "calendar": []}
    for _ in range(BATCHES):
        for name, ledger in (("plain", plain), ("calendar", calendar)):
            check = ledger.check_order
            start = time.perf_counter()
            for _ in range(CALLS):
                check("AP-1", REDEEM, NOW)
            micros[name].append((time.perf_counter() - start) / CALLS * 1e6)
    for name, values in micros.items():
        print(f"{name:9} median {statistics.median(values):.3f} µs  min {min(values):.3f} µs")
    ratio = statistics.median(micros["calendar"]) / statistics.median(micros["plain"])
    print(f"calendar / plain, medians: {ratio:.3f}")


if __name__ == "__main__":
    main()
