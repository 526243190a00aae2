"""Storage tiers over the wire (SPEC §18, §22): the real server on loopback, over gRPC and Connect JSON.

The sample fund F1 of test_service (C1: 150 BTC and 2,000 ETH of which 895 staked; C2: 50 BTC and
1,000 ETH) is created now, so what enters its holdings enters hot: every holding starts all hot. At the
custodians' default policy (min_cold_ratio 0.98, max_hot_seconds 86,400) C1's BTC, held 150, needs
ceil(0.98 x 150) = 147 in cold and allows floor(0.02 x 150) = 3 in hot and warm: in breach until swept.
F1 is put on the calendar DESK of test_service_dealing_day (Hong Kong, every day a dealing day) so
that it can be struck on Monday at the official prices.

Refusals are followed by a comparison of the whole canonical state: bad input changes nothing. The
server runs test_service's ``make_ledger`` (ETF_LEDGER=reference|core; the compiled core when built).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright import sync_api as playwright_api
from test_console import Session
from test_console import browser as browser  # noqa: F401  (the fixture: one Chromium for the module)
from test_http import metrics
from test_service import FUND, FUND2, TOKENS, Desk
from test_service_books import connect, on_desk, records, serving_sample, unchanged
from test_service_dealing_day import MONDAY, MONDAY_CUTOFF, OFFICIAL

from etf_engine.api import servicers
from etf_engine.api.auth import ACCESS, ISSUER, PACKAGE
from etf_engine.client import FundAssetTerms, instruction_status
from etf_engine.config import parse_config
from etf_engine.v1 import engine_pb2 as pb

Code = grpc.StatusCode
BTC_TERMS = dict(staking_cap="0", liquidity_buffer="0", unbonding_seconds=0, seed_quantity_per_unit="0")
ETH_TERMS = dict(staking_cap="0.30", liquidity_buffer="0.10", unbonding_seconds=604_800, seed_quantity_per_unit="75")


def serving(data_dir: Path, **overrides: Any) -> contextlib.AbstractContextManager[Desk]:
    """The sample funds; F1 on DESK."""
    return serving_sample(data_dir, on_desk, **overrides)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with serving(tmp_path) as d:
        yield d


def tiers(desk: Desk, custodian_id: str, asset: str, fund_id: str = FUND) -> tuple[Any, ...]:
    """(cold, warm, hot, cold_required, hot_allowance, breach, idle) of one holding, as GetHoldings shows it."""
    row = next(r for r in desk.observer.get_holdings(fund_id).holdings if (r.custodian_id, r.asset) == (
        custodian_id, asset))
    assert row.HasField("tiers"), row
    t = row.tiers
    return t.cold, t.warm, t.hot, t.cold_required, t.hot_allowance, t.breach, t.idle


def sweep_request(**fields: Any) -> pb.SweepRequest:
    values = dict(fund_id=FUND, custodian_id="C1", asset="BTC", quantity="1", from_tier=pb.Tier.HOT,
                  to_tier=pb.Tier.COLD)
    return pb.SweepRequest(**{**values, **fields})


# == the surface ======================================================================================
def test_the_rpcs_and_the_tier_enum_are_spec_22s() -> None:
    for method in ("Admin/Sweep", "Admin/SetStoragePolicy"):
        assert ACCESS[f"/{PACKAGE}.{method}"] == {ISSUER}, method
    assert [v.name for v in pb.Tier.Value.DESCRIPTOR.values if v.number] == ["COLD", "WARM", "HOT"]
    # both change state: their replies can say "pending", and four_eyes may list them
    for name in ("Sweep", "SetStoragePolicy"):
        assert name in servicers.FOUR_EYES_RPCS
        reply = servicers.COMMANDS["Admin"][name].reply
        assert [f.name for f in reply.DESCRIPTOR.fields] == ["instruction_id", "pending"]


def test_four_eyes_may_list_them(tmp_path: Path) -> None:
    parsed = parse_config({"four_eyes": ["Sweep", "SetStoragePolicy"]}, base_dir=tmp_path)
    assert parsed.four_eyes == ("Sweep", "SetStoragePolicy")
    assert servicers.AdminServicer(None, parsed.four_eyes).four_eyes == {"Sweep", "SetStoragePolicy"}  # type: ignore


# == tiers in GetHoldings =============================================================================
def test_a_fund_created_now_fills_hot_and_is_in_breach_until_swept(desk: Desk) -> None:
    assert tiers(desk, "C1", "BTC") == ("0", "0", "150", "147", "3", True, False)
    # ETH: held is available + reserved (1,105); the 895 staked are not split
    assert tiers(desk, "C1", "ETH") == ("0", "0", "1105", "1082.9", "22.1", True, False)
    assert tiers(desk, "C2", "BTC") == ("0", "0", "50", "49", "1", True, False)
    for row in desk.issuer.get_holdings(FUND).holdings:  # every row has its tiers
        assert row.HasField("tiers"), row

    reply = desk.issuer.sweep(FUND, "C1", "BTC", "147", "HOT", "COLD")
    assert (reply.instruction_id, reply.pending) == ("", False)
    assert tiers(desk, "C1", "BTC") == ("147", "0", "3", "147", "3", False, False)
    desk.issuer.sweep(FUND, "C1", "BTC", "1.5", "HOT", "WARM")
    assert tiers(desk, "C1", "BTC") == ("147", "1.5", "1.5", "147", "3", False, False)
    desk.issuer.sweep(FUND, "C1", "BTC", "0.00000001", "COLD", "WARM")  # one satoshi short of the ratio
    assert tiers(desk, "C1", "BTC") == ("146.99999999", "1.50000001", "1.5", "147", "3", True, False)
    # the other rows did not move
    assert tiers(desk, "C2", "BTC") == ("0", "0", "50", "49", "1", True, False)


def test_what_leaves_leaves_hot_then_warm_then_cold(desk: Desk) -> None:
    desk.issuer.sweep(FUND, "C1", "BTC", "140", "HOT", "COLD")
    desk.issuer.sweep(FUND, "C1", "BTC", "6", "HOT", "WARM")  # cold 140, warm 6, hot 4
    desk.issuer.adjust_holding(FUND, "C1", "BTC", "-7", "custody fee")  # 4 from hot, 3 from warm
    assert tiers(desk, "C1", "BTC")[:3] == ("140", "3", "0")
    desk.issuer.adjust_holding(FUND, "C1", "BTC", "2", "correction")  # what enters, enters hot
    assert tiers(desk, "C1", "BTC")[:3] == ("140", "3", "2")


def test_the_policy_and_a_fund_assets_own_ratio(desk: Desk) -> None:
    reply = desk.issuer.set_storage_policy("C1", "0.95", 43_200)
    assert (reply.instruction_id, reply.pending) == ("", False)
    assert tiers(desk, "C1", "ETH")[3:5] == ("1049.75", "55.25")  # ceil(0.95 x 1,105), floor(0.05 x 1,105)
    assert tiers(desk, "C1", "BTC")[3:5] == ("142.5", "7.5")
    assert tiers(desk, "C2", "BTC")[3:5] == ("49", "1")  # another custodian's policy
    # a fund asset's own ratio wins over the custodian's; ListFunds shows it ("" where the policy applies)
    desk.issuer.update_fund(FUND, assets=[FundAssetTerms("BTC", **BTC_TERMS, min_cold_ratio="0.90")])
    assert tiers(desk, "C1", "BTC")[3:5] == ("135", "15")
    assert tiers(desk, "C2", "BTC")[3:5] == ("45", "5")
    assert tiers(desk, "C1", "ETH")[3:5] == ("1049.75", "55.25")
    f1 = next(f for f in desk.observer.list_funds() if f.fund_id == FUND)
    assert [(a.asset, a.min_cold_ratio) for a in f1.assets] == [("BTC", "0.90"), ("ETH", "")]
    # an entry without one goes back to the custodian's
    desk.issuer.update_fund(FUND, assets=[FundAssetTerms("BTC", **BTC_TERMS)])
    assert tiers(desk, "C1", "BTC")[3:5] == ("142.5", "7.5")
    assert [a.min_cold_ratio for a in next(f for f in desk.observer.list_funds() if f.fund_id == FUND).assets] == [
        "", ""]
    # CreateFund takes it too
    desk.issuer.create_fund("F3", "Cold fund", "USD", 10, "C1", ["C1"],
                            [FundAssetTerms("BTC", min_cold_ratio="1")])
    f3 = next(f for f in desk.observer.list_funds() if f.fund_id == "F3")
    assert [(a.asset, a.min_cold_ratio) for a in f3.assets] == [("BTC", "1.00")]


def test_payouts_due_lower_cold_required_and_raise_the_hot_allowance(desk: Desk) -> None:
    # settles on its dealing date, the next dealing day; a cap that lets 75 ETH go
    desk.issuer.update_fund(FUND, redeem_settlement_days=0,
                            assets=[FundAssetTerms("ETH", **{**ETH_TERMS, "staking_cap": "0.50"})])
    order = desk.ap1.submit_order(FUND, "REDEEM", 1, "r-1")
    assert [(leg.custodian_id, leg.asset, leg.quantity) for leg in order.legs] == [
        ("C1", "BTC", "5"), ("C1", "ETH", "75")]
    # held is unchanged while the coins are reserved; 5 BTC due: 147 - 5 in cold, 3 + 5 in hot and warm
    assert tiers(desk, "C1", "BTC") == ("0", "0", "150", "142", "8", True, False)
    desk.issuer.settle_order(order.order_id)  # the leg leaves hot
    assert tiers(desk, "C1", "BTC") == ("0", "0", "145", "142.1", "2.9", True, False)


def test_hot_left_above_its_allowance_for_longer_than_max_hot_seconds_is_idle(desk: Desk) -> None:
    desk.issuer.set_storage_policy("C2", "0.98", 60)
    desk.issuer.advance_clock(desk.issuer.get_leader().now_unix_ms + 61_000)
    assert tiers(desk, "C2", "BTC")[5:] == (True, True)
    assert tiers(desk, "C1", "BTC")[5:] == (True, False)  # C1 allows a day
    desk.issuer.sweep(FUND, "C2", "BTC", "49", "HOT", "COLD")  # hot 1 = its allowance: neither
    assert tiers(desk, "C2", "BTC") == ("49", "0", "1", "49", "1", False, False)


# == Sweep and SetStoragePolicy: refusals =============================================================
def test_insufficient_tier_balance(desk: Desk) -> None:
    desk.issuer.sweep(FUND, "C1", "BTC", "10", "HOT", "WARM")
    for quantity, source, target in (("10.00000001", "WARM", "COLD"), ("0.00000001", "COLD", "HOT"),
                                     ("140.00000001", "HOT", "COLD")):
        details = unchanged(desk, lambda q=quantity, s=source, t=target: desk.issuer.sweep(FUND, "C1", "BTC", q, s, t),
                            Code.FAILED_PRECONDITION)
        assert details.startswith("INSUFFICIENT_TIER_BALANCE"), details
    desk.issuer.sweep(FUND, "C1", "BTC", "10", "WARM", "COLD")  # all of it
    assert tiers(desk, "C1", "BTC")[:3] == ("10", "0", "140")
    # the same over Connect: failed_precondition, HTTP 400, the code first
    status, body = connect(desk, "Admin/Sweep", {"fundId": FUND, "custodianId": "C1", "asset": "BTC",
                                                 "quantity": "10.1", "fromTier": "COLD", "toTier": "HOT"})
    assert (status, body["code"]) == (400, "failed_precondition")
    assert body["message"].startswith("INSUFFICIENT_TIER_BALANCE"), body


BAD_SWEEPS = [
    ("tier unspecified", dict(from_tier=pb.Tier.TIER_UNSPECIFIED), "from_tier"),
    ("tier unknown to the server", dict(to_tier=7), "to_tier"),
    ("the same tier twice", dict(from_tier=pb.Tier.COLD, to_tier=pb.Tier.COLD), "to_tier"),
    ("quantity zero", dict(quantity="0"), "quantity"),
    ("quantity negative", dict(quantity="-1"), "quantity"),
    ("quantity past the asset's decimals", dict(quantity="0.000000001"), "quantity"),
    ("quantity empty", dict(quantity=""), "quantity"),
    ("an asset the fund does not hold", dict(fund_id=FUND2, asset="ETH"), "asset"),
]


@pytest.mark.parametrize("what, fields, field", BAD_SWEEPS, ids=[b[0] for b in BAD_SWEEPS])
def test_a_bad_sweep_names_the_field(desk: Desk, what: str, fields: dict[str, Any], field: str) -> None:
    issuer = desk.issuer
    details = unchanged(desk, lambda: issuer._call(issuer._admin.Sweep, sweep_request(**fields)),
                        Code.INVALID_ARGUMENT)
    assert field in details, (what, details)


BAD_POLICIES = [
    ("ratio above 1", dict(min_cold_ratio="1.01"), "min_cold_ratio"),
    ("ratio below 0", dict(min_cold_ratio="-0.1"), "min_cold_ratio"),
    ("ratio with 5 digits", dict(min_cold_ratio="0.98765"), "min_cold_ratio"),
    ("ratio empty", dict(min_cold_ratio=""), "min_cold_ratio"),
    ("ratio not a number", dict(min_cold_ratio="most"), "min_cold_ratio"),
    ("negative seconds", dict(max_hot_seconds=-1), "max_hot_seconds"),
]


@pytest.mark.parametrize("what, fields, field", BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_a_bad_policy_names_the_field(desk: Desk, what: str, fields: dict[str, Any], field: str) -> None:
    issuer = desk.issuer
    request = pb.SetStoragePolicyRequest(**{"custodian_id": "C1", "min_cold_ratio": "0.95",
                                            "max_hot_seconds": 3600, **fields})
    details = unchanged(desk, lambda: issuer._call(issuer._admin.SetStoragePolicy, request), Code.INVALID_ARGUMENT)
    assert field in details, (what, details)


def test_max_hot_seconds_past_its_bound_is_out_of_range(desk: Desk) -> None:
    issuer = desk.issuer
    request = pb.SetStoragePolicyRequest(custodian_id="C1", min_cold_ratio="0.95", max_hot_seconds=10**9 + 1)
    assert "max_hot_seconds" in unchanged(desk, lambda: issuer._call(issuer._admin.SetStoragePolicy, request),
                                          Code.OUT_OF_RANGE)
    issuer.set_storage_policy("C1", "0.95", 10**9)  # the bound itself


def test_a_bad_fund_asset_ratio_names_the_field(desk: Desk) -> None:
    issuer = desk.issuer
    for ratio in ("1.5", "-0.01", "0.12345", "x"):
        update = pb.UpdateFundRequest(fund_id=FUND, assets=[pb.FundAsset(asset="BTC", **BTC_TERMS,
                                                                         min_cold_ratio=ratio)])
        assert "min_cold_ratio" in unchanged(desk, lambda u=update: issuer._call(issuer._admin.UpdateFund, u),
                                             Code.INVALID_ARGUMENT)
        create = pb.CreateFundRequest(fund_id="F3", name="n", base_currency="USD", creation_unit=10,
                                      creation_custodian_id="C1", custodian_priority=["C1"],
                                      assets=[pb.FundAsset(asset="BTC", min_cold_ratio=ratio)])
        assert "min_cold_ratio" in unchanged(desk, lambda c=create: issuer._call(issuer._admin.CreateFund, c),
                                             Code.INVALID_ARGUMENT)


def test_not_found_and_who_may_call(desk: Desk) -> None:
    unchanged(desk, lambda: desk.issuer.sweep("NOPE", "C1", "BTC", "1", "HOT", "COLD"), Code.NOT_FOUND)
    unchanged(desk, lambda: desk.issuer.sweep(FUND, "C9", "BTC", "1", "HOT", "COLD"), Code.NOT_FOUND)
    unchanged(desk, lambda: desk.issuer.set_storage_policy("C9", "0.9", 60), Code.NOT_FOUND)
    for who in ("observer", "ap1"):
        client = desk.clients[who]
        unchanged(desk, lambda c=client: c.sweep(FUND, "C1", "BTC", "1", "HOT", "COLD"), Code.PERMISSION_DENIED)
        unchanged(desk, lambda c=client: c.set_storage_policy("C1", "0.9", 60), Code.PERMISSION_DENIED)


# == Connect JSON =====================================================================================
def test_sweep_and_set_storage_policy_over_connect_json(desk: Desk) -> None:
    status, body = connect(desk, "Admin/Sweep", {"fundId": FUND, "custodianId": "C1", "asset": "BTC",
                                                 "quantity": "147", "fromTier": "HOT", "toTier": "COLD"})
    assert (status, body) == (200, {})  # acted: pending false and no instruction_id, left out in JSON
    status, body = connect(desk, "Admin/SetStoragePolicy", {"custodian_id": "C2", "min_cold_ratio": "0.5",
                                                            "max_hot_seconds": "600"})
    assert (status, body) == (200, {})
    status, holdings = connect(desk, "Admin/GetHoldings", {"fundId": FUND}, TOKENS["observer"])
    assert status == 200
    found = {(r["custodianId"], r["asset"]): r["tiers"] for r in holdings["holdings"]}
    assert found[("C1", "BTC")] == {"cold": "147", "warm": "0", "hot": "3", "coldRequired": "147",
                                    "hotAllowance": "3"}  # breach and idle false: left out
    assert found[("C2", "BTC")] == {"cold": "0", "warm": "0", "hot": "50", "coldRequired": "25",
                                    "hotAllowance": "25", "breach": True}
    # a tier name the proto does not have: the codec's refusal, naming the field
    status, body = connect(desk, "Admin/Sweep", {"fund_id": FUND, "custodian_id": "C1", "asset": "BTC",
                                                 "quantity": "1", "from_tier": "HOT", "to_tier": "LUKEWARM"})
    assert (status, body["code"]) == (400, "invalid_argument")
    assert "to_tier" in body["message"], body
    # a ratio out of range: the ledger's refusal, naming the field
    status, body = connect(desk, "Admin/SetStoragePolicy", {"custodianId": "C2", "minColdRatio": "1.2",
                                                            "maxHotSeconds": "600"})
    assert (status, body["code"]) == (400, "invalid_argument")
    assert "min_cold_ratio" in body["message"], body
    status, body = connect(desk, "Admin/Sweep", {"fundId": FUND}, TOKENS["observer"])
    assert (status, body["code"]) == (403, "permission_denied")


# == the strike: storage_breaches =====================================================================
def test_strike_nav_records_the_breaches_at_the_strike(desk: Desk) -> None:
    desk.issuer.sweep(FUND, "C1", "BTC", "147", "HOT", "COLD")
    desk.issuer.sweep(FUND, "C2", "ETH", "979.99", "HOT", "COLD")  # 0.01 ETH short of 980
    desk.issuer.advance_clock(MONDAY_CUTOFF)
    nav = desk.issuer.strike_nav(FUND, MONDAY, OFFICIAL).nav
    # by custodian, then asset; C1's BTC meets its ratio
    assert [(b.custodian_id, b.asset, b.cold, b.cold_required) for b in nav.storage_breaches] == [
        ("C1", "ETH", "0", "1082.9"), ("C2", "BTC", "0", "49"), ("C2", "ETH", "979.99", "980")]
    assert desk.observer.get_official_nav(FUND, MONDAY) == nav  # the audit trail of them
    assert desk.ap1.get_official_nav(FUND, MONDAY).storage_breaches == nav.storage_breaches
    assert list(desk.observer.list_official_navs(FUND)) == [nav]
    (struck,) = [json.loads(r.body) for r in records(desk.observer) if r.type == "NavStruck"]
    assert struck["nav"]["storage_breaches"] == [
        {"custodian_id": "C1", "asset": "ETH", "cold": "0", "cold_required": "1082.9"},
        {"custodian_id": "C2", "asset": "BTC", "cold": "0", "cold_required": "49"},
        {"custodian_id": "C2", "asset": "ETH", "cold": "979.99", "cold_required": "980"}]


def test_a_strike_without_breaches_records_none(desk: Desk) -> None:
    for custodian_id in ("C1", "C2"):
        desk.issuer.set_storage_policy(custodian_id, "0", 86_400)
    desk.issuer.advance_clock(MONDAY_CUTOFF)
    assert list(desk.issuer.strike_nav(FUND, MONDAY, OFFICIAL).nav.storage_breaches) == []


# == StreamEvents =====================================================================================
def test_the_events_carry_their_figures_as_decimal_strings(desk: Desk) -> None:
    after = len(records(desk.observer))
    desk.issuer.sweep(FUND, "C1", "ETH", "1000.000000000000000001", "HOT", "WARM")
    desk.issuer.set_storage_policy("C1", "0.9", 7_200)
    desk.issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", **ETH_TERMS, min_cold_ratio="0.995")])
    new = records(desk.observer, after)
    assert [(r.type, r.principal) for r in new] == [("Swept", "ops"), ("StoragePolicySet", "ops"),
                                                    ("FundUpdated", "ops")]
    swept, policy, updated = (json.loads(r.body) for r in new)
    assert {k: swept[k] for k in ("fund_id", "custodian_id", "asset", "quantity", "from_tier", "to_tier")} == {
        "fund_id": FUND, "custodian_id": "C1", "asset": "ETH", "quantity": "1000.000000000000000001",
        "from_tier": "HOT", "to_tier": "WARM"}
    assert (policy["custodian_id"], policy["min_cold_ratio"], policy["max_hot_seconds"]) == ("C1", "0.90", 7_200)
    assert {a["asset"]: a["min_cold_ratio"] for a in updated["terms"]["assets"]} == {"BTC": "", "ETH": "0.995"}


# == four eyes ========================================================================================
def test_under_four_eyes_they_are_proposed_and_approved(tmp_path: Path) -> None:
    with serving(tmp_path, four_eyes=("PayFee", "Sweep", "SetStoragePolicy")) as desk:
        issuer, second = desk.issuer, desk.clients["issuer2"]
        before = tiers(desk, "C1", "BTC")
        proposed = issuer.sweep(FUND, "C1", "BTC", "147", "HOT", "COLD")
        assert (proposed.instruction_id, proposed.pending) == ("INS-00000001", True)
        assert tiers(desk, "C1", "BTC") == before  # nothing moved yet
        (pending,) = desk.observer.list_instructions("PENDING")
        assert (pending.rpc, json.loads(pending.request)) == ("Sweep", {
            "fund_id": FUND, "custodian_id": "C1", "asset": "BTC", "quantity": "147", "from_tier": "HOT",
            "to_tier": "COLD"})
        # every refusal Sweep would give now, it gives now (nothing recorded)
        assert unchanged(desk, lambda: issuer.sweep(FUND, "C1", "BTC", "1", "WARM", "COLD"),
                         Code.FAILED_PRECONDITION).startswith("INSUFFICIENT_TIER_BALANCE")
        assert "to_tier" in unchanged(desk, lambda: issuer.sweep(FUND, "C1", "BTC", "1", "HOT", "HOT"),
                                      Code.INVALID_ARGUMENT)
        assert "min_cold_ratio" in unchanged(desk, lambda: issuer.set_storage_policy("C1", "2", 60),
                                             Code.INVALID_ARGUMENT)
        executed = second.approve_instruction(proposed.instruction_id)
        assert (instruction_status(executed.status), executed.decided_by) == ("EXECUTED", "ops-2")
        assert tiers(desk, "C1", "BTC") == ("147", "0", "3", "147", "3", False, False)

        policy = issuer.set_storage_policy("C1", "0.5", 600)
        assert (policy.instruction_id, policy.pending) == ("INS-00000002", True)
        assert tiers(desk, "C1", "BTC")[3] == "147"
        second.approve_instruction(policy.instruction_id)
        assert tiers(desk, "C1", "BTC")[3:5] == ("75", "75")
        # a stale proposal fails at approval, against the state then
        first, stale = (issuer.sweep(FUND, "C1", "BTC", "2", "HOT", "WARM"),
                        issuer.sweep(FUND, "C1", "BTC", "2", "HOT", "WARM"))
        assert instruction_status(second.approve_instruction(first.instruction_id).status) == "EXECUTED"
        failed = second.approve_instruction(stale.instruction_id)
        assert instruction_status(failed.status) == "FAILED"
        assert failed.error.startswith("INSUFFICIENT_TIER_BALANCE"), failed.error
        # over Connect JSON the reply says so too
        status, body = connect(desk, "Admin/Sweep", {"fundId": FUND, "custodianId": "C1", "asset": "BTC",
                                                     "quantity": "1", "fromTier": "HOT", "toTier": "WARM"})
        assert (status, body) == (200, {"instructionId": "INS-00000005", "pending": True})
        new = [(r.type, r.principal) for r in records(desk.observer)]
        assert ("Swept", "ops-2") in new and ("StoragePolicySet", "ops-2") in new


# == metrics ==========================================================================================
def test_the_cold_ratio_and_the_breach_are_gauges(desk: Desk) -> None:
    def gauges() -> tuple[dict[tuple, float], dict[tuple, float]]:
        found = metrics(desk)
        return found["etf_engine_cold_ratio"], found["etf_engine_storage_breach"]

    def key(custodian_id: str, asset: str) -> tuple:
        return (("asset", asset), ("custodian_id", custodian_id), ("fund_id", FUND))

    ratio, breach = gauges()
    every = {key(c, a) for c in ("C1", "C2") for a in ("BTC", "ETH")}
    assert set(ratio) == set(breach) == every  # F2 holds nothing
    assert all(v == 0.0 for v in ratio.values()) and all(v == 1.0 for v in breach.values())
    desk.issuer.sweep(FUND, "C1", "BTC", "147", "HOT", "COLD")
    desk.issuer.sweep(FUND, "C2", "BTC", "25", "HOT", "COLD")
    ratio, breach = gauges()
    assert (ratio[key("C1", "BTC")], breach[key("C1", "BTC")]) == (0.98, 0.0)
    assert (ratio[key("C2", "BTC")], breach[key("C2", "BTC")]) == (0.5, 1.0)
    desk.issuer.set_storage_policy("C2", "0.5", 86_400)
    assert gauges()[1][key("C2", "BTC")] == 0.0


# == etf-engine apply =================================================================================
COLD_FUND = """
[[funds]]
fund_id = "F-COLD"
name = "Cold fund"
base_currency = "USD"
creation_unit = 10
creation_custodian_id = "C1"
custodian_priority = ["C1"]

[[funds.assets]]
asset = "BTC"
{btc}

[[funds.assets]]
asset = "ETH"
staking_cap = "0.30"
liquidity_buffer = "0.10"
{eth}
"""


def test_apply_takes_min_cold_ratio_per_asset(desk: Desk, tmp_path: Path) -> None:
    from etf_engine import apply

    def run(btc: str, eth: str) -> tuple[int, str]:
        path = tmp_path / "fund.toml"
        path.write_text(COLD_FUND.format(btc=btc, eth=eth), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        code = apply.run(path, desk.issuer, target=desk.target, dry_run=False, out=out, err=err)
        return code, out.getvalue() + err.getvalue()

    def ratios() -> list[tuple[str, str]]:
        fund = next(f for f in desk.observer.list_funds() if f.fund_id == "F-COLD")
        return [(a.asset, a.min_cold_ratio) for a in fund.assets]

    code, said = run('min_cold_ratio = "0.95"', "")
    assert code == 0 and "created fund F-COLD (CreateFund)" in said, said
    assert ratios() == [("BTC", "0.95"), ("ETH", "")]
    code, said = run('min_cold_ratio = "0.950"', "")  # the same figure
    assert code == 0 and "nothing to do" in said, said
    code, said = run("", 'min_cold_ratio = "1"')  # BTC back to the custodian's, ETH its own
    assert code == 0, said
    assert "assets[BTC].min_cold_ratio 0.95 -> the custodian's" in said, said
    assert "assets[ETH].min_cold_ratio the custodian's -> 1.00" in said, said
    assert ratios() == [("BTC", ""), ("ETH", "1.00")]
    code, said = run('min_cold_ratio = "1.5"', "")
    assert code == 2 and "min_cold_ratio" in said, said
    assert ratios() == [("BTC", ""), ("ETH", "1.00")]


# == the console ======================================================================================
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is missing (.ci/run installs it)")
def test_the_console_shows_the_tiers_and_highlights_a_breach(desk: Desk, browser: playwright_api.Browser) -> None:
    desk.issuer.sweep(FUND, "C1", "BTC", "147", "HOT", "COLD")
    desk.issuer.set_storage_policy("C2", "0.98", 60)
    desk.issuer.advance_clock(desk.issuer.get_leader().now_unix_ms + 61_000)  # C2's hot is idle now
    expect = playwright_api.expect
    session = Session(browser, desk.server.http_url, TOKENS["observer"])
    page = session.page
    try:
        page.locator(f'#funds tr[data-fund="{FUND}"]').click()
        ok = page.locator('#holdings tr[data-custodian="C1"][data-asset="BTC"]')
        expect(ok.locator("td.cold")).to_have_text("147", timeout=10_000)
        expect(ok).to_contain_text("ok")
        expect(ok).not_to_have_class("storage-breach")
        bad = page.locator('#holdings tr[data-custodian="C1"][data-asset="ETH"]')
        expect(bad).to_have_class("storage-breach")
        expect(bad.locator(".breach-flag")).to_have_text("BREACH: cold below required")
        expect(bad).to_contain_text("1,082.9")  # cold required
        expect(bad).to_contain_text("1,105")  # all of it hot
        idle = page.locator('#holdings tr[data-custodian="C2"][data-asset="BTC"]')
        expect(idle.locator(".idle-flag")).to_have_text("IDLE in hot")
        # swept elsewhere: the page reads the holdings again when the fund changes
        desk.issuer.sweep(FUND, "C1", "ETH", "1082.9", "HOT", "COLD")
        expect(bad).not_to_have_class("storage-breach", timeout=10_000)
        expect(bad.locator(".breach-flag")).to_have_count(0)
    finally:
        session.context.close()
