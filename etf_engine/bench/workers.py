"""The client side of a benchmark: worker processes, each with one gRPC channel and many tasks.

One Python process saturates its own core long before a server does, so the load comes from
several processes (spawned, never forked: gRPC does not survive a fork). Each worker keeps its
channel open across phases and waits on its pipe for the next ``Phase``.

Closed loop: each task sends a call, waits for the reply, sends the next. Latency is reply time
minus send time.

Open loop: calls are due at a fixed rate whatever the replies do. Latency is reply time minus the
time the call was *due*, so a server that falls behind shows its queue instead of slowing the
sender down and hiding it (coordinated omission). Calls in flight are capped (``max_inflight``);
a call held back by the cap still counts from its due time.

Only calls sent (closed) or due (open) inside the measured window count; the warm-up before it
opens connections, fills caches and lets the server's batches settle.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import time
from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import msgspec

from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc

RPCS = ("Ping", "SubmitOrder", "SubmitOrders", "CheckOrder", "GetNav", "GetBasket")
FLOOR = "Ping"
CALL_TIMEOUT_SECONDS = 30.0
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024)]


class Phase(msgspec.Struct, frozen=True):
    """What one worker does in one phase. Times are ``time.monotonic_ns()``, which all processes on
    one Linux machine share."""

    rpc: str
    mode: str  # "closed" or "open"
    tasks: int  # closed loop: concurrent clients in this worker
    rate: float  # open loop: calls per second from this worker
    batch: int  # SubmitOrders: orders per call
    fund_id: str
    tag: str  # makes client_order_ids unique across phases and runs
    start_ns: int  # warm-up starts
    measure_ns: int  # the measured window opens
    end_ns: int  # nothing is sent after this
    max_inflight: int = 10_000


class Outcome(msgspec.Struct, frozen=True):
    latencies: bytes  # array('q') of nanoseconds, one per successful measured call
    errors: dict[str, int]  # status code name -> measured calls that failed with it
    first_error: str = ""
    cpu_ns: int = 0  # this process's CPU time from the window's opening to its last reply
    lags: bytes = b""  # open loop: array('q') of send time - due time, one per measured call


def request_maker(rpc_name: str, fund_id: str, tag: str, batch: int) -> Callable[[int], Any]:
    """i -> the i-th request of this task (order requests carry unique client_order_ids)."""
    create = pb.Side.CREATE
    if rpc_name == "Ping":
        ping = pb.PingRequest()
        return lambda i: ping
    if rpc_name == "SubmitOrder":
        return lambda i: pb.SubmitOrderRequest(fund_id=fund_id, side=create, units=1, client_order_id=f"{tag}-{i}")
    if rpc_name == "SubmitOrders":
        def orders(i: int) -> pb.SubmitOrdersRequest:
            return pb.SubmitOrdersRequest(requests=[
                pb.OrderRequest(fund_id=fund_id, side=create, units=1, client_order_id=f"{tag}-{i}-{k}")
                for k in range(batch)])
        return orders
    if rpc_name == "CheckOrder":
        check = pb.CheckOrderRequest(fund_id=fund_id, side=pb.Side.REDEEM, units=1, client_order_id=f"{tag}-check")
        return lambda i: check
    if rpc_name == "GetNav":
        nav = pb.GetNavRequest(fund_id=fund_id)
        return lambda i: nav
    if rpc_name == "GetBasket":
        basket = pb.GetBasketRequest(fund_id=fund_id)
        return lambda i: basket
    raise ValueError(f"unknown rpc {rpc_name!r} (expected one of {', '.join(RPCS)})")


def stub_method(channel: grpc.aio.Channel, rpc_name: str) -> Any:
    service = rpc.DiagnosticsStub if rpc_name == "Ping" else (
        rpc.ValuationStub if rpc_name in ("GetNav", "GetBasket") else rpc.DealingStub)
    return getattr(service(channel), rpc_name)


class _Recorder:
    """Collects one worker's measured calls; publishes the running count for the progress bar."""

    def __init__(self, counter: Any, index: int, measure_ns: int) -> None:
        self.latencies = array("q")
        self.lags = array("q")
        self.errors: Counter[str] = Counter()
        self.first_error = ""
        self._counter = counter
        self._index = index
        self._measure_ns = measure_ns
        self._cpu_from = 0

    def done(self, counted_from: int, finished: int) -> None:
        if counted_from >= self._measure_ns:
            self.latencies.append(finished - counted_from)
            self._counter[self._index] = len(self.latencies)

    def sent(self, due: int, at: int) -> None:
        if due >= self._measure_ns:
            self.lags.append(at - due)

    def failed(self, counted_from: int, error: grpc.aio.AioRpcError) -> None:
        if counted_from >= self._measure_ns:
            self.errors[error.code().name] += 1
            if not self.first_error:
                self.first_error = f"{error.code().name}: {error.details()}"

    def open_window(self) -> None:
        self._cpu_from = time.process_time_ns()

    def outcome(self) -> Outcome:
        return Outcome(self.latencies.tobytes(), dict(self.errors), self.first_error,
                       time.process_time_ns() - self._cpu_from, self.lags.tobytes())


async def _sleep_until(when_ns: int) -> None:
    delay = when_ns - time.monotonic_ns()
    if delay > 0:
        await asyncio.sleep(delay / 1e9)


async def run_phase(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], phase: Phase,
                    recorder: _Recorder, worker: int) -> None:
    method = stub_method(channel, phase.rpc)
    clock = time.monotonic_ns
    loop = asyncio.get_running_loop()
    loop.call_later((phase.measure_ns - clock()) / 1e9, recorder.open_window)
    await _sleep_until(phase.start_ns)

    if phase.mode == "closed":
        async def client(task: int) -> None:
            make = request_maker(phase.rpc, phase.fund_id, f"{phase.tag}-w{worker}-t{task}", phase.batch)
            i = 0
            while (sent := clock()) < phase.end_ns:
                try:
                    await method(make(i), metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
                except grpc.aio.AioRpcError as e:
                    recorder.failed(sent, e)
                else:
                    recorder.done(sent, clock())
                i += 1

        await asyncio.gather(*(client(t) for t in range(phase.tasks)))
        return

    make = request_maker(phase.rpc, phase.fund_id, f"{phase.tag}-w{worker}", phase.batch)
    slots = asyncio.Semaphore(phase.max_inflight)

    async def call(due: int, request: Any) -> None:
        recorder.sent(due, clock())  # how late the timer (and the cap on calls in flight) let it go
        try:
            await method(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as e:
            recorder.failed(due, e)
        else:
            recorder.done(due, clock())
        finally:
            slots.release()

    interval = 1e9 / phase.rate
    in_flight: set[asyncio.Task[None]] = set()
    i = 0
    while (due := phase.start_ns + int(i * interval)) < phase.end_ns:
        await _sleep_until(due)
        await slots.acquire()
        task = asyncio.create_task(call(due, make(i)))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        i += 1
    if in_flight:
        await asyncio.gather(*in_flight)


async def _serve(conn: multiprocessing.connection.Connection, index: int, target: str, token: str,
                 counter: Any) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        conn.send("ready")
        while (phase := conn.recv()) is not None:
            recorder = _Recorder(counter, index, phase.measure_ns)
            counter[index] = 0
            await run_phase(channel, metadata, phase, recorder, index)
            conn.send(recorder.outcome())


def worker_main(conn: multiprocessing.connection.Connection, index: int, target: str, token: str,
                counter: Any) -> None:
    """Entry point of a worker process: run phases until the pipe sends None."""
    try:
        asyncio.run(_serve(conn, index, target, token, counter))
    except KeyboardInterrupt:  # the parent was interrupted too and reports it
        pass
    finally:
        conn.close()


class WorkerPool:
    """``processes`` spawned workers; ``run`` spreads a phase over them and gathers the outcomes."""

    def __init__(self, processes: int, target: str, token: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.counter = context.Array("q", processes, lock=False)  # measured calls so far, per worker
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._processes: list[Any] = []
        try:
            for index in range(processes):
                parent, child = context.Pipe()
                process = context.Process(target=worker_main, args=(child, index, target, token, self.counter),
                                          name=f"etf-bench-{index}", daemon=True)
                process.start()
                child.close()
                self._pipes.append(parent)
                self._processes.append(process)
            for index, pipe in enumerate(self._pipes):
                if not pipe.poll(60) or pipe.recv() != "ready":
                    raise RuntimeError(f"bench worker {index} did not start")
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        return len(self._processes)

    def send(self, phases: list[Phase | None]) -> None:
        """One phase per worker (None: sits this one out)."""
        for pipe, phase in zip(self._pipes, phases, strict=True):
            if phase is not None:
                pipe.send(phase)

    def gather(self, phases: list[Phase | None], timeout: float) -> list[Outcome]:
        outcomes = []
        for index, (pipe, phase) in enumerate(zip(self._pipes, phases, strict=True)):
            if phase is None:
                continue
            if not pipe.poll(timeout):
                raise RuntimeError(f"bench worker {index} did not finish its phase")
            outcomes.append(pipe.recv())
        return outcomes

    def progress(self) -> int:
        return sum(self.counter)

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self._pipes:
            pipe.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
