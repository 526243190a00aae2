"""The single writer: every operation runs on the event loop's one thread, in call order; replies
wait for the journal.

A handler hands the engine an operation (``execute``: a command for ``Ledger.execute``; ``read``: a
read function; ``advance_clock``: the test clock's step). It runs at once, inside the handler's own
step: the loop is one thread, so operations never overlap and the ledger needs no lock, and no hop to
a writer task is paid per call. Its events, stamped with the acting principal (the audit trail), join
the unjournaled ones; one committer task appends everything unjournaled to the journal in ONE call
(group commit: every command that ran while the previous fsync was under way shares the next one,
and, while the loop keeps having handlers ready to run, those that run in the next GATHER_SECONDS)
and then releases each caller whose reply depends only on durable events. A read or refusal that
saw nothing unjournaled replies at once; otherwise it waits for the commit that covers what it saw,
so that no reply ever shows state a crash could lose. Under light load (a lone small commit after
another, nothing else ready to run, a journal that can commit inline) the commit is made right there
on the loop's thread: handing it to the journal's thread and back would cost more latency than
holding the loop for one fsync. benchmarks/RESULTS.md has the figures against the writer task this replaced.

The engine halts for good when memory may be ahead of disk or another node leads: the journal
failed, a command raised an unexpected error (it may have changed memory part-way), or ``halt`` was
called (a deposed leader); every unreleased and later call gets UNAVAILABLE.

``ledger_as_of`` answers reads as of a time (SPEC §21) from the journal's history states and records
(journal/history.py), on a thread of its own, never from the ledger itself.

``start`` rebuilds the ledger from the journal (the latest snapshot, then the records after it) on a
thread of its own; ``stop`` lets the commits under way finish, writes a snapshot if records came
after the last one, and logs the state digest. A follower (SPEC §12) refuses writes, applies the
leader's records (``apply_followed``) and becomes the leader by ``lead``. ``records`` reads committed
records back for StreamEvents.

Beside the ledger's protocol the engine keeps, derived from events so that replay rebuilds them the
same way: each asset's ``decimals`` (to format quantities), the test clock's offset (SPEC §13), and
a change feed per fund for StreamNav, plus one bumped by every commit for StreamEvents.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import msgspec

from etf_engine import model as M
from etf_engine.errors import FAILED_PRECONDITION, EngineError, invalid
from etf_engine.journal import JournalError, collector_paused, recover, state_digest
from etf_engine.journal.history import AsOfReader, LedgerAsOf
from etf_engine.journal.records import StoredRecord, stored_record
from etf_engine.journal.trail import AuditTrail
from etf_engine.ledger import Ledger
from etf_engine.snapshot import LedgerState

log = logging.getLogger(__name__)

T = TypeVar("T")
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
LEADER, FOLLOWER = "LEADER", "FOLLOWER"
# A commit waits at most this long for the handlers the loop is about to run, and only while there are
# some: an idle loop commits at once. Under load every commit costs CPU on the same cores as the calls
# (the fsync in the kernel, the thread's hand-over), so fewer and larger commits serve more calls: at
# 64 clients 6-12 ms made commits of ~10 records instead of ~4 and SubmitOrder 10-20% faster than 1 ms
# did, 4 ms not (benchmarks/RESULTS.md, issue 23).
GATHER_SECONDS = 0.008
INLINE_COMMIT_MAX = 1  # events a commit may hold and still be made on the loop's thread (see _inline_commit)

# An operation runs on the loop's thread: (ledger, now_ms) -> (result, events it produced).
Operation = Callable[[Ledger, int], tuple[Any, list[M.Event]]]


# The name of the principal whose call is being served (the API's interceptor sets it): every event an
# operation produces is journaled with it, the audit trail of SPEC §14-15. "" for the engine's own work.
acting_principal: contextvars.ContextVar[str] = contextvars.ContextVar("etf_engine_acting", default="")
ANY_RECORD = ""  # the ChangeFeed key bumped by every commit (no fund has an empty id): StreamEvents waits on it


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Journal(Protocol):
    """Where events become durable. ``append`` returns only once the events are on stable storage."""

    last_at: int  # ``at`` of the last event appended or replayed
    since_snapshot: int  # events appended since the last snapshot

    async def append(self, events: list[M.Event]) -> None: ...

    def write_snapshot(self, state: LedgerState) -> None: ...

    def load_snapshot(self) -> Any:
        """The latest snapshot (``.seq``, ``.state``) or None."""

    def replay(self, after: int = 0) -> Iterable[M.Event]: ...

    def close(self) -> None: ...


class NullJournal:
    """Keeps nothing: state lives only as long as the process (tests that need no disk)."""

    last_at = 0
    since_snapshot = 0  # never due: there is nowhere to write one

    async def append(self, events: list[M.Event]) -> None:
        if events:
            self.last_at = events[-1].at

    def write_snapshot(self, state: LedgerState) -> None:
        return None

    def load_snapshot(self) -> None:
        return None

    def replay(self, after: int = 0) -> Iterable[M.Event]:
        return ()

    def close(self) -> None:
        return None


class ChangeFeed:
    """Per-fund version counters that StreamNav watches.

    The writer only increments a counter and sets an asyncio.Event, so a slow or stuck stream can
    never hold it up; each stream fetches the latest NAV itself when it wakes, which coalesces any
    number of changes into one update.
    """

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._signals: dict[str, asyncio.Event] = {}
        self._closed = asyncio.Event()

    def version(self, fund_id: str) -> int:
        return self._versions.get(fund_id, 0)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def bump(self, fund_ids: Iterable[str]) -> None:
        for fund_id in fund_ids:
            self._versions[fund_id] = self._versions.get(fund_id, 0) + 1
            signal = self._signals.pop(fund_id, None)
            if signal is not None:
                signal.set()

    def close(self) -> None:
        """Wake every waiter for good (shutdown): streams see ``closed`` and end."""
        self._closed.set()
        for signal in self._signals.values():
            signal.set()
        self._signals.clear()

    async def sleep(self, seconds: float) -> None:
        """Sleep, cut short by ``close``."""
        try:
            await asyncio.wait_for(self._closed.wait(), max(seconds, 0.0))
        except TimeoutError:
            pass

    async def wait(self, fund_id: str, seen: int, timeout: float) -> int:
        """Wait until the fund's version differs from ``seen``, the timeout passes or the feed closes;
        returns the version then."""
        if self._versions.get(fund_id, 0) != seen or self._closed.is_set():
            return self.version(fund_id)
        signal = self._signals.get(fund_id)
        if signal is None:
            signal = self._signals[fund_id] = asyncio.Event()
        try:
            await asyncio.wait_for(signal.wait(), max(timeout, 0.0))
        except TimeoutError:
            pass
        return self.version(fund_id)


class _Index:
    """What the API needs that the ledger protocol does not give cheaply, derived from events."""

    def __init__(self) -> None:
        self.decimals: dict[str, int] = {}
        self._funds_by_price: dict[tuple[str, str], set[str]] = {}  # (asset, currency) -> funds
        self._open_orders: dict[str, str] = {}  # accepted order_id -> fund_id, until settled/cancelled
        self.clock_offset = 0  # ms the engine's clock runs ahead of the wall clock (the last ClockAdvanced)

    def load(self, state: LedgerState) -> None:
        """Start from a snapshot's state instead of the events before it."""
        self.decimals.update({a.symbol: a.decimals for a in state.assets})
        for fund in state.funds:
            terms = fund.terms
            for a in terms.assets:
                self._funds_by_price.setdefault((a.asset, terms.base_currency), set()).add(terms.fund_id)
        self._open_orders.update({o.order_id: o.fund_id for o in state.orders if o.status == M.ACCEPTED})

    def observe(self, event: M.Event, changed: set[str]) -> None:
        """Record ``event``; add the funds whose NAV it may change to ``changed``."""
        # The most frequent first (every order, every tick): this runs for every event.
        if isinstance(event, M.OrderRecorded):
            # Recording moves nothing the NAV shows (a reservation keeps totals); settling does.
            if event.order.status == M.ACCEPTED:
                self._open_orders[event.order.order_id] = event.order.fund_id
        elif isinstance(event, M.PriceSet):
            changed.update(self._funds_by_price.get((event.asset, event.currency), ()))
        elif isinstance(event, M.AssetRegistered):
            self.decimals[event.symbol] = event.decimals
        elif isinstance(event, M.FundCreated | M.FundUpdated):
            terms = event.terms
            for a in terms.assets:
                self._funds_by_price.setdefault((a.asset, terms.base_currency), set()).add(terms.fund_id)
            changed.add(terms.fund_id)
        elif isinstance(event, M.OrderSettled):
            fund_id = self._open_orders.pop(event.order_id, None)
            if fund_id is not None:
                changed.add(fund_id)
        elif isinstance(event, M.OrderCancelled):
            self._open_orders.pop(event.order_id, None)
        elif isinstance(event, M.ClockAdvanced):
            self.clock_offset = event.offset_ms
        elif isinstance(event, M.NavStruck):  # the fee it accrues (SPEC §17) is in the NAV from then on
            changed.add(event.nav.fund_id)
        else:
            fund_id = getattr(event, "fund_id", None)
            if fund_id is not None:
                changed.add(fund_id)


class Engine:
    """The ledger, its journal and the order of everything. Create, ``await start()``, use, ``await stop()``."""

    def __init__(self, ledger: Ledger, journal: Journal | None = None, *,
                 clock: Callable[[], int] = wall_clock_ms, role: str = LEADER, node_name: str = "",
                 test_clock: bool = False) -> None:
        self.ledger = ledger
        # A follower (SPEC §12) serves reads from the records it has applied and refuses every write,
        # naming ``leader``; it becomes the leader by ``lead()``.
        self.role = role
        self.node_name = node_name
        self.leader = node_name if role == LEADER else ""
        self.journal: Journal = journal if journal is not None else NullJournal()
        self.clock = clock
        # SPEC §13: with the config's test_clock, AdvanceClock's journaled offset runs the engine's clock
        # ahead of ``clock``; without it, offsets in the journal are ignored (the floor below still holds).
        self.test_clock = test_clock
        self._last_now = 0
        self.feed = ChangeFeed()
        self._index = _Index()
        self._unjournaled: list[M.Event] = []  # produced, not yet handed to the journal
        self._changed: set[str] = set()  # funds whose NAV the unjournaled events may change
        self._executed = 0  # events produced since start
        self._durable = 0  # of those, events on stable storage
        self._waiters: deque[tuple[int, asyncio.Future[Any], Any, EngineError | None]] = deque()
        self._committer: asyncio.Task[None] | None = None
        # Records in the last commit: after one of many (load), a lone record too goes to the journal's
        # thread and gathers company there, rather than holding the loop for an fsync of its own.
        self._last_commit = 0
        self._followed_seq = 0  # a follower's last record applied
        # ``at`` of the latest record: journaled, replayed, followed, or produced and still in the group
        # commit (records never go back in time); RecordStatement asks whether one came after its as_of.
        self.last_record_at = 0
        self._as_of: AsOfReader | None = None  # made at the first read as of a time
        # SPEC §21: the journal's Merkle tree and checkpoints, when the server gave the journal one
        self.trail: AuditTrail | None = getattr(self.journal, "trail", None)
        self._as_of_lock = threading.Lock()
        self._accepting = False
        self._started = False
        self._failure: str | None = None
        self.on_halt: list[Callable[[str], None]] = []  # told once, with the reason, when the engine stops itself
        # Metrics (SPEC §15): told of every event a command produced, and of every journal commit's
        # duration and size. They must be cheap: they run on the engine's path.
        self.on_events: list[Callable[[list[M.Event]], None]] = []
        self.on_commit: list[Callable[[float, int], None]] = []

    @property
    def decimals(self) -> dict[str, int]:
        """Asset symbol -> decimals of every registered asset (grows only; safe to read from handlers)."""
        return self._index.decimals

    def now_ms(self) -> int:
        """The engine's time now, as the next operation would see it (GetLeader shows it)."""
        return max(self.clock() + self.clock_offset, self._last_now)

    @property
    def clock_offset(self) -> int:
        """Milliseconds the engine's clock runs ahead of ``clock``: the last AdvanceClock's, with test_clock."""
        return self._index.clock_offset if self.test_clock else 0

    @property
    def failure(self) -> str | None:
        """Why the engine stopped on its own (journal failure, internal error), or None."""
        return self._failure

    async def start(self) -> None:
        """Rebuild the ledger from the journal (latest snapshot, then the records after it), on a thread
        of its own so that the loop answers meanwhile (health says NOT_SERVING, calls get UNAVAILABLE)."""
        ignored: set[str] = set()

        def snapshot_loaded(state: LedgerState) -> None:
            self._index.load(state)
            if self.test_clock:
                # A snapshot holds the ledger's state, not the clock (ledgers ignore ClockAdvanced): the last
                # offset may be in a record under it. Read them for it, with test_clock only; the records
                # after the snapshot are then replayed as usual (and may hold a later offset).
                self._index.clock_offset = last_clock_offset(self.journal.replay(after=0))

        self.ledger = await asyncio.to_thread(
            recover, self.journal, self.ledger, on_snapshot=snapshot_loaded,
            on_event=lambda event: self._index.observe(event, ignored))
        if self.trail is not None:  # every record once, so that the first checkpoint costs no rebuild
            await asyncio.to_thread(self.trail.catch_up, self.journal.stored_records, self.journal.last_seq)
        self._last_now = self.last_record_at = self.journal.last_at
        self._followed_seq = getattr(self.journal, "last_seq", 0)
        log.info("state digest at start: %s", self.digest())
        self._accepting = self._started = True

    async def stop(self) -> None:
        """Refuse new work, let every commit under way finish (its callers get their replies), close."""
        self._accepting = False
        if not self._started:  # the replay failed or never ran: there is no state to snapshot or show
            self.feed.close()
            self.journal.close()
            return
        while self._committer is not None:
            await asyncio.shield(self._committer)
        self.feed.close()
        if self._as_of is not None:
            await asyncio.to_thread(self._as_of.close)  # after the read under way, if any
        with collector_paused():
            # As of the last journaled event, as the snapshot is labelled (and as the checkpointer and
            # `etf-engine verify` build it): one state serves the snapshot and the digest.
            state = self.ledger.state(self.journal.last_at)
            if self._failure is None and self.journal.since_snapshot:
                self.journal.write_snapshot(state)  # a clean stop restarts fast
            log.info("state digest at stop: %s", state_digest(state))
        self.journal.close()

    def digest(self) -> str:
        """SHA-256 of the canonical state as of the last journaled time (``etf-engine verify`` prints the same)."""
        with collector_paused():
            return state_digest(self.ledger.state(self.journal.last_at))

    # ------------------------------------------------------------------ operations
    def submit(self, operation: Operation, *, writes: bool = True) -> asyncio.Future[Any]:
        """Run ``operation`` now, on the event loop's thread (so operations never overlap and run in
        the order their handlers call this); the future holds its result or refusal once every event
        it could have seen is durable. ``writes=False`` promises it changes nothing (a read)."""
        if not self._accepting:
            raise EngineError(UNAVAILABLE, self._failure or ("the engine is stopping" if self._started else
                                                             "the engine is starting: replaying the journal"))
        if writes and self.role != LEADER:
            raise EngineError(UNAVAILABLE, f"this node ({self.node_name}) is a follower: send writes to the leader, "
                                           f"{self.leader or 'not known yet'}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        now_ms = self._tick()
        result: Any = None
        error: EngineError | None = None
        try:
            result, produced = operation(self.ledger, now_ms)
        except EngineError as e:  # a refusal: it may reveal unjournaled state, so it waits like a result
            error, produced = e, ()
        except Exception as e:  # a bug, not a refusal: ledgers refuse only with EngineError
            log.exception("operation failed unexpectedly")
            if writes:
                # A command may have changed memory part-way without producing its events: memory and
                # journal may now differ, so stop (nothing unjournaled is acknowledged; a restart replays
                # the journal) rather than serve unjournaled state.
                self._halt(f"internal error in a command ({type(e).__name__}); the engine has stopped")
                future.set_exception(EngineError(UNAVAILABLE, self._failure or ""))
                return future
            future.set_exception(_internal(e))
            return future
        if produced:
            if self.trail is not None and M.NavStruck in map(type, produced):
                produced = [*produced, M.CheckpointRecorded(at=now_ms)]  # SPEC §21: at every strike
            principal = acting_principal.get()
            if principal:
                produced = [msgspec.structs.replace(event, principal=principal) for event in produced]
            for event in produced:
                self._index.observe(event, self._changed)
            self.last_record_at = produced[-1].at
            for observe in self.on_events:
                observe(produced)
            self._unjournaled.extend(produced)
            self._executed += len(produced)
            if self._committer is None:
                loop = asyncio.get_running_loop()
                if self._inline_commit(loop):
                    self._commit_now()
                    if self._failure is not None:
                        future.set_exception(EngineError(UNAVAILABLE, self._failure))
                        return future
                else:
                    self._committer = loop.create_task(self._commit(), name="etf-engine-commit")
        if self._durable >= self._executed:  # it saw nothing that is not on disk: reply at once
            _resolve(future, result, error)
        else:
            self._waiters.append((self._executed, future, result, error))
        return future

    async def execute(self, command: Any) -> Any:
        """Run a state-changing command; its result once its events are durable."""
        return await self.submit(lambda ledger, now_ms: ledger.execute(command, now_ms))

    async def advance_clock(self, to_ms: int) -> int:
        """Diagnostics.AdvanceClock (only with ``test_clock = true``): from now on the engine's clock reads
        ``to_ms`` plus the wall time since. Journaled, so a restart keeps the offset; never backwards."""

        if not self.test_clock:
            raise EngineError(FAILED_PRECONDITION, "test_clock is off in this server's config: the engine's clock "
                                                   "follows the wall clock")

        def advance(ledger: Ledger, now_ms: int) -> tuple[int, list[M.Event]]:
            if to_ms <= now_ms:
                raise invalid("to_unix_ms", f"{to_ms} is not after the engine's time {now_ms}: the clock never "
                                            "goes back")
            return to_ms, [M.ClockAdvanced(at=to_ms, offset_ms=to_ms - self.clock())]

        result = await self.submit(advance)
        self._last_now = max(self._last_now, result)
        return result

    async def read(self, fn: Callable[[Ledger, int], T]) -> T:
        """Run a read, in order with the commands; released once what it saw is durable. When everything it
        can see already is, it runs and returns at once, without a future to make and wait for (about 6%
        of CheckOrder's instructions, benchmarks/RESULTS.md)."""
        if self._accepting and self._durable >= self._executed:
            try:
                return fn(self.ledger, self._tick())
            except EngineError:
                raise
            except Exception as e:  # a bug, not a refusal: as ``submit`` answers it
                log.exception("operation failed unexpectedly")
                raise _internal(e) from None
        return await self.submit(lambda ledger, now_ms: (fn(ledger, now_ms), []), writes=False)

    def _tick(self) -> int:
        """Now, for an operation: time never runs backwards inside; a test clock (AdvanceClock) runs ahead by
        a journaled offset."""
        now_ms = self._last_now = max(self.clock() + self.clock_offset, self._last_now)
        return now_ms

    async def ledger_as_of(self, as_of_ms: int) -> LedgerAsOf:
        """The ledger right after the last journaled record at or before ``as_of_ms`` (unix ms), read at
        ``as_of_ms`` (SPEC §21): every figure derived from time is computed then. Built on a worker thread
        from the nearest history state and the records after it (journal/history.py), never from the
        ledger, which may hold what is not durable yet. Only records this node has applied and that are
        durable count: a follower's state as of now is the state it serves now. (A read as of the engine's
        very millisecond races the records of that millisecond still to come: time is read, not frozen.)

        INVALID_ARGUMENT naming ``as_of`` when it is negative or after the engine's time (there is no
        state of the future yet); an engine without a journal: FAILED_PRECONDITION; a journal it cannot
        read: UNAVAILABLE."""
        if as_of_ms < 0:
            raise invalid("as_of", f"{as_of_ms} is negative: times are unix milliseconds")

        def check(ledger: Ledger, now_ms: int) -> None:
            if as_of_ms > now_ms:
                raise invalid("as_of", f"{as_of_ms} is after the engine's time {now_ms}: there is no state of the "
                                       "future yet")

        await self.read(check)  # released once every record it could have seen is durable
        upto = self.applied_seq()
        reader = self._as_of
        try:
            if reader is None:
                reader = await asyncio.to_thread(self.history_reader)
            return await asyncio.to_thread(reader.ledger_as_of, as_of_ms, upto)
        except JournalError as e:
            raise EngineError(UNAVAILABLE, f"cannot read the journal as of {as_of_ms}: {e}") from e

    def history_reader(self) -> AsOfReader:
        """The reader of the journal's history (made at the first use; a blocking call: on a worker thread).
        FAILED_PRECONDITION for an engine without a journal."""
        history = getattr(self.journal, "history", None)
        if history is None:
            raise EngineError(FAILED_PRECONDITION, "this engine keeps no journal: there is no state of the past")
        with self._as_of_lock:  # two first reads at once make one
            if self._as_of is None:
                self._as_of = AsOfReader(history(), type(self.ledger))
            return self._as_of

    # ------------------------------------------------------------------ the audit trail (SPEC §21)
    def _trail(self) -> AuditTrail:
        if self.trail is None:
            raise EngineError(FAILED_PRECONDITION, "this engine keeps no journal: there is no audit trail")
        return self.trail

    async def checkpoint(self) -> M.CheckpointRecorded:
        """Journal a checkpoint now; once it is durable, the latest checkpoint (this one, or one the
        journal sealed after it): it covers at least every record before the call."""
        trail = self._trail()
        await self.submit(lambda ledger, now_ms: (None, [M.CheckpointRecorded(at=now_ms)]))
        return trail.checkpoint(0, self.applied_seq())

    def applied_seq(self) -> int:
        """The last record this node has applied and knows durable (a leader's commit under way is not; a
        follower's journal may have read further than it applied)."""
        committed = getattr(self.journal, "last_seq", 0)
        return committed if self.role == LEADER else min(committed, self._followed_seq)

    async def audit(self, read: Callable[[AuditTrail, int], T]) -> T:
        """``read(trail, upto)`` on a worker thread, once the tree covers every record this node has applied
        (``upto``; a follower's tree grows from storage here)."""
        trail, upto = self._trail(), self.applied_seq()

        def run() -> T:
            trail.catch_up(self.journal.stored_records, upto)  # type: ignore[attr-defined]
            return read(trail, upto)

        return await asyncio.to_thread(run)

    async def records(self, after: int, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` committed records after seq ``after``, each checked, read on a worker thread
        from the journal's own read connection (StreamEvents)."""
        read = getattr(self.journal, "stored_records", None)
        if read is None:
            raise EngineError(FAILED_PRECONDITION, "this engine keeps no journal: there are no records to stream")
        rows = await asyncio.to_thread(read, after, limit)
        return [stored_record(self.journal.name, after + 1 + i, *row) for i, row in enumerate(rows)]

    # ------------------------------------------------------------------ following
    def apply_followed(self, events: list[M.Event]) -> None:
        """A follower's step: records the leader committed, applied in order (on the loop's thread,
        between operations, like everything else that touches the ledger)."""
        changed: set[str] = set()
        for event in events:
            self.ledger.apply(event)
            self._index.observe(event, changed)
        self._followed_seq += len(events)
        if events:
            self._last_now = max(self._last_now, events[-1].at)
            self.last_record_at = events[-1].at
            self.feed.bump((*changed, ANY_RECORD))

    def lead(self) -> None:
        """This follower holds the lease now and has applied the journal to its end: accept writes."""
        self.role = LEADER
        self.leader = self.node_name

    # ------------------------------------------------------------------ group commit
    async def _commit(self) -> None:
        """Journal everything produced so far in one append (one fsync), release the callers it makes
        durable, and repeat while operations produced more meanwhile (group commit)."""
        try:
            while self._unjournaled and self._failure is None:
                await self._gather()
                if self._inline_commit(asyncio.get_running_loop()):
                    self._commit_now()
                    continue
                events, changed, upto = self._take()
                started = time.perf_counter()
                try:
                    await self.journal.append(events)
                except Exception as e:
                    self._journal_failed(e)
                    return
                self._observe_commit(started, len(events))
                self._committed(changed, upto)
        finally:
            self._committer = None

    def _inline_commit(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether to commit on the loop's own thread: yes when the commit is small, the last one was too,
        and nothing else is ready to run (light load), where handing it to the journal's thread and back
        would cost more latency than holding the loop for one fsync; under load the loop keeps serving
        meanwhile. (Under load the loop has nothing ready now and then: a lone record committed inline
        then cost an fsync of its own: at 64 clients a quarter to a half of the commits held one record.)"""
        return (len(self._unjournaled) <= INLINE_COMMIT_MAX and self._last_commit <= INLINE_COMMIT_MAX
                and getattr(self.journal, "inline_commits", False) and not getattr(loop, "_ready", True))

    def _commit_now(self) -> None:
        events, changed, upto = self._take()
        started = time.perf_counter()
        try:
            self.journal.append_sync(events)  # type: ignore[attr-defined]  # see _inline_commit
        except Exception as e:
            self._journal_failed(e)
            return
        self._observe_commit(started, len(events))
        self._committed(changed, upto)

    def _observe_commit(self, started: float, events: int) -> None:
        seconds = time.perf_counter() - started
        for observe in self.on_commit:
            observe(seconds, events)

    def _take(self) -> tuple[list[M.Event], set[str], int]:
        events, self._unjournaled = self._unjournaled, []
        self._last_commit = len(events)
        changed, self._changed = self._changed, set()
        return events, changed, self._executed

    def _committed(self, changed: set[str], upto: int) -> None:
        self._durable = upto
        self.feed.bump((*changed, ANY_RECORD))
        waiters = self._waiters
        while waiters and waiters[0][0] <= upto:
            _, future, result, error = waiters.popleft()
            _resolve(future, result, error)

    def _journal_failed(self, error: Exception) -> None:
        cause = str(error) if isinstance(error, JournalError) else f"{type(error).__name__}: {error}"
        log.error("journal append failed; the engine stops: %s", cause, exc_info=error)
        self._halt(f"the journal failed ({cause}); the engine has stopped")

    async def _gather(self) -> None:
        """Let the handlers the loop is about to run add their events to this commit first. A callback
        looks at each turn of the loop whether anything is still ready, rather than a step of the
        committer's task: a busy loop turns about five times per order, and a look is cheaper (a turn of
        an otherwise idle loop: 3.1 µs with it, 3.75 with a task's ``sleep(0)``)."""
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        if not ready:
            return
        deadline = loop.time() + GATHER_SECONDS
        gathered = loop.create_future()

        def look() -> None:
            if ready and loop.time() < deadline:
                loop.call_soon(look)
            elif not gathered.done():  # (cancelled if the loop is being shut down)
                gathered.set_result(None)

        loop.call_soon(look)
        await gathered

    def halt(self, reason: str) -> None:
        """Stop for good from outside a commit (a deposed leader): as a failed journal does."""
        log.error("the engine stops: %s", reason)
        self._halt(reason)

    def _halt(self, reason: str) -> None:
        """Memory is ahead of disk: refuse everything from now on, fail every caller not yet released."""
        first = self._failure is None
        if first:
            self._failure = reason
        self._accepting = False
        self._unjournaled.clear()
        while self._waiters:
            _fail(self._waiters.popleft()[1], EngineError(UNAVAILABLE, reason))
        self.feed.close()
        if first:
            for callback in self.on_halt:
                callback(reason)


def last_clock_offset(events: Iterable[M.Event]) -> int:
    """The offset of the last ClockAdvanced among ``events`` (0 if none)."""
    offset = 0
    for event in events:
        if isinstance(event, M.ClockAdvanced):
            offset = event.offset_ms
    return offset


def _resolve(future: asyncio.Future[Any], result: Any, error: EngineError | None) -> None:
    if future.done():  # the caller gave up (deadline, cancellation) while its events were being journaled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _internal(error: Exception) -> EngineError:
    """What a caller gets for a bug in a read (logged where it was caught): its type, nothing of its text."""
    return EngineError(INTERNAL, f"internal error: {type(error).__name__}")


def _fail(future: asyncio.Future[Any], error: EngineError) -> None:
    if not future.done():
        future.set_exception(error)
