"""``python -m threads_server``: run the threads gRPC server until SIGTERM/SIGINT;
``python -m threads_server migrate ...``: move 0.1 data into the sharded layout (migrate.py).

With ``--workers 1`` the server runs in this process. With more, this process starts the
embedded Redis (if any), holds the ports (gRPC and HTTP/JSON) and supervises N forked workers
(``threads_server/ops/workers.py``). TLS files and auth keys are checked first, so a bad one
fails once, before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Sequence

from threads_server.ops import event_loop, logs, tracing
from threads_server.ops.config import Settings
from threads_server.ops.embedded import EmbeddedServer, EmbeddedServerError
from threads_server.ops.tls import TLSConfigError, load_tls
from threads_server.ops.workers import (
    EXIT_LISTEN_FAILED,
    ListenError,
    Supervisor,
    metrics_dir,
    reserve_port,
)
from threads_server.service.auth import AuthConfigError, Authenticator

log = logging.getLogger("threads.server")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["migrate"]:
        from threads_server.store import migrate  # noqa: PLC0415

        return migrate.main(args[1:])
    settings = Settings.load(argv)
    logs.configure(settings.log_level, settings.log_format)
    if settings.redis_cluster and not settings.redis_url:
        log.error("--redis-cluster needs --redis-url naming a node of the cluster")
        return 1
    try:
        load_tls(settings)
        Authenticator.from_settings(settings)
    except (TLSConfigError, AuthConfigError) as exc:
        log.error("%s", exc)
        return 1
    with contextlib.ExitStack() as stack:
        # Before any fork and any import of prometheus_client: the workers' metric files.
        log.info(
            "metrics files (every process's, summed by /metrics) in %s",
            stack.enter_context(metrics_dir()),
        )
        url = settings.redis_url
        embedded: EmbeddedServer | None = None
        if not url and settings.redis_sentinel is None:
            try:
                embedded = EmbeddedServer(
                    settings.data_dir,
                    binary=settings.embedded_server,
                    appendfsync=settings.appendfsync,
                )
                url = stack.enter_context(embedded)
            except EmbeddedServerError as exc:
                log.error("%s", exc)
                return 1
        if settings.workers == 1:
            return _serve(settings, url, reuse_port=False)
        try:
            holder, listen = reserve_port(settings.listen)
            stack.callback(holder.close)
            http_listen = settings.http_listen
            if http_listen:
                http_holder, http_listen = reserve_port(http_listen, "--http-listen")
                stack.callback(http_holder.close)
        except ListenError as exc:
            log.error("%s", exc)
            return 1
        worker_settings = dataclasses.replace(settings, listen=listen, http_listen=http_listen)
        log.info(
            "starting %d workers on %s%s",
            settings.workers,
            listen,
            f" (HTTP/JSON on {http_listen})" if http_listen else "",
        )
        return Supervisor(
            settings.workers,
            lambda _index: _serve(worker_settings, url, reuse_port=True),
            in_child=embedded.forget_in_child if embedded is not None else lambda: None,
        ).run()


def _serve(settings: Settings, redis_url: str | None, *, reuse_port: bool) -> int:
    """Serves until SIGTERM/SIGINT; imports gRPC only here, after any fork. Tracing is set
    up here too, in each worker: an export thread started before a fork would not survive."""
    from threads_server.server import ThreadsServer  # noqa: PLC0415

    if tracing.configure():
        log.info("tracing on: exporting spans over OTLP (OTEL_* environment variables)")

    async def serve() -> None:
        await ThreadsServer(settings, redis_url, reuse_port=reuse_port).serve_until_signal()

    loop_name, loop_factory = event_loop.factory(settings.event_loop)
    log.info("event loop: %s", loop_name)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve())
    except (ListenError, TLSConfigError, AuthConfigError) as exc:
        # A worker re-reads the TLS files when it (re)starts; if they broke since the
        # parent checked them, restarting it again would not help either.
        log.error("%s", exc)
        return EXIT_LISTEN_FAILED if reuse_port else 1
    finally:
        tracing.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
