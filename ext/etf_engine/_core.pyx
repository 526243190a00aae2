# cython: language_level=3
"""The compiled ledger: every fund's exact state, NAV, basket and order decisions (SPEC §2-7).

Pure: no clock, no I/O; time comes in with each call. State changes only through ``apply``, so the
events ``execute`` returns rebuild the same state on replay. Quantities and money are Python ints:
exact at any size, so an 18-decimal asset above 10**24 units is as exact as a satoshi, and range
limits are checked explicitly (OUT_OF_RANGE) rather than by overflow.

Speed comes from keeping what an order needs at hand: per fund and asset the running total,
reserved and illiquid sums; per fund the exact NAV numerator, updated incrementally by every tick
and every change of holdings or cash; and the basket, cached until something it depends on changes
(a reservation does not: totals stay the same).

Layout: this file holds the state records (typed in _core.pxd) and includes the rules, one module per
concept under core/, named as the reference's modules (etf_engine/reference/): each is module-level
cdef functions taking the Ledger, so a call between concepts is a direct C call in one translation unit
(benchmarks/RESULTS.md, issue 18, measures this against one extension per concept).
"""

from libc.limits cimport LLONG_MAX, LLONG_MIN

from calendar import isleap
from datetime import date as Date, timedelta

import msgspec

from etf_engine import addresses as ADDR
from etf_engine import calendar as CAL
from etf_engine import model as M
from etf_engine import snapshot as S
from etf_engine.errors import (
    ALREADY_EXISTS, EngineError, INV_CACHES, INV_CONSERVED, INV_NEGATIVE, INV_RESERVED, INV_SHARES, InvariantBroken,
    FAILED_PRECONDITION, PERMISSION_DENIED, invalid, not_found, out_of_range, precondition, quote,
)
from etf_engine.numbers import (
    FRACTION_DP, FRACTION_SCALE, MAX_CREATION_UNIT, MAX_MONEY, MAX_QUANTITY, MAX_SECONDS, MAX_SHARES, MONEY_DP, PRICE_DP,
    MAX_PRICE, POW10, RATE_DP, RATE_SCALE, format_quantity, format_scaled, parse_scaled, round_half_even,
)

# nav_num counts 1e-26 of base currency (a 1e-8 price unit times 1e-18 of an asset)
cdef object CENT = POW10[24]  # one cent in nav_num units
cdef object NPS = POW10[22]  # 1e-4 (nav_per_share unit) in nav_num units
cdef object FSCALE = FRACTION_SCALE
cdef long long DAY = M.DAY_MS


# Module constants bound once: a lookup on the model module costs more than the check it serves.
cdef object REDEEM = M.REDEEM
cdef object CREATE = M.CREATE
cdef object ACCEPTED = M.ACCEPTED
cdef object REJECTED = M.REJECTED
cdef object SETTLED = M.SETTLED
cdef object CANCELLED = M.CANCELLED
cdef object SIDES = M.SIDES
cdef object FUND_SUSPENDED = M.FUND_SUSPENDED
cdef object ORDER_LIMIT_EXCEEDED = M.ORDER_LIMIT_EXCEEDED
cdef object DAILY_LIMIT_EXCEEDED = M.DAILY_LIMIT_EXCEEDED
cdef object STALE_PRICE = M.STALE_PRICE
cdef object CUSTODIAN_NOT_LICENSED = M.CUSTODIAN_NOT_LICENSED
cdef object INSUFFICIENT_SHARES = M.INSUFFICIENT_SHARES
cdef object INSUFFICIENT_LIQUID_BALANCE = M.INSUFFICIENT_LIQUID_BALANCE
cdef object STAKING_CAP_BREACH = M.STAKING_CAP_BREACH
cdef object LIQUIDITY_BUFFER_BREACH = M.LIQUIDITY_BUFFER_BREACH
cdef object INSUFFICIENT_STAKED_BALANCE = M.INSUFFICIENT_STAKED_BALANCE
cdef object Order = M.Order
cdef object Line = M.Line
cdef object Leg = M.Leg
cdef object BasketLine = M.BasketLine
cdef object Basket = M.Basket
cdef object NavLine = M.NavLine
cdef object Nav = M.Nav
cdef object HoldingRow = M.HoldingRow
cdef object AssetSummary = M.AssetSummary
cdef object CapacitySide = M.CapacitySide
cdef object Capacity = M.Capacity
cdef object NOT_PRICED = M.NOT_PRICED
cdef object FORWARD = M.FORWARD
cdef object APPROVED = M.APPROVED
cdef object WALLET_NOT_APPROVED = M.WALLET_NOT_APPROVED
cdef object Wallet = M.Wallet
cdef object ONE_DAY = timedelta(days=1)
cdef object HoldingTiers = M.HoldingTiers
cdef object StorageBreach = M.StorageBreach
cdef object COLD = M.COLD
cdef object WARM = M.WARM
cdef object HOT = M.HOT
cdef enum:
    TIER_COLD, TIER_WARM, TIER_HOT
_replace = msgspec.structs.replace

cdef class Asset:
    def __cinit__(self, str symbol, int decimals):
        self.symbol = symbol
        self.decimals = decimals
        self.factor = POW10[18 - decimals]


cdef class Custodian:
    cdef bint licensed(self, long long now_ms) noexcept:
        return self.active and now_ms < self.expires_ms

    cdef set_licence(self, str status, object expires_at):
        self.status = status
        self.active = status == M.ACTIVE
        self.expires_at = expires_at
        self.expires_ms = _clamp_ms(expires_at)


cdef class Participant:
    pass


cdef class Holding:
    def __cinit__(self, Custodian custodian, str asset):
        self.custodian = custodian
        self.asset = asset
        self.available = self.reserved = self.staked = self.unbonding = 0
        self.lots = []
        self.warm = self.hot = 0
        self.over_since = None
        self.slack = 0
        self.due = {}
        self.dirty = False


cdef class Price:
    def __cinit__(self):
        self.value = None
        self.as_of = -1


cdef class FundAsset:
    pass


cdef class Fund:
    pass


include "core/checks.pxi"
include "core/ledger.pxi"
include "core/funds.pxi"
include "core/valuation.pxi"
include "core/prices.pxi"
include "core/orders.pxi"
include "core/custody.pxi"
include "core/dealing_day.pxi"
include "core/wallets.pxi"
include "core/fees.pxi"
include "core/storage.pxi"
include "core/instructions.pxi"
include "core/reconciliation.pxi"
include "core/invariants.pxi"
