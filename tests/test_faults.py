"""Faults that disks and operators really produce (SPEC §11): health tells the truth while the journal
replays and after it fails, a failed write names its cause, an unwritable data directory or a second
server on one directory is refused in one line.

The full disk is a small tmpfs and the read-only journal a read-only bind mount, both made here (the
tests run as root, as CI does); "file too large" is the process's RLIMIT_FSIZE, lowered on the running
server with prlimit.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from etf_engine._core import Ledger
from etf_engine.api.auth import ISSUER, Principal, hash_token
from etf_engine.api.server import EngineServer
from etf_engine.client import EtfClient
from etf_engine.config import Config
from etf_engine.journal import SqliteJournal, verify
from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc
from tests.test_crash import ENV, TOKENS, load_fund, start, write_config

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
ENGINE_SERVICES = ("", "etf_engine.v1.Admin", "etf_engine.v1.Dealing", "etf_engine.v1.Valuation")


def health(target: str) -> dict[str, int]:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                for name in (*ENGINE_SERVICES, "etf_engine.v1.Diagnostics")}


# -- health while the journal replays ----------------------------------------------------------------
class GatedJournal(SqliteJournal):
    """A journal whose replay waits for the test: the server is caught in the middle of its start."""

    gate = threading.Event()

    def replay(self, after: int = 0):  # type: ignore[override]
        self.gate.wait(30)
        yield from super().replay(after)


def test_not_serving_while_the_journal_replays(tmp_path: Path) -> None:
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path, principals=(Principal("ops", ISSUER, hash_token("t")),))

    async def scenario() -> None:
        journal = GatedJournal(tmp_path)
        server = EngineServer(config, ledger=Ledger(), journal=journal)
        starting = asyncio.create_task(server.start())
        while server.port is None:
            await asyncio.sleep(0.01)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for name in ENGINE_SERVICES:
                assert (await stub.Check(health_pb2.HealthCheckRequest(service=name))).status == NOT_SERVING, name
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await rpc.ValuationStub(channel).GetNav(pb.GetNavRequest(fund_id="F"),
                                                        metadata=(("authorization", "Bearer t"),))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "replaying the journal" in (refused.value.details() or "")
            journal.gate.set()
            await starting
            for name in ENGINE_SERVICES:
                assert (await stub.Check(health_pb2.HealthCheckRequest(service=name))).status == SERVING, name
        await server.stop(0)

    asyncio.run(scenario())


# -- a journal that fails under a running server -------------------------------------------------------
@contextlib.contextmanager
def running_server(tmp_path: Path, data_dir: Path | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    config = write_config(tmp_path)
    if data_dir is not None:
        config.write_text(config.read_text().replace(f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{data_dir}"'))
    proc, target = start(config)
    try:
        yield proc, target
    finally:
        proc.kill()
        proc.wait(timeout=30)


def submit_until_refused(target: str) -> tuple[dict[str, str], grpc.RpcError]:
    """Orders until the server refuses one; the acknowledged ones (client id -> order id) and the refusal."""
    acked: dict[str, str] = {}
    with EtfClient(target, TOKENS["AP-1"], max_attempts=1, timeout=10) as dealer:
        for i in range(100_000):
            try:
                order = dealer.submit_order("F-1", "CREATE", 1, f"fill-{i}")
            except grpc.RpcError as error:
                return acked, error
            acked[f"fill-{i}"] = order.order_id
    raise AssertionError("the journal never failed")


def check_failed_for_good(target: str, error: grpc.RpcError, cause: str) -> None:
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert cause in (error.details() or ""), error.details()
    assert len((error.details() or "").encode()) <= 1024
    status = health(target)
    assert all(status[name] == NOT_SERVING for name in ENGINE_SERVICES), status
    assert status["etf_engine.v1.Diagnostics"] == SERVING  # it answers without the journal
    with EtfClient(target, TOKENS["issuer"], max_attempts=1) as ops, pytest.raises(grpc.RpcError) as later:
        ops.get_nav("F-1")
    assert later.value.code() == grpc.StatusCode.UNAVAILABLE and cause in (later.value.details() or "")


def check_nothing_acknowledged_lost(tmp_path: Path, acked: dict[str, str], data_dir: Path | None = None) -> None:
    with running_server(tmp_path, data_dir) as (_, target), EtfClient(target, TOKENS["issuer"]) as ops:
        for client_id, order_id in acked.items():
            assert ops.get_order(order_id).client_order_id == client_id


def test_file_too_large_is_named_and_health_turns_not_serving(tmp_path: Path) -> None:
    with running_server(tmp_path) as (proc, target):
        load_fund(target)
        largest = max(p.stat().st_size for p in (tmp_path / "data").glob("journal.sqlite3*"))
        limit = largest + 64 * 1024
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
        acked, error = submit_until_refused(target)
        check_failed_for_good(target, error, "file too large")
        assert acked  # some orders fitted before the limit
    check_nothing_acknowledged_lost(tmp_path, acked)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_disk_full_is_named_and_health_turns_not_serving(tmp_path: Path, small_disk: Path) -> None:
    data = small_disk / "data"
    with running_server(tmp_path, data) as (_, target):
        load_fund(target)
        acked, error = submit_until_refused(target)
        check_failed_for_good(target, error, "disk full")
        assert acked
    for junk in small_disk.glob("data/snapshot.bin.tmp-*"):
        junk.unlink()
    # Room again, as an operator would make it.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    check_nothing_acknowledged_lost(tmp_path, acked, data)


# -- refusals to start ------------------------------------------------------------------------------
def serve_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(config)], env=ENV,
                          text=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` (a file or a directory) read-only for everyone, root included: a read-only bind mount."""
    made = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {made.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def journal_with_records(data: Path) -> None:
    config = write_config(data.parent)
    proc, target = start(config)
    load_fund(target)
    proc.terminate()
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("what", ["journal file", "data directory"])
def test_read_only_journal_refuses_to_start(tmp_path: Path, what: str) -> None:
    data = tmp_path / "data"
    journal_with_records(data)
    target = data / "journal.sqlite3" if what == "journal file" else data
    with read_only(target):
        result = serve_once(tmp_path / "engine.toml")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(target) in lines[0] and "Read-only file system" in lines[0], lines[0]
    assert "listening" not in result.stdout


def test_second_server_on_one_data_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    with running_server(tmp_path):
        result = serve_once(tmp_path / "engine.toml")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(tmp_path / "data") in lines[0] and "in use by another etf-engine process" in lines[0]


def test_verify_beside_a_running_server_under_load(tmp_path: Path) -> None:
    """verify takes no lock: it reads a WAL that the server is appending to (a frame may be half-written
    at its end) without calling that damage, and every read is a prefix at least as long as the last."""
    from tests.test_crash import deal

    with running_server(tmp_path) as (_, target):
        load_fund(target)
        stop = threading.Event()
        acked: dict = {}
        dealers = [threading.Thread(target=deal, args=(target, pid, 0, acked, {}, stop)) for pid in ("AP-1", "AP-2")]
        for dealer in dealers:
            dealer.start()
        seen = reads = 0
        deadline = time.monotonic() + 30
        try:
            while (reads < 15 or seen < 3000) and time.monotonic() < deadline:
                reads += 1
                journal = SqliteJournal(tmp_path / "data", lock=False, check=True)
                try:
                    verify(journal, Ledger())
                    assert journal.last_seq >= seen
                    seen = journal.last_seq
                finally:
                    journal.close()
        finally:
            stop.set()
            for dealer in dealers:
                dealer.join(timeout=30)
        assert acked and seen >= 3000, (reads, seen)  # more WAL than one autocheckpoint (1,000 pages)
