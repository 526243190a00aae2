"""Hand-computed checks of the Fraction reference ledger (the oracle the Cython core is tested against)."""

from __future__ import annotations

from typing import Any

import pytest

from etf_engine import model as m
from etf_engine.errors import ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND, EngineError
from etf_engine.reference import ReferenceLedger

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000  # ms
ETH_WEI = 1_234_567_891_234_567_891_234_567  # 1,234,567.891234567891234567 ETH: more than 10^24 wei


class Desk:
    """A ledger plus every event it produced, for replay."""

    def __init__(self) -> None:
        self.ledger = ReferenceLedger()
        self.events: list[m.Event] = []

    def run(self, command: Any, now: int = T0) -> Any:
        result, events = self.ledger.execute(command, now)
        self.events += events
        return result

    def order(self, side: str, units: int, coid: str, participant: str = "AP2", now: int = T0) -> m.Order:
        request = m.OrderRequest(fund_id="FUND1", side=side, units=units, client_order_id=coid)
        return self.run(m.SubmitOrder(participant_id=participant, request=request), now)

    def update_asset(self, asset: str, **terms: Any) -> None:
        self.run(m.UpdateFund(fund_id="FUND1", assets=[m.FundAssetSpec(asset=asset, **terms)]))


@pytest.fixture
def desk() -> Desk:
    """FUND1 (USD, creation unit 50,000, 1,000,000 shares = 20 units):
    BTC 14.5 at HK1 + 0.5 at HK2 = 15 BTC, ETH 1,234,567.891234567891234567 at HK1, cash 12,345.70;
    BTC 65,432.10, ETH 3,456.78901234. AP1 may deal 10 units per order, 20 a day; AP2 100 / 1000."""
    d = Desk()
    d.run(m.RegisterAsset(symbol="BTC", decimals=8))
    d.run(m.RegisterAsset(symbol="ETH", decimals=18))
    for cid in ("HK1", "HK2"):
        d.run(m.RegisterCustodian(custodian_id=cid, name=cid, licence_number="L-" + cid,
                                  licence_status=m.ACTIVE, licence_expires_at=2_000_000_000))
    for pid, per_order, per_day in (("AP1", 10, 20), ("AP2", 100, 1000)):
        d.run(m.RegisterParticipant(participant_id=pid, name=pid, eligible_fund_ids=["FUND1"],
                                    max_units_per_order=per_order, max_units_per_day=per_day))
    d.run(m.CreateFund(fund_id="FUND1", name="Fund one", base_currency="USD", creation_unit=50_000,
                       creation_custodian_id="HK1", custodian_priority=["HK2", "HK1"],
                       assets=[m.FundAssetSpec(asset="ETH"), m.FundAssetSpec(asset="BTC")],
                       initial_shares_outstanding=1_000_000))
    d.run(m.AdjustHolding(fund_id="FUND1", custodian_id="HK1", asset="BTC", delta="14.5"))
    d.run(m.AdjustHolding(fund_id="FUND1", custodian_id="HK2", asset="BTC", delta="0.5"))
    d.run(m.AdjustHolding(fund_id="FUND1", custodian_id="HK1", asset="ETH", delta="1234567.891234567891234567"))
    d.run(m.AdjustCash(fund_id="FUND1", delta="12345.70"))
    d.run(m.PublishPrices(ticks=[m.PriceTick(asset="BTC", currency="USD", price="65432.10", as_of_unix_ms=T0),
                                 m.PriceTick(asset="ETH", currency="USD", price="3456.78901234", as_of_unix_ms=T0)]))
    return d


def test_nav_and_basket_of_a_two_asset_fund(desk: Desk) -> None:
    # BTC: 15 x 65,432.10                                      =       981,481.50
    # ETH: 1,234,567.891234567891234567 x 3,456.78901234       = 4,267,640,721.40741848400741540319755678
    # NAV = 981,481.50 + 4,267,640,721.4074184840... + 12,345.70 = 4,268,634,548.6074184840... -> 4,268,634,548.61
    # per share: / 1,000,000 = 4,268.63454860...  -> 4,268.6345
    nav = desk.ledger.get_nav("FUND1", T0)
    assert (nav.nav, nav.nav_per_share, nav.cash, nav.as_of, nav.stale) == (
        426_863_454_861, 42_686_345, 1_234_570, T0, False)
    assert [(ln.asset, ln.quantity, ln.price, ln.value) for ln in nav.lines] == [
        ("BTC", 1_500_000_000, 6_543_210_000_000, 98_148_150),
        ("ETH", ETH_WEI, 345_678_901_234, 426_764_072_141),
    ]
    assert ETH_WEI > 10**24
    # U / S = 50,000 / 1,000,000 = 1/20
    # BTC qpu = floor(1,500,000,000 / 20) = 75,000,000 sats (0.75 BTC), exact
    # ETH qpu = floor(ETH_WEI / 20) = floor(61,728,394,561,728,394,561,728.35) = 61,728,394,561,728,394,561,728
    # NAV x U/S = 213,431,727.43037...  -> nav_per_unit 213,431,727.43
    # cash component = NAV/20 - 0.75 x 65,432.10 - 61,728.394561728394561728 x 3,456.78901234
    #   BTC terms cancel (0.75 x 65,432.10 = 15 x 65,432.10 / 20); cash/20 = 617.285;
    #   ETH leftover 0.35e-18 ETH x 3,456.78901234 = 1.2099e-15
    #   = 617.285000000000001209876... -> 617.29 (half-even on the truncated 617.285 would give 617.28)
    basket = desk.ledger.get_basket("FUND1", T0)
    assert [(ln.asset, ln.quantity_per_unit) for ln in basket.lines] == [
        ("BTC", 75_000_000), ("ETH", 61_728_394_561_728_394_561_728)]
    assert (basket.cash_component, basket.nav_per_share, basket.nav_per_unit) == (61_729, 42_686_345, 21_343_172_743)
    assert (basket.creation_unit, basket.shares_outstanding, basket.stale) == (50_000, 1_000_000, False)


def test_seed_basket_and_missing_price() -> None:
    d = Desk()
    d.run(m.RegisterAsset(symbol="SOL", decimals=9))
    d.run(m.RegisterCustodian(custodian_id="C1", name="c", licence_number="n", licence_status=m.ACTIVE,
                              licence_expires_at=2_000_000_000))
    d.run(m.CreateFund(fund_id="F", name="f", base_currency="HKD", creation_unit=100, creation_custodian_id="C1",
                       custodian_priority=[], seed_cash_per_unit="-0.05",
                       assets=[m.FundAssetSpec(asset="SOL", seed_quantity_per_unit="2.5")]))
    basket = d.ledger.get_basket("F", T0)  # no SOL/HKD price yet: quantities and the seed cash, which needs none
    assert (basket.lines[0].quantity_per_unit, basket.cash_component, basket.nav_per_unit, basket.stale) == (
        2_500_000_000, -5, None, True)
    d.run(m.PublishPrices(ticks=[m.PriceTick(asset="SOL", currency="HKD", price="1234.567", as_of_unix_ms=T0)]))
    # seed value = 2.5 x 1,234.567 - 0.05 = 3,086.3675 -> 3,086.37 per unit; no shares: no nav_per_share
    basket = d.ledger.get_basket("F", T0)
    assert (basket.cash_component, basket.nav_per_unit, basket.nav_per_share, basket.stale) == (
        -5, 308_637, None, False)
    nav = d.ledger.get_nav("F", T0)
    assert (nav.nav, nav.nav_per_share) == (0, None)


def test_redemption_takes_legs_in_priority_order_then_settles(desk: Desk) -> None:
    order = desk.order(m.REDEEM, 1, "r1")
    assert (order.order_id, order.status, order.reject_reason, order.fee) == ("ORD-00000001", m.ACCEPTED, "", 0)
    # 0.75 BTC: HK2 (first in priority) gives all its 0.5, HK1 the remaining 0.25; ETH only at HK1
    assert [(lg.custodian_id, lg.asset, lg.quantity) for lg in order.legs] == [
        ("HK2", "BTC", 50_000_000), ("HK1", "BTC", 25_000_000), ("HK1", "ETH", 61_728_394_561_728_394_561_728)]
    assert order.cash_amount == 61_729
    holdings = desk.ledger.get_holdings("FUND1", T0).holdings
    rows = {(r.custodian_id, r.asset): (r.available, r.reserved) for r in holdings}
    assert rows[("HK2", "BTC")] == (0, 50_000_000)
    assert rows[("HK1", "BTC")] == (1_425_000_000, 25_000_000)
    assert desk.ledger.get_nav("FUND1", T0).nav == 426_863_454_861  # reserved still counts until settlement

    settled = desk.run(m.SettleOrder(order_id=order.order_id), T0 + 1)
    assert (settled.status, settled.updated_at, settled.created_at) == (m.SETTLED, T0 + 1, T0)
    nav = desk.ledger.get_nav("FUND1", T0 + 1)
    # shares 1,000,000 - 50,000; cash 12,345.70 - 617.29 = 11,728.41
    assert (nav.shares_outstanding, nav.cash) == (950_000, 1_172_841)
    assert [ln.quantity for ln in nav.lines] == [1_425_000_000, ETH_WEI - 61_728_394_561_728_394_561_728]
    with pytest.raises(EngineError) as err:
        desk.run(m.SettleOrder(order_id=order.order_id))
    assert err.value.code == FAILED_PRECONDITION


def _suspend(d: Desk) -> None:
    d.run(m.UpdateFund(fund_id="FUND1", dealing_status=m.SUSPENDED))


def _fill_the_day(d: Desk) -> None:
    assert d.order(m.CREATE, 10, "c1", "AP1").status == m.ACCEPTED
    assert d.order(m.CREATE, 10, "c2", "AP1").status == m.ACCEPTED  # 20 = max_units_per_day


def _revoke_hk1(d: Desk) -> None:
    d.run(m.SetCustodianLicence(custodian_id="HK1", licence_status=m.REVOKED, licence_expires_at=2_000_000_000))


def _suspend_hk2(d: Desk) -> None:  # 0.5 BTC at HK2 no longer liquid: liquid BTC 14.5 = 19.33 units
    d.run(m.SetCustodianLicence(custodian_id="HK2", licence_status=m.SUSPENDED, licence_expires_at=2_000_000_000))


def _stake_under_cap(d: Desk) -> None:
    # cap 10%: 1 BTC staked; redeeming n units needs 1 <= 0.10 x (15 - 0.75 n): n <= 6
    d.update_asset("BTC", staking_cap="0.10")
    d.run(m.Stake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="1"))


def _stake_with_buffer(d: Desk) -> None:
    # 5 BTC staked, buffer 50%: 10 - 0.75 n >= 0.5 x (15 - 0.75 n) holds for n <= 6
    d.update_asset("BTC", staking_cap="1")
    d.run(m.Stake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="5"))
    d.update_asset("BTC", staking_cap="1", liquidity_buffer="0.5")


@pytest.mark.parametrize(("setup", "side", "accepted", "rejected", "reason", "participant", "now"), [
    (_suspend, m.CREATE, None, 1, m.FUND_SUSPENDED, "AP1", T0),
    (None, m.CREATE, 10, 11, m.ORDER_LIMIT_EXCEEDED, "AP1", T0),
    (_fill_the_day, m.REDEEM, None, 1, m.DAILY_LIMIT_EXCEEDED, "AP1", T0),
    (None, m.CREATE, None, 1, m.STALE_PRICE, "AP1", T0 + 60_001),  # max age 60 s
    (_revoke_hk1, m.CREATE, None, 1, m.CUSTODIAN_NOT_LICENSED, "AP1", T0),
    (None, m.REDEEM, 20, 21, m.INSUFFICIENT_SHARES, "AP2", T0),
    (_suspend_hk2, m.REDEEM, 19, 20, m.INSUFFICIENT_LIQUID_BALANCE, "AP2", T0),
    (_stake_under_cap, m.REDEEM, 6, 7, m.STAKING_CAP_BREACH, "AP2", T0),
    (_stake_with_buffer, m.REDEEM, 6, 7, m.LIQUIDITY_BUFFER_BREACH, "AP2", T0),
])
def test_one_rejection_per_reason(desk: Desk, setup: Any, side: str, accepted: int | None, rejected: int,
                                  reason: str, participant: str, now: int) -> None:
    if setup:
        setup(desk)
    request = m.OrderRequest(fund_id="FUND1", side=side, units=rejected, client_order_id="x")
    if accepted is not None:  # the boundary: one unit fewer passes
        ok = desk.ledger.check_order(participant, m.OrderRequest(
            fund_id="FUND1", side=side, units=accepted, client_order_id="y"), now)
        assert (ok.status, ok.order_id) == (m.ACCEPTED, "")
    order = desk.order(side, rejected, "x", participant, now)
    assert (order.status, order.reject_reason, order.fee, order.legs) == (m.REJECTED, reason, 0, ())
    assert desk.ledger.check_order(participant, request, now) == m.Order(**{
        **{f: getattr(order, f) for f in order.__struct_fields__}, "order_id": ""})
    capacity = getattr(desk.ledger.get_capacity(participant, "FUND1", now), side.lower())
    assert capacity == m.CapacitySide(units=accepted or 0, binding_reason=reason)


def test_staking_instructions_and_unbonding(desk: Desk) -> None:
    def refused(command: Any) -> str:
        with pytest.raises(EngineError) as err:
            desk.run(command)
        assert err.value.code == FAILED_PRECONDITION
        return err.value.message.split(":")[0]

    stake = m.Stake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="0.00000001")
    assert refused(stake) == m.STAKING_CAP_BREACH  # cap 0
    desk.update_asset("BTC", staking_cap="0.30", unbonding_seconds=10)
    assert refused(m.Stake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="4.50000001")) == (
        m.STAKING_CAP_BREACH)  # 0.30 x 15 = 4.5
    assert refused(m.Unstake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="1")) == (
        m.INSUFFICIENT_STAKED_BALANCE)
    desk.run(m.Stake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="4.5"))
    desk.run(m.Unstake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="2"), T0 + 1_000)

    def hk1_btc(now: int) -> tuple[int, int, int]:
        row = next(r for r in desk.ledger.get_holdings("FUND1", now).holdings if (r.custodian_id, r.asset) == (
            "HK1", "BTC"))
        return row.available, row.staked, row.unbonding

    assert hk1_btc(T0 + 10_999) == (1_000_000_000, 250_000_000, 200_000_000)
    assert hk1_btc(T0 + 11_000) == (1_200_000_000, 250_000_000, 0)
    with pytest.raises(EngineError) as err:
        desk.run(m.Stake(fund_id="FUND1", custodian_id="HK1", asset="DOGE", quantity="1"))
    assert (err.value.code, err.value.message.split(":")[0]) == (INVALID_ARGUMENT, "asset")


def test_idempotency_and_batches(desk: Desk) -> None:
    first = desk.order(m.CREATE, 2, "same")
    assert desk.order(m.CREATE, 2, "same") == first
    seq = desk.ledger.next_order_seq
    with pytest.raises(EngineError) as err:
        desk.order(m.CREATE, 3, "same")
    assert err.value.code == ALREADY_EXISTS

    def batch(*items: tuple[str, int, str]) -> Any:
        return desk.run(m.SubmitOrders(participant_id="AP2", requests=[
            m.OrderRequest(fund_id=f, side=m.CREATE, units=u, client_order_id=c) for f, u, c in items]))

    before = desk.ledger.state(T0)
    for items, code, index in [
        ((("FUND1", 1, "b1"), ("FUND1", 2, "b1")), ALREADY_EXISTS, 1),
        ((("FUND1", 1, "b1"), ("NOPE", 1, "b2")), NOT_FOUND, 1),
        ((("FUND1", 0, "b1"),), INVALID_ARGUMENT, 0),
    ]:
        with pytest.raises(EngineError) as err:
            batch(*items)
        assert (err.value.code, err.value.message.startswith(f"requests[{index}]")) == (code, True)
    assert desk.ledger.state(T0) == before
    orders = batch(("FUND1", 1, "b1"), ("FUND1", 1, "b1"), ("FUND1", 2, "same"))
    assert [o.order_id for o in orders] == [f"ORD-{seq:08d}", f"ORD-{seq:08d}", first.order_id]


def test_replay_rebuilds_the_state(desk: Desk) -> None:
    desk.update_asset("BTC", staking_cap="0.5", unbonding_seconds=30)
    desk.run(m.Stake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="3"))
    desk.run(m.Unstake(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="1"))
    desk.run(m.RecordStakingReward(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="0.01"))
    desk.run(m.RecordSlashing(fund_id="FUND1", custodian_id="HK1", asset="BTC", quantity="0.02"))
    create = desk.order(m.CREATE, 3, "c")
    redeem = desk.order(m.REDEEM, 2, "r")
    desk.order(m.REDEEM, 200, "too-many")
    desk.run(m.SettleOrder(order_id=create.order_id), T0 + 5)
    desk.run(m.CancelOrder(order_id=redeem.order_id, participant_id="AP2"), T0 + 6)
    desk.run(m.PublishPrices(ticks=[m.PriceTick(asset="BTC", currency="USD", price="70000", as_of_unix_ms=T0 + 7),
                                    m.PriceTick(asset="BTC", currency="USD", price="1", as_of_unix_ms=T0)]), T0 + 7)
    replayed = ReferenceLedger()
    for event in desk.events:
        replayed.apply(event)
    for now in (T0 + 7, T0 + 30_000, T0 + 60_000):  # before and after the unbonding lot matures
        assert replayed.state(now) == desk.ledger.state(now)
        assert replayed.get_nav("FUND1", now) == desk.ledger.get_nav("FUND1", now)
    assert desk.ledger.state(T0 + 7).funds[0].holdings[0].lots == [(T0 + 30_000, 100_000_000)]
    assert desk.ledger.state(T0 + 30_000).funds[0].holdings[0].lots == []
