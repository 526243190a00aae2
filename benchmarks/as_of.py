"""Reads as of a time (SPEC §21) over a journal of 1,000,000 records, on SQLite and on PostgreSQL.

1. ``build``: a fund's life made by the core and journaled in commits of 2,000 records: every step one
   order (CREATE and REDEEM in turn, 1 unit), the oldest open order settled once more than 300 are open,
   a price tick every 10th step; 40 ms of engine time per step (about 2.1 records), so 1,000,000
   records span about five hours and hold some 470,000 orders.
2. ``history``: the history writer (what the checkpointer runs beside the server; journal/history.py)
   over the whole journal, a state every 10,000 records: its time and the states' size.
3. ``reads``: ``etf-engine serve`` on that journal; GetHoldings and GetNav with ``as_of`` at the start,
   the middle and the end, ``--reads`` times each per RPC, each in a stretch of its own (so the reader's
   recent states never help) and each the worst case there: 1 ms before the time of a history state's
   record, so that the read replays the 9,999 records before it (the first stretch: from the empty
   ledger). Then one read as of the last record (its state, nothing replayed) and one again at the same
   time (a recent state). Client-side ms per call, median and max.
4. SQLite only: one read at the middle with the history file moved away: every record before it replayed.

Run: .venv/bin/python -m benchmarks.as_of [--records 1000000] [--reads 5] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.conftest import NOW, recorded_fund
from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.api.auth import hash_token
from etf_engine.checkpoint import DEFAULT_EVERY
from etf_engine.client import EtfClient
from etf_engine.journal import history
from etf_engine.journal.history import HistoryWriter
from etf_engine.journal.sqlite import HISTORY_NAME, SqliteHistory, SqliteJournal

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOKEN = "as-of-bench"
STEP_MS = 40
OPEN_BOOK = 300
BATCH = 2_000
ASSETS = ("BTC", "ETH", "SOL")


def life(records: int) -> Iterator[list[M.Event]]:
    """Batches of events, ``records`` in all (the last batch cut to fit)."""
    ledger, pending = recorded_fund()
    prices = {a: p for a, p in zip(ASSETS, ("600000", "25000", "1200"), strict=True)}
    open_orders: deque[str] = deque()
    now, step, made = NOW, 0, 0
    while made < records:
        step += 1
        now += STEP_MS
        if step % 10 == 0:
            asset = ASSETS[step // 10 % 3]
            pending += ledger.execute(M.PublishPrices(ticks=[M.PriceTick(
                asset=asset, currency="HKD", price=prices[asset], as_of_unix_ms=now)]), now)[1]
        side = "CREATE" if step % 2 else "REDEEM"
        order, events = ledger.execute(M.SubmitOrder(participant_id="AP-B", request=M.OrderRequest(
            fund_id="F-1", side=side, units=1, client_order_id=f"a-{step}")), now)
        pending += events
        if order.status == M.ACCEPTED:
            open_orders.append(order.order_id)
        if len(open_orders) > OPEN_BOOK:
            pending += ledger.execute(M.SettleOrder(order_id=open_orders.popleft()), now)[1]
        if len(pending) >= BATCH or made + len(pending) >= records:
            batch, pending = pending[:records - made], []
            made += len(batch)
            yield batch
    print(f"built: {made:,} records, {len(ledger.list_orders()):,} orders, {len(open_orders)} open at the end",
          flush=True)


def build(append: Callable[[list[M.Event]], None], records: int) -> array:
    """Journal the life; returns each record's time (index seq - 1)."""
    ats = array("q")
    started = time.perf_counter()
    for batch in life(records):
        append(batch)
        ats.extend(e.at for e in batch)
    print(f"journaled in {time.perf_counter() - started:.0f} s", flush=True)
    return ats


def write_history(store: object, label: str) -> None:
    started = time.perf_counter()
    stored = HistoryWriter(store, Ledger).step()  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    print(f"history ({label}): {stored} states every {history.HISTORY_EVERY:,} records written in {seconds:.1f} s",
          flush=True)


def config(work: Path, backend: str, where: str) -> Path:
    lines = ['listen = "127.0.0.1:0"', "grace_seconds = 1"]
    if backend == "sqlite":
        lines.append(f'data_dir = "{where}"')
    else:
        dsn, shard = where.split("|")
        lines += ["[journal]", 'backend = "postgresql"', f'dsn = "{dsn}"', f'shard = "{shard}"',
                  'node_name = "as-of-bench"']
    lines += ["[[principals]]", 'name = "ops"', 'role = "issuer"', f'token_sha256 = "{hash_token(TOKEN)}"']
    path = work / f"{backend}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(path: Path) -> tuple[subprocess.Popen[str], str]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(path)], env=ENV,
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            target = line.split("listening on ")[1].split()[0]
            with EtfClient(target, TOKEN, timeout=600) as client:
                while True:  # listening before the replay: serving once it is done
                    try:
                        client.get_nav("F-1")
                        break
                    except Exception:
                        time.sleep(0.5)
            print(f"server up in {time.perf_counter() - started:.0f} s", flush=True)
            return proc, target
    raise RuntimeError(f"{path}: the server did not start ({proc.wait()})")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1e3


def reads(target: str, ats: array, count: int) -> dict[str, list[float]]:
    """ms per read, by position and RPC."""
    every = history.HISTORY_EVERY
    states = len(ats) // every
    starts = {"start": 1, "middle": states // 2, "end": states - 2 * count + 1}
    figures: dict[str, list[float]] = {}
    with EtfClient(target, TOKEN, timeout=600) as client:
        rpcs = {"GetHoldings": lambda t: client.get_holdings("F-1", as_of=t),
                "GetNav": lambda t: client.get_nav("F-1", as_of=t)}
        for position, first in starts.items():
            for r, (rpc, call) in enumerate(rpcs.items()):
                key = f"{position} {rpc}"
                for j in range(count):
                    k = first + r * count + j  # the history state whose record's time, less 1 ms, is read
                    as_of = ats[k * every - 1] - 1
                    figures[key] = [*figures.get(key, []), timed(lambda t=as_of, c=call: c(t))]
        last = ats[-1]
        figures["end, as of the last record (its state)"] = [timed(lambda: client.get_holdings("F-1", as_of=last))]
        figures["again (a recent state)"] = [timed(lambda: client.get_holdings("F-1", as_of=last))]
    return figures


def report(backend: str, figures: dict[str, list[float]]) -> None:
    print(f"\n{backend}: ms per as-of read, client side")
    print(f"{'position, rpc':44} {'n':>3} {'median':>8} {'max':>8}")
    for key, values in figures.items():
        print(f"{key:44} {len(values):>3} {statistics.median(values):>8.1f} {max(values):>8.1f}")
    print(flush=True)


def sqlite(work: Path, records: int, count: int) -> None:
    data = work / "data"
    journal = SqliteJournal(data)
    ats = build(journal.append_sync, records)
    journal.close()
    size = sum(p.stat().st_size for p in data.glob("journal.sqlite3*"))
    print(f"journal: {size / 1e6:.0f} MB", flush=True)
    store = SqliteHistory(data, writable=True)
    write_history(store, "sqlite")
    store.close()
    print(f"history file: {(data / HISTORY_NAME).stat().st_size / 1e6:.1f} MB", flush=True)
    path = config(work, "sqlite", str(data))
    proc, target = serve(path)
    try:
        # The checkpointer beside it recovers the journal and writes its first snapshot: not under the reads.
        deadline = time.monotonic() + 600
        while records >= DEFAULT_EVERY and not (data / "snapshot.bin").exists() and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(5)
        report("sqlite", reads(target, ats, count))
    finally:
        stop(proc)
    (data / HISTORY_NAME).rename(work / HISTORY_NAME)
    proc, target = serve(path)
    try:
        with EtfClient(target, TOKEN, timeout=600) as client:
            middle = ats[len(ats) // 2] - 1
            ms = timed(lambda: client.get_holdings("F-1", as_of=middle))
        print(f"sqlite without history states: GetHoldings as of the middle (every record before it replayed) "
              f"{ms:.0f} ms\n", flush=True)
    finally:
        stop(proc)
        (work / HISTORY_NAME).rename(data / HISTORY_NAME)


def postgresql(work: Path, records: int, count: int) -> None:
    from etf_engine.journal.postgres import PgHistory, PgJournal
    from tests.pg_cluster import PgCluster

    with PgCluster() as cluster:
        shard = "as-of"
        journal = PgJournal(cluster.dsn, shard, node_name="as-of-bench")
        assert journal.take_lease()
        ats = build(journal.append_sync, records)
        journal.close()
        store = PgHistory(cluster.dsn, shard)
        write_history(store, "postgresql")
        store.close()
        proc, target = serve(config(work, "postgresql", f"{cluster.dsn}|{shard}"))
        try:
            time.sleep(5)
            report("postgresql", reads(target, ats, count))
        finally:
            stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"$ {' '.join([Path(sys.executable).name, '-m', 'benchmarks.as_of', *sys.argv[1:]])}")
    print(f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs, {platform.python_version()}",
          flush=True)
    for backend in args.backends.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"etf-as-of-{backend}-"))
        try:
            {"sqlite": sqlite, "postgresql": postgresql}[backend](work, args.records, args.reads)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
