"""SPEC §14 (wallets, deliveries, payouts, deadlines) with the decisions of etf_engine/ledger.py: each rule
made to fire and probed at its boundary, on both ledgers (the ``ledger`` fixture: "core" and "reference").

The world is conftest's sample (F1: 10 units outstanding of 1 BTC + 10 ETH, held at CUS-A; BTC and ETH
registered without a chain, so their addresses are checked as bitcoin and ether). ``delivering`` switches
F1 to ``require_delivery`` and gives AP-1 an approved BTC wallet (WAL-00000001) and ETH wallet
(WAL-00000002), registered by the issuer principal "ops" and approved by "ops-2" (four eyes). Every refusal
goes through ``Desk.refused`` (the state is unchanged after it) and the events replay into the same state.
"""

from __future__ import annotations

import msgspec
import pytest
from conftest import DECIMALS, F1, F2, NOW, Desk, btc, eth, hk, sample

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
    APPROVED,
    CANCELLED,
    CREATE,
    CUSTODIAN_NOT_LICENSED,
    DAY_MS,
    DELIVERY_INCOMPLETE,
    FORWARD,
    INSUFFICIENT_LIQUID_BALANCE,
    INSUFFICIENT_SHARES,
    NOT_PRICED,
    ORDER_NOT_ACCEPTED,
    PAYOUT_EXCEEDS_LEG,
    PAYOUT_INCOMPLETE,
    PENDING,
    REDEEM,
    REJECTED,
    REVOKED,
    SETTLED,
    WALLET_NOT_APPROVED,
    WALLET_NOT_PENDING,
)

pytestmark = pytest.mark.unit

replace = msgspec.structs.replace
BTC_A = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"  # BIP-173 P2WPKH
BTC_B = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"  # base58check P2PKH
ETH_A = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55
ETH_B = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"  # EIP-55
ETH_A_BAD = "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # one letter's case flipped: the checksum fails
SOL_A = "So11111111111111111111111111111111111111112"  # base58 of 32 bytes
ADDRESS = {"BTC": BTC_A, "ETH": ETH_A}
OPS, OPS2 = "ops", "ops-2"
HK, MON, WED, THU = "HK", "2026-01-05", "2026-01-07", "2026-01-08"


# -- helpers -------------------------------------------------------------------------------------
def register(participant: str = "AP-1", asset: str = "BTC", address: str = BTC_A, label: str = "",
             principal: str = OPS) -> m.RegisterWallet:
    return m.RegisterWallet(participant_id=participant, asset=asset, address=address, label=label, principal=principal)


def wallet(desk: Desk, asset: str, address: str, participant: str = "AP-1", *, approve: bool = True) -> str:
    wallet_id = desk.run(register(participant, asset, address)).wallet_id
    if approve:
        desk.run(m.ApproveWallet(wallet_id=wallet_id, principal=OPS2))
    return wallet_id


def delivering(ledger, **kw) -> tuple[Desk, dict[str, str]]:
    desk = sample(ledger, require_delivery=True, **kw)
    return desk, {a: wallet(desk, a, ADDRESS[a]) for a in ("BTC", "ETH")}


def text(quantity: int, asset: str) -> str:
    d = DECIMALS[asset]
    return f"{quantity // 10**d}.{quantity % 10**d:0{d}d}"


def req(desk: Desk, side: str, n: int, ids=(), coid: str | None = None, fund: str = F1) -> m.OrderRequest:
    return replace(desk.request(side, n, coid, fund), payout_wallet_ids=list(ids))


def submit(desk: Desk, side: str, n: int, ids=(), coid: str | None = None, participant: str = "AP-1",
           fund: str = F1) -> m.Order:
    return desk.run(m.SubmitOrder(participant_id=participant, request=req(desk, side, n, ids, coid, fund)))


def delivery(order_id: str, asset: str, quantity: str, tx: str, confirmations: int = 1,
             address: str | None = None) -> m.RecordDelivery:
    return m.RecordDelivery(order_id=order_id, asset=asset, quantity=quantity, tx_hash=tx, confirmations=confirmations,
                            from_address=ADDRESS[asset] if address is None else address)


def deliver_all(desk: Desk, order: m.Order) -> None:
    for line in order.deliverables:
        desk.run(delivery(order.order_id, line.asset, text(line.quantity, line.asset), f"in-{line.asset}"))


def payout(order_id: str, custodian: str, asset: str, quantity: str, tx: str) -> m.RecordPayout:
    return m.RecordPayout(order_id=order_id, custodian_id=custodian, asset=asset, quantity=quantity, tx_hash=tx)


def pay_all(desk: Desk, order: m.Order) -> None:
    for i, leg in enumerate(order.legs):
        desk.run(payout(order.order_id, leg.custodian_id, leg.asset, text(leg.quantity, leg.asset), f"out-{i}"))


def paying(ledger) -> tuple[Desk, dict[str, str], m.Order]:
    """delivering with BTC split over CUS-B (0.5) and CUS-A: an ACCEPTED 1-unit REDEEM has three legs."""
    desk, w = delivering(ledger, holdings={("CUS-B", "BTC"): "0.5", ("CUS-A", "BTC"): "9.5", ("CUS-A", "ETH"): "100"})
    return desk, w, submit(desk, REDEEM, 1, [w["BTC"], w["ETH"]])




def on_calendar(ledger, **terms) -> Desk:
    """The sample with F1 on the HK calendar from Monday 10:00 (prices stay fresh for 40 days)."""
    desk = sample(ledger, max_price_age_seconds=40 * 86_400)
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong"))
    desk.now = hk(MON, "10:00")
    desk.update(F1, calendar_id=HK, **terms)
    return desk


def raises(call, *args, code: str) -> EngineError:
    with pytest.raises(EngineError) as info:
        call(*args)
    assert info.value.code == code, info.value
    return info.value


# == wallets ======================================================================================
def test_register_wallet_is_pending_with_the_next_id(ledger):
    desk = sample(ledger)
    first = desk.run(register(label="cold store", principal="alice"))
    assert first == m.Wallet(wallet_id="WAL-00000001", participant_id="AP-1", asset="BTC", address=BTC_A,
                             label="cold store", status=PENDING, registered_by="alice", registered_at=NOW,
                             updated_at=NOW)
    second = desk.run(register("AP-2", "ETH", ETH_A, principal="bob"), now=NOW + 5)
    assert (second.wallet_id, second.registered_by, second.registered_at) == ("WAL-00000002", "bob", NOW + 5)
    assert isinstance(desk.events[-1], m.WalletRegistered) and desk.events[-1].wallet == second
    state = desk.state()
    assert state["wallets"] == [msgspec.to_builtins(w) for w in (first, second)]
    assert state["next_wallet_seq"] == 3
    assert desk.replayed_state() == state


@pytest.mark.parametrize(("asset", "address", "label"), [
    ("BTC", BTC_A, "x" * 256),
    ("BTC", BTC_B, "ü" * 256),  # 256 characters, not bytes
    ("BTC", "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297", ""),  # BIP-350 taproot
    ("BTC", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", ""),  # P2SH
    ("ETH", ETH_A, ""),
    ("ETH", ETH_A.lower(), ""),  # not mixed case: no checksum to check
    ("ETH", "0x" + ETH_A[2:].upper(), ""),
    ("SOL", SOL_A, ""),
])
def test_register_wallet_accepts_valid_addresses(ledger, asset, address, label):
    desk = sample(ledger)
    w = desk.run(register(asset=asset, address=address, label=label))
    assert (w.asset, w.address, w.label, w.status) == (asset, address, label, PENDING)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("fields", "code", "names"), [
    ({"participant": "AP-9"}, NOT_FOUND, "AP-9"),
    ({"participant": "AP-9", "address": "nope"}, NOT_FOUND, "AP-9"),  # the participant first
    ({"asset": "DOGE"}, NOT_FOUND, "DOGE"),
    ({"asset": "DOGE", "address": "bad address"}, NOT_FOUND, "DOGE"),
    ({"address": BTC_A[:-1] + "p"}, INVALID_ARGUMENT, "address"),  # bech32 checksum
    ({"address": BTC_B[:-1] + "3"}, INVALID_ARGUMENT, "address"),  # base58check checksum
    ({"address": "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"}, INVALID_ARGUMENT, "address"),  # testnet
    ({"address": ETH_A}, INVALID_ARGUMENT, "address"),  # an ether address for BTC
    ({"address": ""}, INVALID_ARGUMENT, "address"),
    ({"asset": "ETH", "address": ETH_A_BAD}, INVALID_ARGUMENT, "address"),
    ({"asset": "ETH", "address": ETH_A[:-1]}, INVALID_ARGUMENT, "address"),
    ({"asset": "ETH", "address": BTC_A}, INVALID_ARGUMENT, "address"),
    ({"asset": "SOL", "address": SOL_A[:-1]}, INVALID_ARGUMENT, "address"),
    ({"label": "x" * 257}, INVALID_ARGUMENT, "label"),
    ({"label": "ü" * 257}, INVALID_ARGUMENT, "label"),
    ({"address": "nope", "label": "x" * 257}, INVALID_ARGUMENT, "address"),  # the address before the label
])
def test_register_wallet_refusals(ledger, fields, code, names):
    desk = sample(ledger)
    desk.refused(register(**fields), code, names=names)
    assert desk.state()["next_wallet_seq"] == 1


def test_register_wallet_twice_is_already_exists_until_revoked(ledger):
    desk = sample(ledger)
    first = wallet(desk, "BTC", BTC_A, approve=False)
    desk.refused(register(), ALREADY_EXISTS)  # PENDING
    desk.refused(register(label="x" * 257), INVALID_ARGUMENT, names="label")  # the label first
    desk.run(m.ApproveWallet(wallet_id=first, principal=OPS2))
    desk.refused(register(), ALREADY_EXISTS)  # APPROVED
    assert desk.run(register("AP-2")).wallet_id == "WAL-00000002"  # another participant: fine
    assert desk.run(register(address=BTC_B)).wallet_id == "WAL-00000003"  # another address: fine
    desk.run(m.RevokeWallet(wallet_id=first, reason="rotated", principal=OPS))
    again = desk.run(register())
    assert (again.wallet_id, again.status) == ("WAL-00000004", PENDING)
    desk.refused(register(), ALREADY_EXISTS)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("symbol", "chain", "address", "ok"), [
    ("USDC", "", "x" * 128, True),  # unchecked: 1-128 printable ASCII
    ("USDC", "", "any-thing!~", True),
    ("USDC", "", ETH_A_BAD, True),
    ("USDC", "", "x" * 129, False),
    ("USDC", "", "two words", False),
    ("USDC", "", "é", False),
    ("USDC", "", "", False),
    ("SOL", None, SOL_A, True),  # the sample's SOL: solana by default
    ("SOL", None, "1" * 32, True),  # 32 zero bytes
    ("SOL", None, SOL_A[:-1], False),  # 31 bytes
    ("SOL", None, "0" + SOL_A[1:], False),  # "0" is not base58
    ("WSOL", "SOLANA", SOL_A, True),
    ("WSOL", "SOLANA", BTC_A, False),
    ("WBTC", "BITCOIN", BTC_B, True),
    ("WBTC", "BITCOIN", ETH_A, False),
    ("XETH", "ETHEREUM", ETH_A, True),
    ("XETH", "ETHEREUM", ETH_A_BAD, False),
])
def test_addresses_are_checked_for_the_assets_chain(ledger, symbol, chain, address, ok):
    desk = sample(ledger)
    if chain is not None:
        desk.run(m.RegisterAsset(symbol=symbol, decimals=8, chain=chain))
    if ok:
        assert desk.run(register(asset=symbol, address=address)).address == address
        assert desk.replayed_state() == desk.state()
    else:
        desk.refused(register(asset=symbol, address=address), INVALID_ARGUMENT, names="address")


def test_approve_wallet_by_another_principal(ledger):
    desk = sample(ledger)
    wallet_id = wallet(desk, "BTC", BTC_A, approve=False)
    done = desk.run(m.ApproveWallet(wallet_id=wallet_id, principal=OPS2), now=NOW + 7)
    assert (done.status, done.registered_by, done.approved_by, done.registered_at, done.updated_at) == (
        APPROVED, OPS, OPS2, NOW, NOW + 7)
    assert ledger.list_wallets() == [done]
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("status", "principal", "code", "reason"), [
    (PENDING, OPS, PERMISSION_DENIED, None),  # the registrar: four eyes
    (APPROVED, OPS2, FAILED_PRECONDITION, WALLET_NOT_PENDING),
    (APPROVED, OPS, FAILED_PRECONDITION, WALLET_NOT_PENDING),  # the status before four eyes
    (REVOKED, OPS2, FAILED_PRECONDITION, WALLET_NOT_PENDING),
])
def test_approve_wallet_refusals(ledger, status, principal, code, reason):
    desk = sample(ledger)
    wallet_id = wallet(desk, "BTC", BTC_A, approve=status == APPROVED)
    if status == REVOKED:
        desk.run(m.RevokeWallet(wallet_id=wallet_id, principal=OPS2))
    error = desk.refused(m.ApproveWallet(wallet_id=wallet_id, principal=principal), code, reason=reason)
    if code == PERMISSION_DENIED:
        assert "four eyes" in error.message
    assert ledger.list_wallets()[0].status == status
    desk.refused(m.ApproveWallet(wallet_id="WAL-00000009", principal=OPS2), NOT_FOUND, names="WAL-00000009")


@pytest.mark.parametrize("approve", [False, True])
def test_revoke_wallet(ledger, approve):
    desk = sample(ledger)
    wallet_id = wallet(desk, "BTC", BTC_A, approve=approve)
    long_reason = "r" * 256
    desk.refused(m.RevokeWallet(wallet_id=wallet_id, reason=long_reason + "r", principal=OPS2), INVALID_ARGUMENT,
                 names="reason")
    gone = desk.run(m.RevokeWallet(wallet_id=wallet_id, reason=long_reason, principal="carol"), now=NOW + 9)
    assert (gone.status, gone.revoked_by, gone.revoke_reason, gone.updated_at) == (REVOKED, "carol", long_reason,
                                                                                     NOW + 9)
    assert gone.approved_by == (OPS2 if approve else "")
    desk.refused(m.RevokeWallet(wallet_id=wallet_id, principal=OPS2), FAILED_PRECONDITION,
                 reason=WALLET_NOT_APPROVED)
    desk.refused(m.RevokeWallet(wallet_id=wallet_id, reason="x" * 257), INVALID_ARGUMENT, names="reason")  # first
    desk.refused(m.RevokeWallet(wallet_id="WAL-00000009", reason="x" * 257), NOT_FOUND, names="WAL-00000009")
    assert desk.replayed_state() == desk.state()


def test_list_wallets(ledger):
    desk = sample(ledger)
    ids = [wallet(desk, "BTC", BTC_A, "AP-2"), wallet(desk, "ETH", ETH_A, approve=False), wallet(desk, "BTC", BTC_A)]
    everything = ledger.list_wallets("")
    assert [w.wallet_id for w in everything] == ids == ["WAL-00000001", "WAL-00000002", "WAL-00000003"]
    assert ledger.list_wallets() == everything
    assert [w.wallet_id for w in ledger.list_wallets("AP-1")] == ids[1:]
    assert [w.wallet_id for w in ledger.list_wallets("AP-2")] == ids[:1]
    assert ledger.list_wallets("AP-3") == []
    raises(ledger.list_wallets, "AP-9", code=NOT_FOUND)
    assert desk.state()["wallets"] == [msgspec.to_builtins(w) for w in everything]


# == assets and fund terms =========================================================================
def test_sample_assets_take_their_default_chains(ledger):
    desk = sample(ledger)
    assert desk.state()["assets"] == [["BTC", 8, 1, "BITCOIN"], ["ETH", 18, 1, "ETHEREUM"], ["SOL", 9, 1, "SOLANA"]]


@pytest.mark.parametrize(("fields", "row"), [
    ({}, ["USDC", 6, 1, ""]),  # default: one confirmation, unchecked
    ({"min_confirmations": 0}, ["USDC", 6, 0, ""]),
    ({"min_confirmations": 10**6}, ["USDC", 6, 10**6, ""]),
    ({"chain": "BITCOIN"}, ["USDC", 6, 1, "BITCOIN"]),
    ({"chain": "ETHEREUM", "min_confirmations": 12}, ["USDC", 6, 12, "ETHEREUM"]),
    ({"chain": "SOLANA"}, ["USDC", 6, 1, "SOLANA"]),
])
def test_register_asset_confirmations_and_chain(ledger, fields, row):
    desk = sample(ledger)
    desk.run(m.RegisterAsset(symbol="USDC", decimals=6, **fields))
    assert next(a for a in desk.state()["assets"] if a[0] == "USDC") == row
    assert (desk.events[-1].min_confirmations, desk.events[-1].chain) == (row[2], row[3])
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("fields", "code", "names"), [
    ({"min_confirmations": -1}, INVALID_ARGUMENT, "min_confirmations"),
    ({"min_confirmations": 10**6 + 1}, OUT_OF_RANGE, "min_confirmations"),
    ({"chain": "DOGE"}, INVALID_ARGUMENT, "chain"),
    ({"chain": "bitcoin"}, INVALID_ARGUMENT, "chain"),
    ({"symbol": "BTC", "chain": "DOGE"}, INVALID_ARGUMENT, "chain"),  # the fields before ALREADY_EXISTS
    ({"symbol": "BTC", "min_confirmations": -1}, INVALID_ARGUMENT, "min_confirmations"),
    ({"symbol": "BTC"}, ALREADY_EXISTS, "BTC"),
])
def test_register_asset_refusals(ledger, fields, code, names):
    desk = sample(ledger)
    desk.refused(m.RegisterAsset(**({"symbol": "USDC", "decimals": 6} | fields)), code, names=names)


def new_fund(**fields) -> m.CreateFund:
    return m.CreateFund(fund_id="F3", name="F3", base_currency="HKD", creation_unit=100, creation_custodian_id="CUS-A",
                        custodian_priority=["CUS-A"], assets=[m.FundAssetSpec(asset="BTC", seed_quantity_per_unit="1")],
                        **fields)


def test_require_delivery_fund_term(ledger):
    desk = sample(ledger)
    terms = {t.fund_id: t for t in ledger.list_funds()}
    assert (terms[F1].require_delivery, terms[F2].require_delivery) == (False, False)  # the default
    desk.run(new_fund(require_delivery=True))
    desk.update(F1, require_delivery=True)
    desk.update(F1, name="renamed")  # None: unchanged
    desk.update(F2, require_delivery=False)
    terms = {t.fund_id: t for t in ledger.list_funds()}
    assert (terms[F1].require_delivery, terms[F2].require_delivery, terms["F3"].require_delivery) == (True, False, True)
    desk.update(F1, require_delivery=False)
    assert not ledger.list_funds()[0].require_delivery
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("value", [1, 0, "true", "yes"])
def test_require_delivery_must_be_a_bool(ledger, value):
    desk = sample(ledger)
    desk.refused(new_fund(require_delivery=value), INVALID_ARGUMENT, names="require_delivery")
    desk.refused(m.UpdateFund(fund_id=F1, require_delivery=value), INVALID_ARGUMENT, names="require_delivery")


# == redemptions and payout wallets =================================================================
@pytest.mark.parametrize("given", [["BTC", "ETH"], ["ETH", "BTC"], ["ETH", "BTC", "ETH"]])
def test_redeem_with_one_approved_wallet_per_asset(ledger, given):
    desk, w = delivering(ledger)
    ids = [w[a] for a in given]
    request = req(desk, REDEEM, 2, ids)
    checked = ledger.check_order("AP-1", request, desk.now)
    order = desk.run(m.SubmitOrder(participant_id="AP-1", request=request))
    assert (order.status, order.reject_reason, order.payout_wallet_ids) == (ACCEPTED, "", ("WAL-00000001",
                                                                                          "WAL-00000002"))
    assert order.legs == (m.Leg(custodian_id="CUS-A", asset="BTC", quantity=btc("2"), destination_address=BTC_A),
                          m.Leg(custodian_id="CUS-A", asset="ETH", quantity=eth("20"), destination_address=ETH_A))
    assert checked == replace(order, order_id="")
    assert desk.replayed_state() == desk.state()


def _revoked_eth(desk: Desk, w: dict[str, str]) -> list[str]:
    desk.run(m.RevokeWallet(wallet_id=w["ETH"], reason="lost", principal=OPS))
    return [w["BTC"], w["ETH"]]


BAD_WALLETS = {
    "ETH missing": lambda desk, w: [w["BTC"]],
    "none": lambda desk, w: [],
    "ETH pending": lambda desk, w: [w["BTC"], wallet(desk, "ETH", ETH_B, approve=False)],
    "ETH revoked": _revoked_eth,
    "another participant's": lambda desk, w: [w["BTC"], wallet(desk, "ETH", ETH_B, "AP-2")],
    "unknown id for ETH": lambda desk, w: [w["BTC"], "WAL-00000099"],
    "unknown id besides": lambda desk, w: [w["BTC"], w["ETH"], "WAL-00000099"],
    "two for BTC": lambda desk, w: [w["BTC"], w["ETH"], wallet(desk, "BTC", BTC_B)],
    "two for ETH, none for BTC": lambda desk, w: [w["ETH"], wallet(desk, "ETH", ETH_B)],
    "an asset not in the fund": lambda desk, w: [w["BTC"], w["ETH"], wallet(desk, "SOL", SOL_A)],
}


@pytest.mark.parametrize("case", list(BAD_WALLETS))
def test_redeem_wallet_not_approved(ledger, case):
    desk, w = delivering(ledger)
    ids = BAD_WALLETS[case](desk, w)
    assert ledger.check_order("AP-1", req(desk, REDEEM, 1, ids), desk.now).reject_reason == WALLET_NOT_APPROVED
    order = submit(desk, REDEEM, 1, ids)
    assert (order.status, order.reject_reason, order.legs) == (REJECTED, WALLET_NOT_APPROVED, ())
    assert order.payout_wallet_ids == tuple(sorted(set(ids)))
    assert desk.replayed_state() == desk.state()


def test_wallet_check_sits_right_after_insufficient_shares(ledger):
    # ETH half at CUS-D, whose licence is suspended: 50 ETH liquid, so 6 units need more than is liquid
    desk, w = delivering(ledger, holdings={("CUS-A", "BTC"): "10", ("CUS-A", "ETH"): "50", ("CUS-D", "ETH"): "50"})
    desk.licence("CUS-D", m.SUSPENDED)
    good, bad = [w["BTC"], w["ETH"]], [w["BTC"]]

    def check(n: int, ids: list[str]) -> m.Order:
        return ledger.check_order("AP-1", req(desk, REDEEM, n, ids), desk.now)

    assert check(11, good).reject_reason == check(11, bad).reject_reason == INSUFFICIENT_SHARES
    assert check(11, bad).payout_wallet_ids == (w["BTC"],)  # kept on every REDEEM of the fund
    assert check(6, good).reject_reason == INSUFFICIENT_LIQUID_BALANCE
    assert check(6, bad).reject_reason == WALLET_NOT_APPROVED
    assert check(5, good).reject_reason == ""
    assert check(5, bad).reject_reason == WALLET_NOT_APPROVED


@pytest.mark.parametrize(("require", "side"), [(True, CREATE), (False, REDEEM), (False, CREATE)])
def test_payout_wallets_ignored_on_create_and_without_require_delivery(ledger, require, side):
    desk = sample(ledger, require_delivery=require)
    order = submit(desk, side, 1, ["WAL-00000099"])
    assert (order.status, order.payout_wallet_ids) == (ACCEPTED, None)
    assert all(leg.destination_address == "" for leg in order.legs) and len(order.legs) == (2 if side == REDEEM else 0)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("side", [CREATE, REDEEM])
@pytest.mark.parametrize(("ids", "names"), [
    ([f"W-{i}" for i in range(65)], "payout_wallet_ids"),
    (["WAL-00000001", "bad id"], "payout_wallet_ids[1]"),
    ([""], "payout_wallet_ids[0]"),
    (["x" * 65], "payout_wallet_ids[0]"),
])
def test_payout_wallet_ids_shape(ledger, side, ids, names):
    desk, _ = delivering(ledger)
    desk.refused(m.SubmitOrder(participant_id="AP-1", request=req(desk, side, 1, ids)), INVALID_ARGUMENT, names=names)
    batch = [desk.request(CREATE, 1), req(desk, side, 1, ids)]
    error = desk.refused(m.SubmitOrders(participant_id="AP-1", requests=batch), INVALID_ARGUMENT, names=names)
    assert "requests[1]" in error.message
    raises(ledger.check_order, "AP-1", req(desk, side, 1, ids), desk.now, code=INVALID_ARGUMENT)


def test_sixty_four_payout_wallet_ids_are_checked_not_refused(ledger):
    desk, w = delivering(ledger)
    ids = [w["BTC"], w["ETH"]] + [f"WAL-{i:08d}" for i in range(100, 162)]
    assert len(ids) == 64
    order = submit(desk, REDEEM, 1, ids)
    assert (order.reject_reason, len(order.payout_wallet_ids)) == (WALLET_NOT_APPROVED, 64)
    assert submit(desk, CREATE, 1, ids).status == ACCEPTED


def test_resubmission_with_other_wallets(ledger):
    desk, w = delivering(ledger)
    eth_b = wallet(desk, "ETH", ETH_B)
    first = submit(desk, REDEEM, 1, [w["BTC"], w["ETH"]], coid="R-1")
    events = len(desk.events)
    assert submit(desk, REDEEM, 1, [w["ETH"], w["BTC"], w["ETH"]], coid="R-1") == first  # the same set
    assert len(desk.events) == events
    for other in ([w["BTC"]], [w["BTC"], eth_b], []):
        desk.refused(m.SubmitOrder(participant_id="AP-1", request=req(desk, REDEEM, 1, other, "R-1")), ALREADY_EXISTS)
        raises(ledger.check_order, "AP-1", req(desk, REDEEM, 1, other, "R-1"), desk.now, code=ALREADY_EXISTS)
    assert ledger.check_order("AP-1", req(desk, REDEEM, 1, [w["ETH"], w["BTC"]], "R-1"), desk.now) == replace(
        first, order_id="")
    created = submit(desk, CREATE, 1, coid="C-1")  # kept no ids: any ids repeat it
    assert submit(desk, CREATE, 1, ["WAL-00000099"], coid="C-1") == created
    # within one SubmitOrders call
    batch = [req(desk, REDEEM, 1, [w["BTC"], w["ETH"]], "R-2"), req(desk, REDEEM, 1, [w["BTC"], eth_b], "R-2")]
    desk.refused(m.SubmitOrders(participant_id="AP-1", requests=batch), ALREADY_EXISTS, names="requests[1]")
    batch[1] = req(desk, REDEEM, 1, [w["ETH"], w["BTC"]], "R-2")
    one, two = desk.run(m.SubmitOrders(participant_id="AP-1", requests=batch))
    assert one == two and one.status == ACCEPTED
    assert desk.replayed_state() == desk.state()


def test_capacity_redeem_side_assumes_approved_wallets(ledger):
    desk, _ = delivering(ledger)
    for participant in ("AP-1", "AP-2"):  # AP-2 has no wallet at all
        capacity = ledger.get_capacity(participant, F1, desk.now)
        assert capacity.redeem == m.CapacitySide(units=10, binding_reason=INSUFFICIENT_SHARES)
    assert desk.reason(REDEEM, 1, participant="AP-2") == WALLET_NOT_APPROVED


def test_submit_orders_items_check_wallets(ledger):
    desk, w = delivering(ledger)
    batch = [req(desk, REDEEM, 1, [w["ETH"], w["BTC"]]), req(desk, REDEEM, 1, [w["ETH"]]), req(desk, CREATE, 1, ["x"])]
    orders = desk.run(m.SubmitOrders(participant_id="AP-1", requests=batch))
    assert [(o.status, o.reject_reason, o.payout_wallet_ids) for o in orders] == [
        (ACCEPTED, "", (w["BTC"], w["ETH"])), (REJECTED, WALLET_NOT_APPROVED, (w["ETH"],)), (ACCEPTED, "", None)]
    assert [leg.destination_address for leg in orders[0].legs] == [BTC_A, ETH_A]
    assert desk.replayed_state() == desk.state()


# == deliveries =====================================================================================
def test_record_delivery_and_its_confirmations(ledger):
    desk, _ = delivering(ledger)
    order = desk.order(CREATE, 1)
    got = desk.run(delivery(order.order_id, "BTC", "0.4", "t1", confirmations=0))
    first = m.Delivery(asset="BTC", quantity=btc("0.4"), tx_hash="t1", from_address=BTC_A, confirmations=0,
                       recorded_at=NOW)
    assert (got.order_id, got.deliveries, got.excess) == (order.order_id, (first,), ())
    assert isinstance(desk.events[-1], m.DeliveryRecorded)
    later = desk.run(delivery(order.order_id, "BTC", "0.4", "t1", confirmations=3), now=NOW + 60_000)
    assert later.deliveries == (replace(first, confirmations=3),)  # the same tx: updated, not counted twice
    assert later.updated_at == NOW + 60_000
    before = desk.state()
    result, events = ledger.execute(delivery(order.order_id, "BTC", "0.4", "t1", confirmations=3), NOW + 120_000)
    assert (events, result.deliveries, desk.state()) == ([], later.deliveries, before)  # unchanged: no event
    desk.run(delivery(order.order_id, "ETH", "1", "t2", confirmations=10**6))
    desk.run(delivery(order.order_id, "BTC", "0.1", "x" * 128))
    assert [d.tx_hash for d in ledger.get_order(order.order_id).deliveries] == ["t1", "t2", "x" * 128]
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("other", [{"quantity": "0.5"}, {"asset": "ETH", "quantity": "0.4"}, {"address": BTC_B}])
def test_record_delivery_same_tx_other_figures(ledger, other):
    desk, _ = delivering(ledger)
    wallet(desk, "BTC", BTC_B)
    order = desk.order(CREATE, 1)
    desk.run(delivery(order.order_id, "BTC", "0.4", "t1"))
    desk.refused(delivery(order.order_id, **({"asset": "BTC", "quantity": "0.4", "tx": "t1"} | other)),
                 ALREADY_EXISTS, names="t1")


def test_known_delivery_updates_even_after_its_wallet_is_revoked(ledger):
    desk, w = delivering(ledger)
    order = desk.order(CREATE, 1)
    desk.run(delivery(order.order_id, "BTC", "0.4", "t1", confirmations=0))
    desk.run(m.RevokeWallet(wallet_id=w["BTC"], principal=OPS))
    assert desk.run(delivery(order.order_id, "BTC", "0.4", "t1", confirmations=2)).deliveries[0].confirmations == 2
    desk.refused(delivery(order.order_id, "BTC", "0.4", "t2"), FAILED_PRECONDITION, reason=WALLET_NOT_APPROVED)
    assert desk.replayed_state() == desk.state()


def _not_accepted(desk: Desk, w: dict[str, str], kind: str) -> m.Order:
    if kind == "redeem":
        return submit(desk, REDEEM, 1, [w["BTC"], w["ETH"]])
    if kind == "rejected":
        return desk.order(CREATE, 51)  # above max_units_per_order
    order = desk.order(CREATE, 1)
    if kind == "settled":
        deliver_all(desk, order)
        desk.settle(order.order_id)
    else:
        desk.cancel(order.order_id)
    return order


@pytest.mark.parametrize("kind", ["redeem", "settled", "cancelled", "rejected"])
def test_record_delivery_order_not_accepted(ledger, kind):
    desk, w = delivering(ledger)
    order = _not_accepted(desk, w, kind)
    assert ledger.get_order(order.order_id).status != ACCEPTED or order.side == REDEEM
    desk.refused(delivery(order.order_id, "BTC", "0.1", "t9"), FAILED_PRECONDITION, reason=ORDER_NOT_ACCEPTED)
    # before WALLET_NOT_APPROVED: from an address that is no wallet at all
    desk.refused(delivery(order.order_id, "BTC", "0.1", "t9", address=BTC_B), FAILED_PRECONDITION,
                 reason=ORDER_NOT_ACCEPTED)
    # the fields before ORDER_NOT_ACCEPTED
    desk.refused(delivery(order.order_id, "BTC", "0", "t9"), INVALID_ARGUMENT, names="quantity")


@pytest.mark.parametrize("case", ["unknown", "pending", "revoked", "another participant's"])
def test_record_delivery_wallet_not_approved(ledger, case):
    desk, _ = delivering(ledger)
    if case != "unknown":
        wallet_id = wallet(desk, "BTC", BTC_B, "AP-2" if case == "another participant's" else "AP-1",
                           approve=case != "pending")
        if case == "revoked":
            desk.run(m.RevokeWallet(wallet_id=wallet_id, principal=OPS))
    order = desk.order(CREATE, 1)
    desk.refused(delivery(order.order_id, "BTC", "0.1", "t1", address=BTC_B), FAILED_PRECONDITION,
                 reason=WALLET_NOT_APPROVED)
    assert desk.run(delivery(order.order_id, "BTC", "0.1", "t1")).deliveries[0].from_address == BTC_A


@pytest.mark.parametrize(("fields", "code", "names"), [
    ({"quantity": "0"}, INVALID_ARGUMENT, "quantity"),
    ({"quantity": "-0.1"}, INVALID_ARGUMENT, "quantity"),
    ({"quantity": "0.000000001"}, INVALID_ARGUMENT, "quantity"),  # nine decimals for BTC
    ({"quantity": ""}, INVALID_ARGUMENT, "quantity"),
    ({"confirmations": -1}, INVALID_ARGUMENT, "confirmations"),
    ({"confirmations": 10**6 + 1}, OUT_OF_RANGE, "confirmations"),
    ({"tx": ""}, INVALID_ARGUMENT, "tx_hash"),
    ({"tx": "x" * 129}, INVALID_ARGUMENT, "tx_hash"),
    ({"tx": "two words"}, INVALID_ARGUMENT, "tx_hash"),
    ({"address": BTC_A[:-1] + "p"}, INVALID_ARGUMENT, "from_address"),
    ({"asset": "SOL", "address": SOL_A}, INVALID_ARGUMENT, "asset"),
    ({"asset": "DOGE", "address": "x"}, INVALID_ARGUMENT, "asset"),
    ({"order_id": "ORD-00000099"}, NOT_FOUND, "ORD-00000099"),
    ({"order_id": "ORD-00000099", "quantity": "0"}, NOT_FOUND, "ORD-00000099"),  # the order first
])
def test_record_delivery_refusals(ledger, fields, code, names):
    desk, _ = delivering(ledger)
    order = desk.order(CREATE, 1)
    args = {"order_id": order.order_id, "asset": "BTC", "quantity": "0.1", "tx": "t1"} | fields
    desk.refused(delivery(**args), code, names=names)


def test_excess_is_confirmed_delivery_above_the_deliverable(ledger):
    desk, _ = delivering(ledger)
    order = desk.order(CREATE, 1)  # 1 BTC + 10 ETH
    oid = order.order_id
    desk.run(delivery(oid, "BTC", "0.6", "b1"))
    assert desk.run(delivery(oid, "BTC", "0.5", "b2", confirmations=0)).excess == ()  # unconfirmed: not counted
    desk.refused(m.SettleOrder(order_id=oid), FAILED_PRECONDITION, reason=DELIVERY_INCOMPLETE)
    assert desk.run(delivery(oid, "BTC", "0.5", "b2")).excess == (m.Line(asset="BTC", quantity=btc("0.1")),)
    assert desk.run(delivery(oid, "ETH", "10", "e1")).excess == (m.Line(asset="BTC", quantity=btc("0.1")),)  # exact
    assert desk.run(delivery(oid, "ETH", "0.000000000000000001", "e2")).excess == (
        m.Line(asset="BTC", quantity=btc("0.1")), m.Line(asset="ETH", quantity=1))  # by asset
    settled = desk.settle(oid)
    assert (settled.status, settled.excess) == (SETTLED, (m.Line("BTC", btc("0.1")), m.Line("ETH", 1)))
    assert ledger.get_order(oid).excess == settled.excess  # kept after settlement
    assert desk.rows() == {("CUS-A", "BTC"): (btc("11"), 0, 0, []), ("CUS-A", "ETH"): (eth("110"), 0, 0, [])}
    assert desk.fund_figures() == (0, 1100)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("short", "confirmations"), [
    ("0.00000001", 1),  # one smallest unit short
    ("0", 0),  # in full, one confirmation below the default min_confirmations of 1
    (None, 1),  # ETH never delivered
])
def test_settle_create_waits_for_every_asset_in_full(ledger, short, confirmations):
    desk, _ = delivering(ledger)
    order = desk.order(CREATE, 1)
    btc_quantity = text(btc("1") - btc(short or "0"), "BTC")
    desk.run(delivery(order.order_id, "BTC", btc_quantity, "b1", confirmations))
    if short is not None:
        desk.run(delivery(order.order_id, "ETH", "10", "e1"))
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=DELIVERY_INCOMPLETE)
    if short is None:
        desk.run(delivery(order.order_id, "ETH", "10", "e1"))
    elif short == "0":
        desk.run(delivery(order.order_id, "BTC", btc_quantity, "b1", 1))
    else:
        desk.run(delivery(order.order_id, "BTC", short, "b2"))
    assert desk.settle(order.order_id).status == SETTLED
    assert desk.replayed_state() == desk.state()


def test_min_confirmations_of_the_asset(ledger):
    # WBTC: bitcoin addresses, three confirmations; fund F3 holds only WBTC (no shares: 2 WBTC per unit)
    desk = sample(ledger)
    desk.run(m.RegisterAsset(symbol="WBTC", decimals=8, min_confirmations=3, chain="BITCOIN"))
    desk.run(m.RegisterParticipant(participant_id="AP-9", name="AP-9", eligible_fund_ids=["F3"],
                                   max_units_per_order=5, max_units_per_day=5))
    desk.create_fund("F3", {"WBTC": {"seed_quantity_per_unit": "2"}}, require_delivery=True)
    desk.publish(fund_prices={"WBTC": "500000"})
    wallet(desk, "WBTC", BTC_B, "AP-9")
    order = desk.order(CREATE, 1, participant="AP-9", fund="F3")
    got = desk.run(delivery(order.order_id, "WBTC", "3", "w1", confirmations=2, address=BTC_B))
    assert got.excess == ()  # two of three confirmations: not counted
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=DELIVERY_INCOMPLETE)
    got = desk.run(delivery(order.order_id, "WBTC", "3", "w1", confirmations=3, address=BTC_B))
    assert got.excess == (m.Line(asset="WBTC", quantity=btc("1")),)
    assert desk.settle(order.order_id).status == SETTLED
    assert desk.rows("F3") == {("CUS-A", "WBTC"): (btc("2"), 0, 0, [])}
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("at_order", "at_settle", "waits"), [
    (False, False, False), (False, True, True), (True, False, False), (True, True, True)])
def test_settle_waits_for_deliveries_per_the_funds_term_now(ledger, at_order, at_settle, waits):
    desk = sample(ledger, require_delivery=at_order)
    wallet(desk, "BTC", BTC_A)
    order = desk.order(CREATE, 1)
    desk.run(delivery(order.order_id, "BTC", "0.3", "b1"))  # recorded on any fund
    desk.update(F1, require_delivery=at_settle)
    if waits:
        desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=DELIVERY_INCOMPLETE)
    else:
        assert desk.settle(order.order_id).status == SETTLED
        assert desk.rows()[("CUS-A", "BTC")][0] == btc("11")  # the deliverable, whatever was delivered
    assert desk.replayed_state() == desk.state()


# == payouts ========================================================================================
def test_payouts_settle_a_redemption_once_every_leg_is_paid(ledger):
    desk, _, order = paying(ledger)
    oid = order.order_id
    assert order.legs == (m.Leg("CUS-B", "BTC", btc("0.5"), BTC_A), m.Leg("CUS-A", "BTC", btc("0.5"), BTC_A),
                          m.Leg("CUS-A", "ETH", eth("10"), ETH_A))
    desk.refused(m.SettleOrder(order_id=oid), FAILED_PRECONDITION, reason=PAYOUT_INCOMPLETE)
    desk.run(payout(oid, "CUS-B", "BTC", "0.5", "p1"))  # exactly the leg
    desk.run(payout(oid, "CUS-A", "BTC", "0.49999999", "p2"), now=NOW + 1)
    desk.run(payout(oid, "CUS-A", "ETH", "10", "p3"))
    desk.refused(m.SettleOrder(order_id=oid), FAILED_PRECONDITION, reason=PAYOUT_INCOMPLETE)  # one satoshi short
    paid = desk.run(payout(oid, "CUS-A", "BTC", "0.00000001", "p4"))
    assert paid.payouts[1] == m.Payout(custodian_id="CUS-A", asset="BTC", quantity=btc("0.49999999"), tx_hash="p2",
                                       recorded_at=NOW + 1)
    assert [p.tx_hash for p in paid.payouts] == ["p1", "p2", "p3", "p4"]
    assert desk.settle(oid).status == SETTLED
    assert desk.rows() == {("CUS-A", "BTC"): (btc("9"), 0, 0, []), ("CUS-A", "ETH"): (eth("90"), 0, 0, [])}
    assert desk.fund_figures() == (0, 900)
    assert desk.replayed_state() == desk.state()


def test_payout_exceeds_leg(ledger):
    desk, _, order = paying(ledger)
    oid = order.order_id
    desk.refused(payout(oid, "CUS-B", "BTC", "0.50000001", "p1"), FAILED_PRECONDITION, reason=PAYOUT_EXCEEDS_LEG)
    desk.run(payout(oid, "CUS-B", "BTC", "0.2", "p1"))
    desk.refused(payout(oid, "CUS-B", "BTC", "0.30000001", "p2"), FAILED_PRECONDITION, reason=PAYOUT_EXCEEDS_LEG)
    desk.run(payout(oid, "CUS-B", "BTC", "0.3", "p2"))
    desk.refused(payout(oid, "CUS-B", "BTC", "0.00000001", "p3"), FAILED_PRECONDITION, reason=PAYOUT_EXCEEDS_LEG)
    desk.refused(payout(oid, "CUS-A", "ETH", "10.000000000000000001", "p3"), FAILED_PRECONDITION,
                 reason=PAYOUT_EXCEEDS_LEG)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("custodian", "asset", "quantity", "tx", "code", "names"), [
    ("CUS-C", "BTC", "0.1", "p1", INVALID_ARGUMENT, "custodian_id"),  # licensed, no leg
    ("CUS-B", "ETH", "0.1", "p1", INVALID_ARGUMENT, "custodian_id"),  # a leg of another asset there
    ("CUS-Z", "BTC", "0.1", "p1", INVALID_ARGUMENT, "custodian_id"),  # no such custodian
    ("bad id", "BTC", "0.1", "p1", INVALID_ARGUMENT, "custodian_id"),
    ("CUS-A", "SOL", "0.1", "p1", INVALID_ARGUMENT, "asset"),
    ("CUS-A", "BTC", "0", "p1", INVALID_ARGUMENT, "quantity"),
    ("CUS-A", "BTC", "0.000000001", "p1", INVALID_ARGUMENT, "quantity"),
    ("CUS-A", "BTC", "0.1", "", INVALID_ARGUMENT, "tx_hash"),
    ("CUS-A", "BTC", "0.1", "x" * 129, INVALID_ARGUMENT, "tx_hash"),
])
def test_record_payout_refusals(ledger, custodian, asset, quantity, tx, code, names):
    desk, _, order = paying(ledger)
    desk.refused(payout(order.order_id, custodian, asset, quantity, tx), code, names=names)
    desk.refused(payout("ORD-00000099", custodian, asset, quantity, tx), NOT_FOUND, names="ORD-00000099")


def test_record_payout_same_tx_hash(ledger):
    desk, _, order = paying(ledger)
    oid = order.order_id
    once = desk.run(payout(oid, "CUS-B", "BTC", "0.2", "p1"))
    before = desk.state()
    result, events = ledger.execute(payout(oid, "CUS-B", "BTC", "0.2", "p1"), NOW + 1000)
    assert (events, result.payouts, desk.state()) == ([], once.payouts, before)  # the same figures: ignored
    for other in (("CUS-B", "BTC", "0.3"), ("CUS-A", "BTC", "0.2"), ("CUS-A", "ETH", "0.2")):
        desk.refused(payout(oid, *other, "p1"), ALREADY_EXISTS, names="p1")
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("kind", ["create", "settled", "cancelled"])
def test_record_payout_order_not_accepted(ledger, kind):
    desk, _, order = paying(ledger)
    if kind == "create":
        order = desk.order(CREATE, 1)
    elif kind == "settled":
        pay_all(desk, order)
        desk.settle(order.order_id)
    else:
        desk.run(m.CancelOrder(order_id=order.order_id, reason="wrong wallet"))
    desk.refused(payout(order.order_id, "CUS-A", "BTC", "0.1", "p9"), FAILED_PRECONDITION, reason=ORDER_NOT_ACCEPTED)
    desk.refused(payout(order.order_id, "CUS-C", "BTC", "0.1", "p9"), FAILED_PRECONDITION,
                 reason=ORDER_NOT_ACCEPTED)  # before the leg is matched


def test_redeem_without_require_delivery_settles_without_payouts(ledger):
    desk = sample(ledger)
    order = desk.order(REDEEM, 1)
    desk.run(payout(order.order_id, "CUS-A", "BTC", "0.5", "p1"))  # recorded, not waited for
    assert desk.settle(order.order_id).status == SETTLED
    assert desk.replayed_state() == desk.state()


# == settlement refusals in order ===================================================================
def test_settle_refusal_order(ledger):
    desk, _ = delivering(ledger)
    rejected = desk.order(CREATE, 51)
    desk.refused(m.SettleOrder(order_id=rejected.order_id), FAILED_PRECONDITION, reason=ORDER_NOT_ACCEPTED)
    order = desk.order(CREATE, 1)
    desk.licence("CUS-A", m.SUSPENDED)
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=DELIVERY_INCOMPLETE)
    deliver_all(desk, order)
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=CUSTODIAN_NOT_LICENSED)
    desk.licence("CUS-A")
    assert desk.settle(order.order_id).status == SETTLED
    assert desk.replayed_state() == desk.state()


def test_settle_not_priced_before_delivery_incomplete(ledger):
    desk = on_calendar(ledger, pricing=FORWARD, require_delivery=True)
    order = desk.order(CREATE, 1)
    assert (order.status, order.priced) == (ACCEPTED, False)
    desk.refused(m.SettleOrder(order_id=order.order_id), FAILED_PRECONDITION, reason=NOT_PRICED)


# == cancel reasons =================================================================================
@pytest.mark.parametrize("participant", [None, "AP-1"])
@pytest.mark.parametrize("reason", ["", "client asked", "r" * 256])
def test_cancel_keeps_its_reason(ledger, participant, reason):
    desk = sample(ledger)
    order = desk.order(REDEEM, 1)
    done = desk.run(m.CancelOrder(order_id=order.order_id, participant_id=participant, reason=reason))
    assert (done.status, done.cancel_reason) == (CANCELLED, reason)
    assert ledger.get_order(order.order_id).cancel_reason == reason
    assert desk.replayed_state() == desk.state()


def test_cancel_refusals(ledger):
    desk = sample(ledger)
    order = desk.order(CREATE, 1)
    long_reason = "r" * 257
    desk.refused(m.CancelOrder(order_id="ORD-00000099", reason=long_reason), NOT_FOUND, names="ORD-00000099")
    desk.refused(m.CancelOrder(order_id=order.order_id, participant_id="AP-2", reason=long_reason), NOT_FOUND)
    desk.refused(m.CancelOrder(order_id=order.order_id, reason=long_reason), INVALID_ARGUMENT, names="reason")
    desk.cancel(order.order_id)
    desk.refused(m.CancelOrder(order_id=order.order_id, reason=long_reason), INVALID_ARGUMENT, names="reason")
    desk.refused(m.CancelOrder(order_id=order.order_id, reason="again"), FAILED_PRECONDITION,
                 reason=ORDER_NOT_ACCEPTED)


# == overdue ========================================================================================
@pytest.mark.parametrize(("side", "require"), [(CREATE, False), (CREATE, True), (REDEEM, False)])
def test_overdue_from_the_local_end_of_the_settlement_date(ledger, side, require):
    desk = on_calendar(ledger, require_delivery=require)
    order = desk.order(side, 1)
    oid, end = order.order_id, hk(THU)  # midnight after Wednesday in Hong Kong: 16:00 UTC on Wednesday
    assert (order.dealing_date, order.settlement_date, order.overdue) == (MON, WED, False)
    assert not ledger.get_order(oid, None, end - 1).overdue
    assert ledger.get_order(oid, None, end).overdue
    assert ledger.get_order(oid, "AP-1", end + DAY_MS).overdue
    assert [o.overdue for o in ledger.list_orders(now_ms=end)] == [True]
    assert [o.overdue for o in ledger.list_orders(F1, ACCEPTED, "AP-1", end - 1)] == [False]
    assert not ledger.get_order(oid).overdue and not ledger.list_orders()[0].overdue  # without now_ms
    assert desk.state()["orders"][0]["overdue"] is False
    done = desk.run(m.CancelOrder(order_id=oid, reason="overdue"), now=end)  # the issuer cancels it
    assert (done.cancel_reason, ledger.get_order(oid, None, end).overdue) == ("overdue", False)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize("case", ["settled", "cancelled", "rejected", "calendar removed", "no calendar"])
def test_never_overdue(ledger, case):
    desk = sample(ledger) if case == "no calendar" else on_calendar(ledger)
    order = desk.order(CREATE, 51 if case == "rejected" else 1)
    if case == "settled":
        desk.settle(order.order_id)
    elif case == "cancelled":
        desk.cancel(order.order_id)
    elif case == "calendar removed":
        desk.update(F1, calendar_id="")
    later = hk(THU) + 30 * DAY_MS
    assert not ledger.get_order(order.order_id, None, later).overdue
    assert not ledger.list_orders(now_ms=later)[0].overdue
