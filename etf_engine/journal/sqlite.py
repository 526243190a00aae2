"""The SQLite journal of a data directory (WAL, synchronous=FULL), and its snapshots.

Layout of a data directory:
  journal.sqlite3   table ``events(seq, crc, body)``: one row per event (records.py: msgspec JSON and
                    its CRC-32); seq runs 1, 2, 3 ... without gaps.
  snapshot.bin      the ledger's state after some record (records.py), replaced atomically.
  LOCK              held (flock) by the one process that owns the directory.
  history.sqlite3   table ``states(seq, at, crc, body)``: history states for reads as of a time
                    (history.py), written by the checkpointer; derived data, never the truth.
  journal.sqlite3-wal  SQLite's WAL, written out with zeros to WAL_FRAMES frames after the first
                    commit (``_pad_wal``), so that no commit has to make it longer.

A commit returns only once SQLite has fsynced the WAL, so an acknowledged event survives a crash. Commits
go through a connection of their own, in C (``_sqlite_writer``): under light load on the loop's thread,
under load on a writer thread that never holds the GIL (the loop encodes the records and hands their
bytes over); the ``sqlite3`` connection beside it sets the file up and reads.
Before SQLite opens the files, the owner reads every WAL frame (wal.py): SQLite would take a damaged
frame as the end of the log and silently drop the commits after it. Then ``PRAGMA quick_check``
walks every page of the database (damage that hides records without failing a CRC), and the records
must run from 1 to the last without a gap. A record whose body changed fails its CRC when read.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import resource
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from etf_engine import model as M
from etf_engine.journal._sqlite_writer import Writer, WriterError
from etf_engine.journal.history import SELECT_PREFIX, Row, decode_state
from etf_engine.journal.records import (
    JournalError,
    Snapshot,
    decode_record,
    encode_records,
    read_snapshot_file,
    write_snapshot_file,
)
from etf_engine.journal.trail import AuditTrail
from etf_engine.journal.wal import FRAME_HEADER_BYTES, HEADER_BYTES, discard_torn_tail, scan_wal
from etf_engine.snapshot import VERSION, LedgerState

log = logging.getLogger(__name__)

DB_NAME = "journal.sqlite3"
SNAPSHOT_NAME = "snapshot.bin"
HISTORY_NAME = "history.sqlite3"
READ_ATTEMPTS = 3  # WAL scans by a reader (verify) while the WAL keeps changing under it
# Frames the WAL is written out to before its first commits need them (see _pad_wal): SQLite checkpoints
# it back into the database once it holds 1,000 pages (wal_autocheckpoint) and then writes it again from
# its beginning, so past the first cycle no commit makes it longer; the margin is for the commit that
# crosses the 1,000.
WAL_FRAMES = 1_000 + 200
# SQLite's names of its result codes (SQLITE_FULL, SQLITE_IOERR_WRITE, ...), by value, for messages.
_RESULT_NAMES = {value: name for name, value in vars(sqlite3).items() if re.fullmatch(
    r"SQLITE_(ERROR|INTERNAL|PERM|ABORT|BUSY|LOCKED|NOMEM|READONLY|INTERRUPT|IOERR|CORRUPT|NOTFOUND|FULL|CANTOPEN"
    r"|PROTOCOL|EMPTY|SCHEMA|TOOBIG|CONSTRAINT|MISMATCH|MISUSE|NOLFS|AUTH|FORMAT|RANGE|NOTADB)(_[A-Z_]+)?", name)}


class DataDirInUse(JournalError):
    """Another process owns the data directory (a running server)."""


class JournalFailure(JournalError):
    """A write to the journal failed; the message names the cause (disk full, file too large, I/O error)."""


class SqliteJournal:
    """Journal of one data directory.

    ``lock=True`` (the server): the process owns the directory until ``close``; the directory and every
    journal file must be writable, the WAL and the database are checked before use, and a torn tail
    (an unacknowledged commit cut off by a crash) is cut off, with a warning in the log.
    ``lock=False``: a reader beside the owner or offline (``verify`` with ``check=True``, the
    checkpointer without); it opens SQLite read-only, so that closing it never checkpoints and the
    files stay as they were found.
    """

    inline_commits = True  # a commit is one fsync: under light load the engine makes it on its own thread

    def __init__(self, data_dir: str | os.PathLike[str], *, lock: bool = True, check: bool | None = None) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / DB_NAME
        self.name = f"journal {self.path}"  # how messages name it
        self._lock_file: Any = None
        self._writer: Writer | None = None  # the owner's connection that commits (see the module's doc)
        self._thread: threading.Thread | None = None  # the writer's thread, started by the first append
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop watching its answers
        self._answer: asyncio.Future[None] | None = None  # the answer of the commit under way on the thread
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # StreamEvents' own read-only connection
        self._reader_lock = threading.Lock()
        self._wal_padded = not lock  # a reader never writes the WAL
        self.torn_tail_frames = 0  # frames of an unacknowledged commit found after the last one (and cut if owner)
        self.trail: AuditTrail | None = None  # the server's journal: the Merkle tree and checkpoints (SPEC §21)
        check = lock if check is None else check
        if lock:
            self._own()
        try:
            if check:
                self._check_wal(discard=lock)
            self._open(writable=lock)
            if check:
                self._check_database()
        except BaseException:
            self.close()
            raise
        self.last_seq = self.committed_seq()
        self.last_at = 0
        self.since_snapshot = 0

    # -- opening -------------------------------------------------------------------------------
    def _own(self) -> None:
        """Take the directory's lock; refuse, naming the path and the OS error, if it cannot be written."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.dir / "LOCK", "a+")  # noqa: SIM115 - held for the journal's life
        except OSError as error:
            raise JournalError(f"cannot write data directory {self.dir}: {error.strerror or error}") from error
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise DataDirInUse(f"data directory {self.dir} is in use by another etf-engine process") from None
        try:
            self._lock_file.truncate(0)
            self._lock_file.write(f"{os.getpid()}\n")
            self._lock_file.flush()
            os.fsync(self._lock_file.fileno())
            # Root passes every permission check, so try the files for real: a read-only file, mount or
            # an immutable file shows here, not at the first commit.
            for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
                path = self.dir / name
                if path.exists():
                    os.close(os.open(path, os.O_RDWR))
        except OSError as error:
            where = error.filename or self.dir / "LOCK"
            raise JournalError(f"cannot write {where}: {error.strerror or error}") from error

    def _check_wal(self, *, discard: bool) -> None:
        wal = self.dir / f"{DB_NAME}-wal"
        for attempt in range(READ_ATTEMPTS):
            before = _stamp(wal)
            try:
                scan = scan_wal(wal, _page_size(self.path))
                break
            except JournalError:
                # A reader beside a running server may have read the WAL while the server rewrote it (it
                # restarts the log from its beginning): only damage that stays put is damage.
                if discard or attempt == READ_ATTEMPTS - 1 or _stamp(wal) == before:
                    raise
        if not scan.torn:
            return
        self.torn_tail_frames = scan.torn_frames
        if discard:
            discard_torn_tail(scan)
            log.warning("journal WAL %s: discarded a torn tail of %d frame(s), %d bytes after the last commit "
                        "(a commit cut off by a crash, never acknowledged)", scan.path, scan.torn_frames,
                        scan.file_bytes - scan.keep_bytes)

    def _open(self, *, writable: bool) -> None:
        try:
            if writable:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, "
                                 "crc INTEGER NOT NULL, body BLOB NOT NULL)")
                self._writer = Writer(str(self.path))  # synchronous=FULL: fsyncs the WAL on every commit
            else:
                self._db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
                self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except (sqlite3.DatabaseError, WriterError) as error:
            raise JournalError(f"journal {self.path} is damaged or unreadable: {error}") from error

    def _check_database(self) -> None:
        """Every page of the database is sound, and the records run from 1 to the last without a gap."""
        try:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check(5)")]  # type: ignore[union-attr]
            if problems != ["ok"]:
                raise JournalError(f"journal {self.path} is damaged: {'; '.join(problems)}")
            first, last, count = self._db.execute(  # type: ignore[union-attr]
                "SELECT MIN(seq), MAX(seq), COUNT(*) FROM events").fetchone()
        except sqlite3.DatabaseError as error:
            raise JournalError(f"journal {self.path} is damaged: {error}") from error
        if count and (first != 1 or last != count):
            missing = 1 if first != 1 else self._db.execute(  # type: ignore[union-attr]
                "SELECT MIN(seq) + 1 FROM events AS e WHERE seq < ? AND NOT EXISTS "
                "(SELECT 1 FROM events WHERE seq = e.seq + 1)", (last,)).fetchone()[0]
            raise JournalError(f"journal {self.path} is damaged: record {missing} is missing ({count} records "
                               f"stored, numbered {first} to {last})")

    # -- writing -------------------------------------------------------------------------------
    async def append(self, events: list[M.Event]) -> None:
        """Make ``events`` durable, in one transaction and one fsync (group commit), on the writer's
        thread: the loop serves calls meanwhile."""
        if not events:
            return
        assert self._writer is not None, "a read-only journal cannot append"
        rows = encode_records(self.last_seq + 1, events, self)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._watch(loop)
        self._answer = answer = loop.create_future()
        try:
            self._writer.send(rows)
            await answer
        except WriterError as error:
            self._answer = None
            self._failed(error)
        self._appended(events)

    def append_sync(self, events: list[M.Event]) -> None:
        """``append`` on the calling thread (the GIL released during the INSERT and the fsync)."""
        assert self._writer is not None, "a read-only journal cannot append"
        rows = encode_records(self.last_seq + 1, events, self)
        try:
            self._writer.commit(rows)
        except WriterError as error:
            self._failed(error)
        self._appended(events)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``loop`` read the writer thread's answers (started at the first append; a journal may
        outlive a loop: tests run several in turn)."""
        assert self._writer is not None
        if self._thread is None:
            self._writer.open_pipes()
            self._thread = threading.Thread(target=self._writer.serve, name="journal", daemon=True)
            self._thread.start()
        self._unwatch()
        loop.add_reader(self._writer.answers, self._answered)
        self._loop = loop

    def _unwatch(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._writer.answers)  # type: ignore[union-attr]
        self._loop = None

    def _answered(self) -> None:
        """The writer's thread answered (its pipe is readable): the commit under way is durable, or failed."""
        refused: WriterError | None = None
        try:
            if not self._writer.received():  # type: ignore[union-attr]
                return
        except WriterError as error:
            refused = error
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            if refused is None:
                answer.set_result(None)
            else:
                answer.set_exception(refused)

    def _failed(self, error: WriterError) -> None:
        """A commit SQLite refused: nothing of it is committed; its leaves leave the audit trail."""
        if self.trail is not None:
            self.trail.rollback(self.last_seq)
        raise JournalFailure(f"journal {self.path}: {describe_failure(error, self.dir)}") from error

    def _appended(self, events: list[M.Event]) -> None:
        self.last_seq += len(events)
        self.last_at = events[-1].at
        self.since_snapshot += len(events)
        if not self._wal_padded:
            self._pad_wal()

    def _pad_wal(self) -> None:
        """Write the WAL out with zeros to WAL_FRAMES frames, once, after the first commit has written its
        header. A commit that makes the file longer has its size journaled by the file system before its
        fdatasync returns, and costs 2-3 times one that overwrites blocks already there (benchmarks/
        RESULTS.md): without this, every commit after a start paid that until the WAL's first checkpoint.
        SQLite takes the first frame whose salts and checksum fail (zeros) as the end of the log, as it
        does the older frames left behind when it starts the log again; so does wal.py."""
        self._wal_padded = True
        wal = self.dir / f"{DB_NAME}-wal"
        frame = FRAME_HEADER_BYTES + self._db.execute("PRAGMA page_size").fetchone()[0]  # type: ignore[union-attr]
        target = HEADER_BYTES + WAL_FRAMES * frame
        with open(wal, "r+b", buffering=0) as file:
            log_end = file.seek(0, os.SEEK_END)
            if log_end < HEADER_BYTES or (log_end - HEADER_BYTES) % frame or log_end >= target:
                return  # no header yet, a torn frame (never here: it was cut at the start), or long enough
            try:
                zeros, size = bytes(64 * frame), log_end
                while size < target:
                    size += file.write(zeros[:target - size])
                os.fdatasync(file.fileno())
            except OSError as error:  # no room: give back what was taken; the file grows as it did before
                file.truncate(log_end)
                log.warning("journal WAL %s: could not write it out ahead (%s)", wal, error.strerror or error)

    # -- reading -------------------------------------------------------------------------------
    def replay(self, after: int = 0) -> Iterator[M.Event]:
        """Events after seq ``after``, in order, each checked; damage raises JournalError naming the record."""
        expected = after + 1
        try:
            cursor = self._db.execute(  # type: ignore[union-attr]
                "SELECT seq, crc, body FROM events WHERE seq > ? ORDER BY seq", (after,))
            for seq, crc, body in cursor:
                event = decode_record(self.name, expected, seq, crc, body)
                self.last_seq, self.last_at = seq, event.at
                expected += 1
                yield event
        except sqlite3.DatabaseError as error:
            raise JournalError(f"journal {self.path} is damaged near record {expected}: {error}") from error

    def stored_records(self, after: int, limit: int) -> list[tuple[int, int, bytes]]:
        """(seq, crc, body) of up to ``limit`` committed records after ``after``, as stored, for
        StreamEvents; from a connection of their own, on any thread, beside the writer."""
        with self._reader_lock:
            try:
                if self._reader is None:
                    self._reader = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                                                   check_same_thread=False)
                return self._reader.execute("SELECT seq, crc, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                            (after, limit)).fetchall()
            except sqlite3.DatabaseError as error:
                raise JournalError(f"journal {self.path}: cannot read records after {after}: {error}") from error

    def history(self) -> SqliteHistory:
        """The directory's history states, with a reader of the records of its own (reads as of a time)."""
        return SqliteHistory(self.dir)

    def committed_seq(self) -> int:
        """The last record committed, by this or another connection (a checkpointer follows the server)."""
        try:
            return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]  # type: ignore[union-attr]
        except sqlite3.DatabaseError as error:
            raise JournalError(f"journal {self.path} is damaged: {error}") from error

    # -- snapshots -----------------------------------------------------------------------------
    def load_snapshot(self) -> Snapshot | None:
        path = self.dir / SNAPSHOT_NAME
        snapshot = read_snapshot_file(path)
        if snapshot is None:
            return None
        if snapshot.seq > self.last_seq:
            raise JournalError(f"snapshot {path} is at record {snapshot.seq} but the journal ends at {self.last_seq}")
        self.last_at = snapshot.at
        return snapshot

    def write_snapshot(self, state: LedgerState) -> None:
        """Store ``state`` as of the last appended event."""
        snapshot = Snapshot(seq=self.last_seq, at=self.last_at, state=state, version=VERSION)
        write_snapshot_file(self.dir / SNAPSHOT_NAME, snapshot)
        self.since_snapshot = 0

    def close(self) -> None:
        if self._thread is not None:  # after the commit under way, if any
            self._writer.stop()  # type: ignore[union-attr]
            self._thread.join()
            self._thread = None
            self._unwatch()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


class SqliteHistory:
    """The history states of a data directory (history.py) in ``history.sqlite3``, and a read-only
    connection to the journal's records of its own.

    A file of its own: SQLite has one writer per file, and the checkpointer writes the states while the
    server appends; it never waits for the other. Its commits are not fsynced one by one (WAL,
    synchronous=NORMAL): a state lost in a crash is written again from the records. ``writable``: the
    checkpointer's, which creates the file; the server's only reads it, once it exists.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, writable: bool = False) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / HISTORY_NAME
        self.name = f"history {self.path}"
        self._journal_name = f"journal {self.dir / DB_NAME}"
        self._writable = writable
        self._states: sqlite3.Connection | None = None
        try:
            self._journal = sqlite3.connect(f"{(self.dir / DB_NAME).as_uri()}?mode=ro", uri=True,
                                            isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as error:
            raise JournalError(f"{self._journal_name}: cannot open: {error}") from error

    def _db(self) -> sqlite3.Connection | None:
        """The states' connection, opened at first use (an error then is the history's, not its owner's);
        a reader's is None while the checkpointer has not made the file yet."""
        if self._states is not None or not (self._writable or self.path.exists()):
            return self._states
        db = None
        try:
            if self._writable:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("CREATE TABLE IF NOT EXISTS states (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, "
                           "crc INTEGER NOT NULL, body BLOB NOT NULL)")
            else:
                db = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True, isolation_level=None,
                                     check_same_thread=False)
                db.execute("SELECT 1 FROM states LIMIT 1").fetchall()
        except sqlite3.DatabaseError as error:
            if db is not None:
                db.close()
            if self._writable:
                raise JournalError(f"{self.name}: cannot open: {error}") from error
            log.warning("%s: not readable (yet): %s", self.name, error)
            return None
        self._states = db
        return db

    def committed_seq(self) -> int:
        try:
            return self._journal.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise JournalError(f"{self._journal_name} is damaged: {error}") from error

    PAGE = 2_000  # records per read

    def records(self, after: int, upto: int) -> Iterator[M.Event]:
        """Read a page at a time, each in a read transaction of its own that ends before the page is
        decoded: a reader that holds one keeps the server's WAL from being checkpointed back to its start."""
        expected = after + 1
        while expected <= upto:
            try:
                rows = self._journal.execute(
                    "SELECT seq, crc, body FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq",
                    (expected, min(upto, expected + self.PAGE - 1))).fetchall()
            except sqlite3.DatabaseError as error:
                raise JournalError(f"{self._journal_name} is damaged near record {expected}: {error}") from error
            if not rows:
                return
            for seq, crc, body in rows:
                yield decode_record(self._journal_name, expected, seq, crc, body)
                expected += 1

    def select_records(self, after: int, upto: int, needle: bytes, heads: Sequence[bytes]) -> list[Row]:
        """history.select_records's query: the records whose first SELECT_PREFIX bytes hold ``needle`` or
        that begin with one of ``heads``."""
        sql = ("SELECT seq, crc, body FROM events WHERE seq > ? AND seq <= ? AND (instr(substr(body, 1, "
               f"{SELECT_PREFIX}), ?) > 0{' OR substr(body, 1, ?) = ?' * len(heads)}) ORDER BY seq")
        try:
            params = (after, upto, needle, *(x for h in heads for x in (len(h), h)))
            return self._journal.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            raise JournalError(f"{self._journal_name}: cannot read records after {after}: {error}") from error

    def nearest(self, as_of: int, upto: int) -> tuple[int, int] | None:
        db = self._db()
        if db is None:
            return None
        try:
            return db.execute("SELECT seq, at FROM states WHERE seq <= ? AND at <= ? ORDER BY seq DESC LIMIT 1",
                              (upto, as_of)).fetchone()
        except sqlite3.DatabaseError as error:
            raise JournalError(f"{self.name} is damaged: {error}") from error

    def load(self, seq: int) -> Snapshot:
        db = self._db()
        try:
            row = db.execute("SELECT crc, body FROM states WHERE seq = ?", (seq,)).fetchone() if db else None
        except sqlite3.DatabaseError as error:
            raise JournalError(f"{self.name}: cannot read the history state at record {seq}: {error}") from error
        if row is None:
            raise JournalError(f"{self.name}: no history state at record {seq}")
        return decode_state(self.name, seq, row[0], row[1])

    def write(self, seq: int, at: int, body: bytes, crc: int) -> None:
        assert self._writable, "a reader does not write history states"
        db = self._db()
        assert db is not None
        try:
            db.execute("INSERT OR IGNORE INTO states (seq, at, crc, body) VALUES (?, ?, ?, ?)",
                                 (seq, at, crc, body))
        except sqlite3.DatabaseError as error:
            raise JournalError(f"{self.name}: cannot write the history state at record {seq}: "
                               f"{describe_failure(error, self.dir)}") from error

    def close(self) -> None:
        for db in (self._journal, self._states):
            if db is not None:
                db.close()
        self._states = None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _page_size(db_path: Path) -> int:
    """The page size in the database file's header, or 0 if the file has none yet."""
    try:
        with open(db_path, "rb") as db:
            header = db.read(100)
    except OSError:
        return 0
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return 0
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def describe_failure(error: BaseException, data_dir: Path) -> str:
    """The cause of a failed write in words an operator acts on: disk full, file too large, I/O error."""
    name = getattr(error, "sqlite_errorname", "") or _RESULT_NAMES.get(getattr(error, "code", None), "") or \
        type(error).__name__
    detail = f"{name}: {error}"
    try:
        stats = os.statvfs(data_dir)
        free = stats.f_bavail * stats.f_frsize
    except OSError:
        free = -1
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    largest = max((p.stat().st_size for p in data_dir.glob(f"{DB_NAME}*") if p.is_file()), default=0)
    if limit != resource.RLIM_INFINITY and largest + 65536 >= limit:
        return f"file too large: the process may not write files over {limit} bytes ({detail})"
    if name == "SQLITE_FULL" or 0 <= free < 1 << 20:
        return f"disk full: {max(free, 0)} bytes free in {data_dir} ({detail})"
    if name.startswith("SQLITE_READONLY"):
        return f"the journal is read-only ({detail})"
    if name.startswith("SQLITE_IOERR"):
        return f"I/O error ({detail})"
    return detail
