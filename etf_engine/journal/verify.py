"""Verification of a whole journal, as ``etf-engine verify`` does it (SPEC §12 "Tools"), on any backend.

``verify`` replays every record from the first, each checked (records.decode_record: its place, its CRC,
its decoding) and applied; the snapshot, if there is one, must equal the state those records give at its
seq. ``verify_journal`` adds the state and its digest as of the last record, the one a server logs at
stop (``etf-engine verify --data-dir``). ``verify_shard`` does the same on a PostgreSQL shard, writing
nothing (``etf-engine verify --dsn``), and ``verify_pg`` adds what replaying cannot see there: that the
records end where the lease says the journal ends (a lost tail) and that the snapshot is not past the
last record. ``journal copy`` checks its source and its copy with them.

psycopg is imported only when a shard is checked: the package, which the server's engine and the
checkpointer import, does not need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from etf_engine.errors import InvariantBroken
from etf_engine.journal.records import JournalError, Snapshot, apply_record, collector_paused, state_digest
from etf_engine.snapshot import LedgerState

if TYPE_CHECKING:
    from etf_engine.journal.postgres import PgJournal

SHARD_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # as config.py accepts [journal] shard


class ToolRefused(JournalError):
    """The tool will not do what it was asked (bad arguments, a shard that is not empty): exit status 2."""


@dataclass(frozen=True)
class Verified:
    records: int
    state: LedgerState
    digest: str


def current_form(ledger: Any, snapshot: Snapshot) -> LedgerState:
    """The snapshot's state as this version's ledger writes it: a snapshot taken before a field was added
    lacks it (restore fills its default), and must not read as a disagreement. Only the core restores;
    with the reference the state is compared as stored."""
    restore = getattr(type(ledger), "restore", None)
    return snapshot.state if restore is None else restore(snapshot.state).state(snapshot.at)


def verify(journal: Any, ledger: Any) -> Any:
    """Every record from the first, each checked, applied to the empty ``ledger``; the snapshot, if
    there is one, must equal the state those records give at its seq (damage under a snapshot counts
    too, and a snapshot that disagrees with the journal would restart a server on the wrong state); the
    state after the last record must keep the ledger's invariants (etf_engine/ledger.py)."""
    snapshot = journal.load_snapshot()
    if snapshot is not None and snapshot.seq == 0:
        snapshot = None
    for event in journal.replay(after=0):
        apply_record(journal, ledger, event)
        if snapshot is not None and journal.last_seq == snapshot.seq:
            with collector_paused():
                equal = state_digest(ledger.state(snapshot.at)) == state_digest(current_form(ledger, snapshot))
            if not equal:
                raise JournalError(f"the snapshot at record {snapshot.seq} differs from the state that records 1 "
                                   f"to {snapshot.seq} give")
    try:
        ledger.check_invariants(journal.last_at)
    except InvariantBroken as error:
        raise JournalError(f"{journal.name}: the state after record {journal.last_seq} breaks an {error}") from error
    return ledger


def verify_journal(journal: Any) -> Verified:
    """``verify`` on the compiled ledger, and the state and digest as of the last record."""
    from etf_engine._core import Ledger as CoreLedger

    ledger = verify(journal, CoreLedger())
    with collector_paused():
        state = ledger.state(journal.last_at)
        return Verified(journal.last_seq, state, state_digest(state))


def check_arguments(dsn: str, shard: str) -> None:
    """ToolRefused unless ``shard`` is a shard's name and ``dsn`` a PostgreSQL connection string."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from etf_engine.journal.postgres import _first_line

    if not SHARD_NAME.fullmatch(shard):
        raise ToolRefused(f"--shard {shard[:64]!r}: expected 1-64 of [A-Za-z0-9._:-]")
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error as error:
        raise ToolRefused(f"--dsn is not a PostgreSQL connection string: {_first_line(error)}") from None


def verify_shard(dsn: str, shard: str) -> Verified:
    """Check every record of the shard and its snapshot, writing nothing (a standby will do)."""
    import psycopg

    from etf_engine.journal.postgres import PgJournal, _first_line

    check_arguments(dsn, shard)
    journal = PgJournal(dsn, shard, node_name="verify", read_only=True)
    try:
        with journal.transaction():  # REPEATABLE READ: the lease, records and snapshot of one moment
            return verify_pg(journal, empty_ok=False)
    except psycopg.Error as error:
        raise JournalError(f"{journal.name}: cannot read it: {_first_line(error)}") from error
    finally:
        journal.close()


def verify_pg(journal: PgJournal, *, empty_ok: bool) -> Verified:
    """``verify_journal`` on a shard, inside the caller's transaction, and the shard's own bounds: the
    records stored without a gap, ending where the lease says, the snapshot not past the last record.
    ``empty_ok``: a shard with nothing in it passes (``journal copy`` checks its target so)."""
    db = journal.connection()
    lease = journal.lease()
    row = db.execute("SELECT seq FROM etf_snapshots WHERE shard = %s", (journal.shard,)).fetchone()
    snapshot_seq = None if row is None else int(row[0])
    count, top = journal.stored_bounds()
    if not empty_ok and lease is None and count == 0 and snapshot_seq is None:
        raise JournalError(f"{journal.name} does not exist: no records, no lease, no snapshot")
    result = verify_journal(journal)  # every record from 1, in order, each checked; a gap is named
    if count != result.records or top != result.records:
        raise JournalError(f"{journal.name} is damaged: {count} records stored, numbered up to {top}, but they "
                           f"run without a gap only to record {result.records}")
    if lease is not None and lease.last_seq != result.records:
        if lease.last_seq > result.records:
            raise JournalError(f"{journal.name} is damaged: records {result.records + 1} to {lease.last_seq} are "
                               f"missing (the lease says the journal ends at record {lease.last_seq})")
        raise JournalError(f"{journal.name} is damaged: records {lease.last_seq + 1} to {result.records} are "
                           f"stored after the end the lease records (record {lease.last_seq})")
    if snapshot_seq is not None and snapshot_seq > result.records:
        raise JournalError(f"{journal.name}: the snapshot is at record {snapshot_seq} but the journal ends at "
                           f"record {result.records}")
    return result
