"""``etf-engine prices publish``: price ticks from a CSV file (or standard input) to PublishPrices.

One tick a row, ``asset,currency,price[,as_of]``::

    # asset,currency,price,as_of      (a header row and lines starting with # are skipped)
    BTC,USD,97250.00
    ETH,USD,3412.55,2026-06-30T08:00:00Z

``price`` is passed as written (the server checks it); ``as_of`` is an ISO 8601 date-time (UTC when
it has no offset) or unix milliseconds, and now when left out (of several such rows of one asset and
currency, the last: they would tie, and the server keeps the first of a tie). ``--every S`` then publishes the
file's last price of each asset and currency again every S seconds, as of that moment, until
interrupted: a live-looking feed for rehearsals, never a source of real prices.
"""

from __future__ import annotations

import csv
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

import grpc

from etf_engine.client import EtfClient, Tick
from etf_engine.errors import quote

TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # --every tries again
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PriceFileError(ValueError):
    """A file that is not a price file; the message names the line and the column."""


def read_ticks(text: str, source: str, now_ms: int) -> list[Tick]:
    """The ticks of a price file, in its order; PriceFileError naming ``source:line`` otherwise."""
    rows: list[tuple[Tick, bool]] = []  # (tick, whether its row gave as_of)
    for line, row in enumerate(csv.reader(text.splitlines()), 1):
        cells = [cell.strip() for cell in row]
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
        dated = len(cells) == 4 and bool(cells[3])
        as_of = as_of_ms(cells[3], f"{where}: as_of") if dated else now_ms
        rows.append((Tick(cells[0], cells[1], cells[2], as_of), dated))
    if not rows:
        raise PriceFileError(f"{source}: no prices (rows of asset,currency,price[,as_of])")
    last_undated = {(t.asset, t.currency): i for i, (t, dated) in enumerate(rows) if not dated}
    return [t for i, (t, dated) in enumerate(rows) if dated or last_undated[(t.asset, t.currency)] == i]


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


def latest(ticks: list[Tick]) -> list[Tick]:
    """The last tick of each (asset, currency), in the order they first appear."""
    last: dict[tuple[str, str], Tick] = {}
    for t in ticks:
        last[(t.asset, t.currency)] = t
    return list(last.values())


def _publish(client: EtfClient, ticks: list[Tick], target: str, out: TextIO, stamp: str = "") -> None:
    reply = client.publish_prices(ticks)
    ignored = f", {reply.ignored} ignored (not newer than the price the server has)" if reply.ignored else ""
    print(f"{stamp}published {len(ticks)} tick{'s' * (len(ticks) != 1)} to {target}: {reply.applied} applied{ignored}",
          file=out, flush=True)


def run(client: EtfClient, text: str, source: str, *, target: str, every: float | None, out: TextIO,
        err: TextIO, clock: Callable[[], float] = time.time) -> int:
    """prices publish: 0 published (with ``every``: until SIGINT or SIGTERM), 2 a bad file, 1 refused."""
    try:
        ticks = read_ticks(text, source, int(clock() * 1000))
    except PriceFileError as e:
        print(f"etf-engine prices publish: {e}", file=err)
        return 2
    try:
        _publish(client, ticks, target, out)
    except grpc.RpcError as e:
        print(f"etf-engine prices publish: refused: {e.code().name} {e.details()}", file=err)  # type: ignore[attr-defined]
        return 1
    if every is None:
        return 0
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        repeat = latest(ticks)
        while not stop.wait(every):
            now = clock()
            fresh = [Tick(t.asset, t.currency, t.price, int(now * 1000)) for t in repeat]
            stamp = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S ")
            try:
                _publish(client, fresh, target, out, stamp)
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
