"""Latency samples -> the figures a report shows.

Latencies are kept raw (nanoseconds, one per call) and percentiles are exact nearest-rank over
all of them: at the rates one machine reaches (~10^5 calls per phase) sorting is cheap, and no
histogram bucket hides a tail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import msgspec

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


class Summary(msgspec.Struct, frozen=True):
    """One phase: ``calls`` completed in ``seconds``; latencies in milliseconds."""

    calls: int
    items: int  # orders carried (SubmitOrders: calls x batch); = calls for the others
    errors: int  # calls that ended in a gRPC error (not counted in calls or latencies)
    seconds: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def percentile(ordered: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of an ascending sequence: the smallest sample with at least p% of
    the samples at or below it."""
    if not ordered:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)  # exact: in floats 99.9% of 1000 is 999.0000000000001
    return ordered[max(rank, 1) - 1]


def summarize(latencies_ns: Sequence[int], *, items_per_call: int, errors: int, seconds: float) -> Summary:
    ordered = sorted(latencies_ns)
    if not ordered:
        return Summary(0, 0, errors, seconds, 0.0, 0.0, 0.0, 0.0, 0.0)
    ms = {name: percentile(ordered, p) / 1e6 for name, p in PERCENTILES}
    return Summary(len(ordered), len(ordered) * items_per_call, errors, seconds, max=ordered[-1] / 1e6, **ms)
