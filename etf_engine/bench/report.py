"""A benchmark run's report: the table, its JSON form, the change against an older run, the plot.

Every phase is compared with the floor (Ping) measured under the same load in the same run:
``x floor`` is the phase's calls/s over the floor's, ``+p50`` how much later its median reply came.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TextIO

import grpc
import msgspec

from etf_engine.bench.stats import PERCENTILES, Summary
from etf_engine.bench.workers import FLOOR
from etf_engine.table import table

REPORT_VERSION = 1
FIGURES = (("calls/s", "calls_per_second", True), ("orders/s", "items_per_second", True),
           *((name, name, False) for name, _ in PERCENTILES), ("max", "max", False))  # (label, attr, higher is better)


def load_name(mode: str, clients: int, rate: float) -> str:
    return f"closed {clients}" if mode == "closed" else f"open {rate:,.0f}/s"


class PhaseResult(msgspec.Struct, frozen=True):
    rpc: str
    mode: str  # "closed" or "open"
    clients: int  # closed loop: concurrent clients (0 in open loop)
    rate: float  # open loop: offered calls/s (0 in closed loop)
    batch: int  # orders per SubmitOrders call (1 for the others)
    connections: int  # client processes, one channel each
    summary: Summary
    errors_by_code: dict[str, int] = {}
    first_error: str = ""
    server_cpu_us: float = 0.0  # server CPU per call, its checkpointer's included (0: not known, the server was given)
    checkpointer_cpu_us: float = 0.0  # of server_cpu_us, the checkpointer's
    client_cpu_us: float = 0.0  # client processes' CPU per call
    send_lag_p50: float = 0.0  # open loop: ms between a call's due time and its leaving the client
    send_lag_p99: float = 0.0

    @property
    def load(self) -> str:
        return load_name(self.mode, self.clients, self.rate)

    @property
    def key(self) -> tuple[str, str, int, float, int]:
        return self.rpc, self.mode, self.clients, self.rate, self.batch


class Report(msgspec.Struct):
    date: str
    command: str
    target: str  # "local" (a server the bench started) or the address given
    machine: dict[str, str]
    seconds: float  # measured window per phase
    warmup: float
    phases: list[PhaseResult]
    version: int = REPORT_VERSION

    def floor(self, phase: PhaseResult) -> PhaseResult | None:
        return next((p for p in self.phases if p.rpc == FLOOR and p.mode == phase.mode
                     and p.clients == phase.clients and p.rate == phase.rate), None)


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "grpcio": grpc.__version__, "system": f"{platform.system()} {platform.release()}"}


def _ms(value: float) -> str:
    return f"{value:.3f}"


def rows(report: Report) -> list[list[str]]:
    out = []
    for p in report.phases:
        s = p.summary
        floor = report.floor(p)
        ratio = delta = "-"
        if floor is not None and floor.summary.calls and s.calls:
            ratio = f"{s.calls_per_second / floor.summary.calls_per_second:.2f}"
            delta = f"{s.p50 - floor.summary.p50:.3f}"
        out.append([p.rpc, p.load, str(p.batch), str(p.connections), f"{s.calls_per_second:,.0f}",
                    f"{s.items_per_second:,.0f}", _ms(s.p50), _ms(s.p90), _ms(s.p99), _ms(s.p999), _ms(s.max),
                    str(s.errors), ratio, delta, f"{p.server_cpu_us:.0f}" if p.server_cpu_us else "-",
                    f"{p.checkpointer_cpu_us:.0f}" if p.server_cpu_us else "-", f"{p.client_cpu_us:.0f}"])
    return out


HEADERS = ["rpc", "load", "batch", "conns", "calls/s", "orders/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
           "max ms", "errors", "x floor", "+p50 ms", "srv us/call", "ckpt us/call", "cli us/call"]


def print_report(report: Report, out: TextIO) -> None:
    print(f"etf-engine bench, {report.date}, target {report.target}, {report.seconds:g} s per phase after "
          f"{report.warmup:g} s warm-up", file=out)
    print(f"machine: {report.machine.get('cpu', '?')}, {report.machine.get('cores', '?')} cores, Python "
          f"{report.machine.get('python', '?')}, grpcio {report.machine.get('grpcio', '?')}", file=out)
    table(HEADERS, rows(report), out)
    lagging = [p for p in report.phases if p.mode == "open"]
    if lagging:
        print("  open loop: latencies count from each call's due time; calls left the client this late (ms, "
              "p50/p99; timer granularity and client load, included in the latencies):", file=out)
        print("    " + ", ".join(f"{p.rpc} {p.load} {p.send_lag_p50:.3f}/{p.send_lag_p99:.3f}" for p in lagging),
              file=out)
    errors = [p for p in report.phases if p.summary.errors]
    for p in errors:
        print(f"  {p.rpc} {p.load}: {p.summary.errors} errors "
              f"({', '.join(f'{k} {v}' for k, v in sorted(p.errors_by_code.items()))}); first: {p.first_error}",
              file=out)


def encode(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"


def decode(data: bytes, source: str) -> Report:
    try:
        report = msgspec.json.decode(data, type=Report)
    except msgspec.DecodeError as e:
        raise ValueError(f"{source} is not an etf-engine bench report: {e}") from None
    if report.version != REPORT_VERSION:
        raise ValueError(f"{source} is a version {report.version} report; this etf-engine reads version "
                         f"{REPORT_VERSION}")
    return report


def _change(old: float, new: float) -> str:
    if old == 0:
        return "new" if new else "0"
    return f"{(new - old) / old * 100:+.1f}%"


def compare(old: Report, new: Report, out: TextIO) -> int:
    """Print each figure of every phase run in both reports, old -> new and the change; returns the
    number of phases matched."""
    before = {p.key: p for p in old.phases}
    table_rows = []
    for p in new.phases:
        q = before.get(p.key)
        if q is None:
            continue
        for label, attr, higher_better in FIGURES:
            if attr == "items_per_second" and p.batch == 1:
                continue
            was, now = getattr(q.summary, attr), getattr(p.summary, attr)
            better = (now > was) == higher_better if now != was else None
            table_rows.append([p.rpc, p.load, label, f"{was:,.3f}" if not higher_better else f"{was:,.0f}",
                               f"{now:,.3f}" if not higher_better else f"{now:,.0f}", _change(was, now),
                               "-" if better is None else "better" if better else "worse"])
    print(f"change from {old.date} ({old.command}) to {new.date}:", file=out)
    if table_rows:
        table(["rpc", "load", "figure", "old", "new", "change", ""], table_rows, out)
    else:
        print("  no phase of this run was run in the old report (same rpc, load and batch)", file=out)
    return len({(r[0], r[1]) for r in table_rows})


def plot(report: Report, path: str | Path) -> None:
    """One panel per load; in each, a line per RPC through its percentiles (log scale)."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'etf-engine[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    loads: list[str] = []
    for p in report.phases:
        if p.load not in loads:
            loads.append(p.load)
    labels = ["p50", "p90", "p99", "p99.9", "max"]
    fig, axes = plt.subplots(1, len(loads), figsize=(5.5 * len(loads), 4.5), squeeze=False)
    for ax, load in zip(axes[0], loads, strict=True):
        for p in report.phases:
            if p.load != load or not p.summary.calls:
                continue
            s = p.summary
            style = {"color": "black", "linestyle": "--"} if p.rpc == FLOOR else {}
            name = f"{p.rpc} x{p.batch}" if p.batch > 1 else p.rpc
            ax.plot(labels, [s.p50, s.p90, s.p99, s.p999, s.max], marker="o",
                    label=f"{name} ({s.calls_per_second:,.0f}/s)", **style)
        ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 200, not 2 x 10^2
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_title(load.replace("closed", "closed loop,") + (" client(s)" if load.startswith("closed") else ""))
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"etf-engine bench {report.date}: latency per RPC (floor: {FLOOR}, dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_file(path: str | Path) -> Report:
    return decode(Path(path).read_bytes(), str(path))
