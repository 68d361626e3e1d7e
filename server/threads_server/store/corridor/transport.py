"""The interface every way to Redis implements, as httpx's ``BaseTransport.handle_request``.

A ``Transport`` sends commands and returns Redis's replies, raising redis-py's exceptions
as they come (an error reply is a ``ResponseError``: NOSCRIPT, WRONGTYPE, OOM...). It knows
how to reach Redis (one connection or a pool, one server or a cluster's nodes, a write
followed by WAIT) and nothing else: the NOSCRIPT reload, the mapping of Redis's errors to
the service's, the script metric and the ``redis.script`` span are ``Corridor``'s, above
it, written once for every transport.

The family, by the topology it serves (``OneRedis``: a Redis, or Sentinel's primary;
``Cluster``: a Redis Cluster's primaries) and how it sends:

- ``pipelined.Pipelined`` (one Redis): every call on one shared connection, each event-loop
  tick's calls in one write, many in flight (the default);
- ``alone.Alone`` (one Redis): each call on a pooled connection of its own, a batch as one
  redis-py pipeline (``--redis-pipelining off``, and ``threads-server migrate``);
- ``per_node.PerNode`` (cluster): each call to its slot's node, a batch's calls one after
  another per node, the nodes in parallel;
- ``replicated.Replicated`` (either, around one of the above): a write followed by ``WAIT``
  on the connection and node that ran it (``--min-replica-acks``).

Each has ``handle`` (one command) and ``handle_batch`` (several sent together: Search and
Count's calls to a cluster's nodes, migrate's reads), ``group`` and ``misrouted`` (which
slots one call per node can read together, and whether a node refused such a call because
a slot moved), and the calls of its topology that are not commands of one key: ``load``
(SCRIPT LOAD where the calls go), ``ping``, ``servers``, ``primaries``, ``scan``.

And each has ``subscriptions`` (``subscriptions.Subscriptions``), the Pub/Sub of Watch:
one shared subscription connection per node of its topology (``OneRedis``: one, the
client's pool's, so Sentinel's finds the primary; ``Cluster``: one per primary, sharded
Pub/Sub on the channel's slot's node); ``Replicated`` shares its inner transport's.
``Corridor.subscribe`` maps its errors, once, as the other calls'.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NamedTuple

import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from threads_server.store.corridor.subscriptions import Subscriptions

# How long a subscription may wait for Redis to confirm it, when the client has no
# socket_timeout of its own.
_SUBSCRIBE_TIMEOUT_SECONDS = 1.0


class Request(NamedTuple):
    """One command for Redis: a script call (``Script.command``: EVALSHA) or a plain one.

    ``key``: the key whose slot routes it on a cluster (None: any node). ``write``: it
    changes data, so ``Replicated`` waits for the replicas to have it."""

    command: tuple[Any, ...]
    key: Any = None
    write: bool = False


class Transport(ABC):
    """One way to send commands to Redis. ``client``: the redis-py client it sends through;
    ``subscriptions``: its Pub/Sub, one connection per node."""

    client: Any
    subscriptions: Subscriptions
    shares_one_connection = False
    """Whether every call shares one connection (else each holds a pooled one for its round
    trip, so a burst of calls opens as many)."""

    @abstractmethod
    async def handle(self, request: Request) -> Any:
        """Redis's reply to one command; redis-py's exception for an error or an outage."""

    async def handle_batch(self, requests: Sequence[Request]) -> list[Any]:
        """The replies to commands sent together, in order; a command that failed has its
        exception in its place (its reply lost, or never sent: NOSCRIPT, a lost
        connection), so that each can be answered on its own."""
        return list(
            await asyncio.gather(*(self.handle(r) for r in requests), return_exceptions=True)
        )

    def group(self, keys: Sequence[Any]) -> list[list[int]]:
        """The positions of ``keys`` grouped by the node that holds their slots, for one
        call per node (``Corridor.fan_out``): one group for one Redis."""
        return [list(range(len(keys)))]

    def misrouted(self, reply: Any) -> bool:
        """Whether ``reply`` says a call grouped by ``group`` reached a node that no longer
        holds all of its slots (never, on one Redis)."""
        return False

    @abstractmethod
    async def load(self, script: str) -> None:
        """SCRIPT LOAD, wherever this transport's calls may run."""

    @abstractmethod
    async def ping(self) -> None:
        """Raises unless every primary answers."""

    @abstractmethod
    async def servers(self) -> list[Mapping[str, Any]]:
        """``INFO server`` of every primary."""

    @abstractmethod
    async def primaries(self) -> frozenset[str]:
        """The primaries' addresses, as the client sees them now (empty for a plain Redis,
        whose address never moves)."""

    def scan(self, match: str, count: int) -> AsyncIterator[Any]:
        """Every key matching ``match`` (every primary's, on a cluster)."""
        found: AsyncIterator[Any] = self.client.scan_iter(match=match, count=count)
        return found

    async def aclose(self) -> None:
        """At shutdown: no call is left waiting, no subscription left open (the client
        itself is not closed here)."""
        await self.subscriptions.aclose()


def _subscribe_timeout(client: Any) -> float:
    """The client's own socket timeout (``--redis-timeout-seconds``)."""
    timeout = client.get_connection_kwargs().get("socket_timeout")
    return float(timeout) if timeout else _SUBSCRIBE_TIMEOUT_SECONDS


class OneRedis(Transport, ABC):
    """A transport to one Redis, or to the primary Sentinel names."""

    NODE = "primary"

    def __init__(self, client: Any) -> None:
        self.client = client
        self._sentinel = isinstance(
            getattr(client, "connection_pool", None), SentinelConnectionPool
        )
        self.subscriptions = Subscriptions(self, timeout=_subscribe_timeout(client))

    # subscriptions.Nodes: one node, connections from the client's pool (Sentinel's opens
    # them to the primary the sentinels name now).
    def node_of(self, channel: bytes) -> str:
        return self.NODE

    async def open_connection(self, node: str) -> Any:
        return await self.client.connection_pool.get_connection()

    async def release_connection(self, node: str, connection: Any) -> None:
        await self.client.connection_pool.release(connection)

    async def load(self, script: str) -> None:
        await self.client.script_load(script)

    async def ping(self) -> None:
        await self.client.ping()

    async def servers(self) -> list[Mapping[str, Any]]:
        return [await self.client.info("server")]

    async def primaries(self) -> frozenset[str]:
        if not self._sentinel:
            return frozenset()
        host, port = await self.client.connection_pool.get_master_address()
        return frozenset({f"{host}:{port}"})


class Cluster(Transport, ABC):
    """A transport to a Redis Cluster's primaries."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self.subscriptions = Subscriptions(self, timeout=_subscribe_timeout(client))

    # subscriptions.Nodes: each channel on the primary of its slot, as the client knows the
    # layout (the calls through the same client keep it current), connections from that
    # node's own pool.
    def node_of(self, channel: bytes) -> str:
        node = self.client.get_node_from_key(channel)
        if node is None:
            raise redis.exceptions.SlotNotCoveredError("no primary serves the channel's slot")
        return str(node.name)

    async def open_connection(self, node: str) -> Any:
        found = self.client.get_node(node_name=node)
        if found is None:
            raise redis.exceptions.ConnectionError(f"{node} left the cluster")
        connection = found.acquire_connection()
        try:
            await connection.connect()
        except BaseException:
            await connection.disconnect()
            found.release(connection)
            raise
        return connection

    async def release_connection(self, node: str, connection: Any) -> None:
        found = self.client.get_node(node_name=node)
        if found is not None:
            found.release(connection)

    def group(self, keys: Sequence[Any]) -> list[list[int]]:
        """By the primary the client believes holds each key's slot now."""
        by_node: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            node = self.client.get_node_from_key(key)
            by_node.setdefault(node.name if node else "", []).append(position)
        return list(by_node.values())

    def misrouted(self, reply: Any) -> bool:
        """A script reaching a key of a slot its node does not hold is refused ("Script
        attempted to access a non local key", Redis 7 and Valkey) before it reads it; a
        redirect the client could not follow is refused before the script runs."""
        if isinstance(reply, redis.exceptions.MovedError | redis.exceptions.AskError):
            return True
        return isinstance(reply, redis.exceptions.ResponseError) and "non local key" in str(reply)

    async def load(self, script: str) -> None:
        """On every primary that answers: the one a call goes to may be any of them (a
        slot being migrated, a replica just promoted). Raises only when none does."""
        nodes = self.client.get_primaries()
        loaded = await asyncio.gather(
            *(node.execute_command("SCRIPT LOAD", script) for node in nodes),
            return_exceptions=True,
        )
        failures = [result for result in loaded if isinstance(result, BaseException)]
        if failures and len(failures) == len(loaded):
            raise failures[0]

    async def ping(self) -> None:
        await self.client.ping(target_nodes=RedisCluster.PRIMARIES)

    async def servers(self) -> list[Mapping[str, Any]]:
        by_node = await self.client.info("server", target_nodes=RedisCluster.PRIMARIES)
        return list(by_node.values()) if "redis_version" not in by_node else [by_node]

    async def primaries(self) -> frozenset[str]:
        return frozenset(node.name for node in self.client.get_primaries())
