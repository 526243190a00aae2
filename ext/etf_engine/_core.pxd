# The compiled core's typed surface: fund state records and the Ledger that owns them.
# Quantities and money are Python ints (exact at any size, never wrapped); times and flags are C
# integers, so the checks that run on every order compare machine words where they can.

cdef class Asset:
    cdef readonly str symbol
    cdef readonly int decimals
    cdef object factor  # 10**(18 - decimals): one smallest unit in 1e-18 of a whole asset
    cdef readonly int min_conf  # confirmations a delivery needs to count (SPEC §14)
    cdef readonly str chain  # the chain its addresses are checked for; "" unchecked


cdef class Custodian:
    cdef readonly str custodian_id
    cdef str name, licence_number, status
    cdef object expires_at  # unix seconds, as registered
    cdef long long expires_ms
    cdef bint active
    cdef object min_cold  # SPEC §18: the storage policy's min_cold_ratio (1e-4)
    cdef long long max_hot_seconds
    cdef bint licensed(self, long long now_ms) noexcept
    cdef set_licence(self, str status, object expires_at)


cdef class Participant:
    cdef readonly str participant_id
    cdef str name
    cdef tuple eligible
    cdef set eligible_set
    cdef object max_units_per_order, max_units_per_day
    cdef dict by_client_id  # client_order_id -> order_id
    cdef dict daily  # fund_id -> {day: units accepted or settled that day}
    # The payout route of its last redemption: (payout_wallet_ids as given, fund, wallet epoch) ->
    # (kept ids, asset -> address or None); a dealer names the same wallets order after order.
    cdef tuple route_given, route
    cdef object route_fund
    cdef long long route_epoch


cdef class Holding:
    cdef Custodian custodian
    cdef str asset
    cdef object available, reserved, staked, unbonding
    cdef list lots  # [release_at_ms, quantity]
    # SPEC §18: held (available + reserved) by storage tier; cold is held - warm - hot
    cdef object warm, hot
    cdef object over_since  # the record's time since which hot > hot_allowance, None when not (idle)
    cdef object slack  # while over: at most hot - hot_allowance - 1 (what more due it stays over through)
    cdef dict due  # settlement_date ("" none) -> quantity of the open legs of ACCEPTED redemptions here
    cdef bint dirty  # its tier figures may have changed since the fund's last idle evaluation
    # SPEC §19 hold_redemptions_on_break: the fund has the term and an OPEN UNEXPLAINED break on this
    # (custodian, asset): not liquid, no leg (kept by the events, so that the order path reads one flag)
    cdef bint held


cdef class Price:
    cdef object value  # 1e-8 base currency per whole asset; None before the first tick
    cdef long long as_of


cdef class FundAsset:
    cdef Fund fund
    cdef Asset info
    cdef Price price
    cdef object cap, buffer, seed_qpu, unbonding_seconds
    cdef object staking_fee_rate  # 1e-6: the staking provider's share of each reward (SPEC §17)
    cdef object min_cold  # SPEC §18: the fund term min_cold_ratio (1e-4), None: the custodian's
    cdef list holdings  # Holding in payout order: custodian_priority, then the rest by id
    cdef dict by_custodian
    cdef object total, reserved, illiquid
    cdef object came_in, went_out  # every quantity that entered or left the fund's holdings (check_invariants)
    cdef object qpu  # quantity_per_unit of the cached basket
    cdef object liquid  # cached liquid(a), None when stale; valid in [liquid_from, liquid_until)
    cdef long long liquid_from, liquid_until, liquid_epoch


cdef class Fund:
    cdef object terms  # FundTerms
    cdef str fund_id
    cdef bint open
    cdef object initial_shares  # as created; shares = this + settled creations - settled redemptions
    cdef object unit, cash, shares, pending_redeem, min_liquid, creation_fee, redemption_fee, seed_cash
    cdef long long max_age_ms
    cdef list assets  # FundAsset by symbol
    cdef dict asset_map
    cdef Custodian creation_custodian
    cdef dict rank  # custodian_id -> payout rank
    cdef object nav_num  # sum of priced total*price*factor + cash*10**24, in 1e-26 base currency
    cdef int missing_prices
    cdef object basket  # cached Basket, None when something it depends on changed
    cdef bint basket_stale
    cdef long long next_release  # earliest unbonding release, LLONG_MAX when none
    # lots released since the fund's last record, tentatively: (Holding, lot), and their latest release time
    # (LLONG_MIN when none); a read at an earlier time puts them back (core/custody.pxi _advance)
    cdef list read_lots
    cdef long long read_max
    # the dealing day (SPEC §13)
    cdef str calendar_id  # "" without a calendar
    cdef int cutoff  # seconds after local midnight
    cdef object create_days, redeem_days
    cdef bint forward
    cdef bint require_delivery  # SPEC §14: settlement waits for deliveries and payouts
    cdef object fwd_basket, fwd_of  # the cached basket without its cash component, and the basket it is of
    # The dealing window: for now_ms in [win_from, win_until) with the calendars at win_epoch, an order's
    # dealing date is deal_date; computed once per window instead of a time zone conversion per order.
    cdef long long win_from, win_until, win_epoch
    cdef object day_key  # what the daily limit counts by, for the order being decided
    cdef str deal_date, settle_create, settle_redeem
    cdef dict open_orders  # ACCEPTED order_id -> None, in id order
    cdef dict forward_orders  # dealing_date -> [order_id of unpriced ACCEPTED FORWARD orders]
    cdef dict navs, pcfs  # dealing_date -> OfficialNav, Pcf
    # the fund's books (SPEC §17): the accrued management fee, exact, in nav_num units (1e-26 of base
    # currency; nav_num already has it subtracted), and what was taken in kind and not yet paid
    cdef object accrued
    cdef dict fee_payable  # asset -> quantity, where above zero
    # storage tiers (SPEC §18): the tier what enters held lands in; the holdings whose figures may have
    # changed since the last idle evaluation (all of them: tiers_all), and the next dealing day it used
    cdef int entry  # TIER_COLD, TIER_WARM or TIER_HOT
    cdef list tier_dirty
    cdef bint tiers_all
    cdef str eval_next
    # the next dealing day after the local date of t, for t in [nd_from, nd_until) at calendar nd_epoch
    cdef long long nd_from, nd_until, nd_epoch
    cdef str nd_date
    # reconciliation (SPEC §19): a statement was recorded (AdjustHolding then names a break); the term
    # hold_redemptions_on_break; the OPEN breaks by (custodian_id, asset) -> [break_id] in id order, and how
    # many of them are UNEXPLAINED (what holds a holding back while the term is on)
    cdef bint reconciles
    cdef bint hold_on_break
    cdef dict open_breaks
    cdef dict unexplained


cdef class Ledger:
    cdef dict assets, custodians, participants, funds, prices, watchers, orders, calendars, _apply, _execute
    cdef dict wallets, live_wallets  # wallet_id -> Wallet; (participant, asset, address) -> id, unless REVOKED
    cdef dict approved  # wallet_id -> (participant_id, asset, address) of every APPROVED wallet
    cdef long long next_seq, licence_epoch, calendar_epoch, next_wallet_seq, wallet_epoch
    cdef dict instructions  # instruction_id -> Instruction (SPEC §20; replaced, never mutated)
    cdef long long next_instruction_seq
    cdef bint dry  # a proposed instruction's checks are running: _emit stops before anything applies
    # reconciliation (SPEC §19): (fund_id, custodian_id) -> [Statement] in recording order; break_id -> Break
    # (replaced, never mutated); the next break's number (one global sequence)
    cdef dict statements, breaks
    cdef long long next_break_seq
