"""What every ThreadService RPC shares, whatever the transport: auth, deadline, error
mapping and one log line (``run``). gRPC calls reach it through ``@rpc``, HTTP/JSON calls
through ``threads_server.http`` (``handler_of``), in the same process: no second hop.

A handler wrapped in ``@rpc`` gets the authenticated caller (its token's subject; "" with
auth off) instead of the gRPC context, runs under the caller's deadline (so a Redis call
never outlives it), and whatever it raises leaves as a clear status: domain errors with their
ErrorInfo (the store has already turned Redis outages into UNAVAILABLE, safe to retry),
an expired deadline as DEADLINE_EXCEEDED, anything unexpected as INTERNAL with the
traceback logged here rather than sent to the caller. No redis here: the store owns it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor, message, message_factory
from grpc import aio

from threads_server import metrics, tracing
from threads_server.auth import Authenticator
from threads_server.errors import DeadlineExceeded, InvalidArgument, Reason, ThreadsError
from threads_server.http.status import HTTP_STATUS

log = logging.getLogger("threads.rpc")


class Authenticating(Protocol):
    """A servicer whose ``@rpc`` handlers need a caller; None: auth is off."""

    authenticator: Authenticator | None


S = TypeVar("S", bound=Authenticating)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = aio.ServicerContext[Any, Any]


def to_threads_error(exc: Exception) -> ThreadsError | None:
    """Maps an exception to the status it should produce; None for a bug (INTERNAL)."""
    if isinstance(exc, ThreadsError):
        return exc
    if isinstance(exc, TimeoutError):
        return _deadline_error()
    return None


def _deadline_error() -> DeadlineExceeded:
    return DeadlineExceeded(
        "the deadline expired before the thread store answered", reason=Reason.DEADLINE_EXCEEDED
    )


# The transport's clock and ours start a moment apart: a cancellation this close to the
# deadline is the deadline's.
_DEADLINE_SLACK_SECONDS = 0.005


def past_deadline(started: float, time_remaining: float | None) -> bool:
    """Whether a call that began at ``started`` (perf_counter) with ``time_remaining``
    has reached its deadline: a cancellation then is DEADLINE_EXCEEDED, not CANCELLED."""
    if time_remaining is None:
        return False
    return time.perf_counter() - started >= time_remaining - _DEADLINE_SLACK_SECONDS


class MalformedRequest:
    """Stands in for a request whose bytes do not parse, so that the handler answers
    INVALID_ARGUMENT (gRPC itself would answer UNKNOWN with a Python exception text)."""

    __slots__ = ("error", "problem", "type_name")

    def __init__(self, type_name: str, error: str, problem: ThreadsError | None = None) -> None:
        self.type_name = type_name
        self.error = error
        # The exact error to answer with, when the transport knows better (HTTP names
        # the JSON field that is wrong).
        self.problem = problem

    def as_error(self) -> ThreadsError:
        if self.problem is not None:
            return self.problem
        return InvalidArgument(
            f"the request is not a valid {self.type_name}: {self.error}",
            reason=Reason.MALFORMED_REQUEST,
        )


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
    """Registers a servicer's ``@rpc`` methods (and ``@stream_rpc`` ones for methods that
    stream their replies: ``threads_server.streams``), parsing requests leniently."""
    handlers = {
        method.name: (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )(
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


INTERNAL_MESSAGE = "internal error; see the server log"


@dataclass(frozen=True, slots=True)
class Failure:
    """How a call failed, for any transport: the code and message to send, and the domain
    error with its ErrorInfo (None for a bug: INTERNAL, whose cause stays in the log)."""

    code: grpc.StatusCode
    message: str
    error: ThreadsError | None = None


Handler = Callable[[S, Req, str], Awaitable[Resp]]


async def run(
    servicer: S,
    handler: Handler[S, Req, Resp],
    request: Req | MalformedRequest,
    *,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    time_remaining: float | None,
    transport: str = "grpc",
    route: tuple[str, str] | None = None,
    deadline_timer: bool = True,
) -> Resp | Failure:
    """The per-call pipeline every transport shares: auth from the call's metadata (gRPC
    metadata or HTTP headers), a malformed request as INVALID_ARGUMENT, the deadline,
    errors to a status, one log line. Returns the response, or the Failure to send.
    ``route``: the HTTP (verb, path template) the call came by, for its log line and span.
    ``deadline_timer`` False: the transport itself cancels the call at its deadline (gRPC
    does: its core cancels the handler's task), so no timer per call here.
    With tracing on, all of it runs inside the call's SERVER span (``tracing.rpc_span``)."""
    # A coroutine: nothing runs until it is awaited, inside the span when there is one.
    call = _run(
        servicer,
        handler,
        request,
        metadata=metadata,
        time_remaining=time_remaining,
        transport=transport,
        route=route,
        deadline_timer=deadline_timer,
    )
    if not tracing.ENABLED:
        return await call
    with tracing.rpc_span(handler.__name__, metadata, transport, route) as span:
        outcome = await call
        code = outcome.code if isinstance(outcome, Failure) else grpc.StatusCode.OK
        tracing.end_rpc(
            span,
            code.value[0],
            outcome.message if isinstance(outcome, Failure) else "",
            outcome.error.reason if isinstance(outcome, Failure) and outcome.error else None,
            HTTP_STATUS[code] if route is not None else None,
        )
        return outcome


async def _run(
    servicer: S,
    handler: Handler[S, Req, Resp],
    request: Req | MalformedRequest,
    *,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    time_remaining: float | None,
    transport: str,
    route: tuple[str, str] | None,
    deadline_timer: bool,
) -> Resp | Failure:
    method = handler.__name__
    call = _CallLog(method, transport, route, _thread_id(request))
    started = time.perf_counter()
    try:
        # Before anything else: an unauthenticated caller learns nothing, not even
        # whether its request was well-formed.
        owner = (
            servicer.authenticator.caller(metadata) if servicer.authenticator is not None else ""
        )
        if isinstance(request, MalformedRequest):
            raise request.as_error()
        if time_remaining is not None and time_remaining <= 0:
            # Do not start a write the caller has already given up on.
            raise TimeoutError
        if deadline_timer:
            async with asyncio.timeout(time_remaining):
                response = await handler(servicer, request, owner)
        else:
            response = await handler(servicer, request, owner)
    except asyncio.CancelledError:
        if past_deadline(started, time_remaining):  # the transport ended it at the deadline
            _log_done(call, grpc.StatusCode.DEADLINE_EXCEEDED, started, _deadline_error())
        raise
    except Exception as exc:
        failure, error = exc, to_threads_error(exc)
    else:
        _log_done(call, grpc.StatusCode.OK, started)
        return response
    if error is None:
        log.error(
            "rpc=%s failed unexpectedly; request=%s",
            method,
            _shape(request),
            exc_info=failure,
            extra=call.fields(grpc.StatusCode.INTERNAL),
        )
        _log_done(call, grpc.StatusCode.INTERNAL, started)
        return Failure(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    _log_done(call, error.code, started, error)
    return Failure(error.code, error.message, error)


def handler_of(bound: object) -> Handler[Any, Any, Any] | None:
    """The transport-neutral handler behind a servicer's ``@rpc`` method; None for a method
    the servicer does not implement (gRPC's generated base answers UNIMPLEMENTED)."""
    found: Handler[Any, Any, Any] | None = getattr(bound, "__threads_handler__", None)
    return found


def rpc(
    handler: Callable[[S, Req, str], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    """The gRPC face of a handler: ``run`` with the call's metadata and deadline, and a
    Failure sent as the call's status (with its ErrorInfo). Counted here, for gRPC only
    (go-grpc-prometheus's metrics); HTTP calls are counted by route in ``http.app``."""

    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        started = metrics.grpc_started_call(method)
        time_remaining = context.time_remaining()
        try:
            outcome = await run(
                self,
                handler,
                request,
                metadata=context.invocation_metadata(),
                time_remaining=time_remaining,
                deadline_timer=False,  # gRPC cancels this task at the caller's deadline
            )
        except asyncio.CancelledError:  # the deadline passed, or the caller went away
            expired = past_deadline(started, time_remaining)
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            metrics.grpc_handled_call(method, code, started)
            raise
        code = outcome.code if isinstance(outcome, Failure) else grpc.StatusCode.OK
        metrics.grpc_handled_call(method, code, started)
        if not isinstance(outcome, Failure):
            return outcome
        if outcome.error is None:
            await context.abort(outcome.code, outcome.message)
        else:
            status = outcome.error.to_status()
            await context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    wrapper.__threads_handler__ = handler  # type: ignore[attr-defined]
    return wrapper


def _shape(request: Any) -> str:
    """What a request held, by field name and size, never by value: entries, metadata and
    ids may be anyone's data, and a log is read by more people than the threads are."""
    if isinstance(request, MalformedRequest):
        return f"<malformed {request.type_name}>"
    if not isinstance(request, message.Message):
        return f"<{type(request).__name__}>"
    parts = []
    for field, value in request.ListFields():
        if field.is_repeated:  # maps too: size, not keys
            parts.append(f"{field.name}[{len(value)}]")
        elif isinstance(value, str | bytes):
            parts.append(f"{field.name}({len(value)})")
        elif isinstance(value, message.Message):
            parts.append(f"{field.name}({value.ByteSize()}B)")
        else:
            parts.append(field.name)
    return f"{request.DESCRIPTOR.name}{{{', '.join(parts)}}}"


def _thread_id(request: Any) -> str:
    """The thread a request names, for the log line ("" when none or malformed)."""
    thread_id = getattr(request, "thread_id", "")
    return thread_id if isinstance(thread_id, str) else ""


@dataclass(slots=True)  # not frozen: made on every call, and a frozen __init__ costs more
class _CallLog:
    """What a call's log lines carry as structured fields (``extra=``), so that the text
    and the JSON formats (``threads_server.logs``) come from one place."""

    method: str
    transport: str
    route: tuple[str, str] | None
    thread_id: str

    def fields(
        self, code: grpc.StatusCode, elapsed_ms: float | None = None, reason: str = ""
    ) -> dict[str, Any]:
        found: dict[str, Any] = {"method": self.method, "transport": self.transport}
        if self.route is None:
            found["grpc_code"] = code.name
        else:
            found["route"] = f"{self.route[0]} {self.route[1]}"
            found["http_status"] = HTTP_STATUS[code]
            found["grpc_code"] = code.name
        if elapsed_ms is not None:
            found["latency_ms"] = round(elapsed_ms, 3)
        if self.thread_id:
            found["thread_id"] = self.thread_id
        if reason:
            found["reason"] = reason
        ids = tracing.current_ids()
        if ids is not None:
            found["trace_id"], found["span_id"] = ids
        return found


def _log_done(
    call: _CallLog,
    code: grpc.StatusCode,
    started: float,
    error: ThreadsError | None = None,
) -> None:
    if error is None:
        # A successful call is DEBUG: metrics count it, and a line each would be thousands
        # a second. A bug's (INTERNAL, whose traceback is logged before) stays INFO.
        level = logging.DEBUG if code is grpc.StatusCode.OK else logging.INFO
        if not log.isEnabledFor(level):  # the fields (and span ids) cost per call
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.log(
            level,
            "rpc=%s code=%s ms=%.2f%s",
            call.method,
            code.name,
            elapsed_ms,
            _via(call),
            extra=call.fields(code, elapsed_ms),
        )
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    level = logging.WARNING if code in _SERVER_SIDE else logging.INFO
    log.log(
        level,
        "rpc=%s code=%s ms=%.2f%s reason=%s message=%s%s",
        call.method,
        code.name,
        elapsed_ms,
        _via(call),
        error.reason,
        error.message,
        f" cause={error.__cause__!r}" if error.__cause__ else "",
        extra=call.fields(code, elapsed_ms, str(error.reason)),
    )


def _via(call: _CallLog) -> str:
    return "" if call.transport == "grpc" else f" via={call.transport}"


_SERVER_SIDE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
