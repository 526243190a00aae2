"""Start-up time of ``etf-engine serve`` on a journal of N records, no snapshot (every record replayed):
from the process's start to its "listening on" line, median of several starts, each on a fresh copy.

Two layouts of the same records: "checkpointed" (a clean close: everything in the database file, no
WAL) and "crashed" (the last ``--wal-commits`` commits still in the WAL, as a SIGKILL leaves it),
where start-up also reads every WAL frame. ``--tree`` runs another checkout's server on the same
directories (its own build in place), for before/after figures in one run.

Run: .venv/bin/python -m benchmarks.startup [--records 100000] [--starts 5] [--tree /path/to/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.conftest import NOW, recorded_fund
from etf_engine import model as M
from etf_engine.journal import SqliteJournal

ROOT = Path(__file__).resolve().parent.parent


def build(data: Path, records: int, wal_commits: int, batch: int = 100) -> Path:
    """A journal of about ``records`` records; returns a copy taken while the last commits were in the WAL."""
    journal = SqliteJournal(data)
    ledger, pending = recorded_fund()
    crashed = data.with_name("crashed")
    wal_from = records - wal_commits * batch
    i = 0
    while journal.last_seq + len(pending) < records:
        request = M.OrderRequest(fund_id="F-1", side="CREATE" if i % 2 else "REDEEM", units=1, client_order_id=f"s-{i}")
        pending.extend(ledger.execute(M.SubmitOrder(participant_id="AP-B", request=request), NOW)[1])
        i += 1
        if len(pending) >= batch:
            asyncio.run(journal.append(pending))
            pending = []
            if wal_from is not None and journal.last_seq >= wal_from:
                journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # from here on the WAL keeps every commit
                journal._db.execute("PRAGMA wal_autocheckpoint=0")
                wal_from = None
    asyncio.run(journal.append(pending))
    shutil.copytree(data, crashed)  # the journal is still open: its WAL is copied as a crash would leave it
    journal.close()
    return crashed


def time_start(tree: Path, data: Path, work: Path) -> float:
    copy = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    shutil.copytree(data, copy, dirs_exist_ok=True)
    config = work / "engine.toml"
    config.write_text(f'listen = "127.0.0.1:0"\ndata_dir = "{copy}"\n')
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(config)], cwd=tree,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            break
    else:
        raise RuntimeError(f"{tree}: the server did not start")
    elapsed = time.perf_counter() - start
    os.killpg(proc.pid, signal.SIGKILL)  # with its checkpointer, which would start a snapshot of the journal
    proc.wait()
    shutil.rmtree(copy)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--wal-commits", type=int, default=50, help="commits of 100 records left in the WAL")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--tree", action="append", default=[], help="another checkout to time too (repeatable)")
    args = parser.parse_args()
    trees = [ROOT, *(Path(t).resolve() for t in args.tree)]
    with tempfile.TemporaryDirectory(prefix="etf-startup-") as tmp:
        work = Path(tmp)
        data = work / "checkpointed"
        crashed = build(data, args.records, args.wal_commits)
        wal = crashed / "journal.sqlite3-wal"
        print(f"records {args.records}; crashed copy's WAL {wal.stat().st_size:,} bytes", flush=True)
        print(f"{'tree':40} {'layout':13} {'median s':>9} {'min s':>7}")
        for layout, directory in (("checkpointed", data), ("crashed", crashed)):
            times: dict[Path, list[float]] = {tree: [] for tree in trees}
            for _ in range(args.starts):  # interleaved, so that drift on the machine hits every tree alike
                for tree in trees:
                    times[tree].append(time_start(tree, directory, work))
            for tree in trees:
                print(f"{str(tree):40} {layout:13} {statistics.median(times[tree]):>9.3f} {min(times[tree]):>7.3f}",
                      flush=True)


if __name__ == "__main__":
    main()
