"""``etf-engine prices publish``: price ticks from a CSV file (or standard input) to PublishPrices.

One tick a row, ``asset,currency,price[,as_of]``::

    # asset,currency,price,as_of      (a header row and lines starting with # are skipped)
    BTC,USD,97250.00
    ETH,USD,3412.55,2026-06-30T08:00:00Z

``price`` is passed as written (the server checks it); ``as_of`` is an ISO 8601 date-time (UTC when
it has no offset) or unix milliseconds, and the engine's now when left out (GetLeader's, so a test
clock's too; of several such rows of one asset and currency, the last: they would tie, and the server
keeps the first of a tie). A tick the server ignores is printed with its reason. ``--every S`` then
publishes the file's last price of each asset and currency again every S seconds, as of that moment,
until interrupted: a live-looking feed for rehearsals, never a source of real prices.
"""

from __future__ import annotations

import csv
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

import grpc

from etf_engine.client import EtfClient, Tick
from etf_engine.errors import quote

TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # --every tries again
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PriceFileError(ValueError):
    """A file that is not a price file; the message names the line and the column."""


@dataclass(frozen=True)
class Row:
    """A price file's row; ``as_of`` None: now, when it is published."""

    asset: str
    currency: str
    price: str
    as_of: int | None


def read_rows(text: str, source: str) -> list[Row]:
    """The rows of a price file, in its order (of several undated rows of one asset and currency, the
    last); PriceFileError naming ``source:line`` for a row that is not one."""
    rows: list[Row] = []
    for line, cells in enumerate(csv.reader(text.splitlines()), 1):
        cells = [cell.strip() for cell in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not rows and cells[0].lower() == "asset":  # a header row
            continue
        where = f"{source}:{line}"
        if len(cells) not in (3, 4):
            raise PriceFileError(f"{where}: {len(cells)} columns; expected asset,currency,price[,as_of]")
        for name, cell in zip(("asset", "currency", "price"), cells, strict=False):
            if not cell:
                raise PriceFileError(f"{where}: {name} is empty")
        as_of = as_of_ms(cells[3], f"{where}: as_of") if len(cells) == 4 and cells[3] else None
        rows.append(Row(cells[0], cells[1], cells[2], as_of))
    if not rows:
        raise PriceFileError(f"{source}: no prices (rows of asset,currency,price[,as_of])")
    last_undated = {(r.asset, r.currency): i for i, r in enumerate(rows) if r.as_of is None}
    return [r for i, r in enumerate(rows) if r.as_of is not None or last_undated[(r.asset, r.currency)] == i]


def ticks(rows: list[Row], now_ms: int, *, fresh: bool = False) -> list[Tick]:
    """The rows as ticks, an undated one (every one, ``fresh``) as of ``now_ms``."""
    return [Tick(r.asset, r.currency, r.price, now_ms if fresh or r.as_of is None else r.as_of) for r in rows]


def engine_now_ms(client: EtfClient) -> int:
    """The engine's time (a test clock's included: a tick more than 5 s ahead of it is refused), else
    this machine's when the server does not say."""
    return client.get_leader().now_unix_ms or int(time.time() * 1000)


def as_of_ms(text: str, where: str) -> int:
    """Unix milliseconds from digits, or from an ISO 8601 date-time (UTC when it has no offset)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PriceFileError(f"{where}: {quote(text)} is neither unix milliseconds nor an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def latest(rows: list[Row]) -> list[Row]:
    """The last row of each (asset, currency), in the order they first appear."""
    last: dict[tuple[str, str], Row] = {}
    for r in rows:
        last[(r.asset, r.currency)] = r
    return list(last.values())


def _publish(client: EtfClient, batch: list[Tick], target: str, out: TextIO, stamp: str = "") -> None:
    reply = client.publish_prices(batch)
    print(f"{stamp}published {len(batch)} tick{'s' * (len(batch) != 1)} to {target}: {reply.applied} applied"
          f"{f', {reply.ignored} ignored' if reply.ignored else ''}", file=out, flush=True)
    for ignored in reply.ignored_ticks:
        print(f"  ignored {ignored.asset}/{ignored.currency}: {ignored.reason}", file=out, flush=True)


def run(client: EtfClient, text: str, source: str, *, target: str, every: float | None, out: TextIO,
        err: TextIO, now_ms: Callable[[], int] | None = None) -> int:
    """prices publish: 0 published (with ``every``: until SIGINT or SIGTERM), 2 a bad file, 1 refused.
    ``now_ms``: the time of an undated tick (default: the engine's, ``engine_now_ms``)."""
    now = now_ms or (lambda: engine_now_ms(client))
    try:
        rows = read_rows(text, source)
    except PriceFileError as e:
        print(f"etf-engine prices publish: {e}", file=err)
        return 2
    try:
        _publish(client, ticks(rows, now()), target, out)
    except grpc.RpcError as e:
        print(f"etf-engine prices publish: refused: {e.code().name} {e.details()}", file=err)  # type: ignore[attr-defined]
        return 1
    if every is None:
        return 0
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        repeat = latest(rows)
        while not stop.wait(every):
            stamp = datetime.now(UTC).strftime("%H:%M:%S ")
            try:
                _publish(client, ticks(repeat, now(), fresh=True), target, out, stamp)
            except grpc.RpcError as e:
                if e.code() not in TRANSIENT:  # type: ignore[attr-defined]
                    print(f"etf-engine prices publish: refused: {e.code().name} {e.details()}", file=err)  # type: ignore[attr-defined]
                    return 1
                print(f"{stamp}not published: {e.code().name}; again in {every:g} s", file=err, flush=True)  # type: ignore[attr-defined]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", file=out)
    return 0
