"""The SQLite journal: durable append, replay equality, snapshots, damage detection, the directory lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.journal import JournalError, SqliteJournal, recover, state_digest

pytestmark = pytest.mark.unit

NOW = 1_767_225_600_000


def commands() -> list:
    fund = M.CreateFund(
        fund_id="F-1", name="Fund", base_currency="HKD", creation_unit=100, creation_custodian_id="C-1",
        custodian_priority=["C-1"], initial_shares_outstanding=1_000,
        assets=[M.FundAssetSpec(asset="ETH", staking_cap="0.5", liquidity_buffer="0.1", unbonding_seconds=60)],
    )
    return [
        M.RegisterAsset(symbol="ETH", decimals=18),
        M.RegisterCustodian(custodian_id="C-1", name="C", licence_number="L", licence_status="ACTIVE",
                            licence_expires_at=NOW // 1000 + 86_400),
        M.RegisterParticipant(participant_id="AP-1", name="AP", eligible_fund_ids=["F-1"], max_units_per_order=5,
                              max_units_per_day=50),
        fund,
        M.AdjustHolding(fund_id="F-1", custodian_id="C-1", asset="ETH", delta="1000000.000000000000000001"),
        M.PublishPrices(ticks=[M.PriceTick(asset="ETH", currency="HKD", price="24567.1", as_of_unix_ms=NOW)]),
        M.Stake(fund_id="F-1", custodian_id="C-1", asset="ETH", quantity="100"),
        M.Unstake(fund_id="F-1", custodian_id="C-1", asset="ETH", quantity="40"),
        M.SubmitOrder(participant_id="AP-1", request=M.OrderRequest(fund_id="F-1", side="REDEEM", units=2,
                                                                    client_order_id="r-1")),
        M.SubmitOrder(participant_id="AP-1", request=M.OrderRequest(fund_id="F-1", side="CREATE", units=1,
                                                                    client_order_id="c-1")),
        M.SettleOrder(order_id="ORD-00000002"),
    ]


def run_into(journal: SqliteJournal, ledger: Ledger, cmds: list) -> None:
    for command in cmds:
        _, events = ledger.execute(command, NOW)
        asyncio.run(journal.append(events))


def test_replay_rebuilds_the_same_state(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    run_into(journal, ledger, commands())
    digest = state_digest(ledger.state(NOW))
    journal.close()

    journal = SqliteJournal(tmp_path)
    rebuilt = recover(journal, Ledger())
    assert state_digest(rebuilt.state(NOW)) == digest
    assert journal.last_at == NOW
    # the order-id sequence continues where it stopped
    order, _ = rebuilt.execute(M.SubmitOrder(participant_id="AP-1", request=M.OrderRequest(
        fund_id="F-1", side="CREATE", units=1, client_order_id="c-2")), NOW)
    assert order.order_id == "ORD-00000003"
    journal.close()


def test_snapshot_then_journal_tail(tmp_path: Path) -> None:
    cmds = commands()
    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    run_into(journal, ledger, cmds[:7])
    journal.write_snapshot(ledger.state(journal.last_at))
    run_into(journal, ledger, cmds[7:])
    digest = state_digest(ledger.state(NOW))
    journal.close()

    journal = SqliteJournal(tmp_path)
    assert state_digest(recover(journal, Ledger()).state(NOW)) == digest
    journal.close()


def test_damaged_record_stops_recovery_naming_it(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    run_into(journal, Ledger(), commands())
    journal.close()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        body = db.execute("SELECT body FROM events WHERE seq = 5").fetchone()[0]
        db.execute("UPDATE events SET body = ? WHERE seq = 5", (body[:-1] + bytes([body[-1] ^ 1]),))
    journal = SqliteJournal(tmp_path)
    with pytest.raises(JournalError, match="record 5 is damaged"):
        recover(journal, Ledger())
    journal.close()


def test_missing_record_stops_recovery(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    run_into(journal, Ledger(), commands())
    journal.close()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        db.execute("DELETE FROM events WHERE seq = 3")
    with pytest.raises(JournalError, match=r"record 3 is missing \(10 records stored, numbered 1 to 11\)"):
        SqliteJournal(tmp_path)
    reader = SqliteJournal(tmp_path, lock=False, check=False)  # replay checks each record on its own too
    with pytest.raises(JournalError, match="record 3 is missing"):
        recover(reader, Ledger())
    reader.close()


def test_record_that_does_not_apply_stops_recovery_naming_it(tmp_path: Path) -> None:
    """Checksums hold but the records are not one history (here: orders of a fund never created)."""
    ledger = Ledger()
    events = [event for command in commands() for event in ledger.execute(command, NOW)[1]]
    journal = SqliteJournal(tmp_path)
    asyncio.run(journal.append([e for e in events if not isinstance(e, M.FundCreated)]))
    journal.close()
    journal = SqliteJournal(tmp_path)
    with pytest.raises(JournalError, match=r"journal .*journal.sqlite3: record \d+ \(\w+\) does not apply"):
        recover(journal, Ledger())
    journal.close()


def test_damaged_snapshot_stops_recovery(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    run_into(journal, ledger, commands())
    journal.write_snapshot(ledger.state(NOW))
    journal.close()
    snapshot = tmp_path / "snapshot.bin"
    data = bytearray(snapshot.read_bytes())
    data[-3] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    journal = SqliteJournal(tmp_path)
    with pytest.raises(JournalError, match="snapshot .* is damaged"):
        recover(journal, Ledger())
    journal.close()


def test_torn_database_file_is_a_clear_error(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    run_into(journal, Ledger(), commands())
    journal.close()
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(JournalError, match="damaged"):
        journal = SqliteJournal(tmp_path)
        recover(journal, Ledger())


def test_second_owner_is_refused(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    with pytest.raises(JournalError, match="in use by another"):
        SqliteJournal(tmp_path)
    journal.close()
    SqliteJournal(tmp_path).close()  # free again once the owner closed


def test_connection_is_wal_and_full_sync(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path)
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._writer.pragma("synchronous") == 2  # FULL, on the connection that commits
    journal.close()


def _clock(i: int) -> M.ClockAdvanced:
    return M.ClockAdvanced(at=NOW + i, offset_ms=i)


def _taken(journal: SqliteJournal, seq: int) -> None:
    """Write record ``seq`` beside the journal's writer, so that a commit holding that seq is refused."""
    journal._db.execute("INSERT INTO events (seq, crc, body) VALUES (?, 0, x'00')", (seq,))


def test_a_refused_commit_on_the_writer_thread_is_named_and_changes_nothing(tmp_path: Path) -> None:
    """Under load commits go to the writer's thread: a commit SQLite refuses there comes back to the loop as
    a JournalError naming SQLite's cause, nothing of it is committed, and the thread goes on committing."""
    journal = SqliteJournal(tmp_path)

    async def scenario() -> None:
        await journal.append([_clock(1)])
        _taken(journal, 3)
        with pytest.raises(JournalError, match="SQLITE_CONSTRAINT.*UNIQUE"):
            await journal.append([_clock(2), _clock(3)])
        assert journal.last_seq == 1
        assert journal._db.execute("SELECT seq FROM events").fetchall() == [(1,), (3,)]  # 3: written beside it
        journal._db.execute("DELETE FROM events WHERE seq = 3")
        await journal.append([_clock(2), _clock(3)])

    asyncio.run(scenario())
    assert [e.offset_ms for e in journal.replay()] == [1, 2, 3]
    journal.close()


def test_a_commit_of_many_statements_is_one_transaction(tmp_path: Path) -> None:
    """A commit of more records than one INSERT holds (128) is BEGIN, INSERTs, COMMIT: refused in its third
    statement, it leaves nothing of the first two behind; once the way is clear it commits whole."""
    journal = SqliteJournal(tmp_path)
    journal.append_sync([_clock(0)])
    _taken(journal, 1 + 300)
    events = [_clock(i) for i in range(1, 301)]
    with pytest.raises(JournalError, match="UNIQUE"):
        journal.append_sync(events)
    assert journal.committed_seq() == 301 and journal.last_seq == 1
    assert journal._db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2
    journal._db.execute("DELETE FROM events WHERE seq = 301")
    journal.append_sync(events)
    assert [e.offset_ms for e in journal.replay()] == list(range(301))
    journal.close()


def test_inline_commits_and_the_writer_thread_take_turns(tmp_path: Path) -> None:
    """The engine commits on the loop's thread under light load and on the writer's under load, on the one
    connection: in turns, every record lands once and in order, also across event loops."""
    journal = SqliteJournal(tmp_path)

    async def turns(start: int) -> None:
        for i in range(start, start + 20, 2):
            await journal.append([_clock(i)])
            journal.append_sync([_clock(i + 1)])

    asyncio.run(turns(0))
    asyncio.run(turns(20))  # a second loop: the journal watches the thread's answers from it
    journal.close()
    reopened = SqliteJournal(tmp_path)
    assert [e.offset_ms for e in reopened.replay()] == list(range(40))
    reopened.close()


def test_collector_paused_restores_what_it_found() -> None:
    import gc

    from etf_engine.journal import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the outer one re-enables
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_compiled_wal_checksum_equals_the_plain_one() -> None:
    import random

    from etf_engine.journal._walsum import wal_checksum
    from etf_engine.journal.wal import wal_checksum_py

    rng = random.Random(5)
    for size in (0, 8, 24, 4096, 4104):
        data = rng.randbytes(size)
        for big_endian in (False, True):
            seed = (rng.getrandbits(32), rng.getrandbits(32))
            assert wal_checksum(data, *seed, big_endian) == wal_checksum_py(data, *seed, big_endian)
    with pytest.raises(ValueError, match="multiple of 8"):
        wal_checksum(b"1234", 0, 0, False)


def test_wal_of_a_live_journal_scans_clean(tmp_path: Path) -> None:
    """SQLite's own WAL, read by our scanner: every frame checks, the last commit is where SQLite has it,
    and the zeros the journal wrote out ahead of it (WAL_FRAMES) are no part of the log."""
    from etf_engine.journal.sqlite import WAL_FRAMES
    from etf_engine.journal.wal import FRAME_HEADER_BYTES, HEADER_BYTES, scan_wal

    journal = SqliteJournal(tmp_path)
    run_into(journal, Ledger(), commands())
    wal = tmp_path / "journal.sqlite3-wal"
    scan = scan_wal(wal, 4096)
    assert scan.committed_frames > len(commands()) and not scan.torn
    assert scan.keep_bytes == HEADER_BYTES + scan.committed_frames * (FRAME_HEADER_BYTES + 4096)
    assert scan.file_bytes == HEADER_BYTES + WAL_FRAMES * (FRAME_HEADER_BYTES + 4096)
    assert wal.read_bytes()[scan.keep_bytes:] == bytes(scan.file_bytes - scan.keep_bytes)
    journal.close()


# -- the WAL written out ahead (sqlite.WAL_FRAMES) ----------------------------------------------------------
def wal_layout(data_dir: Path) -> tuple[int, int]:
    """(bytes of the WAL's log, bytes of the file)."""
    from etf_engine.journal.wal import scan_wal

    scan = scan_wal(data_dir / "journal.sqlite3-wal", 4096)
    assert not scan.torn
    return scan.keep_bytes, scan.file_bytes


def test_the_wal_is_written_out_once_and_commits_overwrite_it(tmp_path: Path) -> None:
    """After the first commit the WAL is WAL_FRAMES frames long, and the commits after it write over the
    zeros instead of making the file longer (the cheaper fdatasync); the log reads back whole."""
    from etf_engine.journal.sqlite import WAL_FRAMES
    from etf_engine.journal.wal import FRAME_HEADER_BYTES, HEADER_BYTES

    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    run_into(journal, ledger, commands()[:1])
    first_log, size = wal_layout(tmp_path)
    assert size == HEADER_BYTES + WAL_FRAMES * (FRAME_HEADER_BYTES + 4096) > first_log
    for i in range(60):
        journal.append_sync([M.ClockAdvanced(at=NOW + i, offset_ms=i)])
    run_into(journal, ledger, commands()[1:])
    log_bytes, later_size = wal_layout(tmp_path)
    assert later_size == size and first_log < log_bytes < size
    digest, records = state_digest(ledger.state(NOW)), journal.last_seq
    journal.close()
    journal = SqliteJournal(tmp_path, lock=False)
    assert state_digest(recover(journal, Ledger()).state(NOW)) == digest and journal.last_seq == records
    journal.close()


def test_a_byte_changed_in_the_zeros_after_the_log_changes_nothing(tmp_path: Path) -> None:
    """The zeros are no part of the log: SQLite and the WAL scan both stop at the first frame without the
    header's salts, so a byte changed there loses nothing and is not damage."""
    import shutil

    live = tmp_path / "live"
    journal = SqliteJournal(live)
    ledger = Ledger()
    run_into(journal, ledger, commands())
    digest, records = state_digest(ledger.state(NOW)), journal.last_seq
    crashed = tmp_path / "crashed"  # the files as a crash leaves them: the WAL not checkpointed
    shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))
    journal.close()
    log_bytes, size = wal_layout(crashed)
    wal = crashed / "journal.sqlite3-wal"
    data = bytearray(wal.read_bytes())
    for offset in (log_bytes, log_bytes + 8, (log_bytes + size) // 2, size - 1):
        data[offset] ^= 0x5A
    wal.write_bytes(bytes(data))
    owner = SqliteJournal(crashed)
    assert owner.torn_tail_frames == 0 and owner.last_seq == records
    assert state_digest(recover(owner, Ledger()).state(NOW)) == digest
    owner.close()


def test_a_wal_that_cannot_be_written_out_is_left_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """No room for the zeros (here the sync of them fails): the journal takes them back and says so; the
    commit stands and the ones after it make the file longer, as before."""
    import os

    def no_room(fd: int) -> None:
        raise OSError(28, "No space left on device")

    journal = SqliteJournal(tmp_path)
    monkeypatch.setattr(os, "fdatasync", no_room)
    with caplog.at_level("WARNING", logger="etf_engine.journal.sqlite"):
        journal.append_sync([M.ClockAdvanced(at=NOW, offset_ms=1)])
    monkeypatch.undo()
    assert "could not write it out ahead (No space left on device)" in caplog.text
    log_bytes, size = wal_layout(tmp_path)
    assert log_bytes == size
    journal.append_sync([M.ClockAdvanced(at=NOW + 1, offset_ms=2)])
    assert wal_layout(tmp_path)[1] > size  # not tried again: the file grows with the log
    assert [e.offset_ms for e in journal.replay()] == [1, 2]
    journal.close()
