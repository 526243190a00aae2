"""Snapshots taken beside the server, so that the writer never stops for one.

A snapshot costs time in proportion to the whole state (every order ever recorded), so building it
inside the single writer stalled every call for that long, and ever longer as orders accumulate
(measured: a third of the server's time under a SubmitOrders load; see benchmarks/RESULTS.md).
Instead a separate process follows the journal: it opens the data directory read-only (SQLite's
WAL lets it read while the server appends), rebuilds the ledger from the latest snapshot and the
records after it, and whenever ``every`` more records have been committed it applies them and
writes a new snapshot. It reads only committed, fsynced records, so a snapshot is never ahead of
what the server acknowledged.

It also writes the journal's history states (journal/history.py: a state every ``history_every``
records or, while the open book is larger, every as many records as it holds orders; with the open
book only, for reads as of a time), following every committed record with a
ledger of its own. On a PostgreSQL shard the leader runs it for that alone (``--shard``, the DSN in
the environment, never on a command line that ``ps`` shows): the followers write the shard's snapshots.

The server starts it (``python -m etf_engine.checkpoint``) and stops it (SIGTERM, then waits)
before writing its own snapshot at a clean stop; if the server dies, the checkpointer notices its
parent is gone and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from etf_engine.journal import JournalError, SqliteJournal, collector_paused, history, recover
from etf_engine.journal.history import HistoryStore, HistoryWriter
from etf_engine.journal.sqlite import SqliteHistory
from etf_engine.ledger import make_ledger

log = logging.getLogger(__name__)

DEFAULT_EVERY = 100_000  # records between snapshots: a restart replays at most this many
POLL_SECONDS = 1.0
DSN_VARIABLE = "ETF_ENGINE_HISTORY_DSN"  # --shard: the DSN, out of sight of ps
RETRY_SECONDS = 30  # after an error, before the history writer starts again


class Checkpointer:
    """Follows a data directory's journal and snapshots it every ``every`` records, or every as many
    records as the last snapshot held orders if that is more.

    A snapshot costs time in proportion to the state, which grows with every order ever recorded, so
    a fixed interval makes the total cost grow with the square of the journal. Waiting for at least
    as many records as there are orders keeps it in proportion to the journal (each snapshot is paid
    for by as many new records as it is large), and a restart still replays no more records than
    the snapshot it starts from holds orders.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, every: int = DEFAULT_EVERY,
                 history_every: int | None = None) -> None:
        self.every = every
        self.journal = SqliteJournal(data_dir, lock=False)
        snapshot = self.journal.load_snapshot()
        self.snapshot_seq = snapshot.seq if snapshot is not None else 0
        self.interval = max(every, len(snapshot.state.orders) if snapshot is not None else 0)
        self.ledger = recover(self.journal, make_ledger("auto"))
        self.history = History(SqliteHistory(data_dir, writable=True), type(self.ledger), history_every)

    def keep_history(self, stop: Callable[[], bool] = lambda: False) -> int:
        """History states up to the last committed record; how many it wrote."""
        return self.history.step(stop)

    def committed(self) -> int:
        """The last record the server has committed."""
        return self.journal.committed_seq()

    def step(self) -> bool:
        """Snapshot if ``interval`` records have been committed since the last one; True if it did."""
        if self.committed() - self.snapshot_seq < self.interval:
            return False
        for event in self.journal.replay(after=self.journal.last_seq):
            self.ledger.apply(event)
        with collector_paused():
            state = self.ledger.state(self.journal.last_at)
            self.journal.write_snapshot(state)
        self.snapshot_seq = self.journal.last_seq
        self.interval = max(self.every, len(state.orders))
        log.info("snapshot at record %d", self.snapshot_seq)
        return True

    def close(self) -> None:
        self.history.close()
        self.journal.close()


class History:
    """A HistoryWriter that fails alone: an error it meets (the database away in a failover, a record that
    does not apply) is logged, and it starts again from its last stored state RETRY_SECONDS later; the
    records stay the truth, reads as of a time replay them from an earlier state meanwhile, and
    snapshots go on."""

    def __init__(self, store: HistoryStore, ledger_type: type, every: int | None) -> None:
        self.store, self._type = store, ledger_type
        self._every = every if every is not None else history.HISTORY_EVERY
        self.writer: HistoryWriter | None = None
        self._retry_at = 0.0
        # The reference ledger restores nothing: reads as of a time replay every record, and none is written.
        self._writes = hasattr(ledger_type, "restore")

    def step(self, stop: Callable[[], bool] = lambda: False) -> int:
        if not self._writes or time.monotonic() < self._retry_at:
            return 0
        try:
            if self.writer is None:
                self.writer = HistoryWriter(self.store, self._type, every=self._every)
            return self.writer.step(stop)
        except JournalError as error:
            log.error("history states: %s; trying again in %d s", error, RETRY_SECONDS)
            self.writer, self._retry_at = None, time.monotonic() + RETRY_SECONDS
            return 0

    def close(self) -> None:
        self.store.close()


def run(data_dir: str, every: int, history_every: int, parent: int, stop: threading.Event) -> None:
    """Until ``stop`` is set or process ``parent`` (the server) is no longer this one's parent."""
    checkpointer = Checkpointer(data_dir, every=every, history_every=history_every)
    done = _done(parent, stop)
    try:
        while not stop.wait(POLL_SECONDS) and not done():
            checkpointer.keep_history(done)
            checkpointer.step()
    finally:
        checkpointer.close()


def run_shard(dsn: str, shard: str, history_every: int, parent: int, stop: threading.Event) -> None:
    """A PostgreSQL leader's: history states only (its followers write the snapshots)."""
    from etf_engine.journal.postgres import PgHistory

    writer = History(PgHistory(dsn, shard), type(make_ledger("auto")), history_every)
    done = _done(parent, stop)
    try:
        while not stop.wait(POLL_SECONDS) and not done():
            writer.step(done)
    finally:
        writer.close()


def _done(parent: int, stop: threading.Event) -> Callable[[], bool]:
    return lambda: stop.is_set() or os.getppid() != parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etf_engine.checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--shard", help=f"a PostgreSQL shard (its DSN in ${DSN_VARIABLE}): history states only")
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY)
    parser.add_argument("--history-every", type=int, default=history.HISTORY_EVERY)
    # The server's pid, given rather than read here: the server may be gone before this runs.
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    # On a busy machine the server and its callers come first; the snapshot can wait. SCHED_IDLE gives it
    # a core only when nothing else wants one (nice 19 still has a weight against the server's threads);
    # nice 19 alone where that policy is not to be had.
    os.nice(19)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.shard is not None:
        run_shard(os.environ[DSN_VARIABLE], args.shard, args.history_every, args.parent, stop)
    else:
        run(args.data_dir, args.every, args.history_every, args.parent, stop)
    return 0


class CheckpointProcess:
    """The checkpointer as a child process of the server: of ``data_dir``, or, given ``dsn`` and
    ``shard``, the history writer of a PostgreSQL shard."""

    def __init__(self, data_dir: Path | None = None, *, every: int = DEFAULT_EVERY, history_every: int | None = None,
                 dsn: str | None = None, shard: str | None = None) -> None:
        history_every = history_every if history_every is not None else history.HISTORY_EVERY
        where = [str(data_dir)] if shard is None else ["--shard", shard]
        env = None if dsn is None else {**os.environ, DSN_VARIABLE: dsn}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "etf_engine.checkpoint", *where, "--every", str(every),
             "--history-every", str(history_every), "--parent", str(os.getpid())], env=env)

    def stop(self, timeout: float = 60.0) -> None:
        """Let a snapshot being written finish, then end (killed after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    sys.exit(main())
