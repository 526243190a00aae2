"""The Reports service (SPEC §21): each report's request checked, computed (etf_engine/reports.py) and
formatted as its reply."""

from __future__ import annotations

from etf_engine.engine import Engine
from etf_engine.v1 import engine_pb2_grpc as rpc


class ReportsServicer(rpc.ReportsServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
