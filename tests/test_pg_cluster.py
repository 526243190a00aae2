"""The PostgreSQL test cluster (tests/pg_cluster.py) really is a primary with a synchronous standby.

Each test starts from ``reset()``: an empty database etf on a healthy primary + sync standby (a test
that promoted the standby leaves a cluster that the next reset rebuilds).
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.pg_cluster import PgCluster
from tests.pg_cluster import pg_cluster as pg_cluster  # the session fixture


@pytest.fixture
def pg(pg_cluster: PgCluster) -> PgCluster:
    pg_cluster.reset()
    return pg_cluster


def eventually(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.05)


def test_dsns_name_both_servers(pg: PgCluster) -> None:
    p, s = pg.primary_port, pg.standby_port
    assert p != s
    assert pg.dsn == (f"host=127.0.0.1,127.0.0.1 port={p},{s} dbname=etf user=etf "
                      "target_session_attrs=read-write connect_timeout=2")
    with psycopg.connect(pg.primary_dsn) as conn:
        assert conn.execute("SELECT current_user, current_database(), pg_is_in_recovery()").fetchone() == (
            "etf", "etf", False)
    with psycopg.connect(pg.standby_dsn) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    with psycopg.connect(pg.dsn) as conn:
        assert conn.info.port == p
    assert "ready to accept connections" in pg.log_tail("primary", 1000)
    assert "started streaming WAL" in pg.log_tail("standby", 1000)


def test_replication_shows_s1_sync_to_the_etf_role(pg: PgCluster) -> None:
    with psycopg.connect(pg.primary_dsn) as conn:  # etf has pg_monitor: it sees the standby's state
        rows = conn.execute("SELECT application_name, state, sync_state FROM pg_stat_replication").fetchall()
        assert rows == [("s1", "streaming", "sync")]
        assert conn.execute("SHOW synchronous_standby_names").fetchone() == ("s1",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)


def test_a_write_on_the_primary_is_visible_on_the_standby(pg: PgCluster) -> None:
    with psycopg.connect(pg.primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (n int PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    with psycopg.connect(pg.standby_dsn, autocommit=True) as conn:
        eventually(lambda: conn.execute("SELECT count(*) FROM t").fetchone() == (2,))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO t VALUES (3, 'three')")
    assert pg.psql("SELECT n, s FROM t ORDER BY n", port=pg.standby_port) == "1|one\n2|two"


def test_reset_gives_an_empty_database(pg: PgCluster) -> None:
    pg.psql("CREATE TABLE leftover (n int)", user="etf")
    pg.reset()
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'") == "0"
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'", port=pg.standby_port) == "0"
    assert pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'etf'") == "etf"


def test_without_the_standby_a_commit_waits_until_it_is_back(pg: PgCluster) -> None:
    pg.psql("CREATE TABLE t (n int)", user="etf")
    pg.stop_standby()
    outcome: dict[str, object] = {}

    def commit() -> None:
        try:
            with psycopg.connect(pg.primary_dsn, autocommit=True) as conn:
                outcome["pid"] = conn.info.backend_pid
                conn.execute("INSERT INTO t VALUES (1)")  # waits for s1; never cancelled
                outcome["done"] = time.monotonic()
        except BaseException as e:
            outcome["error"] = e

    worker = threading.Thread(target=commit, daemon=True)
    worker.start()
    try:
        worker.join(1.0)
        assert worker.is_alive(), f"the commit returned without a standby: {outcome}"
        assert "error" not in outcome and "done" not in outcome
        pid = outcome["pid"]
        assert pg.psql(f"SELECT wait_event FROM pg_stat_activity WHERE pid = {pid}") == "SyncRep"
        assert pg.psql("SELECT count(*) FROM t") == "0"  # not visible to others until acknowledged
        started = time.monotonic()
    finally:
        pg.start_standby()  # lets the waiting commit finish; the statement itself is never cancelled
        worker.join(15)
    assert not worker.is_alive(), "the commit still waits with the standby back"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["done"] >= started
    pg.wait_replayed()
    assert pg.psql("SELECT count(*) FROM t", port=pg.standby_port) == "1"


def test_after_killing_the_primary_and_promoting_the_standby_writes_go_through_the_dsn(pg: PgCluster) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        assert conn.info.port == pg.primary_port
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t VALUES (1)")  # acknowledged: the sync standby has it
    pg.kill_primary()
    with pytest.raises(psycopg.OperationalError):  # the standby is read-only: no read-write server yet
        psycopg.connect(pg.dsn).close()
    pg.promote_standby()
    assert pg.leader == "standby"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        assert conn.info.port == pg.standby_port
        conn.execute("INSERT INTO t VALUES (2)")
        assert conn.execute("SELECT n FROM t ORDER BY n").fetchall() == [(1,), (2,)]
    assert pg.psql("SELECT count(*) FROM t") == "2"  # psql without a port: the writable node

    pg.reset()  # the topology changed: a new cluster
    assert pg.leader == "primary" and pg.healthy()
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 't'") == "0"
