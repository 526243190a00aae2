"""Valuation.StreamEvents, Valuation.ListFunds and Admin.ListParticipants (SPEC §15) on a real server
over loopback, on both journals (SQLite and PostgreSQL, test_service's ``journal`` fixture).

StreamEvents must give every journaled record in order without gaps, resume from any seq, bring a new
record within 1 s of its commit, and carry the principal whose call caused each one.
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
from etf_engine.client import EtfClient
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
    decode = msgspec.json.Decoder(M.AnyEvent).decode
    for r in records:  # each body is the event as journaled
        event = decode(r.body.encode())
        assert (type(event).__name__, event.at, event.principal) == (r.type, r.at, r.principal)
    assert json.loads(records[-1].body)["order"]["client_order_id"] == "ev-1"


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
