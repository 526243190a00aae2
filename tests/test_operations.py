"""What an operations person reads (issue 19): PublishPrices says why each tick was ignored, the
engine's time and the caller's identity are one call away (GetLeader, WhoAmI: what the console reads),
and ``etf-engine --help`` lists every command, ``serve --help`` the HTTP listener.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from test_service import T0, TOKENS, Clock, Desk, config, load_sample, make_ledger, refused

from etf_engine import model as M
from etf_engine.api.access import RULES
from etf_engine.api.server import BackgroundServer
from etf_engine.cli import build_parser
from etf_engine.client import EtfClient, Tick


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    clock = Clock()
    with BackgroundServer(config(test_clock=True), ledger=make_ledger(), clock=clock) as server:
        d = Desk(server, clock)
        load_sample(d.issuer)  # BTC and ETH in USD as of T0 - 1000
        try:
            yield d
        finally:
            d.close()


def test_publish_prices_says_why_each_tick_was_ignored(desk: Desk) -> None:
    reply = desk.issuer.publish_prices([
        Tick("BTC", "USD", "98000", T0 - 5000),  # older than the current price (T0 - 1000)
        Tick("ETH", "USD", "3500", T0 - 1000),  # as old as it
        Tick("ETH", "USD", "3501", T0 - 500),  # applied
    ])
    assert (reply.applied, reply.ignored) == (1, 2)
    assert [(t.index, t.asset, t.currency, t.as_of_unix_ms, t.current_as_of_unix_ms) for t in reply.ignored_ticks] \
        == [(0, "BTC", "USD", T0 - 5000, T0 - 1000), (1, "ETH", "USD", T0 - 1000, T0 - 1000)]
    assert [t.reason for t in reply.ignored_ticks] == [
        "older than the current BTC/USD price: as of 2025-06-15T15:06:35.000Z, the current one as of "
        "2025-06-15T15:06:39.000Z",
        "not newer than the current ETH/USD price: both as of 2025-06-15T15:06:39.000Z"]
    assert desk.issuer.publish_prices([Tick("BTC", "USD", "98000", T0 - 100)]).ignored_ticks == []
    assert M.utc_text(T0) == "2025-06-15T15:06:40.000Z"


def test_get_leader_gives_the_engines_time_test_clock_included(desk: Desk) -> None:
    assert desk.observer.get_leader().now_unix_ms == T0  # the engine's clock, not the wall's
    later = T0 + 5 * 3_600_000
    desk.issuer.advance_clock(later)
    assert desk.ap1.get_leader().now_unix_ms == later  # the offset rides on the (fixed) test clock


@pytest.mark.parametrize(("who", "principal", "role", "participant_id"), [
    ("issuer", "ops", "issuer", ""), ("observer", "auditor", "observer", ""), ("ap1", "ap1", "participant", "AP-1")])
def test_who_am_i_names_the_caller_and_what_its_role_may_call(desk: Desk, who: str, principal: str, role: str,
                                                               participant_id: str) -> None:
    me = desk.clients[who].who_am_i()
    assert (me.principal, me.role, me.participant_id) == (principal, role, participant_id)
    assert list(me.methods) == [path for path, rule in RULES.items() if role in rule.roles]  # test_clock is on
    assert ("/etf_engine.v1.Dealing/GetCapacity" in me.methods) == (role == "participant")
    assert ("/etf_engine.v1.Admin/GetHoldings" in me.methods) == (role != "participant")


def test_who_am_i_leaves_out_advance_clock_without_the_test_clock() -> None:
    with BackgroundServer(config(), ledger=make_ledger(), clock=Clock()) as server, \
            EtfClient(server.target, TOKENS["issuer"]) as issuer:
        assert "/etf_engine.v1.Diagnostics/AdvanceClock" not in issuer.who_am_i().methods
        assert "/etf_engine.v1.Admin/PublishPrices" in issuer.who_am_i().methods
        assert issuer.get_leader().now_unix_ms == T0
    with BackgroundServer(config(), ledger=make_ledger(), clock=Clock()) as server, \
            EtfClient(server.target, "not-a-token") as stranger:
        refused(stranger.who_am_i, grpc.StatusCode.UNAUTHENTICATED)


# == --help ===========================================================================================
def help_of(*argv: str) -> str:
    shown = subprocess.run([sys.executable, "-m", "etf_engine.cli", *argv, "--help"], capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    return " ".join(shown.stdout.split())


def test_help_lists_every_command() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    described = help_of().split("The etf-engine command: ", 1)[1].split(".", 1)[0].split(", ")
    assert described == list(commands) and "init" in described


def test_serve_help_mentions_the_http_listener() -> None:
    text = help_of("serve")
    assert "HTTP listener" in text and "[http] listen" in text and "console" in text and "/metrics" in text
