"""The counts kept on the engine's path (api/metrics.py): plain numbers on the loop's thread, shown at a
scrape exactly as prometheus-client's own counter and histograms show them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.api.metrics import Metrics, _Histogram
from etf_engine.engine import Engine

pytestmark = pytest.mark.unit

BOUNDS = (0.005, 0.01, 0.025, float("inf"))


def samples(text: str, name: str) -> dict[str, float]:
    """``name``'s samples in an exposition (labels as written), without the created timestamps."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith(f"{name}_created"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def test_a_value_on_a_bound_counts_in_that_bucket_and_above_the_last_in_inf() -> None:
    histogram = _Histogram(BOUNDS)
    for value in (0.0, 0.005, 0.0051, 0.025, 0.02500001, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 1, 1, 2]
    assert histogram.sum == pytest.approx(0.0 + 0.005 + 0.0051 + 0.025 + 0.02500001 + 7.0)


def test_the_histogram_is_shown_as_prometheus_clients_own() -> None:
    """The same observations through prometheus-client's Histogram and through ours: the same samples."""
    values = (0.0, 0.005, 0.0051, 0.025, 0.02500001, 7.0, 0.01)
    ours = _Histogram(BOUNDS)
    registry = CollectorRegistry()
    theirs = Histogram("h", "doc", buckets=BOUNDS, registry=registry)
    for value in values:
        ours.observe(value)
        theirs.observe(value)
    mine = CollectorRegistry()
    family = ours.family("h", "doc")
    mine.register(type("One", (), {"collect": lambda self: [family]})())
    expected = generate_latest(registry).decode()
    got = generate_latest(mine).decode()
    assert samples(got, "h") == samples(expected, "h") != {}
    assert "h_created" in got


def test_orders_are_counted_by_their_labels_as_a_counter_would() -> None:
    metrics = Metrics(Engine(Ledger()))
    registry = CollectorRegistry()
    counter = Counter("etf_engine_orders", "doc", ["fund_id", "side", "status", "reason"], registry=registry)

    def order(status: str, reason: str = "") -> M.OrderRecorded:
        return M.OrderRecorded(at=1, order=M.Order(
            order_id="ORD-00000001", client_order_id="c", participant_id="AP-1", fund_id="F-1", side=M.CREATE,
            units=1, status=status, reject_reason=reason, deliverables=(), cash_amount=None, fee=0, legs=(),
            created_at=1, updated_at=1,
            basket=M.Basket(fund_id="F-1", creation_unit=1, lines=[], cash_component=0, nav_per_share=None,
                            nav_per_unit=None, shares_outstanding=0, as_of=1, stale=False)))

    events = [order(M.ACCEPTED), order(M.ACCEPTED), order(M.REJECTED, "STAKING_CAP"),
              M.ClockAdvanced(at=1, offset_ms=1)]
    for observe in metrics.engine.on_events:
        observe(events)
    counter.labels("F-1", M.CREATE, M.ACCEPTED, "").inc(2)
    counter.labels("F-1", M.CREATE, M.REJECTED, "STAKING_CAP").inc()
    name = "etf_engine_orders_total"
    assert samples(generate_latest(metrics.registry).decode(), name) == \
        samples(generate_latest(registry).decode(), name)
