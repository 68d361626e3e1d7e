"""The gRPC face of the service's handlers: each RPC of the service descriptor registered
with grpc.aio, calling its ``service.call.Endpoint``.

Registration walks the descriptor, so a new RPC needs nothing here: its handler on the
servicer is found by name. A method the servicer lacks is not registered, and gRPC answers
UNIMPLEMENTED. A server-streaming method (Watch) gets the streaming face: each message is
written with ``context.write``, which waits for HTTP/2 flow control, so a slow reader holds
one message. Requests are parsed leniently: bytes that do not parse reach the pipeline as
a ``MalformedRequest`` and are answered INVALID_ARGUMENT after auth, where gRPC would
answer UNKNOWN with a Python exception's text. Calls are counted here, for gRPC only
(go-grpc-prometheus's metrics); HTTP calls are counted by route in ``transports.http.app``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor, message, message_factory
from grpc import aio

from threads_server.ops import metrics
from threads_server.service.call import (
    Authenticating,
    Endpoint,
    Failure,
    MalformedRequest,
    Send,
    Via,
    past_deadline,
)

GRPC = Via("grpc", deadline_timer=False)
"""gRPC's calls: gRPC itself cancels the handler's task at the caller's deadline."""

Context = aio.ServicerContext[Any, Any]


def add_service(
    servicer: Authenticating, service: descriptor.ServiceDescriptor, server: aio.Server
) -> None:
    """Registers every method of ``service`` that ``servicer`` implements, unary or
    server-streaming. A client-streaming method fails here, at start-up: no face serves it."""
    handlers = {}
    for method in service.methods:
        if method.client_streaming:
            raise ValueError(f"{method.full_name} streams requests: no face serves it")
        endpoint = Endpoint(servicer, method.name, GRPC)
        if endpoint.handler is None:
            continue
        make_handler = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make_handler(
            _face(endpoint, streaming=method.server_streaming),
            request_deserializer=_lenient_parser(
                message_factory.GetMessageClass(method.input_type)
            ),
            response_serializer=_serializer(
                message_factory.GetMessageClass(method.output_type), method.server_streaming
            ),
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    # Registered methods skip gRPC's per-call generic lookup (missing from grpc-stubs).
    server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]


def _face(endpoint: Endpoint, *, streaming: bool) -> Callable[[Any, Context], Awaitable[Any]]:
    """The endpoint with the call's metadata and deadline (and, ``streaming``, messages
    written as they come), and a Failure sent as the call's status (with its ErrorInfo in
    the trailer)."""
    method = endpoint.method
    grpc_type = metrics.GRPC_STREAM if streaming else metrics.GRPC_TYPE

    async def handle(request: Any, context: Context) -> Any:
        started = metrics.grpc_started_call(method, grpc_type)
        time_remaining = context.time_remaining()
        send = _writer(context, method) if streaming else None
        try:
            outcome = await endpoint(request, context.invocation_metadata(), time_remaining, send)
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

    handle.__name__ = method
    return handle


def _writer(context: Context, method: str) -> Send:
    """A stream's ``send``: ``context.write`` returns once HTTP/2 flow control took it."""

    async def send(message: Any) -> None:
        await context.write(message)
        metrics.grpc_sent(method)

    return send


def _serializer(response_type: type[message.Message], streaming: bool) -> Callable[[Any], bytes]:
    """The method's serializer. A stream's remembers the last message it serialized: a
    message written on many streams in a row (Watch's, one per Append, shared by the
    watchers of the thread) is serialized once. Messages are never changed once sent."""
    serialize = response_type.SerializeToString
    if not streaming:
        return serialize
    last: list[Any] = [None, b""]

    def serialize_shared(response: Any) -> bytes:
        if response is not last[0]:
            last[0], last[1] = response, serialize(response)
        wire: bytes = last[1]
        return wire

    return serialize_shared


def _lenient_parser(request_type: type[message.Message]) -> Callable[[bytes], Any]:
    type_name = request_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except message.DecodeError as exc:
            return MalformedRequest(type_name, str(exc))

    return parse
