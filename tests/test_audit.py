"""The audit trail (SPEC §21 "Tamper evidence"), checked from the outside as an auditor would check it.

Nothing here uses the engine's own Merkle code: the RFC 9162 §2.1 tree, its proofs (§2.1.3.1 PATH,
§2.1.4.1 SUBPROOF) and their verification (§2.1.3.2, §2.1.4.2) are written below from the RFC's text,
and signatures are checked with the ``cryptography`` package (not the pycryptodome the engine signs with).

- Over the wire (a real server on loopback, its config naming a key made by ``etf-engine signing-key
  new``): a checkpoint after every StrikeNav and on Checkpoint(), its tree_size = its seq - 1; every
  role may read checkpoints and proofs, only an issuer may take one; the records' stored bytes (each
  InclusionProof's ``leaf``, byte for byte the journal table's ``body``) give every checkpoint's root;
  every inclusion and consistency proof is exactly the RFC's and verifies, a changed one does not;
  every refusal at its boundary; the signatures verify with the public key alone, for this shard only;
  the tree goes on across a restart and under concurrent writes.
- Offline (``etf-engine audit --data-dir``/``--dsn``, as subprocesses): a journal edited directly in
  SQLite or PostgreSQL by a careful attacker (CRC column fixed up) fails naming the first checkpoint
  after the edit and the range of records it lies in; an untouched one passes with its counts; a
  history rewritten with its roots recomputed fails on the signatures, or (re-signed with the
  attacker's own key) on the issuer's public key.
- ``etf-engine audit --prove SIZE:ROOT --server``: a root kept from an early checkpoint is extended
  by the server's tree; a wrong one is not, nor is a kept root after the journal was changed or cut
  back and the server started again on it (what the offline audit cannot see of a cut).
- ``etf-engine signing-key new|public`` and the config's ``signing_key``.

The journal of most tests (``built``): the sample funds of test_service_books, then
Monday's strike (checkpoint C1), two AdjustCash, an order, Checkpoint() (C2), Tuesday's strike (C3)
and one more AdjustCash that no checkpoint covers yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from test_service import FUND, TOKENS, Clock, Desk, config, make_ledger, refused
from test_service_books import records, serving, strike_monday
from test_service_dealing_day import MONDAY_CUTOFF, OFFICIAL, TUESDAY

from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, Tick
from etf_engine.config import ConfigError, JournalConfig, parse_config
from etf_engine.v1 import engine_pb2 as pb
from tests.pg_cluster import pg_cluster as pg_cluster  # the session fixture, for the PostgreSQL test

Code = grpc.StatusCode
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
DAY_MS = 86_400_000
TUESDAY_TICKS = [Tick(t.asset, t.currency, t.price, MONDAY_CUTOFF + DAY_MS) for t in OFFICIAL]
CHECKPOINT = "CheckpointRecorded"


# == RFC 9162 §2.1, from the RFC's text =================================================================
def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(entry: bytes) -> bytes:
    """§2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return sha256(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    """§2.1.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return sha256(b"\x01" + left + right)


def split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of *leaf hashes* (§2.1.1; the empty list: SHA-256 of nothing)."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = split(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """§2.1.3.1 PATH(m, D[n]): the inclusion proof of leaf m, the sibling nearest the leaf first."""
    n = len(leaves)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """§2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = split(n)
    if m <= k:
        return subproof(m, leaves[:k], complete) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    """§2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), 0 < m <= n."""
    return subproof(m, leaves, True)


def verify_inclusion(leaf_index: int, tree_size: int, entry_hash: bytes, inclusion_path: list[bytes],
                     root_hash: bytes) -> bool:
    """§2.1.3.2, step by step."""
    if leaf_index >= tree_size:  # 1
        return False
    fn, sn = leaf_index, tree_size - 1  # 2
    r = entry_hash  # 3
    for p in inclusion_path:  # 4
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash  # 5


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       consistency_path: list[bytes]) -> bool:
    """§2.1.4.2, step by step; first == second: an empty proof and the same root (§2.1.4.1: PROOF is {})."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not consistency_path and first_hash == second_hash
    if not consistency_path:  # 1
        return False
    proof = list(consistency_path)
    if first & (first - 1) == 0:  # 2: an exact power of 2
        proof.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # 3
    while fn & 1:  # 4
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]  # 5
    for c in proof[1:]:  # 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0  # 7


def unhex(hashes: Any) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


def flipped(hex_digest: str, at: int = 0) -> str:
    """The same hash with one hex digit changed."""
    return hex_digest[:at] + ("1" if hex_digest[at] == "0" else "0") + hex_digest[at + 1:]


def signed_message(shard: str, tree_size: int, root: str) -> bytes:
    return f"etf-engine checkpoint v1\n{shard}\n{tree_size}\n{root}".encode()


def signature_holds(public_key: str, shard: str, tree_size: int, root: str, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(signature), signed_message(shard, tree_size, root))
    except (InvalidSignature, ValueError):
        return False
    return True


# the verifier itself, against the RFC's own proofs: else a verifier that says yes to all would pass below
@pytest.mark.unit
def test_the_verifier_accepts_the_rfcs_proofs_and_nothing_else() -> None:
    entries = [f"record {i}".encode() for i in range(33)]
    leaves = [leaf_hash(e) for e in entries]
    assert mth(leaves[:1]) == sha256(b"\x00record 0")
    assert mth(leaves[:2]) == sha256(b"\x01" + leaves[0] + leaves[1])
    assert mth(leaves[:3]) == node_hash(node_hash(leaves[0], leaves[1]), leaves[2])
    for n in range(1, len(leaves) + 1):
        tree, root = leaves[:n], mth(leaves[:n])
        for i in range(n):
            proof = path(i, tree)
            assert verify_inclusion(i, n, leaves[i], proof, root), (i, n)
            assert not verify_inclusion(i, n, leaf_hash(b"other"), proof, root)
            assert not verify_inclusion(i, n, leaves[i], proof, sha256(root))
            assert not verify_inclusion(n, n, leaves[i], proof, root)
            assert not verify_inclusion(i, n, leaves[i], proof + [leaves[0]], root)
            if n > 1:
                assert not verify_inclusion(i ^ 1 if (i ^ 1) < n else i - 1, n, leaves[i], proof, root)
            for j in range(len(proof)):
                assert not verify_inclusion(i, n, leaves[i], proof[:j] + [sha256(proof[j])] + proof[j + 1:], root)
        for m in range(1, n + 1):
            proof, old = consistency(m, tree), mth(leaves[:m])
            assert verify_consistency(m, n, old, root, proof), (m, n)
            assert not verify_consistency(m, n, sha256(old), root, proof)
            assert not verify_consistency(m, n, old, sha256(root), proof)
            if m < n:
                assert proof
                assert not verify_consistency(m, n, old, root, proof[:-1])
                assert not verify_consistency(m, n, old, root, proof + [old])
                for j in range(len(proof)):
                    assert not verify_consistency(m, n, old, root, proof[:j] + [sha256(proof[j])] + proof[j + 1:])
                if m > 1:
                    assert not verify_consistency(m - 1, n, old, root, proof)
    # RFC 9162 §2.1.5's example tree of 7 leaves d0..d6: a few of its proofs, by name
    d7 = leaves[:7]
    ab, cd, ef = node_hash(d7[0], d7[1]), node_hash(d7[2], d7[3]), node_hash(d7[4], d7[5])
    assert path(0, d7) == [d7[1], cd, node_hash(ef, d7[6])]  # PATH(0): [b, h, l]
    assert path(3, d7) == [d7[2], ab, node_hash(ef, d7[6])]  # PATH(3): [c, g, l]
    assert path(4, d7) == [d7[5], d7[6], node_hash(ab, cd)]  # PATH(4): [f, j, k]
    assert path(6, d7) == [ef, node_hash(ab, cd)]  # PATH(6): [i, k]
    assert consistency(3, d7) == [d7[2], d7[3], ab, node_hash(ef, d7[6])]  # PROOF(3): [c, d, g, l]
    assert consistency(4, d7) == [node_hash(ef, d7[6])]  # PROOF(4): [l]
    assert consistency(6, d7) == [ef, d7[6], node_hash(ab, cd)]  # PROOF(6): [i, j, k]


# == keys and CLI ========================================================================================
def cli(*args: str | Path, token: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(ENV)
    env.pop("ETF_ENGINE_TOKEN", None)
    if token is not None:
        env["ETF_ENGINE_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "etf_engine.cli", *map(str, args)], env=env, text=True,
                          capture_output=True, timeout=timeout)


def no_traceback(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


@dataclass(frozen=True)
class Key:
    path: Path
    public: str  # hex, as `etf-engine signing-key new` printed it


def new_key(path: Path) -> Key:
    made = no_traceback(cli("signing-key", "new", path))
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip().splitlines()[-1]
    assert re.fullmatch("[0-9a-f]{64}", public), made.stdout
    return Key(path, public)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    return new_key(tmp_path_factory.mktemp("keys") / "checkpoint.pem")


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    return new_key(tmp_path_factory.mktemp("keys") / "other.pem")


# == journal helpers =====================================================================================
@dataclass(frozen=True)
class Record:
    seq: int
    type: str
    at: int
    body: bytes  # the event as StreamEvents shows it (JSON; not necessarily the bytes stored)
    stored: bytes = b""  # the record's bytes as stored (read from the journal itself once it is stopped)


def checkpoint_fields(body_bytes: bytes) -> dict[str, Any]:
    """A checkpoint record's fields (a field at its default, "" or 0, may be left out of the JSON)."""
    body = json.loads(body_bytes)
    assert body["type"] == CHECKPOINT, body
    return {"tree_size": body.get("tree_size", 0), **{name: body.get(name, "") for name in (
        "root", "shard", "signature", "public_key")}}


def all_records(client: EtfClient, after: int = 0) -> list[Record]:
    """Every record now journaled after ``after``, from StreamEvents (gapless, in order)."""
    got = [Record(r.seq, r.type, r.at, r.body.encode()) for r in records(client, after)]
    assert [r.seq for r in got] == list(range(after + 1, after + 1 + len(got)))
    return got


def tuesday(desk: Desk) -> pb.StrikeNavReply:
    desk.issuer.advance_clock(MONDAY_CUTOFF + DAY_MS)
    return desk.issuer.strike_nav(FUND, TUESDAY, TUESDAY_TICKS)


def grow(desk: Desk) -> None:
    """After the sample: C1 (Monday's strike), records, C2 (Checkpoint()), C3 (Tuesday's strike), a record."""
    strike_monday(desk)
    desk.issuer.adjust_cash(FUND, "10.00", "audit-a")
    desk.issuer.adjust_cash(FUND, "-10.00", "audit-b")
    desk.ap1.submit_order(FUND, "CREATE", 1, "audit-order")
    desk.issuer.checkpoint()
    tuesday(desk)
    desk.issuer.adjust_cash(FUND, "1.00", "audit-tail")


@dataclass(frozen=True)
class Built:
    data_dir: Path
    records: list[Record]
    checkpoints: list[pb.Checkpoint]  # C1, C2, C3 as GetCheckpoint answered them

    def seq_of(self, needle: bytes) -> int:
        return next(r.seq for r in self.records if needle in r.stored)

    @property
    def checkpoint_seqs(self) -> list[int]:
        return [r.seq for r in self.records if r.type == CHECKPOINT]


def sqlite_bodies(data_dir: Path) -> list[tuple[int, bytes]]:
    db = sqlite3.connect(data_dir / "journal.sqlite3")
    try:
        return [(seq, bytes(body)) for seq, body in db.execute("SELECT seq, body FROM events ORDER BY seq")]
    finally:
        db.close()


def build(data_dir: Path, key: Key | None, **overrides: Any) -> Built:
    extra = {} if key is None else {"signing_key": key.path}
    with serving(data_dir, **extra, **overrides) as desk:
        grow(desk)
        journal = all_records(desk.observer)
        checkpoints = [desk.observer.get_checkpoint(r.seq - 1) for r in journal if r.type == CHECKPOINT]
    stored = sqlite_bodies(data_dir)
    assert [seq for seq, _ in stored] == [r.seq for r in journal]
    journal = [Record(r.seq, r.type, r.at, r.body, body) for r, (_, body) in zip(journal, stored, strict=True)]
    for r in journal:  # the stored record is the event StreamEvents shows, perhaps in another form
        assert json.loads(r.stored)["type"] == r.type
    return Built(data_dir, journal, checkpoints)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, key: Key) -> Built:
    """The journal described in the module's docstring, signed with ``key``, its server stopped."""
    return build(tmp_path_factory.mktemp("built") / "data", key)


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("unsigned") / "data", None)


@contextmanager
def restarted(data_dir: Path, key: Key | None) -> Iterator[Desk]:
    """A server on an existing data directory (no sample loaded)."""
    extra = {} if key is None else {"signing_key": key.path}
    clock = Clock()
    with BackgroundServer(config(data_dir=data_dir, test_clock=True, **extra), ledger=make_ledger(),
                          clock=clock) as server:
        desk = Desk(server, clock)
        try:
            yield desk
        finally:
            desk.close()


@pytest.fixture(scope="module")
def live(built: Built, key: Key, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A server restarted on a copy of ``built``'s journal: read-only tests ask it."""
    copy = tmp_path_factory.mktemp("live") / "data"
    shutil.copytree(built.data_dir, copy)
    with restarted(copy, key) as desk:
        yield desk


def copy_of(built: Built, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(built.data_dir, target)
    return target


def tamper_sqlite(data_dir: Path, seq: int, change: Callable[[bytes], bytes]) -> bytes:
    """Change record ``seq``'s body in journal.sqlite3 and fix its CRC, as a careful attacker would."""
    db = sqlite3.connect(data_dir / "journal.sqlite3")
    try:
        with db:
            (body,) = db.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
            new = change(bytes(body))
            assert new != bytes(body)
            db.execute("UPDATE events SET body = ?, crc = ? WHERE seq = ?", (new, zlib.crc32(new), seq))
    finally:
        db.close()
    return new


def flip_byte(needle: bytes, offset: int = 0) -> Callable[[bytes], bytes]:
    """Flip the case bit of one byte (a letter stays a letter: the JSON stays valid)."""
    def change(body: bytes) -> bytes:
        at = body.index(needle) + offset
        out = bytearray(body)
        out[at] ^= 0x20
        return bytes(out)
    return change


def replace_once(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(body: bytes) -> bytes:
        assert body.count(old) == 1, body
        return body.replace(old, new)
    return change


FAILED = re.compile(r"FAILED: checkpoint at record (\d+) \(tree_size (\d+)\): ")
RANGE = re.compile(r"a record among (\d+)\.\.(\d+)")


def audit_failed(result: subprocess.CompletedProcess[str], *, root: bool = True) -> tuple[int, int, int, int]:
    """(checkpoint's seq, its tree_size, first, last record of the range) from a failed audit, in one line.
    ``root``: the checkpoint's root does not match, so the message names the range of records that
    changed; else (a signature, a tree_size) the range is (0, 0)."""
    no_traceback(result)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    found = FAILED.search(result.stderr)
    assert found, result.stderr
    seq, size = map(int, found.groups())
    within = RANGE.search(result.stderr)
    if not root:
        return seq, size, 0, 0
    assert within, result.stderr
    first, last = map(int, within.groups())
    return seq, size, first, last


def counts(summary: str) -> dict[str, int]:
    """The numbers of an audit's summary: records, checkpoints, signed, pending (after the last checkpoint)."""
    found = {}
    for name, pattern in (("records", r"\brecords (\d+)"), ("checkpoints", r"\bcheckpoints (\d+)"),
                          ("signed", r"\(signed (\d+)\)"),
                          ("pending", r"(\d+) record\(s\) after the last checkpoint not yet checkpointed")):
        match = re.search(pattern, summary)
        if match:
            found[name] = int(match.group(1))
    return found


# == over the wire =========================================================================================
def test_a_checkpoint_is_journaled_after_every_strike_and_on_checkpoint(tmp_path: Path, key: Key) -> None:
    with serving(tmp_path, signing_key=key.path) as desk:
        for reader in (desk.observer, desk.ap1, desk.issuer):
            assert "checkpoint" in refused(lambda r=reader: r.get_checkpoint(), Code.NOT_FOUND).lower()
        before = all_records(desk.observer)
        assert CHECKPOINT not in [r.type for r in before]

        strike_monday(desk)
        after_strike = all_records(desk.observer, len(before))
        types = [r.type for r in after_strike]
        assert types[-1] == CHECKPOINT and types.count(CHECKPOINT) == 1, types
        assert types[-2] == "NavStruck", types  # the strike's own record comes first
        c1 = after_strike[-1]
        fields = checkpoint_fields(c1.body)
        assert fields["tree_size"] == c1.seq - 1
        assert (fields["shard"], fields["public_key"]) == ("", key.public)
        latest = desk.ap1.get_checkpoint()
        assert (latest.tree_size, latest.root, latest.shard, latest.signature, latest.public_key) == (
            fields["tree_size"], fields["root"], "", fields["signature"], key.public)
        assert re.fullmatch("[0-9a-f]{64}", latest.root) and re.fullmatch("[0-9a-f]{128}", latest.signature)
        assert c1.at == latest.at
        assert desk.observer.get_checkpoint(latest.tree_size) == latest

        desk.issuer.adjust_cash(FUND, "5.00", "between")
        taken = desk.issuer.checkpoint()
        after_call = all_records(desk.observer, c1.seq)
        assert len(after_call) == 2 and after_call[0].type != CHECKPOINT == after_call[1].type, after_call
        c2 = after_call[-1]
        assert taken.tree_size == c2.seq - 1 == c1.seq + 1
        assert checkpoint_fields(c2.body) == {"tree_size": taken.tree_size, "root": taken.root, "shard": "",
                                              "signature": taken.signature, "public_key": key.public}
        assert desk.observer.get_checkpoint() == taken == desk.ap1.get_checkpoint(taken.tree_size)
        assert desk.observer.get_checkpoint(latest.tree_size) == latest  # the older one stays readable

        # a Checkpoint() right after a checkpoint covers that checkpoint record too
        again = desk.issuer.checkpoint()
        assert again.tree_size == taken.tree_size + 1 and again.root != taken.root

        tuesday(desk)
        after_tuesday = all_records(desk.observer, again.tree_size + 1)
        assert after_tuesday[-1].type == CHECKPOINT and [r.type for r in after_tuesday].count(CHECKPOINT) == 1
        assert desk.observer.get_checkpoint().tree_size == after_tuesday[-1].seq - 1


def test_every_role_reads_checkpoints_and_proofs_only_an_issuer_takes_one(live: Desk) -> None:
    latest = live.issuer.get_checkpoint()
    for reader in (live.ap1, live.ap2, live.observer, live.issuer):
        assert reader.get_checkpoint() == latest
        assert reader.get_inclusion_proof(1).root == latest.root
        assert reader.get_consistency_proof(1).to_root == latest.root
    for who in ("ap1", "observer"):
        details = refused(lambda w=who: live.clients[w].checkpoint(), Code.PERMISSION_DENIED)
        assert details
    assert live.issuer.get_checkpoint() == latest  # nothing was journaled
    unknown = EtfClient(live.target, "not-a-token")
    try:
        refused(lambda: unknown.get_checkpoint(), Code.UNAUTHENTICATED)
        refused(lambda: unknown.get_inclusion_proof(1), Code.UNAUTHENTICATED)
    finally:
        unknown.close()


def test_a_restarted_server_answers_the_checkpoints_it_journaled(built: Built, live: Desk) -> None:
    assert [live.observer.get_checkpoint(c.tree_size) for c in built.checkpoints] == built.checkpoints
    assert live.observer.get_checkpoint() == built.checkpoints[-1]
    assert [c.tree_size + 1 for c in built.checkpoints] == built.checkpoint_seqs


def test_the_roots_are_the_merkle_roots_of_the_stored_records(built: Built, live: Desk) -> None:
    latest = live.observer.get_checkpoint()
    n = latest.tree_size
    proofs = [live.observer.get_inclusion_proof(seq, n) for seq in range(1, n + 1)]
    entries = [p.leaf for p in proofs]
    # the leaves are the records' bytes as stored, byte for byte
    assert entries == [r.stored for r in built.records[:n]]
    leaves = [leaf_hash(e) for e in entries]
    for c in built.checkpoints:
        assert mth(leaves[:c.tree_size]).hex() == c.root, c.tree_size
        # and the checkpoint record itself holds what GetCheckpoint says
        assert checkpoint_fields(built.records[c.tree_size].stored) == {
            "tree_size": c.tree_size, "root": c.root, "shard": "", "signature": c.signature,
            "public_key": c.public_key}


def test_every_inclusion_proof_is_the_rfcs_and_verifies(built: Built, live: Desk) -> None:
    leaves = [leaf_hash(r.stored) for r in built.records]
    for c in built.checkpoints:
        for seq in range(1, c.tree_size + 1):
            proof = live.ap1.get_inclusion_proof(seq, c.tree_size)
            assert (proof.seq, proof.leaf_index, proof.tree_size, proof.root) == (seq, seq - 1, c.tree_size, c.root)
            assert unhex(proof.proof) == path(seq - 1, leaves[:c.tree_size]), (seq, c.tree_size)
            assert verify_inclusion(seq - 1, c.tree_size, leaf_hash(proof.leaf), unhex(proof.proof),
                                    bytes.fromhex(c.root)), (seq, c.tree_size)
    # tree_size 0: the latest checkpoint's
    latest = built.checkpoints[-1]
    assert live.observer.get_inclusion_proof(3) == live.observer.get_inclusion_proof(3, latest.tree_size)


def test_proofs_in_trees_of_sizes_no_checkpoint_has(built: Built, live: Desk) -> None:
    """The tree is every record the journal holds: a size between checkpoints, or past the latest one up
    to the last record, has the RFC's root of that many records (GetCheckpoint of it: NOT_FOUND)."""
    leaves = [leaf_hash(r.stored) for r in built.records]
    latest, total = built.checkpoints[-1], len(built.records)
    sizes = [built.checkpoints[0].tree_size + 2, latest.tree_size + 1, total]
    assert not set(sizes) & {c.tree_size for c in built.checkpoints} and total > latest.tree_size + 1
    for size in sizes:
        for seq in (1, size // 2, size):
            proof = live.observer.get_inclusion_proof(seq, size)
            assert proof.root == mth(leaves[:size]).hex()
            assert unhex(proof.proof) == path(seq - 1, leaves[:size])
            assert verify_inclusion(seq - 1, size, leaf_hash(proof.leaf), unhex(proof.proof),
                                    bytes.fromhex(proof.root))
        grown = live.observer.get_consistency_proof(latest.tree_size if size > latest.tree_size else 1, size)
        assert grown.to_root == mth(leaves[:size]).hex()
        assert verify_consistency(grown.from_size, size, bytes.fromhex(grown.from_root), bytes.fromhex(grown.to_root),
                                  unhex(grown.proof))
        assert "tree_size" in refused(lambda s=size: live.observer.get_checkpoint(s), Code.NOT_FOUND)


def test_consistency_proofs_between_every_pair_of_checkpoints_verify(built: Built, live: Desk) -> None:
    leaves = [leaf_hash(r.stored) for r in built.records]
    for old in built.checkpoints:
        for new in built.checkpoints:
            if old.tree_size > new.tree_size:
                continue
            proof = live.observer.get_consistency_proof(old.tree_size, new.tree_size)
            assert (proof.from_size, proof.to_size, proof.from_root, proof.to_root) == (
                old.tree_size, new.tree_size, old.root, new.root)
            assert unhex(proof.proof) == consistency(old.tree_size, leaves[:new.tree_size])
            assert verify_consistency(old.tree_size, new.tree_size, bytes.fromhex(old.root), bytes.fromhex(new.root),
                                      unhex(proof.proof)), (old.tree_size, new.tree_size)
    # from every size at all to the latest checkpoint (to_size 0): what an auditor who kept any root asks
    latest = built.checkpoints[-1]
    for m in range(1, latest.tree_size + 1):
        proof = live.ap1.get_consistency_proof(m)
        assert (proof.from_size, proof.to_size, proof.to_root) == (m, latest.tree_size, latest.root)
        assert proof.from_root == mth(leaves[:m]).hex(), m
        assert verify_consistency(m, latest.tree_size, mth(leaves[:m]), bytes.fromhex(latest.root),
                                  unhex(proof.proof)), m


def test_a_changed_proof_leaf_or_root_does_not_verify(built: Built, live: Desk) -> None:
    latest = built.checkpoints[-1]
    n, root = latest.tree_size, bytes.fromhex(latest.root)
    seq = 5
    proof = live.observer.get_inclusion_proof(seq, n)
    hashes = list(proof.proof)
    assert len(hashes) >= 3
    entry = leaf_hash(proof.leaf)
    assert verify_inclusion(seq - 1, n, entry, unhex(hashes), root)
    for i in range(len(hashes)):
        for at in (0, 63):
            bad = hashes[:i] + [flipped(hashes[i], at)] + hashes[i + 1:]
            assert not verify_inclusion(seq - 1, n, entry, unhex(bad), root), (i, at)
    changed = bytearray(proof.leaf)
    changed[len(changed) // 2] ^= 0x01
    assert not verify_inclusion(seq - 1, n, leaf_hash(bytes(changed)), unhex(hashes), root)
    assert not verify_inclusion(seq - 1, n, sha256(proof.leaf), unhex(hashes), root)  # no 0x00 prefix
    assert not verify_inclusion(seq, n, entry, unhex(hashes), root)
    assert not verify_inclusion(seq - 1, n, entry, unhex(hashes), bytes.fromhex(flipped(latest.root)))

    first = built.checkpoints[0]
    cons = live.observer.get_consistency_proof(first.tree_size, n)
    hashes = list(cons.proof)
    old = bytes.fromhex(first.root)
    assert verify_consistency(first.tree_size, n, old, root, unhex(hashes))
    for i in range(len(hashes)):
        bad = hashes[:i] + [flipped(hashes[i], 17)] + hashes[i + 1:]
        assert not verify_consistency(first.tree_size, n, old, root, unhex(bad)), i
    assert not verify_consistency(first.tree_size, n, bytes.fromhex(flipped(first.root)), root, unhex(hashes))
    assert not verify_consistency(first.tree_size, n, old, bytes.fromhex(flipped(latest.root)), unhex(hashes))


def test_every_refusal_at_its_boundary(built: Built, live: Desk) -> None:
    v = live.observer
    first, latest = built.checkpoints[0], built.checkpoints[-1]
    t, n, total = first.tree_size, latest.tree_size, len(built.records)

    def no(call: Callable[[], object], code: grpc.StatusCode, field: str) -> None:
        details = refused(call, code)
        assert field in details, (code, field, details)
        assert len(details.encode()) <= 1024

    # GetCheckpoint
    no(lambda: v.get_checkpoint(-1), Code.INVALID_ARGUMENT, "tree_size")
    no(lambda: v.get_checkpoint(t - 1), Code.NOT_FOUND, "tree_size")  # within the tree, no checkpoint there
    no(lambda: v.get_checkpoint(t + 1), Code.NOT_FOUND, "tree_size")
    no(lambda: v.get_checkpoint(total + 1), Code.OUT_OF_RANGE, "tree_size")
    no(lambda: v.get_checkpoint(2**62), Code.OUT_OF_RANGE, "tree_size")
    assert v.get_checkpoint(t) == first and v.get_checkpoint(n) == latest

    # GetInclusionProof
    no(lambda: v.get_inclusion_proof(0), Code.INVALID_ARGUMENT, "seq")
    no(lambda: v.get_inclusion_proof(-1), Code.INVALID_ARGUMENT, "seq")
    no(lambda: v.get_inclusion_proof(1, -1), Code.INVALID_ARGUMENT, "tree_size")
    no(lambda: v.get_inclusion_proof(t + 1, t), Code.OUT_OF_RANGE, "seq")
    no(lambda: v.get_inclusion_proof(n + 1), Code.OUT_OF_RANGE, "seq")  # the latest checkpoint's own record
    no(lambda: v.get_inclusion_proof(1, total + 1), Code.OUT_OF_RANGE, "tree_size")
    assert v.get_inclusion_proof(t, t).seq == t and v.get_inclusion_proof(1, 1).proof == []
    assert v.get_inclusion_proof(n).seq == n

    # GetConsistencyProof
    no(lambda: v.get_consistency_proof(0, t), Code.INVALID_ARGUMENT, "from_size")
    no(lambda: v.get_consistency_proof(-1, t), Code.INVALID_ARGUMENT, "from_size")
    no(lambda: v.get_consistency_proof(1, -1), Code.INVALID_ARGUMENT, "to_size")
    # a size beyond the tree asked about (here to_size's): OUT_OF_RANGE, as seq beyond tree_size above
    no(lambda: v.get_consistency_proof(t + 1, t), Code.OUT_OF_RANGE, "from_size")
    no(lambda: v.get_consistency_proof(n + 1), Code.OUT_OF_RANGE, "from_size")  # beyond the latest's
    no(lambda: v.get_consistency_proof(1, total + 1), Code.OUT_OF_RANGE, "to_size")
    same = v.get_consistency_proof(t, t)
    assert (list(same.proof), same.from_root, same.to_root) == ([], first.root, first.root)
    assert v.get_consistency_proof(1, t).from_size == 1


def test_no_checkpoint_yet(tmp_path: Path) -> None:
    with serving(tmp_path) as desk:
        for call in (lambda: desk.observer.get_checkpoint(), lambda: desk.observer.get_inclusion_proof(1),
                     lambda: desk.observer.get_consistency_proof(1)):
            assert "checkpoint" in refused(call, Code.NOT_FOUND).lower()


def test_signatures_verify_with_the_public_key_alone_and_for_this_shard_only(built: Built, key: Key,
                                                                              other_key: Key) -> None:
    assert len(built.checkpoints) == 3
    for c in built.checkpoints:
        assert (c.shard, c.public_key) == ("", key.public)
        assert signature_holds(key.public, "", c.tree_size, c.root, c.signature)
        assert not signature_holds(key.public, "main", c.tree_size, c.root, c.signature)
        assert not signature_holds(key.public, "", c.tree_size + 1, c.root, c.signature)
        assert not signature_holds(key.public, "", c.tree_size, flipped(c.root), c.signature)
        assert not signature_holds(other_key.public, "", c.tree_size, c.root, c.signature)
        assert not signature_holds(key.public, "", c.tree_size, c.root, flipped(c.signature, 5))


def test_without_a_signing_key_checkpoints_are_unsigned(unsigned: Built) -> None:
    assert [c.tree_size + 1 for c in unsigned.checkpoints] == unsigned.checkpoint_seqs
    for c in unsigned.checkpoints:
        assert (c.signature, c.public_key, c.shard) == ("", "", "")
    leaves = [leaf_hash(r.stored) for r in unsigned.records]
    assert [mth(leaves[:c.tree_size]).hex() for c in unsigned.checkpoints] == [c.root for c in unsigned.checkpoints]


def test_a_key_made_elsewhere_signs_too(tmp_path: Path) -> None:
    """Any Ed25519 key as PKCS#8 PEM will do, not only one the engine made."""
    private = Ed25519PrivateKey.generate()
    pem = tmp_path / "made-elsewhere.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pem.chmod(0o600)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    with serving(tmp_path / "data", signing_key=pem) as desk:
        c = desk.issuer.checkpoint()
    assert c.public_key == public
    assert signature_holds(public, "", c.tree_size, c.root, c.signature)


def test_the_tree_goes_on_after_a_restart(built: Built, key: Key, tmp_path: Path) -> None:
    """A server started again on the journal (from its snapshot) hashes the records under the snapshot
    too: its next checkpoint is the root of every record, and extends the ones before the restart."""
    data = copy_of(built, tmp_path)
    with restarted(data, key) as desk:
        desk.issuer.adjust_cash(FUND, "2.00", "after the restart")
        taken = desk.issuer.checkpoint()
        proofs = [desk.observer.get_consistency_proof(c.tree_size, taken.tree_size) for c in built.checkpoints]
    stored = [body for _, body in sqlite_bodies(data)]
    assert taken.tree_size == len(built.records) + 1 == len(stored) - 1
    leaves = [leaf_hash(b) for b in stored]
    assert taken.root == mth(leaves[:taken.tree_size]).hex()
    assert signature_holds(key.public, "", taken.tree_size, taken.root, taken.signature)
    for c, proof in zip(built.checkpoints, proofs, strict=True):
        assert verify_consistency(c.tree_size, taken.tree_size, bytes.fromhex(c.root), bytes.fromhex(taken.root),
                                  unhex(proof.proof))
    result = no_traceback(cli("audit", "--data-dir", data, "--public-key", key.public))
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout) == {"records": len(stored), "checkpoints": 4, "signed": 4, "pending": 0}


def test_checkpoints_among_concurrent_writes(tmp_path: Path, key: Key) -> None:
    """Checkpoint() called while other calls write (whatever the engine commits together): every
    checkpoint still covers exactly the records before it, and its root is theirs."""
    with serving(tmp_path / "data", signing_key=key.path) as desk:
        errors: list[BaseException] = []
        taken: list[pb.Checkpoint] = []

        def writer(client: EtfClient, n: int) -> None:
            try:
                for i in range(n):
                    client.adjust_cash(FUND, "1.00" if i % 2 else "-1.00", "load")
            except BaseException as e:
                errors.append(e)

        def checkpointer(client: EtfClient, n: int) -> None:
            try:
                taken.extend(client.checkpoint() for _ in range(n))
            except BaseException as e:
                errors.append(e)

        clients = [EtfClient(desk.target, TOKENS[who]) for who in ("issuer", "issuer", "issuer2", "issuer2")]
        threads = [threading.Thread(target=writer, args=(clients[0], 60)),
                   threading.Thread(target=writer, args=(clients[1], 60)),
                   threading.Thread(target=checkpointer, args=(clients[2], 15)),
                   threading.Thread(target=checkpointer, args=(clients[3], 15))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for client in clients:
            client.close()
        assert not errors, errors
        journal = all_records(desk.observer)
        latest = desk.observer.get_checkpoint()
    stored = [body for _, body in sqlite_bodies(tmp_path / "data")]
    assert len(stored) == len(journal)
    leaves = [leaf_hash(b) for b in stored]
    found = [checkpoint_fields(b) | {"seq": i} for i, b in enumerate(stored, 1) if json.loads(b)["type"] == CHECKPOINT]
    assert len(found) == 30
    for f in found:
        assert f["tree_size"] == f["seq"] - 1
        assert f["root"] == mth(leaves[:f["tree_size"]]).hex(), f
        assert signature_holds(key.public, "", f["tree_size"], f["root"], f["signature"])
    # every reply was a checkpoint that is in the journal, the latest is the last one journaled
    by_size = {f["tree_size"]: f for f in found}
    for c in taken:
        assert by_size[c.tree_size]["root"] == c.root
    assert latest.tree_size == found[-1]["tree_size"]
    result = no_traceback(cli("audit", "--data-dir", tmp_path / "data", "--public-key", key.public))
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout)["checkpoints"] == 30


# == offline audit of a SQLite journal =======================================================================
def test_an_untouched_journal_passes_with_its_counts(built: Built, key: Key, unsigned: Built) -> None:
    for extra in ((), ("--public-key", key.public)):
        result = no_traceback(cli("audit", "--data-dir", built.data_dir, *extra))
        assert result.returncode == 0, result.stderr
        found = counts(result.stdout)
        latest = built.checkpoints[-1].tree_size
        assert found.get("records") == len(built.records), result.stdout
        assert found.get("checkpoints") == 3, result.stdout
        assert found.get("pending") == len(built.records) - (latest + 1), result.stdout
    result = no_traceback(cli("audit", "--data-dir", unsigned.data_dir))
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout).get("checkpoints") == 3


def test_a_changed_old_record_fails_naming_the_first_checkpoint_after_it(built: Built, tmp_path: Path) -> None:
    data = copy_of(built, tmp_path)
    seq = built.seq_of(b"Harbour Custody")  # RegisterCustodian C1, early in the sample
    c1 = built.checkpoints[0]
    assert seq <= c1.tree_size
    tamper_sqlite(data, seq, flip_byte(b"Harbour Custody"))
    at, size, first, last = audit_failed(cli("audit", "--data-dir", data))
    assert (at, size) == (c1.tree_size + 1, c1.tree_size)
    assert (first, last) == (1, c1.tree_size)
    assert first <= seq <= last


def test_a_changed_record_between_checkpoints_names_that_range(built: Built, tmp_path: Path) -> None:
    data = copy_of(built, tmp_path)
    c1, c2 = built.checkpoints[:2]
    seq = built.seq_of(b"audit-order")
    assert c1.tree_size + 1 < seq <= c2.tree_size
    tamper_sqlite(data, seq, flip_byte(b"audit-order"))
    at, size, first, last = audit_failed(cli("audit", "--data-dir", data))
    assert (at, size, first, last) == (c2.tree_size + 1, c2.tree_size, c1.tree_size + 1, c2.tree_size)


def test_a_changed_checkpoint_record_outside_its_root_is_caught_by_the_next(built: Built, tmp_path: Path) -> None:
    """C1's own time is not under C1's root or signature, but it is a record of C2's tree."""
    data = copy_of(built, tmp_path)
    c1, c2 = built.checkpoints[:2]
    at_ms = str(c1.at).encode()
    tamper_sqlite(data, c1.tree_size + 1, replace_once(b'"at":' + at_ms, b'"at":' + str(c1.at - 1).encode()))
    at, size, first, last = audit_failed(cli("audit", "--data-dir", data))
    assert (at, size) == (c2.tree_size + 1, c2.tree_size)
    assert first <= c1.tree_size + 1 <= last and last == c2.tree_size


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_changed_root_in_a_checkpoint_record_fails_naming_it(built: Built, unsigned: Built, tmp_path: Path,
                                                               signed: bool) -> None:
    source = built if signed else unsigned
    data = copy_of(source, tmp_path)
    c2 = source.checkpoints[1]
    tamper_sqlite(data, c2.tree_size + 1, replace_once(c2.root.encode(), flipped(c2.root, 40).encode()))
    at, size, first, last = audit_failed(cli("audit", "--data-dir", data))
    assert (at, size) == (c2.tree_size + 1, c2.tree_size)


def test_a_rewritten_history_with_roots_recomputed_fails_on_the_signature(built: Built, key: Key,
                                                                          tmp_path: Path) -> None:
    """The attacker changes a record and recomputes every later checkpoint's root: the roots hold now,
    but the signatures (which the attacker cannot make) do not."""
    data = copy_of(built, tmp_path)
    seq = built.seq_of(b"Harbour Custody")
    bodies = [r.stored for r in built.records]
    bodies[seq - 1] = tamper_sqlite(data, seq, flip_byte(b"Harbour Custody"))
    for c in built.checkpoints:
        root = mth([leaf_hash(b) for b in bodies[:c.tree_size]]).hex()
        bodies[c.tree_size] = tamper_sqlite(data, c.tree_size + 1, replace_once(c.root.encode(), root.encode()))
    result = cli("audit", "--data-dir", data)
    c1 = built.checkpoints[0]
    assert audit_failed(result, root=False)[:2] == (c1.tree_size + 1, c1.tree_size)
    assert "signature" in result.stderr
    # without the signatures (a journal whose signatures were stripped), the public key is still required
    for c in built.checkpoints:
        fields = checkpoint_fields(bodies[c.tree_size])
        bodies[c.tree_size] = tamper_sqlite(data, c.tree_size + 1,
                                            replace_once(fields["signature"].encode(), b""))
    stripped = cli("audit", "--data-dir", data, "--public-key", key.public)
    assert audit_failed(stripped, root=False)[0] == c1.tree_size + 1


def test_a_history_re_signed_with_the_attackers_key_fails_only_against_the_issuers(built: Built, key: Key,
                                                                                 tmp_path: Path) -> None:
    """The attacker recomputes the roots and signs them with a key of its own, whose public key it
    writes into the records: the journal is consistent in itself, and only the issuer's public key,
    which the auditor holds, tells."""
    data = copy_of(built, tmp_path)
    forger = Ed25519PrivateKey.generate()
    forged_public = forger.public_key().public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw).hex()
    seq = built.seq_of(b"Harbour Custody")
    bodies = [r.stored for r in built.records]
    bodies[seq - 1] = tamper_sqlite(data, seq, flip_byte(b"Harbour Custody"))
    for c in built.checkpoints:
        root = mth([leaf_hash(b) for b in bodies[:c.tree_size]]).hex()
        signature = forger.sign(signed_message("", c.tree_size, root)).hex()

        def forge(body: bytes, c: pb.Checkpoint = c, root: str = root, signature: str = signature) -> bytes:
            return body.replace(c.root.encode(), root.encode()).replace(
                c.signature.encode(), signature.encode()).replace(key.public.encode(), forged_public.encode())

        bodies[c.tree_size] = tamper_sqlite(data, c.tree_size + 1, forge)
    itself = no_traceback(cli("audit", "--data-dir", data))
    assert itself.returncode == 0, itself.stderr  # nothing in the journal contradicts it
    against = cli("audit", "--data-dir", data, "--public-key", key.public)
    c1 = built.checkpoints[0]
    assert audit_failed(against, root=False)[:2] == (c1.tree_size + 1, c1.tree_size)


def delete_and_close_the_gap(data_dir: Path, gone: int) -> None:
    """Delete record ``gone`` and move every later record one seq down."""
    db = sqlite3.connect(data_dir / "journal.sqlite3")
    try:
        with db:
            db.execute("DELETE FROM events WHERE seq = ?", (gone,))
            db.execute("UPDATE events SET seq = -seq WHERE seq > ?", (gone,))
            db.execute("UPDATE events SET seq = -seq - 1 WHERE seq < 0")
    finally:
        db.close()


def test_deleting_a_checkpointed_record_fails(built: Built, tmp_path: Path) -> None:
    """The record just before C2 deleted and the gap closed (every later record one seq down): C2, now one
    seq down, no longer covers exactly the records before it."""
    data = copy_of(built, tmp_path)
    c2 = built.checkpoints[1]
    delete_and_close_the_gap(data, c2.tree_size)
    at, size, _, _ = audit_failed(cli("audit", "--data-dir", data), root=False)
    assert (at, size) == (c2.tree_size, c2.tree_size)


def test_deleting_a_checkpointed_record_and_fixing_the_sizes_fails_on_the_root(built: Built, tmp_path: Path) -> None:
    """The same, by an attacker who also lowers the tree_size of every later checkpoint (and its CRC):
    C2's root is not that of the records before it now, and the range ends where the record was."""
    data = copy_of(built, tmp_path)
    c1, c2 = built.checkpoints[:2]
    gone = c2.tree_size
    delete_and_close_the_gap(data, gone)
    for c in built.checkpoints[1:]:
        tamper_sqlite(data, c.tree_size, replace_once(f'"tree_size":{c.tree_size},'.encode(),
                                                      f'"tree_size":{c.tree_size - 1},'.encode()))
    at, size, first, last = audit_failed(cli("audit", "--data-dir", data))
    assert (at, size) == (c2.tree_size, c2.tree_size - 1)
    assert (first, last) == (c1.tree_size + 1, c2.tree_size - 1)


def test_deleting_the_last_records_is_seen_by_a_kept_root(built: Built, key: Key, tmp_path: Path) -> None:
    """The journal cut back to before C3: offline, what is left is consistent (one checkpoint fewer,
    nothing after it); an auditor who kept C3's root proves the server's tree no longer extends it."""
    data = copy_of(built, tmp_path)
    c2, c3 = built.checkpoints[1], built.checkpoints[2]
    db = sqlite3.connect(data / "journal.sqlite3")
    try:
        with db:
            db.execute("DELETE FROM events WHERE seq > ?", (c3.tree_size,))  # C3 and the record after it
    finally:
        db.close()
    result = no_traceback(cli("audit", "--data-dir", data, "--public-key", key.public))
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout).get("checkpoints") == 2
    assert counts(result.stdout).get("records") == c3.tree_size
    assert counts(result.stdout).get("pending") == c3.tree_size - (c2.tree_size + 1)
    # the server started again on it (the snapshot, now ahead of the journal, deleted too): its latest
    # checkpoint is C2, and C3's kept root is not in its tree
    (data / "snapshot.bin").unlink()
    with restarted(data, key) as desk:
        assert desk.observer.get_checkpoint() == c2
        kept = no_traceback(cli("audit", "--prove", f"{c3.tree_size}:{c3.root}", "--server", desk.target,
                                token=TOKENS["observer"]))
        assert kept.returncode == 1, kept.stderr
        assert "FAILED" in kept.stderr or "OUT_OF_RANGE" in kept.stderr, kept.stderr
        still = no_traceback(cli("audit", "--prove", f"{c2.tree_size}:{c2.root}", "--server", desk.target,
                                 token=TOKENS["observer"]))
        assert still.returncode == 0, still.stderr
    # and the last record alone: C3 itself
    data2 = copy_of(built, tmp_path / "2")
    db = sqlite3.connect(data2 / "journal.sqlite3")
    try:
        with db:
            db.execute("DELETE FROM events WHERE seq = ?", (len(built.records),))
    finally:
        db.close()
    result = no_traceback(cli("audit", "--data-dir", data2))
    assert result.returncode == 0 and counts(result.stdout).get("records") == len(built.records) - 1


def test_public_key_checks(built: Built, unsigned: Built, other_key: Key, key: Key) -> None:
    # another key: the first checkpoint fails
    result = no_traceback(cli("audit", "--data-dir", built.data_dir, "--public-key", other_key.public))
    assert result.returncode == 1, result.stderr
    assert f"checkpoint at record {built.checkpoints[0].tree_size + 1}" in result.stderr
    # an unsigned journal when a key is expected
    result = no_traceback(cli("audit", "--data-dir", unsigned.data_dir, "--public-key", key.public))
    assert result.returncode == 1, result.stderr
    assert f"checkpoint at record {unsigned.checkpoints[0].tree_size + 1}" in result.stderr
    # a key that is no key
    for bad in ("abc", key.public[:-2], "zz" * 32):
        result = no_traceback(cli("audit", "--data-dir", built.data_dir, "--public-key", bad))
        assert result.returncode == 2 and "--public-key" in result.stderr, result.stderr


def test_audit_arguments(built: Built, tmp_path: Path) -> None:
    assert no_traceback(cli("audit")).returncode == 2
    result = no_traceback(cli("audit", "--data-dir", tmp_path / "nothing-here"))
    assert result.returncode != 0 and "nothing-here" in result.stderr


def test_a_tampered_journal_served_again_fails_the_kept_root(built: Built, key: Key, tmp_path: Path) -> None:
    """SPEC §21: a byte changed in any checkpointed record makes both fail: the offline audit above, and
    --prove against a server started again on the changed journal."""
    data = copy_of(built, tmp_path)
    seq = built.seq_of(b"audit-order")
    tamper_sqlite(data, seq, flip_byte(b"audit-order"))
    kept = built.checkpoints[1]
    with restarted(data, key) as desk:
        proof = desk.observer.get_inclusion_proof(seq, kept.tree_size)
        assert not verify_inclusion(seq - 1, kept.tree_size, leaf_hash(proof.leaf), unhex(proof.proof),
                                    bytes.fromhex(kept.root))
        result = no_traceback(cli("audit", "--prove", f"{kept.tree_size}:{kept.root}", "--server", desk.target,
                                  token=TOKENS["observer"]))
    assert result.returncode == 1 and "FAILED" in result.stderr, (result.stdout, result.stderr)


# == --prove ==================================================================================================
def test_prove_a_kept_root(built: Built, live: Desk, key: Key, other_key: Key) -> None:
    c1 = built.checkpoints[0]
    kept = f"{c1.tree_size}:{c1.root}"

    def prove(*args: str, token: str = TOKENS["observer"]) -> subprocess.CompletedProcess[str]:
        return no_traceback(cli("audit", "--prove", *args, "--server", live.target, token=token))

    for token in (TOKENS["observer"], TOKENS["ap1"], TOKENS["issuer"]):
        result = prove(kept, token=token)
        assert result.returncode == 0, result.stderr
    assert prove(kept, "--public-key", key.public).returncode == 0
    assert prove(kept.upper()).returncode == 0  # hex in capitals is the same root
    # a root the auditor computed itself, of a size no checkpoint has
    leaves = [leaf_hash(r.stored) for r in built.records]
    assert prove(f"{c1.tree_size + 2}:{mth(leaves[:c1.tree_size + 2]).hex()}").returncode == 0
    # the latest checkpoint extends itself
    latest = built.checkpoints[-1]
    assert prove(f"{latest.tree_size}:{latest.root}").returncode == 0

    # wrong roots, a size the server's tree does not have, another key
    for bad in (f"{c1.tree_size}:{flipped(c1.root)}", f"{c1.tree_size}:{flipped(c1.root, 63)}",
                f"{c1.tree_size + 1}:{c1.root}", f"{latest.tree_size + 5}:{latest.root}"):
        result = prove(bad)
        assert result.returncode == 1, (bad, result.stdout, result.stderr)
    assert prove(kept, "--public-key", other_key.public).returncode == 1

    # malformed SIZE:ROOT
    for malformed in ("", "abc", str(c1.tree_size), f"{c1.tree_size}:", f":{c1.root}", f"0:{c1.root}",
                      f"-1:{c1.root}", f"{c1.tree_size}:{c1.root[:-1]}", f"{c1.tree_size}:{c1.root}0",
                      f"x{c1.tree_size}:{c1.root}"):
        result = prove(malformed)
        assert result.returncode == 2, (malformed, result.stderr)
        assert "SIZE:ROOT" in result.stderr or "--prove" in result.stderr, result.stderr
    # no token
    assert no_traceback(cli("audit", "--prove", kept, "--server", live.target)).returncode == 2


# == PostgreSQL ===============================================================================================
def test_audit_of_a_postgresql_shard(pg_cluster: Any, tmp_path: Path, key: Key, other_key: Key) -> None:
    import psycopg

    if not pg_cluster.healthy():
        pg_cluster.reset()
    shard = f"audit-{uuid.uuid4().hex[:10]}"
    journal = JournalConfig(backend="postgresql", dsn=pg_cluster.dsn, shard=shard, node_name="audit-node")
    with serving(tmp_path / "data", journal=journal, signing_key=key.path) as desk:
        strike_monday(desk)
        desk.issuer.adjust_cash(FUND, "10.00", "audit-a")
        taken = desk.issuer.checkpoint()
        journaled = all_records(desk.observer)
        checkpoints = [desk.observer.get_checkpoint(r.seq - 1) for r in journaled if r.type == CHECKPOINT]
        leaves = [leaf_hash(p.leaf) for p in (desk.observer.get_inclusion_proof(s, taken.tree_size)
                                              for s in range(1, taken.tree_size + 1))]
    assert checkpoints[-1] == taken and len(checkpoints) == 2
    with psycopg.connect(pg_cluster.dsn) as conn:
        stored = [bytes(row[0]) for row in conn.execute(
            "SELECT body FROM etf_events WHERE shard = %s ORDER BY seq", (shard,))]
    assert len(stored) == len(journaled)
    assert [leaf_hash(b) for b in stored[:taken.tree_size]] == leaves
    for c in checkpoints:
        assert c.shard == shard and c.public_key == key.public
        assert mth(leaves[:c.tree_size]).hex() == c.root
        assert signature_holds(key.public, shard, c.tree_size, c.root, c.signature)
        assert not signature_holds(key.public, "", c.tree_size, c.root, c.signature)
        assert not signature_holds(key.public, shard + "x", c.tree_size, c.root, c.signature)

    result = no_traceback(cli("audit", "--dsn", pg_cluster.dsn, "--shard", shard, "--public-key", key.public))
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout).get("records") == len(journaled)
    assert counts(result.stdout).get("checkpoints") == 2
    assert no_traceback(cli("audit", "--dsn", pg_cluster.dsn, "--shard", shard, "--public-key",
                            other_key.public)).returncode == 1

    c1 = checkpoints[0]
    seq = next(i for i, body in enumerate(stored, 1) if b"Harbour Custody" in body)
    assert seq <= c1.tree_size
    with psycopg.connect(pg_cluster.dsn) as conn:
        (body,) = conn.execute("SELECT body FROM etf_events WHERE shard = %s AND seq = %s", (shard, seq)).fetchone()
        new = flip_byte(b"Harbour Custody")(bytes(body))
        conn.execute("UPDATE etf_events SET body = %s, crc = %s WHERE shard = %s AND seq = %s",
                     (new, zlib.crc32(new), shard, seq))
    at, size, first, last = audit_failed(cli("audit", "--dsn", pg_cluster.dsn, "--shard", shard))
    assert (at, size, first, last) == (c1.tree_size + 1, c1.tree_size, 1, c1.tree_size)


# == signing-key and the config ================================================================================
def test_signing_key_new_and_public(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    made = new_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    assert private.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw).hex() == made.public
    shown = no_traceback(cli("signing-key", "public", path))
    assert shown.returncode == 0 and shown.stdout.strip() == made.public

    again = no_traceback(cli("signing-key", "new", path))
    assert again.returncode != 0 and str(path) in again.stderr
    assert path.read_bytes() == pem  # never overwritten

    other = new_key(tmp_path / "k2.pem")
    assert other.public != made.public

    (tmp_path / "junk.pem").write_text("not a key\n")
    for bad in (tmp_path / "junk.pem", tmp_path / "missing.pem"):
        result = no_traceback(cli("signing-key", "public", bad))
        assert result.returncode != 0 and str(bad) in result.stderr


def non_keys(tmp_path: Path) -> dict[str, Path]:
    """Files a signing_key must not be: missing, text, an EC P-256 private key, an Ed25519 public key."""
    files = {"missing": tmp_path / "missing.pem", "text": tmp_path / "text.pem", "p256": tmp_path / "p256.pem",
             "public": tmp_path / "public.pem"}
    files["text"].write_text("hello\n")
    files["p256"].write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    files["public"].write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return files


def test_a_signing_key_that_cannot_sign_is_a_config_error(tmp_path: Path, key: Key) -> None:
    for name, path in non_keys(tmp_path).items():
        with pytest.raises(ConfigError) as info:
            parse_config({"signing_key": str(path)}, base_dir=tmp_path)
        assert "signing_key" in str(info.value), (name, info.value)
        assert str(path) in str(info.value) or path.name in str(info.value), (name, info.value)
    assert parse_config({"signing_key": str(key.path)}, base_dir=tmp_path).signing_key == key.path
    # relative to the config's directory
    assert parse_config({"signing_key": key.path.name}, base_dir=key.path.parent).signing_key == key.path


def test_serve_with_a_bad_signing_key_stops_with_one_line(tmp_path: Path) -> None:
    for name, path in non_keys(tmp_path).items():
        conf = tmp_path / f"{name}.toml"
        conf.write_text(f'listen = "127.0.0.1:0"\ndata_dir = "{tmp_path / "data"}"\nsigning_key = "{path}"\n')
        result = no_traceback(cli("serve", "--config", conf, timeout=60))
        assert result.returncode == 2, (name, result.returncode, result.stderr)
        assert "signing_key" in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
