"""The HTTP listener tried as an attacker would (issue 19 §2), over HTTP/1.1 and h2c (httpx) and raw
sockets where a client library would not send the request: each defect found, one test that it is gone.

1. stream refusals are HTTP 200 and the error in the end-of-stream message;
2. an unsupported Content-Type is 415 with an empty body or Connect error JSON;
3. a Content-Encoding that lies, a truncated gzip, an unsupported or unknown encoding: invalid_argument
   or unimplemented, and nothing is written;
4. bodies over the limit (with a length, chunked, a gzip bomb, an envelope that says so): resource_exhausted,
   decompression stopping at the limit while it runs;
5. a top-level JSON value that is not an object: invalid_argument;
6. messages quote at most 64 characters of a value and carry no Python exception text (SPEC §11);
7. the console's files carry nosniff and a CSP with frame-ancestors;
8. console paths that name no file (long, double-encoded, overlong UTF-8, raw bytes): 404, never 500;
9. /metrics counts the code each call was answered with;
10. made-up method names share one label value;
11. a client's mistake is one log line at most, never a traceback.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import resource
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_http import envelopes
from test_service import FUND, TOKENS, Clock, Desk, config, serving_http

from etf_engine.api.auth import PACKAGE
from etf_engine.api.server import BackgroundServer
from etf_engine.api.servicers import ValuationServicer
from etf_engine.errors import MAX_MESSAGE_BYTES, QUOTE_CHARS
from etf_engine.v1 import engine_pb2 as pb

LIMIT = 4 * 1024 * 1024  # config's max_message_bytes default: the request body limit on both ports


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    with serving_http() as d:
        yield d


@pytest.fixture(scope="module", params=["http1", "h2c"])
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    h2c = request.param == "h2c"  # HTTP/2 with prior knowledge: httpx's http2 without http1 on http://
    with httpx.Client(http1=not h2c, http2=h2c, timeout=30) as c:
        yield c


def call(desk: Desk, client: httpx.Client, method: str, body: Any, token: str | None = "ap1",
         content_type: str = "application/json", **headers: str) -> httpx.Response:
    sent = {"Content-Type": content_type} if content_type else {}
    if token is not None:
        sent["Authorization"] = f"Bearer {TOKENS.get(token, token)}"
    sent |= {k.replace("_", "-"): v for k, v in headers.items()}
    data = body if isinstance(body, bytes | Iterator) else json.dumps(body).encode()
    return client.post(f"{desk.server.http_url}/{PACKAGE}.{method}", content=data, headers=sent)


def envelope(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def end_of_stream(response: httpx.Response, codec: str = "json") -> dict[str, str]:
    """A Connect stream refused: HTTP 200, its own content type, one end-of-stream message with the error."""
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"] == f"application/connect+{codec}"
    [(flags, data)] = envelopes(response.content)
    assert flags & 2
    return json.loads(data)["error"]


def connect_error(response: httpx.Response, status: int, code: str) -> str:
    assert (response.status_code, response.headers.get("content-type")) == (status, "application/json"), \
        (response.status_code, response.text)
    body = response.json()
    assert body["code"] == code, body
    return body["message"]


def journal_seq(desk: Desk) -> int:
    return desk.issuer.get_leader().applied_seq


def order(client_order_id: str, units: int = 1) -> dict[str, Any]:
    return {"fund_id": FUND, "side": "CREATE", "units": units, "client_order_id": client_order_id}


def test_each_client_speaks_its_http(desk: Desk, client: httpx.Client) -> None:
    response = call(desk, client, "Valuation/GetNav", {"fund_id": FUND})
    assert response.status_code == 200 and response.http_version in ("HTTP/1.1", "HTTP/2")
    assert (response.http_version == "HTTP/2") == (client._transport._pool._http2 and not  # type: ignore
                                                   client._transport._pool._http1)  # type: ignore


# == 1 ==============================================================================================
@pytest.mark.parametrize("codec", ["json", "proto"])
def test_stream_refusals_are_http_200_and_end_of_stream(desk: Desk, client: httpx.Client, codec: str) -> None:
    def body(message: Any) -> bytes:
        return envelope(json.dumps(message).encode() if codec == "json" else message.SerializeToString())

    cases = [
        ("Valuation/StreamNav", pb.StreamNavRequest(fund_id="F9"), {"fund_id": "F9"}, "observer", "not_found"),
        ("Valuation/StreamNav", pb.StreamNavRequest(fund_id=FUND), {"fund_id": FUND}, None, "unauthenticated"),
        ("Valuation/StreamNav", pb.StreamNavRequest(fund_id=FUND), {"fund_id": FUND}, "nobody", "unauthenticated"),
        ("Valuation/StreamEvents", pb.StreamEventsRequest(), {}, "ap1", "permission_denied"),
        ("Valuation/StreamEvents", pb.StreamEventsRequest(after_seq=-1), {"after_seq": -1}, "observer",
         "invalid_argument"),
        ("Valuation/StreamNav", pb.StreamNavRequest(min_interval_ms=-5), {"min_interval_ms": -5}, "observer",
         "invalid_argument"),
    ]
    for method, proto, as_json, token, code in cases:
        response = call(desk, client, method, body(proto if codec == "proto" else as_json), token=token,
                        content_type=f"application/connect+{codec}")
        assert end_of_stream(response, codec)["code"] == code, (method, token)
    # a body that is no envelope at all, or not the message: still 200 and the end-of-stream error
    for raw in (b"\x00\x00", envelope(b"\xff\xfe" if codec == "proto" else b"[1]"), envelope(b"{}", flags=0x80)):
        response = call(desk, client, "Valuation/StreamNav", raw, token="observer",
                        content_type=f"application/connect+{codec}")
        assert end_of_stream(response, codec)["code"] == "invalid_argument"


# == 2 ==============================================================================================
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json-seq"])
def test_unsupported_content_type_is_415_without_a_text_body(desk: Desk, client: httpx.Client,
                                                             content_type: str) -> None:
    response = call(desk, client, "Valuation/GetNav", b"fund_id=F1", content_type=content_type)
    assert response.status_code == 415
    assert response.content == b"" or response.json()["code"]  # Connect: an empty body or its error JSON
    assert "application/json" in response.headers["accept-post"]


def whole_response(s: socket.socket) -> bytes:
    """One HTTP/1.1 response off a socket: its head, then its body by Content-Length or chunks."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    length = re.search(rb"content-length: (\d+)", head)
    while not (len(data) >= len(head) + 4 + int(length.group(1)) if length else data.endswith(b"\r\n0\r\n\r\n")):
        data += s.recv(65536)
    return data


def test_an_http1_refusal_waits_for_the_body_and_keeps_the_connection(desk: Desk) -> None:
    """A refusal ahead of the body (no token, no such method) goes out on HTTP/1.1 once the body has
    arrived, read and dropped: a client still sending it would otherwise lose the answer or send its
    next request into a closing connection. A body declared over the limit is answered at once, with
    connection: close."""
    host, port = desk.server.http_url.removeprefix("http://").split(":")
    body = json.dumps({"fund_id": FUND}).encode()
    head = (f"POST /{PACKAGE}.Valuation/GetNav HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head + b"\r\n")  # no token; the body comes later
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(1)
        s.settimeout(10)
        s.sendall(body)
        first = whole_response(s)
        assert first.startswith(b"HTTP/1.1 401") and b"connection: close" not in first.lower()
        s.sendall(head + f"Authorization: Bearer {TOKENS['observer']}\r\n\r\n".encode() + body)
        assert whole_response(s).startswith(b"HTTP/1.1 200")  # the same connection serves on
    with httpx.Client() as one:
        for _ in range(20):
            assert call(desk, one, "Valuation/GetNav", {"fund_id": FUND}, token="nobody").status_code == 401
            assert call(desk, one, "Valuation/Nope", {}).status_code == 501
            served = call(desk, one, "Valuation/GetNav", {"fund_id": FUND})
            assert served.status_code == 200 and "connection" not in served.headers
        too_big = call(desk, one, "Valuation/GetNav", b" " * (LIMIT + 1), token="nobody")
        assert too_big.status_code == 401 and too_big.headers["connection"] == "close"


# == 3 ==============================================================================================
def test_content_encoding_that_lies_changes_nothing(desk: Desk, client: httpx.Client) -> None:
    plain = json.dumps(order("lie-1")).encode()
    batch = json.dumps({"requests": [order(f"lie-batch-{i}") for i in range(20)]}).encode()
    squeezed = gzip.compress(plain)
    bad_crc = squeezed[:-8] + bytes(8)
    before = journal_seq(desk)
    for method, body, encoding, status, code in [
        ("Dealing/SubmitOrder", plain, "gzip", 400, "invalid_argument"),  # says gzip, is not
        ("Dealing/SubmitOrders", gzip.compress(batch)[:10], "gzip", 400, "invalid_argument"),  # cut to its header
        ("Dealing/SubmitOrder", squeezed[:-8], "gzip", 400, "invalid_argument"),  # no CRC and length
        ("Dealing/SubmitOrder", bad_crc, "gzip", 400, "invalid_argument"),  # CRC wrong
        ("Dealing/SubmitOrder", zlib.compress(plain), "deflate", 501, "unimplemented"),
        ("Dealing/SubmitOrder", plain, "deflate", 501, "unimplemented"),
        ("Dealing/SubmitOrder", plain, "br", 501, "unimplemented"),
        ("Dealing/SubmitOrder", plain, "zstd", 501, "unimplemented"),
        ("Dealing/SubmitOrder", plain, "x-made-up", 501, "unimplemented"),  # not read as plain
        ("Dealing/SubmitOrder", squeezed, "gzip, gzip", 501, "unimplemented"),
    ]:
        response = call(desk, client, method, body, content_encoding=encoding)
        connect_error(response, status, code)
    # and over a Connect stream: the envelope's compressed flag, the stream's encoding header
    for body, encoding, code in [(envelope(b'{"fund_id": "F1"}', flags=1), "gzip", "invalid_argument"),
                                 (envelope(gzip.compress(b'{"fund_id": "F1"}')[:12], flags=1), "gzip",
                                  "invalid_argument"),
                                 (envelope(b'{"fund_id": "F1"}'), "br", "unimplemented")]:
        response = call(desk, client, "Valuation/StreamNav", body, token="observer",
                        content_type="application/connect+json", connect_content_encoding=encoding)
        assert end_of_stream(response)["code"] == code
    assert journal_seq(desk) == before  # nothing was written
    assert all(not o.client_order_id.startswith("lie-") for o in desk.ap1.list_orders(FUND))
    # gzip that is gzip works, both ways
    response = call(desk, client, "Dealing/SubmitOrder", gzip.compress(json.dumps(order("gzip-ok")).encode()),
                    content_encoding="gzip", accept_encoding="gzip")
    assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
    assert response.json()["order"]["clientOrderId"] == "gzip-ok"  # httpx undid the gzip


# == 4 ==============================================================================================
def bomb(megabytes: int) -> bytes:
    """``megabytes`` MiB of zeros as gzip (about 1 KB per MiB), made a MiB at a time."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(squeeze.compress(zeros) for _ in range(megabytes)) + squeeze.flush()


def test_bodies_over_the_limit_are_resource_exhausted(desk: Desk, client: httpx.Client) -> None:
    big = b" " * (LIMIT + 1)
    chunks = (b" " * 65536 for _ in range(2 * LIMIT // 65536))  # no Content-Length: chunked on HTTP/1.1
    the_bomb = bomb(500)
    assert len(the_bomb) < 1 << 20
    before = journal_seq(desk)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for body, headers in [(big, {}), (chunks, {}), (the_bomb, {"content_encoding": "gzip"})]:
        started = time.monotonic()
        response = call(desk, client, "Dealing/SubmitOrder", body, **headers)
        assert connect_error(response, 429, "resource_exhausted")
        assert time.monotonic() - started < 10
    # 500 MB never existed in the server: decompression stopped at the limit while it ran
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) * 1024 < 100 * 1024 * 1024
    # a stream envelope that says it is larger than the limit, and one that inflates past it
    for body, headers in [(struct.pack(">BI", 0, 0xFFFFFFFF) + b"{}", {}),
                          (envelope(the_bomb, flags=1), {"connect_content_encoding": "gzip"})]:
        response = call(desk, client, "Valuation/StreamNav", body, token="observer",
                        content_type="application/connect+json", **headers)
        assert end_of_stream(response)["code"] == "resource_exhausted"
    assert journal_seq(desk) == before
    assert call(desk, client, "Valuation/GetNav", {"fund_id": FUND}).status_code == 200  # still serving


# == 5 ==============================================================================================
@pytest.mark.parametrize("body", [b"[]", b"[{}]", b'"fund_id"', b"1", b"null", b"true", b'{"fund_id": "F1"} []',
                                  b'{"fund_id": "F1", "fund_id": "F2"}', b"\xff\xfe{}", b"[" * 100_000])
def test_json_that_is_not_one_object_is_invalid_argument(desk: Desk, client: httpx.Client, body: bytes) -> None:
    before = journal_seq(desk)
    message = connect_error(call(desk, client, "Dealing/SubmitOrders", body), 400, "invalid_argument")
    assert message.startswith("request body")
    assert journal_seq(desk) == before


# == 6 ==============================================================================================
PYTHON_TEXT = re.compile(r"Traceback|invalid literal|base 10|Error -\d|Expecting |line \d+ column|TypeError|"
                         r"ValueError|KeyError|NoneType|object is not|Failed to (parse|load)|zlib|codec can't|"
                         r"unmarshal|decompress:|Exception")
QUOTED = re.compile(r"""'([^']*)'|"([^"]*)\"""")


def check_message(message: str) -> None:
    assert len(message.encode()) <= MAX_MESSAGE_BYTES, len(message)
    assert not PYTHON_TEXT.search(message), message
    for single, double in QUOTED.findall(message):
        assert len(single or double) <= QUOTE_CHARS + 1, message  # the cut value and its "…"


def bad_requests() -> list[tuple[str, bytes, dict[str, str]]]:
    long = "9" * 300 + "x"
    return [
        ("Dealing/SubmitOrder", json.dumps({"fund_id": FUND, "side": "CREATE", "units": long}).encode(), {}),
        ("Dealing/SubmitOrder", json.dumps({"fund_id": FUND, "side": "S" * 300, "units": 1}).encode(), {}),
        ("Dealing/SubmitOrder", json.dumps({"n" * 300: 1}).encode(), {}),
        ("Dealing/SubmitOrder", json.dumps({"fund_id": 5}).encode(), {}),
        ("Dealing/SubmitOrder", json.dumps({"units": 1.5}).encode(), {}),
        ("Dealing/SubmitOrder", json.dumps({"fund_id": "\ud800"}).encode(), {}),
        ("Dealing/SubmitOrder", json.dumps({"fund_id": "F" * 5000, "side": "CREATE", "units": 1}).encode(), {}),
        ("Dealing/SubmitOrder", b'{"fund_id": ', {}),
        ("Dealing/SubmitOrder", b"not json at all " * 40, {}),
        ("Dealing/SubmitOrders", json.dumps({"requests": [{"units": "z" * 200}]}).encode(), {}),
        ("Dealing/SubmitOrder", b"{}", {"content_encoding": "y" * 500}),
        ("Dealing/SubmitOrder", b"garbage", {"content_encoding": "gzip"}),
        ("Dealing/SubmitOrder", b"{}", {"connect_protocol_version": "7" * 300}),
        ("Dealing/SubmitOrder", b"{}", {"connect_timeout_ms": "x" * 300}),
        ("Dealing/SubmitOrder", b"\x0a\xff\xff\xff\xff\x0f", {"content_type": "application/proto"}),
        ("Dealing/SubmitOrder", b"\x1a\x05hello", {"content_type": "application/proto"}),
        ("Nope/" + "M" * 300, b"{}", {}),
        ("Admin/RegisterAsset", json.dumps({"symbol": "X" * 400, "decimals": 8}).encode(), {"token": "issuer"}),
    ]


def test_messages_are_short_and_say_nothing_of_python(desk: Desk, client: httpx.Client) -> None:
    for method, body, extra in bad_requests():
        extra = dict(extra)
        token = extra.pop("token", "ap1")
        content_type = extra.pop("content_type", "application/json")
        response = call(desk, client, method, body, token=token, content_type=content_type, **extra)
        assert response.status_code >= 400, (method, response.text)
        check_message(response.json()["message"])
    # the 300 digits and an x: the field named, no more than 64 characters of the value
    response = call(desk, client, "Dealing/SubmitOrder", bad_requests()[0][1])
    assert connect_error(response, 400, "invalid_argument") == \
        "request body is not a SubmitOrderRequest in JSON: field units: not an integer"
    # the same over a stream's end-of-stream message
    response = call(desk, client, "Valuation/StreamNav", envelope(json.dumps({"fund_id": "F" * 500}).encode()),
                    token="observer", content_type="application/connect+json")
    check_message(end_of_stream(response)["message"])


# == 7 ==============================================================================================
def test_console_files_refuse_sniffing_and_framing(desk: Desk, client: httpx.Client) -> None:
    for path in ("/", "/console/index.html", "/console/app.js", "/console/style.css"):
        response = client.get(desk.server.http_url + path)
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert response.headers["x-frame-options"] == "DENY"
    for path in ("/metrics", "/console/nothing.js"):
        assert client.get(desk.server.http_url + path).headers["x-content-type-options"] == "nosniff"


# == 8 ==============================================================================================
CONSOLE_PATHS = [
    "/console/" + "a" * 300, "/console/" + "a" * 300 + ".js", "/console/%252e%252e%252fpyproject.toml",
    "/console/..%2f..%2fpyproject.toml", "/console/%2e%2e/%2e%2e/pyproject.toml", "/console/%C0%AE%C0%AE%C0%AFx",
    "/console/%C0%AFapp.js", "/console/%E0%80%AEapp.js", "/console/app.js%00", "/console/%FF%FE", "/console/",
    "/console/app.js/", "/console//etc/passwd", "/console/.", "/console/%", "/console/%zz", "/console/app.js;x",
    "/console/APP.JS", "/console/%u002e%u002e", "/" + "x" * 3000,
]


def test_console_paths_that_name_no_file_are_404(desk: Desk, client: httpx.Client) -> None:
    for path in CONSOLE_PATHS:
        response = client.get(desk.server.http_url + path)
        assert response.status_code == 404, (path, response.status_code)


def raw(desk: Desk, request: bytes) -> bytes:
    host, port = desk.server.http_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("target", [b"/console/\xff\xfe", b"/console/\xc0\xae\xc0\xae", b"/console/caf\xc3\xa9.js",
                                    b"/console/" + b"%" * 300, b"/console/../../pyproject.toml",
                                    b"/console/./app.js/..", b"/%2e%2e/%2e%2e/etc/passwd"])
def test_raw_request_targets_are_never_500(desk: Desk, target: bytes) -> None:
    reply = raw(desk, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
    assert status in (400, 404), reply[:200]


# == 9 ==============================================================================================
def calls(desk: Desk) -> dict[tuple[str, str, str], float]:
    text = httpx.get(desk.server.http_url + "/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "etf_engine_rpc_calls_total":
                labels = sample.labels
                found[(labels["method"], labels["code"], labels["protocol"])] = sample.value
    return found


def test_metrics_count_the_code_answered(desk: Desk, client: httpx.Client) -> None:
    before = calls(desk)
    nav = {"fund_id": FUND}
    call(desk, client, "Valuation/GetNav", b"fund_id=F1", content_type="text/plain")  # 415
    call(desk, client, "Valuation/GetNav", b" " * (LIMIT + 1))  # resource_exhausted
    call(desk, client, "Valuation/GetNav", json.dumps(nav).encode(), content_encoding="gzip")  # invalid_argument
    call(desk, client, "Valuation/GetNav", bomb(20), content_encoding="gzip")  # resource_exhausted
    call(desk, client, "Valuation/GetNav", nav, content_encoding="br")  # unimplemented
    call(desk, client, "Valuation/GetNav", nav, token="nobody")  # unauthenticated
    call(desk, client, "Valuation/GetNav", {"fund_id": "F9"})  # not_found
    call(desk, client, "Valuation/GetNav", nav)  # OK
    call(desk, client, "Valuation/StreamNav", envelope(b'{"fund_id": "F9"}'), token="observer",
         content_type="application/connect+json")  # not_found, over HTTP 200
    after = calls(desk)
    moved = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    assert moved == {
        ("Valuation/GetNav", "UNKNOWN", "connect"): 1,  # what a Connect client reads from a bare 415
        ("Valuation/GetNav", "RESOURCE_EXHAUSTED", "connect"): 2,
        ("Valuation/GetNav", "INVALID_ARGUMENT", "connect"): 1,
        ("Valuation/GetNav", "UNIMPLEMENTED", "connect"): 1,
        ("Valuation/GetNav", "UNAUTHENTICATED", "connect"): 1,
        ("Valuation/GetNav", "NOT_FOUND", "connect"): 1,
        ("Valuation/GetNav", "OK", "connect"): 1,
        ("Valuation/StreamNav", "NOT_FOUND", "connect"): 1,
    }


# == 10 =============================================================================================
def test_made_up_methods_share_one_label(desk: Desk, client: httpx.Client) -> None:
    def lines() -> int:
        return len(httpx.get(desk.server.http_url + "/metrics").text.splitlines())

    call(desk, client, "Valuation/Warmup", {}, token=None)  # the one series of unknown methods exists now
    before = lines()
    for i in range(300):
        name = [f"{PACKAGE}.Valuation/Made{i}", f"x{i}.Svc/Up", f"{PACKAGE}.Made{i}/Up", f"a.b{i}/c"][i % 4]
        content_type = ["application/json", "application/proto", "application/grpc-web+proto",
                        "application/connect+json"][i % 4]
        response = client.post(f"{desk.server.http_url}/{name}", content=b"{}",
                               headers={"Content-Type": content_type})
        assert response.status_code in (200, 501)
    assert lines() - before <= 40  # at most the unknown label's own series for the protocols it met
    methods = {method for method, _, _ in calls(desk)}
    known = {f"{s.name}/{m.name}" for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert methods <= known | {"unknown"}


# == 11 =============================================================================================
def test_client_mistakes_log_one_line_at_most_never_a_traceback(desk: Desk, client: httpx.Client,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    sent = 0
    with caplog.at_level(logging.DEBUG):
        for method, body, extra in bad_requests():
            extra = dict(extra)
            call(desk, client, method, body, token=extra.pop("token", "ap1"),
                 content_type=extra.pop("content_type", "application/json"), **extra)
            sent += 1
        for token in (None, "nobody", "ap1"):
            call(desk, client, "Admin/RegisterAsset", {"symbol": "Q", "decimals": 8}, token=token)
            call(desk, client, "Valuation/StreamEvents", envelope(b"{}"), token=token,
                 content_type="application/connect+json")
            sent += 2
        call(desk, client, "Dealing/SubmitOrder", b" " * (LIMIT + 1))
        call(desk, client, "Dealing/SubmitOrder", bomb(50), content_encoding="gzip")
        sent += 2
        for path in CONSOLE_PATHS[:6]:
            client.get(desk.server.http_url + path)
            sent += 1
        for request in (b"GARBAGE\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 50,
                        b"POST /etf_engine.v1.Valuation/GetNav HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{}",
                        b"GET /console/\xff HTTP/1.1\r\nHost: x\r\n\r\n"):
            raw(desk, request)
            sent += 1
        time.sleep(0.3)  # anything the server would log after the answers
    server = ("etf_engine.api", "hypercorn", "asyncio", "connectrpc", "root")  # the server's side of the records
    mine = [r for r in caplog.records if r.name.startswith(server)]
    assert not [r for r in mine if r.exc_info or "Traceback" in r.getMessage()], \
        [(r.name, r.getMessage()) for r in mine if r.exc_info]
    assert len(mine) <= sent, [(r.name, r.getMessage()) for r in mine]


def test_a_failure_of_the_server_is_internal_and_logged_once(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Not a client's mistake: a servicer that fails. The client gets `internal` and no Python text; the
    server logs it once, with its traceback."""
    async def broken(self: Any, request: Any, context: Any) -> Any:
        raise RuntimeError("secret detail of the server")

    monkeypatch.setattr(ValuationServicer, "GetNav", broken)
    with BackgroundServer(config(http_listen="127.0.0.1:0"), clock=Clock()) as server, \
            httpx.Client() as client, caplog.at_level(logging.INFO):
        response = client.post(f"{server.http_url}/{PACKAGE}.Valuation/GetNav", content=b"{}",
                               headers={"Content-Type": "application/json",
                                        "Authorization": f"Bearer {TOKENS['observer']}"})
        assert (response.status_code, response.json()) == \
            (500, {"code": "internal", "message": "internal error (logged by the server)"})
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and "Valuation/GetNav" in logged[0].getMessage()
