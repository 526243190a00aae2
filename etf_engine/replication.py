"""Leader and followers of a PostgreSQL journal shard (SPEC §12).

At start a node takes the shard's lease if it is free, expired or already its own, and leads;
otherwise it follows. The leader renews its lease (every third of ``lease_seconds``; every append
renews it too) and checks every 10 s that PostgreSQL has a synchronous standby; every node, leader or
follower, checks once at start and warns when there is none. A follower polls the
journal every ``POLL_SECONDS`` (hot standbys refuse LISTEN, and NOTIFY takes a global lock at commit)
and applies what the leader committed, and it watches the lease: once it has expired, it takes it
(epoch + 1), applies the journal to the end the lease records, and leads. The old leader's next
append or renewal finds the new epoch and fails (``Deposed``): that node stops.

The leader also runs the shard's history writer (checkpoint.py ``--shard``), a process of its own at
the lowest CPU priority, that keeps the history states of reads as of a time (journal/history.py);
every node reads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from etf_engine.checkpoint import CheckpointProcess
from etf_engine.engine import FOLLOWER, LEADER, Engine
from etf_engine.journal import JournalError, collector_paused
from etf_engine.journal.postgres import Deposed, PgJournal

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # a follower applies a commit within this (plus the query) under light load
STANDBY_CHECK_SECONDS = 10.0
SNAPSHOT_EVERY = 100_000  # records between a follower's snapshots


class ShardRole:
    """Runs a node's part in a shard: ``await start()`` before the engine replays, then ``run()``."""

    def __init__(self, engine: Engine, journal: PgJournal, *, on_change: Callable[[], None],
                 snapshot_every: int = SNAPSHOT_EVERY, history_every: int | None = None) -> None:
        self.engine, self.journal = engine, journal
        self._on_change = on_change
        self._snapshot_every = snapshot_every
        self._history_every = history_every  # None: history.HISTORY_EVERY
        self._history: CheckpointProcess | None = None  # the leader's history writer
        self._snapshot_seq = 0
        self.sync_standbys = -1  # as last seen
        self.epoch = 0  # the lease's, as last seen
        self._next_standby_check = 0.0
        self._applied = 0  # a follower's last record applied to the ledger (the journal reads ahead of it)
        self._task: asyncio.Task[None] | None = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """On the journal's own thread: its connection serves one statement at a time anyway."""
        return await self.journal.in_writer(fn, *args)

    async def start(self) -> None:
        """Lead if the lease can be had, else follow; before the replay, so a leader's lease is renewed
        while it replays."""
        if await self._run(self.journal.take_lease):
            self.engine.role, self.engine.leader = LEADER, self.engine.node_name
            self.epoch = self.journal.epoch
            await self._check_standbys(at_start=True)  # every node at start, whatever its role (SPEC §12)
            self._task = asyncio.get_running_loop().create_task(self._lead(), name="etf-engine-lease")
            self._write_history()
        else:
            lease = await self._run(self.journal.lease)
            self.engine.role, self.engine.leader = FOLLOWER, lease.leader if lease else ""
            self.epoch = lease.epoch if lease else 0
            log.warning("%s: %s follows %s", self.journal.name, self.engine.node_name, self.engine.leader)
            await self._check_standbys(at_start=True)

    def run(self) -> None:
        """After the replay: a leader checks it has every record the lease counts; a follower follows."""
        if self.engine.role == LEADER:
            self._check_end()
        if self.engine.role == FOLLOWER:
            self._snapshot_seq = self._applied = self.journal.last_seq
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="etf-engine-follow")

    @property
    def applied_seq(self) -> int:
        """The last record whose effect reads show."""
        return self.journal.last_seq if self.engine.role == LEADER else self._applied

    def _apply(self, events: list) -> None:
        """Records a poll read (it ran to their end, and no other poll runs meanwhile) into the ledger."""
        self.engine.apply_followed(events)
        self._applied = self.journal.last_seq

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._history is not None:
            await asyncio.to_thread(self._history.stop)

    def _write_history(self) -> None:
        """The leader's: start the shard's history writer (it exits by itself if this process dies)."""
        self._history = CheckpointProcess(dsn=self.journal.dsn, shard=self.journal.shard,
                                          history_every=self._history_every)

    async def _check_standbys(self, at_start: bool = False) -> None:
        """Every STANDBY_CHECK_SECONDS: how many synchronous standbys the primary has (GetLeader shows it).
        Without one, the leader warns at every check, and every node once at start."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_standby_check and not at_start:
            return
        self._next_standby_check = loop.time() + STANDBY_CHECK_SECONDS
        count = await self._run(self.journal.sync_standbys)
        self.sync_standbys = -1 if count is None else count
        if count == 0 and (at_start or self.engine.role == LEADER):
            log.warning("%s: PostgreSQL has no synchronous standby connected: commits are on one machine only "
                        "(or wait, if synchronous_standby_names is set)", self.journal.name)

    async def _lead(self) -> None:
        try:
            while True:
                try:
                    await self.journal.renew()
                    await self._check_standbys()
                except Deposed:
                    raise
                except JournalError as error:  # the database is away (a failover): the epoch still fences
                    log.warning("%s: cannot renew the lease, retrying: %s", self.journal.name, error)
                    await asyncio.sleep(0.5)
                    continue
                await asyncio.sleep(self.journal.lease_seconds / 3)
        except Deposed as error:  # another node leads: stop writing now
            self.engine.halt(str(error))

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        next_lease_check = 0.0
        while True:
            try:
                self._apply(await self._run(self.journal.poll))
                if self.journal.last_seq - self._snapshot_seq >= self._snapshot_every:
                    await self._snapshot()
                if loop.time() >= next_lease_check:
                    next_lease_check = loop.time() + min(0.2, self.journal.lease_seconds / 10)
                    await self._check_standbys()
                    lease = await self._run(self.journal.lease)
                    if lease is not None:
                        self.epoch = lease.epoch
                    if lease is not None and lease.leader != self.engine.leader:
                        self.engine.leader = lease.leader
                        self._on_change()
                    if (lease is None or lease.expired) and await self._run(self.journal.take_lease):
                        break
            except JournalError as error:  # the database is away (a failover): keep trying
                log.warning("%s: following paused: %s", self.journal.name, error)
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(POLL_SECONDS)
        try:
            await self._take_over()
        except JournalError as error:  # holding the lease, it cannot catch up: write nothing
            self.engine.halt(str(error))

    def _check_end(self) -> None:
        if self.journal.last_seq != self.journal.lease_seq:
            raise JournalError(f"{self.journal.name} is damaged: the lease counts {self.journal.lease_seq} records "
                               f"but the journal holds {self.journal.last_seq}")

    async def _take_over(self) -> None:
        """Holding the lease: apply every record up to where the lease says the journal ends, then lead."""
        while True:
            events = await self._run(self.journal.poll)
            if not events:
                break
            self._apply(events)
        self._check_end()
        log.warning("%s: %s took over with epoch %d at record %d", self.journal.name, self.engine.node_name,
                    self.journal.epoch, self.journal.last_seq)
        self.engine.lead()
        self.epoch = self.journal.epoch
        self._task = asyncio.get_running_loop().create_task(self._lead(), name="etf-engine-lease")
        self._write_history()
        self._on_change()

    async def _snapshot(self) -> None:
        with collector_paused():
            state = self.engine.ledger.state(self.journal.last_at)
        await self._run(self.journal.write_snapshot, state)
        self._snapshot_seq = self.journal.last_seq
        log.info("%s: snapshot at record %d", self.journal.name, self._snapshot_seq)
