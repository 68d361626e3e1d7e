"""The corridor's subscriptions (Watch's Pub/Sub), against a real Redis 7 or Valkey: a
transport's one shared connection per node, the errors mapped once by ``Corridor`` (at
subscribe and when a subscription is lost later), and the topology hook that makes every
subscription again when the primaries change. Watch end to end: test_watch.py; the
cluster's sharded subscriptions per node: test_watch_ha.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.inprocess_server import eventually
from tests.redis_process import RedisProcess
from threads_server.errors import Reason, ThreadsError, Unavailable
from threads_server.ops.config import Settings
from threads_server.store.connect import connect_redis
from threads_server.store.corridor import Corridor
from threads_server.store.corridor.pipelined import Pipelined
from threads_server.store.corridor.replicated import Replicated
from threads_server.store.scripts import all_scripts

BOUND = 15.0  # guards the test only


class Listener:
    """A listener that keeps what it is told."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.losses: list[ThreadsError] = []
        self.woke = asyncio.Event()

    def woken(self, data: bytes) -> None:
        self.messages.append(data)
        self.woke.set()

    def lost(self, error: ThreadsError) -> None:
        self.losses.append(error)


class Moving(Pipelined):
    """The pipelined transport on a real Redis, with the primaries it reports set by the
    test, as Sentinel's would after a failover."""

    reported: frozenset[str] = frozenset()

    async def primaries(self) -> frozenset[str]:
        return self.reported


@pytest.fixture
async def corridor(redis_server: RedisProcess) -> AsyncIterator[Corridor]:
    client: Any = connect_redis(redis_server.url, Settings(redis_timeout_seconds=5))
    corridor = Corridor(Moving(client))
    yield corridor
    await corridor.aclose()
    await client.aclose()


@pytest.fixture
async def raw(redis_server: RedisProcess) -> AsyncIterator[Any]:
    client: Any = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _publish(raw: Any, channel: bytes, data: bytes) -> None:
    """As the write scripts do (lua/includes/wake.lua): SPUBLISH where there is one."""
    info = await raw.info("server")
    sharded = int(str(info["redis_version"]).split(".")[0]) >= 7
    await raw.execute_command("SPUBLISH" if sharded else "PUBLISH", channel, data)


async def test_subscriptions_share_one_connection_and_hear_their_own_channel(
    corridor: Corridor, raw: Any
) -> None:
    listeners = [Listener() for _ in range(20)]
    subscriptions = [
        await corridor.subscribe(b"test:{s}:%d" % n, listener)
        for n, listener in enumerate(listeners)
    ]
    assert corridor.subscription_links == 1
    await _publish(raw, b"test:{s}:7", b"hello")
    await asyncio.wait_for(listeners[7].woke.wait(), BOUND)
    assert listeners[7].messages == [b"hello"]
    assert all(not listener.messages for n, listener in enumerate(listeners) if n != 7)
    corridor.unsubscribe(subscriptions[7])
    await _publish(raw, b"test:{s}:7", b"again")
    await _publish(raw, b"test:{s}:8", b"to 8")
    await asyncio.wait_for(listeners[8].woke.wait(), BOUND)  # after 7's, on one connection
    assert listeners[7].messages == [b"hello"]


async def test_a_lost_connection_reaches_the_listener_as_the_services_error(
    corridor: Corridor, raw: Any
) -> None:
    listener = Listener()
    await corridor.subscribe(b"test:{s}:lost", listener)
    assert await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    await eventually(lambda: _any(listener.losses), "the loss heard")
    [error] = listener.losses
    assert isinstance(error, Unavailable)  # not redis-py's ConnectionError
    assert error.reason == Reason.STORE_UNAVAILABLE
    assert corridor.subscription_links == 0
    # Subscribing again opens a new connection, and it works.
    await corridor.subscribe(b"test:{s}:lost", listener)
    await _publish(raw, b"test:{s}:lost", b"back")
    await asyncio.wait_for(listener.woke.wait(), BOUND)


async def test_subscribing_to_an_unreachable_redis_is_unavailable(
    redis_binary: str, tmp_path: Any
) -> None:
    server = RedisProcess(redis_binary, tmp_path / "redis")
    server.start()
    url = server.url
    server.stop()  # nothing listens there now
    client: Any = connect_redis(url, Settings(redis_timeout_seconds=1))
    corridor = Corridor(Pipelined(client))
    try:
        with pytest.raises(Unavailable) as raised:
            await corridor.subscribe(b"test:{s}:x", Listener())
        assert raised.value.reason == Reason.STORE_UNAVAILABLE
    finally:
        await corridor.aclose()
        await client.aclose()


async def test_new_primaries_make_every_subscription_again(corridor: Corridor, raw: Any) -> None:
    """The corridor's topology hook: ``prepare`` after a failover (new primaries) fails
    every subscription, whose owners subscribe again where the channel is served now."""
    transport = corridor.transport
    assert isinstance(transport, Moving)
    transport.reported = frozenset({"127.0.0.1:1"})
    await corridor.prepare(all_scripts().values())
    listener = Listener()
    await corridor.subscribe(b"test:{s}:moved", listener)
    await corridor.prepare(all_scripts().values())  # the same primaries: nothing happens
    assert not listener.losses
    assert not await corridor.topology_changed()
    transport.reported = frozenset({"127.0.0.1:2"})  # a replica promoted
    assert await corridor.topology_changed()
    await corridor.prepare(all_scripts().values())
    await eventually(lambda: _any(listener.losses), "the reset heard")
    assert isinstance(listener.losses[0], Unavailable)
    assert not await corridor.topology_changed()


async def test_a_replicated_transport_shares_its_inner_subscriptions(
    redis_server: RedisProcess,
) -> None:
    client: Any = connect_redis(redis_server.url, Settings())
    inner = Pipelined(client)
    try:
        assert Replicated(inner, 1, 100).subscriptions is inner.subscriptions
    finally:
        await inner.aclose()
        await client.aclose()


async def _any(found: list[Any]) -> bool:
    return bool(found)
