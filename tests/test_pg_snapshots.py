"""Snapshots of a PostgreSQL shard (SPEC §12): written by a follower, never by the leader while it runs;
they agree with the records (verify --dsn checks that), and a node started later begins from one."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid

import psycopg

from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient
from etf_engine.config import JournalConfig
from tests.pg_cluster import PgCluster
from tests.pg_cluster import pg_cluster as pg_cluster  # the fixture
from tests.test_crash import ENV
from tests.test_service import FUND, TOKENS, Clock, config, load_sample, make_ledger


def snapshot_seq(cluster: PgCluster, shard: str) -> int | None:
    with psycopg.connect(cluster.dsn) as db:
        row = db.execute("SELECT seq FROM etf_snapshots WHERE shard = %s", (shard,)).fetchone()
    return None if row is None else row[0]


def verify(cluster: PgCluster, shard: str) -> str:
    result = subprocess.run([sys.executable, "-m", "etf_engine.cli", "verify", "--dsn", cluster.dsn, "--shard", shard],
                            env=ENV, text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def test_a_follower_snapshots_the_shard_and_a_later_node_starts_from_it(pg_cluster: PgCluster) -> None:
    journal = JournalConfig(backend="postgresql", dsn=pg_cluster.dsn, shard=f"snap-{uuid.uuid4().hex[:10]}",
                            node_name="snap-leader", lease_seconds=2)
    leader = BackgroundServer(config(journal=journal), ledger=make_ledger(), clock=Clock(), checkpoint_every=5).start()
    try:
        with EtfClient(leader.target, TOKENS["issuer"]) as issuer:
            load_sample(issuer)
        assert snapshot_seq(pg_cluster, journal.shard) is None  # the leader does not snapshot, whatever its interval
        follower = BackgroundServer(config(journal=dataclasses.replace(journal, node_name="snap-follower")),
                                    ledger=make_ledger(), clock=Clock(), checkpoint_every=5).start()
        try:
            with EtfClient(leader.target, TOKENS["ap1"]) as dealer:
                for i in range(6):
                    dealer.submit_order(FUND, "CREATE", 1, f"snap-{i}")
            deadline = time.monotonic() + 10
            while (snapshot_seq(pg_cluster, journal.shard) or 0) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            taken = snapshot_seq(pg_cluster, journal.shard)
            assert taken is not None and taken >= 5
            digest = verify(pg_cluster, journal.shard)  # every record, and the snapshot against them
            with EtfClient(leader.target, TOKENS["issuer"]) as issuer:
                nav = issuer.get_nav(FUND)
        finally:
            follower.stop()
    finally:
        leader.stop()
    # A node started now restores the snapshot (the leader's own, written at its clean stop) and goes on.
    assert snapshot_seq(pg_cluster, journal.shard) >= taken
    again = BackgroundServer(config(journal=journal), ledger=make_ledger(), clock=Clock()).start()
    try:
        with EtfClient(again.target, TOKENS["issuer"]) as issuer:
            assert issuer.get_nav(FUND) == nav
        with EtfClient(again.target, TOKENS["ap1"]) as dealer:
            assert dealer.submit_order(FUND, "CREATE", 1, "snap-after").order_id == "ORD-00000007"
    finally:
        again.stop()
    assert verify(pg_cluster, journal.shard) != digest  # one order more
