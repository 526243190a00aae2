"""States kept every N records, for reads as of a time (SPEC §21 "Reads as of a time").

A read as of a time answers with the state right after the last record at or before it. Replaying the
journal from its first record for that costs a minute on a long journal; restoring a full snapshot
costs time in proportion to every order ever recorded (a 300,000-order state is 290 MB of JSON and
2 s to decode). So the journal keeps, beside its records, a **history state** every ``every`` records
or more: the canonical state (snapshot.py) right after that record, at its time, holding only the
orders that were ACCEPTED then. An order that is settled, cancelled or rejected never
changes again, and nothing a later record applies refers to it (settling, cancelling, deliveries,
payouts, a closed day and a strike all act on ACCEPTED orders). Likewise for the official NAVs and PCFs of
past dealing dates: a state keeps each fund's latest official NAV and the PCFs published for its dealing
date or after (the ones a closed day may move), because applying a record never reads an older one (a
strike's record carries its figures; only a StrikeNav *command* looks at the dates struck, and no command
runs on these ledgers). So a ledger restored from such a state and replayed forward reads exactly as the
full one for everything but the order history and the official NAV and PCF history: holdings, NAV,
basket, prices, tiers, the latest official NAV, wallets, instructions, breaks and the open orders. The
states stay as small as the open book (at a year of 100 funds' daily strikes the NAV and PCF history
made them 14-28 MB), and a read as of any time restores the nearest one at or before it and replays the
records after it (benchmarks/as_of.py, benchmarks/reports.py).

The next state comes ``max(every, open orders in the last one)`` records after the last: a state costs
time in proportion to the open book (building, encoding and storing it), so a fixed ``every`` made the
writer's work grow with the square of a journal whose open book grows (orders accepted faster than they
settle: 40,000 open orders made each state 37 MB and 0.1 s of CPU, every 10,000 records). Waiting for as
many records as the last state held orders keeps it in proportion to the records, as the snapshots do
(checkpoint.py); and a read replays at most that many records, whose cost is then of the order of
restoring the state it starts from.

A state is derived data: each is stored with its CRC, a damaged or unreadable one is passed over (with a
warning) for the one before it, and the records are the truth. Backends store them (sqlite.py:
``history.sqlite3`` in the data directory; postgres.py: table ``etf_history``) behind ``HistoryStore``.

``HistoryWriter`` follows the journal with a ledger of its own, kept trimmed to the open book, and
stores the states: the checkpointer process runs it beside the server
(checkpoint.py), so the writer's path never pays for it. ``AsOfReader`` answers the engine's
``ledger_as_of`` (engine.py): from the nearest state (or a recently built one) it replays the records up
to the last one at or before the time asked for, and hands out a ``LedgerAsOf``.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import msgspec

from etf_engine import model as M
from etf_engine.journal.records import JournalError, Snapshot, _encoder, collector_paused
from etf_engine.snapshot import VERSION, FundState, LedgerState

log = logging.getLogger(__name__)

HISTORY_EVERY = 10_000  # records between history states at least (more while the open book is larger)
# ``select_records``: the bytes of a record's body searched for a needle (every record that names a fund names it
# within them: ids are at most 64 characters), and the seqs a query covers (the lock is let go between them).
SELECT_PREFIX = 512
SELECT_STRETCH = 100_000
CACHE_SIZE = 8  # states of recent reads as of a time, kept as further starting points
_state_decoder = msgspec.json.Decoder(Snapshot)
NEVER = 2**63 - 1


class HistoryStore(Protocol):
    """Where a journal keeps its history states, and a reader of its records of its own (a connection
    beside the writer's, usable from any one thread at a time)."""

    name: str

    def committed_seq(self) -> int:
        """The last record committed."""

    def records(self, after: int, upto: int) -> Iterator[M.Event]:
        """The records after seq ``after`` up to ``upto`` (inclusive), in order, each checked."""

    def nearest(self, as_of: int, upto: int) -> tuple[int, int] | None:
        """(seq, at) of the last stored state with seq <= ``upto`` and at <= ``as_of``, or None."""

    def load(self, seq: int) -> Snapshot:
        """The state stored at ``seq``, checked (JournalError if it is damaged)."""

    def write(self, seq: int, at: int, body: bytes, crc: int) -> None:
        """Store a state's encoding (``encode_state``); a state already stored at ``seq`` is kept."""

    def close(self) -> None: ...


def trimmed(state: LedgerState) -> LedgerState:
    """``state`` with only its ACCEPTED orders, each fund's latest official NAV and the PCFs published for
    its dealing date or after (see the module's docstring for why that is enough)."""
    latest: dict[str, str] = {}
    for nav in state.official_navs:
        latest[nav.fund_id] = max(latest.get(nav.fund_id, ""), nav.dealing_date)
    return msgspec.structs.replace(
        state, orders=[o for o in state.orders if o.status == M.ACCEPTED],
        official_navs=[n for n in state.official_navs if n.dealing_date == latest[n.fund_id]],
        pcfs=[p for p in state.pcfs if p.dealing_date >= latest.get(p.fund_id, "")])


def _shed(state: LedgerState, kept: LedgerState) -> bool:
    """Whether ``trimmed`` left out anything of ``state`` (it only ever drops orders, NAVs and PCFs)."""
    return (len(kept.orders), len(kept.official_navs), len(kept.pcfs)) != (
        len(state.orders), len(state.official_navs), len(state.pcfs))


def encode_state(seq: int, at: int, state: LedgerState) -> tuple[bytes, int]:
    """(body, crc) of a history state: a snapshot's encoding (records.py), so it reads through the same
    versioned schema."""
    body = _encoder.encode(Snapshot(seq=seq, at=at, state=state, version=VERSION))
    return body, zlib.crc32(body)


def decode_state(where: str, seq: int, crc: int, body: bytes) -> Snapshot:
    if zlib.crc32(body) != crc:
        raise JournalError(f"{where}: the history state at record {seq} is damaged: checksum mismatch")
    try:
        snapshot = _state_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise JournalError(f"{where}: the history state at record {seq} is damaged: {error}") from error
    if snapshot.seq != seq:
        raise JournalError(f"{where}: the history state stored at record {seq} says it is at {snapshot.seq}")
    return snapshot


def _checked_records(store: HistoryStore, after: int, upto: int) -> Iterator[M.Event]:
    """``store.records``, refusing a journal that ends before ``upto`` (records.py checks each one's place)."""
    seq = after
    for event in store.records(after, upto):
        seq += 1
        yield event
    if seq != upto:
        raise JournalError(f"{store.name}: record {seq + 1} is missing (expected records up to {upto})")


def _apply(store: HistoryStore, ledger: Any, seq: int, event: M.Event) -> None:
    try:
        ledger.apply(event)
    except Exception as error:
        raise JournalError(f"{store.name}: record {seq} ({type(event).__name__}) does not apply to the state "
                           f"before it: {type(error).__name__}: {error}") from error


class HistoryWriter:
    """Follows a journal and stores a history state ``interval`` records after the last one: ``every``, or as
    many as the last state held orders if that is more (see the module's docstring)."""

    def __init__(self, store: HistoryStore, ledger_type: Any, *, every: int = HISTORY_EVERY) -> None:
        self.store, self.every, self._type = store, every, ledger_type
        self.seq, self.at = 0, 0  # the last record applied
        self.interval = every
        self.ledger = ledger_type()
        upto = NEVER
        while (found := store.nearest(NEVER, upto)) is not None:
            try:
                snapshot = store.load(found[0])
            except JournalError as error:
                log.warning("%s; writing history again from the state before it", error)
                upto = found[0] - 1
                continue
            self.ledger = ledger_type.restore(snapshot.state)
            self.seq, self.at = snapshot.seq, snapshot.at
            self.interval = max(every, len(snapshot.state.orders))
            break

    def step(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Store each state the committed records have reached since the last one; returns how many it
        stored. It reads records only once a whole ``interval`` is committed: beside a busy server it then
        reads seldom, and briefly. ``stop`` is asked between states (a checkpointer told to stop while it
        writes the history of a long journal)."""
        committed = self.store.committed_seq()
        stored = 0
        while (upto := self.seq + self.interval) <= committed and not stop():
            seq = self.seq
            for event in _checked_records(self.store, self.seq, upto):
                seq += 1
                _apply(self.store, self.ledger, seq, event)
                self.at = event.at
            self.seq = upto
            with collector_paused():
                full = self.ledger.state(self.at)
                state = trimmed(full)
                body, crc = encode_state(upto, self.at, state)
            self.store.write(upto, self.at, body, crc)
            if _shed(full, state):
                # Trimmed again: the closed orders of these records are not needed from here on either.
                # (When nothing closed, restoring would rebuild the same ledger: as long as the open book.)
                self.ledger = self._type.restore(state)
            self.interval = max(self.every, len(state.orders))
            stored += 1
            log.info("%s: history state at record %d", self.store.name, upto)
        return stored


Row = tuple[int, int, bytes]  # a record as stored: (seq, crc, body)


def select_records(store: HistoryStore, after: int, upto: int, needle: bytes, kinds: Sequence[str] = ()) -> list[Row]:
    """The records after seq ``after`` up to ``upto`` whose body holds ``needle`` in its first SELECT_PREFIX bytes,
    or whose type is one of ``kinds``, as stored, in order: chosen by the database itself, through the store's
    ``select_records(after, upto, needle, heads)`` (a report reads one fund's records of a year without carrying
    every body of the journal across). Not checked: the caller checks the CRC of what it decodes. A store
    without that method is read whole and filtered here (its records encoded again)."""
    heads = [b'{"type":"' + kind.encode() + b'"' for kind in kinds]
    select = getattr(store, "select_records", None)  # the backends' own query (sqlite.py, postgres.py)
    if select is not None:
        return select(after, upto, needle, heads)
    found = []
    for seq, event in enumerate(store.records(after, upto), after + 1):
        body = _encoder.encode(event)
        if needle in body[:SELECT_PREFIX] or body.startswith(tuple(heads)):
            found.append((seq, zlib.crc32(body), body))
    return found


class LedgerAsOf:
    """A ledger as it was right after record ``seq`` (at ``at``; 0 and 0: before the first record), read
    at ``as_of``: every figure it derives from time (staleness, released lots, licences, tiers) is
    computed at ``as_of``. Read-only and private to its caller; use it on one thread.

    It holds every order that was ACCEPTED then (``open_orders``), but not necessarily those closed
    before it (history states keep only the open book): ask the current ledger for order history.
    """

    __slots__ = ("_ledger", "seq", "at", "as_of")

    def __init__(self, ledger: Any, seq: int, at: int, as_of: int) -> None:
        self._ledger, self.seq, self.at, self.as_of = ledger, seq, at, as_of

    def get_holdings(self, fund_id: str) -> M.Holdings:
        return self._ledger.get_holdings(fund_id, self.as_of)

    def get_nav(self, fund_id: str) -> M.Nav:
        return self._ledger.get_nav(fund_id, self.as_of)

    def statement_book(self, fund_id: str, custodian_id: str) -> M.StatementBook:
        """The book a statement as of ``as_of`` is compared with (SPEC §19)."""
        return self._ledger.statement_book(fund_id, custodian_id, self.as_of)

    def open_orders(self, fund_id: str = "") -> list[M.Order]:
        """The orders ACCEPTED then ("" = every fund's), in id order, ``overdue`` as at ``as_of``."""
        return self._ledger.list_orders(fund_id, M.ACCEPTED, None, self.as_of)

    def list_breaks(self, fund_id: str = "", status: str = "") -> list[M.Break]:
        """The breaks as they stood then (SPEC §19), by id; NOT_FOUND for a fund that did not exist yet."""
        return self._ledger.list_breaks(fund_id, status)

    def fund_state(self, fund_id: str) -> FundState | None:
        """The fund's canonical state at ``as_of`` (its exact accrued fee, its unbonding lots: figures no read
        gives), or None when it did not exist then. It costs the making of the whole state."""
        funds = self._ledger.state(self.as_of).funds
        return next((f for f in funds if f.terms.fund_id == fund_id), None)

    def state(self) -> LedgerState:
        """The canonical state at ``as_of``, with the open orders only."""
        return trimmed(self._ledger.state(self.as_of))


class _Built(msgspec.Struct):
    """A state built for a read, kept as a starting point for later ones."""

    seq: int
    at: int
    state: LedgerState


class AsOfReader:
    """Builds ledgers as of a time from a store's history states and records; one build at a time
    (its own lock), on whatever thread calls it."""

    def __init__(self, store: HistoryStore, ledger_type: Any, *, cache_size: int = CACHE_SIZE) -> None:
        self.store, self._type, self._cache_size = store, ledger_type, cache_size
        self._restores = hasattr(ledger_type, "restore")  # the reference replays from the first record
        self._cache: OrderedDict[int, _Built] = OrderedDict()  # seq -> state, least recently used first
        self._lock = threading.Lock()

    def ledger_as_of(self, as_of: int, upto: int) -> LedgerAsOf:
        """The ledger right after the last record at or before ``as_of`` among records 1 to ``upto`` (all
        committed), read at ``as_of``."""
        # The collector paused: a replay makes tens of thousands of objects that stay, and in a server
        # holding every order ever recorded each full collection they trigger walks them all.
        with self._lock, collector_paused():
            seq, at, state = self._start(as_of, upto)
            ledger = self._type.restore(state) if state is not None else self._type()
            start = seq
            if seq < upto:
                records = self.store.records(seq, upto)
                try:
                    for event in records:
                        if event.at > as_of:
                            break
                        seq += 1
                        _apply(self.store, ledger, seq, event)
                        at = event.at
                finally:
                    records.close()  # type: ignore[attr-defined]  # a generator: its cursor is released
            if seq != start and self._restores:
                self._keep(_Built(seq=seq, at=at, state=trimmed(ledger.state(at))))
            return LedgerAsOf(ledger, seq, at, as_of)

    def _start(self, as_of: int, upto: int) -> tuple[int, int, LedgerState | None]:
        """(seq, at, state) to replay from: the latest stored or recently built state at or before
        ``as_of`` and ``upto``; (0, 0, None) for the empty ledger."""
        if not self._restores:
            return 0, 0, None
        built = max((b for b in self._cache.values() if b.seq <= upto and b.at <= as_of), key=lambda b: b.seq,
                    default=None)
        floor = built.seq if built is not None else 0
        limit = upto
        while (found := self.store.nearest(as_of, limit)) is not None and found[0] > floor:
            seq, at = found
            try:
                snapshot = self.store.load(seq)
                self._check_place(seq, at)
            except JournalError as error:
                log.warning("%s; reading from the state before it", error)
                limit = seq - 1
                continue
            return seq, at, snapshot.state
        if built is not None:
            self._cache.move_to_end(built.seq)
            return built.seq, built.at, built.state
        return 0, 0, None

    def _check_place(self, seq: int, at: int) -> None:
        """A state belongs to this journal only if its record is there with the same time (a data directory
        whose journal was replaced keeps a stale history file)."""
        events = list(self.store.records(seq - 1, seq))
        if not events:
            raise JournalError(f"{self.store.name}: the history state at record {seq} is past the journal's end")
        if events[0].at != at:
            raise JournalError(f"{self.store.name}: the history state at record {seq} (at {at}) does not match "
                               f"the record's time ({events[0].at})")

    def select(self, after: int, upto: int, needle: bytes, kinds: Sequence[str] = ()) -> list[Row]:
        """``select_records`` on this reader's store, SELECT_STRETCH seqs at a time under its lock (reads as of a
        time go on between them)."""
        found: list[Row] = []
        while after < upto:
            stop = min(upto, after + SELECT_STRETCH)
            with self._lock:
                found += select_records(self.store, after, stop, needle, kinds)
            after = stop
        return found

    def last_seq_before(self, instant: int, upto: int) -> int:
        """The seq of the last record among 1 to ``upto`` whose time is before ``instant`` (0: none), by binary
        search over the records (their times never go back)."""
        low, high = 0, upto  # the answer is in [low, high]
        while low < high:
            middle = (low + high + 1) // 2
            with self._lock:
                records = self.store.records(middle - 1, middle)
                try:
                    event = next(records, None)
                finally:
                    records.close()  # type: ignore[attr-defined]  # a generator: its cursor is released
            if event is None:
                raise JournalError(f"{self.store.name}: record {middle} is missing")
            low, high = (middle, high) if event.at < instant else (low, middle - 1)
        return low

    def _keep(self, built: _Built) -> None:
        self._cache[built.seq] = built
        self._cache.move_to_end(built.seq)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def close(self) -> None:
        """After the build under way, if any."""
        with self._lock:
            self.store.close()
