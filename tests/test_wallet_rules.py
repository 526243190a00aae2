"""Every rule of SPEC §14 (wallets, deliveries, payouts, deadlines) with the decisions of
etf_engine/ledger.py, made to fire and probed at its boundary, on both ledgers (the ``ledger`` fixture).

The world is conftest's sample with F1 requiring delivery (1 unit = 1 BTC + 10 ETH; 10 BTC and 100 ETH
at CUS-A, so redemption legs are all at CUS-A). AP-1's wallets are registered by the issuer principal
"ops" and approved by "ops-2". Every refusal is checked to change nothing (``Desk.refused``), and the
events replay into the same state.
"""

from __future__ import annotations

from datetime import date

import pytest
from conftest import F1, F2, NOW, Desk, btc, eth, sample

from etf_engine import calendar as CAL
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

BTC_1, BTC_2 = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
ETH_1 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SOL_1 = "So11111111111111111111111111111111111111112"


def register(desk: Desk, asset: str, address: str, participant: str = "AP-1", by: str = "ops") -> m.Wallet:
    return desk.run(m.RegisterWallet(participant_id=participant, asset=asset, address=address, label="desk",
                                     principal=by))


def approved(desk: Desk, asset: str, address: str, participant: str = "AP-1") -> str:
    wallet = register(desk, asset, address, participant)
    return desk.run(m.ApproveWallet(wallet_id=wallet.wallet_id, principal="ops-2")).wallet_id


def delivering(ledger) -> tuple[Desk, dict[str, str]]:
    """The sample with F1 requiring delivery and AP-1's approved BTC and ETH wallets."""
    desk = sample(ledger, require_delivery=True)
    return desk, {"BTC": approved(desk, "BTC", BTC_1), "ETH": approved(desk, "ETH", ETH_1)}


def redeem(desk: Desk, n: int, wallets: list[str], coid: str | None = None, participant: str = "AP-1") -> m.Order:
    request = m.OrderRequest(fund_id=F1, side=m.REDEEM, units=n, client_order_id=coid or f"R-{len(desk.events)}",
                             payout_wallet_ids=wallets)
    return desk.run(m.SubmitOrder(participant_id=participant, request=request))


def deliver(desk: Desk, order_id: str, asset: str, quantity: str, tx: str, confirmations: int = 1,
            address: str | None = None) -> m.Order:
    return desk.run(m.RecordDelivery(order_id=order_id, asset=asset, quantity=quantity, tx_hash=tx,
                                     from_address=address or {"BTC": BTC_1, "ETH": ETH_1}[asset],
                                     confirmations=confirmations))


def pay(desk: Desk, order_id: str, asset: str, quantity: str, tx: str, custodian: str = "CUS-A") -> m.Order:
    return desk.run(m.RecordPayout(order_id=order_id, custodian_id=custodian, asset=asset, quantity=quantity,
                                   tx_hash=tx))


# == wallets =======================================================================================
def test_register_approve_revoke(ledger):
    desk = sample(ledger)
    wallet = register(desk, "BTC", BTC_1)
    assert (wallet.wallet_id, wallet.status, wallet.registered_by, wallet.registered_at) == (
        "WAL-00000001", m.PENDING, "ops", NOW)
    done = desk.run(m.ApproveWallet(wallet_id=wallet.wallet_id, principal="ops-2"))
    assert (done.status, done.approved_by, done.registered_by) == (m.APPROVED, "ops-2", "ops")
    gone = desk.run(m.RevokeWallet(wallet_id=wallet.wallet_id, reason="key rotation", principal="ops"))
    assert (gone.status, gone.revoked_by, gone.revoke_reason) == (m.REVOKED, "ops", "key rotation")
    assert register(desk, "BTC", BTC_1).wallet_id == "WAL-00000002"  # the address again, once revoked
    assert desk.replayed_state() == desk.state()


def test_four_eyes(ledger):
    desk = sample(ledger)
    wallet = register(desk, "ETH", ETH_1, by="ops")
    error = desk.refused(m.ApproveWallet(wallet_id=wallet.wallet_id, principal="ops"), PERMISSION_DENIED)
    assert "four eyes" in error.message
    desk.run(m.ApproveWallet(wallet_id=wallet.wallet_id, principal="ops-2"))
    desk.refused(m.ApproveWallet(wallet_id=wallet.wallet_id, principal="ops-3"), FAILED_PRECONDITION,
                 reason=m.WALLET_NOT_PENDING)
    desk.refused(m.ApproveWallet(wallet_id="WAL-00000009", principal="ops-2"), NOT_FOUND)


def test_revoke_refusals(ledger):
    desk = sample(ledger)
    pending = register(desk, "BTC", BTC_1)
    desk.refused(m.RevokeWallet(wallet_id=pending.wallet_id, reason="x" * 257, principal="ops"), INVALID_ARGUMENT,
                 names="reason")
    assert desk.run(m.RevokeWallet(wallet_id=pending.wallet_id, reason="x" * 256)).status == m.REVOKED  # a PENDING one
    desk.refused(m.RevokeWallet(wallet_id=pending.wallet_id), FAILED_PRECONDITION, reason=m.WALLET_NOT_APPROVED)
    desk.refused(m.RevokeWallet(wallet_id="WAL-00000009"), NOT_FOUND)


@pytest.mark.parametrize(("asset", "address", "ok"), [
    ("BTC", BTC_1, True), ("BTC", BTC_1.upper(), True), ("BTC", BTC_2, True),
    ("BTC", BTC_1[:-1] + "5", False),  # bech32 checksum
    ("BTC", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", False),  # base58check checksum
    ("BTC", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", False),  # testnet
    ("ETH", ETH_1, True), ("ETH", ETH_1.lower(), True), ("ETH", "0x" + ETH_1[2:].upper(), True),
    ("ETH", ETH_1.replace("a", "A", 1), False),  # mixed case failing EIP-55
    ("ETH", ETH_1[:-1], False), ("ETH", ETH_1[2:], False),
    ("SOL", SOL_1, True), ("SOL", "1" * 31, False), ("SOL", "0OIl" * 8, False),
    ("BTC", "", False), ("BTC", "x" * 129, False), ("BTC", "bc1 qar0", False),
])
def test_addresses_per_chain(ledger, asset, address, ok):
    desk = sample(ledger)
    command = m.RegisterWallet(participant_id="AP-1", asset=asset, address=address, principal="ops")
    if ok:
        assert desk.run(command).address == address
    else:
        desk.refused(command, INVALID_ARGUMENT, names="address")


def test_an_asset_without_a_chain_takes_printable_ascii(ledger):
    desk = sample(ledger)
    desk.run(m.RegisterAsset(symbol="USDX", decimals=6))
    assert desk.run(m.RegisterWallet(participant_id="AP-1", asset="USDX", address="!" * 128)).status == m.PENDING
    desk.refused(m.RegisterWallet(participant_id="AP-1", asset="USDX", address="!" * 129), INVALID_ARGUMENT,
                 names="address")
    desk.run(m.RegisterAsset(symbol="WSOL", decimals=9, chain="SOLANA"))
    desk.refused(m.RegisterWallet(participant_id="AP-1", asset="WSOL", address=BTC_1), INVALID_ARGUMENT,
                 names="address")
    assert desk.run(m.RegisterWallet(participant_id="AP-1", asset="WSOL", address=SOL_1)).asset == "WSOL"


def test_register_wallet_refusals(ledger):
    desk = sample(ledger)
    desk.refused(m.RegisterWallet(participant_id="AP-9", asset="BTC", address=BTC_1), NOT_FOUND)
    desk.refused(m.RegisterWallet(participant_id="AP-1", asset="DOGE", address=BTC_1), NOT_FOUND)
    desk.refused(m.RegisterWallet(participant_id="AP-1", asset="BTC", address=BTC_1, label="x" * 257),
                 INVALID_ARGUMENT, names="label")
    register(desk, "BTC", BTC_1)
    desk.refused(m.RegisterWallet(participant_id="AP-1", asset="BTC", address=BTC_1), ALREADY_EXISTS)
    assert register(desk, "BTC", BTC_1, participant="AP-2").participant_id == "AP-2"  # another's: fine
    assert desk.run(m.RegisterWallet(participant_id="AP-1", asset="BTC", address=BTC_2, label="x" * 256))


def test_list_wallets(ledger):
    desk = sample(ledger)
    register(desk, "BTC", BTC_1, participant="AP-2")
    register(desk, "BTC", BTC_1)
    register(desk, "ETH", ETH_1)
    assert [w.wallet_id for w in ledger.list_wallets("")] == ["WAL-00000001", "WAL-00000002", "WAL-00000003"]
    assert [w.asset for w in ledger.list_wallets("AP-1")] == ["BTC", "ETH"]
    assert ledger.list_wallets("AP-3") == []
    with pytest.raises(EngineError) as info:
        ledger.list_wallets("AP-9")
    assert info.value.code == NOT_FOUND


@pytest.mark.parametrize(("field", "value", "code"), [
    ("min_confirmations", -1, INVALID_ARGUMENT), ("min_confirmations", 10**6 + 1, OUT_OF_RANGE),
    ("chain", "DOGECOIN", INVALID_ARGUMENT), ("chain", "bitcoin", INVALID_ARGUMENT),
])
def test_register_asset_refusals(ledger, field, value, code):
    desk = sample(ledger)
    desk.refused(m.RegisterAsset(symbol="XRP", decimals=6, **{field: value}), code, names=field)


def test_register_asset_terms(ledger):
    desk = sample(ledger)
    desk.run(m.RegisterAsset(symbol="XRP", decimals=6, min_confirmations=0))
    desk.run(m.RegisterAsset(symbol="WETH", decimals=18, min_confirmations=10**6, chain="ETHEREUM"))
    rows = {row[0]: row[2:] for row in desk.state()["assets"]}
    assert rows == {"BTC": [1, "BITCOIN"], "ETH": [1, "ETHEREUM"], "SOL": [1, "SOLANA"], "XRP": [0, ""],
                    "WETH": [10**6, "ETHEREUM"]}


def test_require_delivery_term(ledger):
    desk = sample(ledger)
    desk.refused(m.UpdateFund(fund_id=F1, require_delivery=1), INVALID_ARGUMENT, names="require_delivery")
    desk.update(require_delivery=True)
    funds = {t["fund_id"]: t for t, *_ in desk.state()["funds"]}
    assert (funds[F1]["require_delivery"], funds[F2]["require_delivery"]) == (True, False)


# == redemptions and payout wallets ================================================================
def test_redeem_to_approved_wallets(ledger):
    desk, w = delivering(ledger)
    order = redeem(desk, 2, [w["ETH"], w["BTC"], w["ETH"]])
    assert (order.status, order.payout_wallet_ids) == (m.ACCEPTED, (w["BTC"], w["ETH"]))
    assert [(leg.custodian_id, leg.asset, leg.quantity, leg.destination_address) for leg in order.legs] == [
        ("CUS-A", "BTC", btc("2"), BTC_1), ("CUS-A", "ETH", eth("20"), ETH_1)]


@pytest.mark.parametrize("case", ["missing", "pending", "revoked", "another's", "unknown", "two for one asset",
                                  "an asset not in the fund"])
def test_wallet_not_approved(ledger, case):
    desk, w = delivering(ledger)
    ids = [w["BTC"], w["ETH"]]
    if case == "missing":
        ids = [w["BTC"]]
    elif case == "pending":
        ids[1] = register(desk, "ETH", ETH_1.lower()).wallet_id
    elif case == "revoked":
        desk.run(m.RevokeWallet(wallet_id=w["ETH"], principal="ops"))
    elif case == "another's":
        ids[0] = approved(desk, "BTC", BTC_2, participant="AP-2")
    elif case == "unknown":
        ids[0] = "WAL-00000099"
    elif case == "two for one asset":
        ids.append(approved(desk, "BTC", BTC_2))
    else:
        ids.append(approved(desk, "SOL", SOL_1))
    order = redeem(desk, 1, ids)
    assert (order.status, order.reject_reason, order.legs) == (m.REJECTED, m.WALLET_NOT_APPROVED, ())


def test_wallet_check_sits_after_insufficient_shares(ledger):
    desk, w = delivering(ledger)
    assert redeem(desk, 11, [w["BTC"]]).reject_reason == m.INSUFFICIENT_SHARES  # 1,100 shares > 1,000
    assert redeem(desk, 10, []).reject_reason == m.WALLET_NOT_APPROVED  # the liquid balance would be next
    assert redeem(desk, 10, [w["BTC"], w["ETH"]]).status == m.ACCEPTED  # all 10 BTC and 100 ETH


def test_wallets_ignored_on_create_and_without_delivery(ledger):
    desk = sample(ledger)
    order = redeem(desk, 1, ["WAL-00000099"])
    assert (order.status, order.payout_wallet_ids, order.legs[0].destination_address) == (m.ACCEPTED, None, "")
    desk.update(require_delivery=True)
    create = desk.run(m.SubmitOrder(participant_id="AP-1", request=m.OrderRequest(
        fund_id=F1, side=m.CREATE, units=1, client_order_id="c", payout_wallet_ids=["WAL-00000099"])))
    assert (create.status, create.payout_wallet_ids) == (m.ACCEPTED, None)


def test_payout_wallet_ids_shape(ledger):
    desk, w = delivering(ledger)
    request = m.OrderRequest(fund_id=F1, side=m.REDEEM, units=1, client_order_id="r", payout_wallet_ids=["bad id"])
    desk.refused(m.SubmitOrder(participant_id="AP-1", request=request), INVALID_ARGUMENT, names="payout_wallet_ids[0]")
    many = m.OrderRequest(fund_id=F1, side=m.REDEEM, units=1, client_order_id="r",
                          payout_wallet_ids=[w["BTC"], w["ETH"]] * 32 + ["WAL-1"])
    desk.refused(m.SubmitOrder(participant_id="AP-1", request=many), INVALID_ARGUMENT, names="payout_wallet_ids")
    sixty_four = m.OrderRequest(fund_id=F1, side=m.REDEEM, units=1, client_order_id="r",
                                payout_wallet_ids=[w["BTC"], w["ETH"]] * 32)
    assert desk.run(m.SubmitOrder(participant_id="AP-1", request=sixty_four)).status == m.ACCEPTED


def test_resubmit_with_other_wallets(ledger):
    desk, w = delivering(ledger)
    first = redeem(desk, 1, [w["BTC"], w["ETH"]], coid="same")
    assert redeem(desk, 1, [w["ETH"], w["BTC"]], coid="same") == first  # the same wallets, in another order
    other = approved(desk, "BTC", BTC_2)
    request = m.OrderRequest(fund_id=F1, side=m.REDEEM, units=1, client_order_id="same",
                             payout_wallet_ids=[other, w["ETH"]])
    desk.refused(m.SubmitOrder(participant_id="AP-1", request=request), ALREADY_EXISTS)
    batch = m.SubmitOrders(participant_id="AP-1", requests=[
        m.OrderRequest(fund_id=F1, side=m.REDEEM, units=1, client_order_id="b", payout_wallet_ids=[w["BTC"]]),
        m.OrderRequest(fund_id=F1, side=m.REDEEM, units=1, client_order_id="b", payout_wallet_ids=[w["ETH"]])])
    desk.refused(batch, ALREADY_EXISTS)


def test_check_order_and_capacity(ledger):
    desk, w = delivering(ledger)
    request = m.OrderRequest(fund_id=F1, side=m.REDEEM, units=3, client_order_id="k",
                             payout_wallet_ids=[w["BTC"], w["ETH"]])
    assert ledger.check_order("AP-1", request, NOW).status == m.ACCEPTED
    bare = m.OrderRequest(fund_id=F1, side=m.REDEEM, units=3, client_order_id="k")
    assert ledger.check_order("AP-1", bare, NOW).reject_reason == m.WALLET_NOT_APPROVED
    capacity = ledger.get_capacity("AP-1", F1, NOW)  # assumes approved wallets
    assert (capacity.redeem.units, capacity.redeem.binding_reason) == (10, m.INSUFFICIENT_SHARES)


# == deliveries ====================================================================================
def test_creation_waits_for_full_confirmed_delivery(ledger):
    desk, _ = delivering(ledger)
    order = desk.order(m.CREATE, 2)
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.DELIVERY_INCOMPLETE)
    deliver(desk, order.order_id, "BTC", "2", "tx-btc")
    deliver(desk, order.order_id, "ETH", "19.999999999999999999", "tx-eth-1")  # one wei short
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.DELIVERY_INCOMPLETE)
    after = deliver(desk, order.order_id, "ETH", "0.000000000000000001", "tx-eth-2", confirmations=0)
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.DELIVERY_INCOMPLETE)
    assert after.excess == ()
    deliver(desk, order.order_id, "ETH", "0.000000000000000001", "tx-eth-2", confirmations=1)
    settled = desk.settle(order.order_id)
    assert settled.status == m.SETTLED and len(settled.deliveries) == 3
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("needed", "given", "settles"), [(6, 5, False), (6, 6, True), (0, 0, True), (1, 0, False)])
def test_min_confirmations_boundary(ledger, needed, given, settles):
    desk = sample(ledger)
    desk.run(m.RegisterAsset(symbol="XBT", decimals=8, min_confirmations=needed, chain="BITCOIN"))
    desk.run(m.RegisterParticipant(participant_id="AP-4", name="AP-4", eligible_fund_ids=["F3"],
                                   max_units_per_order=5, max_units_per_day=5))
    desk.create_fund("F3", {"XBT": {"seed_quantity_per_unit": "2"}}, require_delivery=True)
    desk.publish(fund_prices={"XBT": "500000"})
    approved(desk, "XBT", BTC_1, participant="AP-4")
    order = desk.order(m.CREATE, 1, participant="AP-4", fund="F3")
    desk.run(m.RecordDelivery(order_id=order.order_id, asset="XBT", quantity="2", tx_hash="t", from_address=BTC_1,
                              confirmations=given))
    if settles:
        assert desk.settle(order.order_id).status == m.SETTLED
    else:
        desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.DELIVERY_INCOMPLETE)


def test_excess_is_shown_and_never_enters_the_fund(ledger):
    desk, _ = delivering(ledger)
    order = desk.order(m.CREATE, 1)
    deliver(desk, order.order_id, "BTC", "1.5", "tx-btc")
    deliver(desk, order.order_id, "ETH", "10", "tx-eth")
    shown = deliver(desk, order.order_id, "ETH", "0.25", "tx-eth-2")
    assert shown.excess == (m.Line(asset="BTC", quantity=btc("0.5")), m.Line(asset="ETH", quantity=eth("0.25")))
    settled = desk.settle(order.order_id)
    assert settled.excess == shown.excess  # kept after settlement
    assert desk.rows()[("CUS-A", "BTC")][0] == btc("11") and desk.rows()[("CUS-A", "ETH")][0] == eth("110")


def test_confirmations_update_by_tx_hash(ledger):
    desk, _ = delivering(ledger)
    order = desk.order(m.CREATE, 1)
    first = deliver(desk, order.order_id, "BTC", "1", "tx", confirmations=0)
    events = len(desk.events)
    assert deliver(desk, order.order_id, "BTC", "1", "tx", confirmations=0) == first  # unchanged: no event
    assert len(desk.events) == events
    desk.now += 60_000
    later = deliver(desk, order.order_id, "BTC", "1", "tx", confirmations=3)
    assert [(d.confirmations, d.recorded_at) for d in later.deliveries] == [(3, NOW)]  # recorded_at kept
    for asset, quantity, address in (("BTC", "2", BTC_1), ("ETH", "1", ETH_1)):
        desk.refused(m.RecordDelivery(order_id=order.order_id, asset=asset, quantity=quantity, tx_hash="tx",
                                      from_address=address, confirmations=3), ALREADY_EXISTS)
    desk.run(m.RegisterWallet(participant_id="AP-1", asset="BTC", address=BTC_2))
    desk.refused(m.RecordDelivery(order_id=order.order_id, asset="BTC", quantity="1", tx_hash="tx",
                                  from_address=BTC_2, confirmations=3), ALREADY_EXISTS)


@pytest.mark.parametrize(("field", "value", "code"), [
    ("quantity", "0", INVALID_ARGUMENT), ("quantity", "-1", INVALID_ARGUMENT),
    ("quantity", "0.000000001", INVALID_ARGUMENT),  # 9 dp for an 8 dp asset
    ("confirmations", -1, INVALID_ARGUMENT), ("confirmations", 10**6 + 1, OUT_OF_RANGE),
    ("tx_hash", "", INVALID_ARGUMENT), ("tx_hash", "x" * 129, INVALID_ARGUMENT), ("tx_hash", "a b", INVALID_ARGUMENT),
    ("from_address", "bc1-nonsense", INVALID_ARGUMENT), ("asset", "SOL", INVALID_ARGUMENT),
])
def test_delivery_fields(ledger, field, value, code):
    desk, _ = delivering(ledger)
    order = desk.order(m.CREATE, 1)
    fields = dict(order_id=order.order_id, asset="BTC", quantity="1", tx_hash="tx", from_address=BTC_1,
                  confirmations=1) | {field: value}
    desk.refused(m.RecordDelivery(**fields), code, names=field)
    fields = dict(fields, **{field: {"quantity": "0.00000001", "confirmations": 10**6, "tx_hash": "x" * 128,
                                     "from_address": BTC_1, "asset": "BTC"}[field]})
    assert desk.run(m.RecordDelivery(**fields)).deliveries  # the boundary on the other side


def test_delivery_refusal_order(ledger):
    desk, w = delivering(ledger)
    desk.refused(m.RecordDelivery(order_id="ORD-00000099", asset="BTC", quantity="1", tx_hash="t",
                                  from_address=BTC_1, confirmations=1), NOT_FOUND)
    order = desk.order(m.CREATE, 1)
    stranger = m.RecordDelivery(order_id=order.order_id, asset="BTC", quantity="1", tx_hash="t", from_address=BTC_2,
                                confirmations=1)
    desk.refused(stranger, FAILED_PRECONDITION, reason=m.WALLET_NOT_APPROVED)  # not a wallet at all
    pending = register(desk, "BTC", BTC_2)
    desk.refused(stranger, FAILED_PRECONDITION, reason=m.WALLET_NOT_APPROVED)
    desk.run(m.ApproveWallet(wallet_id=pending.wallet_id, principal="ops-2"))
    desk.run(m.RevokeWallet(wallet_id=pending.wallet_id))
    desk.refused(stranger, FAILED_PRECONDITION, reason=m.WALLET_NOT_APPROVED)
    theirs = m.RecordDelivery(order_id=order.order_id, asset="BTC", quantity="1", tx_hash="t", confirmations=1,
                              from_address=BTC_1)
    approved(desk, "BTC", BTC_2, participant="AP-2")
    desk.cancel(order.order_id)
    desk.refused(theirs, FAILED_PRECONDITION, reason=m.ORDER_NOT_ACCEPTED)  # checked before the wallet
    redemption = redeem(desk, 1, [w["BTC"], w["ETH"]])
    desk.refused(m.RecordDelivery(order_id=redemption.order_id, asset="BTC", quantity="1", tx_hash="t",
                                  from_address=BTC_2, confirmations=1), FAILED_PRECONDITION,
                 reason=m.ORDER_NOT_ACCEPTED)
    settled = desk.order(m.CREATE, 1)
    deliver(desk, settled.order_id, "BTC", "1", "b")
    deliver(desk, settled.order_id, "ETH", "10", "e")
    desk.settle(settled.order_id)
    desk.refused(m.RecordDelivery(order_id=settled.order_id, asset="BTC", quantity="1", tx_hash="late",
                                  from_address=BTC_1, confirmations=1), FAILED_PRECONDITION,
                 reason=m.ORDER_NOT_ACCEPTED)


def test_a_fund_without_delivery_settles_without_evidence(ledger):
    desk = sample(ledger)
    approved(desk, "BTC", BTC_1)
    order = desk.order(m.CREATE, 1)
    assert deliver(desk, order.order_id, "BTC", "1", "tx").deliveries  # recorded all the same
    assert desk.settle(order.order_id).status == m.SETTLED
    assert desk.settle(desk.order(m.CREATE, 1).order_id).status == m.SETTLED


# == payouts =======================================================================================
def test_redemption_waits_for_every_leg(ledger):
    desk, w = delivering(ledger)
    order = redeem(desk, 2, [w["BTC"], w["ETH"]])
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.PAYOUT_INCOMPLETE)
    pay(desk, order.order_id, "BTC", "2", "p-btc")
    pay(desk, order.order_id, "ETH", "19.999999999999999999", "p-eth-1")
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.PAYOUT_INCOMPLETE)
    desk.refused(m.RecordPayout(order_id=order.order_id, custodian_id="CUS-A", asset="ETH",
                                quantity="0.000000000000000002", tx_hash="p-eth-2"), FAILED_PRECONDITION,
                 reason=m.PAYOUT_EXCEEDS_LEG)
    paid = pay(desk, order.order_id, "ETH", "0.000000000000000001", "p-eth-2")
    assert [(p.asset, p.quantity, p.tx_hash) for p in paid.payouts] == [
        ("BTC", btc("2"), "p-btc"), ("ETH", eth("19.999999999999999999"), "p-eth-1"), ("ETH", 1, "p-eth-2")]
    assert desk.settle(order.order_id).status == m.SETTLED
    assert desk.replayed_state() == desk.state()


def test_payout_refusals(ledger):
    desk, w = delivering(ledger)
    order = redeem(desk, 1, [w["BTC"], w["ETH"]])
    oid = order.order_id
    desk.refused(m.RecordPayout(order_id="ORD-00000099", custodian_id="CUS-A", asset="BTC", quantity="1",
                                tx_hash="p"), NOT_FOUND)
    desk.refused(m.RecordPayout(order_id=oid, custodian_id="CUS-B", asset="BTC", quantity="1", tx_hash="p"),
                 INVALID_ARGUMENT, names="custodian_id")  # no leg there
    desk.refused(m.RecordPayout(order_id=oid, custodian_id="CUS-A", asset="SOL", quantity="1", tx_hash="p"),
                 INVALID_ARGUMENT, names="asset")
    desk.refused(m.RecordPayout(order_id=oid, custodian_id="CUS-A", asset="BTC", quantity="0", tx_hash="p"),
                 INVALID_ARGUMENT, names="quantity")
    desk.refused(m.RecordPayout(order_id=oid, custodian_id="CUS-A", asset="BTC", quantity="1.00000001",
                                tx_hash="p"), FAILED_PRECONDITION, reason=m.PAYOUT_EXCEEDS_LEG)
    pay(desk, oid, "BTC", "0.4", "p")
    events = len(desk.events)
    assert len(pay(desk, oid, "BTC", "0.4", "p").payouts) == 1 and len(desk.events) == events  # ignored
    desk.refused(m.RecordPayout(order_id=oid, custodian_id="CUS-A", asset="BTC", quantity="0.5", tx_hash="p"),
                 ALREADY_EXISTS)
    create = desk.order(m.CREATE, 1)
    desk.refused(m.RecordPayout(order_id=create.order_id, custodian_id="CUS-A", asset="BTC", quantity="1",
                                tx_hash="q"), FAILED_PRECONDITION, reason=m.ORDER_NOT_ACCEPTED)


def test_settle_refusal_order(ledger):
    desk, _ = delivering(ledger)
    order = desk.order(m.CREATE, 1)
    desk.licence("CUS-A", m.SUSPENDED)
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.DELIVERY_INCOMPLETE)
    deliver(desk, order.order_id, "BTC", "1", "b")
    deliver(desk, order.order_id, "ETH", "10", "e")
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.CUSTODIAN_NOT_LICENSED)
    desk.licence("CUS-A")
    assert desk.settle(order.order_id).status == m.SETTLED
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=m.ORDER_NOT_ACCEPTED)


# == deadlines and cancel reasons ==================================================================
def test_cancel_reason(ledger):
    desk = sample(ledger)
    order = desk.order(m.CREATE, 1)
    desk.refused(m.CancelOrder(order_id="ORD-00000099", reason="x" * 300), NOT_FOUND)
    desk.refused(m.CancelOrder(order_id=order.order_id, reason="x" * 257), INVALID_ARGUMENT, names="reason")
    assert desk.run(m.CancelOrder(order_id=order.order_id, reason="x" * 256)).cancel_reason == "x" * 256
    mine = desk.order(m.CREATE, 1)
    assert desk.run(m.CancelOrder(order_id=mine.order_id, participant_id="AP-1", reason="fat finger")).cancel_reason \
        == "fat finger"
    assert desk.replayed_state() == desk.state()


def test_overdue_from_the_end_of_the_settlement_date(ledger):
    desk = sample(ledger)
    desk.run(m.RegisterCalendar(calendar_id="HK", time_zone="Asia/Hong_Kong", weekend_days=[]))
    desk.update(calendar_id="HK", create_settlement_days=1)
    order = desk.order(m.CREATE, 1)  # noon UTC = 20:00 HKT, after the cut-off: deals the next day
    hk = CAL.Calendar("HK", "Asia/Hong_Kong", frozenset(), frozenset())
    assert (order.dealing_date, order.settlement_date) == ("2026-01-02", "2026-01-03")
    end = CAL.day_end_ms(hk, date(2026, 1, 3))  # 2026-01-04 00:00 HKT = 2026-01-03 16:00 UTC
    assert end == NOW + 52 * 3_600_000
    assert not ledger.get_order(order.order_id, None, end - 1).overdue
    assert ledger.get_order(order.order_id, None, end).overdue
    assert not ledger.get_order(order.order_id).overdue  # without a time: not computed
    assert [o.overdue for o in ledger.list_orders(F1, "", None, end)] == [True]
    assert ledger.state(end)["orders"][0]["overdue"] is False  # the state holds facts only
    cancelled = desk.run(m.CancelOrder(order_id=order.order_id, reason="overdue"), now=end)
    assert ledger.get_order(cancelled.order_id, None, end).overdue is False


def test_overdue_needs_a_calendar(ledger):
    desk = sample(ledger)
    order = desk.order(m.CREATE, 1)
    assert not ledger.get_order(order.order_id, None, NOW + 365 * 86_400_000).overdue
