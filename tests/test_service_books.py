"""The fund's books over the wire (SPEC §17 fees, §20 four eyes, §22): the real server on loopback.

The sample fund F1 (test_service: 200 BTC, 3,000 ETH of which 895 staked, 125,000.00 cash, 2,000,000
shares) is put on the calendar DESK of test_service_dealing_day (Hong Kong, every day a dealing day)
with a management fee of 0.99% a year, ACT_365, paid in cash. Monday's strike at the official prices
(BTC 97,000, ETH 3,400) accrues one day on the basis 29,725,000.00:

    29,725,000.00 x 0.0099 / 365 = 806.2397... -> fee 806.24, official NAV 29,724,193.76

PayFee is under four eyes by default: "ops" proposes, "ops-2" approves. Refusals are followed by a
comparison of the whole canonical state (instructions included): bad input changes nothing. The server
runs test_service's ``make_ledger`` (ETF_LEDGER=reference|core; the compiled core when built).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest
from playwright import sync_api as playwright_api
from test_console import Session
from test_console import browser as browser  # noqa: F401  (the fixture: one Chromium for the module)
from test_http import metrics
from test_service import FUND, FUND2, T0, TOKENS, Clock, Desk, config, load_sample, make_ledger, refused
from test_service_dealing_day import MONDAY, MONDAY_CUTOFF, OFFICIAL, TUESDAY

from etf_engine.api.auth import ACCESS, ISSUER, OBSERVER, PACKAGE
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, FeeWaiver, FundAssetTerms, PendingInstruction, Tick, instruction_status
from etf_engine.config import ConfigError, parse_config
from etf_engine.v1 import engine_pb2 as pb

Code = grpc.StatusCode
BTC_WALLET = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
DAY_MS = 86_400_000
# Monday's strike of F1 with the fee above
BASIS, FEE, OFFICIAL_NAV = "29725000.00", "806.24", "29724193.76"
LIVE_GROSS = "29812650.00"  # 200 x 97,250 + 3,000 x 3,412.55 + 125,000.00: the live NAV before any fee
LIVE_NAV = "29811843.76"  # the same less the accrued 806.24


@contextmanager
def serving_sample(data_dir: Path, prepare: Callable[[Desk], object] = lambda desk: None,
                   **overrides: Any) -> Iterator[Desk]:
    """A server with the HTTP listener, the test clock and the sample funds, then ``prepare``d: the
    fund's books' service tests (fees, storage, reconciliation) each start here."""
    clock = Clock()
    settings = {"data_dir": data_dir, "test_clock": True, "http_listen": "127.0.0.1:0", **overrides}
    with BackgroundServer(config(**settings), ledger=make_ledger(), clock=clock) as server:
        d = Desk(server, clock)
        try:
            load_sample(d.issuer)
            prepare(d)
            yield d
        finally:
            d.close()


def on_desk(desk: Desk, **terms: Any) -> None:
    """F1 on the DESK calendar (Hong Kong, no weekend), with ``terms``."""
    desk.issuer.register_calendar("DESK", "Asia/Hong_Kong", weekend_days=[])
    desk.issuer.update_fund(FUND, calendar_id="DESK", **terms)


def serving(data_dir: Path, **overrides: Any) -> contextlib.AbstractContextManager[Desk]:
    """The sample funds; F1 on DESK with its fee."""
    return serving_sample(data_dir, lambda desk: on_desk(desk, management_fee_rate="0.0099"), **overrides)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with serving(tmp_path) as d:
        yield d


def strike_monday(desk: Desk) -> pb.StrikeNavReply:
    desk.issuer.advance_clock(MONDAY_CUTOFF)
    return desk.issuer.strike_nav(FUND, MONDAY, OFFICIAL)


def unchanged(desk: Desk, call: Callable[[], object], code: grpc.StatusCode) -> str:
    before = desk.state()
    details = refused(call, code)
    assert desk.state() == before
    return details


def connect(desk: Desk, method: str, body: Any, token: str = TOKENS["issuer"]) -> tuple[int, Any]:
    """A Connect JSON unary call: (HTTP status, the JSON answered)."""
    request = urllib.request.Request(
        f"{desk.server.http_url}/{PACKAGE}.{method}", method="POST", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def books(desk: Desk) -> Any:
    """The canonical state but for the instructions: what a pending instruction must leave alone."""
    return msgspec.structs.replace(desk.state(), instructions=[], next_instruction_seq=0)


def figures(desk: Desk, fund_id: str = FUND) -> tuple[str, str, str]:
    nav = desk.observer.get_nav(fund_id)
    return nav.nav, nav.cash, nav.accrued_fees


def records(client: EtfClient, after: int = 0) -> list[pb.JournalRecord]:
    """Every record after ``after`` that is there now (the stream then waits: cut it after 1.5 s)."""
    got = []
    stream = client.stream_events(after, timeout=1.5)
    try:
        got.extend(stream)
    except grpc.RpcError as e:
        assert e.code() == Code.DEADLINE_EXCEEDED, e
    return got


# == the surface ======================================================================================
def test_the_new_rpcs_have_the_roles_of_spec_22() -> None:
    for method, roles in {"Admin/PayFee": {ISSUER}, "Admin/ApproveInstruction": {ISSUER},
                          "Admin/RejectInstruction": {ISSUER}, "Admin/ListInstructions": {ISSUER, OBSERVER}}.items():
        assert ACCESS[f"/{PACKAGE}.{method}"] == roles, method


def test_enum_names_are_spec_22s() -> None:
    def names(enum: Any) -> list[str]:
        return [v.name for v in enum.DESCRIPTOR.values if v.number]

    assert names(pb.FeePayment.Value) == ["CASH", "IN_KIND"]
    assert names(pb.FeeDayCount.Value) == ["ACT_365", "ACT_ACT"]
    assert names(pb.InstructionStatus.Value) == ["PENDING", "EXECUTED", "FAILED", "REJECTED"]


# == fees (SPEC §17) ==================================================================================
def test_a_strike_accrues_the_fee_into_the_official_nav_and_the_live_nav(desk: Desk) -> None:
    assert figures(desk) == (LIVE_GROSS, "125000.00", "0.00")
    stream = desk.observer.stream_nav(FUND, timeout=30)
    try:
        assert next(stream).nav.accrued_fees == "0.00"
        struck = strike_monday(desk)
        # the strike changes the live NAV too (the fee is in it from then on): StreamNav sends it
        assert next(u for u in stream if not u.heartbeat).nav.accrued_fees == FEE
    finally:
        stream.cancel()
    nav = struck.nav
    assert (nav.fee, nav.fee_days, nav.fee_basis, nav.accrued_fees, list(nav.fee_payable)) == (
        FEE, 1, BASIS, FEE, [])
    assert (nav.nav, nav.nav_per_share, nav.cash) == (OFFICIAL_NAV, "14.8621", "125000.00")
    assert desk.ap1.get_official_nav(FUND, MONDAY) == nav
    assert figures(desk) == (LIVE_NAV, "125000.00", FEE)
    assert desk.ap1.get_basket(FUND).accrued_fees == FEE
    assert list(desk.observer.get_holdings(FUND).fee_payable) == []
    # a fund without a fee shows zeros, also in the official NAV's fee figures
    assert figures(desk, FUND2)[2] == "0.00"


def test_the_fee_terms_read_back_from_list_funds(desk: Desk) -> None:
    desk.issuer.update_fund(FUND, fee_day_count="ACT_ACT",
                            fee_waiver=FeeWaiver("0.0012", "5000000000.00", "2026-12-31"),
                            assets=[FundAssetTerms("ETH", "0.30", "0.10", 604_800, "75", "0.18")])
    f1 = next(f for f in desk.ap1.list_funds() if f.fund_id == FUND)
    assert (f1.management_fee_rate, f1.fee_day_count, f1.fee_payment, f1.fee_asset, f1.fee_custodian_id) == (
        "0.0099", pb.FeeDayCount.ACT_ACT, pb.FeePayment.CASH, "", "")
    assert (f1.HasField("fee_waiver"), f1.fee_waiver.rate, f1.fee_waiver.nav_limit, f1.fee_waiver.until) == (
        True, "0.0012", "5000000000.00", "2026-12-31")
    assert [(a.asset, a.staking_cap, a.liquidity_buffer, a.unbonding_seconds, a.seed_quantity_per_unit,
             a.staking_fee_rate) for a in f1.assets] == [
        ("BTC", "0.00", "0.00", 0, "0", "0.00"), ("ETH", "0.30", "0.10", 604_800, "75", "0.18")]
    desk.issuer.update_fund(FUND, fee_waiver=FeeWaiver(until=""))  # removes the waiver
    assert not next(f for f in desk.ap1.list_funds() if f.fund_id == FUND).HasField("fee_waiver")
    f2 = next(f for f in desk.issuer.list_funds() if f.fund_id == FUND2)
    assert (f2.management_fee_rate, f2.fee_day_count, f2.fee_payment) == ("0.00", pb.FeeDayCount.ACT_365,
                                                                           pb.FeePayment.CASH)


def test_the_staking_fee_is_kept_beside_the_net_reward(desk: Desk) -> None:
    desk.issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", "0.30", "0.10", 604_800, "75", "0.18")])
    after = len(records(desk.observer))
    desk.issuer.record_staking_reward(FUND, "C1", "ETH", "10")  # gross: 10 ETH at 0.18 -> 8.2 to the fund
    row = next(r for r in desk.observer.get_holdings(FUND).holdings if (r.custodian_id, r.asset) == ("C1", "ETH"))
    assert row.available == "1113.2"  # 1,105 + 8.2
    (reward,) = [r for r in records(desk.observer, after) if r.type == "RewardRecorded"]
    body = json.loads(reward.body)
    assert (body["quantity"], body["gross"], body["staking_fee"], body["net"]) == ("8.2", "10", "1.8", "8.2")


def test_in_kind_fee_moves_into_fee_payable_and_is_paid_out_under_four_eyes(desk: Desk) -> None:
    issuer, second = desk.issuer, desk.clients["issuer2"]
    issuer.update_fund(FUND, fee_payment="IN_KIND", fee_asset="BTC", fee_custodian_id="C1")
    nav = strike_monday(desk).nav
    # q = floor(806.24 x 10^8 / 97,000) = 831,175 satoshis; 0.00025 stays accrued (shown 0.00)
    assert (nav.fee, nav.accrued_fees, nav.nav) == (FEE, "0.00", OFFICIAL_NAV)
    assert [(x.asset, x.quantity) for x in nav.fee_payable] == [("BTC", "0.00831175")]
    assert [(x.asset, x.quantity) for x in nav.lines] == [("BTC", "199.99168825"), ("ETH", "3000")]
    holdings = desk.observer.get_holdings(FUND)
    assert [(x.asset, x.quantity) for x in holdings.fee_payable] == [("BTC", "0.00831175")]
    assert next(r.available for r in holdings.holdings if (r.custodian_id, r.asset) == ("C1", "BTC")) \
        == "149.99168825"

    for bad, field in ((dict(asset="BTC", quantity="0.00831175", tx_hash="tx-1", to_address="0x1234"), "to_address"),
                       (dict(asset="BTC", quantity="0.000000001", tx_hash="tx-1", to_address=BTC_WALLET),
                        "quantity"),
                       (dict(amount="1.00", asset="BTC", quantity="0.001", tx_hash="tx-1", to_address=BTC_WALLET),
                        "amount")):
        assert field in unchanged(desk, lambda b=bad: issuer.pay_fee(FUND, **b), Code.INVALID_ARGUMENT)
    assert unchanged(desk, lambda: issuer.pay_fee(FUND, asset="BTC", quantity="0.00831176", tx_hash="tx-1",
                                                  to_address=BTC_WALLET),
                     Code.FAILED_PRECONDITION).startswith("FEE_EXCEEDS_ACCRUED")
    reply = issuer.pay_fee(FUND, asset="BTC", quantity="0.008", tx_hash="tx-1", to_address=BTC_WALLET)
    assert reply.pending
    done = second.approve_instruction(reply.instruction_id)
    assert instruction_status(done.status) == "EXECUTED"
    assert [(x.asset, x.quantity) for x in desk.observer.get_holdings(FUND).fee_payable] == [("BTC", "0.00031175")]


# == four eyes (SPEC §20) =============================================================================
def test_pay_fee_proposed_approved_failed_rejected_and_listed(desk: Desk) -> None:
    issuer, second, observer = desk.issuer, desk.clients["issuer2"], desk.observer
    strike_monday(desk)
    seq_before = len(records(observer))

    # ops proposes: the reply is pending and nothing but the instruction is recorded
    before = books(desk)
    proposed = issuer.pay_fee(FUND, "800.00")
    assert (proposed.instruction_id, proposed.pending) == ("INS-00000001", True)
    assert books(desk) == before
    assert figures(desk) == (LIVE_NAV, "125000.00", FEE)
    (pending,) = observer.list_instructions("PENDING")
    assert (pending.instruction_id, pending.rpc, instruction_status(pending.status), pending.proposed_by,
            pending.proposed_at, pending.decided_by, pending.decided_at) == (
        "INS-00000001", "PayFee", "PENDING", "ops", MONDAY_CUTOFF, "", 0)
    assert json.loads(pending.request) == {"fund_id": FUND, "amount": "800.00", "asset": "", "quantity": "",
                                           "tx_hash": "", "to_address": ""}

    # the proposer may not approve it (four eyes, checked first); an observer or a participant may not either
    assert "four eyes" in unchanged(desk, lambda: issuer.approve_instruction("INS-00000001"), Code.PERMISSION_DENIED)
    unchanged(desk, lambda: observer.approve_instruction("INS-00000001"), Code.PERMISSION_DENIED)
    unchanged(desk, lambda: desk.ap1.approve_instruction("INS-00000001"), Code.PERMISSION_DENIED)
    unchanged(desk, lambda: second.approve_instruction("INS-00000099"), Code.NOT_FOUND)

    # ops-2 approves: executed now; cash and the accrued fee go down together, the NAV stays
    executed = second.approve_instruction("INS-00000001")
    assert (instruction_status(executed.status), executed.decided_by, executed.decided_at, executed.error) == (
        "EXECUTED", "ops-2", MONDAY_CUTOFF, "")
    assert figures(desk) == (LIVE_NAV, "124200.00", "6.24")
    assert unchanged(desk, lambda: second.approve_instruction("INS-00000001"),
                     Code.FAILED_PRECONDITION).startswith("INSTRUCTION_NOT_PENDING")

    # every refusal PayFee would give now, it gives now (nothing recorded)
    assert unchanged(desk, lambda: issuer.pay_fee(FUND, "6.25"), Code.FAILED_PRECONDITION).startswith(
        "FEE_EXCEEDS_ACCRUED")
    assert "amount" in unchanged(desk, lambda: issuer.pay_fee(FUND, "1.001"), Code.INVALID_ARGUMENT)
    unchanged(desk, lambda: issuer.pay_fee("NOPE", "1.00"), Code.NOT_FOUND)

    # two proposals that fit alone but not together: the second approved is executed against the state
    # then, refused, and kept FAILED with its error; ApproveInstruction itself answers OK
    first, stale = issuer.pay_fee(FUND, "6.00"), issuer.pay_fee(FUND, "5.00")
    assert (first.instruction_id, stale.instruction_id) == ("INS-00000002", "INS-00000003")
    assert instruction_status(second.approve_instruction(first.instruction_id).status) == "EXECUTED"
    failed = second.approve_instruction(stale.instruction_id)
    assert (instruction_status(failed.status), failed.decided_by) == ("FAILED", "ops-2")
    assert failed.error.startswith("FEE_EXCEEDS_ACCRUED"), failed.error
    assert figures(desk) == (LIVE_NAV, "124194.00", "0.24")

    # RejectInstruction: any issuer principal, the proposer included (a withdrawal), with a reason
    withdrawn = issuer.pay_fee(FUND, "0.20")
    assert "reason" in unchanged(desk, lambda: issuer.reject_instruction(withdrawn.instruction_id, "x" * 257),
                                 Code.INVALID_ARGUMENT)
    unchanged(desk, lambda: observer.reject_instruction(withdrawn.instruction_id), Code.PERMISSION_DENIED)
    rejected = issuer.reject_instruction(withdrawn.instruction_id, "wrong amount")
    assert (instruction_status(rejected.status), rejected.decided_by, rejected.reason) == (
        "REJECTED", "ops", "wrong amount")
    assert unchanged(desk, lambda: second.approve_instruction(withdrawn.instruction_id),
                     Code.FAILED_PRECONDITION).startswith("INSTRUCTION_NOT_PENDING")
    assert unchanged(desk, lambda: second.reject_instruction(withdrawn.instruction_id),
                     Code.FAILED_PRECONDITION).startswith("INSTRUCTION_NOT_PENDING")
    assert figures(desk) == (LIVE_NAV, "124194.00", "0.24")

    # ListInstructions: issuer and observer, by id, one status or all
    every = observer.list_instructions()
    assert [(i.instruction_id, instruction_status(i.status)) for i in every] == [
        ("INS-00000001", "EXECUTED"), ("INS-00000002", "EXECUTED"), ("INS-00000003", "FAILED"),
        ("INS-00000004", "REJECTED")]
    assert issuer.list_instructions() == every
    assert [i.instruction_id for i in observer.list_instructions("FAILED")] == ["INS-00000003"]
    assert observer.list_instructions("PENDING") == []
    refused(lambda: desk.ap1.list_instructions(), Code.PERMISSION_DENIED)
    bad_status = pb.ListInstructionsRequest(status=9)  # type: ignore[arg-type]
    assert "status" in refused(lambda: observer._call(observer._admin.ListInstructions, bad_status),
                               Code.INVALID_ARGUMENT)

    # StreamEvents: the executed call's event has the approver as principal and the proposer in its body
    new = records(observer, seq_before)
    kinds = [(r.type, r.principal) for r in new]
    assert kinds[:3] == [("InstructionProposed", "ops"), ("FeePaid", "ops-2"), ("InstructionDecided", "ops-2")]
    paid = json.loads(new[1].body)
    assert (paid["fund_id"], paid["amount"], paid["proposed_by"], paid["principal"]) == (FUND, "800.00", "ops",
                                                                                         "ops-2")
    proposal = json.loads(new[0].body)["instruction"]
    assert (proposal["instruction_id"], proposal["rpc"], proposal["status"], proposal["proposed_by"]) == (
        "INS-00000001", "PayFee", "PENDING", "ops")
    decided = [json.loads(r.body) for r in new if r.type == "InstructionDecided"]
    assert [(d["instruction_id"], d["status"], d["decided_by"]) for d in decided] == [
        ("INS-00000001", "EXECUTED", "ops-2"), ("INS-00000002", "EXECUTED", "ops-2"),
        ("INS-00000003", "FAILED", "ops-2"), ("INS-00000004", "REJECTED", "ops")]
    assert decided[2]["error"].startswith("FEE_EXCEEDS_ACCRUED")
    assert sum(r.type == "FeePaid" for r in new) == 2  # the failed one paid nothing


def test_the_strike_event_carries_the_fee_figures_as_decimal_strings(desk: Desk) -> None:
    strike_monday(desk)
    (struck,) = [json.loads(r.body) for r in records(desk.observer) if r.type == "NavStruck"]
    nav = struck["nav"]
    assert (nav["fee"], nav["fee_days"], nav["fee_basis"], nav["accrued_fees"], nav["fee_payable"]) == (
        FEE, 1, BASIS, FEE, [])
    terms = next(json.loads(r.body)["terms"] for r in records(desk.observer) if r.type == "FundUpdated")
    assert (terms["management_fee_rate"], terms["fee_day_count"], terms["fee_payment"]) == (
        "0.0099", "ACT_365", "CASH")


def test_a_listed_rpc_replies_pending_over_connect_and_in_the_typed_client(tmp_path: Path) -> None:
    with serving(tmp_path, four_eyes=("PayFee", "AdjustCash", "SettleOrder")) as desk:
        issuer, second = desk.issuer, desk.clients["issuer2"]
        # the sample's opening cash was only proposed
        (opening,) = desk.observer.list_instructions("PENDING")
        assert (opening.instruction_id, opening.rpc, json.loads(opening.request)["delta"]) == (
            "INS-00000001", "AdjustCash", "125000.00")
        assert figures(desk)[1] == "0.00"
        second.approve_instruction(opening.instruction_id)
        assert figures(desk)[1] == "125000.00"
        reply = issuer.adjust_cash(FUND, "-1000.00", "custody fee")
        assert (reply.instruction_id, reply.pending) == ("INS-00000002", True)
        assert figures(desk)[1] == "125000.00"
        second.approve_instruction(reply.instruction_id)
        assert figures(desk)[1] == "124000.00"
        order = desk.ap1.submit_order(FUND, "CREATE", 1, "c-1")  # Dealing is not under four eyes
        with pytest.raises(PendingInstruction) as info:
            issuer.settle_order(order.order_id)
        assert info.value.instruction_id == "INS-00000003"
        # the same over Connect JSON
        request = urllib.request.Request(
            f"{desk.server.http_url}/{PACKAGE}.Admin/AdjustCash", method="POST",
            data=json.dumps({"fundId": FUND, "delta": "1.00", "reason": "r"}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKENS['issuer']}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read()) == {"instructionId": "INS-00000004", "pending": True}
        # RegisterAsset is not listed here: it acts at once and says so
        assert issuer.register_asset("SOL", 9) == pb.RegisterAssetReply()


def test_with_an_empty_list_pay_fee_acts_at_once(tmp_path: Path) -> None:
    with serving(tmp_path, four_eyes=()) as desk:
        strike_monday(desk)
        reply = desk.issuer.pay_fee(FUND, "806.24")
        assert (reply.instruction_id, reply.pending) == ("", False)
        assert figures(desk) == (LIVE_NAV, "124193.76", "0.00")
        assert desk.observer.list_instructions() == []


# == bad input ========================================================================================
def _update(client: EtfClient, **fields: Any) -> Any:
    return client._call(client._admin.UpdateFund, pb.UpdateFundRequest(fund_id=FUND, **fields))


def _create(client: EtfClient, **fields: Any) -> Any:
    request = pb.CreateFundRequest(fund_id="F3", name="Fee fund", base_currency="USD", creation_unit=10,
                                   creation_custodian_id="C1", custodian_priority=["C1"], calendar_id="DESK",
                                   **{"assets": [pb.FundAsset(asset="BTC")], **fields})
    return client._call(client._admin.CreateFund, request)


BAD_FEE_TERMS = [
    ("rate with 7 digits", lambda c: _update(c, management_fee_rate="0.0000001"), "management_fee_rate"),
    ("rate of 10%", lambda c: _update(c, management_fee_rate="0.1"), "management_fee_rate"),
    ("negative rate", lambda c: _update(c, management_fee_rate="-0.01"), "management_fee_rate"),
    ("unknown day count", lambda c: _update(c, fee_day_count=7), "fee_day_count"),
    ("unknown fee payment", lambda c: _update(c, fee_payment=9), "fee_payment"),
    ("IN_KIND without fee_asset", lambda c: _update(c, fee_payment=pb.FeePayment.IN_KIND), "fee_asset"),
    ("waiver rate with 7 digits", lambda c: _update(c, fee_waiver=pb.FeeWaiver(rate="0.0000001", until=TUESDAY)),
     "fee_waiver.rate"),
    ("waiver until not a date", lambda c: _update(c, fee_waiver=pb.FeeWaiver(until="31/12/2026")), "until"),
    ("staking fee rate of 1", lambda c: _update(c, assets=[pb.FundAsset(
        asset="ETH", staking_cap="0.30", liquidity_buffer="0.10", unbonding_seconds=604_800,
        seed_quantity_per_unit="75", staking_fee_rate="1")]), "staking_fee_rate"),
    ("CreateFund rate with 7 digits", lambda c: _create(c, management_fee_rate="0.0025001"), "management_fee_rate"),
    ("CreateFund fee without a calendar", lambda c: c._call(c._admin.CreateFund, pb.CreateFundRequest(
        fund_id="F3", name="n", base_currency="USD", creation_unit=10, creation_custodian_id="C1",
        assets=[pb.FundAsset(asset="BTC")], management_fee_rate="0.001")), "management_fee_rate"),
    ("CreateFund unknown fee payment", lambda c: _create(c, fee_payment=5), "fee_payment"),
    ("CreateFund staking fee rate with 7 digits", lambda c: _create(c, assets=[pb.FundAsset(
        asset="BTC", staking_fee_rate="0.1234567")]), "staking_fee_rate"),
]


@pytest.mark.parametrize("what, call, field", BAD_FEE_TERMS, ids=[b[0] for b in BAD_FEE_TERMS])
def test_bad_fee_terms_name_the_field_and_change_nothing(desk: Desk, what: str, call: Callable[[EtfClient], object],
                                                         field: str) -> None:
    details = unchanged(desk, lambda: call(desk.issuer), Code.INVALID_ARGUMENT)
    assert field in details, (what, details)


# == metrics ==========================================================================================
def test_the_accrued_fee_is_a_gauge(desk: Desk) -> None:
    assert metrics(desk)["etf_engine_accrued_fees"] == {(("fund_id", FUND),): 0.0, (("fund_id", FUND2),): 0.0}
    strike_monday(desk)
    found = metrics(desk)
    assert found["etf_engine_accrued_fees"][(("fund_id", FUND),)] == 806.24
    assert found["etf_engine_nav"][(("fund_id", FUND),)] == float(LIVE_NAV)


# == the config's four_eyes ===========================================================================
def test_four_eyes_in_the_config(tmp_path: Path) -> None:
    def parse(value: Any) -> tuple[str, ...]:
        return parse_config({"four_eyes": value}, base_dir=tmp_path, source="etf.toml").four_eyes

    assert parse_config({}, base_dir=tmp_path).four_eyes == ("PayFee", "ResolveBreak")
    assert parse(["AdjustHolding", "AdjustCash", "PayFee"]) == ("AdjustHolding", "AdjustCash", "PayFee")
    assert parse([]) == ()
    assert parse(["ResolveBreak"]) == ("ResolveBreak",)  # SPEC §19's
    for value, where, words in (
        (["PayFees"], "four_eyes[0]", "'PayFees' is not an Admin RPC that changes state"),
        (["PayFee", "GetHoldings"], "four_eyes[1]", "'GetHoldings' is not an Admin RPC that changes state"),
        (["SubmitOrder"], "four_eyes[0]", "not an Admin RPC"),
        (["ApproveInstruction"], "four_eyes[0]", "decides instructions"),
        (["RejectInstruction"], "four_eyes[0]", "decides instructions"),
        (["PayFee", "PayFee"], "four_eyes[1]", "listed twice"),
        ("PayFee", "four_eyes", "expected an array"),
        ([1], "four_eyes", "expected an array"),
    ):
        with pytest.raises(ConfigError) as info:
            parse(value)
        message = str(info.value)
        assert message.startswith(f"etf.toml: {where}: ") and words in message, message
        assert "\n" not in message and len(message) <= 1024


def test_a_bad_four_eyes_list_stops_serve_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from etf_engine import cli

    path = tmp_path / "etf.toml"
    path.write_text('listen = "127.0.0.1:0"\nfour_eyes = ["PayFee", "Nope"]\n', encoding="utf-8")
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "four_eyes[1]" in err and "'Nope'" in err and "Traceback" not in err, err


def test_time_runs_on(desk: Desk) -> None:
    """The fixture's clock and calendar: Monday is the fund's first dealing date, Tuesday its next."""
    assert desk.issuer.get_leader().now_unix_ms == T0
    strike_monday(desk)
    desk.issuer.advance_clock(MONDAY_CUTOFF + DAY_MS)
    tuesday = desk.issuer.strike_nav(FUND, TUESDAY, [Tick(t.asset, t.currency, t.price, MONDAY_CUTOFF + DAY_MS)
                                                     for t in OFFICIAL]).nav
    # one more day on the basis 29,724,193.76: 29,724,193.76 x 0.0099 / 365 = 806.2179... -> 806.22
    assert (tuesday.fee_days, tuesday.fee_basis, tuesday.fee, tuesday.accrued_fees) == (
        1, OFFICIAL_NAV, "806.22", "1612.46")


# == the console ======================================================================================
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is missing (.ci/run installs it)")
def test_the_console_shows_accrued_fees_fee_payable_and_pending_instructions(
        desk: Desk, browser: playwright_api.Browser) -> None:
    desk.issuer.update_fund(FUND, fee_payment="IN_KIND", fee_asset="BTC", fee_custodian_id="C1")
    strike_monday(desk)  # 0.00831175 BTC taken in kind, 0.00025 left accrued (shown 0.00)
    desk.issuer.update_fund(FUND, fee_payment="CASH")
    desk.issuer.advance_clock(MONDAY_CUTOFF + DAY_MS)
    desk.issuer.strike_nav(FUND, TUESDAY, [Tick(t.asset, t.currency, t.price, MONDAY_CUTOFF + DAY_MS)
                                           for t in OFFICIAL])
    accrued = desk.observer.get_nav(FUND).accrued_fees
    assert accrued not in ("", "0.00")
    proposed = desk.issuer.pay_fee(FUND, "100.00")
    expect = playwright_api.expect
    session = Session(browser, desk.server.http_url, TOKENS["observer"])
    page = session.page
    try:
        row = page.locator(f'#funds tr[data-fund="{FUND}"]')
        expect(row.locator(".accrued")).to_have_text(figure_text(accrued), timeout=10_000)
        expect(page.locator(f'#funds tr[data-fund="{FUND2}"] .accrued')).to_have_text("0.00")
        pending = page.locator(f'#instructions tr[data-instruction="{proposed.instruction_id}"]')
        expect(pending).to_contain_text("PayFee", timeout=10_000)
        expect(pending).to_contain_text("amount 100.00")
        expect(pending).to_contain_text("ops")
        row.click()
        expect(page.locator("#fee-payable")).to_have_text(
            "Fee payable (taken in kind, not yet paid): 0.00831175 BTC", timeout=10_000)
        # approved elsewhere: the list empties within its refresh (5 s)
        desk.clients["issuer2"].approve_instruction(proposed.instruction_id)
        expect(pending).to_have_count(0, timeout=10_000)
        expect(page.locator("#instructions tbody")).to_contain_text("none pending")
        accrued = desk.observer.get_nav(FUND).accrued_fees  # 100.00 less, live on the page (StreamNav)
        expect(row.locator(".accrued")).to_have_text(figure_text(accrued), timeout=10_000)
        # a participant is shown no instructions and calls no ListInstructions
        participant = Session(browser, desk.server.http_url, TOKENS["ap1"])
        try:
            expect(participant.page.locator(f'#funds tr[data-fund="{FUND}"] .accrued')).to_have_text(
                figure_text(accrued), timeout=10_000)
            assert participant.page.locator("#instructions-box").is_hidden()
            assert not [path for path in participant.requests if "ListInstructions" in path]
        finally:
            participant.context.close()
    finally:
        session.context.close()


def figure_text(text: str) -> str:
    from etf_engine.table import figure

    return figure(text)


# == etf-engine apply =================================================================================
FEE_FUND = """
[[funds]]
fund_id = "F-FEE"
name = "Fee fund"
base_currency = "USD"
creation_unit = 10
creation_custodian_id = "C1"
custodian_priority = ["C1"]
calendar_id = "DESK"
management_fee_rate = "{rate}"
fee_day_count = "ACT_ACT"
fee_payment = "IN_KIND"
fee_asset = "ETH"
fee_custodian_id = "C1"
{waiver}
[[funds.assets]]
asset = "ETH"
staking_cap = "0.30"
liquidity_buffer = "0.10"
seed_quantity_per_unit = "1"
staking_fee_rate = "{staking}"
"""


def test_apply_takes_the_fee_terms(desk: Desk, tmp_path: Path) -> None:
    import io

    from etf_engine import apply

    def run(rate: str, staking: str, waiver: str, four_eyes_client: EtfClient | None = None) -> tuple[int, str]:
        path = tmp_path / "fund.toml"
        path.write_text(FEE_FUND.format(rate=rate, staking=staking, waiver=waiver), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        code = apply.run(path, four_eyes_client or desk.issuer, target=desk.target, dry_run=False, out=out, err=err)
        return code, out.getvalue() + err.getvalue()

    waiver = 'fee_waiver = { rate = "0.0012", nav_limit = "5000000000", until = 2026-12-31 }'
    code, said = run("0.0025", "0.18", waiver)
    assert code == 0 and "created fund F-FEE (CreateFund)" in said, said
    fund = next(f for f in desk.observer.list_funds() if f.fund_id == "F-FEE")
    assert (fund.management_fee_rate, fund.fee_day_count, fund.fee_payment, fund.fee_asset, fund.fee_custodian_id,
            fund.fee_waiver.rate, fund.fee_waiver.nav_limit, fund.fee_waiver.until) == (
        "0.0025", pb.FeeDayCount.ACT_ACT, pb.FeePayment.IN_KIND, "ETH", "C1", "0.0012", "5000000000.00", "2026-12-31")
    assert [(a.asset, a.staking_fee_rate) for a in fund.assets] == [("ETH", "0.18")]
    code, said = run("0.002500", "0.180", waiver.replace('"0.0012"', '"0.001200"'))  # the same figures
    assert code == 0 and "nothing to do" in said, said
    # a new rate, a new staking fee, and the waiver left out: UpdateFund removes it
    code, said = run("0.0030", "0.2", "")
    assert code == 0, said
    assert "management_fee_rate 0.0025 -> 0.003" in said and "fee_waiver 0.0012 on the first 5000000000.00 until " \
        "2026-12-31 -> none" in said and "assets[ETH].staking_fee_rate 0.18 -> 0.20" in said, said
    fund = next(f for f in desk.observer.list_funds() if f.fund_id == "F-FEE")
    assert (fund.management_fee_rate, fund.HasField("fee_waiver"), fund.assets[0].staking_fee_rate) == (
        "0.003", False, "0.20")
    code, said = run("0.0000001", "0.2", "")
    assert code == 2 and "management_fee_rate" in said, said


def test_apply_says_which_calls_were_only_proposed(tmp_path: Path) -> None:
    import io

    from etf_engine import apply

    with serving(tmp_path, four_eyes=("SetHolidays",)) as desk:
        path = tmp_path / "calendar.toml"
        path.write_text('[[calendars]]\ncalendar_id = "DESK"\ntime_zone = "Asia/Hong_Kong"\nholidays = [2026-12-25]\n'
                        'weekend_days = { days = [] }\n', encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        assert apply.run(path, desk.issuer, target=desk.target, dry_run=False, out=out, err=err) == 0, err.getvalue()
        said = out.getvalue()
        assert "update calendar DESK (SetHolidays): holidays [] -> [2026-12-25]: proposed as instruction " \
               "INS-00000001, pending approval by another issuer principal" in said, said
        assert "applied 0 changes to" in said and "1 pending approval (four eyes)" in said, said
        assert list(desk.observer.get_calendar("DESK").holidays) == []
        desk.clients["issuer2"].approve_instruction("INS-00000001")
        assert list(desk.observer.get_calendar("DESK").holidays) == ["2026-12-25"]
