"""Address checks per chain (SPEC §14) against the published test vectors: BIP-173 and BIP-350
(mainnet segwit, bech32 and bech32m), base58check P2PKH/P2SH, EIP-55, solana base58 of 32 bytes."""

from __future__ import annotations

import pytest

from etf_engine.addresses import BITCOIN, ETHEREUM, SOLANA, chain_of, check_address, eip55
from etf_engine.errors import INVALID_ARGUMENT, EngineError

pytestmark = pytest.mark.unit

# BIP-350 "valid segwit addresses" (the mainnet ones; BIP-173's v0 vectors are among them)
VALID_SEGWIT = [
    "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
    "BC1SW50QGDZ25J",
    "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
]
# BIP-350 "invalid segwit addresses", with the testnet ones (not mainnet: refused too)
INVALID_SEGWIT = [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",  # invalid human-readable part
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32 instead of bech32m
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",  # bech32 instead of bech32m
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # bech32m instead of bech32
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # invalid character in checksum
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # invalid witness version
    "bc1pw5dgrnzv",  # program length 1 byte
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",  # 41 bytes
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # program length for witness version 0
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",  # zero padding of more than 4 bits
    "bc1gmk9yu",  # empty data section
    "bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",  # mixed case
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",  # valid, but testnet
]
VALID_BASE58 = ["1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
                "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"]
INVALID_BASE58 = ["1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",  # checksum
                  "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN0",  # 0 is not a base58 digit
                  "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"]  # testnet P2PKH (version 0x6f)
# EIP-55's own examples: all caps, all lower, and checksummed
VALID_ETHER = ["0x52908400098527886E0F7030069857D2E4169EE7", "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
               "0xde709f2102306220921060314715629080e2fb77", "0x27b1fdb04752bbc536007a920d24acb045561c26",
               "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
               "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"]
INVALID_ETHER = ["0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # one letter's case flipped
                 "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",  # 39 digits
                 "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # no 0x
                 "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg"]  # not hex
VALID_SOLANA = ["11111111111111111111111111111111", "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
                "So11111111111111111111111111111111111111112"]
INVALID_SOLANA = ["1111111111111111111111111111111",  # 31 bytes
                  "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5D0",  # 0 is not base58
                  "0x52908400098527886E0F7030069857D2E4169EE7"]


@pytest.mark.parametrize(("chain", "address"), [(BITCOIN, a) for a in VALID_SEGWIT + VALID_BASE58]
                         + [(ETHEREUM, a) for a in VALID_ETHER] + [(SOLANA, a) for a in VALID_SOLANA]
                         + [("", "rAddressOfAnotherChain:memo-42")])
def test_valid_addresses_pass(chain: str, address: str) -> None:
    assert check_address(chain, address) == address


@pytest.mark.parametrize(("chain", "address"), [(BITCOIN, a) for a in INVALID_SEGWIT + INVALID_BASE58]
                         + [(ETHEREUM, a) for a in INVALID_ETHER] + [(SOLANA, a) for a in INVALID_SOLANA]
                         + [(c, a) for c in (BITCOIN, ETHEREUM, SOLANA, "") for a in ("", "a b", "é", "x" * 129)])
def test_invalid_addresses_are_refused_naming_the_field(chain: str, address: str) -> None:
    with pytest.raises(EngineError) as info:
        check_address(chain, address, "from_address")
    assert info.value.code == INVALID_ARGUMENT
    assert info.value.message.startswith("from_address: "), info.value.message


def test_unchecked_chain_boundaries() -> None:
    assert check_address("", "x" * 128) == "x" * 128
    assert check_address("", "!") == "!"


def test_eip55_of_every_case_form_is_the_checksummed_one() -> None:
    for address in VALID_ETHER[4:]:
        assert eip55(address.lower()) == eip55(address.upper().replace("0X", "0x")) == address


def test_chain_defaults() -> None:
    assert [chain_of(s) for s in ("BTC", "ETH", "SOL", "USDC")] == [BITCOIN, ETHEREUM, SOLANA, ""]
    assert chain_of("USDC", ETHEREUM) == ETHEREUM
