"""Wallet addresses checked for their chain (SPEC §14): mainnet bitcoin, ether (EIP-55) and solana.

The codecs are well-kept libraries, not ours: ``embit`` for bech32/bech32m (BIP-173, BIP-350, its
``decode`` is the BIPs' reference segwit decoder) and base58/base58check, ``pycryptodome`` for
keccak-256 (EIP-55 hashes with keccak, which is not hashlib's sha3_256).
"""

from __future__ import annotations

import binascii
import re

from Crypto.Hash import keccak
from embit import base58, bech32

from etf_engine.errors import invalid, quote

BITCOIN, ETHEREUM, SOLANA = "BITCOIN", "ETHEREUM", "SOLANA"
CHAINS = (BITCOIN, ETHEREUM, SOLANA)
DEFAULT_CHAINS = {"BTC": BITCOIN, "ETH": ETHEREUM, "SOL": SOLANA}  # other symbols: unchecked
MAX_ADDRESS = 128

_P2PKH, _P2SH = 0x00, 0x05  # base58check version bytes of mainnet bitcoin addresses
_ETHER = re.compile(r"0x[0-9a-fA-F]{40}")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,128}")


def chain_of(symbol: str, chain: str = "") -> str:
    """The chain an asset's addresses are checked for: the given one, else the symbol's default
    (BTC, ETH, SOL), else "" (unchecked)."""
    return chain or DEFAULT_CHAINS.get(symbol, "")


def check_printable(value: str, field: str) -> str:
    """``value`` if it is 1-128 printable ASCII characters (an address of an unchecked chain, a tx hash);
    INVALID_ARGUMENT naming ``field`` otherwise."""
    if not isinstance(value, str) or _PRINTABLE.fullmatch(value) is None:
        raise invalid(field, f"{quote(value)} is not 1-{MAX_ADDRESS} printable ASCII characters")
    return value


def check_address(chain: str, address: str, field: str = "address") -> str:
    """``address`` if it is a valid mainnet address of ``chain`` ("" : 1-128 printable ASCII);
    INVALID_ARGUMENT naming ``field`` otherwise."""
    check_printable(address, field)
    check = _CHECKS.get(chain)
    why = check(address) if check is not None else ""
    if why:
        raise invalid(field, f"{quote(address)} is not a {chain.lower()} mainnet address: {why}")
    return address


def _bitcoin(address: str) -> str:
    if address[:3].lower() == "bc1":
        version, _program = bech32.decode("bc", address)
        return "" if version is not None else "bad bech32/bech32m segwit address (BIP-173, BIP-350)"
    try:
        payload = base58.decode_check(address)
    except (ValueError, KeyError, IndexError):
        return "bad base58check (or not a segwit bc1 address)"
    if len(payload) != 21 or payload[0] not in (_P2PKH, _P2SH):
        return "not a mainnet P2PKH or P2SH payload"
    return ""


def eip55(address: str) -> str:
    """The EIP-55 mixed-case checksum form of a 0x + 40 hex address."""
    digits = address[2:].lower()
    digest = keccak.new(digest_bits=256, data=digits.encode("ascii")).hexdigest()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, digest, strict=False))


def _ether(address: str) -> str:
    if _ETHER.fullmatch(address) is None:
        return "expected 0x and 40 hex digits"
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and address != eip55(address):
        return "mixed case that fails its EIP-55 checksum"
    return ""


def _solana(address: str) -> str:
    try:
        key = base58.decode(address)
    except (ValueError, KeyError, binascii.Error):
        return "not base58"
    return "" if len(key) == 32 else f"base58 of {len(key)} bytes, not 32"


_CHECKS = {BITCOIN: _bitcoin, ETHEREUM: _ether, SOLANA: _solana}  # each: "" when valid, else why not
