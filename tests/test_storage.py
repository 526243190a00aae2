"""SPEC §18 (storage tiers and the storage-ratio policy) with the decisions of etf_engine/ledger.py
("Storage tiers (SPEC §18)"): every tier movement, Sweep and SetStoragePolicy with their refusals in the
contract's order, the policy's figures at the ratio's boundary, payouts_due against the next dealing day,
breach and idle as time moves, the breaches of a strike; on both ledgers (the ``ledger`` fixture).

The world is conftest's sample (F1: 1000 shares, 10 BTC + 100 ETH at CUS-A, prices at NOW), created now,
so its coins enter HOT. ``legacy`` rebuilds the same world from its events with F1's FundCreated built
without ``entry_tier`` (a fund journaled before §18), whose coins enter COLD. Expected figures are worked
out by hand in exact integers (smallest units; ratios in 1e-4); ``figures`` states SPEC's formulas once,
independently of the engine. Every refusal goes through ``Desk.refused`` (the state is unchanged after it)
and the events replay into the same state.
"""

from __future__ import annotations

import math
from fractions import Fraction

import msgspec
import pytest
from conftest import DECIMALS, F1, F2, NOW, Desk, btc, eth, hk, sample

from etf_engine import model as m
from etf_engine.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE
from etf_engine.model import (
    ACCEPTED,
    CASH,
    COLD,
    CREATE,
    DAY_MS,
    HOT,
    IN_KIND,
    INSUFFICIENT_TIER_BALANCE,
    REDEEM,
    REJECTED,
    WARM,
)

pytestmark = pytest.mark.unit

HK = "HK"
AGE = 40 * 86_400  # max_price_age_seconds: the sample's prices stay fresh through January
HOUR = 3_600_000
MON, TUE, WED, THU, FRI, SAT, SUN = (f"2026-01-{d:02d}" for d in range(5, 12))
NEXT_MON, NEXT_TUE = "2026-01-12", "2026-01-13"
DEFAULT_RATIO = 9_800  # 0.98 in 1e-4


# -- time and numbers --------------------------------------------------------------------------------


def text(quantity: int, asset: str = "BTC") -> str:
    d = DECIMALS[asset]
    return f"{quantity // 10**d}.{quantity % 10**d:0{d}d}"


def figures(ratio: int, held: int, due: int = 0) -> tuple[int, int]:
    """SPEC §18: (cold_required, hot_allowance) = (max(0, ceil(r x held) - due), floor((1 - r) x held) + due),
    with r = ratio / 10^4, in exact integers."""
    return max(0, -((-ratio * held) // 10_000) - due), ((10_000 - ratio) * held) // 10_000 + due


# -- commands and reads ------------------------------------------------------------------------------
def sweep(from_tier: str, to_tier: str, quantity: str, asset: str = "BTC", custodian: str = "CUS-A",
          fund: str = F1) -> m.Sweep:
    return m.Sweep(fund_id=fund, custodian_id=custodian, asset=asset, quantity=quantity, from_tier=from_tier,
                   to_tier=to_tier)


def policy(ratio: str, max_hot_seconds: int = 86_400, custodian: str = "CUS-A") -> m.SetStoragePolicy:
    return m.SetStoragePolicy(custodian_id=custodian, min_cold_ratio=ratio, max_hot_seconds=max_hot_seconds)


def row(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", fund: str = F1, at: int | None = None):
    """The GetHoldings row of (custodian, asset) at ``at`` (None when it holds nothing)."""
    holdings = desk.ledger.get_holdings(fund, desk.now if at is None else at).holdings
    return next((h for h in holdings if (h.custodian_id, h.asset) == (custodian, asset)), None)


def tiers(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", fund: str = F1,
          at: int | None = None) -> m.HoldingTiers:
    h = row(desk, custodian, asset, fund, at)
    assert h is not None, (custodian, asset)
    t = h.tiers
    assert t is not None
    assert t.cold + t.warm + t.hot == h.available + h.reserved  # held = cold + warm + hot
    return t


def expect(desk: Desk, cold: int, warm: int, hot: int, *, custodian: str = "CUS-A", asset: str = "BTC",
           fund: str = F1, at: int | None = None, ratio: int = DEFAULT_RATIO, due: int = 0,
           idle: bool = False) -> m.HoldingTiers:
    """Assert the whole HoldingTiers of a holding: the tiers given, the policy's figures from ``figures``."""
    required, allowance = figures(ratio, cold + warm + hot, due)
    want = m.HoldingTiers(cold=cold, warm=warm, hot=hot, cold_required=required, hot_allowance=allowance,
                          breach=cold < required, idle=idle)
    got = tiers(desk, custodian, asset, fund, at)
    assert got == want
    return got


def holding_state(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", fund: str = F1,
                  at: int | None = None):
    state = desk.ledger.state(desk.now if at is None else at)
    f = next(f for f in state.funds if f.terms.fund_id == fund)
    return next((h for h in f.holdings if (h.custodian_id, h.asset) == (custodian, asset)), None)


def fund_state(desk: Desk, fund: str = F1, at: int | None = None):
    return next(f for f in desk.ledger.state(desk.now if at is None else at).funds if f.terms.fund_id == fund)


def custodian_state(desk: Desk, custodian: str = "CUS-A"):
    return next(c for c in desk.ledger.state(desk.now).custodians if c.custodian_id == custodian)


def over_since(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", at: int | None = None) -> int | None:
    return holding_state(desk, custodian, asset, at=at).over_since


def replays(desk: Desk, at: int | None = None) -> None:
    assert desk.replayed_state(at) == desk.state(at)


def without_entry_tier(event: m.FundCreated) -> m.FundCreated:
    """The FundCreated record of a fund journaled before §18: no entry_tier (the default)."""
    return m.FundCreated(at=event.at, terms=event.terms, shares_outstanding=event.shares_outstanding,
                         principal=event.principal)


def legacy(ledger, **kw) -> Desk:
    """The sample rebuilt from its events with F1's FundCreated without entry_tier: F1's coins are COLD."""
    built = sample(ledger, **kw)
    events = [without_entry_tier(e) if isinstance(e, m.FundCreated) and e.terms.fund_id == F1 else e
              for e in built.events]
    fresh = type(ledger)()
    for event in events:
        fresh.apply(event)
    desk = Desk(fresh, now=built.now)
    desk.events = events
    desk.specs = dict(built.specs)
    return desk


def on_calendar(desk: Desk, at: int, holidays: tuple[str, ...] = (), **terms) -> None:
    """Put F1 on the HK calendar (Asia/Hong_Kong, Saturday and Sunday off) at ``at``."""
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong", holidays=list(holidays)))
    desk.now = at
    desk.update(F1, calendar_id=HK, **terms)


def strike_cmd(day: str, prices: dict[str, str], at: int) -> m.StrikeNav:
    ticks = [m.PriceTick(asset=a, currency="HKD", price=p, as_of_unix_ms=at) for a, p in prices.items()]
    return m.StrikeNav(fund_id=F1, dealing_date=day, ticks=ticks)


# == the tier coins enter =============================================================================
def test_a_fund_created_now_enters_hot(ledger):
    desk = sample(ledger)
    created = next(e for e in desk.events if isinstance(e, m.FundCreated) and e.terms.fund_id == F1)
    assert created.entry_tier == HOT
    assert fund_state(desk).entry_tier == HOT
    # the sample's AdjustHolding put 10 BTC and 100 ETH in hot: far from 0.98 cold
    t = expect(desk, 0, 0, btc("10"))
    assert (t.cold_required, t.hot_allowance, t.breach) == (980_000_000, 20_000_000, True)
    expect(desk, 0, 0, eth("100"), asset="ETH")
    h = holding_state(desk)
    assert (h.available, h.reserved, h.warm, h.hot) == (btc("10"), 0, 0, btc("10"))
    replays(desk)


def test_a_fund_created_event_without_entry_tier_keeps_its_coins_cold(ledger):
    desk = legacy(ledger)
    assert fund_state(desk).entry_tier == COLD
    expect(desk, btc("10"), 0, 0)
    expect(desk, eth("100"), 0, 0, asset="ETH")
    # what enters later enters cold as well; what leaves leaves hot (empty), warm (empty), then cold
    desk.adjust("CUS-A", "BTC", "0.5")
    expect(desk, btc("10.5"), 0, 0)
    desk.run(sweep(COLD, HOT, "0.25"))
    desk.adjust("CUS-A", "BTC", "-0.75")
    expect(desk, btc("9.75"), 0, 0)
    replays(desk)
    # the record as the journal holds it: an old one decodes without entry_tier, to COLD
    legacy_record = next(e for e in desk.events if isinstance(e, m.FundCreated) and e.terms.fund_id == F1)
    raw = msgspec.json.decode(msgspec.json.encode(legacy_record))
    assert "entry_tier" not in raw
    assert msgspec.json.decode(msgspec.json.encode(raw), type=m.AnyEvent).entry_tier == COLD


ENTERING = ("settled creation", "staking reward", "positive adjustment", "released lot")


@pytest.mark.parametrize("entry", [HOT, COLD])
@pytest.mark.parametrize("how", ENTERING)
def test_what_enters_held_lands_in_the_entry_tier(ledger, entry, how):
    kw = dict(eth_terms={"staking_cap": "0.5", "staking_fee_rate": "0.18"})
    desk = sample(ledger, **kw) if entry == HOT else legacy(ledger, **kw)
    desk.run(sweep(entry, WARM, "100", asset="ETH"))  # every ETH coin in WARM: what enters shows alone
    expect(desk, 0, eth("100"), 0, asset="ETH")
    warm = eth("100")
    if how == "settled creation":
        order = desk.order(CREATE, 1)
        expect(desk, 0, warm, 0, asset="ETH")  # an accepted creation moves nothing
        desk.settle(order.order_id)
        q = eth("10")
    elif how == "staking reward":
        desk.run(m.RecordStakingReward(fund_id=F1, custodian_id="CUS-A", asset="ETH", quantity="10"))
        q = eth("8.2")  # the net: 10 - floor(10 x 0.18)
    elif how == "positive adjustment":
        desk.adjust("CUS-A", "ETH", "2.5")
        q = eth("2.5")
    else:
        desk.stake("CUS-A", "ETH", "5")  # leaves hot (empty), then warm
        warm -= eth("5")
        desk.unstake("CUS-A", "ETH", "5")
        release = desk.now + 86_400_000
        expect(desk, 0, warm, 0, asset="ETH", at=release - 1)  # not before its release time
        assert row(desk, asset="ETH", at=release - 1).unbonding == eth("5")
        desk.now = release
        q = eth("5")
    cold, hot = (q, 0) if entry == COLD else (0, q)
    expect(desk, cold, warm, hot, asset="ETH")
    assert row(desk, asset="ETH").unbonding == 0
    if how == "released lot":
        expect(desk, cold, warm, hot, asset="ETH", at=desk.now + 10 * DAY_MS)  # and after it
        h = holding_state(desk, asset="ETH")
        assert (h.available, list(h.lots), h.warm, h.hot) == (eth("100"), [], warm, hot)
    replays(desk)


def test_a_settled_creation_lands_at_the_creation_custodian(ledger):
    desk = sample(ledger)
    desk.update(F1, creation_custodian_id="CUS-B")
    order = desk.order(CREATE, 2)
    desk.settle(order.order_id)
    expect(desk, 0, 0, btc("2"), custodian="CUS-B")
    expect(desk, 0, 0, eth("20"), custodian="CUS-B", asset="ETH")
    expect(desk, 0, 0, btc("10"))  # CUS-A untouched
    replays(desk)


# == the order coins leave in ==========================================================================
LEAVING = ("negative adjustment", "stake", "settled redemption")


def leave_two_btc(desk: Desk, how: str) -> None:
    if how == "negative adjustment":
        desk.adjust("CUS-A", "BTC", "-2")
    elif how == "stake":
        desk.stake("CUS-A", "BTC", "2")
    else:
        before = tiers(desk)
        order = desk.order(REDEEM, 2)  # 2 units x 1 BTC, all from CUS-A (CUS-B holds nothing)
        assert order.status == ACCEPTED
        assert [(leg.custodian_id, leg.asset, leg.quantity) for leg in order.legs if leg.asset == "BTC"] == [
            ("CUS-A", "BTC", btc("2"))]
        after = tiers(desk)  # reserving moves no coin
        assert (after.cold, after.warm, after.hot) == (before.cold, before.warm, before.hot)
        desk.settle(order.order_id)


@pytest.mark.parametrize("how", LEAVING)
def test_what_leaves_held_leaves_hot_then_warm_then_cold(ledger, how):
    desk = sample(ledger, btc_terms={"staking_cap": "1"})
    desk.run(sweep(HOT, COLD, "5"))
    desk.run(sweep(HOT, WARM, "2"))
    expect(desk, btc("5"), btc("2"), btc("3"))
    for cold, warm, hot in (("5", "2", "1"), ("5", "1", "0"), ("4", "0", "0"), ("2", "0", "0")):
        leave_two_btc(desk, how)
        expect(desk, btc(cold), btc(warm), btc(hot))
    if how == "stake":
        assert row(desk).staked == btc("8")
    replays(desk)


def test_each_redemption_leg_leaves_its_own_custodians_hot_first(ledger):
    desk = sample(ledger, holdings={("CUS-B", "BTC"): "0.5", ("CUS-A", "BTC"): "9.5", ("CUS-A", "ETH"): "100"})
    desk.run(sweep(HOT, COLD, "0.4", custodian="CUS-B"))
    desk.run(sweep(HOT, WARM, "0.2"))
    desk.run(sweep(HOT, COLD, "9.2"))
    expect(desk, btc("0.4"), 0, btc("0.1"), custodian="CUS-B")
    expect(desk, btc("9.2"), btc("0.2"), btc("0.1"))
    order = desk.order(REDEEM, 1)  # 1 BTC: 0.5 from CUS-B (first in priority), 0.5 from CUS-A; 10 ETH from CUS-A
    assert [(leg.custodian_id, leg.asset, leg.quantity) for leg in order.legs] == [
        ("CUS-B", "BTC", btc("0.5")), ("CUS-A", "BTC", btc("0.5")), ("CUS-A", "ETH", eth("10"))]
    # reserved, not moved; each custodian's payouts_due is its own legs (no calendar: every ACCEPTED one)
    expect(desk, btc("0.4"), 0, btc("0.1"), custodian="CUS-B", due=btc("0.5"))
    expect(desk, btc("9.2"), btc("0.2"), btc("0.1"), due=btc("0.5"))
    expect(desk, 0, 0, eth("100"), asset="ETH", due=eth("10"))
    desk.settle(order.order_id)
    assert row(desk, custodian="CUS-B") is None  # 0.1 hot + 0.4 cold: nothing left there
    expect(desk, btc("9"), 0, 0)  # 0.1 hot + 0.2 warm + 0.2 cold
    expect(desk, 0, 0, eth("90"), asset="ETH")
    replays(desk)


def test_reserving_and_cancelling_move_no_coin(ledger):
    desk = sample(ledger)
    desk.run(sweep(HOT, COLD, "7"))
    desk.run(sweep(HOT, WARM, "2"))
    order = desk.order(REDEEM, 3)
    assert order.status == ACCEPTED
    h = row(desk)
    assert (h.available, h.reserved) == (btc("7"), btc("3"))
    # held is still 10: the tiers are as they were; only payouts_due moves the figures
    t = expect(desk, btc("7"), btc("2"), btc("1"), due=btc("3"))
    assert (t.cold_required, t.hot_allowance, t.breach) == (btc("6.8"), btc("3.2"), False)
    # a Sweep may move reserved coins too: held counts them (10 BTC cold, 7 available)
    desk.run(sweep(HOT, COLD, "1"))
    desk.run(sweep(WARM, COLD, "2"))
    expect(desk, btc("10"), 0, 0, due=btc("3"))
    desk.run(sweep(COLD, WARM, "2"))
    desk.run(sweep(COLD, HOT, "1"))
    desk.cancel(order.order_id, "AP-1")
    h = row(desk)
    assert (h.available, h.reserved) == (btc("10"), 0)
    t = expect(desk, btc("7"), btc("2"), btc("1"))
    assert (t.cold_required, t.hot_allowance, t.breach) == (btc("9.8"), btc("0.2"), True)
    replays(desk)


def test_unstake_and_slashing_move_no_tier(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.5"})
    desk.run(sweep(HOT, COLD, "6"))
    desk.stake("CUS-A", "BTC", "3")  # leaves hot: 4 -> 1
    expect(desk, btc("6"), 0, btc("1"))
    desk.run(m.RecordSlashing(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="0.5"))
    desk.unstake("CUS-A", "BTC", "1")
    desk.cash("100")
    expect(desk, btc("6"), 0, btc("1"))
    h = row(desk)
    assert (h.staked, h.unbonding) == (btc("1.5"), btc("1"))
    replays(desk)


# == an in-kind fee at a strike ==========================================================================
OFFICIAL = {"BTC": "510000", "ETH": "20100"}


def fee_desk(ledger, fee_payment: str = IN_KIND, **kw) -> Desk:
    """The sample with F1 on HK from Monday 09:00, a 5% management fee taken in BTC at CUS-A (or in cash)."""
    desk = sample(ledger, max_price_age_seconds=AGE, **kw)
    fee = dict(fee_asset="BTC", fee_custodian_id="CUS-A") if fee_payment == IN_KIND else {}
    on_calendar(desk, hk(MON, "09:00"), management_fee_rate="0.05", fee_payment=fee_payment, **fee)
    return desk


def expected_fee_taken(btc_total: int, eth_total: int) -> int:
    """SPEC §17 at the fund's first strike (one day, ACT_365, cash 0): fee = round(basis x 0.05 / 365, 2),
    q = floor(fee x 10^8 / official BTC price)."""
    basis = Fraction(btc_total, 10**8) * Fraction(OFFICIAL["BTC"]) + Fraction(eth_total, 10**18) * Fraction(
        OFFICIAL["ETH"])
    fee = Fraction(round(basis * Fraction("0.05") / 365 * 100), 100)
    return math.floor(fee * 10**8 / Fraction(OFFICIAL["BTC"]))


@pytest.mark.parametrize("crossing", [False, True])
def test_an_in_kind_fee_leaves_hot_then_warm_then_cold(ledger, crossing):
    desk = fee_desk(ledger)
    if crossing:
        desk.run(sweep(HOT, COLD, text(btc("10") - 1_500)))
        desk.run(sweep(HOT, WARM, text(1_000)))
        expect(desk, btc("10") - 1_500, 1_000, 500)
    desk.now = hk(MON, "16:00")
    desk.run(strike_cmd(MON, OFFICIAL, desk.now))
    struck = next(e for e in reversed(desk.events) if isinstance(e, m.NavStruck))
    taken = expected_fee_taken(btc("10"), eth("100"))  # 973.97 HKD: 190,974 sats
    assert (struck.fee_taken, struck.fee_asset, struck.fee_custodian_id) == (taken, "BTC", "CUS-A") == (
        190_974, "BTC", "CUS-A")
    if crossing:
        expect(desk, btc("10") - taken, 0, 0)
    else:  # hot has been above the allowance at every record since the sample's AdjustHolding at NOW
        expect(desk, 0, 0, btc("10") - taken, idle=True)
    replays(desk)


# == Sweep ===============================================================================================
DIRECTIONS = [(a, b) for a in (COLD, WARM, HOT) for b in (COLD, WARM, HOT) if a != b]


@pytest.mark.parametrize(("from_tier", "to_tier"), DIRECTIONS)
def test_sweep_moves_exactly_the_balance_and_not_one_unit_more(ledger, from_tier, to_tier):
    desk = sample(ledger)
    desk.run(sweep(HOT, COLD, "5"))
    desk.run(sweep(HOT, WARM, "3"))
    balance = {COLD: btc("5"), WARM: btc("3"), HOT: btc("2")}
    before = row(desk)
    b = balance[from_tier]
    desk.refused(sweep(from_tier, to_tier, text(b + 1)), FAILED_PRECONDITION, reason=INSUFFICIENT_TIER_BALANCE)
    desk.now += 1000
    assert desk.run(sweep(from_tier, to_tier, text(b))) is None
    assert desk.events[-1] == m.Swept(at=desk.now, fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity=b,
                                      from_tier=from_tier, to_tier=to_tier)
    balance[to_tier] += b
    balance[from_tier] = 0
    expect(desk, balance[COLD], balance[WARM], balance[HOT])
    after = row(desk)  # the buckets do not move: only the split of held
    assert (after.available, after.reserved, after.staked, after.unbonding) == (
        before.available, before.reserved, before.staked, before.unbonding)
    assert desk.nav().nav == cents_nav(desk)
    desk.refused(sweep(from_tier, to_tier, "0.00000001"), FAILED_PRECONDITION, reason=INSUFFICIENT_TIER_BALANCE)
    replays(desk)


def cents_nav(desk: Desk) -> int:
    """F1's NAV in cents from its holdings at the sample's prices (BTC 500000, ETH 20000)."""
    summary = desk.ledger.get_holdings(F1, desk.now).assets
    total = {a.asset: a.total for a in summary}
    return round((Fraction(total.get("BTC", 0), 10**8) * 500_000 + Fraction(total.get("ETH", 0), 10**18) * 20_000)
                 * 100)


BASE = dict(fund_id=F1, custodian_id="CUS-A", asset="BTC", quantity="1", from_tier=HOT, to_tier=COLD)


@pytest.mark.parametrize(("fields", "code", "field"), [
    ({"fund_id": "F9"}, NOT_FOUND, "F9"),
    ({"fund_id": "F9", "custodian_id": "CUS-Z", "asset": "DOGE", "quantity": "0"}, NOT_FOUND, "F9"),
    ({"custodian_id": "CUS-Z"}, NOT_FOUND, "CUS-Z"),
    ({"custodian_id": "CUS-Z", "asset": "DOGE", "from_tier": "ICE"}, NOT_FOUND, "CUS-Z"),
    ({"asset": "SOL"}, INVALID_ARGUMENT, "asset"),  # registered, not an asset of the fund
    ({"asset": "DOGE"}, INVALID_ARGUMENT, "asset"),
    ({"asset": "SOL", "quantity": "-1", "to_tier": "ICE"}, INVALID_ARGUMENT, "asset"),
    ({"quantity": "0"}, INVALID_ARGUMENT, "quantity"),
    ({"quantity": "0.00000000"}, INVALID_ARGUMENT, "quantity"),
    ({"quantity": "-1"}, INVALID_ARGUMENT, "quantity"),
    ({"quantity": "0.000000001"}, INVALID_ARGUMENT, "quantity"),  # 9 fraction digits: BTC has 8
    ({"quantity": ""}, INVALID_ARGUMENT, "quantity"),
    ({"quantity": "1e2"}, INVALID_ARGUMENT, "quantity"),
    ({"quantity": "0", "from_tier": "ICE", "to_tier": "ICE"}, INVALID_ARGUMENT, "quantity"),
    ({"from_tier": "LUKEWARM"}, INVALID_ARGUMENT, "from_tier"),
    ({"from_tier": ""}, INVALID_ARGUMENT, "from_tier"),
    ({"from_tier": "hot"}, INVALID_ARGUMENT, "from_tier"),
    ({"from_tier": "LUKEWARM", "to_tier": "ICE"}, INVALID_ARGUMENT, "from_tier"),
    ({"to_tier": "ICE"}, INVALID_ARGUMENT, "to_tier"),
    ({"to_tier": ""}, INVALID_ARGUMENT, "to_tier"),
    ({"to_tier": HOT}, INVALID_ARGUMENT, "to_tier"),  # the same tier
    ({"from_tier": COLD, "to_tier": COLD, "quantity": "1000"}, INVALID_ARGUMENT, "to_tier"),  # before the balance
    ({"quantity": "10.00000001"}, FAILED_PRECONDITION, INSUFFICIENT_TIER_BALANCE),
    ({"from_tier": COLD, "to_tier": HOT}, FAILED_PRECONDITION, INSUFFICIENT_TIER_BALANCE),  # cold holds 0
    ({"custodian_id": "CUS-C"}, FAILED_PRECONDITION, INSUFFICIENT_TIER_BALANCE),  # F1 holds nothing there
    ({"fund_id": F2}, FAILED_PRECONDITION, INSUFFICIENT_TIER_BALANCE),  # F2 holds nothing
])
def test_sweep_refusals_in_the_contracts_order(ledger, fields, code, field):
    desk = sample(ledger)
    command = m.Sweep(**(BASE | fields))
    if code == NOT_FOUND:
        desk.refused(command, code, names=field)
    else:
        desk.refused(command, code, reason=field)  # INVALID_ARGUMENT: the field first; else the reason code


def test_sweep_at_the_balance_with_reserved_coins_and_a_released_lot(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.5"})
    desk.stake("CUS-A", "BTC", "1")
    desk.unstake("CUS-A", "BTC", "1")
    release = desk.now + HOUR  # BTC unbonds in 3,600 s
    desk.order(REDEEM, 2)  # 2 BTC reserved: still held, still hot
    expect(desk, 0, 0, btc("9"), due=btc("2"))
    desk.refused(sweep(HOT, COLD, "10"), FAILED_PRECONDITION, reason=INSUFFICIENT_TIER_BALANCE, now=release - 1)
    expect(desk, 0, 0, btc("9"), due=btc("2"), at=release - 1)
    # at its release time the lot is hot: the Sweep sees it (an instruction releases matured lots first)
    desk.now = release
    desk.run(sweep(HOT, COLD, "10"))
    expect(desk, btc("10"), 0, 0, due=btc("2"))
    h = row(desk)
    assert (h.available, h.reserved, h.unbonding) == (btc("8"), btc("2"), 0)
    replays(desk)


# == SetStoragePolicy ===================================================================================
def test_storage_policy_defaults_and_setting_it(ledger):
    desk = sample(ledger)
    for cid in ("CUS-A", "CUS-B", "CUS-C", "CUS-D"):
        c = custodian_state(desk, cid)
        assert (c.min_cold_ratio, c.max_hot_seconds) == (9_800, 86_400)
    desk.now += 1000
    assert desk.run(policy("0.5", 3_600)) is None
    assert desk.events[-1] == m.StoragePolicySet(at=desk.now, custodian_id="CUS-A", min_cold_ratio=5_000,
                                                 max_hot_seconds=3_600)
    assert (custodian_state(desk).min_cold_ratio, custodian_state(desk).max_hot_seconds) == (5_000, 3_600)
    assert (custodian_state(desk, "CUS-B").min_cold_ratio, custodian_state(desk, "CUS-B").max_hot_seconds) == (
        9_800, 86_400)
    t = expect(desk, 0, 0, btc("10"), ratio=5_000, idle=False)
    assert (t.cold_required, t.hot_allowance) == (btc("5"), btc("5"))
    expect(desk, 0, 0, eth("100"), asset="ETH", ratio=5_000)
    # a ratio change moves no coin and is no refusal of anything: it only changes the figures
    desk.run(sweep(HOT, COLD, "5"))
    expect(desk, btc("5"), 0, btc("5"), ratio=5_000)
    desk.run(policy("0.5001", 3_600))
    t = expect(desk, btc("5"), 0, btc("5"), ratio=5_001)
    assert (t.cold_required, t.hot_allowance, t.breach) == (500_100_000, 499_900_000, True)
    replays(desk)


@pytest.mark.parametrize(("ratio", "scaled"), [
    ("0", 0), ("1", 10_000), ("0.0001", 1), ("0.9999", 9_999), ("1.0000", 10_000), ("0.98", 9_800), ("0.5", 5_000),
])
def test_storage_policy_accepts_every_ratio_in_range(ledger, ratio, scaled):
    desk = sample(ledger)
    desk.run(policy(ratio, 0))
    assert custodian_state(desk).min_cold_ratio == scaled
    expect(desk, 0, 0, btc("10"), ratio=scaled)
    # max_hot_seconds 0: idle 1 ms after over_since (NOW) unless the ratio leaves all 10 BTC allowed in hot
    expect(desk, 0, 0, btc("10"), ratio=scaled, at=NOW + 1, idle=scaled > 0)
    replays(desk)


@pytest.mark.parametrize(("fields", "code", "field"), [
    ({"custodian_id": "CUS-Z"}, NOT_FOUND, "CUS-Z"),
    ({"custodian_id": "CUS-Z", "min_cold_ratio": "2", "max_hot_seconds": -1}, NOT_FOUND, "CUS-Z"),
    ({"min_cold_ratio": "1.0001"}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"min_cold_ratio": "2"}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"min_cold_ratio": "0.12345"}, INVALID_ARGUMENT, "min_cold_ratio"),  # 5 fraction digits
    ({"min_cold_ratio": "-0.1"}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"min_cold_ratio": "+0.5"}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"min_cold_ratio": ""}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"min_cold_ratio": "1e-2"}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"min_cold_ratio": "0.98 "}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"min_cold_ratio": "1.0001", "max_hot_seconds": -1}, INVALID_ARGUMENT, "min_cold_ratio"),
    ({"max_hot_seconds": -1}, INVALID_ARGUMENT, "max_hot_seconds"),
    ({"max_hot_seconds": 10**9 + 1}, OUT_OF_RANGE, "max_hot_seconds"),
])
def test_storage_policy_refusals(ledger, fields, code, field):
    desk = sample(ledger)
    command = m.SetStoragePolicy(**(dict(custodian_id="CUS-A", min_cold_ratio="0.5", max_hot_seconds=60) | fields))
    if code == NOT_FOUND:
        desk.refused(command, code, names=field)
    else:
        desk.refused(command, code, reason=field)


def test_storage_policy_max_hot_seconds_bounds(ledger):
    desk = sample(ledger)
    desk.run(policy("0.98", 10**9))
    assert custodian_state(desk).max_hot_seconds == 10**9
    desk.run(policy("0.98", 0))
    assert custodian_state(desk).max_hot_seconds == 0
    replays(desk)


def test_a_fund_assets_own_ratio_overrides_the_custodians(ledger):
    desk = sample(ledger)
    desk.terms("BTC", min_cold_ratio="0.9")
    assert [(a.asset, a.min_cold_ratio) for a in fund_state(desk).terms.assets] == [("BTC", 9_000), ("ETH", None)]
    expect(desk, 0, 0, btc("10"), ratio=9_000)
    expect(desk, 0, 0, eth("100"), asset="ETH", ratio=9_800)
    desk.run(policy("0.1"))
    expect(desk, 0, 0, btc("10"), ratio=9_000)  # the fund's own
    expect(desk, 0, 0, eth("100"), asset="ETH", ratio=1_000)  # the custodian's
    # an explicit 0 is a ratio, not "unset": the custodian's 1 does not apply
    desk.terms("BTC", min_cold_ratio="0")
    desk.run(policy("1"))
    t = expect(desk, 0, 0, btc("10"), ratio=0)
    assert (t.cold_required, t.hot_allowance, t.breach) == (0, btc("10"), False)
    t = expect(desk, 0, 0, eth("100"), asset="ETH", ratio=10_000)
    assert (t.cold_required, t.hot_allowance, t.breach) == (eth("100"), 0, True)
    # "" gives it back to the custodian
    desk.terms("BTC", min_cold_ratio="")
    assert [(a.asset, a.min_cold_ratio) for a in fund_state(desk).terms.assets] == [("BTC", None), ("ETH", None)]
    expect(desk, 0, 0, btc("10"), ratio=10_000)
    # the override holds at every custodian of the fund, not at other funds
    desk.terms("BTC", min_cold_ratio="0.25")
    desk.adjust("CUS-B", "BTC", "4")
    expect(desk, 0, 0, btc("4"), custodian="CUS-B", ratio=2_500)
    replays(desk)


def test_create_fund_takes_an_assets_ratio(ledger):
    desk = sample(ledger)
    desk.create_fund("F3", {"BTC": {"min_cold_ratio": "0.25"}, "ETH": {}})
    assert [(a.asset, a.min_cold_ratio) for a in fund_state(desk, "F3").terms.assets] == [
        ("BTC", 2_500), ("ETH", None)]
    created = desk.events[-1]
    assert isinstance(created, m.FundCreated) and created.entry_tier == HOT
    desk.adjust("CUS-A", "BTC", "1", fund="F3")
    expect(desk, 0, 0, btc("1"), fund="F3", ratio=2_500)
    replays(desk)


@pytest.mark.parametrize(("spec", "field"), [
    ({"min_cold_ratio": "1.0001"}, "min_cold_ratio"),
    ({"min_cold_ratio": "0.12345"}, "min_cold_ratio"),
    ({"min_cold_ratio": "-0.5"}, "min_cold_ratio"),
    ({"min_cold_ratio": "x"}, "min_cold_ratio"),
    ({"staking_fee_rate": "1", "min_cold_ratio": "2"}, "staking_fee_rate"),  # the spec's own field order
])
def test_fund_asset_ratio_refusals(ledger, spec, field):
    desk = sample(ledger)
    bad = m.FundAssetSpec(asset="BTC", **spec)
    desk.refused(m.CreateFund(fund_id="F3", name="F3", base_currency="HKD", creation_unit=100,
                              creation_custodian_id="CUS-A", custodian_priority=["CUS-A"],
                              assets=[m.FundAssetSpec(asset="ETH"), bad]), INVALID_ARGUMENT, names=field)
    desk.refused(m.UpdateFund(fund_id=F1, assets=[bad]), INVALID_ARGUMENT, names=field)


# == the figures at the ratio's boundary =================================================================
@pytest.mark.parametrize(("ratio", "held", "cold_required", "hot_allowance"), [
    ("0.98", 101, 99, 2),  # 98.98 up, 2.02 down
    ("0.98", 100, 98, 2),  # exact
    ("0.98", 1, 1, 0),
    ("0.98", 49, 49, 0),  # 48.02 up, 0.98 down
    ("0.98", 50, 49, 1),
    ("0.9999", 10_001, 10_000, 1),
    ("0.0001", 10_001, 2, 9_999),
    ("0.5", 3, 2, 1),
    ("0", 101, 0, 101),
    ("1", 101, 101, 0),
])
def test_cold_required_rounds_up_and_hot_allowance_down(ledger, ratio, held, cold_required, hot_allowance):
    desk = sample(ledger, holdings={("CUS-A", "BTC"): text(held)})
    desk.run(policy(ratio))
    scaled = round(Fraction(ratio) * 10_000)
    assert figures(scaled, held) == (cold_required, hot_allowance)
    t = tiers(desk)
    assert (t.cold_required, t.hot_allowance) == (cold_required, hot_allowance)
    if cold_required > 0:
        if cold_required > 1:
            desk.run(sweep(HOT, COLD, text(cold_required - 1)))
        t = expect(desk, cold_required - 1, 0, held - cold_required + 1, ratio=scaled)
        assert t.breach and t.hot > t.hot_allowance
        desk.run(sweep(HOT, COLD, text(1)))
    t = expect(desk, cold_required, 0, held - cold_required, ratio=scaled)
    assert not t.breach and t.hot == t.hot_allowance
    if t.hot:  # hot and warm count together: a move between them changes nothing of the breach
        desk.run(sweep(HOT, WARM, text(t.hot)))
        assert not expect(desk, cold_required, held - cold_required, 0, ratio=scaled).breach
    replays(desk)


def test_breach_exactly_when_cold_is_below_cold_required(ledger):
    desk = sample(ledger, holdings={("CUS-A", "BTC"): "0.00000101"})  # held 101: cold_required 99
    for cold in range(102):
        t = expect(desk, cold, 0, 101 - cold)
        assert t.breach == (cold < 99)
        assert (t.cold_required, t.hot_allowance) == (99, 2)
        if cold < 101:
            desk.run(sweep(HOT, COLD, "0.00000001"))
    replays(desk)


def test_payouts_due_without_a_calendar_and_the_clamp_at_zero(ledger):
    desk = sample(ledger, holdings={("CUS-A", "BTC"): "0.00000101"})  # 10 smallest units of BTC a unit
    assert desk.basket().lines[0] == m.BasketLine(asset="BTC", quantity_per_unit=10)
    nine = desk.order(REDEEM, 9)
    assert nine.legs == (m.Leg(custodian_id="CUS-A", asset="BTC", quantity=90),)
    t = expect(desk, 0, 0, 101, due=90)
    assert (t.cold_required, t.hot_allowance, t.breach) == (9, 92, True)  # 99 - 90, 2 + 90
    desk.run(sweep(HOT, COLD, text(8)))
    assert expect(desk, 8, 0, 93, due=90).breach
    desk.run(sweep(HOT, COLD, text(1)))
    assert not expect(desk, 9, 0, 92, due=90).breach
    # neither a rejected redemption nor an accepted creation is a payout
    assert desk.order(REDEEM, 51).status == REJECTED  # above max_units_per_order
    assert desk.order(CREATE, 1).status == ACCEPTED
    expect(desk, 9, 0, 92, due=90)
    # one more unit: 100 due, more than ceil(0.98 x 101) = 99: cold_required is 0, not negative
    one = desk.order(REDEEM, 1)
    desk.run(sweep(COLD, HOT, text(9)))
    t = expect(desk, 0, 0, 101, due=100)
    assert (t.cold_required, t.hot_allowance, t.breach) == (0, 102, False)
    desk.cancel(one.order_id, "AP-1")
    assert expect(desk, 0, 0, 101, due=90).breach
    desk.run(sweep(HOT, COLD, text(9)))
    # settled: the 90 leave hot and are no longer due; held 11, ceil(10.78) = 11 required
    desk.settle(nine.order_id)
    t = expect(desk, 9, 0, 2)
    assert (t.cold_required, t.hot_allowance, t.breach) == (11, 0, True)
    replays(desk)


# == payouts_due against the next dealing day ============================================================
def test_payouts_due_counts_legs_settling_on_or_before_the_next_dealing_day(ledger):
    """Friday 2026-01-09 is a holiday of HK: from Thursday the next dealing day is the Monday after."""
    desk = sample(ledger, shares=10_000, holdings={("CUS-A", "BTC"): "100"}, max_price_age_seconds=AGE)
    # before the calendar: an order without a settlement_date is always due (1 BTC a unit)
    early = desk.order(REDEEM, 32)
    assert (early.status, early.settlement_date) == (ACCEPTED, "")
    on_calendar(desk, hk(MON, "09:00"), holidays=(FRI,))
    desk.now = hk(MON, "10:00")
    sizes = {}
    for days, n, settles in ((0, 1, MON), (1, 2, TUE), (2, 4, WED), (3, 8, THU), (4, 16, NEXT_MON)):
        desk.update(F1, redeem_settlement_days=days)
        order = desk.order(REDEEM, n)
        assert (order.status, order.dealing_date, order.settlement_date) == (ACCEPTED, MON, settles)
        sizes[settles] = btc(str(n))
    desk.run(sweep(HOT, COLD, "50"))
    held = btc("100")
    assert row(desk).reserved == btc("63")
    cold = hot = btc("50")

    def due(next_day: str) -> int:
        return btc("32") + sum(q for settles, q in sizes.items() if settles <= next_day)

    # (read time, the next dealing day of its local date)
    for at, next_day in (
        (hk(MON, "12:00"), TUE),  # Monday's (before) and Tuesday's (on) legs; Wednesday's (after) not
        (hk(TUE, "23:59:59.999"), WED),
        (hk(WED, "00:00"), THU),
        (hk(WED, "23:59:59.999"), THU),
        (hk(THU, "00:00"), NEXT_MON),  # a new local date (16:00 UTC on Wednesday) and a holiday after it
        (hk(FRI, "12:00"), NEXT_MON),  # on the holiday itself
        (hk(SUN, "23:59:59.999"), NEXT_MON),
        (hk(NEXT_MON, "00:00"), NEXT_TUE),
    ):
        required, allowance = figures(DEFAULT_RATIO, held, due(next_day))
        t = tiers(desk, at=at)
        assert (t.cold, t.warm, t.hot) == (cold, 0, hot)
        assert (t.cold_required, t.hot_allowance) == (required, allowance), (at, next_day)
        assert t.breach == (cold < required)
        # hot has been above the allowance at every record since NOW (the sample's AdjustHolding)
        assert t.idle == (hot > allowance)
    assert over_since(desk) == NOW
    # the crossing at local midnight, caused by time alone: 47 due on Wednesday, 63 from Thursday
    before, after = tiers(desk, at=hk(WED, "23:59:59.999")), tiers(desk, at=hk(THU, "00:00"))
    assert (before.cold_required, before.hot_allowance, before.breach, before.idle) == (
        btc("51"), btc("49"), True, True)
    assert (after.cold_required, after.hot_allowance, after.breach, after.idle) == (
        btc("35"), btc("65"), False, False)
    replays(desk)


def test_settling_a_due_redemption_takes_it_out_of_held_and_of_payouts_due(ledger):
    desk = sample(ledger, shares=10_000, holdings={("CUS-A", "BTC"): "100"}, max_price_age_seconds=AGE)
    on_calendar(desk, hk(MON, "09:00"), redeem_settlement_days=1)
    desk.now = hk(MON, "10:00")
    first = desk.order(REDEEM, 10)  # settles Tuesday: due on Monday already
    desk.update(F1, redeem_settlement_days=2)
    second = desk.order(REDEEM, 5)  # settles Wednesday: not due on Monday
    assert (first.settlement_date, second.settlement_date) == (TUE, WED)
    desk.run(sweep(HOT, COLD, "88"))
    t = expect(desk, btc("88"), 0, btc("12"), due=btc("10"))
    assert (t.cold_required, t.breach) == (btc("88"), False)
    desk.settle(first.order_id)  # leaves hot: 12 -> 2; held 90, due 0
    t = expect(desk, btc("88"), 0, btc("2"))
    assert (t.cold_required, t.hot_allowance, t.breach) == (btc("88.2"), btc("1.8"), True)
    t = expect(desk, btc("88"), 0, btc("2"), at=hk(TUE, "00:00"), due=btc("5"))  # Wednesday's is due now
    assert (t.cold_required, t.breach) == (btc("83.2"), False)
    replays(desk)


def test_a_closed_dealing_day_moves_payouts_due(ledger):
    """CloseDealingDay (a record of the calendar) moves settlement dates and the next dealing day alike."""
    desk = sample(ledger, shares=10_000, holdings={("CUS-A", "BTC"): "100"}, max_price_age_seconds=AGE)
    on_calendar(desk, hk(MON, "09:00"))
    desk.now = hk(MON, "10:00")
    a = desk.order(REDEEM, 3)
    desk.update(F1, redeem_settlement_days=3)
    b = desk.order(REDEEM, 5)
    assert (a.settlement_date, b.settlement_date) == (WED, THU)
    desk.now = hk(TUE, "12:00")
    desk.run(sweep(HOT, COLD, "92"))
    wednesday = hk(WED, "12:00")
    t = expect(desk, btc("92"), 0, btc("8"), at=wednesday, due=btc("8"))  # next: Thursday; both due
    assert (t.cold_required, t.breach) == (btc("90"), False)
    expect(desk, btc("92"), 0, btc("8"), due=btc("3"), idle=True)  # Tuesday: next Wednesday, A only
    desk.run(m.CloseDealingDay(calendar_id=HK, date=WED, reason="typhoon signal no. 8"))
    assert [dates for dates in ((desk.ledger.get_order(o.order_id).settlement_date) for o in (a, b))] == [THU, FRI]
    # Tuesday: the next dealing day is Thursday now, A's settlement date too; B settles Friday
    expect(desk, btc("92"), 0, btc("8"), due=btc("3"), idle=True)
    t = expect(desk, btc("92"), 0, btc("8"), at=wednesday, due=btc("3"), idle=True)
    assert (t.cold_required, t.breach) == (btc("95"), True)
    t = expect(desk, btc("92"), 0, btc("8"), at=hk(THU, "00:00"), due=btc("8"))  # next: Friday
    assert (t.cold_required, t.breach) == (btc("90"), False)
    replays(desk)


def test_a_breach_blocks_nothing(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.5"})
    capacity = desk.ledger.get_capacity("AP-1", F1, desk.now)
    checked = desk.check(REDEEM, 5, "probe")
    desk.run(sweep(HOT, COLD, "10"))
    desk.run(sweep(HOT, COLD, "100", asset="ETH"))
    assert not tiers(desk).breach and not tiers(desk, asset="ETH").breach
    assert desk.ledger.get_capacity("AP-1", F1, desk.now) == capacity
    assert desk.check(REDEEM, 5, "probe") == checked
    desk.run(sweep(COLD, HOT, "10"))
    assert tiers(desk).breach
    assert desk.order(REDEEM, 2).status == ACCEPTED
    desk.stake("CUS-A", "BTC", "1")
    desk.adjust("CUS-A", "BTC", "-1")
    expect(desk, 0, 0, btc("8"), due=btc("2"), idle=False)
    replays(desk)


# == time moves the figures: a released lot ================================================================
def test_a_released_lot_counts_in_hot_at_its_release_time_and_can_start_a_breach(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.5"}, holdings={("CUS-A", "BTC"): "101",
                                                                     ("CUS-A", "ETH"): "100"})
    desk.run(sweep(HOT, COLD, "98"))
    desk.stake("CUS-A", "BTC", "1")  # hot 3 -> 2
    desk.unstake("CUS-A", "BTC", "1")
    release = desk.now + HOUR
    # held 100: cold 98 = ceil(98.00), hot 2 = floor(2.00)
    t = expect(desk, btc("98"), 0, btc("2"), at=release - 1)
    assert (t.cold_required, t.hot_allowance, t.breach) == (btc("98"), btc("2"), False)
    h = holding_state(desk, at=release - 1)
    assert (h.available, [tuple(lot) for lot in h.lots], h.warm, h.hot) == (btc("100"), [(release, btc("1"))], 0,
                                                                            btc("2"))
    # held 101 from its release time: ceil(98.98 BTC) required, the lot in hot
    t = expect(desk, btc("98"), 0, btc("3"), at=release)
    assert (t.cold_required, t.hot_allowance, t.breach) == (btc("98.98"), btc("2.02"), True)
    h = holding_state(desk, at=release)
    assert (h.available, list(h.lots), h.warm, h.hot) == (btc("101"), [], 0, btc("3"))
    assert expect(desk, btc("98"), 0, btc("3"), at=release + 30 * DAY_MS).breach
    replays(desk, release - 1)
    replays(desk, release)
    # a negative adjustment after the release takes the released coins out of hot
    desk.now = release + 1
    desk.adjust("CUS-A", "BTC", "-1.5")
    expect(desk, btc("98"), 0, btc("1.5"))
    replays(desk)


# == idle ================================================================================================
def test_idle_follows_over_since_and_max_hot_seconds(ledger):
    desk = sample(ledger)  # at NOW: 10 BTC and 100 ETH in hot, far above the allowance
    assert over_since(desk) == NOW and over_since(desk, asset="ETH") == NOW
    day = 86_400_000
    assert not tiers(desk, at=NOW).idle
    assert not tiers(desk, at=NOW + day).idle  # t - over_since = max_hot_seconds: not beyond it
    assert tiers(desk, at=NOW + day + 1).idle
    # a policy record of the custodian keeps over_since while hot stays over; the read uses the policy now
    t1 = NOW + 1_000
    desk.run(policy("0.98", 3_600), now=t1)
    assert over_since(desk, at=t1) == NOW
    assert not tiers(desk, at=NOW + HOUR).idle
    assert tiers(desk, at=NOW + HOUR + 1).idle
    # a sweep down to the allowance clears it; ETH, still over, keeps its own
    t2 = NOW + 2 * HOUR
    desk.now = t2
    desk.run(sweep(HOT, COLD, "9.8"))
    assert (over_since(desk), over_since(desk, asset="ETH")) == (None, NOW)
    expect(desk, btc("9.8"), 0, btc("0.2"), at=t2 + 30 * day)
    assert tiers(desk, asset="ETH", at=t2).idle
    # one smallest unit over: held 10.00000001, hot 20,000,001 > floor(20,000,000.02)
    t3 = t2 + 5_000
    desk.now = t3
    desk.adjust("CUS-A", "BTC", "0.00000001")
    assert over_since(desk) == t3
    t = expect(desk, btc("9.8"), 0, btc("0.2") + 1, at=t3 + HOUR)
    assert (t.cold_required, t.hot_allowance, t.breach) == (980_000_001, 20_000_000, True)
    expect(desk, btc("9.8"), 0, btc("0.2") + 1, at=t3 + HOUR + 1, idle=True)
    # later records keep it while hot stays over: of the fund, and of nothing of the fund
    desk.now = t3 + 60_000
    desk.cash("1")
    desk.now = t3 + 120_000
    desk.run(m.RegisterAsset(symbol="DOGE", decimals=8))
    assert over_since(desk) == t3
    # max_hot_seconds 0: idle from the first ms after over_since
    t6 = t3 + 180_000
    desk.run(policy("0.98", 0), now=t6)
    assert over_since(desk, at=t6) == t3
    assert tiers(desk, at=t6).idle
    # idle is about hot alone: hot = the allowance with 1 in warm clears it; cold is still 1 short (breach)
    t7 = t6 + 1_000
    desk.now = t7
    desk.run(sweep(HOT, WARM, "0.00000001"))
    assert over_since(desk) is None
    t = expect(desk, btc("9.8"), 1, btc("0.2"), at=t7 + day, ratio=DEFAULT_RATIO)
    assert (t.breach, t.idle) == (True, False)
    t8 = t7 + 1_000
    desk.now = t8
    desk.run(sweep(WARM, HOT, "0.00000001"))
    assert over_since(desk) == t8
    assert not tiers(desk, at=t8).idle  # t - over_since = 0 = max_hot_seconds
    assert tiers(desk, at=t8 + 1).idle
    # a ratio change is a record of the custodian's policy: every holding there is evaluated
    t9 = t8 + 1_000
    desk.run(policy("0", 0), now=t9)
    assert (over_since(desk, at=t9), over_since(desk, asset="ETH", at=t9)) == (None, None)
    assert not tiers(desk, at=t9 + day).idle
    t10 = t9 + 1_000
    desk.run(policy("0.98", 0), now=t10)
    assert (over_since(desk, at=t10), over_since(desk, asset="ETH", at=t10)) == (t10, t10)
    assert not tiers(desk, at=t10).idle
    assert tiers(desk, at=t10 + 1).idle
    replays(desk, t10 + 1)


def test_a_lot_released_after_the_last_record_is_not_idle_until_a_record_sees_it(ledger):
    desk = sample(ledger, btc_terms={"staking_cap": "0.5"})
    desk.run(sweep(HOT, COLD, "9.8"))  # hot 0.2 = the allowance
    assert over_since(desk) is None
    desk.stake("CUS-A", "BTC", "1")  # hot 0.2, then 0.8 of cold
    expect(desk, btc("9"), 0, 0)
    desk.unstake("CUS-A", "BTC", "1")
    release = desk.now + HOUR
    # from its release the lot is hot: 1 BTC > floor(0.02 x 10 BTC); cold 9 < 9.8: a breach by time alone
    later = release + 10 * DAY_MS
    t = expect(desk, btc("9"), 0, btc("1"), at=later)
    assert (t.hot > t.hot_allowance, t.breach, t.idle) == (True, True, False)  # no record saw it over
    assert not expect(desk, btc("9"), 0, 0, at=release - 1).breach  # held 9: 8.82 required
    # a record that touches nothing of the fund leaves over_since as it was
    desk.now = release + DAY_MS
    desk.run(m.RegisterAsset(symbol="DOGE", decimals=8))
    assert over_since(desk) is None
    assert not tiers(desk, at=later).idle
    # a record of the fund (another holding's) evaluates every holding of it at its time
    t = release + 2 * DAY_MS
    desk.now = t
    desk.adjust("CUS-A", "ETH", "1")
    assert over_since(desk) == t
    assert not tiers(desk, at=t + 86_400_000).idle
    assert tiers(desk, at=t + 86_400_001).idle
    replays(desk, t + 86_400_001)


# == the breaches of a strike ==============================================================================
@pytest.mark.parametrize("fee_payment", [CASH, IN_KIND])
def test_strike_records_the_breaches_after_its_in_kind_move(ledger, fee_payment):
    desk = fee_desk(ledger, fee_payment, holdings={("CUS-A", "BTC"): "10", ("CUS-A", "ETH"): "100",
                                                   ("CUS-B", "BTC"): "1"})
    desk.run(sweep(HOT, COLD, text(btc("9.8") - 1)))  # CUS-A BTC: one smallest unit short of 9.8
    desk.run(sweep(HOT, WARM, "1", custodian="CUS-B"))  # CUS-B BTC: all warm, none cold
    at = hk(MON, "16:00")
    assert [(h.custodian_id, h.asset, h.tiers.breach) for h in desk.ledger.get_holdings(F1, at).holdings] == [
        ("CUS-A", "BTC", True), ("CUS-A", "ETH", True), ("CUS-B", "BTC", True)]
    desk.now = at
    result = desk.run(strike_cmd(MON, OFFICIAL, at))
    others = (m.StorageBreach(custodian_id="CUS-A", asset="ETH", cold=0, cold_required=eth("98")),
              m.StorageBreach(custodian_id="CUS-B", asset="BTC", cold=0, cold_required=btc("0.98")))
    if fee_payment == CASH:
        assert result.nav.storage_breaches == (
            m.StorageBreach(custodian_id="CUS-A", asset="BTC", cold=btc("9.8") - 1, cold_required=btc("9.8")),
            *others)
    else:
        # the fee leaves CUS-A's hot: held 10 BTC - taken, ceil(0.98 x held) <= cold: no longer in breach
        taken = next(e for e in reversed(desk.events) if isinstance(e, m.NavStruck)).fee_taken
        assert taken == expected_fee_taken(btc("11"), eth("100")) > 1
        t = expect(desk, btc("9.8") - 1, 0, btc("0.2") + 1 - taken)
        assert not t.breach
        assert result.nav.storage_breaches == others
    assert desk.ledger.get_official_nav(F1, MON) == result.nav
    replays(desk)


def test_strike_without_breaches_records_none(ledger):
    desk = fee_desk(ledger, CASH)
    desk.run(sweep(HOT, COLD, "9.8"))
    desk.run(sweep(HOT, COLD, "98", asset="ETH"))
    desk.now = hk(MON, "16:00")
    assert desk.run(strike_cmd(MON, OFFICIAL, desk.now)).nav.storage_breaches == ()
    replays(desk)


# == the state and its replay ================================================================================
def test_state_and_replay_carry_the_tiers(ledger):
    desk = sample(ledger)
    desk.run(sweep(HOT, COLD, "7"))
    desk.run(sweep(HOT, WARM, "2.5"))
    desk.run(sweep(HOT, WARM, "40", asset="ETH"))
    h = holding_state(desk)
    assert (h.available, h.reserved, h.warm, h.hot, h.over_since) == (btc("10"), 0, btc("2.5"), btc("0.5"), NOW)
    e = holding_state(desk, asset="ETH")
    assert (e.warm, e.hot, e.over_since) == (eth("40"), eth("60"), NOW)
    replays(desk)
    # a fresh ledger of the same kind applying the events answers the same reads
    fresh = type(desk.ledger)()
    for event in desk.events:
        fresh.apply(event)
    assert fresh.get_holdings(F1, desk.now) == desk.ledger.get_holdings(F1, desk.now)
    assert fresh.get_holdings(F1, desk.now + 2 * DAY_MS) == desk.ledger.get_holdings(F1, desk.now + 2 * DAY_MS)
