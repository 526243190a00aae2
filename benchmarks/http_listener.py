"""The HTTP listener's own costs (SPEC §15), against a real server in this process:

- one scrape of /metrics at 100 funds (every gauge read from the ledger at scrape time), median of 30;
- GetNav at 1 client over Connect (http.client on one kept-alive connection, JSON and binary protobuf)
  against gRPC (the blocking client), alternating in 20 batches of 200 calls, p50 of each.

(SubmitOrder throughput with the listener on and /metrics scraped every second is measured with
``etf-engine bench --http --scrape-every 1``; see benchmarks/RESULTS.md.)

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.http_listener
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path

from benchmarks.conftest import load_fund
from etf_engine._core import Ledger
from etf_engine.api.auth import ISSUER, Principal, hash_token
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient
from etf_engine.config import Config
from etf_engine.v1 import engine_pb2 as pb

FUNDS, SCRAPES, BATCHES, CALLS = 100, 30, 20, 200
TOKEN = "bench-http"


class Through:
    """What ``load_fund`` calls, sent through the server's engine (journaled, as any command)."""

    def __init__(self, server: BackgroundServer) -> None:
        self.server = server

    def execute(self, command: object, now_ms: int) -> tuple[object, list]:
        return self.server.run(self.server.server.engine.execute(command)), []  # type: ignore[union-attr]


@contextmanager
def serving() -> Iterator[BackgroundServer]:
    """A server in this process with its HTTP listener, an empty journal, and TOKEN an issuer's."""
    with tempfile.TemporaryDirectory() as data_dir:
        config = Config(listen="127.0.0.1:0", data_dir=Path(data_dir), http_listen="127.0.0.1:0",
                        principals=(Principal("bench", ISSUER, hash_token(TOKEN)),))
        with BackgroundServer(config, ledger=Ledger()) as server:
            yield server


def main() -> None:
    with serving() as server:
        for i in range(1, FUNDS + 1):
            load_fund(Through(server), f"F-{i}")
        url = server.http_url
        scrapes = []
        for _ in range(SCRAPES):
            started = time.perf_counter()
            with urllib.request.urlopen(f"{url}/metrics", timeout=30) as reply:
                size = len(reply.read())
            scrapes.append(time.perf_counter() - started)
        print(f"/metrics at {FUNDS} funds: median {statistics.median(scrapes) * 1e3:.1f} ms, "
              f"min {min(scrapes) * 1e3:.1f} ms, {size:,} bytes")
        bodies = {"connect": (json.dumps({"fund_id": "F-1"}).encode(), "application/json"),
                  "binary": (pb.GetNavRequest(fund_id="F-1").SerializeToString(), "application/proto")}
        http = HTTPConnection(*url.removeprefix("http://").split(":"), timeout=10)  # kept alive, as gRPC's
        times: dict[str, list[float]] = {"grpc": [], "connect": [], "binary": []}
        with EtfClient(server.target, TOKEN) as client:
            for _ in range(BATCHES):
                for _ in range(CALLS):
                    started = time.perf_counter()
                    client.get_nav("F-1")
                    times["grpc"].append(time.perf_counter() - started)
                for name, (body, content_type) in bodies.items():
                    headers = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"}
                    for _ in range(CALLS):
                        started = time.perf_counter()
                        http.request("POST", "/etf_engine.v1.Valuation/GetNav", body=body, headers=headers)
                        reply = http.getresponse()
                        reply.read()
                        assert reply.status == 200
                        times[name].append(time.perf_counter() - started)
        http.close()
        p50 = {name: statistics.median(values) * 1e6 for name, values in times.items()}
        print(f"GetNav p50 at 1 client: gRPC {p50['grpc']:.0f} µs, Connect JSON {p50['connect']:.0f} µs "
              f"({p50['connect'] / p50['grpc']:.2f}x), Connect binary {p50['binary']:.0f} µs "
              f"({p50['binary'] / p50['grpc']:.2f}x), HTTP/1.1")


if __name__ == "__main__":
    main()
