"""The single writer: one asyncio task owns the ledger; every call reaches it through one queue.

Handlers hand the engine an operation (a command for ``Ledger.execute`` or a read function) and
await its future. The writer takes everything queued (up to ``batch_max``), runs each operation
against the ledger, appends the batch's events to the journal in ONE call (group commit: many
commands share one fsync), and only then resolves the batch's futures, reads included, so that
no reply ever shows state a crash could lose. If the journal fails, memory is ahead of disk: the
engine stops and every pending and later call gets UNAVAILABLE.

The engine also keeps what the API needs beside the ledger's protocol: each asset's ``decimals``
(to format quantities) and a per-fund change feed for StreamNav, both derived from events so they
are rebuilt the same way on replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from etf_engine import model as M
from etf_engine.errors import EngineError
from etf_engine.journal import recover, state_digest
from etf_engine.ledger import Ledger

log = logging.getLogger(__name__)

T = TypeVar("T")
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"

# An operation runs inside the writer: (ledger, now_ms) -> (result, events it produced).
Operation = Callable[[Ledger, int], tuple[Any, list[M.Event]]]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Journal(Protocol):
    """Where events become durable. ``append`` returns only once the events are on stable storage."""

    last_at: int  # ``at`` of the last event appended or replayed
    since_snapshot: int  # events appended since the last snapshot

    async def append(self, events: list[M.Event]) -> None: ...

    def write_snapshot(self, state: dict[str, Any]) -> None: ...

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

    def write_snapshot(self, state: dict[str, Any]) -> None:
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

    def load(self, state: dict[str, Any]) -> None:
        """Start from a snapshot's state instead of the events before it."""
        self.decimals.update(dict(state["assets"]))
        for terms, _cash, _shares, _rows in state["funds"]:
            for a in terms["assets"]:
                self._funds_by_price.setdefault((a["asset"], terms["base_currency"]), set()).add(terms["fund_id"])
        self._open_orders.update({o["order_id"]: o["fund_id"] for o in state["orders"] if o["status"] == M.ACCEPTED})

    def observe(self, event: M.Event, changed: set[str]) -> None:
        """Record ``event``; add the funds whose NAV it may change to ``changed``."""
        if isinstance(event, M.AssetRegistered):
            self.decimals[event.symbol] = event.decimals
        elif isinstance(event, M.FundCreated | M.FundUpdated):
            terms = event.terms
            for a in terms.assets:
                self._funds_by_price.setdefault((a.asset, terms.base_currency), set()).add(terms.fund_id)
            changed.add(terms.fund_id)
        elif isinstance(event, M.PriceSet):
            changed.update(self._funds_by_price.get((event.asset, event.currency), ()))
        elif isinstance(event, M.OrderRecorded):
            # Recording moves nothing the NAV shows (a reservation keeps totals); settling does.
            if event.order.status == M.ACCEPTED:
                self._open_orders[event.order.order_id] = event.order.fund_id
        elif isinstance(event, M.OrderSettled):
            fund_id = self._open_orders.pop(event.order_id, None)
            if fund_id is not None:
                changed.add(fund_id)
        elif isinstance(event, M.OrderCancelled):
            self._open_orders.pop(event.order_id, None)
        else:
            fund_id = getattr(event, "fund_id", None)
            if fund_id is not None:
                changed.add(fund_id)


class _Call:
    __slots__ = ("operation", "future", "writes")

    def __init__(self, operation: Operation, future: asyncio.Future[Any], writes: bool) -> None:
        self.operation = operation
        self.future = future
        self.writes = writes


class Engine:
    """The one writer over a ledger and a journal. Create, ``await start()``, use, ``await stop()``."""

    def __init__(
        self,
        ledger: Ledger,
        journal: Journal | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        batch_max: int = 4096,
    ) -> None:
        self.ledger = ledger
        self.journal: Journal = journal if journal is not None else NullJournal()
        self.clock = clock
        self.batch_max = batch_max
        self._last_now = 0
        self.feed = ChangeFeed()
        self._index = _Index()
        self._pending: deque[_Call] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self._failure: str | None = None

    @property
    def decimals(self) -> dict[str, int]:
        """Asset symbol -> decimals of every registered asset (grows only; safe to read from handlers)."""
        return self._index.decimals

    @property
    def failure(self) -> str | None:
        """Why the engine stopped on its own (journal failure, internal error), or None."""
        return self._failure

    async def start(self) -> None:
        """Rebuild the ledger from the journal (latest snapshot, then the records after it), then start
        the writer."""
        ignored: set[str] = set()
        self.ledger = recover(self.journal, self.ledger, on_snapshot=self._index.load,
                              on_event=lambda event: self._index.observe(event, ignored))
        self._last_now = self.journal.last_at
        log.info("state digest at start: %s", self.digest())
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="etf-engine-writer")

    async def stop(self) -> None:
        """Refuse new work, let the writer finish everything already queued, close the journal."""
        self._accepting = False
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        self.feed.close()
        if self._failure is None and self.journal.since_snapshot:
            self.journal.write_snapshot(self.ledger.state(self._last_now))  # a clean stop restarts fast
        log.info("state digest at stop: %s", self.digest())
        self.journal.close()

    def digest(self) -> str:
        """SHA-256 of the canonical state as of the last journaled time (``etf-engine verify`` prints the same)."""
        return state_digest(self.ledger.state(self.journal.last_at))

    # ------------------------------------------------------------------ submitting work
    def submit(self, operation: Operation, *, writes: bool = True) -> asyncio.Future[Any]:
        """Queue an operation; ``writes=False`` promises it changes nothing (a read)."""
        if not self._accepting:
            raise EngineError(UNAVAILABLE, self._failure or "the engine is not accepting work")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(operation, future, writes))
        self._wake.set()
        return future

    async def execute(self, command: Any) -> Any:
        """Run a state-changing command; its result once its events are durable."""
        return await self.submit(lambda ledger, now_ms: ledger.execute(command, now_ms))

    async def read(self, fn: Callable[[Ledger, int], T]) -> T:
        """Run a read in the writer, in order with the commands, released with its batch."""
        return await self.submit(lambda ledger, now_ms: (fn(ledger, now_ms), []), writes=False)

    # ------------------------------------------------------------------ the writer
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self.batch_max, len(self._pending)))]
                try:
                    await self._run_batch(batch)
                except Exception as e:  # _Halt, or a bug in the writer itself: either way, fail-stop
                    if not isinstance(e, _Halt):
                        log.exception("the writer failed")
                    reason = str(e) if isinstance(e, _Halt) else f"the writer failed ({type(e).__name__})"
                    self._halt(reason)
                    for call in batch:
                        _fail(call.future, EngineError(UNAVAILABLE, reason))
                    return
                # Let handlers enqueue more (and streams run) between batches: bigger batches, fairer loop.
                await asyncio.sleep(0)
            if not self._accepting and not self._pending:
                return

    async def _run_batch(self, batch: list[_Call]) -> None:
        # Time never runs backwards inside the ledger, whatever the wall clock does.
        now_ms = self._last_now = max(self.clock(), self._last_now)
        events: list[M.Event] = []
        outcomes: list[tuple[_Call, Any, BaseException | None]] = []
        for call in batch:
            if call.future.done():  # the caller gave up (deadline, cancellation) before it ran
                continue
            try:
                result, produced = call.operation(self.ledger, now_ms)
            except EngineError as e:
                outcomes.append((call, None, e))
                continue
            except Exception as e:  # a bug, not a refusal: ledgers refuse only with EngineError
                log.exception("operation failed unexpectedly")
                if call.writes:
                    # A command may have changed memory part-way without producing its events: memory
                    # and journal may now differ, so stop (nothing of this batch is journaled or
                    # acknowledged; a restart replays the journal) rather than serve unjournaled state.
                    raise _Halt(f"internal error in a command ({type(e).__name__}); the engine has stopped") from e
                outcomes.append((call, None, EngineError(INTERNAL, f"internal error: {type(e).__name__}")))
                continue
            events.extend(produced)
            outcomes.append((call, result, None))
        changed: set[str] = set()
        if events:
            for event in events:
                self._index.observe(event, changed)
            try:
                await self.journal.append(events)
            except Exception as e:
                log.exception("journal append failed; the engine stops")
                raise _Halt(f"the journal failed ({type(e).__name__}: {e}); the engine has stopped") from e
        self.feed.bump(changed)
        for call, result, error in outcomes:
            if call.future.done():
                continue
            if error is None:
                call.future.set_result(result)
            else:
                call.future.set_exception(error)

    def _halt(self, reason: str) -> None:
        """Memory is ahead of disk: refuse everything from now on, fail what is queued."""
        self._failure = reason
        self._accepting = False
        while self._pending:
            _fail(self._pending.popleft().future, EngineError(UNAVAILABLE, reason))
        self.feed.close()


class _Halt(Exception):
    """The writer must stop: state can no longer be trusted to match the journal."""


def _fail(future: asyncio.Future[Any], error: EngineError) -> None:
    if not future.done():
        future.set_exception(error)
