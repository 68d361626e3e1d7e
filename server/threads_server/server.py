"""Wires the service: the store, the handlers, the gRPC and HTTP/JSON servers, health,
signals.

``ThreadsServer`` is the whole service in one object, used both by ``python -m threads_server``
and by the tests (which start it in-process on a free port against their own Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from threads_server.errors import Unavailable
from threads_server.ops import metrics
from threads_server.ops.config import Settings
from threads_server.service.auth import Authenticator
from threads_server.service.handlers import ThreadService
from threads_server.service.watch import Watches
from threads_server.store.feeds import Feeds
from threads_server.store.limits import Limits
from threads_server.store.thread_store import ThreadStore
from threads_server.transports.grpc.server import SERVICE_NAME, GrpcServer
from threads_server.transports.http.app import build_app
from threads_server.transports.http.server import HttpServer

__all__ = ["SERVICE_NAME", "ThreadsServer"]

log = logging.getLogger("threads.server")


class ThreadsServer:
    def __init__(
        self, settings: Settings, redis_url: str | None, *, reuse_port: bool = False
    ) -> None:
        """``reuse_port``: share the port with sibling workers (``--workers``) via SO_REUSEPORT.
        ``redis_url``: None with ``settings.redis_sentinel``."""
        self.settings = settings
        metrics.configure(enabled=settings.metrics)
        limits = Limits.from_settings(settings)
        self.store = ThreadStore.open(settings, redis_url, limits=limits)
        # Watch: the worker's streams, and what they read (a feed per watched thread).
        feeds = Feeds(
            self.store,
            heartbeat_seconds=Watches.heartbeat_seconds(settings.watch_progress_seconds),
        )
        self.watches = Watches(
            feeds,
            progress_seconds=settings.watch_progress_seconds,
            max_watchers=settings.max_watchers,
        )
        service = ThreadService(
            self.store,
            limits=limits,
            authenticator=Authenticator.from_settings(settings),
            default_ttl_seconds=settings.default_ttl_seconds,
            watches=self.watches,
        )
        self.grpc = GrpcServer(service, settings, reuse_port=reuse_port)
        # The HTTP/JSON routes call the same servicer's handlers, in this process.
        self.http: HttpServer | None = None
        if settings.http_listen:
            app = build_app(
                service,
                max_body_bytes=settings.max_message_bytes,
                is_serving=lambda: self.serving,
            )
            self.http = HttpServer(app, settings, reuse_port=reuse_port)
        self.serving = False
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._first_round = asyncio.Event()
        self.port = 0
        self.http_port = 0

    async def start(self) -> int:
        """Binds, starts serving and returns the bound port (useful with port 0).

        Raises TLSConfigError (``ops.tls``) when TLS is on and its files are unusable.
        """
        self.port = self.grpc.bind()
        await self._set_health(serving=False)
        # One Redis check before accepting anything, so that a worker which comes up is
        # SERVING from its first connection when Redis answers (not after its first ping).
        self._watcher = asyncio.create_task(self._watch_redis(), name="redis-health")
        await self._first_round.wait()
        await self.grpc.start()
        mode = self.grpc.mode
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
        await self.grpc.enter_graceful_shutdown()
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
        await self.store.aclose()

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
        await self.grpc.set_health(serving=serving)

    async def _watch_redis(self) -> None:
        """Drives the health status from Redis reachability, and reloads scripts on recovery."""
        serving = False
        while not self._stopping.is_set():
            try:
                await self.store.ping()
                if not serving or await self.store.topology_changed():
                    await self.store.prepare()
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
