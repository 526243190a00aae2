"""GetNav throughput at 64 clients: gRPC against Connect (JSON and binary, HTTP/1.1), one server, one run.

64 clients = 4 client processes x 16 threads, each thread on its own kept-alive connection (gRPC: one
channel per thread), calling GetNav back to back for DURATION seconds after a second's warm-up; the
three protocols are run in turn, twice, against the same server (SQLite journal, the sample fund).
Client and server share the machine's cores, as in `etf-engine bench`: compare the ratios.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.connect_throughput
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.queues
import threading
import time
from http.client import HTTPConnection

from benchmarks.conftest import load_fund
from benchmarks.http_listener import TOKEN, Through, serving
from etf_engine.client import EtfClient
from etf_engine.v1 import engine_pb2 as pb

PROCESSES, THREADS, WARMUP, DURATION = 4, 16, 1.0, 4.0
PATH = "/etf_engine.v1.Valuation/GetNav"
SPAWN = multiprocessing.get_context("spawn")  # the server's gRPC threads run in this process: never fork it


def _client(protocol: str, target: str, url: str, start: float, counts: multiprocessing.queues.Queue) -> None:
    def loop(out: list[int]) -> None:
        calls = 0
        if protocol == "grpc":
            with EtfClient(target, TOKEN) as client:
                while (now := time.time()) < start + WARMUP + DURATION:
                    client.get_nav("F-1")
                    calls += now >= start + WARMUP
        else:
            body, content_type = ((json.dumps({"fund_id": "F-1"}).encode(), "application/json") if protocol == "json"
                                  else (pb.GetNavRequest(fund_id="F-1").SerializeToString(), "application/proto"))
            headers = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"}
            http = HTTPConnection(*url.removeprefix("http://").split(":"), timeout=30)
            while (now := time.time()) < start + WARMUP + DURATION:
                http.request("POST", PATH, body=body, headers=headers)
                reply = http.getresponse()
                reply.read()
                assert reply.status == 200, reply.status
                calls += now >= start + WARMUP
            http.close()
        out.append(calls)

    done: list[int] = []
    threads = [threading.Thread(target=loop, args=(done,)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts.put(sum(done))


def run(protocol: str, target: str, url: str) -> float:
    counts = SPAWN.Queue()
    start = time.time() + 2.0  # spawned interpreters take a moment to start
    procs = [SPAWN.Process(target=_client, args=(protocol, target, url, start, counts))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    total = sum(counts.get() for _ in procs)
    for p in procs:
        p.join()
    return total / DURATION


def main() -> None:
    with serving() as server:
        load_fund(Through(server))
        for round_ in (1, 2):
            rates = {p: run(p, server.target, server.http_url) for p in ("grpc", "json", "binary")}
            print(f"round {round_}: GetNav calls/s at {PROCESSES * THREADS} clients: gRPC {rates['grpc']:,.0f}, "
                  f"Connect JSON {rates['json']:,.0f} ({rates['json'] / rates['grpc']:.2f}x), "
                  f"Connect binary {rates['binary']:,.0f} ({rates['binary'] / rates['grpc']:.2f}x), HTTP/1.1")


if __name__ == "__main__":
    main()
