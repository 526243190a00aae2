"""Ed25519 signatures on the journal's checkpoints (SPEC §21).

A checkpoint says "the journal's first ``tree_size`` records have this Merkle root"; signed, it is a
statement an auditor can hold the issuer to with the public key alone, long after the journal moved on.
The message signed names the shard, so that one shard's checkpoint is never taken for another's:
``etf-engine checkpoint v1\\n<shard>\\n<tree_size>\\n<root>`` in UTF-8 (shard "" on SQLite).

Keys are PKCS#8 PEM files (``etf-engine signing-key new FILE``, mode 600); pycryptodome signs and verifies
(RFC 8032 Ed25519, deterministic: the same checkpoint always gets the same signature).
"""

from __future__ import annotations

import os
from pathlib import Path

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

SIGNATURE_HEX = 128  # 64 bytes
PUBLIC_KEY_HEX = 64  # 32 bytes


class SigningKeyError(ValueError):
    """A key file or a public key that cannot be used; the message names it."""


def checkpoint_message(shard: str, tree_size: int, root: str) -> bytes:
    return f"etf-engine checkpoint v1\n{shard}\n{tree_size}\n{root}".encode()


class Signer:
    """A private key loaded from its file: signs checkpoints, and says its public key."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            key = ECC.import_key(self.path.read_text(encoding="utf-8"))
        except OSError as e:
            raise SigningKeyError(f"signing_key: cannot read {self.path}: {e.strerror or e}") from None
        except (ValueError, IndexError, TypeError, UnicodeDecodeError) as e:
            raise SigningKeyError(f"signing_key: {self.path} is not a PEM private key ({e})") from None
        if key.curve != "Ed25519" or not key.has_private():
            raise SigningKeyError(f"signing_key: {self.path} is not an Ed25519 private key (curve {key.curve})")
        self._signer = eddsa.new(key, "rfc8032")
        self.public_key = key.public_key().export_key(format="raw").hex()

    def sign(self, shard: str, tree_size: int, root: str) -> str:
        return self._signer.sign(checkpoint_message(shard, tree_size, root)).hex()


def verify(public_key: str, shard: str, tree_size: int, root: str, signature: str) -> bool:
    """Whether ``signature`` (hex) is ``public_key``'s (hex) over that checkpoint."""
    try:
        verifier = eddsa.new(_public_key(public_key), "rfc8032")
        verifier.verify(checkpoint_message(shard, tree_size, root), bytes.fromhex(signature))
    except (ValueError, SigningKeyError):
        return False
    return True


def _public_key(public_key: str) -> ECC.EccKey:
    try:
        raw = bytes.fromhex(public_key)
        if len(raw) * 2 != PUBLIC_KEY_HEX:
            raise ValueError(f"{len(raw)} bytes")
        return eddsa.import_public_key(raw)
    except ValueError as e:
        raise SigningKeyError(f"public key: expected {PUBLIC_KEY_HEX} hex digits (32 bytes), got "
                              f"{public_key[:80]!r} ({e})") from None


def check_public_key(public_key: str) -> str:
    """``public_key`` lower-cased once it is a valid Ed25519 public key, else SigningKeyError naming it."""
    _public_key(public_key)
    return public_key.lower()


def new_key_file(path: str | os.PathLike[str]) -> str:
    """Write a new private key to ``path`` (PKCS#8 PEM, mode 600, never over an existing file); its
    public key in hex."""
    target = Path(path)
    key = ECC.generate(curve="Ed25519")
    pem = key.export_key(format="PEM")  # PKCS#8 for Ed25519
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{target} exists: a signing key is never overwritten") from None
    except OSError as e:
        raise SigningKeyError(f"cannot write {target}: {e.strerror or e}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key.public_key().export_key(format="raw").hex()
