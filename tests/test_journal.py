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
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    journal.close()


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
    """SQLite's own WAL, read by our scanner: every frame checks, the last commit is where SQLite has it."""
    from etf_engine.journal.wal import scan_wal

    journal = SqliteJournal(tmp_path)
    run_into(journal, Ledger(), commands())
    scan = scan_wal(tmp_path / "journal.sqlite3-wal", 4096)
    assert scan.committed_frames > len(commands()) and not scan.torn and scan.keep_bytes == scan.file_bytes
    journal.close()
