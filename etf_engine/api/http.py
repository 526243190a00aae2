"""The HTTP listener (SPEC §15), in the gRPC server's process and event loop (aiohttp):

- the Connect protocol (connectrpc.com) for every etf_engine.v1 RPC: unary calls as JSON
  (``POST /etf_engine.v1.<Service>/<Method>``, ``application/json``) and server streams with Connect's
  enveloped ``application/connect+json``. The same servicers answer, behind the same tokens and the
  same role table (``auth.enter``) as gRPC; errors are Connect error JSON with Connect's HTTP statuses.
- ``GET /metrics``: Prometheus text, no token (bind it where only monitoring reaches it).
- ``GET /``: the operations console, static files from the package (``etf_engine/console``).

Connect's runtime for Python (``connectrpc``) generates its own service stubs and brings its own
server; serving the protocol here keeps one role table, one set of servicers and one event loop.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from etf_engine.api.auth import PACKAGE, Authenticator, enter
from etf_engine.api.metrics import CONTENT_TYPE, Metrics
from etf_engine.engine import INTERNAL
from etf_engine.errors import INVALID_ARGUMENT, EngineError
from etf_engine.v1 import engine_pb2 as pb

log = logging.getLogger(__name__)

# gRPC code -> (Connect code, HTTP status), from the Connect protocol's table
CONNECT_CODES: dict[str, tuple[str, int]] = {
    "CANCELLED": ("canceled", 499), "UNKNOWN": ("unknown", 500), "INVALID_ARGUMENT": ("invalid_argument", 400),
    "DEADLINE_EXCEEDED": ("deadline_exceeded", 504), "NOT_FOUND": ("not_found", 404),
    "ALREADY_EXISTS": ("already_exists", 409), "PERMISSION_DENIED": ("permission_denied", 403),
    "RESOURCE_EXHAUSTED": ("resource_exhausted", 429), "FAILED_PRECONDITION": ("failed_precondition", 400),
    "ABORTED": ("aborted", 409), "OUT_OF_RANGE": ("out_of_range", 400), "UNIMPLEMENTED": ("unimplemented", 501),
    "INTERNAL": ("internal", 500), "UNAVAILABLE": ("unavailable", 503), "DATA_LOSS": ("data_loss", 500),
    "UNAUTHENTICATED": ("unauthenticated", 401),
}
_END_STREAM = 0x02
MAX_BODY = 4 * 1024 * 1024


class _Method:
    def __init__(self, service: Any, name: str, request_type: type[Message], streaming: bool) -> None:
        self.handler = getattr(service, name)
        self.request_type = request_type
        self.streaming = streaming


def _routes(servicers: dict[str, Any]) -> dict[str, _Method]:
    """"/etf_engine.v1.Service/Method" -> the servicer's method, from the proto's descriptors."""
    table = {}
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            table[f"/{service.full_name}/{method.name}"] = _Method(
                servicers[service.name], method.name, getattr(pb, method.input_type.name), method.server_streaming)
    return table


def _error_json(error: EngineError) -> dict[str, str]:
    return {"code": CONNECT_CODES.get(error.code, ("unknown", 500))[0], "message": error.message}


def _reply_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message)


class HttpListener:
    def __init__(self, servicers: dict[str, Any], authenticator: Authenticator, metrics: Metrics,
                 max_body: int = MAX_BODY) -> None:
        self._routes = _routes(servicers)
        self._auth = authenticator
        self.metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        app = web.Application(client_max_size=max_body)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post(f"/{PACKAGE}.{{service}}/{{method}}", self._call)
        app.router.add_get("/", self._console_index)
        app.router.add_get("/console/{name}", self._console_file)
        self.app = app

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        # handler_cancellation: a client that goes away cancels its handler, which ends a stream waiting
        # for news (StreamNav, StreamEvents) instead of leaving it until the next message fails to send.
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or "127.0.0.1", int(port), reuse_port=False)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else int(port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- /metrics --------------------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self.metrics.scrape()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    # -- the console -----------------------------------------------------------------------------
    async def _console_index(self, request: web.Request) -> web.Response:
        return self._static("index.html")

    async def _console_file(self, request: web.Request) -> web.Response:
        return self._static(request.match_info["name"])

    def _static(self, name: str) -> web.Response:
        kinds = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        kind = next((k for suffix, k in kinds.items() if name.endswith(suffix)), None)
        folder = resources.files("etf_engine") / "console"
        item = folder / name
        if kind is None or "/" in name or not item.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=item.read_bytes(), content_type=kind, charset="utf-8",
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy":
                                     "default-src 'self'; img-src 'self' data:; style-src 'self'"})

    # -- Connect ---------------------------------------------------------------------------------
    async def _call(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        method = self._routes.get(path)
        started, code = time.perf_counter(), "OK"
        label = path.removeprefix(f"/{PACKAGE}.")
        try:
            if method is None:
                raise EngineError("UNIMPLEMENTED", f"no method {label}")
            if method.streaming:
                return await self._stream(request, method, path)
            return await self._unary(request, method, path)
        except EngineError as e:
            code = e.code
            return web.json_response(_error_json(e), status=CONNECT_CODES.get(e.code, ("unknown", 500))[1])
        finally:
            self.metrics.call(label, code, "connect", time.perf_counter() - started)

    def _admit(self, request: web.Request, path: str) -> None:
        header = request.headers.get("Authorization")
        enter(path, self._auth.authenticate([("authorization", header)] if header is not None else []))

    async def _unary(self, request: web.Request, method: _Method, path: str) -> web.Response:
        kind = request.content_type
        if kind != "application/json":  # Connect: 415, so that a client can tell it from a bad message
            raise web.HTTPUnsupportedMediaType(text=f"Content-Type {kind or '(none)'}: this server speaks "
                                                    "Connect's JSON (application/json)")
        self._admit(request, path)
        message = self._parse(await request.read(), method)
        reply = await self._run(method.handler(message, None))
        return web.json_response(_reply_json(reply))

    async def _stream(self, request: web.Request, method: _Method, path: str) -> web.StreamResponse:
        if request.content_type != "application/connect+json":
            raise EngineError(INVALID_ARGUMENT, f"Content-Type {request.content_type or '(none)'}: server "
                                                "streams speak application/connect+json")
        self._admit(request, path)
        body = await request.read()
        if len(body) < 5 or struct.unpack(">I", body[1:5])[0] != len(body) - 5:
            raise EngineError(INVALID_ARGUMENT, "a Connect stream request is one enveloped message")
        message = self._parse(body[5:], method)
        items: AsyncIterator[Message] = method.handler(message, None)
        first: Message | None = None
        try:  # a refusal before the first message is still an HTTP error, as Connect clients expect it
            first = await anext(items)
        except StopAsyncIteration:
            pass
        response = web.StreamResponse(headers={"Content-Type": "application/connect+json"})
        await response.prepare(request)
        end: dict[str, Any] = {}
        try:
            try:
                if first is not None:
                    await response.write(_envelope(0, _reply_json(first)))
                    async for item in items:
                        await response.write(_envelope(0, _reply_json(item)))
            except EngineError as e:
                end = {"error": _error_json(e)}
            await response.write(_envelope(_END_STREAM, end))
            await response.write_eof()
        except ConnectionResetError:  # the client went away (aiohttp's reset error is one)
            pass
        finally:
            await items.aclose()
        return response

    @staticmethod
    def _parse(body: bytes, method: _Method) -> Message:
        message = method.request_type()
        try:
            json_format.Parse(body or b"{}", message)
        except (json_format.ParseError, UnicodeDecodeError) as e:
            raise EngineError(INVALID_ARGUMENT, f"request body is not a {method.request_type.__name__} in JSON: "
                                                f"{str(e)[:200]}") from None
        return message

    @staticmethod
    async def _run(call: Any) -> Message:
        try:
            return await call
        except EngineError:
            raise
        except Exception as e:
            log.exception("HTTP call failed unexpectedly")
            raise EngineError(INTERNAL, f"internal error: {type(e).__name__}") from e


def _envelope(flags: int, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(data)) + data
