"""``etf-engine bench``: plan the phases, drive them through the worker processes, report.

A run measures, under each load, the floor (Ping) first and then each RPC asked for, one phase
at a time against the same server, so that every ratio to the floor comes from one run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import secrets
import shlex
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from etf_engine.bench import fixture
from etf_engine.bench.report import (
    PhaseResult,
    Report,
    compare,
    encode,
    load_file,
    load_name,
    machine,
    plot,
    print_report,
)
from etf_engine.bench.stats import percentile, summarize
from etf_engine.bench.workers import FLOOR, RPCS, Phase, WorkerPool

START_DELAY_NS = 300_000_000  # time for every worker to receive its phase before the warm-up starts
BAR_WIDTH = 30


def parse_list(text: str, kind: type, what: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected a comma-separated list of numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{what}: every value must be positive, got {text!r}")
    return values


def parse_rpcs(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in RPCS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--rpcs: unknown {', '.join(unknown) or '(none)'}; "
                                         f"expected some of {', '.join(RPCS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpcs", type=parse_rpcs, default=[r for r in RPCS if r != FLOOR],
                        help=f"RPCs to measure, comma-separated (default: all but the floor, {FLOOR}, "
                             "which every load measures first)")
    parser.add_argument("--clients", type=lambda t: parse_list(t, int, "--clients"), default=[1, 64],
                        help="closed loop: concurrent clients per phase, comma-separated (default 1,64)")
    parser.add_argument("--rate", type=lambda t: parse_list(t, float, "--rate"), default=[],
                        help="open loop: offered calls/s, comma-separated (default: no open-loop phases)")
    parser.add_argument("--open-only", action="store_true", help="skip the closed-loop phases")
    parser.add_argument("--processes", type=int, default=min(4, 2 * (os.cpu_count() or 1)),
                        help="client processes, one gRPC connection each (default %(default)s); a closed-loop "
                             "phase uses min(clients, processes)")
    parser.add_argument("--batch", type=int, default=100, help="orders per SubmitOrders call (default 100)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per phase (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (default 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each load's phases this many times, interleaved, and pool them (default 1)")
    parser.add_argument("--max-inflight", type=int, default=10_000,
                        help="open loop: calls in flight per process at most (default 10000)")
    parser.add_argument("--target", metavar="HOST:PORT",
                        help="drive this server instead of starting one (needs --fund and ETF_ENGINE_TOKEN, a "
                             "participant's token; SubmitOrder records real orders there)")
    parser.add_argument("--fund", help="with --target: a fund the participant is eligible for")
    parser.add_argument("--ledger", choices=("core", "reference"), default="core",
                        help="the ledger of the server the bench starts (default core)")
    parser.add_argument("--dsn", help="the server the bench starts journals to a fresh shard of this PostgreSQL "
                                      "database instead of SQLite (SPEC §12)")
    parser.add_argument("--http", action="store_true", help="the server the bench starts also runs its HTTP "
                        "listener (Connect, /metrics, the console; SPEC §15)")
    parser.add_argument("--scrape-every", type=float, default=0.0, metavar="SECONDS",
                        help="with --http: scrape /metrics this often during the run, as Prometheus would")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--compare", metavar="OLD.json", help="show the change of every figure against a report")
    parser.add_argument("--plot", metavar="FILE.png", help="plot the latency percentiles per RPC (matplotlib)")


def validate(args: argparse.Namespace) -> str | None:
    """The first thing wrong with the arguments, or None."""
    if args.processes < 1:
        return "--processes must be at least 1"
    if not 1 <= args.batch <= 1000:
        return "--batch must be 1 to 1000 (SubmitOrders takes at most 1000 orders per call)"
    if args.repeat < 1:
        return "--repeat must be at least 1"
    if args.duration <= 0 or args.warmup < 0:
        return "--duration must be positive and --warmup not negative"
    if args.max_inflight < 1:
        return "--max-inflight must be at least 1"
    if args.scrape_every < 0 or (args.scrape_every and not args.http):
        return "--scrape-every needs --http and a number of seconds above 0"
    if args.http and args.target:
        return "--http is for the server the bench starts, not with --target"
    if args.open_only and not args.rate:
        return "--open-only needs --rate"
    if args.target and not (args.fund and os.environ.get("ETF_ENGINE_TOKEN")):
        return "--target needs --fund and a participant's token in ETF_ENGINE_TOKEN"
    if args.dsn and args.target:
        return "--dsn is for the server the bench starts, not with --target"
    if args.fund and not args.target:
        return "--fund is only for --target (the bench loads its own fund otherwise)"
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # say so before the run, not after it
        return "--plot needs matplotlib: pip install 'etf-engine[bench]'"
    for path in (args.json, args.plot):
        if path and not Path(path).resolve().parent.is_dir():
            return f"cannot write {path}: no such directory"
    if args.compare and not Path(args.compare).is_file():
        return f"--compare: no such file {args.compare}"
    return None


def plan(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    """The loads, each run for the floor and then every RPC."""
    loads = [] if args.open_only else [("closed", c, 0.0) for c in args.clients]
    return loads + [("open", 0, r) for r in args.rate]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Progress:
    """A bar on a terminal, a line per phase otherwise (logs, CI)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def update(self, title: str, elapsed: float, total: float, calls: int, measured: float) -> None:
        if not self.tty:
            return
        elapsed = max(elapsed, 0.0)  # the workers start together a moment after the phase is sent
        done = min(elapsed / total, 1.0) if total > 0 else 1.0
        bar = "#" * int(done * BAR_WIDTH) + "-" * (BAR_WIDTH - int(done * BAR_WIDTH))
        rate = f"{calls / measured:,.0f}/s" if measured > 0 else "warm-up"
        self.out.write(f"\r  {title:<34} [{bar}] {elapsed:5.1f}/{total:.1f} s {calls:>9,} calls {rate:>10}\x1b[K")
        self.out.flush()

    def finish(self, title: str, result: PhaseResult) -> None:
        s = result.summary
        line = (f"  {title:<34} {s.calls_per_second:>10,.0f} calls/s  p50 {s.p50:.3f} ms  p99 {s.p99:.3f} ms"
                + (f"  {s.errors} errors" if s.errors else ""))
        self.out.write(("\r" + line + "\x1b[K\n") if self.tty else line + "\n")
        self.out.flush()


CpuReader = Callable[[], tuple[int, int]]  # ns of CPU so far: (the server's, its checkpointer included; the latter's)


@dataclass
class Measured:
    """One phase's raw figures; repeats of a phase are pooled into one PhaseResult."""

    rpc: str
    load: tuple[str, int, float]
    batch: int
    connections: int
    latencies: list[int]
    errors: dict[str, int]
    first_error: str
    seconds: float
    server_cpu_ns: int | None  # None: unknown (a server given by --target)
    client_cpu_ns: int
    lags: list[int]  # open loop: how late each measured call left the client, ns
    checkpointer_cpu_ns: int | None = None  # of server_cpu_ns, the checkpointer's


def merged(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Error counts by status code, added up."""
    total: dict[str, int] = {}
    for count in counts:
        for code, n in count.items():
            total[code] = total.get(code, 0) + n
    return total


def first_text(texts: Iterable[str]) -> str:
    """The first error message that is not empty."""
    return next((text for text in texts if text), "")


def pool_results(runs: list[Measured]) -> PhaseResult:
    """The repeats of one phase as one result: percentiles over every call, throughput over the
    measured seconds of all of them."""
    first = runs[0]
    latencies = [x for run in runs for x in run.latencies]
    errors = merged(run.errors for run in runs)
    calls = max(len(latencies), 1)
    server = [run.server_cpu_ns for run in runs]
    checkpointer = [run.checkpointer_cpu_ns for run in runs]
    lags = sorted(x for run in runs for x in run.lags)
    mode, clients, rate = first.load
    return PhaseResult(
        rpc=first.rpc, mode=mode, clients=clients, rate=rate, batch=first.batch, connections=first.connections,
        summary=summarize(latencies, items_per_call=first.batch, errors=sum(errors.values()),
                          seconds=sum(run.seconds for run in runs)),
        errors_by_code=errors, first_error=first_text(run.first_error for run in runs),
        server_cpu_us=0.0 if None in server else sum(server) / calls / 1e3,  # type: ignore[arg-type]
        checkpointer_cpu_us=0.0 if None in checkpointer else sum(checkpointer) / calls / 1e3,  # type: ignore[arg-type]
        client_cpu_us=sum(run.client_cpu_ns for run in runs) / calls / 1e3,
        send_lag_p50=percentile(lags, 50) / 1e6 if lags else 0.0,
        send_lag_p99=percentile(lags, 99) / 1e6 if lags else 0.0)


def run_phase(pool: WorkerPool, args: argparse.Namespace, rpc: str, load: tuple[str, int, float], fund_id: str,
              tag: str, progress: Progress, server_cpu_ns: CpuReader | None = None) -> Measured:
    """One phase; ``server_cpu_ns`` reads the server's CPU time, and its checkpointer's, when the bench
    started the server."""
    mode, clients, rate = load
    batch = args.batch if rpc == "SubmitOrders" else 1
    if mode == "closed":
        used = min(clients, pool.size)
        tasks = split(clients, used)
        rates = [0.0] * used
    else:
        used = pool.size
        tasks = [0] * used
        rates = [rate / used] * used
    start = time.monotonic_ns() + START_DELAY_NS
    measure = start + int(args.warmup * 1e9)
    end = measure + int(args.duration * 1e9)
    phases: list[Phase | None] = [
        Phase(rpc=rpc, mode=mode, tasks=tasks[i], rate=rates[i], batch=batch, fund_id=fund_id, tag=tag,
              start_ns=start, measure_ns=measure, end_ns=end, max_inflight=args.max_inflight) if i < used else None
        for i in range(pool.size)]
    title = f"{rpc}{f' x{batch}' if batch > 1 else ''}, {load_name(*load)}"
    pool.send(phases)
    total = (end - start) / 1e9
    server_cpu: list[tuple[int, int]] = []  # at the window's opening and closing
    for mark in (measure, end):
        while (now := time.monotonic_ns()) < mark:
            progress.update(title, (now - start) / 1e9, total, pool.progress(), (now - measure) / 1e9)
            time.sleep(min(0.2, (mark - now) / 1e9))
        if server_cpu_ns is not None:
            server_cpu.append(server_cpu_ns())
    outcomes = pool.gather(phases, timeout=120.0)
    measured = Measured(
        rpc=rpc, load=load, batch=batch, connections=used,
        latencies=[x for outcome in outcomes for x in memoryview(outcome.latencies).cast("q")],
        errors=merged(o.errors for o in outcomes), first_error=first_text(o.first_error for o in outcomes),
        seconds=args.duration, server_cpu_ns=server_cpu[1][0] - server_cpu[0][0] if server_cpu else None,
        client_cpu_ns=sum(o.cpu_ns for o in outcomes),
        lags=[x for outcome in outcomes for x in memoryview(outcome.lags).cast("q")],
        checkpointer_cpu_ns=server_cpu[1][1] - server_cpu[0][1] if server_cpu else None)
    progress.finish(title, pool_results([measured]))
    return measured


@contextmanager
def server(args: argparse.Namespace, out: TextIO) -> Iterator[tuple[str, str, str, CpuReader | None]]:
    """(address, participant token, fund id, server CPU reader): the server given (its CPU unknown),
    or a local server loaded with a fund."""
    if args.target:
        yield args.target, os.environ["ETF_ENGINE_TOKEN"], args.fund, None
        return
    with fixture.LocalServer(ledger=args.ledger, dsn=args.dsn, http=args.http) as local:
        print(f"bench: started etf-engine serve on {local.target} (journal in {local.data_dir}, {args.ledger} "
              f"ledger{', HTTP on ' + str(local.http_url) if local.http_url else ''})", file=out, flush=True)
        fixture.load_fund(local.target, local.issuer_token)
        with scraping(local.http_url, args.scrape_every, out):
            yield local.target, local.participant_token, fixture.FUND_ID, local.cpu_ns
        if local.process.poll() is not None:
            raise RuntimeError(f"the bench server exited during the run; its log:\n{local.log_tail()}")


@contextmanager
def scraping(url: str | None, every: float, out: TextIO) -> Iterator[None]:
    """Scrape ``url``/metrics every ``every`` seconds meanwhile (0: never); report the scrapes' median."""
    if url is None or every <= 0:
        yield
        return
    stop = threading.Event()
    took: list[float] = []

    def scrape() -> None:
        while not stop.wait(every):
            started = time.perf_counter()
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
                reply.read()
            took.append(time.perf_counter() - started)

    thread = threading.Thread(target=scrape, name="bench-scraper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
        if took:
            print(f"bench: {len(took)} scrapes of /metrics, median {statistics.median(took) * 1e3:.1f} ms",
                  file=out, flush=True)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout  # resolved per call: tests (and callers) may have replaced them
    err = err or sys.stderr
    problem = validate(args)
    if problem:
        print(f"etf-engine bench: {problem}", file=err)
        return 2
    old = None
    if args.compare:
        try:
            old = load_file(args.compare)
        except ValueError as e:
            print(f"etf-engine bench: {e}", file=err)
            return 2
    loads = plan(args)
    rpcs = [FLOOR] + [r for r in args.rpcs if r != FLOOR]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["etf-engine", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "etf-engine bench"
    run_tag = secrets.token_hex(3)
    results: list[PhaseResult] = []
    progress = Progress(err)
    with server(args, out) as (target, token, fund_id, server_cpu_ns):
        with WorkerPool(args.processes, target, token) as pool:
            for load in loads:
                # Repeats go round the RPCs (floor, a, b, floor, a, b ...) so that a drift of the
                # machine's speed during the run reaches every RPC alike, not one more than the floor.
                runs: dict[str, list[Measured]] = {rpc: [] for rpc in rpcs}
                for _ in range(args.repeat):
                    for rpc in rpcs:
                        tag = f"{run_tag}p{sum(map(len, runs.values()))}l{len(results)}"
                        runs[rpc].append(run_phase(pool, args, rpc, load, fund_id, tag, progress, server_cpu_ns))
                results.extend(pool_results(runs[rpc]) for rpc in rpcs)
    report = Report(date=date, command=command, target="local" if not args.target else args.target,
                    machine=machine(), seconds=args.duration * args.repeat, warmup=args.warmup, phases=results)
    print(file=out)
    print_report(report, out)
    if args.json:
        Path(args.json).write_bytes(encode(report))
        print(f"\nreport written to {args.json}", file=out)
    if args.plot:
        plot(report, args.plot)
        print(f"plot written to {args.plot}", file=out)
    if old is not None:
        print(file=out)
        compare(old, report, out)
    return 0
