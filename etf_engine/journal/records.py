"""The journal's record format and its checks, shared by every backend: events as msgspec JSON with
a CRC-32 each, snapshots with a header and a CRC, the state digest, and recovery (snapshot + replay)."""

from __future__ import annotations

import gc
import hashlib
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from etf_engine import model as M
from etf_engine.snapshot import LedgerState

SNAPSHOT_MAGIC = b"ETFSNAP1"
_encoder = msgspec.json.Encoder()  # JSON: exact integers of any size (msgpack stops at 64 bits)
_event_decoder = msgspec.json.Decoder(M.AnyEvent)


class JournalError(RuntimeError):
    """The data directory cannot be used as it is; the message says what and where."""


class Snapshot(msgspec.Struct):
    """A ledger's canonical state after record ``seq`` (at ``at``). ``version``: the schema it was written
    in (etf_engine/snapshot.py); older ones decode through that schema's defaults."""

    seq: int
    at: int
    state: LedgerState
    version: int = 1  # snapshots before the versioned schema carry none


@contextmanager
def collector_paused() -> Iterator[None]:
    """For building a whole state: millions of new containers that all stay reachable, so every
    collection the allocations trigger meanwhile walks them all and frees nothing (seen: a clean
    stop at 350,000 orders ran fifteen of them, up to 240 ms each)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def encode_records(first_seq: int, events: list[M.Event], journal: Any = None) -> list[tuple[int, int, bytes]]:
    """(seq, crc, body) rows for ``events``, numbered from ``first_seq``; through ``journal``'s audit trail
    when it has one (journal/trail.py: checkpoints sealed, the Merkle tree grown)."""
    trail = getattr(journal, "trail", None)
    if trail is None:
        bodies = [_encoder.encode(event) for event in events]
    else:
        bodies = trail.encode(first_seq, events, _encoder.encode, journal.stored_records)
    return [(seq, zlib.crc32(body), body) for seq, body in enumerate(bodies, first_seq)]


class StoredRecord(msgspec.Struct, frozen=True):
    """A record as StreamEvents sends it: the event's own JSON, and what a reader filters by."""

    seq: int
    at: int
    type: str
    principal: str
    body: str


class _Envelope(msgspec.Struct):
    type: str
    at: int
    principal: str = ""


_envelope = msgspec.json.Decoder(_Envelope)


def stored_record(where: str, expected: int, seq: int, crc: int, body: bytes) -> StoredRecord:
    """The record ``seq`` as stored, checked as ``decode_record`` checks it (its place and its CRC)."""
    head = _checked(where, expected, seq, crc, body, _envelope)
    return StoredRecord(seq=seq, at=head.at, type=head.type, principal=head.principal, body=body.decode())


def decode_record(where: str, expected: int, seq: int, crc: int, body: bytes) -> M.Event:
    """The event of a record stored in ``where`` (the journal's name, for messages), checked: it is the
    one expected next, its CRC holds, it decodes."""
    return _checked(where, expected, seq, crc, body, _event_decoder)


def _checked(where: str, expected: int, seq: int, crc: int, body: bytes, decoder: msgspec.json.Decoder) -> Any:
    if seq != expected:
        raise JournalError(f"{where}: record {expected} is missing (the next one stored is {seq})")
    return check_stored(where, seq, crc, body, decoder)


def check_stored(where: str, seq: int, crc: int, body: bytes, decoder: msgspec.json.Decoder) -> Any:
    """Record ``seq`` as ``decoder`` reads it, once its CRC holds; JournalError naming it otherwise."""
    if zlib.crc32(body) != crc:
        raise JournalError(f"{where}: record {seq} is damaged: checksum mismatch")
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as error:
        raise JournalError(f"{where}: record {seq} is damaged: {error}") from error


def read_snapshot_file(path: Path) -> Snapshot | None:
    """The snapshot stored at ``path``, checked, or None if there is none."""
    stored = read_snapshot_stored(path)
    return None if stored is None else stored[0]


def read_snapshot_stored(path: Path) -> tuple[Snapshot, int, bytes] | None:
    """The snapshot at ``path``, checked, with its CRC and body bytes as stored (``journal copy`` moves
    them unchanged), or None if there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise JournalError(f"cannot read snapshot {path}: {error.strerror or error}") from error
    head = len(SNAPSHOT_MAGIC)
    crc, body = int.from_bytes(data[head:head + 4], "big"), data[head + 4:]
    if data[:head] != SNAPSHOT_MAGIC or crc != zlib.crc32(body):
        raise JournalError(f"snapshot {path} is damaged: bad header or checksum")
    try:
        return msgspec.json.decode(body, type=Snapshot), crc, body
    except msgspec.DecodeError as error:
        raise JournalError(f"snapshot {path} is damaged: {error}") from error


def write_snapshot_file(path: Path, snapshot: Snapshot) -> None:
    """Store ``snapshot`` at ``path`` atomically: a temporary file, fsync, rename, fsync of the directory."""
    body = _encoder.encode(snapshot)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")  # the server and its checkpointer never share one
    with open(tmp, "wb") as out:
        out.write(SNAPSHOT_MAGIC + zlib.crc32(body).to_bytes(4, "big") + body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def state_digest(state: LedgerState) -> str:
    """SHA-256 of the canonical state: equal digests, equal ledgers."""
    return hashlib.sha256(msgspec.json.encode(state)).hexdigest()


def apply_record(journal: Any, ledger: Any, event: M.Event) -> None:
    """Apply the record just replayed; a record that the state before it cannot take (checksums hold,
    but the journal is not this engine's history) is damage too, named like any other."""
    try:
        ledger.apply(event)
    except Exception as error:
        raise JournalError(f"{journal.name}: record {journal.last_seq} ({type(event).__name__}) does not apply "
                           f"to the state before it: {type(error).__name__}: {error}") from error


def recover(
    journal: Any,
    ledger: Any,
    *,
    on_snapshot: Callable[[LedgerState], None] | None = None,
    on_event: Callable[[M.Event], None] | None = None,
) -> Any:
    """The ledger as of the journal's last record: the latest snapshot (restored by the class of the
    empty ``ledger`` given), then every event after it applied. A ledger that cannot restore a
    snapshot (the reference) replays every record instead: the journal keeps them all. The callbacks
    see what was loaded."""
    snapshot = journal.load_snapshot() if hasattr(type(ledger), "restore") else None
    if snapshot is not None:
        ledger = type(ledger).restore(snapshot.state)
        if on_snapshot is not None:
            on_snapshot(snapshot.state)
    for event in journal.replay(after=snapshot.seq if snapshot is not None else 0):
        apply_record(journal, ledger, event)
        if on_event is not None:
            on_event(event)
    return ledger
