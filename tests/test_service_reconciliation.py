"""Reconciliation over the wire (SPEC §19, §22): the real server on loopback, over gRPC and Connect JSON.

The sample fund F1 of test_service: C1 holds 150 BTC and 2,000 ETH (1,105 available, 895 staked), C2
50 BTC and 1,000 ETH; C1 receives creations and pays redemptions first (priority C1, C2), and one unit
(50,000 shares) is 5 BTC and 75 ETH. The engine runs on the test's clock, which each step moves a few
seconds on (``later``), so that records have times of their own and a statement can be as of an instant
between them: it is compared with the book as it stood then, which the server reads from the journal.

ResolveBreak is under four eyes by default: "ops" proposes, "ops-2" approves. Refusals are followed by a
comparison of the whole canonical state: bad input changes nothing. The server runs test_service's
``make_ledger`` (ETF_LEDGER=reference|core; the compiled core when built).
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
from test_service import FUND, FUND2, T0, TOKENS, Clock, Desk, config, load_sample, make_ledger
from test_service import journal as journal  # noqa: F401  (the fixture: SQLite, and a PostgreSQL shard)
from test_service import pg_cluster as pg_cluster  # noqa: F401
from test_service_books import connect, records, serving_sample, unchanged

from etf_engine.api import servicers
from etf_engine.api.auth import ACCESS, ISSUER, OBSERVER, PACKAGE
from etf_engine.api.server import BackgroundServer
from etf_engine.client import (
    FundAssetTerms,
    StatementLine,
    break_classification,
    break_status,
    instruction_status,
    status_name,
)
from etf_engine.config import JournalConfig, parse_config
from etf_engine.v1 import engine_pb2 as pb

Code = grpc.StatusCode
BTC_WALLET = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
ETH_WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# C1's book as load_sample leaves it, as a statement that agrees with it says it
C1_BOOK = [StatementLine("BTC", "AVAILABLE", "150"), StatementLine("ETH", "AVAILABLE", "1105"),
           StatementLine("ETH", "STAKED", "895")]
C2_BOOK = [StatementLine("BTC", "AVAILABLE", "50"), StatementLine("ETH", "AVAILABLE", "1000")]


def serving(data_dir: Path, **overrides: Any) -> contextlib.AbstractContextManager[Desk]:
    """The sample funds."""
    return serving_sample(data_dir, **overrides)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with serving(tmp_path) as d:
        yield d


def later(desk: Desk, seconds: int = 5) -> int:
    """Move the engine's clock on by ``seconds`` (well within the prices' 60 s); the new time."""
    desk.clock.now += seconds * 1000
    return desk.clock.now


def now(desk: Desk) -> int:
    return desk.issuer.get_leader().now_unix_ms


def state(b: pb.Break) -> tuple[Any, ...]:
    """What a break says: (id, custodian, asset, bucket, tier, book, statement, difference, classification,
    status)."""
    return (b.break_id, b.custodian_id, b.asset, pb.Bucket.Value.Name(b.bucket),
            pb.Tier.Value.Name(b.tier) if b.tier else "", b.book, b.statement, b.difference,
            break_classification(b.classification), break_status(b.status))


def holding(desk: Desk, custodian_id: str, asset: str) -> pb.HoldingRow:
    return next(r for r in desk.observer.get_holdings(FUND).holdings if (r.custodian_id, r.asset) == (
        custodian_id, asset))


def approved(desk: Desk, asset: str, address: str) -> None:
    wallet = desk.issuer.register_wallet("AP-1", asset, address, "treasury")
    desk.clients["issuer2"].approve_wallet(wallet.wallet_id)


def timing_break(desk: Desk) -> tuple[pb.Order, pb.RecordStatementReply]:
    """AP-1 creates one unit; its 5 BTC are delivered to C1 with a confirmation (its 75 ETH without one, so
    not in flight), and C1's statement says 155 BTC and 894 ETH staked: BRK-00000001, BTC TIMING (the book
    150 + the 5 in flight), and BRK-00000002, ETH STAKED UNEXPLAINED."""
    approved(desk, "BTC", BTC_WALLET)
    approved(desk, "ETH", ETH_WALLET)
    later(desk)
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "c-1")
    assert [(d.asset, d.quantity) for d in order.deliverables] == [("BTC", "5"), ("ETH", "75")]
    later(desk)
    desk.issuer.record_delivery(order.order_id, "BTC", "5", "0xbtc-1", BTC_WALLET, 1)
    desk.issuer.record_delivery(order.order_id, "ETH", "75", "0xeth-1", ETH_WALLET, 0)
    at = later(desk)
    reply = desk.issuer.record_statement(FUND, "C1", at, "C1-2025-06-15", [
        StatementLine("BTC", "AVAILABLE", "155"), StatementLine("ETH", "AVAILABLE", "1105"),
        StatementLine("ETH", "STAKED", "894")])
    return order, reply


# == the surface ======================================================================================
def test_the_rpcs_enums_and_four_eyes_are_spec_22s() -> None:
    for method in ("RecordStatement", "ResolveBreak"):
        assert ACCESS[f"/{PACKAGE}.Admin/{method}"] == {ISSUER}, method
    for method in ("ListBreaks", "GetBreak"):
        assert ACCESS[f"/{PACKAGE}.Admin/{method}"] == {ISSUER, OBSERVER}, method
    names = {enum: [v.name for v in enum.Value.DESCRIPTOR.values if v.number]
             for enum in (pb.StatementSource, pb.Bucket, pb.BreakClassification, pb.BreakStatus)}
    assert names == {pb.StatementSource: ["CUSTODIAN", "CHAIN"], pb.Bucket: ["AVAILABLE", "STAKED", "UNBONDING"],
                     pb.BreakClassification: ["TIMING", "UNEXPLAINED"], pb.BreakStatus: ["OPEN", "RESOLVED"]}
    # both change state: their replies can say "pending", and four_eyes may list them
    for name in ("RecordStatement", "ResolveBreak"):
        assert name in servicers.FOUR_EYES_RPCS
        reply = servicers.COMMANDS["Admin"][name].reply
        assert {"instruction_id", "pending"} <= set(reply.DESCRIPTOR.fields_by_name)
    assert servicers.AdminServicer(None).four_eyes == {"PayFee", "ResolveBreak"}  # type: ignore[arg-type]
    assert servicers.AdminServicer(None, ("RecordStatement",)).four_eyes == {  # type: ignore[arg-type]
        "RecordStatement"}
    # every field of the model's break is on the wire
    from etf_engine import model as M

    assert [f.name for f in pb.Break.DESCRIPTOR.fields] == list(M.Break.__struct_fields__)


# == statements against the book at as_of ===========================================================
def test_a_statement_is_compared_with_the_book_as_of_its_instant(desk: Desk) -> None:
    issuer = desk.issuer
    sampled = now(desk)  # every record of the sample is at this instant
    later(desk, 10)
    issuer.adjust_holding(FUND, "C1", "BTC", "10", "found in a sweep")  # 160 from here on
    later(desk, 10)
    issuer.adjust_holding(FUND, "C1", "ETH", "-5", "custody fee")  # 1,100 available from here on
    later(desk, 10)
    # as of an instant before both adjustments: the book then (from the journal), so no break
    first = issuer.record_statement(FUND, "C1", sampled + 5_000, "C1-0001", C1_BOOK)
    assert (list(first.opened), list(first.resolved), first.ignored, first.pending, first.instruction_id) == (
        [], [], False, False, "")
    # between the two: 160 BTC (all of it hot), ETH as before; a tiered line is compared with its tier only
    second = issuer.record_statement(FUND, "C1", sampled + 15_000, "C1-0002", [
        StatementLine("BTC", "AVAILABLE", "160"), StatementLine("BTC", "AVAILABLE", "160", "HOT"),
        StatementLine("BTC", "AVAILABLE", "0", "COLD"), *C1_BOOK[1:]])
    assert list(second.opened) == []
    # now: the same lines differ from the book by the 5 ETH taken since
    third = issuer.record_statement(FUND, "C1", now(desk), "C1-0003", [
        StatementLine("BTC", "AVAILABLE", "160"), *C1_BOOK[1:]])
    assert [state(b) for b in third.opened] == [
        ("BRK-00000001", "C1", "ETH", "AVAILABLE", "", "1100", "1105", "-5", "UNEXPLAINED", "OPEN")]
    # the statement said 1,105 then, and the journal's book then was 1,105: a past one still agrees
    b = third.opened[0]
    assert (b.fund_id, b.reference, b.as_of, b.opened_at, list(b.order_ids), b.resolved_at) == (
        FUND, "C1-0003", now(desk), now(desk), [], 0)


def test_a_past_statement_on_each_journal(journal: JournalConfig) -> None:  # noqa: F811
    """The book at a past instant comes from the journal's records and history, SQLite's or PostgreSQL's."""
    clock = Clock()
    with BackgroundServer(config(journal=journal), ledger=make_ledger(), clock=clock) as server:
        desk = Desk(server, clock)
        try:
            load_sample(desk.issuer)
            sampled = now(desk)
            later(desk, 10)
            desk.issuer.adjust_holding(FUND, "C1", "BTC", "10", "found in a sweep")
            later(desk, 10)
            assert list(desk.issuer.record_statement(FUND, "C1", sampled + 5_000, "C1-0001", C1_BOOK).opened) == []
            after = desk.issuer.record_statement(FUND, "C1", sampled + 15_000, "C1-0002", C1_BOOK)
            assert [state(b) for b in after.opened] == [
                ("BRK-00000001", "C1", "BTC", "AVAILABLE", "", "160", "150", "10", "UNEXPLAINED", "OPEN")]
        finally:
            desk.close()


def test_an_omitted_asset_counts_as_zero_in_every_bucket_the_book_holds(desk: Desk) -> None:
    at = later(desk)
    reply = desk.issuer.record_statement(FUND, "C2", at, "C2-0001", C2_BOOK[:1], source="CHAIN")
    assert [state(b) for b in reply.opened] == [
        ("BRK-00000001", "C2", "ETH", "AVAILABLE", "", "1000", "0", "1000", "UNEXPLAINED", "OPEN")]
    # C1 without its ETH: both of ETH's buckets. BTC's AVAILABLE is named by a tiered line, which is
    # compared with its tier only (all of C1's BTC is hot: it agrees)
    reply = desk.issuer.record_statement(FUND, "C1", at, "C1-0001", [StatementLine("BTC", "AVAILABLE", "150", "HOT")])
    assert [state(b) for b in reply.opened] == [
        ("BRK-00000002", "C1", "ETH", "AVAILABLE", "", "1105", "0", "1105", "UNEXPLAINED", "OPEN"),
        ("BRK-00000003", "C1", "ETH", "STAKED", "", "895", "0", "895", "UNEXPLAINED", "OPEN")]


def test_timing_with_a_confirmed_delivery_closed_by_a_later_statement_unexplained_not(desk: Desk) -> None:
    order, reply = timing_break(desk)
    assert [state(b) for b in reply.opened] == [
        ("BRK-00000001", "C1", "BTC", "AVAILABLE", "", "150", "155", "-5", "TIMING", "OPEN"),
        ("BRK-00000002", "C1", "ETH", "STAKED", "", "895", "894", "1", "UNEXPLAINED", "OPEN")]
    timing, unexplained = reply.opened
    assert (list(timing.order_ids), list(timing.tx_hashes)) == ([order.order_id], ["0xbtc-1"])
    assert (list(unexplained.order_ids), list(unexplained.tx_hashes)) == ([], [])
    assert list(reply.resolved) == []

    later(desk)
    desk.issuer.settle_order(order.order_id)  # the 5 BTC and 75 ETH are the fund's now
    at = later(desk)
    # BTC and ETH staked agree with the book now: the TIMING break is resolved, the UNEXPLAINED one is not
    after = desk.issuer.record_statement(FUND, "C1", at, "C1-2025-06-16", [
        StatementLine("BTC", "AVAILABLE", "155"), StatementLine("ETH", "AVAILABLE", "1180"),
        StatementLine("ETH", "STAKED", "895")])
    assert (list(after.opened), list(after.resolved)) == ([], ["BRK-00000001"])
    closed = desk.observer.get_break("BRK-00000001")
    assert state(closed)[-1] == "RESOLVED"
    assert (closed.resolved_at, closed.resolved_by_reference, closed.adjustment) == (at, "C1-2025-06-16", "0")
    assert state(desk.observer.get_break("BRK-00000002"))[-1] == "OPEN"
    assert [b.break_id for b in desk.observer.list_breaks(FUND, "OPEN")] == ["BRK-00000002"]


def test_a_payout_in_flight_explains_a_statement_below_the_book(desk: Desk) -> None:
    desk.issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", "0.50", "0.10", 604_800, "75")])
    later(desk)
    order = desk.ap1.submit_order(FUND, "REDEEM", 1, "r-1")
    assert [(leg.custodian_id, leg.asset, leg.quantity) for leg in order.legs] == [
        ("C1", "BTC", "5"), ("C1", "ETH", "75")]
    later(desk)
    desk.issuer.record_payout(order.order_id, "C1", "BTC", "5", "0xpay-1")  # paid, not settled: still held
    at = later(desk)
    # the book's AVAILABLE is available + reserved (150); the custodian has paid the 5 out already
    reply = desk.issuer.record_statement(FUND, "C1", at, "C1-0001", [StatementLine("BTC", "AVAILABLE", "145"),
                                                                     *C1_BOOK[1:]])
    assert [state(b) for b in reply.opened] == [
        ("BRK-00000001", "C1", "BTC", "AVAILABLE", "", "150", "145", "5", "TIMING", "OPEN")]
    assert (list(reply.opened[0].order_ids), list(reply.opened[0].tx_hashes)) == ([order.order_id], ["0xpay-1"])
    # ETH's leg is not paid yet: nothing in flight, so 75 less is UNEXPLAINED
    at = later(desk)
    reply = desk.issuer.record_statement(FUND, "C1", at, "C1-0002", [
        StatementLine("BTC", "AVAILABLE", "145"), StatementLine("ETH", "AVAILABLE", "1030"), C1_BOOK[2]])
    assert [state(b)[8] for b in reply.opened] == ["TIMING", "UNEXPLAINED"]


def test_a_later_statement_that_still_differs_leaves_the_timing_break_open(desk: Desk) -> None:
    timing_break(desk)
    at = later(desk)  # the order is still in flight: the same figures open a new TIMING break
    reply = desk.issuer.record_statement(FUND, "C1", at, "C1-again", [
        StatementLine("BTC", "AVAILABLE", "155"), *C1_BOOK[1:]])
    assert [state(b)[:9] for b in reply.opened] == [
        ("BRK-00000003", "C1", "BTC", "AVAILABLE", "", "150", "155", "-5", "TIMING")]
    assert list(reply.resolved) == []
    assert [b.break_id for b in desk.observer.list_breaks(FUND, "OPEN")] == [
        "BRK-00000001", "BRK-00000002", "BRK-00000003"]


def test_the_same_reference_is_ignored_other_content_already_exists(desk: Desk) -> None:
    first_at = later(desk)
    reply = desk.issuer.record_statement(FUND, "C2", first_at, "C2-0001", C2_BOOK)
    assert (list(reply.opened), reply.ignored) == ([], False)
    later(desk)
    assert desk.issuer.record_statement(FUND, "C2", first_at, "C2-0001", list(reversed(C2_BOOK))).ignored
    second_at = later(desk)
    desk.issuer.record_statement(FUND, "C2", second_at, "C2-0002", C2_BOOK)
    # a retry of the first after a later one: still ignored (the reference is checked before as_of)
    before = desk.state()
    assert desk.issuer.record_statement(FUND, "C2", first_at, "C2-0001", C2_BOOK).ignored
    assert desk.state() == before
    unchanged(desk, lambda: desk.issuer.record_statement(FUND, "C2", first_at, "C2-0001", C2_BOOK[:1]),
              Code.ALREADY_EXISTS)
    unchanged(desk, lambda: desk.issuer.record_statement(FUND, "C2", first_at, "C2-0001", C2_BOOK, "CHAIN"),
              Code.ALREADY_EXISTS)
    # as_of before the previous statement's: refused naming as_of; equal to it: accepted
    assert "as_of" in unchanged(desk, lambda: desk.issuer.record_statement(FUND, "C2", first_at, "C2-0003", C2_BOOK),
                                Code.INVALID_ARGUMENT)
    assert list(desk.issuer.record_statement(FUND, "C2", second_at, "C2-0003", C2_BOOK).opened) == []
    # another custodian has its own order of statements
    assert list(desk.issuer.record_statement(FUND, "C1", first_at, "C1-0001", C1_BOOK).opened) == []


# == ResolveBreak under four eyes =====================================================================
def test_resolve_break_is_proposed_by_one_issuer_and_approved_by_another(desk: Desk) -> None:
    issuer, second = desk.issuer, desk.clients["issuer2"]
    timing_break(desk)
    later(desk)
    proposed = issuer.resolve_break("BRK-00000002", "-1", "slashing the custodian reported late")
    assert (proposed.instruction_id, proposed.pending, proposed.HasField("break_record")) == (
        "INS-00000001", True, False)
    assert state(desk.observer.get_break("BRK-00000002"))[-1] == "OPEN"
    assert holding(desk, "C1", "ETH").staked == "895"
    (pending,) = desk.observer.list_instructions("PENDING")
    assert (pending.rpc, pending.proposed_by) == ("ResolveBreak", "ops")
    assert json.loads(pending.request)["break_id"] == "BRK-00000002"
    # every refusal it would give now, it gives now
    assert unchanged(desk, lambda: issuer.resolve_break("BRK-00000002", "-895.000000000000000001"),
                     Code.FAILED_PRECONDITION).startswith("INSUFFICIENT_STAKED_BALANCE")
    unchanged(desk, lambda: issuer.resolve_break("BRK-00000099"), Code.NOT_FOUND)
    assert "adjustment" in unchanged(desk, lambda: issuer.resolve_break("BRK-00000002", "one"),
                                     Code.INVALID_ARGUMENT)
    # not by the proposer
    unchanged(desk, lambda: issuer.approve_instruction(proposed.instruction_id), Code.PERMISSION_DENIED)
    later(desk)
    executed = second.approve_instruction(proposed.instruction_id)
    assert (instruction_status(executed.status), executed.decided_by) == ("EXECUTED", "ops-2")
    resolved = desk.observer.get_break("BRK-00000002")
    assert state(resolved)[-1] == "RESOLVED"
    assert (resolved.adjustment, resolved.comment, resolved.proposed_by, resolved.approved_by,
            resolved.resolved_at, resolved.resolved_by_reference) == (
        "-1", "slashing the custodian reported late", "ops", "ops-2", now(desk), "")
    assert holding(desk, "C1", "ETH").staked == "894"
    # resolved once: BREAK_NOT_OPEN, at proposal already
    assert unchanged(desk, lambda: issuer.resolve_break("BRK-00000002", "0"),
                     Code.FAILED_PRECONDITION).startswith("BREAK_NOT_OPEN")
    # the audit trail: the adjustment's event names both principals
    (event,) = [r for r in records(desk.observer) if r.type == "BreakResolved"]
    body = json.loads(event.body)
    assert (event.principal, body["proposed_by"], body["proposer"], body["approver"], body["adjustment"]) == (
        "ops-2", "ops", "ops", "ops-2", "-1")


def test_without_four_eyes_resolve_break_acts_and_replies_with_the_break(tmp_path: Path) -> None:
    with serving(tmp_path, four_eyes=()) as desk:
        timing_break(desk)
        reply = desk.issuer.resolve_break("BRK-00000001", "0", "the delivery will settle")
        assert (reply.pending, reply.instruction_id) == (False, "")
        b = reply.break_record
        assert state(b)[-1] == "RESOLVED" and (b.adjustment, b.proposed_by, b.approved_by) == ("0", "ops", "")
        assert b == desk.observer.get_break("BRK-00000001")
        assert holding(desk, "C1", "BTC").available == "150"  # 0: the book was right
        # an AVAILABLE adjustment enters held as a positive AdjustHolding does (hot)
        at = later(desk)
        desk.issuer.record_statement(FUND, "C2", at, "C2-0001", [StatementLine("BTC", "AVAILABLE", "50.5"),
                                                                 *C2_BOOK[1:]])
        assert desk.issuer.resolve_break("BRK-00000003", "0.5", "a deposit we missed").break_record.adjustment == "0.5"
        row = holding(desk, "C2", "BTC")
        assert (row.available, row.tiers.hot) == ("50.5", "50.5")


# == AdjustHolding once a fund reconciles =============================================================
def test_adjust_holding_needs_an_open_break_once_the_fund_has_a_statement(desk: Desk) -> None:
    issuer = desk.issuer
    issuer.adjust_holding(FUND, "C2", "BTC", "1", "before any statement")  # no statement yet: as before
    issuer.adjust_holding(FUND, "C2", "BTC", "-1", "and back")
    timing_break(desk)  # F1 reconciles from here on; BRK-00000002 is C1's ETH
    assert unchanged(desk, lambda: issuer.adjust_holding(FUND, "C1", "BTC", "1", "plug"),
                     Code.FAILED_PRECONDITION).startswith("BREAK_REQUIRED")
    for break_id, custodian_id, asset in (("BRK-00000002", "C1", "BTC"),  # another asset's
                                          ("BRK-00000002", "C2", "ETH"),  # another custodian's
                                          ("BRK-00000099", "C1", "ETH")):  # none
        assert unchanged(desk, lambda b=break_id, c=custodian_id, a=asset: issuer.adjust_holding(
            FUND, c, a, "1", "plug", break_id=b), Code.FAILED_PRECONDITION).startswith("BREAK_REQUIRED")
    issuer.adjust_holding(FUND, "C1", "ETH", "1", "for the break", break_id="BRK-00000002")
    assert holding(desk, "C1", "ETH").available == "1106"
    assert state(desk.observer.get_break("BRK-00000002"))[-1] == "OPEN"  # it does not resolve it
    # another fund without a statement: as before
    issuer.adjust_holding(FUND2, "C2", "BTC", "1", "opening")
    # a break resolved: no longer a reason
    desk.clients["issuer2"].approve_instruction(issuer.resolve_break("BRK-00000002", "0").instruction_id)
    assert unchanged(desk, lambda: issuer.adjust_holding(FUND, "C1", "ETH", "1", "late", break_id="BRK-00000002"),
                     Code.FAILED_PRECONDITION).startswith("BREAK_REQUIRED")


# == hold_redemptions_on_break ========================================================================
def test_a_redemption_is_routed_around_a_custodian_with_an_unexplained_break(desk: Desk) -> None:
    issuer, ap1 = desk.issuer, desk.ap1
    issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", "0.50", "0.10", 604_800, "75")])  # room for 3 units
    at = later(desk)
    issuer.record_statement(FUND, "C1", at, "C1-0001", [StatementLine("BTC", "AVAILABLE", "149"), *C1_BOOK[1:]])
    assert [state(b)[8] for b in desk.observer.list_breaks(FUND)] == ["UNEXPLAINED"]  # C1's BTC

    def legs(client_order_id: str) -> list[tuple[str, str, str]]:
        order = ap1.submit_order(FUND, "REDEEM", 1, client_order_id)
        assert status_name(order.status) == "ACCEPTED", order.reject_reason
        return [(leg.custodian_id, leg.asset, leg.quantity) for leg in order.legs]

    assert legs("r-1") == [("C1", "BTC", "5"), ("C1", "ETH", "75")]  # the policy is off: C1 first, as ever
    issuer.update_fund(FUND, hold_redemptions_on_break=True)
    assert [f.hold_redemptions_on_break for f in desk.observer.list_funds() if f.fund_id == FUND] == [True]
    assert legs("r-2") == [("C2", "BTC", "5"), ("C1", "ETH", "75")]  # C1 gives no BTC while the break is open
    desk.clients["issuer2"].approve_instruction(issuer.resolve_break("BRK-00000001", "0").instruction_id)
    assert legs("r-3") == [("C1", "BTC", "5"), ("C1", "ETH", "75")]  # resolved: C1 first again
    issuer.update_fund(FUND, hold_redemptions_on_break=False)
    assert [f.hold_redemptions_on_break for f in desk.observer.list_funds() if f.fund_id == FUND] == [False]


def test_create_fund_takes_the_policy(desk: Desk) -> None:
    desk.issuer.create_fund("F3", "Held", "USD", 10, "C1", ["C1", "C2"], [FundAssetTerms("BTC")],
                            hold_redemptions_on_break=True)
    found = {f.fund_id: f.hold_redemptions_on_break for f in desk.observer.list_funds()}
    assert found == {FUND: False, FUND2: False, "F3": True}


# == reads ============================================================================================
def test_list_breaks_and_get_break_for_the_issuer_and_an_observer(desk: Desk) -> None:
    timing_break(desk)
    at = later(desk)
    desk.issuer.record_statement(FUND, "C2", at, "C2-0001", C2_BOOK[:1])  # BRK-00000003: C2's ETH
    for client in (desk.issuer, desk.observer):
        assert [b.break_id for b in client.list_breaks()] == ["BRK-00000001", "BRK-00000002", "BRK-00000003"]
        assert [b.break_id for b in client.list_breaks(FUND, "OPEN")] == [
            "BRK-00000001", "BRK-00000002", "BRK-00000003"]
        assert client.list_breaks(FUND, "RESOLVED") == []
        assert client.list_breaks(FUND2) == []
        assert client.get_break("BRK-00000003") == client.list_breaks(status="OPEN")[2]
    unchanged(desk, lambda: desk.observer.get_break("BRK-00000004"), Code.NOT_FOUND)
    unchanged(desk, lambda: desk.observer.get_break(""), Code.NOT_FOUND)
    unchanged(desk, lambda: desk.observer.list_breaks("F9"), Code.NOT_FOUND)
    observer = desk.observer
    assert "status" in unchanged(desk, lambda: observer._call(observer._admin.ListBreaks, pb.ListBreaksRequest(
        status=7)), Code.INVALID_ARGUMENT)  # type: ignore[arg-type]
    for call in (lambda: desk.ap1.list_breaks(), lambda: desk.ap1.get_break("BRK-00000001"),
                 lambda: desk.observer.record_statement(FUND, "C1", at, "x", C1_BOOK),
                 lambda: desk.observer.resolve_break("BRK-00000001"),
                 lambda: desk.ap1.record_statement(FUND, "C1", at, "x", C1_BOOK)):
        unchanged(desk, call, Code.PERMISSION_DENIED)


def test_not_found(desk: Desk) -> None:
    at = later(desk)
    unchanged(desk, lambda: desk.issuer.record_statement("F9", "C1", at, "x", C1_BOOK), Code.NOT_FOUND)
    unchanged(desk, lambda: desk.issuer.record_statement(FUND, "C9", at, "x", C1_BOOK), Code.NOT_FOUND)
    # as of an instant before records that came after it: the same refusals
    unchanged(desk, lambda: desk.issuer.record_statement("F9", "C1", at - 1, "x", C1_BOOK), Code.NOT_FOUND)
    unchanged(desk, lambda: desk.issuer.record_statement(FUND, "C9", at - 10_000, "x", C1_BOOK), Code.NOT_FOUND)


# == bad input ========================================================================================
def statement_request(**fields: Any) -> pb.RecordStatementRequest:
    values: dict[str, Any] = dict(fund_id=FUND, custodian_id="C1", as_of=T0, source=pb.StatementSource.CUSTODIAN,
                                  reference="C1-bad", lines=[line.message() for line in C1_BOOK])
    return pb.RecordStatementRequest(**{**values, **fields})


def line(**fields: Any) -> pb.StatementLine:
    return pb.StatementLine(**{"asset": "BTC", "bucket": pb.Bucket.AVAILABLE, "quantity": "150", **fields})


BAD_STATEMENTS = [
    ("source unspecified", dict(source=0), "source"),
    ("source unknown to the server", dict(source=9), "source"),
    ("bucket unspecified", dict(lines=[line(bucket=0)]), "lines[0].bucket"),
    ("bucket unknown to the server", dict(lines=[line(bucket=8)]), "lines[0].bucket"),
    ("tier unknown to the server", dict(lines=[line(tier=5)]), "lines[0].tier"),
    ("a tier on a STAKED line", dict(lines=[line(asset="ETH", bucket=pb.Bucket.STAKED, quantity="895",
                                                 tier=pb.Tier.COLD)]), "lines[0].tier"),
    ("a tier on an UNBONDING line", dict(lines=[line(asset="ETH", bucket=pb.Bucket.UNBONDING, quantity="0",
                                                     tier=pb.Tier.HOT)]), "lines[0].tier"),
    ("quantity negative", dict(lines=[line(quantity="-1")]), "lines[0].quantity"),
    ("quantity past the asset's decimals", dict(lines=[line(quantity="0.000000001")]), "lines[0].quantity"),
    ("quantity empty", dict(lines=[line(quantity="")]), "lines[0].quantity"),
    ("quantity not a number", dict(lines=[line(quantity="lots")]), "lines[0].quantity"),
    ("an asset the fund does not hold", dict(fund_id=FUND2, custodian_id="C2", lines=[line(asset="ETH")]),
     "lines[0].asset"),
    ("the same line twice", dict(lines=[line(), line(quantity="1")]), "lines[1]"),
    ("as_of negative", dict(as_of=-1), "as_of"),
    ("as_of in the future", dict(as_of=T0 + 3_600_000), "as_of"),
    ("reference empty", dict(reference=""), "reference"),
]


@pytest.mark.parametrize("past", [False, True], ids=["as of now", "as of the past"])
@pytest.mark.parametrize("what, fields, field", BAD_STATEMENTS, ids=[b[0] for b in BAD_STATEMENTS])
def test_a_bad_statement_names_the_field(desk: Desk, what: str, fields: dict[str, Any], field: str,
                                         past: bool) -> None:
    """As of T0, the sample's instant: with a record after it, the book comes from the journal."""
    issuer = desk.issuer
    if past:
        later(desk)
        issuer.adjust_cash(FUND2, "1.00", "a record after T0")
    details = unchanged(desk, lambda: issuer._call(issuer._admin.RecordStatement, statement_request(**fields)),
                        Code.INVALID_ARGUMENT)
    assert field in details, (what, details)


def test_bad_input_over_connect_json_names_the_field(desk: Desk) -> None:
    body = {"fundId": FUND, "custodianId": "C1", "asOf": str(now(desk)), "source": "CUSTODIAN",
            "reference": "C1-json", "lines": [{"asset": "BTC", "bucket": "AVAILABLE", "quantity": "150"}]}
    for path, value in ((("source",), "AUDITOR"), (("lines", 0, "bucket"), "LOCKED"),
                        (("lines", 0, "tier"), "LUKEWARM")):
        bad = json.loads(json.dumps(body))
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        status, answer = connect(desk, "Admin/RecordStatement", bad)
        assert (status, answer["code"]) == (400, "invalid_argument"), answer
        assert path[-1] in answer["message"], answer
    status, answer = connect(desk, "Admin/ResolveBreak", {"breakId": "BRK-00000001", "adjustment": "1.5.0"})
    assert (status, answer["code"]) == (404, "not_found"), answer  # the break first
    # a good one: the reply as JSON, breaks with their enums by name
    status, answer = connect(desk, "Admin/RecordStatement", body)
    assert status == 200, answer
    assert [(b["breakId"], b["asset"], b["bucket"], b["classification"], b["status"], b["book"], b["statement"])
            for b in answer["opened"]] == [
        ("BRK-00000001", "ETH", "AVAILABLE", "UNEXPLAINED", "OPEN", "1105", "0"),
        ("BRK-00000002", "ETH", "STAKED", "UNEXPLAINED", "OPEN", "895", "0")]
    status, answer = connect(desk, "Admin/ListBreaks", {"fundId": FUND, "status": "OPEN"}, TOKENS["observer"])
    assert status == 200 and [b["breakId"] for b in answer["breaks"]] == ["BRK-00000001", "BRK-00000002"]
    status, answer = connect(desk, "Admin/GetBreak", {"breakId": "BRK-00000009"}, TOKENS["observer"])
    assert (status, answer["code"]) == (404, "not_found")


def test_resolve_break_refusals(tmp_path: Path) -> None:
    with serving(tmp_path, four_eyes=()) as desk:
        issuer = desk.issuer
        later(desk)
        issuer.unstake(FUND, "C1", "ETH", "10")  # 10 unbonding for a week
        at = later(desk)
        issuer.record_statement(FUND, "C1", at, "C1-0001", [
            StatementLine("BTC", "AVAILABLE", "151"), StatementLine("BTC", "AVAILABLE", "149", "HOT"),
            StatementLine("ETH", "AVAILABLE", "1105"), StatementLine("ETH", "STAKED", "885"),
            StatementLine("ETH", "UNBONDING", "9")])
        assert [state(b)[:5] for b in issuer.list_breaks(FUND)] == [
            ("BRK-00000001", "C1", "BTC", "AVAILABLE", ""), ("BRK-00000002", "C1", "BTC", "AVAILABLE", "HOT"),
            ("BRK-00000003", "C1", "ETH", "UNBONDING", "")]
        for adjustment in ("x", "0.000000001", "1e3", "+-1"):
            assert "adjustment" in unchanged(desk, lambda a=adjustment: issuer.resolve_break("BRK-00000001", a),
                                             Code.INVALID_ARGUMENT)
        assert "comment" in unchanged(desk, lambda: issuer.resolve_break("BRK-00000001", "1", "x" * 257),
                                      Code.INVALID_ARGUMENT)
        assert "adjustment" in unchanged(desk, lambda: issuer.resolve_break("BRK-00000003", "-1"),
                                         Code.INVALID_ARGUMENT)  # UNBONDING: only 0
        assert unchanged(desk, lambda: issuer.resolve_break("BRK-00000002", "-150.00000001"),
                         Code.FAILED_PRECONDITION).startswith("INSUFFICIENT_TIER_BALANCE")
        assert unchanged(desk, lambda: issuer.resolve_break("BRK-00000001", "-150.00000001"),
                         Code.FAILED_PRECONDITION).startswith("INSUFFICIENT_LIQUID_BALANCE")
        unchanged(desk, lambda: issuer.resolve_break("BRK-00000004"), Code.NOT_FOUND)
        assert issuer.resolve_break("BRK-00000003", "").break_record.adjustment == "0"  # empty: 0
        # a tiered break's adjustment lands in its tier
        issuer.resolve_break("BRK-00000002", "-1")
        row = holding(desk, "C1", "BTC")
        assert (row.available, row.tiers.hot) == ("149", "149")


# == RecordStatement under four eyes ==================================================================
def test_a_proposed_statement_is_compared_at_approval_with_the_book_at_its_as_of(tmp_path: Path) -> None:
    with serving(tmp_path, four_eyes=("RecordStatement",)) as desk:
        issuer, second = desk.issuer, desk.clients["issuer2"]
        at = later(desk)
        proposed = issuer.record_statement(FUND, "C1", at, "C1-0001", C1_BOOK)
        assert (proposed.pending, proposed.instruction_id, list(proposed.opened)) == (True, "INS-00000001", [])
        later(desk)
        issuer.adjust_holding(FUND, "C1", "BTC", "2", "before the approval")  # no statement recorded yet
        # a statement as of a past instant, proposed after records came: the book then, from the journal
        past = issuer.record_statement(FUND, "C2", at - 1_000, "C2-0001", C2_BOOK[:1])
        assert past.pending
        later(desk)
        issuer.adjust_holding(FUND, "C2", "ETH", "7", "after the proposal")
        assert issuer.list_breaks() == []  # nothing compared yet
        for instruction_id in (proposed.instruction_id, past.instruction_id):
            assert instruction_status(second.approve_instruction(instruction_id).status) == "EXECUTED"
        # C1 as of `at`: 150 BTC, not the 152 of the approval's time; C2 as of before: 1,000 ETH omitted
        assert [state(b) for b in issuer.list_breaks()] == [
            ("BRK-00000001", "C2", "ETH", "AVAILABLE", "", "1000", "0", "1000", "UNEXPLAINED", "OPEN")]
        # as an instruction its request carries the book it is compared with
        (first, _) = desk.observer.list_instructions("EXECUTED")
        request = json.loads(first.request)
        assert request["reference"] == "C1-0001" and request["book"]["lines"][0]["asset"] == "BTC"


# == StreamEvents =====================================================================================
def test_the_events_carry_their_figures_as_decimal_strings(tmp_path: Path) -> None:
    with serving(tmp_path, four_eyes=()) as desk:
        at = later(desk)
        desk.issuer.record_statement(FUND, "C1", at, "C1-0001", [
            StatementLine("BTC", "AVAILABLE", "150"), StatementLine("ETH", "AVAILABLE", "1105.000000000000000001"),
            StatementLine("ETH", "STAKED", "895")])
        seen = len(records(desk.observer))
        later(desk)
        desk.issuer.resolve_break("BRK-00000001", "0.000000000000000001", "rounding at the custodian")
        everything = records(desk.observer)
        (recorded,) = [json.loads(r.body) for r in everything if r.type == "StatementRecorded"]
        assert [(ln["asset"], ln["bucket"], ln["quantity"]) for ln in recorded["lines"]] == [
            ("BTC", "AVAILABLE", "150"), ("ETH", "AVAILABLE", "1105.000000000000000001"), ("ETH", "STAKED", "895")]
        (opened,) = recorded["opened"]
        assert (opened["break_id"], opened["book"], opened["statement"], opened["difference"]) == (
            "BRK-00000001", "1105", "1105.000000000000000001", "-0.000000000000000001")
        # the resolution's adjustment is of its break's asset: learned from the statement above, or, for a
        # stream that starts after it, from the ledger
        for new in (everything[seen:], records(desk.observer, seen)):
            (resolved,) = [json.loads(r.body) for r in new if r.type == "BreakResolved"]
            assert (resolved["break_id"], resolved["adjustment"], resolved["comment"]) == (
                "BRK-00000001", "0.000000000000000001", "rounding at the custodian")


# == metrics ==========================================================================================
def test_open_breaks_and_the_oldest_ones_age_are_gauges(desk: Desk) -> None:
    def gauges() -> tuple[dict[tuple, float], dict[tuple, float]]:
        found = metrics(desk)
        return found["etf_engine_breaks_open"], found["etf_engine_break_oldest_age_seconds"]

    def key(fund_id: str, classification: str) -> tuple:
        return (("classification", classification), ("fund_id", fund_id))

    open_, age = gauges()
    assert open_ == {key(f, c): 0.0 for f in (FUND, FUND2) for c in ("TIMING", "UNEXPLAINED")}
    assert age == {(("fund_id", FUND),): 0.0, (("fund_id", FUND2),): 0.0}
    timing_break(desk)  # one of each, opened now
    desk.issuer.advance_clock(now(desk) + 90_000)
    open_, age = gauges()
    assert (open_[key(FUND, "TIMING")], open_[key(FUND, "UNEXPLAINED")], open_[key(FUND2, "TIMING")]) == (1, 1, 0)
    assert age[(("fund_id", FUND),)] == 90.0  # on the engine's clock
    at = later(desk)
    desk.issuer.record_statement(FUND, "C2", at, "C2-0001", C2_BOOK[:1])  # a younger one beside them
    assert gauges()[0][key(FUND, "UNEXPLAINED")] == 2
    assert gauges()[1][(("fund_id", FUND),)] == 95.0  # the oldest's


# == etf-engine apply =================================================================================
HELD_FUND = """
[[funds]]
fund_id = "F-HELD"
name = "Held fund"
base_currency = "USD"
creation_unit = 10
creation_custodian_id = "C1"
custodian_priority = ["C1", "C2"]
{policy}

[[funds.assets]]
asset = "BTC"
"""


def test_apply_takes_hold_redemptions_on_break(desk: Desk, tmp_path: Path) -> None:
    from etf_engine import apply

    def run(policy: str) -> tuple[int, str]:
        path = tmp_path / "fund.toml"
        path.write_text(HELD_FUND.format(policy=policy), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        code = apply.run(path, desk.issuer, target=desk.target, dry_run=False, out=out, err=err)
        return code, out.getvalue() + err.getvalue()

    def held() -> bool:
        return next(f.hold_redemptions_on_break for f in desk.observer.list_funds() if f.fund_id == "F-HELD")

    code, said = run("hold_redemptions_on_break = true")
    assert code == 0 and "created fund F-HELD (CreateFund)" in said, said
    assert held()
    code, said = run("hold_redemptions_on_break = true")
    assert code == 0 and "nothing to do" in said, said
    code, said = run("")  # left out: its default, false
    assert code == 0 and "hold_redemptions_on_break true -> false" in said, said
    assert not held()
    code, said = run('hold_redemptions_on_break = "yes"')
    assert code == 2 and "hold_redemptions_on_break" in said, said


# == four eyes config =================================================================================
def test_four_eyes_may_list_record_statement(tmp_path: Path) -> None:
    parsed = parse_config({"four_eyes": ["RecordStatement", "ResolveBreak"]}, base_dir=tmp_path)
    assert parsed.four_eyes == ("RecordStatement", "ResolveBreak")
    assert servicers.AdminServicer(None, parsed.four_eyes).four_eyes == {  # type: ignore[arg-type]
        "RecordStatement", "ResolveBreak"}


# == the console ======================================================================================
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is missing (.ci/run installs it)")
def test_the_console_shows_the_open_breaks_with_their_age(desk: Desk, browser: playwright_api.Browser) -> None:
    timing_break(desk)
    desk.issuer.advance_clock(now(desk) + 3 * 3_600_000 + 120_000)  # 3 h 2 min on
    expect = playwright_api.expect
    session = Session(browser, desk.server.http_url, TOKENS["observer"])
    page = session.page
    try:
        rows = page.locator("#breaks tr[data-break]")
        expect(rows).to_have_count(2, timeout=10_000)
        timing = page.locator('#breaks tr[data-break="BRK-00000001"]')
        expect(timing).to_contain_text("TIMING")
        expect(timing).to_contain_text("ORD-00000001 (0xbtc-1)")
        expect(timing.locator("td.age")).to_have_text("3 h 2 min")
        unexplained = page.locator('#breaks tr[data-break="BRK-00000002"]')
        expect(unexplained).to_have_class("unexplained")
        expect(unexplained).to_contain_text("STAKED")
        expect(unexplained.locator("td.num").nth(2)).to_have_text("1")  # book - statement
        # resolved elsewhere: the list follows within its refresh
        second = desk.clients["issuer2"]
        second.approve_instruction(desk.issuer.resolve_break("BRK-00000002", "0").instruction_id)
        expect(rows).to_have_count(1, timeout=10_000)
    finally:
        session.context.close()
