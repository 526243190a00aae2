"""Valuation.StreamEvents, Valuation.ListFunds and Admin.ListParticipants (SPEC §15) on a real server
over loopback, on both journals (SQLite and PostgreSQL, test_service's ``journal`` fixture).

StreamEvents must give every journaled record in order without gaps, resume from any seq, bring a new
record within 1 s of its commit, and carry the principal whose call caused each one. A body's figures
are decimal strings, as in every reply (issue 19: a JavaScript reader lost ETH quantities past 2^53).
"""

from __future__ import annotations

import json
import queue
import threading
import time

import grpc
import msgspec
from test_service import FUND, FUND2, TOKENS, Desk, refused
from test_service import desk as desk  # noqa: F401  (the fixture: a server on each journal, loaded)
from test_service import journal as journal  # noqa: F401
from test_service import pg_cluster as pg_cluster  # noqa: F401

from etf_engine import model as M
from etf_engine.api.convert import EVENT_TYPES, FIGURES, EventBodies, _struct_in
from etf_engine.client import EtfClient, Tick
from etf_engine.errors import EngineError
from etf_engine.v1 import engine_pb2 as pb


def read_all(client: EtfClient, after: int = 0) -> list[pb.JournalRecord]:
    """Every record after ``after`` that is there now (the stream then waits: cut it after 1.5 s)."""
    got = []
    stream = client.stream_events(after, timeout=1.5)
    try:
        for record in stream:
            got.append(record)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
    return got


def test_every_record_in_order_with_its_principal(desk: Desk) -> None:
    desk.ap1.submit_order(FUND, "CREATE", 1, "ev-1")
    records = read_all(desk.observer)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert records[0].type == "AssetRegistered" and records[-1].type == "OrderRecorded"
    assert {r.principal for r in records[:-1]} == {"ops"} and records[-1].principal == "ap1"
    for r in records:  # each body is the event as journaled, its figures as decimal strings
        body = json.loads(r.body)
        assert (body["type"], body["at"], body.get("principal", "")) == (r.type, r.at, r.principal)
    assert json.loads(records[-1].body)["order"]["client_order_id"] == "ev-1"


def integers(value: object) -> list[int]:
    """Every JSON integer in a decoded body."""
    if isinstance(value, dict):
        return [i for v in value.values() for i in integers(v)]
    if isinstance(value, list):
        return [i for v in value for i in integers(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def test_figures_in_bodies_are_decimal_strings_with_their_scale(desk: Desk) -> None:
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "ev-figures")
    desk.issuer.publish_prices([Tick("ETH", "USD", "3412.12345678", desk.clock())])
    records = read_all(desk.observer)
    bodies = [(r.type, json.loads(r.body)) for r in records]
    for _, body in bodies:  # nothing a double-based reader would round: figures are strings
        assert all(abs(i) < 2**53 for i in integers(body)), body

    def first(kind: str, **where: object) -> dict:
        return next(b for t, b in bodies if t == kind and all(b.get(k) == v for k, v in where.items()))

    # ETH has 18 decimals: 2000 ETH is 2 x 10^21 smallest units in the journal
    assert first("HoldingAdjusted", custodian_id="C1", asset="ETH")["delta"] == "2000"
    assert first("HoldingAdjusted", custodian_id="C2", asset="BTC")["delta"] == "50"
    assert first("CashAdjusted")["delta"] == "125000.00"
    assert first("Staked")["quantity"] == "895"
    assert first("PriceSet", asset="BTC")["price"] == "97250"
    assert first("PriceSet", asset="ETH", as_of=desk.clock())["price"] == "3412.12345678"
    terms = first("FundCreated")["terms"]
    assert (terms["creation_fee"], terms["redemption_fee"], terms["seed_cash_per_unit"]) == ("1500.00", "1500.00",
                                                                                              "0.00")
    eth = next(a for a in terms["assets"] if a["asset"] == "ETH")
    assert (eth["staking_cap"], eth["liquidity_buffer"], eth["seed_quantity_per_unit"], eth["unbonding_seconds"]) \
        == ("0.30", "0.10", "75", 604_800)
    assert (first("FundCreated")["shares_outstanding"], terms["creation_unit"]) == (2_000_000, 50_000)  # counts

    # the order as journaled carries the figures the SubmitOrder reply gave, character for character
    recorded = first("OrderRecorded")["order"]
    assert recorded["order_id"] == order.order_id
    assert [(d["asset"], d["quantity"]) for d in recorded["deliverables"]] == [
        (d.asset, d.quantity) for d in order.deliverables]
    assert (recorded["cash_amount"], recorded["fee"], recorded["units"]) == (order.cash_amount, order.fee, 1)
    basket = recorded["basket"]
    assert [(x["asset"], x["quantity_per_unit"]) for x in basket["lines"]] == [
        (x.asset, x.quantity_per_unit) for x in order.basket.lines]
    assert (basket["cash_component"], basket["nav_per_share"], basket["nav_per_unit"]) == (
        order.basket.cash_component, order.basket.nav_per_share, order.basket.nav_per_unit)


def test_every_figure_of_every_event_has_its_form() -> None:
    """Each integer field of every event (and what it holds) is a figure formatted for bodies, or one of
    these counts and times: a new amount cannot reach the wire as a raw integer unnoticed."""
    not_figures = {"at", "decimals", "min_confirmations", "licence_expires_at", "max_units_per_order",
                   "max_units_per_day", "creation_unit", "max_price_age_seconds", "min_liquid_units",
                   "unbonding_seconds", "create_settlement_days", "redeem_settlement_days", "shares_outstanding",
                   "units", "created_at", "updated_at", "confirmations", "recorded_at", "release_at", "as_of",
                   "struck_at", "published_at", "offset_ms", "registered_at", "weekend_days", "fee_days",
                   "proposed_at", "decided_at", "max_hot_seconds", "opened_at", "resolved_at", "tree_size"}
    unformatted = []

    def walk(struct_type: type, path: str) -> None:
        figures = {k for t in struct_type.__mro__ for k in FIGURES.get(t, {})}
        for field in msgspec.structs.fields(struct_type):
            inner = _struct_in(field.type)
            if inner is not None:
                walk(inner, f"{path}.{field.name}")
            elif "int" in str(field.type) and field.name not in figures | not_figures:
                unformatted.append(f"{path}.{field.name}")

    for name, event_type in EVENT_TYPES.items():
        walk(event_type, name)
    assert unformatted == []


def test_a_body_whose_asset_is_not_known_yet_is_refused_not_guessed() -> None:
    bodies = EventBodies({})
    stored = msgspec.json.encode(M.Staked(at=1, fund_id="F", custodian_id="C", asset="ETH", quantity=10**21)).decode()
    try:
        bodies.body(stored)
    except EngineError as e:
        assert e.code == "UNAVAILABLE"
    else:
        raise AssertionError("formatted without the asset's decimals")
    registered = msgspec.json.encode(M.AssetRegistered(at=1, symbol="ETH", decimals=18)).decode()
    assert bodies.body(registered) == registered  # no figure in it; the stream learns ETH's decimals
    assert json.loads(bodies.body(stored))["quantity"] == "1000"
    assert bodies.body('{"type":"FromTheFuture","at":1,"x":12}') == '{"type":"FromTheFuture","at":1,"x":12}'


def test_resumable_from_any_seq(desk: Desk) -> None:
    everything = read_all(desk.issuer)
    middle = len(everything) // 2
    assert read_all(desk.issuer, middle) == everything[middle:]
    assert read_all(desk.issuer, len(everything)) == []


def test_live_within_a_second(desk: Desk) -> None:
    last = read_all(desk.observer)[-1].seq
    arrived: queue.Queue = queue.Queue()
    stream = desk.observer.stream_events(last, timeout=10)

    def follow() -> None:
        try:
            for record in stream:
                arrived.put((time.monotonic(), record))
        except grpc.RpcError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.3)
    for i in range(3):
        sent = time.monotonic()
        order = desk.ap2.submit_order(FUND2, "CREATE", 1, f"live-{i}")
        seen_at, record = arrived.get(timeout=5)
        assert (record.seq, record.type, record.principal) == (last + i + 1, "OrderRecorded", "ap2")
        assert json.loads(record.body)["order"]["order_id"] == order.order_id
        assert seen_at - sent < 1.0
    stream.cancel()


def test_who_may_stream_and_bad_input(desk: Desk) -> None:
    for who in ("ap1", "ap2"):
        refused(lambda w=who: next(desk.clients[w].stream_events()), grpc.StatusCode.PERMISSION_DENIED)
    assert "after_seq" in refused(lambda: next(desk.issuer.stream_events(-1)), grpc.StatusCode.INVALID_ARGUMENT)


def test_list_funds_and_participants(desk: Desk) -> None:
    summary = [(f.fund_id, f.name, f.base_currency, f.dealing_status) for f in desk.observer.list_funds()]
    assert summary == [(FUND, "Harbour BTC ETH", "USD", pb.DealingStatus.OPEN),
                       (FUND2, "Harbour BTC", "USD", pb.DealingStatus.OPEN)]
    assert [f.fund_id for f in desk.ap1.list_funds()] == [FUND]  # only what it may read
    assert [f.fund_id for f in desk.ap2.list_funds()] == [FUND, FUND2]
    with EtfClient(desk.target, TOKENS["ap-unregistered"]) as stranger:
        assert stranger.list_funds() == []
    participants = desk.issuer.list_participants()
    assert [(p.participant_id, list(p.eligible_fund_ids), p.max_units_per_order, p.max_units_per_day)
            for p in participants] == [("AP-1", [FUND], 20, 100), ("AP-2", [FUND, FUND2], 20, 100)]
    assert desk.observer.list_participants() == participants
    refused(desk.ap1.list_participants, grpc.StatusCode.PERMISSION_DENIED)
