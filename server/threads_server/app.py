"""Wires the gRPC server: ThreadService, health, reflection, Redis, signals.

``ThreadsServer`` is the whole service in one object, used both by ``python -m threads_server``
and by the tests (which start it in-process on a free port against their own Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import redis.asyncio as aioredis
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from threads_server import metrics, rpc
from threads_server.auth import Authenticator
from threads_server.config import Settings
from threads_server.errors import Unavailable
from threads_server.http.app import build_app
from threads_server.http.server import HttpServer
from threads_server.limits import Limits
from threads_server.pb import threads_pb2 as pb
from threads_server.reflection import enable_reflection
from threads_server.service import ThreadService
from threads_server.store import ThreadStore
from threads_server.subscriptions import Subscriber, endpoint_for
from threads_server.tls import server_credentials
from threads_server.watch import Watches
from threads_server.workers import ListenError

log = logging.getLogger("threads.server")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ThreadService"].full_name
# On a cluster, Watch's reads at once per worker: each holds a pooled connection of its node.
CLUSTER_WATCH_READS = 4
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def connect_redis(url: str | None, settings: Settings) -> Any:
    """A redis.asyncio client that fails fast and never retries a command by itself.

    Retrying a write whose reply was lost could apply it twice (a duplicated Append), so
    retries belong to callers, who can make them safe (expected_length, request_id).
    With ``settings.redis_cluster``, a cluster client (``connect_redis_cluster``); with
    ``settings.redis_sentinel``, a client of the primary the sentinels name
    (``connect_redis_sentinel``).
    """
    if settings.redis_sentinel is not None:
        return connect_redis_sentinel(settings)
    if not url:
        raise ValueError("a Redis URL or --redis-sentinel is needed")
    if settings.redis_cluster:
        return connect_redis_cluster(url, settings)
    return aioredis.from_url(
        url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=min(1.0, settings.redis_timeout_seconds),
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        client_name="threads",
        # "auto" maintenance notifications make the pool skip its closed-connection check,
        # so after a Redis restart every idle pooled connection would fail one RPC.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def connect_redis_cluster(url: str, settings: Settings) -> RedisCluster:
    """A Redis Cluster client with the same fail-fast, never-resend rules as connect_redis.

    ``retry`` with 0 retries turns off the cluster client's own loop, which would otherwise
    re-send a command (3 times, with backoff) after a ConnectionError or TimeoutError (the
    reply of a script that may have run is lost), ClusterDownError or SlotNotCoveredError.
    What stays on is redirection: MOVED, ASK and TRYAGAIN mean the node did not run the
    command, so following them cannot apply a script twice. The per-node connections
    never retry either (redis-py builds them with 0 retries in cluster mode).
    """
    return RedisCluster.from_url(
        url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=min(1.0, settings.redis_timeout_seconds),
        retry=Retry(NoBackoff(), 0),
        client_name="threads",
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def connect_redis_sentinel(settings: Settings) -> Any:
    """A client of the primary that the sentinels name for ``--redis-sentinel-master``.

    redis-py's SentinelConnectionPool asks the sentinels for the primary's address
    whenever it opens a connection, drops idle connections to a former primary once they
    name another, and turns a READONLY reply (a demoted primary) into a ConnectionError,
    so the service follows a failover without a restart. The same fail-fast, never-resend
    rules as connect_redis.
    """
    tls: dict[str, Any] = {}
    if settings.redis_tls:
        tls = {"ssl": True}
        if settings.redis_tls_ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    timeouts: dict[str, Any] = {  # Any: mypy would match floats to Sentinel's other params
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": min(1.0, settings.redis_timeout_seconds),
    }
    sentinel = Sentinel(
        list(settings.redis_sentinel or ()),
        sentinel_kwargs={**timeouts, "password": settings.redis_sentinel_password, **tls},
        **timeouts,
        **tls,
        username=settings.redis_username,
        password=settings.redis_password,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        client_name="threads",
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return sentinel.master_for(settings.redis_sentinel_master or "")


async def close_redis(client: Any) -> None:
    """Closes the client, and for Sentinel its connections to the sentinels too."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        for sentinel in manager.sentinels:
            await sentinel.aclose()


class ThreadsServer:
    def __init__(
        self, settings: Settings, redis_url: str | None, *, reuse_port: bool = False
    ) -> None:
        """``reuse_port``: share the port with sibling workers (``--workers``) via SO_REUSEPORT.
        ``redis_url``: None with ``settings.redis_sentinel``."""
        self.settings = settings
        metrics.configure(enabled=settings.metrics)
        self.redis = connect_redis(redis_url, settings)
        limits = Limits.from_settings(settings)
        self.store = ThreadStore(
            self.redis,
            limits=limits,
            search_index=settings.search_index,
            min_replica_acks=settings.min_replica_acks,
            replica_ack_timeout_ms=settings.replica_ack_timeout_ms,
            pipelining=settings.redis_pipelining,
        )
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        max_bytes = settings.max_message_bytes
        self.grpc = aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                # Off by default, so a second server on the port fails instead of silently
                # sharing it; workers share it on purpose.
                ("grpc.so_reuseport", int(reuse_port)),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        # Watch: one subscription connection per Redis node, shared by the worker's streams.
        self.subscriber = Subscriber(
            endpoint_for(self.redis), timeout=settings.redis_timeout_seconds
        )
        self.watches = Watches(
            self.store,
            self.subscriber,
            progress_seconds=settings.watch_progress_seconds,
            max_watchers=settings.max_watchers,
            max_message_bytes=max_bytes,
            concurrent_reads=CLUSTER_WATCH_READS if settings.redis_cluster else None,
        )
        # Search and Count are declared in the proto; their handlers come from another
        # branch, and until then gRPC's generated base answers UNIMPLEMENTED (HTTP: 501).
        service = ThreadService(
            self.store,
            limits=limits,
            authenticator=Authenticator.from_settings(settings),
            default_ttl_seconds=settings.default_ttl_seconds,
            watches=self.watches,
        )
        rpc.add_service(service, pb.DESCRIPTOR.services_by_name["ThreadService"], self.grpc)
        # The HTTP/JSON routes call the same servicer's handlers, in this process.
        self.http: HttpServer | None = None
        if settings.http_listen:
            app = build_app(service, max_body_bytes=max_bytes, is_serving=lambda: self.serving)
            self.http = HttpServer(app, settings, reuse_port=reuse_port)
        self.serving = False
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), self.grpc)
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._first_round = asyncio.Event()
        self.port = 0
        self.http_port = 0

    async def start(self) -> int:
        """Binds, starts serving and returns the bound port (useful with port 0).

        Raises TLSConfigError (threads_server.tls) when TLS is on and its files are unusable.
        """
        credentials = server_credentials(self.settings)
        try:
            if credentials is None:
                self.port = self.grpc.add_insecure_port(self.settings.listen)
            else:
                self.port = self.grpc.add_secure_port(self.settings.listen, credentials)
        except RuntimeError as exc:
            raise ListenError(
                f"cannot listen on {self.settings.listen} ({exc}); is another server using "
                "the port? Pass another --listen"
            ) from exc
        await self._set_health(serving=False)
        # One Redis check before accepting anything, so that a worker which comes up is
        # SERVING from its first connection when Redis answers (not after its first ping).
        self._watcher = asyncio.create_task(self._watch_redis(), name="redis-health")
        await self._first_round.wait()
        await self.grpc.start()
        mode = "plaintext"
        if credentials is not None:
            mode = "mutual TLS" if self.settings.tls_client_ca_file is not None else "TLS"
        if self.http is not None:
            try:
                self.http_port = await self.http.start()
            except BaseException:
                await self.stop(grace=0)
                raise
        log.info(
            "serving %s on %s (port %d, %s)", SERVICE_NAME, self.settings.listen, self.port, mode
        )
        if self.http is not None:
            scheme = "https" if self.http.tls else "http"
            log.info(
                "serving HTTP/JSON on %s (port %d, %s; %s://%s/openapi.json)",
                self.settings.http_listen,
                self.http_port,
                mode,
                scheme,
                self.settings.http_listen.rsplit(":", 1)[0] + f":{self.http_port}",
            )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stops accepting RPCs, lets in-flight ones finish within the grace period."""
        grace = self.settings.grace_seconds if grace is None else grace
        await self.health.enter_graceful_shutdown()
        self.serving = False
        # Watch streams never finish by themselves: they end now, with UNAVAILABLE, so their
        # clients resume on another worker instead of waiting out the grace period.
        self.watches.close()
        stopping = [self.grpc.stop(grace)]
        if self.http is not None:
            stopping.append(self.http.stop())
        await asyncio.gather(*stopping)
        if self._watcher is not None:
            # The flag, not only the cancel: redis-py can turn a cancellation that lands
            # mid-command into a ConnectionError, which the watcher would take for an
            # outage and go on.
            self._stopping.set()
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.subscriber.aclose()
        await self.store.aclose()
        await close_redis(self.redis)

    async def serve_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A worker starts with these blocked; any that arrived meanwhile are delivered now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        await self.start()
        await stop.wait()
        log.info(
            "shutting down: draining in-flight RPCs for up to %ss", self.settings.grace_seconds
        )
        await self.stop()
        log.info("stopped")

    async def _set_health(self, *, serving: bool) -> None:
        self.serving = serving
        metrics.health(serving=serving)
        status = _SERVING if serving else _NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_redis(self) -> None:
        """Drives the health status from Redis reachability, and reloads scripts on recovery."""
        serving = False
        while not self._stopping.is_set():
            try:
                await self.store.ping()
                failed_over = serving and await self.store.topology_changed()
                if not serving or failed_over:
                    await self.store.prepare()
                if failed_over:  # Watch's subscriptions follow the new primaries
                    self.subscriber.reset()
                now_serving = True
            except Exception as exc:
                now_serving = False
                # Quiet while Redis was never reached (still starting); loud on any change,
                # naming Redis's own error (the store keeps it as an outage's cause).
                unreachable = isinstance(exc, Unavailable)
                if serving or not unreachable:
                    cause = exc.__cause__ if unreachable and exc.__cause__ else exc
                    log.warning("Redis not usable, health NOT_SERVING: %s", cause)
            if now_serving != serving:
                serving = now_serving
                await self._set_health(serving=serving)
                if serving:
                    log.info("Redis reachable, health SERVING")
            self._first_round.set()
            await asyncio.sleep(self.settings.health_interval_seconds)
