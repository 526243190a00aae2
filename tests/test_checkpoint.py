"""The checkpointer: snapshots taken by a process beside the server, from committed records only."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.api.auth import PARTICIPANT, Principal, hash_token
from etf_engine.api.server import BackgroundServer
from etf_engine.checkpoint import Checkpointer, CheckpointProcess
from etf_engine.client import EtfClient
from etf_engine.config import Config
from etf_engine.journal import SqliteJournal, recover, state_digest
from tests.test_journal import NOW, commands, run_into


def wait_for(predicate, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_snapshots_every_n_committed_records_and_matches_the_server(tmp_path: Path) -> None:
    server_journal = SqliteJournal(tmp_path)  # the server's: holds the lock, appends
    ledger = Ledger()
    cmds = commands()
    run_into(server_journal, ledger, cmds[:4])
    every = server_journal.last_seq + 3
    checkpointer = Checkpointer(tmp_path, every=every)
    try:
        assert not checkpointer.step()  # below `every`: nothing written
        assert server_journal.load_snapshot() is None
        run_into(server_journal, ledger, cmds[4:])
        assert server_journal.last_seq >= every
        assert checkpointer.step()  # at or past `every`: the snapshot is the server's state at that record
        snapshot = server_journal.load_snapshot()
        assert snapshot is not None and snapshot.seq == server_journal.last_seq
        assert state_digest(snapshot.state) == state_digest(ledger.state(snapshot.at))
        assert not checkpointer.step()  # nothing new since
    finally:
        checkpointer.close()
        server_journal.close()
    journal = SqliteJournal(tmp_path)
    try:
        assert state_digest(recover(journal, Ledger()).state(NOW)) == state_digest(ledger.state(NOW))
    finally:
        journal.close()


def test_one_record_short_of_every_writes_nothing(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    run_into(journal, Ledger(), commands())
    checkpointer = Checkpointer(tmp_path, every=journal.last_seq + 1)
    try:
        assert not checkpointer.step()
        assert not (tmp_path / "snapshot.bin").exists()
    finally:
        checkpointer.close()
        journal.close()


def test_the_server_runs_one_and_stops_it(tmp_path: Path) -> None:
    token = "dealer-token"
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path, reflection=False,
                    principals=(Principal("dealer", PARTICIPANT, hash_token(token), "AP-1"),))
    server = BackgroundServer(config, ledger=Ledger(), checkpoint_every=5, clock=lambda: NOW).start()
    try:
        checkpointer = server.server._checkpointer
        assert checkpointer is not None and checkpointer.process.poll() is None
        server.run(_load(server))
        assert wait_for(lambda: (tmp_path / "snapshot.bin").exists()), "the checkpointer wrote no snapshot"
        with EtfClient(server.target, token) as dealer:  # the server keeps serving meanwhile
            assert dealer.get_nav("F-1").fund_id == "F-1"
    finally:
        server.stop()
    assert checkpointer.process.poll() is not None


async def _load(server: BackgroundServer) -> None:
    engine = server.server.engine
    for command in commands():
        await engine.execute(command)


def test_it_exits_when_the_server_dies(tmp_path: Path) -> None:
    SqliteJournal(tmp_path).close()
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from etf_engine.checkpoint import CheckpointProcess; "
         f"p = CheckpointProcess(Path({str(tmp_path)!r})); print(p.process.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()

    def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"

    assert wait_for(gone), "the checkpointer outlived its server"


def test_stop_waits_for_the_process(tmp_path: Path) -> None:
    SqliteJournal(tmp_path).close()
    process = CheckpointProcess(tmp_path)
    process.stop()
    assert process.process.returncode is not None


def test_it_runs_only_on_a_core_that_would_otherwise_idle(tmp_path: Path) -> None:
    """SCHED_IDLE (and nice 19): the server and its callers come first."""
    SqliteJournal(tmp_path).close()
    process = CheckpointProcess(tmp_path)
    try:
        assert wait_for(lambda: os.sched_getscheduler(process.process.pid) == os.SCHED_IDLE)
        assert os.getpriority(os.PRIO_PROCESS, process.process.pid) == 19
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the server's own policy is untouched
    finally:
        process.stop()


def test_reads_only_committed_records(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    run_into(journal, ledger, commands()[:3])
    checkpointer = Checkpointer(tmp_path, every=1)
    try:
        _, events = ledger.execute(commands()[3], NOW)
        journal._db.execute("BEGIN IMMEDIATE")  # a commit in progress is invisible to the checkpointer
        journal._db.execute("INSERT INTO events (seq, crc, body) VALUES (?, 0, x'00')", (journal.last_seq + 1,))
        assert checkpointer.committed() == journal.last_seq
        journal._db.execute("ROLLBACK")
        asyncio.run(journal.append(events))
        assert checkpointer.committed() == journal.last_seq
    finally:
        checkpointer.close()
        journal.close()


def test_model_is_unchanged_by_a_snapshot(tmp_path: Path) -> None:
    """The snapshot restores to the very state the records build, ids and all."""
    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    run_into(journal, ledger, commands())
    checkpointer = Checkpointer(tmp_path, every=1)
    try:
        assert checkpointer.step()
        restored = Ledger.restore(journal.load_snapshot().state)
        order, _ = restored.execute(M.SubmitOrder(participant_id="AP-1", request=M.OrderRequest(
            fund_id="F-1", side="CREATE", units=1, client_order_id="after-snapshot")), NOW)
        expected, _ = ledger.execute(M.SubmitOrder(participant_id="AP-1", request=M.OrderRequest(
            fund_id="F-1", side="CREATE", units=1, client_order_id="after-snapshot")), NOW)
        assert order == expected
    finally:
        checkpointer.close()
        journal.close()


def test_waits_for_as_many_records_as_the_snapshot_holds_orders(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    run_into(journal, ledger, commands())  # two orders among them
    checkpointer = Checkpointer(tmp_path, every=1)
    try:
        assert checkpointer.step()
        assert checkpointer.interval == 2  # the snapshot holds 2 orders: the next waits for 2 records
        run_into(journal, ledger, [M.RegisterAsset(symbol="SOL", decimals=9)])
        assert not checkpointer.step()  # 1 record: not yet
        run_into(journal, ledger, [M.RegisterAsset(symbol="ADA", decimals=6)])
        assert checkpointer.step()  # 2 records
    finally:
        checkpointer.close()
        journal.close()
    again = Checkpointer(tmp_path, every=1)  # a restarted checkpointer keeps the policy
    try:
        assert again.interval == 2
    finally:
        again.close()
