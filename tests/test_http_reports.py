"""Reports over HTTP and on the command line (SPEC §21): ``GET /reports/NAME.csv`` on a real server's HTTP
listener (HTTP/1.1 and h2c) and ``etf-engine report`` run as a subprocess, each equal to the gRPC reply of
the same request (``report_csv`` of it, or the reply itself in protobuf JSON); then every refusal, tried as
an attacker would: no token, a foreign one, a role the RPC does not admit, an unknown report, parameters unknown,
repeated, not UTF-8 or not numbers, a query string too long, paths that climb out of /reports/, methods
other than GET and HEAD. Each refusal is a plain-text "CODE: message" naming what was wrong, with the
HTTP status of its code (Connect's table; FAILED_PRECONDITION 412), and is counted in /metrics. README's
Reports section's commands are what the command and the listener take.

The books the reports read (module fixture ``desk``): test_service's sample fund F1, forward priced on
the DESK calendar (Hong Kong, every day deals), C2's BTC adjusted twice with awkward reasons (a comma,
quotes and a line break; a would-be formula), a creation and two refused orders (a redemption beyond the staking
cap, a creation beyond AP-1's limit) before Monday's cut-off, Monday's official NAV, a staking reward,
C1's statement opening breaks that are resolved with an awkward comment (four eyes), the creation
settled, Tuesday's official NAV and a creation accepted for Wednesday.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shlex
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from test_http import metrics
from test_service import FUND, FUND2, TOKENS, Desk
from test_service_books import serving_sample
from test_service_dealing_day import MONDAY, MONDAY_CUTOFF, OFFICIAL, TUESDAY, forward_fund

from etf_engine import cli
from etf_engine.api import reports
from etf_engine.api.http import MAX_REPORT_QUERY, report_request
from etf_engine.client import StatementLine, Tick
from etf_engine.errors import EngineError
from etf_engine.report_csv import REPORTS, file_name, method, report_csv

DAY = 86_400_000
AWKWARD = 'held back, "per" the custodian\nletter 7, line 2'
FORMULA = "=1+2 as the letter says"


def books(desk: Desk) -> None:
    issuer = desk.issuer
    issuer.adjust_holding(FUND, "C2", "BTC", "0.5", AWKWARD)
    issuer.adjust_holding(FUND, "C2", "BTC", "-0.5", FORMULA)
    forward_fund(issuer)
    desk.ap1.submit_order(FUND, "CREATE", 1, "rep-create")
    desk.ap2.submit_order(FUND, "REDEEM", 1, "rep-redeem")  # REJECTED: the staking cap
    desk.ap1.submit_order(FUND, "CREATE", 21, "rep-too-many")  # REJECTED: over AP-1's 20 an order
    issuer.advance_clock(MONDAY_CUTOFF)
    issuer.strike_nav(FUND, MONDAY, OFFICIAL)
    issuer.record_staking_reward(FUND, "C1", "ETH", "0.5")
    at = issuer.get_leader().now_unix_ms
    issuer.record_statement(FUND, "C1", at, "C1-2025-06-16", [
        StatementLine("BTC", "AVAILABLE", "150"), StatementLine("ETH", "AVAILABLE", "1105"),
        StatementLine("ETH", "STAKED", "894")])
    for b in issuer.list_breaks(FUND, "OPEN"):
        proposed = issuer.resolve_break(b.break_id, "0", AWKWARD)
        desk.clients["issuer2"].approve_instruction(proposed.instruction_id)
    issuer.advance_clock(MONDAY_CUTOFF + DAY)
    create = next(o for o in issuer.list_orders(FUND) if o.client_order_id == "rep-create")
    issuer.settle_order(create.order_id)
    tuesday = [Tick("BTC", "USD", "99000", MONDAY_CUTOFF + DAY), Tick("ETH", "USD", "3400", MONDAY_CUTOFF + DAY)]
    issuer.strike_nav(FUND, TUESDAY, tuesday)
    issuer.publish_prices(tuesday)
    desk.ap2.submit_order(FUND, "CREATE", 2, "rep-wednesday")  # ACCEPTED, for Wednesday: receivable


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    with serving_sample(tmp_path_factory.mktemp("reports"), books) as d:
        yield d


@pytest.fixture(scope="module", params=["http1", "h2c"])
def web(desk: Desk, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    h2c = request.param == "h2c"  # HTTP/2 with prior knowledge, as the listener serves it in clear text
    with httpx.Client(base_url=desk.server.http_url, http1=not h2c, http2=h2c, timeout=30) as client:
        yield client


SUNDAY = "2025-06-15"  # T0's date in Hong Kong: the fund's creation, its opening adjustments, the first orders
PERIOD = {"fund_id": FUND, "from": SUNDAY, "to": TUESDAY}
# (report NAME, its request's fields as a query, the file's name)
CASES: list[tuple[str, dict[str, str], str]] = [
    ("daily", {"fund_id": FUND, "dealing_date": MONDAY}, f"daily-F1-{MONDAY}.csv"),
    ("daily", {"fund_id": FUND, "dealing_date": TUESDAY, "closing_price": "13.70"}, f"daily-F1-{TUESDAY}.csv"),
    ("holdings", {"fund_id": FUND, "as_of": str(MONDAY_CUTOFF)}, "holdings-F1-2025-06-16T080000Z.csv"),
    ("holdings", {"fund_id": FUND}, ""),  # now: named by the reply's as_of
    ("roll-forward", PERIOD, f"roll-forward-F1-{SUNDAY}_{TUESDAY}.csv"),
    ("staking", PERIOD, f"staking-F1-{SUNDAY}_{TUESDAY}.csv"),
    ("breaks", PERIOD, f"breaks-F1-{SUNDAY}_{TUESDAY}.csv"),
    ("participant-activity", PERIOD, f"participant-activity-F1-{SUNDAY}_{TUESDAY}.csv"),
    ("participant-activity", PERIOD | {"participant_id": "AP-1"}, f"participant-activity-F1-{SUNDAY}_{TUESDAY}.csv"),
]
IDS = [f"{name}-{'-'.join(v for k, v in query.items() if k != 'fund_id')}" for name, query, _file in CASES]


def request_of(name: str, query: dict[str, str]) -> Message:
    return json_format.ParseDict(query, GetMessageClass(method(name).input_type)())


def grpc_reply(desk: Desk, name: str, query: dict[str, str], who: str = "observer") -> Message:
    return desk.clients[who].report(REPORTS[name], request_of(name, query))


def get(web: httpx.Client, path: str, token: str | None = "observer", **kwargs: Any) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {TOKENS.get(token, token)}"}
    return web.request(kwargs.pop("method", "GET"), path, headers=headers, **kwargs)


# == the CSV over HTTP is the gRPC reply's ========================================================
def test_the_books_give_every_report_something_to_show(desk: Desk) -> None:
    assert [n.dealing_date for n in desk.observer.list_official_navs(FUND)] == [MONDAY, TUESDAY]
    assert [b.status for b in desk.observer.list_breaks(FUND)] and not desk.observer.list_breaks(FUND, "OPEN")
    assert {o.status for o in desk.observer.list_orders(FUND)} == {1, 2, 3}  # ACCEPTED, REJECTED, SETTLED


@pytest.mark.parametrize(("name", "query", "file"), CASES, ids=IDS)
def test_csv_over_http_is_the_grpc_reply_as_csv(desk: Desk, web: httpx.Client, name: str, query: dict[str, str],
                                                 file: str) -> None:
    response = get(web, f"/reports/{name}.csv", params=query)
    assert response.status_code == 200, response.text
    reply = grpc_reply(desk, name, query)
    assert response.content == report_csv(reply).encode()
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    expected = file or file_name(name, request_of(name, query), reply)
    assert response.headers["content-disposition"] == f'attachment; filename="{expected}"'
    assert response.text.startswith(report_csv(type(reply)()).split("\r\n")[0] + "\r\n")  # the header row first


def test_the_awkward_texts_travel_quoted(desk: Desk, web: httpx.Client) -> None:
    """The adjustments' reasons (a comma, quotes, a line break; a would-be formula) in the roll-forward,
    the breaks' comment in the break report: quoted as RFC 4180 says, read back as they were written."""
    quoted = '"held back, ""per"" the custodian\nletter 7, line 2"'
    roll = get(web, "/reports/roll-forward.csv", params=PERIOD).text
    assert quoted in roll and f",'{FORMULA}," in roll
    rows = csv.DictReader(io.StringIO(roll, newline=""))
    btc = [r for r in rows if (r["item"], r["kind"]) == ("BTC", "adjustment")]
    assert [(r["amount"], r["reason"]) for r in btc][-2:] == [("0.5", AWKWARD), ("-0.5", f"'{FORMULA}")]
    breaks = get(web, "/reports/breaks.csv", params=PERIOD).text
    comments = [r["break_record.comment"] for r in csv.DictReader(io.StringIO(breaks, newline=""))]
    assert comments and set(comments) == {AWKWARD} and quoted in breaks


def test_head_is_get_without_the_body(web: httpx.Client) -> None:
    query = {"fund_id": FUND, "dealing_date": MONDAY}
    full = get(web, "/reports/daily.csv", params=query)
    head = get(web, "/reports/daily.csv", params=query, method="HEAD")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(full.content))
    assert head.headers["content-disposition"] == full.headers["content-disposition"]


def test_both_spellings_of_a_field_and_form_encoding(desk: Desk, web: httpx.Client) -> None:
    snake = get(web, "/reports/roll-forward.csv", params=PERIOD)
    camel = get(web, f"/reports/roll-forward.csv?fundId={FUND}&from={SUNDAY}&to={TUESDAY}")
    assert (camel.status_code, camel.content) == (200, snake.content)
    spaced = get(web, "/reports/daily.csv?fund_id=F1&dealing_date=2025-06-16&closing_price=+13.70")
    assert spaced.status_code == 400 and "closing_price" in spaced.text  # "+" is a space: " 13.70", refused


def test_a_participant_reads_its_own_activity(desk: Desk, web: httpx.Client) -> None:
    response = get(web, "/reports/participant-activity.csv", token="ap1", params=PERIOD)
    assert response.status_code == 200, response.text
    assert response.content == report_csv(grpc_reply(desk, "participant-activity", PERIOD, who="ap1")).encode()
    own = get(web, "/reports/participant-activity.csv", token="ap1", params=PERIOD | {"participant_id": "AP-1"})
    assert own.status_code == 200, own.text


# == refusals =====================================================================================
DAILY = f"/reports/daily.csv?fund_id={FUND}&dealing_date={MONDAY}"
LISTED = "daily.csv, holdings.csv, roll-forward.csv, staking.csv, breaks.csv, participant-activity.csv"


@pytest.mark.parametrize(("path", "token", "status", "says"), [
    # who calls
    (DAILY, None, 401, "UNAUTHENTICATED: missing authorization"),
    (DAILY, "nobody", 401, "UNAUTHENTICATED: unknown token"),
    (DAILY, "ap-unregistered", 403, "PERMISSION_DENIED: role participant may not call DailyReport"),
    (DAILY, "ap1", 403, "PERMISSION_DENIED: role participant may not call DailyReport"),
    ("/reports/holdings.csv?fund_id=F1", "ap2", 403, "PERMISSION_DENIED: role participant may not call HoldingsReport"),
    (f"/reports/participant-activity.csv?fund_id=F1&from={SUNDAY}&to={TUESDAY}&participant_id=AP-2",
     "ap1", 403, "PERMISSION_DENIED"),
    # what is asked
    ("/reports/weekly.csv?fund_id=F1", "observer", 404, f"NOT_FOUND: no report 'weekly.csv'; the reports: {LISTED}"),
    ("/reports/daily", "observer", 404, "NOT_FOUND: no report 'daily'"),
    ("/reports/daily.CSV", "observer", 404, "NOT_FOUND: no report 'daily.CSV'"),
    ("/reports/" + "x" * 300 + ".csv", "observer", 404, "NOT_FOUND: no report '" + "x" * 64 + "'… (304 characters)"),
    (f"/reports/daily.csv?fund_id=F9&dealing_date={MONDAY}", "observer", 404, "NOT_FOUND"),
    ("/reports/daily.csv?fund_id=F1&dealing_date=2025-06-20", "observer", 404, "NOT_FOUND"),
    (f"/reports/daily.csv?fund_id={FUND}&dealing_date={MONDAY}&token=tok-observer", "observer", 400,
     "INVALID_ARGUMENT: unknown parameter 'token': DailyReport takes fund_id, dealing_date, closing_price"),
    (f"/reports/daily.csv?fund_id={FUND}&fund_id={FUND2}&dealing_date={MONDAY}", "observer", 400,
     "INVALID_ARGUMENT: fund_id: given more than once"),
    (f"/reports/daily.csv?fund_id={FUND}&fundId={FUND}&dealing_date={MONDAY}", "observer", 400,
     "INVALID_ARGUMENT: fund_id: given more than once"),
    (f"/reports/daily.csv?fund_id={FUND}&dealing_date", "observer", 400, "INVALID_ARGUMENT: dealing_date: no value"),
    ("/reports/daily.csv?fund_id=F%FF1&dealing_date=2025-06-16", "observer", 400,
     "INVALID_ARGUMENT: fund_id: not UTF-8 once percent-decoded"),
    ("/reports/daily.csv?%C0%AEfund_id=F1", "observer", 400,
     "INVALID_ARGUMENT: a parameter's name: not UTF-8 once percent-decoded"),
    ("/reports/holdings.csv?fund_id=F1&as_of=2025-06-16", "observer", 400,
     "INVALID_ARGUMENT: as_of: '2025-06-16' is not an integer of 64 bits (unix ms)"),
    ("/reports/holdings.csv?fund_id=F1&as_of=9223372036854775808", "observer", 400,
     "INVALID_ARGUMENT: as_of: '9223372036854775808' is not an integer of 64 bits"),
    ("/reports/holdings.csv?fund_id=F1&lines=x", "observer", 400, "INVALID_ARGUMENT: unknown parameter 'lines'"),
    ("/reports/holdings.csv?fund_id=F1&" + "a" * (MAX_REPORT_QUERY + 1), "observer", 414,
     f"INVALID_ARGUMENT: query string: longer than {MAX_REPORT_QUERY} bytes"),
])
def test_refusals_name_what_was_wrong(web: httpx.Client, path: str, token: str | None, status: int,
                                      says: str) -> None:
    response = get(web, path, token=token)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith(says) and response.text.endswith("\n"), response.text
    assert "Traceback" not in response.text and "content-disposition" not in response.headers


@pytest.mark.parametrize("verb", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head(web: httpx.Client, verb: str) -> None:
    response = get(web, DAILY, method=verb, content=b"fund_id=F1")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD")
    assert get(web, "/reports/nothing.csv", method=verb).status_code == 404  # no report, whatever the method


def raw(desk: Desk, target: str, token: str = TOKENS["observer"]) -> tuple[int, bytes]:
    """A GET of ``target`` exactly as written (http.client sends it as it is; httpx would resolve the dots)."""
    host, port = desk.server.http_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", target, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_query_string_beyond_the_servers_limits(desk: Desk, web: httpx.Client) -> None:
    """hypercorn refuses a request line beyond its own limit before the router sees it; the server lives on."""
    status, _body = raw(desk, "/reports/daily.csv?fund_id=" + "F" * 100_000)
    assert 400 <= status < 500 and status != 414
    assert get(web, DAILY).status_code == 200


@pytest.mark.parametrize("target", [
    "/reports/../metrics", "/reports/%2e%2e/metrics", "/reports/..%2fmetrics.csv", "/reports/daily.csv/../../metrics",
    "/reports/..%2f..%2fconsole%2fapp.js", "/reports/%2e%2e%2fdaily.csv", "/reports//daily.csv",
    "/reports/daily.csv%00", "/reports/./daily.csv", "/reports/%64aily.csv/..",
])
def test_paths_that_climb_out_name_no_report(desk: Desk, target: str) -> None:
    status, body = raw(desk, target)
    assert status == 404, (target, body)
    assert body.startswith(b"NOT_FOUND: no report") and b"etf_engine_" not in body


def test_a_percent_encoded_name_is_the_name(desk: Desk) -> None:
    status, body = raw(desk, f"/reports/%64aily.csv?fund_id={FUND}&dealing_date={MONDAY}")
    assert status == 200 and body.startswith(b"section,item,field,value\r\n")


@pytest.mark.parametrize(("code", "status"), [
    ("FAILED_PRECONDITION", 412), ("NOT_FOUND", 404), ("INVALID_ARGUMENT", 400), ("OUT_OF_RANGE", 400),
    ("PERMISSION_DENIED", 403), ("UNAVAILABLE", 503), ("UNIMPLEMENTED", 501), ("RESOURCE_EXHAUSTED", 429),
])
def test_each_code_has_its_status(web: httpx.Client, monkeypatch: pytest.MonkeyPatch, code: str, status: int) -> None:
    async def refused(self: Any, request: Any, context: Any) -> Any:
        raise EngineError(code, f"{code.split('_')[0]}_REASON: fund_id: as the servicer says")

    monkeypatch.setattr(reports.ReportsServicer, "DailyReport", refused)
    response = get(web, DAILY)
    assert (response.status_code, response.text) == (status, f"{code}: {code.split('_')[0]}_REASON: fund_id: as "
                                                             "the servicer says\n")


def test_a_failure_of_the_server_is_500_and_no_python(web: httpx.Client, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async def broken(self: Any, request: Any, context: Any) -> Any:
        raise KeyError("secret internals")

    monkeypatch.setattr(reports.ReportsServicer, "HoldingsReport", broken)
    response = get(web, "/reports/holdings.csv?fund_id=F1")
    assert (response.status_code, response.text) == (500, "INTERNAL: internal error (logged by the server)\n")
    assert "secret" not in response.text


def test_reports_over_get_are_counted(desk: Desk, web: httpx.Client) -> None:
    def count(code: str) -> float:
        key = (("code", code), ("method", "Reports/DailyReport"), ("protocol", "csv"))
        return metrics(desk).get("etf_engine_rpc_calls_total", {}).get(key, 0.0)

    before = count("OK"), count("UNAUTHENTICATED"), count("INVALID_ARGUMENT")
    get(web, DAILY)
    get(web, DAILY, token=None)
    get(web, DAILY + "&x=1")
    assert (count("OK"), count("UNAUTHENTICATED"), count("INVALID_ARGUMENT")) == tuple(b + 1 for b in before)


# == etf-engine report ============================================================================
OPTIONS = {"fund_id": "--fund", "dealing_date": "--date", "as_of": "--as-of", "from": "--from",
           "to": "--to", "closing_price": "--closing-price", "participant_id": "--participant"}
ONE_EACH = {name: query for name, query, _file in reversed(CASES)}  # each report's first case


class Ran:
    def __init__(self, done: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = done.returncode
        self.stdout = done.stdout.decode()  # as printed: "\r\n" kept
        self.stderr = done.stderr.decode()


def run_report(desk: Desk, *args: str, token: str = TOKENS["observer"]) -> Ran:
    env = {**os.environ, "ETF_ENGINE_TOKEN": token}
    return Ran(subprocess.run([sys.executable, "-m", "etf_engine.cli", "report", *args, "--server", desk.target],
                              capture_output=True, env=env, timeout=60, cwd=Path(__file__).parent.parent))


def arguments(query: dict[str, str]) -> list[str]:
    return [part for field, value in query.items() for part in (OPTIONS[field], value)]


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("name", list(REPORTS))
def test_the_command_prints_the_grpc_reply(desk: Desk, name: str, fmt: str) -> None:
    query = ONE_EACH[name]
    done = run_report(desk, name, *arguments(query), "--format", fmt)
    assert (done.returncode, done.stderr) == (0, "")
    reply = grpc_reply(desk, name, query)
    if fmt == "csv":
        assert done.stdout == report_csv(reply)
    else:
        printed = json.loads(done.stdout)
        assert json_format.ParseDict(printed, type(reply)()) == reply
        assert set(printed) == {f.name for f in reply.DESCRIPTOR.fields}  # every field, by its proto name


def test_the_command_takes_an_iso_time(desk: Desk) -> None:
    done = run_report(desk, "holdings", "--fund", FUND, "--as-of", "2025-06-16T16:00:00+08:00")
    assert done.returncode == 0, done.stderr
    assert done.stdout == report_csv(grpc_reply(desk, "holdings", {"fund_id": FUND, "as_of": str(MONDAY_CUTOFF)}))


def test_a_refusal_exits_1_with_its_code(desk: Desk) -> None:
    done = run_report(desk, "daily", "--fund", FUND, "--date", "2025-06-20")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("etf-engine report: NOT_FOUND: "), done.stderr
    done = run_report(desk, "daily", "--fund", FUND, "--date", MONDAY, token=TOKENS["ap1"])
    assert (done.returncode, done.stderr) == (1, "etf-engine report: PERMISSION_DENIED: role participant may not "
                                                 "call DailyReport\n")
    done = run_report(desk, "holdings", "--fund", FUND, token="nobody")
    assert (done.returncode, done.stderr) == (1, "etf-engine report: UNAUTHENTICATED: unknown token\n")


@pytest.mark.parametrize(("args", "says"), [
    (["daily", "--fund", FUND], "--date is required for daily (it takes --fund --date --closing-price)"),
    (["daily", "--fund", FUND, "--date", "2025-02-30"], "--date '2025-02-30': not a date (YYYY-MM-DD)"),
    (["daily", "--fund", FUND, "--date", "20250616"], "--date '20250616': not a date (YYYY-MM-DD)"),
    (["holdings", "--fund", FUND, "--date", MONDAY], "--date does not apply to holdings (it takes --fund --as-of)"),
    (["holdings", "--fund", FUND, "--as-of", "yesterday"],
     "--as-of: 'yesterday' is neither unix milliseconds nor an ISO 8601 date-time"),
    (["roll-forward", "--fund", FUND, "--from", MONDAY], "--to is required for roll-forward"),
    (["breaks", "--fund", FUND, "--from", TUESDAY, "--to", MONDAY], f"--from {TUESDAY} is after --to {MONDAY}"),
    (["staking", "--fund", FUND, "--from", MONDAY, "--to", TUESDAY, "--participant", "AP-1"],
     "--participant does not apply to staking"),
    (["participant-activity", "--fund", FUND, "--from", MONDAY, "--to", TUESDAY, "--closing-price", "1"],
     "--closing-price does not apply to participant-activity"),
])
def test_bad_arguments_exit_2_naming_the_argument(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                  args: list[str], says: str) -> None:
    monkeypatch.setenv("ETF_ENGINE_TOKEN", TOKENS["observer"])
    assert cli.main(["report", *args, "--server", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"etf-engine report: {says}"), err


@pytest.mark.parametrize("args", [["weekly", "--fund", FUND], ["daily", "--date", MONDAY],
                                  ["holdings", "--fund", FUND, "--format", "xml"]])
def test_argparse_refusals_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["report", *args])
    assert exited.value.code == 2
    assert "etf-engine report: error: " in capsys.readouterr().err


def test_no_token_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETF_ENGINE_TOKEN", raising=False)
    assert cli.main(["report", "holdings", "--fund", FUND]) == 2
    assert "ETF_ENGINE_TOKEN" in capsys.readouterr().err


def test_an_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETF_ENGINE_TOKEN", TOKENS["observer"])
    assert cli.main(["report", "holdings", "--fund", FUND, "--server", "127.0.0.1:1"]) == 1
    assert capsys.readouterr().err.startswith("etf-engine report: UNAVAILABLE: ")


def test_the_grpc_rpcs_refuse_as_the_csv_does(desk: Desk) -> None:
    """The one role table: what GET /reports refuses a participant, gRPC refuses too."""
    with pytest.raises(grpc.RpcError) as refused:
        grpc_reply(desk, "daily", {"fund_id": FUND, "dealing_date": MONDAY}, who="ap1")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


# == README's Reports section =====================================================================
def readme_commands() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Reports\n", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```bash\n")[1:]]
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_readmes_commands_are_what_the_command_and_the_listener_take() -> None:
    commands = readme_commands()
    reports_run = [shlex.split(c.split(">")[0]) for c in commands if c.startswith("etf-engine report ")]
    assert len(reports_run) == 2
    for argv in reports_run:
        args = cli.build_parser().parse_args(argv[1:])
        assert args.func is cli.cmd_report and args.fund == "HK-BTCETH"
    [curl] = [c for c in commands if c.startswith("curl ")]
    url = urllib.parse.urlsplit(shlex.split(curl)[-1])
    name = url.path.removeprefix("/reports/").removesuffix(".csv")
    request = report_request(REPORTS[name], url.query.encode())
    assert request == request_of(name, dict(urllib.parse.parse_qsl(url.query)))
