"""The PostgreSQL journal's writer thread (journal/postgres.py ``WriterThread``): what it runs, in what order,
what a caller gets back, and how it stops. No database: the functions it runs are plain ones."""

from __future__ import annotations

import asyncio
import threading

import pytest

from etf_engine.journal.postgres import WriterThread

pytestmark = pytest.mark.unit


@pytest.fixture
def writer():
    thread = WriterThread("test-writer")
    yield thread
    thread.stop()


def test_it_runs_each_function_on_its_own_thread_in_the_order_handed_over(writer) -> None:
    ran: list[tuple[int, str]] = []

    def note(i: int) -> int:
        ran.append((i, threading.current_thread().name))
        return i * 10

    async def main() -> list[int]:
        return await asyncio.gather(*(writer.run(note, i) for i in range(50)))

    assert asyncio.run(main()) == [i * 10 for i in range(50)]
    assert ran == [(i, "test-writer") for i in range(50)]


def test_an_exception_reaches_the_caller_and_the_thread_goes_on(writer) -> None:
    def fail() -> None:
        raise ValueError("the statement failed")

    async def main() -> str:
        with pytest.raises(ValueError, match="the statement failed"):
            await writer.run(fail)
        return await writer.run(str.upper, "still serving")

    assert asyncio.run(main()) == "STILL SERVING"


def test_a_call_given_up_before_it_started_never_runs(writer) -> None:
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        blocker = asyncio.ensure_future(writer.run(release.wait, 5))
        await asyncio.sleep(0.05)  # the thread is inside release.wait
        given_up = asyncio.ensure_future(writer.run(ran.append, "given up"))
        await asyncio.sleep(0)  # handed over, queued behind the blocker
        given_up.cancel()
        release.set()
        assert await blocker is True
        await writer.run(ran.append, "after")  # in order: the given-up one would have run before this

    asyncio.run(main())
    assert ran == ["after"]


def test_stop_waits_for_what_was_handed_over_and_refuses_more() -> None:
    thread = WriterThread("test-writer")
    ran: list[int] = []
    loop = asyncio.new_event_loop()
    try:
        futures = [loop.create_task(thread.run(ran.append, i)) for i in range(5)]
        loop.run_until_complete(asyncio.sleep(0))  # each task has handed its call over
        thread.stop()
        assert ran == [0, 1, 2, 3, 4]
        loop.run_until_complete(asyncio.gather(*futures))
        with pytest.raises(RuntimeError, match="writer thread has stopped"):
            loop.run_until_complete(thread.run(ran.append, 5))
    finally:
        loop.close()
    assert ran == [0, 1, 2, 3, 4]


def test_a_result_for_a_closed_loop_does_not_kill_the_thread(writer) -> None:
    release = threading.Event()
    loop = asyncio.new_event_loop()
    task = loop.create_task(writer.run(release.wait, 5))
    loop.run_until_complete(asyncio.sleep(0.05))  # running on the thread
    task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    release.set()  # its result now has no loop to go to

    async def main() -> int:
        return await asyncio.wait_for(writer.run(len, "alive"), 5)  # a dead thread would never answer

    assert asyncio.run(main()) == 5
