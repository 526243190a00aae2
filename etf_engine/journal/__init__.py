"""The durable journal: the record format and its checks (``records``), one module per backend
(``sqlite``), and the SQLite WAL reader that start-up and ``verify`` run before SQLite opens (``wal``)."""

from etf_engine.journal.records import (
    JournalError,
    Snapshot,
    collector_paused,
    recover,
    state_digest,
    verify,
)
from etf_engine.journal.sqlite import SqliteJournal

__all__ = ["JournalError", "Snapshot", "SqliteJournal", "collector_paused", "recover", "state_digest", "verify"]
