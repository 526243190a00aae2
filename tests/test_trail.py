"""The audit trail beside the journal (journal/trail.py): the tree holds exactly the stored records, a
checkpoint is sealed where it is stored, a failed commit takes its leaves back out, and a trail that starts
late (a restart, a follower) catches up from storage to the same roots."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from etf_engine import model as M
from etf_engine.audit import AuditFailed, audit_records
from etf_engine.errors import NOT_FOUND, OUT_OF_RANGE, EngineError
from etf_engine.journal import SqliteJournal
from etf_engine.journal.merkle import MerkleTree
from etf_engine.journal.records import JournalError
from etf_engine.journal.trail import AuditTrail
from etf_engine.signing import Signer, new_key_file, verify

pytestmark = pytest.mark.unit


def clock(at: int) -> M.ClockAdvanced:
    return M.ClockAdvanced(at=at, offset_ms=at)


def stored(journal: SqliteJournal) -> list[bytes]:
    return [body for _seq, _crc, body in journal.stored_records(0, 1_000_000)]


def tree_of(bodies: list[bytes]) -> MerkleTree:
    tree = MerkleTree()
    tree.extend(bodies)
    return tree


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    j = SqliteJournal(tmp_path / "data")
    yield j
    j.close()


def test_a_checkpoint_is_sealed_over_the_records_before_it_in_its_own_commit(journal: SqliteJournal,
                                                                              tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    public = new_key_file(key)
    journal.trail = AuditTrail("", Signer(key))
    journal.append_sync([clock(1), clock(2), M.CheckpointRecorded(at=3), clock(4)])
    bodies = stored(journal)
    sealed = msgspec.json.decode(bodies[2], type=M.CheckpointRecorded)
    assert (sealed.tree_size, sealed.root, sealed.public_key) == (2, tree_of(bodies[:2]).root().hex(), public)
    assert verify(public, "", 2, sealed.root, sealed.signature)
    assert journal.trail.size == 4 and journal.trail.tree.root() == tree_of(bodies).root()
    assert journal.trail.checkpoint(0, 4) == sealed == journal.trail.checkpoint(2, 4)
    # a reader that may see only 2 records sees no checkpoint yet (its record is the third)
    with pytest.raises(EngineError) as none:
        journal.trail.checkpoint(0, 2)
    assert none.value.code == NOT_FOUND
    with pytest.raises(EngineError) as beyond:
        journal.trail.checkpoint(5, 4)
    assert beyond.value.code == OUT_OF_RANGE and "tree_size" in str(beyond.value)


def test_a_failed_commit_takes_its_leaves_and_checkpoints_back_out(journal: SqliteJournal) -> None:
    journal.trail = AuditTrail()
    journal.append_sync([clock(1), M.CheckpointRecorded(at=2)])
    # The commit's second record finds its seq taken (written beside the journal's writer): SQLite refuses
    # the whole INSERT, as it would on a full disk.
    journal._db.execute("INSERT INTO events (seq, crc, body) VALUES (4, 0, x'00')")  # type: ignore[union-attr]
    with pytest.raises(JournalError, match="UNIQUE"):
        journal.append_sync([clock(3), M.CheckpointRecorded(at=4)])
    assert (journal.trail.size, sorted(journal.trail.checkpoints)) == (2, [1])
    journal._db.execute("DELETE FROM events WHERE seq = 4")  # type: ignore[union-attr]
    journal.append_sync([clock(5), M.CheckpointRecorded(at=6)])
    bodies = stored(journal)
    assert journal.trail.tree.root() == tree_of(bodies).root()
    assert msgspec.json.decode(bodies[3], type=M.CheckpointRecorded).tree_size == 3


def test_a_trail_that_starts_late_catches_up_from_storage(journal: SqliteJournal) -> None:
    journal.append_sync([clock(1), clock(2), clock(3)])  # before the trail: a restart, or a follower
    journal.trail = AuditTrail()
    journal.append_sync([M.CheckpointRecorded(at=4)])  # the commit catches the tree up first
    bodies = stored(journal)
    assert msgspec.json.decode(bodies[3], type=M.CheckpointRecorded).root == tree_of(bodies[:3]).root().hex()
    late = AuditTrail()
    late.catch_up(journal.stored_records, 4)
    assert (late.tree.root(), sorted(late.checkpoints)) == (tree_of(bodies).root(), [3])
    with pytest.raises(EngineError) as missing:
        late.catch_up(journal.stored_records, 5)
    assert missing.value.code == NOT_FOUND and "record 5" in str(missing.value)


def test_audit_names_a_record_changed_without_its_crc_and_a_range_when_the_crc_was_mended(journal: SqliteJournal,
                                                                                        tmp_path: Path) -> None:
    journal.trail = AuditTrail()
    journal.append_sync([clock(1), clock(2), clock(3), M.CheckpointRecorded(at=4), clock(5)])
    assert audit_records(journal.stored_records, shard="").checkpoints == 1
    db = sqlite3.connect(tmp_path / "data" / "journal.sqlite3")
    changed = db.execute("SELECT body FROM events WHERE seq = 2").fetchone()[0].replace(b"2", b"7")
    db.execute("UPDATE events SET body = ? WHERE seq = 2", (changed,))
    db.commit()
    with pytest.raises(AuditFailed, match="^record 2: its bytes do not match its CRC"):
        audit_records(journal.stored_records, shard="")
    db.execute("UPDATE events SET crc = ? WHERE seq = 2", (zlib.crc32(changed),))
    db.commit()
    db.close()
    with pytest.raises(AuditFailed, match=r"checkpoint at record 4 \(tree_size 3\).*a record among 1\.\.3"):
        audit_records(journal.stored_records, shard="")
