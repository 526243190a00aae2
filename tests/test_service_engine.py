"""The single writer: group commit, replies released only after the journal, fail-stop on a journal
error, replay, and callers that give up while their events are journaled."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest

from etf_engine import engine as engine_module
from etf_engine import model as M
from etf_engine.api.server import BackgroundServer
from etf_engine.cli import make_ledger
from etf_engine.client import EtfClient
from etf_engine.config import Config
from etf_engine.engine import Engine, NullJournal
from etf_engine.errors import EngineError
from etf_engine.journal import SqliteJournal, recover, state_digest
from etf_engine.ledger import Ledger

T0 = 1_750_000_000_000


def ledger() -> Ledger:
    return make_ledger(os.environ.get("ETF_LEDGER", "auto"))


class GatedJournal(NullJournal):
    """Keeps events in memory; each append waits until the test opens the gate."""

    def __init__(self, events: Iterable[M.Event] = ()) -> None:
        self.events: list[M.Event] = list(events)
        self.appends: list[list[M.Event]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def append(self, events: list[M.Event]) -> None:
        self.waiting.set()
        await self.gate.wait()
        self.waiting.clear()
        self.appends.append(list(events))
        self.events.extend(events)

    def replay(self, after: int = 0) -> Iterable[M.Event]:
        return list(self.events)


class FailingJournal(GatedJournal):
    async def append(self, events: list[M.Event]) -> None:
        raise OSError("disk full")


async def _settle_loop(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_group_commit_and_replies_wait_for_the_journal() -> None:
    async def scenario() -> None:
        journal = GatedJournal()
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()
        journal.gate.clear()
        first = asyncio.ensure_future(engine.execute(M.RegisterAsset(symbol="BTC", decimals=8)))
        await journal.waiting.wait()  # the writer is inside the first batch's append
        rest = [asyncio.ensure_future(engine.execute(M.RegisterAsset(symbol=f"A{i}", decimals=i)))
                for i in range(9)]
        read = asyncio.ensure_future(engine.read(lambda ledger, now_ms: ledger.state(now_ms).assets))
        await _settle_loop()
        assert not first.done() and not read.done()  # nothing is released before it is durable
        journal.gate.set()
        await asyncio.gather(first, *rest)
        assets = await read
        # One append for the first command, one for the nine (and the read) queued behind it.
        assert [len(batch) for batch in journal.appends] == [1, 9]
        assert len(assets) == 10
        assert engine.decimals["A7"] == 7
        await engine.stop()

    asyncio.run(scenario())


def test_a_read_with_nothing_to_wait_for_finishes_in_its_first_step() -> None:
    """A read that can see nothing unjournaled answers at once (``Engine.read``'s shortcut): its coroutine
    returns on its first step. With one command not yet durable it waits (the boundary: the shortcut must
    not take it), and gets the state with that command in it once the command is durable."""
    def step(coroutine: Any) -> Any:
        try:
            coroutine.send(None)
        except StopIteration as finished:
            return finished.value
        coroutine.close()
        return _SUSPENDED

    async def scenario() -> None:
        journal = GatedJournal()
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()
        assets = lambda ledger, now_ms: [a.symbol for a in ledger.state(now_ms).assets]  # noqa: E731
        assert step(engine.read(assets)) == []
        journal.gate.clear()
        pending = asyncio.ensure_future(engine.execute(M.RegisterAsset(symbol="BTC", decimals=8)))
        await journal.waiting.wait()
        assert step(engine.read(assets)) is _SUSPENDED
        waiting = asyncio.ensure_future(engine.read(assets))
        journal.gate.set()
        await pending
        assert await waiting == ["BTC"]
        assert step(engine.read(assets)) == ["BTC"]
        await engine.stop()

    asyncio.run(scenario())


_SUSPENDED = object()


@pytest.mark.parametrize("gather", [60.0, 0.0])
def test_a_commit_takes_in_what_a_busy_loop_runs_and_an_idle_loop_commits_at_once(
        monkeypatch: pytest.MonkeyPatch, gather: float) -> None:
    """While the loop has handlers ready to run, the commit waits for their commands (up to GATHER_SECONDS):
    fewer, larger commits under load. As soon as nothing is ready it commits, however long it may wait."""
    monkeypatch.setattr(engine_module, "GATHER_SECONDS", gather)

    async def scenario() -> None:
        journal = GatedJournal()
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()

        async def handler(i: int) -> None:  # a call whose command runs after i turns of the loop
            await _settle_loop(i)
            await engine.execute(M.RegisterAsset(symbol=f"A{i}", decimals=i % 19))

        # Liveness, not a timing: with GATHER_SECONDS at a minute the commit must not wait for it.
        await asyncio.wait_for(asyncio.gather(*(handler(i) for i in range(30))), timeout=30)
        sizes = [len(batch) for batch in journal.appends]
        assert sum(sizes) == 30
        if gather:
            assert sizes == [30]  # one commit: every command ran while the loop still had handlers ready
        else:
            assert len(sizes) >= 10  # no gathering: a commit as soon as the last one is done
        await engine.stop()

    asyncio.run(scenario())


def test_a_lone_record_is_committed_inline_unless_the_last_commit_held_many(tmp_path: Path) -> None:
    """Light load: a lone record is committed on the loop's thread. Right after a commit of many (load) a
    lone record goes to the journal's thread, where the next ones can join it; after that, inline again."""
    class Watched(SqliteJournal):
        def __init__(self, data_dir: Path) -> None:
            super().__init__(data_dir)
            self.paths: list[tuple[str, int]] = []

        def append_sync(self, events: list[M.Event]) -> None:
            self.paths.append(("inline", len(events)))
            super().append_sync(events)

        async def append(self, events: list[M.Event]) -> None:
            self.paths.append(("thread", len(events)))
            await super().append(events)

    async def scenario() -> None:
        journal = Watched(tmp_path)
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()
        asset = iter(range(100))

        def register() -> Any:
            i = next(asset)
            return engine.execute(M.RegisterAsset(symbol=f"A{i}", decimals=i % 19))

        await register()
        await asyncio.gather(*(register() for _ in range(5)))  # five handlers ready at once: one commit
        await register()
        await register()
        assert journal.paths == [("inline", 1), ("thread", 5), ("thread", 1), ("inline", 1)]
        assert journal.last_seq == 8
        await engine.stop()

    asyncio.run(scenario())


def test_a_caller_that_gives_up_while_journaling_loses_only_its_reply() -> None:
    async def scenario() -> None:
        journal = GatedJournal()
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()
        journal.gate.clear()
        gone = engine.submit(lambda ledger, now_ms: ledger.execute(M.RegisterAsset(symbol="BTC", decimals=8), now_ms))
        stays = engine.submit(lambda ledger, now_ms: ledger.execute(M.RegisterAsset(symbol="ETH", decimals=18),
                                                                    now_ms))
        await journal.waiting.wait()
        gone.cancel()  # e.g. its deadline passed while its events were being journaled
        journal.gate.set()
        await stays
        # The command ran when it was called and is journaled: a retry with the same key finds it.
        assert [e.symbol for batch in journal.appends for e in batch] == ["BTC", "ETH"]
        await engine.stop()

    asyncio.run(scenario())


def test_reads_and_refusals_wait_only_for_what_they_saw() -> None:
    async def scenario() -> None:
        journal = GatedJournal()
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()
        await engine.execute(M.RegisterAsset(symbol="BTC", decimals=8))
        assets = engine.submit(lambda ledger, now_ms: (ledger.state(now_ms).assets, []), writes=False)
        assert assets.done() and len(assets.result()) == 1  # everything it saw is durable: no wait at all
        journal.gate.clear()
        first = engine.submit(lambda ledger, now_ms: ledger.execute(M.RegisterAsset(symbol="ETH", decimals=18),
                                                                    now_ms))
        again = engine.submit(lambda ledger, now_ms: ledger.execute(M.RegisterAsset(symbol="ETH", decimals=18),
                                                                    now_ms))
        seen = engine.submit(lambda ledger, now_ms: (ledger.state(now_ms).assets, []), writes=False)
        await _settle_loop()
        # The refusal (ETH exists) and the read both saw the unjournaled ETH: neither is released yet.
        assert not first.done() and not again.done() and not seen.done()
        journal.gate.set()
        await first
        with pytest.raises(EngineError) as info:
            await again
        assert info.value.code == "ALREADY_EXISTS"
        assert len(await seen) == 2
        await engine.stop()

    asyncio.run(scenario())


def test_replay_rebuilds_state_and_decimals() -> None:
    async def scenario() -> None:
        journal = GatedJournal()
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()
        await engine.execute(M.RegisterAsset(symbol="ETH", decimals=18))
        before = await engine.read(lambda ledger, now_ms: ledger.state(now_ms))
        await engine.stop()

        again = Engine(ledger(), GatedJournal(journal.events), clock=lambda: T0)
        await again.start()
        assert await again.read(lambda ledger, now_ms: ledger.state(now_ms)) == before
        assert again.decimals == {"ETH": 18}
        await again.stop()

    asyncio.run(scenario())


def test_journal_failure_stops_the_engine() -> None:
    async def scenario() -> None:
        engine = Engine(ledger(), FailingJournal(), clock=lambda: T0)
        await engine.start()
        with pytest.raises(EngineError) as info:
            await engine.execute(M.RegisterAsset(symbol="BTC", decimals=8))
        assert info.value.code == "UNAVAILABLE"
        with pytest.raises(EngineError) as info:
            await engine.read(lambda ledger, now_ms: None)
        assert info.value.code == "UNAVAILABLE" and "journal" in info.value.message
        await engine.stop()

    asyncio.run(scenario())


def test_journal_failure_over_grpc_is_unavailable(tmp_path: Path) -> None:
    from etf_engine.api.auth import ISSUER, Principal, hash_token

    config = Config(listen="127.0.0.1:0", data_dir=tmp_path, principals=(Principal("ops", ISSUER, hash_token("t")),))
    with BackgroundServer(config, ledger=ledger(), journal=FailingJournal()) as server:
        with EtfClient(server.target, "t", max_attempts=1) as client:
            for call in (lambda: client.register_asset("BTC", 8), lambda: client.get_holdings("F")):
                with pytest.raises(grpc.RpcError) as info:
                    call()
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_a_failing_read_is_internal_but_a_failing_command_stops_the_engine() -> None:
    def broken(ledger: Ledger, now_ms: int) -> None:
        raise KeyError("bug")

    async def scenario() -> None:
        journal = GatedJournal()
        engine = Engine(ledger(), journal, clock=lambda: T0)
        await engine.start()
        with pytest.raises(EngineError) as info:
            await engine.read(broken)
        assert info.value.code == "INTERNAL"
        await engine.execute(M.RegisterAsset(symbol="BTC", decimals=8))  # still serving

        def half_done(ledger: Ledger, now_ms: int) -> tuple[None, list[M.Event]]:
            raise RuntimeError("crashed part-way")

        ok = engine.execute(M.RegisterAsset(symbol="ETH", decimals=18))
        with pytest.raises(EngineError) as info:
            await asyncio.gather(ok, engine.submit(half_done))
        assert info.value.code == "UNAVAILABLE"
        # Nothing of the failed batch was journaled, so a restart rebuilds exactly what was acknowledged.
        assert [len(batch) for batch in journal.appends] == [1]
        assert engine.failure is not None
        await engine.stop()

    asyncio.run(scenario())


def test_concurrent_commands_share_commits_and_all_survive(tmp_path: Path) -> None:
    async def scenario() -> str:
        journal = SqliteJournal(tmp_path)
        engine = Engine(ledger(), journal, clock=lambda: T0)
        commits = []
        engine.on_commit.append(lambda _seconds, events: commits.append(events))
        await engine.start()
        results = await asyncio.gather(*(engine.execute(M.RegisterAsset(symbol=f"A{i}", decimals=i % 19))
                                         for i in range(200)))
        assert results == [None] * 200
        assert 1 <= len(commits) < 200 and sum(commits) == 200  # group commit: many commands per fsync
        assert journal.last_seq == 200
        digest = engine.digest()
        await engine.stop()
        return digest

    digest = asyncio.run(scenario())
    journal = SqliteJournal(tmp_path)
    try:
        assert state_digest(recover(journal, ledger()).state(T0)) == digest
    finally:
        journal.close()


def test_a_lone_command_commits_on_the_loop_without_waiting(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal = SqliteJournal(tmp_path)
        engine = Engine(ledger(), journal, clock=lambda: T0)
        commits = []
        engine.on_commit.append(lambda _seconds, events: commits.append(events))
        await engine.start()
        await asyncio.sleep(0)  # let start-up's own callbacks run: nothing else is ready now
        future = engine.submit(lambda ledger, now_ms: ledger.execute(M.RegisterAsset(symbol="BTC", decimals=8),
                                                                     now_ms))
        # Light load: committed (fsynced) inside the call itself, the reply ready at once.
        assert future.done() and commits == [1] and journal.last_seq == 1
        await engine.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["core", "reference"])
def test_a_clean_stop_restarts_to_the_digest_it_logged(tmp_path: Path, kind: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Time moved on after the last event (an unbonding lot released, read by a caller) before the
    stop: the restart, from the stop's snapshot where the ledger can restore one and from the whole
    journal where it cannot (the reference), comes back to the digest logged at the stop."""
    from etf_engine.ledger import make_ledger
    from tests.test_journal import NOW, commands

    now = [NOW]

    async def run(commands: list, *, later: bool) -> None:
        engine = Engine(make_ledger(kind), SqliteJournal(tmp_path), clock=lambda: now[0])
        await engine.start()
        for command in commands:  # unstakes 40 ETH with 60 s of unbonding
            await engine.execute(command)
        if later:
            now[0] = NOW + 120_000  # the lot is released by now
            await engine.read(lambda ledger, now_ms: ledger.get_holdings("F-1", now_ms))
        await engine.stop()

    def logged(when: str) -> list[str]:
        prefix = f"state digest at {when}: "
        return [r.getMessage().removeprefix(prefix) for r in caplog.records if r.getMessage().startswith(prefix)]

    with caplog.at_level(logging.INFO, logger="etf_engine.engine"):
        asyncio.run(run(commands(), later=True))
        asyncio.run(run([], later=False))
    assert (tmp_path / "snapshot.bin").exists()
    stop, start = logged("stop"), logged("start")
    assert len(stop) == 2 and len(start) == 2
    assert start[1] == stop[0]
