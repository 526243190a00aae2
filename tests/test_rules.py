"""Every rule of SPEC §1-7 (with the decisions of etf_engine/ledger.py) made to fire, and probed at its
boundary, on both ledgers (the ``ledger`` fixture: "core" and "reference").

Expected figures are worked out by hand in the comments; the sample fund is described in conftest.py
(F1: 1000 shares of creation unit 100, 10 BTC + 100 ETH at CUS-A, BTC 500000 / ETH 20000 HKD, so one
unit is 1 BTC + 10 ETH and NAV is 7,000,000.00).
"""

from __future__ import annotations

import msgspec
import pytest
from conftest import EXPIRES, F1, F2, NOW, T0, btc, cents, eth, sample

from etf_engine import model as m
from etf_engine.errors import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OUT_OF_RANGE,
    PERMISSION_DENIED,
    EngineError,
)
from etf_engine.model import (
    ACCEPTED,
    ACTIVE,
    CANCELLED,
    CREATE,
    CUSTODIAN_NOT_LICENSED,
    DAILY_LIMIT_EXCEEDED,
    DAY_MS,
    FUND_SUSPENDED,
    INSUFFICIENT_LIQUID_BALANCE,
    INSUFFICIENT_SHARES,
    INSUFFICIENT_STAKED_BALANCE,
    LIQUIDITY_BUFFER_BREACH,
    ORDER_LIMIT_EXCEEDED,
    REDEEM,
    REJECTED,
    REVOKED,
    SETTLED,
    STAKING_CAP_BREACH,
    STALE_PRICE,
    SUSPENDED,
)

pytestmark = pytest.mark.unit

SIDES = (CREATE, REDEEM)
IN_30_S = NOW // 1000 + 30  # a licence expiry 30 s after NOW (unix seconds): unlicensed from NOW + 30_000 ms
replace = msgspec.structs.replace


def leg(custodian: str, asset: str, quantity: int) -> m.Leg:
    return m.Leg(custodian_id=custodian, asset=asset, quantity=quantity)


def line(asset: str, quantity: int) -> m.Line:
    return m.Line(asset=asset, quantity=quantity)


def qpu(basket: m.Basket) -> dict[str, int]:
    return {ln.asset: ln.quantity_per_unit for ln in basket.lines}


# == SPEC §5, checks 1-3: dealing status and the participant's limits ==============================
@pytest.mark.parametrize("side", SIDES)
def test_fund_suspended(ledger, side):
    desk = sample(ledger)
    desk.update(dealing_status=SUSPENDED)
    order = desk.order(side, 1)
    assert (order.status, order.reject_reason, order.fee, order.legs) == (REJECTED, FUND_SUSPENDED, 0, ())
    desk.update(dealing_status=m.OPEN)
    assert desk.order(side, 1).status == ACCEPTED


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("n", "reason"), [(5, ""), (6, ORDER_LIMIT_EXCEEDED)])
def test_order_limit(ledger, side, n, reason):
    desk = sample(ledger, max_order=5)
    assert desk.order(side, n).reject_reason == reason


@pytest.mark.parametrize("side", SIDES)
def test_daily_limit_counts_accepted_and_settled_not_cancelled_or_rejected(ledger, side):
    desk = sample(ledger, max_order=5, max_day=8)
    create5 = desk.order(CREATE, 5)
    redeem2 = desk.order(REDEEM, 2)
    assert desk.order(side, 1).status == ACCEPTED  # 5 + 2 + 1 = 8 = max_units_per_day
    assert desk.order(side, 1).reject_reason == DAILY_LIMIT_EXCEEDED  # 8 + 1 > 8
    desk.settle(create5.order_id)
    assert desk.reason(side, 1) == DAILY_LIMIT_EXCEEDED  # settled orders still count
    desk.cancel(redeem2.order_id)
    # 5 + 1 = 6 counted: the cancelled units are free again and the rejected order never counted
    assert desk.reason(side, 2) == ""
    assert desk.reason(side, 3) == DAILY_LIMIT_EXCEEDED


def test_daily_limit_is_per_participant_and_per_fund(ledger):
    desk = sample(ledger, max_order=5, max_day=8)
    desk.order(CREATE, 5)
    desk.order(CREATE, 3)
    assert desk.reason(CREATE, 1) == DAILY_LIMIT_EXCEEDED
    assert desk.reason(CREATE, 1, participant="AP-2") == ""
    assert desk.reason(CREATE, 5, fund=F2) == ""


def test_daily_limit_rolls_over_at_utc_midnight(ledger):
    desk = sample(ledger, max_order=5, max_day=8)
    desk.order(CREATE, 5)
    desk.order(CREATE, 3)
    desk.now = T0 + DAY_MS - 1  # 23:59:59.999 of the same UTC day
    desk.publish()
    assert desk.reason(CREATE, 1) == DAILY_LIMIT_EXCEEDED
    desk.now = T0 + DAY_MS  # 00:00:00.000 of the next day
    desk.publish()
    assert desk.order(CREATE, 5).status == ACCEPTED
    assert desk.order(CREATE, 3).status == ACCEPTED
    assert desk.reason(CREATE, 1) == DAILY_LIMIT_EXCEEDED


# == check 4: STALE_PRICE ======================================================================
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("age_ms", "reason"), [(60_000, ""), (60_001, STALE_PRICE)])
def test_price_age_boundary(ledger, side, age_ms, reason):
    desk = sample(ledger)  # prices as of NOW; max_price_age_seconds 60
    desk.now = NOW + age_ms
    assert desk.order(side, 1).reject_reason == reason
    assert desk.nav().stale is bool(reason)
    assert desk.basket().stale is bool(reason)


def test_max_price_age_follows_the_fund_terms(ledger):
    desk = sample(ledger)
    desk.update(max_price_age_seconds=120)
    desk.now = NOW + 120_000
    assert desk.reason(CREATE, 1) == ""
    desk.now = NOW + 120_001
    assert desk.reason(CREATE, 1) == STALE_PRICE


def test_one_stale_asset_makes_the_fund_stale(ledger):
    desk = sample(ledger)
    desk.now = NOW + 60_001
    desk.publish(fund_prices={"BTC": "500000"})  # ETH's price is still the one as of NOW
    assert desk.reason(CREATE, 1) == STALE_PRICE
    desk.publish(fund_prices={"ETH": "20000"})
    assert desk.reason(CREATE, 1) == ""


@pytest.mark.parametrize("side", SIDES)
def test_missing_price_is_stale(ledger, side):
    desk = sample(ledger, prices={"BTC": "500000"})
    desk.publish(fund_prices={"ETH": "20000"}, currency="USD")  # not the fund's base currency
    order = desk.order(side, 1)
    assert (order.reject_reason, order.cash_amount) == (STALE_PRICE, None)
    nav = desk.nav()
    assert (nav.nav, nav.nav_per_share, nav.stale, nav.as_of) == (None, None, True, NOW)
    assert [(ln.asset, ln.price, ln.value) for ln in nav.lines] == [("BTC", 50_000_000_000_000, cents("5000000")),
                                                                       ("ETH", None, None)]
    basket = desk.basket()
    assert qpu(basket) == {"BTC": btc("1"), "ETH": eth("10")}  # quantities are still given
    assert (basket.cash_component, basket.nav_per_share, basket.nav_per_unit, basket.stale) == (None, None, None, True)


# == check 5: CUSTODIAN_NOT_LICENSED (create), INSUFFICIENT_SHARES (redeem) =========================
@pytest.mark.parametrize(("now", "reason"), [(NOW + 29_999, ""), (NOW + 30_000, CUSTODIAN_NOT_LICENSED)])
def test_creation_custodian_licence_expiry(ledger, now, reason):
    desk = sample(ledger)
    desk.licence("CUS-A", ACTIVE, IN_30_S)  # licensed while now < IN_30_S * 1000 = NOW + 30_000
    desk.now = now
    assert desk.order(CREATE, 1).reject_reason == reason


@pytest.mark.parametrize("status", [SUSPENDED, REVOKED])
def test_creation_custodian_suspended_or_revoked(ledger, status):
    desk = sample(ledger, holdings={("CUS-B", "BTC"): "10", ("CUS-B", "ETH"): "100"})
    desk.licence("CUS-A", status)
    assert desk.order(CREATE, 1).reject_reason == CUSTODIAN_NOT_LICENSED
    assert desk.order(REDEEM, 1).status == ACCEPTED  # a redemption pays out of CUS-B
    desk.licence("CUS-A", ACTIVE)
    assert desk.order(CREATE, 1).status == ACCEPTED


def test_insufficient_shares_counts_accepted_redemptions(ledger):
    desk = sample(ledger)  # 1000 shares = 10 units of 100
    assert desk.reason(REDEEM, 11) == INSUFFICIENT_SHARES  # 1100 > 1000 (11 BTC > 10 liquid fails later)
    assert desk.reason(REDEEM, 10) == ""  # 1000 = 1000
    first = desk.order(REDEEM, 6)  # 600 shares pending
    assert desk.reason(REDEEM, 5) == INSUFFICIENT_SHARES  # 500 > 1000 - 600
    assert desk.reason(REDEEM, 5, participant="AP-2") == INSUFFICIENT_SHARES  # anyone's redemptions count
    assert desk.reason(REDEEM, 4) == ""  # 400 = 1000 - 600
    desk.cancel(first.order_id)
    assert desk.reason(REDEEM, 10) == ""
    desk.settle(desk.order(REDEEM, 6).order_id)  # 400 shares outstanding, none pending
    assert desk.reason(REDEEM, 5) == INSUFFICIENT_SHARES
    assert desk.reason(REDEEM, 4) == ""


def test_seed_fund_has_no_shares_to_redeem(ledger):
    desk = sample(ledger)
    assert desk.reason(REDEEM, 1, fund=F2) == INSUFFICIENT_SHARES


# == check 6 (redeem, per asset): a. liquid balance, b. staking cap, c. liquidity buffer ============
@pytest.mark.parametrize(("at_a", "at_c", "reason"), [
    ("6", "4", ""),
    ("5.99999999", "4.00000001", INSUFFICIENT_LIQUID_BALANCE),  # one satoshi short
])
def test_liquid_balance_excludes_an_unlicensed_custodian(ledger, at_a, at_c, reason):
    desk = sample(ledger, holdings={("CUS-A", "BTC"): at_a, ("CUS-C", "BTC"): at_c, ("CUS-A", "ETH"): "100"})
    desk.licence("CUS-C", SUSPENDED)
    # total 10 BTC -> 1 BTC per unit; liquid is CUS-A's only, so 6 units need 6 BTC there
    assert desk.summary("BTC").liquid == btc(at_a)
    assert desk.order(REDEEM, 6).reject_reason == reason


@pytest.mark.parametrize(("status", "expires", "now", "reason"), [
    (ACTIVE, IN_30_S, NOW + 29_999, ""),
    (ACTIVE, IN_30_S, NOW + 30_000, INSUFFICIENT_LIQUID_BALANCE),
    (SUSPENDED, EXPIRES, NOW, INSUFFICIENT_LIQUID_BALANCE),
    (REVOKED, EXPIRES, NOW, INSUFFICIENT_LIQUID_BALANCE),
])
def test_liquidity_follows_the_licence(ledger, status, expires, now, reason):
    desk = sample(ledger, holdings={("CUS-A", "BTC"): "6", ("CUS-C", "BTC"): "4", ("CUS-A", "ETH"): "100"})
    desk.licence("CUS-C", status, expires)
    desk.now = now
    assert desk.summary("BTC").liquid == (btc("6") if reason else btc("10"))
    assert desk.reason(REDEEM, 7) == reason  # 7 BTC: more than CUS-A's 6


@pytest.mark.parametrize(("staked", "reason"), [("2.1", ""), ("2.10000001", STAKING_CAP_BREACH)])
def test_redemption_staking_cap(ledger, staked, reason):
    desk = sample(ledger, btc_terms={"staking_cap": "0.30"})
    desk.stake("CUS-A", "BTC", staked)  # illiquid <= 0.30 x 10 BTC = 3: allowed
    # redeem 4: committed after = 10 - 4 = 6 BTC, 0.30 x 6 = 1.8 < staked
    assert desk.reason(REDEEM, 4) == STAKING_CAP_BREACH
    # redeem 3: committed after = 10 - 3 = 7 BTC, 0.30 x 7 = 2.1 BTC: 2.1 is not above, 2.10000001 is
    assert desk.order(REDEEM, 3).reject_reason == reason


@pytest.mark.parametrize(("staked", "reason"), [("2", ""), ("2.00000001", LIQUIDITY_BUFFER_BREACH)])
def test_redemption_liquidity_buffer(ledger, staked, reason):
    desk = sample(ledger, btc_terms={"staking_cap": "1", "liquidity_buffer": "0.50"})
    desk.stake("CUS-A", "BTC", staked)  # liquid 8 >= 0.50 x 10: allowed
    # redeem 7: liquid after 8 - 7 = 1 < 0.50 x (10 - 7) = 1.5
    assert desk.reason(REDEEM, 7) == LIQUIDITY_BUFFER_BREACH
    # redeem 6: liquid after 8 - 6 = 2 BTC against 0.50 x (10 - 6) = 2 BTC: not below; with one satoshi more
    # staked, 1.99999999 BTC is below
    assert desk.order(REDEEM, 6).reject_reason == reason


@pytest.mark.parametrize(("holdings", "reason"), [
    ({("CUS-A", "BTC"): "10"}, ""),
    ({("CUS-A", "BTC"): "9.99999999", ("CUS-C", "BTC"): "0.00000001"}, LIQUIDITY_BUFFER_BREACH),
])
def test_redemption_min_liquid_units(ledger, holdings, reason):
    desk = sample(ledger, min_liquid=2, holdings={**holdings, ("CUS-A", "ETH"): "100"})
    desk.licence("CUS-C", SUSPENDED)
    # 1 BTC and 10 ETH per unit; after redeeming n, liquid - n x qpu must stay >= 2 x qpu
    assert desk.reason(REDEEM, 9) == LIQUIDITY_BUFFER_BREACH  # 10 - 9 = 1 BTC < 2 BTC
    # redeem 8: 10 - 8 = 2 BTC >= 2 BTC (ETH: 100 - 80 = 20 >= 20); with one satoshi illiquid, 1.99999999 BTC
    assert desk.order(REDEEM, 8).reject_reason == reason


# == the order of the checks ==================================================================
def test_create_checks_run_in_spec_order(ledger):
    desk = sample(ledger, max_order=5, max_day=8)
    spare = desk.order(CREATE, 4)
    desk.order(CREATE, 4)  # 8 units today
    desk.update(dealing_status=SUSPENDED)
    desk.licence("CUS-A", SUSPENDED)
    desk.now = NOW + 60_001  # prices stale
    assert desk.reason(CREATE, 6) == FUND_SUSPENDED  # checks 1-5 all fail
    desk.update(dealing_status=m.OPEN)
    assert desk.reason(CREATE, 6) == ORDER_LIMIT_EXCEEDED  # 6 > 5; 2-5 fail
    assert desk.reason(CREATE, 4) == DAILY_LIMIT_EXCEEDED  # 8 + 4 > 8; 3-5 fail
    desk.cancel(spare.order_id)
    assert desk.reason(CREATE, 4) == STALE_PRICE  # 4 + 4 = 8; 4-5 fail
    desk.publish()
    assert desk.reason(CREATE, 4) == CUSTODIAN_NOT_LICENSED
    desk.licence("CUS-A", ACTIVE)
    assert desk.reason(CREATE, 4) == ""


def test_redeem_checks_run_in_spec_order(ledger):
    desk = sample(ledger, max_order=5, max_day=8)
    desk.order(REDEEM, 5, participant="AP-2")
    extra = desk.order(REDEEM, 1, participant="AP-2")  # 600 shares pending; 6 BTC, 60 ETH reserved
    spare = desk.order(CREATE, 4)  # AP-1: 4 units today
    desk.update(dealing_status=SUSPENDED)
    desk.licence("CUS-A", SUSPENDED)  # every coin is at CUS-A: nothing liquid
    desk.now = NOW + 60_001
    assert desk.reason(REDEEM, 6) == FUND_SUSPENDED
    desk.update(dealing_status=m.OPEN)
    assert desk.reason(REDEEM, 6) == ORDER_LIMIT_EXCEEDED
    assert desk.reason(REDEEM, 5) == DAILY_LIMIT_EXCEEDED  # 4 + 5 > 8
    desk.cancel(spare.order_id)
    assert desk.reason(REDEEM, 5) == STALE_PRICE
    desk.publish()
    assert desk.reason(REDEEM, 5) == INSUFFICIENT_SHARES  # 500 > 1000 - 600
    desk.cancel(extra.order_id)
    assert desk.reason(REDEEM, 4) == INSUFFICIENT_LIQUID_BALANCE  # 400 <= 500, but liquid is 0
    desk.licence("CUS-A", ACTIVE)
    assert desk.reason(REDEEM, 5) == ""  # 5 BTC left of 10 after 5 reserved


def test_checks_a_to_c_in_order_for_one_asset(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "1", "liquidity_buffer": "0.50"})
    desk.stake("CUS-A", "BTC", "5")  # 5 <= 1 x 10; liquid 5 >= 0.50 x 10
    desk.terms("BTC", staking_cap="0.10")  # now in breach: nothing moves
    assert desk.reason(REDEEM, 6) == INSUFFICIENT_LIQUID_BALANCE  # a: 6 > 5 (b, c fail too)
    assert desk.reason(REDEEM, 5) == STAKING_CAP_BREACH  # b: 5 > 0.10 x (10 - 5) (c: 0 < 0.50 x 5 too)
    desk.terms("BTC", staking_cap="1")
    assert desk.reason(REDEEM, 5) == LIQUIDITY_BUFFER_BREACH  # c
    desk.terms("BTC", liquidity_buffer="0")
    assert desk.reason(REDEEM, 5) == ""


def test_one_asset_is_checked_fully_before_the_next_in_symbol_order(ledger):
    # F1 declares ETH before BTC; symbol order puts BTC first
    desk = sample(ledger, btc_terms={"staking_cap": "1", "liquidity_buffer": "0.50"},
                  holdings={("CUS-A", "BTC"): "10", ("CUS-A", "ETH"): "5", ("CUS-C", "ETH"): "95"})
    desk.licence("CUS-C", SUSPENDED)  # 5 ETH liquid of 100
    desk.stake("CUS-A", "BTC", "2")
    # redeem 7: BTC fails c (8 - 7 = 1 < 0.50 x 3) and ETH fails a (70 > 5): BTC's reason
    assert desk.reason(REDEEM, 7) == LIQUIDITY_BUFFER_BREACH
    # redeem 6: BTC passes (8 - 6 = 2 >= 0.50 x 4); ETH fails a (60 > 5)
    assert desk.reason(REDEEM, 6) == INSUFFICIENT_LIQUID_BALANCE


# == GetCapacity ==============================================================================
def capacity(desk, participant="AP-1") -> dict[str, tuple[int, str]]:
    """GetCapacity as {side: (units, binding_reason)}, checked against CheckOrder at units and units + 1."""
    got = desk.ledger.get_capacity(participant, F1, desk.now)
    assert got.fund_id == F1
    out = {}
    for side, cap in ((CREATE, got.create), (REDEEM, got.redeem)):
        if cap.units:
            assert desk.reason(side, cap.units, participant=participant) == ""
        assert desk.reason(side, cap.units + 1, participant=participant) == cap.binding_reason
        out[side] = (cap.units, cap.binding_reason)
    return out


def _used_80(desk):
    desk.order(CREATE, 50)
    desk.order(CREATE, 30)


def _stale(desk):
    desk.now = NOW + 60_001


def _suspended(desk):
    desk.update(dealing_status=SUSPENDED)


def _cus_a_revoked(desk):
    desk.licence("CUS-A", REVOKED)


def _staked(desk):
    desk.terms("BTC", staking_cap="0.30")
    desk.stake("CUS-A", "BTC", "2.1")


@pytest.mark.parametrize(("options", "setup", "create", "redeem"), [
    ({}, None, (50, ORDER_LIMIT_EXCEEDED), (10, INSUFFICIENT_SHARES)),
    ({}, _used_80, (20, DAILY_LIMIT_EXCEEDED), (10, INSUFFICIENT_SHARES)),  # 80 + 20 = 100 a day
    ({"min_liquid": 2}, None, (50, ORDER_LIMIT_EXCEEDED), (8, LIQUIDITY_BUFFER_BREACH)),
    ({}, _staked, (50, ORDER_LIMIT_EXCEEDED), (3, STAKING_CAP_BREACH)),  # 2.1 <= 0.30 x (10 - 3)
    ({}, _stale, (0, STALE_PRICE), (0, STALE_PRICE)),
    ({}, _suspended, (0, FUND_SUSPENDED), (0, FUND_SUSPENDED)),
    ({}, _cus_a_revoked, (0, CUSTODIAN_NOT_LICENSED), (0, INSUFFICIENT_LIQUID_BALANCE)),
], ids=["fresh", "used-80", "min-liquid", "staked", "stale", "suspended", "revoked"])
def test_capacity(ledger, options, setup, create, redeem):
    desk = sample(ledger, **options)
    if setup:
        setup(desk)
    assert capacity(desk) == {CREATE: create, REDEEM: redeem}


def test_capacity_redeem_liquid_bound_by_one_satoshi(ledger):
    desk = sample(ledger, holdings={("CUS-A", "BTC"): "5.99999999", ("CUS-C", "BTC"): "4.00000001",
                                    ("CUS-A", "ETH"): "100"})
    desk.licence("CUS-C", SUSPENDED)
    assert capacity(desk)[REDEEM] == (5, INSUFFICIENT_LIQUID_BALANCE)  # 6 BTC > 5.99999999 liquid


def test_capacity_stops_where_submit_order_refuses_the_shares(ledger):
    desk = sample(ledger)
    desk.create_fund("F-BIG", {"BTC": {"seed_quantity_per_unit": "1"}}, creation_unit=10**8)
    desk.run(m.RegisterParticipant(participant_id="AP-BIG", name="big", eligible_fund_ids=["F-BIG"],
                                   max_units_per_order=10**8, max_units_per_day=10**8))
    # SubmitOrder refuses units x 10^8 shares > 10^15, so at most 10^7 units can be accepted
    got = desk.ledger.get_capacity("AP-BIG", "F-BIG", desk.now)
    assert desk.check(CREATE, 10**7, participant="AP-BIG", fund="F-BIG").status == ACCEPTED
    desk.refused(m.SubmitOrder(participant_id="AP-BIG", request=desk.request(CREATE, 10**7 + 1, fund="F-BIG")),
                 OUT_OF_RANGE, names="units")
    assert got.create.units == 10**7


def test_capacity_refusals(ledger):
    desk = sample(ledger)
    with pytest.raises(EngineError) as info:
        desk.ledger.get_capacity("AP-3", F1, desk.now)  # AP-3 deals in F2 only
    assert info.value.code == PERMISSION_DENIED
    with pytest.raises(EngineError) as info:
        desk.ledger.get_capacity("AP-1", "NOPE", desk.now)
    assert info.value.code == NOT_FOUND
    with pytest.raises(EngineError) as info:
        desk.ledger.get_capacity("AP-9", F1, desk.now)
    assert info.value.code == PERMISSION_DENIED


def test_capacity_refuses_an_unknown_participant_before_an_unknown_fund(ledger):
    # capacity is defined through check_order, whose refusals (ledger.py) put "participant unknown"
    # (PERMISSION_DENIED) before "fund unknown" (NOT_FOUND)
    desk = sample(ledger)
    with pytest.raises(EngineError) as info:
        desk.ledger.check_order("AP-9", desk.request(CREATE, 1, fund="NOPE"), desk.now)
    assert info.value.code == PERMISSION_DENIED
    with pytest.raises(EngineError) as info:
        desk.ledger.get_capacity("AP-9", "NOPE", desk.now)
    assert info.value.code == PERMISSION_DENIED


# == accepted orders: legs, settlement, cancellation =========================================
def spread(ledger, **options):
    """F1 with BTC at four custodians; CUS-D (first in priority) unlicensed; cash 1000.00."""
    desk = sample(ledger, priority=("CUS-D", "CUS-B", "CUS-A"), cash="1000", redemption_fee="25.00", holdings={
        ("CUS-D", "BTC"): "4", ("CUS-B", "BTC"): "2", ("CUS-A", "BTC"): "3", ("CUS-C", "BTC"): "1",
        ("CUS-A", "ETH"): "100"}, **options)
    desk.licence("CUS-D", SUSPENDED)
    return desk


HELD = {("CUS-A", "BTC"): (btc("3"), 0, 0, []), ("CUS-A", "ETH"): (eth("100"), 0, 0, []),
        ("CUS-B", "BTC"): (btc("2"), 0, 0, []), ("CUS-C", "BTC"): (btc("1"), 0, 0, []),
        ("CUS-D", "BTC"): (btc("4"), 0, 0, [])}


def test_redeem_reserves_by_custodian_priority_and_settles(ledger):
    desk = spread(ledger)
    assert desk.rows() == HELD
    order = desk.order(REDEEM, 6)
    # 10 BTC / 1000 shares x 100 = 1 BTC per unit; 6 BTC come from CUS-B (2), CUS-A (3), then CUS-C, which
    # is licensed but not in the priority list (1); CUS-D is skipped: not licensed.
    assert order.status == ACCEPTED
    assert order.legs == (leg("CUS-B", "BTC", btc("2")), leg("CUS-A", "BTC", btc("3")),
                          leg("CUS-C", "BTC", btc("1")), leg("CUS-A", "ETH", eth("60")))
    assert order.deliverables == (line("BTC", btc("6")), line("ETH", eth("60")))
    # cash component: NAV x 100 / 1000 - (1 x 500000 + 10 x 20000) = 7,001,000.00 / 10 - 700,000 = 100.00
    assert (order.basket.cash_component, order.cash_amount, order.fee) == (cents("100"), cents("600"), cents("25"))
    assert desk.rows() == {
        ("CUS-A", "BTC"): (0, btc("3"), 0, []), ("CUS-A", "ETH"): (eth("40"), eth("60"), 0, []),
        ("CUS-B", "BTC"): (0, btc("2"), 0, []), ("CUS-C", "BTC"): (0, btc("1"), 0, []),
        ("CUS-D", "BTC"): (btc("4"), 0, 0, [])}
    s = desk.summary("BTC")
    assert (s.total, s.committed, s.liquid, s.illiquid) == (btc("10"), btc("4"), 0, 0)
    assert desk.nav().nav == cents("7001000")  # a reservation changes no total
    settled = desk.settle(order.order_id)
    assert (settled.status, settled.order_id, settled.legs) == (SETTLED, order.order_id, order.legs)
    assert desk.rows() == {("CUS-A", "ETH"): (eth("40"), 0, 0, []), ("CUS-D", "BTC"): (btc("4"), 0, 0, [])}
    assert desk.fund_figures() == (cents("400"), 400)  # cash 1000.00 - 6 x 100.00; 1000 - 600 shares
    assert desk.replayed_state() == desk.state()


def test_redeem_legs_without_a_licensed_priority_custodian(ledger):
    desk = spread(ledger, min_liquid=0)
    desk.licence("CUS-B", REVOKED)
    order = desk.order(REDEEM, 4)  # liquid: CUS-A 3 + CUS-C 1
    assert order.legs == (leg("CUS-A", "BTC", btc("3")), leg("CUS-C", "BTC", btc("1")),
                          leg("CUS-A", "ETH", eth("40")))


@pytest.mark.parametrize("by", [None, "AP-1"], ids=["issuer", "participant"])
def test_cancel_restores_reservations(ledger, by):
    desk = spread(ledger)
    order = desk.order(REDEEM, 6)
    desk.refused(m.CancelOrder(order_id=order.order_id, participant_id="AP-2"), NOT_FOUND)  # not AP-2's order
    cancelled = desk.cancel(order.order_id, by)
    assert (cancelled.status, cancelled.legs) == (CANCELLED, order.legs)
    assert desk.rows() == HELD
    assert desk.fund_figures() == (cents("1000"), 1000)
    assert desk.order(REDEEM, 6).status == ACCEPTED  # the shares and coins are free again
    assert desk.replayed_state() == desk.state()


def test_settle_create(ledger):
    desk = sample(ledger, cash="1000", creation_fee="50.50")
    order = desk.order(CREATE, 2)
    # per unit 1 BTC + 10 ETH; cash component 7,001,000.00 x 100 / 1000 - 700,000 = 100.00
    assert order.deliverables == (line("BTC", btc("2")), line("ETH", eth("20")))
    assert (order.cash_amount, order.fee, order.legs) == (cents("200"), cents("50.50"), ())
    assert desk.rows() == {("CUS-A", "BTC"): (btc("10"), 0, 0, []), ("CUS-A", "ETH"): (eth("100"), 0, 0, [])}
    assert desk.settle(order.order_id).status == SETTLED
    assert desk.rows() == {("CUS-A", "BTC"): (btc("12"), 0, 0, []), ("CUS-A", "ETH"): (eth("120"), 0, 0, [])}
    assert desk.fund_figures() == (cents("1200"), 1200)
    # NAV 12 x 500000 + 120 x 20000 + 1200 = 8,401,200.00; per share 7001.0000 as before the order
    assert (desk.nav().nav, desk.nav().nav_per_share) == (cents("8401200"), 70_010_000)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("status", "expires", "now", "ok"), [
    (ACTIVE, IN_30_S, NOW + 29_999, True),
    (ACTIVE, IN_30_S, NOW + 30_000, False),
    (SUSPENDED, EXPIRES, NOW, False),
    (REVOKED, EXPIRES, NOW, False),
])
def test_settle_create_needs_a_licensed_creation_custodian(ledger, status, expires, now, ok):
    desk = sample(ledger)
    order = desk.order(CREATE, 1)
    desk.licence("CUS-A", status, expires)
    desk.now = now
    if ok:
        assert desk.settle(order.order_id).status == SETTLED
    else:
        desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=CUSTODIAN_NOT_LICENSED)
        assert ledger.get_order(order.order_id).status == ACCEPTED


def test_settle_redeem_after_the_custodian_lost_its_licence(ledger):
    desk = sample(ledger)
    order = desk.order(REDEEM, 2)
    desk.licence("CUS-A", REVOKED)
    assert desk.settle(order.order_id).status == SETTLED
    assert desk.rows() == {("CUS-A", "BTC"): (btc("8"), 0, 0, []), ("CUS-A", "ETH"): (eth("80"), 0, 0, [])}


@pytest.mark.parametrize("action", ["settle", "cancel"])
@pytest.mark.parametrize("status", [REJECTED, SETTLED, CANCELLED])
def test_only_accepted_orders_settle_or_cancel(ledger, action, status):
    desk = sample(ledger, max_order=5)
    order = desk.order(CREATE, 6 if status == REJECTED else 1)
    if status == SETTLED:
        desk.settle(order.order_id)
    elif status == CANCELLED:
        desk.cancel(order.order_id)
    assert ledger.get_order(order.order_id).status == status
    command = m.SettleOrder(order_id=order.order_id) if action == "settle" else m.CancelOrder(order_id=order.order_id)
    desk.refused(command, FAILED_PRECONDITION)


@pytest.mark.parametrize("command", [m.SettleOrder(order_id="ORD-00000099"), m.CancelOrder(order_id="ORD-00000099")])
def test_settle_or_cancel_unknown_order(ledger, command):
    desk = sample(ledger)
    desk.refused(command, NOT_FOUND)


def test_accepted_order_keeps_its_basket(ledger):
    desk = sample(ledger, cash="1000")
    basket = desk.basket()
    order = desk.order(CREATE, 2)
    assert order.basket == basket
    desk.now = NOW + 1000
    desk.publish(fund_prices={"BTC": "600000", "ETH": "25000"})
    desk.adjust("CUS-A", "BTC", "5")
    desk.cash("5000")
    # a new basket: 15 BTC x 100 / 1000 = 1.5 BTC per unit, and NAV 15 x 600000 + 100 x 25000 + 6000
    # = 11,506,000.00, so cash component 1,150,600 - (1.5 x 600000 + 10 x 25000) = 600.00
    assert qpu(desk.basket())["BTC"] == btc("1.5")
    assert desk.basket().cash_component == cents("600")
    settled = desk.settle(order.order_id)
    assert (settled.basket, settled.deliverables, settled.cash_amount) == (basket, order.deliverables, cents("200"))
    assert desk.rows() == {("CUS-A", "BTC"): (btc("17"), 0, 0, []), ("CUS-A", "ETH"): (eth("120"), 0, 0, [])}
    assert desk.fund_figures() == (cents("6200"), 1200)  # 1000 + 5000 + 2 x 100.00


def test_settle_beyond_the_share_limit_is_out_of_range(ledger):
    desk = sample(ledger, shares=10**15 - 150)
    first, second = desk.order(CREATE, 1), desk.order(CREATE, 1)
    assert desk.settle(first.order_id).status == SETTLED  # 10^15 - 50 shares
    desk.refused(m.SettleOrder(order_id=second.order_id), OUT_OF_RANGE)  # 10^15 + 50


# == idempotency, SubmitOrders, CheckOrder, reads =============================================
def test_same_request_returns_the_original_order_even_rejected(ledger):
    desk = sample(ledger, prices={"BTC": "500000"})  # ETH price missing: orders are rejected
    rejected = desk.order(CREATE, 1, "K-1")
    assert rejected.reject_reason == STALE_PRICE
    desk.publish()
    accepted = desk.order(CREATE, 1, "K-2")
    assert accepted.status == ACCEPTED
    desk.update(dealing_status=SUSPENDED)
    desk.now = NOW + 5000
    before = desk.state()
    for original in (rejected, accepted):
        request = desk.request(original.side, original.units, original.client_order_id)
        result, events = ledger.execute(m.SubmitOrder(participant_id="AP-1", request=request), desk.now)
        assert (result, events) == (original, [])
        assert ledger.check_order("AP-1", request, desk.now) == replace(original, order_id="")
    assert desk.state() == before


@pytest.mark.parametrize("change", [{"fund_id": F2}, {"side": REDEEM}, {"units": 2}])
def test_same_client_order_id_for_another_request_already_exists(ledger, change):
    desk = sample(ledger)
    desk.order(CREATE, 1, "K-1")
    request = replace(desk.request(CREATE, 1, "K-1"), **change)
    desk.refused(m.SubmitOrder(participant_id="AP-1", request=request), ALREADY_EXISTS)
    with pytest.raises(EngineError) as info:
        ledger.check_order("AP-1", request, desk.now)
    assert info.value.code == ALREADY_EXISTS
    assert desk.order(CREATE, 2, "K-1", participant="AP-2").status == ACCEPTED  # keys are per participant


def test_submit_orders_decides_in_order_as_if_alone(ledger):
    batch, alone = sample(ledger, max_day=60), sample(type(ledger)(), max_day=60)
    wanted = [(REDEEM, 6), (REDEEM, 5), (CREATE, 50), (REDEEM, 4), (CREATE, 1), (REDEEM, 1)]
    requests = [batch.request(side, n, f"B-{i}") for i, (side, n) in enumerate(wanted)]
    orders = batch.run(m.SubmitOrders(participant_id="AP-1", requests=requests))
    # 6 accepted (600 shares pending); 5: 500 > 400; 50: 56 a day; 4: 60 a day, 400 <= 400; 1: 61 > 60
    assert [(o.status, o.reject_reason) for o in orders] == [
        (ACCEPTED, ""), (REJECTED, INSUFFICIENT_SHARES), (ACCEPTED, ""), (ACCEPTED, ""),
        (REJECTED, DAILY_LIMIT_EXCEEDED), (REJECTED, DAILY_LIMIT_EXCEEDED)]
    assert [o.order_id for o in orders] == [f"ORD-{i:08d}" for i in range(1, 7)]
    assert orders == [alone.run(m.SubmitOrder(participant_id="AP-1", request=r)) for r in requests]
    assert batch.state() == alone.state()
    assert batch.replayed_state() == batch.state()


def test_submit_orders_repeated_key_returns_the_first_items_order(ledger):
    desk = sample(ledger)
    request = desk.request(CREATE, 1, "K-1")
    first, again = desk.run(m.SubmitOrders(participant_id="AP-1", requests=[request, request]))
    assert first == again
    assert desk.state()["next_order_seq"] == 2


@pytest.mark.parametrize(("change", "code"), [
    ({"units": 0}, INVALID_ARGUMENT),
    ({"side": "BUY"}, INVALID_ARGUMENT),
    ({"client_order_id": "no spaces"}, INVALID_ARGUMENT),
    ({"fund_id": "NOPE"}, NOT_FOUND),
    ({"fund_id": F2}, PERMISSION_DENIED),  # AP-2 deals in F1 only
    ({"client_order_id": "K-0", "units": 2}, ALREADY_EXISTS),  # item 0's key, another request
    ({"units": 10**13 + 1}, OUT_OF_RANGE),  # x 100 shares > 10^15
])
def test_submit_orders_refused_item_records_nothing(ledger, change, code):
    desk = sample(ledger)
    requests = [desk.request(CREATE, 1, "K-0"), desk.request(REDEEM, 1, "K-1"),
                replace(desk.request(CREATE, 1, "K-2"), **change)]
    desk.refused(m.SubmitOrders(participant_id="AP-2", requests=requests), code, names="requests[2]")


@pytest.mark.parametrize(("side", "n"), [(CREATE, 2), (REDEEM, 3), (CREATE, 51), (REDEEM, 11)])
def test_check_order_changes_nothing_and_predicts_submit(ledger, side, n):
    desk = spread(ledger)
    before = desk.state()
    checked = desk.check(side, n, "K-1")
    assert desk.state() == before
    assert checked.order_id == ""
    submitted = desk.order(side, n, "K-1")
    assert replace(checked, order_id=submitted.order_id) == submitted


def test_orders_are_scoped_to_their_participant(ledger):
    desk = sample(ledger, max_order=5)
    mine = desk.order(CREATE, 1)
    rejected = desk.order(CREATE, 6)
    theirs = desk.order(REDEEM, 1, participant="AP-2")
    assert ledger.get_order(mine.order_id, "AP-1") == mine
    assert ledger.get_order(theirs.order_id) == theirs  # issuer / observer: everyone's
    with pytest.raises(EngineError) as info:
        ledger.get_order(theirs.order_id, "AP-1")
    assert info.value.code == NOT_FOUND
    with pytest.raises(EngineError) as info:
        ledger.get_order("ORD-00000099")
    assert info.value.code == NOT_FOUND
    assert ledger.list_orders(participant_id="AP-1") == [mine, rejected]
    assert ledger.list_orders(participant_id="AP-2") == [theirs]
    assert ledger.list_orders() == [mine, rejected, theirs]
    assert ledger.list_orders(F1, REJECTED) == [rejected]
    assert ledger.list_orders(F1, ACCEPTED, "AP-2") == [theirs]
    assert ledger.list_orders(F2) == []


# == SubmitOrder refusals (not recorded) ======================================================
@pytest.mark.parametrize(("participant", "change", "code", "names"), [
    ("AP-1", {"units": 0}, INVALID_ARGUMENT, "units"),
    ("AP-1", {"units": -1}, INVALID_ARGUMENT, "units"),
    ("AP-1", {"side": "BUY"}, INVALID_ARGUMENT, "side"),
    ("AP-1", {"side": "create"}, INVALID_ARGUMENT, "side"),
    ("AP-1", {"client_order_id": ""}, INVALID_ARGUMENT, "client_order_id"),
    ("AP-1", {"client_order_id": "x" * 65}, INVALID_ARGUMENT, "client_order_id"),
    ("AP-1", {"client_order_id": "has space"}, INVALID_ARGUMENT, "client_order_id"),
    ("AP-1", {"client_order_id": "caf\u00e9"}, INVALID_ARGUMENT, "client_order_id"),
    ("AP-1", {"client_order_id": "a/b"}, INVALID_ARGUMENT, "client_order_id"),
    ("AP-1", {"fund_id": "NOPE"}, NOT_FOUND, "NOPE"),
    ("AP-3", {}, PERMISSION_DENIED, None),  # AP-3 deals in F2 only
    ("AP-9", {}, PERMISSION_DENIED, None),  # not a participant
    ("AP-1", {"units": 10**13 + 1}, OUT_OF_RANGE, "units"),  # 10^15 + 100 shares
])
def test_submit_refusals(ledger, participant, change, code, names):
    desk = sample(ledger)
    request = replace(desk.request(CREATE, 1, "K-1"), **change)
    desk.refused(m.SubmitOrder(participant_id=participant, request=request), code, names=names)
    with pytest.raises(EngineError) as info:
        ledger.check_order(participant, request, desk.now)
    assert info.value.code == code


def test_submit_boundaries_are_recorded(ledger):
    desk = sample(ledger)
    longest = desk.order(CREATE, 1, ("aZ09._:-" * 8))  # 64 characters, every kind allowed
    assert longest.status == ACCEPTED
    biggest = desk.order(CREATE, 10**13)  # exactly 10^15 shares: recorded, then rejected by the limit
    assert (biggest.status, biggest.reject_reason) == (REJECTED, ORDER_LIMIT_EXCEEDED)


# == SPEC §3-4: valuation against hand-computed figures =======================================
def test_nav_and_basket_figures(ledger):
    desk = sample(ledger, cash="-1234.56",
                  holdings={("CUS-A", "BTC"): "2.5", ("CUS-B", "BTC"): "0.64159265",
                            ("CUS-A", "ETH"): "2.718281828459045235"},
                  prices={"BTC": "612345.6789", "ETH": "23456.12345678"})
    nav = desk.nav()
    # BTC 3.14159265 x 612345.6789 = 1,923,740.684091500085 -> 1923740.68
    # ETH 2.718281828459045235 x 23456.12345678 = 63,760.3541586570390982465874433 -> 63760.35
    assert [(ln.asset, ln.quantity, ln.price, ln.value) for ln in nav.lines] == [
        ("BTC", 314_159_265, 61_234_567_890_000, 192_374_068),
        ("ETH", 2_718_281_828_459_045_235, 2_345_612_345_678, 6_376_035)]
    # NAV = 1923740.684091500085 + 63760.3541586570390982... - 1234.56 = 1,986,266.4782501571240982... -> .48
    # (the rounded lines would sum to 1986266.47: NAV is rounded once, from the exact sum)
    # per share: / 1000 = 1986.26647825... -> 1986.2665
    assert (nav.nav, nav.nav_per_share, nav.cash, nav.shares_outstanding) == (198_626_648, 19_862_665, -123_456, 1000)
    assert (nav.as_of, nav.stale) == (NOW, False)
    basket = desk.basket()
    # qpu BTC = floor(314159265 x 100 / 1000) = floor(31415926.5) = 31415926
    # qpu ETH = floor(2718281828459045235 x 100 / 1000) = floor(271828182845904523.5) = 271828182845904523
    assert qpu(basket) == {"BTC": 31_415_926, "ETH": 271_828_182_845_904_523}
    # NAV per unit = NAV / 10 = 198,626.64782501571240982... -> 198626.65
    # basket worth 0.31415926 x 612345.6789 + 0.271828182845904523 x 23456.12345678 = 198,750.1007632873178981...
    # cash component = 198626.6478250157124098... - 198750.1007632873178981... = -123.4529382716054883 -> -123.45
    assert (basket.nav_per_unit, basket.nav_per_share, basket.cash_component) == (19_862_665, 19_862_665, -12_345)
    assert (basket.creation_unit, basket.shares_outstanding, basket.as_of, basket.stale) == (100, 1000, NOW, False)
    order = desk.order(CREATE, 2)
    assert order.deliverables == (line("BTC", 62_831_852), line("ETH", 543_656_365_691_809_046))
    assert order.cash_amount == -24_690  # 2 x -123.45: the fund pays it on creation


def test_valuation_exact_beyond_10_pow_24_smallest_units(ledger):
    desk = sample(ledger, shares=300, cash="10",
                  holdings={("CUS-A", "BTC"): "1.00000001", ("CUS-A", "ETH"): "2000000.000000000000000002"},
                  prices={"BTC": "30000.5", "ETH": "0.03"})
    nav = desk.nav()
    # ETH: 2 x 10^24 + 2 wei.  Lines: 1.00000001 x 30000.5 = 30000.500300005 -> 30000.50;
    # 2000000.000000000000000002 x 0.03 = 60000.00000000000000000006 -> 60000.00
    assert [(ln.quantity, ln.value) for ln in nav.lines] == [(100_000_001, 3_000_050),
                                                              (2_000_000_000_000_000_000_000_002, 6_000_000)]
    # NAV = 30000.500300005 + 60000.00000000000000000006 + 10 = 90010.50030000500000000006 -> 90010.50
    # per share: / 300 = 300.0350010000166666... -> 300.0350
    assert (nav.nav, nav.nav_per_share) == (9_001_050, 3_000_350)
    basket = desk.basket()
    # qpu BTC = floor(100000001 x 100 / 300) = floor(33333333.67) = 33333333
    # qpu ETH = floor((2 x 10^24 + 2) x 100 / 300) = floor(666666666666666666666667.33) = 666666666666666666666667
    # (a double would give 6.666666666666667e23)
    assert qpu(basket) == {"BTC": 33_333_333, "ETH": 666_666_666_666_666_666_666_667}
    # per unit: NAV / 3 = 30003.5001000016666666666866... -> 30003.50
    # basket worth: 0.33333333 x 30000.5 + 666666.666666666666666667 x 0.03
    #             = 10000.166566665 + 20000.00000000000000000001 = 30000.16656666500000000001
    # cash component = 30003.50010000166666... - 30000.166566665000... = 3.3335333366666... -> 3.33
    assert (basket.nav_per_unit, basket.nav_per_share, basket.cash_component) == (3_000_350, 3_000_350, 333)


# cash component = NAV x 100 / 200 - (0.5 BTC x p + 50 ETH x 20000), with 1.00000001 BTC and 100 ETH:
# = (1.00000001 p + 2,000,000 + cash) / 2 - 0.5 p - 1,000,000 = 0.000000005 p + cash / 2
@pytest.mark.parametrize(("price", "cash", "expected"), [
    ("1000000", None, "0.00"),  # 0.005 -> 0.00 (tie, to even)
    ("1000000", "0.02", "0.02"),  # 0.005 + 0.01 = 0.015 -> 0.02 (tie, to even)
    ("1000000", "0.04", "0.02"),  # 0.025 -> 0.02 (tie, to even: not half-up)
    ("1000000", "0.01", "0.01"),  # 0.005 + 0.005 = 0.01 exactly
    ("1000000.00000001", None, "0.01"),  # 0.00500000000000005: just above the tie
    ("1000000", "-0.02", "0.00"),  # -0.005 -> 0.00 (tie, to even)
    ("1000000", "-0.04", "-0.02"),  # -0.015 -> -0.02 (tie, to even)
    ("1000000", "-100", "-50.00"),  # -49.995 -> -50.00 (tie, to even)
])
def test_cash_component_rounds_half_even(ledger, price, cash, expected):
    desk = sample(ledger, shares=200, cash=cash, holdings={("CUS-A", "BTC"): "1.00000001", ("CUS-A", "ETH"): "100"},
                  prices={"BTC": price, "ETH": "20000"})
    basket = desk.basket()
    assert qpu(basket) == {"BTC": 50_000_000, "ETH": eth("50")}  # floor(100000001 / 2)
    assert basket.cash_component == cents(expected)


def test_negative_cash_component_is_paid_by_the_fund_on_creation(ledger):
    desk = sample(ledger, shares=200, cash="-100", holdings={("CUS-A", "BTC"): "1.00000001", ("CUS-A", "ETH"): "100"},
                  prices={"BTC": "1000000", "ETH": "20000"})
    order = desk.order(CREATE, 2)
    assert order.cash_amount == cents("-100")  # 2 x -50.00
    desk.settle(order.order_id)
    assert desk.fund_figures() == (cents("-200"), 400)  # -100.00 + 2 x -50.00
    assert desk.rows()[("CUS-A", "BTC")][0] == btc("2.00000001")  # 1.00000001 + 2 x 0.5


def test_seed_basket(ledger):
    desk = sample(ledger)
    desk.create_fund("F3", {"BTC": {"seed_quantity_per_unit": "1.00000001"}, "ETH": {"seed_quantity_per_unit": "2"}},
                     creation_unit=10, seed_cash_per_unit="-0.50")
    desk.run(m.RegisterParticipant(participant_id="AP-4", name="AP-4", eligible_fund_ids=["F3"],
                                   max_units_per_order=5, max_units_per_day=5))
    desk.now = NOW + 1
    desk.publish(fund_prices={"BTC": "500000.5"})
    basket = desk.basket("F3")
    assert qpu(basket) == {"BTC": 100_000_001, "ETH": eth("2")}
    # seed value: 1.00000001 x 500000.5 + 2 x 20000 - 0.50 = 500000.505000005 + 40000 - 0.50 = 540000.005000005
    # nav_per_unit -> 540000.01; no shares outstanding, so no nav_per_share (SPEC §3)
    assert (basket.cash_component, basket.nav_per_unit, basket.nav_per_share) == (-50, 54_000_001, None)
    assert (basket.shares_outstanding, basket.as_of, basket.stale) == (0, NOW + 1, False)
    nav = desk.nav("F3")
    assert (nav.nav, nav.nav_per_share, nav.shares_outstanding) == (0, None, 0)
    assert desk.order(REDEEM, 1, participant="AP-4", fund="F3").reject_reason == INSUFFICIENT_SHARES
    order = desk.order(CREATE, 3, participant="AP-4", fund="F3")
    assert order.deliverables == (line("BTC", 300_000_003), line("ETH", eth("6")))
    assert order.cash_amount == -150
    desk.settle(order.order_id)
    assert desk.fund_figures("F3") == (-150, 30)
    # now a real basket: 3.00000003 BTC x 10 / 30 = 1.00000001 BTC, 2 ETH; NAV / 3 = 540000.005000005 and the
    # basket worth 540000.505000005: cash component -0.50 again
    assert qpu(desk.basket("F3")) == {"BTC": 100_000_001, "ETH": eth("2")}
    assert desk.basket("F3").cash_component == -50


# == S = 0: no nav_per_share anywhere; the seed cash needs no price ============================
def _seed_cash(desk, fund=F2):
    desk.update(fund, seed_cash_per_unit="12.34")


@pytest.mark.parametrize(("fund", "shares", "nps"), [(F2, 0, None), (F1, 1000, 70_000_000)])
def test_basket_nav_per_share_only_with_shares_outstanding(ledger, fund, shares, nps):
    desk = sample(ledger)  # every price present and fresh
    basket = desk.basket(fund)
    # both 7000.0000 per share would be 700,000.00 per unit: F1's NAV 7,000,000.00 / 1000 shares; F2's seed
    # basket 1 x 500000 + 10 x 20000 + 0.00 per unit of 100 shares. Only F1 has shares to divide by.
    assert (basket.shares_outstanding, basket.nav_per_share, basket.nav_per_unit) == (shares, nps, cents("700000"))
    assert desk.nav(fund).nav_per_share == nps  # GetNav and GetBasket agree


def test_basket_nav_per_share_goes_when_the_last_share_is_redeemed(ledger):
    desk = sample(ledger, shares=100)  # exactly one unit: NAV 7,000,000.00 over 100 shares
    assert desk.basket().nav_per_share == 700_000_000  # 70000.0000
    desk.settle(desk.order(REDEEM, 1).order_id)
    basket = desk.basket()  # S = 0: the seed basket of F1 (seed quantities 0, seed cash 0.00)
    assert (basket.shares_outstanding, basket.nav_per_share, basket.cash_component) == (0, None, 0)
    assert qpu(basket) == {"BTC": 0, "ETH": 0}
    assert desk.nav().nav_per_share is None


@pytest.mark.parametrize("side", SIDES)
def test_orders_decided_at_zero_shares_carry_no_nav_per_share(ledger, side):
    desk = sample(ledger)
    _seed_cash(desk)
    checked = desk.check(side, 2, fund=F2)
    order = desk.order(side, 2, fund=F2)
    # CREATE is accepted on the seed basket, REDEEM rejected (no shares): either way decided at S = 0
    expected = (ACCEPTED, "") if side == CREATE else (REJECTED, INSUFFICIENT_SHARES)
    assert (order.status, order.reject_reason) == expected
    for o in (checked, order):
        assert (o.basket.shares_outstanding, o.basket.nav_per_share) == (0, None)
        assert (o.basket.cash_component, o.cash_amount) == (1234, 2 * 1234)
    if side == CREATE:
        desk.settle(order.order_id)  # 200 shares now; the accepted order keeps its S = 0 basket
        assert desk.ledger.get_order(order.order_id, None).basket.nav_per_share is None
        # NAV = 2 BTC + 20 ETH + 24.68 cash = 1,400,024.68; / 200 = 7000.1234
        assert desk.order(CREATE, 1, fund=F2).basket.nav_per_share == 70_001_234


@pytest.mark.parametrize("priced", [{}, {"BTC": "500000"}, {"ETH": "20000"}], ids=["none", "btc-only", "eth-only"])
def test_seed_basket_cash_needs_no_price(ledger, priced):
    desk = sample(ledger, prices=priced)
    _seed_cash(desk)
    basket = desk.basket(F2)
    assert qpu(basket) == {"BTC": btc("1"), "ETH": eth("10")}
    # the seed cash is a term of the fund: no price goes into it. The value of a unit needs every price.
    assert (basket.cash_component, basket.nav_per_unit, basket.nav_per_share) == (1234, None, None)
    assert basket.stale is True
    order = desk.order(CREATE, 3, fund=F2)
    assert (order.reject_reason, order.basket.cash_component, order.cash_amount) == (STALE_PRICE, 1234, 3 * 1234)


def test_seed_basket_priced_has_its_value(ledger):
    desk = sample(ledger)
    _seed_cash(desk)
    basket = desk.basket(F2)
    # 1 x 500000 + 10 x 20000 + 12.34 = 700012.34
    assert (basket.cash_component, basket.nav_per_unit, basket.nav_per_share, basket.stale) == (
        1234, cents("700012.34"), None, False)


@pytest.mark.parametrize("shares", [1000, 1])
def test_basket_with_shares_and_a_price_missing_has_no_cash_component(ledger, shares):
    desk = sample(ledger, shares=shares, prices={"BTC": "500000"})
    _seed_cash(desk, F1)  # the seed cash is not F1's basket while it has shares
    basket = desk.basket()
    assert (basket.cash_component, basket.nav_per_unit, basket.nav_per_share) == (None, None, None)
    assert desk.order(CREATE, 1).cash_amount is None


def test_nav_counts_every_bucket(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "1"})
    desk.stake("CUS-A", "BTC", "3")
    desk.unstake("CUS-A", "BTC", "1")
    desk.order(REDEEM, 2)
    s = desk.summary("BTC")
    # available 10 - 3 - 2 = 5, reserved 2, staked 2, unbonding 1
    assert (s.total, s.committed, s.liquid, s.illiquid) == (btc("10"), btc("8"), btc("5"), btc("3"))
    assert (desk.nav().nav, qpu(desk.basket())["BTC"]) == (cents("7000000"), btc("1"))


def test_get_holdings_lists_exactly_the_held_rows_of_the_state(ledger):
    # GetHoldings is a read of the state: a ledger rebuilt from a snapshot of state() (the journal's way
    # back, SPEC §9) knows nothing of a holding that was emptied, so an emptied holding is not listed
    desk = sample(ledger, eth_terms={"staking_cap": "1"})
    desk.adjust("CUS-A", "BTC", "-10")
    desk.stake("CUS-A", "ETH", "5")
    desk.unstake("CUS-A", "ETH", "2")
    listed = {(r.custodian_id, r.asset): (r.available, r.reserved, r.staked, r.unbonding)
              for r in ledger.get_holdings(F1, desk.now).holdings}
    assert listed == {("CUS-A", "ETH"): (eth("95"), 0, eth("3"), eth("2"))}


def test_holdings_summary_carries_cap_and_buffer(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.30", "liquidity_buffer": "0.1"})
    s = desk.summary("BTC")
    assert (s.staking_cap, s.liquidity_buffer) == (3000, 1000)


# == SPEC §6: staking and custody instructions ================================================
def stake_cmd(quantity: str, custodian: str = "CUS-A", asset: str = "BTC") -> m.Stake:
    return m.Stake(fund_id=F1, custodian_id=custodian, asset=asset, quantity=quantity)


@pytest.mark.parametrize(("now", "ok"), [(NOW + 29_999, True), (NOW + 30_000, False)])
def test_stake_licence_expiry(ledger, now, ok):
    desk = sample(ledger, btc_terms={"staking_cap": "1"})
    desk.licence("CUS-A", ACTIVE, IN_30_S)
    desk.now = now
    if ok:
        desk.run(stake_cmd("1"))
    else:
        desk.refused(stake_cmd("1"), FAILED_PRECONDITION, reason=CUSTODIAN_NOT_LICENSED)


@pytest.mark.parametrize("status", [SUSPENDED, REVOKED])
def test_stake_at_unlicensed_custodian(ledger, status):
    desk = sample(ledger, btc_terms={"staking_cap": "1"})
    desk.licence("CUS-A", status)
    desk.refused(stake_cmd("1"), FAILED_PRECONDITION, reason=CUSTODIAN_NOT_LICENSED)


def test_stake_needs_the_custodians_own_available(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "1"},
                  holdings={("CUS-A", "BTC"): "6", ("CUS-B", "BTC"): "4", ("CUS-A", "ETH"): "100"})
    desk.refused(stake_cmd("4.00000001", "CUS-B"), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.refused(stake_cmd("0.00000001", "CUS-C"), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.run(stake_cmd("4", "CUS-B"))
    assert desk.rows()[("CUS-B", "BTC")] == (0, 0, btc("4"), [])


def test_stake_staking_cap(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.30"})
    desk.refused(stake_cmd("3.00000001"), FAILED_PRECONDITION, reason=STAKING_CAP_BREACH)  # > 0.30 x 10
    desk.run(stake_cmd("3"))
    desk.refused(stake_cmd("0.00000001"), FAILED_PRECONDITION, reason=STAKING_CAP_BREACH)


def test_stake_cap_is_on_committed_holdings(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.30"})
    desk.order(REDEEM, 5)  # 5 BTC reserved: committed 5 BTC, cap 0.30 x 5 = 1.5 BTC
    desk.refused(stake_cmd("1.50000001"), FAILED_PRECONDITION, reason=STAKING_CAP_BREACH)
    desk.run(stake_cmd("1.5"))


def test_stake_liquidity_buffer(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "1", "liquidity_buffer": "0.70"})
    # liquid - q >= 0.70 x 10 BTC
    desk.refused(stake_cmd("3.00000001"), FAILED_PRECONDITION, reason=LIQUIDITY_BUFFER_BREACH)
    desk.run(stake_cmd("3"))


def test_stake_min_liquid_units(ledger):
    desk = sample(ledger, min_liquid=8, btc_terms={"staking_cap": "1"})
    # liquid - q >= 8 units x 1 BTC
    desk.refused(stake_cmd("2.00000001"), FAILED_PRECONDITION, reason=LIQUIDITY_BUFFER_BREACH)
    desk.run(stake_cmd("2"))


@pytest.mark.parametrize(("terms", "revoke", "quantity", "reason"), [
    ({"staking_cap": "0.30"}, True, "11", CUSTODIAN_NOT_LICENSED),  # and more than available, above cap
    ({"staking_cap": "0.30"}, False, "11", INSUFFICIENT_LIQUID_BALANCE),  # and above the cap
    ({"staking_cap": "0.30", "liquidity_buffer": "0.90"}, False, "4", STAKING_CAP_BREACH),  # and the buffer
])
def test_stake_checks_run_in_order(ledger, terms, revoke, quantity, reason):
    desk = sample(ledger, btc_terms=terms)
    if revoke:
        desk.licence("CUS-A", REVOKED)
    desk.refused(stake_cmd(quantity), FAILED_PRECONDITION, reason=reason)


def test_unstake_into_a_lot_released_at_release_time(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "1"})  # BTC unbonds in 3600 s
    desk.stake("CUS-A", "BTC", "2")
    desk.refused(m.Unstake(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="2.00000001"),
                 FAILED_PRECONDITION, reason=INSUFFICIENT_STAKED_BALANCE)
    desk.refused(m.Unstake(fund_id=F1, custodian_id="CUS-B", asset="BTC", quantity="0.00000001"),
                 FAILED_PRECONDITION, reason=INSUFFICIENT_STAKED_BALANCE)
    desk.unstake("CUS-A", "BTC", "2")
    release = NOW + 3_600_000
    assert desk.rows()[("CUS-A", "BTC")] == (btc("8"), 0, 0, [[release, btc("2")]])
    desk.now = release - 1
    desk.publish()
    row = ledger.get_holdings(F1, desk.now).holdings[0]
    assert (row.custodian_id, row.asset, row.available, row.unbonding) == ("CUS-A", "BTC", btc("8"), btc("2"))
    assert (desk.summary("BTC").liquid, desk.summary("BTC").illiquid) == (btc("8"), btc("2"))
    assert desk.reason(REDEEM, 9) == INSUFFICIENT_LIQUID_BALANCE
    desk.now = release
    desk.publish()
    assert desk.rows()[("CUS-A", "BTC")] == (btc("10"), 0, 0, [])
    assert (desk.summary("BTC").liquid, desk.summary("BTC").illiquid) == (btc("10"), 0)
    assert desk.reason(REDEEM, 9) == ""
    assert desk.replayed_state() == desk.state()


def test_rewards_and_slashing(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "1"})
    desk.run(m.RecordStakingReward(fund_id=F1, custodian_id="CUS-B", asset="BTC", quantity="0.5"))
    assert desk.rows()[("CUS-B", "BTC")] == (btc("0.5"), 0, 0, [])
    assert desk.nav().nav == cents("7250000")  # + 0.5 x 500000
    desk.stake("CUS-A", "BTC", "2")
    desk.refused(m.RecordSlashing(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="2.00000001"),
                 FAILED_PRECONDITION, reason=INSUFFICIENT_STAKED_BALANCE)
    desk.run(m.RecordSlashing(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="0.5"))
    assert desk.rows()[("CUS-A", "BTC")] == (btc("8"), 0, btc("1.5"), [])
    assert desk.nav().nav == cents("7000000")  # 10.5 - 0.5 BTC
    desk.run(m.RecordSlashing(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="1.5"))
    assert desk.rows()[("CUS-A", "BTC")] == (btc("8"), 0, 0, [])
    assert desk.replayed_state() == desk.state()


def test_adjust_holding_never_below_zero(ledger):
    desk = sample(ledger)
    desk.order(REDEEM, 3)  # 3 BTC reserved: 7 available
    adjust = m.AdjustHolding(fund_id=F1, custodian_id="CUS-A", asset="BTC", delta="-7.00000001")
    desk.refused(adjust, FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.refused(replace(adjust, custodian_id="CUS-B", delta="-0.00000001"), FAILED_PRECONDITION,
                 reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.adjust("CUS-A", "BTC", "-7")
    assert desk.rows()[("CUS-A", "BTC")] == (0, btc("3"), 0, [])
    desk.adjust("CUS-A", "ETH", "0.000000000000000001")
    assert desk.rows()[("CUS-A", "ETH")] == (eth("70.000000000000000001"), eth("30"), 0, [])


def test_adjust_cash_is_signed(ledger):
    desk = sample(ledger)
    desk.cash("1234.56")
    desk.cash("-2000")
    assert desk.fund_figures() == (-76_544, 1000)  # 1234.56 - 2000.00 = -765.44
    assert desk.nav().nav == cents("6999234.56")
    assert desk.nav().cash == -76_544


INSTRUCTIONS = {
    "stake": (m.Stake, "quantity"), "unstake": (m.Unstake, "quantity"),
    "reward": (m.RecordStakingReward, "quantity"), "slash": (m.RecordSlashing, "quantity"),
    "adjust": (m.AdjustHolding, "delta"),
}


@pytest.mark.parametrize("kind", list(INSTRUCTIONS))
@pytest.mark.parametrize(("change", "amount", "code", "names"), [
    ({"fund_id": "NOPE"}, "1", NOT_FOUND, "NOPE"),
    ({"custodian_id": "CUS-Z"}, "1", NOT_FOUND, "CUS-Z"),
    ({"asset": "SOL"}, "1", INVALID_ARGUMENT, "asset"),  # registered, but not an asset of F1
    ({"asset": "DOGE"}, "1", INVALID_ARGUMENT, "asset"),
    ({}, "0", INVALID_ARGUMENT, None),
    ({}, "0.00000000", INVALID_ARGUMENT, None),
])
def test_instruction_refusals(ledger, kind, change, amount, code, names):
    desk = sample(ledger)
    command, field = INSTRUCTIONS[kind]
    target = {"fund_id": F1, "custodian_id": "CUS-A", "asset": "BTC"} | change
    desk.refused(command(**target, **{field: amount}), code, names=names or field)


@pytest.mark.parametrize("kind", ["stake", "unstake", "reward", "slash"])
def test_instruction_quantities_are_positive(ledger, kind):
    desk = sample(ledger)
    command, field = INSTRUCTIONS[kind]
    desk.refused(command(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="-1"), INVALID_ARGUMENT,
                 names="quantity")


def test_adjust_zero_cash_refused(ledger):
    desk = sample(ledger)
    desk.refused(m.AdjustCash(fund_id=F1, delta="0.00"), INVALID_ARGUMENT, names="delta")
    desk.refused(m.AdjustCash(fund_id="NOPE", delta="1"), NOT_FOUND)


# == SPEC §1: numbers on the wire =============================================================
MALFORMED = ["", " 1", "1 ", "1e3", "1E3", "+1", "1.", ".5", "1,5", "0x1", "1_000", "--1", "NaN", "Infinity",
             "\u0661", "1.2.3"]


def number_cases(value: str) -> list[tuple[object, str]]:
    """(command, field named in the refusal) carrying ``value`` in one number field each."""
    return [
        (m.AdjustHolding(fund_id=F1, custodian_id="CUS-A", asset="BTC", delta=value), "delta"),
        (m.Stake(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity=value), "quantity"),
        (m.AdjustCash(fund_id=F1, delta=value), "delta"),
        (m.PublishPrices(ticks=[m.PriceTick(asset="BTC", currency="HKD", price=value, as_of_unix_ms=NOW + 1)]),
         "ticks[0].price"),
        (m.UpdateFund(fund_id=F1, creation_fee=value), "creation_fee"),
        (m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="BTC", staking_cap=value)]),
         "assets[0].staking_cap"),
        (m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="BTC", seed_quantity_per_unit=value)]),
         "assets[0].seed_quantity_per_unit"),
    ]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_numbers(ledger, value):
    desk = sample(ledger)
    for command, field in number_cases(value):
        desk.refused(command, INVALID_ARGUMENT, names=field)


@pytest.mark.parametrize(("command", "field"), [
    (m.AdjustHolding(fund_id=F1, custodian_id="CUS-A", asset="BTC", delta="0.000000001"), "delta"),
    (m.AdjustHolding(fund_id=F1, custodian_id="CUS-A", asset="ETH", delta="0.0000000000000000001"), "delta"),
    (m.Stake(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="1.000000001"), "quantity"),
    (m.AdjustCash(fund_id=F1, delta="1.001"), "delta"),
    (m.PublishPrices(ticks=[m.PriceTick(asset="BTC", currency="HKD", price="1.000000001", as_of_unix_ms=NOW)]),
     "ticks[0].price"),
    (m.UpdateFund(fund_id=F1, redemption_fee="0.001"), "redemption_fee"),
    (m.UpdateFund(fund_id=F1, seed_cash_per_unit="-0.001"), "seed_cash_per_unit"),
    (m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="BTC", liquidity_buffer="0.00001")]),
     "assets[0].liquidity_buffer"),
    (m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="BTC", seed_quantity_per_unit="1.000000001")]),
     "assets[0].seed_quantity_per_unit"),
], ids=["btc", "eth", "stake", "cash", "price", "fee", "seed-cash", "buffer", "seed-qty"])
def test_too_many_fraction_digits(ledger, command, field):
    sample(ledger).refused(command, INVALID_ARGUMENT, names=field)


@pytest.mark.parametrize(("command", "field"), [
    (m.PublishPrices(ticks=[m.PriceTick(asset="BTC", currency="HKD", price="-1", as_of_unix_ms=NOW + 1)]),
     "ticks[0].price"),
    (m.UpdateFund(fund_id=F1, creation_fee="-1"), "creation_fee"),
    (m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="BTC", staking_cap="-0.1")]), "assets[0].staking_cap"),
    (m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="BTC", seed_quantity_per_unit="-1")]),
     "assets[0].seed_quantity_per_unit"),
    (m.UpdateFund(fund_id=F1, assets=[m.FundAssetSpec(asset="BTC", staking_cap="1.0001")]),  # above 1
     "assets[0].staking_cap"),
], ids=["price", "fee", "cap", "seed", "cap-above-1"])
def test_sign_or_fraction_where_not_allowed(ledger, command, field):
    sample(ledger).refused(command, INVALID_ARGUMENT, names=field)


def test_fraction_bounds_accepted(ledger):
    desk = sample(ledger)
    desk.terms("BTC", staking_cap="1.0000", liquidity_buffer="0.0001")
    assert (desk.summary("BTC").staking_cap, desk.summary("BTC").liquidity_buffer) == (10_000, 1)


def test_quantity_range(ledger):
    desk = sample(ledger)
    desk.adjust("CUS-B", "BTC", "10000000000000000000000")  # 10^22 BTC = 10^30 satoshis: the limit
    assert desk.rows()[("CUS-B", "BTC")][0] == 10**30
    desk.refused(m.AdjustHolding(fund_id=F1, custodian_id="CUS-B", asset="BTC", delta="0.00000001"),
                 OUT_OF_RANGE, names="delta")  # the bucket would pass 10^30
    desk.refused(m.AdjustHolding(fund_id=F1, custodian_id="CUS-C", asset="BTC",
                                 delta="10000000000000000000000.00000001"), OUT_OF_RANGE, names="delta")
    desk.adjust("CUS-C", "ETH", "1000000000000")  # 10^12 ETH = 10^30 wei
    desk.refused(m.AdjustHolding(fund_id=F1, custodian_id="CUS-D", asset="ETH",
                                 delta="1000000000000.000000000000000001"), OUT_OF_RANGE, names="delta")
    desk.refused(m.RecordStakingReward(fund_id=F1, custodian_id="CUS-B", asset="BTC", quantity="0.00000001"),
                 OUT_OF_RANGE)
    # NAV stays exact: 10^22 + 10 BTC x 500000 + (10^12 + 100) ETH x 20000
    assert desk.nav().nav == (10**22 + 10) * 500_000_00 + (10**12 + 100) * 20_000_00


@pytest.mark.parametrize("bucket", ["staked", "unbonding"])
def test_staked_and_unbonding_buckets_stay_within_10_pow_30(ledger, bucket):
    desk = sample(ledger, btc_terms={"staking_cap": "1"})
    limit = "10000000000000000000000"  # 10^30 satoshis
    desk.adjust("CUS-B", "BTC", limit)
    desk.stake("CUS-B", "BTC", limit)
    if bucket == "unbonding":
        desk.unstake("CUS-B", "BTC", limit)
    desk.adjust("CUS-B", "BTC", "0.00000001")
    if bucket == "staked":
        desk.refused(stake_cmd("0.00000001", "CUS-B"), OUT_OF_RANGE)
    else:
        desk.stake("CUS-B", "BTC", "0.00000001")
        desk.refused(m.Unstake(fund_id=F1, custodian_id="CUS-B", asset="BTC", quantity="0.00000001"), OUT_OF_RANGE)


@pytest.mark.parametrize(("fields", "ok"), [
    ({"initial_shares_outstanding": 10**15}, True),
    ({"initial_shares_outstanding": 10**15 + 1}, False),
    ({"creation_unit": 10**8}, True),
    ({"creation_unit": 10**8 + 1}, False),
])
def test_shares_and_creation_unit_range(ledger, fields, ok):
    desk = sample(ledger)
    command = m.CreateFund(fund_id="F9", name="F9", base_currency="HKD", creation_custodian_id="CUS-A",
                           custodian_priority=["CUS-A"], assets=[m.FundAssetSpec(asset="BTC")],
                           **({"creation_unit": 100} | fields))
    if ok:
        desk.run(command)
        assert desk.basket("F9").creation_unit == command.creation_unit
        assert desk.nav("F9").shares_outstanding == command.initial_shares_outstanding
    else:
        error = desk.refused(command, OUT_OF_RANGE)
        assert next(iter(fields)) in error.message


@pytest.mark.parametrize(("fields", "names"), [
    ({"creation_unit": 0}, "creation_unit"), ({"initial_shares_outstanding": -1}, "initial_shares_outstanding"),
])
def test_fund_figures_below_range(ledger, fields, names):
    desk = sample(ledger)
    command = m.CreateFund(fund_id="F9", name="F9", base_currency="HKD", creation_custodian_id="CUS-A",
                           custodian_priority=["CUS-A"], assets=[m.FundAssetSpec(asset="BTC")],
                           **({"creation_unit": 100} | fields))
    desk.refused(command, INVALID_ARGUMENT, names=names)


def test_create_fund_needs_a_creation_custodian(ledger):
    """Without creation_custodian_id CreateFund names the missing field (not NOT_FOUND custodian ''),
    also for a fund id that exists: the request is malformed whatever the state."""
    desk = sample(ledger)
    for fund_id in ("F9", F1):
        command = m.CreateFund(fund_id=fund_id, name="F9", base_currency="HKD", creation_unit=100,
                               creation_custodian_id="", custodian_priority=["CUS-A"],
                               assets=[m.FundAssetSpec(asset="BTC")])
        desk.refused(command, INVALID_ARGUMENT, reason="creation_custodian_id: ")


# == SPEC §7: prices ==========================================================================
def tick(price: str = "510000", at: int = NOW + 1, asset: str = "BTC", currency: str = "HKD") -> m.PriceTick:
    return m.PriceTick(asset=asset, currency=currency, price=price, as_of_unix_ms=at)


@pytest.mark.parametrize(("bad", "code", "names"), [
    (tick(asset="DOGE"), INVALID_ARGUMENT, "ticks[1].asset"),
    (tick(price="0"), INVALID_ARGUMENT, "ticks[1].price"),
    (tick(price="0.00000000"), INVALID_ARGUMENT, "ticks[1].price"),
    (tick(price="-510000"), INVALID_ARGUMENT, "ticks[1].price"),
    (tick(price="1000000000000.00000001"), OUT_OF_RANGE, "ticks[1].price"),
    (tick(at=NOW + 5_001), INVALID_ARGUMENT, "ticks[1].as_of_unix_ms"),
    (tick(currency="hkd"), INVALID_ARGUMENT, "ticks[1].currency"),
])
def test_a_bad_tick_refuses_the_whole_batch(ledger, bad, code, names):
    desk = sample(ledger)
    desk.refused(m.PublishPrices(ticks=[tick(asset="ETH", price="21000"), bad]), code, names=names)


@pytest.mark.parametrize("price", ["1000000000000", "0.00000001"])
def test_price_range_boundaries_accepted(ledger, price):
    desk = sample(ledger)
    assert desk.run(m.PublishPrices(ticks=[tick(price=price)])) == m.PublishResult(applied=1, ignored=0)
    assert desk.nav().lines[0].price == units_of_price(price)


def units_of_price(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole + frac.ljust(8, "0"))


def test_tick_up_to_5_seconds_in_the_future(ledger):
    desk = sample(ledger)
    assert desk.run(m.PublishPrices(ticks=[tick(at=NOW + 5_000)])).applied == 1
    assert desk.nav().as_of == NOW + 5_000


def test_ticks_not_newer_are_ignored_and_counted(ledger):
    desk = sample(ledger)  # BTC 500000 as of NOW
    result = desk.run(m.PublishPrices(ticks=[
        tick("1", at=NOW),  # not newer than the current price
        tick("2", at=NOW - 1),  # older
        tick("3", at=NOW + 2),  # applied
        tick("4", at=NOW + 1),  # older than the tick before it
        tick("5", at=NOW + 2),  # same time as the tick before it
        tick("21000", at=NOW + 2, asset="ETH"),  # applied
        tick("6", at=NOW - 1, currency="USD"),  # first USD price: applied
    ]))
    assert (result.applied, result.ignored) == (3, 4)
    # each ignored tick says why, with both times (issue 19)
    assert result.ignored_ticks == [
        m.IgnoredTick(index=0, asset="BTC", currency="HKD", as_of_unix_ms=NOW, current_as_of_unix_ms=NOW),
        m.IgnoredTick(index=1, asset="BTC", currency="HKD", as_of_unix_ms=NOW - 1, current_as_of_unix_ms=NOW),
        m.IgnoredTick(index=3, asset="BTC", currency="HKD", as_of_unix_ms=NOW + 1, current_as_of_unix_ms=NOW + 2),
        m.IgnoredTick(index=4, asset="BTC", currency="HKD", as_of_unix_ms=NOW + 2, current_as_of_unix_ms=NOW + 2)]
    at = m.utc_text
    assert [t.reason for t in result.ignored_ticks[:2]] == [
        f"not newer than the current BTC/HKD price: both as of {at(NOW)}",
        f"older than the current BTC/HKD price: as of {at(NOW - 1)}, the current one as of {at(NOW)}"]
    assert [ln.price for ln in desk.nav().lines] == [300_000_000, 2_100_000_000_000]
    assert ["BTC", "USD", 600_000_000, NOW - 1] in desk.state()["prices"]


# == events ===================================================================================
def test_replaying_the_events_rebuilds_the_state(ledger):
    desk = spread(ledger, btc_terms={"staking_cap": "0.5", "liquidity_buffer": "0.1"})
    desk.stake("CUS-A", "BTC", "1")
    desk.unstake("CUS-A", "BTC", "0.5")
    desk.run(m.RecordStakingReward(fund_id=F1, custodian_id="CUS-B", asset="BTC", quantity="0.01"))
    desk.run(m.RecordSlashing(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="0.1"))
    desk.cash("-12.34")
    created = desk.order(CREATE, 2)
    redeemed = desk.order(REDEEM, 3)
    cancelled = desk.order(REDEEM, 1, participant="AP-2")
    desk.order(CREATE, 51)  # rejected
    desk.run(m.SubmitOrders(participant_id="AP-2", requests=[desk.request(CREATE, 1), desk.request(REDEEM, 60)]))
    desk.now = NOW + 10_000
    desk.publish(fund_prices={"BTC": "510000.12345678", "ETH": "19999.99"})
    desk.settle(created.order_id)
    desk.settle(redeemed.order_id)
    desk.cancel(cancelled.order_id, "AP-2")
    desk.licence("CUS-C", REVOKED)
    desk.terms("ETH", staking_cap="0.2")
    desk.update(redemption_fee="30")
    for now in (desk.now, NOW + 3_600_000, NOW + 10**9):
        assert desk.replayed_state(now) == desk.state(now)
    fresh = type(ledger)()
    for event in desk.events:
        fresh.apply(event)
    assert fresh.get_nav(F1, desk.now) == desk.nav()
    assert fresh.get_basket(F1, desk.now) == desk.basket()
    assert fresh.list_orders() == ledger.list_orders()
