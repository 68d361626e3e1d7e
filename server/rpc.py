"""What every ThreadService RPC shares: deadline, error mapping and one log line.

A handler wrapped in ``@rpc`` runs under the caller's deadline (so a Redis call never
outlives it), and whatever it raises leaves as a clear status: domain errors with their
ErrorInfo, Redis outages as UNAVAILABLE (safe to retry), anything unexpected as INTERNAL
with the traceback logged here rather than sent to the caller.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import redis.exceptions
from grpc import aio

from server.errors import (
    DeadlineExceeded,
    ResourceExhausted,
    ThreadsError,
    Unavailable,
)

log = logging.getLogger("threads.rpc")

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = aio.ServicerContext[Any, Any]


def _store_unavailable(exc: Exception) -> Unavailable:
    return Unavailable(
        f"the thread store (Redis) is unavailable: {exc}; retry with backoff",
        reason="STORE_UNAVAILABLE",
    )


def to_threads_error(exc: Exception) -> ThreadsError | None:
    """Maps an exception to the status it should produce; None for a bug (INTERNAL)."""
    if isinstance(exc, ThreadsError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded(
            "the deadline expired before the thread store answered", reason="DEADLINE_EXCEEDED"
        )
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return _store_unavailable(exc)
    if isinstance(exc, redis.exceptions.ReadOnlyError):  # a replica after failover
        return _store_unavailable(exc)
    if isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith("OOM"):
        return ResourceExhausted(
            "the thread store (Redis) is out of memory; nothing was written",
            reason="STORE_OUT_OF_MEMORY",
        )
    return None


def rpc(
    handler: Callable[[S, Req, Context], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        started = time.perf_counter()
        try:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                # Do not start a write the caller has already given up on.
                raise TimeoutError
            async with asyncio.timeout(remaining):
                response = await handler(self, request, context)
        except Exception as exc:
            error = to_threads_error(exc)
        else:
            _log_done(method, grpc.StatusCode.OK, started)
            return response
        if error is None:
            log.exception("rpc=%s failed unexpectedly; request=%s", method, _brief(request))
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
        "rpc=%s code=%s ms=%.2f reason=%s message=%s",
        method,
        code.name,
        elapsed_ms,
        error.reason,
        error.message,
    )


_SERVER_SIDE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
