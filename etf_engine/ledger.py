"""The contract both ledgers implement: the Cython core (``etf_engine._core.Ledger``) and the
Fraction reference (``etf_engine.reference.ReferenceLedger``). Tests drive both with the same calls
and compare every figure; the engine and the API speak only this surface.

Decisions SPEC.md leaves open, fixed here so that both ledgers agree:

* Time: every call takes ``now_ms`` (unix ms). An unbonding lot is available from the first call
  with ``now_ms >= release_at``. Licensed at t: status ACTIVE and ``t < licence_expires_at*1000``.
  A price is fresh when ``now_ms - as_of <= max_price_age_seconds*1000``. A day is
  ``now_ms // DAY_MS`` (UTC); the daily limit counts ACCEPTED and SETTLED orders created that day.
* SubmitOrder refusals, in this order: side unknown, units <= 0, client_order_id malformed
  (INVALID_ARGUMENT); participant unknown (PERMISSION_DENIED); the key (participant,
  client_order_id) exists: same fund, side and units -> the original order, no events, otherwise
  ALREADY_EXISTS; fund unknown (NOT_FOUND); participant not eligible (PERMISSION_DENIED);
  units * creation_unit > 10^15 (OUT_OF_RANGE). Then the order is recorded with the checks of
  SPEC §5. Order ids are ``ORD-%08d`` from a sequence starting at 1; rejected orders take one too.
* A recorded order (accepted or rejected) carries the basket at decision time, deliverables
  (units x quantity_per_unit), cash_amount (units x cash_component, None when the cash component is),
  fee (creation_fee / redemption_fee when ACCEPTED, 0 when REJECTED) and legs (ACCEPTED REDEEM only).
* Redemption legs: licensed custodians in ``custodian_priority`` order, then licensed custodians
  not listed there in custodian_id order; zero legs are omitted.
* Basket with S = 0: lines are the seed quantities, cash_component the seed cash; nav_per_unit is
  the seed basket's value (sum of seed quantity x price + seed cash, 2 dp half-even); nav_per_share
  is None (no shares outstanding, SPEC §3). With a price missing, every money field of a basket or
  NAV that needs it is None (quantities and the seed cash, which needs no price, are still given);
  ``stale`` is then true.
  ``as_of`` is the newest as_of of the fund's prices present (0 if none).
* Capacity: per side, ``units`` = the largest n >= 0 with check_order(n) ACCEPTED (n never above
  max_units_per_order); ``binding_reason`` = reject_reason of check_order(units + 1), ignoring
  idempotency. CheckOrder returns exactly what SubmitOrder would (an existing key: that order),
  with ``order_id`` "".
* Instructions refuse zero or negative quantities and zero deltas (INVALID_ARGUMENT); an asset
  the fund does not hold in its terms is INVALID_ARGUMENT naming ``asset``; unknown fund or
  custodian NOT_FOUND. AdjustHolding below zero: FAILED_PRECONDITION INSUFFICIENT_LIQUID_BALANCE.
  RecordSlashing above staked: FAILED_PRECONDITION INSUFFICIENT_STAKED_BALANCE. Any bucket that
  would exceed 10^30 smallest units, or shares above 10^15: OUT_OF_RANGE, checked after SPEC §6's
  checks (a Stake past 10^30 that also breaches the cap is STAKING_CAP_BREACH). An instruction sees the
  lots matured by its time as available (it releases them before its checks). SettleOrder's
  OUT_OF_RANGE names ``order_id``, the request's one field.
* Ranges of SPEC §1 on every field that holds one: units and participant limits up to 10^15 shares
  (``max_units_per_order``, ``max_units_per_day``, ``min_liquid_units``), durations up to 10^9 s,
  money (fees, seed cash, an AdjustCash delta and the cash it leaves) up to 10^30 cents: OUT_OF_RANGE.
* CreateFund checks its fields in declaration order (fund_id, base_currency, creation_unit,
  creation_custodian_id, custodian_priority, assets — each FundAssetSpec in its own field order —,
  dealing_status, max_price_age_seconds, fees, min_liquid_units, seed_cash_per_unit), then
  initial_shares_outstanding, then ALREADY_EXISTS, then the dealing terms of SPEC §13. UpdateFund
  checks the fields it is given in declaration order, the dealing terms last.
* PublishPrices: a tick with an unknown asset, malformed currency (``[A-Z]{3,10}``), bad price, or
  as_of > now + 5 s refuses the whole batch (INVALID_ARGUMENT naming ``ticks[i].field``; a price
  above 10^12 is OUT_OF_RANGE). Ticks apply in order; one not newer than the current price of its
  (asset, currency) is ignored and counted.
* SettleOrder / CancelOrder of an order that is not ACCEPTED: FAILED_PRECONDITION with the reason
  ``ORDER_NOT_ACCEPTED`` (SPEC names no code for it).
* GetHoldings lists only rows holding something (as ``state()``), so its answer is a function of state.
* The dealing day (SPEC §13), with ``etf_engine.calendar`` for every date and instant (both ledgers
  call the same functions, at decision time only; their answers are carried in events):
  - RegisterCalendar: calendar_id (id), time_zone, holidays (``calendar.parse_holidays``), weekend_days
    (``calendar.parse_weekend``), then ALREADY_EXISTS. SetHolidays / CloseDealingDay: NOT_FOUND for
    the calendar first, then their fields (``date``; ``reason`` at most 256 characters). Unknown
    calendar on any call: NOT_FOUND.
  - CloseDealingDay refusals after the fields: NOT_A_DEALING_DAY (the date is a weekend day, a
    holiday or already closed), then NOT_CLOSABLE (date < the calendar's local date of now, or a fund
    on this calendar has struck that date). For every fund on the calendar, each ACCEPTED order with
    dealing_date == date gets dealing_date = next dealing day (after the closure) and settlement_date
    = that + n dealing days; each other ACCEPTED order with settlement_date >= date gets
    settlement_date = dealing_date + n dealing days (after the closure), where n is the order's own
    count: ``calendar.dealing_days_between(dealing_date, settlement_date)`` before the closure. Moves
    are listed in order-id order. A PCF of a fund on the calendar dated that day moves to the next
    dealing day (kept only when none is there).
  - CreateFund/UpdateFund, after the Part I checks: calendar_id ("" none; else NOT_FOUND), dealing_cutoff
    (``calendar.parse_cutoff``), create_settlement_days, redeem_settlement_days (INVALID_ARGUMENT
    outside 0..30), pricing (LIVE/FORWARD; FORWARD without a calendar: INVALID_ARGUMENT naming
    ``pricing``). ``first_dealing_date`` = the dealing date of now whenever the calendar_id changes to a
    non-empty one (CreateFund with one included), "" without a calendar, else kept.
  - An order of a fund with a calendar: dealing_date = ``calendar.dealing_date(cal, cutoff, now)``;
    settlement_date (ACCEPTED only) = dealing_date + the fund's settlement days of its side. The
    daily limit counts ACCEPTED and SETTLED units of the participant in the fund whose day equals the
    new order's: an order's day is its dealing_date, or the UTC day of created_at when it has none
    (a fund without a calendar counts by UTC day, as before; an order of either kind never counts
    toward a day of the other). CheckOrder
    and GetCapacity compute the dates the same way.
  - FORWARD orders (the fund's pricing at decision time): the basket's cash_component and the
    order's cash_amount are None and priced False, ACCEPTED or REJECTED; SettleOrder of an unpriced
    order: FAILED_PRECONDITION NOT_PRICED (after ORDER_NOT_ACCEPTED, before CUSTODIAN_NOT_LICENSED).
  - StrikeNav refusals, the first that applies: NOT_FOUND fund; INVALID_ARGUMENT: ``fund_id`` when the
    fund has no calendar, ``dealing_date`` malformed, ``ticks[i].asset`` not an asset of the fund or
    given twice, ``ticks[i].currency`` not the base currency, ``ticks[i].price`` (parse as §7,
    > 0; above 10^12: OUT_OF_RANGE), ``ticks[i].as_of_unix_ms`` (< 0 or more than 5 s ahead), then
    ``ticks`` naming the first asset of the fund without a tick; FAILED_PRECONDITION
    NOT_A_DEALING_DAY (also a date before first_dealing_date: the fund did not deal then);
    ALREADY_EXISTS (date struck); BEFORE_CUTOFF (now < the date's cut-off instant);
    EARLIER_DATE_NOT_STRUCK (a dealing day d with first_dealing_date <= d < date is not struck;
    named in the message).
  - The official NAV: per asset of the fund (symbol order) quantity = total(a), price = the tick's,
    value = round(total x price, 2); nav = round(exact NAV, 2); nav_per_share = round(NAV / S, 4)
    (None when S = 0); cash; struck_at = now. The PCF for ``calendar.next_dealing_day(date)``:
    lines = floor(total x U / S) (S = 0: seed quantities), estimated_cash_component =
    round(NAV x U / S - sum of lines x price, 2) (S = 0: seed cash), nav_per_unit = round(NAV x U /
    S, 2) (S = 0: round(sum of seed lines x price + seed cash, 2)), nav_per_share as above,
    prices = the official prices, published_at = now. A later strike replaces a PCF of the same date.
  - Applying NavStruck prices every ACCEPTED FORWARD order of the fund whose dealing_date is the
    struck date: cash_component = round(NAV x U / S - sum of the order's own quantity_per_unit x
    official price, 2) with NAV exact from the official lines and cash (S = 0: the fund's
    seed_cash_per_unit); basket.cash_component = that, cash_amount = units x it, priced True,
    official_nav_per_share = the NAV's nav_per_share, updated_at = the strike's time. The result
    is ``StrikeResult`` (priced_orders = how many).
  - Reads: get_calendar -> CalendarInfo; get_official_nav(fund_id, date), get_pcf(fund_id, date):
    NOT_FOUND for an unknown fund or a date without one (a malformed date: INVALID_ARGUMENT);
    list_official_navs(fund_id, from_date, to_date): inclusive, "" = unbounded, by date.
  - ClockAdvanced and CheckpointRecorded events change nothing in a ledger (the engine's clock and the
    journal's Merkle tree are not the ledger's).
* Wallets and deliveries (SPEC §14), with ``etf_engine.addresses`` for every address check:
  - RegisterAsset: min_confirmations (0..10^6, default 1), chain (BITCOIN, ETHEREUM, SOLANA or ""),
    both INVALID_ARGUMENT naming the field, before ALREADY_EXISTS; the event carries the chain
    resolved by ``addresses.chain_of`` ("" : unchecked).
  - RegisterWallet: NOT_FOUND participant, NOT_FOUND asset, ``address`` (the asset's chain),
    ``label`` (at most 256 characters), then ALREADY_EXISTS when the participant has a wallet that
    is not REVOKED with the same asset and address. Wallet ids are ``WAL-%08d`` from a sequence
    starting at 1. ApproveWallet: NOT_FOUND, WALLET_NOT_PENDING, then PERMISSION_DENIED ("four
    eyes") when the approver registered it. RevokeWallet: NOT_FOUND, ``reason`` (at most 256),
    FAILED_PRECONDITION WALLET_NOT_APPROVED when already REVOKED; a PENDING or APPROVED wallet is
    revoked. list_wallets(participant_id): "" all, else NOT_FOUND for an unknown participant; by id.
  - CreateFund/UpdateFund take require_delivery (default false), after the dealing terms.
  - SubmitOrder/SubmitOrders/CheckOrder: ``payout_wallet_ids`` is checked for shape with the other
    fields (at most 64 ids, each an id: INVALID_ARGUMENT naming it). On a REDEEM of a fund that
    requires delivery at decision time the order keeps ``payout_wallet_ids`` = the sorted distinct ids
    given (else None: not checked), and check 5 is followed by WALLET_NOT_APPROVED unless every given id
    names an APPROVED wallet of the participant whose asset is in the fund, and each asset of the fund
    has exactly one. Legs then carry their asset's wallet address as ``destination_address``. A repeat
    of a key whose order kept ids, with other (sorted distinct) ids: ALREADY_EXISTS. GetCapacity
    assumes approved wallets: the check never binds there.
  - RecordDelivery: NOT_FOUND order; ``asset`` (an asset of the order's deliverables), ``quantity``
    (the asset's decimals, > 0), ``tx_hash`` (1-128 printable ASCII), ``from_address`` (the asset's
    chain), ``confirmations`` (0..10^6); ORDER_NOT_ACCEPTED (not an ACCEPTED CREATE); a tx_hash the
    order has: same asset, quantity and from_address -> its confirmations updated (no event when they
    are unchanged; recorded_at kept), else ALREADY_EXISTS; a new one: WALLET_NOT_APPROVED unless
    from_address is the address of an APPROVED wallet of the participant for the asset. Deliveries are
    recorded on any fund; only a fund that requires delivery waits for them. ``excess`` is recomputed
    on each: per deliverable asset (asset order), deliveries with confirmations >= the asset's
    min_confirmations minus the deliverable, where above zero.
  - RecordPayout: NOT_FOUND order; ``custodian_id``, ``asset`` (of the fund), ``quantity`` (> 0),
    ``tx_hash`` as above; ORDER_NOT_ACCEPTED (not an ACCEPTED REDEEM); INVALID_ARGUMENT naming
    ``custodian_id`` when no leg is (custodian_id, asset); a tx_hash the order has: same custodian,
    asset and quantity -> nothing (no event), else ALREADY_EXISTS; PAYOUT_EXCEEDS_LEG when the leg's
    payouts would exceed its quantity.
  - SettleOrder: ORDER_NOT_ACCEPTED, NOT_PRICED, then with the fund's require_delivery now:
    DELIVERY_INCOMPLETE (a deliverable asset whose confirmed deliveries fall short) or
    PAYOUT_INCOMPLETE (a leg paid less than its quantity), then CUSTODIAN_NOT_LICENSED. The fund gets
    the deliverables, never the excess.
  - CancelOrder: NOT_FOUND, ``reason`` (at most 256 characters), ORDER_NOT_ACCEPTED; the reason is kept
    as cancel_reason.
  - overdue is computed when an order is read with ``now_ms`` (get_order, list_orders): ACCEPTED, with
    a settlement_date, its fund on a calendar now, and now_ms >= ``calendar.day_end_ms`` of that date
    in that calendar. Stored orders and ``state()`` carry overdue False.
* Fees (SPEC §17). Rates are 1e-6 integers (``numbers.RATE_DP``); the exact accrued fee is a whole
  number of 10^-26 base currency (``numbers.ACCRUED_DP``) in state(), a Fraction in the reference.
  - CreateFund/UpdateFund check the fee terms after the dealing terms (FORWARD without a calendar
    included), in declaration order:
    ``management_fee_rate`` (at most 6 fraction digits, 0 <= r < 0.1; any other: INVALID_ARGUMENT
    naming it, except a number of more than 40 digits: OUT_OF_RANGE, as every number),
    ``fee_day_count`` (ACT_365/ACT_ACT),
    ``fee_waiver`` (``fee_waiver.rate`` as the rate, ``fee_waiver.nav_limit`` money >= 0,
    ``fee_waiver.until`` an ISO date; ``until`` "" means no waiver, which is how UpdateFund removes
    one), ``fee_payment`` (CASH/IN_KIND), ``fee_asset`` ("" or an asset of the fund, after the update's
    assets: INVALID_ARGUMENT), ``fee_custodian_id`` ("" or NOT_FOUND custodian); then, on the terms as
    they would be: IN_KIND without fee_asset (INVALID_ARGUMENT naming ``fee_asset``) or without
    fee_custodian_id (naming ``fee_custodian_id``); a management fee (rate > 0 or a waiver) without a
    calendar: INVALID_ARGUMENT naming ``management_fee_rate``. ``assets[i].staking_fee_rate``: [0, 1),
    6 fraction digits, INVALID_ARGUMENT naming it, checked with the asset's other terms.
  - StrikeNav accrues after all its refusals. Days: the calendar days d with D_prev < d <= D, D_prev the
    fund's latest struck date before D (none: D alone). basis, fee and the waiver exactly as SPEC §17;
    a negative basis accrues 0. fee_basis = round(basis, 2), fee_days = the number of days; a fund
    without a management fee at the strike (rate 0, no waiver) keeps fee, fee_days and fee_basis 0:
    its record is exactly as before §17. IN_KIND: q = min(floor(accrued x
    10^decimals / official price), available of (fee_custodian, fee_asset) at now, matured lots
    included), q >= 0; the NavStruck event carries q as ``fee_taken`` with the asset and custodian
    (fee_taken 0: none moved). The official NAV's lines, nav (= basis - fee), the PCF and the FORWARD
    pricing are after the move. OfficialNav.accrued_fees = round(accrued after, 2); fee_payable: by
    asset, where above zero.
  - The NAV everywhere (GetNav, GetBasket, orders' cash components, capacity) is sum of total x price
    + cash - accrued_fees, exact; Nav and Basket show ``accrued_fees`` = round(accrued, 2); Holdings
    show ``fee_payable``. The in-kind move counts as what went out of the fund's holdings
    (check_invariants).
  - PayFee: NOT_FOUND fund; then with ``asset`` "" (cash): ``quantity``, ``tx_hash``, ``to_address``
    must be "" (INVALID_ARGUMENT naming the first given), ``amount`` (money > 0); FEE_EXCEEDS_ACCRUED
    when amount > the exact accrued; OUT_OF_RANGE ``amount`` when the cash would pass -10^28 (MAX_MONEY).
    In kind: ``amount`` must be "" (INVALID_ARGUMENT), ``asset`` (an asset of the fund), ``quantity``
    (its decimals, > 0), ``tx_hash`` (1-128 printable ASCII), ``to_address`` (the asset's chain, as
    §14); FEE_EXCEEDS_ACCRUED when quantity > fee_payable(asset). Result: None; event FeePaid.
  - RecordStakingReward: the fund receives net = quantity - floor(quantity x staking_fee_rate); the
    event's ``quantity`` is the net, with ``gross``, ``staking_fee`` and ``net`` kept beside it. The
    bucket range check (§1) applies to available + net.
* Storage tiers (SPEC §18). Each holding splits held = available + reserved into cold, warm and hot.
  - What enters held lands in the fund's ``entry_tier`` (FundCreated: HOT for a fund created now; a
    fund journaled before §18 has none and keeps COLD, so that its replay and its restore agree):
    a settled creation at the creation custodian, a staking reward's net, a positive AdjustHolding, and
    an unbonding lot once released (in every state and read at or after its release time). What
    leaves held leaves hot, then warm, then cold: a settled redemption leg, a Stake, an in-kind fee, a
    negative AdjustHolding. Reserving (an accepted redemption) and its release (a cancel) move no coin.
  - Sweep: NOT_FOUND fund, NOT_FOUND custodian, ``asset`` (an asset of the fund), ``quantity`` (its
    decimals, > 0), ``from_tier``, ``to_tier`` (COLD/WARM/HOT, different from from_tier: else
    INVALID_ARGUMENT naming ``to_tier``); FAILED_PRECONDITION INSUFFICIENT_TIER_BALANCE when from_tier
    holds less than quantity (at now, released lots in hot). Event Swept; result None.
  - SetStoragePolicy: NOT_FOUND custodian, ``min_cold_ratio`` (a fraction in [0, 1], 4 digits),
    ``max_hot_seconds`` (0..10^9); event StoragePolicySet. A custodian starts at 0.98 and 86,400 s.
    ``assets[i].min_cold_ratio`` on a fund: "" (the custodian's) or a fraction in [0, 1].
  - Figures of a holding at time t, r its ratio: payouts_due = the quantity of the legs at that
    custodian of that asset of the fund's ACCEPTED redemptions whose settlement_date is on or before
    the next dealing day (the first dealing day after the local date of t in the fund's calendar);
    without a calendar, or without a settlement_date, every ACCEPTED redemption's legs count.
    cold_required = max(0, ceil(r x held) - payouts_due); hot_allowance = floor((1 - r) x held) +
    payouts_due; breach = cold < cold_required.
  - idle: ``over_since`` is kept per holding: after applying each record that changes anything of
    the fund (its holdings, orders, terms, strikes), of its calendar, or the policy of the holding's
    custodian, every holding of the fund is evaluated at that record's time: hot > hot_allowance
    keeps over_since (or sets it to the record's time), else clears it. A record that touches none
    of these leaves it as it was (it changes none of the figures but through the date, and the
    fund's next record or the read sees that). At a read at t: idle = hot > hot_allowance at t and
    over_since is set and t - over_since > max_hot_seconds x 1000.
  - get_holdings shows ``tiers`` on every row; StrikeNav records ``storage_breaches`` (holdings of
    the fund in breach at the strike's time, after its in-kind move; by custodian, then asset).
* Reconciliation (SPEC §19).
  - RecordStatement: NOT_FOUND fund, NOT_FOUND custodian, ``reference`` (1-128 printable ASCII). A
    reference the (fund, custodian) has recorded: its lines are read (their checks below), then the
    same as_of, source and lines (sorted) -> ignored (StatementResult.ignored, no event), else
    ALREADY_EXISTS. A new one: ``as_of`` (>= 0, not after now, not before the latest statement's as_of
    of the same (fund, custodian): else INVALID_ARGUMENT naming ``as_of``), ``source``
    (CUSTODIAN/CHAIN), then per line ``lines[i].asset`` (an asset of the fund), ``lines[i].bucket``,
    ``lines[i].tier`` ("" or a tier; a tier on STAKED or UNBONDING: INVALID_ARGUMENT naming it),
    ``lines[i].quantity`` (its decimals, >= 0), a repeated (asset, bucket, tier): INVALID_ARGUMENT
    naming ``lines[i]``.
  - The book (``book`` of the command; None: the ledger's own ``statement_book`` at as_of, which the
    engine leaves to it only when no record came after as_of): per asset, AVAILABLE "" = available
    + reserved, AVAILABLE tier = that tier, STAKED, UNBONDING; in_flight per asset as SPEC's TIMING sum.
  - Compared keys: every line's (asset, bucket, tier); and for every (asset, bucket) the book holds
    non-zero with "" tier and that no line names with any tier, the key (asset, bucket, "") with
    statement 0. A key whose statement differs from the book opens a break (ids ``BRK-%08d``, one
    global sequence, in key order: asset, bucket, tier): TIMING when bucket AVAILABLE, tier "", and
    statement == book + in_flight quantity of the asset (the in-flight order ids and tx hashes kept);
    else UNEXPLAINED. A key that agrees resolves every OPEN TIMING break, and every OPEN UNBONDING break
    (SPEC §19's precise rules: it resolves "only with adjustment 0 or by a later statement"), of the
    same (fund, custodian, asset, bucket, tier) (resolved_at, resolved_by_reference). Result:
    StatementResult.
  - ResolveBreak: NOT_FOUND break, ``adjustment`` (signed, the asset's decimals), ``comment`` (at most
    256 characters), BREAK_NOT_OPEN; an UNBONDING break with a non-zero adjustment: INVALID_ARGUMENT
    naming ``adjustment``; a negative adjustment beyond the bucket (the tier for a tiered break; else
    available): FAILED_PRECONDITION INSUFFICIENT_LIQUID_BALANCE (AVAILABLE), INSUFFICIENT_STAKED_BALANCE
    (STAKED), INSUFFICIENT_TIER_BALANCE (a tier). Event BreakResolved with ``proposer`` = the command's
    principal and ``approver`` = its approved_by (ApproveInstruction sets approved_by on a command that
    has the field). Applying it: AVAILABLE adds to available (in the break's tier when it has one, else
    entering or leaving held as §18), STAKED adds to staked; it counts as coming in or going out of the
    fund (check_invariants). Result: the Break after.
  - HoldingAdjusted keeps AdjustHolding's reason and break_id (as given; the reason is not checked).
  - BREAK_REQUIRED: AdjustHolding on a fund with a statement and break_id "", or with a break_id that
    is not an OPEN break of the same fund, custodian and asset (checked after the fields, before the
    balance). AdjustHolding with a break_id on a fund without a statement: the same break check.
  - hold_redemptions_on_break (fund term, after the fee terms): while an OPEN UNEXPLAINED break of the
    fund on (custodian, asset) exists, that holding is not liquid in §5 check 6 and gives no leg.
  - Reads: list_breaks(fund_id, status) ("" all; NOT_FOUND fund; status OPEN/RESOLVED else
    INVALID_ARGUMENT), get_break(break_id) (NOT_FOUND), by id.
* Four eyes (SPEC §20). The engine, not the ledger, knows the ``four_eyes`` list: it wraps a listed
  call of an issuer in ``ProposeInstruction(command, principal)``.
  - ProposeInstruction runs the command's every check against the state now without applying it
    (a refusal is the command's own) and records InstructionProposed: ``INS-%08d`` from one global
    sequence, rpc = the command's type name, request = its JSON (msgspec), PENDING. Result: Instruction.
  - ApproveInstruction: NOT_FOUND instruction; PERMISSION_DENIED when the approver proposed it;
    INSTRUCTION_NOT_PENDING; then runs the command at now: its events (each with ``proposed_by``)
    followed by InstructionDecided EXECUTED, or — when the command is refused — InstructionDecided
    FAILED with ``error`` = "CODE: message" (the code is the status code name for a refusal without
    a reason code). Result: the Instruction after. RejectInstruction: NOT_FOUND, ``reason`` (at most
    256 characters), INSTRUCTION_NOT_PENDING; REJECTED with decided_by and reason.
  - list_instructions(status): "" all, else one of the statuses (INVALID_ARGUMENT naming ``status``);
    by id.
* Errors are ``EngineError``; the ledger is unchanged after one. Messages name the field; for
  FAILED_PRECONDITION they start with the reason code.
"""

from __future__ import annotations

from typing import Any, Protocol

from etf_engine.model import (
    Basket,
    Break,
    CalendarInfo,
    Capacity,
    Event,
    FundTerms,
    Holdings,
    Instruction,
    Nav,
    OfficialNav,
    Order,
    OrderRequest,
    ParticipantRegistered,
    Pcf,
    StatementBook,
    Wallet,
)
from etf_engine.snapshot import LedgerState


class Ledger(Protocol):
    def execute(self, command: Any, now_ms: int) -> tuple[Any, list[Event]]:
        """Run a state-changing command: validate, apply, return (result, events).

        Results: SubmitOrder/SettleOrder/CancelOrder -> Order; SubmitOrders -> list[Order];
        PublishPrices -> PublishResult; RegisterWallet/ApproveWallet/RevokeWallet -> Wallet;
        RecordDelivery/RecordPayout -> Order; ProposeInstruction/ApproveInstruction/RejectInstruction ->
        Instruction; RecordStatement -> StatementResult; ResolveBreak -> Break; every other command ->
        None. A refused command raises EngineError and changes nothing (SubmitOrders: no item of the call
        is recorded).
        """

    def apply(self, event: Event) -> None:
        """Apply one journaled event (replay). Applying the events ``execute`` returned, in order,
        to an empty ledger rebuilds the same state."""

    def get_nav(self, fund_id: str, now_ms: int) -> Nav: ...

    def get_basket(self, fund_id: str, now_ms: int) -> Basket: ...

    def get_holdings(self, fund_id: str, now_ms: int) -> Holdings: ...

    def check_order(self, participant_id: str, request: OrderRequest, now_ms: int) -> Order: ...

    def get_capacity(self, participant_id: str, fund_id: str, now_ms: int) -> Capacity: ...

    def get_order(self, order_id: str, participant_id: str | None = None, now_ms: int | None = None) -> Order:
        """NOT_FOUND for an unknown order or, when participant_id is given, another's order. With
        now_ms, ``overdue`` is computed at that time."""

    def list_orders(self, fund_id: str = "", status: str = "", participant_id: str | None = None,
                    now_ms: int | None = None) -> list[Order]:
        """Orders in id order; empty fund_id/status match all; ``overdue`` as get_order."""

    def list_wallets(self, participant_id: str = "") -> list[Wallet]: ...

    def list_prices(self) -> list[tuple[str, str, int, int]]:
        """(asset, currency, price, as_of) of every price published, by (asset, currency)."""

    def list_funds(self) -> list[FundTerms]:
        """Every fund's terms, by fund_id."""

    def list_participants(self) -> list[ParticipantRegistered]:
        """Every participant as registered (``at`` 0), by participant_id."""

    def get_calendar(self, calendar_id: str) -> CalendarInfo: ...

    def get_official_nav(self, fund_id: str, dealing_date: str) -> OfficialNav: ...

    def list_official_navs(self, fund_id: str, from_date: str = "", to_date: str = "") -> list[OfficialNav]: ...

    def get_pcf(self, fund_id: str, dealing_date: str) -> Pcf: ...

    def list_instructions(self, status: str = "") -> list[Instruction]: ...

    def list_breaks(self, fund_id: str = "", status: str = "") -> list[Break]: ...

    def get_break(self, break_id: str) -> Break: ...

    def statement_book(self, fund_id: str, custodian_id: str, now_ms: int) -> StatementBook:
        """The book of (fund, custodian) at now_ms, as RecordStatement compares a statement with it."""

    def participant_funds(self, participant_id: str) -> tuple[str, ...]:
        """Eligible fund ids of a participant (NOT_FOUND if unknown); the API uses it for access."""

    def check_invariants(self, now_ms: int) -> None:
        """Raise InvariantBroken unless, at now_ms: no bucket, shares or pending redemption is negative;
        each holding's reserved is the sum of the open legs of ACCEPTED redemptions there; per fund
        asset, what is held = what came in - what went out (settled creations, positive adjustments and
        rewards in; settled redemptions, negative adjustments and slashing out); shares outstanding =
        as created + settled creations - settled redemptions. The core also checks its running sums."""

    def state(self, now_ms: int) -> LedgerState:
        """The whole state, canonical, for comparison, snapshots and digests (etf_engine/snapshot.py's
        LedgerState, which encodes as positional rows): each list sorted by its ids (official NAVs and
        PCFs by fund, then dealing date); holdings that are all zero are omitted; lots released by now_ms
        count as available."""


def make_ledger(kind: str) -> Ledger:
    """An empty ledger: "core" (compiled), "reference" (pure Python) or "auto" (core when built).
    Both produce the same canonical state; only the core restores one (``recover``)."""
    if kind != "reference":
        try:
            from etf_engine._core import Ledger as CoreLedger
        except ImportError:
            if kind == "core":
                raise SystemExit("etf-engine: the compiled core is not built; run `pip install -e .` (or "
                                 "`python setup.py build_ext --inplace`), or pass --ledger reference") from None
        else:
            return CoreLedger()
    from etf_engine.reference import ReferenceLedger

    return ReferenceLedger()
