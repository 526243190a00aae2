"""Who may call what (SPEC §8, §10): bearer tokens -> principals, roles -> RPCs.

One server interceptor authenticates every call of the etf_engine.v1 services, checks the role
against ``ACCESS`` (each method's access option in the proto, see ``access``), makes the principal
available to the servicer (``current_principal``) and turns an ``EngineError`` into the gRPC status
of the same name. It also parses the request body, after the token and the role are checked (SPEC
§11: no body is read for a caller without a valid token), and refuses one that does not parse with
INVALID_ARGUMENT. Health and reflection stay open: load balancers and grpcurl-style tools use them
without a token, and they reveal no fund data. Finer rules (a participant sees only its eligible
funds and its own orders: the option's participant_scope) need ledger data and are checked by the
servicers.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError

from etf_engine.api.access import RULES
from etf_engine.engine import acting_principal
from etf_engine.errors import INVALID_ARGUMENT, PERMISSION_DENIED, EngineError

ISSUER, PARTICIPANT, OBSERVER = "issuer", "participant", "observer"
ROLES = (ISSUER, PARTICIPANT, OBSERVER)
UNAUTHENTICATED = "UNAUTHENTICATED"

PACKAGE = "etf_engine.v1"

# "/package.Service/Method" -> roles allowed, from each method's access option in the proto (access.py).
# A method of our package missing here is refused to everyone: access fails closed.
ACCESS: dict[str, frozenset[str]] = {path: rule.roles for path, rule in RULES.items()}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    token_sha256: str
    participant_id: str | None = None  # set exactly for role participant


def hash_token(token: str) -> str:
    """The digest a config stores for a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("etf_engine_principal")


def current_principal() -> Principal:
    """The caller of the RPC being served (set by the interceptor before the servicer runs)."""
    return _principal.get()


def grpc_status(code: str) -> grpc.StatusCode:
    """EngineError code name -> grpc.StatusCode of the same name (UNKNOWN for a name gRPC lacks)."""
    return getattr(grpc.StatusCode, code, grpc.StatusCode.UNKNOWN)


class Authenticator:
    def __init__(self, principals: Iterable[Principal]) -> None:
        # Looking up the digest of the presented token, not comparing tokens, means timing reveals at
        # most something about a SHA-256 digest, which does not help to forge a token.
        self._by_digest = {p.token_sha256.lower(): p for p in principals}

    def authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Principal:
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value.decode() if isinstance(value, bytes) else value
                break
        if header is None:
            raise EngineError(UNAUTHENTICATED, "missing authorization metadata (Bearer token)")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise EngineError(UNAUTHENTICATED, "authorization must be 'Bearer <token>'")
        principal = self._by_digest.get(hash_token(token))
        if principal is None:
            raise EngineError(UNAUTHENTICATED, "unknown token")
        return principal


def enter(method: str, principal: Principal) -> None:
    """Admit ``principal`` to ``method`` ("/package.Service/Method") or raise PERMISSION_DENIED; then the
    servicer and the engine see who calls (the same for gRPC and for the HTTP listener)."""
    authorize(method, principal)
    _principal.set(principal)
    acting_principal.set(principal.name)


CallObserver = Callable[[str, str, str, float], None]  # (Service/Method, status code, protocol, seconds)


def authorize(method: str, principal: Principal) -> None:
    roles = ACCESS.get(method)
    if roles is None or principal.role not in roles:
        raise EngineError(PERMISSION_DENIED, f"role {principal.role} may not call {method.rsplit('/', 1)[-1]}")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorises every etf_engine.v1 call; maps EngineError to its status."""

    def __init__(self, authenticator: Authenticator,
                 initial_metadata: Callable[[], tuple[tuple[str, str], ...] | None] | None = None,
                 observe: CallObserver | None = None) -> None:
        self._auth = authenticator
        self._observe = observe
        # Metadata every reply starts with while it returns any (a follower's x-etf-journal-seq).
        self._initial_metadata = initial_metadata or _no_metadata
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # handlers are per method: wrap once

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(f"/{PACKAGE}."):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> None:
        enter(method, self._auth.authenticate(context.invocation_metadata()))
        metadata = self._initial_metadata()
        if metadata is not None:
            await context.send_initial_metadata(metadata)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # gRPC hands the wrapper the raw body (request_deserializer=None): it is parsed only once the
        # caller is known and allowed to call the method.
        deserialize = handler.request_deserializer or _raw
        short = method.removeprefix(f"/{PACKAGE}.")  # "Service/Method", the metrics' label
        unparsable = f"request body does not parse as {_request_name(method, deserialize)}"

        def parse(body: bytes) -> Any:
            try:
                return deserialize(body)
            except Exception as e:
                raise _unparsable(unparsable, e) from None

        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(body: bytes, context: grpc.aio.ServicerContext) -> Any:
                async with self._serving(method, short, context):
                    return await inner_unary(parse(body), context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=None, response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(body: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with self._serving(method, short, context):
                    async for item in inner_stream(parse(body), context):
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=None, response_serializer=handler.response_serializer)
        raise TypeError(f"{method}: only unary and server-streaming RPCs are served")

    @asynccontextmanager
    async def _serving(self, method: str, short: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """Around one call: the caller admitted, an EngineError turned into its status, and the call
        counted for the metrics with its code."""
        started, code = time.perf_counter(), "OK"
        try:
            await self._enter(method, context)
            yield
        except EngineError as e:
            code = e.code
            await context.abort(grpc_status(e.code), e.message)
        except (asyncio.CancelledError, GeneratorExit):  # the caller went away (a stream it cancelled)
            code = "CANCELLED"
            raise
        except BaseException:
            code = "INTERNAL"
            raise
        finally:
            if self._observe is not None:
                self._observe(short, code, "grpc", time.perf_counter() - started)


def _unparsable(message: str, error: Exception) -> EngineError:
    """INVALID_ARGUMENT for a body the request deserializer refused; a DecodeError adds its short,
    fixed reason ("Wire format was corrupt", "String field had bad UTF-8"), nothing else does."""
    if isinstance(error, DecodeError):
        reason = str(error).rpartition(": ")[2]
        if reason and len(reason) <= 64:
            message = f"{message}: {reason}"
    return EngineError(INVALID_ARGUMENT, message)


def _no_metadata() -> None:
    return None


def _raw(body: bytes) -> bytes:
    return body


def _request_name(method: str, deserialize: Callable[[bytes], Any]) -> str:
    """The request message's name for "/package.Service/Method" (from the descriptor pool, else the
    deserializer's class), for the message refusing a body that does not parse."""
    try:
        return str(descriptor_pool.Default().FindMethodByName(method.lstrip("/").replace("/", ".")).input_type.name)
    except KeyError:
        owner = getattr(deserialize, "__self__", None)
        return getattr(owner, "__name__", "the request message")
