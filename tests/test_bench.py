"""The bench harness (``etf_engine.bench``): stats, the report (table, JSON, compare, plot), argument
checking and planning, the workers' requests, and whole runs against a real server on loopback.

Nothing here asserts a duration or a measured rate beyond "> 0"; the figures asserted exactly are
computed from hand-made samples.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import pytest

from etf_engine import cli
from etf_engine.api.auth import ISSUER, PARTICIPANT, Principal, hash_token
from etf_engine.api.server import BackgroundServer
from etf_engine.bench import fixture, report, workers
from etf_engine.bench import run as bench_run
from etf_engine.bench.report import PhaseResult, Report
from etf_engine.bench.stats import Summary, percentile, summarize
from etf_engine.config import Config
from etf_engine.v1 import engine_pb2 as pb

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# == helpers ========================================================================================
def bench(argv: list[str]) -> tuple[int, str, str]:
    """``etf-engine bench ARGV`` parsed by the real CLI parser and run with its own out/err streams:
    (exit code, stdout, stderr)."""
    args = cli.build_parser().parse_args(["bench", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = bench_run.run(args, out, err)
    return code, out.getvalue(), err.getvalue()


def summary(calls: int = 100, *, items: int | None = None, errors: int = 0, seconds: float = 1.0, p50: float = 1.0,
            p90: float = 2.0, p99: float = 3.0, p999: float = 4.0, max: float = 5.0) -> Summary:  # noqa: A002
    return Summary(calls, calls if items is None else items, errors, seconds, p50, p90, p99, p999, max)


def phase(rpc: str, load: str = "closed 1", *, batch: int = 1, connections: int = 1, **figures: Any) -> PhaseResult:
    """A hand-made phase; ``load`` is "closed N" or "open R"."""
    mode, n = load.split()
    clients, rate = (int(n), 0.0) if mode == "closed" else (0, float(n))
    return PhaseResult(rpc=rpc, mode=mode, clients=clients, rate=rate, batch=batch, connections=connections,
                       summary=summary(**figures))


def make_report(phases: list[PhaseResult], date: str = "2026-01-01 00:00 UTC", command: str = "etf-engine bench",
                **fields: Any) -> Report:
    return Report(date=date, command=command, target="local", machine={"cpu": "test cpu", "cores": "2"},
                  seconds=1.0, warmup=0.5, phases=phases, **fields)


def table_rows(text: str, first: str) -> list[list[str]]:
    """The cells of every table line of ``text`` whose first cell is ``first`` (cells are at least two
    spaces apart; no cell holds two spaces)."""
    cells = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    return [c for c in cells if c and c[0] == first]


def nearest_rank(ordered: list[int], p: Fraction) -> int:
    """The definition itself, exactly: the smallest sample with at least p% of the samples at or below it."""
    n = len(ordered)
    return next(ordered[k - 1] for k in range(1, n + 1) if Fraction(k, n) * 100 >= p)


# == stats ==========================================================================================
def test_percentile_nearest_rank_on_small_lists() -> None:
    ten = list(range(1, 11))
    assert percentile(ten, 50) == 5
    assert percentile(ten, 90) == 9
    assert percentile(ten, 91) == 10
    assert percentile(ten, 10) == 1
    assert percentile(ten, 0.001) == 1  # any p > 0 reaches at least the first sample
    assert percentile(ten, 100) == 10
    thousand = list(range(1, 1001))
    assert percentile(thousand, 99) == 990
    assert percentile(thousand, 100) == 1000
    assert percentile([10, 20, 30, 40], 50) == 20  # no interpolation: a sample, never a mean of two
    assert percentile([10, 20, 30, 40], 51) == 30
    for p in (0.1, 50, 99.9, 100):
        assert percentile([7], p) == 7


def test_percentile_matches_the_definition() -> None:
    for n in range(1, 120):
        ordered = [3 * k + 1 for k in range(n)]
        for p in (1, 5, 10, 25, 50, 75, 90, 95, 99, 100):
            assert percentile(ordered, p) == nearest_rank(ordered, Fraction(p)), (n, p)


def test_percentile_p999_of_1000_samples_is_the_999th() -> None:
    thousand = list(range(1, 1001))
    assert percentile(thousand, 99.9) == 999
    assert percentile(list(range(1, 10_001)), 99.9) == 9990
    assert summarize([k * 1_000_000 for k in thousand], items_per_call=1, errors=0, seconds=1.0).p999 == 999.0


@pytest.mark.parametrize(("samples", "p", "named"), [
    ([], 50, "no samples"),
    ([1, 2, 3], 0, "got 0"),
    ([1, 2, 3], -5, "got -5"),
    ([1, 2, 3], 100.5, "got 100.5"),
])
def test_percentile_errors(samples: list[int], p: float, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        percentile(samples, p)


def test_summarize_counts_calls_items_errors_and_percentiles_in_ms() -> None:
    latencies = [(k * 7919 % 200 + 1) * 1_000_000 for k in range(200)]  # 1..200 ms, shuffled
    assert sorted(latencies) == [k * 1_000_000 for k in range(1, 201)]
    s = summarize(latencies, items_per_call=100, errors=3, seconds=2.0)
    assert (s.calls, s.items, s.errors, s.seconds) == (200, 20_000, 3, 2.0)
    assert (s.p50, s.p90, s.p99, s.p999, s.max) == (100.0, 180.0, 198.0, 200.0, 200.0)
    assert (s.calls_per_second, s.items_per_second) == (100.0, 10_000.0)
    one = summarize([2_500_000], items_per_call=1, errors=0, seconds=0.5)
    assert (one.calls, one.items, one.p50, one.p999, one.max, one.calls_per_second) == (1, 1, 2.5, 2.5, 2.5, 2.0)


def test_summarize_no_calls() -> None:
    s = summarize([], items_per_call=100, errors=4, seconds=1.5)
    assert (s.calls, s.items, s.errors, s.seconds) == (0, 0, 4, 1.5)
    assert (s.p50, s.p90, s.p99, s.p999, s.max) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert (s.calls_per_second, s.items_per_second) == (0.0, 0.0)
    assert summarize([1], items_per_call=1, errors=0, seconds=0.0).calls_per_second == 0.0  # no division by zero


# == report =========================================================================================
def sample_report() -> Report:
    return make_report([
        phase("Ping", "closed 1", calls=1000, p50=0.1),
        phase("GetNav", "closed 1", calls=500, p50=0.35),
        phase("SubmitOrders", "closed 1", batch=100, calls=10, items=1000, p50=2.0),
        phase("Ping", "closed 8", calls=0, errors=8, p50=0.0),  # a floor that completed nothing
        phase("GetNav", "closed 8", calls=900, p50=0.2),
        phase("GetNav", "open 1000", connections=2, calls=990, p50=0.4),  # no floor under this load
    ])


def test_encode_decode_round_trip(tmp_path: Path) -> None:
    original = sample_report()
    errors = msgspec.structs.replace(original.phases[3], errors_by_code={"UNAVAILABLE": 8}, first_error="boom")
    original.phases[3] = errors
    data = report.encode(original)
    assert data.endswith(b"\n")
    back = report.decode(data, "mem")
    assert back == original
    assert back.phases[3].errors_by_code == {"UNAVAILABLE": 8}
    assert back.phases[5].key == ("GetNav", "open", 0, 1000.0, 1)
    path = tmp_path / "r.json"
    path.write_bytes(data)
    assert report.load_file(path) == original


@pytest.mark.parametrize("data", [b"not json at all", b"", b"[1, 2]", b'{"date": "x"}', b'{"phases": 3}'])
def test_decode_garbage_names_the_source(data: bytes) -> None:
    with pytest.raises(ValueError, match=re.escape("old-run.json is not an etf-engine bench report")):
        report.decode(data, "old-run.json")


def test_decode_other_version_names_the_source_and_versions(tmp_path: Path) -> None:
    future = make_report([phase("Ping")], version=report.REPORT_VERSION + 1)
    with pytest.raises(ValueError) as info:
        report.decode(report.encode(future), "future.json")
    message = str(info.value)
    assert "future.json" in message
    assert f"version {report.REPORT_VERSION + 1}" in message and f"version {report.REPORT_VERSION}" in message
    path = tmp_path / "future.json"
    path.write_bytes(report.encode(future))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        report.load_file(path)


def test_rows_ratio_to_the_floor_under_the_same_load() -> None:
    r = sample_report()
    rows = {(row[0], row[1]): row for row in report.rows(r)}
    assert len(rows) == len(r.phases)
    assert all(len(row) == len(report.HEADERS) for row in rows.values())
    ratio, delta = report.HEADERS.index("x floor"), report.HEADERS.index("+p50 ms")
    assert (rows["Ping", "closed 1"][ratio], rows["Ping", "closed 1"][delta]) == ("1.00", "0.000")
    assert (rows["GetNav", "closed 1"][ratio], rows["GetNav", "closed 1"][delta]) == ("0.50", "0.250")
    assert (rows["SubmitOrders", "closed 1"][ratio], rows["SubmitOrders", "closed 1"][delta]) == ("0.01", "1.900")
    assert rows["SubmitOrders", "closed 1"][report.HEADERS.index("orders/s")] == "1,000"
    assert rows["SubmitOrders", "closed 1"][report.HEADERS.index("batch")] == "100"
    # A floor with no calls, or no floor at all under that load: no ratio.
    assert (rows["GetNav", "closed 8"][ratio], rows["GetNav", "closed 8"][delta]) == ("-", "-")
    assert (rows["GetNav", "open 1,000/s"][ratio], rows["GetNav", "open 1,000/s"][delta]) == ("-", "-")
    assert rows["Ping", "closed 8"][report.HEADERS.index("errors")] == "8"
    assert rows["GetNav", "open 1,000/s"][report.HEADERS.index("conns")] == "2"


def test_floor_is_ping_under_the_same_mode_clients_and_rate() -> None:
    r = sample_report()
    assert r.floor(r.phases[1]) is r.phases[0]
    assert r.floor(r.phases[4]) is r.phases[3]
    assert r.floor(r.phases[5]) is None
    assert r.floor(phase("GetNav", "open 1")) is None
    assert r.floor(phase("GetNav", "closed 2")) is None


def test_print_report_shows_the_table_and_the_errors() -> None:
    r = sample_report()
    r.phases[3] = msgspec.structs.replace(r.phases[3], errors_by_code={"UNAVAILABLE": 5, "INTERNAL": 3},
                                          first_error="UNAVAILABLE: connection refused")
    out = io.StringIO()
    report.print_report(r, out)
    text = out.getvalue()
    assert r.date in text and "test cpu" in text
    header = next(line for line in text.splitlines() if line.strip().startswith("rpc"))
    assert re.split(r"\s{2,}", header.strip()) == report.HEADERS
    navs = {row[1]: row for row in table_rows(text, "GetNav")}
    assert set(navs) == {"closed 1", "closed 8", "open 1,000/s"}
    assert all(len(row) == len(report.HEADERS) for row in navs.values())
    ratio, delta = report.HEADERS.index("x floor"), report.HEADERS.index("+p50 ms")
    assert (navs["closed 1"][ratio], navs["closed 1"][delta]) == ("0.50", "0.250")
    assert (navs["closed 8"][ratio], navs["closed 8"][delta]) == ("-", "-")
    assert (navs["open 1,000/s"][ratio], navs["open 1,000/s"][delta]) == ("-", "-")
    assert "Ping closed 8: 8 errors (INTERNAL 3, UNAVAILABLE 5); first: UNAVAILABLE: connection refused" in text


def test_compare_matches_phases_by_rpc_mode_clients_rate_and_batch() -> None:
    old = make_report([
        phase("Ping", "closed 1", calls=1000, p50=0.1),
        phase("GetNav", "closed 1", calls=500, p50=0.3, p90=0.5),
        phase("SubmitOrders", "closed 1", batch=100, calls=10, items=1000),
        phase("GetNav", "open 200", calls=100),
    ], date="2026-01-01 00:00 UTC", command="etf-engine bench --old")
    new = make_report([
        phase("GetNav", "closed 1", calls=1000, p50=0.6, p90=0.5),  # faster, later median, same p90
        phase("SubmitOrders", "closed 1", batch=100, calls=5, items=500),
        phase("SubmitOrders", "closed 1", batch=50, calls=20, items=1000),  # other batch: no match
        phase("GetNav", "closed 2", calls=100),  # other clients: no match
        phase("GetNav", "open 300", calls=100),  # other rate: no match
        phase("CheckOrder", "closed 1"),  # not in the old run
    ], date="2026-02-02 00:00 UTC")
    out = io.StringIO()
    assert report.compare(old, new, out) == 2
    text = out.getvalue()
    assert "change from 2026-01-01 00:00 UTC (etf-engine bench --old) to 2026-02-02 00:00 UTC" in text
    nav = {row[2]: row for row in table_rows(text, "GetNav")}
    assert {row[1] for row in table_rows(text, "GetNav")} == {"closed 1"}
    assert set(nav) == {"calls/s", "p50", "p90", "p99", "p999", "max"}  # no orders/s for batch 1
    assert nav["calls/s"][3:] == ["500", "1,000", "+100.0%", "better"]
    assert nav["p50"][3:] == ["0.300", "0.600", "+100.0%", "worse"]
    assert nav["p90"][3:] == ["0.500", "0.500", "+0.0%", "-"]
    orders = {row[2]: row for row in table_rows(text, "SubmitOrders")}
    assert {row[1] for row in table_rows(text, "SubmitOrders")} == {"closed 1"}
    assert orders["calls/s"][3:] == ["10", "5", "-50.0%", "worse"]
    assert orders["orders/s"][3:] == ["1,000", "500", "-50.0%", "worse"]
    assert not table_rows(text, "CheckOrder") and not table_rows(text, "Ping")


def test_compare_from_zero() -> None:
    old = make_report([phase("GetNav", calls=0, p50=0.0)])
    new = make_report([phase("GetNav", calls=10, p50=0.0)])
    out = io.StringIO()
    assert report.compare(old, new, out) == 1
    nav = {row[2]: row for row in table_rows(out.getvalue(), "GetNav")}
    assert nav["calls/s"][5:] == ["new", "better"]
    assert nav["p50"][5:] == ["0", "-"]


def test_compare_says_when_nothing_matches() -> None:
    old = make_report([phase("GetNav", "closed 1"), phase("Ping", "closed 1")])
    new = make_report([phase("GetNav", "closed 64"), phase("Ping", "open 100")])
    out = io.StringIO()
    assert report.compare(old, new, out) == 0
    text = out.getvalue()
    assert "no phase of this run was run in the old report" in text
    assert not table_rows(text, "GetNav") and not table_rows(text, "Ping")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "plot.png"
    path.parent.mkdir()
    r = sample_report()
    report.plot(r, path)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert path.stat().st_size > 1000


# == arguments, plan, split =========================================================================
@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad arguments must stop before a server or a worker starts: fail at once if one would."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bench went past its argument checks")

    monkeypatch.setattr(bench_run.fixture, "LocalServer", refuse)
    monkeypatch.setattr(bench_run, "WorkerPool", refuse)
    monkeypatch.delenv("ETF_ENGINE_TOKEN", raising=False)


@pytest.mark.parametrize(("argv", "named"), [
    (["--batch", "0"], "--batch"),
    (["--batch", "1001"], "--batch"),
    (["--batch", "-3"], "--batch"),
    (["--open-only"], "--open-only"),
    (["--open-only", "--clients", "4"], "--open-only"),
    (["--target", "127.0.0.1:1"], "--target"),
    (["--target", "127.0.0.1:1", "--fund", "F1"], "ETF_ENGINE_TOKEN"),  # no token in the environment
    (["--fund", "F1"], "--fund"),
    (["--processes", "0"], "--processes"),
    (["--duration", "0"], "--duration"),
    (["--warmup", "-1"], "--warmup"),
    (["--max-inflight", "0"], "--max-inflight"),
    (["--repeat", "0"], "--repeat"),
    (["--scrape-every", "1"], "--scrape-every"),  # needs --http
    (["--http", "--scrape-every", "-1"], "--scrape-every"),
    (["--http", "--target", "127.0.0.1:1", "--fund", "F1"], "--http"),
    (["--json", "/nonexistent-etf-dir/run.json"], "/nonexistent-etf-dir/run.json"),
    (["--plot", "/nonexistent-etf-dir/run.png"], "/nonexistent-etf-dir/run.png"),
])
def test_bad_arguments_exit_2_naming_the_argument(no_run: None, argv: list[str], named: str) -> None:
    code, out, err = bench(argv)
    assert code == 2
    assert out == ""
    assert err.startswith("etf-engine bench: ") and named in err, err


def test_target_needs_a_fund_even_with_a_token(no_run: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETF_ENGINE_TOKEN", "tok")
    code, _out, err = bench(["--target", "127.0.0.1:1"])
    assert code == 2 and "--target needs --fund" in err


def test_compare_of_a_missing_or_bad_file(no_run: None, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    code, _out, err = bench(["--compare", str(missing)])
    assert code == 2 and "--compare" in err and str(missing) in err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{ nope")
    code, _out, err = bench(["--compare", str(garbage)])
    assert code == 2 and f"{garbage} is not an etf-engine bench report" in err
    future = tmp_path / "future.json"
    future.write_bytes(report.encode(make_report([phase("Ping")], version=report.REPORT_VERSION + 1)))
    code, _out, err = bench(["--compare", str(future)])
    assert code == 2 and str(future) in err and f"version {report.REPORT_VERSION + 1}" in err


@pytest.mark.parametrize(("argv", "named"), [
    (["--clients", "0"], "--clients"),
    (["--clients", "1,-2"], "--clients"),
    (["--clients", "two"], "--clients"),
    (["--clients", ","], "--clients"),
    (["--rate", "0"], "--rate"),
    (["--rpcs", "Nope"], "Nope"),
    (["--rpcs", "GetNav,Nope"], "Nope"),
    (["--rpcs", ","], "--rpcs"),
    (["--ledger", "fast"], "--ledger"),
])
def test_cli_rejects_bad_values_with_exit_2(no_run: None, capsys: pytest.CaptureFixture[str], argv: list[str],
                                            named: str) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert named in err, err


def test_cli_validation_message_reaches_the_current_stderr(no_run: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_rpcs_default_and_floor_first() -> None:
    args = cli.build_parser().parse_args(["bench"])
    assert args.rpcs == [r for r in workers.RPCS if r != workers.FLOOR]
    args = cli.build_parser().parse_args(["bench", "--rpcs", " GetNav , CheckOrder,"])
    assert args.rpcs == ["GetNav", "CheckOrder"]
    assert bench_run.validate(args) is None


def measured(rpc: str, latencies: list[int], *, errors: dict[str, int] | None = None, server: int | None = 0,
             client: int = 0, first_error: str = "", lags: list[int] | None = None,
             checkpointer: int | None = 0) -> bench_run.Measured:
    return bench_run.Measured(rpc=rpc, load=("closed", 4, 0.0), batch=1, connections=2, latencies=latencies,
                              errors=errors or {}, first_error=first_error, seconds=2.0, server_cpu_ns=server,
                              client_cpu_ns=client, lags=lags or [], checkpointer_cpu_ns=checkpointer)


def test_repeats_are_pooled_into_one_result() -> None:
    ms = 1_000_000
    pooled = bench_run.pool_results([
        measured("GetNav", [1 * ms, 2 * ms, 3 * ms], server=600_000, client=300_000, checkpointer=50_000),
        measured("GetNav", [4 * ms, 5 * ms], errors={"UNAVAILABLE": 1}, server=400_000, client=200_000,
                 first_error="UNAVAILABLE: gone", checkpointer=0),
    ])
    s = pooled.summary
    assert (pooled.rpc, pooled.load, pooled.connections) == ("GetNav", "closed 4", 2)
    assert (s.calls, s.errors, s.seconds) == (5, 1, 4.0)
    assert (s.p50, s.max) == (3.0, 5.0)  # percentiles over the calls of both repeats
    assert s.calls_per_second == 1.25
    assert pooled.errors_by_code == {"UNAVAILABLE": 1} and pooled.first_error == "UNAVAILABLE: gone"
    assert (pooled.server_cpu_us, pooled.client_cpu_us) == (200.0, 100.0)  # (600 + 400) us CPU / 5 calls
    assert pooled.checkpointer_cpu_us == 10.0  # (50 + 0) us of the server's were its checkpointer's
    unknown = bench_run.pool_results([measured("Ping", [ms], server=None, checkpointer=None),
                                      measured("Ping", [ms], server=5, checkpointer=1)])
    assert unknown.server_cpu_us == unknown.checkpointer_cpu_us == 0.0  # one repeat unknown: unknown
    assert (pooled.send_lag_p50, pooled.send_lag_p99) == (0.0, 0.0)  # closed loop: no due times
    late = bench_run.pool_results([measured("Ping", [ms] * 3, lags=[3 * ms, 1 * ms]),
                                   measured("Ping", [ms], lags=[2 * ms, 4 * ms])])
    assert (late.send_lag_p50, late.send_lag_p99) == (2.0, 4.0)  # over the lags of every repeat


def test_plan_closed_loads_then_open() -> None:
    parse = cli.build_parser().parse_args
    assert bench_run.plan(parse(["bench"])) == [("closed", 1, 0.0), ("closed", 64, 0.0)]
    assert bench_run.plan(parse(["bench", "--clients", "1,3", "--rate", "200,1500.5"])) == [
        ("closed", 1, 0.0), ("closed", 3, 0.0), ("open", 0, 200.0), ("open", 0, 1500.5)]
    assert bench_run.plan(parse(["bench", "--open-only", "--clients", "9", "--rate", "50"])) == [("open", 0, 50.0)]


def test_split_spreads_clients_evenly() -> None:
    assert bench_run.split(3, 2) == [2, 1]
    assert bench_run.split(64, 4) == [16, 16, 16, 16]
    assert bench_run.split(5, 3) == [2, 2, 1]
    assert bench_run.split(1, 1) == [1]
    for total in range(1, 40):
        for parts in range(1, total + 1):
            shares = bench_run.split(total, parts)
            assert len(shares) == parts and sum(shares) == total, (total, parts)
            assert max(shares) - min(shares) <= 1 and min(shares) >= 1
            assert shares == sorted(shares, reverse=True)


# == workers ========================================================================================
def test_request_maker_order_ids_are_unique() -> None:
    single = workers.request_maker("SubmitOrder", "F1", "tag-a", 1)
    requests = [single(i) for i in range(50)]
    assert all(isinstance(r, pb.SubmitOrderRequest) for r in requests)
    assert all((r.fund_id, r.side, r.units) == ("F1", pb.Side.CREATE, 1) for r in requests)
    ids = [r.client_order_id for r in requests]
    assert len(set(ids)) == 50 and all(i.startswith("tag-a") for i in ids)

    batch = workers.request_maker("SubmitOrders", "F1", "tag-a", 12)  # i and k of more than one digit
    calls = [batch(i) for i in range(30)]
    assert all(isinstance(c, pb.SubmitOrdersRequest) and len(c.requests) == 12 for c in calls)
    batch_ids = [o.client_order_id for c in calls for o in c.requests]
    assert len(set(batch_ids)) == 30 * 12
    assert all(o.fund_id == "F1" and o.units == 1 for c in calls for o in c.requests)

    # Another task's tag: none of its ids collides with this one's, single or batched.
    other = workers.request_maker("SubmitOrders", "F1", "tag-b", 12)
    other_ids = {o.client_order_id for i in range(30) for o in other(i).requests}
    assert not other_ids & set(batch_ids)
    assert not {workers.request_maker("SubmitOrder", "F1", "tag-b", 1)(i).client_order_id for i in range(50)} & set(ids)


def test_request_maker_reads_and_checks() -> None:
    assert isinstance(workers.request_maker("Ping", "F1", "t", 1)(0), pb.PingRequest)
    check = workers.request_maker("CheckOrder", "F9", "t", 1)(3)
    assert isinstance(check, pb.CheckOrderRequest) and (check.fund_id, check.units) == ("F9", 1)
    nav = workers.request_maker("GetNav", "F9", "t", 1)(0)
    assert isinstance(nav, pb.GetNavRequest) and nav.fund_id == "F9"
    basket = workers.request_maker("GetBasket", "F9", "t", 1)(0)
    assert isinstance(basket, pb.GetBasketRequest) and basket.fund_id == "F9"
    for name in workers.RPCS:  # every RPC the bench offers has a request
        assert workers.request_maker(name, "F1", "t", 2)(0) is not None


def test_request_maker_unknown_rpc() -> None:
    with pytest.raises(ValueError, match="'ListOrders'"):
        workers.request_maker("ListOrders", "F1", "t", 1)


# == end to end: a server the bench starts ==========================================================
LOADS = (("closed", 1, 0.0), ("closed", 3, 0.0), ("open", 0, 200.0))
PROCESSES = 2


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, Path]:
    """Every RPC under closed 1, closed 3 and open 200/s against its own `etf-engine serve`."""
    tmp = tmp_path_factory.mktemp("bench")
    json_path, png_path = tmp / "run.json", tmp / "run.png"
    code = cli.main(["bench", "--clients", "1,3", "--processes", str(PROCESSES), "--duration", "0.5",
                     "--warmup", "0.2", "--rate", "200", "--json", str(json_path), "--plot", str(png_path)])
    return code, json_path, png_path


def test_full_run_measures_every_rpc_under_every_load(full_run: tuple[int, Path, Path]) -> None:
    code, json_path, png_path = full_run
    assert code == 0
    r = report.load_file(json_path)
    assert r.target == "local" and (r.seconds, r.warmup) == (0.5, 0.2)
    expected = [(rpc, *load) for load in LOADS for rpc in (workers.FLOOR, *(x for x in workers.RPCS
                                                                            if x != workers.FLOOR))]
    assert [(p.rpc, p.mode, p.clients, p.rate) for p in r.phases] == expected
    assert set(workers.RPCS) == {p.rpc for p in r.phases}
    for p in r.phases:
        s = p.summary
        where = f"{p.rpc} {p.load}: {p.errors_by_code} {p.first_error}"
        assert s.calls > 0 and s.calls_per_second > 0, where
        assert s.errors == 0 and p.errors_by_code == {} and p.first_error == "", where
        assert 0 < s.p50 <= s.p90 <= s.p99 <= s.p999 <= s.max, where
        assert p.batch == (100 if p.rpc == "SubmitOrders" else 1), where
        assert s.items == s.calls * p.batch, where
        assert 0 <= p.checkpointer_cpu_us <= p.server_cpu_us, where  # the server's CPU includes its checkpointer's
        assert p.connections == (min(p.clients, PROCESSES) if p.mode == "closed" else PROCESSES), where
        if p.mode == "open":  # every call due in the measured window is counted (errors are 0)
            assert abs(s.calls - p.rate * r.seconds) <= PROCESSES, where
            assert 0 <= p.send_lag_p50 <= p.send_lag_p99, where
        else:
            assert p.send_lag_p50 == p.send_lag_p99 == 0.0, where
    rows = report.rows(r)
    ratio = report.HEADERS.index("x floor")
    assert all(row[ratio] != "-" for row in rows)  # every phase has its floor, measured in this run
    assert png_path.read_bytes().startswith(PNG_SIGNATURE)


def test_compare_against_the_full_run(full_run: tuple[int, Path, Path]) -> None:
    _code, json_path, _png = full_run
    code, out, err = bench(["--rpcs", "GetNav", "--clients", "1", "--processes", "1", "--duration", "0.3",
                            "--warmup", "0.1", "--compare", str(json_path)])
    assert code == 0, err
    assert "started etf-engine serve on 127.0.0.1:" in out
    assert "GetNav, closed 1" in err and "Ping, closed 1" in err  # a progress line per phase (not a terminal)
    old = report.load_file(json_path)
    assert f"change from {old.date} ({old.command}) to " in out, out
    _, change = out.split(f"change from {old.date} ({old.command}) to ", 1)
    figures = {"calls/s", "p50", "p90", "p99", "p999", "max"}
    for rpc in ("Ping", "GetNav"):
        rows = table_rows(change, rpc)
        assert {row[1] for row in rows} == {"closed 1"}
        assert {row[2] for row in rows} == figures
        for row in rows:
            assert len(row) == 7 and row[6] in ("better", "worse", "-"), row
            assert re.fullmatch(r"[+-]\d+\.\d%|new|0", row[5]), row
            assert float(row[3].replace(",", "")) > 0 and float(row[4].replace(",", "")) > 0, row
    assert not table_rows(change, "SubmitOrders") and not table_rows(change, "GetBasket")


# == end to end: --target, a server the test starts =================================================
@pytest.fixture(scope="module")
def target_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(address, participant token): an in-process server with the bench's fund loaded."""
    issuer_token, participant_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    principals = (Principal("issuer", ISSUER, hash_token(issuer_token)),
                  Principal("dealer", PARTICIPANT, hash_token(participant_token), fixture.PARTICIPANT_ID))
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path_factory.mktemp("target-data"), reflection=False,
                    principals=principals)
    with BackgroundServer(config, ledger=cli.make_ledger("auto")) as server:
        fixture.load_fund(server.target, issuer_token)
        yield server.target, participant_token


def test_target_run(target_server: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, token = target_server
    monkeypatch.setenv("ETF_ENGINE_TOKEN", token)
    json_path = tmp_path / "target.json"
    code = cli.main(["bench", "--target", target, "--fund", fixture.FUND_ID, "--rpcs", "GetNav,CheckOrder",
                     "--clients", "2", "--processes", "2", "--duration", "0.3", "--warmup", "0.1",
                     "--repeat", "2", "--json", str(json_path)])
    assert code == 0
    r = report.load_file(json_path)
    assert r.target == target and r.seconds == 0.6  # two repeats of 0.3 s, pooled into one row each
    assert [(p.rpc, p.load) for p in r.phases] == [("Ping", "closed 2"), ("GetNav", "closed 2"),
                                                   ("CheckOrder", "closed 2")]
    for p in r.phases:
        assert p.summary.calls > 0 and p.summary.errors == 0 and p.errors_by_code == {}, (p.rpc, p.first_error)
        assert p.connections == 2


def test_target_run_with_a_bad_token_counts_errors(target_server: tuple[str, str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target, _token = target_server
    monkeypatch.setenv("ETF_ENGINE_TOKEN", "not-a-token")
    code, out, err = bench(["--target", target, "--fund", fixture.FUND_ID, "--rpcs", "GetNav", "--clients", "1",
                            "--processes", "1", "--duration", "0.2", "--warmup", "0.05",
                            "--json", str(tmp_path / "bad.json")])
    assert code == 0, err
    r = report.load_file(tmp_path / "bad.json")
    assert [p.rpc for p in r.phases] == ["Ping", "GetNav"]
    for p in r.phases:
        assert p.summary.calls == 0 and p.summary.items == 0
        assert p.summary.errors > 0 and p.errors_by_code == {"UNAUTHENTICATED": p.summary.errors}
        assert p.first_error.startswith("UNAUTHENTICATED")
        assert f"{p.rpc} {p.load}: {p.summary.errors} errors (UNAUTHENTICATED {p.summary.errors})" in out
        assert f"{p.summary.errors} errors" in err  # the progress line says so too
    assert {row[report.HEADERS.index("x floor")] for row in report.rows(r)} == {"-"}


def test_percentile_definition_helper_is_exact() -> None:
    """The reference used above really is nearest-rank (so a matching percentile() is too)."""
    ordered = list(range(1, 1001))
    assert nearest_rank(ordered, Fraction(999, 10)) == 999
    assert nearest_rank(ordered, Fraction(100)) == 1000
    assert nearest_rank([5], Fraction(1, 1000)) == 5


def test_progress_bar_stays_its_width_before_the_start() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    progress = bench_run.Progress(out)
    for elapsed in (-0.3, 0.0, 1.2, 2.5, 3.0):
        progress.update("Ping, closed 2", elapsed, 2.5, 10, elapsed - 0.5)
    bars = re.findall(r"\[([#-]*)\]", out.getvalue())
    assert len(bars) == 5 and {len(bar) for bar in bars} == {bench_run.BAR_WIDTH}
    assert bars[0] == "-" * bench_run.BAR_WIDTH and bars[-1] == "#" * bench_run.BAR_WIDTH


def test_plot_without_matplotlib_is_refused_before_the_run(no_run: None, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code, _out, err = bench(["--plot", str(tmp_path / "run.png")])
    assert code == 2 and "--plot needs matplotlib" in err
