"""Reads as of a time (SPEC §21): GetHoldings and GetNav with ``as_of`` answer with the state right after
the last record at or before it, every figure derived from time computed at ``as_of``.

Two levels, each on SQLite and on PostgreSQL:
- the journal's history (journal/history.py): at every instant of a fund's life (each record's ms, one
  before and one after, the moments a lot is released, a price goes stale, a licence lapses), the ledger
  as of then reads exactly as a second ledger fed the same commands up to then and read then; with
  history states every 3 records and without any, in random order (the reader's recent states serve as
  starting points too), past a damaged state and one of another journal;
- the service over loopback: a read as of each moment equals the read made at that moment (between two
  records, at a record's exact ms, after a lot was released and a price went stale), the refusals
  (future, negative, a fund not yet created, a participant not eligible now), after a restart, from the
  history states the checkpointer writes, on a follower, and over Connect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient, FundAssetTerms, Tick
from etf_engine.config import JournalConfig
from etf_engine.errors import EngineError
from etf_engine.journal import SqliteJournal, history
from etf_engine.journal.history import AsOfReader, HistoryWriter, trimmed
from etf_engine.journal.sqlite import HISTORY_NAME, SqliteHistory
from etf_engine.v1 import engine_pb2 as pb
from tests.pg_cluster import PgCluster
from tests.pg_cluster import pg_cluster as pg_cluster  # the fixture
from tests.test_service import FUND, FUND2, T0, TOKENS, Clock, Desk, config, load_sample, make_ledger, refused
from tests.test_service import desk as desk  # the fixtures: the sample fund on a server, on each backend
from tests.test_service import journal as journal

NOW = 1_767_225_600_000  # 2026-01-01 00:00 UTC
SECOND = 1000
DAY = 86_400 * SECOND


# == the journal's history ==========================================================================
def life() -> list[tuple[int, Any]]:
    """(time, command): two funds over a few minutes. ETH unbonds in 60 s, prices go stale after 30 s,
    C-1's licence lapses at NOW + 120 s; orders accepted, settled, cancelled and rejected."""
    def fund(fund_id: str) -> M.CreateFund:
        return M.CreateFund(
            fund_id=fund_id, name=fund_id, base_currency="HKD", creation_unit=100, creation_custodian_id="C-1",
            custodian_priority=["C-1", "C-2"], initial_shares_outstanding=1_000, max_price_age_seconds=30,
            assets=[M.FundAssetSpec(asset="ETH", staking_cap="0.5", liquidity_buffer="0.1", unbonding_seconds=60),
                    M.FundAssetSpec(asset="BTC", staking_cap="0", liquidity_buffer="0")])

    def order(side: str, units: int, key: str, fund_id: str = "F-1") -> M.SubmitOrder:
        return M.SubmitOrder(participant_id="AP-1", request=M.OrderRequest(fund_id=fund_id, side=side, units=units,
                                                                          client_order_id=key))

    def forward(fund_id: str) -> M.CreateFund:
        return M.CreateFund(
            fund_id=fund_id, name=fund_id, base_currency="HKD", creation_unit=100, creation_custodian_id="C-2",
            custodian_priority=["C-2"], initial_shares_outstanding=1_000, calendar_id="UTC", dealing_cutoff="00:01",
            pricing=M.FORWARD, management_fee_rate="0.01", assets=[M.FundAssetSpec(asset="BTC", staking_cap="0",
                                                                                   liquidity_buffer="0")])

    def strike(fund_id: str, day: str, at: int, btc: str) -> M.StrikeNav:
        return M.StrikeNav(fund_id=fund_id, dealing_date=day,
                           ticks=[M.PriceTick(asset="BTC", currency="HKD", price=btc, as_of_unix_ms=at)])

    def prices(at: int, eth: str, btc: str) -> M.PublishPrices:
        return M.PublishPrices(ticks=[M.PriceTick(asset="ETH", currency="HKD", price=eth, as_of_unix_ms=at),
                                      M.PriceTick(asset="BTC", currency="HKD", price=btc, as_of_unix_ms=at)])

    return [
        (NOW, M.RegisterAsset(symbol="ETH", decimals=18)),
        (NOW, M.RegisterAsset(symbol="BTC", decimals=8)),
        (NOW, M.RegisterCustodian(custodian_id="C-1", name="One", licence_number="L1", licence_status="ACTIVE",
                                  licence_expires_at=NOW // SECOND + 120)),
        (NOW, M.RegisterCustodian(custodian_id="C-2", name="Two", licence_number="L2", licence_status="ACTIVE",
                                  licence_expires_at=NOW // SECOND + 86_400)),
        (NOW, M.RegisterParticipant(participant_id="AP-1", name="AP", eligible_fund_ids=["F-1", "F-2"],
                                    max_units_per_order=5, max_units_per_day=50)),
        (NOW, fund("F-1")),
        (NOW + 1, M.AdjustHolding(fund_id="F-1", custodian_id="C-1", asset="ETH", delta="1000")),
        (NOW + 1, M.AdjustHolding(fund_id="F-1", custodian_id="C-2", asset="BTC", delta="10")),
        (NOW + 1, prices(NOW, "24567.1", "500000")),
        (NOW + 1 * SECOND, M.Stake(fund_id="F-1", custodian_id="C-1", asset="ETH", quantity="100")),
        (NOW + 2 * SECOND, M.Unstake(fund_id="F-1", custodian_id="C-1", asset="ETH", quantity="40")),
        (NOW + 2 * SECOND, order("REDEEM", 2, "r-1")),
        (NOW + 3 * SECOND, order("CREATE", 1, "c-1")),
        (NOW + 3 * SECOND, order("CREATE", 50, "c-too-many")),  # rejected: 5 units per order
        (NOW + 4 * SECOND, M.SettleOrder(order_id="ORD-00000002")),
        (NOW + 5 * SECOND, M.CancelOrder(order_id="ORD-00000001", reason="withdrawn")),
        (NOW + 5 * SECOND, M.AdjustCash(fund_id="F-1", delta="100.00", reason="interest")),
        (NOW + 6 * SECOND, fund("F-2")),
        (NOW + 6 * SECOND, M.AdjustHolding(fund_id="F-2", custodian_id="C-2", asset="BTC", delta="3")),
        (NOW + 65 * SECOND, prices(NOW + 65 * SECOND, "25000", "510000")),
        (NOW + 70 * SECOND, order("REDEEM", 1, "r-2")),
        (NOW + 71 * SECOND, order("REDEEM", 1, "r-3", "F-2")),
        (NOW + 80 * SECOND, M.SettleOrder(order_id="ORD-00000005")),
        (NOW + 200 * SECOND, M.SetCustodianLicence(custodian_id="C-1", licence_status="ACTIVE",
                                                   licence_expires_at=NOW // SECOND + 86_400)),
        # F-3 is FORWARD on a UTC calendar (cut-off 00:01) with a fee: strikes on three days, a dealing day
        # between them closed, so that history states hold official NAVs and PCFs, one of them moved
        (NOW + 201 * SECOND, M.RegisterCalendar(calendar_id="UTC", time_zone="UTC", weekend_days=[])),
        (NOW + 201 * SECOND, forward("F-3")),
        (NOW + 201 * SECOND, M.AdjustHolding(fund_id="F-3", custodian_id="C-2", asset="BTC", delta="5")),
        (NOW + DAY + 61 * SECOND, strike("F-3", "2026-01-02", NOW + DAY + 50 * SECOND, "505000")),
        (NOW + DAY + 62 * SECOND, M.CloseDealingDay(calendar_id="UTC", date="2026-01-03", reason="typhoon")),
        (NOW + 2 * DAY + 61 * SECOND, M.AdjustCash(fund_id="F-3", delta="7.00", reason="interest")),
        (NOW + 3 * DAY + 61 * SECOND, strike("F-3", "2026-01-04", NOW + 3 * DAY + 50 * SECOND, "507000")),
        (NOW + 4 * DAY + 61 * SECOND, strike("F-3", "2026-01-05", NOW + 4 * DAY + 50 * SECOND, "506000")),
    ]


def probes(timeline: list[tuple[int, Any]]) -> list[int]:
    """Every record's ms, one before and one after; the release of the lot, the prices' staleness and the
    licence's lapse, each at its edge; before everything and long after."""
    times = {t + d for t, _ in timeline for d in (-1, 0, 1)}
    times |= {NOW + 62 * SECOND + d for d in (-1, 0)}  # the lot unstaked at +2 s is released at +62 s
    times |= {NOW + 30 * SECOND + d for d in (0, 1)}  # prices of NOW: fresh up to 30 s after
    times |= {NOW + 120 * SECOND + d for d in (-1, 0)}  # C-1 licensed while t < its expiry
    times |= {NOW - 1, 0, NOW + 10**9}
    return sorted(times)


def figures(read: Callable[[str], Any], fund_id: str) -> Any:
    try:
        return read(fund_id)
    except EngineError as error:
        return error.code


def expected(timeline: list[tuple[int, Any]], as_of: int) -> Ledger:
    """A second ledger fed the same commands up to ``as_of``."""
    ledger = Ledger()
    for at, command in timeline:
        if at <= as_of:
            ledger.execute(command, at)
    return ledger


@dataclasses.dataclass
class Backend:
    """A journal to append to and its history stores (the writer's and a reader's)."""

    append: Callable[[list[M.Event]], None]
    store: Callable[[], Any]
    close: Callable[[], None]
    last_seq: Callable[[], int]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        sqlite_journal = SqliteJournal(tmp_path)
        yield Backend(lambda events: asyncio.run(sqlite_journal.append(events)),
                      lambda: SqliteHistory(tmp_path, writable=True), sqlite_journal.close,
                      lambda: sqlite_journal.last_seq)
        return
    from etf_engine.journal.postgres import PgJournal

    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    shard = f"asof-{uuid.uuid4().hex[:10]}"
    pg_journal = PgJournal(cluster.dsn, shard, node_name="as-of-test")
    assert pg_journal.take_lease()
    yield Backend(lambda events: asyncio.run(pg_journal.append(events)), pg_journal.history, pg_journal.close,
                  lambda: pg_journal.last_seq)


def journaled(append: Callable[[list[M.Event]], None], timeline: list[tuple[int, Any]],
              ledger: Ledger | None = None) -> Ledger:
    """``timeline``'s commands executed by ``ledger`` (a new one by default), their events appended."""
    ledger = Ledger() if ledger is None else ledger
    for at, command in timeline:
        _, events = ledger.execute(command, at)
        append(events)
    return ledger


@pytest.mark.parametrize("every", [3, 1_000])  # states every 3 records; none at all (replay from the first)
def test_every_instant_reads_as_a_ledger_fed_the_commands_up_to_it(backend: Backend, every: int) -> None:
    timeline = life()
    journaled(backend.append, timeline)
    writer_store = backend.store()
    writer = HistoryWriter(writer_store, Ledger, every=every)
    assert writer.step() == backend.last_seq() // every
    reader = AsOfReader(backend.store(), Ledger)
    moments = probes(timeline)
    random.Random(21).shuffle(moments)  # later reads start from earlier ones' states, forwards and back
    try:
        for as_of in moments:
            view = reader.ledger_as_of(as_of, backend.last_seq())
            then = expected(timeline, as_of)
            assert view.as_of == as_of and view.at <= as_of
            for fund_id in ("F-1", "F-2", "F-3"):
                assert figures(view.get_holdings, fund_id) == figures(
                    lambda f, then=then, t=as_of: then.get_holdings(f, t), fund_id)
                assert figures(view.get_nav, fund_id) == figures(lambda f, then=then, t=as_of: then.get_nav(f, t),
                                                                 fund_id)
            assert view.state() == trimmed(then.state(as_of))
            assert view.open_orders() == then.list_orders("", M.ACCEPTED, None, as_of)
    finally:
        reader.close()
        writer_store.close()
        backend.close()


def test_the_edges_of_time(backend: Backend) -> None:
    """Derived figures are computed at as_of: the same state reads differently a millisecond apart."""
    timeline = life()
    journaled(backend.append, timeline)
    reader = AsOfReader(backend.store(), Ledger)
    try:
        def read(as_of: int) -> tuple[M.Nav, M.Holdings]:
            view = reader.ledger_as_of(as_of, backend.last_seq())
            return view.get_nav("F-1"), view.get_holdings("F-1")

        assert reader.ledger_as_of(NOW - 1, backend.last_seq()).seq == 0
        with pytest.raises(EngineError) as info:
            reader.ledger_as_of(NOW + 6 * SECOND - 1, backend.last_seq()).get_nav("F-2")  # not created yet
        assert info.value.code == "NOT_FOUND"
        assert reader.ledger_as_of(NOW + 6 * SECOND, backend.last_seq()).get_nav("F-2").fund_id == "F-2"
        assert not read(NOW + 30 * SECOND)[0].stale and read(NOW + 30 * SECOND + 1)[0].stale
        eth_c1 = [r for r in read(NOW + 62 * SECOND - 1)[1].holdings if (r.custodian_id, r.asset) == ("C-1", "ETH")]
        released = [r for r in read(NOW + 62 * SECOND)[1].holdings if (r.custodian_id, r.asset) == ("C-1", "ETH")]
        assert eth_c1[0].unbonding > 0 and released[0].unbonding == 0
        assert released[0].available == eth_c1[0].available + eth_c1[0].unbonding
        licensed = {r.custodian_id: r.licensed for r in read(NOW + 120 * SECOND - 1)[1].holdings}
        lapsed = {r.custodian_id: r.licensed for r in read(NOW + 120 * SECOND)[1].holdings}
        assert licensed["C-1"] and not lapsed["C-1"]
        # A record's own ms includes it and every record of that ms: the two orders of NOW + 3 s.
        assert [o.order_id for o in reader.ledger_as_of(NOW + 3 * SECOND - 1, backend.last_seq()).open_orders()] == [
            "ORD-00000001"]
        assert [o.order_id for o in reader.ledger_as_of(NOW + 3 * SECOND, backend.last_seq()).open_orders()] == [
            "ORD-00000001", "ORD-00000002"]
    finally:
        reader.close()
        backend.close()


def test_states_hold_the_open_book_and_a_restarted_writer_goes_on(tmp_path: Path) -> None:
    timeline = life()
    journal = SqliteJournal(tmp_path)
    ledger = journaled(journal.append_sync, timeline[:15])
    first = journal.last_seq
    store = SqliteHistory(tmp_path, writable=True)
    assert HistoryWriter(store, Ledger, every=4).step() == first // 4
    store.close()
    journaled(journal.append_sync, timeline[15:], ledger)
    store = SqliteHistory(tmp_path, writable=True)
    writer = HistoryWriter(store, Ledger, every=4)  # resumes from its last state
    assert writer.seq == first // 4 * 4
    writer.step()
    resumed = _bodies(tmp_path)
    store.close()
    (tmp_path / HISTORY_NAME).unlink()
    store = SqliteHistory(tmp_path, writable=True)
    HistoryWriter(store, Ledger, every=4).step()  # the same states, written in one go
    store.close()
    assert _bodies(tmp_path) == resumed and len(resumed) == journal.last_seq // 4
    for seq, _ in resumed.items():
        snapshot = SqliteHistory(tmp_path).load(seq)
        assert {o.status for o in snapshot.state.orders} <= {M.ACCEPTED}
    journal.close()


def open_orders(count: int, start: int = 0) -> list[tuple[int, Any]]:
    """``count`` one-unit CREATE orders of F-1, a millisecond apart from NOW + 1 s: a record each, never settled."""
    return [(NOW + SECOND + i, M.SubmitOrder(participant_id="AP-1", request=M.OrderRequest(
        fund_id="F-1", side=M.CREATE, units=1, client_order_id=f"open-{i}"))) for i in range(start, start + count)]


def test_the_next_state_waits_for_as_many_records_as_the_last_one_held_orders(tmp_path: Path) -> None:
    """A state costs in proportion to the open book, so the next one comes max(every, its orders) records
    later: with orders that never settle the writer's work stays in proportion to the records."""
    timeline = life()[:9] + open_orders(40)  # records 1-10 set F-1 up, each later one is an order
    journal = SqliteJournal(tmp_path)
    journaled(journal.append_sync, timeline)
    assert journal.last_seq == 50
    store = SqliteHistory(tmp_path, writable=True)
    assert HistoryWriter(store, Ledger, every=5).step() == 6
    store.close()
    held = {seq: len(SqliteHistory(tmp_path).load(seq).state.orders) for seq in _bodies(tmp_path)}
    # 15 holds exactly `every` orders: 5 records to the next; 20 holds 10: 10 records; 30 holds 20.
    assert held == {5: 0, 10: 0, 15: 5, 20: 10, 30: 20, 50: 40}
    store = SqliteHistory(tmp_path, writable=True)
    writer = HistoryWriter(store, Ledger, every=5)  # a restarted writer waits as long as the one before it
    assert (writer.seq, writer.interval) == (50, 40)
    journaled(journal.append_sync, open_orders(10, 40), expected(timeline, NOW + 10**9))
    assert writer.step() == 0 and journal.last_seq == 60
    store.close()
    reader = AsOfReader(SqliteHistory(tmp_path), Ledger)  # reads replay the longer stretches, as exactly
    try:
        for as_of in (NOW + SECOND + 4, NOW + SECOND + 24, NOW + SECOND + 49):
            view = reader.ledger_as_of(as_of, journal.last_seq)
            assert view.state() == trimmed(expected(timeline + open_orders(10, 40), as_of).state(as_of))
    finally:
        reader.close()
        journal.close()


def test_the_writer_rebuilds_its_ledger_only_when_trimming_leaves_something_out(tmp_path: Path) -> None:
    class Counting:  # a ledger type that counts its restores
        restored = 0

        def __call__(self) -> Ledger:
            return Ledger()

        def restore(self, state: Any) -> Ledger:
            self.restored += 1
            return Ledger.restore(state)

    timeline = life()[:9] + open_orders(6)
    journal = SqliteJournal(tmp_path)
    ledger = journaled(journal.append_sync, timeline)
    counting = Counting()
    store = SqliteHistory(tmp_path, writable=True)
    writer = HistoryWriter(store, counting, every=4)
    assert writer.step() == 4 and counting.restored == 0  # states at 4 to 16, no order closed
    settled = [(NOW + 2 * SECOND, M.SettleOrder(order_id="ORD-00000001"))]
    journaled(journal.append_sync, settled + open_orders(5, 6), ledger)
    assert writer.step() == 1 and counting.restored == 1  # the state at 22 leaves the settled order out
    assert [o.order_id for o in writer.ledger.state(writer.at).orders] == [f"ORD-{i:08d}" for i in range(2, 12)]
    store.close()
    assert SqliteHistory(tmp_path).load(22).state == trimmed(ledger.state(writer.at))
    journal.close()


def _bodies(data_dir: Path) -> dict[int, bytes]:
    with sqlite3.connect(data_dir / HISTORY_NAME) as db:
        return dict(db.execute("SELECT seq, body FROM states ORDER BY seq").fetchall())


def test_a_damaged_state_or_one_of_another_journal_is_passed_over(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    timeline = life()
    journal = SqliteJournal(tmp_path)
    journaled(journal.append_sync, timeline)
    store = SqliteHistory(tmp_path, writable=True)
    HistoryWriter(store, Ledger, every=3).step()
    store.close()
    with sqlite3.connect(tmp_path / HISTORY_NAME) as db:
        db.execute("UPDATE states SET body = CAST(replace(CAST(body AS TEXT), 'C-1', 'C-9') AS BLOB) WHERE seq = 18")
        db.execute("UPDATE states SET at = at - 1 WHERE seq = 21")  # not the time of record 21: another journal's
    reader = AsOfReader(SqliteHistory(tmp_path), Ledger)
    try:
        with caplog.at_level(logging.WARNING):
            for as_of in (NOW + 5 * SECOND, NOW + 70 * SECOND):
                view = reader.ledger_as_of(as_of, journal.last_seq)
                assert view.state() == trimmed(expected(timeline, as_of).state(as_of))
        assert "record 18 is damaged: checksum mismatch" in caplog.text
        assert "history state at record 21" in caplog.text and "does not match" in caplog.text
    finally:
        reader.close()
        journal.close()


# == over the wire ==================================================================================
@dataclasses.dataclass(frozen=True)
class Then:
    """What the reads answered at ``at``."""

    at: int
    holdings: pb.Holdings
    nav: pb.Nav
    nav3: pb.Nav | None  # F3, created at T0 + 4 s


F3 = "F3"


def live(desk: Desk) -> list[Then]:
    """The sample fund's life after load_sample (at T0), with the reads made along the way."""
    issuer, clock = desk.issuer, desk.clock
    seen: list[Then] = []

    def at(t: int) -> None:
        clock.now = t

    def read() -> None:
        nav3 = issuer.get_nav(F3) if any(f.fund_id == F3 for f in issuer.list_funds()) else None
        seen.append(Then(clock.now, issuer.get_holdings(FUND), issuer.get_nav(FUND), nav3))

    read()
    at(T0 + 1000)
    issuer.adjust_holding(FUND, "C1", "ETH", "1000", "top-up")  # room under the staking cap for a redemption
    create = desk.ap1.submit_order(FUND, "CREATE", 2, "as-of-c1")
    redeem = desk.ap2.submit_order(FUND, "REDEEM", 1, "as-of-r1")
    assert (create.status, redeem.status) == (pb.OrderStatus.ACCEPTED, pb.OrderStatus.ACCEPTED), redeem.reject_reason
    read()
    at(T0 + 1500)
    read()  # between two records
    at(T0 + 2000)
    issuer.settle_order(create.order_id)
    issuer.adjust_cash(FUND, "10.00", "interest")
    issuer.set_custodian_licence("C2", "ACTIVE", (T0 + 100_000) // 1000)
    read()  # at the records' exact ms
    at(T0 + 3000)
    desk.ap2.cancel_order(redeem.order_id, "withdrawn")
    issuer.unstake(FUND, "C1", "ETH", "5")  # a lot released 604,800 s later
    read()
    at(T0 + 4000)
    issuer.create_fund(F3, "Harbour ETH", "USD", 10_000, "C1", ["C1"], [FundAssetTerms("ETH")])
    issuer.adjust_holding(F3, "C1", "ETH", "30", "opening")
    read()
    at(T0 + 5000)
    issuer.publish_prices([Tick("BTC", "USD", "98000", T0 + 5000), Tick("ETH", "USD", "3500", T0 + 5000)])
    read()
    at(T0 + 70_000)
    read()  # the prices of T0 + 5 s are stale (60 s)
    at(T0 + 200_000)
    read()  # C2's licence has lapsed
    at(T0 + 3000 + 604_800_000)
    read()  # the lot is released
    at(T0 + 3000 + 604_800_000 + 1)
    return seen


def check_as_of(client: EtfClient, seen: list[Then]) -> None:
    """Each read as of a moment equals the read made then."""
    for then in seen:
        assert client.get_holdings(FUND, as_of=then.at) == then.holdings, then.at
        assert client.get_nav(FUND, as_of=then.at) == then.nav, then.at
        if then.nav3 is None:
            refused(lambda t=then.at: client.get_nav(F3, as_of=t), grpc.StatusCode.NOT_FOUND)
        else:
            assert client.get_nav(F3, as_of=then.at) == then.nav3, then.at


def test_reads_as_of_a_moment_equal_the_reads_made_then(desk: Desk) -> None:
    seen = live(desk)
    assert seen[3].nav != seen[0].nav and seen[7].nav.stale and not seen[6].nav.stale
    check_as_of(desk.issuer, seen)
    check_as_of(desk.observer, seen)
    assert desk.ap1.get_nav(FUND, as_of=seen[1].at) == seen[1].nav  # a participant eligible for the fund
    assert desk.issuer.get_holdings(FUND, as_of=0) == desk.issuer.get_holdings(FUND)  # 0: now
    now = desk.clock.now
    assert desk.issuer.get_holdings(FUND, as_of=now) == desk.issuer.get_holdings(FUND)


def test_refusals(desk: Desk) -> None:
    live(desk)
    now, issuer = desk.clock.now, desk.issuer
    for call in (lambda: issuer.get_nav(FUND, as_of=now + 1), lambda: issuer.get_holdings(FUND, as_of=now + 1),
                 lambda: issuer.get_nav(FUND, as_of=-1), lambda: issuer.get_holdings(FUND, as_of=-5)):
        assert "as_of" in refused(call, grpc.StatusCode.INVALID_ARGUMENT)
    refused(lambda: issuer.get_holdings(FUND, as_of=T0 - 100_000), grpc.StatusCode.NOT_FOUND)  # before anything
    refused(lambda: issuer.get_nav(F3, as_of=T0 + 3999), grpc.StatusCode.NOT_FOUND)  # before it was created
    refused(lambda: issuer.get_nav("NOPE", as_of=T0), grpc.StatusCode.NOT_FOUND)
    # Whoever may read the fund now: a participant not eligible for it now learns nothing of its past.
    assert "fund_id" in refused(lambda: desk.ap1.get_nav(FUND2, as_of=T0), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: desk.ap1.get_nav(F3, as_of=T0), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: desk.ap1.get_nav("NOPE", as_of=T0), grpc.StatusCode.NOT_FOUND)
    refused(lambda: desk.ap1.get_holdings(FUND, as_of=T0), grpc.StatusCode.PERMISSION_DENIED)  # issuer, observer


def _states(journal: JournalConfig, data_dir: Path) -> int:
    if journal.postgresql:
        with psycopg.connect(journal.dsn) as db:
            return db.execute("SELECT count(*) FROM etf_history WHERE shard = %s", (journal.shard,)).fetchone()[0]
    if not (data_dir / HISTORY_NAME).exists():
        return 0
    db = sqlite3.connect(data_dir / HISTORY_NAME)
    try:
        return db.execute("SELECT count(*) FROM states").fetchone()[0]
    except sqlite3.OperationalError:  # the checkpointer has made the file, not yet its table
        return 0
    finally:
        db.close()


def _wait(what: str, predicate: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def test_from_history_states_and_after_a_restart(journal: JournalConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "HISTORY_EVERY", 4)  # the checkpointer the server starts writes every 4 records
    cfg = config(journal=journal)
    clock = Clock()
    with BackgroundServer(cfg, ledger=make_ledger(), clock=clock) as server:
        desk = Desk(server, clock)
        try:
            load_sample(desk.issuer)
            seen = live(desk)
            records = server.server.engine.journal.last_seq  # type: ignore[union-attr]
            _wait("history states", lambda: _states(journal, cfg.data_dir) == records // 4)
            check_as_of(desk.issuer, seen)
        finally:
            desk.close()
    clock = Clock()
    clock.now = seen[-1].at + 1
    with BackgroundServer(cfg, ledger=make_ledger(), clock=clock) as server:
        desk = Desk(server, clock)
        try:
            check_as_of(desk.issuer, seen)
        finally:
            desk.close()


def test_a_follower_reads_as_of_as_the_leader(pg_cluster: PgCluster) -> None:
    journal = JournalConfig(backend="postgresql", dsn=pg_cluster.dsn, shard=f"asof-{uuid.uuid4().hex[:10]}",
                            node_name="as-of-leader", lease_seconds=2)
    clock = Clock()
    with BackgroundServer(config(journal=journal), ledger=make_ledger(), clock=clock) as leader:
        desk = Desk(leader, clock)
        follower_clock = Clock()
        follower = BackgroundServer(config(journal=dataclasses.replace(journal, node_name="as-of-follower")),
                                    ledger=make_ledger(), clock=follower_clock).start()
        try:
            load_sample(desk.issuer)
            seen = live(desk)
            follower_clock.now = clock.now
            with EtfClient(follower.target, TOKENS["observer"], timeout=10) as reader:
                last = desk.issuer.get_leader().applied_seq
                _wait("the follower to catch up", lambda: reader.get_leader().applied_seq == last)
                assert reader.get_leader().role == pb.Role.FOLLOWER
                check_as_of(reader, seen)
                assert reader.get_holdings(FUND, as_of=clock.now) == reader.get_holdings(FUND)
                assert "as_of" in refused(lambda: reader.get_nav(FUND, as_of=clock.now + 1),
                                          grpc.StatusCode.INVALID_ARGUMENT)
        finally:
            follower.stop()
            desk.close()



def test_a_damaged_history_file_stops_neither_the_checkpointer_nor_the_reads(tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    from etf_engine.checkpoint import Checkpointer

    timeline = life()
    journal = SqliteJournal(tmp_path)
    journaled(journal.append_sync, timeline)
    (tmp_path / HISTORY_NAME).write_bytes(b"not a database" * 100)
    checkpointer = Checkpointer(tmp_path, every=1, history_every=3)
    try:
        with caplog.at_level(logging.WARNING):
            assert checkpointer.keep_history() == 0
            assert checkpointer.step()  # the snapshot all the same
            reader = AsOfReader(SqliteHistory(tmp_path), Ledger)
            as_of = NOW + 70 * SECOND
            assert reader.ledger_as_of(as_of, journal.last_seq).state() == trimmed(
                expected(timeline, as_of).state(as_of))  # from the first record
            reader.close()
        assert "history states:" in caplog.text and "trying again in 30 s" in caplog.text
        assert "not readable (yet)" in caplog.text
    finally:
        checkpointer.close()
        journal.close()


def test_over_connect_as_over_grpc() -> None:
    from google.protobuf import json_format

    from tests.test_http import post

    clock = Clock()
    with BackgroundServer(config(http_listen="127.0.0.1:0"), ledger=make_ledger(), clock=clock) as server:
        desk = Desk(server, clock)
        load_sample(desk.issuer)
        seen = live(desk)
        for then in (seen[2], seen[7]):
            status, body = post(desk, "Valuation/GetNav", {"fundId": FUND, "asOf": str(then.at)})
            assert status == 200 and json_format.ParseDict(body, pb.Nav()) == then.nav
            status, body = post(desk, "Admin/GetHoldings", {"fund_id": FUND, "as_of": then.at})
            assert status == 200 and json_format.ParseDict(body, pb.Holdings()) == then.holdings
        status, body = post(desk, "Valuation/GetNav", {"fundId": FUND, "asOf": str(desk.clock.now + 1)})
        assert (status, body["code"]) == (400, "invalid_argument") and "as_of" in body["message"]
        desk.close()
