"""The grpc.aio server: servicers + health + reflection + auth, TLS from the config, graceful stop.

Stopping (SIGTERM, SIGINT or ``EngineServer.stop``): health turns NOT_SERVING, NAV streams end,
the server stops accepting calls and gives those in flight ``grace_seconds`` to finish, and only
then does the writer stop, after draining what was queued; nothing is half-applied.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from etf_engine.api.auth import Authenticator, AuthInterceptor
from etf_engine.api.http import HttpListener
from etf_engine.api.metrics import Metrics
from etf_engine.api.reports import ReportsServicer
from etf_engine.api.servicers import AdminServicer, DealingServicer, DiagnosticsServicer, ValuationServicer
from etf_engine.checkpoint import DEFAULT_EVERY, CheckpointProcess
from etf_engine.config import Config
from etf_engine.engine import LEADER, Engine, Journal, wall_clock_ms
from etf_engine.journal import SqliteJournal
from etf_engine.journal.postgres import PgJournal
from etf_engine.journal.trail import AuditTrail
from etf_engine.ledger import Ledger
from etf_engine.replication import ShardRole
from etf_engine.signing import Signer
from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(s.full_name for s in pb.DESCRIPTOR.services_by_name.values())
DIAGNOSTICS = pb.DESCRIPTOR.services_by_name["Diagnostics"].full_name
WRITING_SERVICES = tuple(pb.DESCRIPTOR.services_by_name[n].full_name for n in ("Admin", "Dealing"))


def default_ledger() -> Ledger:
    from etf_engine._core import Ledger as CoreLedger  # built from ext/ by setup.py

    return CoreLedger()


def node_name(config: Config) -> str:
    return config.journal.node_name or f"{socket.gethostname()}-{os.getpid()}"


def open_journal(config: Config) -> Journal:
    """The SQLite journal in ``config.data_dir`` (locked: one server per directory), or the
    PostgreSQL shard of ``[journal]``."""
    if config.journal.postgresql:
        j = config.journal
        return PgJournal(j.dsn, j.shard, node_name=node_name(config), lease_seconds=j.lease_seconds,
                         commit_timeout=j.commit_timeout_seconds)
    return SqliteJournal(config.data_dir)


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    if config.tls is None:
        return None
    tls = config.tls
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
        require_client_auth=tls.mutual,
    )


STOPPED_ITSELF = 3  # exit status of a node that stopped itself; started again, it recovers from the journal


class EngineServer:
    """One engine behind one gRPC server. ``await start()`` returns the bound port."""

    def __init__(
        self,
        config: Config,
        *,
        ledger: Ledger | None = None,
        journal: Journal | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        checkpoint_every: int = DEFAULT_EVERY,
    ) -> None:
        self.config = config
        own_journal = journal is None  # the config's data directory: a checkpointer process beside this one
        if journal is None:
            journal = open_journal(config)
        if hasattr(journal, "trail"):  # SPEC §21: checkpoints sealed as the journal stores them
            journal.trail = AuditTrail(config.journal.shard if isinstance(journal, PgJournal) else "",
                                       Signer(config.signing_key) if config.signing_key is not None else None)
        self.engine = Engine(ledger if ledger is not None else default_ledger(), journal, clock=clock,
                             node_name=node_name(config), test_clock=config.test_clock)
        self._shard: ShardRole | None = None
        if isinstance(self.engine.journal, PgJournal):
            self._shard = ShardRole(self.engine, self.engine.journal, on_change=self._role_changed,
                                    snapshot_every=checkpoint_every)
        # Snapshots of the config's data directory are taken by a process beside this one (checkpoint.py);
        # of a PostgreSQL shard, by its followers.
        self._checkpoint_every = checkpoint_every if own_journal and self._shard is None else None
        self.stopped_itself = asyncio.Event()  # set when a PostgreSQL node must stop (deposed, commit unknown)
        self._checkpointer: CheckpointProcess | None = None
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._background: set[asyncio.Task[None]] = set()
        self._serving = False
        self._stopping = False
        self.metrics = Metrics(self.engine, shard=config.journal.shard if self._shard is not None else "")
        self.http: HttpListener | None = None  # [http] listen: Connect (+ gRPC, gRPC-Web), /metrics, the console
        self.http_port: int | None = None

    async def start(self) -> int:
        """Listen, replay the journal (health NOT_SERVING, calls UNAVAILABLE meanwhile), then serve."""
        size = self.config.max_message_bytes
        authenticator = Authenticator(self.config.principals)
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(authenticator, self._journal_seq, self.metrics.call)],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                # Refuse to share a port with another server instead of splitting calls between them.
                ("grpc.so_reuseport", 0),
            ],
        )
        servicers = {"Admin": AdminServicer(self.engine, self.config.four_eyes),
                     "Dealing": DealingServicer(self.engine),
                     "Valuation": ValuationServicer(self.engine, self.config.heartbeat_seconds),
                     "Reports": ReportsServicer(self.engine),
                     "Diagnostics": DiagnosticsServicer(self.leader_info, self.engine.advance_clock,
                                                        self.config.test_clock)}
        rpc.add_AdminServicer_to_server(servicers["Admin"], server)
        rpc.add_DealingServicer_to_server(servicers["Dealing"], server)
        rpc.add_ValuationServicer_to_server(servicers["Valuation"], server)
        rpc.add_ReportsServicer_to_server(servicers["Reports"], server)
        rpc.add_DiagnosticsServicer_to_server(servicers["Diagnostics"], server)
        if self.config.http_listen is not None:
            self.http = HttpListener(servicers, authenticator, self.metrics, max_body=size,
                                     reflection=self.config.reflection, grace_seconds=self.config.grace_seconds,
                                     initial_metadata=self._journal_seq)
        if self.config.test_clock:
            log.warning("test_clock = true: Diagnostics.AdvanceClock may move this engine's clock forward; "
                        "for rehearsals and tests only, never in production")
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.config.reflection:
            reflection.enable_server_reflection(
                (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            credentials = server_credentials(self.config)
            try:
                if credentials is None:
                    port = server.add_insecure_port(self.config.listen)
                else:
                    port = server.add_secure_port(self.config.listen, credentials)
            except RuntimeError as e:  # grpc reports a failed bind this way
                raise OSError(f"cannot listen on {self.config.listen}: {e}") from None
            if port == 0:
                raise OSError(f"cannot listen on {self.config.listen}")
            await server.start()
            self._server = server
            self.port = port
            if self.http is not None:
                try:
                    self.http_port = await self.http.start(self.config.http_listen or "")
                except OSError as e:
                    raise OSError(f"cannot listen on {self.config.http_listen} ([http] listen): {e}") from None
            if self._shard is not None:
                await self._shard.start()
            await self.engine.start()
            if self._shard is not None:
                self._shard.run()
        except BaseException:
            if self._shard is not None:
                await self._shard.stop()
            await server.stop(0)
            self._server = None
            if self.http is not None:
                await self.http.stop()
            await self.engine.stop()
            raise
        self.engine.on_halt.append(self._halted)
        self._serving = True
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self._checkpoint_every is not None:
            self._checkpointer = CheckpointProcess(self.config.data_dir, every=self._checkpoint_every)
        return port

    async def _set_health(self, status: int) -> None:
        """The server's and every engine service's status. Diagnostics answers without the engine, so
        it serves whenever the process does; on a follower Admin and Dealing, which write, do not."""
        serving = health_pb2.HealthCheckResponse.SERVING
        for name in ("", *SERVICE_NAMES):
            if name == DIAGNOSTICS:
                value = serving
            elif name in WRITING_SERVICES and self.engine.role != LEADER:
                value = health_pb2.HealthCheckResponse.NOT_SERVING
            else:
                value = status
            await self._health.set(name, value)

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _halted(self, reason: str) -> None:
        """The engine stopped itself (the journal failed, or another node leads): NOT_SERVING for good;
        a PostgreSQL node also exits, so that it recovers from the journal when it is started again."""
        log.error("the engine has stopped; health is NOT_SERVING: %s", reason)
        self._later(self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING))
        if self._shard is not None:
            self.stopped_itself.set()

    def _role_changed(self) -> None:
        if self._serving and self.engine.failure is None:
            self._later(self._set_health(health_pb2.HealthCheckResponse.SERVING))

    def _journal_seq(self) -> tuple[tuple[str, str], ...] | None:
        """A follower's replies say how far it has applied the journal (SPEC §12)."""
        if self.engine.role == LEADER or self._shard is None:
            return None
        return (("x-etf-journal-seq", str(self._shard.applied_seq)),)

    def leader_info(self) -> pb.LeaderInfo:
        journal = self.engine.journal
        shard = self._shard
        return pb.LeaderInfo(
            shard=self.config.journal.shard if shard is not None else "",
            leader=self.engine.leader, epoch=shard.epoch if shard is not None else 0,
            role=pb.Role.LEADER if self.engine.role == LEADER else pb.Role.FOLLOWER,
            applied_seq=shard.applied_seq if shard is not None else getattr(journal, "last_seq", 0),
            sync_standbys=shard.sync_standbys if shard else -1, test_clock=self.config.test_clock,
            now_unix_ms=self.engine.now_ms())

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop; a second call while stopping waits for nothing more."""
        if self._stopping or self._server is None:
            return
        self._stopping = True
        await self._health.enter_graceful_shutdown()
        self.engine.feed.close()  # NAV streams end cleanly instead of being cut at the deadline
        await self._server.stop(self.config.grace_seconds if grace is None else grace)
        if self.http is not None:
            await self.http.stop()
        if self._shard is not None:
            await self._shard.stop()
        if self._checkpointer is not None:  # before the engine's own snapshot at stop, which is newer
            await asyncio.to_thread(self._checkpointer.stop)
        await self.engine.stop()

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(
    config: Config,
    *,
    ledger: Ledger | None = None,
    journal: Journal | None = None,
    on_ready: Callable[[EngineServer], None] | None = None,
) -> int:
    """Run until SIGTERM or SIGINT, then stop gracefully (0); or until a PostgreSQL node must stop
    itself (deposed, or a commit of unknown outcome): STOPPED_ITSELF."""
    server = EngineServer(config, ledger=ledger, journal=journal)
    await server.start()
    # What start-up built (modules, the recovered ledger) lives as long as the process: freeze it so
    # that the collector's full passes under load stop walking it again and again.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(server)
    stopped_itself = asyncio.ensure_future(server.stopped_itself.wait())
    try:
        await asyncio.wait([asyncio.ensure_future(stop.wait()), stopped_itself], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.stop()
    return STOPPED_ITSELF if server.stopped_itself.is_set() else 0


class BackgroundServer:
    """An EngineServer on its own event loop in a daemon thread: for the demo and for tests that
    call it with blocking clients from the main thread."""

    def __init__(self, config: Config, **kwargs: Any) -> None:
        self._config = config
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="etf-engine-server", daemon=True)
        self.server: EngineServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    @property
    def http_url(self) -> str:
        """The HTTP listener's base URL (``[http] listen`` set)."""
        assert self.server is not None and self.server.http_port is not None
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def target(self) -> str:
        host = self._config.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    def run(self, coro: Any, timeout: float | None = 30.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> BackgroundServer:
        self._thread.start()

        async def make() -> EngineServer:
            server = EngineServer(self._config, **self._kwargs)
            await server.start()
            return server

        try:
            self.server = self.run(make())
        except BaseException:
            self._close_loop()
            raise
        return self

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
            self.run(self.server.stop(grace), timeout=None)
        self._close_loop()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

