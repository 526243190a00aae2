"""Real ``etf-engine serve`` processes on one PostgreSQL journal shard (SPEC §12), and a dealer that
follows the leader: for tests/test_pg_failover.py.

``Node`` is one server process (its own config, differing from its peers' only in ``node_name``); it
can be started again (a new port each time), killed, paused and resumed. ``Router`` sends a request to
whichever node answers, trying each in turn and the leader first once a follower has named it.

Forks and gRPC: PgCluster runs pg_ctl as the postgres user, so subprocess uses fork() (not vfork) and
gRPC's fork handlers run in the child before it execs. While a gRPC call of this process is in flight in
another thread, gRPC skips them and the child now and then crashes (SIGSEGV, SIGBUS) or hangs. So no call
of ours is in flight while PgCluster forks: dealers pass a ``Gate`` that the test closes around it, and a
call that must wait across it runs in a child process (``ChildCall``). (GRPC_ENABLE_FORK_SUPPORT=false
would do, but gRPC reads it when first imported, before these modules can set it.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from etf_engine.api.auth import hash_token
from etf_engine.client import RETRIED
from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc
from tests.test_crash import load_fund as crash_load_fund

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOKENS = {"issuer": "pg-issuer", "AP-1": "pg-ap-1", "AP-2": "pg-ap-2"}
STOPPED_ITSELF = 3  # etf_engine.api.server.STOPPED_ITSELF, as the service manager sees it


def metadata(who: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[who]}"),)


def load_fund(target: str) -> None:
    """test_crash's fund F-1, loaded with this module's issuer token."""
    crash_load_fund(target, TOKENS["issuer"])


def write_config(directory: Path, name: str, dsn: str, shard: str, *, lease_seconds: float = 2,
                 commit_timeout: float | None = None) -> Path:
    """The config of node ``name``: the same for every node of a shard except node_name (and data_dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ['listen = "127.0.0.1:0"', f'data_dir = "{directory / "data"}"', "grace_seconds = 1",
             "[journal]", 'backend = "postgresql"', f"dsn = '{dsn}'", f'shard = "{shard}"',
             f"lease_seconds = {lease_seconds}", f'node_name = "{name}"']
    if commit_timeout is not None:
        lines.append(f"commit_timeout_seconds = {commit_timeout}")
    lines += ["[[principals]]", 'name = "ops"', 'role = "issuer"', f'token_sha256 = "{hash_token(TOKENS["issuer"])}"']
    for pid in ("AP-1", "AP-2"):
        lines += ["[[principals]]", f'name = "{pid}"', 'role = "participant"', f'participant_id = "{pid}"',
                  f'token_sha256 = "{hash_token(TOKENS[pid])}"']
    path = directory / "engine.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Node:
    """One ``etf-engine serve`` process of a shard. ``target`` is "" while it is not running."""

    def __init__(self, tmp_path: Path, name: str, dsn: str, shard: str, **journal: Any) -> None:
        self.name, self.dsn, self.shard = name, dsn, shard
        self.directory = tmp_path / name
        self.config = write_config(self.directory, name, dsn, shard, **journal)
        self.proc: subprocess.Popen[str] | None = None
        self.target = ""
        self.lines: list[str] = []  # every line of output, over all its runs
        self.exits: list[int] = []  # exit statuses of its runs that ended
        self._channels: dict[str, grpc.Channel] = {}

    def reconfigure(self, **journal: Any) -> None:
        self.config = write_config(self.directory, self.name, self.dsn, self.shard, **journal)

    def start(self, timeout: float = 30) -> Node:
        assert not self.running, f"{self.name} is running"
        self.target = ""
        proc = subprocess.Popen([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(self.config)],
                                env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.proc = proc
        listening = threading.Event()
        found: list[str] = []

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                self.lines.append(f"[{time.monotonic():.3f}] {line}")
                if not listening.is_set() and "listening on" in line:
                    found.append(line.split("listening on ")[1].split()[0])
                    listening.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not listening.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                self._reap()
                raise AssertionError(f"{self.name} did not start (exit {proc.poll()}):\n{self.log()}")
        self.target = found[0]
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> int | None:
        """The exit status once the current run has ended (it is recorded in ``exits`` once)."""
        if self.proc is None:
            return self.exits[-1] if self.exits else None
        code = self.proc.poll()
        if code is not None:
            self._reap()
        return code

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            self.proc = None
            self.target = ""

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still runs after {timeout} s:\n{self.log()}") from None
        self._reap()
        return code

    def signal(self, sig: int) -> None:
        assert self.proc is not None, f"{self.name} is not running"
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait_exit(10)

    def stop(self) -> None:
        """Whatever state it is in (even paused): gone afterwards."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reap()

    def close(self) -> None:
        self.stop()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def log(self, last: int = 60) -> str:
        return "".join(self.lines[-last:])

    # -- calls ---------------------------------------------------------------------------------------
    def channel(self) -> grpc.Channel:
        assert self.target, f"{self.name} is not running"
        if self.target not in self._channels:
            self._channels[self.target] = grpc.insecure_channel(self.target)
        return self._channels[self.target]

    def dealing(self) -> rpc.DealingStub:
        return rpc.DealingStub(self.channel())

    def admin(self) -> rpc.AdminStub:
        return rpc.AdminStub(self.channel())

    def valuation(self) -> rpc.ValuationStub:
        return rpc.ValuationStub(self.channel())

    def leader_info(self, timeout: float = 5) -> pb.LeaderInfo:
        return rpc.DiagnosticsStub(self.channel()).GetLeader(pb.GetLeaderRequest(), metadata=metadata("issuer"),
                                                             timeout=timeout)

    def health(self, service: str) -> int:
        return health_pb2_grpc.HealthStub(self.channel()).Check(health_pb2.HealthCheckRequest(service=service),
                                                                timeout=5).status


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """Poll ``check`` (exceptions count as not yet) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (grpc.RpcError, AssertionError) as e:
            last, value = e, None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what} (last error: {last})")


def leader_of(nodes: Sequence[Node]) -> Node | None:
    """The running node that says it is the LEADER, if exactly one does."""
    leaders = []
    for node in nodes:
        if not node.target:
            continue
        with contextlib.suppress(grpc.RpcError):
            if node.leader_info(timeout=1).role == pb.Role.LEADER:
                leaders.append(node)
    assert len(leaders) <= 1, f"two leaders: {[n.name for n in leaders]}"
    return leaders[0] if leaders else None


class Gate:
    """Calls pass while it is open; ``closed()`` waits until none is in flight and holds new ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._busy = 0

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._open)
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def closed(self, timeout: float = 15) -> Iterator[None]:
        with self._cond:
            self._open = False
            idle = self._cond.wait_for(lambda: self._busy == 0, timeout)
        try:
            assert idle, "calls still in flight"
            yield
        finally:
            with self._cond:
                self._open = True
                self._cond.notify_all()


CHILD_CALL = """
import json, sys, grpc
from etf_engine.v1 import engine_pb2 as pb, engine_pb2_grpc as rpc
target, token, fund, side, units, coid, timeout = sys.argv[1:]
stub = rpc.DealingStub(grpc.insecure_channel(target))
try:
    order = stub.SubmitOrder(pb.SubmitOrderRequest(fund_id=fund, side=int(side), units=int(units),
                             client_order_id=coid), metadata=(("authorization", "Bearer " + token),),
                             timeout=float(timeout)).order
    print(json.dumps({"order_id": order.order_id, "status": order.status, "units": order.units}))
except grpc.RpcError as e:
    print(json.dumps({"code": e.code().name, "details": e.details()}))
"""


class ChildCall:
    """A SubmitOrder made by a child process (so that none is in flight here while PgCluster forks);
    ``result()`` is its order (order_id, status, units) or its error (code, details), and when it came."""

    def __init__(self, node: Node, who: str, request: pb.SubmitOrderRequest, timeout: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_CALL, node.target, TOKENS[who], request.fund_id, str(request.side),
             str(request.units), request.client_order_id, str(timeout)],
            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.answer: dict | None = None
        self.answered_at = 0.0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        out, err = self.proc.communicate()
        self.answered_at = time.monotonic()
        lines = out.strip().splitlines()
        self.answer = json.loads(lines[-1]) if lines else {"code": "NONE", "details": err[-500:]}

    def done(self) -> bool:
        return self.answer is not None

    def result(self, timeout: float = 30) -> dict:
        self._reader.join(timeout)
        assert self.answer is not None, "the child call did not end"
        return self.answer


class Router:
    """One dealer's way to the shard: a request goes to each running node in turn until one answers;
    no answer (etf_engine.client.RETRIED: a follower, a deposed, stopping or dead node) moves on, to the
    leader first when the message names it. The request is the same every time, so a repeat is idempotent
    by its client_order_id."""

    def __init__(self, nodes: Sequence[Node], who: str, *, attempt_timeout: float = 3.0,
                 gate: Gate | None = None) -> None:
        self.nodes, self.who, self.attempt_timeout = nodes, who, attempt_timeout
        self.gate = gate or Gate()
        self.preferred: Node | None = None
        self._stubs: dict[str, rpc.DealingStub] = {}
        self._channels: list[grpc.Channel] = []

    def _stub(self, target: str) -> rpc.DealingStub:
        if target not in self._stubs:
            channel = grpc.insecure_channel(target)
            self._channels.append(channel)
            self._stubs[target] = rpc.DealingStub(channel)
        return self._stubs[target]

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def call(self, rpc_name: str, request: Any, *, give_up: float = 30.0,
             stop: threading.Event | None = None) -> tuple[Any, Node]:
        """The reply and the node that gave it; raises the last error after ``give_up`` seconds, or at once
        for a code not in RETRIED (a refusal is an answer)."""
        deadline = time.monotonic() + give_up
        last: grpc.RpcError | None = None
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            queue = sorted(self.nodes, key=lambda n: n is not self.preferred)
            tried: set[str] = set()
            while queue:
                node = queue.pop(0)
                target = node.target
                if not target or node.name in tried:
                    continue
                tried.add(node.name)
                try:
                    with self.gate.call():
                        reply = getattr(self._stub(target), rpc_name)(request, metadata=metadata(self.who),
                                                                      timeout=self.attempt_timeout)
                except grpc.RpcError as e:
                    if e.code() not in RETRIED:
                        raise
                    last = e
                    named = [n for n in self.nodes if n is not node and n.name in (e.details() or "")]
                    if named:  # a follower (or a deposed leader) names the leader: that one next
                        self.preferred = named[0]
                        queue.insert(0, named[0])
                    continue
                self.preferred = node
                return reply, node
            time.sleep(0.02)
        raise last if last is not None else AssertionError("stopped before an answer")


class CuttingProxy:
    """A TCP proxy in front of PostgreSQL that, once armed, cuts one connection right after a query on
    etf_events (recognised by its columns seq, crc, body) returned rows: the client has the complete
    answer, and its next statement finds the connection gone (as a failover would leave it).

    Its DSN disables SSL and GSS encryption, so that everything the server sends is typed messages."""

    COLUMNS = ["seq", "crc", "body"]

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def dsn(self) -> str:
        return (f"host=127.0.0.1 port={self.port} dbname=etf user=etf sslmode=disable gssencmode=disable "
                "connect_timeout=2")

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    @staticmethod
    def _cut(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        self._cut(source, sink)

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        """Server to client, message by message (type byte, int32 length including itself, body)."""
        buffer = b""
        journal_rows = 0  # DataRows of the current result, if it is a query on etf_events
        in_journal_result = False
        try:
            while data := server.recv(65536):
                buffer += data
                out = b""
                while len(buffer) >= 5:
                    size = int.from_bytes(buffer[1:5], "big")
                    if len(buffer) < 1 + size:
                        break
                    kind, body = buffer[:1], buffer[5:1 + size]
                    out += buffer[:1 + size]
                    buffer = buffer[1 + size:]
                    if kind == b"T":
                        in_journal_result, journal_rows = _column_names(body) == self.COLUMNS, 0
                    elif kind == b"D" and in_journal_result:
                        journal_rows += 1
                    elif kind == b"Z":
                        if in_journal_result and journal_rows and self.armed.is_set():
                            self.armed.clear()
                            client.sendall(out)
                            self.cuts += 1
                            self._cut(client, server)
                            return
                        in_journal_result, journal_rows = False, 0
                if out:
                    client.sendall(out)
        except OSError:
            pass
        self._cut(server, client)


def _column_names(body: bytes) -> list[str]:
    count = int.from_bytes(body[:2], "big")
    names, at = [], 2
    for _ in range(count):
        end = body.index(b"\0", at)
        names.append(body[at:end].decode())
        at = end + 1 + 18  # table oid 4, attnum 2, type oid 4, typlen 2, typmod 4, format 2
    return names
