"""``python -m server``: run the threads gRPC server until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from server.app import ListenError, ThreadsServer
from server.config import Settings
from server.embedded import EmbeddedServer, EmbeddedServerError

log = logging.getLogger("threads.server")


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.load(argv)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    with contextlib.ExitStack() as stack:
        url = settings.redis_url
        if not url:
            try:
                url = stack.enter_context(
                    EmbeddedServer(
                        settings.data_dir,
                        binary=settings.embedded_server,
                        appendfsync=settings.appendfsync,
                    )
                )
            except EmbeddedServerError as exc:
                log.error("%s", exc)
                return 1
        try:
            asyncio.run(_serve(settings, url))
        except ListenError as exc:
            log.error("%s", exc)
            return 1
    return 0


async def _serve(settings: Settings, redis_url: str) -> None:
    await ThreadsServer(settings, redis_url).serve_until_signal()


if __name__ == "__main__":
    sys.exit(main())
