"""The typed messages of the engine: commands in, results out, events in the journal.

Commands carry wire values (decimal strings for quantities, prices, money and fractions) so that
the ledgers parse them with the asset's own ``decimals``. Results and events carry exact integers
in the engine's units (see ``etf_engine.numbers``): smallest asset units, prices in 1e-8, money in
cents, fractions and nav_per_share in 1e-4, times in unix milliseconds (licence expiry: seconds).
Both ledgers (the Cython core and the Fraction reference) speak exactly these types.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

# -- enumerations (string values are the wire names) ------------------------------------------
CREATE, REDEEM = "CREATE", "REDEEM"
SIDES = (CREATE, REDEEM)
ACCEPTED, REJECTED, SETTLED, CANCELLED = "ACCEPTED", "REJECTED", "SETTLED", "CANCELLED"
ORDER_STATUSES = (ACCEPTED, REJECTED, SETTLED, CANCELLED)
ACTIVE, SUSPENDED, REVOKED = "ACTIVE", "SUSPENDED", "REVOKED"
LICENCE_STATUSES = (ACTIVE, SUSPENDED, REVOKED)
OPEN = "OPEN"
DEALING_STATUSES = (OPEN, SUSPENDED)
LIVE, FORWARD = "LIVE", "FORWARD"
PRICINGS = (LIVE, FORWARD)
PENDING, APPROVED = "PENDING", "APPROVED"
WALLET_STATUSES = (PENDING, APPROVED, REVOKED)
# the fund's books (SPEC §17, §20)
CASH, IN_KIND = "CASH", "IN_KIND"
FEE_PAYMENTS = (CASH, IN_KIND)
ACT_365, ACT_ACT = "ACT_365", "ACT_ACT"
FEE_DAY_COUNTS = (ACT_365, ACT_ACT)
EXECUTED, FAILED = "EXECUTED", "FAILED"
COLD, WARM, HOT = "COLD", "WARM", "HOT"
AVAILABLE, STAKED, UNBONDING = "AVAILABLE", "STAKED", "UNBONDING"
BUCKETS = (AVAILABLE, STAKED, UNBONDING)  # a statement line's bucket (SPEC §19; reserved counts as AVAILABLE)
CUSTODIAN, CHAIN = "CUSTODIAN", "CHAIN"
SOURCES = (CUSTODIAN, CHAIN)
TIMING, UNEXPLAINED = "TIMING", "UNEXPLAINED"
RESOLVED = "RESOLVED"
BREAK_STATUSES = (OPEN, RESOLVED)
TIERS = (COLD, WARM, HOT)  # storage tiers (SPEC §18); what leaves held leaves in reverse order
INSTRUCTION_STATUSES = (PENDING, EXECUTED, FAILED, REJECTED)

# -- reason codes (SPEC §5, §6) -----------------------------------------------------------------
FUND_SUSPENDED = "FUND_SUSPENDED"
ORDER_LIMIT_EXCEEDED = "ORDER_LIMIT_EXCEEDED"
DAILY_LIMIT_EXCEEDED = "DAILY_LIMIT_EXCEEDED"
STALE_PRICE = "STALE_PRICE"
CUSTODIAN_NOT_LICENSED = "CUSTODIAN_NOT_LICENSED"
INSUFFICIENT_SHARES = "INSUFFICIENT_SHARES"
INSUFFICIENT_LIQUID_BALANCE = "INSUFFICIENT_LIQUID_BALANCE"
STAKING_CAP_BREACH = "STAKING_CAP_BREACH"
LIQUIDITY_BUFFER_BREACH = "LIQUIDITY_BUFFER_BREACH"
INSUFFICIENT_STAKED_BALANCE = "INSUFFICIENT_STAKED_BALANCE"
ORDER_NOT_ACCEPTED = "ORDER_NOT_ACCEPTED"  # settle/cancel of an order not ACCEPTED (SPEC names no code)
# the dealing day (SPEC §13)
NOT_PRICED = "NOT_PRICED"
BEFORE_CUTOFF = "BEFORE_CUTOFF"
NOT_A_DEALING_DAY = "NOT_A_DEALING_DAY"
EARLIER_DATE_NOT_STRUCK = "EARLIER_DATE_NOT_STRUCK"
NOT_CLOSABLE = "NOT_CLOSABLE"
MAX_SETTLEMENT_DAYS = 30
# wallets and deliveries (SPEC §14)
WALLET_NOT_APPROVED = "WALLET_NOT_APPROVED"
DELIVERY_INCOMPLETE = "DELIVERY_INCOMPLETE"
PAYOUT_INCOMPLETE = "PAYOUT_INCOMPLETE"
PAYOUT_EXCEEDS_LEG = "PAYOUT_EXCEEDS_LEG"
WALLET_NOT_PENDING = "WALLET_NOT_PENDING"
MAX_CONFIRMATIONS = 1_000_000
MAX_PAYOUT_WALLETS = 64
MAX_REASON = 256  # characters of a free-text reason or label
# the fund's books (SPEC §17, §20, §22)
FEE_EXCEEDS_ACCRUED = "FEE_EXCEEDS_ACCRUED"
INSTRUCTION_NOT_PENDING = "INSTRUCTION_NOT_PENDING"
MAX_FEE_RATE = 100_000  # a management fee rate is below 0.1 (1e-6 units)
INSUFFICIENT_TIER_BALANCE = "INSUFFICIENT_TIER_BALANCE"
BREAK_REQUIRED = "BREAK_REQUIRED"
BREAK_NOT_OPEN = "BREAK_NOT_OPEN"
DEFAULT_MIN_COLD_RATIO = 9_800  # 0.98 (1e-4): a custodian's until SetStoragePolicy (SPEC §18)
DEFAULT_MAX_HOT_SECONDS = 86_400

DAY_MS = 86_400_000
FUTURE_TOLERANCE_MS = 5_000


class Struct(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Result(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A reply value. Positional construction is allowed (the core's hot path uses it); results hold
    no reference cycles, so they stay out of the garbage collector."""


class Fact(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


# == commands ===================================================================================
class RegisterAsset(Struct):
    symbol: str
    decimals: int
    min_confirmations: int = 1
    chain: str = ""  # "": BTC, ETH and SOL take theirs, other symbols are unchecked (addresses.chain_of)


class RegisterCustodian(Struct):
    custodian_id: str
    name: str
    licence_number: str
    licence_status: str
    licence_expires_at: int  # unix seconds


class SetCustodianLicence(Struct):
    custodian_id: str
    licence_status: str
    licence_expires_at: int


class RegisterParticipant(Struct):
    participant_id: str
    name: str
    eligible_fund_ids: list[str]
    max_units_per_order: int
    max_units_per_day: int


class FundAssetSpec(Struct):
    asset: str
    staking_cap: str = "0"
    liquidity_buffer: str = "0"
    unbonding_seconds: int = 0
    seed_quantity_per_unit: str = "0"
    staking_fee_rate: str = "0"  # SPEC §17: the share of each staking reward the staking provider keeps
    min_cold_ratio: str = ""  # SPEC §18: "" the custodian's policy, else this fund asset's own ratio


class FeeWaiverSpec(Struct):
    """SPEC §17: while a day is on or before ``until``, the first ``nav_limit`` of the basis is charged
    at ``rate``. In UpdateFund, a waiver with ``until`` "" removes the fund's waiver."""

    rate: str = "0"
    nav_limit: str = "0"
    until: str = ""


class CreateFund(Struct):
    fund_id: str
    name: str
    base_currency: str
    creation_unit: int
    creation_custodian_id: str
    custodian_priority: list[str]
    assets: list[FundAssetSpec]
    dealing_status: str = OPEN
    max_price_age_seconds: int = 60
    creation_fee: str = "0"
    redemption_fee: str = "0"
    min_liquid_units: int = 0
    seed_cash_per_unit: str = "0"
    initial_shares_outstanding: int = 0
    calendar_id: str = ""  # empty: no calendar (UTC days, SPEC §1-10)
    dealing_cutoff: str = "16:00"
    create_settlement_days: int = 2
    redeem_settlement_days: int = 2
    pricing: str = LIVE
    require_delivery: bool = False
    # SPEC §17
    management_fee_rate: str = "0"
    fee_day_count: str = ACT_365
    fee_waiver: FeeWaiverSpec | None = None
    fee_payment: str = CASH
    fee_asset: str = ""
    fee_custodian_id: str = ""
    hold_redemptions_on_break: bool = False  # SPEC §19


# CreateFund's and UpdateFund's terms of the dealing day (SPEC §13), checked after the others, and
# then the fee terms (SPEC §17), which need the calendar.
DEALING_TERMS = ("calendar_id", "dealing_cutoff", "create_settlement_days", "redeem_settlement_days", "pricing",
                 "require_delivery")
FEE_TERMS = ("management_fee_rate", "fee_day_count", "fee_waiver", "fee_payment", "fee_asset", "fee_custodian_id")
BOOK_TERMS = ("hold_redemptions_on_break",)  # SPEC §19, checked after the fee terms


class UpdateFund(Struct):
    """Fields left as None are unchanged; ``assets`` updates the named existing assets only."""

    fund_id: str
    name: str | None = None
    dealing_status: str | None = None
    max_price_age_seconds: int | None = None
    creation_fee: str | None = None
    redemption_fee: str | None = None
    min_liquid_units: int | None = None
    creation_custodian_id: str | None = None
    custodian_priority: list[str] | None = None
    seed_cash_per_unit: str | None = None
    assets: list[FundAssetSpec] | None = None
    calendar_id: str | None = None  # "": remove the calendar
    dealing_cutoff: str | None = None
    create_settlement_days: int | None = None
    redeem_settlement_days: int | None = None
    pricing: str | None = None
    require_delivery: bool | None = None
    management_fee_rate: str | None = None
    fee_day_count: str | None = None
    fee_waiver: FeeWaiverSpec | None = None
    fee_payment: str | None = None
    fee_asset: str | None = None
    fee_custodian_id: str | None = None
    hold_redemptions_on_break: bool | None = None


class AdjustHolding(Struct):
    fund_id: str
    custodian_id: str
    asset: str
    delta: str
    reason: str = ""
    break_id: str = ""  # SPEC §19: once the fund has a statement, the OPEN break this adjusts for


class AdjustCash(Struct):
    fund_id: str
    delta: str
    reason: str = ""


class Stake(Struct):
    fund_id: str
    custodian_id: str
    asset: str
    quantity: str


class Unstake(Stake):
    pass


class RecordStakingReward(Stake):
    pass


class RecordSlashing(Stake):
    pass


class PriceTick(Struct):
    asset: str
    currency: str
    price: str
    as_of_unix_ms: int


class PublishPrices(Struct):
    ticks: list[PriceTick]


class SettleOrder(Struct):
    order_id: str


class OrderRequest(Struct):
    fund_id: str
    side: str
    units: int
    client_order_id: str
    payout_wallet_ids: list[str] = []  # REDEEM of a fund that requires delivery: one wallet per asset


class SubmitOrder(Struct):
    participant_id: str
    request: OrderRequest


class SubmitOrders(Struct):
    participant_id: str
    requests: list[OrderRequest]


class CancelOrder(Struct):
    order_id: str
    participant_id: str | None = None  # None: the issuer
    reason: str = ""


class RegisterWallet(Struct):
    participant_id: str
    asset: str
    address: str
    label: str = ""
    principal: str = ""  # the issuer principal registering it (four eyes: another one approves)


class ApproveWallet(Struct):
    wallet_id: str
    principal: str = ""


class RevokeWallet(Struct):
    wallet_id: str
    reason: str = ""
    principal: str = ""


class RecordDelivery(Struct):
    order_id: str
    asset: str
    quantity: str
    tx_hash: str
    from_address: str
    confirmations: int


class RecordPayout(Struct):
    order_id: str
    custodian_id: str
    asset: str
    quantity: str
    tx_hash: str


class RegisterCalendar(Struct):
    calendar_id: str
    time_zone: str
    holidays: list[str] = []
    weekend_days: list[int] | None = None  # None: Saturday and Sunday; []: none


class SetHolidays(Struct):
    calendar_id: str
    holidays: list[str]


class CloseDealingDay(Struct):
    calendar_id: str
    date: str
    reason: str = ""


class StrikeNav(Struct):
    fund_id: str
    dealing_date: str
    ticks: list[PriceTick]


class Sweep(Struct):
    """SPEC §18: a move the custodian made between storage tiers of a fund's held coins."""

    fund_id: str
    custodian_id: str
    asset: str
    quantity: str
    from_tier: str
    to_tier: str


class SetStoragePolicy(Struct):
    custodian_id: str
    min_cold_ratio: str  # a fraction in [0, 1]
    max_hot_seconds: int


class StatementLineSpec(Struct):
    asset: str
    bucket: str  # AVAILABLE, STAKED, UNBONDING
    quantity: str
    tier: str = ""  # "" all of the bucket; COLD, WARM or HOT (AVAILABLE only)


class BookLine(Fact):
    """The book at a statement's as_of, one (asset, bucket, tier) where non-zero."""

    asset: str
    bucket: str
    tier: str  # "" the whole bucket (AVAILABLE: available + reserved)
    quantity: int


class InFlight(Fact):
    """What is in flight at as_of for an asset at the custodian (SPEC §19, TIMING): confirmed deliveries
    on ACCEPTED creations minus payouts on legs of ACCEPTED redemptions, and what explains it."""

    asset: str
    quantity: int  # signed
    order_ids: tuple[str, ...]  # sorted
    tx_hashes: tuple[str, ...]  # sorted


class StatementBook(Fact):
    """The book of one (fund, custodian) at an instant, as a statement is compared with it."""

    lines: tuple[BookLine, ...]  # by asset, bucket, tier
    in_flight: tuple[InFlight, ...] = ()  # by asset, where there is any


class RecordStatement(Struct):
    fund_id: str
    custodian_id: str
    as_of: int  # unix ms
    source: str  # CUSTODIAN or CHAIN
    reference: str
    lines: list[StatementLineSpec]
    # The book at as_of: the engine fills it from the journal when records came after as_of; None: the
    # ledger's own state at as_of (etf_engine/ledger.py).
    book: StatementBook | None = None


class ResolveBreak(Struct):
    break_id: str
    adjustment: str = "0"  # signed, in the break's asset's decimals; applied to the break's bucket
    comment: str = ""
    principal: str = ""  # who proposed it
    approved_by: str = ""  # set by ApproveInstruction when it runs as an instruction (SPEC §20)


class PayFee(Struct):
    """SPEC §17: ``amount`` pays the accrued fee in cash; ``asset`` (with ``quantity``, ``tx_hash`` and
    ``to_address``) pays it in kind out of the fund's fee_payable."""

    fund_id: str
    amount: str = ""
    asset: str = ""
    quantity: str = ""
    tx_hash: str = ""
    to_address: str = ""


class ProposeInstruction(Struct):
    """SPEC §20: a call listed in ``four_eyes``, made by ``principal``: checked in full, then recorded
    PENDING instead of acting. The engine makes it; ``command`` is the call's own command."""

    command: Any
    principal: str


class ApproveInstruction(Struct):
    instruction_id: str
    principal: str = ""  # the approver: a different issuer principal from the proposer


class RejectInstruction(Struct):
    instruction_id: str
    reason: str = ""
    principal: str = ""


# == results ====================================================================================
class BasketLine(Result):
    asset: str
    quantity_per_unit: int


class Basket(Struct):
    fund_id: str
    creation_unit: int
    lines: list[BasketLine]
    cash_component: int | None  # cents; None when a price is missing and shares are outstanding
    nav_per_share: int | None  # 1e-4; None when no shares are outstanding or a price is missing
    nav_per_unit: int | None  # cents
    shares_outstanding: int
    as_of: int  # newest as_of (ms) of the prices used; 0 when none
    stale: bool
    accrued_fees: int = 0  # cents (SPEC §17): the exact accrued fee, rounded half-even


class NavLine(Struct):
    asset: str
    quantity: int
    price: int | None
    value: int | None  # cents


class Nav(Struct):
    fund_id: str
    nav: int | None  # cents; None when a price is missing
    nav_per_share: int | None  # 1e-4; None when no shares or a price is missing
    shares_outstanding: int
    cash: int
    as_of: int
    stale: bool
    lines: list[NavLine]
    accrued_fees: int = 0  # cents (SPEC §17): in the NAV already; the exact figure, rounded half-even


class Line(Result):
    asset: str
    quantity: int


class HoldingTiers(Struct):
    """SPEC §18: held (available + reserved) by storage tier, against the policy, computed at the read."""

    cold: int
    warm: int
    hot: int
    cold_required: int
    hot_allowance: int
    breach: bool  # cold < cold_required
    idle: bool  # hot > hot_allowance for longer than max_hot_seconds


class HoldingRow(Struct):
    custodian_id: str
    asset: str
    available: int
    reserved: int
    staked: int
    unbonding: int
    licensed: bool
    tiers: HoldingTiers | None = None  # SPEC §18 (every holding the ledgers show has one)


class AssetSummary(Struct):
    asset: str
    total: int
    committed: int
    liquid: int
    illiquid: int
    staking_cap: int  # 1e-4
    liquidity_buffer: int  # 1e-4


class Holdings(Struct):
    fund_id: str
    holdings: list[HoldingRow]  # sorted by (custodian_id, asset)
    assets: list[AssetSummary]  # sorted by asset
    fee_payable: list[Line] = []  # SPEC §17: taken in kind, not yet paid; by asset, where above zero


class Leg(Result):
    custodian_id: str
    asset: str
    quantity: int
    destination_address: str = ""  # the payout wallet's address (a fund that requires delivery)


class Delivery(Result):
    """An inbound transfer of a CREATE (RecordDelivery); ``recorded_at`` is its first recording."""

    asset: str
    quantity: int
    tx_hash: str
    from_address: str
    confirmations: int
    recorded_at: int


class Payout(Result):
    """An outbound transfer of a REDEEM leg (RecordPayout)."""

    custodian_id: str
    asset: str
    quantity: int
    tx_hash: str
    recorded_at: int


class Order(Result):
    order_id: str
    client_order_id: str
    participant_id: str
    fund_id: str
    side: str
    units: int
    status: str
    reject_reason: str
    basket: Basket
    # Tuples, not lists: a tuple of untracked items leaves the garbage collector's lists, a list never
    # does. Every order ever recorded stays in memory, so with lists each full collection walked two
    # objects per order (measured: 190 ms pauses at 350,000 orders; see benchmarks/RESULTS.md).
    deliverables: tuple[Line, ...]
    cash_amount: int | None
    fee: int
    legs: tuple[Leg, ...]
    created_at: int
    updated_at: int
    # SPEC §13 (defaults: orders journaled before it; a fund without a calendar)
    dealing_date: str = ""  # ISO date; "" without a calendar
    settlement_date: str = ""  # "" without a calendar, and on a REJECTED order
    priced: bool = True  # False: an ACCEPTED or REJECTED FORWARD order not yet priced by StrikeNav
    official_nav_per_share: int | None = None  # 1e-4; FORWARD, once priced (None when S = 0 at the strike)
    # SPEC §14
    payout_wallet_ids: tuple[str, ...] | None = None  # sorted; None when not checked (CREATE, or no delivery)
    deliveries: tuple[Delivery, ...] = ()  # in recording order
    payouts: tuple[Payout, ...] = ()  # in recording order
    excess: tuple[Line, ...] = ()  # confirmed deliveries above the deliverable, by asset, where above zero
    overdue: bool = False  # computed when read (ledger.py): ACCEPTED past the end of settlement_date
    cancel_reason: str = ""


class CapacitySide(Struct):
    units: int
    binding_reason: str


class Capacity(Struct):
    fund_id: str
    create: CapacitySide
    redeem: CapacitySide


class IgnoredTick(Struct):
    """A tick PublishPrices did not apply: it is not newer than the price it would replace (SPEC §7)."""

    index: int  # its place in the call's ticks
    asset: str
    currency: str
    as_of_unix_ms: int
    current_as_of_unix_ms: int  # the current price's as_of (an earlier tick of the same call may have set it)

    @property
    def reason(self) -> str:
        """Why, with both times: "older than the current BTC/USD price: as of ..., the current one as of ..."."""
        pair = f"{self.asset}/{self.currency}"
        if self.as_of_unix_ms == self.current_as_of_unix_ms:
            return f"not newer than the current {pair} price: both as of {utc_text(self.as_of_unix_ms)}"
        return (f"older than the current {pair} price: as of {utc_text(self.as_of_unix_ms)}, the current one as "
                f"of {utc_text(self.current_as_of_unix_ms)}")


def utc_text(unix_ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC to the millisecond: 2025-06-15T15:06:40.000Z."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=unix_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PublishResult(Struct):
    applied: int
    ignored: int
    ignored_ticks: list[IgnoredTick] = []  # each ignored tick and why, in the call's order


class ClosedDay(Struct):
    date: str
    reason: str


class CalendarInfo(Struct):
    calendar_id: str
    time_zone: str
    holidays: list[str]  # sorted
    weekend_days: list[int]  # sorted ISO weekdays
    closed: list[ClosedDay]  # sorted by date


class PriceLine(Fact):
    asset: str
    price: int  # 1e-8


class StorageBreach(Fact):
    """A holding in breach of its storage ratio at a strike (SPEC §18): cold < cold_required."""

    custodian_id: str
    asset: str
    cold: int
    cold_required: int


class OfficialLine(Fact):
    asset: str
    quantity: int  # total(a) at the strike
    price: int  # the official price
    value: int  # cents


class OfficialNav(Fact):
    """A fund's official NAV for one dealing date (SPEC §13), from the state at the strike."""

    fund_id: str
    dealing_date: str
    nav: int  # cents
    nav_per_share: int | None  # 1e-4; None when no shares are outstanding
    shares_outstanding: int
    cash: int  # cents
    lines: tuple[OfficialLine, ...]  # by asset, after the fee's in-kind move
    struck_at: int  # ms
    # SPEC §17 (0 and empty for a fund without a fee, and in records from before it)
    fee: int = 0  # cents: this strike's accrual
    fee_days: int = 0  # the calendar days it accrued for
    fee_basis: int = 0  # cents: the basis before this accrual, rounded half-even
    accrued_fees: int = 0  # cents: after this strike (and its in-kind move), rounded half-even
    fee_payable: tuple[Line, ...] = ()  # by asset, after this strike, where above zero
    storage_breaches: tuple[StorageBreach, ...] = ()  # SPEC §18: at the strike, after its in-kind move


class Pcf(Fact):
    """The portfolio composition file published for a dealing day, from the strike before it."""

    fund_id: str
    dealing_date: str
    creation_unit: int
    lines: tuple[BasketLine, ...]
    estimated_cash_component: int  # cents
    nav_per_unit: int  # cents
    nav_per_share: int | None  # 1e-4; None when no shares are outstanding
    shares_outstanding: int
    prices: tuple[PriceLine, ...]
    published_at: int  # ms


class Wallet(Fact):
    wallet_id: str
    participant_id: str
    asset: str
    address: str
    label: str
    status: str  # PENDING, APPROVED, REVOKED
    registered_by: str
    approved_by: str = ""
    revoked_by: str = ""
    revoke_reason: str = ""
    registered_at: int = 0
    updated_at: int = 0


class Instruction(Fact):
    """SPEC §20: a call listed in ``four_eyes``, waiting for (or decided by) a second issuer principal."""

    instruction_id: str  # INS-00000001, ...
    rpc: str  # the RPC, as named on the wire (PayFee, AdjustHolding, ...)
    request: str  # the call's command, as JSON
    status: str  # PENDING, EXECUTED, FAILED, REJECTED
    proposed_by: str
    proposed_at: int  # ms
    decided_by: str = ""  # who approved or rejected it
    decided_at: int = 0
    error: str = ""  # FAILED: the refusal the call met at approval, code first
    reason: str = ""  # REJECTED: why


class StatementLine(Fact):
    asset: str
    bucket: str
    tier: str
    quantity: int


class Statement(Fact):
    """A custodian's statement as recorded (SPEC §19)."""

    fund_id: str
    custodian_id: str
    as_of: int
    source: str
    reference: str
    lines: tuple[StatementLine, ...]  # by asset, bucket, tier
    recorded_at: int


class Break(Fact):
    """A difference between a custodian's statement and the book (SPEC §19). Never deleted."""

    break_id: str  # BRK-00000001, ...
    fund_id: str
    custodian_id: str
    asset: str
    bucket: str
    tier: str
    as_of: int
    book: int
    statement: int
    difference: int  # book - statement
    classification: str  # TIMING, UNEXPLAINED
    status: str  # OPEN, RESOLVED
    opened_at: int
    reference: str  # the statement's that opened it
    order_ids: tuple[str, ...] = ()  # TIMING: the orders in flight that explain it
    tx_hashes: tuple[str, ...] = ()
    resolved_at: int = 0
    resolved_by_reference: str = ""  # a later statement that agreed (TIMING)
    adjustment: int = 0  # ResolveBreak's (signed quantity)
    comment: str = ""
    proposed_by: str = ""
    approved_by: str = ""


class StatementResult(Struct):
    opened: list[Break]  # by break_id
    resolved: list[str]  # TIMING break ids a line of this statement resolved
    ignored: bool = False  # the same reference again with the same content


class StrikeResult(Struct):
    nav: OfficialNav
    pcf: Pcf
    priced_orders: int  # FORWARD orders of the date priced by this strike


# == events: every state change, in the journal; applying them from empty rebuilds the state ====
class Event(Fact, tag=True, kw_only=True, omit_defaults=True):
    at: int  # unix ms of the command that produced it
    # The principal whose call caused it (the audit trail): stamped by the engine when it journals the
    # event, so ledgers never see it; "" in records from before it was kept.
    principal: str = ""
    # SPEC §20: an instruction's events carry its proposer (``principal`` is then the approver).
    proposed_by: str = ""


class AssetRegistered(Event):
    symbol: str
    decimals: int
    min_confirmations: int = 1
    chain: str = ""  # the chain its addresses are checked for; "" unchecked (resolved at registration)


class CustodianRegistered(Event):
    custodian_id: str
    name: str
    licence_number: str
    licence_status: str
    licence_expires_at: int


class LicenceSet(Event):
    custodian_id: str
    licence_status: str
    licence_expires_at: int


class ParticipantRegistered(Event):
    participant_id: str
    name: str
    eligible_fund_ids: tuple[str, ...]
    max_units_per_order: int
    max_units_per_day: int


class FundAssetTerms(Fact):
    asset: str
    staking_cap: int
    liquidity_buffer: int
    unbonding_seconds: int
    seed_quantity_per_unit: int
    staking_fee_rate: int = 0  # 1e-6 (SPEC §17)
    min_cold_ratio: int | None = None  # 1e-4 (SPEC §18); None: the custodian's policy


class FeeWaiver(Fact):
    rate: int  # 1e-6
    nav_limit: int  # cents
    until: str  # ISO date, inclusive


class FundTerms(Fact):
    """A fund's whole configuration after a create or an update."""

    fund_id: str
    name: str
    base_currency: str
    creation_unit: int
    dealing_status: str
    max_price_age_seconds: int
    creation_fee: int
    redemption_fee: int
    min_liquid_units: int
    creation_custodian_id: str
    custodian_priority: tuple[str, ...]
    seed_cash_per_unit: int
    assets: tuple[FundAssetTerms, ...]  # sorted by asset
    # SPEC §13; the defaults are those of a fund journaled before it
    calendar_id: str = ""
    dealing_cutoff: str = "16:00:00"  # local HH:MM:SS
    create_settlement_days: int = 2
    redeem_settlement_days: int = 2
    pricing: str = LIVE
    require_delivery: bool = False  # SPEC §14
    # The dealing date an order would have had when the fund got its calendar: StrikeNav's dates run
    # from here without a gap. A fact (computed once, from the time zone data of that moment).
    first_dealing_date: str = ""
    # SPEC §17; the defaults are a fund without a fee (every fund journaled before it)
    management_fee_rate: int = 0  # 1e-6
    fee_day_count: str = ACT_365
    fee_waiver: FeeWaiver | None = None
    fee_payment: str = CASH
    fee_asset: str = ""
    fee_custodian_id: str = ""
    hold_redemptions_on_break: bool = False  # SPEC §19


class FundCreated(Event):
    terms: FundTerms
    shares_outstanding: int
    # SPEC §18: the tier what enters held lands in. HOT for every fund created since; a fund created
    # before (the default, as its record has none) keeps its coins in COLD, as it is restored.
    entry_tier: str = COLD


class FundUpdated(Event):
    terms: FundTerms


class HoldingAdjusted(Event):
    fund_id: str
    custodian_id: str
    asset: str
    delta: int
    reason: str = ""  # SPEC §21's roll-forward shows each adjustment with its reason and break (§19)
    break_id: str = ""


class Swept(Event):
    fund_id: str
    custodian_id: str
    asset: str
    quantity: int
    from_tier: str
    to_tier: str


class StoragePolicySet(Event):
    custodian_id: str
    min_cold_ratio: int  # 1e-4
    max_hot_seconds: int


class CashAdjusted(Event):
    fund_id: str
    delta: int


class Staked(Event):
    fund_id: str
    custodian_id: str
    asset: str
    quantity: int


class Unstaked(Event):
    fund_id: str
    custodian_id: str
    asset: str
    quantity: int
    release_at: int  # ms


class RewardRecorded(Staked):
    """``quantity`` is what enters the fund: the net. SPEC §17 keeps the gross and the staking fee as
    well (0 in records from before it, when the gross was the net)."""

    gross: int = 0
    staking_fee: int = 0
    net: int = 0


class Slashed(Staked):
    pass


class PriceSet(Event):
    asset: str
    currency: str
    price: int
    as_of: int


class OrderRecorded(Event):
    order: Order  # as decided; ACCEPTED redemptions carry their legs


class OrderSettled(Event):
    order_id: str


class OrderCancelled(Event):
    order_id: str
    reason: str = ""


class CalendarRegistered(Event):
    calendar_id: str
    time_zone: str
    holidays: tuple[str, ...]  # sorted ISO dates
    weekend_days: tuple[int, ...]  # sorted ISO weekdays


class HolidaysSet(Event):
    calendar_id: str
    holidays: tuple[str, ...]


class OrderDates(Fact):
    order_id: str
    dealing_date: str
    settlement_date: str


class PcfMoved(Fact):
    fund_id: str
    to_date: str


class DealingDayClosed(Event):
    """A day closed at short notice, with every consequence computed at decision time: the new
    dates of the ACCEPTED orders it moves and the PCFs published for it, moved to ``to_date``."""

    calendar_id: str
    date: str
    reason: str
    orders: tuple[OrderDates, ...]
    pcfs: tuple[PcfMoved, ...]


class NavStruck(Event):
    """The official NAV of a dealing date and the PCF it publishes for the next dealing day. Applying
    it prices the fund's ACCEPTED FORWARD orders of that date from ``nav`` alone (exact arithmetic)."""

    nav: OfficialNav
    pcf: Pcf
    # SPEC §17 IN_KIND: the quantity of fee_asset moved from fee_custodian's available into fee_payable
    fee_taken: int = 0
    fee_asset: str = ""
    fee_custodian_id: str = ""


class ClockAdvanced(Event):
    """Diagnostics.AdvanceClock with ``test_clock = true``: the engine's clock runs ``offset_ms``
    ahead of the wall clock from here on (``at`` is the new time). The ledgers ignore it."""

    offset_ms: int


class CheckpointRecorded(Event):
    """SPEC §21: a checkpoint of the journal's Merkle tree (journal/merkle.py) over every record before
    this one: ``tree_size`` = this record's seq − 1, ``root`` in hex, and the Ed25519 ``signature`` (hex)
    over ``checkpoint_message(shard, tree_size, root)`` by ``public_key`` when the config names a
    signing_key. The engine asks for one (at StrikeNav, on Checkpoint()) with tree_size 0; the journal
    fills it in as it stores it, where the records before it are known. The ledgers ignore it."""

    tree_size: int = 0
    root: str = ""
    shard: str = ""
    signature: str = ""
    public_key: str = ""


class WalletRegistered(Event):
    wallet: Wallet  # PENDING


class WalletApproved(Event):
    wallet_id: str
    approved_by: str


class WalletRevoked(Event):
    wallet_id: str
    revoked_by: str
    reason: str


class DeliveryRecorded(Event):
    """A delivery to a CREATE, or new confirmations of one already recorded (same tx_hash)."""

    order_id: str
    delivery: Delivery


class PayoutRecorded(Event):
    order_id: str
    payout: Payout


class FeePaid(Event):
    """PayFee (SPEC §17): ``amount`` cents in cash, or ``quantity`` of ``asset`` out of fee_payable."""

    fund_id: str
    amount: int = 0
    asset: str = ""
    quantity: int = 0
    tx_hash: str = ""
    to_address: str = ""


class StatementRecorded(Event):
    """RecordStatement: the lines as given, the breaks it opened and the TIMING ones it resolved."""

    fund_id: str
    custodian_id: str
    as_of: int
    source: str
    reference: str
    lines: tuple[StatementLine, ...]
    opened: tuple[Break, ...] = ()
    resolved: tuple[str, ...] = ()


class BreakResolved(Event):
    """ResolveBreak: the adjustment (0: the book was right) applies to the break's bucket."""

    break_id: str
    adjustment: int
    comment: str
    # the principals, as the command carried them (an applier never reads the stamped principal and
    # proposed_by, which the journal adds after the event applied)
    proposer: str = ""
    approver: str = ""


class InstructionProposed(Event):
    instruction: Instruction  # PENDING


class InstructionDecided(Event):
    """ApproveInstruction (EXECUTED or FAILED: the call's own events come first) or RejectInstruction."""

    instruction_id: str
    status: str
    decided_by: str
    error: str = ""
    reason: str = ""


AnyEvent = (
    AssetRegistered | CustodianRegistered | LicenceSet | ParticipantRegistered | FundCreated | FundUpdated
    | HoldingAdjusted | CashAdjusted | Staked | Unstaked | RewardRecorded | Slashed | PriceSet | OrderRecorded
    | OrderSettled | OrderCancelled | CalendarRegistered | HolidaysSet | DealingDayClosed | NavStruck
    | ClockAdvanced | WalletRegistered | WalletApproved | WalletRevoked | DeliveryRecorded | PayoutRecorded
    | FeePaid | InstructionProposed | InstructionDecided | Swept | StoragePolicySet | StatementRecorded
    | BreakResolved | CheckpointRecorded
)
