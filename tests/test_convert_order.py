"""An order as the API sends it (convert.order, convert.order_fields inside a reply): every field of the
model reaches the reply, formatted as SPEC §3 writes figures, whether the order's lists are empty or full;
the expected messages are written out here field by field, not built by the code under test."""

from __future__ import annotations

import pytest

from etf_engine import model as M
from etf_engine.api import convert
from etf_engine.v1 import engine_pb2 as pb

pytestmark = pytest.mark.unit

DECIMALS = {"BTC": 8, "ETH": 18}
BASKET = M.Basket(fund_id="F-1", creation_unit=100, lines=[M.BasketLine(asset="BTC", quantity_per_unit=150_000_000)],
                  cash_component=12_345, nav_per_share=1_234_567, nav_per_unit=123_456_700, shares_outstanding=1_000,
                  as_of=1_767_225_600_000, stale=False, accrued_fees=5)
EXPECTED_BASKET = pb.Basket(fund_id="F-1", creation_unit=100,
                            lines=[pb.BasketLine(asset="BTC", quantity_per_unit="1.5")], cash_component="123.45",
                            nav_per_share="123.4567", nav_per_unit="1234567.00", shares_outstanding=1_000,
                            as_of=1_767_225_600_000, stale=False, accrued_fees="0.05")


def new_order(**fields: object) -> M.Order:
    base = dict(order_id="ORD-00000001", client_order_id="c-1", participant_id="AP-1", fund_id="F-1",
                side=M.CREATE, units=1, status=M.ACCEPTED, reject_reason="", basket=BASKET,
                deliverables=(M.Line(asset="BTC", quantity=150_000_000), M.Line(asset="ETH", quantity=10**18 + 5)),
                cash_amount=12_345, fee=0, legs=(), created_at=1, updated_at=2)
    return M.Order(**{**base, **fields})


# An order alone (GetOrder's reply makes it from its fields too), and inside replies: by the generic
# builder (SubmitOrder's, SettleOrder's) and from its fields in a list (ListOrders).
WAYS = {
    "alone": lambda o: convert.order(o, DECIMALS),
    "in a reply": lambda o: convert.reply(pb.SubmitOrderReply, o, DECIMALS).order,
    "in a list": lambda o: pb.ListOrdersReply(orders=[convert.order_fields(o, DECIMALS)]).orders[0],
}


@pytest.mark.parametrize("way", WAYS)
def test_an_order_without_lists_sends_none(way: str) -> None:
    reply = WAYS[way](new_order())
    assert reply == pb.Order(
        order_id="ORD-00000001", client_order_id="c-1", participant_id="AP-1", fund_id="F-1", side=pb.Side.CREATE,
        units=1, status=pb.OrderStatus.ACCEPTED, basket=EXPECTED_BASKET,
        deliverables=[pb.Line(asset="BTC", quantity="1.5"), pb.Line(asset="ETH", quantity="1.000000000000000005")],
        cash_amount="123.45", fee="0.00", created_at=1, updated_at=2, priced=True)
    assert not reply.legs and not reply.deliveries and not reply.payouts and not reply.excess
    assert not reply.payout_wallet_ids


@pytest.mark.parametrize("way", WAYS)
def test_every_field_of_a_full_order_reaches_the_reply(way: str) -> None:
    order = new_order(
        side=M.REDEEM, status=M.SETTLED, cash_amount=None, fee=250,
        legs=(M.Leg(custodian_id="C-1", asset="BTC", quantity=100_000_000, destination_address="bc1q"),
              M.Leg(custodian_id="C-2", asset="ETH", quantity=2 * 10**18)),
        dealing_date="2026-01-02", settlement_date="2026-01-05", priced=False, official_nav_per_share=98_765,
        payout_wallet_ids=("WAL-00000001", "WAL-00000002"),
        deliveries=(M.Delivery(asset="BTC", quantity=50_000_000, tx_hash="tx-1", from_address="bc1a",
                               confirmations=3, recorded_at=7),),
        payouts=(M.Payout(custodian_id="C-1", asset="BTC", quantity=25_000_000, tx_hash="tx-2", recorded_at=8),),
        excess=(M.Line(asset="ETH", quantity=1),), overdue=True, cancel_reason="because")
    reply = WAYS[way](order)
    assert reply == pb.Order(
        order_id="ORD-00000001", client_order_id="c-1", participant_id="AP-1", fund_id="F-1", side=pb.Side.REDEEM,
        units=1, status=pb.OrderStatus.SETTLED, basket=EXPECTED_BASKET,
        deliverables=[pb.Line(asset="BTC", quantity="1.5"), pb.Line(asset="ETH", quantity="1.000000000000000005")],
        cash_amount="", fee="2.50",
        legs=[pb.Leg(custodian_id="C-1", asset="BTC", quantity="1", destination_address="bc1q"),
              pb.Leg(custodian_id="C-2", asset="ETH", quantity="2")],
        created_at=1, updated_at=2, dealing_date="2026-01-02", settlement_date="2026-01-05", priced=False,
        official_nav_per_share="9.8765", payout_wallet_ids=["WAL-00000001", "WAL-00000002"],
        deliveries=[pb.Delivery(asset="BTC", quantity="0.5", tx_hash="tx-1", from_address="bc1a", confirmations=3,
                                recorded_at=7)],
        payouts=[pb.Payout(custodian_id="C-1", asset="BTC", quantity="0.25", tx_hash="tx-2", recorded_at=8)],
        excess=[pb.Line(asset="ETH", quantity="0.000000000000000001")], overdue=True, cancel_reason="because")


def test_shared_lines_are_never_changed_through_a_reply() -> None:
    """Orders of one basket share their deliverables' line messages (convert._line): a reply holds copies."""
    first = convert.order(new_order(), DECIMALS)
    first.deliverables[0].quantity = "999"
    second = convert.order(new_order(order_id="ORD-00000002"), DECIMALS)
    assert second.deliverables[0].quantity == "1.5"
