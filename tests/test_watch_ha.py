"""Watch on a real Redis Cluster (3 primaries, each with a replica) and on Sentinel (a
primary, 2 replicas, 3 sentinels): exact order under concurrent appenders, sharded
subscriptions on the node serving each thread's slot (one connection per node), and the
client's resume across a primary SIGKILLed and failed over, with no gap and no duplicate.

Writes run with ``--min-replica-acks 1`` and the primary is killed between Appends, so
every entry a watcher saw was on the replica that takes over (an entry Redis itself loses
in an asynchronous failover cannot be delivered exactly; README: Durability).

Needs Debian's ``redis-server``, ``redis-cli`` and ``redis-sentinel``; skipped without them
unless ``THREADS_TEST_BACKENDS`` requires redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import test_settings as settings_for_test
from tests.failover_load import thread_ids_over_primaries
from tests.inprocess_server import SERVING, Started, StartServer
from tests.redis_cluster import RedisCluster
from tests.redis_sentinel import MASTER_NAME, RedisSentinel
from tests.rpc_helpers import entries
from tests.test_failover import _port_of, ha_cluster, ha_sentinel  # noqa: F401  (fixtures)
from tests.watch_helpers import appenders_against_watchers, resume_across
from threads_server.store.feeds import Feeds
from threads_server.store.keys import ThreadKeys
from threads_service_client.pb import threads_pb2 as pb

ACKS = {"min_replica_acks": 1, "replica_ack_timeout_ms": 2000}


@pytest.fixture
async def cluster_app(ha_cluster: RedisCluster, start_server: StartServer) -> Started:  # noqa: F811
    await asyncio.to_thread(ha_cluster.wait_ok)
    settings = settings_for_test(redis_cluster=True, **ACKS)
    app = await start_server(settings, f"redis://127.0.0.1:{ha_cluster.live()[0].port}")
    await app.wait_health(SERVING)
    return app


@pytest.fixture
async def sentinel_app(ha_sentinel: RedisSentinel, start_server: StartServer) -> Started:  # noqa: F811
    settings = settings_for_test(
        redis_sentinel=tuple(("127.0.0.1", s.port) for s in ha_sentinel.sentinels),
        redis_sentinel_master=MASTER_NAME,
        **ACKS,
    )
    app = await start_server(settings, None)
    await app.wait_health(SERVING)
    return app


async def test_cluster_fifty_watchers_see_get_history_under_ten_appenders(
    cluster_app: Started,
) -> None:
    await appenders_against_watchers(cluster_app.stub, batches=5)


async def test_sentinel_fifty_watchers_see_get_history_under_ten_appenders(
    sentinel_app: Started,
) -> None:
    await appenders_against_watchers(sentinel_app.stub, batches=5)


async def test_cluster_subscriptions_are_sharded_one_connection_per_node(
    ha_cluster: RedisCluster,  # noqa: F811
    cluster_app: Started,
) -> None:
    """300 watchers of 300 threads spread over the 3 primaries: 3 subscription connections
    (one per primary), each thread's channel subscribed (SSUBSCRIBE) on its slot's node."""
    stub = cluster_app.stub
    ids = thread_ids_over_primaries(ha_cluster, 100)
    for thread_id in ids:
        await stub.Create(pb.CreateRequest(thread_id=thread_id, history=entries({})))
    before = await _clients(ha_cluster)
    calls = [stub.Watch(pb.WatchRequest(thread_id=t)) for t in ids]
    await asyncio.gather(*(call.read() for call in calls))
    try:
        assert cluster_app.server.store.subscription_links == 3
        after = await _clients(ha_cluster)
        # The subscription, and the few connections the reads share (Feeds.CONCURRENT_READS).
        added = {port: after[port] - before[port] for port in before}
        assert all(n <= 1 + Feeds.CONCURRENT_READS for n in added.values()), added
        for thread_id in ids[::50]:
            node: Any = aioredis.Redis(host="127.0.0.1", port=_port_of(ha_cluster, thread_id))
            try:
                channel = ThreadKeys(thread_id).channel
                assert await node.execute_command("PUBSUB", "SHARDNUMSUB", channel) == [
                    channel.encode(),
                    1,
                ]
            finally:
                await node.aclose()
    finally:
        for call in calls:
            call.cancel()


async def _clients(cluster: RedisCluster) -> dict[int, int]:
    counts = {}
    for port in cluster.primaries():
        node: Any = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            counts[port] = (await node.info("clients"))["connected_clients"]
        finally:
            await node.aclose()
    return counts


async def test_cluster_the_client_resumes_across_a_primary_failover(
    ha_cluster: RedisCluster,  # noqa: F811
    cluster_app: Started,
) -> None:
    [thread_id] = thread_ids_over_primaries(ha_cluster, 1)[:1]
    await cluster_app.stub.Create(pb.CreateRequest(thread_id=thread_id, history=entries({})))
    primary = _port_of(ha_cluster, thread_id)
    [replica] = ha_cluster.replicas_of(primary)

    async def outage() -> None:
        await asyncio.to_thread(ha_cluster.kill, primary)
        await asyncio.to_thread(ha_cluster.wait_failover, primary, replica)
        # Back as the new primary's replica: writes are acknowledged again (min acks 1).
        await asyncio.to_thread(ha_cluster.restart, primary)

    await resume_across(
        f"127.0.0.1:{cluster_app.server.port}", lambda: cluster_app.stub, thread_id, outage
    )


async def test_sentinel_the_client_resumes_across_a_primary_failover(
    ha_sentinel: RedisSentinel,  # noqa: F811
    sentinel_app: Started,
) -> None:
    thread = (await sentinel_app.stub.Create(pb.CreateRequest(history=entries({})))).thread

    async def outage() -> None:
        killed = await asyncio.to_thread(ha_sentinel.kill_primary)
        await asyncio.to_thread(ha_sentinel.wait_failover, killed)
        await asyncio.to_thread(ha_sentinel.restart_as_replica, killed)

    await resume_across(
        f"127.0.0.1:{sentinel_app.server.port}",
        lambda: sentinel_app.stub,
        thread.thread_id,
        outage,
    )
