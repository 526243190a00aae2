"""`etf-engine verify --dsn` and `etf-engine journal copy` (SPEC §12 "Tools") against a real PostgreSQL
primary + sync standby (tests/pg_cluster.py).

The source is the data directory of a real server (a fund, a few orders, a clean stop: it holds a
snapshot). Each test copies it into a shard of its own; the commands run as subprocesses, as an
operator runs them.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.client import EtfClient, status_name
from etf_engine.journal import SqliteJournal, recover
from tests.pg_cluster import PgCluster
from tests.pg_cluster import pg_cluster as pg_cluster  # the session fixture
from tests.test_crash import ENV, TOKENS, load_fund, start, write_config

ORDERS_BEFORE = 4


@dataclass(frozen=True)
class Source:
    data_dir: Path
    order_ids: list[str]
    records: int
    verify_out: str  # `etf-engine verify --data-dir` stdout
    digest: str


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "etf_engine.cli", *map(str, args)], env=ENV, text=True,
                          capture_output=True, timeout=timeout)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def pg(pg_cluster: PgCluster) -> PgCluster:
    pg_cluster.reset()
    return pg_cluster


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    tmp = tmp_path_factory.mktemp("source")
    proc, target = start(write_config(tmp))
    try:
        load_fund(target)
        with EtfClient(target, TOKENS["AP-1"]) as dealer:
            orders = [dealer.submit_order("F-1", "CREATE", 1, f"before-{i}") for i in range(ORDERS_BEFORE)]
        with EtfClient(target, TOKENS["issuer"]) as ops:
            ops.settle_order(orders[0].order_id)
    finally:
        stop(proc)  # a clean stop writes a snapshot
    data_dir = tmp / "data"
    assert (data_dir / "snapshot.bin").exists()
    verified = cli("verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stderr
    records = int(verified.stdout.split("records ")[1].split(",")[0])
    digest = verified.stdout.split("digest ")[1].strip()
    return Source(data_dir, [o.order_id for o in orders], records, verified.stdout, digest)


def copy_into(source: Source, pg: PgCluster, shard: str) -> subprocess.CompletedProcess[str]:
    copied = cli("journal", "copy", "--from", source.data_dir, "--to", pg.dsn, "--shard", shard)
    assert copied.returncode == 0, copied.stderr
    return copied


def shard_rows(pg: PgCluster, shard: str) -> tuple[list, tuple | None, tuple | None]:
    with psycopg.connect(pg.primary_dsn) as db:
        events = [(s, c, bytes(b)) for s, c, b in db.execute(
            "SELECT seq, crc, body FROM etf_events WHERE shard = %s ORDER BY seq", (shard,))]
        lease = db.execute("SELECT epoch, leader, last_seq, expires_at < now() FROM etf_lease WHERE shard = %s",
                           (shard,)).fetchone()
        snapshot = db.execute("SELECT seq, at FROM etf_snapshots WHERE shard = %s", (shard,)).fetchone()
    return events, lease, snapshot


def sqlite_rows(data_dir: Path) -> list:
    with sqlite3.connect(f"{(data_dir / 'journal.sqlite3').as_uri()}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT seq, crc, body FROM events ORDER BY seq"))


# == copy and verify =================================================================================
def test_copy_keeps_records_and_digest(pg: PgCluster, source: Source) -> None:
    copied = copy_into(source, pg, "copy-same")
    assert copied.stdout.splitlines()[-1] == f"copied {source.records} records; digest {source.digest}"
    # the clean stop's snapshot is at the last record: copied, and a server starts from it
    assert f"snapshot at record {source.records} copied" in copied.stdout

    events, lease, snapshot = shard_rows(pg, "copy-same")
    assert events == sqlite_rows(source.data_dir)  # seq, crc and body bytes
    assert lease == (0, "", source.records, True)  # expired, never led: the first server takes epoch 1
    assert snapshot is not None and snapshot[0] == source.records

    # verify --dsn: the same lines as verify --data-dir, on the primary and on the (read-only) standby
    verified = cli("verify", "--dsn", pg.dsn, "--shard", "copy-same")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == source.verify_out
    pg.wait_replayed()
    on_standby = cli("verify", "--dsn", pg.standby_dsn, "--shard", "copy-same")
    assert on_standby.returncode == 0, on_standby.stderr
    assert on_standby.stdout == source.verify_out
    assert shard_rows(pg, "copy-same")[1] == lease  # verify took no lease, changed nothing


def test_verify_dsn_defaults_to_shard_main(pg: PgCluster, source: Source) -> None:
    copy_into(source, pg, "main")
    verified = cli("verify", "--dsn", pg.dsn)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == source.verify_out


def test_copy_refused_into_a_shard_that_is_not_empty(pg: PgCluster, source: Source) -> None:
    copy_into(source, pg, "copy-twice")
    before = shard_rows(pg, "copy-twice")
    again = cli("journal", "copy", "--from", source.data_dir, "--to", pg.dsn, "--shard", "copy-twice")
    assert again.returncode == 2
    assert "not empty" in one_line(again)
    assert again.stdout == ""
    assert shard_rows(pg, "copy-twice") == before

    # a lease alone (a server started on the shard, nothing written yet) is enough to refuse
    with psycopg.connect(pg.primary_dsn, autocommit=True) as db:
        db.execute("INSERT INTO etf_lease VALUES ('copy-leased', 1, 'engine-x', 0, now())")
    leased = cli("journal", "copy", "--from", source.data_dir, "--to", pg.dsn, "--shard", "copy-leased")
    assert leased.returncode == 2
    assert "a lease (leader engine-x, epoch 1" in one_line(leased)
    events, lease, snapshot = shard_rows(pg, "copy-leased")
    assert (events, lease[:3], snapshot) == ([], (1, "engine-x", 0), None)


def test_copy_refused_while_a_server_holds_the_data_dir(pg: PgCluster, source: Source, tmp_path: Path) -> None:
    shutil.copytree(source.data_dir, tmp_path / "data")
    proc, _ = start(write_config(tmp_path))
    try:
        refused = cli("journal", "copy", "--from", tmp_path / "data", "--to", pg.dsn, "--shard", "copy-busy")
    finally:
        stop(proc)
    assert refused.returncode == 2
    assert "in use by another etf-engine process" in one_line(refused)
    assert shard_rows(pg, "copy-busy") == ([], None, None)


def test_copy_refuses_a_damaged_source(pg: PgCluster, source: Source, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(source.data_dir, data_dir)
    with sqlite3.connect(data_dir / "journal.sqlite3") as db:
        db.execute("UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 'BTC', 'BTX') AS BLOB) WHERE seq = 1")
    refused = cli("journal", "copy", "--from", data_dir, "--to", pg.dsn, "--shard", "copy-damaged")
    assert refused.returncode == 1
    assert "record 1 is damaged" in one_line(refused)
    assert shard_rows(pg, "copy-damaged") == ([], None, None)


def test_copy_takes_a_snapshot_that_records_follow(pg: PgCluster, source: Source, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(source.data_dir, data_dir)
    journal = SqliteJournal(data_dir)  # two records after the snapshot, as a server would append them
    ledger = recover(journal, Ledger())
    for delta in ("1.00", "2.00"):
        asyncio.run(journal.append(ledger.execute(M.AdjustCash(fund_id="F-1", delta=delta), journal.last_at + 1)[1]))
    journal.close()
    verified = cli("verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stderr

    copied = cli("journal", "copy", "--from", data_dir, "--to", pg.dsn, "--shard", "with-snapshot")
    assert copied.returncode == 0, copied.stderr
    assert f"snapshot at record {source.records} copied" in copied.stdout
    assert copied.stdout.splitlines()[-1] == f"copied {source.records + 2} records; digest " + \
        verified.stdout.split("digest ")[1].strip()
    _, _, snapshot = shard_rows(pg, "with-snapshot")
    assert snapshot[0] == source.records
    with psycopg.connect(pg.primary_dsn) as db:
        body = db.execute("SELECT body FROM etf_snapshots WHERE shard = 'with-snapshot'").fetchone()[0]
    assert bytes(body) == (data_dir / "snapshot.bin").read_bytes()[12:]  # the bytes as stored
    on_shard = cli("verify", "--dsn", pg.dsn, "--shard", "with-snapshot")
    assert on_shard.stdout == verified.stdout

    with psycopg.connect(pg.primary_dsn, autocommit=True) as db:  # verify checks the snapshot too
        db.execute("UPDATE etf_snapshots SET body = overlay(body PLACING '9' FROM 3 FOR 1) "
                   "WHERE shard = 'with-snapshot'")
    damaged = cli("verify", "--dsn", pg.dsn, "--shard", "with-snapshot")
    assert damaged.returncode == 1
    assert f"the snapshot at record {source.records} is damaged" in one_line(damaged)


# == damage found by verify --dsn =====================================================================
def test_verify_dsn_names_a_damaged_record(pg: PgCluster, source: Source) -> None:
    copy_into(source, pg, "damaged")
    with psycopg.connect(pg.primary_dsn, autocommit=True) as db:
        db.execute("UPDATE etf_events SET body = overlay(body PLACING '9' FROM 3 FOR 1) "
                   "WHERE shard = 'damaged' AND seq = 5")
    verified = cli("verify", "--dsn", pg.dsn, "--shard", "damaged")
    assert verified.returncode == 1
    line = one_line(verified)
    assert "record 5 is damaged" in line and "'damaged'" in line, line


def test_verify_dsn_finds_a_lost_tail(pg: PgCluster, source: Source) -> None:
    copy_into(source, pg, "cut")
    with psycopg.connect(pg.primary_dsn, autocommit=True) as db:
        db.execute("DELETE FROM etf_events WHERE shard = 'cut' AND seq > %s", (source.records - 2,))
    verified = cli("verify", "--dsn", pg.dsn, "--shard", "cut")
    assert verified.returncode == 1
    assert f"records {source.records - 1} to {source.records} are missing" in one_line(verified)


def test_verify_dsn_errors_are_one_line(pg: PgCluster, source: Source) -> None:
    cases = [
        (("verify",), 2, "exactly one of --data-dir"),
        (("verify", "--data-dir", source.data_dir, "--dsn", pg.dsn), 2, "exactly one of --data-dir"),
        (("verify", "--data-dir", source.data_dir, "--shard", "x"), 2, "--shard goes with --dsn"),
        (("verify", "--dsn", pg.dsn, "--shard", "no spaces"), 2, "--shard"),
        (("verify", "--dsn", "host=127.0.0.1 dbname", "--shard", "x"), 2, "--dsn"),
        (("verify", "--dsn", pg.dsn, "--shard", "never-made"), 1, "does not exist"),
        (("verify", "--dsn", "host=127.0.0.1 port=1 dbname=etf user=etf connect_timeout=2"), 1, "cannot connect"),
        (("journal", "copy", "--from", source.data_dir.parent / "nowhere", "--to", pg.dsn), 2, "no journal in"),
    ]
    for args, status, text in cases:
        result = cli(*args)
        assert result.returncode == status, (args, result.stderr)
        assert text in one_line(result), (args, result.stderr)
    assert not (source.data_dir.parent / "nowhere").exists()


# == a server on the copied shard =======================================================================
def test_server_continues_on_the_copied_shard(pg: PgCluster, source: Source, tmp_path: Path) -> None:
    copy_into(source, pg, "moved")
    config = write_config(tmp_path)
    config.write_text(config.read_text() + f'[journal]\nbackend = "postgresql"\ndsn = "{pg.dsn}"\n'
                      'shard = "moved"\nlease_seconds = 2\nnode_name = "engine-moved"\n')
    proc, target = start(config)
    try:
        with EtfClient(target, TOKENS["issuer"]) as ops:
            first = ops.get_order(source.order_ids[0])
            assert (first.client_order_id, status_name(first.status)) == ("before-0", "SETTLED")
            assert ops.get_order(source.order_ids[-1]).client_order_id == f"before-{ORDERS_BEFORE - 1}"
        with EtfClient(target, TOKENS["AP-1"]) as dealer:
            after = dealer.submit_order("F-1", "CREATE", 1, "after-0")
        assert after.order_id == f"ORD-{int(source.order_ids[-1].removeprefix('ORD-')) + 1:08d}"
        _, lease, _ = shard_rows(pg, "moved")
        assert lease[:3] == (1, "engine-moved", source.records + 1)
    finally:
        stop(proc)
    verified = cli("verify", "--dsn", pg.dsn, "--shard", "moved")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"records {source.records + 1}, ")
    # A clean stop leaves a snapshot at the last record: the server starts from it and goes on writing.
    snapshot = shard_rows(pg, "moved")[2]
    assert snapshot is not None and snapshot[0] == source.records + 1
    proc, target = start(config)
    try:
        with EtfClient(target, TOKENS["AP-1"]) as dealer:
            again = dealer.submit_order("F-1", "CREATE", 1, "after-1")
        assert again.order_id == f"ORD-{int(after.order_id.removeprefix('ORD-')) + 1:08d}"
    finally:
        stop(proc)


# == size ===============================================================================================
def test_copy_of_100k_records(pg: PgCluster, tmp_path: Path) -> None:
    n = 100_000
    now = 1_767_225_600_000
    journal = SqliteJournal(tmp_path)
    ledger = Ledger()
    commands = [M.RegisterAsset(symbol="ETH", decimals=18),
                M.RegisterCustodian(custodian_id="C-1", name="C", licence_number="L", licence_status="ACTIVE",
                                    licence_expires_at=now // 1000 + 86_400),
                M.CreateFund(fund_id="F-1", name="Fund", base_currency="HKD", creation_unit=100,
                             creation_custodian_id="C-1", custodian_priority=["C-1"],
                             assets=[M.FundAssetSpec(asset="ETH")])]
    commands += [M.AdjustCash(fund_id="F-1", delta=f"{i % 997}.01") for i in range(n - len(commands))]
    events = [event for command in commands for event in ledger.execute(command, now)[1]]
    for start_at in range(0, len(events), 10_000):
        asyncio.run(journal.append(events[start_at:start_at + 10_000]))
    journal.close()

    began = time.monotonic()
    copied = cli("journal", "copy", "--from", tmp_path, "--to", pg.dsn, "--shard", "big", timeout=300)
    took = time.monotonic() - began
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.splitlines()[-1].startswith(f"copied {len(events)} records; digest ")
    assert "no snapshot in" in copied.stdout
    verified = cli("verify", "--data-dir", tmp_path)
    assert copied.stdout.splitlines()[-1].split("digest ")[1] == verified.stdout.split("digest ")[1].strip()
    assert took < 60, f"copying {len(events)} records took {took:.1f} s"
