"""Auto-pipelining: every call shares one connection, many calls in flight on it.

The default way a call goes to one Redis (or Sentinel's primary), as lettuce, ioredis and
node-redis do: ``Pipelined`` holds ONE connection, taken from the client's
pool for as long as it works (so Sentinel's connections keep finding the primary and
turning READONLY into a ConnectionError). ``Pipelined.handle`` packs its command and
queues it; at the end of the event-loop tick (one ``call_soon`` callback, no task) the
tick's calls are written in one write, in the order issued, without waiting for the
replies of earlier ticks. One reader task, running while calls are in flight, reads the
replies in order (``read_response``, each bounded by the connection's ``socket_timeout``)
and hands each to its caller. So Redis reads many commands per read and writes many
replies per write, the reader gets many replies per wake-up, and a call costs no pool
checkout and no ``wait_for`` task (a lone call ≈60 µs of CPU instead of ≈100).

The rules, each held by ``tests/test_pipelining.py``:

- A write is never re-sent. A lost connection or a timeout fails every call in flight with
  that error (UNAVAILABLE, once mapped by ``Corridor``); the connection is dropped and the
  next call opens another. Only NOSCRIPT (the script is not loaded, so the call did not
  run) is answered by sending the call again, after ``Corridor`` loads the script.
- An error reply fails only its own call (WRONGTYPE, OOM, NOSCRIPT, READONLY on one Redis);
  the replies stay matched to their calls in order. Sentinel's connections turn READONLY (a
  demoted primary) into a ConnectionError and disconnect: every call in flight fails.
- A caller that leaves (its deadline expired) has its reply read and dropped; once every
  call in flight has been left, the connection is dropped, as a lone call's cancellation
  closes its connection (Redis is not left holding a blocked connection nobody reads). A
  call whose caller leaves before it is written (while the connection opens, or before
  the tick ends) is never written.
- Closing (shutdown), or the reader ending any other way, fails every call in flight, so
  no caller waits forever.

A write does not wait for the socket's buffer to drain: at most the calls in flight are
buffered, and a Redis that stops reading is caught by the reader's timeout.

Not used on Redis Cluster (``per_node.PerNode``: each call goes to its slot's node); with
``--min-replica-acks``, writes go beside it (``replicated.Replicated`` sends each write
with its WAIT on a connection of its own); ``--redis-pipelining off`` turns it off
(``alone.Alone``).

It reads and writes redis-py's streams of a connection it holds (``connection._reader``,
``._writer``: private; ``tests/test_pipelining.py`` pins what is relied on, so that a
redis-py upgrade that changes them fails a test, not production). The public
``send_packed_command`` would await the buffer's drain in a task per tick.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from threads_server.store.corridor.transport import OneRedis, Request


class _Link:
    """The shared connection; the calls queued this tick, written at its end; the futures
    of the calls written and not yet answered (in the order written); and the task reading
    their replies while there are any."""

    __slots__ = ("connection", "dropped", "reader", "stream", "unsent", "waiting", "writer")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        # redis-py's streams, once connected: we write, its parser reads.
        self.stream: asyncio.StreamReader = connection._reader
        self.writer: asyncio.StreamWriter = connection._writer
        self.unsent: list[tuple[asyncio.Future[Any], list[bytes]]] = []
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.reader: asyncio.Task[None] | None = None
        self.dropped = False

    def closed(self) -> bool:
        """Closed by us, or by Redis (a restart: the end of its replies is read)."""
        return self.writer.is_closing() or self.stream.at_eof()


class Pipelined(OneRedis):
    """Sends every call to one Redis (or Sentinel's primary) over one connection."""

    shares_one_connection = True

    def __init__(self, client: Redis) -> None:
        super().__init__(client)
        self._pool = client.connection_pool
        self._link: _Link | None = None
        self._opening: asyncio.Task[_Link] | None = None  # the connection being opened
        self._closing: set[asyncio.Task[None]] = set()  # dropped connections being released

    async def handle(self, request: Request) -> Any:
        return await self._send(request.command)

    async def aclose(self) -> None:
        """Fails the calls in flight (ConnectionError) and releases the connection."""
        if self._opening is not None:  # bounded by the connect timeout
            await asyncio.wait([self._opening])
        if self._link is not None:
            self._drop(self._link, ConnectionError("the pipelined connection was closed"))
        await asyncio.gather(*self._closing, return_exceptions=True)
        await super().aclose()

    async def _send(self, command: tuple[Any, ...]) -> Any:
        link = self._link
        if link is None or link.closed():
            link = await self._open()  # a caller leaving here has written nothing
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not link.unsent:  # the tick's first call: its end writes them all
            loop.call_soon(self._write, link, context=contextvars.Context())
        link.unsent.append((future, link.connection.pack_command(*command)))
        try:
            return await future
        except asyncio.CancelledError:
            # We left before our reply (else we were answered, then cancelled): it will be
            # read and dropped, or never written. With every call left, drop the connection.
            if future.cancelled() and not link.dropped and not _live(link):
                self._drop(link, ConnectionError("every caller in flight left"))
            raise

    async def _open(self) -> _Link:
        """The connection, opened once for all the callers waiting for it: they share its
        outcome (an unreachable Redis fails them together, not one after another)."""
        if self._opening is None:
            opening = asyncio.get_running_loop().create_task(
                self._connect(), context=contextvars.Context()
            )
            opening.add_done_callback(self._opened)
            self._opening = opening
        return await asyncio.shield(self._opening)

    async def _connect(self) -> _Link:
        link = self._link
        if link is not None and not link.closed():
            return link
        if link is not None:  # closed by Redis (a restart), or by us
            self._drop(link, ConnectionError("the connection to Redis was closed"))
        connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        link = self._link = _Link(connection)
        return link

    def _opened(self, task: asyncio.Task[_Link]) -> None:
        self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved: the callers waiting got it

    def _write(self, link: _Link) -> None:
        """At the end of a tick: writes its calls in one write, in the order issued, but
        for those whose callers have left; starts the reader if none runs."""
        unsent, link.unsent = link.unsent, []
        if link.dropped:  # its calls have failed already
            return
        chunks: list[bytes] = []
        for future, packed in unsent:
            if not future.done():
                chunks += packed
                link.waiting.append(future)
        if not chunks:
            return
        try:
            link.writer.writelines(chunks)
        except Exception as error:  # the transport closed under us: nothing went out
            self._drop(link, ConnectionError(f"writing to Redis failed: {error!r}"))
            return
        if link.reader is None:
            link.reader = asyncio.get_running_loop().create_task(self._read(link))
            link.reader.add_done_callback(lambda task: self._ended(link, task))

    async def _read(self, link: _Link) -> None:
        """Answers the calls in flight in order, until none is left."""
        while link.waiting:
            try:
                reply = await link.connection.read_response()
            except ResponseError as error:  # this call's own error; the rest go on
                future = link.waiting.popleft()
                if not future.done():
                    future.set_exception(error)
            else:
                future = link.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        link.reader = None

    def _ended(self, link: _Link, task: asyncio.Task[None]) -> None:
        """A reader that failed (or was cancelled) drops its connection with its error
        (retrieved here, so asyncio does not log it as never retrieved)."""
        error = None if task.cancelled() else task.exception()
        if task.cancelled() or error is not None:
            self._drop(link, error or ConnectionError("the reply reader was cancelled"))

    def _drop(self, link: _Link, error: BaseException) -> None:
        """Fails the calls on ``link`` not answered yet, stops its reader, closes its
        connection and gives it back to the pool; the next call opens another."""
        if link.dropped:
            return
        link.dropped = True
        if self._link is link:
            self._link = None
        for future in [*link.waiting, *(future for future, _ in link.unsent)]:
            if not future.done():
                future.set_exception(error)
        link.waiting.clear()
        link.unsent.clear()
        if link.reader is not None:
            link.reader.cancel()
        task = asyncio.get_running_loop().create_task(self._release(link))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _release(self, link: _Link) -> None:
        if link.reader is not None:
            await asyncio.wait([link.reader])  # its error is the callers'
        try:
            await link.connection.disconnect(nowait=True)
        finally:
            await self._pool.release(link.connection)


def _live(link: _Link) -> bool:
    """Whether a caller still waits for a call on ``link``."""
    return any(not f.done() for f in link.waiting) or any(not f.done() for f, _ in link.unsent)
