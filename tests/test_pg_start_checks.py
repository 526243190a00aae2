"""SPEC §12 at start: every node of a PostgreSQL shard, leader or follower, checks that the database has
a synchronous standby and warns when it has none (issue 19: a follower started without one said
nothing). Real ``etf-engine serve`` processes on the test cluster (tests/pg_cluster.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etf_engine.v1 import engine_pb2 as pb
from tests.pg_cluster import PgCluster
from tests.pg_cluster import pg_cluster as pg_cluster  # the session fixture
from tests.pg_nodes import Node

WARNING = "PostgreSQL has no synchronous standby connected"


@pytest.fixture
def pg(pg_cluster: PgCluster) -> PgCluster:
    pg_cluster.reset()
    return pg_cluster


@pytest.fixture
def nodes(tmp_path: Path, pg: PgCluster) -> Iterator[list[Node]]:
    made: list[Node] = []
    yield made
    for node in made:
        node.close()


def start(nodes: list[Node], tmp_path: Path, pg: PgCluster, shard: str, name: str) -> Node:
    node = Node(tmp_path, f"{shard}-{name}", pg.dsn, shard, lease_seconds=2)
    nodes.append(node)
    return node.start()


def warned(node: Node) -> bool:
    return any(WARNING in line for line in node.lines)


def test_every_node_warns_at_start_without_a_synchronous_standby(tmp_path: Path, pg: PgCluster,
                                                                  nodes: list[Node]) -> None:
    # With the standby: neither the leader nor a follower warns.
    leader, follower = (start(nodes, tmp_path, pg, "with_standby", n) for n in ("a", "b"))
    assert [leader.leader_info().role, follower.leader_info().role] == [pb.Role.LEADER, pb.Role.FOLLOWER]
    assert leader.leader_info().sync_standbys == 1
    assert not warned(leader) and not warned(follower), leader.log() + follower.log()
    for node in nodes:
        node.close()

    # The primary lost and the standby promoted: a database that commits alone.
    pg.kill_primary()
    pg.promote_standby()
    leader, follower = (start(nodes, tmp_path, pg, "alone", n) for n in ("a", "b"))
    assert [leader.leader_info().role, follower.leader_info().role] == [pb.Role.LEADER, pb.Role.FOLLOWER]
    assert warned(leader), leader.log()
    assert warned(follower), follower.log()  # before issue 19 only the leader said so
    assert follower.leader_info().sync_standbys == 0
