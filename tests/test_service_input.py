"""Bad input over gRPC (SPEC §11 "Errors are short and exact"): huge values are quoted short, bodies
that do not parse are INVALID_ARGUMENT, and a caller without a valid token is refused before its body
is read. Each refusal is checked for its code, the field it names, its length and for leaving the
server's state as it was. Uses the server, sample fund and tokens of test_service.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from etf_engine.errors import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    MAX_MESSAGE_BYTES,
    QUOTE_CHARS,
    EngineError,
    invalid,
    not_found,
    precondition,
    quote,
    shorten,
)
from etf_engine.v1 import engine_pb2 as pb
from tests.test_service import FUND, TOKENS, Desk
from tests.test_service import desk as desk  # the fixture: the server with the sample fund loaded
from tests.test_service import journal as journal  # its backends
from tests.test_service import pg_cluster as pg_cluster

MiB = 1024 * 1024
SERVER_MAX = 4 * MiB  # Config.max_message_bytes by default: a body up to it is read
BIG = 3_900_000  # characters of a huge id: with its framing still under SERVER_MAX
CUT = re.compile(r"'([^']*)'… \((\d+) characters\)")


def bearer(who: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[who]}"),)


@pytest.fixture
def channel(desk: Desk) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 8 * MiB), ("grpc.max_receive_message_length", 8 * MiB)]
    with grpc.insecure_channel(desk.target, options=options) as ch:
        yield ch


def raw(channel: grpc.Channel, method: str) -> Any:
    """A unary call that sends bytes as they are and returns the reply's bytes."""
    return channel.unary_unary(f"/etf_engine.v1.{method}", request_serializer=None, response_deserializer=None)


def refused(call: Any, body: bytes, metadata: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(body, metadata=metadata, timeout=30)
    err: Any = info.value
    assert err.code() == code, err.details()
    details = str(err.details())
    assert len(details.encode("utf-8")) <= MAX_MESSAGE_BYTES, len(details)
    return details


def assert_quoted_cut(details: str, value: str) -> None:
    """``details`` quotes the first QUOTE_CHARS characters of ``value`` and gives its length."""
    m = CUT.search(details)
    assert m is not None, details
    assert (m.group(1), int(m.group(2))) == (value[:QUOTE_CHARS], len(value)), details


def snapshot(desk: Desk) -> tuple[Any, ...]:
    """What the clients see, plus the ledger's whole state."""
    return (desk.issuer.get_holdings(FUND), desk.observer.list_orders(), desk.observer.get_nav(FUND), desk.state())


# == the quote helper and EngineError's own limit ==================================================
def test_quote_keeps_64_characters_whole_and_cuts_65() -> None:
    assert quote("a" * 64) == repr("a" * 64)
    assert quote("a" * 65) == f"'{'a' * 64}'… (65 characters)"
    assert quote("") == "''"
    assert quote("x" * 100_000).endswith("… (100000 characters)")
    assert len(quote("x" * 100_000)) == 64 + 2 + len("… (100000 characters)")
    assert quote("é" * 70) == f"'{'é' * 64}'… (70 characters)"  # characters, not bytes
    assert quote(12) == "12"
    assert quote(list(range(100))).endswith("… (390 characters)")


def test_not_found_and_invalid_quote_short() -> None:
    e = not_found("fund", "F" * BIG)
    assert e.message == f"fund 'F{'F' * 63}'… ({BIG} characters) not found"
    assert not_found("fund", "F1").message == "fund 'F1' not found"
    # A ledger that quotes with a plain !r is cut by EngineError itself.
    for value in ("x" * 65, "x" * BIG, "it's" * 40, "\n" * 70):
        e = invalid("client_order_id", f"{value!r} is not 1-64 of [A-Za-z0-9._:-]")
        assert e.message.startswith("client_order_id: ") and e.message.endswith(" is not 1-64 of [A-Za-z0-9._:-]")
        assert f"… ({len(value)} characters)" in e.message, e.message
        assert len(e.message.encode()) <= MAX_MESSAGE_BYTES
    short = invalid("client_order_id", f"{'x' * 64!r} is bad")
    assert short.message == f"client_order_id: {'x' * 64!r} is bad"
    assert invalid("f", f"{quote('y' * 65)} is bad") == invalid("f", f"{'y' * 65!r} is bad")  # cut once


def test_engine_error_caps_every_message_at_1024_bytes() -> None:
    e = precondition("INSUFFICIENT_LIQUID_BALANCE", "é" * 5000)  # no quotes to cut: the whole is capped
    assert e.code == FAILED_PRECONDITION and e.message.startswith("INSUFFICIENT_LIQUID_BALANCE: é")
    assert len(e.message.encode()) <= MAX_MESSAGE_BYTES and e.message.endswith("…")
    assert str(e).startswith("FAILED_PRECONDITION: INSUFFICIENT_LIQUID_BALANCE")
    assert EngineError(INVALID_ARGUMENT, "delta: must not be zero").message == "delta: must not be zero"
    assert shorten("a 'b' c") == "a 'b' c"


# == huge values over gRPC =========================================================================
@pytest.mark.parametrize(("delta", "code"), [
    ("x" * 100_000, grpc.StatusCode.INVALID_ARGUMENT),
    ("1" * 100_000, grpc.StatusCode.OUT_OF_RANGE),  # a number, far too large
    ("1." + "0" * 99_998, grpc.StatusCode.INVALID_ARGUMENT),  # too many fraction digits
])
def test_adjust_holding_huge_delta_is_quoted_short(desk: Desk, channel: grpc.Channel, delta: str,
                                                   code: grpc.StatusCode) -> None:
    before = snapshot(desk)
    body = pb.AdjustHoldingRequest(fund_id=FUND, custodian_id="C1", asset="BTC", delta=delta).SerializeToString()
    details = refused(raw(channel, "Admin/AdjustHolding"), body, bearer("issuer"), code)
    assert details.startswith("delta: "), details
    assert_quoted_cut(details, delta)
    assert snapshot(desk) == before


@pytest.mark.parametrize(("size", "cut"), [(64, False), (65, True)])
def test_quote_boundary_over_grpc(desk: Desk, channel: grpc.Channel, size: int, cut: bool) -> None:
    before = snapshot(desk)
    delta = "z" * size
    body = pb.AdjustHoldingRequest(fund_id=FUND, custodian_id="C1", asset="BTC", delta=delta).SerializeToString()
    details = refused(raw(channel, "Admin/AdjustHolding"), body, bearer("issuer"), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith("delta: ")
    if cut:
        assert_quoted_cut(details, delta)
    else:
        assert repr(delta) in details and "characters)" not in details, details
    assert snapshot(desk) == before


def test_submit_order_huge_client_order_id_is_quoted_short(desk: Desk, channel: grpc.Channel) -> None:
    before = snapshot(desk)
    coid = "c" * BIG
    body = pb.SubmitOrderRequest(fund_id=FUND, side=pb.Side.CREATE, units=1, client_order_id=coid).SerializeToString()
    assert len(body) < SERVER_MAX  # the server reads it: the refusal is the ledger's, not the size limit's
    details = refused(raw(channel, "Dealing/SubmitOrder"), body, bearer("ap1"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "client_order_id" in details, details
    assert_quoted_cut(details, coid)
    assert snapshot(desk) == before


def test_get_nav_huge_fund_id_is_not_found_short(desk: Desk, channel: grpc.Channel) -> None:
    before = snapshot(desk)
    fund_id = "F" * BIG
    body = pb.GetNavRequest(fund_id=fund_id).SerializeToString()
    details = refused(raw(channel, "Valuation/GetNav"), body, bearer("observer"), grpc.StatusCode.NOT_FOUND)
    assert details.startswith("fund "), details
    assert_quoted_cut(details, fund_id)
    assert snapshot(desk) == before


# == bodies that do not parse ======================================================================
GARBAGE = (b"\xff\xff\xff\xff", b"\x0a\x01\xff", b"garbage, not protobuf")  # corrupt, bad UTF-8, corrupt


@pytest.mark.parametrize("body", GARBAGE)
def test_garbage_body_with_valid_token_is_invalid_argument(desk: Desk, channel: grpc.Channel, body: bytes) -> None:
    before = snapshot(desk)
    for method, who, name in (("Admin/AdjustHolding", "issuer", "AdjustHoldingRequest"),
                              ("Dealing/SubmitOrder", "ap1", "SubmitOrderRequest"),
                              ("Valuation/GetNav", "observer", "GetNavRequest")):
        details = refused(raw(channel, method), body, bearer(who), grpc.StatusCode.INVALID_ARGUMENT)
        assert details.startswith(f"request body does not parse as {name}"), details
        assert len(details) <= 128 and "Traceback" not in details and "etf_engine.v1." not in details, details
    stream = channel.unary_stream("/etf_engine.v1.Valuation/StreamNav", request_serializer=None,
                                  response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        next(stream(GARBAGE[0], metadata=bearer("ap1"), timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "StreamNavRequest" in info.value.details()  # type: ignore[attr-defined]
    assert snapshot(desk) == before


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer nobody"),), (("authorization", "tok-issuer"),)])
def test_garbage_body_without_valid_token_is_unauthenticated(desk: Desk, channel: grpc.Channel,
                                                             metadata: Any) -> None:
    before = snapshot(desk)
    for body in GARBAGE:
        for method in ("Admin/AdjustHolding", "Dealing/SubmitOrder", "Valuation/GetNav"):
            details = refused(raw(channel, method), body, metadata, grpc.StatusCode.UNAUTHENTICATED)
            assert "parse" not in details, details
    assert snapshot(desk) == before


def test_garbage_body_with_wrong_role_is_permission_denied(desk: Desk, channel: grpc.Channel) -> None:
    before = snapshot(desk)
    for body in GARBAGE:
        for method in ("Admin/AdjustHolding", "Admin/CreateFund", "Admin/SettleOrder"):
            details = refused(raw(channel, method), body, bearer("ap1"), grpc.StatusCode.PERMISSION_DENIED)
            assert details.startswith("role participant may not call"), details
    assert snapshot(desk) == before


def test_valid_raw_body_still_answers(desk: Desk, channel: grpc.Channel) -> None:
    reply = raw(channel, "Valuation/GetNav")(pb.GetNavRequest(fund_id=FUND).SerializeToString(),
                                               metadata=bearer("observer"), timeout=30)
    assert pb.Nav.FromString(reply).fund_id == FUND
