"""Pub/Sub, the corridor's one long-lived call: one subscription connection per Redis node
per worker, shared by every subscription of the worker (Watch's feeds, ``store.feeds``).

Every transport has one ``Subscriptions`` (``Transport.subscriptions``), built on the
topology it serves (``Nodes``: where a channel's node is, and a connection to it): one node
for one Redis or Sentinel's primary, the primary of the channel's slot on a cluster.
``Corridor.subscribe`` is the way in: it maps the errors, once, as for every other call.

``subscribe(subscription)`` returns once Redis has confirmed it, so a read sent after it
sees every write that came before any message it will miss; ``unsubscribe`` drops it; the
``Subscription`` hears each message (``woken``) and its own loss (``lost``, with redis-py's
exception: the connection broke, the node stopped serving the channel's slot, the topology
changed), after which its owner subscribes again and re-reads, or gives up.

How: a ``_Link`` per node holds one redis-py ``Connection`` (its public ``connect``,
``send_command``, ``read_response``), a task that writes the queued commands in order, and
a task that reads every reply and message. Replies to our commands come back in the order
sent, messages in between; so the commands in flight are a FIFO, and an ``sunsubscribe`` no
command asked for is Redis dropping the channel (its slot moved: a cluster failover or
resharding). An idle link is PINGed, so a peer that vanished without closing the socket is
noticed. A subscription Redis does not confirm in time fails alone, not its link (a link
failing under load would send every subscription on it into a resubscribe storm).

Sharded Pub/Sub (SSUBSCRIBE, each channel on the node serving its slot) where the server
has it (Redis 7+, Valkey), plain SUBSCRIBE on Redis 6.2: decided per node from its version,
as the write scripts decide how to publish (``lua/includes/wake.lua``).
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

log = logging.getLogger("threads.watch")

# An idle link is PINGed this often; a PING unanswered by the next one fails the link.
PING_INTERVAL_SECONDS = 5.0


class Subscription:
    """One channel's subscription, as its link sees it: told of each message on the channel
    and of its own loss. ``Corridor.subscribe`` makes them (its errors mapped)."""

    __slots__ = ("channel",)

    def __init__(self, channel: bytes) -> None:
        self.channel = channel

    def woken(self, data: bytes) -> None:
        """A message on the channel."""

    def lost(self, error: Exception) -> None:
        """The subscription is gone (messages since may be lost): subscribe again."""


class Nodes(Protocol):
    """Where a channel is served and how to reach it: what a transport knows of its
    topology (``transport.OneRedis``, ``transport.Cluster``)."""

    def node_of(self, channel: bytes) -> str:
        """The name of the node serving ``channel`` (its slot's primary on a cluster)."""

    async def open_connection(self, node: str) -> Any:
        """A connected redis-py ``Connection`` to ``node``, ours until ``release_connection``."""

    async def release_connection(self, node: str, connection: Any) -> None:
        """Gives back a connection ``open_connection`` gave (already disconnected)."""


@dataclass(frozen=True, slots=True)
class _Dialect:
    """The Pub/Sub commands a node speaks: sharded (Redis 7+, Valkey) or plain."""

    subscribe: str
    unsubscribe: str
    message: bytes
    subscribed: bytes
    unsubscribed: bytes


SHARDED = _Dialect("SSUBSCRIBE", "SUNSUBSCRIBE", b"smessage", b"ssubscribe", b"sunsubscribe")
PLAIN = _Dialect("SUBSCRIBE", "UNSUBSCRIBE", b"message", b"subscribe", b"unsubscribe")


def dialect(info: str) -> _Dialect:
    """Sharded from Redis 7.0 on (Valkey reports a Redis version above it), from the text
    of ``INFO server``; the scripts choose SPUBLISH by the same version."""
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            major = line.split(":", 1)[1].strip().split(".", 1)[0]
            return SHARDED if major.isdigit() and int(major) >= 7 else PLAIN
    return PLAIN


class _Link:
    """One node's subscription connection: its subscriptions, the commands written and not
    yet answered, and its writer and reader tasks."""

    def __init__(self, owner: Subscriptions, node: str) -> None:
        self.owner = owner
        self.node = node
        self.connection: Any = None
        self.dialect = PLAIN
        self.subscribed: dict[bytes, Subscription] = {}
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
        nodes = self.owner.nodes
        connection = await nodes.open_connection(self.node)
        try:
            await connection.send_command("INFO", "server", check_health=False)
            info = await connection.read_response()
        except BaseException:
            await connection.disconnect()
            await nodes.release_connection(self.node, connection)
            raise
        self.connection = connection
        self.dialect = dialect(info.decode() if isinstance(info, bytes) else str(info))
        context = contextvars.Context()  # no caller's span or deadline on the link's tasks
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._read(), name=f"subscriptions-read {self.node}", context=context),
            loop.create_task(
                self._write(), name=f"subscriptions-write {self.node}", context=context
            ),
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
                        args: tuple[Any, ...] = (self.dialect.subscribe, channel)
                    elif kind == "unsub":
                        args = (self.dialect.unsubscribe, channel)
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
                        raise redis.exceptions.TimeoutError("the subscriptions' PING got no reply")
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
        """Dispatches one reply or message; True for a PING's reply: ``PONG`` (a connection
        with sharded subscriptions only is not in RESP2's subscribed mode) or
        ``[pong, ""]`` (one with plain ones)."""
        if not isinstance(reply, list):
            if reply == b"PONG":
                self._answered("ping")
                return True
            return False
        kind = reply[0]
        if kind == self.dialect.message:
            subscription = self.subscribed.get(reply[1])
            if subscription is not None:
                subscription.woken(reply[2])
            return False
        if kind == b"pong":
            self._answered("ping")
            return True
        channel = reply[1]
        if kind == self.dialect.subscribed:
            self._answered("sub")
            waiter = self.confirming.pop(channel, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == self.dialect.unsubscribed:
            if self.in_flight and self.in_flight[0] == ("unsub", channel):
                self.in_flight.popleft()
            else:  # not asked for: Redis dropped the channel (its slot moved)
                subscription = self.subscribed.pop(channel, None)
                if subscription is not None:
                    subscription.lost(_moved())
        return False

    def _answered(self, kind: str) -> None:
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
        self.subscribed.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(_moved() if isinstance(exc, redis.exceptions.MovedError) else exc)

    def fail(self, exc: Exception) -> None:
        """The connection is gone: every subscription on it is lost."""
        if self.closed:
            return
        self.closed = True
        log.info("subscription connection to %s lost: %r", self.node, exc)
        self.owner.dropped(self)
        for waiter in self.confirming.values():
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: its subscriber may have left
        subscribed, self.subscribed = self.subscribed, {}
        self.confirming.clear()
        for subscription in subscribed.values():
            subscription.lost(exc)
        self.owner.later(self._close())

    async def _close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.disconnect()
            with contextlib.suppress(Exception):
                await self.owner.nodes.release_connection(self.node, self.connection)


def _moved() -> redis.exceptions.ConnectionError:
    """The node stopped serving the channel (its slot moved): as a lost connection."""
    return redis.exceptions.ConnectionError(
        "the node stopped serving the channel's slot (failover or resharding)"
    )


class Subscriptions:
    """Every Pub/Sub subscription of one worker on one topology: one ``_Link`` per node."""

    def __init__(self, nodes: Nodes, *, timeout: float) -> None:
        """``timeout``: how long a subscription may wait for Redis to confirm it."""
        self.nodes = nodes
        self._timeout = timeout
        self._links: dict[str, _Link] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def links(self) -> int:
        """Subscription connections open now (one per node with a subscription)."""
        return len(self._links)

    async def subscribe(self, subscription: Subscription) -> None:
        """Returns once Redis has confirmed it; redis-py's exception when it cannot."""
        if self._closed:
            raise redis.exceptions.ConnectionError("the subscriptions are closed (shutdown)")
        channel = subscription.channel
        link = await self._link(self.nodes.node_of(channel))
        waiter = asyncio.get_running_loop().create_future()
        link.subscribed[channel] = subscription
        link.confirming[channel] = waiter
        link.send("sub", channel)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            # This subscription fails, not the link: its other channels are fine (a link
            # whose Redis stopped answering is found by its PING). Dropped, in case the
            # confirmation comes after all.
            self.unsubscribe(subscription)
            raise redis.exceptions.TimeoutError("Redis did not confirm a subscription") from None

    def unsubscribe(self, subscription: Subscription) -> None:
        """Drops it (once the command is written, no message reaches it); nothing to wait
        for."""
        channel = subscription.channel
        for link in self._links.values():
            if link.subscribed.get(channel) is subscription:
                del link.subscribed[channel]
                link.confirming.pop(channel, None)
                link.send("unsub", channel)

    async def _link(self, node: str) -> _Link:
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = _Link(self, node)
            try:
                await link.open()
            except BaseException as exc:
                self._links.pop(node, None)
                if not link.opened.done():
                    link.opened.set_exception(exc)
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
        """The topology changed (a failover): every link is dropped, so every subscription
        is made again where its channel is served now, and its owner re-reads."""
        for link in list(self._links.values()):
            link.fail(redis.exceptions.ConnectionError("the primaries changed (failover)"))

    async def aclose(self) -> None:
        """At shutdown: every link closed (its subscriptions hear ``lost``)."""
        self._closed = True
        for link in list(self._links.values()):
            link.fail(redis.exceptions.ConnectionError("the subscriptions were closed (shutdown)"))
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
