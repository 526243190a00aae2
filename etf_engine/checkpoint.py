"""Snapshots taken beside the server, so that the writer never stops for one.

A snapshot costs time in proportion to the whole state (every order ever recorded), so building it
inside the single writer stalled every call for that long, and ever longer as orders accumulate
(measured: a third of the server's time under a SubmitOrders load; see benchmarks/RESULTS.md).
Instead a separate process follows the journal: it opens the data directory read-only (SQLite's
WAL lets it read while the server appends), rebuilds the ledger from the latest snapshot and the
records after it, and whenever ``every`` more records have been committed it applies them and
writes a new snapshot. It reads only committed, fsynced records, so a snapshot is never ahead of
what the server acknowledged.

The server starts it (``python -m etf_engine.checkpoint``) and stops it (SIGTERM, then waits)
before writing its own snapshot at a clean stop; if the server dies, the checkpointer notices its
parent is gone and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from etf_engine.journal import SqliteJournal, collector_paused, recover
from etf_engine.ledger import make_ledger

log = logging.getLogger(__name__)

DEFAULT_EVERY = 100_000  # records between snapshots: a restart replays at most this many
POLL_SECONDS = 1.0


class Checkpointer:
    """Follows a data directory's journal and snapshots it every ``every`` records, or every as many
    records as the last snapshot held orders if that is more.

    A snapshot costs time in proportion to the state, which grows with every order ever recorded, so
    a fixed interval makes the total cost grow with the square of the journal. Waiting for at least
    as many records as there are orders keeps it in proportion to the journal (each snapshot is paid
    for by as many new records as it is large), and a restart still replays no more records than
    the snapshot it starts from holds orders.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, every: int = DEFAULT_EVERY) -> None:
        self.every = every
        self.journal = SqliteJournal(data_dir, lock=False)
        snapshot = self.journal.load_snapshot()
        self.snapshot_seq = snapshot.seq if snapshot is not None else 0
        self.interval = max(every, len(snapshot.state.orders) if snapshot is not None else 0)
        self.ledger = recover(self.journal, make_ledger("auto"))

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
        self.journal.close()


def run(data_dir: str, every: int, parent: int, stop: threading.Event) -> None:
    """Until ``stop`` is set or process ``parent`` (the server) is no longer this one's parent."""
    checkpointer = Checkpointer(data_dir, every=every)
    try:
        while not stop.wait(POLL_SECONDS) and os.getppid() == parent:
            checkpointer.step()
    finally:
        checkpointer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etf_engine.checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY)
    # The server's pid, given rather than read here: the server may be gone before this runs.
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    # Lowest CPU priority: on a busy machine the server and its callers come first; the snapshot can wait.
    os.nice(19)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(args.data_dir, args.every, args.parent, stop)
    return 0


class CheckpointProcess:
    """The checkpointer as a child process of the server."""

    def __init__(self, data_dir: Path, *, every: int = DEFAULT_EVERY) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "etf_engine.checkpoint", str(data_dir), "--every", str(every),
             "--parent", str(os.getpid())])

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
