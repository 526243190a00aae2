"""etf_engine.v1 over the Connect protocol, and over gRPC and gRPC-Web beside it, on the HTTP listener
(SPEC §15), with connectrpc (the Connect runtime for Python) serving the same servicers as gRPC.

connectrpc speaks the three protocols on one ASGI application: Connect unary and server streams with
JSON or binary protobuf (``application/json``, ``application/proto``, ``application/connect+json``,
``application/connect+proto``), gRPC (``application/grpc``) and gRPC-Web, with gzip. What is ours:

- the endpoints, one per RPC of the proto, each calling the servicer gRPC calls (``endpoints``);
- admission before the body is read (SPEC §11): ``Admission``, a metadata interceptor that connectrpc
  runs ahead of reading the request, authenticates with the server's one ``Authenticator`` and checks
  the one role table (``auth.enter``);
- ``Outcome``, which turns whatever ended a call into the status the client gets, short and exact
  (SPEC §11: an EngineError as its code, any message ``shorten``-ed, no Python exception text, an
  unexpected failure ``internal`` and logged once), and records that code for the metrics;
- codecs on google.protobuf (our generated messages) that refuse what does not parse with our words
  (a top-level JSON value that is not an object, a duplicate key, a field named), and a gzip whose
  refusals say what is wrong with the body, not what zlib said;
- gRPC reflection (connectrpc-grpcreflect) over our descriptors, so that ``buf curl --reflect`` works.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connectrpc.code import Code
from connectrpc.codec import Codec
from connectrpc.compression import Compression
from connectrpc.compression.gzip import GzipCompression
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from connectrpc_grpcreflect import (
    ServerReflectionAlphaASGIApplication,
    ServerReflectionAlphaService,
    ServerReflectionASGIApplication,
    ServerReflectionService,
)
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from protobuf.wkt import FileDescriptorSet

from etf_engine.api.auth import Authenticator, enter
from etf_engine.engine import INTERNAL
from etf_engine.errors import EngineError, quote, shorten
from etf_engine.v1 import engine_pb2 as pb

log = logging.getLogger(__name__)

# gRPC status names (EngineError codes, the metrics' code label) <-> Connect codes
CODES: dict[str, Code] = {name: Code[name] for name in Code.__members__} | {"CANCELLED": Code.CANCELED}
GRPC_NAMES: dict[Code, str] = {code: name for name, code in CODES.items() if name != "CANCELED"}


@dataclass
class Call:
    """One RPC on the listener, as the metrics count it: the code it was answered with, once known."""

    code: str | None = None


CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("etf_engine_http_call", default=None)


# == codecs ========================================================================================
class ProtoCodec(Codec[Message, Message]):
    """Binary protobuf (google.protobuf messages)."""

    def name(self) -> str:
        return "proto"

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Message:
        try:
            return message_class.FromString(bytes(data))
        except DecodeError as e:
            # DecodeError's own reason is short and fixed ("Error parsing message", "Truncated message").
            reason = str(e).rpartition(": ")[2]
            suffix = f": {reason}" if reason and len(reason) <= 64 else ""
            raise ConnectError(Code.INVALID_ARGUMENT, f"request body does not parse as "
                                                      f"{message_class.__name__}{suffix}") from None


class JsonCodec(Codec[Message, Message]):
    """The proto JSON mapping (both ``fund_id`` and ``fundId`` read), strictly: the body is one JSON
    object, a key appears once, an unknown field is refused, as gRPC's parser refuses what it cannot
    read. An empty body is the empty message, as Connect's clients send it."""

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return json.dumps(json_format.MessageToDict(message), separators=(",", ":"),
                          ensure_ascii=False).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Message:
        message = message_class()
        name = message_class.__name__
        if not data.strip():
            return message
        try:
            value = json.loads(bytes(data).decode("utf-8"), object_pairs_hook=_object)
        except _DuplicateKey as e:
            raise _invalid(f"request body is not a {name} in JSON: key {quote(e.key)} appears twice") from None
        except (ValueError, RecursionError):
            raise _invalid(f"request body is not JSON (a {name} in UTF-8 JSON is expected)") from None
        if not isinstance(value, dict):
            raise _invalid(f"request body is not a {name} in JSON: a JSON object is expected, "
                           f"not {_json_kind(value)}")
        try:
            json_format.ParseDict(value, message)
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
            raise _invalid(f"request body is not a {name} in JSON: {_parse_problem(str(e))}") from None
        return message


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "true or false", type(None): "null"}.get(type(value), "a number")


_FIELD = re.compile(r"Failed to parse (\w+) field")
_UNKNOWN_FIELD = re.compile(r'has no field named "(.*?)" at', re.DOTALL)
# What json_format says -> what we say (no Python exception text reaches a client: SPEC §11)
_REASONS = (
    ("invalid literal for int", "not an integer"), ("Couldn't parse integer", "not an integer"),
    ("Value out of range", "out of range"), ("Invalid enum value", "not a value of its enum"),
    ("Couldn't parse float", "not a number"), ("Couldn't parse bool", "not true or false"),
    ("Expected bool", "not true or false"), ("expected string", "not a string"),
    ("Unpaired surrogate", "not valid text"), ("Incorrect padding", "not base64"),
    ("repeated field", "not an array"), ("not iterable", "not an array"),
    ("must be in a JSON object", "not a JSON object"), ("NoneType", "null where a value is expected"),
)


def _parse_problem(text: str) -> str:
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown is not None:
        return f"no field {quote(unknown.group(1))}"
    path = ".".join(_FIELD.findall(text))
    reason = next((ours for theirs, ours in _REASONS if theirs in text), "does not parse")
    return f"field {path}: {reason}" if path else reason


def _invalid(message: str) -> ConnectError:
    return ConnectError(Code.INVALID_ARGUMENT, message)


CODECS: tuple[Codec, ...] = (ProtoCodec(), JsonCodec())


class Gzip(GzipCompression):
    """connectrpc's gzip (its decompression stops at the size limit while it runs), with refusals that
    say what is wrong with the body instead of zlib's words."""

    def decompress(self, data: bytes | bytearray | memoryview, read_max_bytes: int | None = None) -> bytes:
        try:
            return super().decompress(data, read_max_bytes)
        except ConnectError:  # resource_exhausted: larger than the limit once decompressed
            raise
        except EOFError:
            raise _invalid("the gzip body is cut short (truncated)") from None
        except Exception:
            raise _invalid("the body is not gzip data (Content-Encoding: gzip)") from None


COMPRESSIONS: tuple[Compression, ...] = (Gzip(),)


# == interceptors ==================================================================================
class Outcome:
    """The first interceptor: its ``on_end`` sees how every call ended (after admission, parsing,
    the servicer and the stream), makes it the status the client gets and records the code."""

    async def on_start(self, ctx: RequestContext) -> None:
        return None

    async def on_end(self, token: None, ctx: RequestContext, error: Exception | None) -> None:
        call = CURRENT.get()
        if error is None:
            if call is not None:
                call.code = "OK"
            return
        answer = answer_for(error, f"{ctx.method.service_name}/{ctx.method.name}")
        if call is not None:
            call.code = GRPC_NAMES[answer.code]
        raise answer


def answer_for(error: BaseException, method: str) -> ConnectError:
    """The ConnectError a client gets for ``error``: short and exact, never Python's words."""
    if isinstance(error, EngineError):
        return ConnectError(CODES.get(error.code, Code.UNKNOWN), error.message)
    if isinstance(error, ConnectError):
        return ConnectError(error.code, shorten(error.message))
    log.error("%s failed unexpectedly", method, exc_info=error)  # our bug, not the caller's: logged
    return ConnectError(CODES[INTERNAL], "internal error (logged by the server)")


class Admission:
    """Authentication and the role table, before the body is read (connectrpc runs metadata
    interceptors at the front of the list ahead of reading the request)."""

    def __init__(self, authenticator: Authenticator,
                 initial_metadata: Callable[[], tuple[tuple[str, str], ...] | None]) -> None:
        self._auth = authenticator
        self._initial_metadata = initial_metadata

    async def on_start(self, ctx: RequestContext) -> None:
        header = ctx.request_headers.get("authorization")
        method = ctx.method
        enter(f"/{method.service_name}/{method.name}",
              self._auth.authenticate([("authorization", header)] if header is not None else []))
        for key, value in self._initial_metadata() or ():  # a follower's x-etf-journal-seq, as on gRPC
            ctx.response_headers[key] = value

    async def on_end(self, token: None, ctx: RequestContext, error: Exception | None) -> None:
        return None


# == the applications ==============================================================================
def _unary(handler: Callable[[Message, None], Awaitable[Message]]) -> Callable[..., Awaitable[Message]]:
    async def call(request: Message, ctx: RequestContext) -> Message:
        return await handler(request, None)

    return call


def _stream(handler: Callable[[Message, None], AsyncGenerator[Message]]) -> Callable[..., AsyncIterator[Message]]:
    async def call(request: Message, ctx: RequestContext) -> AsyncIterator[Message]:
        items = handler(request, None)
        try:
            async for item in items:
                yield item
                # A page of StreamEvents is sent without waiting for anything, and once the client has
                # gone hypercorn's sends return at once: give connectrpc's watch for the disconnect its
                # turn after each message, so that the stream ends there.
                await asyncio.sleep(0)
        finally:
            await items.aclose()

    return call


def endpoints(servicers: dict[str, Any]) -> dict[str, Endpoint]:
    """"/etf_engine.v1.Service/Method" -> its endpoint, for every RPC of the proto, each served by the
    servicer gRPC calls (``servicers`` by service name)."""
    table: dict[str, Endpoint] = {}
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            streaming = method.server_streaming
            info: MethodInfo[Any, Any] = MethodInfo(
                name=method.name, service_name=service.full_name, input=GetMessageClass(method.input_type),
                output=GetMessageClass(method.output_type), idempotency_level=IdempotencyLevel.UNKNOWN,
                stream_type=StreamType.SERVER_STREAM if streaming else StreamType.UNARY)
            handler = getattr(servicers[service.name], method.name)
            path = f"/{service.full_name}/{method.name}"
            table[path] = Endpoint.server_stream(info, _stream(handler)) if streaming else \
                Endpoint.unary(info, _unary(handler))
    return table


class EngineApp(ConnectASGIApplication[dict[str, Any]]):
    """Every etf_engine.v1 RPC, in Connect, gRPC and gRPC-Web."""

    def __init__(self, servicers: dict[str, Any], authenticator: Authenticator, max_bytes: int,
                 initial_metadata: Callable[[], tuple[tuple[str, str], ...] | None]) -> None:
        super().__init__(service=servicers, endpoints=endpoints,
                         interceptors=[Outcome(), Admission(authenticator, initial_metadata)],
                         read_max_bytes=max_bytes, compressions=COMPRESSIONS, codecs=CODECS)
        self.paths = frozenset(endpoints(servicers))

    @property
    def path(self) -> str:
        return f"/{pb.DESCRIPTOR.package}."


def _file_set(files: Iterable[FileDescriptor]) -> bytes:
    """A FileDescriptorSet of ``files`` and everything they import, dependencies first."""
    done: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file: FileDescriptor) -> None:
        if file.name in done:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        done[file.name] = proto

    for file in files:
        add(file)
    return descriptor_pb2.FileDescriptorSet(file=list(done.values())).SerializeToString()


def reflection_apps(max_bytes: int) -> dict[str, ConnectASGIApplication[Any]]:
    """gRPC server reflection (v1 and v1alpha) of etf_engine.v1, by path prefix. connectrpc-grpcreflect
    reads descriptors of its own protobuf runtime: ours cross over as a FileDescriptorSet."""
    registry = FileDescriptorSet.from_binary(_file_set([pb.DESCRIPTOR])).to_registry()
    services = [registry.service(s.full_name) for s in pb.DESCRIPTOR.services_by_name.values()]
    found = [s for s in services if s is not None]
    v1 = ServerReflectionASGIApplication(ServerReflectionService(*found), interceptors=[Outcome()],
                                         read_max_bytes=max_bytes, compressions=COMPRESSIONS)
    alpha = ServerReflectionAlphaASGIApplication(ServerReflectionAlphaService(*found), interceptors=[Outcome()],
                                                 read_max_bytes=max_bytes, compressions=COMPRESSIONS)
    return {f"{v1.path}/": v1, f"{alpha.path}/": alpha}

