"""Prometheus metrics (SPEC §15), with prometheus-client: the counters and histograms move with the
calls, the commits and the orders; the gauges are read from the ledger when ``/metrics`` is scraped,
in one engine read, never on the order path. The orders' counter and the commits' histograms are on the
engine's path, on the loop's thread alone: they are kept as plain numbers (``_Tally``) and shown at a
scrape, where prometheus-client's would take a lock per increment (issue 23).

One ``Metrics`` per server, on a registry of its own (several servers may share a process: tests).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from etf_engine import model as M
from etf_engine.engine import LEADER, Engine
from etf_engine.ledger import Ledger
from etf_engine.numbers import FRACTION_SCALE, NAV_PER_SHARE_DP

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
# The method label of every call to a method the server does not have: made-up names share one series,
# so that calls without a token cannot grow /metrics without bound.
UNKNOWN_METHOD = "unknown"


@dataclass
class Reading:
    """What the gauges show, read from the ledger in one go (on the engine's loop, between operations).
    Prometheus samples are floats: the exact figures stay the API's; these are for monitoring only."""

    navs: list[tuple[str, int | None, int | None]] = field(default_factory=list)  # fund, cents, 1e-4
    accrued: list[tuple[str, int]] = field(default_factory=list)  # fund, cents (SPEC §17)
    ratios: list[tuple[str, str, float | None, float, float | None, float]] = field(default_factory=list)
    capacity: list[tuple[str, str, int]] = field(default_factory=list)
    price_ages: list[tuple[str, str, float]] = field(default_factory=list)
    overdue: list[tuple[str, int]] = field(default_factory=list)
    # fund, custodian, asset, cold / held (None while nothing is held), in breach (SPEC §18)
    storage: list[tuple[str, str, str, float | None, bool]] = field(default_factory=list)
    # fund, classification, OPEN breaks of it (SPEC §19); fund, seconds since its oldest OPEN break opened
    breaks: list[tuple[str, str, int]] = field(default_factory=list)
    oldest_break: list[tuple[str, float]] = field(default_factory=list)


def read_gauges(ledger: Ledger, now_ms: int) -> Reading:
    reading = Reading()
    participants = ledger.list_participants()
    reading.price_ages = [(asset, currency, (now_ms - as_of) / 1000)
                          for asset, currency, _price, as_of in ledger.list_prices()]
    for terms in ledger.list_funds():
        fund_id = terms.fund_id
        nav = ledger.get_nav(fund_id, now_ms)
        reading.navs.append((fund_id, nav.nav, nav.nav_per_share))
        reading.accrued.append((fund_id, nav.accrued_fees))
        holdings = ledger.get_holdings(fund_id, now_ms)
        for row in holdings.holdings:
            t = row.tiers
            if t is not None:
                held = t.cold + t.warm + t.hot
                reading.storage.append((fund_id, row.custodian_id, row.asset, t.cold / held if held else None,
                                        t.breach))
        for a in holdings.assets:
            staking = a.illiquid / a.committed if a.committed else None
            liquid = a.liquid / a.committed if a.committed else None
            reading.ratios.append((fund_id, a.asset, staking, a.staking_cap / FRACTION_SCALE, liquid,
                                   a.liquidity_buffer / FRACTION_SCALE))
        eligible = [p.participant_id for p in participants if fund_id in p.eligible_fund_ids]
        best = {M.CREATE: 0, M.REDEEM: 0}
        for pid in eligible:
            cap = ledger.get_capacity(pid, fund_id, now_ms)
            best[M.CREATE] = max(best[M.CREATE], cap.create.units)
            best[M.REDEEM] = max(best[M.REDEEM], cap.redeem.units)
        reading.capacity += [(fund_id, side, units) for side, units in best.items()]
        overdue = sum(o.overdue for o in ledger.list_orders(fund_id, M.ACCEPTED, None, now_ms))
        reading.overdue.append((fund_id, overdue))
        open_breaks = ledger.list_breaks(fund_id, M.OPEN)
        reading.breaks += [(fund_id, c, sum(b.classification == c for b in open_breaks))
                           for c in (M.TIMING, M.UNEXPLAINED)]
        oldest = min((b.opened_at for b in open_breaks), default=now_ms)
        reading.oldest_break.append((fund_id, max(0, now_ms - oldest) / 1000))
    return reading


class Metrics:
    def __init__(self, engine: Engine, shard: str = "") -> None:
        self.engine = engine
        self.shard = shard
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter("etf_engine_rpc_calls", "RPC calls by method, status code and protocol",
                             ["method", "code", "protocol"], registry=self.registry)
        self.rpc_seconds = Histogram("etf_engine_rpc_seconds", "RPC handling time", ["method"], registry=self.registry)
        self.commit_seconds = _Histogram(Histogram.DEFAULT_BUCKETS)
        self.batch_events = _Histogram((*_BATCH_BUCKETS, float("inf")))
        self._orders: dict[tuple[str, str, str, str], list[float]] = {}  # labels -> [count, created]
        self._reading: Reading | None = None
        # The labelled children by label values: ``labels()`` checks and looks its arguments up on every call
        # (1.6 µs), the child's ``inc``/``observe`` alone costs a third of that.
        self._call_counts: dict[tuple[str, str, str], Any] = {}
        self._call_seconds: dict[str, Any] = {}
        self.registry.register(_Gauges(self))
        self.registry.register(_Tally(self))
        engine.on_events.append(self._events)
        engine.on_commit.append(self._commit)

    # -- on the engine's path: cheap --------------------------------------------------------------
    def _events(self, events: list[M.Event]) -> None:
        for event in events:
            if type(event) is M.OrderRecorded:
                o = event.order
                key = (o.fund_id, o.side, o.status, o.reject_reason)
                count = self._orders.get(key)
                if count is None:
                    self._orders[key] = [1, time.time()]
                else:
                    count[0] += 1

    def _commit(self, seconds: float, events: int) -> None:
        self.commit_seconds.observe(seconds)
        self.batch_events.observe(events)

    def call(self, method: str, code: str, protocol: str, seconds: float) -> None:
        """One RPC answered: ``method`` as "Service/Method", ``code`` a gRPC status name (OK, NOT_FOUND)."""
        key = (method, code, protocol)
        count = self._call_counts.get(key)
        if count is None:
            count = self._call_counts[key] = self.calls.labels(*key)
        count.inc()
        histogram = self._call_seconds.get(method)
        if histogram is None:
            histogram = self._call_seconds[method] = self.rpc_seconds.labels(method)
        histogram.observe(seconds)

    # -- a scrape ---------------------------------------------------------------------------------
    async def scrape(self) -> bytes:
        """The text exposition, with gauges read from the ledger now (one engine read)."""
        self._reading = await self.engine.read(read_gauges) if self.engine.failure is None else None
        try:
            return generate_latest(self.registry)
        finally:
            self._reading = None

    def leader_and_seq(self) -> tuple[int, int]:
        journal: Any = self.engine.journal
        return (1 if self.engine.role == LEADER else 0), int(getattr(journal, "last_seq", 0))


class _Histogram:
    """A histogram as plain numbers, observed from one thread: a bisect and two additions, where
    prometheus-client's takes a lock for its sum and for its bucket. ``bounds`` end with +Inf."""

    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value ("le")
        self.sum += value

    def family(self, name: str, documentation: str) -> Metric:
        """The histogram's samples as prometheus-client writes its own: cumulative buckets, count, sum, created."""
        family = HistogramMetricFamily(name, documentation)
        buckets, seen = [], 0
        for bound, count in zip(self.bounds, list(self.counts), strict=True):
            seen += count
            buckets.append((floatToGoString(bound), seen))
        family.add_metric([], buckets, self.sum)
        family.add_sample(f"{name}_created", {}, self.created)
        return family


class _Tally(Collector):
    """The counts kept on the engine's path (the orders, the commits), shown at a scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        orders = CounterMetricFamily("etf_engine_orders", "Orders decided, by fund, side, status and reject reason",
                                     labels=["fund_id", "side", "status", "reason"])
        for key, (count, created) in list(m._orders.items()):
            orders.add_metric(list(key), count, created=created)
        yield orders
        yield m.commit_seconds.family("etf_engine_journal_commit_seconds", "One journal append (one fsync)")
        yield m.batch_events.family("etf_engine_journal_batch_events", "Events per journal commit")


class _Gauges(Collector):
    """The gauges of the reading a scrape took; none outside a scrape (registration's describe)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        r = self.metrics._reading
        if r is None:
            return
        nav = GaugeMetricFamily("etf_engine_nav", "NAV in the base currency (absent while a price is missing)",
                                labels=["fund_id"])
        nps = GaugeMetricFamily("etf_engine_nav_per_share", "NAV per share", labels=["fund_id"])
        for fund_id, cents, per_share in r.navs:
            if cents is not None:
                nav.add_metric([fund_id], cents / 100)
            if per_share is not None:
                nps.add_metric([fund_id], per_share / 10**NAV_PER_SHARE_DP)
        accrued = GaugeMetricFamily("etf_engine_accrued_fees", "management fee accrued and not yet paid, in the "
                                    "base currency (SPEC §17)", labels=["fund_id"])
        for fund_id, cents in r.accrued:
            accrued.add_metric([fund_id], cents / 100)
        staking = GaugeMetricFamily("etf_engine_staking_ratio", "illiquid / committed", labels=["fund_id", "asset"])
        cap = GaugeMetricFamily("etf_engine_staking_cap", "the staking cap", labels=["fund_id", "asset"])
        liquid = GaugeMetricFamily("etf_engine_liquid_ratio", "liquid / committed", labels=["fund_id", "asset"])
        buffer = GaugeMetricFamily("etf_engine_liquidity_buffer", "the liquidity buffer", labels=["fund_id", "asset"])
        for fund_id, asset, s, c, q, b in r.ratios:
            if s is not None:
                staking.add_metric([fund_id, asset], s)
            if q is not None:
                liquid.add_metric([fund_id, asset], q)
            cap.add_metric([fund_id, asset], c)
            buffer.add_metric([fund_id, asset], b)
        capacity = GaugeMetricFamily("etf_engine_capacity_units", "the largest order an eligible participant "
                                     "could place now", labels=["fund_id", "side"])
        for fund_id, side, units in r.capacity:
            capacity.add_metric([fund_id, side], units)
        overdue = GaugeMetricFamily("etf_engine_orders_overdue", "ACCEPTED orders past their settlement date",
                                    labels=["fund_id"])
        for fund_id, count in r.overdue:
            overdue.add_metric([fund_id], count)
        labels = ["fund_id", "custodian_id", "asset"]
        cold = GaugeMetricFamily("etf_engine_cold_ratio", "cold / held of a custodian's holding of an asset "
                                 "(SPEC §18; absent while nothing is held)", labels=labels)
        breach = GaugeMetricFamily("etf_engine_storage_breach", "1 while cold is below what the storage ratio "
                                   "requires (SPEC §18), else 0", labels=labels)
        for fund_id, custodian_id, asset, ratio, breached in r.storage:
            if ratio is not None:
                cold.add_metric([fund_id, custodian_id, asset], ratio)
            breach.add_metric([fund_id, custodian_id, asset], 1 if breached else 0)
        breaks = GaugeMetricFamily("etf_engine_breaks_open", "OPEN reconciliation breaks (SPEC §19) by "
                                   "classification, TIMING or UNEXPLAINED", labels=["fund_id", "classification"])
        for fund_id, classification, count in r.breaks:
            breaks.add_metric([fund_id, classification], count)
        oldest = GaugeMetricFamily("etf_engine_break_oldest_age_seconds", "seconds on the engine's clock since the "
                                   "oldest OPEN break was opened (0 while none is open)", labels=["fund_id"])
        for fund_id, seconds in r.oldest_break:
            oldest.add_metric([fund_id], seconds)
        ages = GaugeMetricFamily("etf_engine_price_age_seconds", "seconds since the price's as-of time",
                                 labels=["asset", "currency"])
        for asset, currency, age in r.price_ages:
            ages.add_metric([asset, currency], age)
        leader_value, seq = self.metrics.leader_and_seq()
        leader = GaugeMetricFamily("etf_engine_leader", "1 on the leader, 0 on a follower", labels=["shard"])
        leader.add_metric([self.metrics.shard], leader_value)
        applied = GaugeMetricFamily("etf_engine_journal_applied_seq", "the last journal record applied")
        applied.add_metric([], seq)
        yield from (nav, nps, accrued, staking, cap, liquid, buffer, cold, breach, capacity, overdue, breaks, oldest,
                    ages, leader, applied)

