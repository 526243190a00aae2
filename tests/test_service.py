"""Service tests: the real gRPC server on a free loopback port, spoken to over gRPC.

Each test gets a fresh server (in-process, on its own event loop thread) with a fixed clock and a
sample fund. Refusals are followed by a comparison of the ledger's whole canonical state before
and after: a refused call changes nothing. Nothing here asserts a duration.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from etf_engine import cli
from etf_engine.api.auth import ACCESS, ISSUER, OBSERVER, PARTICIPANT, Principal, hash_token
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, FundAssetTerms, OrderItem, Tick, side_name, status_name
from etf_engine.config import Config, JournalConfig
from etf_engine.ledger import Ledger
from etf_engine.v1 import engine_pb2 as pb
from tests.pg_cluster import pg_cluster as pg_cluster  # the fixture, for the PostgreSQL backend

T0 = 1_750_000_000_000  # fixed "now" of the engine, unix ms
EXPIRY = T0 // 1000 + 365 * 86_400
FUND, FUND2 = "F1", "F2"
TOKENS = {"issuer": "tok-issuer", "issuer2": "tok-issuer2", "observer": "tok-observer", "ap1": "tok-ap1",
          "ap2": "tok-ap2", "ap-unregistered": "tok-ap-x"}
PRINCIPALS = (
    Principal("ops", ISSUER, hash_token(TOKENS["issuer"])),
    Principal("ops-2", ISSUER, hash_token(TOKENS["issuer2"])),  # the second pair of eyes (SPEC §14)
    Principal("auditor", OBSERVER, hash_token(TOKENS["observer"])),
    Principal("ap1", PARTICIPANT, hash_token(TOKENS["ap1"]), "AP-1"),
    Principal("ap2", PARTICIPANT, hash_token(TOKENS["ap2"]), "AP-2"),
    Principal("ap-x", PARTICIPANT, hash_token(TOKENS["ap-unregistered"]), "AP-X"),
)


def make_ledger() -> Ledger:
    """The compiled core when it is built; ETF_LEDGER=reference|core picks one."""
    return cli.make_ledger(os.environ.get("ETF_LEDGER", "auto"))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Desk:
    """A running server with a client per principal."""

    def __init__(self, server: BackgroundServer, clock: Clock) -> None:
        self.server = server
        self.clock = clock
        self.target = server.target
        self.clients = {name: EtfClient(self.target, token, timeout=10) for name, token in TOKENS.items()}
        self.issuer = self.clients["issuer"]
        self.observer = self.clients["observer"]
        self.ap1 = self.clients["ap1"]
        self.ap2 = self.clients["ap2"]

    def state(self) -> dict[str, Any]:
        engine = self.server.server.engine  # type: ignore[union-attr]
        return self.server.run(engine.read(lambda ledger, now_ms: ledger.state(now_ms)))

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def load_sample(issuer: EtfClient) -> None:
    issuer.register_asset("BTC", 8)
    issuer.register_asset("ETH", 18)
    issuer.register_custodian("C1", "Harbour Custody", "BVX101", "ACTIVE", EXPIRY)
    issuer.register_custodian("C2", "Kowloon Trust", "BVX202", "ACTIVE", EXPIRY)
    issuer.register_participant("AP-1", "Alpha PD", [FUND], 20, 100)
    issuer.register_participant("AP-2", "Beta PD", [FUND, FUND2], 20, 100)
    issuer.create_fund(FUND, "Harbour BTC ETH", "USD", 50_000, "C1", ["C1", "C2"],
                       [FundAssetTerms("BTC"), FundAssetTerms("ETH", "0.30", "0.10", 604_800, "75")],
                       creation_fee="1500.00", redemption_fee="1500.00", min_liquid_units=1,
                       initial_shares_outstanding=2_000_000)
    issuer.create_fund(FUND2, "Harbour BTC", "USD", 100_000, "C2", ["C2"], [FundAssetTerms("BTC")])
    for cid, btc, eth in (("C1", "150", "2000"), ("C2", "50", "1000")):
        issuer.adjust_holding(FUND, cid, "BTC", btc, "opening")
        issuer.adjust_holding(FUND, cid, "ETH", eth, "opening")
    issuer.adjust_cash(FUND, "125000.00", "opening")
    issuer.stake(FUND, "C1", "ETH", "895")
    issuer.publish_prices([Tick("BTC", "USD", "97250", T0 - 1000), Tick("ETH", "USD", "3412.55", T0 - 1000)])


@contextmanager
def serving_http() -> Iterator[Desk]:
    """The sample fund on a real server with its HTTP listener too (tests/test_http*.py, test_connect_clients.py)."""
    with BackgroundServer(config(http_listen="127.0.0.1:0"), clock=Clock()) as server:
        d = Desk(server, Clock())
        load_sample(d.issuer)
        try:
            yield d
        finally:
            d.close()


def config(**overrides: Any) -> Config:
    values: dict[str, Any] = {"listen": "127.0.0.1:0", "data_dir": Path(tempfile.mkdtemp(prefix="etf-test-")),
                              "principals": PRINCIPALS,
                              "heartbeat_seconds": 0.2, "grace_seconds": 2.0}
    values.update(overrides)
    return Config(**values)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest) -> JournalConfig:
    """Each service test on both journal backends: SQLite in a data directory, and a fresh shard of
    the test PostgreSQL cluster (a primary with a synchronous standby)."""
    if request.param == "sqlite":
        return JournalConfig()
    cluster = request.getfixturevalue("pg_cluster")
    return JournalConfig(backend="postgresql", dsn=cluster.dsn, shard=f"t-{uuid.uuid4().hex[:12]}",
                         node_name="test-node")


@pytest.fixture
def desk(journal: JournalConfig) -> Iterator[Desk]:
    clock = Clock()
    with BackgroundServer(config(journal=journal), ledger=make_ledger(), clock=clock) as server:
        d = Desk(server, clock)
        load_sample(d.issuer)
        try:
            yield d
        finally:
            d.close()


def refused(call: Callable[[], object], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    assert err.code() == code, err.details()
    return str(err.details())


# == every RPC ======================================================================================
def test_every_rpc_answers(desk: Desk) -> None:
    issuer, ap1, observer = desk.issuer, desk.ap1, desk.observer
    assert isinstance(issuer.ping(), pb.PingReply)

    nav = observer.get_nav(FUND)
    assert (nav.nav, nav.nav_per_share, nav.cash, nav.shares_outstanding) == (
        "29812650.00", "14.9063", "125000.00", 2_000_000)
    assert [(x.asset, x.quantity, x.price, x.value) for x in nav.lines] == [
        ("BTC", "200", "97250", "19450000.00"), ("ETH", "3000", "3412.55", "10237650.00")]
    assert (nav.stale, nav.as_of) == (False, T0 - 1000)

    basket = ap1.get_basket(FUND)
    assert [(x.asset, x.quantity_per_unit) for x in basket.lines] == [("BTC", "5"), ("ETH", "75")]
    assert (basket.cash_component, basket.nav_per_unit, basket.creation_unit) == ("3125.00", "745316.25", 50_000)

    holdings = observer.get_holdings(FUND)
    eth = next(a for a in holdings.assets if a.asset == "ETH")
    assert (eth.total, eth.committed, eth.liquid, eth.illiquid) == ("3000", "3000", "2105", "895")
    assert (eth.illiquid_ratio, eth.liquid_ratio, eth.staking_cap, eth.liquidity_buffer) == (
        "0.2983", "0.7017", "0.30", "0.10")
    assert ("C1", "ETH", "1105", "895", True) in [
        (r.custodian_id, r.asset, r.available, r.staked, r.licensed) for r in holdings.holdings]
    empty = issuer.get_holdings(FUND2)
    assert [(a.asset, a.illiquid_ratio, a.liquid_ratio) for a in empty.assets] == [("BTC", "", "")]

    # Dealing: check, submit, batch, capacity, get, list, cancel, settle.
    check = ap1.check_order(FUND, "CREATE", 2, "c-1")
    assert (check.order_id, status_name(check.status)) == ("", "ACCEPTED")
    created = ap1.submit_order(FUND, "CREATE", 2, "c-1")
    assert (created.order_id, status_name(created.status), side_name(created.side)) == (
        "ORD-00000001", "ACCEPTED", "CREATE")
    assert [(d.asset, d.quantity) for d in created.deliverables] == [("BTC", "10"), ("ETH", "150")]
    assert (created.cash_amount, created.fee, created.basket.nav_per_share) == ("6250.00", "1500.00", "14.9063")
    assert ap1.submit_order(FUND, "CREATE", 2, "c-1") == created  # idempotent repeat
    settled = issuer.settle_order(created.order_id)
    assert status_name(settled.status) == "SETTLED"
    assert observer.get_nav(FUND).shares_outstanding == 2_100_000

    batch = ap1.submit_orders([OrderItem(FUND, "REDEEM", 1, "r-1"), OrderItem(FUND, "REDEEM", 3, "r-2")])
    assert [(o.order_id, status_name(o.status), o.reject_reason) for o in batch] == [
        ("ORD-00000002", "ACCEPTED", ""), ("ORD-00000003", "REJECTED", "STAKING_CAP_BREACH")]
    assert [(leg.custodian_id, leg.asset, leg.quantity) for leg in batch[0].legs] == [
        ("C1", "BTC", "5"), ("C1", "ETH", "75")]

    capacity = ap1.get_capacity(FUND)
    assert capacity.fund_id == FUND
    assert (capacity.redeem.binding_reason, capacity.create.binding_reason) != ("", "")

    assert ap1.get_order("ORD-00000002") == batch[0]
    assert issuer.get_order("ORD-00000003") == batch[1]
    assert [o.order_id for o in observer.list_orders(FUND)] == ["ORD-00000001", "ORD-00000002", "ORD-00000003"]
    assert [o.order_id for o in observer.list_orders(FUND, "REJECTED")] == ["ORD-00000003"]
    assert [o.order_id for o in observer.list_orders(page_size=1)] == ["ORD-00000001", "ORD-00000002",
                                                                       "ORD-00000003"]
    cancelled = ap1.cancel_order("ORD-00000002")
    assert status_name(cancelled.status) == "CANCELLED"

    # Admin instructions.
    issuer.unstake(FUND, "C1", "ETH", "95")
    issuer.record_staking_reward(FUND, "C1", "ETH", "1.5")
    issuer.record_slashing(FUND, "C1", "ETH", "0.000000000000000001")
    eth_row = next(r for r in issuer.get_holdings(FUND).holdings if (r.custodian_id, r.asset) == ("C1", "ETH"))
    assert (eth_row.staked, eth_row.unbonding) == ("799.999999999999999999", "95")
    issuer.set_custodian_licence("C2", "SUSPENDED", EXPIRY)
    issuer.update_fund(FUND, name="Harbour Bitcoin & Ether", dealing_status="SUSPENDED", custodian_priority=["C1"])
    assert ap1.submit_order(FUND, "CREATE", 1, "c-2").reject_reason == "FUND_SUSPENDED"
    reply = issuer.publish_prices([Tick("BTC", "USD", "98000", T0), Tick("BTC", "USD", "1", T0 - 5)])
    assert (reply.applied, reply.ignored) == (1, 1)


def test_stream_nav_snapshot_coalescing_and_heartbeat(desk: Desk) -> None:
    first_nav = desk.ap1.get_nav(FUND)
    stream = desk.ap1.stream_nav(FUND, min_interval_ms=1000, timeout=30)
    try:
        first = next(stream)
        assert (first.heartbeat, first.nav) == (False, first_nav)

        # Nothing changes: heartbeats (configured at 0.2 s) carry the current NAV.
        beat = next(stream)
        assert (beat.heartbeat, beat.nav) == (True, first_nav)

        ticks = 40

        def burst() -> None:
            for i in range(1, ticks + 1):
                desk.issuer.publish_prices([Tick("BTC", "USD", str(97_000 + i), T0 + i)])

        publisher = threading.Thread(target=burst)
        publisher.start()
        final_nav = f"{200 * (97_000 + ticks) + 10_237_650 + 125_000}.00"  # BTC at the last tick + ETH + cash
        changes = []
        for update in stream:
            if not update.heartbeat:
                changes.append(update.nav.nav)
            if update.nav.nav == final_nav:
                break
        publisher.join()
        assert changes[-1] == final_nav == desk.observer.get_nav(FUND).nav
        assert len(changes) < ticks  # coalesced: one update per interval, not one per tick
    finally:
        stream.cancel()


def test_stream_nav_refusals(desk: Desk) -> None:
    assert "fund_id" in refused(lambda: next(desk.ap1.stream_nav(FUND2)), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: next(desk.ap1.stream_nav("NOPE")), grpc.StatusCode.NOT_FOUND)
    assert "min_interval_ms" in refused(lambda: next(desk.ap1.stream_nav(FUND, -1)),
                                        grpc.StatusCode.INVALID_ARGUMENT)
    no_token = EtfClient(desk.target, "wrong")
    refused(lambda: next(no_token.stream_nav(FUND)), grpc.StatusCode.UNAUTHENTICATED)
    no_token.close()


# == access =========================================================================================
def _methods() -> list[tuple[str, Any, bool]]:
    out = []
    for service in pb.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            out.append((f"/{service.full_name}/{m.name}", getattr(pb, m.input_type.name), m.server_streaming))
    return out


def test_access_table_covers_every_rpc() -> None:
    assert sorted(path for path, _, _ in _methods()) == sorted(ACCESS)


def _raw_call(channel: grpc.Channel, path: str, request_type: Any, streaming: bool,
              metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    """Call with an empty request; the status code (OK when it answers)."""
    try:
        if streaming:
            call = channel.unary_stream(path, request_serializer=request_type.SerializeToString,
                                        response_deserializer=pb.NavUpdate.FromString)
            next(call(request_type(), metadata=metadata, timeout=10))
        else:
            call = channel.unary_unary(path, request_serializer=request_type.SerializeToString,
                                       response_deserializer=lambda b: b)
            call(request_type(), metadata=metadata, timeout=10)
    except grpc.RpcError as e:
        return e.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_every_role_refused_where_it_must_be(desk: Desk) -> None:
    before = desk.state()
    roles = {"issuer": ISSUER, "observer": OBSERVER, "ap1": PARTICIPANT}
    with grpc.insecure_channel(desk.target) as channel:
        for path, request_type, streaming in _methods():
            for bad in ((), (("authorization", "Bearer nobody"),), (("authorization", TOKENS["issuer"]),)):
                assert _raw_call(channel, path, request_type, streaming, bad) == grpc.StatusCode.UNAUTHENTICATED, path
            for who, role in roles.items():
                code = _raw_call(channel, path, request_type, streaming,
                                 (("authorization", f"Bearer {TOKENS[who]}"),))
                if role in ACCESS[path]:
                    assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), path
                else:
                    assert code == grpc.StatusCode.PERMISSION_DENIED, (path, who)
    assert desk.state() == before


def test_participant_sees_only_its_funds_and_orders(desk: Desk) -> None:
    ap1, ap2 = desk.ap1, desk.ap2
    assert "fund_id" in refused(lambda: ap1.get_nav(FUND2), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: ap1.get_basket(FUND2), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: desk.clients["ap-unregistered"].get_nav(FUND), grpc.StatusCode.PERMISSION_DENIED)
    assert ap2.get_nav(FUND2).fund_id == FUND2

    mine = ap1.submit_order(FUND, "CREATE", 1, "mine")
    theirs = ap2.submit_order(FUND, "CREATE", 1, "theirs")
    before = desk.state()
    assert "order_id" in refused(lambda: ap1.get_order(theirs.order_id), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: ap1.cancel_order(theirs.order_id), grpc.StatusCode.PERMISSION_DENIED)
    assert desk.state() == before
    assert [o.order_id for o in ap1.list_orders()] == [mine.order_id]
    assert [o.order_id for o in ap2.list_orders(FUND)] == [theirs.order_id]
    assert len(desk.observer.list_orders()) == 2
    # Submitting to a fund it is not eligible for is the ledger's refusal, same code.
    refused(lambda: ap1.submit_order(FUND2, "CREATE", 1, "x"), grpc.StatusCode.PERMISSION_DENIED)
    assert desk.state() == before


# == errors leave state unchanged ===================================================================
def test_invalid_argument_names_the_field(desk: Desk) -> None:
    before = desk.state()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: desk.issuer.adjust_holding(FUND, "C1", "BTC", "1e5"), "delta"),
        (lambda: desk.issuer.adjust_holding(FUND, "C1", "BTC", "0.000000001"), "delta"),
        (lambda: desk.issuer.adjust_cash(FUND, "+5.00"), "delta"),
        (lambda: desk.issuer.stake(FUND, "C1", "ETH", ""), "quantity"),
        (lambda: desk.ap1.submit_order(FUND, "CREATE", 0, "u0"), "units"),
        (lambda: desk.ap1.submit_order(FUND, "CREATE", 1, "bad id!"), "client_order_id"),
        (lambda: desk.issuer.publish_prices([Tick("BTC", "USD", "1", T0), Tick("ETH", "USD", "-3", T0)]),
         "ticks[1].price"),
        (lambda: desk.issuer.register_asset("btc", 8), "symbol"),
        (lambda: desk.issuer.update_fund(FUND, assets=[FundAssetTerms("ETH", "0.5")]), "liquidity_buffer"),
        (lambda: desk.observer.list_orders(page_size=-1), "page_size"),
    ]
    for call, field in cases:
        assert field in refused(call, grpc.StatusCode.INVALID_ARGUMENT)
    with grpc.insecure_channel(desk.target) as channel:  # an unknown side cannot be sent by EtfClient
        submit = channel.unary_unary("/etf_engine.v1.Dealing/SubmitOrder",
                                     request_serializer=pb.SubmitOrderRequest.SerializeToString,
                                     response_deserializer=pb.SubmitOrderReply.FromString)
        for side in (0, 7):
            with pytest.raises(grpc.RpcError) as info:
                submit(pb.SubmitOrderRequest(fund_id=FUND, side=side, units=1, client_order_id="s"),
                       metadata=(("authorization", f"Bearer {TOKENS['ap1']}"),))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert "side" in info.value.details()  # type: ignore[attr-defined]
    assert desk.state() == before


def test_not_found(desk: Desk) -> None:
    before = desk.state()
    refused(lambda: desk.observer.get_nav("NOPE"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.observer.get_basket("NOPE"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.issuer.get_holdings("NOPE"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.ap1.submit_order("NOPE", "CREATE", 1, "nf"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.issuer.settle_order("ORD-00000099"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.observer.get_order("ORD-00000099"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.issuer.stake(FUND, "C9", "ETH", "1"), grpc.StatusCode.NOT_FOUND)
    assert desk.state() == before


def test_failed_precondition_carries_the_reason_code(desk: Desk) -> None:
    before = desk.state()
    assert refused(lambda: desk.issuer.stake(FUND, "C2", "ETH", "10"),
                   grpc.StatusCode.FAILED_PRECONDITION).startswith("STAKING_CAP_BREACH")
    assert refused(lambda: desk.issuer.stake(FUND, "C1", "ETH", "2000"),
                   grpc.StatusCode.FAILED_PRECONDITION).startswith("INSUFFICIENT_LIQUID_BALANCE")
    assert refused(lambda: desk.issuer.unstake(FUND, "C2", "ETH", "1"),
                   grpc.StatusCode.FAILED_PRECONDITION).startswith("INSUFFICIENT_STAKED_BALANCE")
    assert refused(lambda: desk.issuer.adjust_holding(FUND, "C2", "BTC", "-51"),
                   grpc.StatusCode.FAILED_PRECONDITION).startswith("INSUFFICIENT_LIQUID_BALANCE")
    assert desk.state() == before

    order = desk.ap1.submit_order(FUND, "CREATE", 1, "p-1")
    desk.issuer.set_custodian_licence("C1", "REVOKED", EXPIRY)
    before = desk.state()
    assert refused(lambda: desk.issuer.settle_order(order.order_id),
                   grpc.StatusCode.FAILED_PRECONDITION).startswith("CUSTODIAN_NOT_LICENSED")
    assert desk.state() == before
    desk.ap1.cancel_order(order.order_id)
    before = desk.state()
    refused(lambda: desk.issuer.settle_order(order.order_id), grpc.StatusCode.FAILED_PRECONDITION)
    refused(lambda: desk.ap1.cancel_order(order.order_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert desk.state() == before


def test_already_exists_and_idempotent_repeat(desk: Desk) -> None:
    original = desk.ap1.submit_order(FUND, "CREATE", 2, "dup")
    before = desk.state()
    assert desk.ap1.submit_order(FUND, "CREATE", 2, "dup") == original
    refused(lambda: desk.ap1.submit_order(FUND, "CREATE", 3, "dup"), grpc.StatusCode.ALREADY_EXISTS)
    refused(lambda: desk.ap1.submit_order(FUND, "REDEEM", 2, "dup"), grpc.StatusCode.ALREADY_EXISTS)
    refused(lambda: desk.issuer.register_asset("BTC", 8), grpc.StatusCode.ALREADY_EXISTS)
    assert desk.state() == before
    assert [o.order_id for o in desk.observer.list_orders()] == [original.order_id]


def test_submit_orders_refusal_names_the_item_and_records_nothing(desk: Desk) -> None:
    before = desk.state()
    items = [OrderItem(FUND, "CREATE", 1, "b-1"), OrderItem(FUND, "REDEEM", 1, "b-2"),
             OrderItem(FUND, "CREATE", 0, "b-3")]
    assert "requests[2]" in refused(lambda: desk.ap1.submit_orders(items), grpc.StatusCode.INVALID_ARGUMENT)
    items[2] = OrderItem("NOPE", "CREATE", 1, "b-3")
    assert "requests[2]" in refused(lambda: desk.ap1.submit_orders(items), grpc.StatusCode.NOT_FOUND)
    assert desk.state() == before
    assert desk.observer.list_orders() == []
    too_many = [OrderItem(FUND, "CREATE", 1, f"m-{i}") for i in range(1001)]
    assert "requests" in refused(lambda: desk.ap1.submit_orders(too_many), grpc.StatusCode.INVALID_ARGUMENT)
    assert desk.state() == before


# == health, reflection =============================================================================
def test_health_and_reflection(desk: Desk) -> None:
    with grpc.insecure_channel(desk.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "etf_engine.v1.Dealing"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"etf_engine.v1.Admin", "etf_engine.v1.Dealing", "etf_engine.v1.Valuation",
                "etf_engine.v1.Diagnostics", "grpc.health.v1.Health"} <= services
        # A reflection client can read the schema without our .proto files.
        db = ProtoReflectionDescriptorDatabase(channel)
        proto = db.FindFileContainingSymbol("etf_engine.v1.Order")
        assert "Order" in [m.name for m in proto.message_type]


def test_reflection_can_be_switched_off() -> None:
    with BackgroundServer(config(reflection=False), ledger=make_ledger()) as server:
        with grpc.insecure_channel(server.target) as channel:
            with pytest.raises(grpc.RpcError) as info:
                list(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        with EtfClient(server.target, TOKENS["issuer"]) as client:
            client.ping()


def test_message_size_is_bounded(desk: Desk) -> None:
    huge = [Tick("BTC", "USD", "1", T0)] * 300_000  # well above the server's 4 MiB
    with EtfClient(desk.target, TOKENS["issuer"], max_message_bytes=64 * 1024 * 1024) as big:
        refused(lambda: big.publish_prices(huge), grpc.StatusCode.RESOURCE_EXHAUSTED)
