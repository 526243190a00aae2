"""The REDEEM decision in three variants, interleaved in one process: plain, on a fund with a dealing
calendar (SPEC §13), and on a fund that requires delivery with payout wallets (SPEC §14).

pytest-benchmark runs one test after the other, and on a shared, noisy machine its medians for two
tests can differ by more than the thing measured. Here the ledgers alternate in 40 batches of 5,000
decisions each, so drift hits all alike; the medians and their ratios to plain are printed.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.decision_variants
"""

from __future__ import annotations

import statistics
import time

from benchmarks.conftest import NOW, load_fund
from benchmarks.test_core import REDEEM, REDEEM_TO_WALLETS
from etf_engine import model as M
from etf_engine._core import Ledger

BATCHES, CALLS = 40, 5_000


def main() -> None:
    variants = {name: Ledger() for name in ("plain", "calendar", "wallets")}
    load_fund(variants["plain"])
    load_fund(variants["calendar"], calendar=True)
    load_fund(variants["wallets"], delivery=True)
    requests = {"plain": REDEEM, "calendar": REDEEM, "wallets": REDEEM_TO_WALLETS}
    micros: dict[str, list[float]] = {name: [] for name in variants}
    for name, ledger in variants.items():
        assert ledger.check_order("AP-1", requests[name], NOW).status == M.ACCEPTED, name
    for _ in range(BATCHES):
        for name, ledger in variants.items():
            check, request = ledger.check_order, requests[name]
            start = time.perf_counter()
            for _ in range(CALLS):
                check("AP-1", request, NOW)
            micros[name].append((time.perf_counter() - start) / CALLS * 1e6)
    plain = statistics.median(micros["plain"])
    for name, values in micros.items():
        median = statistics.median(values)
        print(f"{name:9} median {median:.3f} µs  min {min(values):.3f} µs  / plain {median / plain:.3f}")


if __name__ == "__main__":
    main()
