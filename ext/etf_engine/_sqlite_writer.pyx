# cython: language_level=3
"""The SQLite journal's writer (journal/sqlite.py): its own connection to the journal, through SQLite's C
API, and the thread that commits on it without ever holding the GIL.

Why. A Python thread committing through the ``sqlite3`` module takes the GIL to pick the commit up, to
bind it, back after each SQLite call it released it around, and to hand the result to the loop. Under
load the loop holds the GIL, and every one of those takes is a context switch on both threads (a futex
wait and a wake), costly in a VM: measured at 2.7 context switches per order on that thread under a
SubmitOrder load, 0.8-0.9 with this one (benchmarks/RESULTS.md, issue 23). Here the loop encodes the records (it holds the GIL anyway), hands their bytes over through a
pipe, and the thread binds, steps (INSERT, fsync) and answers through a second pipe, all without the GIL:
the loop pays two system calls per commit and the thread never waits for it.

One commit at a time: the loop hands the next over only once the answer of the last one is read (the
engine's committer awaits each append). A commit of up to ``INSERT_ROWS`` records is one multi-row
INSERT in autocommit mode (its own transaction: one fsync); a larger one is BEGIN IMMEDIATE, INSERTs
of ``INSERT_ROWS`` rows and COMMIT, rolled back if any of it fails.
"""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t
from libc.stdlib cimport free, realloc
from libc.string cimport strncpy
from posix.unistd cimport close, read, write

cdef extern from "sqlite3.h" nogil:
    ctypedef struct sqlite3
    ctypedef struct sqlite3_stmt
    int SQLITE_OK, SQLITE_DONE, SQLITE_ROW, SQLITE_CANTOPEN, SQLITE_MISUSE
    int SQLITE_OPEN_READWRITE, SQLITE_OPEN_NOMUTEX
    ctypedef void (*sqlite3_destructor_type)(void*)
    sqlite3_destructor_type SQLITE_STATIC
    int sqlite3_open_v2(const char *filename, sqlite3 **db, int flags, const char *vfs)
    int sqlite3_close_v2(sqlite3 *db)
    int sqlite3_extended_result_codes(sqlite3 *db, int onoff)
    int sqlite3_exec(sqlite3 *db, const char *sql, void *callback, void *arg, char **errmsg)
    int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int nbytes, sqlite3_stmt **stmt, const char **tail)
    int sqlite3_bind_int64(sqlite3_stmt *stmt, int index, long long value)
    int sqlite3_bind_blob(sqlite3_stmt *stmt, int index, const void *value, int n, sqlite3_destructor_type d)
    int sqlite3_step(sqlite3_stmt *stmt)
    long long sqlite3_column_int64(sqlite3_stmt *stmt, int column)
    int sqlite3_reset(sqlite3_stmt *stmt)
    int sqlite3_clear_bindings(sqlite3_stmt *stmt)
    int sqlite3_finalize(sqlite3_stmt *stmt)
    int sqlite3_get_autocommit(sqlite3 *db)
    int sqlite3_extended_errcode(sqlite3 *db)
    const char *sqlite3_errmsg(sqlite3 *db)
    const char *sqlite3_errstr(int code)

cdef enum:
    # Rows per INSERT statement: a commit of up to this many records is ONE statement in autocommit mode, its
    # own transaction and one fsync, stepped once (benchmarks/RESULTS.md, "The durable write path").
    INSERT_ROWS = 128
    MESSAGE_BYTES = 512  # SQLite's message of a failed commit, kept for the loop to read


cdef struct Row:  # one record of the commit under way, its body pointing into a Python bytes object
    int64_t seq
    int64_t crc
    const char *body
    int size


class WriterError(Exception):
    """A commit that failed: ``code`` is SQLite's extended result code, the message its own words."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


cdef class Writer:
    """A writable connection to the journal at ``path`` (which exists, in WAL mode, with its table) at
    ``synchronous=FULL``. ``commit(rows)`` commits on the calling thread (the GIL released meanwhile);
    ``serve()`` is the body of the writer's thread, fed by ``send(rows)`` and answering on ``answers``;
    the two ways take turns (one commit at a time), never overlap."""

    cdef sqlite3 *db
    cdef sqlite3_stmt *inserts[INSERT_ROWS + 1]
    cdef sqlite3_stmt *begin
    cdef sqlite3_stmt *finish
    cdef sqlite3_stmt *rollback
    # The commit under way: its rows, in C, and the Python bytes their bodies point into (kept alive).
    # NOMUTEX: the loop's thread and the writer's use the connection in turns, never at once.
    cdef Row *rows
    cdef Py_ssize_t count, capacity
    cdef object _held
    cdef char message[MESSAGE_BYTES]
    cdef int _requests_r, _requests_w, _answers_r, _answers_w

    def __cinit__(self, str path):
        self._requests_r = self._requests_w = self._answers_r = self._answers_w = -1
        encoded = path.encode()
        if sqlite3_open_v2(encoded, &self.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK:
            message = sqlite3_errmsg(self.db).decode("utf-8", "replace") if self.db != NULL else "out of memory"
            self._close_db()
            raise WriterError(SQLITE_CANTOPEN, f"cannot open {path}: {message}")
        sqlite3_extended_result_codes(self.db, 1)
        for sql in (b"PRAGMA journal_mode=WAL", b"PRAGMA synchronous=FULL"):
            if sqlite3_exec(self.db, sql, NULL, NULL, NULL) != SQLITE_OK:
                self._raise()
        self._prepare(&self.begin, b"BEGIN IMMEDIATE")
        self._prepare(&self.finish, b"COMMIT")
        self._prepare(&self.rollback, b"ROLLBACK")

    cdef _prepare(self, sqlite3_stmt **stmt, bytes sql):
        if sqlite3_prepare_v2(self.db, sql, -1, stmt, NULL) != SQLITE_OK:
            self._raise()

    cdef _raise(self):
        code = sqlite3_extended_errcode(self.db)
        raise WriterError(code, sqlite3_errmsg(self.db).decode("utf-8", "replace"))

    def __dealloc__(self):
        self._close_db()
        free(self.rows)
        self._close_pipes()

    cdef void _close_db(self) noexcept:
        cdef int i
        if self.db == NULL:
            return
        for i in range(INSERT_ROWS + 1):
            if self.inserts[i] != NULL:
                sqlite3_finalize(self.inserts[i])
                self.inserts[i] = NULL
        sqlite3_finalize(self.begin)  # NULL is a no-op
        sqlite3_finalize(self.finish)
        sqlite3_finalize(self.rollback)
        self.begin = self.finish = self.rollback = NULL
        sqlite3_close_v2(self.db)
        self.db = NULL

    def close(self) -> None:
        """Close the connection and the pipes (after the thread, if any, has ended)."""
        self._close_db()
        self._close_pipes()
        self._held = None

    cdef void _close_pipes(self) noexcept:
        for fd in (self._requests_r, self._requests_w, self._answers_r, self._answers_w):
            if fd >= 0:
                close(fd)
        self._requests_r = self._requests_w = self._answers_r = self._answers_w = -1

    @property
    def answers(self) -> int:
        """The file descriptor the thread's answers arrive on (-1 before ``open_pipes``)."""
        return self._answers_r

    # -- the commit ------------------------------------------------------------------------------------
    cdef _load(self, list rows):
        """Take ``rows`` [(seq, crc, body)] into the C array, preparing the INSERTs their sizes need."""
        cdef Py_ssize_t n = len(rows), i, size
        cdef bytes body
        cdef Row *grown
        if self._held is not None:  # the connection is one thread's at a time: the engine commits in turn
            raise RuntimeError("a commit is under way on the writer's thread")
        if self.db == NULL:
            raise WriterError(SQLITE_MISUSE, "the journal's writer is closed")
        if n > self.capacity:
            grown = <Row*>realloc(self.rows, n * sizeof(Row))
            if grown == NULL:
                raise MemoryError()
            self.rows, self.capacity = grown, n
        for i in range(n):
            seq, crc, body = rows[i]
            size = PyBytes_GET_SIZE(body)
            if size > 0x7fffffff:
                raise ValueError(f"record {seq}: {size} bytes is more than SQLite binds")
            self.rows[i] = Row(seq, crc, PyBytes_AS_STRING(body), <int>size)
        for size in (min(n, INSERT_ROWS), n % INSERT_ROWS):
            if size and self.inserts[size] == NULL:
                sql = ("INSERT INTO events (seq, crc, body) VALUES " + ",".join(["(?, ?, ?)"] * size)).encode()
                self._prepare(&self.inserts[size], sql)
        self.count = n
        self._held = rows

    cdef int _insert(self, Py_ssize_t start, Py_ssize_t rows) noexcept nogil:
        cdef sqlite3_stmt *stmt = self.inserts[rows]
        cdef Py_ssize_t i
        cdef int rc, k = 1
        for i in range(start, start + rows):
            sqlite3_bind_int64(stmt, k, self.rows[i].seq)
            sqlite3_bind_int64(stmt, k + 1, self.rows[i].crc)
            sqlite3_bind_blob(stmt, k + 2, self.rows[i].body, self.rows[i].size, SQLITE_STATIC)
            k += 3
        rc = sqlite3_step(stmt)
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)  # no pointer into a body outlives its commit
        return rc

    cdef int _commit(self) noexcept nogil:
        """The loaded rows, committed: 0, or SQLite's extended result code with ``message`` set."""
        cdef Py_ssize_t n = self.count, done = 0, rows
        cdef int rc
        if n <= INSERT_ROWS:
            rc = self._insert(0, n)
            return self._result(rc)
        rc = sqlite3_step(self.begin)
        sqlite3_reset(self.begin)
        if rc != SQLITE_DONE:
            return self._result(rc)
        while done < n:
            rows = min(n - done, INSERT_ROWS)
            rc = self._insert(done, rows)
            if rc != SQLITE_DONE:
                break
            done += rows
        if rc == SQLITE_DONE:
            rc = sqlite3_step(self.finish)
            sqlite3_reset(self.finish)
        if rc != SQLITE_DONE:
            rc = self._result(rc)
            # SQLite may already have rolled back (it does on a full disk): a ROLLBACK then fails.
            if not sqlite3_get_autocommit(self.db):
                sqlite3_step(self.rollback)
                sqlite3_reset(self.rollback)
            return rc
        return 0

    cdef int _result(self, int rc) noexcept nogil:
        if rc == SQLITE_DONE:
            return 0
        rc = sqlite3_extended_errcode(self.db)
        strncpy(self.message, sqlite3_errmsg(self.db), MESSAGE_BYTES - 1)
        self.message[MESSAGE_BYTES - 1] = 0
        return rc if rc else 1

    cdef _outcome(self, int rc):
        self._held = None
        self.count = 0
        if rc:
            raise WriterError(rc, self.message.decode("utf-8", "replace"))

    def commit(self, list rows) -> None:
        """Commit ``rows`` on this thread, the GIL released while SQLite inserts and syncs; WriterError
        if SQLite fails (nothing of it is then committed)."""
        cdef int rc
        self._load(rows)
        with nogil:
            rc = self._commit()
        self._outcome(rc)

    # -- the thread ------------------------------------------------------------------------------------
    def open_pipes(self) -> int:
        """Make the two pipes; the file descriptor the answers arrive on (watch it for reading)."""
        self._requests_r, self._requests_w = os.pipe()
        self._answers_r, self._answers_w = os.pipe()
        os.set_blocking(self._answers_r, False)
        return self._answers_r

    def serve(self) -> None:
        """The writer thread's body: commit what ``send`` hands over, answer each with one int64 (0 or the
        result code), until ``stop``. Never takes the GIL."""
        cdef int64_t request, answer
        cdef ssize_t n
        with nogil:
            while True:
                n = read(self._requests_r, &request, sizeof(request))
                if n < 0 and errno == EINTR:
                    continue
                if n != sizeof(request):
                    break  # the write end closed: stop
                answer = self._commit()
                while True:
                    n = write(self._answers_w, &answer, sizeof(answer))
                    if n < 0 and errno == EINTR:
                        continue
                    break
                if n != sizeof(answer):
                    break

    def send(self, list rows) -> None:
        """Hand ``rows`` to the thread; its answer comes on the answers pipe, read by ``received``."""
        cdef int64_t request = 1
        self._load(rows)
        try:
            os.write(self._requests_w, (<char*>&request)[:sizeof(request)])
        except OSError as error:  # the thread is gone (stopped): nothing was handed over
            self._held = None
            self.count = 0
            raise WriterError(SQLITE_MISUSE, f"the journal's writer thread is gone ({error.strerror})") from None

    def received(self) -> bool:
        """Read the answer of the commit sent (the answers pipe is readable): True once it is read; raises
        WriterError if the commit failed. False if nothing was there (a spurious wake)."""
        cdef int64_t answer
        cdef ssize_t n = read(self._answers_r, &answer, sizeof(answer))
        if n != sizeof(answer):
            return False
        self._outcome(<int>answer)
        return True

    def stop(self) -> None:
        """End the thread after the commit under way (close the requests' write end)."""
        if self._requests_w >= 0:
            close(self._requests_w)
            self._requests_w = -1

    def pragma(self, str name) -> int:
        """The integer value of ``PRAGMA name`` on this connection (tests check its settings)."""
        cdef sqlite3_stmt *stmt = NULL
        self._prepare(&stmt, f"PRAGMA {name}".encode())
        try:
            if sqlite3_step(stmt) != SQLITE_ROW:
                self._raise()
            return sqlite3_column_int64(stmt, 0)
        finally:
            sqlite3_finalize(stmt)
