"""The PostgreSQL journal of one shard (SPEC §12): records, a lease with an epoch, snapshots.

Tables (created on first start; the engine's role owns the database):
  etf_lease(shard, epoch, leader, last_seq, expires_at)  one row per shard: who may write, up to where
  etf_events(shard, seq, crc, body)                     the records (records.py), seq 1, 2, 3 ...
  etf_snapshots(shard, seq, at, crc, body)              the latest snapshot of the shard
  etf_history(shard, seq, at, crc, body)                history states for reads as of a time (history.py),
                                                        written by the leader's checkpointer; derived data

Fencing is in the append itself. One statement moves the lease's ``last_seq`` from where the writer
believes the journal ends to its new end, only if the writer's epoch is still the lease's, and inserts
the records only if that row was updated. A takeover bumps the epoch on the same row, so the two
serialise on its row lock: an append after a takeover updates nothing, inserts nothing and tells its
writer it was deposed. The writer assigns the seqs (never a database sequence: they leave gaps) and has
one append in flight, so every replica holds a gapless prefix.

A commit is never cancelled (a cancelled wait for the synchronous standby can still commit, or report
success having committed locally only). A commit whose outcome is unknown (the connection lost, or no
answer within ``commit_timeout``) raises CommitUnknown: the engine stops, and a restart recovers from
the journal; nothing unproven is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

from etf_engine import model as M
from etf_engine.journal.history import SELECT_PREFIX, Row, decode_state
from etf_engine.journal.records import JournalError, Snapshot, _encoder, decode_record, encode_records
from etf_engine.journal.trail import AuditTrail
from etf_engine.snapshot import VERSION, LedgerState

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS etf_lease (
    shard text PRIMARY KEY, epoch bigint NOT NULL, leader text NOT NULL, last_seq bigint NOT NULL,
    expires_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS etf_events (
    shard text NOT NULL, seq bigint NOT NULL, crc bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (shard, seq));
CREATE TABLE IF NOT EXISTS etf_snapshots (
    shard text PRIMARY KEY, seq bigint NOT NULL, at bigint NOT NULL, crc bigint NOT NULL, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS etf_history (
    shard text NOT NULL, seq bigint NOT NULL, at bigint NOT NULL, crc bigint NOT NULL, body bytea NOT NULL,
    PRIMARY KEY (shard, seq));
"""

# Take the lease if it is free, expired, or already this node's (a restart of the same node). The
# epoch grows at every grant, so whoever held it before is fenced out from here on.
TAKE_LEASE = """
INSERT INTO etf_lease AS l (shard, epoch, leader, last_seq, expires_at)
VALUES (%(shard)s, 1, %(node)s, 0, now() + %(lease)s * interval '1 second')
ON CONFLICT (shard) DO UPDATE SET epoch = l.epoch + 1, leader = EXCLUDED.leader, expires_at = EXCLUDED.expires_at
    WHERE l.expires_at < now() OR l.leader = EXCLUDED.leader
RETURNING epoch, last_seq
"""

APPEND = """
WITH fence AS (
    UPDATE etf_lease SET last_seq = %(end)s, expires_at = now() + %(lease)s * interval '1 second'
    WHERE shard = %(shard)s AND epoch = %(epoch)s AND last_seq = %(start)s
    RETURNING shard)
INSERT INTO etf_events (shard, seq, crc, body)
SELECT fence.shard, r.seq, r.crc, r.body
FROM fence, unnest(%(seqs)b::bigint[], %(crcs)b::bigint[], %(bodies)b::bytea[]) AS r(seq, crc, body)
"""

RENEW = """
UPDATE etf_lease SET expires_at = now() + %(lease)s * interval '1 second'
WHERE shard = %(shard)s AND epoch = %(epoch)s
"""

SYNC_STANDBYS = "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')"


class Deposed(JournalError):
    """Another node took the lease: this one must not write again."""


class CommitUnknown(JournalError):
    """The database did not say whether a commit happened: the writer must stop and recover."""


@dataclass(frozen=True)
class Lease:
    leader: str
    epoch: int
    last_seq: int
    expired: bool


class WriterThread:
    """The journal's one writer thread: runs what the loop hands it, in order, and wakes the loop once per
    result. It stands where a ThreadPoolExecutor of one worker stood, whose hand-over and back cost a lone
    client's commit about 45 µs more on this VM (benchmarks/RESULTS.md, issue 23): the executor's worker
    goes on running Python after waking the loop (its bookkeeping), so the two threads passed the GIL to
    and fro, and a result went through a concurrent future chained to the loop's. Here waking the loop is
    the last thing before blocking on the queue again, which releases the GIL."""

    def __init__(self, name: str) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any],
                                                asyncio.AbstractEventLoop] | None] = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the thread, after everything handed over before it; its result or exception."""
        if self._stopped:
            raise RuntimeError("the journal's writer thread has stopped")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._requests.put((fn, args, future, loop))
        return await future

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            fn, args, future, loop = request
            if future.cancelled():  # given up before it started (a stop): never run, as an executor's
                continue
            try:
                outcome = (fn(*args), None)
            except BaseException as error:  # handed to the caller, as an executor does
                outcome = (None, error)
            try:
                loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop is closed: nobody waits for it any more
                pass
            del request, fn, args, future, loop, outcome  # nothing of a call held while waiting for the next

    def stop(self) -> None:
        """Stop once what was handed over has run; waits for it."""
        self._stopped = True
        self._requests.put(None)
        self._thread.join()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class PgJournal:
    """One shard's journal, for a leader (after ``take_lease``) or a follower (``poll``)."""

    # Never on the event loop's thread: PostgreSQL may hold a commit for as long as it has no
    # synchronous standby, and the node must go on answering (health, GetLeader, reads) meanwhile.
    inline_commits = False

    def __init__(self, dsn: str, shard: str, *, node_name: str = "", lease_seconds: float = 5.0,
                 commit_timeout: float = 30.0, read_only: bool = False) -> None:
        """``read_only``: a reader that writes nothing (the tools): no schema, no lease, a read-only
        session (it works on a hot standby too), whose reads see one moment inside ``transaction()``."""
        self.dsn, self.shard, self.node_name = dsn, shard, node_name
        self.name = f"journal shard {shard!r} in PostgreSQL"  # how messages name it
        self.lease_seconds, self.commit_timeout = lease_seconds, commit_timeout
        self.epoch = 0  # the epoch this node writes with; 0 while it is not the leader
        self.lease_seq = 0  # where the lease said the journal ends when this node took it
        self.last_seq = 0
        self.last_at = 0
        self.since_snapshot = 0
        self.trail: AuditTrail | None = None  # a server's journal: the Merkle tree and checkpoints (SPEC §21)
        self._writer = WriterThread("pg-journal")
        self._statement_started = 0.0  # monotonic time the writer's statement under way began, 0 if none
        self._timed_out = False
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._db = self._connect()
        self._reader: psycopg.Connection[Any] | None = None  # StreamEvents' own connection
        self._reader_lock = threading.Lock()
        if not read_only:
            threading.Thread(target=self._watch, name="pg-journal-watchdog", daemon=True).start()
        if read_only:
            self._db.read_only = True
            self._db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self._require_tables()
        else:
            with self._db.transaction():
                self._db.execute(SCHEMA)

    def _require_tables(self) -> None:
        try:
            row = self._db.execute("SELECT to_regclass('etf_lease'), to_regclass('etf_events'), "
                                   "to_regclass('etf_snapshots')").fetchone()
        except psycopg.Error as error:
            self.close()
            raise JournalError(f"{self.name}: cannot read the database: {_first_line(error)}") from error
        missing = [name for name, found in zip(("etf_lease", "etf_events", "etf_snapshots"), row, strict=True)
                   if found is None]
        if missing:
            self.close()
            raise JournalError(f"{self.name}: no etf-engine journal in this database (no table "
                               f"{', '.join(missing)})")

    def _ready(self) -> psycopg.Connection[Any]:
        """The connection, made again if it was lost (a failover): a statement that was never sent has a
        known outcome, so only a statement under way when the connection goes is CommitUnknown."""
        if self._db.broken or self._db.closed:
            self._db = self._connect()
        return self._db

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            db = psycopg.connect(self.dsn, autocommit=True, application_name=f"etf-engine {self.node_name}".strip())
        except psycopg.Error as error:
            raise JournalError(f"cannot connect to the PostgreSQL journal: {_first_line(error)}") from error
        db.execute("SET synchronous_commit = on")
        return db

    # -- leadership ------------------------------------------------------------------------------
    def take_lease(self) -> bool:
        """Become the shard's writer if the lease is free, expired or this node's; True if it did."""
        try:
            row = self._ready().execute(TAKE_LEASE, {"shard": self.shard, "node": self.node_name,
                                                     "lease": self.lease_seconds}).fetchone()
        except psycopg.Error as error:
            raise JournalError(f"{self.name}: cannot take the lease: {_first_line(error)}") from error
        if row is None:
            return False
        self.epoch, self.lease_seq = row[0], row[1]
        log.warning("%s: %s leads with epoch %d", self.name, self.node_name, self.epoch)
        return True

    def lease(self) -> Lease | None:
        try:
                row = self._ready().execute("SELECT leader, epoch, last_seq, expires_at < now() FROM etf_lease "
                                        "WHERE shard = %s", (self.shard,)).fetchone()
        except psycopg.Error as error:
            raise JournalError(f"{self.name}: cannot read the lease: {_first_line(error)}") from error
        return Lease(*row) if row is not None else None

    async def renew(self) -> None:
        """Extend the lease; Deposed if it is no longer this node's."""
        await self._in_writer(self._renew_sync)

    def _renew_sync(self, requested: float | None = None) -> None:
        try:
            cursor = self._execute(RENEW, {"shard": self.shard, "epoch": self.epoch, "lease": self.lease_seconds},
                                   requested)
        except psycopg.Error as error:
            raise JournalError(f"{self.name}: cannot renew the lease: {_first_line(error)}") from error
        if cursor.rowcount != 1:
            raise self._deposed()

    def sync_standbys(self) -> int | None:
        """Synchronous standbys connected to the primary now (None if this role may not see them)."""
        try:
            return int(self._ready().execute(SYNC_STANDBYS).fetchone()[0])
        except psycopg.Error:
            return None

    def _deposed(self) -> Deposed:
        lease = self.lease()
        leader = f"{lease.leader} (epoch {lease.epoch})" if lease else "unknown"
        return Deposed(f"{self.name}: this node ({self.node_name}, epoch {self.epoch}) was deposed; the leader is "
                       f"{leader}")

    # -- writing -----------------------------------------------------------------------------------
    async def append(self, events: list[M.Event]) -> None:
        """Make ``events`` durable (committed, and replicated if the database has a synchronous standby)."""
        if events:
            await self._in_writer(self.append_sync, events)

    async def _in_writer(self, fn: Any, *args: Any) -> None:
        """``in_writer`` of ``fn(*args, requested)``; ``requested`` is now, so the commit timeout also counts
        the time it waits behind the statement before it (a renewal the standby holds)."""
        await self.in_writer(fn, *args, time.monotonic())

    async def in_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the writer's thread, in turn with the writer's statements: its connection serves
        one statement at a time."""
        return await self._writer.run(fn, *args)

    def _watch(self) -> None:
        """The watchdog's thread: a statement that has not returned within ``commit_timeout`` gets its
        connection cut (not cancelled), so that it can never be reported as done; it then raises, and
        the writer stops without guessing. A statement's time counts from when it was asked for, so one
        queued behind another that hangs gets no longer. Once the journal is closing, nothing waits for a
        statement any more: it is cut at once."""
        while not self._closed.is_set():
            self._closing.wait(min(1.0, self.commit_timeout / 4))
            started = self._statement_started
            limit = 0.0 if self._closing.is_set() else self.commit_timeout
            if started and time.monotonic() - started > limit:
                self._timed_out = not self._closing.is_set()
                self._sever()
            if self._closing.is_set():
                time.sleep(0.05)

    def _execute(self, query: str, params: dict[str, Any], requested: float | None = None) -> psycopg.Cursor[Any]:
        """Run a statement of the writer (on its one thread, so one at a time) under the watchdog, which
        counts from ``requested`` (default now)."""
        self._timed_out = False
        self._statement_started = time.monotonic() if requested is None else requested
        try:
            if self._closing.is_set():  # after close() looked for a statement to cut: start none
                raise JournalError(f"{self.name}: the journal is closing")
            return self._ready().execute(query, params)
        except psycopg.OperationalError as error:  # the connection went: committed or not, nobody knows
            why = (f"no answer from PostgreSQL within {self.commit_timeout:g} s (is the synchronous standby down?)"
                   if self._timed_out else f"the connection was lost ({_first_line(error)})")
            raise CommitUnknown(f"{self.name}: {why}; the outcome of the statement is unknown") from error
        finally:
            self._statement_started = 0.0

    def append_sync(self, events: list[M.Event], requested: float | None = None) -> None:
        rows = encode_records(self.last_seq + 1, events, self)
        params = {"shard": self.shard, "epoch": self.epoch, "lease": self.lease_seconds, "start": self.last_seq,
                  "end": self.last_seq + len(rows), "seqs": [r[0] for r in rows], "crcs": [r[1] for r in rows],
                  "bodies": [r[2] for r in rows]}
        try:
            try:
                cursor = self._execute(APPEND, params, requested)
            except psycopg.Error as error:
                raise JournalError(f"{self.name}: the append failed: {_first_line(error)}") from error
            if cursor.rowcount != len(rows):
                raise self._deposed()
        except JournalError:
            if self.trail is not None:  # its leaves are not the journal's (or not known to be): take them out
                self.trail.rollback(self.last_seq)
            raise
        self.last_seq += len(rows)
        self.last_at = events[-1].at
        self.since_snapshot += len(rows)

    def _sever(self) -> None:
        """Cut the connection under a statement (shutdown of a duplicate of its socket: psycopg keeps the
        descriptor it owns, and its statement fails at once)."""
        try:
            sock = socket.fromfd(self._db.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM)
        except (OSError, psycopg.Error):
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()

    # -- reading -------------------------------------------------------------------------------------
    def replay(self, after: int = 0) -> Iterator[M.Event]:
        """Every record after ``after``, in order, each checked, read in pages."""
        while True:
            page = self._page(after)
            if not page:
                return
            for event in page:
                self.last_seq, self.last_at = after + 1, event.at
                after += 1
                yield event

    def poll(self) -> list[M.Event]:
        """The next page of records committed after the last one read (a follower's step). The journal
        moves past them only once the whole page is read: a poll that fails skips nothing."""
        page = self._page(self.last_seq)
        if page:
            self.last_seq, self.last_at = self.last_seq + len(page), page[-1].at
        return page

    def stored_records(self, after: int, limit: int) -> list[tuple[int, int, bytes]]:
        """(seq, crc, body) of up to ``limit`` committed records after ``after``, as stored, for
        StreamEvents; from a connection of their own, on any thread, beside the writer."""
        with self._reader_lock:
            try:
                if self._reader is None or self._reader.broken or self._reader.closed:
                    self._reader = psycopg.connect(self.dsn, autocommit=True,
                                                   application_name=f"etf-engine {self.node_name} events".strip())
                rows = self._reader.execute("SELECT seq, crc, body FROM etf_events WHERE shard = %s AND seq > %s "
                                            "ORDER BY seq LIMIT %s", (self.shard, after, limit)).fetchall()
            except psycopg.Error as error:
                raise JournalError(f"{self.name}: cannot read records after {after}: {_first_line(error)}") from error
        return [(seq, crc, bytes(body)) for seq, crc, body in rows]

    def _page(self, after: int, limit: int = 10_000) -> list[M.Event]:
        try:
            # Seqs have no gaps: the page is a range of seqs (with LIMIT alone, a planner misled by stale
            # statistics after a bulk load sorts the whole rest of the journal for every page).
            rows = self._ready().execute("SELECT seq, crc, body FROM etf_events WHERE shard = %s AND seq > %s "
                                         "AND seq <= %s ORDER BY seq", (self.shard, after, after + limit)).fetchall()
        except psycopg.Error as error:
            raise JournalError(f"{self.name}: cannot read records after {after}: {_first_line(error)}") from error
        return [decode_record(self.name, after + 1 + i, seq, crc, bytes(body)) for i, (seq, crc, body) in
                enumerate(rows)]

    # -- snapshots -----------------------------------------------------------------------------------
    def load_snapshot(self) -> Snapshot | None:
        row = self._ready().execute("SELECT seq, at, crc, body FROM etf_snapshots WHERE shard = %s",
                               (self.shard,)).fetchone()
        if row is None:
            return None
        seq, at, crc, body = row[0], row[1], row[2], bytes(row[3])
        if zlib.crc32(body) != crc:
            raise JournalError(f"{self.name}: the snapshot at record {seq} is damaged: checksum mismatch")
        try:
            snapshot = msgspec.json.decode(body, type=Snapshot)
        except msgspec.DecodeError as error:
            raise JournalError(f"{self.name}: the snapshot at record {seq} is damaged: {error}") from error
        self.last_seq, self.last_at = snapshot.seq, at  # replay goes on after it
        return snapshot

    def write_snapshot(self, state: LedgerState) -> None:
        body = _encoder.encode(Snapshot(seq=self.last_seq, at=self.last_at, state=state, version=VERSION))
        self._ready().execute(
            "INSERT INTO etf_snapshots (shard, seq, at, crc, body) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (shard) "
            "DO UPDATE SET seq = EXCLUDED.seq, at = EXCLUDED.at, crc = EXCLUDED.crc, body = EXCLUDED.body "
            "WHERE etf_snapshots.seq < EXCLUDED.seq",
            (self.shard, self.last_seq, self.last_at, zlib.crc32(body), body))
        self.since_snapshot = 0

    def close(self) -> None:
        self._closing.set()  # the watchdog cuts what is still under way (a renewal waiting for a lost standby)
        self._writer.stop()
        self._closed.set()
        self._db.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()

    def history(self) -> PgHistory:
        """The shard's history states, on a connection of their own (reads as of a time)."""
        return PgHistory(self.dsn, self.shard, node_name=self.node_name)

    # -- tools (etf-engine verify --dsn, etf-engine journal copy) ---------------------------------------
    def transaction(self) -> Any:
        """A transaction on the journal's connection (a context manager): the tools' reads see one
        snapshot of the database, and ``journal copy`` writes all or nothing."""
        return self._ready().transaction()

    def connection(self) -> psycopg.Connection[Any]:
        return self._ready()

    def stored_bounds(self) -> tuple[int, int]:
        """(records stored, the highest seq stored) of the shard."""
        row = self._ready().execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM etf_events WHERE shard = %s",
                                    (self.shard,)).fetchone()
        return int(row[0]), int(row[1])


class PgHistory:
    """A shard's history states (history.py) in ``etf_history``, and a reader of its records, on a
    connection of their own (made again after a failover). The states are derived data: their commits
    wait for no standby (``synchronous_commit = local``), and one lost in a failover is written again."""

    PAGE = 2_000  # records per query: a read as of a time stops at the first record after its time

    def __init__(self, dsn: str, shard: str, *, node_name: str = "") -> None:
        self.dsn, self.shard = dsn, shard
        self.name = f"history of journal shard {shard!r} in PostgreSQL"
        self._journal_name = f"journal shard {shard!r} in PostgreSQL"
        self._application = f"etf-engine {node_name} history".replace("  ", " ")
        self._conn: psycopg.Connection[Any] | None = None

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.broken or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.dsn, autocommit=True, application_name=self._application)
                self._conn.execute("SET synchronous_commit = local")
            except psycopg.Error as error:
                raise JournalError(f"{self.name}: cannot connect: {_first_line(error)}") from error
        return self._conn

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._db().execute(sql, params, binary=True).fetchall()
        except psycopg.Error as error:
            raise JournalError(f"{self.name}: {_first_line(error)}") from error

    def committed_seq(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM etf_events WHERE shard = %s", (self.shard,))[0][0])

    def records(self, after: int, upto: int) -> Iterator[M.Event]:
        while after < upto:
            # Bounded by the page, not by LIMIT: with stale statistics (after a bulk load) the planner sorts
            # the whole rest of the range for every page.
            rows = self._query("SELECT seq, crc, body FROM etf_events WHERE shard = %s AND seq > %s AND seq <= %s "
                               "ORDER BY seq", (self.shard, after, min(upto, after + self.PAGE)))
            if not rows:
                return
            for seq, crc, body in rows:
                after += 1
                yield decode_record(self._journal_name, after, seq, crc, bytes(body))

    def select_records(self, after: int, upto: int, needle: bytes, heads: Sequence[bytes]) -> list[Row]:
        """history.select_records's query: the records whose first SELECT_PREFIX bytes hold ``needle`` or
        that begin with one of ``heads``."""
        rows = self._query("SELECT seq, crc, body FROM etf_events WHERE shard = %s AND seq > %s AND seq <= %s AND "
                           f"(position(%s::bytea in substring(body from 1 for {SELECT_PREFIX})) > 0"
                           + "".join(f" OR substring(body from 1 for {len(h)}) = %s::bytea" for h in heads)
                           + ") ORDER BY seq", (self.shard, after, upto, needle, *heads))
        return [(int(seq), int(crc), bytes(body)) for seq, crc, body in rows]

    def nearest(self, as_of: int, upto: int) -> tuple[int, int] | None:
        rows = self._query("SELECT seq, at FROM etf_history WHERE shard = %s AND seq <= %s AND at <= %s "
                           "ORDER BY seq DESC LIMIT 1", (self.shard, upto, as_of))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def load(self, seq: int) -> Snapshot:
        rows = self._query("SELECT crc, body FROM etf_history WHERE shard = %s AND seq = %s", (self.shard, seq))
        if not rows:
            raise JournalError(f"{self.name}: no history state at record {seq}")
        return decode_state(self.name, seq, int(rows[0][0]), bytes(rows[0][1]))

    def write(self, seq: int, at: int, body: bytes, crc: int) -> None:
        try:
            self._db().execute("INSERT INTO etf_history (shard, seq, at, crc, body) VALUES (%s, %s, %s, %s, %s) "
                               "ON CONFLICT (shard, seq) DO NOTHING", (self.shard, seq, at, crc, body))
        except psycopg.Error as error:
            raise JournalError(f"{self.name}: cannot write the history state at record {seq}: "
                               f"{_first_line(error)}") from error

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
