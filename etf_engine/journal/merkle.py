"""The journal's Merkle tree: RFC 9162 §2.1 hashing, roots, inclusion and consistency proofs (SPEC §21).

Leaf ``i`` is the record of seq ``i + 1``, hashed as SHA-256(0x00 ‖ record bytes as stored); an inner node is
SHA-256(0x01 ‖ left ‖ right); the tree of ``n`` leaves splits at the largest power of two below ``n``.

Why this shape. The tree keeps, for every level ``k``, the hash of each complete aligned subtree of ``2^k``
leaves that exists so far, packed 32 bytes apiece into one ``bytearray`` per level (level 0: the leaf hashes).

- Appending a leaf completes at most one new subtree per level, each hashed once from the two below it that
  sit side by side at the end of their level: O(log n) hashes at worst, fewer than two on average.
- In RFC 9162's tree of any size ``m``, every node is either such a complete aligned subtree or lies on the
  right edge of the tree, over a run of them. So the root of any past size and the proofs between any past
  sizes read stored hashes and compute only right-edge nodes: no rebuild, however old the size asked for.
  That is what checkpoints taken at many sizes, and proofs asked about any of them, need.
- Under two hashes per leaf (n leaf hashes, fewer than n inner ones) in a few buffers: a million leaves cost
  about 64 MB and a handful of Python objects, rather than millions of 32-byte ``bytes``.
- Forgetting the leaves of a failed commit is cutting each level at ``size >> k`` entries.
"""

import hashlib
from collections.abc import Iterable, Sequence
from itertools import islice

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: the hash of an empty list

_LEAF = b"\x00"
_NODE = b"\x01"
_PAIR = 2 * HASH_SIZE
_sha256 = hashlib.sha256
# The unbound method, so that bulk hashing is a chain of map() calls run in C, with no Python frame per hash.
_digest = type(_sha256()).digest
# Records hashed per batch in extend(): big enough that the per-batch work is noise, small enough that the
# batch's intermediate bytes objects stay a few MB.
_BATCH = 1 << 16


def leaf_hash(record: bytes) -> bytes:
    """SHA-256(0x00 ‖ record): the hash of a leaf (RFC 9162 §2.1.1)."""
    return _sha256(_LEAF + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right): the hash of an inner node (RFC 9162 §2.1.1)."""
    return _sha256(_NODE + left + right).digest()


def _hash_pairs(pairs: bytes) -> bytes:
    """node_hash() of each 64-byte left ‖ right in ``pairs`` (siblings lie side by side in a level), joined."""
    each = map(slice, range(0, len(pairs), _PAIR), range(_PAIR, len(pairs) + _PAIR, _PAIR))
    return b"".join(map(_digest, map(_sha256, map(_NODE.__add__, map(pairs.__getitem__, each)))))


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """Append-only RFC 9162 tree over records 0..size-1 (leaf index = seq - 1 in the journal)."""

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        # _levels[k] holds the (size >> k) complete aligned subtrees of 2^k leaves, 32 bytes each, in order.
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, record: bytes) -> None:
        """Append one record's leaf: O(log n) hashes at worst, O(1) amortized."""
        self.append_hash(_sha256(_LEAF + record).digest())

    def append_hash(self, leaf: bytes) -> None:
        """Append a leaf whose hash (SHA-256(0x00 ‖ record)) is already computed."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"append_hash: leaf hash of {len(leaf)} bytes, need {HASH_SIZE} (tree size {self._size})")
        levels = self._levels
        levels[0] += leaf
        self._size = n = self._size + 1
        k = 0
        # Each trailing zero bit of the new size is one more complete subtree that this leaf finishes: the
        # last two entries of level k, side by side, are its children.
        while not n & 1:
            node = _sha256(_NODE + levels[k][-_PAIR:]).digest()
            k += 1
            n >>= 1
            if k == len(levels):
                levels.append(bytearray())
            levels[k] += node

    def extend(self, records: Iterable[bytes]) -> None:
        """Append many records: the same tree as appending them one by one, hashed in bulk."""
        it = iter(records)
        while batch := b"".join(map(_digest, map(_sha256, map(_LEAF.__add__, islice(it, _BATCH))))):
            self._extend_leaves(batch)

    def _extend_leaves(self, leaves: bytes) -> None:
        levels = self._levels
        levels[0] += leaves
        self._size += len(leaves) // HASH_SIZE
        k = 0
        while True:
            below = levels[k]
            done = len(levels[k + 1]) // HASH_SIZE if k + 1 < len(levels) else 0
            # The pairs of level k not yet hashed into level k + 1: from the first whose parent is missing to
            # the last complete pair (an odd last entry waits for its sibling).
            start, stop = done * _PAIR, len(below) // _PAIR * _PAIR
            if start == stop:
                return
            if k + 1 == len(levels):
                levels.append(bytearray())
            levels[k + 1] += _hash_pairs(bytes(below[start:stop]))
            k += 1

    def truncate(self, size: int) -> None:
        """Forget the leaves from index ``size`` on (a commit that failed), and the subtrees they completed."""
        if not 0 <= size <= self._size:
            raise ValueError(f"truncate(size={size}): need 0 <= size <= tree size {self._size}")
        for k, level in enumerate(self._levels):
            del level[(size >> k) * HASH_SIZE :]
        self._size = size

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them), in O(log n) hashes."""
        if size is None:
            size = self._size
        elif not 0 <= size <= self._size:
            raise ValueError(f"root(size={size}): need 0 <= size <= tree size {self._size}")
        return self._mth(0, size) if size else EMPTY_ROOT

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self._size:
            raise ValueError(f"leaf(index={index}): need 0 <= index < tree size {self._size}")
        return self._node(0, index)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size]): the audit path of leaf ``index`` in the tree of ``size``."""
        if not 0 <= index < size <= self._size:
            raise ValueError(
                f"inclusion_proof(index={index}, size={size}): need 0 <= index < size <= tree size {self._size}"
            )
        path: list[bytes] = []
        start, end = 0, size
        # The RFC's recursion unrolled from the top: one sibling per level, collected root-first and handed
        # back leaf-first. Only a right sibling taken while ``end`` is still ``size`` can be a partial subtree.
        while end - start > 1:
            mid = start + _split(end - start)
            if index < mid:
                path.append(self._mth(mid, end))
                end = mid
            else:
                path.append(self._mth(start, mid))
                start = mid
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]); [] when the sizes are equal."""
        if not 0 < old_size <= new_size <= self._size:
            raise ValueError(
                f"consistency_proof(old_size={old_size}, new_size={new_size}): "
                f"need 0 < old_size <= new_size <= tree size {self._size}"
            )
        proof: list[bytes] = []
        start, end = 0, new_size
        # SUBPROOF's flag b: true while the subtree at hand starts at leaf 0, so that the old tree, once it is
        # the whole subtree, is the old root the verifier already holds and is left out.
        on_left_edge = True
        while old_size != end:
            mid = start + _split(end - start)
            if old_size <= mid:
                proof.append(self._mth(mid, end))
                end = mid
            else:
                proof.append(self._mth(start, mid))
                start = mid
                on_left_edge = False
        if not on_left_edge:
            proof.append(self._mth(start, end))
        proof.reverse()
        return proof

    def _node(self, level: int, index: int) -> bytes:
        offset = index * HASH_SIZE
        return bytes(self._levels[level][offset : offset + HASH_SIZE])

    def _mth(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a non-empty range whose start is a multiple of its length rounded up to a power
        of two, as every range in the RFC's recursion is.

        Such a range is a run of complete aligned subtrees, one per bit of its length, biggest first, and the
        RFC's split-at-the-largest-power-of-two makes its MTH their fold from the right.
        """
        n, k, pos = end - start, 0, end
        acc = b""
        while n:
            if n & 1:
                pos -= 1 << k
                peak = self._node(k, pos >> k)
                acc = _sha256(_NODE + peak + acc).digest() if acc else peak
            n >>= 1
            k += 1
        return acc


def verify_inclusion(record: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: whether ``proof`` shows ``record`` as leaf ``index`` of the tree of ``size`` with
    ``root``. Untrusted input is answered False, never an exception."""
    if not 0 <= index < size or len(root) != HASH_SIZE:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(record)
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A last node with no right sibling at this level is carried up unchanged until it is a right child.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: whether ``proof`` shows the tree of ``new_size`` with ``new_root`` extending the tree of
    ``old_size`` with ``old_root``. Untrusted input is answered False, never an exception.

    Equal sizes (outside the RFC's 0 < m < n) take the empty proof that MerkleTree.consistency_proof gives
    them, and equal roots. A size 0 is refused as consistency_proof refuses it: an empty tree proves nothing.
    """
    if not 0 < old_size <= new_size or len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if not old_size & (old_size - 1):
        # A power-of-two old tree is a complete subtree of the new one, so its root starts the path.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
