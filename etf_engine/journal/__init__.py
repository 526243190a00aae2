"""The durable journal.

``records``   the record format and its checks, snapshots, the state digest, recovery (every backend's)
``sqlite``    the journal of a data directory; ``wal`` reads its WAL frame by frame before SQLite opens it
``postgres``  the journal of a PostgreSQL shard, fenced by a lease with an epoch
``history``   states kept every N records, for reads as of a time (SPEC §21): their writer and reader
``merkle``    the RFC 9162 Merkle tree: roots and proofs of any past size, their verifiers
``trail``     the audit trail (SPEC §21): the tree over the stored records, checkpoints sealed as they are stored
``verify``    a whole journal checked, on either backend (``etf-engine verify``)
``copy``      a stopped server's SQLite journal into an empty shard (``etf-engine journal copy``)

Handed on here is what the engine, the checkpointer and ``verify --data-dir`` use; the PostgreSQL side
(psycopg) is imported from its modules by whoever needs it.
"""

from etf_engine.journal.records import JournalError, Snapshot, collector_paused, recover, state_digest
from etf_engine.journal.sqlite import SqliteJournal
from etf_engine.journal.verify import verify  # the function: bound over the module's name here

__all__ = ["JournalError", "Snapshot", "SqliteJournal", "collector_paused", "recover", "state_digest", "verify"]
