"""Against a real 3-primary Redis Cluster: the service end to end, copy families kept in
their source's slot, Copy atomic against Appends, and idempotent Copy retries.

Needs Debian's ``redis-server`` and ``redis-cli``; skipped without them unless
``THREADS_TEST_BACKENDS`` requires redis.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import jwt
import pytest
import redis.asyncio as aioredis
from google.protobuf import duration_pb2
from grpc import aio
from redis.asyncio.cluster import RedisCluster as ClusterClient

from tests import conftest, search_checks
from tests.inprocess_server import SERVING, Started, eventually
from tests.redis_cluster import RedisCluster, cluster_binaries
from tests.rpc_helpers import entries, history, struct
from tests.test_copy import appends_race_copies, copy, threads_in_slot
from tests.test_migrate import check_migrated, seed_old_layout
from threads_server.server import ThreadsServer
from threads_server.store.corridor.replicated import relearn_layout
from threads_server.store.keys import ThreadKeys, all_shards, new_thread_id
from threads_server.store.migrate import migrate
from threads_server.store.scripts import all_scripts
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub

_REQUIRED = [b for b in os.environ.get("THREADS_TEST_BACKENDS", "").split(",") if b]


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    binaries = cluster_binaries()
    if binaries is None:
        if "redis" in _REQUIRED:
            pytest.fail("redis is required (THREADS_TEST_BACKENDS) but redis-server/cli missing")
        pytest.skip("Redis Cluster tests need redis-server and redis-cli (apt-get install "
                    "redis-server)")  # fmt: skip
    cluster = RedisCluster(*binaries, tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
async def cluster_server(redis_cluster: RedisCluster) -> AsyncIterator[Started]:
    server = ThreadsServer(conftest.test_settings(redis_cluster=True), redis_cluster.url)
    port = await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        started = Started(server, channel)
        await started.wait_health(SERVING)
        yield started
    await server.stop(grace=1)


@pytest.fixture
def stub(cluster_server: Started) -> pb_grpc.ThreadServiceAsyncStub:
    return cluster_server.stub


@pytest.fixture
async def cluster(redis_cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    """A direct cluster client, to check where the service put things."""
    client = ClusterClient.from_url(redis_cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


def node_of(cluster: ClusterClient, key: str) -> Any:
    """The primary serving ``key``'s slot."""
    node = cluster.get_node_from_key(key)
    assert node is not None, key
    return node


async def node_client(cluster: ClusterClient, key: str) -> Any:
    """A plain client to the primary holding ``key``'s slot."""
    node = node_of(cluster, key)
    return aioredis.Redis(host=node.host, port=int(node.port))


async def test_relearn_layout_makes_the_cluster_client_reload_its_slots(
    cluster: ClusterClient,
) -> None:
    """Pins the redis-py behaviour ``corridor.replicated`` relies on: after
    ``relearn_layout`` (redis-py's private ``_initialize``), ``initialize()`` reloads the
    slot layout. Without it, writes with --min-replica-acks on a cluster would keep going
    to a primary that failed."""
    stale = cluster.nodes_manager.slots_cache
    await cluster.initialize()
    assert cluster.nodes_manager.slots_cache is stale  # nothing asked for: no reload

    relearn_layout(cluster)

    async def reloaded() -> bool:
        await cluster.initialize()
        return cluster.nodes_manager.slots_cache is not stale

    await eventually(reloaded, "the slot layout reloaded after relearn_layout")


async def create(stub: Stub, thread_id: str, n: int) -> pb.Thread:
    request = pb.CreateRequest(thread_id=thread_id, history=entries(*({"i": i} for i in range(n))))
    return (await stub.Create(request)).thread


async def test_scripts_are_loaded_on_every_primary(
    cluster_server: Started, cluster: ClusterClient
) -> None:
    shas = [script.sha for script in all_scripts().values()]
    primaries = cluster.get_primaries()
    assert len(primaries) == 3
    for node in primaries:
        client = aioredis.Redis(host=node.host, port=int(node.port))
        assert await client.script_exists(*shas) == [True] * len(shas), node.name
        await client.aclose()


async def test_create_append_get_history_and_copy_end_to_end(stub: Stub) -> None:
    created = (
        await stub.Create(pb.CreateRequest(metadata=struct(owner="ada"), history=entries({"a": 1})))
    ).thread
    appended = await stub.Append(
        pb.AppendRequest(thread_id=created.thread_id, entries=entries({"b": 2}, {"c": 3}))
    )
    assert appended.history_length == 3
    got = (await stub.Get(pb.GetRequest(thread_id=created.thread_id))).thread
    assert (got.history_length, got.metadata["owner"]) == (3, "ada")
    stored = await history(stub, created.thread_id, page_size=2)
    assert [dict(e.data) for e in stored] == [{"a": 1}, {"b": 2}, {"c": 3}]

    whole = await copy(stub, created.thread_id, metadata=struct(owner="bob"))
    assert whole.copied_from == created.thread_id
    assert whole.metadata["owner"] == "bob"
    assert await history(stub, whole.thread_id) == stored
    fork = await copy(stub, created.thread_id, history_length=1)
    assert await history(stub, fork.thread_id) == stored[:1]
    await stub.Append(pb.AppendRequest(thread_id=fork.thread_id, entries=entries({"f": 1})))
    assert len(await history(stub, fork.thread_id)) == 2
    assert len(await history(stub, created.thread_id)) == 3


async def test_copy_families_stay_in_their_source_slot_on_every_node(
    stub: Stub, cluster: ClusterClient
) -> None:
    """Sources spread over every primary; each one's copies, forks and copies of copies
    have all their keys in the source's slot, on the source's node."""
    per_node: dict[str, list[str]] = {node.name: [] for node in cluster.get_primaries()}
    while min(len(ids) for ids in per_node.values()) < 4:
        thread_id = new_thread_id()
        per_node[node_of(cluster, ThreadKeys(thread_id).meta).name].append(thread_id)
    sources = [ids[i] for ids in per_node.values() for i in range(4)]

    async def family(source_id: str) -> list[pb.Thread]:
        source = await create(stub, source_id, 3)
        first = await copy(stub, source_id)
        second = await copy(stub, first.thread_id, request_id=str(uuid.uuid4()))
        fork = await copy(stub, second.thread_id, history_length=1)
        third = await copy(stub, fork.thread_id)
        return [source, first, second, fork, third]

    families = await asyncio.gather(*(family(s) for s in sources))
    for members in families:
        source_keys = ThreadKeys(members[0].thread_id)
        slot = await cluster.cluster_keyslot(source_keys.meta)
        node = node_of(cluster, source_keys.meta)
        client = await node_client(cluster, source_keys.meta)
        try:
            for thread in members:
                keys = ThreadKeys(thread.thread_id)
                for key in (keys.meta, keys.history):
                    assert await cluster.cluster_keyslot(key) == slot, key
                    assert node_of(cluster, key).name == node.name, key
                    assert await client.exists(key) == 1, f"{key} not on {node.name}"
            assert await threads_in_slot(client, source_keys.thread_id) >= {
                m.thread_id for m in members
            }
        finally:
            await client.aclose()
    assert len({node_of(cluster, ThreadKeys(s).meta).name for s in sources}) == 3


async def test_concurrent_appends_are_wholly_in_or_out_of_every_copy(stub: Stub) -> None:
    await appends_race_copies(stub)


async def test_racing_copy_retries_with_a_request_id_make_exactly_one_copy(
    stub: Stub, cluster: ClusterClient
) -> None:
    source = await create(stub, new_thread_id(), 20)
    request = pb.CopyRequest(thread_id=source.thread_id, request_id=str(uuid.uuid4()))
    results = await asyncio.gather(*(stub.Copy(request) for _ in range(25)))
    assert len({r.thread.thread_id for r in results}) == 1
    again = await copy(stub, source.thread_id, request_id=request.request_id)
    assert again.thread_id == results[0].thread.thread_id
    client = await node_client(cluster, ThreadKeys(source.thread_id).meta)
    try:
        family = await threads_in_slot(client, source.thread_id)
    finally:
        await client.aclose()
    assert family == {source.thread_id, again.thread_id}


async def test_scripts_flushed_on_every_primary_are_reloaded(
    cluster_server: Started, cluster: ClusterClient
) -> None:
    """What a restarted primary looks like to the client: no scripts. The next call
    reloads them (NOSCRIPT means the script did not run) instead of failing."""
    stub = cluster_server.stub
    source = await create(stub, new_thread_id(), 1)
    for node in cluster.get_primaries():
        client = aioredis.Redis(host=node.host, port=int(node.port))
        await client.script_flush()
        await client.aclose()
    appended = await stub.Append(
        pb.AppendRequest(thread_id=source.thread_id, entries=entries({"x": 1}))
    )
    assert appended.history_length == 2
    assert (await copy(stub, source.thread_id)).history_length == 2
    await cluster_server.server.store.prepare()  # the other scripts, for the tests after


async def test_auth_ttl_and_create_retries_on_a_cluster(
    redis_cluster: RedisCluster, cluster: ClusterClient
) -> None:
    """With auth on, every key of a caller's thread, its copies and its request records
    sits in one slot; the copy's own expiry is set on the node that holds it."""
    secret = "cluster-secret-0123456789abcdef0123456789"
    settings = conftest.test_settings(redis_cluster=True, auth_jwt_secret=secret)
    server = ThreadsServer(settings, redis_cluster.url)
    port = await server.start()
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, secret, "HS256")
    md = (("authorization", f"Bearer {token}"),)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            started = Started(server, channel)
            await started.wait_health(SERVING)
            request = pb.CreateRequest(request_id="c-1", history=entries({"i": 0}, {"i": 1}))
            source = (await started.stub.Create(request, metadata=md)).thread
            assert (await started.stub.Create(request, metadata=md)).thread == source
            copy_request = pb.CopyRequest(
                thread_id=source.thread_id,
                request_id="k-1",
                ttl=duration_pb2.Duration(seconds=600),
            )
            copied = (await started.stub.Copy(copy_request, metadata=md)).thread
            assert copied.owner == "alice"
            src, dst = ThreadKeys(source.thread_id, "alice"), ThreadKeys(copied.thread_id, "alice")
            names = [src.meta, src.history, src.create_request, src.copy_request("k-1")]
            names += [dst.meta, dst.history]
            assert len({node_of(cluster, name).name for name in names}) == 1
            client = await node_client(cluster, dst.meta)
            try:
                expiry = copied.expire_time.ToMilliseconds()
                assert await client.pexpiretime(dst.meta) == expiry
                assert await client.pexpiretime(dst.history) == expiry
                assert await client.pexpiretime(src.meta) == -1
            finally:
                await client.aclose()
    finally:
        await server.stop(grace=1)


# --- Search and Count on the cluster: 16 shards per caller, spread over the primaries ----


@pytest.fixture(scope="module")
async def search_server(redis_cluster: RedisCluster) -> AsyncIterator[Started]:
    settings = conftest.test_settings(redis_cluster=True, auth_jwt_secret=search_checks.SECRET)
    server = ThreadsServer(settings, redis_cluster.url)
    port = await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        started = Started(server, channel)
        await started.wait_health(SERVING)
        yield started
    await server.stop(grace=1)


async def test_a_callers_shards_spread_over_every_primary(cluster: ClusterClient) -> None:
    for owner in ("", "alice"):
        nodes = {node_of(cluster, shard.by_created).name for shard in all_shards(owner)}
        assert len(nodes) == 3, owner


async def test_search_every_filter_and_sort_on_a_cluster(search_server: Started) -> None:
    await search_checks.check_every_filter_and_sort(search_checks.Caller(search_server.stub))


async def test_search_offset_on_a_cluster(search_server: Started) -> None:
    await search_checks.check_offset(search_checks.Caller(search_server.stub))


async def test_search_paging_while_others_write_on_a_cluster(search_server: Started) -> None:
    caller = search_checks.Caller(search_server.stub)
    await search_checks.check_paging_while_others_write(caller, rounds=20)


async def test_search_expiry_and_delete_on_a_cluster(search_server: Started) -> None:
    await search_checks.check_expiry_and_delete(search_checks.Caller(search_server.stub))


async def test_migrate_on_a_cluster(search_server: Started, cluster: ClusterClient) -> None:
    """0.1 threads (old slots) are moved into their shards' slots, indexed, expiry kept;
    a second run changes nothing."""
    owner = f"mig-{uuid.uuid4()}"
    seeded = await seed_old_layout(cluster, owner)
    first = await migrate(cluster)
    assert first.threads >= len(seeded)
    second = await migrate(cluster)
    assert (second.threads, second.restored, second.deleted) == (0, 0, 0)
    await check_migrated(search_checks.Caller(search_server.stub, sub=owner), seeded)


async def _seed_every_shard(caller: search_checks.Caller) -> None:
    """Threads until the caller has at least two in every shard, some with ``kind=1``."""
    per_shard: dict[str, int] = {}
    for i in range(400):
        thread = await caller.create(kind=i % 2)
        shard = thread.thread_id[-1]
        per_shard[shard] = per_shard.get(shard, 0) + 1
        if len(per_shard) == 16 and min(per_shard.values()) >= 2:
            return
    raise AssertionError(f"shards after 400 creates: {per_shard}")


async def _check_exact(caller: search_checks.Caller) -> None:
    """Search and Count against the brute force, with Search and Count first: the Gets of
    the brute force would teach the service's client where every thread lives now."""
    first = (await caller.stub.Search(pb.SearchRequest(page_size=4), metadata=caller.md)).threads
    counted = await caller.count()
    kind = struct(kind=1)
    every = [t.thread_id for t in await caller.search_all(3)]
    kind_1 = [t.thread_id for t in await caller.search_all(2, metadata=kind)]
    live = await caller.live()
    assert counted == len(live)
    assert every == search_checks.brute_force(live)
    assert kind_1 == search_checks.brute_force(live, metadata=kind)
    assert await caller.count(metadata=kind) == len(kind_1)
    by_id = {thread.thread_id: thread for thread in live}
    assert list(first) == [by_id[thread.thread_id] for thread in first]  # the whole thread


def _evalsha_calls(cluster: RedisCluster) -> dict[int, int]:
    calls = {}
    for port in cluster.primaries():
        stats = cluster.redis_cli(port, "INFO", "commandstats")
        found = [line for line in stats.splitlines() if line.startswith("cmdstat_evalsha:")]
        calls[port] = int(found[0].split("calls=")[1].split(",")[0]) if found else 0
    return calls


async def test_search_and_count_are_one_call_per_node(
    search_server: Started, redis_cluster: RedisCluster
) -> None:
    """A first page and its threads, and a Count, are one script call on each primary that
    holds some of the caller's shards (all three do): no call per shard, no Get after."""
    caller = search_checks.Caller(search_server.stub)
    await _seed_every_shard(caller)
    before = _evalsha_calls(redis_cluster)
    page = await caller.stub.Search(pb.SearchRequest(page_size=10), metadata=caller.md)
    assert len(page.threads) == 10 and all(t.created_at.seconds for t in page.threads)
    after_search = _evalsha_calls(redis_cluster)
    assert await caller.count() == len(caller.made)
    after_count = _evalsha_calls(redis_cluster)
    assert {p: after_search[p] - before[p] for p in before} == dict.fromkeys(before, 1)
    assert {p: after_count[p] - after_search[p] for p in before} == dict.fromkeys(before, 1)


def _move_slot(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """Moves ``slot`` and its keys from primary ``source`` to ``target``, telling every
    primary, as redis-cli --cluster reshard does; the service's client is not told."""
    ids = {port: cluster.redis_cli(port, "CLUSTER", "MYID").strip() for port in (source, target)}
    cluster.redis_cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
    cluster.redis_cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])
    keys = cluster.redis_cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "1000").split()
    if keys:
        cluster.redis_cli(
            source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys
        )
    for port in cluster.primaries():
        cluster.redis_cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])
    cluster.wait_ok()


async def test_search_and_count_stay_exact_when_a_shard_moved_to_another_node(
    search_server: Started, redis_cluster: RedisCluster, cluster: ClusterClient
) -> None:
    """The service groups the shards by the node its client last saw holding them. After
    a resharding it has not seen, a node's call reaches a shard that left it: first a
    shard reached from inside the script (the node refuses the non-local key), then the
    shard that routes the call (MOVED, followed to a node that lacks the others). Either
    way the shards of that call are read again one call each, and the answers stay exact."""
    caller = search_checks.Caller(search_server.stub)
    await _seed_every_shard(caller)
    await _check_exact(caller)
    shards = [shard for shard in all_shards(caller.sub)]
    port_of = {shard.shard: int(node_of(cluster, shard.by_created).port) for shard in shards}
    source = max(set(port_of.values()), key=list(port_of.values()).count)
    target = next(port for port in redis_cluster.primaries() if port != source)
    on_source = [shard for shard in shards if port_of[shard.shard] == source]
    assert len(on_source) >= 3
    moved = []
    try:
        for shard in (on_source[1], on_source[0]):  # a shard inside the call, then its route
            slot = await cluster.cluster_keyslot(shard.by_created)
            await asyncio.to_thread(_move_slot, redis_cluster, slot, source, target)
            moved.append(slot)
            await _check_exact(caller)
    finally:
        for slot in moved:
            await asyncio.to_thread(_move_slot, redis_cluster, slot, target, source)
    await _check_exact(caller)
