"""The gRPC server of one process: ThreadService, health and reflection on grpc.aio.

The HTTP/JSON server (``transports.http.server``) stands beside it in the same event loop;
``ThreadsServer`` starts and stops both. Health is the standard ``grpc.health.v1`` service,
reporting "" and ``threads.v1.ThreadService`` alike.
"""

from __future__ import annotations

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from threads_server.ops.config import Settings
from threads_server.ops.tls import server_credentials
from threads_server.ops.workers import ListenError
from threads_server.pb import threads_pb2 as pb
from threads_server.service.call import Authenticating
from threads_server.transports.grpc.reflection import enable_reflection
from threads_server.transports.grpc.registration import add_service

SERVICE = pb.DESCRIPTOR.services_by_name["ThreadService"]
SERVICE_NAME: str = SERVICE.full_name
_GRPC_PENDING_CALLS = 1000  # gRPC core's own default
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GrpcServer:
    def __init__(self, servicer: Authenticating, settings: Settings, *, reuse_port: bool) -> None:
        """``reuse_port``: share the port with sibling workers (``--workers``) via
        SO_REUSEPORT."""
        self._settings = settings
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        max_bytes = settings.max_message_bytes
        pending = max(_GRPC_PENDING_CALLS, settings.max_watchers)
        self.server = aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                # Off by default, so a second server on the port fails instead of silently
                # sharing it; workers share it on purpose.
                ("grpc.so_reuseport", int(reuse_port)),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # Calls that wait for the event loop to take them: gRPC's core cancels them
                # past 1,000 (at random; all past 3,000), so a burst of Watch streams (a
                # worker's clients reconnecting at once) would be CANCELLED, not retried.
                # As many as this worker may hold open wait instead.
                ("grpc.server.max_pending_requests", pending),
                ("grpc.server.max_pending_requests_hard_limit", 2 * pending),
            ]
        )
        add_service(servicer, SERVICE, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), self.server)
        self.port = 0
        self.mode = "plaintext"

    def bind(self) -> int:
        """Binds ``--listen`` (TLS when configured) and returns the port (useful with 0).

        Raises TLSConfigError (``ops.tls``) when TLS is on and its files are unusable."""
        listen = self._settings.listen
        credentials = server_credentials(self._settings)
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(listen)
            else:
                self.port = self.server.add_secure_port(listen, credentials)
        except RuntimeError as exc:
            raise ListenError(
                f"cannot listen on {listen} ({exc}); is another server using the port? Pass "
                "another --listen"
            ) from exc
        if credentials is not None:
            mutual = self._settings.tls_client_ca_file is not None
            self.mode = "mutual TLS" if mutual else "TLS"
        return self.port

    async def start(self) -> None:
        await self.server.start()

    async def set_health(self, *, serving: bool) -> None:
        status = _SERVING if serving else _NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def enter_graceful_shutdown(self) -> None:
        """Health says NOT_SERVING from now on, whatever Redis does."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Refuses new RPCs; in-flight ones finish within ``grace`` seconds."""
        await self.server.stop(grace)
