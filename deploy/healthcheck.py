"""The image's HEALTHCHECK: the service's own gRPC health (``grpc.health.v1``, the whole
server, service ""), asked on 127.0.0.1 at THREADS_LISTEN's port. Exits 0 only when
SERVING, which the server reports while Redis answers.

Plaintext only: with THREADS_TLS_CERT_FILE set, use the orchestrator's probes instead
(docs/deployment.md).
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SECONDS = 3.0


def main() -> int:
    port = os.environ.get("THREADS_LISTEN", "127.0.0.1:50051").rsplit(":", 1)[1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            print(f"health check on port {port} failed: {exc.code().name}: {exc.details()}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"port {port}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
