"""OpenTelemetry traces: a SERVER span per RPC (gRPC and HTTP alike, from ``service.call``)
and a child span per Redis script call (``store.corridor.Corridor``), exported over OTLP/gRPC.

Tracing is on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set;
every other standard ``OTEL_*`` variable (sampler, batch delays, headers, resource) is left
to the SDK's own handling. When it is off nothing of the SDK is imported and each call pays
one module-level flag check (``ENABLED``), not a no-op tracer's context work.

``configure`` runs in each serving process after any fork: a BatchSpanProcessor's export
thread does not survive ``fork``, so the supervisor never sets one up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
DEFAULT_SERVICE_NAME = "threads"
RPC_SERVICE = "threads.v1.ThreadService"

ENABLED = False
"""Checked once per call: False means no span, no context, no SDK import."""

_W3C_HEADERS = frozenset(("traceparent", "tracestate"))


@dataclass(frozen=True, slots=True)
class _Sdk:
    """What the span paths use of the API, resolved once in ``configure``, not per call."""

    propagator: TextMapPropagator
    server: SpanKind
    client: SpanKind
    status: Callable[[StatusCode, str], Status]
    error: StatusCode


_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_sdk: _Sdk | None = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for export: an OTLP endpoint, and the SDK not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Installs the TracerProvider with an OTLP/gRPC exporter when ``wanted``; True if on.

    The service name is ``OTEL_SERVICE_NAME`` (or ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``), else "threads". Idempotent within a process."""
    global ENABLED, _tracer, _provider, _sdk  # noqa: PLW0603 - one process-wide switch
    environ = os.environ if environ is None else environ
    if not wanted(environ):
        return False
    if _provider is not None:
        return True
    from opentelemetry import trace  # noqa: PLC0415 - only when tracing is on
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # Resource.create reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES itself; the
    # attributes given here would override them, so the default is given only without.
    resource = Resource.create({} if named else {SERVICE_NAME: DEFAULT_SERVICE_NAME})
    # The sampler (OTEL_TRACES_SAMPLER[_ARG]), the batch settings (OTEL_BSP_*) and the
    # exporter's endpoint, headers, TLS and timeout (OTEL_EXPORTER_OTLP_*) come from the SDK.
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("threads_server")
    _sdk = _Sdk(
        TraceContextTextMapPropagator(), SpanKind.SERVER, SpanKind.CLIENT, Status, StatusCode.ERROR
    )
    ENABLED = True
    return True


def shutdown() -> None:
    """Flushes the spans still queued and stops the export thread (at server exit)."""
    global ENABLED  # noqa: PLW0603
    ENABLED = False
    if _provider is not None:
        _provider.shutdown()


def _carrier(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The W3C headers among the call's metadata (gRPC keys are lowercase; HTTP header names
    are lowercased here); nothing else of the metadata is read."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        name = key.lower()
        if name in _W3C_HEADERS and isinstance(value, str):
            found[name] = value
    return found


def rpc_span(
    method: str,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    transport: str,
    route: tuple[str, str] | None = None,
) -> AbstractContextManager[Span]:
    """The call's SERVER span, current while the handler runs, continuing the caller's
    ``traceparent`` when it sent one. Only called when ENABLED.

    Per call: the propagator only runs when a W3C header came (no carrier, no context
    otherwise), and the attributes go in at start, in one dict (one lock, not one each)."""
    assert _tracer is not None and _sdk is not None
    carrier = _carrier(metadata)
    attributes: dict[str, Any] = {
        "rpc.system": "grpc",
        "rpc.service": RPC_SERVICE,
        "rpc.method": method,
        "threads.transport": transport,
    }
    if route is not None:
        attributes["http.request.method"], attributes["http.route"] = route
    return _tracer.start_as_current_span(
        f"{RPC_SERVICE}/{method}",
        context=_sdk.propagator.extract(carrier) if carrier else None,
        kind=_sdk.server,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )


def end_rpc(
    span: Span,
    code: int,
    message: str = "",
    reason: str | None = None,
    http_status: int | None = None,
) -> None:
    """Records the call's outcome on its span: the gRPC code (and HTTP status), and for a
    failure status ERROR with the message and the ErrorInfo reason."""
    assert _sdk is not None
    if http_status is None and code == 0:  # the common case: one attribute
        span.set_attribute("rpc.grpc.status_code", code)
        return
    attributes: dict[str, Any] = {"rpc.grpc.status_code": code}
    if http_status is not None:
        attributes["http.response.status_code"] = http_status
    if code != 0 and reason:
        attributes["threads.error.reason"] = reason
    span.set_attributes(attributes)
    if code != 0:
        span.set_status(_sdk.status(_sdk.error, message))


def script_span(
    name: str, keys: Iterable[str], *, batch: int | None = None
) -> AbstractContextManager[Span]:
    """A CLIENT span for one Redis script call, child of the current RPC span; or for
    ``batch`` calls of the script sent together (``db.operation.batch.size``). Only called
    when ENABLED."""
    assert _tracer is not None and _sdk is not None
    first = next(iter(keys), "")
    start, end = first.find("{"), first.find("}")
    attributes: dict[str, Any] = {
        "db.system": "redis",
        "db.operation.name": "EVALSHA",
        "threads.script": name,
    }
    if 0 <= start < end:
        attributes["threads.hash_tag"] = first[start : end + 1]
    if batch is not None:
        attributes["db.operation.batch.size"] = batch
    return _tracer.start_as_current_span(
        f"redis.script {name}", kind=_sdk.client, attributes=attributes
    )


def current_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids in hex, for log lines; None when off."""
    if not ENABLED:
        return None
    from opentelemetry.trace import get_current_span  # noqa: PLC0415

    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
