"""transports/http/server.py's protocol: uvicorn's httptools protocol, each response in one
write on the socket (``OneWrite``), over a real socket and uvicorn's real protocol class."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import uvicorn

from tests.tls_certs import generate
from threads_server.transports.http.server import HttpProtocol


class _Recording:
    """The connection's transport, recording every write that reaches the socket."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request with a head and a body sent separately, as Starlette does."""
    body = b'{"ok":true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _serve(writes: list[bytes], **tls: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    class Recorded(HttpProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            recording: Any = _Recording(transport, writes)
            super().connection_made(recording)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    config = uvicorn.Config(_app, http=Recorded, lifespan="off", log_config=None, **tls)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    return server, task, sock.getsockname()[1]


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    return head + await reader.readexactly(11)


async def test_each_response_leaves_in_one_write_and_close_sends_it_first() -> None:
    """Two requests on a kept connection, then one with ``Connection: close``: three
    responses, three writes, each a whole response (head and body); the last one is on the
    socket before the server closes it. Without OneWrite every response is two writes."""
    writes: list[bytes] = []
    server, task, port = await _serve(writes)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        responses = []
        for last in (False, False, True):
            close = b"connection: close\r\n" if last else b""
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n" + close + b"\r\n")
            responses.append(await _read_response(reader))
        assert await reader.read() == b""  # closed by the server, after the response
        writer.close()
    finally:
        server.should_exit = True
        await task
    assert len(writes) == 3, writes
    assert writes == responses
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b'{"ok":true}') for w in writes)


async def test_the_last_response_over_tls_arrives_whole_before_the_end(tmp_path: Path) -> None:
    """A ``Connection: close`` response is corked and sent with the connection's end; over
    TLS too (the socket under the TLS layer is corked), the client reads all of it."""
    certs = generate(tmp_path)
    writes: list[bytes] = []
    server, task, port = await _serve(
        writes, ssl_certfile=str(certs.server.cert), ssl_keyfile=str(certs.server.key)
    )
    try:
        context = ssl.create_default_context(cafile=str(certs.ca))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        response = await _read_response(reader)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b'{"ok":true}')
        assert await reader.read() == b""
        writer.close()
    finally:
        server.should_exit = True
        await task
