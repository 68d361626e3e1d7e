"""Serving the HTTP app with uvicorn inside the server's own event loop, beside grpc.aio.

The socket is bound here (SO_REUSEPORT when ``--workers`` share the port, as gRPC's is)
and handed to uvicorn, which then serves in the running loop: one process, one loop, both
protocols. uvicorn's own signal handling is off: ``ThreadsServer`` owns SIGTERM/SIGINT and
drains both servers together (``stop``). TLS uses the same files as gRPC.

What a request costs the server is mostly per connection and per socket write, so:
uvicorn parses with ``httptools`` (llhttp, in C) rather than the pure-Python ``h11``, its
proxy-headers middleware is off (nothing here reads the client's address), and a response
leaves in one write (``OneWrite``): uvicorn writes the head and the body separately, and on
a fresh connection each write is a send that wakes the client (measured in
docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from threads_server.ops.config import Settings
from threads_server.ops.workers import ListenError, resolve_listen

log = logging.getLogger("threads.http")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the host process decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


# Linux's TCP_CORK (tcp(7)): partial segments wait until it is cleared or the socket closes.
_CORK: int | None = getattr(socket, "TCP_CORK", None)


class OneWrite:
    """A transport whose writes of one event-loop tick go out as one write, at the end of
    the tick (as ``store.corridor.pipelined`` does for Redis): uvicorn writes a response's
    head and body in one tick, two sends on the socket. ``close`` sends what is pending
    with the FIN (below); everything else is the wrapped transport's."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        """Closes after what is pending. The last response of a connection (the client
        sent ``Connection: close``) is corked first, so that it leaves with the FIN in one
        segment: the client reads both at once and answers with one ACK, where a response
        then a FIN cost the server a second exchange (on a new connection, TCP answers
        every segment at once)."""
        if self._pending and _CORK is not None:
            sock = self._transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a ``OneWrite`` of its connection's transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = OneWrite(transport, asyncio.get_running_loop())
        super().connection_made(wrapped)


def bind(listen: str, *, reuse_port: bool) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); ListenError if taken."""
    family, kind, proto, address = resolve_listen(listen, "--http-listen")
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"cannot listen on {listen} ({exc.strerror}); is another server using the port? "
            "Pass another --http-listen (or an empty one to serve no HTTP)"
        ) from exc
    sock.setblocking(False)
    return sock


class HttpServer:
    """One uvicorn server on one pre-bound socket, started and stopped with the gRPC one."""

    def __init__(self, app: Any, settings: Settings, *, reuse_port: bool) -> None:
        self._settings = settings
        self._reuse_port = reuse_port
        tls: dict[str, Any] = {}
        if settings.tls_cert_file is not None:
            tls = {"ssl_certfile": str(settings.tls_cert_file)}
            tls["ssl_keyfile"] = str(settings.tls_key_file)
            if settings.tls_client_ca_file is not None:
                tls["ssl_ca_certs"] = str(settings.tls_client_ca_file)
                tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        self.config = uvicorn.Config(
            app,
            http=HttpProtocol,
            proxy_headers=False,  # nothing reads the client's address; a middleware less
            lifespan="off",
            access_log=False,  # service.call logs one line per call
            log_config=None,  # keep the process's logging as configured
            server_header=False,
            timeout_graceful_shutdown=max(1, round(settings.grace_seconds)),
            **tls,
        )
        # One line per call comes from service.call; uvicorn's access line would be a second.
        logging.getLogger("uvicorn.access").disabled = True
        self._server = _EmbeddedServer(self.config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def tls(self) -> bool:
        return self._settings.tls_cert_file is not None

    async def start(self) -> int:
        """Binds and serves; returns the bound port once uvicorn accepts connections."""
        self._socket = bind(self._settings.http_listen, reuse_port=self._reuse_port)
        self.port = self._socket.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it stopped
                raise ListenError(f"the HTTP server on {self._settings.http_listen} stopped")
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        """Stops accepting, lets in-flight requests finish (within the grace period)."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._socket is not None:
            self._socket.close()
