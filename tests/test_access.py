"""Each RPC declared once (issue 18): who may call it is its method option in the proto, from which
the role table of gRPC and Connect and README's table are derived; command RPCs are served by one
generic path. The literal tables below are the ones the code held before, kept only here."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.protobuf.descriptor_pb2 import MethodOptions

from etf_engine import model as M
from etf_engine.api import access, convert, servicers
from etf_engine.api.auth import ACCESS, ISSUER, OBSERVER, PACKAGE, PARTICIPANT, ROLES, Principal, authorize
from etf_engine.errors import PERMISSION_DENIED, EngineError
from etf_engine.v1 import access_pb2
from etf_engine.v1 import engine_pb2 as pb

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[1] / "README.md"
_ALL = frozenset(ROLES)
_ISSUER = frozenset({ISSUER})

# The role table as auth.py wrote it out before it was read from the proto (SPEC §10, §16).
LITERAL_ACCESS: dict[str, frozenset[str]] = {
    **{f"/{PACKAGE}.Admin/{m}": _ISSUER for m in (
        "RegisterAsset", "RegisterCustodian", "SetCustodianLicence", "RegisterParticipant", "CreateFund",
        "UpdateFund", "AdjustHolding", "AdjustCash", "Stake", "Unstake", "RecordStakingReward",
        "RecordSlashing", "PublishPrices", "SettleOrder", "RegisterCalendar", "SetHolidays", "CloseDealingDay",
        "StrikeNav", "RegisterWallet", "ApproveWallet", "RevokeWallet", "RecordDelivery", "RecordPayout",
        "PayFee", "ApproveInstruction", "RejectInstruction",  # issue 20 (SPEC §22): these three
        "Sweep", "SetStoragePolicy",  # SPEC §18, §22: storage tiers
        "RecordStatement", "ResolveBreak",  # SPEC §19, §22: reconciliation
        "Checkpoint")},  # SPEC §21, §22: the audit trail
    f"/{PACKAGE}.Admin/GetHoldings": frozenset({ISSUER, OBSERVER}),
    f"/{PACKAGE}.Admin/ListBreaks": frozenset({ISSUER, OBSERVER}),  # SPEC §19, §22
    f"/{PACKAGE}.Admin/GetBreak": frozenset({ISSUER, OBSERVER}),
    f"/{PACKAGE}.Admin/ListInstructions": frozenset({ISSUER, OBSERVER}),  # issue 20
    f"/{PACKAGE}.Admin/ListWallets": _ALL,  # a participant: its own only (the servicer checks)
    f"/{PACKAGE}.Admin/GetCalendar": frozenset({ISSUER, OBSERVER}),
    f"/{PACKAGE}.Admin/ListParticipants": frozenset({ISSUER, OBSERVER}),
    f"/{PACKAGE}.Valuation/StreamEvents": frozenset({ISSUER, OBSERVER}),
    **{f"/{PACKAGE}.Dealing/{m}": frozenset({PARTICIPANT}) for m in (
        "SubmitOrder", "SubmitOrders", "CheckOrder", "GetCapacity")},
    f"/{PACKAGE}.Dealing/GetOrder": _ALL,
    f"/{PACKAGE}.Dealing/ListOrders": _ALL,
    f"/{PACKAGE}.Dealing/CancelOrder": frozenset({PARTICIPANT, ISSUER}),
    **{f"/{PACKAGE}.Valuation/{m}": _ALL for m in (
        "GetNav", "StreamNav", "GetBasket", "GetOfficialNav", "ListOfficialNavs", "GetPcf", "ListFunds")},
    # SPEC §21, §22: reports (a participant: its own activity) and the audit trail's proofs
    **{f"/{PACKAGE}.Reports/{m}": frozenset({ISSUER, OBSERVER}) for m in (
        "DailyReport", "HoldingsReport", "RollForward", "StakingReport", "BreakReport")},
    f"/{PACKAGE}.Reports/ParticipantActivity": _ALL,
    **{f"/{PACKAGE}.Valuation/{m}": _ALL for m in ("GetCheckpoint", "GetInclusionProof", "GetConsistencyProof")},
    f"/{PACKAGE}.Diagnostics/Ping": _ALL,
    f"/{PACKAGE}.Diagnostics/GetLeader": _ALL,
    f"/{PACKAGE}.Diagnostics/AdvanceClock": _ISSUER,  # and only with test_clock = true
    f"/{PACKAGE}.Diagnostics/WhoAmI": _ALL,  # issue 19: added after the literal table, for the console
}

# What a participant reaches, as the servicers' checks and SPEC §8 say it.
LITERAL_SCOPES = {
    **{f"Dealing/{m}": access.AS_ITSELF for m in ("SubmitOrder", "SubmitOrders", "CheckOrder", "GetCapacity")},
    **{f"Dealing/{m}": access.OWN_ORDERS for m in ("GetOrder", "ListOrders", "CancelOrder")},
    **{f"Valuation/{m}": access.ELIGIBLE_FUNDS for m in (
        "GetNav", "StreamNav", "GetBasket", "GetOfficialNav", "ListOfficialNavs", "GetPcf", "ListFunds")},
    "Admin/ListWallets": access.OWN_WALLETS,
    "Reports/ParticipantActivity": access.OWN_ORDERS,
    **{f"Valuation/{m}": access.NO_FUND_DATA for m in ("GetCheckpoint", "GetInclusionProof", "GetConsistencyProof")},
    "Diagnostics/Ping": access.NO_FUND_DATA,
    "Diagnostics/GetLeader": access.NO_FUND_DATA,
    "Diagnostics/WhoAmI": access.NO_FUND_DATA,
}


def test_the_role_table_from_the_proto_is_the_one_written_before() -> None:
    assert ACCESS == LITERAL_ACCESS


def test_participant_scopes_and_test_clock_from_the_proto() -> None:
    scopes = {path.removeprefix(f"/{PACKAGE}."): r.participant_scope
              for path, r in access.RULES.items() if r.participant_scope}
    assert scopes == LITERAL_SCOPES
    assert [p for p, r in access.RULES.items() if r.test_clock_only] == [f"/{PACKAGE}.Diagnostics/AdvanceClock"]


def test_every_rpc_declares_its_rule() -> None:
    methods = [f"/{s.full_name}/{m.name}" for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods]
    assert sorted(access.RULES) == sorted(methods)


def test_the_proto_roles_are_the_config_roles() -> None:
    names = {v.name.lower() for v in access_pb2.Access.Role.DESCRIPTOR.values if v.number}
    assert names == set(ROLES) == set(access.ROLE_ORDER)


def _service(*methods: tuple[str, MethodOptions]) -> SimpleNamespace:
    return SimpleNamespace(full_name=f"{PACKAGE}.Test", methods=[
        SimpleNamespace(name=name, GetOptions=lambda options=options: options) for name, options in methods])


def _options(**fields: object) -> MethodOptions:
    options = MethodOptions()
    options.Extensions[access_pb2.access].CopyFrom(access_pb2.Access(**fields))  # type: ignore[arg-type]
    return options


def test_a_method_without_the_option_is_refused_to_everyone() -> None:
    table = access.rules([_service(("Open", _options(roles=[access_pb2.Access.ISSUER])), ("Bare", MethodOptions()))])
    assert table == {f"/{PACKAGE}.Test/Open": access.Rule(frozenset({ISSUER}), "")}
    for role in ROLES:
        with pytest.raises(EngineError) as info:
            authorize(f"/{PACKAGE}.Test/Bare", Principal("p", role, "0" * 64, "AP" if role == PARTICIPANT else None))
        assert info.value.code == PERMISSION_DENIED


@pytest.mark.parametrize("fields", [
    {"roles": [access_pb2.Access.PARTICIPANT]},  # a participant without a scope
    {"roles": [access_pb2.Access.ISSUER], "participant_scope": access_pb2.Access.OWN_ORDERS},  # a scope, no participant
    {"roles": [access_pb2.Access.ROLE_UNSPECIFIED]},
])
def test_an_inconsistent_option_is_refused_at_start(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        access.rules([_service(("Odd", _options(**fields)))])


def test_readme_holds_exactly_the_table_from_the_proto() -> None:
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"<!-- access table:[^\n]*-->\n(.*?)<!-- end of access table -->", text, re.S)
    assert found == [access.markdown_table()]


# == the generic path of command RPCs ===============================================================
COMMAND_RPCS = {
    "Admin": {"RegisterAsset", "RegisterCustodian", "SetCustodianLicence", "RegisterParticipant", "CreateFund",
              "UpdateFund", "AdjustHolding", "AdjustCash", "Stake", "Unstake", "RecordStakingReward",
              "RecordSlashing", "PublishPrices", "SettleOrder", "RegisterCalendar", "SetHolidays", "CloseDealingDay",
              "StrikeNav", "RegisterWallet", "ApproveWallet", "RevokeWallet", "RecordDelivery", "RecordPayout",
              "PayFee", "ApproveInstruction", "RejectInstruction", "Sweep", "SetStoragePolicy", "RecordStatement",
              "ResolveBreak"},
    "Dealing": {"SubmitOrder", "SubmitOrders", "CancelOrder"},
    "Valuation": set(),
    "Reports": set(),
    "Diagnostics": set(),
}


# Command RPCs whose servicer is written out: RecordStatement fills its command's book as of the statement's
# as_of from the journal (SPEC §19), which no request field says.
WRITTEN_OUT = {"RecordStatement"}


def test_command_rpcs_are_served_by_the_generic_path() -> None:
    assert {s: set(table) for s, table in servicers.COMMANDS.items()} == COMMAND_RPCS
    for cls in (servicers.AdminServicer, servicers.DealingServicer):
        for name in COMMAND_RPCS[cls.SERVICE] - WRITTEN_OUT:
            assert getattr(cls, name).__qualname__ == name  # _serve's, not a method written in the class
    for name in WRITTEN_OUT:
        assert getattr(servicers.AdminServicer, name).__qualname__ == f"AdminServicer.{name}"
    caller = {n: c.caller for table in servicers.COMMANDS.values() for n, c in table.items() if c.caller}
    assert caller == {"RegisterWallet": ("principal",), "ApproveWallet": ("principal",), "RevokeWallet": ("principal",),
                      "ApproveInstruction": ("principal",), "RejectInstruction": ("principal",),
                      "ResolveBreak": ("principal",),
                      "SubmitOrder": ("participant_id",), "SubmitOrders": ("participant_id",),
                      "CancelOrder": ("participant_id",)}


def test_request_rules() -> None:
    # an optional left absent takes the default; an unspecified enum too where there is one
    assert convert.command(M.RegisterAsset, pb.RegisterAssetRequest(symbol="BTC", decimals=8), {}) == \
        M.RegisterAsset(symbol="BTC", decimals=8, min_confirmations=1)
    assert convert.command(M.RegisterAsset, pb.RegisterAssetRequest(min_confirmations=0), {}).min_confirmations == 0
    # without a default, the enum's zero is "" and an unknown number its text: the ledger names the field
    licence = convert.command(M.SetCustodianLicence, pb.SetCustodianLicenceRequest(licence_status=0), {})
    assert licence.licence_status == ""
    unknown = pb.SetCustodianLicenceRequest(custodian_id="C", licence_status=9)  # type: ignore[arg-type]
    assert convert.command(M.SetCustodianLicence, unknown, {}).licence_status == "9"
    # empty strings take defaults in CreateFund's assets, and go to the ledger in UpdateFund's
    create = convert.command(M.CreateFund, pb.CreateFundRequest(assets=[pb.FundAsset(asset="BTC")]), {})
    assert (create.assets, create.creation_fee, create.dealing_cutoff) == ([M.FundAssetSpec(asset="BTC")], "0", "16:00")
    update = convert.command(M.UpdateFund, pb.UpdateFundRequest(fund_id="F", assets=[pb.FundAsset(asset="BTC")]), {})
    assert update.assets == [M.FundAssetSpec(asset="BTC", staking_cap="", liquidity_buffer="",
                                             seed_quantity_per_unit="")]
    # what comes from the caller wins over the request
    wallet = convert.command(M.RegisterWallet, pb.RegisterWalletRequest(participant_id="AP"), {"principal": "ops"})
    assert (wallet.participant_id, wallet.principal) == ("AP", "ops")


def test_a_request_field_the_command_lacks_is_found_at_start() -> None:
    assert convert.unconverted(pb.StakeRequest, M.Stake) == []
    assert convert.unconverted(pb.RecordPayoutRequest, M.Stake) == [
        "RecordPayoutRequest.order_id: Stake has no such field", "RecordPayoutRequest.tx_hash: Stake has no such field",
        "Stake.fund_id: not in RecordPayoutRequest"]
    assert convert.unconverted(pb.ApproveWalletRequest, M.SubmitOrder, ["participant_id"]) == [
        "ApproveWalletRequest.wallet_id: SubmitOrder has no such field",
        "SubmitOrder.request: not in ApproveWalletRequest"]
