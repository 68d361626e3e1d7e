"""High availability against real replicated Redis: a Redis Cluster of 3 primaries each
with a replica, and Sentinel (3 sentinels, a primary, 2 replicas).

- ``--min-replica-acks``: WAIT runs on the connection and node that ran the script; too
  few replicas in time is UNAVAILABLE REPLICATION_TIMEOUT, and the retry with the same
  ``expected_length`` / ``request_id`` applies nothing twice. On a cluster the write and
  its WAIT follow MOVED (a manual failover) and ASK (a slot being migrated).
- A primary SIGKILLed under Appends and Copies (tests/failover_load.py): the service
  follows the promoted replica with no restart, reloads its scripts there, health goes
  NOT_SERVING then SERVING, calls fail only with UNAVAILABLE or DEADLINE_EXCEEDED, and with
  ``--min-replica-acks 1`` no acknowledged write is lost.

Needs Debian's ``redis-server``, ``redis-cli`` and ``redis-sentinel``; skipped without them
unless ``THREADS_TEST_BACKENDS`` requires redis. Timing is printed, never asserted
(``make bench-failover`` measures it over repeated kills).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc import aio
from redis.crc import key_slot

from tests import tls_certs
from tests.conftest import test_settings as settings_for_test
from tests.failover_load import (
    BATCH,
    ClusterTopology,
    FailoverLoad,
    Outcome,
    SentinelTopology,
    Topology,
    batch,
    thread_ids_over_primaries,
)
from tests.inprocess_server import NOT_SERVING, SERVING, Started, StartServer
from tests.redis_cluster import RedisCluster, cluster_binaries
from tests.redis_process import FAST_SYNC, RedisProcess
from tests.redis_sentinel import MASTER_NAME, RedisSentinel, TLSFiles, sentinel_binaries
from tests.rpc_helpers import expect_error, struct
from threads_server.store.keys import ThreadKeys, new_thread_id
from threads_server.store.scripts import all_scripts, script_names
from threads_service_client.pb import threads_pb2 as pb

_REQUIRED = [b for b in os.environ.get("THREADS_TEST_BACKENDS", "").split(",") if b]
ACK_TIMEOUT_MS = 1000  # generous: the machine is shared; a paused replica costs this per write
DEADLINE = 10.0
RETRYABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _missing(what: str) -> None:
    if "redis" in _REQUIRED:
        pytest.fail(f"redis is required (THREADS_TEST_BACKENDS) but {what} is missing")
    pytest.skip(f"failover tests need {what} (apt-get install redis-server redis-sentinel)")


@pytest.fixture(scope="module")
def ha_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    binaries = cluster_binaries()
    if binaries is None:
        _missing("redis-server and redis-cli")
    assert binaries is not None
    cluster = RedisCluster(
        *binaries, tmp_path_factory.mktemp("ha-cluster"), replicas=1, node_timeout_ms=1000
    )
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def ha_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    binaries = sentinel_binaries()
    if binaries is None:
        _missing("redis-server, redis-cli and redis-sentinel")
    assert binaries is not None
    sentinel = RedisSentinel(*binaries, tmp_path_factory.mktemp("ha-sentinel"))
    sentinel.start()
    yield sentinel
    sentinel.stop()


@pytest.fixture
def primary_and_replica(
    redis_binary: str, tmp_path: Path
) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """One Redis and one replica of it (no Sentinel): the plain client's WAIT path, on
    each backend. (They differ: Redis 7.0's WAIT covers everything before the client's
    last command, Valkey's only the client's own last write.)"""
    primary = RedisProcess(
        redis_binary, tmp_path / "primary", appendonly=False, extra_args=FAST_SYNC
    )
    replica = RedisProcess(redis_binary, tmp_path / "replica", appendonly=False)
    replica.extra_args += ["--replicaof", "127.0.0.1", str(primary.port)]
    primary.start()
    replica.start()
    yield primary, replica
    for process in (replica, primary):
        if process.process is not None:
            os.kill(process.process.pid, signal.SIGCONT)
        process.stop()


async def _wait_synced(primary: RedisProcess) -> None:
    client: Any = aioredis.from_url(primary.url)
    try:
        for _ in range(600):
            info = await client.info("replication")
            if info.get("connected_slaves") == 1 and info["slave0"]["state"] == "online":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("replica not in sync")
    finally:
        await client.aclose()


class _Paused:
    """SIGSTOPs Redis processes (a replica that stops acknowledging), SIGCONT on exit."""

    def __init__(self, *processes: RedisProcess) -> None:
        self.pids = [p.process.pid for p in processes if p.process is not None]

    def __enter__(self) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)

    def __exit__(self, *_: object) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGCONT)


async def _retry_after_replication_timeout_is_safe(
    app: Started, pause: _Paused, thread_id: str
) -> None:
    """Append and Copy time out waiting for the replica; retried once it is back, each
    applied exactly once."""
    stub = app.stub
    request = pb.CreateRequest(thread_id=thread_id, history=batch(0, 0))
    await stub.Create(request, timeout=DEADLINE)
    append = pb.AppendRequest(thread_id=thread_id, entries=batch(0, 1), expected_length=BATCH)
    copy = pb.CopyRequest(thread_id=thread_id, request_id="rt-1", metadata=struct(n=1))
    with pause:
        error = await expect_error(
            stub.Append(append, timeout=DEADLINE),
            grpc.StatusCode.UNAVAILABLE,
            "REPLICATION_TIMEOUT",
        )
        message = error.details() or ""
        assert "may or may not survive a failover" in message
        assert "expected_length" in message and "request_id" in message
        await expect_error(
            stub.Copy(copy, timeout=DEADLINE), grpc.StatusCode.UNAVAILABLE, "REPLICATION_TIMEOUT"
        )
    # The retries: the Append was applied (ABORTED names one more batch), the Copy too
    # (the same copy comes back), and nothing is there twice.
    error = await expect_error(
        stub.Append(append, timeout=DEADLINE),
        grpc.StatusCode.ABORTED,
        "HISTORY_LENGTH_MISMATCH",
    )
    assert "has 10 entries" in (error.details() or "")
    first = (await stub.Copy(copy, timeout=DEADLINE)).thread
    again = (await stub.Copy(copy, timeout=DEADLINE)).thread
    assert first == again and first.history_length == 2 * BATCH
    got = await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread_id), timeout=DEADLINE)
    assert [dict(e.data) for e in got.entries] == [
        {"w": 0, "b": b, "k": k} for b in range(2) for k in range(BATCH)
    ]
    # Acknowledged (the replica confirmed it) once the replica is back.
    next_batch = pb.AppendRequest(
        thread_id=thread_id, entries=batch(0, 2), expected_length=2 * BATCH
    )
    assert (await stub.Append(next_batch, timeout=DEADLINE)).history_length == 3 * BATCH


async def test_replication_timeout_on_one_redis_and_its_retry_is_safe(
    primary_and_replica: tuple[RedisProcess, RedisProcess], start_server: StartServer
) -> None:
    primary, replica = primary_and_replica
    await _wait_synced(primary)
    settings = settings_for_test(min_replica_acks=1, replica_ack_timeout_ms=ACK_TIMEOUT_MS)
    app = await start_server(settings, primary.url)
    await app.wait_health(SERVING)
    await _retry_after_replication_timeout_is_safe(app, _Paused(replica), new_thread_id())


async def test_two_acks_with_one_replica_always_time_out(
    primary_and_replica: tuple[RedisProcess, RedisProcess], start_server: StartServer
) -> None:
    """WAIT's count is checked: a write one replica confirmed is not enough for 2."""
    primary, _ = primary_and_replica
    await _wait_synced(primary)
    settings = settings_for_test(min_replica_acks=2, replica_ack_timeout_ms=100)
    app = await start_server(settings, primary.url)
    await app.wait_health(SERVING)
    error = await expect_error(
        app.stub.Create(pb.CreateRequest(), timeout=DEADLINE),
        grpc.StatusCode.UNAVAILABLE,
        "REPLICATION_TIMEOUT",
    )
    assert "of 2 replica(s) confirmed it" in (error.details() or "")


# --- Cluster ---------------------------------------------------------------------------


@pytest.fixture
async def cluster_app(ha_cluster: RedisCluster, start_server: StartServer) -> Started:
    await asyncio.to_thread(ha_cluster.wait_ok)
    settings = settings_for_test(
        redis_cluster=True, min_replica_acks=1, replica_ack_timeout_ms=ACK_TIMEOUT_MS
    )
    app = await start_server(settings, f"redis://127.0.0.1:{ha_cluster.live()[0].port}")
    await app.wait_health(SERVING)
    return app


async def test_cluster_wait_goes_to_the_node_that_ran_the_script(
    ha_cluster: RedisCluster, cluster_app: Started
) -> None:
    """Only the primary whose replica is paused times out: WAIT was not sent anywhere
    else (another node, or another connection, would have nothing to wait for)."""
    primaries = ha_cluster.primaries()
    slow = primaries[1]
    [paused] = ha_cluster.replicas_of(slow)
    ids = thread_ids_over_primaries(ha_cluster, 2)
    on_slow = [t for t in ids if _port_of(ha_cluster, t) == slow]
    others = [t for t in ids if t not in on_slow]
    assert len(on_slow) == 2 and len(others) == 4
    stub = cluster_app.stub
    with _Paused(ha_cluster.node(paused)):
        for thread_id in others:
            request = pb.CreateRequest(thread_id=thread_id, history=batch(0, 0))
            await stub.Create(request, timeout=DEADLINE)
        for thread_id in on_slow:
            await expect_error(
                stub.Create(pb.CreateRequest(thread_id=thread_id), timeout=DEADLINE),
                grpc.StatusCode.UNAVAILABLE,
                "REPLICATION_TIMEOUT",
            )
    # The retries are safe on a cluster too (a new thread on the same primary).
    [thread_id] = [
        t
        for t in thread_ids_over_primaries(ha_cluster, 1)
        if t not in ids and _port_of(ha_cluster, t) == slow
    ]
    await _retry_after_replication_timeout_is_safe(
        cluster_app, _Paused(ha_cluster.node(paused)), thread_id
    )


def _port_of(cluster: RedisCluster, thread_id: str) -> int:
    """The port of the primary serving the thread's slot."""
    slot = key_slot(ThreadKeys(thread_id).meta.encode())
    for line in cluster.redis_cli(cluster.live()[0].port, "CLUSTER", "NODES").splitlines():
        parts = line.split()
        flags = parts[2].split(",")
        if "master" in flags and "fail" not in flags and _serves(parts[8:], slot):
            return int(parts[1].split("@")[0].rsplit(":", 1)[1])
    raise AssertionError(f"no primary serves slot {slot}")


def _serves(ranges: list[str], slot: int) -> bool:
    for part in ranges:
        if part.startswith("["):
            continue
        low, _, high = part.partition("-")
        if int(low) <= slot <= int(high or low):
            return True
    return False


async def test_cluster_write_and_wait_follow_moved_after_a_manual_failover(
    ha_cluster: RedisCluster, cluster_app: Started
) -> None:
    """CLUSTER FAILOVER swaps a primary and its replica with no connection lost: the
    service's next write to that slot meets MOVED, follows it, and WAITs on the new primary."""
    stub = cluster_app.stub
    old = ha_cluster.primaries()[0]
    [replica] = ha_cluster.replicas_of(old)
    ids = thread_ids_over_primaries(ha_cluster, 1)
    [thread_id] = [t for t in ids if _port_of(ha_cluster, t) == old]
    await stub.Create(pb.CreateRequest(thread_id=thread_id, history=batch(0, 0)), timeout=DEADLINE)
    ha_cluster.redis_cli(replica, "CLUSTER", "FAILOVER")

    def swapped() -> bool:
        ha_cluster.wait_ok()
        return ha_cluster.replicas_of(replica) == [old]

    for _ in range(300):
        if await asyncio.to_thread(swapped):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the manual failover did not happen")
    request = pb.AppendRequest(thread_id=thread_id, entries=batch(0, 1), expected_length=BATCH)
    assert (await stub.Append(request, timeout=DEADLINE)).history_length == 2 * BATCH
    copy_request = pb.CopyRequest(thread_id=thread_id, request_id="m-1")
    copied = await stub.Copy(copy_request, timeout=DEADLINE)
    assert copied.thread.history_length == 2 * BATCH
    client: Any = aioredis.Redis(host="127.0.0.1", port=replica)
    try:
        assert await client.llen(ThreadKeys(thread_id).history) == 2 * BATCH
        assert await client.exists(ThreadKeys(copied.thread.thread_id).meta) == 1
    finally:
        await client.aclose()


async def test_cluster_write_follows_ask_to_a_slot_being_migrated(
    ha_cluster: RedisCluster, cluster_app: Started
) -> None:
    """A thread whose keys were already MIGRATEd from A to B while its slot is moving:
    A answers ASK, and the service sends ASKING, the script and WAIT to B on one
    connection. (A multi-key script meets TRYAGAIN on B until all its keys are there,
    hence a thread that exists, rather than a new one.)"""
    source, target = ha_cluster.primaries()[:2]
    ids = {port: _node_id(ha_cluster, port) for port in (source, target)}
    [thread_id] = [
        t for t in thread_ids_over_primaries(ha_cluster, 1) if _port_of(ha_cluster, t) == source
    ]
    keys = ThreadKeys(thread_id)
    slot = str(key_slot(keys.meta.encode()))
    stub = cluster_app.stub
    await stub.Create(pb.CreateRequest(thread_id=thread_id, history=batch(0, 0)), timeout=DEADLINE)
    ha_cluster.redis_cli(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    ha_cluster.redis_cli(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    try:
        # Every key of the slot: the thread's and its shard's search index (same slot).
        in_slot = ha_cluster.redis_cli(source, "CLUSTER", "GETKEYSINSLOT", slot, "1000").split()
        assert keys.meta in in_slot and keys.history in in_slot
        ha_cluster.redis_cli(
            source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *in_slot
        )
        request = pb.AppendRequest(thread_id=thread_id, entries=batch(0, 1), expected_length=BATCH)
        assert (await stub.Append(request, timeout=DEADLINE)).history_length == 2 * BATCH
        assert ha_cluster.redis_cli(source, "CLUSTER", "COUNTKEYSINSLOT", slot).strip() == "0"
    finally:
        # Finish the migration: the slot (and the thread) now belong to the target.
        for port in ha_cluster.primaries():
            ha_cluster.redis_cli(port, "CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        await asyncio.to_thread(ha_cluster.wait_ok)
    client: Any = aioredis.Redis(host="127.0.0.1", port=target)
    try:
        assert await client.llen(keys.history) == 2 * BATCH
    finally:
        await client.aclose()


def _node_id(cluster: RedisCluster, port: int) -> str:
    return cluster.redis_cli(port, "CLUSTER", "MYID").strip()


# --- A primary SIGKILLed under load ------------------------------------------------------


def _report(name: str, outcome: Outcome) -> None:
    for kill in outcome.kills:
        print(
            f"\n{name}: killed {kill.what}: failover seen after "
            f"{kill.failover_seen - kill.at:.2f}s, old node back as replica after "
            f"{kill.seconds(kill.restored)}, every writer acked again after "
            f"{kill.recovered - kill.at:.2f}s, last failure at "
            f"{kill.seconds(kill.last_failure or None)}, health NOT_SERVING at "
            f"{kill.seconds(kill.not_serving)}, SERVING again at "
            f"{kill.seconds(kill.serving_again)}"
        )
    print(
        f"{name}: {outcome.acked_appends} batches and {outcome.acked_copies} copies acked; "
        f"lost {outcome.lost_appends} batches, {outcome.lost_copies} copies; failures "
        f"{dict(outcome.failures)}"
    )


def _assert_failover_kept_everything(outcome: Outcome) -> None:
    assert outcome.problems == [], outcome.problems
    codes = {failure.split()[0] for failure in outcome.failures}
    assert codes <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, outcome.failures
    assert outcome.failures, "no call met the failover"
    # Acknowledged means replicated: the promoted replica had every acknowledged write.
    assert (outcome.lost_appends, outcome.lost_copies) == (0, 0)
    assert outcome.acked_copies > 0
    for kill in outcome.kills:
        assert kill.not_serving is not None, "health never said NOT_SERVING"
        assert kill.serving_again is not None, "health never said SERVING again"


async def _scripts_on(port: int) -> list[bool]:
    client: Any = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        shas = [script.sha for script in all_scripts().values()]
        return list(await client.script_exists(*shas))
    finally:
        await client.aclose()


async def _run_failover(app: Started, topology: Topology, thread_ids: list[str]) -> Outcome:
    for thread_id in thread_ids:
        await app.stub.Create(pb.CreateRequest(thread_id=thread_id), timeout=DEADLINE)
    load = FailoverLoad(f"127.0.0.1:{app.server.port}", thread_ids, tag="test")
    await load.run(topology, kills=1, acks_between=40, restore_after_last=True)
    # Health is SERVING at the end too, and the service was never restarted.
    await app.wait_health(SERVING)
    return await load.check_store(await asyncio.to_thread(topology.primaries))


async def test_cluster_primary_sigkill_under_load_loses_no_acknowledged_write(
    ha_cluster: RedisCluster, cluster_app: Started
) -> None:
    topology = ClusterTopology(ha_cluster)
    outcome = await _run_failover(cluster_app, topology, thread_ids_over_primaries(ha_cluster, 2))
    _report("cluster, --min-replica-acks 1", outcome)
    _assert_failover_kept_everything(outcome)
    assert topology.promoted is not None
    assert await _scripts_on(topology.promoted) == [True] * len(script_names())


async def test_sentinel_primary_sigkill_under_load_loses_no_acknowledged_write(
    ha_sentinel: RedisSentinel, start_server: StartServer
) -> None:
    settings = settings_for_test(
        redis_sentinel=tuple(("127.0.0.1", s.port) for s in ha_sentinel.sentinels),
        redis_sentinel_master=MASTER_NAME,
        min_replica_acks=1,
        replica_ack_timeout_ms=ACK_TIMEOUT_MS,
    )
    app = await start_server(settings, None)
    await app.wait_health(SERVING)
    topology = SentinelTopology(ha_sentinel)
    outcome = await _run_failover(app, topology, thread_ids_over_primaries(None, 6))
    _report("sentinel, --min-replica-acks 1", outcome)
    _assert_failover_kept_everything(outcome)
    new_primary = await asyncio.to_thread(ha_sentinel.primary)
    assert new_primary != topology.killed
    assert await _scripts_on(new_primary) == [True] * len(script_names())


async def test_sentinel_with_passwords_on_the_sentinels_and_the_primary(
    tmp_path: Path, start_server: StartServer
) -> None:
    """--redis-sentinel-password reaches the sentinels, --redis-password the primary they
    name; without the latter the service cannot use the primary (NOT_SERVING)."""
    binaries = sentinel_binaries()
    if binaries is None:
        _missing("redis-server, redis-cli and redis-sentinel")
    assert binaries is not None
    setup = RedisSentinel(
        *binaries, tmp_path / "auth", password="data-pw-1", sentinel_password="sentinel-pw-1"
    )
    await asyncio.to_thread(setup.start)
    try:
        addresses = tuple(("127.0.0.1", s.port) for s in setup.sentinels)
        common: dict[str, Any] = {
            "redis_sentinel": addresses,
            "redis_sentinel_master": MASTER_NAME,
            "redis_sentinel_password": "sentinel-pw-1",
        }
        app = await start_server(settings_for_test(**common, redis_password="data-pw-1"), None)
        await app.wait_health(SERVING)
        created = await app.stub.Create(pb.CreateRequest(history=batch(0, 0)), timeout=DEADLINE)
        got = await app.stub.Get(pb.GetRequest(thread_id=created.thread.thread_id))
        assert got.thread.history_length == BATCH

        locked_out = await start_server(settings_for_test(**common), None)
        await expect_error(
            locked_out.stub.Get(pb.GetRequest(thread_id=created.thread.thread_id)),
            grpc.StatusCode.UNAVAILABLE,
            "STORE_UNAVAILABLE",
        )
        await asyncio.sleep(0.5)  # several health checks (every 0.1 s) have run: still down
        assert await locked_out.health_of("") == NOT_SERVING
    finally:
        await asyncio.to_thread(setup.stop)


async def test_a_retry_that_vouches_for_an_unreplicated_write_waits_for_it_too(
    primary_and_replica: tuple[RedisProcess, RedisProcess], start_server: StartServer
) -> None:
    """An ABORTED that says "your batch is in", or a request_id's earlier copy, is an
    acknowledgement: it waits for that write's replication like the write itself. A second
    server (its connections never wrote, so a bare WAIT there has nothing to wait for)
    answers the retries while the replica is paused. (Redis 7.0 would pass without the
    fence, its WAIT counting from any command; Valkey's counts from the client's own last
    write, so there this fails without it.)"""
    primary, replica = primary_and_replica
    await _wait_synced(primary)
    settings = settings_for_test(min_replica_acks=1, replica_ack_timeout_ms=ACK_TIMEOUT_MS)
    first = await start_server(settings, primary.url)
    second = await start_server(settings, primary.url)
    await first.wait_health(SERVING)
    await second.wait_health(SERVING)
    created = await first.stub.Create(pb.CreateRequest(history=batch(0, 0)), timeout=DEADLINE)
    thread_id = created.thread.thread_id
    append = pb.AppendRequest(thread_id=thread_id, entries=batch(0, 1), expected_length=BATCH)
    copy = pb.CopyRequest(thread_id=thread_id, request_id="vouch-1")
    with _Paused(replica):
        for app in (first, second):  # the writes, then their retries elsewhere
            # One after the other (a gRPC call starts when it is made).
            await expect_error(
                app.stub.Append(append), grpc.StatusCode.UNAVAILABLE, "REPLICATION_TIMEOUT"
            )
            await expect_error(
                app.stub.Copy(copy), grpc.StatusCode.UNAVAILABLE, "REPLICATION_TIMEOUT"
            )
    await expect_error(
        second.stub.Append(append), grpc.StatusCode.ABORTED, "HISTORY_LENGTH_MISMATCH"
    )
    again = (await second.stub.Copy(copy, timeout=DEADLINE)).thread
    assert again.history_length == 2 * BATCH


async def test_scripts_missing_on_the_primary_are_loaded_by_a_replicated_write(
    primary_and_replica: tuple[RedisProcess, RedisProcess], start_server: StartServer
) -> None:
    """NOSCRIPT (a restarted or newly promoted primary) in the write-then-WAIT pipeline:
    the script did not run, so it is loaded and sent again, once."""
    primary, _ = primary_and_replica
    await _wait_synced(primary)
    settings = settings_for_test(min_replica_acks=1, replica_ack_timeout_ms=ACK_TIMEOUT_MS)
    app = await start_server(settings, primary.url)
    await app.wait_health(SERVING)
    created = await app.stub.Create(pb.CreateRequest(history=batch(0, 0)), timeout=DEADLINE)
    client: Any = aioredis.from_url(primary.url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    request = pb.AppendRequest(
        thread_id=created.thread.thread_id, entries=batch(0, 1), expected_length=BATCH
    )
    assert (await app.stub.Append(request, timeout=DEADLINE)).history_length == 2 * BATCH


async def test_cluster_scripts_missing_on_a_primary_are_loaded_by_a_replicated_write(
    ha_cluster: RedisCluster, cluster_app: Started
) -> None:
    ids = thread_ids_over_primaries(ha_cluster, 1)
    for thread_id in ids:
        request = pb.CreateRequest(thread_id=thread_id, history=batch(0, 0))
        await cluster_app.stub.Create(request, timeout=DEADLINE)
    for port in ha_cluster.primaries():
        ha_cluster.redis_cli(port, "SCRIPT", "FLUSH")
    for thread_id in ids:
        append = pb.AppendRequest(thread_id=thread_id, entries=batch(0, 1), expected_length=BATCH)
        assert (await cluster_app.stub.Append(append, timeout=DEADLINE)).history_length == 10
    await cluster_app.server.store.prepare()  # the other scripts, for the tests after


async def test_sentinel_over_tls(tmp_path: Path, start_server: StartServer) -> None:
    """--redis-tls with --redis-tls-ca-file: the sentinels and the primary they name are
    reached over TLS (both listen on TLS only); without --redis-tls nothing answers."""
    binaries = sentinel_binaries()
    if binaries is None:
        _missing("redis-server, redis-cli and redis-sentinel")
    assert binaries is not None
    certs = tls_certs.generate(tmp_path)
    files = TLSFiles(cert=certs.server.cert, key=certs.server.key, ca=certs.ca)
    setup = RedisSentinel(*binaries, tmp_path / "tls", tls=files)
    await asyncio.to_thread(setup.start)
    try:
        common: dict[str, Any] = {
            "redis_sentinel": tuple(("127.0.0.1", s.port) for s in setup.sentinels),
            "redis_sentinel_master": MASTER_NAME,
        }
        settings = settings_for_test(**common, redis_tls=True, redis_tls_ca_file=certs.ca)
        app = await start_server(settings, None)
        await app.wait_health(SERVING)
        created = await app.stub.Create(pb.CreateRequest(history=batch(0, 0)), timeout=DEADLINE)
        got = await app.stub.Get(pb.GetRequest(thread_id=created.thread.thread_id))
        assert got.thread.history_length == BATCH

        plaintext = await start_server(settings_for_test(**common, redis_timeout_seconds=1.0), None)
        with pytest.raises(aio.AioRpcError) as failed:
            # Bounded: a plaintext client talking to TLS ports may wait for its timeouts.
            await plaintext.stub.Get(pb.GetRequest(thread_id=got.thread.thread_id), timeout=3)
        assert failed.value.code() in RETRYABLE_CODES, failed.value
        assert await plaintext.health_of("") == NOT_SERVING
    finally:
        await asyncio.to_thread(setup.stop)
