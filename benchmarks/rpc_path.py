"""The RPCs' own path in process, without gRPC: the request parsed from its bytes, the servicer (the
caller admitted as the interceptor does, the command built, the engine, the journal), the reply built and
serialized. What it reports is what SubmitOrder adds to the floor (Ping) on the server's thread, measured
without the noise of a shared machine.

- ``--callgrind`` (the figure to quote): instructions per call, counted by valgrind's callgrind, which
  counts the same for the same code whatever else the machine runs. The script runs itself twice under
  it, with ``--calls`` and three times as many, and divides the difference by the extra calls, so that
  starting Python, the fund's set-up and the journal's opening cancel out.
- without it: CPU time per call of the whole process (the journal's thread included), in µs; noisy.
- ``--gap MS``: one call at a time, the process asleep for MS before each (as a server with one client
  in a closed loop sleeps between its calls); the median time of a call and of its commit, in µs. With
  ``--journal-thread`` a lone record's commit goes to the journal's thread, as under load, instead of
  being made on the loop's (what the hand-over there and back costs a lone client).

A durable journal is SQLite with the audit trail, as the server's; ``postgres`` is a fresh shard of the
database ``--dsn`` names (a primary with a synchronous standby, as tests/pg_cluster.py starts); ``null``
keeps nothing. Its clients run ``--concurrency`` at once on one loop, so commits gather as a loaded
server's do.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.rpc_path [--callgrind | --gap MS [--journal-thread]]
     [--rpcs Ping,CheckOrder,SubmitOrder] [--journal null,durable,postgres --dsn DSN] [--calls 2000]
     [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks.write_path import started_engine
from etf_engine import engine as engine_module
from etf_engine.api.auth import Principal, enter
from etf_engine.api.servicers import DealingServicer, DiagnosticsServicer
from etf_engine.v1 import engine_pb2 as pb

RPCS = ("Ping", "CheckOrder", "SubmitOrder")
DEALER = Principal(name="dealer", role="participant", token_sha256="", participant_id="AP-B")


def _requests(rpc: str, calls: int) -> tuple[str, Callable[[bytes], Any], list[bytes]]:
    """(method path, request parser, each call's request as the wire carries it)."""
    if rpc == "Ping":
        return "/etf_engine.v1.Diagnostics/Ping", pb.PingRequest.FromString, [b""] * calls
    message = pb.CheckOrderRequest if rpc == "CheckOrder" else pb.SubmitOrderRequest
    return (f"/etf_engine.v1.Dealing/{rpc}", message.FromString,
            [message(fund_id="F-1", side=pb.Side.CREATE, units=1, client_order_id=f"{rpc[0]}-{i}").SerializeToString()
             for i in range(calls)])


async def _served(rpc: str, journal_kind: str, data_dir: str, dsn: str = "") -> tuple[Any, Callable[..., Any]]:
    """A started engine (left running: its snapshot at a stop is not the path's, and would count in the
    difference of two runs, growing with the orders) and the servicer's handler of ``rpc``."""
    engine = await started_engine(journal_kind, data_dir, dsn)
    engine.decimals.update({"BTC": 8, "ETH": 18, "SOL": 9})  # the fund was loaded into the ledger, not through it
    servicer: Any = DiagnosticsServicer(lambda: pb.LeaderInfo(), engine.advance_clock) if rpc == "Ping" \
        else DealingServicer(engine)
    return engine, getattr(servicer, rpc)


async def measure(rpc: str, journal_kind: str, calls: int, concurrency: int, data_dir: str) -> float:
    """CPU µs per call of ``rpc``, ``calls`` of them, ``concurrency`` at once."""
    _, handler = await _served(rpc, journal_kind, data_dir)
    path, parse, requests = _requests(rpc, calls)
    pending = iter(requests)

    async def client() -> None:
        for raw in pending:
            enter(path, DEALER)
            reply = await handler(parse(raw), None)
            reply.SerializeToString()

    started = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return (time.process_time() - started) / calls * 1e6


async def paced(rpc: str, journal_kind: str, calls: int, gap: float, data_dir: str,
                dsn: str = "") -> tuple[float, float | None]:
    """Medians in µs of a call of ``rpc`` and of its commit (None without one), one call at a time, each
    after ``gap`` seconds asleep; the first fifth of the calls warm up and are left out."""
    engine, handler = await _served(rpc, journal_kind, data_dir, dsn)
    commits: list[float] = []
    engine.on_commit.append(lambda seconds, _events: commits.append(seconds))
    path, parse, requests = _requests(rpc, calls)
    took = []
    for raw in requests:
        time.sleep(gap)  # not asyncio.sleep: the process sleeps, as a lone client's server does between calls
        started = time.perf_counter()
        enter(path, DEALER)
        reply = await handler(parse(raw), None)
        reply.SerializeToString()
        took.append(time.perf_counter() - started)
    warm = calls // 5
    return (statistics.median(took[warm:]) * 1e6,
            statistics.median(commits[warm:]) * 1e6 if len(commits) == calls else None)


def callgrind(rpc: str, journal_kind: str, calls: int, concurrency: int) -> int:
    """Instructions per call: two runs under callgrind, ``calls`` and 3 × ``calls``, differenced."""
    counted = []
    for n in (calls, 3 * calls):
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
             "benchmarks.rpc_path", "--rpcs", rpc, "--journal", journal_kind, "--calls", str(n),
             "--concurrency", str(concurrency)], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dicts' layouts, the same count
        found = re.search(r"Collected : (\d+)", run.stderr)
        if found is None:
            raise RuntimeError(f"callgrind printed no count:\n{run.stderr[-2000:]}")
        counted.append(int(found.group(1)))
    return (counted[1] - counted[0]) // (2 * calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpcs", default=",".join(RPCS))
    parser.add_argument("--journal", default="null,durable",
                        help="SubmitOrder's: null, durable, postgres (with --dsn), comma-separated")
    parser.add_argument("--dsn", default="", help="the PostgreSQL database of --journal postgres")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--callgrind", action="store_true", help="instructions per call, under valgrind")
    parser.add_argument("--gap", type=float, metavar="MS",
                        help="one call at a time, MS asleep before each: the median call and commit")
    parser.add_argument("--journal-thread", action="store_true",
                        help="with --gap: a lone record committed on the journal's thread, not the loop's")
    args = parser.parse_args()
    if args.gap is not None and (args.callgrind or args.gap < 0):
        parser.error("--gap: a number of milliseconds, 0 or more, without --callgrind")
    kinds = args.journal.split(",")
    if any(kind not in ("null", "durable", "postgres") for kind in kinds):
        parser.error(f"--journal: {args.journal!r}: each one of null, durable, postgres")
    if "postgres" in kinds and (not args.dsn or args.callgrind):
        parser.error("--journal postgres needs --dsn, and no --callgrind (it would not count PostgreSQL's own work)")
    if args.journal_thread:
        if args.gap is None:
            parser.error("--journal-thread goes with --gap")
        engine_module.INLINE_COMMIT_MAX = 0  # no commit is small enough for the loop's thread
    for rpc in args.rpcs.split(","):
        if rpc not in RPCS:
            parser.error(f"--rpcs: {rpc!r} is not one of {', '.join(RPCS)}")
        for journal_kind in kinds if rpc == "SubmitOrder" else ["null"]:
            if args.callgrind:
                figure = f"{callgrind(rpc, journal_kind, args.calls, args.concurrency):>9,} instructions per call"
            elif args.gap is not None:
                with tempfile.TemporaryDirectory() as data_dir:
                    call, commit = asyncio.run(paced(rpc, journal_kind, args.calls, args.gap / 1e3, data_dir,
                                                     args.dsn))
                figure = f"{call:>9.1f} µs per call" + (f", {commit:.1f} of it its commit" if commit else "")
            else:
                with tempfile.TemporaryDirectory() as data_dir:
                    cpu = asyncio.run(measure(rpc, journal_kind, args.calls, args.concurrency, data_dir))
                figure = f"{cpu:>9.1f} µs of CPU per call"
            print(f"{rpc:12} {journal_kind:8} {figure}", flush=True)
    os._exit(0)  # the journals' files are gone; nothing is left to close


if __name__ == "__main__":
    main()
