"""Pub/Sub for Watch: one subscription connection per Redis node per worker, shared by every
watcher of the worker (``threads_server.watch``), behind a narrow interface.

``Subscriber.subscribe(channel, listener)`` returns once Redis has confirmed the
subscription, so a read sent after it sees every write that came before any message it
will miss; ``unsubscribe`` drops it; the ``Listener`` hears each message (``woken``) and
the loss of its subscription (``lost``: the connection broke, the node stopped serving the
channel's slot, or the topology changed), after which it subscribes again and re-reads, or
gives up. Redis errors leave as the service's own (``redis_errors.store_errors``).

How: a ``_Link`` per node holds one redis-py ``Connection`` (its public ``connect``,
``send_command``, ``read_response``), a task that writes the queued commands in order, and
a task that reads every reply and message. Replies to our commands come back in the order
sent, messages in between; so the commands in flight are a FIFO, and a ``sunsubscribe`` no
command asked for is Redis dropping the channel (its slot moved: a cluster failover or
resharding). An idle link is PINGed, so a peer that vanished without closing the socket is
noticed.

Sharded Pub/Sub (SSUBSCRIBE, each channel on the node serving its slot) where the server
has it (Redis 7+, Valkey), plain SUBSCRIBE on Redis 6.2: decided per node from its version,
as the write scripts decide how to publish (``_prelude.lua``'s ``wake``). On one Redis and
on Sentinel the link's connection comes from the client's pool (Sentinel's finds the
current primary); on a cluster from the node's own pool.

This is a way to Redis of its own, written beside the script path until the corridor
(issue 20) lands; it needs from Redis only ``Endpoint``: where a channel's node is, and a
connection to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from threads_server.errors import Reason, ThreadsError, Unavailable
from threads_server.redis_errors import store_errors, to_store_error

log = logging.getLogger("threads.watch")

# An idle link is PINGed this often; a PING unanswered by the next one fails the link.
PING_INTERVAL_SECONDS = 5.0


class Listener(Protocol):
    """What a subscription tells its owner."""

    def woken(self, data: bytes) -> None:
        """A message on the channel."""

    def lost(self, error: ThreadsError) -> None:
        """The subscription is gone (messages since may be lost); subscribe again."""


@dataclass(frozen=True, slots=True)
class _Commands:
    """The Pub/Sub dialect a node speaks: sharded (Redis 7+, Valkey) or plain."""

    subscribe: str
    unsubscribe: str
    message: bytes
    subscribed: bytes
    unsubscribed: bytes


SHARDED = _Commands("SSUBSCRIBE", "SUNSUBSCRIBE", b"smessage", b"ssubscribe", b"sunsubscribe")
PLAIN = _Commands("SUBSCRIBE", "UNSUBSCRIBE", b"message", b"subscribe", b"unsubscribe")


def dialect(info: str) -> _Commands:
    """Sharded from Redis 7.0 on (Valkey reports a Redis version above it), from the text
    of ``INFO server``; the scripts choose SPUBLISH by the same version."""
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            major = line.split(":", 1)[1].strip().split(".", 1)[0]
            return SHARDED if major.isdigit() and int(major) >= 7 else PLAIN
    return PLAIN


class Endpoint(Protocol):
    """Where a channel's node is and how to reach it: the part of the Redis client the
    subscriber uses (``endpoint_for`` builds it)."""

    def node_of(self, channel: str) -> str:
        """The name of the node serving ``channel`` (its slot's primary on a cluster)."""

    async def connect(self, node: str) -> Any:
        """A connected redis-py ``Connection`` to ``node``, ours until ``release``."""

    async def release(self, node: str, connection: Any) -> None:
        """Gives back a connection ``connect`` gave (already disconnected)."""


class _PoolEndpoint:
    """One Redis or Sentinel's primary: one node, connections from the client's pool."""

    NODE = "primary"

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool

    def node_of(self, channel: str) -> str:
        return self.NODE

    async def connect(self, node: str) -> Any:
        return await self._pool.get_connection()

    async def release(self, node: str, connection: Any) -> None:
        await self._pool.release(connection)


class _ClusterEndpoint:
    """A Redis Cluster: each channel on the primary of its slot, as the client knows the
    layout (the store's reads, through the same client, keep it current)."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster

    def node_of(self, channel: str) -> str:
        node = self._cluster.get_node_from_key(channel)
        if node is None:
            raise Unavailable(
                "no node of the Redis Cluster serves this thread's slot; retry with backoff",
                reason=Reason.STORE_UNAVAILABLE,
            )
        return str(node.name)

    async def connect(self, node: str) -> Any:
        found = self._cluster.get_node(node_name=node)
        if found is None:
            raise redis.exceptions.ConnectionError(f"{node} left the cluster")
        connection = found.acquire_connection()
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await connection.disconnect()
            found.release(connection)
            raise
        return connection

    async def release(self, node: str, connection: Any) -> None:
        found = self._cluster.get_node(node_name=node)
        if found is not None:
            found.release(connection)


def endpoint_for(client: Any) -> Endpoint:
    """The endpoint of a redis.asyncio client (plain, Sentinel or cluster)."""
    if isinstance(client, RedisCluster):
        return _ClusterEndpoint(client)
    return _PoolEndpoint(client)


class _Link:
    """One node's subscription connection: its channels, the commands written and not yet
    answered, and its writer and reader tasks."""

    def __init__(self, subscriber: Subscriber, node: str) -> None:
        self.subscriber = subscriber
        self.node = node
        self.connection: Any = None
        self.commands = PLAIN
        self.listeners: dict[bytes, Listener] = {}
        self.confirming: dict[bytes, asyncio.Future[None]] = {}
        # Commands written, in order, awaiting their reply: (kind, channel).
        self.in_flight: deque[tuple[str, bytes]] = deque()
        self.outbox: deque[tuple[str, bytes]] = deque()
        self.wrote = asyncio.Event()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def open(self) -> None:
        """Connects, learns the node's dialect, and starts the reader and the writer."""
        endpoint = self.subscriber.endpoint
        with store_errors():
            connection = await endpoint.connect(self.node)
            try:
                await connection.send_command("INFO", "server", check_health=False)
                info = await connection.read_response()
            except BaseException:
                await connection.disconnect()
                await endpoint.release(self.node, connection)
                raise
        self.connection = connection
        self.commands = dialect(info.decode() if isinstance(info, bytes) else str(info))
        context = contextvars.Context()  # no caller's span or deadline on the link's tasks
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._read(), name=f"watch-read {self.node}", context=context),
            loop.create_task(self._write(), name=f"watch-write {self.node}", context=context),
        ]

    def send(self, kind: str, channel: bytes = b"") -> None:
        """Queues a command (``sub``, ``unsub``, ``ping``); the writer sends them in order."""
        self.outbox.append((kind, channel))
        self.wrote.set()

    async def _write(self) -> None:
        try:
            while not self.closed:
                await self.wrote.wait()
                self.wrote.clear()
                while self.outbox:
                    kind, channel = self.outbox.popleft()
                    self.in_flight.append((kind, channel))
                    if kind == "sub":
                        args: tuple[Any, ...] = (self.commands.subscribe, channel)
                    elif kind == "unsub":
                        args = (self.commands.unsubscribe, channel)
                    else:
                        args = ("PING",)
                    await self.connection.send_command(*args, check_health=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(exc)

    async def _read(self) -> None:
        pinged = False
        try:
            while not self.closed:
                try:
                    reply = await self.connection.read_response(
                        timeout=PING_INTERVAL_SECONDS, push_request=True
                    )
                except redis.exceptions.ResponseError as exc:
                    self._refused(exc)
                    continue
                if reply is None:  # idle for the interval
                    if pinged:
                        raise redis.exceptions.TimeoutError("the subscription's PING got no reply")
                    pinged = True
                    self.send("ping")
                    continue
                if self._handle(reply):
                    pinged = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(exc)

    def _handle(self, reply: Any) -> bool:
        """Dispatches one reply or message; True for a PING's reply."""
        kind = reply[0]
        if kind == self.commands.message:
            listener = self.listeners.get(reply[1])
            if listener is not None:
                listener.woken(reply[2])
            return False
        if kind == b"pong":
            self._answered("ping", b"")
            return True
        channel = reply[1]
        if kind == self.commands.subscribed:
            self._answered("sub", channel)
            waiter = self.confirming.pop(channel, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == self.commands.unsubscribed:
            if self.in_flight and self.in_flight[0] == ("unsub", channel):
                self.in_flight.popleft()
            else:  # not asked for: Redis dropped the channel (its slot moved)
                listener = self.listeners.pop(channel, None)
                if listener is not None:
                    listener.lost(_moved())
        return False

    def _answered(self, kind: str, channel: bytes) -> None:
        if self.in_flight and self.in_flight[0][0] == kind:
            self.in_flight.popleft()

    def _refused(self, exc: redis.exceptions.ResponseError) -> None:
        """An error reply: to the oldest command in flight (a subscription refused, say
        MOVED after the slot moved)."""
        if not self.in_flight:
            return
        kind, channel = self.in_flight.popleft()
        if kind != "sub":
            return
        waiter = self.confirming.pop(channel, None)
        self.listeners.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(_refusal(exc))

    def fail(self, exc: BaseException) -> None:
        """The connection is gone: every subscription on it is lost."""
        if self.closed:
            return
        self.closed = True
        error = _mapped(exc)
        if not isinstance(exc, asyncio.CancelledError):
            log.info("watch subscription to %s lost: %r", self.node, exc)
        self.subscriber.dropped(self)
        for waiter in self.confirming.values():
            if not waiter.done():
                waiter.set_exception(error)
        listeners, self.listeners = self.listeners, {}
        self.confirming.clear()
        for listener in listeners.values():
            listener.lost(error)
        self.subscriber.later(self._close())

    async def _close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.disconnect()
            with contextlib.suppress(Exception):
                await self.subscriber.endpoint.release(self.node, self.connection)


def _mapped(exc: BaseException) -> ThreadsError:
    """The service's error for a lost link."""
    if isinstance(exc, ThreadsError):
        return exc
    mapped = to_store_error(exc) if isinstance(exc, Exception) else None
    if mapped is not None:
        return mapped
    error = Unavailable(
        "the subscription to the thread store (Redis) was lost; retry with backoff",
        reason=Reason.STORE_UNAVAILABLE,
    )
    error.__cause__ = exc
    return error


def _moved() -> Unavailable:
    return Unavailable(
        "the thread store (Redis) moved this thread's slot to another node; retry",
        reason=Reason.STORE_UNAVAILABLE,
    )


def _refusal(exc: redis.exceptions.ResponseError) -> ThreadsError:
    error = _moved() if isinstance(exc, redis.exceptions.MovedError) else _mapped(exc)
    error.__cause__ = exc
    return error


class Subscriber:
    """Every Pub/Sub subscription of one worker: one ``_Link`` per node."""

    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        """``timeout``: how long a subscription may wait for Redis to confirm it."""
        self.endpoint = endpoint
        self._timeout = timeout
        self._links: dict[str, _Link] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def links(self) -> int:
        """Subscription connections open now (one per node with a subscription)."""
        return len(self._links)

    async def subscribe(self, channel: str, listener: Listener) -> None:
        """Returns once Redis has confirmed the subscription; Unavailable when it cannot."""
        if self._closed:
            raise _closing()
        name = channel.encode()
        link = await self._link(self.endpoint.node_of(channel))
        waiter = asyncio.get_running_loop().create_future()
        link.listeners[name] = listener
        link.confirming[name] = waiter
        link.send("sub", name)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            # This subscription fails, not the link: its other channels are fine (a link
            # whose Redis stopped answering is found by its PING). Dropped, in case the
            # confirmation comes after all.
            if link.listeners.get(name) is listener:
                self.unsubscribe(channel, listener)
            error = _mapped(redis.exceptions.TimeoutError("Redis did not confirm a subscription"))
            raise error from None

    def unsubscribe(self, channel: str, listener: Listener) -> None:
        """Drops ``listener``'s subscription (after the command is written, no message for
        it is delivered); nothing to wait for."""
        name = channel.encode()
        for link in self._links.values():
            if link.listeners.get(name) is listener:
                del link.listeners[name]
                link.confirming.pop(name, None)
                link.send("unsub", name)

    async def _link(self, node: str) -> _Link:
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = _Link(self, node)
            try:
                await link.open()
            except BaseException as exc:
                self._links.pop(node, None)
                if not link.opened.done():
                    link.opened.set_exception(_mapped(exc))
                    link.opened.exception()  # retrieved: a waiter may not exist
                raise
            link.opened.set_result(None)
        elif not link.opened.done():
            await asyncio.shield(link.opened)
        return link

    def dropped(self, link: _Link) -> None:
        if self._links.get(link.node) is link:
            del self._links[link.node]

    def later(self, work: Awaitable[Any]) -> None:
        """Runs ``work`` in the background, kept until done (and awaited by ``aclose``)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def reset(self) -> None:
        """The topology changed (a failover): every link is dropped, so every listener
        subscribes again where its channel is served now, and re-reads."""
        for link in list(self._links.values()):
            link.fail(_topology_changed())

    async def aclose(self) -> None:
        """At shutdown: every link closed (listeners hear ``lost``)."""
        self._closed = True
        for link in list(self._links.values()):
            link.fail(_closing())
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _closing() -> Unavailable:
    return Unavailable(
        "the server is shutting down; reconnect to another", reason=Reason.SHUTTING_DOWN
    )


def _topology_changed() -> Unavailable:
    return Unavailable(
        "the thread store (Redis) failed over; resubscribing", reason=Reason.STORE_UNAVAILABLE
    )
