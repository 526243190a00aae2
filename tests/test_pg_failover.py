"""High availability on the PostgreSQL journal (SPEC §12), with real servers and a real PostgreSQL
primary + synchronous standby (tests/pg_cluster.py); lease_seconds = 2 throughout.

- the leader SIGKILLed under load: a follower takes over within lease_seconds + 2 s, nothing
  acknowledged is lost or changed, no order id is used twice, the epoch grows;
- a zombie leader (SIGSTOP past its lease, then SIGCONT): its next write is refused and not journaled,
  and it exits with status 3;
- the PostgreSQL primary killed and the standby promoted: writes resume within 30 s;
- the synchronous standby stopped: nothing is acknowledged meanwhile; the leader stops itself (3) after
  commit_timeout_seconds, or acknowledges once the standby is back within it;
- followers: the same reads as the leader at the same journal seq, health per role, writes refused
  naming the leader.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from etf_engine.client import side_value
from etf_engine.v1 import engine_pb2 as pb
from tests.pg_cluster import PgCluster
from tests.pg_cluster import pg_cluster as pg_cluster  # the session fixture
from tests.pg_nodes import (
    STOPPED_ITSELF,
    ChildCall,
    CuttingProxy,
    Gate,
    Node,
    Router,
    leader_of,
    load_fund,
    metadata,
    wait_for,
)

LEASE = 2.0
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def pg(pg_cluster: PgCluster) -> PgCluster:
    pg_cluster.reset()
    return pg_cluster


@pytest.fixture
def make_node(tmp_path: Path, pg: PgCluster, request: pytest.FixtureRequest) -> Iterator:
    """make_node(name, **journal) -> a Node of this test's shard (not started); all stopped at the end."""
    made: list[Node] = []
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name.removeprefix("test_")).strip("_")
    shard = f"{name[:28]}_{zlib.crc32(name.encode()):08x}"  # one per test (and parameter)

    def make(name: str, dsn: str = "", **journal: object) -> Node:
        node = Node(tmp_path, f"{shard}-{name}", dsn or pg.dsn, shard, lease_seconds=LEASE, **journal)
        made.append(node)
        return node

    make.made = made  # type: ignore[attr-defined]
    yield make
    for node in made:
        node.close()


def order_key(order: pb.Order) -> tuple:
    return (order.order_id, order.status, order.reject_reason, order.side, order.units)


class Dealer(threading.Thread):
    """Submits orders until ``stop``, each retried by its client_order_id against whichever node answers;
    ``acked`` maps (participant, client_order_id) -> (order key, node name, time of the reply)."""

    def __init__(self, nodes: list[Node], pid: str, tag: str, acked: dict, stop: threading.Event,
                 batch: int = 1, gate: Gate | None = None) -> None:
        super().__init__(daemon=True)
        self.router = Router(nodes, pid, gate=gate)
        self.pid, self.tag, self.acked, self.stop_event, self.batch = pid, tag, acked, stop, batch
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.tag)
        try:
            for i in range(100_000):
                if self.stop_event.is_set():
                    return
                items = [pb.OrderRequest(fund_id="F-1", side=side_value(rng.choice(["CREATE", "REDEEM"])),
                                         units=rng.randint(1, 3), client_order_id=f"{self.tag}-{i}-{k}")
                         for k in range(self.batch)]
                try:
                    if self.batch == 1:
                        reply, node = self.router.call("SubmitOrder", pb.SubmitOrderRequest(
                            fund_id="F-1", side=items[0].side, units=items[0].units,
                            client_order_id=items[0].client_order_id), stop=self.stop_event)
                        orders = [reply.order]
                    else:
                        reply, node = self.router.call("SubmitOrders", pb.SubmitOrdersRequest(requests=items),
                                                       stop=self.stop_event)
                        orders = list(reply.orders)
                except (grpc.RpcError, AssertionError):
                    if self.stop_event.is_set():
                        return
                    raise
                at = time.monotonic()
                for item, order in zip(items, orders, strict=True):
                    assert (order.client_order_id, order.side, order.units) == (
                        item.client_order_id, item.side, item.units), order
                    self.acked[(self.pid, item.client_order_id)] = (order_key(order), node.name, at)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.router.close()


def check_acknowledged(leader: Node, acked: dict) -> list[pb.Order]:
    """Every acknowledged order is on ``leader`` unchanged; no order id or client_order_id twice."""
    dealing = leader.dealing()
    for (pid, client_id), (key, _, _) in acked.items():
        order = dealing.GetOrder(pb.GetOrderRequest(order_id=key[0]), metadata=metadata("issuer"), timeout=5).order
        assert (order.participant_id, order.client_order_id) == (pid, client_id)
        assert order_key(order) == key, (pid, client_id)
    orders = list_orders(leader)
    ids = [o.order_id for o in orders]
    assert len(ids) == len(set(ids)), "an order id was used twice"
    names = [(o.participant_id, o.client_order_id) for o in orders]
    assert len(names) == len(set(names)), "a client_order_id names two orders"
    return orders


def list_orders(node: Node, who: str = "issuer") -> list[pb.Order]:
    orders: list[pb.Order] = []
    token = ""
    while True:
        reply = node.dealing().ListOrders(pb.ListOrdersRequest(fund_id="F-1", page_token=token),
                                          metadata=metadata(who), timeout=5)
        orders.extend(reply.orders)
        token = reply.next_page_token
        if not token:
            return orders


def submit(node: Node, client_order_id: str, *, timeout: float = 5, who: str = "AP-1", units: int = 1) -> pb.Order:
    return node.dealing().SubmitOrder(pb.SubmitOrderRequest(fund_id="F-1", side=side_value("CREATE"), units=units,
                                                            client_order_id=client_order_id),
                                      metadata=metadata(who), timeout=timeout).order


def refused(call, *codes: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() in codes, info.value
    return info.value


def journaled(pg: PgCluster, shard: str, text: str) -> int:
    """Records of ``shard`` whose body mentions ``text``."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM etf_events WHERE shard = %s AND "
                            "position(convert_to(%s, 'UTF8') in body) > 0", (shard, text)).fetchone()[0]


def start_followers(*nodes: Node) -> None:
    threads = [threading.Thread(target=node.start) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for node in nodes:
        assert node.target, f"{node.name} did not start:\n{node.log()}"


# ------------------------------------------------------------------------------------------------ 1
def test_leader_sigkill_under_load(make_node) -> None:
    a, b, c = make_node("a").start(), make_node("b"), make_node("c")
    load_fund(a.target)
    start_followers(b, c)
    nodes = [a, b, c]
    first = a.leader_info()
    assert (first.role, first.leader, first.epoch) == (pb.Role.LEADER, a.name, 1)
    for node in (b, c):
        assert node.leader_info().role == pb.Role.FOLLOWER

    acked: dict = {}
    stop = threading.Event()
    dealers = [Dealer(nodes, "AP-1", "k1-a", acked, stop), Dealer(nodes, "AP-2", "k1-b", acked, stop, batch=3),
               Dealer(nodes, "AP-1", "k1-c", acked, stop)]
    for dealer in dealers:
        dealer.start()
    try:
        wait_for("orders acknowledged by the leader", lambda: len(acked) >= 30, 15)
        killed_at = time.monotonic()
        a.kill()

        def taken_over() -> float | None:
            times = [at for _, name, at in list(acked.values()) if name != a.name]
            return min(times) - killed_at if times else None

        takeover = wait_for("a write acknowledged by a new leader", taken_over, LEASE + 10)
        wait_for("more orders on the new leader",
                 lambda: sum(name != a.name for _, name, _ in list(acked.values())) >= 30, 15)
    finally:
        stop.set()
        for dealer in dealers:
            dealer.join(30)
    for dealer in dealers:
        assert dealer.error is None, dealer.error
    print(f"takeover after SIGKILL: {takeover:.2f} s")
    assert takeover <= LEASE + 2, f"takeover took {takeover:.2f} s"

    leader = leader_of([b, c])
    assert leader is not None
    info = leader.leader_info()
    assert (info.leader, info.role) == (leader.name, pb.Role.LEADER)
    assert info.epoch > first.epoch
    orders = check_acknowledged(leader, acked)
    assert {(o.participant_id, o.client_order_id) for o in orders} >= set(acked)
    # the other follower follows the new leader and has the same orders
    other = c if leader is b else b
    wait_for("the other follower to name the new leader", lambda: other.leader_info().leader == leader.name, 5)
    wait_for("the other follower to catch up",
             lambda: other.leader_info().applied_seq == leader.leader_info().applied_seq, 5)
    assert [order_key(o) for o in list_orders(other)] == [order_key(o) for o in orders]


# ------------------------------------------------------------------------------------------------ 2
def test_zombie_leader_is_fenced(make_node, pg: PgCluster) -> None:
    a, b = make_node("a").start(), make_node("b")
    load_fund(a.target)
    start_followers(b)
    before = submit(a, "z-before")
    assert a.leader_info().epoch == 1
    # a connection to the zombie made now, so that the write below waits in its socket while it sleeps
    zombie = a.dealing()
    a.leader_info()

    a.signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    wait_for("the follower to take over", lambda: b.leader_info().role == pb.Role.LEADER, LEASE + 5)
    print(f"takeover after SIGSTOP: {time.monotonic() - paused_at:.2f} s")
    info = b.leader_info()
    assert (info.leader, info.epoch) == (b.name, 2)
    reply, call = b.dealing().SubmitOrder.with_call(pb.SubmitOrderRequest(
        fund_id="F-1", side=side_value("CREATE"), units=1, client_order_id="z-after"), metadata=metadata("AP-1"),
        timeout=5)
    after = reply.order
    assert "x-etf-journal-seq" not in dict(call.initial_metadata())  # a leader's replies do not carry it
    for service in ("", "etf_engine.v1.Dealing", "etf_engine.v1.Admin", "etf_engine.v1.Valuation"):
        assert b.health(service) == SERVING, service
    time.sleep(max(0.0, paused_at + LEASE + 2 - time.monotonic()))

    write = zombie.SubmitOrder.future(pb.SubmitOrderRequest(
        fund_id="F-1", side=side_value("CREATE"), units=1, client_order_id="z-zombie"), metadata=metadata("AP-1"),
        timeout=10)
    time.sleep(0.2)  # the request is in the stopped process's socket
    a.signal(signal.SIGCONT)
    error = refused(write.result, grpc.StatusCode.UNAVAILABLE)
    assert b.name in error.details(), error.details()  # naming the new leader
    assert a.wait_exit(5) == STOPPED_ITSELF, a.log()
    assert journaled(pg, a.shard, "z-zombie") == 0
    orders = {o.client_order_id: o for o in list_orders(b)}
    assert "z-zombie" not in orders
    assert order_key(orders["z-before"]) == order_key(before)
    assert order_key(orders["z-after"]) == order_key(after)
    assert b.leader_info().epoch == 2
    later = submit(b, "z-later")  # the new leader goes on
    # started again (the service manager's part), the old leader follows and has it all
    a.start()
    info = a.leader_info()
    assert (info.role, info.leader, info.epoch) == (pb.Role.FOLLOWER, b.name, 2)
    assert (a.health("etf_engine.v1.Dealing"), a.health("etf_engine.v1.Valuation")) == (NOT_SERVING, SERVING)
    wait_for("the old leader to catch up", lambda: a.leader_info().applied_seq == b.leader_info().applied_seq, 5)
    assert [order_key(o) for o in list_orders(a)] == [order_key(o) for o in list_orders(b)]
    assert order_key(list_orders(a)[-1]) == order_key(later)


# ------------------------------------------------------------------------------------------------ 5
def seq_of(call) -> int:
    """x-etf-journal-seq of a follower's reply (initial metadata)."""
    seqs = [v for k, v in call.initial_metadata() if k == "x-etf-journal-seq"]
    assert len(seqs) == 1, call.initial_metadata()
    return int(seqs[0])


def test_followers_read_what_the_leader_wrote(make_node) -> None:
    a, b = make_node("a").start(), make_node("b")
    load_fund(a.target)
    start_followers(b)
    created = [submit(a, f"f-{i}", units=1 + i % 3) for i in range(6)]
    redeem = a.dealing().SubmitOrder(pb.SubmitOrderRequest(fund_id="F-1", side=side_value("REDEEM"), units=2,
                                                           client_order_id="f-r"),
                                     metadata=metadata("AP-2"), timeout=5).order
    a.admin().SettleOrder(pb.SettleOrderRequest(order_id=created[0].order_id), metadata=metadata("issuer"), timeout=5)
    a.dealing().CancelOrder(pb.CancelOrderRequest(order_id=created[1].order_id), metadata=metadata("AP-1"), timeout=5)
    leader = a.leader_info()
    assert leader.role == pb.Role.LEADER and leader.applied_seq > 0

    def reads(node: Node, who: str = "issuer") -> tuple[int | None, list]:
        """Every read once, and the follower's journal seq if all replies carry the same."""
        md = metadata(who)
        calls = [
            node.valuation().GetNav.with_call(pb.GetNavRequest(fund_id="F-1"), metadata=md, timeout=5),
            node.valuation().GetBasket.with_call(pb.GetBasketRequest(fund_id="F-1"), metadata=md, timeout=5),
            node.admin().GetHoldings.with_call(pb.GetHoldingsRequest(fund_id="F-1"), metadata=md, timeout=5),
            node.dealing().ListOrders.with_call(pb.ListOrdersRequest(fund_id="F-1"), metadata=md, timeout=5),
            *(node.dealing().GetOrder.with_call(pb.GetOrderRequest(order_id=o.order_id), metadata=md, timeout=5)
              for o in (*created, redeem)),
        ]
        seqs = {seq_of(call) for _, call in calls} if node is not a else {None}
        return (seqs.pop() if len(seqs) == 1 else -1), [reply for reply, _ in calls]

    def caught_up() -> list | None:
        seq, replies = reads(b)
        return replies if seq == leader.applied_seq else None

    replies = wait_for("the follower at the leader's seq", caught_up, 5)
    assert replies == reads(a)[1]

    info = b.leader_info()
    assert (info.role, info.leader, info.epoch, info.applied_seq) == (
        pb.Role.FOLLOWER, a.name, leader.epoch, leader.applied_seq)
    for service, on_follower in (("", SERVING), ("etf_engine.v1.Valuation", SERVING),
                                 ("etf_engine.v1.Dealing", NOT_SERVING), ("etf_engine.v1.Admin", NOT_SERVING)):
        assert a.health(service) == SERVING, service
        assert b.health(service) == on_follower, service

    for write in (lambda: submit(b, "f-follower"),
                  lambda: b.admin().AdjustCash(pb.AdjustCashRequest(fund_id="F-1", delta="1"),
                                               metadata=metadata("issuer"), timeout=5)):
        error = refused(write, grpc.StatusCode.UNAVAILABLE)
        assert a.name in error.details(), error.details()
    assert "f-follower" not in {o.client_order_id for o in list_orders(a)}
    assert a.leader_info().applied_seq == leader.applied_seq


def test_follower_seq_is_applied(make_node) -> None:
    """Once a follower's reply carries seq N, that reply shows record N (it once carried the seq its poll
    had read, ahead of what it had applied). Each round: an order on the leader,
    then GetOrder on the follower until its seq reaches the leader's; it must find the order. Also how
    long the follower takes to show a commit (SPEC: within 100 ms under light load)."""
    a, b = make_node("a").start(), make_node("b")
    load_fund(a.target)
    start_followers(b)
    lags = []
    for i in range(50):  # the bug this found showed in about one round in twelve
        order = submit(a, f"s-{i}")
        acked_at = time.monotonic()
        seq = a.leader_info().applied_seq
        while True:
            try:
                _, call = b.dealing().GetOrder.with_call(pb.GetOrderRequest(order_id=order.order_id),
                                                         metadata=metadata("issuer"), timeout=5)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
                shown, call = False, e
            else:
                shown = True
            applied = seq_of(call)
            if applied >= seq:
                assert shown, f"round {i}: the follower's reply says seq {applied} but has not order {order.order_id}"
                lags.append(time.monotonic() - acked_at)
                break
            time.sleep(0.002)
    lags.sort()
    print(f"follower lag after a commit: median {lags[len(lags) // 2] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
    assert lags[len(lags) // 2] <= 0.1


def test_follower_connection_lost_after_a_read(make_node, pg: PgCluster) -> None:
    """A follower's connection lost between two statements of one poll (the records read, the next page
    not yet): it must read those records again, not skip them; and, taking over later, lose nothing.
    (It once skipped them: replay() had moved last_seq past them before the poll failed; fixed by 807079f.)"""
    proxy = CuttingProxy(pg.primary_port)
    try:
        a, b = make_node("a").start(), make_node("b", dsn=proxy.dsn)
        load_fund(a.target)
        start_followers(b)
        acked = {o.order_id: order_key(o) for o in (submit(a, f"c-{i}") for i in range(3))}
        wait_for("the follower to catch up", lambda: b.leader_info().applied_seq == a.leader_info().applied_seq, 5)
        proxy.armed.set()
        for i in range(3, 40):
            order = submit(a, f"c-{i}")
            acked[order.order_id] = order_key(order)
            time.sleep(0.01)
        assert proxy.cuts == 1
        wait_for("the follower at the leader's seq",
                 lambda: b.leader_info().applied_seq == a.leader_info().applied_seq, 10)
        assert [order_key(o) for o in list_orders(b)] == [order_key(o) for o in list_orders(a)], b.log(10)

        a.kill()
        wait_for("the follower to take over", lambda: b.leader_info().role == pb.Role.LEADER, LEASE + 5)
        for order_id, key in acked.items():
            order = b.dealing().GetOrder(pb.GetOrderRequest(order_id=order_id), metadata=metadata("issuer"),
                                         timeout=5).order
            assert order_key(order) == key
        new = submit(b, "c-new")
        assert new.order_id not in acked
    finally:
        proxy.close()


# ------------------------------------------------------------------------------------------------ 4
@pytest.mark.parametrize("renewal_first", [False, True], ids=["commit-first", "behind-a-renewal"])
def test_commit_timeout_stops_the_leader(make_node, pg: PgCluster, renewal_first: bool) -> None:
    """The synchronous standby away longer than commit_timeout_seconds (5): nothing is acknowledged, the
    leader stops itself (3) about 5 s after the commit; started again, everything acknowledged is there,
    and so is the held commit (it was on the primary's disk; the standby has it once it is back)."""
    a = make_node("a", commit_timeout=5).start()
    load_fund(a.target)
    acked = {o.client_order_id: order_key(o) for o in (submit(a, f"h-{i}") for i in range(5))}
    pg.stop_standby()
    if renewal_first:
        time.sleep(1.0)  # the leader renews every lease_seconds / 3: a renewal waits for the standby now
    held_at = time.monotonic()
    refused(lambda: submit(a, "h-held", timeout=3), grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    assert a.wait_exit(20) == STOPPED_ITSELF, a.log()
    stopped_after = time.monotonic() - held_at
    print(f"the leader stopped itself {stopped_after:.1f} s after the held commit")
    pg.start_standby()
    a.start()
    orders = {o.client_order_id: o for o in list_orders(a)}
    assert {k: order_key(orders[k]) for k in acked} == acked
    assert "h-held" in orders and journaled(pg, a.shard, '"h-held"') == 1
    assert order_key(submit(a, "h-held")) == order_key(orders["h-held"])
    assert stopped_after >= 4.5, a.log()
    # 5 s, the watchdog's granularity (1 s) and the stop; behind a renewal it once took twice as long
    assert stopped_after <= 8, f"the leader stopped itself {stopped_after:.1f} s after the held commit"


def test_commit_acknowledged_when_the_standby_returns_in_time(make_node, pg: PgCluster) -> None:
    """The standby back within commit_timeout_seconds (20): the commits held meanwhile are acknowledged
    (also one whose caller gave up), once each, and the leader goes on."""
    a = make_node("a", commit_timeout=20).start()
    load_fund(a.target)
    pg.stop_standby()
    waiting = ChildCall(a, "AP-1", pb.SubmitOrderRequest(fund_id="F-1", side=side_value("CREATE"), units=1,
                                                         client_order_id="h-wait"), timeout=15)
    refused(lambda: submit(a, "h-back", timeout=3), grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    assert not waiting.done(), f"acknowledged without the synchronous standby: {waiting.answer}"
    back_at = time.monotonic()
    pg.start_standby()
    answer = waiting.result()
    assert "order_id" in answer, answer
    assert waiting.answered_at > back_at
    assert a.running, a.log()
    orders = {o.client_order_id: o for o in list_orders(a)}
    assert (orders["h-wait"].order_id, orders["h-wait"].status) == (answer["order_id"], answer["status"])
    assert "h-back" in orders  # its commit completed too, though its caller had gone
    assert order_key(submit(a, "h-back")) == order_key(orders["h-back"])
    assert journaled(pg, a.shard, '"h-back"') == journaled(pg, a.shard, '"h-wait"') == 1
    submit(a, "h-after")
    assert a.running and a.leader_info().role == pb.Role.LEADER


def test_node_answers_while_a_commit_waits(make_node, pg: PgCluster) -> None:
    """A commit held by PostgreSQL (the standby away) holds its caller, not the whole node: health and
    GetLeader (which need no journal) still answer. (0124782 ran such commits on the event loop's thread,
    which answered nothing meanwhile; 5d71ca6 fixed it.)"""
    a = make_node("a", commit_timeout=20).start()
    load_fund(a.target)
    pg.stop_standby()
    held = ChildCall(a, "AP-1", pb.SubmitOrderRequest(fund_id="F-1", side=side_value("CREATE"), units=1,
                                                      client_order_id="w-held"), timeout=15)
    time.sleep(1.5)  # the child has started and made its call, which waits
    unanswered = []
    for name, call in (("health", lambda: health_pb2_grpc.HealthStub(a.channel()).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2)), ("GetLeader", lambda: a.leader_info(timeout=2))):
        try:
            call()
        except grpc.RpcError as e:
            unanswered.append(f"{name}: {e.code().name}")
    pg.start_standby()
    assert "order_id" in held.result(), held.answer  # acknowledged once the standby is back
    assert not unanswered, f"while a commit waited: {unanswered}"


# ------------------------------------------------------------------------------------------------ 3
class ServiceManager(threading.Thread):
    """Starts again every node that stopped itself (or could not start while the database was away)."""

    def __init__(self, nodes: list[Node], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.nodes, self.stop_event = nodes, stop
        self.restarts: list[tuple[str, int, float]] = []  # (node, exit status, when)

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            for node in self.nodes:
                if node.proc is None or node.running:
                    continue
                code = node.poll()
                self.restarts.append((node.name, code, time.monotonic()))
                while not self.stop_event.is_set():
                    try:
                        node.start(timeout=15)
                        break
                    except AssertionError:
                        time.sleep(0.5)


@pytest.mark.parametrize("under_load", [True, False], ids=["under-load", "idle-past-the-lease"])
def test_postgres_primary_killed_and_standby_promoted(make_node, pg: PgCluster, under_load: bool) -> None:
    """Under load, the leader's commit in flight is lost with the connection (it stops itself, 3, and is
    started again); idle, with the promotion later than the lease, the leader only renews, and it or the
    follower leads on the promoted standby."""
    try:
        primary_failover(make_node, pg, under_load)
    finally:  # the original topology again, for the tests after this one
        for node in make_node.made:
            node.stop()
        pg.reset()


def primary_failover(make_node, pg: PgCluster, under_load: bool) -> None:
    a, b = make_node("a").start(), make_node("b")
    load_fund(a.target)
    start_followers(b)
    nodes = [a, b]
    acked: dict = {}
    stop = threading.Event()
    manager = ServiceManager(nodes, stop)
    gate = Gate()  # closed while PgCluster forks pg_ctl (see tests/pg_nodes.py)
    dealers = [Dealer(nodes, "AP-1", "p-a", acked, stop, gate=gate),
               Dealer(nodes, "AP-2", "p-b", acked, stop, batch=3, gate=gate)]
    manager.start()
    if under_load:
        for dealer in dealers:
            dealer.start()
    else:
        for i in range(10):
            order = submit(a, f"p-idle-{i}")
            acked[("AP-1", order.client_order_id)] = (order_key(order), a.name, time.monotonic())
    try:
        wait_for("orders acknowledged before the kill", lambda: len(acked) >= (60 if under_load else 10), 15)
        before = dict(acked)
        killed_at = time.monotonic()
        pg.kill_primary()
        if not under_load:
            time.sleep(LEASE + 1)
        with gate.closed():
            pg.promote_standby()
        promoted_at = time.monotonic()
        probe = Router(nodes, "AP-1")
        try:
            reply, node = probe.call("SubmitOrder", pb.SubmitOrderRequest(
                fund_id="F-1", side=side_value("CREATE"), units=1, client_order_id="p-probe"), give_up=40)
        finally:
            probe.close()
        resumed_at = time.monotonic()
        print(f"writes resumed {resumed_at - promoted_at:.1f} s after the promotion "
              f"({resumed_at - killed_at:.1f} s after the kill), on {node.name}; restarts: "
              f"{[(name, code) for name, code, _ in manager.restarts]}")
        assert resumed_at - promoted_at <= 30
        if under_load:
            wait_for("dealers going on", lambda: sum(at > resumed_at for _, _, at in list(acked.values())) >= 10, 30)
    finally:
        stop.set()
        for dealer in dealers:
            if dealer.is_alive():
                dealer.join(30)
        manager.join(30)
    for dealer in dealers:
        assert dealer.error is None, dealer.error
    assert all(code in (1, STOPPED_ITSELF) for _, code, _ in manager.restarts), manager.restarts
    leader = wait_for("a leader", lambda: leader_of(nodes), 10)
    acked[("AP-1", "p-probe")] = (order_key(reply.order), node.name, resumed_at)
    check_acknowledged(leader, acked)
    assert set(before) <= set(acked)
    # the other node, which lost its connection too, follows to the end without a gap
    other = b if leader is a else a
    wait_for("the other node to follow the leader", lambda: other.leader_info().role == pb.Role.FOLLOWER
             and other.leader_info().applied_seq == leader.leader_info().applied_seq, 15)
    assert [order_key(o) for o in list_orders(other)] == [order_key(o) for o in list_orders(leader)], other.log(30)
