"""The HTTP listener (SPEC §15), in the gRPC server's process and event loop: an asyncio server whose
connections hypercorn's machinery serves (HTTP/1.1, and HTTP/2 in clear text with prior knowledge,
"h2c"), in front of an ASGI router serving

- every etf_engine.v1 RPC in the Connect protocol (unary and server streams, JSON and binary protobuf,
  gzip), in gRPC (over h2c) and in gRPC-Web, and gRPC reflection: ``connect.py``, on connectrpc, with
  the same servicers, the same tokens and the same role table as the gRPC port;
- ``GET /metrics``: Prometheus text, no token (bind it where only monitoring reaches it);
- ``GET /reports/NAME.csv?<the request's fields>``: a report of the Reports service as CSV (SPEC §21,
  ``report_csv``), behind the same tokens and role table as its RPC, the servicer called in process;
- ``GET /`` and ``/console/<file>``: the operations console, static files from the package.

This module is the router in front of them and what a client's mistake meets first: an RPC path that
names no method (one metric label for all of them), a protocol header too long to quote, gRPC over
HTTP/1.1; a console path that names no file (404, whatever its encoding); a report's query string that
is not exactly its request's fields. Every RPC is counted once in ``etf_engine_rpc_calls_total`` with the
code it was answered with (a report over GET with protocol ``csv``). A client's mistake is answered,
never logged as a traceback; only a failure of the server itself is.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import socket
import struct
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.utils import wrap_app

from etf_engine.api.auth import PACKAGE, Authenticator, enter
from etf_engine.api.connect import CURRENT, GRPC_NAMES, Call, EngineApp, answer_for, reflection_apps
from etf_engine.api.metrics import CONTENT_TYPE, UNKNOWN_METHOD, Metrics
from etf_engine.errors import INVALID_ARGUMENT, EngineError, quote
from etf_engine.report_csv import REPORTS, REPORTS_SERVICE, file_name, report_csv

log = logging.getLogger(__name__)


class _Streams(dict[int, Any]):
    """hypercorn's HTTP/2 streams by id, where a stream already answered and closed reads as one that
    drops what still arrives. hypercorn 0.18 looks a stream up for each DATA frame without this
    guard (its StreamEnded branch has it): a client still sending the body of a request answered
    early (a refusal before the body is read, a body over the limit) killed the whole connection
    with a traceback (hypercorn issues 197 and 329, pull requests 312, 334 and 365, unreleased)."""

    def __missing__(self, stream_id: int) -> Any:
        return _ANSWERED


class _Answered:
    async def handle(self, event: object) -> None:
        return None


_ANSWERED = _Answered()


def _tolerate_data_after_the_answer() -> None:
    if getattr(H2Protocol, "_etf_engine_streams", False):
        return
    original = H2Protocol.__init__

    def __init__(self: H2Protocol, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.streams = _Streams()

    H2Protocol.__init__ = __init__  # type: ignore[method-assign]
    H2Protocol._etf_engine_streams = True  # type: ignore[attr-defined]


_tolerate_data_after_the_answer()

MAX_BODY = 4 * 1024 * 1024
# Connect's HTTP status for each code (the protocol's table)
HTTP_STATUS: dict[Code, int] = {
    Code.CANCELED: 499, Code.UNKNOWN: 500, Code.INVALID_ARGUMENT: 400, Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409, Code.PERMISSION_DENIED: 403, Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400, Code.ABORTED: 409, Code.OUT_OF_RANGE: 400, Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500, Code.UNAVAILABLE: 503, Code.DATA_LOSS: 500, Code.UNAUTHENTICATED: 401,
}
# The code a client reads from an HTTP status that came without one (Connect's and gRPC's table)
CODE_OF_STATUS = {200: "OK", 400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
                  429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}
# Protocol headers connectrpc quotes in its refusals: longer ones are refused here, unquoted
QUOTED_HEADERS = ("connect-protocol-version", "connect-timeout-ms", "grpc-timeout")
MAX_QUOTED_HEADER = 20
LINGER_SECONDS = 5.0  # how long the rest of a body is waited for before an early answer, on HTTP/1.1
CONSOLE_KINDS = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
NOSNIFF = ("x-content-type-options", "nosniff")
CONSOLE_HEADERS = (
    NOSNIFF, ("cache-control", "no-cache"), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
)
# A report over GET (SPEC §21) answers a refusal with Connect's status for its code, but FAILED_PRECONDITION
# with 412 Precondition Failed: a plain HTTP client tells it apart from a request it got wrong (400).
REPORT_STATUS = HTTP_STATUS | {Code.FAILED_PRECONDITION: 412}
MAX_REPORT_QUERY = 2048  # bytes of a report's query string (percent-encoded): longer is 414
REPORT_HEADERS = (("content-type", "text/csv; charset=utf-8"), NOSNIFF, ("cache-control", "no-store"))
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def protocol_of(content_type: str) -> str:
    """The metrics' protocol label: connect, grpc or grpcweb."""
    if content_type.startswith("application/grpc-web"):
        return "grpcweb"
    if content_type.startswith("application/grpc"):
        return "grpc"
    return "connect"


class _Exchange:
    """One request's ``receive`` and ``send``, remembering the status answered, whether the answer has
    begun and whether the request's body was read to its end.

    An answer given before the body was read (a refusal ahead of it: no token, no such method, a body
    over the limit) is fine on HTTP/2, where the stream ends and the connection lives on. On HTTP/1.1 a
    client still sending its body when the answer ends gives up on the request (Node's client reports
    EPIPE instead of the answer), or sends its next request into a connection the server is closing.
    So there the rest of a body up to the limit (of a declared length, or chunked) is read and dropped,
    never parsed, before the answer goes out (for ``LINGER_SECONDS`` at most), and the connection lives
    on; a body declared larger, or one that does not arrive, is answered with ``connection: close``."""

    __slots__ = ("_limit", "_receive", "_send", "body_read", "http1", "lingers", "started", "status")

    def __init__(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], limit: int) -> None:
        self._receive = receive
        self._send = send
        self.http1 = scope.get("http_version") != "2"
        length = headers.get("content-length", "")
        self.lingers = self.http1 and (int(length) <= limit if length.isdigit() else "content-length" not in headers)
        self._limit = limit
        self.body_read = False
        self.started = False
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.body_read = True
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if self.lingers and not self.body_read:
                await self._drop_the_body()
            if self.http1 and not self.body_read:
                message = message | {"headers": [*message.get("headers", ()), (b"connection", b"close")]}
            self.status = message["status"]
            self.started = True
        await self._send(message)

    async def _drop_the_body(self) -> None:
        dropped = 0
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while not self.body_read and dropped <= self._limit:
                    message = await self.receive()
                    if message["type"] == "http.disconnect":
                        return
                    dropped += len(message.get("body", b""))
        except TimeoutError:  # a client that stopped sending: told to close, and hypercorn closes
            pass


class HttpListener:
    def __init__(self, servicers: dict[str, Any], authenticator: Authenticator, metrics: Metrics, *,
                 max_body: int = MAX_BODY, reflection: bool = True, grace_seconds: float = 5.0,
                 initial_metadata: Callable[[], tuple[tuple[str, str], ...] | None] | None = None) -> None:
        self.metrics = metrics
        self._initial_metadata = initial_metadata or (lambda: None)
        self._engine_app = EngineApp(servicers, authenticator, max_body, self._initial_metadata)
        self._authenticator = authenticator
        self._reports = servicers["Reports"]
        self._reflection = reflection_apps(max_body) if reflection else {}
        folder = resources.files("etf_engine") / "console"
        self._console = {item.name for item in folder.iterdir()
                         if item.is_file() and any(item.name.endswith(s) for s in CONSOLE_KINDS)}
        self._grace = grace_seconds
        self._max_body = max_body
        self._server: asyncio.Server | None = None
        self._context = WorkerContext(None)
        self._connections: set[asyncio.Task[Any]] = set()
        self.port: int | None = None

    # -- running ---------------------------------------------------------------------------------
    async def start(self, listen: str) -> int:
        """Bind ``listen`` ("host:port", port 0 for any) now, so that a failure to bind is start's, then
        serve each connection with hypercorn's HTTP/1.1 and HTTP/2 machinery, in this loop."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart binds beside TIME_WAIT
            # Accepted sockets inherit it; asyncio sets it only on sockets made with IPPROTO_TCP, and a
            # response's headers and body leave in two writes: without it each call waits out a delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, int(port)))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = HypercornConfig()
        config.accesslog = None
        config.errorlog = logging.getLogger(f"{__name__}.server")  # hypercorn's own lines, warnings and up
        config.errorlog.setLevel(logging.WARNING)
        config.include_server_header = False
        # hypercorn's default closes a connection after 1,000 requests (GOAWAY on HTTP/2): a Connect or
        # gRPC client keeps one connection for its life, as on the gRPC port, which sets no such limit.
        config.keep_alive_max_requests = 1 << 31
        loop = asyncio.get_running_loop()
        app = wrap_app(self, None, "asgi")
        context = self._context = WorkerContext(None)

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                await TCPServer(app, loop, config, context, {}, reader, writer)
            except asyncio.CancelledError:
                # stop() gave up waiting for it. Ended here, not cancelled: asyncio 3.11 would log the
                # cancellation of a connection's task as an error with a traceback.
                writer.close()
            finally:
                self._connections.discard(task)

        self._server = await asyncio.start_server(connected, sock=sock)
        return self.port

    async def stop(self) -> None:
        """Stop accepting; hypercorn closes idle connections and refuses new requests on open ones; calls
        in flight get ``grace_seconds`` to finish (NAV streams have ended: the server closed the feed),
        then the connections left are closed."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await self._context.terminated.set()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=self._grace)
        left = list(self._connections)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        await server.wait_closed()

    # -- the router ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan (hypercorn's worker is not used) and no websockets
            return
        path, method = scope["path"], scope["method"]
        if path == "/metrics":
            await self._get(method, send, self._metrics)
        elif path == "/":
            await self._get(method, send, lambda: self._static("index.html"))
        elif path.startswith("/console/"):
            await self._get(method, send, lambda: self._static(path.removeprefix("/console/")))
        elif path.startswith("/reports/"):
            await self._report(scope, receive, send)
        elif path in self._engine_app.paths:
            await self._rpc(scope, receive, send, self._engine_app, path.removeprefix(f"/{PACKAGE}."))
        elif (app := self._reflection.get(path.rpartition("/")[0] + "/")) is not None:
            await self._rpc(scope, receive, send, app, None)
        elif method == "POST" and _names_a_method(path):
            await self._unknown_method(scope, receive, send)
        else:
            await _plain(send, 404, b"not found\n")

    async def _get(self, method: str, send: Send, make: Callable[[], Any]) -> None:
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed\n", (("allow", "GET, HEAD"),))
            return
        reply = make()
        status, body, headers = await reply if inspect.isawaitable(reply) else reply
        await _respond(send, status, body, headers)

    async def _metrics(self) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        return 200, await self.metrics.scrape(), (("content-type", CONTENT_TYPE), NOSNIFF)

    def _static(self, name: str) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        # Only a file the package's console folder holds, by its exact name: whatever else a path says
        # (.., %2e%2e, double encoding, overlong UTF-8, 300 characters) names none of them.
        if name not in self._console:
            return 404, b"not found\n", (("content-type", "text/plain; charset=utf-8"), NOSNIFF)
        kind = next(k for suffix, k in CONSOLE_KINDS.items() if name.endswith(suffix))
        body = (resources.files("etf_engine") / "console" / name).read_bytes()
        return 200, body, (("content-type", kind), *CONSOLE_HEADERS)

    # -- reports ---------------------------------------------------------------------------------
    async def _report(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /reports/NAME.csv?<fields>``: the report NAME of ``report_csv.REPORTS`` as CSV, for a caller
        its RPC admits; HEAD answers the same without the body. A path that names no report is 404 whatever
        the method; a refusal is plain text, "CODE: message", with ``REPORT_STATUS``."""
        headers = _headers(scope)
        send = _Exchange(scope, receive, send, headers, self._max_body).send
        path, method = scope["path"], scope["method"]
        name = path.removeprefix("/reports/").removesuffix(".csv") if path.endswith(".csv") else ""
        rpc = REPORTS.get(name)
        if rpc is None:
            await _plain(send, 404, f"NOT_FOUND: no report {quote(path.removeprefix('/reports/'))}; the reports: "
                                    f"{', '.join(n + '.csv' for n in REPORTS)}\n".encode())
            return
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed: GET or HEAD\n", (("allow", "GET, HEAD"),))
            return
        label = f"Reports/{rpc}"
        started, code = time.perf_counter(), "CANCELLED"
        try:
            try:
                request, reply = await self._report_reply(rpc, headers, scope.get("query_string", b""))
                body = report_csv(reply).encode()
            except _TooLong as e:
                code = "INVALID_ARGUMENT"
                await _plain(send, 414, f"{code}: {e}\n".encode())
                return
            except Exception as e:  # an EngineError as its code; anything else is our bug, logged by answer_for
                error = answer_for(e, label)
                code = GRPC_NAMES[error.code]
                await _plain(send, REPORT_STATUS[error.code], f"{code}: {error.message}\n".encode())
                return
            code = "OK"
            disposition = ("content-disposition", f'attachment; filename="{file_name(name, request, reply)}"')
            await _respond(send, 200, b"" if method == "HEAD" else body,
                           (*REPORT_HEADERS, disposition, ("content-length", str(len(body))),
                            *(self._initial_metadata() or ())))
        finally:
            self.metrics.call(label, code, "csv", time.perf_counter() - started)

    async def _report_reply(self, rpc: str, headers: dict[str, str], query: bytes) -> tuple[Message, Message]:
        """The caller admitted (the token, then the role table), then the query read, then the servicer."""
        metadata = [("authorization", headers["authorization"])] if "authorization" in headers else []
        enter(f"/{PACKAGE}.Reports/{rpc}", self._authenticator.authenticate(metadata))
        if len(query) > MAX_REPORT_QUERY:
            raise _TooLong(f"query string: longer than {MAX_REPORT_QUERY} bytes")
        request = report_request(rpc, query)
        return request, await getattr(self._reports, rpc)(request, None)

    # -- RPCs ------------------------------------------------------------------------------------
    async def _rpc(self, scope: Scope, receive: Receive, send: Send, app: Any, label: str | None) -> None:
        """One call into connectrpc, counted (``label`` "Service/Method"; None: not counted) with the
        code it was answered with."""
        headers = _headers(scope)
        content_type = headers.get("content-type", "")
        protocol = protocol_of(content_type)
        started, call = time.perf_counter(), Call()
        exchange = _Exchange(scope, receive, send, headers, self._max_body)
        sender = exchange.send
        token = CURRENT.set(call)
        try:
            refusal = _refusal(scope, headers, protocol)
            if refusal is not None:
                call.code = GRPC_NAMES[refusal.code]
                await _refuse(sender, refusal, protocol, content_type, _takes_trailers(scope, headers))
                return
            await app(scope, exchange.receive, sender)
        except ConnectError as e:  # connectrpc gives back what it could not answer: the client went away
            call.code = call.code or GRPC_NAMES[e.code]
            log.debug("%s: not answered (%s)", label, e.code.value)
        except asyncio.CancelledError:
            call.code = call.code or "CANCELLED"
            raise
        except Exception as e:  # answered already (connectrpc answers first, then re-raises), else ours
            error = answer_for(e, label or scope["path"]) if not exchange.started else None
            if error is not None:
                call.code = GRPC_NAMES[error.code]
                await _refuse(sender, error, protocol, content_type, _takes_trailers(scope, headers))
            else:
                log.info("%s: %s after the answer began", label or scope["path"], type(e).__name__)
        finally:
            CURRENT.reset(token)
            if label is not None:
                code = call.code or CODE_OF_STATUS.get(exchange.status, "UNKNOWN")
                self.metrics.call(label, code, protocol, time.perf_counter() - started)

    async def _unknown_method(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        send = _Exchange(scope, receive, send, headers, self._max_body).send
        content_type = headers.get("content-type", "")
        protocol = protocol_of(content_type)
        started = time.perf_counter()
        name = scope["path"].lstrip("/")
        error = ConnectError(Code.UNIMPLEMENTED, f"no method {name!r}" if len(name) <= 64 else
                             f"no method {name[:64]!r}… ({len(name)} characters)")
        await _refuse(send, error, protocol, content_type, _takes_trailers(scope, headers))
        self.metrics.call(UNKNOWN_METHOD, "UNIMPLEMENTED", protocol, time.perf_counter() - started)


_INTEGER = re.compile(r"-?[0-9]{1,20}")
_INTEGER_BITS = {FieldDescriptor.TYPE_INT64: 64, FieldDescriptor.TYPE_SINT64: 64, FieldDescriptor.TYPE_SFIXED64: 64,
                 FieldDescriptor.TYPE_INT32: 32, FieldDescriptor.TYPE_SINT32: 32, FieldDescriptor.TYPE_SFIXED32: 32}


class _TooLong(Exception):
    """A report's query string over MAX_REPORT_QUERY: 414."""


def report_request(rpc: str, query: bytes) -> Message:
    """The request of Reports/``rpc`` from a query string of its fields (``fund_id`` or ``fundId``; ``+`` and
    %-escapes of UTF-8 as in a form): each at most once, nothing else (INVALID_ARGUMENT naming the
    parameter); an integer in digits, an enum by name, a bool true or false."""
    request = GetMessageClass(REPORTS_SERVICE.methods_by_name[rpc].input_type)()
    fields = request.DESCRIPTOR
    taken = ", ".join(f.name for f in fields.fields)
    seen: set[str] = set()
    for part in query.split(b"&"):
        if not part:
            continue
        raw_key, equals, raw_value = part.partition(b"=")
        key = _query_text(raw_key, "a parameter's name")
        field = fields.fields_by_name.get(key) or fields.fields_by_camelcase_name.get(key)
        if field is None or field.message_type is not None or field.is_repeated:
            raise EngineError(INVALID_ARGUMENT, f"unknown parameter {quote(key)}: {rpc} takes {taken}")
        if field.name in seen:
            raise EngineError(INVALID_ARGUMENT, f"{field.name}: given more than once")
        seen.add(field.name)
        if not equals:
            raise EngineError(INVALID_ARGUMENT, f"{field.name}: no value ({field.name}=...)")
        _set_field(request, field, _query_text(raw_value, field.name))
    return request


def _query_text(raw: bytes, what: str) -> str:
    try:
        return urllib.parse.unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise EngineError(INVALID_ARGUMENT, f"{what}: not UTF-8 once percent-decoded") from None


def _set_field(request: Message, field: FieldDescriptor, text: str) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        setattr(request, field.name, text)
    elif field.type in _INTEGER_BITS:
        bits = _INTEGER_BITS[field.type]
        if not _INTEGER.fullmatch(text) or not -(1 << (bits - 1)) <= int(text) < 1 << (bits - 1):
            raise EngineError(INVALID_ARGUMENT, f"{field.name}: {quote(text)} is not an integer of {bits} bits"
                                                + (" (unix ms)" if field.name == "as_of" else ""))
        setattr(request, field.name, int(text))
    elif field.type == FieldDescriptor.TYPE_BOOL and text in ("true", "false"):
        setattr(request, field.name, text == "true")
    elif field.type == FieldDescriptor.TYPE_ENUM and text in field.enum_type.values_by_name:
        setattr(request, field.name, field.enum_type.values_by_name[text].number)
    else:
        raise EngineError(INVALID_ARGUMENT, f"{field.name}: {quote(text)} is not a value of this field")


def _names_a_method(path: str) -> bool:
    """"/package.Service/Method": what an RPC client of any protocol posts to."""
    service, _, method = path[1:].rpartition("/")
    return bool(service) and "." in service and bool(method)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _refusal(scope: Scope, headers: dict[str, str], protocol: str) -> ConnectError | None:
    """What this router refuses before connectrpc sees the request."""
    for name in QUOTED_HEADERS:
        if len(headers.get(name, "")) > MAX_QUOTED_HEADER:
            return ConnectError(Code.INVALID_ARGUMENT, f"header {name}: longer than {MAX_QUOTED_HEADER} characters")
    if protocol == "grpc" and scope.get("http_version") != "2":
        return ConnectError(Code.UNIMPLEMENTED, "gRPC needs HTTP/2 (h2c with prior knowledge on this port); "
                                                "over HTTP/1.1 use Connect or gRPC-Web")
    return None


async def _refuse(send: Send, error: ConnectError, protocol: str, content_type: str, trailers: bool) -> None:
    """Answer ``error`` as ``protocol`` answers an error before its first message: gRPC with the status
    in trailers (``trailers``: the client takes them; hypercorn cannot end an HTTP/2 stream on its
    headers, which a trailers-only answer needs), gRPC-Web in its trailer frame, a Connect stream HTTP 200
    and its end-of-stream message, Connect unary its error JSON with its HTTP status."""
    if protocol != "connect":
        status = grpc.StatusCode[GRPC_NAMES[error.code]].value[0]
        fields = (("grpc-status", str(status)), ("grpc-message", urllib.parse.quote(error.message, safe=" ")))
        if protocol == "grpcweb":
            frame = "".join(f"{k}: {v}\r\n" for k, v in fields).encode()
            await _respond(send, 200, struct.pack(">BI", 0x80, len(frame)) + frame,
                           (("content-type", "application/grpc-web+proto"),))
        elif trailers:
            await send({"type": "http.response.start", "status": 200, "trailers": True,
                        "headers": [(b"content-type", b"application/grpc")]})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            await send({"type": "http.response.trailers", "more_trailers": False,
                        "headers": [(k.encode(), v.encode()) for k, v in fields]})
        else:
            await _respond(send, 200, b"", (("content-type", "application/grpc"), *fields))
        return
    wire = {"code": error.code.value, "message": error.message}
    if content_type.startswith("application/connect+"):
        data = json.dumps({"error": wire}).encode()
        kind = content_type.partition(";")[0].strip()
        await _respond(send, 200, struct.pack(">BI", 2, len(data)) + data, (("content-type", kind),))
        return
    await _respond(send, HTTP_STATUS[error.code], json.dumps(wire).encode(),
                   (("content-type", "application/json"),))


def _takes_trailers(scope: Scope, headers: dict[str, str]) -> bool:
    return "http.response.trailers" in scope.get("extensions", {}) and "trailers" in headers.get("te", "")


async def _respond(send: Send, status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _plain(send: Send, status: int, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> None:
    await _respond(send, status, body, (("content-type", "text/plain; charset=utf-8"), NOSNIFF, *extra))
