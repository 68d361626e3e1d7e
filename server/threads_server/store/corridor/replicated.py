"""Writes followed by ``WAIT``: a write is acknowledged once N replicas have it.

``WAIT numreplicas timeout`` counts the replicas that have the replication offset of the
*connection's* last write, so it must run on the very connection, and the very node, that
ran the script. A plain (or Sentinel) client sends both as one non-transactional
pipeline on one pooled connection (not the shared pipelined one: WAIT there would hold
every call behind it). A cluster client would route a keyless ``WAIT`` to any node, so
``Replicated`` sends the write and ``WAIT`` together to the primary that owns the keys'
slot, on one of that node's connections, and follows redirects itself: ``MOVED``, ``ASK``
(``ASKING`` on the same connection) and ``TRYAGAIN`` mean the script did not run, so
re-sending it is safe (``NOSCRIPT`` too: ``Corridor`` loads the script and sends it
again). A lost reply (connection error, timeout) is never re-sent: it propagates, and the
caller retries with ``request_id`` or ``expected_length``. Reads, and everything but
writes, go to the transport it wraps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster

from threads_server.errors import Reason, Unavailable
from threads_server.store.corridor.transport import Request, Transport

_TRYAGAIN_PAUSE = 0.05
# Replies after which the cluster client reloads the slot layout before the next command.
_RELEARN_AFTER = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
)


class ReplicationTimeout(Unavailable):
    """The script ran on the primary, but fewer replicas than asked confirmed it in time."""

    def __init__(self, acknowledged: int, required: int, timeout_ms: int) -> None:
        super().__init__(
            f"the write was applied on the primary but only {acknowledged} of {required} "
            f"replica(s) confirmed it within {timeout_ms} ms, so it may or may not survive a "
            "failover; retrying with the same request_id (Create, Copy) or expected_length "
            "(Append) is safe: it will not apply the write twice",
            reason=Reason.REPLICATION_TIMEOUT,
            replicas_acknowledged=acknowledged,
            replicas_required=required,
        )


class Replicated(Transport):
    """Writes acknowledged only once ``min_acks`` replicas confirm them (``WAIT min_acks
    timeout_ms`` on the write's connection); everything else goes to ``inner``."""

    def __init__(self, inner: Transport, min_acks: int, timeout_ms: int) -> None:
        self.inner = inner
        self.client = inner.client
        self.subscriptions = inner.subscriptions
        self.shares_one_connection = inner.shares_one_connection  # reads go there
        self._min_acks = min_acks
        self._timeout_ms = timeout_ms
        self._cluster = isinstance(self.client, RedisCluster)

    async def handle(self, request: Request) -> Any:
        """The write's reply; raises ReplicationTimeout when too few replicas confirm it."""
        if not request.write:
            return await self.inner.handle(request)
        if self._cluster:
            reply, acks = await self._on_cluster(request.command, request.key)
        else:
            reply, acks = await self._on_one(request.command)
        if acks < self._min_acks:
            raise ReplicationTimeout(acks, self._min_acks, self._timeout_ms)
        return reply

    async def handle_batch(self, requests: Sequence[Request]) -> list[Any]:
        if any(request.write for request in requests):
            return await super().handle_batch(requests)
        return await self.inner.handle_batch(requests)

    def group(self, keys: Sequence[Any]) -> list[list[int]]:
        return self.inner.group(keys)

    def misrouted(self, reply: Any) -> bool:
        return self.inner.misrouted(reply)

    async def load(self, script: str) -> None:
        await self.inner.load(script)

    async def ping(self) -> None:
        await self.inner.ping()

    async def servers(self) -> list[Mapping[str, Any]]:
        return await self.inner.servers()

    async def primaries(self) -> frozenset[str]:
        return await self.inner.primaries()

    def scan(self, match: str, count: int) -> AsyncIterator[Any]:
        return self.inner.scan(match, count)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _commands(self, command: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [command, ("WAIT", self._min_acks, self._timeout_ms)]

    async def _on_one(self, command: tuple[Any, ...]) -> tuple[Any, int]:
        """Plain or Sentinel client: one pipeline (one connection, one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for each in self._commands(command):
            pipe.execute_command(*each)
        reply, acks = await pipe.execute(raise_on_error=False)
        return _checked(reply, acks)

    async def _on_cluster(self, command: tuple[Any, ...], key: Any) -> tuple[Any, int]:
        """Cluster: both commands to the slot's primary, on one of its connections."""
        cluster: RedisCluster = self.client
        await cluster.initialize()  # a no-op unless a failure asked for a new layout
        node = _primary_for(cluster, key)
        asking = False
        for attempt in range(cluster.RedisClusterRequestTTL):
            commands = [PipelineCommand(0, "ASKING")] if asking else []
            commands += [PipelineCommand(i + 1, *c) for i, c in enumerate(self._commands(command))]
            asking = False
            try:
                await node.execute_pipeline(commands)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                relearn_layout(cluster)
                raise
            reply, acks = commands[-2].result, commands[-1].result
            if isinstance(reply, redis.exceptions.MovedError):
                # The slot has a new primary (failover, resharding): not run there.
                await cluster.nodes_manager.move_slot(reply)
                node = _primary_for(cluster, key)
            elif isinstance(reply, redis.exceptions.AskError):
                # The slot is migrating and these keys are on the target: not run here.
                target = cluster.get_node(host=reply.host, port=reply.port)
                if target is None:
                    relearn_layout(cluster)
                    raise redis.exceptions.ClusterError(f"ASK to an unknown node: {reply}")
                node, asking = target, True
            elif isinstance(reply, redis.exceptions.TryAgainError):
                await asyncio.sleep(_TRYAGAIN_PAUSE * min(attempt + 1, 4))
            else:
                if isinstance(reply, _RELEARN_AFTER):
                    relearn_layout(cluster)
                return _checked(reply, acks)
        raise redis.exceptions.ClusterError("too many redirections (MOVED/ASK/TRYAGAIN)")


def _primary_for(cluster: RedisCluster, key: Any) -> ClusterNode:
    node = cluster.get_node_from_key(key)
    if node is None:
        raise redis.exceptions.SlotNotCoveredError(f"no primary serves the slot of {key!r}")
    return node


def relearn_layout(cluster: RedisCluster) -> None:
    """Makes the next ``initialize()`` reload the slot layout, as the cluster client does
    after a connection error (a failed node may have been replaced by its replica). It sets
    the client's private flag, as redis-py's own error paths do (redis-py has no public
    way to ask); tests/test_cluster.py pins that this still works."""
    cluster._initialize = True


def _checked(reply: Any, acks: Any) -> tuple[Any, int]:
    """Raises the script's error (it was not applied, or its reply was lost), else the
    reply and the number of replicas that confirmed it."""
    if isinstance(reply, Exception):
        raise reply
    if isinstance(acks, Exception):
        # A connection lost after the script's reply: the write may not be replicated.
        raise acks
    return reply, int(acks)
