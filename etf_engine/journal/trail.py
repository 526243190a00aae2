"""The audit trail (SPEC §21): the journal as an RFC 9162 Merkle tree, and its checkpoints.

Every record, as stored (the bytes its CRC covers), is a leaf, from seq 1. A **checkpoint** is itself a
record, ``CheckpointRecorded``: the root of the tree over every record before it (``tree_size`` = its
seq − 1), signed when the config names a signing_key. The engine asks for one with an empty
CheckpointRecorded (at StrikeNav, on Checkpoint()); only the journal knows which seq it gets and the
bytes of every record before it, so the journal fills it in (``seal``) while it encodes the commit, with
the tree grown by each record of the commit before it.

The trail follows the journal in one rule: before a commit's records are encoded, the tree covers every
record before them. On a leader that keeps itself true, the commits feeding it; after a start or on a
follower, ``catch_up`` reads the records it lacks from storage (the journal's ``stored_records``, a
connection beside the writer's) — at start, every record once (benchmarks/reports.py: 3.4-4.9 s for
1,000,000 records). A commit that fails takes its leaves back out (``rollback``): the tree never holds a
record the journal does not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import msgspec

from etf_engine import model as M
from etf_engine.errors import NOT_FOUND, OUT_OF_RANGE, EngineError, invalid
from etf_engine.journal.merkle import MerkleTree
from etf_engine.signing import Signer

_CHECKPOINT_PREFIX = b'{"type":"CheckpointRecorded"'  # msgspec writes the tag first
_checkpoint_decoder = msgspec.json.Decoder(M.CheckpointRecorded)
CATCH_UP_PAGE = 10_000

StoredRecords = Callable[[int, int], Sequence[tuple[int, int, bytes]]]  # (after, limit) -> (seq, crc, body)


class AuditTrail:
    """The Merkle tree over a journal's records and the checkpoints among them (by tree_size).
    Thread-safe: the journal's writer grows it while readers ask for proofs."""

    def __init__(self, shard: str = "", signer: Signer | None = None) -> None:
        self.shard = shard
        self.signer = signer
        self.tree = MerkleTree()
        self.checkpoints: dict[int, M.CheckpointRecorded] = {}  # tree_size -> the checkpoint, in order
        self._lock = threading.RLock()

    @property
    def size(self) -> int:
        return self.tree.size

    # -- growing -----------------------------------------------------------------------------------
    def catch_up(self, stored_records: StoredRecords, upto: int) -> None:
        """Grow the tree with the stored records it lacks, up to seq ``upto``."""
        with self._lock:
            while self.tree.size < upto:
                rows = stored_records(self.tree.size, min(CATCH_UP_PAGE, upto - self.tree.size))
                if not rows:
                    raise EngineError(NOT_FOUND, f"the audit trail needs record {self.tree.size + 1}, which the "
                                                 "journal does not hold")
                for seq, _crc, body in rows:
                    self._add(seq, body)

    def _add(self, seq: int, body: bytes) -> None:
        if seq != self.tree.size + 1:
            raise AssertionError(f"the audit trail is at record {self.tree.size}; record {seq} cannot follow it")
        checkpoint = checkpoint_in(body)
        if checkpoint is not None:
            self.checkpoints[checkpoint.tree_size] = checkpoint
        self.tree.append(body)

    def encode(self, first_seq: int, events: Sequence[M.Event], encode: Callable[[M.Event], bytes],
               stored_records: StoredRecords) -> list[bytes]:
        """The bodies of a commit's records from ``first_seq``, each checkpoint request sealed, every one
        added to the tree (``rollback(first_seq - 1)`` takes them out if the commit fails)."""
        with self._lock:
            self.catch_up(stored_records, first_seq - 1)
            bodies = []
            append = self.tree.append
            for seq, event in enumerate(events, first_seq):
                if type(event) is M.CheckpointRecorded:
                    body = encode(self._seal(seq, event))
                    self._add(seq, body)
                else:  # no checkpoint to look for in its body; catch_up left the tree at first_seq - 1
                    body = encode(event)
                    append(body)
                bodies.append(body)
            return bodies

    def _seal(self, seq: int, event: M.CheckpointRecorded) -> M.CheckpointRecorded:
        size = seq - 1
        root = self.tree.root(size).hex()
        if self.signer is None:
            return msgspec.structs.replace(event, tree_size=size, root=root, shard=self.shard)
        return msgspec.structs.replace(event, tree_size=size, root=root, shard=self.shard,
                                       signature=self.signer.sign(self.shard, size, root),
                                       public_key=self.signer.public_key)

    def rollback(self, size: int) -> None:
        """Forget the records after ``size`` (a commit that failed)."""
        with self._lock:
            if size < self.tree.size:
                self.tree.truncate(size)
                for tree_size in [s for s in self.checkpoints if s >= size]:
                    del self.checkpoints[tree_size]

    # -- reading: ``upto`` is the last record the reader may see (a commit under way is not durable yet) --
    def checkpoint(self, tree_size: int, upto: int) -> M.CheckpointRecorded:
        """The checkpoint of ``tree_size`` records (0: the latest)."""
        with self._lock:
            if tree_size < 0:
                raise invalid("tree_size", f"{tree_size} is negative")
            if tree_size == 0:
                seen = [size for size in self.checkpoints if size < upto]  # its own record is within upto
                if not seen:
                    raise EngineError(NOT_FOUND, "tree_size: the journal has no checkpoint yet (one is made at "
                                                 "every StrikeNav and on Checkpoint())")
                return self.checkpoints[max(seen)]
            _within("tree_size", tree_size, upto)
            found = self.checkpoints.get(tree_size) if tree_size < upto else None
            if found is None:
                raise EngineError(NOT_FOUND, f"tree_size: no checkpoint covers exactly {tree_size} records")
            return found

    def _size(self, field: str, size: int, upto: int) -> int:
        """A tree size asked for: 0 is the latest checkpoint's."""
        if size < 0:
            raise invalid(field, f"{size} is negative")
        if size == 0:
            return self.checkpoint(0, upto).tree_size
        _within(field, size, upto)
        return size

    def inclusion(self, seq: int, tree_size: int, upto: int) -> tuple[int, list[bytes], bytes]:
        """(tree size, RFC 9162 inclusion proof of record ``seq``, root of that tree)."""
        with self._lock:
            if seq < 1:
                raise invalid("seq", f"{seq}: records are numbered from 1")
            size = self._size("tree_size", tree_size, upto)
            if seq > size:
                raise EngineError(OUT_OF_RANGE, f"seq: record {seq} is not in the tree of {size} records")
            return size, self.tree.inclusion_proof(seq - 1, size), self.tree.root(size)

    def consistency(self, from_size: int, to_size: int, upto: int) -> tuple[int, list[bytes], bytes, bytes]:
        """(to size, RFC 9162 consistency proof from ``from_size``, both roots)."""
        with self._lock:
            if from_size < 1:
                raise invalid("from_size", f"{from_size}: a tree to extend has at least one record")
            size = self._size("to_size", to_size, upto)
            if from_size > size:
                raise EngineError(OUT_OF_RANGE, f"from_size: {from_size} is beyond to_size {size}")
            return size, self.tree.consistency_proof(from_size, size), self.tree.root(from_size), self.tree.root(size)


def checkpoint_in(body: bytes) -> M.CheckpointRecorded | None:
    """The checkpoint a stored record is, or None for any other record (msgspec.DecodeError for a
    checkpoint record that does not decode)."""
    return _checkpoint_decoder.decode(body) if body.startswith(_CHECKPOINT_PREFIX) else None


def _within(field: str, size: int, upto: int) -> None:
    if size > upto:
        raise EngineError(OUT_OF_RANGE, f"{field}: {size} is beyond the tree, which holds {upto} records")
