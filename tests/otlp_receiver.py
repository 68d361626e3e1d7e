"""A real OTLP/gRPC trace receiver (opentelemetry-proto's generated TraceService), for the
tracing tests and the tracing bench: it keeps every span it is sent.

``python -m tests.otlp_receiver PORT`` runs one until SIGTERM, counting spans (the bench's
local receiver); prints ``spans=N`` at exit.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Stores each ExportTraceServiceRequest; ``spans()`` flattens them."""

    def __init__(self, keep: bool = True) -> None:
        self._lock = threading.Lock()
        self._requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._keep = keep
        self.count = 0

    def Export(  # noqa: N802 - the generated service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self.count += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            if self._keep:
                self._requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        """Every span received, with its resource's attributes."""
        with self._lock:
            requests = list(self._requests)
        found: list[tuple[dict[str, Any], trace_pb2.Span]] = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope.spans)
        return found


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP KeyValues as a dict of plain values."""
    out: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        out[pair.key] = getattr(pair.value, kind) if kind else None
    return out


def start(port: int = 0, *, keep: bool = True) -> tuple[grpc.Server, Receiver, int]:
    """A receiver on 127.0.0.1 (``port`` 0: a free one); returns the server, it, the port."""
    receiver = Receiver(keep)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, receiver, bound


def main() -> int:
    server, receiver, port = start(int(sys.argv[1]), keep=False)
    print(f"listening 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(1)
    print(f"spans={receiver.count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
