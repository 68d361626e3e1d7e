"""What every ThreadService RPC shares, whatever the transport: auth, deadline, error
mapping and one log line (``Endpoint``). The gRPC transport (``transports.grpc``) and the
HTTP/JSON one (``transports.http``) each make an ``Endpoint`` per RPC and call it, in the
same process: no second hop. This module knows neither of them: a transport describes
itself with a ``Via``.

A handler (``handlers.ThreadService.Copy(request, owner)``) gets the authenticated caller
(its token's subject; "" with auth off) instead of a transport's context, runs under the
caller's deadline (so a Redis call never outlives it), and whatever it raises leaves as a
clear status: domain errors with their ErrorInfo (the store has already turned Redis
outages into UNAVAILABLE, safe to retry), an expired deadline as DEADLINE_EXCEEDED,
anything unexpected as INTERNAL with the traceback logged here rather than sent to the
caller. No redis here: the store owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import message

from threads_server.errors import DeadlineExceeded, InvalidArgument, Reason, ThreadsError
from threads_server.ops import tracing
from threads_server.service.auth import Authenticator

log = logging.getLogger("threads.rpc")


class Authenticating(Protocol):
    """A servicer whose handlers need a caller; ``authenticator`` None: auth is off."""

    authenticator: Authenticator | None


Metadata = Iterable[tuple[str, str | bytes]] | None
"""A call's metadata: gRPC's invocation metadata, or the HTTP request's headers."""


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


INTERNAL_MESSAGE = "internal error; see the server log"


@dataclass(frozen=True, slots=True)
class Failure:
    """How a call failed, for any transport: the code and message to send, and the domain
    error with its ErrorInfo (None for a bug: INTERNAL, whose cause stays in the log)."""

    code: grpc.StatusCode
    message: str
    error: ThreadsError | None = None


@dataclass(frozen=True, slots=True)
class Via:
    """How a transport's calls come, made once per route: its name (log lines, spans), the
    HTTP (verb, path template) of the route, whether the call needs a timer for its deadline
    (gRPC cancels the handler's task itself at the deadline: no timer per call), and the
    HTTP status of each code (HTTP's log lines and spans carry it)."""

    name: str
    route: tuple[str, str] | None = None
    deadline_timer: bool = True
    http_status: Mapping[grpc.StatusCode, int] | None = None


Handler = Callable[[Any, str], Awaitable[Any]]
"""A servicer's bound handler: ``(request, owner) -> response`` (a streaming RPC's response
is an async iterator of its messages)."""

Send = Callable[[Any], Awaitable[None]]
"""A streaming transport's ``send``: returns once the message is taken."""


class Endpoint:
    """One RPC of a servicer as one transport serves it. Calling it runs the per-call
    pipeline every transport shares: auth from the call's metadata (gRPC metadata or HTTP
    headers), a malformed request as INVALID_ARGUMENT, the deadline, errors to a status,
    one log line. It returns the response, or the Failure to send. With tracing on, all of
    it runs inside the call's SERVER span (``tracing.rpc_span``). A streaming RPC's transport
    passes ``send``: each message goes to it, and the call returns None once the stream
    ended, or the Failure to end it with (what was sent by then is the transport's to
    know: SSE chooses between an error status and an error event)."""

    __slots__ = ("handler", "method", "servicer", "via")

    def __init__(self, servicer: Authenticating, method: str, via: Via) -> None:
        self.servicer = servicer
        self.method = method
        self.via = via
        # None: the servicer does not implement the method (UNIMPLEMENTED).
        self.handler: Handler | None = getattr(servicer, method, None)

    async def __call__(
        self,
        request: Any,
        metadata: Metadata,
        time_remaining: float | None,
        send: Send | None = None,
    ) -> Any | Failure:
        # A coroutine: nothing runs until it is awaited, inside the span when there is one.
        call = self._handle(request, metadata, time_remaining, send)
        if not tracing.ENABLED:
            return await call
        via = self.via
        with tracing.rpc_span(self.method, metadata, via.name, via.route) as span:
            outcome = await call
            code = outcome.code if isinstance(outcome, Failure) else grpc.StatusCode.OK
            tracing.end_rpc(
                span,
                code.value[0],
                outcome.message if isinstance(outcome, Failure) else "",
                outcome.error.reason if isinstance(outcome, Failure) and outcome.error else None,
                via.http_status[code] if via.http_status is not None else None,
            )
            return outcome

    async def _handle(
        self, request: Any, metadata: Metadata, time_remaining: float | None, send: Send | None
    ) -> Any | Failure:
        method, via, handler = self.method, self.via, self.handler
        assert handler is not None, "a transport serves only the methods the servicer has"
        call = _CallLog(method, via, _thread_id(request))
        started = time.perf_counter()
        sent = None if send is None else _Sent()
        try:
            # Before anything else: an unauthenticated caller learns nothing, not even
            # whether its request was well-formed.
            authenticator = self.servicer.authenticator
            owner = authenticator.caller(metadata) if authenticator is not None else ""
            if isinstance(request, MalformedRequest):
                raise request.as_error()
            if time_remaining is not None and time_remaining <= 0:
                # Do not start a write the caller has already given up on.
                raise TimeoutError
            work = handler(request, owner)
            if send is not None and sent is not None:
                work = _stream(work, send, sent)
            if via.deadline_timer:
                async with asyncio.timeout(time_remaining):
                    response = await work
            else:
                response = await work
        except asyncio.CancelledError:
            if past_deadline(started, time_remaining):  # the transport ended it at the deadline
                _log_done(call, grpc.StatusCode.DEADLINE_EXCEEDED, started, _deadline_error(), sent)
            elif sent is not None:  # a stream's caller went away
                _log_done(call, grpc.StatusCode.CANCELLED, started, None, sent)
            raise
        except Exception as exc:
            failure, error = exc, to_threads_error(exc)
        else:
            _log_done(call, grpc.StatusCode.OK, started, None, sent)
            return response
        if error is None:
            log.error(
                "rpc=%s failed unexpectedly; request=%s",
                method,
                _shape(request),
                exc_info=failure,
                extra=call.fields(grpc.StatusCode.INTERNAL),
            )
            _log_done(call, grpc.StatusCode.INTERNAL, started, None, sent)
            return Failure(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        _log_done(call, error.code, started, error, sent)
        return Failure(error.code, error.message, error)


@dataclass(slots=True)
class _Sent:
    """What a stream has handed to its transport so far, for its log line."""

    messages: int = 0
    entries: int = 0


async def _stream(opening: Awaitable[AsyncIterator[Any]], send: Send, sent: _Sent) -> None:
    """A streaming handler's messages, each to ``send`` once the previous one was taken."""
    messages = await opening
    del opening  # held for the stream's life otherwise (memory per idle watcher)
    async with contextlib.aclosing(messages):  # type: ignore[type-var]
        async for message in messages:
            # Counted as handed over: a caller that leaves once it has the message cancels
            # the write before it reports back.
            sent.messages += 1
            sent.entries += len(getattr(message, "entries", ()))
            await send(message)


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
    via: Via
    thread_id: str

    def fields(
        self, code: grpc.StatusCode, elapsed_ms: float | None = None, reason: str = ""
    ) -> dict[str, Any]:
        via = self.via
        found: dict[str, Any] = {"method": self.method, "transport": via.name}
        if via.route is not None:
            found["route"] = f"{via.route[0]} {via.route[1]}"
        if via.http_status is not None:
            found["http_status"] = via.http_status[code]
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


_WHY_IT_ENDED = {
    grpc.StatusCode.OK: "it ended",
    grpc.StatusCode.CANCELLED: "the caller went away",
}


def _log_done(
    call: _CallLog,
    code: grpc.StatusCode,
    started: float,
    error: ThreadsError | None = None,
    sent: _Sent | None = None,
) -> None:
    if sent is not None:
        _log_stream_end(call, code, started, error, sent)
        return
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


def _log_stream_end(
    call: _CallLog, code: grpc.StatusCode, started: float, error: ThreadsError | None, sent: _Sent
) -> None:
    """One INFO line per stream, when it ends: why, after how long, what it delivered."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    fields = call.fields(code, elapsed_ms, str(error.reason) if error is not None else "")
    fields["messages"], fields["entries"] = sent.messages, sent.entries
    log.info(
        "rpc=%s stream ended code=%s after %.1fs%s, %d entries in %d messages%s: %s",
        call.method,
        code.name,
        elapsed_ms / 1000,
        _via(call),
        sent.entries,
        sent.messages,
        f" reason={error.reason}" if error is not None else "",
        error.message if error is not None else _WHY_IT_ENDED.get(code, code.name),
        extra=fields,
    )


def _via(call: _CallLog) -> str:
    return "" if call.via.name == "grpc" else f" via={call.via.name}"


_SERVER_SIDE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
