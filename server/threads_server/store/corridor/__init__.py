"""The corridor: the one way every Redis call of the service goes.

``Corridor`` is to Redis what httpx's ``Client`` is to HTTP: one ``Transport``
(``transport.py``: one connection auto-pipelined, a call per cluster node, a write
followed by WAIT...) sends the commands, and everything every call needs is written here,
once, above it:

- NOSCRIPT (Redis lost its scripts: a restart, a failover) means the call did not run: the
  script is loaded and the call sent again, once;
- Redis's exceptions become the service's errors (``redis_errors.store_errors``), and a
  script's error names its file and line;
- each script call is a sample of ``threads_redis_script_duration_seconds`` and, with
  tracing on, a ``redis.script <name>`` span, child of the RPC's; calls sent together (a
  batch) share one span and each records the batch's round trip;
- a call over many slots (Search and Count read a caller's 16 shards) is one call per
  node that holds them (``fan_out``): the transport groups the slots by node, and a group
  whose node no longer holds one of its slots (a resharding) is sent again a slot a call.
- a subscription (``subscribe``, Watch's Pub/Sub on the transport's one connection per
  node) has its errors mapped the same way, those that end it later (``Listener.lost``)
  too, and is made again where its channel is served now when the primaries change
  (``prepare``: the corridor's topology hook).

The store (``ThreadStore``) and ``threads-server migrate`` reach Redis only through here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from threads_server.errors import ThreadsError
from threads_server.ops import metrics, tracing
from threads_server.store.corridor.alone import Alone
from threads_server.store.corridor.per_node import PerNode
from threads_server.store.corridor.pipelined import Pipelined
from threads_server.store.corridor.replicated import Replicated
from threads_server.store.corridor.subscriptions import Subscription
from threads_server.store.corridor.transport import Request, Transport
from threads_server.store.outcomes import Outcome, parse
from threads_server.store.redis_errors import lost_error, store_errors
from threads_server.store.scripts import Script

T = TypeVar("T")

Call = tuple[Sequence[Any], Sequence[Any]]
"""One script call of a batch: its KEYS and its ARGV."""

Build = Callable[[Sequence[int], bool], Call]
"""Builds the call that reads some of a fan-out's slots (their positions), told whether
it is the only call (it reads every slot)."""


def transport_for(
    client: Any,
    *,
    pipelining: bool = True,
    min_replica_acks: int = 0,
    replica_ack_timeout_ms: int = 1000,
) -> Transport:
    """The transport for a redis-py client: per node on a cluster; else one pipelined
    connection (``pipelining``) or a pooled connection per call; writes followed by WAIT
    when ``min_replica_acks``."""
    transport: Transport
    if isinstance(client, RedisCluster):
        transport = PerNode(client)
    elif pipelining:
        transport = Pipelined(client)
    else:
        transport = Alone(client)
    if min_replica_acks:
        transport = Replicated(transport, min_replica_acks, replica_ack_timeout_ms)
    return transport


def _request(script: Script, call: Call) -> Request:
    keys, args = call
    return Request(script.command(keys, args), keys[0])


def _raise_first(replies: Iterable[Any], script: Script | None) -> None:
    """Raises the first failure among ``replies``, mapped by ``store_errors``."""
    for reply in replies:
        if isinstance(reply, BaseException):
            with store_errors(script):
                raise reply


class Listener(Protocol):
    """What a subscription tells its owner, in the service's errors."""

    def woken(self, data: bytes) -> None:
        """A message on the channel."""

    def lost(self, error: ThreadsError) -> None:
        """The subscription is gone (messages since may be lost); subscribe again."""


class _Mapped(Subscription):
    """A subscription whose loss reaches its listener as the service's error."""

    __slots__ = ("listener",)

    def __init__(self, channel: bytes, listener: Listener) -> None:
        super().__init__(channel)
        self.listener = listener

    def woken(self, data: bytes) -> None:
        self.listener.woken(data)

    def lost(self, error: Exception) -> None:
        self.listener.lost(lost_error(error))


class Corridor:
    """Sends the store's calls through one transport, with what every call needs."""

    __slots__ = ("_primaries", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._primaries: frozenset[str] = frozenset()  # where prepare loaded the scripts

    async def run(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any] = (), *, write: bool = False
    ) -> tuple[Outcome, list[Any]]:
        """One script call: its reply's outcome and the values after the tag."""
        request = Request(script.command(keys, args), keys[0] if keys else None, write)
        started = time.perf_counter()
        try:
            if tracing.ENABLED:
                with tracing.script_span(script.name, keys) as span:
                    outcome, values = parse(await self._send(script, request))
                    span.set_attribute("threads.outcome", outcome.value)
                    return outcome, values
            return parse(await self._send(script, request))
        finally:
            metrics.script_call(script.name, started)

    async def _send(self, script: Script, request: Request) -> Any:
        with store_errors(script):
            try:
                return await self.transport.handle(request)
            except NoScriptError:  # not run: Redis lost its scripts (a restart, a failover)
                await self.transport.load(script.text)
                return await self.transport.handle(request)

    async def run_many(
        self, script: Script, calls: Sequence[Call], *, write: bool = False
    ) -> list[tuple[Outcome, list[Any]]]:
        """Calls of one script, each on one slot, sent together (one round trip where the
        transport can): each call's outcome and values, in order. Any call's failure
        fails the batch."""
        if not calls:
            return []
        requests = [Request(script.command(keys, args), keys[0], write) for keys, args in calls]
        replies = await self._measured(script, len(requests), self._send_batch(script, requests))
        return [parse(reply) for reply in replies]

    async def fan_out(
        self, script: Script, slots: Sequence[Any], build: Build
    ) -> list[tuple[Sequence[int], Outcome, list[Any]]]:
        """A read of several slots (``slots``: a key of each), one call of ``script`` per
        node that holds them: one call on one Redis, a node's share each on a cluster
        (``Transport.group``), the nodes in parallel. ``build`` makes the call that reads
        the slots at some positions; its first key routes it, and the script reaches the
        other slots' keys on the same node. A call refused because its node no longer
        holds one of its slots (a resharding since the layout was read) is sent again as
        one call per slot, which the cluster client routes and redirects. Each call's
        positions, outcome and values."""
        groups = self.transport.group(slots)
        calls = [(group, build(group, len(groups) == 1)) for group in groups]

        async def send() -> list[tuple[Sequence[int], Any]]:
            replies = await self._replies(script, [_request(script, c) for _, c in calls])
            sent: list[tuple[Sequence[int], Any]] = []
            for (group, _), reply in zip(calls, replies, strict=True):
                if len(group) > 1 and self.transport.misrouted(reply):
                    alone = [([p], build([p], False)) for p in group]
                    again = await self._replies(script, [_request(script, c) for _, c in alone])
                    sent += zip([g for g, _ in alone], again, strict=True)
                else:
                    sent.append((group, reply))
            _raise_first((reply for _, reply in sent), script)
            return sent

        sent = await self._measured(script, len(calls), send())
        return [(group, *parse(reply)) for group, reply in sent]

    async def _measured(self, script: Script, size: int, sending: Awaitable[T]) -> T:
        """Awaits ``sending``, ``size`` calls of ``script`` sent together: one span, and a
        sample each of the batch's round trip."""
        started = time.perf_counter()
        try:
            if tracing.ENABLED:
                with tracing.script_span(script.name, (), batch=size):
                    return await sending
            return await sending
        finally:
            metrics.script_call(script.name, started, size)

    async def _send_batch(self, script: Script | None, requests: Sequence[Request]) -> list[Any]:
        replies = await self._replies(script, requests)
        _raise_first(replies, script)
        return replies

    async def _replies(self, script: Script | None, requests: Sequence[Request]) -> list[Any]:
        """The replies to requests sent together, each failure's exception in its place
        (mapped by ``store_errors``); calls NOSCRIPT refused are sent again once loaded."""
        with store_errors(script):
            replies = await self.transport.handle_batch(requests)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if script is not None and missing:  # those did not run: load, send them again
                await self.transport.load(script.text)
                again = await self.transport.handle_batch([requests[i] for i in missing])
                for position, reply in zip(missing, again, strict=True):
                    replies[position] = reply
            return replies

    async def command(self, *command: Any, key: Any = None, write: bool = False) -> Any:
        """One plain command (not a script: no metric, no span), its reply."""
        with store_errors():
            return await self.transport.handle(Request(command, key, write))

    async def commands(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Plain commands of one key each (the key after the command's name), sent together."""
        return await self._send_batch(
            None, [Request(c, c[1] if len(c) > 1 else None) for c in commands]
        )

    async def ping(self) -> None:
        """Raises (Unavailable) unless every primary answers."""
        with store_errors():
            await self.transport.ping()

    async def servers(self) -> list[Mapping[str, Any]]:
        """``INFO server`` of every primary."""
        with store_errors():
            return await self.transport.servers()

    async def primaries(self) -> frozenset[str]:
        """The primaries' addresses now (empty for one Redis, whose address never moves)."""
        with store_errors():
            return await self.transport.primaries()

    async def load(self, scripts: Iterable[Script]) -> None:
        """SCRIPT LOAD of each, ahead of their first calls."""
        for script in scripts:
            with store_errors(script):
                await self.transport.load(script.text)

    async def prepare(self, scripts: Iterable[Script]) -> None:
        """Loads ``scripts`` on the primaries there are now (after a start, a restart, a
        failover). The topology hook: when the primaries differ from the last prepare's,
        every subscription is made again where its channel is served now (its listener
        hears ``lost``, subscribes again and re-reads)."""
        primaries = await self.primaries()
        await self.load(scripts)
        if primaries != self._primaries:
            self.transport.subscriptions.reset()
        self._primaries = primaries

    async def topology_changed(self) -> bool:
        """Whether the primaries differ from those of the last ``prepare`` (a failover
        promoted a replica, a node was added); always False for one Redis."""
        return await self.primaries() != self._primaries

    async def subscribe(self, channel: bytes, listener: Listener) -> Subscription:
        """Subscribes ``listener`` to ``channel`` on the node serving it, over the
        transport's shared connection to that node; returns once Redis confirmed it (so a
        read sent after it misses no message), for ``unsubscribe``."""
        subscription = _Mapped(channel, listener)
        with store_errors():
            await self.transport.subscriptions.subscribe(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.transport.subscriptions.unsubscribe(subscription)

    @property
    def subscription_links(self) -> int:
        """Subscription connections open now (one per node with a subscription)."""
        return self.transport.subscriptions.links

    async def scan(self, match: str, count: int = 1000) -> AsyncIterator[Any]:
        """Every key matching ``match``."""
        with store_errors():
            async for key in self.transport.scan(match, count):
                yield key

    async def aclose(self) -> None:
        await self.transport.aclose()
