"""The HTTP listener (SPEC §15) with plain HTTP clients (urllib, http.client) on a real server over
loopback: Connect unary JSON and server streaming, every role rule, Connect's error JSON and statuses,
equality with the gRPC reply for the same call, and /metrics parsed with prometheus-client's parser,
its values equal to GetNav and GetHoldings, its counters moving with the calls.
"""

from __future__ import annotations

import http.client
import json
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from test_service import FUND, FUND2, TOKENS, Clock, Desk, config, load_sample

from etf_engine.api.auth import ACCESS, ISSUER, OBSERVER, PACKAGE, PARTICIPANT
from etf_engine.api.server import BackgroundServer
from etf_engine.v1 import engine_pb2 as pb

ROLE_TOKENS = {ISSUER: TOKENS["issuer"], PARTICIPANT: TOKENS["ap1"], OBSERVER: TOKENS["observer"]}


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    with BackgroundServer(config(http_listen="127.0.0.1:0"), clock=Clock()) as server:
        d = Desk(server, Clock())
        load_sample(d.issuer)
        try:
            yield d
        finally:
            d.close()


def url(desk: Desk) -> str:
    return desk.server.http_url


def post(desk: Desk, method: str, body: Any, token: str | None = TOKENS["issuer"],
         content_type: str = "application/json") -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url(desk)}/{PACKAGE}.{method}", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw.startswith(b"{") else raw.decode()


def metrics(desk: Desk) -> dict[str, dict[tuple, float]]:
    with urllib.request.urlopen(f"{url(desk)}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# == Connect =======================================================================================
def test_same_reply_as_grpc(desk: Desk) -> None:
    status, body = post(desk, "Valuation/GetNav", {"fundId": FUND})
    assert status == 200
    assert json_format.ParseDict(body, pb.Nav()) == desk.issuer.get_nav(FUND)
    status, snake = post(desk, "Valuation/GetNav", {"fund_id": FUND})  # both spellings of a field
    assert (status, snake) == (200, body)
    status, basket = post(desk, "Valuation/GetBasket", {"fund_id": FUND}, token=TOKENS["ap1"])
    assert json_format.ParseDict(basket, pb.Basket()) == desk.ap1.get_basket(FUND)


def test_a_write_over_connect(desk: Desk) -> None:
    status, body = post(desk, "Dealing/SubmitOrder", {"fund_id": FUND, "side": "CREATE", "units": 1,
                                                      "client_order_id": "connect-1"}, token=TOKENS["ap1"])
    assert status == 200 and body["order"]["status"] == "ACCEPTED"
    assert json_format.ParseDict(body["order"], pb.Order()) == desk.ap1.get_order(body["order"]["orderId"])
    again = post(desk, "Dealing/SubmitOrder", {"fundId": FUND, "side": "CREATE", "units": 1,
                                               "clientOrderId": "connect-1"}, token=TOKENS["ap1"])
    assert again == (200, body)  # idempotent, as over gRPC


@pytest.mark.parametrize(("method", "body", "token", "status", "code", "start"), [
    ("Valuation/GetNav", {"fund_id": "F9"}, "issuer", 404, "not_found", "fund"),
    ("Admin/AdjustCash", {"fund_id": FUND, "delta": "1.234"}, "issuer", 400, "invalid_argument", "delta"),
    ("Admin/SettleOrder", {"order_id": "ORD-00000099"}, "issuer", 404, "not_found", "order"),
    ("Admin/RegisterAsset", {"symbol": "BTC", "decimals": 8}, "issuer", 409, "already_exists", "asset"),
    ("Admin/RegisterAsset", {"symbol": "DOGE", "decimals": 8}, "ap1", 403, "permission_denied", "role"),
    ("Valuation/GetNav", {"fund_id": FUND2}, "ap1", 403, "permission_denied", "fund_id"),
    ("Valuation/GetNav", {"fund_id": FUND}, None, 401, "unauthenticated", ""),
    ("Valuation/GetNav", {"fund_id": FUND}, "nobody", 401, "unauthenticated", ""),
    ("Valuation/GetNav", {"no_such_field": 1}, "issuer", 400, "invalid_argument", "request body"),
    ("Valuation/NoSuchMethod", {}, "issuer", 501, "unimplemented", "no method"),
])
def test_errors_are_connect_error_json(desk: Desk, method, body, token, status, code, start) -> None:
    token = TOKENS.get(token, token) if token else None
    got_status, got = post(desk, method, body, token=token)
    assert (got_status, got["code"]) == (status, code), got
    assert start in got["message"]


def test_failed_precondition_carries_the_reason(desk: Desk) -> None:
    order = desk.ap1.submit_order(FUND, "CREATE", 1, "connect-fp")
    desk.issuer.cancel_order(order.order_id)
    status, got = post(desk, "Admin/SettleOrder", {"order_id": order.order_id})
    assert (status, got["code"]) == (400, "failed_precondition") and got["message"].startswith("ORDER_NOT_ACCEPTED")


def test_content_type(desk: Desk) -> None:
    assert post(desk, "Valuation/GetNav", b"fund_id=F1", content_type="text/plain")[0] == 415


def test_every_role_rule(desk: Desk) -> None:
    """The one role table serves HTTP as it serves gRPC: a role outside a method's set is refused before
    anything else (403); a role inside it gets past authorisation (whatever the empty request then meets)."""
    for path, roles in ACCESS.items():
        method = path.removeprefix(f"/{PACKAGE}.")
        service, name = method.split("/")
        streaming = pb.DESCRIPTOR.services_by_name[service].methods_by_name[name].server_streaming
        for role, token in ROLE_TOKENS.items():
            if streaming:
                code = stream_code(desk, method, {"fund_id": "none"}, token)
                refused = code in ("unauthenticated", "permission_denied")
                assert refused == (role not in roles) and (code == "permission_denied") == refused, (method, role)
                continue
            status, _ = post(desk, method, {}, token=token)
            if role in roles:
                assert status not in (401, 403), (method, role, status)
            else:
                assert status == 403, (method, role, status)


def stream(desk: Desk, method: str, body: Any, token: str, limit: int) -> tuple[int, list[dict]]:
    """A Connect server stream: (HTTP status, up to ``limit`` messages, then the end-of-stream message
    marked ``_end`` if it came within them), then the connection is closed."""
    host, port = url(desk).removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    data = json.dumps(body).encode()
    conn.request("POST", f"/{PACKAGE}.{method}", body=struct.pack(">BI", 0, len(data)) + data,
                 headers={"Content-Type": "application/connect+json", "Authorization": f"Bearer {token}"})
    reply = conn.getresponse()
    messages = []
    if reply.status == 200:
        while len(messages) < limit:
            flags, size = struct.unpack(">BI", reply.read(5))
            messages.append(json.loads(reply.read(size)) | ({"_end": True} if flags & 2 else {}))
            if flags & 2:
                break
    conn.close()
    return reply.status, messages


def stream_code(desk: Desk, method: str, body: Any, token: str) -> str:
    """The code a Connect server stream ends with at once ("" if it sent a message first): a refusal
    is HTTP 200 and the error in the end-of-stream message, never an HTTP error status."""
    status, messages = stream(desk, method, body, token, limit=1)
    assert status == 200, status
    return messages[0].get("error", {}).get("code", "") if messages[0].get("_end") else ""


def test_server_streams(desk: Desk) -> None:
    status, navs = stream(desk, "Valuation/StreamNav", {"fund_id": FUND}, TOKENS["observer"], limit=1)
    assert status == 200 and json_format.ParseDict(navs[0]["nav"], pb.Nav()) == desk.issuer.get_nav(FUND)
    status, records = stream(desk, "Valuation/StreamEvents", {"after_seq": 0}, TOKENS["observer"], limit=3)
    assert status == 200 and [r["seq"] for r in records] == ["1", "2", "3"]
    assert records[0]["type"] == "AssetRegistered" and records[0]["principal"] == "ops"
    assert stream_code(desk, "Valuation/StreamEvents", {"after_seq": -1}, TOKENS["observer"]) == "invalid_argument"
    assert stream_code(desk, "Valuation/StreamNav", {"fund_id": "F9"}, TOKENS["observer"]) == "not_found"
    assert stream_code(desk, "Valuation/StreamNav", {"fund_id": FUND}, "nobody") == "unauthenticated"


# == /metrics ======================================================================================
def test_metrics_equal_the_ledger(desk: Desk) -> None:
    found = metrics(desk)
    nav = desk.issuer.get_nav(FUND)
    assert found["etf_engine_nav"][(("fund_id", FUND),)] == float(Decimal(nav.nav))
    assert found["etf_engine_nav_per_share"][(("fund_id", FUND),)] == float(Decimal(nav.nav_per_share))
    for a in desk.issuer.get_holdings(FUND).assets:
        key = (("asset", a.asset), ("fund_id", FUND))
        assert found["etf_engine_staking_cap"][key] == float(Decimal(a.staking_cap))
        assert found["etf_engine_liquidity_buffer"][key] == float(Decimal(a.liquidity_buffer))
        committed = Decimal(a.committed)
        assert found["etf_engine_staking_ratio"][key] == pytest.approx(float(Decimal(a.illiquid) / committed))
        assert found["etf_engine_liquid_ratio"][key] == pytest.approx(float(Decimal(a.liquid) / committed))
    capacity = desk.ap2.get_capacity(FUND)  # AP-2's limits are AP-1's: the largest of the two is either
    assert found["etf_engine_capacity_units"][(("fund_id", FUND), ("side", "CREATE"))] == capacity.create.units
    assert found["etf_engine_capacity_units"][(("fund_id", FUND), ("side", "REDEEM"))] == capacity.redeem.units
    assert found["etf_engine_price_age_seconds"][(("asset", "BTC"), ("currency", "USD"))] == 1.0  # as_of T0 - 1 s
    assert found["etf_engine_orders_overdue"][(("fund_id", FUND),)] == 0
    assert found["etf_engine_leader"][(("shard", ""),)] == 1
    assert found["etf_engine_journal_applied_seq"][()] == desk.issuer.get_leader().applied_seq


def test_counters_move_with_the_calls(desk: Desk) -> None:
    key = (("code", "OK"), ("method", "Valuation/GetNav"), ("protocol", "grpc"))
    connect_key = (("code", "NOT_FOUND"), ("method", "Valuation/GetNav"), ("protocol", "connect"))
    orders_key = (("fund_id", FUND), ("reason", ""), ("side", "CREATE"), ("status", "ACCEPTED"))
    before = metrics(desk)
    desk.observer.get_nav(FUND)
    desk.observer.get_nav(FUND)
    post(desk, "Valuation/GetNav", {"fund_id": "F9"})
    desk.ap1.submit_order(FUND, "CREATE", 1)
    after = metrics(desk)
    calls = "etf_engine_rpc_calls_total"
    assert after[calls][key] - before[calls].get(key, 0) == 2
    assert after[calls][connect_key] - before[calls].get(connect_key, 0) == 1
    orders = "etf_engine_orders_total"
    assert after[orders][orders_key] - before[orders].get(orders_key, 0) == 1
    assert after["etf_engine_journal_commit_seconds_count"][()] > before["etf_engine_journal_commit_seconds_count"][()]
    assert after["etf_engine_rpc_seconds_count"][(("method", "Valuation/GetNav"),)] >= 3
