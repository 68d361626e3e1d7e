"""A small asyncio TCP proxy for fault tests: forwards bytes both ways, and can lose a reply.

``lose_reply_to(marker)`` arms it: the next request (client → server bytes) that contains
``marker`` is forwarded as usual, so the server (Redis) executes it, but the reply to it is
swallowed and both sides of that connection are closed. The client sees its connection
drop after sending: it cannot tell whether the command ran. Every other connection and
every other request pass through untouched. ``accepted`` counts the connections clients
opened through it; ``reply_delay`` (seconds) holds every server → client chunk that long,
so that many calls are in flight at once however fast the server answers.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Armed:
    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.lost = asyncio.Event()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._armed: _Armed | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.reply_delay = 0.0

    @property
    def url(self) -> str:
        """A Redis URL through the proxy (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def lose_reply_to(self, marker: bytes) -> asyncio.Event:
        """Arms the proxy for the next request containing ``marker``; the returned event
        is set once that request's reply has been swallowed and its connection closed."""
        assert self._armed is None, "already armed"
        self._armed = _Armed(marker)
        return self._armed.lost

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, server_w))
        # Set by the upstream pump when this connection carried the armed request.
        doomed: list[_Armed] = []

        async def upstream() -> None:  # client → server
            while data := await client_r.read(65536):
                armed = self._armed
                if armed is not None and not doomed and armed.marker in data:
                    self._armed = None
                    doomed.append(armed)
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:  # server → client
            while data := await server_r.read(65536):
                if doomed:  # the reply to the armed request: drop it, and the connection
                    doomed[0].lost.set()
                    return
                if self.reply_delay:
                    await asyncio.sleep(self.reply_delay)
                client_w.write(data)
                await client_w.drain()

        pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._tasks.update(pumps)
        try:
            # Either direction ending (EOF, error, a lost reply) ends the connection.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            self._tasks.difference_update(pumps)
            for writer in (client_w, server_w):
                writer.close()
                self._writers.discard(writer)
