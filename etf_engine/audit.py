"""``etf-engine audit`` (SPEC §21): the journal checked against its own checkpoints, and a server's tree
against a root an auditor kept.

``audit_records`` reads every stored record in order, exactly as stored, into a fresh Merkle tree
(journal/merkle.py) and, at each checkpoint record, compares the checkpoint's root with the root of the
records before it, and its signature (with the public key the auditor gives, else the one the
checkpoint names). A record whose bytes no longer match its CRC is named at once; one changed with its CRC
mended changes every root from there on: the first checkpoint that disagrees names the range of records,
since the checkpoint before it, where the change is.
Records after the last checkpoint are counted, not vouched for.

``prove`` is for an auditor who kept an old (size, root): the server's latest checkpoint (its signature
checked with the public key, when given) must extend it, by an RFC 9162 consistency proof the auditor's
side verifies.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from etf_engine import model as M
from etf_engine.journal.merkle import MerkleTree, verify_consistency
from etf_engine.journal.trail import checkpoint_in
from etf_engine.signing import verify

PAGE = 10_000

StoredRecords = Callable[[int, int], Sequence[tuple[int, int, bytes]]]


class AuditFailed(Exception):
    """The journal or the server does not bear out a checkpoint; the message names which and where."""


@dataclass
class Audited:
    records: int = 0
    checkpoints: int = 0
    signed: int = 0
    last_checkpoint: M.CheckpointRecorded | None = None
    keys: set[str] = field(default_factory=set)  # public keys the signatures were checked with
    seconds: float = 0.0

    @property
    def not_checkpointed(self) -> int:
        return self.records - (self.last_checkpoint.tree_size + 1 if self.last_checkpoint else 0)

    def summary(self) -> str:
        rate = f", {self.records / self.seconds:,.0f} records/s" if self.seconds > 0 else ""
        lines = [f"records {self.records}, checkpoints {self.checkpoints} (signed {self.signed}), every root "
                 f"matches the records before it; {self.not_checkpointed} record(s) after the last checkpoint "
                 f"not yet checkpointed ({self.seconds:.2f} s{rate})"]
        if self.last_checkpoint is not None:
            lines.append(f"latest checkpoint: tree_size {self.last_checkpoint.tree_size} root "
                         f"{self.last_checkpoint.root}")
        lines += [f"signatures checked with public key {key}" for key in sorted(self.keys)]
        return "\n".join(lines)


def audit_records(stored_records: StoredRecords, *, shard: str, public_key: str | None = None) -> Audited:
    """Every record from seq 1 through a fresh tree; AuditFailed at the first checkpoint that the records
    before it do not bear out. With ``public_key``, every checkpoint must carry its signature."""
    started = time.perf_counter()
    tree, audited, previous = MerkleTree(), Audited(), 0
    while True:
        rows = stored_records(tree.size, PAGE)
        if not rows:
            break
        for seq, crc, body in rows:
            if seq != tree.size + 1:
                raise AuditFailed(f"record {tree.size + 1} is missing (the next stored is {seq})")
            if zlib.crc32(body) != crc:  # a change that did not mend the CRC too: named exactly
                raise AuditFailed(f"record {seq}: its bytes do not match its CRC: it was changed or damaged")
            checkpoint = _checkpoint(seq, body)
            if checkpoint is not None:
                _check(checkpoint, seq, tree, previous, shard, public_key, audited)
                previous = checkpoint.tree_size
            tree.append(body)
    audited.records = tree.size
    audited.seconds = time.perf_counter() - started
    return audited


def _checkpoint(seq: int, body: bytes) -> M.CheckpointRecorded | None:
    try:
        return checkpoint_in(body)
    except msgspec.DecodeError as e:
        raise AuditFailed(f"record {seq} is a checkpoint that cannot be read: {e}") from None


def _check(checkpoint: M.CheckpointRecorded, seq: int, tree: MerkleTree, previous: int, shard: str,
           public_key: str | None, audited: Audited) -> None:
    where = f"checkpoint at record {seq} (tree_size {checkpoint.tree_size})"
    if checkpoint.tree_size != seq - 1:
        raise AuditFailed(f"{where}: a checkpoint covers the records before it, {seq - 1}")
    root = tree.root().hex()
    if checkpoint.root != root:
        raise AuditFailed(f"{where}: its root {checkpoint.root} is not the root of the records before it, {root}: "
                          f"a record among {previous + 1}..{checkpoint.tree_size} (after the checkpoint before it) "
                          "or the checkpoint itself was changed")
    # "" is a data directory's: a shard made by `etf-engine journal copy` holds its checkpoints byte for byte
    if checkpoint.shard not in (shard, ""):
        raise AuditFailed(f"{where}: it names shard {checkpoint.shard!r}, not {shard!r}")
    key = public_key or checkpoint.public_key
    if checkpoint.signature or public_key:
        if not checkpoint.signature:
            raise AuditFailed(f"{where}: not signed, and a public key was given")
        if not verify(key, checkpoint.shard, checkpoint.tree_size, checkpoint.root, checkpoint.signature):
            raise AuditFailed(f"{where}: its signature is not public key {key}'s over that root")
        audited.signed += 1
        audited.keys.add(key)
    audited.checkpoints += 1
    audited.last_checkpoint = checkpoint


def prove(from_size: int, root: str, checkpoint: M.CheckpointRecorded, proof: Sequence[str], to_root: str, *,
          shard: str, public_key: str | None) -> str:
    """Check that ``checkpoint`` (the server's latest) extends the tree (``from_size``, ``root``) by the
    consistency ``proof`` the server gave; a line saying so, else AuditFailed."""
    if public_key is not None and not verify(public_key, shard, checkpoint.tree_size, checkpoint.root,
                                             checkpoint.signature):
        raise AuditFailed(f"the server's latest checkpoint (tree_size {checkpoint.tree_size}) is not signed by "
                          f"public key {public_key} for shard {shard!r}")
    if to_root != checkpoint.root:
        raise AuditFailed(f"the proof ends at root {to_root}, not the checkpoint's {checkpoint.root}")
    try:
        hashes = [bytes.fromhex(h) for h in proof]
        old = bytes.fromhex(root)
    except ValueError as e:
        raise AuditFailed(f"not hex: {e}") from None
    if not verify_consistency(from_size, checkpoint.tree_size, old, bytes.fromhex(checkpoint.root), hashes):
        raise AuditFailed(f"the server's tree of {checkpoint.tree_size} records does not extend the tree of "
                          f"{from_size} records with root {root}: the journal was rewritten since")
    return (f"the server's checkpoint of {checkpoint.tree_size} records (root {checkpoint.root}) extends the "
            f"kept tree of {from_size} records (root {root})")
