"""The canonical state of a ledger: what ``state()`` returns in both ledgers, the body of a snapshot and
the input of the state digest.

Each row is an ``array_like`` Struct, so it encodes as the positional list that snapshots have always
held (the digest of a state is unchanged by this schema) while code reads it by name. A field added
later takes a default, and a snapshot written before it decodes with that default: the way old data
loads, instead of hand-patched lists. ``VERSION`` names this schema in every snapshot written.
"""

from __future__ import annotations

import msgspec

from etf_engine import model as M

# 1: the positional lists before this module (read the same, with the defaults below); 3: the fund's
# books of SPEC §17 and §20 (a version 2 snapshot reads with no fee and no instruction); 4: storage
# tiers (SPEC §18: a version 3 snapshot reads with every held coin cold)
VERSION = 4


class Row(msgspec.Struct, array_like=True, frozen=True):
    """A positional row of the canonical state."""


class AssetState(Row):
    symbol: str
    decimals: int
    min_confirmations: int = 1  # SPEC §14; a snapshot from before it has none, as AssetRegistered
    chain: str = ""


class CustodianState(Row):
    custodian_id: str
    name: str
    licence_number: str
    licence_status: str
    licence_expires_at: int
    min_cold_ratio: int = M.DEFAULT_MIN_COLD_RATIO  # SPEC §18
    max_hot_seconds: int = M.DEFAULT_MAX_HOT_SECONDS


class ParticipantState(Row):
    participant_id: str
    name: str
    eligible_fund_ids: list[str]
    max_units_per_order: int
    max_units_per_day: int


class PriceState(Row):
    asset: str
    currency: str
    price: int
    as_of: int


class HoldingState(Row):
    """A (custodian, asset) of a fund that holds something; lots released by the state's time count as
    available."""

    custodian_id: str
    asset: str
    available: int
    reserved: int
    staked: int
    lots: list[tuple[int, int]]  # (release_at ms, quantity), sorted
    # SPEC §18: (warm, hot) of held; cold is the rest (a snapshot from before it: all cold). Lots
    # released by the state's time count in hot.
    warm: int = 0
    hot: int = 0
    over_since: int | None = None  # the time of the record since which hot > hot_allowance (idle)


class FundState(Row):
    terms: M.FundTerms
    cash: int
    shares_outstanding: int
    holdings: list[HoldingState]
    accrued_fees: int = 0  # SPEC §17, exact: units of 10^-ACCRUED_DP base currency (numbers.ACCRUED_DP)
    fee_payable: list[tuple[str, int]] = []  # (asset, quantity) where above zero, by asset
    entry_tier: str = M.COLD  # SPEC §18: FundCreated's


class CalendarState(Row):
    calendar_id: str
    time_zone: str
    holidays: list[str]
    weekend_days: list[int]
    closed: list[tuple[str, str]] = []  # (date, reason)


class LedgerState(msgspec.Struct):
    """Every list sorted by its ids (official NAVs and PCFs by fund, then dealing date)."""

    assets: list[AssetState]
    custodians: list[CustodianState]
    participants: list[ParticipantState]
    prices: list[PriceState]
    funds: list[FundState]
    orders: list[M.Order]
    next_order_seq: int
    calendars: list[CalendarState] = []  # SPEC §13
    official_navs: list[M.OfficialNav] = []
    pcfs: list[M.Pcf] = []
    wallets: list[M.Wallet] = []  # SPEC §14
    next_wallet_seq: int = 1
    instructions: list[M.Instruction] = []  # SPEC §20
    next_instruction_seq: int = 1
    statements: list[M.Statement] = []  # SPEC §19, by fund, custodian, then recording order
    breaks: list[M.Break] = []
    next_break_seq: int = 1
