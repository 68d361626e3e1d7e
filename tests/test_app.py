"""ThreadsServer under faults, in-process against real Redis/Valkey processes.

The outage and slow-Redis tests each get their own RedisProcess (stopping or pausing the
shared session server would disturb other tests) and their own ThreadsServer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import (
    HEALTH_NAMES,
    NOT_SERVING,
    POLL_BOUND,
    SERVING,
    StartServer,
)
from tests.inprocess_server import eventually as _eventually
from tests.redis_process import RedisProcess
from tests.rpc_helpers import entry, error_reason, expect_error, struct
from threads_server.server import ThreadsServer
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

# --- (a) Redis outage and recovery ---------------------------------------------------


async def test_redis_outage_fails_fast_then_recovers_without_server_restart(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(), own_redis.url)
    await app.wait_health(SERVING)
    stub = app.stub

    history = [entry(role="user", text="hi"), entry(role="assistant", text="hello")]
    created = (
        await stub.Create(
            pb.CreateRequest(metadata=struct(title="outage"), history=history), timeout=5
        )
    ).thread
    thread_id = created.thread_id
    copy = (
        await stub.Copy(pb.CopyRequest(thread_id=thread_id, request_id="before-outage"), timeout=5)
    ).thread
    before = (await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread_id), timeout=5)).entries
    assert len(before) == 2

    await asyncio.to_thread(own_redis.stop)

    # Several rounds, so that both a pooled connection Redis closed and a fresh connect
    # (refused) are exercised. Each must be UNAVAILABLE, not a hang until the deadline.
    for round_ in range(3):
        calls: list[Awaitable[Any]] = [
            stub.Get(pb.GetRequest(thread_id=thread_id), timeout=5),
            stub.Append(
                pb.AppendRequest(thread_id=thread_id, entries=[entry(n=round_)]), timeout=5
            ),
            stub.Copy(pb.CopyRequest(thread_id=thread_id), timeout=5),
            stub.Create(pb.CreateRequest(), timeout=5),
            stub.GetHistory(pb.GetHistoryRequest(thread_id=thread_id), timeout=5),
        ]
        for call in calls:
            error = await expect_error(call, grpc.StatusCode.UNAVAILABLE)
            assert error_reason(error) == "STORE_UNAVAILABLE"

    await app.wait_health(NOT_SERVING)

    await asyncio.to_thread(own_redis.start)  # same port, same AOF directory
    await app.wait_health(SERVING)

    # Once SERVING again, RPCs succeed on the first try and nothing was lost or added.
    got = (await stub.Get(pb.GetRequest(thread_id=thread_id), timeout=5)).thread
    assert got == created
    after = (await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread_id), timeout=5)).entries
    assert list(after) == list(before)
    assert (await stub.Get(pb.GetRequest(thread_id=copy.thread_id), timeout=5)).thread == copy
    # A retried Copy with the same request_id still finds the earlier copy after the restart.
    again = await stub.Copy(
        pb.CopyRequest(thread_id=thread_id, request_id="before-outage"), timeout=5
    )
    assert again.thread.thread_id == copy.thread_id

    appended = await stub.Append(
        pb.AppendRequest(thread_id=thread_id, entries=[entry(text="after")], expected_length=2),
        timeout=5,
    )
    assert appended.history_length == 3
    new_copy = (await stub.Copy(pb.CopyRequest(thread_id=thread_id), timeout=5)).thread
    assert new_copy.history_length == 3
    assert new_copy.copied_from == thread_id


async def test_quick_redis_restart_between_health_checks_is_transparent(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    """Redis restarts before the health loop notices: idle pooled connections are dead and
    the scripts are gone from Redis, yet the next RPCs succeed on the first try."""
    app = await start_server(settings_for_test(health_interval_seconds=3600), own_redis.url)
    await app.wait_health(SERVING)
    stub = app.stub
    thread = (await stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=5)).thread
    # Grow the pool: concurrent calls each take a connection.
    await asyncio.gather(
        *[stub.Get(pb.GetRequest(thread_id=thread.thread_id), timeout=5) for _ in range(8)]
    )

    await asyncio.to_thread(own_redis.stop)
    await asyncio.to_thread(own_redis.start)

    replies = await asyncio.gather(
        *[stub.Get(pb.GetRequest(thread_id=thread.thread_id), timeout=5) for _ in range(8)]
    )
    assert all(reply.thread == thread for reply in replies)
    appended = await stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=[entry(i=1)]), timeout=5
    )
    assert appended.history_length == 2
    assert await app.health_of("") == SERVING


async def test_redis_killed_is_unavailable_and_health_follows(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    """SIGKILL (no clean shutdown): same outcome as a stop; health recovers on restart."""
    app = await start_server(settings_for_test(), own_redis.url)
    await app.wait_health(SERVING)
    thread = (await app.stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=5)).thread

    await asyncio.to_thread(own_redis.kill)
    # Concurrent calls take every pooled connection, so none is left stale for after the
    # restart (see test_quick_redis_restart_between_health_checks_is_transparent).
    for _ in range(2):
        calls = [
            app.stub.Get(pb.GetRequest(thread_id=thread.thread_id), timeout=5) for _ in range(5)
        ]
        for call in calls:
            error = await expect_error(call, grpc.StatusCode.UNAVAILABLE)
            assert error_reason(error) == "STORE_UNAVAILABLE"
    await app.wait_health(NOT_SERVING)

    await asyncio.to_thread(own_redis.start)
    await app.wait_health(SERVING)
    response = await app.stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=[entry(i=1)]), timeout=5
    )
    # An acknowledged write is in the AOF file (if not yet fsynced), so it survives the
    # process dying: the thread is whole and appendable.
    assert response.history_length == 2


async def test_hung_redis_is_unavailable_within_redis_timeout_and_health_follows(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    """A frozen Redis (SIGSTOP: connections accepted, never answered), not a refused one."""
    app = await start_server(settings_for_test(redis_timeout_seconds=0.5), own_redis.url)
    await app.wait_health(SERVING)
    thread = (await app.stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=5)).thread
    assert own_redis.process is not None
    pid = own_redis.process.pid

    os.kill(pid, signal.SIGSTOP)
    try:
        # The 20 s deadline only guards the test: the server answers after its 0.5 s bound.
        error = await expect_error(
            app.stub.Get(pb.GetRequest(thread_id=thread.thread_id), timeout=20),
            grpc.StatusCode.UNAVAILABLE,
        )
        assert error_reason(error) == "STORE_UNAVAILABLE"
        await app.wait_health(NOT_SERVING)
    finally:
        os.kill(pid, signal.SIGCONT)

    await app.wait_health(SERVING)
    got = (await app.stub.Get(pb.GetRequest(thread_id=thread.thread_id), timeout=5)).thread
    assert got == thread


async def test_health_is_not_serving_until_redis_is_reachable(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    """A server started while Redis is down comes up NOT_SERVING, then turns SERVING."""
    await asyncio.to_thread(own_redis.stop)
    app = await start_server(settings_for_test(), own_redis.url)
    # Give the watcher a few rounds; it must not claim SERVING without Redis.
    for _ in range(5):
        assert [await app.health_of(name) for name in HEALTH_NAMES] == [NOT_SERVING] * 2
        await asyncio.sleep(0.1)
    error = await expect_error(
        app.stub.Create(pb.CreateRequest(), timeout=5), grpc.StatusCode.UNAVAILABLE
    )
    assert error_reason(error) == "STORE_UNAVAILABLE"

    await asyncio.to_thread(own_redis.start)
    await app.wait_health(SERVING)
    created = await app.stub.Create(pb.CreateRequest(history=[entry(a=1)]), timeout=5)
    assert created.thread.history_length == 1


async def test_stop_right_after_start_returns(redis_server: RedisProcess) -> None:
    """A stop that lands while the health watcher's first PING is in flight still returns.

    (redis-py may turn that cancellation into an error the watcher used to take for an
    outage, looping forever: a worker told to stop during start-up never exited.)
    """
    for _ in range(20):
        server = ThreadsServer(settings_for_test(), redis_server.url)
        await server.start()
        await asyncio.wait_for(server.stop(grace=0), POLL_BOUND)


async def test_redis_over_maxmemory_is_resource_exhausted_and_writes_nothing(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(), own_redis.url)
    await app.wait_health(SERVING)
    source = (await app.stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=5)).thread
    raw: Any = aioredis.from_url(own_redis.url)
    try:
        keys_before = sorted(await raw.keys("*"))
        await raw.config_set("maxmemory-policy", "noeviction")
        await raw.config_set("maxmemory", 1)
        writes: list[Awaitable[Any]] = [
            app.stub.Create(pb.CreateRequest(history=[entry(i=1)]), timeout=5),
            app.stub.Append(
                pb.AppendRequest(thread_id=source.thread_id, entries=[entry(i=1)]), timeout=5
            ),
            app.stub.Copy(pb.CopyRequest(thread_id=source.thread_id, request_id="r"), timeout=5),
        ]
        for call in writes:
            error = await expect_error(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert error_reason(error) == "STORE_OUT_OF_MEMORY"
        # Reads still work, and not one key was added or changed.
        got = await app.stub.Get(pb.GetRequest(thread_id=source.thread_id), timeout=5)
        assert got.thread == source
        assert sorted(await raw.keys("*")) == keys_before
    finally:
        await raw.config_set("maxmemory", 0)
        await raw.aclose()


# --- (b) slow Redis: deadlines --------------------------------------------------------


async def _blocked_threads_service_clients(raw: Any) -> list[dict[str, Any]]:
    """Connections named 'threads' (the server's) blocked in Redis, e.g. by CLIENT PAUSE."""
    return [
        c
        for c in await raw.client_list()
        if c.get("name") == "threads" and "b" in c.get("flags", "")
    ]


@pytest.fixture
async def raw_client(own_redis: RedisProcess) -> AsyncIterator[Any]:
    client: Any = aioredis.from_url(own_redis.url, socket_timeout=10)
    yield client
    with contextlib.suppress(Exception):
        await client.execute_command("CLIENT", "UNPAUSE")
    await client.aclose()


def _handled(labels: dict[str, str]) -> float:
    """grpc_server_handled_total of this process (in-process servers use its registry)."""
    found = REGISTRY.get_sample_value("grpc_server_handled_total", labels)
    return found or 0.0


async def _history_data(
    stub: pb_grpc.ThreadServiceAsyncStub, thread_id: str
) -> list[dict[str, Any]]:
    response = await stub.GetHistory(
        pb.GetHistoryRequest(thread_id=thread_id, page_size=1000), timeout=5
    )
    assert response.next_page_token == ""
    return [dict(entry.data) for entry in response.entries]


async def test_caller_deadline_shorter_than_a_slow_redis_is_respected(
    own_redis: RedisProcess,
    raw_client: Any,
    start_server: StartServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="threads.rpc")
    deadline_count = {
        "grpc_type": "unary",
        "grpc_service": "threads.v1.ThreadService",
        "grpc_method": "Append",
        "grpc_code": "DeadlineExceeded",
    }
    counted_before = _handled(deadline_count)
    app = await start_server(settings_for_test(), own_redis.url)
    await app.wait_health(SERVING)
    stub = app.stub
    thread_id = (
        await stub.Create(pb.CreateRequest(history=[entry(i=0.0)]), timeout=5)
    ).thread.thread_id

    # Writes (and scripts) wait while paused; a long pause, ended explicitly below, so the
    # outcome never depends on how quickly this test runs.
    await raw_client.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    await expect_error(
        stub.Append(pb.AppendRequest(thread_id=thread_id, entries=[entry(i=1.0)]), timeout=0.5),
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )

    # The server gave up on Redis too: its blocked connection is dropped while the pause
    # still holds, rather than waiting for Redis (up to the 5 s redis timeout, or the pause).
    async def abandoned() -> bool:
        return not await _blocked_threads_service_clients(raw_client)

    await _eventually(abandoned, "the server dropped the Redis call of the expired RPC")

    # gRPC cancelled the handler at the deadline (no timer of ours): still logged and
    # counted as DEADLINE_EXCEEDED, not as a caller that went away.
    async def logged() -> bool:
        lines = [r.getMessage() for r in caplog.records if r.name == "threads.rpc"]
        return any(line.startswith("rpc=Append code=DEADLINE_EXCEEDED") for line in lines)

    await _eventually(logged, "the expired Append's log line")
    assert _handled(deadline_count) == counted_before + 1
    await raw_client.execute_command("CLIENT", "UNPAUSE")

    # Unchanged, or appended exactly once; never partial or twice.
    data = await _history_data(stub, thread_id)
    assert data in ([{"i": 0.0}], [{"i": 0.0}, {"i": 1.0}]), data
    length = len(data)

    # The connection pool was not left with a stray reply: later calls get their own.
    got = (await stub.Get(pb.GetRequest(thread_id=thread_id), timeout=5)).thread
    assert got.thread_id == thread_id
    assert got.history_length == length
    appended = await stub.Append(
        pb.AppendRequest(thread_id=thread_id, entries=[entry(i=2.0)], expected_length=length),
        timeout=5,
    )
    assert appended.history_length == length + 1
    assert (await _history_data(stub, thread_id))[-1] == {"i": 2.0}


async def test_redis_timeout_bounds_a_call_without_caller_deadline(
    own_redis: RedisProcess, raw_client: Any, start_server: StartServer
) -> None:
    """No caller deadline: redis_timeout_seconds bounds the Redis call (UNAVAILABLE)."""
    app = await start_server(settings_for_test(redis_timeout_seconds=0.5), own_redis.url)
    await app.wait_health(SERVING)
    stub = app.stub
    thread_id = (
        await stub.Create(pb.CreateRequest(history=[entry(i=0.0)]), timeout=5)
    ).thread.thread_id

    await raw_client.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    # The 20 s client timeout only guards the test; the server must answer long before.
    error = await expect_error(
        stub.Append(pb.AppendRequest(thread_id=thread_id, entries=[entry(i=1.0)]), timeout=20),
        grpc.StatusCode.UNAVAILABLE,
    )
    assert error_reason(error) == "STORE_UNAVAILABLE"
    # Health pings are not writes, so a write pause leaves the server SERVING.
    assert await app.health_of("") == SERVING
    await raw_client.execute_command("CLIENT", "UNPAUSE")

    data = await _history_data(stub, thread_id)
    assert data in ([{"i": 0.0}], [{"i": 0.0}, {"i": 1.0}]), data


# --- (d) message size limits ----------------------------------------------------------

KIB = 1024


def _kib_entries(count: int) -> list[pb.Entry]:
    return [entry(n=float(i), text="x" * KIB) for i in range(count)]


async def test_request_over_max_message_bytes_is_resource_exhausted(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(max_message_bytes=64 * KIB), redis_server.url)
    await app.wait_health(SERVING)
    thread_id = (await app.stub.Create(pb.CreateRequest(), timeout=5)).thread.thread_id

    request = pb.AppendRequest(thread_id=thread_id, entries=_kib_entries(100))
    assert request.ByteSize() > 64 * KIB
    await expect_error(app.stub.Append(request, timeout=5), grpc.StatusCode.RESOURCE_EXHAUSTED)

    # Nothing was appended, and a request under the limit still works on the same channel.
    assert (
        await app.stub.Get(pb.GetRequest(thread_id=thread_id), timeout=5)
    ).thread.history_length == 0
    small = pb.AppendRequest(thread_id=thread_id, entries=_kib_entries(30))
    assert small.ByteSize() < 64 * KIB
    assert (await app.stub.Append(small, timeout=5)).history_length == 30


async def test_a_history_page_fits_in_max_message_bytes_and_the_token_pages_on(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    """200 entries of 1 KiB asked for in one page of 1,000 are past a 64 KiB limit: the
    server sends the entries that fit and a token for the rest (AIP-158 lets a page be
    short), not a reply the caller's client refuses at every page size it may ask for."""
    limit = 64 * KIB
    app = await start_server(settings_for_test(max_message_bytes=limit), redis_server.url)
    thread_id = (await app.stub.Create(pb.CreateRequest(), timeout=5)).thread.thread_id
    for _ in range(4):
        request = pb.AppendRequest(thread_id=thread_id, entries=_kib_entries(50))
        await app.stub.Append(request, timeout=5)

    pages: list[pb.GetHistoryResponse] = []
    token = ""
    while not pages or token:
        ask = pb.GetHistoryRequest(thread_id=thread_id, page_size=1000, page_token=token)
        pages.append(await app.stub.GetHistory(ask, timeout=5))
        token = pages[-1].next_page_token
    got = [entry for page in pages for entry in page.entries]
    assert all(page.ByteSize() <= limit for page in pages)
    assert len(pages) == 4  # 200 KiB in pages of at most 64 KiB
    assert [e.index for e in got] == list(range(200))
    assert [e.data["n"] for e in got] == [float(i % 50) for i in range(200)]


@pytest.mark.parametrize("count", [1000, 5000])
async def test_default_settings_accept_large_appends(
    stub: pb_grpc.ThreadServiceAsyncStub, count: int
) -> None:
    """1,000 x 1 KiB in one request; 5,000 x 1 KiB is past gRPC's own 4 MiB default."""
    thread_id = (await stub.Create(pb.CreateRequest(), timeout=5)).thread.thread_id
    request = pb.AppendRequest(thread_id=thread_id, entries=_kib_entries(count))
    assert request.ByteSize() > count * KIB
    response = await stub.Append(request, timeout=30)
    assert response.history_length == count

    page = await stub.GetHistory(
        pb.GetHistoryRequest(thread_id=thread_id, page_size=1000), timeout=30
    )
    assert len(page.entries) == 1000
    assert [e.index for e in page.entries] == list(range(1000))
    assert dict(page.entries[999].data) == {"n": 999.0, "text": "x" * KIB}
