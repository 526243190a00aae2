"""etf_engine.journal.merkle against RFC 9162 §2.1: published vectors, the RFC's definitions written literally
here, and verifiers of our own that share no code with the module's."""

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etf_engine.journal.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.unit

# ---------------------------------------------------------------------------------------------------------------
# Published vectors: the 8-leaf tree of certificate-transparency, as kept by github.com/transparency-dev/merkle
# at commit 417fb0c314750d94e53942e9f92e79b6d35915db: testonly/constants.go (LeafInputs, NodeHashes,
# RootHashes), cmd/proofgen/main.go (inclusionProofs, consistencyProofs: their leaf index counts from 1, ours
# from 0) and rfc6962/rfc6962_test.go (the hasher's own cases). Values only.
# ---------------------------------------------------------------------------------------------------------------

LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]

LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]

# Index = tree size.
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# (leaf index from 0, tree size, proof)
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# (old size, new size, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def unhex(hashes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


# ---------------------------------------------------------------------------------------------------------------
# RFC 9162 §2.1 written literally, with its own hashing: the references the tree is held to.
# ---------------------------------------------------------------------------------------------------------------


def h_leaf(d: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + d).digest()


def h_node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def k_of(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """§2.1.1 MTH(D[n])."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return h_leaf(d[0])
    k = k_of(len(d))
    return h_node(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """§2.1.3.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = k_of(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """§2.1.4.1 SUBPROOF(m, D[n], b)."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = k_of(len(d))
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def ref_inclusion_root(leaf: bytes, m: int, n: int, proof: list[bytes]) -> bytes | None:
    """The root that PATH(m, D[n]) = ``proof`` implies, undoing the definition from its last element (the
    sibling at the top split) down; None when the proof has the wrong length for (m, n)."""
    if n == 1:
        return None if proof else leaf
    if not proof:
        return None
    k = k_of(n)
    *inner, top = proof
    if m < k:
        below = ref_inclusion_root(leaf, m, k, inner)
        return None if below is None else h_node(below, top)
    below = ref_inclusion_root(leaf, m - k, n - k, inner)
    return None if below is None else h_node(top, below)


def ref_verify_inclusion(record: bytes, m: int, n: int, proof: list[bytes], root: bytes) -> bool:
    return 0 <= m < n and ref_inclusion_root(h_leaf(record), m, n, proof) == root


def ref_consistency_roots(m: int, n: int, b: bool, proof: list[bytes], old_root: bytes) -> tuple[bytes, bytes] | None:
    """(MTH of the old leaves in this subtree, MTH of the subtree) that SUBPROOF(m, D[n], b) = ``proof``
    implies; None when the proof has the wrong length."""
    if m == n:
        if b:  # the subtree is the whole old tree, whose root the verifier holds
            return None if proof else (old_root, old_root)
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = k_of(n)
    *inner, top = proof
    if m <= k:
        below = ref_consistency_roots(m, k, b, inner, old_root)
        return None if below is None else (below[0], h_node(below[1], top))
    below = ref_consistency_roots(m - k, n - k, False, inner, old_root)
    return None if below is None else (h_node(top, below[0]), h_node(top, below[1]))


def ref_verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    return 0 < m <= n and ref_consistency_roots(m, n, True, proof, old_root) == (old_root, new_root)


def inclusion_shape(m: int, n: int) -> list[bool]:
    """Where leaf m's path turns in a tree of n leaves: the whole of what a verifier does with (m, n)."""
    turns = []
    while n > 1:
        k = k_of(n)
        turns.append(m < k)
        m, n = (m, k) if m < k else (m - k, n - k)
    return turns


def consistency_shape(m: int, n: int) -> tuple[list[bool], bool]:
    """SUBPROOF's choices for (m, n): the whole of what a verifier does with the two sizes."""
    turns, b = [], True
    while m != n:
        k = k_of(n)
        turns.append(m <= k)
        if m <= k:
            n = k
        else:
            m, n, b = m - k, n - k, False
    return turns, b


def records(n: int, tag: str = "record") -> list[bytes]:
    return [f"{tag} {i}".encode() * (1 + i % 3) for i in range(n)]


def tree_of(leaves: list[bytes]) -> MerkleTree:
    tree = MerkleTree()
    tree.extend(leaves)
    return tree


def flipped(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


# ---------------------------------------------------------------------------------------------------------------
# The published vectors.
# ---------------------------------------------------------------------------------------------------------------


def test_hashes_match_the_rfc6962_vectors():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert HASH_SIZE == len(EMPTY_ROOT) == 32
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


def test_golden_tree_roots_and_leaves():
    one_by_one = MerkleTree()
    assert one_by_one.root() == bytes.fromhex(ROOTS[0])
    for size, record in enumerate(LEAVES, start=1):
        one_by_one.append(record)
        assert one_by_one.root().hex() == ROOTS[size]
    bulk = tree_of(LEAVES)
    assert [bulk.root(size).hex() for size in range(9)] == ROOTS
    assert [one_by_one.root(size).hex() for size in range(9)] == ROOTS
    assert [bulk.leaf(i).hex() for i in range(8)] == LEAF_HASHES


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_golden_inclusion_proofs(index, size, proof):
    tree = tree_of(LEAVES)
    assert tree.inclusion_proof(index, size) == unhex(proof)
    root = bytes.fromhex(ROOTS[size])
    assert verify_inclusion(LEAVES[index], index, size, unhex(proof), root)
    assert ref_verify_inclusion(LEAVES[index], index, size, unhex(proof), root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_golden_consistency_proofs(old, new, proof):
    tree = tree_of(LEAVES)
    assert tree.consistency_proof(old, new) == unhex(proof)
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, unhex(proof))
    assert ref_verify_consistency(old, new, old_root, new_root, unhex(proof))


# ---------------------------------------------------------------------------------------------------------------
# Every size, index and pair of a 40-leaf tree against the RFC's definitions.
# ---------------------------------------------------------------------------------------------------------------

N = 40
DATA = records(N)


@pytest.fixture(scope="module")
def tree40() -> MerkleTree:
    return tree_of(DATA)


def test_every_root_is_the_literal_mth(tree40):
    for size in range(N + 1):
        assert tree40.root(size) == mth(DATA[:size]), size
    assert tree40.root() == tree40.root(N)
    assert [tree40.leaf(i) for i in range(N)] == [h_leaf(d) for d in DATA]


def test_every_inclusion_proof_is_the_rfc_path(tree40):
    for size in range(1, N + 1):
        root = mth(DATA[:size])
        for index in range(size):
            proof = tree40.inclusion_proof(index, size)
            assert proof == path(index, DATA[:size]), (index, size)
            assert ref_verify_inclusion(DATA[index], index, size, proof, root), (index, size)
            assert verify_inclusion(DATA[index], index, size, proof, root), (index, size)


def test_every_consistency_proof_is_the_rfc_proof(tree40):
    for new in range(1, N + 1):
        new_root = mth(DATA[:new])
        for old in range(1, new + 1):
            old_root = mth(DATA[:old])
            proof = tree40.consistency_proof(old, new)
            assert proof == subproof(old, DATA[:new], True), (old, new)
            assert ref_verify_consistency(old, new, old_root, new_root, proof), (old, new)
            assert verify_consistency(old, new, old_root, new_root, proof), (old, new)


# ---------------------------------------------------------------------------------------------------------------
# The verifiers refuse what is not a proof.
# ---------------------------------------------------------------------------------------------------------------

SMALL = 20


def test_verify_inclusion_rejects_a_changed_byte_or_length(tree40):
    stranger = hashlib.sha256(b"stranger").digest()
    for size in range(1, SMALL + 1):
        root = tree40.root(size)
        for index in range(size):
            record, proof = DATA[index], tree40.inclusion_proof(index, size)
            assert verify_inclusion(record, index, size, proof, root)
            for i in range(len(record)):
                assert not verify_inclusion(flipped(record, i), index, size, proof, root)
            for j, p in enumerate(proof):
                for i in (0, 17, HASH_SIZE - 1):
                    bad = [*proof[:j], flipped(p, i), *proof[j + 1 :]]
                    assert not verify_inclusion(record, index, size, bad, root)
            for i in (0, 9, HASH_SIZE - 1):
                assert not verify_inclusion(record, index, size, proof, flipped(root, i))
            if proof:
                assert not verify_inclusion(record, index, size, proof[:-1], root)
                assert not verify_inclusion(record, index, size, proof[1:], root)
            assert not verify_inclusion(record, index, size, [*proof, stranger], root)
            assert not verify_inclusion(record, index, size, [stranger, *proof], root)
            assert not verify_inclusion(record, index, size, [*proof, root], root)


def test_verify_inclusion_binds_the_index_and_the_size(tree40):
    # A proof and a root fix the turns of the path from leaf to root, not the numbers: (index, size) pairs
    # whose paths turn alike verify the same proof (the size is tied to the root by the signed checkpoint).
    # Every other wrong index or size must fail, and most of those tried here are such.
    refused = 0
    for size in range(1, SMALL + 1):
        root = tree40.root(size)
        for index in range(size):
            proof = tree40.inclusion_proof(index, size)
            for other_index, other_size in [
                (index - 1, size),
                (index + 1, size),
                (index, size - 1),
                (index, size + 1),
                (index + 1, size + 1),
            ]:
                if not 0 <= other_index < other_size:
                    assert not verify_inclusion(DATA[index], other_index, other_size, proof, root)
                    continue
                alike = inclusion_shape(other_index, other_size) == inclusion_shape(index, size)
                assert verify_inclusion(DATA[index], other_index, other_size, proof, root) == alike
                refused += not alike
    assert refused > 500
    # The last leaf of 5 against a size of 6: its lone right-edge node becomes a left child.
    tree = tree_of(DATA[:6])
    assert not verify_inclusion(DATA[4], 4, 6, tree.inclusion_proof(4, 5), tree.root(5))


def test_verify_consistency_rejects_a_changed_byte_or_length(tree40):
    stranger = hashlib.sha256(b"stranger").digest()
    for new in range(1, SMALL + 1):
        new_root = tree40.root(new)
        for old in range(1, new + 1):
            old_root, proof = tree40.root(old), tree40.consistency_proof(old, new)
            assert verify_consistency(old, new, old_root, new_root, proof)
            for j, p in enumerate(proof):
                for i in (0, 17, HASH_SIZE - 1):
                    bad = [*proof[:j], flipped(p, i), *proof[j + 1 :]]
                    assert not verify_consistency(old, new, old_root, new_root, bad)
            for i in (0, 9, HASH_SIZE - 1):
                assert not verify_consistency(old, new, flipped(old_root, i), new_root, proof)
                assert not verify_consistency(old, new, old_root, flipped(new_root, i), proof)
            if proof:
                assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
                assert not verify_consistency(old, new, old_root, new_root, proof[1:])
            assert not verify_consistency(old, new, old_root, new_root, [*proof, stranger])
            assert not verify_consistency(old, new, old_root, new_root, [stranger, *proof])
            assert not verify_consistency(old, new, old_root, new_root, [old_root, *proof])


def test_verify_consistency_binds_the_sizes(tree40):
    # As for inclusion: sizes whose SUBPROOF makes the same choices verify the same proof; others fail.
    refused = 0
    for new in range(1, SMALL + 1):
        new_root = tree40.root(new)
        for old in range(1, new + 1):
            old_root, proof = tree40.root(old), tree40.consistency_proof(old, new)
            for other_old, other_new in [(old - 1, new), (old + 1, new), (old, new - 1), (old, new + 1)]:
                if not 0 < other_old <= other_new:
                    assert not verify_consistency(other_old, other_new, old_root, new_root, proof)
                    continue
                alike = consistency_shape(other_old, other_new) == consistency_shape(old, new)
                assert verify_consistency(other_old, other_new, old_root, new_root, proof) == alike
                refused += not alike
    assert refused > 400
    # Roots of different trees, with a proof of the right length, never pass.
    assert not verify_consistency(3, 7, tree40.root(4), tree40.root(7), tree40.consistency_proof(3, 7))


def test_verifiers_answer_false_outside_their_domain(tree40):
    root = tree40.root(8)
    proof = tree40.inclusion_proof(3, 8)
    assert verify_inclusion(DATA[3], 3, 8, proof, root)
    assert not verify_inclusion(DATA[3], 8, 8, proof, root)
    assert not verify_inclusion(DATA[3], -1, 8, proof, root)
    assert not verify_inclusion(DATA[3], 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(DATA[3], 3, 8, proof, root[:-1])
    assert not verify_inclusion(DATA[3], 3, 8, [proof[0][:-1], *proof[1:]], root)
    cproof = tree40.consistency_proof(3, 8)
    old_root = tree40.root(3)
    assert verify_consistency(3, 8, old_root, root, cproof)
    assert not verify_consistency(8, 3, root, old_root, cproof)
    assert not verify_consistency(0, 8, EMPTY_ROOT, root, [])
    assert not verify_consistency(-1, 8, EMPTY_ROOT, root, cproof)
    assert not verify_consistency(3, 8, old_root[:-1], root, cproof)
    assert not verify_consistency(3, 8, old_root, root + b"\x00", cproof)
    assert not verify_consistency(3, 8, old_root, root, [*cproof[:-1], cproof[-1] + b"\x00"])
    assert not verify_consistency(3, 8, old_root, root, [])
    # Equal sizes: the empty proof and equal roots, nothing else.
    assert verify_consistency(8, 8, root, root, [])
    assert not verify_consistency(8, 8, root, old_root, [])
    assert not verify_consistency(8, 8, root, root, [root])


# ---------------------------------------------------------------------------------------------------------------
# Building the tree.
# ---------------------------------------------------------------------------------------------------------------


def test_empty_tree():
    tree = MerkleTree()
    assert tree.size == 0
    assert tree.root() == tree.root(0) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    tree.extend([])
    assert tree.size == 0
    assert tree.root() == EMPTY_ROOT


def test_truncate_then_append_is_as_if_never_appended():
    data = records(37)
    tree = tree_of(data)
    expected = [tree.root(size) for size in range(38)]
    for cut in (36, 32, 21, 16, 1, 0):
        tree.truncate(cut)
        assert tree.size == cut
        assert [tree.root(size) for size in range(cut + 1)] == expected[: cut + 1]
        with pytest.raises(ValueError):
            tree.leaf(cut)
        # Leaves of a failed commit, then forgotten: no trace of them is left.
        tree.extend(records(11, "failed"))
        tree.truncate(cut)
        for record in data[cut:]:
            tree.append(record)
        assert [tree.root(size) for size in range(38)] == expected
        fresh = tree_of(data)
        for size in range(1, 38):
            for index in range(0, size, 5):
                assert tree.inclusion_proof(index, size) == fresh.inclusion_proof(index, size)
            assert tree.consistency_proof(max(1, size // 3), size) == fresh.consistency_proof(max(1, size // 3), size)
    assert tree._levels == tree_of(data)._levels  # the very same bytes, no stale entry beyond the size


def test_extend_is_repeated_append():
    data = records(300)
    one_by_one = MerkleTree()
    for record in data:
        one_by_one.append(record)
    for pieces in ([300], [1, 2, 3, 4, 290], [127, 1, 128, 44], [0, 255, 45]):
        tree, at = MerkleTree(), 0
        for piece in pieces:
            tree.extend(iter(data[at : at + piece]))  # any iterable, a generator included
            at += piece
        assert tree.size == 300
        assert tree._levels == one_by_one._levels
    mixed = MerkleTree()
    for i in range(0, 300, 10):
        mixed.append(data[i])
        mixed.extend(data[i + 1 : i + 10])
    assert mixed._levels == one_by_one._levels


def test_extend_across_batches():
    # More records than one batch of extend() (65,536), so that a batch ends mid-level.
    data = [i.to_bytes(4, "big") for i in range(70_001)]
    bulk = tree_of(data)
    one_by_one = MerkleTree()
    for record in data:
        one_by_one.append(record)
    assert bulk._levels == one_by_one._levels
    assert bulk.root() == one_by_one.root()
    assert bulk.root(65_537) == one_by_one.root(65_537)
    proof = bulk.inclusion_proof(65_536, 70_001)
    assert ref_verify_inclusion(data[65_536], 65_536, 70_001, proof, bulk.root())
    proof = bulk.consistency_proof(65_537, 70_001)
    assert ref_verify_consistency(65_537, 70_001, bulk.root(65_537), bulk.root(), proof)


def test_append_hash_is_append():
    data = records(19)
    by_record, by_hash = MerkleTree(), MerkleTree()
    for record in data:
        by_record.append(record)
        by_hash.append_hash(h_leaf(record))
    assert by_hash._levels == by_record._levels
    with pytest.raises(ValueError, match=r"31 bytes.*tree size 19"):
        by_hash.append_hash(b"\x00" * 31)
    assert by_hash.size == 19


def test_arguments_out_of_range_name_themselves_and_the_tree_size():
    tree = tree_of(records(5))
    cases = [
        (lambda: tree.root(6), r"root\(size=6\).*tree size 5"),
        (lambda: tree.root(-1), r"root\(size=-1\).*tree size 5"),
        (lambda: tree.leaf(5), r"leaf\(index=5\).*tree size 5"),
        (lambda: tree.leaf(-1), r"leaf\(index=-1\).*tree size 5"),
        (lambda: tree.truncate(6), r"truncate\(size=6\).*tree size 5"),
        (lambda: tree.truncate(-1), r"truncate\(size=-1\).*tree size 5"),
        (lambda: tree.inclusion_proof(5, 5), r"index=5, size=5\).*tree size 5"),
        (lambda: tree.inclusion_proof(-1, 5), r"index=-1, size=5\).*tree size 5"),
        (lambda: tree.inclusion_proof(0, 6), r"index=0, size=6\).*tree size 5"),
        (lambda: tree.inclusion_proof(0, 0), r"index=0, size=0\).*tree size 5"),
        (lambda: tree.consistency_proof(0, 5), r"old_size=0, new_size=5\).*tree size 5"),
        (lambda: tree.consistency_proof(4, 3), r"old_size=4, new_size=3\).*tree size 5"),
        (lambda: tree.consistency_proof(3, 6), r"old_size=3, new_size=6\).*tree size 5"),
        (lambda: MerkleTree().leaf(0), r"leaf\(index=0\).*tree size 0"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert tree.size == 5  # nothing refused changed the tree
    assert tree.consistency_proof(5, 5) == []
    assert tree.consistency_proof(3, 3) == []


# ---------------------------------------------------------------------------------------------------------------
# Random trees up to 300 leaves, grown and cut in random steps.
# ---------------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.sampled_from(["append", "extend", "truncate"]), st.integers(0, 120)), max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_trees(steps, seed):
    rnd = random.Random(seed)
    data: list[bytes] = []
    tree = MerkleTree()
    for op, count in steps:
        if op == "truncate":
            cut = count * len(data) // 120
            del data[cut:]
            tree.truncate(cut)
        else:
            new = [rnd.randbytes(rnd.randrange(0, 60)) for _ in range(min(count, 300 - len(data)))]
            data += new
            if op == "append":
                for record in new:
                    tree.append(record)
            else:
                tree.extend(new)
    assert tree.size == len(data)
    assert tree.root() == mth(data)
    if not data:
        return
    for _ in range(5):
        size = rnd.randint(1, len(data))
        root = mth(data[:size])
        assert tree.root(size) == root
        index = rnd.randrange(size)
        proof = tree.inclusion_proof(index, size)
        assert proof == path(index, data[:size])
        assert ref_verify_inclusion(data[index], index, size, proof, root)
        assert verify_inclusion(data[index], index, size, proof, root)
        old = rnd.randint(1, size)
        cproof = tree.consistency_proof(old, size)
        assert cproof == subproof(old, data[:size], True)
        assert ref_verify_consistency(old, size, mth(data[:old]), root, cproof)
        assert verify_consistency(old, size, mth(data[:old]), root, cproof)
