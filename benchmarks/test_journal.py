"""The durable journal: one fsync, a commit of 1 (back to back, and paced as one client's) and of 100
events, encoding, replay of 10,000, a snapshot.

Run: .venv/bin/python -m pytest benchmarks/test_journal.py --benchmark-columns=min,median,mean,rounds
Measurements only: each benchmark checks that the work was done (records written, events read), never a time.
The files live in pytest's tmp_path, so the figures are those of the disk under the temp directory.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator

import msgspec
import pytest

from benchmarks.conftest import NOW, load_fund
from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.journal import SqliteJournal
from etf_engine.journal.records import encode_records

BOOK_ORDERS = 10_000  # orders in the shared book: the replay and snapshot sizes
RECORD = b"x" * 199 + b"\n"  # ~ one journal record for the raw fsync figure


def _submit(ledger, i: int) -> tuple[M.Order, list[M.Event]]:
    request = M.OrderRequest(fund_id="F-1", side="CREATE", units=1, client_order_id=f"j-{i}")
    return ledger.execute(M.SubmitOrder(participant_id="AP-B", request=request), NOW)


@pytest.fixture(scope="module")
def book() -> tuple[Ledger, list[M.Event]]:
    """A core ledger holding BOOK_ORDERS accepted 1-unit CREATE orders, and the OrderRecorded event of each
    (submitted as benchmarks/group_commit.py does, by a participant with room for them all)."""
    ledger = Ledger()
    load_fund(ledger)
    ledger.execute(M.RegisterParticipant(participant_id="AP-B", name="bench", eligible_fund_ids=["F-1"],
                                         max_units_per_order=10, max_units_per_day=10**12), NOW)
    events: list[M.Event] = []
    for i in range(BOOK_ORDERS):
        order, produced = _submit(ledger, i)
        assert order.status == M.ACCEPTED and len(produced) == 1 and isinstance(produced[0], M.OrderRecorded)
        events.extend(produced)
    return ledger, events


@pytest.fixture
def journal(tmp_path) -> Iterator[SqliteJournal]:
    """An empty journal in a fresh directory, closed (lock released) after the benchmark."""
    j = SqliteJournal(tmp_path / "data")
    try:
        yield j
    finally:
        j.close()


def _cycler(events: list[M.Event], size: int):
    """Successive slices of ``size`` distinct events, wrapping round."""
    position = 0

    def take() -> list[M.Event]:
        nonlocal position
        if position + size > len(events):
            position = 0
        batch = events[position: position + size]
        position += size
        return batch

    return take


def test_fsync(benchmark, tmp_path) -> None:
    """One os.write of 200 bytes appended to a file, then os.fsync: the "one fsync" the latency target is
    stated against (no SQLite, no encoding)."""
    fd = os.open(tmp_path / "fsync.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        def write_fsync() -> None:
            os.write(fd, RECORD)
            os.fsync(fd)

        rounds, warmup = 300, 5
        benchmark.pedantic(write_fsync, rounds=rounds, iterations=1, warmup_rounds=warmup)
        assert os.fstat(fd).st_size == len(RECORD) * (rounds + warmup)
    finally:
        os.close(fd)
    benchmark.extra_info["bytes_per_write"] = len(RECORD)


def test_append_1(benchmark, journal, book) -> None:
    """SqliteJournal.append_sync of one OrderRecorded event: encode, CRC, one transaction, one WAL fsync."""
    take = _cycler(book[1], 1)
    rounds, warmup = 300, 5
    benchmark.pedantic(journal.append_sync, setup=lambda: ((take(),), {}), rounds=rounds, warmup_rounds=warmup)
    assert journal.last_seq == rounds + warmup


# About the gap between two commits of a server serving one client in a closed loop (its round trip).
PACED_GAP_SECONDS = 0.0008


def test_append_1_paced(benchmark, journal, book) -> None:
    """test_append_1 with the disk left idle for PACED_GAP_SECONDS before each commit (untimed), as a server
    with one client in a closed loop commits: on this VM a sync that follows an idle spell costs more than one
    right after another (benchmarks/RESULTS.md, issue 23), so this is the commit the 1-client latency holds."""
    take = _cycler(book[1], 1)

    def paced() -> tuple[tuple[list[M.Event]], dict]:
        time.sleep(PACED_GAP_SECONDS)
        return (take(),), {}

    rounds, warmup = 300, 5
    benchmark.pedantic(journal.append_sync, setup=paced, rounds=rounds, warmup_rounds=warmup)
    assert journal.last_seq == rounds + warmup


@pytest.mark.parametrize("mode", ["wal", "truncate", "delete"])
def test_commit_mode(benchmark, tmp_path, book, mode: str) -> None:
    """One commit of one record by SQLite alone (synchronous=FULL), in WAL mode against the rollback-journal
    modes: what leaving WAL would cost if its silent truncation could not be caught (SPEC §11; it can:
    journal/wal.py)."""
    import sqlite3

    db = sqlite3.connect(tmp_path / f"{mode}.sqlite3", isolation_level=None)
    db.execute(f"PRAGMA journal_mode={mode}")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, crc INTEGER NOT NULL, body BLOB NOT NULL)")
    rows = iter(encode_records(1, book[1][:305]))

    def commit() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO events (seq, crc, body) VALUES (?, ?, ?)", next(rows))
        db.execute("COMMIT")

    benchmark.pedantic(commit, rounds=300, warmup_rounds=5)
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 305
    db.close()


def test_append_100(benchmark, journal, book) -> None:
    """SqliteJournal.append_sync of 100 OrderRecorded events in one commit (group commit: one fsync for all);
    extra_info carries the per-event cost of the median commit."""
    take = _cycler(book[1], 100)
    rounds, warmup = 100, 3
    benchmark.pedantic(journal.append_sync, setup=lambda: ((take(),), {}), rounds=rounds, warmup_rounds=warmup)
    assert journal.last_seq == 100 * (rounds + warmup)
    benchmark.extra_info["events_per_commit"] = 100
    benchmark.extra_info["median_us_per_event"] = round(benchmark.stats.stats.median / 100 * 1e6, 3)
    benchmark.extra_info["mean_us_per_event"] = round(benchmark.stats.stats.mean / 100 * 1e6, 3)


def test_encode_event(benchmark, book) -> None:
    """Encoding one OrderRecorded event as the journal does it (records.encode_records): msgspec JSON and
    zlib.crc32 of the body. No I/O."""
    event = book[1][0]
    (_, crc, body), = benchmark(encode_records, 1, [event])
    assert crc == zlib.crc32(body) and msgspec.json.decode(body, type=M.AnyEvent) == event
    benchmark.extra_info["body_bytes"] = len(body)


def test_replay_10k(benchmark, journal, book) -> None:
    """journal.replay() consumed to the end over 10,000 OrderRecorded records: SELECT, CRC check and msgspec
    decode of each. The journal is written once, in 10 commits of 1,000, before the timing."""
    events = book[1][:BOOK_ORDERS]
    for start in range(0, len(events), 1_000):
        journal.append_sync(events[start: start + 1_000])
    assert journal.last_seq == BOOK_ORDERS

    def replay() -> int:
        count = 0
        for _ in journal.replay():
            count += 1
        return count

    count = benchmark.pedantic(replay, rounds=15, iterations=1, warmup_rounds=1)
    assert count == BOOK_ORDERS
    benchmark.extra_info["events"] = BOOK_ORDERS


def test_snapshot_write(benchmark, journal, book) -> None:
    """journal.write_snapshot(ledger.state(NOW)) for a ledger holding 10,000 orders: the state export, JSON
    encode, CRC, write of a temporary file, fsync, rename and directory fsync. The timing includes
    ledger.state(NOW), as a checkpoint does."""
    ledger, events = book
    journal.append_sync(events[:1])  # the snapshot names a real record

    def snapshot() -> None:
        journal.write_snapshot(ledger.state(NOW))

    benchmark.pedantic(snapshot, rounds=10, iterations=1, warmup_rounds=1)
    path = journal.dir / "snapshot.bin"
    loaded = journal.load_snapshot()
    assert loaded is not None and loaded.seq == journal.last_seq == 1
    assert len(loaded.state.orders) == BOOK_ORDERS
    benchmark.extra_info["orders"] = BOOK_ORDERS
    benchmark.extra_info["snapshot_bytes"] = path.stat().st_size
