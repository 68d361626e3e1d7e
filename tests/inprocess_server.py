"""An in-process ThreadsServer with its own channel, for tests that start servers of their
own (outages, faults) rather than use the session's. The ``start_server`` fixture
(conftest) stops them at teardown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from threads_server.ops.config import Settings
from threads_server.server import SERVICE_NAME, ThreadsServer
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_NAMES = ("", SERVICE_NAME)
# Reconnect quickly, so a channel never sits in a long backoff between polls.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]
POLL_BOUND = 15.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Polls ``check`` until it holds; fails after a generous bound (not a timing claim)."""
    deadline = time.monotonic() + POLL_BOUND
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {POLL_BOUND}s: {what}")


class Started:
    """An in-process ThreadsServer with a channel and stubs to it."""

    def __init__(self, server: ThreadsServer, channel: aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.stub = pb_grpc.ThreadServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    async def health_of(self, name: str) -> Any:
        response = await self.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        return response.status

    async def wait_health(self, status: Any) -> None:
        async def reached() -> bool:
            return all([await self.health_of(name) == status for name in HEALTH_NAMES])

        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        await eventually(reached, f"health {name} for {HEALTH_NAMES}")


class StartServer(Protocol):
    """The ``start_server`` fixture: a ThreadsServer on ``redis_url`` and a channel to it.

    The channel uses ``credentials`` (TLS) when given, with ``options`` added to
    CHANNEL_OPTIONS (``grpc.ssl_target_name_override``, say).
    """

    def __call__(
        self,
        settings: Settings,
        redis_url: str | None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> Awaitable[Started]: ...
