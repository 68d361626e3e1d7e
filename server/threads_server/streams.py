"""What every server-streaming RPC shares, whatever the transport (``run_stream``): auth, a
malformed request, the deadline, errors to a status, one span for the whole stream and one
log line when it ends, saying why and how much it sent. gRPC streams reach it through
``@stream_rpc``, Server-Sent Events through ``threads_server.http.sse``; the unary twin of
all this is ``threads_server.rpc``.

A streaming handler is an async generator: ``handler(servicer, request, owner)`` yields the
messages. The transport gives ``send``, which returns once the message is taken (its
flow control: the handler is not asked for the next one before), and gets back None (the
stream ended) or the ``Failure`` to end it with. Whether anything was sent by then is the
transport's to know: over SSE it decides between an error status and an error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from threads_server import metrics, tracing
from threads_server.errors import ThreadsError
from threads_server.http.status import HTTP_STATUS
from threads_server.rpc import (
    INTERNAL_MESSAGE,
    Authenticating,
    Context,
    Failure,
    MalformedRequest,
    _CallLog,
    _shape,
    _thread_id,
    past_deadline,
    to_threads_error,
)

log = logging.getLogger("threads.rpc")

S = TypeVar("S", bound=Authenticating)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
StreamHandler = Callable[[S, Req, str], AsyncGenerator[Resp, None]]
Send = Callable[[Any], Awaitable[None]]

_WHY = {
    grpc.StatusCode.OK: "it ended",
    grpc.StatusCode.CANCELLED: "the caller went away",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the caller's deadline passed",
}


@dataclass(slots=True)
class _Sent:
    messages: int = 0
    entries: int = 0

    def add(self, message: Any) -> None:
        self.messages += 1
        self.entries += len(getattr(message, "entries", ()))


async def run_stream(
    servicer: S,
    handler: StreamHandler[S, Req, Resp],
    request: Req | MalformedRequest,
    *,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    send: Send,
    time_remaining: float | None,
    transport: str = "grpc",
    route: tuple[str, str] | None = None,
    deadline_timer: bool = True,
) -> Failure | None:
    """Runs a streaming call to its end: None when the handler finished, else the Failure
    to send. A cancellation (the caller went away; gRPC's deadline) propagates, logged.
    ``deadline_timer`` False: the transport cancels the call at its deadline (gRPC does)."""
    call = _stream(
        servicer,
        handler,
        request,
        metadata=metadata,
        send=send,
        time_remaining=time_remaining,
        transport=transport,
        route=route,
        deadline_timer=deadline_timer,
    )
    if not tracing.ENABLED:
        return await call
    with tracing.rpc_span(handler.__name__, metadata, transport, route) as span:
        failure = await call
        code = failure.code if failure is not None else grpc.StatusCode.OK
        tracing.end_rpc(
            span,
            code.value[0],
            failure.message if failure is not None else "",
            failure.error.reason if failure is not None and failure.error else None,
            HTTP_STATUS[code] if route is not None else None,
        )
        return failure


async def _stream(
    servicer: S,
    handler: StreamHandler[S, Req, Resp],
    request: Req | MalformedRequest,
    *,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    send: Send,
    time_remaining: float | None,
    transport: str,
    route: tuple[str, str] | None,
    deadline_timer: bool,
) -> Failure | None:
    call = _CallLog(handler.__name__, transport, route, _thread_id(request))
    started = time.perf_counter()
    sent = _Sent()
    try:
        owner = (
            servicer.authenticator.caller(metadata) if servicer.authenticator is not None else ""
        )
        if isinstance(request, MalformedRequest):
            raise request.as_error()
        if time_remaining is not None and time_remaining <= 0:
            raise TimeoutError
        async with (
            asyncio.timeout(time_remaining if deadline_timer else None),
            contextlib.aclosing(handler(servicer, request, owner)) as messages,
        ):
            async for message in messages:
                await send(message)
                sent.add(message)
    except asyncio.CancelledError:
        expired = past_deadline(started, time_remaining)
        code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        _log_end(call, code, started, sent)
        raise
    except Exception as exc:
        error = to_threads_error(exc)
        if error is None:
            log.error(
                "rpc=%s failed unexpectedly; request=%s",
                call.method,
                _shape(request),
                exc_info=exc,
                extra=call.fields(grpc.StatusCode.INTERNAL),
            )
            _log_end(call, grpc.StatusCode.INTERNAL, started, sent)
            return Failure(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        _log_end(call, error.code, started, sent, error)
        return Failure(error.code, error.message, error)
    _log_end(call, grpc.StatusCode.OK, started, sent)
    return None


def _log_end(
    call: _CallLog,
    code: grpc.StatusCode,
    started: float,
    sent: _Sent,
    error: ThreadsError | None = None,
) -> None:
    """One INFO line per stream, when it ends: why, after how long, what it delivered."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    fields = call.fields(code, elapsed_ms, str(error.reason) if error is not None else "")
    fields["messages"], fields["entries"] = sent.messages, sent.entries
    why = error.message if error is not None else _WHY.get(code, code.name)
    log.info(
        "rpc=%s stream ended code=%s after %.1fs%s, %d entries in %d messages%s: %s",
        call.method,
        code.name,
        elapsed_ms / 1000,
        "" if call.transport == "grpc" else f" via={call.transport}",
        sent.entries,
        sent.messages,
        f" reason={error.reason}" if error is not None else "",
        why,
        extra=fields,
    )


def stream_rpc(
    handler: StreamHandler[S, Req, Resp],
) -> Callable[[S, Req, Context], Awaitable[None]]:
    """The gRPC face of a streaming handler: ``run_stream`` writing each message with
    ``context.write`` (which waits for HTTP/2 flow control), the Failure sent as the
    call's status (with its ErrorInfo); counted as go-grpc-prometheus counts streams."""
    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: S, request: Req, context: Context) -> None:
        started = metrics.grpc_stream_started(method)
        time_remaining = context.time_remaining()

        async def send(message: Any) -> None:
            await context.write(message)
            metrics.grpc_stream_sent(method)

        try:
            failure = await run_stream(
                self,
                handler,
                request,
                metadata=context.invocation_metadata(),
                send=send,
                time_remaining=time_remaining,
                deadline_timer=False,  # gRPC cancels this task at the caller's deadline
            )
        except asyncio.CancelledError:
            expired = past_deadline(started, time_remaining)
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            metrics.grpc_stream_handled(method, code, started)
            raise
        metrics.grpc_stream_handled(
            method, failure.code if failure is not None else grpc.StatusCode.OK, started
        )
        if failure is None:
            return
        if failure.error is None:
            await context.abort(failure.code, failure.message)
        else:
            status = failure.error.to_status()
            await context.abort(status.code, status.details, status.trailing_metadata)

    wrapper.__threads_handler__ = handler  # type: ignore[attr-defined]
    return wrapper
