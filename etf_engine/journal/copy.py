"""``etf-engine journal copy`` (SPEC §12 "Tools"): a stopped server's SQLite journal into an empty
PostgreSQL shard.

The source is checked as ``etf-engine verify --data-dir`` checks it, and the copy as ``--dsn`` does
(verify.verify_journal, verify.verify_pg): both must give the same records and state digest.

A copy is one transaction: the lease row first (it serialises with a server taking the lease and with
a second copy), the records by COPY, the snapshot, then the verification of what was written, in the
same transaction; anything wrong rolls it all back. The lease row is written expired, with epoch 0,
no leader and ``last_seq`` = the last record: the first server started on the shard takes it (epoch
1) and appends after the last record.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import psycopg

from etf_engine.journal.postgres import PgJournal, _first_line
from etf_engine.journal.records import JournalError, read_snapshot_stored
from etf_engine.journal.sqlite import DB_NAME, SNAPSHOT_NAME, SqliteJournal
from etf_engine.journal.verify import ToolRefused, Verified, check_arguments, verify_journal, verify_pg

COPY_BATCH = 5_000  # rows read from SQLite at a time and streamed to COPY


@dataclass(frozen=True)
class Copied:
    source: Verified
    target: Verified
    snapshot_seq: int | None  # the snapshot copied with the records, if the source had one
    torn_tail_frames: int  # of the source, discarded when it was opened (as a server's start does)


def copy_to_shard(data_dir: str | Path, dsn: str, shard: str) -> Copied:
    """Copy the whole journal of a stopped server's ``data_dir`` into the empty ``shard``: the same
    records (seq, crc, body bytes), the snapshot, and a lease that the first server started takes."""
    check_arguments(dsn, shard)
    data_dir = Path(data_dir)
    if not (data_dir / DB_NAME).is_file():
        raise ToolRefused(f"no journal in {data_dir} (no {DB_NAME})")
    # Locked as a server locks it (DataDirInUse while one runs): the WAL scan, the torn tail cut off,
    # quick_check, the records gapless; held until the copy is done, so no server starts meanwhile.
    source = SqliteJournal(data_dir, lock=True)
    try:
        target = _open_target(dsn, shard)
        try:
            _refuse_unless_empty(target)  # before the long check of the source; again in the transaction
            verified = verify_journal(source)
            stored = read_snapshot_stored(data_dir / SNAPSHOT_NAME)
            snapshot = None if stored is None else (stored[0].seq, stored[0].at, stored[1], stored[2])
            try:
                with target.transaction():
                    _claim(target, verified.records)
                    _copy_records(source, target)
                    if snapshot is not None:
                        seq, at, crc, body = snapshot
                        target.connection().execute(
                            "INSERT INTO etf_snapshots (shard, seq, at, crc, body) VALUES (%s, %s, %s, %s, %s)",
                            (shard, seq, at, crc, body))
                    copied = verify_pg(target, empty_ok=True)
                    if (copied.records, copied.digest) != (verified.records, verified.digest):
                        raise JournalError(f"{target.name}: the copy differs from {data_dir} ({copied.records} "
                                           f"records, digest {copied.digest}; the source has {verified.records}, "
                                           f"digest {verified.digest}); nothing was written")
            except psycopg.Error as error:
                raise JournalError(f"{target.name}: the copy failed, nothing was written: "
                                   f"{_first_line(error)}") from error
        finally:
            target.close()
        return Copied(verified, copied, snapshot[0] if snapshot else None, source.torn_tail_frames)
    finally:
        source.close()


def _open_target(dsn: str, shard: str) -> PgJournal:
    try:
        return PgJournal(dsn, shard, node_name="journal-copy")  # creates the tables if there are none
    except psycopg.Error as error:  # e.g. the DSN names a standby: the schema cannot be created there
        raise JournalError(f"journal shard {shard!r} in PostgreSQL: cannot prepare it: "
                           f"{_first_line(error)}") from error


def _refuse_unless_empty(target: PgJournal, *, own_lease: bool = False) -> None:
    """ToolRefused if the shard has records, a snapshot or a lease (other than the one this copy wrote)."""
    db, shard = target.connection(), target.shard
    try:
        lease = None if own_lease else target.lease()
        records = db.execute("SELECT COUNT(*) FROM etf_events WHERE shard = %s", (shard,)).fetchone()[0]
        snapshot = db.execute("SELECT seq FROM etf_snapshots WHERE shard = %s", (shard,)).fetchone()
    except psycopg.Error as error:
        raise JournalError(f"{target.name}: cannot read it: {_first_line(error)}") from error
    found = []
    if records:
        found.append(f"{records} records")
    if lease is not None:
        found.append(f"a lease (leader {lease.leader or '-'}, epoch {lease.epoch}, at record {lease.last_seq})")
    if snapshot is not None:
        found.append(f"a snapshot at record {snapshot[0]}")
    if found:
        raise ToolRefused(f"{target.name} is not empty: it has {', '.join(found)}; copy only into a new shard")


def _claim(target: PgJournal, last_seq: int) -> None:
    """The lease row, expired and never led, ending at ``last_seq``; written first, so a server taking the
    lease or another copy waits for this transaction and then finds the shard taken."""
    cursor = target.connection().execute(
        "INSERT INTO etf_lease (shard, epoch, leader, last_seq, expires_at) VALUES (%s, 0, '', %s, to_timestamp(0)) "
        "ON CONFLICT (shard) DO NOTHING", (target.shard, last_seq))
    if cursor.rowcount != 1:
        _refuse_unless_empty(target)  # names what is there
        raise ToolRefused(f"{target.name} is not empty: it has a lease; copy only into a new shard")
    _refuse_unless_empty(target, own_lease=True)


def _copy_records(source: SqliteJournal, target: PgJournal) -> None:
    """Every record of the source, byte for byte, by COPY in binary, read from SQLite in batches; each
    checked again on the way (seq in order, CRC)."""
    rows = source._db.execute("SELECT seq, crc, body FROM events ORDER BY seq")  # type: ignore[union-attr]
    expected = 1
    with target.connection().cursor() as cursor, cursor.copy(
            "COPY etf_events (shard, seq, crc, body) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "int8", "int8", "bytea"])
        while batch := rows.fetchmany(COPY_BATCH):
            for seq, crc, body in batch:
                if seq != expected or zlib.crc32(body) != crc:
                    raise JournalError(f"{source.name}: record {expected} changed while it was copied")
                copy.write_row((target.shard, seq, crc, body))
                expected += 1
    if expected - 1 != source.last_seq:
        raise JournalError(f"{source.name}: {expected - 1} records read, {source.last_seq} verified")
