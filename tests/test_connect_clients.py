"""Clients nobody here wrote, against the HTTP listener (issue 19 §1), each reply equal to gRPC's:

- ``buf curl`` (npm @bufbuild/buf) in its three protocols, Connect and gRPC-Web over HTTP/1.1 and h2c,
  gRPC over h2c (gRPC has no HTTP/1.1), the schema found by gRPC reflection on the HTTP port itself;
- the official Connect-ES client (@connectrpc/connect-node), its services read at run time from a
  descriptor set protoc builds here: Connect with JSON and binary over HTTP/1.1 and HTTP/2 (gzip both
  ways on one of them), and its gRPC-Web and gRPC transports; unary calls, a write, server streams and
  refusals.

The npm packages are installed in tests/js by ``npm ci`` (.ci/run does it). Where node or the packages
are missing these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc_tools
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_tools import protoc
from test_service import FUND, TOKENS, Desk, serving_http

from etf_engine.v1 import engine_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
BUF = JS / "node_modules" / ".bin" / "buf"
CONNECT_ES = JS / "node_modules" / "@connectrpc" / "connect-node"
PACKAGE = "etf_engine.v1"


def need(present: bool, what: str) -> None:
    if present:
        return
    message = f"{what} is missing: `npm ci` in tests/js (node and npm from Debian: apt-get install nodejs npm)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    with serving_http() as d:
        yield d


def same(reply: dict[str, Any], expected: Message) -> None:
    """A reply in proto JSON equals the gRPC reply, field for field."""
    assert json_format.ParseDict(reply, type(expected)()) == expected


# == buf curl =======================================================================================
# (protocol, HTTP/2 with prior knowledge)
BUF_WAYS = [("connect", False), ("connect", True), ("grpcweb", False), ("grpcweb", True), ("grpc", True)]
BUF_IDS = [f"{protocol}-{'h2c' if h2c else 'http1.1'}" for protocol, h2c in BUF_WAYS]


def buf_args(desk: Desk, protocol: str, h2c: bool, method: str, data: Any = None, token: str | None = None,
             *extra: str) -> list[str]:
    need(BUF.exists(), "buf (npm @bufbuild/buf)")
    args = [str(BUF), "curl", "--protocol", protocol, *(["--http2-prior-knowledge"] if h2c else []), *extra]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {TOKENS[token]}"]
    if data is not None:
        args += ["-d", json.dumps(data)]
    return [*args, f"{desk.server.http_url}/{PACKAGE}.{method}" if method else desk.server.http_url]


def buf(desk: Desk, protocol: str, h2c: bool, method: str, data: Any = None, token: str | None = None,
        *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(buf_args(desk, protocol, h2c, method, data, token, *extra), capture_output=True,
                          text=True, timeout=60)


def json_documents(text: str) -> list[dict[str, Any]]:
    """buf curl prints one JSON document per message, each indented over several lines."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    return found


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def buf_stream(desk: Desk, protocol: str, h2c: bool, method: str, data: Any, token: str,
               count: int) -> list[dict[str, Any]]:
    """The first ``count`` messages of a server stream that does not end by itself."""
    process = subprocess.Popen(buf_args(desk, protocol, h2c, method, data, token), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    text, deadline = "", time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            text += line
            if line.startswith("}"):  # a document ends at a closing brace in the first column
                documents = json_documents(text)
                if len(documents) >= count:
                    return documents[:count]
    finally:
        process.kill()
        process.wait()
    raise AssertionError(f"{method}: {len(json_documents(text))} messages, stderr: {process.stderr.read()}")


@pytest.mark.parametrize(("protocol", "h2c"), BUF_WAYS, ids=BUF_IDS)
def test_buf_curl_finds_the_services_by_reflection(desk: Desk, protocol: str, h2c: bool) -> None:
    listed = buf(desk, protocol, h2c, "", None, None, "--list-services")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {f"{PACKAGE}.{s}" for s in pb.DESCRIPTOR.services_by_name} <= services
    methods = buf(desk, protocol, h2c, "", None, None, "--list-methods")
    assert f"{PACKAGE}.Dealing/SubmitOrder" in methods.stdout.split()


@pytest.mark.parametrize(("protocol", "h2c"), BUF_WAYS, ids=BUF_IDS)
def test_buf_curl_unary_calls_equal_grpc(desk: Desk, protocol: str, h2c: bool) -> None:
    for method, data, token, expected in [
        ("Valuation/GetNav", {"fund_id": FUND}, "observer", desk.observer.get_nav(FUND)),
        ("Valuation/GetBasket", {"fundId": FUND}, "ap1", desk.ap1.get_basket(FUND)),
        ("Valuation/ListFunds", {}, "issuer", pb.ListFundsReply(funds=desk.issuer.list_funds())),
        ("Admin/GetHoldings", {"fund_id": FUND}, "observer", desk.observer.get_holdings(FUND)),
    ]:
        result = buf(desk, protocol, h2c, method, data, token)
        assert result.returncode == 0, (method, result.stderr)
        same(json.loads(result.stdout), expected)
    # a write, then the same order read back over gRPC
    client_order_id = f"buf-{protocol}-{int(h2c)}"
    result = buf(desk, protocol, h2c, "Dealing/SubmitOrder",
                 {"fund_id": FUND, "side": "CREATE", "units": 1, "client_order_id": client_order_id}, "ap1")
    assert result.returncode == 0, result.stderr
    order = json.loads(result.stdout)["order"]
    assert order["status"] == "ACCEPTED" and order["clientOrderId"] == client_order_id
    same(order, desk.ap1.get_order(order["orderId"]))


@pytest.mark.parametrize(("protocol", "h2c"), BUF_WAYS, ids=BUF_IDS)
def test_buf_curl_refusals(desk: Desk, protocol: str, h2c: bool) -> None:
    for method, data, token, code in [
        ("Valuation/GetNav", {"fund_id": "F9"}, "observer", "not_found"),
        ("Valuation/GetNav", {"fund_id": FUND}, None, "unauthenticated"),
        ("Admin/RegisterAsset", {"symbol": "DOGE", "decimals": 8}, "ap1", "permission_denied"),
        ("Dealing/SubmitOrder", {"fund_id": FUND, "side": "CREATE", "units": 0}, "ap1", "invalid_argument"),
        ("Valuation/StreamEvents", {"after_seq": -1}, "observer", "invalid_argument"),
        ("Valuation/StreamNav", {"fund_id": "F9"}, "observer", "not_found"),
        ("Valuation/StreamEvents", {}, "ap1", "permission_denied"),
    ]:
        result = buf(desk, protocol, h2c, method, data, token)
        assert result.returncode != 0
        assert json.loads(result.stderr)["code"] == code, (method, result.stderr)


@pytest.mark.parametrize(("protocol", "h2c"), BUF_WAYS, ids=BUF_IDS)
def test_buf_curl_server_streams_equal_grpc(desk: Desk, protocol: str, h2c: bool) -> None:
    navs = buf_stream(desk, protocol, h2c, "Valuation/StreamNav", {"fund_id": FUND}, "observer", 2)
    assert [n.get("heartbeat", False) for n in navs] == [False, True]
    for update in navs:
        same(update["nav"], desk.observer.get_nav(FUND))
    records = buf_stream(desk, protocol, h2c, "Valuation/StreamEvents", {"after_seq": 0}, "observer", 3)
    expected = [r for r, _ in zip(desk.observer.stream_events(0, timeout=10), range(3), strict=False)]
    for got, want in zip(records, expected, strict=True):
        same(got, want)


# == Connect-ES =====================================================================================
@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """engine.proto and its imports as a FileDescriptorSet, built by protoc (grpc_tools) as setup.py builds
    the Python code: what a client of another language gets from us."""
    path = tmp_path_factory.mktemp("descriptors") / "engine.binpb"
    include = Path(grpc_tools.__file__).parent / "_proto"
    status = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", "--include_imports",
                          f"--descriptor_set_out={path}", str(ROOT / "proto" / "etf_engine" / "v1" / "engine.proto")])
    assert status == 0
    return path


# (protocol, HTTP version, binary protobuf, gzip both ways)
ES_WAYS = [("connect", "1.1", False, False), ("connect", "1.1", True, False), ("connect", "2", False, False),
           ("connect", "2", True, True), ("grpcweb", "1.1", True, False), ("grpc", "2", True, True)]
ES_IDS = [f"{p}-http{v}-{'binary' if b else 'json'}{'-gzip' if z else ''}" for p, v, b, z in ES_WAYS]


def connect_es(desk: Desk, descriptor_set: Path, protocol: str, http_version: str, binary: bool, gzip: bool,
               calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    need(node is not None, "node")
    need(CONNECT_ES.exists(), "@connectrpc/connect-node")
    plan = {"baseUrl": desk.server.http_url, "protocol": protocol, "httpVersion": http_version, "binary": binary,
            "gzip": gzip, "descriptorSet": str(descriptor_set), "calls": calls}
    result = subprocess.run([str(node), str(JS / "connect_client.mjs")], input=json.dumps(plan), capture_output=True,
                            text=True, timeout=60, cwd=JS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def es_call(service: str, method: str, request: dict[str, Any], token: str | None, take: int = 0) -> dict[str, Any]:
    return {"service": f"{PACKAGE}.{service}", "method": method, "request": request,
            "token": TOKENS[token] if token else None, "take": take}


@pytest.mark.parametrize(("protocol", "http_version", "binary", "gzip"), ES_WAYS, ids=ES_IDS)
def test_connect_es_replies_equal_grpc(desk: Desk, descriptor_set: Path, protocol: str, http_version: str,
                                       binary: bool, gzip: bool) -> None:
    client_order_id = f"es-{protocol}-{http_version}-{int(binary)}-{int(gzip)}"
    results = connect_es(desk, descriptor_set, protocol, http_version, binary, gzip, [
        es_call("Valuation", "GetNav", {"fundId": FUND}, "observer"),
        es_call("Valuation", "GetBasket", {"fundId": FUND}, "ap1"),
        es_call("Valuation", "ListFunds", {}, "issuer"),
        es_call("Admin", "ListParticipants", {}, "observer"),
        es_call("Dealing", "SubmitOrder", {"fundId": FUND, "side": "CREATE", "units": "1",
                                           "clientOrderId": client_order_id}, "ap1"),
        es_call("Valuation", "StreamNav", {"fundId": FUND}, "observer", take=2),
        es_call("Valuation", "StreamEvents", {"afterSeq": "0"}, "observer", take=3),
        es_call("Valuation", "GetNav", {"fundId": "F9"}, "observer"),
        es_call("Valuation", "GetNav", {"fundId": FUND}, None),
        es_call("Valuation", "StreamNav", {"fundId": "F9"}, "observer", take=1),
        es_call("Valuation", "StreamEvents", {}, "ap1", take=1),
        es_call("Admin", "RegisterAsset", {"symbol": "DOGE", "decimals": 8}, "ap1"),
    ])
    nav, basket, funds, participants, submitted, navs, records, *refusals = results
    same(nav["reply"], desk.observer.get_nav(FUND))
    same(basket["reply"], desk.ap1.get_basket(FUND))
    same(funds["reply"], pb.ListFundsReply(funds=desk.issuer.list_funds()))
    same(participants["reply"], pb.ListParticipantsReply(participants=desk.observer.list_participants()))
    order = submitted["reply"]["order"]
    assert order["clientOrderId"] == client_order_id
    same(order, desk.ap1.get_order(order["orderId"]))
    assert [u.get("heartbeat", False) for u in navs["replies"]] == [False, True]
    for update in navs["replies"]:
        same(update["nav"], desk.observer.get_nav(FUND))
    expected = [r for r, _ in zip(desk.observer.stream_events(0, timeout=10), range(3), strict=False)]
    for got, want in zip(records["replies"], expected, strict=True):
        same(got, want)
    assert [r["error"]["code"] for r in refusals] == ["not_found", "unauthenticated", "not_found",
                                                      "permission_denied", "permission_denied"]
    assert refusals[0]["error"]["message"] == "fund 'F9' not found"  # the engine's words, as over gRPC
