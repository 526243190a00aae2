"""Wallets, deliveries and payouts over the wire (SPEC §14, §16): the real server on loopback.

The sample fund F1 (BTC and ETH, creation unit 50,000 shares) is switched to ``require_delivery``; AP-1's
wallets are registered by the issuer principal "ops" and approved by "ops-2" (four eyes). Every refusal
is followed by a comparison of the whole canonical state: bad input changes nothing. The audit trail
is read back from the journal's own table with sqlite3, as an auditor would.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from test_service import FUND, Clock, Desk, config, load_sample, refused

from etf_engine import calendar
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, FundAssetTerms
from etf_engine.journal.sqlite import DB_NAME
from etf_engine.v1 import engine_pb2 as pb

BTC_WALLET = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
ETH_WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
AP2_BTC_WALLET = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
Code = grpc.StatusCode


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with BackgroundServer(config(data_dir=tmp_path, test_clock=True), clock=Clock()) as server:
        d = Desk(server, Clock())
        load_sample(d.issuer)
        d.issuer.update_fund(FUND, require_delivery=True)
        try:
            yield d
        finally:
            d.close()


def unchanged(desk: Desk, call: Callable[[], object], code: grpc.StatusCode) -> str:
    before = desk.state()
    details = refused(call, code)
    assert desk.state() == before
    return details


def approved(desk: Desk, participant_id: str, asset: str, address: str) -> pb.Wallet:
    wallet = desk.issuer.register_wallet(participant_id, asset, address, "treasury")
    return desk.clients["issuer2"].approve_wallet(wallet.wallet_id)


def journal_rows(data_dir: Path) -> list[dict]:
    with sqlite3.connect(data_dir / DB_NAME) as db:
        return [json.loads(body) for (body,) in db.execute("SELECT body FROM events ORDER BY seq")]


def test_four_eyes_and_the_wallet_lifecycle(desk: Desk) -> None:
    issuer, second = desk.issuer, desk.clients["issuer2"]
    wallet = issuer.register_wallet("AP-1", "BTC", BTC_WALLET, "cold store")
    assert (wallet.wallet_id, wallet.status, wallet.registered_by, wallet.approved_by) == (
        "WAL-00000001", pb.WalletStatus.PENDING, "ops", "")
    details = unchanged(desk, lambda: issuer.approve_wallet(wallet.wallet_id), Code.PERMISSION_DENIED)
    assert "four eyes" in details
    done = second.approve_wallet(wallet.wallet_id)
    assert (done.status, done.registered_by, done.approved_by) == (pb.WalletStatus.APPROVED, "ops", "ops-2")
    assert unchanged(desk, lambda: issuer.approve_wallet(wallet.wallet_id),
                     Code.FAILED_PRECONDITION).startswith("WALLET_NOT_PENDING")
    unchanged(desk, lambda: second.approve_wallet("WAL-00000099"), Code.NOT_FOUND)
    revoked = issuer.revoke_wallet(wallet.wallet_id, "key rotation")
    assert (revoked.status, revoked.revoked_by, revoked.revoke_reason) == (pb.WalletStatus.REVOKED, "ops",
                                                                           "key rotation")
    assert [w.wallet_id for w in desk.observer.list_wallets()] == ["WAL-00000001"]


def test_malformed_addresses_name_the_field(desk: Desk) -> None:
    issuer = desk.issuer
    for asset, address in (("BTC", BTC_WALLET[:-1] + "5"), ("ETH", ETH_WALLET.replace("a", "A", 1)),
                           ("BTC", ""), ("ETH", "0x1234")):
        assert "address" in unchanged(desk, lambda a=asset, x=address: issuer.register_wallet("AP-1", a, x),
                                      Code.INVALID_ARGUMENT)
    assert issuer.register_wallet("AP-1", "ETH", ETH_WALLET.lower()).status == pb.WalletStatus.PENDING
    unchanged(desk, lambda: issuer.register_wallet("AP-9", "BTC", BTC_WALLET), Code.NOT_FOUND)
    unchanged(desk, lambda: issuer.register_wallet("AP-1", "DOGE", BTC_WALLET), Code.NOT_FOUND)


def test_list_wallets_by_role(desk: Desk) -> None:
    approved(desk, "AP-1", "BTC", BTC_WALLET)
    approved(desk, "AP-2", "BTC", AP2_BTC_WALLET)
    assert [w.participant_id for w in desk.issuer.list_wallets()] == ["AP-1", "AP-2"]
    assert [w.address for w in desk.observer.list_wallets("AP-2")] == [AP2_BTC_WALLET]
    assert [w.participant_id for w in desk.ap1.list_wallets()] == ["AP-1"]
    assert [w.participant_id for w in desk.ap1.list_wallets("AP-1")] == ["AP-1"]
    refused(lambda: desk.ap1.list_wallets("AP-2"), Code.PERMISSION_DENIED)
    refused(lambda: desk.ap1.register_wallet("AP-1", "BTC", BTC_WALLET), Code.PERMISSION_DENIED)
    refused(lambda: desk.observer.approve_wallet("WAL-00000001"), Code.PERMISSION_DENIED)
    refused(lambda: desk.issuer.list_wallets("AP-9"), Code.NOT_FOUND)


def test_creation_delivered_in_two_transfers_then_settled(desk: Desk) -> None:
    issuer = desk.issuer
    approved(desk, "AP-1", "BTC", BTC_WALLET)
    approved(desk, "AP-1", "ETH", ETH_WALLET)
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "c-1")
    assert order.status == pb.OrderStatus.ACCEPTED
    btc, eth = (line.quantity for line in order.deliverables)
    assert unchanged(desk, lambda: issuer.settle_order(order.order_id),
                     Code.FAILED_PRECONDITION).startswith("DELIVERY_INCOMPLETE")
    issuer.record_delivery(order.order_id, "BTC", btc, "0xbtc-1", BTC_WALLET, 0)  # not yet confirmed
    after = issuer.record_delivery(order.order_id, "ETH", eth, "0xeth-1", ETH_WALLET, 3)
    assert [(d.asset, d.confirmations) for d in after.deliveries] == [("BTC", 0), ("ETH", 3)]
    assert unchanged(desk, lambda: issuer.settle_order(order.order_id),
                     Code.FAILED_PRECONDITION).startswith("DELIVERY_INCOMPLETE")
    confirmed = issuer.record_delivery(order.order_id, "BTC", btc, "0xbtc-1", BTC_WALLET, 1)
    assert [d.confirmations for d in confirmed.deliveries] == [1, 3]
    assert unchanged(desk, lambda: issuer.record_delivery(order.order_id, "BTC", "1", "0xbtc-1", BTC_WALLET, 2),
                     Code.ALREADY_EXISTS)
    extra = issuer.record_delivery(order.order_id, "BTC", "0.5", "0xbtc-2", BTC_WALLET, 6)
    assert [(x.asset, x.quantity) for x in extra.excess] == [("BTC", "0.5")]
    settled = issuer.settle_order(order.order_id)
    assert settled.status == pb.OrderStatus.SETTLED and len(settled.excess) == 1
    assert desk.ap1.get_order(order.order_id).deliveries == settled.deliveries


def test_delivery_refusals(desk: Desk) -> None:
    issuer = desk.issuer
    approved(desk, "AP-1", "BTC", BTC_WALLET)
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "c-1")
    oid = order.order_id
    for call, code, named in (
        (lambda: issuer.record_delivery(oid, "BTC", "0", "tx", BTC_WALLET, 1), Code.INVALID_ARGUMENT, "quantity"),
        (lambda: issuer.record_delivery(oid, "BTC", "-1", "tx", BTC_WALLET, 1), Code.INVALID_ARGUMENT, "quantity"),
        (lambda: issuer.record_delivery(oid, "BTC", "1", "", BTC_WALLET, 1), Code.INVALID_ARGUMENT, "tx_hash"),
        (lambda: issuer.record_delivery(oid, "BTC", "1", "x" * 129, BTC_WALLET, 1), Code.INVALID_ARGUMENT, "tx_hash"),
        (lambda: issuer.record_delivery(oid, "BTC", "1", "tx", BTC_WALLET, -1), Code.INVALID_ARGUMENT,
         "confirmations"),
        (lambda: issuer.record_delivery(oid, "BTC", "1", "tx", "bc1-nonsense", 1), Code.INVALID_ARGUMENT,
         "from_address"),
        (lambda: issuer.record_delivery("ORD-00000999", "BTC", "1", "tx", BTC_WALLET, 1), Code.NOT_FOUND, "order"),
    ):
        assert named in unchanged(desk, call, code)
    assert unchanged(desk, lambda: issuer.record_delivery(oid, "BTC", "1", "tx", AP2_BTC_WALLET, 1),
                     Code.FAILED_PRECONDITION).startswith("WALLET_NOT_APPROVED")
    issuer.cancel_order(oid, "dealer withdrew")
    assert unchanged(desk, lambda: issuer.record_delivery(oid, "BTC", "1", "tx", AP2_BTC_WALLET, 1),
                     Code.FAILED_PRECONDITION).startswith("ORDER_NOT_ACCEPTED")
    assert issuer.get_order(oid).cancel_reason == "dealer withdrew"


def test_redemption_paid_out_to_a_whitelisted_wallet(desk: Desk) -> None:
    issuer = desk.issuer
    btc = approved(desk, "AP-1", "BTC", BTC_WALLET)
    eth = approved(desk, "AP-1", "ETH", ETH_WALLET)
    issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", "0.50", "0.10", 604_800, "75")])  # room to redeem
    rejected = desk.ap1.submit_order(FUND, "REDEEM", 1, "r-0", payout_wallet_ids=[btc.wallet_id])
    assert (rejected.status, rejected.reject_reason) == (pb.OrderStatus.REJECTED, "WALLET_NOT_APPROVED")
    check = desk.ap1.check_order(FUND, "REDEEM", 1, "r-1", payout_wallet_ids=[eth.wallet_id, btc.wallet_id])
    assert check.status == pb.OrderStatus.ACCEPTED
    order = desk.ap1.submit_order(FUND, "REDEEM", 1, "r-1", payout_wallet_ids=[eth.wallet_id, btc.wallet_id])
    assert list(order.payout_wallet_ids) == [btc.wallet_id, eth.wallet_id]
    assert {leg.asset: leg.destination_address for leg in order.legs} == {"BTC": BTC_WALLET, "ETH": ETH_WALLET}
    refused(lambda: desk.ap1.submit_order(FUND, "REDEEM", 1, "r-1", payout_wallet_ids=[btc.wallet_id]),
            Code.ALREADY_EXISTS)
    assert unchanged(desk, lambda: issuer.settle_order(order.order_id),
                     Code.FAILED_PRECONDITION).startswith("PAYOUT_INCOMPLETE")
    leg = order.legs[0]
    assert leg.asset == "BTC"
    over = format(Decimal(leg.quantity) + Decimal("0.00000001"), "f")  # one satoshi more than the leg
    assert unchanged(desk, lambda: issuer.record_payout(order.order_id, leg.custodian_id, leg.asset, over, "p-x"),
                     Code.FAILED_PRECONDITION).startswith("PAYOUT_EXCEEDS_LEG")
    assert "custodian_id" in unchanged(
        desk, lambda: issuer.record_payout(order.order_id, "C9", leg.asset, "1", "p-x"), Code.INVALID_ARGUMENT)
    for i, each in enumerate(order.legs):
        issuer.record_payout(order.order_id, each.custodian_id, each.asset, each.quantity, f"p-{i}")
    again = issuer.record_payout(order.order_id, leg.custodian_id, leg.asset, leg.quantity, "p-0")
    assert len(again.payouts) == len(order.legs)  # the same tx_hash again is ignored
    assert issuer.settle_order(order.order_id).status == pb.OrderStatus.SETTLED


def test_overdue_from_the_end_of_the_settlement_date(desk: Desk) -> None:
    issuer = desk.issuer
    issuer.register_calendar("DESK", "Asia/Hong_Kong", weekend_days=[])
    issuer.update_fund(FUND, calendar_id="DESK", create_settlement_days=1)
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "c-1")
    desk_cal = calendar.Calendar("DESK", "Asia/Hong_Kong", frozenset(), frozenset())
    end = calendar.day_end_ms(desk_cal, calendar.parse_date(order.settlement_date, "settlement_date"))
    assert not issuer.get_order(order.order_id).overdue
    issuer.advance_clock(end - 1)
    assert not issuer.get_order(order.order_id).overdue
    issuer.advance_clock(end)
    assert issuer.get_order(order.order_id).overdue
    assert [o.overdue for o in desk.observer.list_orders(FUND)] == [True]
    cancelled = issuer.cancel_order(order.order_id, "overdue: no delivery")
    assert (cancelled.cancel_reason, cancelled.overdue) == ("overdue: no delivery", False)


def test_every_journaled_event_names_its_principal(tmp_path: Path) -> None:
    with BackgroundServer(config(data_dir=tmp_path), clock=Clock()) as server:
        d = Desk(server, Clock())
        load_sample(d.issuer)
        wallet = d.issuer.register_wallet("AP-1", "BTC", BTC_WALLET)
        d.clients["issuer2"].approve_wallet(wallet.wallet_id)
        d.ap1.submit_order(FUND, "CREATE", 1, "c-1")
        d.close()
    rows = journal_rows(tmp_path)
    assert rows and all(row["principal"] for row in rows)
    by_type = {row["type"]: row["principal"] for row in rows}
    assert (by_type["AssetRegistered"], by_type["WalletApproved"], by_type["OrderRecorded"]) == ("ops", "ops-2", "ap1")
    with BackgroundServer(config(data_dir=tmp_path), clock=Clock()) as server:  # and they replay
        with EtfClient(server.target, "tok-observer") as observer:
            assert [w.approved_by for w in observer.list_wallets()] == ["ops-2"]
