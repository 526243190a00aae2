"""Reports and the audit trail (SPEC §21) over a journal of 1,000,000 records: a year of 100 funds.

1. ``build``: a year (2026) of 100 FORWARD funds on a Hong Kong calendar (weekends, the year's general
   holidays, and one day closed at short notice for a typhoon signal no. 8), each with ``load_fund``'s
   0.25% management fee taken in kind, made by the core ledger through its commands and journaled with
   ``SqliteJournal.append_sync`` in commits of ``as_of.BATCH`` records, through an ``AuditTrail`` as the
   server's journal has, so that every strike's checkpoint record is sealed as a server seals it. The
   opening holdings are swept into cold storage; then each dealing day (local times, HKT): at 09:15 the
   orders whose settlement date it is are settled, and at 09:20 the custodians sweep what the creations
   brought into hot beyond its allowance into cold (SPEC §18); from 09:30 to 16:00 the three assets tick
   every 28 s (one PublishPrices of three ticks, three records); each fund gets ``ORDERS`` creations and
   redemptions of 1-5 units from five participants, each within 30 s of a tick; every fifth dealing day
   a fund records a staking reward, every twentieth an AdjustHolding, and ten days later an AdjustCash;
   from 16:05 each fund's StrikeNav (the 16:00 prices as its official ones), each followed by a
   ``CheckpointRecorded`` as ``Engine.submit`` adds one. About 4,070 records a dealing day, 1,000,000
   over the year's 246 dealing days. ``--records`` scales the day's ticks and orders; a journal smaller
   than a year stops after the day that reaches it.
2. ``history``: the history writer over the whole journal (``as_of.write_history``), for reads as of a time.
3. ``serve``: ``etf-engine serve`` on it (``as_of.serve``): its start-up (every record replayed, then the
   audit trail reads every record once), and again with the snapshot the checkpointer wrote (the trail's
   read of every record then most of it); and, in this process, ``AuditTrail.catch_up`` alone. Then,
   client side, ms per call, ``--calls`` calls each: RollForward of one fund over the year (a fund a call);
   DailyReport of a date in the middle of the year (a fund and a dealing day a call, the days three apart);
   HoldingsReport as of a time between two records near the start, in the middle and near the end (each
   call in a stretch of history states of its own, the time just before a state's record, so that the
   read replays the 9,999 records before it); StakingReport, BreakReport and ParticipantActivity over the
   year, once each.
4. ``audit``: ``etf-engine audit --data-dir`` (a subprocess, the server stopped), three times: wall time,
   and the time and records/s it prints.

Run: .venv/bin/python -m benchmarks.reports [--records 1000000] [--calls 5]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc

from benchmarks.as_of import BATCH, ENV, ROOT, TOKEN, config, serve, stop, timed, write_history
from benchmarks.conftest import CALENDAR, NOW, load_fund
from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.bench.fixture import ASSETS, CUSTODIANS
from etf_engine.checkpoint import DEFAULT_EVERY
from etf_engine.client import EtfClient
from etf_engine.errors import EngineError
from etf_engine.journal import history
from etf_engine.journal.sqlite import HISTORY_NAME, SNAPSHOT_NAME, SqliteHistory, SqliteJournal
from etf_engine.journal.trail import AuditTrail
from etf_engine.numbers import format_quantity

FULL = 1_000_000  # records the figures are for; --records scales the day's activity against it
FUNDS = [f"F-{i}" for i in range(1, 101)]  # F-1 first: load_fund registers the assets, custodians and prices
PARTICIPANTS = [f"AP-{i:02}" for i in range(1, 6)]
YEAR = 2026
# Hong Kong's general holidays of 2026 that fall on weekdays (a Saturday one is no dealing day anyway).
HOLIDAYS = ("2026-01-01", "2026-02-17", "2026-02-18", "2026-02-19", "2026-04-03", "2026-04-06", "2026-04-07",
            "2026-05-01", "2026-05-25", "2026-06-19", "2026-07-01", "2026-10-01", "2026-10-19", "2026-12-25")
TYPHOON = "2026-09-16"  # closed at 06:00 HKT: its settlements move to the next dealing day
HKT = 8 * 3_600_000  # Asia/Hong_Kong: UTC+8, no daylight saving
ORDERS = 6  # per fund and dealing day at 1,000,000 records
TICK_MS = 28_000  # the assets' ticks at 1,000,000 records
STRIKE_GAP_MS = 2_000  # between two funds' strikes


@dataclass
class Year:
    """What the build made: each record's time (index seq - 1), the dealing days, the counts."""

    ats: array = field(default_factory=lambda: array("q"))
    days: list[str] = field(default_factory=list)
    commands: Counter[str] = field(default_factory=Counter)
    orders: Counter[str] = field(default_factory=Counter)  # by side and status, at the end
    refused: Counter[str] = field(default_factory=Counter)  # by command and code
    journal_seconds: float = 0.0  # of the build, in append_sync (encode, Merkle tree, SQLite commit)


def hk_ms(day: str, hh: int, mm: int, ss: int = 0) -> int:
    """A Hong Kong local time as unix ms."""
    midnight = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC).timestamp() * 1000
    return int(midnight) - HKT + ((hh * 60 + mm) * 60 + ss) * 1000


def dealing_days() -> list[str]:
    holidays = {*HOLIDAYS, TYPHOON}
    first = datetime.date(YEAR, 1, 1)
    days = (first + datetime.timedelta(d) for d in range(366))
    return [d.isoformat() for d in days if d.year == YEAR and d.isoweekday() < 6 and d.isoformat() not in holidays]


class Prices:
    """The three assets' prices, a random walk from load_fund's (HKD, 2 dp)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.level = {asset: float(price) for asset, (_decimals, price) in ASSETS.items()}

    def ticks(self, at: int, *, move: bool = True) -> list[M.PriceTick]:
        if move:
            for asset in self.level:
                self.level[asset] *= math.exp(self.rng.gauss(0.0, 0.002))
        return [M.PriceTick(asset=asset, currency="HKD", price=f"{level:.2f}", as_of_unix_ms=at)
                for asset, level in self.level.items()]


def life(records: int, year: Year) -> Iterator[list[M.Event]]:
    """Batches of the year's events, made by the core ledger's commands; about ``records`` in all."""
    scale = records / FULL
    per_day = max(1, round(ORDERS * scale))
    tick_ms = min(3_600_000, max(1_000, round(TICK_MS / scale)))
    rng = random.Random(22)
    ledger = Ledger()
    pending: list[M.Event] = []
    prices = Prices(rng)

    def run(command: object, now: int) -> object:
        year.commands[type(command).__name__] += 1
        try:
            result, events = ledger.execute(command, now)
        except EngineError as error:
            year.refused[f"{type(command).__name__} {error.code}"] += 1
            return None
        pending.extend(events)
        return result

    def run_at(command: object, now: int) -> None:
        run(command, now)

    class Recording:  # load_fund drives a ledger: its events join the journal's
        execute = staticmethod(lambda command, now: (run(command, now), None))

        def __getattr__(self, name: str) -> object:
            return getattr(ledger, name)

    run(M.RegisterCalendar(calendar_id=CALENDAR, time_zone="Asia/Hong_Kong", holidays=list(HOLIDAYS)), NOW)
    for fund_id in FUNDS:
        load_fund(Recording(), fund_id, calendar=True, pricing=M.FORWARD, fee=True)
    for participant_id in PARTICIPANTS:
        run(M.RegisterParticipant(participant_id=participant_id, name=participant_id, eligible_fund_ids=FUNDS,
                                  max_units_per_order=10, max_units_per_day=10**15), NOW)
    settling: defaultdict[str, list[str]] = defaultdict(list)  # settlement date -> ACCEPTED orders

    def submit(command: M.SubmitOrder, now: int) -> None:
        order = run(command, now)
        if order is not None and order.status == M.ACCEPTED:
            settling[order.settlement_date].append(order.order_id)

    def strike(fund_id: str, day: str, fixing: int, now: int) -> None:
        if run(M.StrikeNav(fund_id=fund_id, dealing_date=day, ticks=prices.ticks(fixing, move=False)), now):
            pending.append(M.CheckpointRecorded(at=now))  # as Engine.submit adds one after a NavStruck

    def sweep(fund_id: str, now: int) -> None:
        """The custodians' sweep (SPEC §18): what lies in hot beyond its allowance moved to cold."""
        for row in ledger.get_holdings(fund_id, now).holdings:
            if row.tiers.hot > row.tiers.hot_allowance:
                run(M.Sweep(fund_id=fund_id, custodian_id=row.custodian_id, asset=row.asset, from_tier=M.HOT,
                            to_tier=M.COLD, quantity=format_quantity(row.tiers.hot - row.tiers.hot_allowance,
                                                                      ASSETS[row.asset][0])), now)

    def close(day: str) -> None:
        """The typhoon: the day closed at 06:00, the open orders' settlement dates recomputed."""
        run(M.CloseDealingDay(calendar_id=CALENDAR, date=day, reason="typhoon signal no. 8"), hk_ms(day, 6, 0))
        open_orders = [order_id for ids in settling.values() for order_id in ids]
        settling.clear()
        for order_id in open_orders:
            settling[ledger.get_order(order_id).settlement_date].append(order_id)

    for fund_id in FUNDS:  # the opening holdings entered hot: into cold before the first dealing day
        sweep(fund_id, NOW)
    made, number, closed = 0, 0, False
    for index, day in enumerate(dealing_days()):
        if day > TYPHOON and not closed:
            close(TYPHOON)
            closed = True
        plan: list[tuple[int, Callable[[int], object]]] = []
        for i, order_id in enumerate(settling.pop(day, [])):
            plan.append((hk_ms(day, 9, 15) + i, partial(run_at, M.SettleOrder(order_id=order_id))))
        opening, closing = hk_ms(day, 9, 30), hk_ms(day, 16, 0)
        ticks = range(opening, closing + 1, tick_ms)
        plan += [(at, lambda now: run(M.PublishPrices(ticks=prices.ticks(now)), now)) for at in ticks]
        for j, fund_id in enumerate(FUNDS):
            for _ in range(per_day):
                number += 1
                request = M.OrderRequest(fund_id=fund_id, side=rng.choice((M.CREATE, M.REDEEM)),
                                         units=rng.randint(1, 5), client_order_id=f"r-{number}")
                at = rng.choice(ticks[:-1]) + rng.randint(1, 29_999)  # within 30 s of a tick: a fresh price
                plan.append((at, partial(submit, M.SubmitOrder(participant_id=rng.choice(PARTICIPANTS),
                                                               request=request))))
            plan.append((hk_ms(day, 9, 20) + j, partial(sweep, fund_id)))  # the creations settled at 09:15
            if (index + j) % 5 == 0:
                plan.append((hk_ms(day, 12, 0) + j, partial(run_at, M.RecordStakingReward(
                    fund_id=fund_id, custodian_id=CUSTODIANS[-1], asset="ETH", quantity="0.012345678"))))
            if (index + j) % 20 == 0:
                plan.append((hk_ms(day, 13, 0) + j, partial(run_at, M.AdjustHolding(
                    fund_id=fund_id, custodian_id=CUSTODIANS[1], asset="SOL", delta="0.000001234",
                    reason="custodian statement: rounding"))))
            if (index + j) % 20 == 10:
                plan.append((hk_ms(day, 13, 0) + j, partial(run_at, M.AdjustCash(
                    fund_id=fund_id, delta="-12.34", reason="bank charges"))))
            plan.append((hk_ms(day, 16, 5) + j * STRIKE_GAP_MS, partial(strike, fund_id, day, closing)))
        plan.sort(key=lambda p: p[0])
        for at, act in plan:
            act(at)
            if len(pending) >= BATCH:
                made += len(pending)
                yield pending
                pending = []
        year.days.append(day)
        if made + len(pending) >= records:
            break
    if pending:
        yield pending
    for order in ledger.list_orders():
        year.orders[f"{order.side} {order.status}"] += 1


def build(data: Path, records: int) -> Year:
    year = Year()
    journal = SqliteJournal(data)
    journal.trail = AuditTrail()  # as the server's journal: checkpoints sealed, the Merkle tree grown
    started = time.perf_counter()
    for batch in life(records, year):
        before = time.perf_counter()
        journal.append_sync(batch)
        year.journal_seconds += time.perf_counter() - before
        year.ats.extend(e.at for e in batch)
    seconds = time.perf_counter() - started
    journal.close()
    size = sum(p.stat().st_size for p in data.glob("journal.sqlite3*"))
    print(f"built: {len(year.ats):,} records over {len(year.days)} dealing days ({year.days[0]} to "
          f"{year.days[-1]}), {len(FUNDS)} funds, in {seconds:.0f} s ({year.journal_seconds:.0f} s of it "
          f"journaling: encoding, the Merkle tree, SQLite); journal {size / 1e6:.0f} MB", flush=True)
    print(f"  commands: {dict(year.commands.most_common())}", flush=True)
    print(f"  orders at the end: {dict(sorted(year.orders.items()))}", flush=True)
    if year.refused:
        print(f"  refused: {dict(year.refused)}", flush=True)
    return year


def between(ats: array, k: int) -> int:
    """A time between two records, just before the record of history state ``k``: a read as of it restores
    state ``k - 1`` (or the empty ledger) and replays the records after it, 9,999 of them."""
    i = k * history.HISTORY_EVERY - 1  # index of the state's record
    while ats[i - 1] == ats[i]:
        i -= 1
    return (ats[i - 1] + ats[i]) // 2


def reads(target: str, year: Year, count: int) -> dict[str, list[float]]:
    """ms per call, client side, by report."""
    figures: dict[str, list[float]] = defaultdict(list)
    first, last = f"{YEAR}-01-01", f"{YEAR}-12-31"  # the calendar year (a short journal ends before it)
    funds = FUNDS[1:]  # F-1 is load_fund's bench fund: the others are alike
    with EtfClient(target, TOKEN, timeout=600) as client:

        def measure(key: str, call: Callable[[], object]) -> None:
            try:
                figures[key].append(timed(call))
            except grpc.RpcError as error:
                figures.setdefault(key, [])
                print(f"  {key}: {error.code().name}: {error.details()}", flush=True)  # type: ignore[attr-defined]

        for c in range(count):
            measure(f"RollForward, one fund, {first} to {last}",
                    lambda f=funds[c]: client.roll_forward(f, first, last))
        middle = len(year.days) // 2
        for c in range(count):
            day = year.days[min(middle + 3 * c, len(year.days) - 1)]
            measure(f"DailyReport, a date in the middle ({year.days[middle]}...)",
                    lambda f=funds[10 + c], d=day: client.daily_report(f, d))
        states = len(year.ats) // history.HISTORY_EVERY
        places = {"start": 1, "middle": states // 2, "end": max(1, states - count)}
        for place, k in places.items():
            for c in range(count):
                as_of = between(year.ats, min(k + c, states))
                measure(f"HoldingsReport as of a time, {place}",
                        lambda f=funds[20 + c], t=as_of: client.holdings_report(f, as_of=t))
        measure("StakingReport, the year", lambda: client.staking_report(funds[30], first, last))
        measure("BreakReport, the year", lambda: client.break_report(funds[31], first, last))
        measure("ParticipantActivity, the year", lambda: client.participant_activity(funds[32], first, last))
    return figures


def audit(data: Path, runs: int) -> list[tuple[float, float, float]]:
    """(wall s, printed s, printed records/s) of each ``etf-engine audit --data-dir`` run."""
    results = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "etf_engine.cli", "audit", "--data-dir", str(data)], env=ENV,
                              cwd=ROOT, text=True, capture_output=True, check=False)
        wall = time.perf_counter() - started
        print(f"$ etf-engine audit --data-dir DIR  [exit {done.returncode}, {wall:.1f} s wall]\n{done.stdout.strip()}"
              f"{done.stderr.strip()}", flush=True)
        found = re.search(r"\(([0-9.]+) s, ([0-9,]+) records/s\)", done.stdout)
        if done.returncode == 0 and found:
            results.append((wall, float(found[1]), float(found[2].replace(",", ""))))
    return results


def table(figures: dict[str, list[float]]) -> None:
    print(f"\n{'ms per call, client side':58} {'n':>3} {'median':>9} {'min':>9} {'max':>9}")
    for key, values in figures.items():
        if values:
            print(f"{key:58} {len(values):>3} {statistics.median(values):>9.1f} {min(values):>9.1f} "
                  f"{max(values):>9.1f}")
        else:
            print(f"{key:58}   0 {'refused':>9}")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=FULL)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    print(f"$ {' '.join([Path(sys.executable).name, '-m', 'benchmarks.reports', *sys.argv[1:]])}")
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="etf-reports-"))
    try:
        data = work / "data"
        year = build(data, args.records)

        store = SqliteHistory(data, writable=True)
        write_history(store, "sqlite")
        store.close()
        print(f"history file: {(data / HISTORY_NAME).stat().st_size / 1e6:.1f} MB", flush=True)

        journal = SqliteJournal(data, lock=False)
        trail, started = AuditTrail(), time.perf_counter()
        trail.catch_up(journal.stored_records, journal.committed_seq())
        print(f"AuditTrail.catch_up of every record, in this process: {time.perf_counter() - started:.1f} s, "
              f"{len(trail.checkpoints):,} checkpoints", flush=True)
        journal.close()
        del trail

        path = config(work, "sqlite", str(data))
        started = time.perf_counter()
        proc, target = serve(path)
        print(f"start-up, no snapshot (every record replayed, then the audit trail): "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        try:
            # The checkpointer beside it recovers the journal and writes its snapshot: not under the reads.
            deadline = time.monotonic() + 900
            while (len(year.ats) >= DEFAULT_EVERY and not (data / SNAPSHOT_NAME).exists()
                   and time.monotonic() < deadline):
                time.sleep(1)
            time.sleep(5)
            table(reads(target, year, args.calls))
        finally:
            stop(proc)
        started = time.perf_counter()
        proc, target = serve(path)
        snapshot = "from the snapshot" if (data / SNAPSHOT_NAME).exists() else "again, no snapshot"
        print(f"start-up {snapshot} (the audit trail reads every record): "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        stop(proc)

        results = audit(data, 3)
        if results:
            wall, seconds, rate = (statistics.median(r[i] for r in results) for i in range(3))
            print(f"audit, median of {len(results)}: {wall:.1f} s wall, {seconds:.1f} s and {rate:,.0f} records/s "
                  "as it prints them", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
