"""What every ThreadService RPC shares: deadline, error mapping and one log line.

A handler wrapped in ``@rpc`` gets the authenticated caller (its token's subject; "" with
auth off) instead of the gRPC context, runs under the caller's deadline (so a Redis call
never outlives it), and whatever it raises leaves as a clear status: domain errors with their
ErrorInfo, Redis outages as UNAVAILABLE (safe to retry), anything unexpected as INTERNAL
with the traceback logged here rather than sent to the caller.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
import redis.exceptions
from google.protobuf import descriptor, message, message_factory
from grpc import aio

from server.auth import Authenticator
from server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    ThreadsError,
    Unavailable,
)

log = logging.getLogger("threads.rpc")


class Authenticating(Protocol):
    """A servicer whose ``@rpc`` handlers need a caller; None: auth is off."""

    authenticator: Authenticator | None


S = TypeVar("S", bound=Authenticating)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = aio.ServicerContext[Any, Any]


def _store_unavailable(exc: Exception) -> Unavailable:
    error = Unavailable(
        "the thread store (Redis) is unavailable; retry with backoff",
        reason="STORE_UNAVAILABLE",
    )
    error.__cause__ = exc  # logged here, not sent: it names internal hosts
    return error


def cluster_unavailable(exc: BaseException) -> bool:
    """Redis Cluster states in which nothing was run: cluster down (CLUSTERDOWN), a slot
    no node serves, redirects exhausted, or no node reachable to learn the layout."""
    if isinstance(exc, redis.exceptions.ClusterError | redis.exceptions.SlotNotCoveredError):
        return True
    return isinstance(exc, redis.exceptions.RedisClusterException) and isinstance(
        exc.__cause__, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    )


_REDIS_WRITE_PATHS = (
    "redis/asyncio/connection.py",
    "asyncio/streams.py",
    "asyncio/selector_events.py",
)


def redis_writer_race(exc: BaseException) -> bool:
    """redis-py's asyncio connection, closed by another task (a failover's reconnect) or by
    the peer while a command is being written, can leak AttributeError/TypeError from
    ``writelines`` instead of a ConnectionError (redis/redis-py#3546, #4287; fix proposed in
    #4217). Seen here under load during cluster failovers. It is a connection lost while
    sending, so UNAVAILABLE like any other: the service never re-sends, and the caller's
    retry with request_id / expected_length is safe whether or not Redis got it."""
    if not isinstance(exc, AttributeError | TypeError) or exc.__traceback__ is None:
        return False
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame.f_code
    return frame.co_filename.replace("\\", "/").endswith(_REDIS_WRITE_PATHS) and (
        "send" in frame.co_name or "write" in frame.co_name
    )


def to_threads_error(exc: Exception) -> ThreadsError | None:
    """Maps an exception to the status it should produce; None for a bug (INTERNAL)."""
    if isinstance(exc, ThreadsError):
        return exc
    if redis_writer_race(exc):
        return _store_unavailable(exc)
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded(
            "the deadline expired before the thread store answered", reason="DEADLINE_EXCEEDED"
        )
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return _store_unavailable(exc)
    if isinstance(exc, redis.exceptions.ReadOnlyError):  # a replica after failover
        return _store_unavailable(exc)
    if cluster_unavailable(exc):
        return _store_unavailable(exc)
    # Redis refuses a script at its first write when over maxmemory (a script that has
    # written is never stopped half-way), so nothing was written. redis-py strips the
    # "OOM" prefix from the message, hence the class check.
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return ResourceExhausted(
            "the thread store (Redis) is out of memory; nothing was written",
            reason="STORE_OUT_OF_MEMORY",
        )
    return None


class MalformedRequest:
    """Stands in for a request whose bytes do not parse, so that the handler answers
    INVALID_ARGUMENT (gRPC itself would answer UNKNOWN with a Python exception text)."""

    __slots__ = ("error", "type_name")

    def __init__(self, type_name: str, error: str) -> None:
        self.type_name = type_name
        self.error = error


def _lenient_parser(request_type: type[message.Message]) -> Callable[[bytes], Any]:
    type_name = request_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except message.DecodeError as exc:
            return MalformedRequest(type_name, str(exc))

    return parse


def add_service(
    servicer: object, service: descriptor.ServiceDescriptor, server: aio.Server
) -> None:
    """Registers a servicer's ``@rpc`` methods, parsing requests leniently."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient_parser(
                message_factory.GetMessageClass(method.input_type)
            ),
            response_serializer=message_factory.GetMessageClass(
                method.output_type
            ).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    # Registered methods skip gRPC's per-call generic lookup (missing from grpc-stubs).
    server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]


def rpc(
    handler: Callable[[S, Req, str], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        started = time.perf_counter()
        try:
            # Before anything else: an unauthenticated caller learns nothing, not even
            # whether its request was well-formed.
            owner = (
                self.authenticator.caller(context.invocation_metadata())
                if self.authenticator is not None
                else ""
            )
            if isinstance(request, MalformedRequest):
                raise InvalidArgument(
                    f"the request is not a valid {request.type_name}: {request.error}",
                    reason="MALFORMED_REQUEST",
                )
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                # Do not start a write the caller has already given up on.
                raise TimeoutError
            async with asyncio.timeout(remaining):
                response = await handler(self, request, owner)
        except Exception as exc:
            failure, error = exc, to_threads_error(exc)
        else:
            _log_done(method, grpc.StatusCode.OK, started)
            return response
        if error is None:
            log.error(
                "rpc=%s failed unexpectedly; request=%s",
                method,
                _brief(request),
                exc_info=failure,
            )
            _log_done(method, grpc.StatusCode.INTERNAL, started)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
            raise AssertionError("unreachable")  # pragma: no cover - abort raises
        _log_done(method, error.code, started, error)
        status = error.to_status()
        await context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    return wrapper


def _brief(request: Any) -> str:
    text = str(request).replace("\n", " ")
    return text if len(text) <= 300 else text[:300] + "…"


def _log_done(
    method: str, code: grpc.StatusCode, started: float, error: ThreadsError | None = None
) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    if error is None:
        log.info("rpc=%s code=%s ms=%.2f", method, code.name, elapsed_ms)
        return
    level = logging.WARNING if code in _SERVER_SIDE else logging.INFO
    log.log(
        level,
        "rpc=%s code=%s ms=%.2f reason=%s message=%s%s",
        method,
        code.name,
        elapsed_ms,
        error.reason,
        error.message,
        f" cause={error.__cause__!r}" if error.__cause__ else "",
    )


_SERVER_SIDE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
