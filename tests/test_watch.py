"""Watch against one real Redis 7 or Valkey (the suite's backends): exact order under
concurrent appenders, replay from any index, progress, the end of a thread, every error at
the start, the caps on a message, shared reads and subscriptions, and the client's resume
across a SIGKILL of Redis and a SIGTERM of the server. (HTTP/SSE: test_watch_http.py;
the cluster and Sentinel: test_watch_ha.py.)"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio
from prometheus_client import REGISTRY

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import Started, StartServer, eventually
from tests.redis_process import RedisProcess
from tests.rpc_helpers import entries, error_reason, expect_error, history
from tests.server_process import Spawn
from tests.test_auth import SECRET, token
from tests.test_faults import redis_always  # noqa: F401  (a fixture)
from tests.watch_helpers import (
    STREAM_BOUND,
    appenders_against_watchers,
    check_consecutive,
    read_until,
    resume_across,
)
from threads_server.ops import metrics
from threads_server.store.corridor import subscriptions
from threads_server.store.keys import ThreadKeys
from threads_service_client import NotFoundError, RetryPolicy, get_client, get_sync_client
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub


async def _create(stub: Stub, n: int = 0, **extra: Any) -> pb.Thread:
    history_ = entries(*({"i": i} for i in range(n)))
    return (await stub.Create(pb.CreateRequest(history=history_, **extra))).thread


async def _first(call: Any) -> pb.WatchResponse:
    message: pb.WatchResponse = await asyncio.wait_for(call.read(), STREAM_BOUND)
    return message


# --- delivery ------------------------------------------------------------------------


async def test_fifty_watchers_see_get_history_under_ten_concurrent_appenders(stub: Stub) -> None:
    await appenders_against_watchers(stub)


async def test_replays_from_any_index_then_follows(stub: Stub) -> None:
    thread = await _create(stub, 5)
    for appended, given in enumerate((0, 3, None)):
        length = 5 + appended
        start = length if given is None else given  # None: the end, only new entries
        call = stub.Watch(pb.WatchRequest(thread_id=thread.thread_id, start_index=start))
        first = await _first(call)
        # The first message comes at once: the history from start_index on, or (at the
        # end) a progress message with the current length.
        assert [e.index for e in first.entries] == list(range(start, length))
        assert first.history_length == length
        await stub.Append(
            pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"n": appended}))
        )
        second = await _first(call)
        call.cancel()
        assert [(e.index, e.data["n"]) for e in second.entries] == [(length, appended)]
        assert second.history_length == length + 1
    stored = await history(stub, thread.thread_id)
    got, _ = await read_until(stub, thread.thread_id, 2, len(stored))
    assert got == stored[2:]


async def test_an_entry_arrives_with_the_index_and_created_at_get_history_gives(stub: Stub) -> None:
    thread = await _create(stub)
    call = stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    assert list((await _first(call)).entries) == []
    await stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"a": 1}, {"b": [1, "x"]}))
    )
    message = await _first(call)
    call.cancel()
    assert list(message.entries) == await history(stub, thread.thread_id)
    assert message.history_length == 2


async def test_messages_hold_at_most_1000_entries(stub: Stub) -> None:
    thread = await _create(stub, 2500)
    got, messages = await read_until(stub, thread.thread_id, 0, 2500)
    assert [len(m.entries) for m in messages] == [1000, 1000, 500]
    assert [m.history_length for m in messages] == [1000, 2000, 2500]
    check_consecutive(got, 0)


async def test_messages_stay_under_max_message_bytes(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    limit = 64 * 1024
    app = await start_server(settings_for_test(max_message_bytes=limit), redis_server.url)
    blob = "x" * 5000
    thread = (await app.stub.Create(pb.CreateRequest())).thread
    for _ in range(6):  # 6 Appends of 5 entries of ~5 kB: 150 kB in all
        batch = entries(*({"blob": blob, "k": k} for k in range(5)))
        await app.stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=batch))
    got, messages = await read_until(app.stub, thread.thread_id, 0, 30)
    assert all(m.ByteSize() <= limit for m in messages)
    assert len(messages) >= 3
    check_consecutive(got, 0)
    assert got == await history(app.stub, thread.thread_id, page_size=5)


async def test_progress_messages_carry_the_length_while_nothing_happens(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(watch_progress_seconds=0.2), redis_server.url)
    thread = await _create(app.stub, 2)
    call = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id, start_index=2))
    progress = [await _first(call) for _ in range(4)]
    call.cancel()
    assert [(list(m.entries), m.history_length) for m in progress] == [([], 2)] * 4


async def test_a_quiet_stream_reads_nothing_for_its_progress(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    """Progress reports the length the feed knows: no Redis read per message (10,000 idle
    watchers would be hundreds of reads a second)."""
    app = await start_server(settings_for_test(watch_progress_seconds=0.2), redis_server.url)
    thread = await _create(app.stub, 2)
    call = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id, start_index=2))
    await _first(call)
    await _first(call)  # the reads of the start are over
    before = _script_calls("watch_read")
    progress = [await _first(call) for _ in range(5)]
    call.cancel()
    assert [(list(m.entries), m.history_length) for m in progress] == [([], 2)] * 5
    assert _script_calls("watch_read") == before


def _script_calls(script: str) -> float:
    """Samples of the script metric for ``script`` in this process (the in-process server)."""
    value = REGISTRY.get_sample_value(
        "threads_redis_script_duration_seconds_count", {"script": script}
    )
    return value or 0.0


async def test_an_idle_subscription_connection_stays_open(
    redis_server: RedisProcess,
    start_server: StartServer,
    redis: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idle, the link PINGs Redis and takes its answer (``PONG`` on a connection with only
    sharded subscriptions, ``[pong, ""]`` with plain ones): the same connection stays, no
    resubscription every other interval."""
    monkeypatch.setattr(subscriptions, "PING_INTERVAL_SECONDS", 0.1)
    app = await start_server(settings_for_test(watch_progress_seconds=600), redis_server.url)
    thread = await _create(app.stub)
    call = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    await _first(call)
    first = await _subscription_clients(redis)
    await asyncio.sleep(1.0)  # ten intervals
    assert await _subscription_clients(redis) == first
    assert len(first) == 1
    call.cancel()


async def _subscription_clients(redis: Any) -> list[str]:
    """The ids of Redis's clients with a subscription (``sub`` or ``ssub`` above 0)."""
    clients = await redis.client_list()
    return [c["id"] for c in clients if int(c.get("sub", 0)) > 0 or int(c.get("ssub", 0)) > 0]


# --- the end of a thread -------------------------------------------------------------


async def test_delete_ends_the_stream_with_not_found(stub: Stub) -> None:
    thread = await _create(stub, 1)
    call = stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    await _first(call)
    await stub.Delete(pb.DeleteRequest(thread_id=thread.thread_id))
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.wait_for(call.read(), STREAM_BOUND)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "THREAD_NOT_FOUND"


async def test_expiry_ends_the_stream_with_not_found(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    from google.protobuf import duration_pb2  # noqa: PLC0415

    # Progress far apart: the feed looks again at the thread's expiry, not at a tick.
    app = await start_server(settings_for_test(watch_progress_seconds=600), redis_server.url)
    ttl = duration_pb2.Duration(nanos=800_000_000)
    thread = await _create(app.stub, 1, ttl=ttl)
    call = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.wait_for(_drain(call), STREAM_BOUND)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "THREAD_NOT_FOUND"


async def test_an_update_of_the_ttl_ends_the_stream_at_the_new_expiry(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    """The feed knows the expiry from its reads; an Update that moves it wakes the feed
    (update.lua), which then looks again at the new one, not at the old one an hour on."""
    from google.protobuf import duration_pb2  # noqa: PLC0415

    app = await start_server(settings_for_test(watch_progress_seconds=600), redis_server.url)
    thread = await _create(app.stub, 1, ttl=duration_pb2.Duration(seconds=3600))
    call = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    await _first(call)
    await app.stub.Update(
        pb.UpdateRequest(thread_id=thread.thread_id, ttl=duration_pb2.Duration(nanos=500_000_000))
    )
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.wait_for(_drain(call), STREAM_BOUND)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def _drain(call: Any) -> None:
    while True:
        await call.read()


async def test_a_thread_made_again_under_its_id_is_another_thread(
    redis_server: RedisProcess, start_server: StartServer, redis: Any
) -> None:
    """Deleted and created again while the subscription was lost (it missed the Delete):
    the re-read after subscribing again ends the stream, rather than go on with the new
    thread's entries."""
    app = await start_server(settings_for_test(watch_progress_seconds=0.3), redis_server.url)
    thread = await _create(app.stub, 1)
    call = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    await _first(call)
    keys = ThreadKeys(thread.thread_id)
    await redis.delete(keys.meta, keys.history)  # no wake-up
    await app.stub.Create(pb.CreateRequest(thread_id=thread.thread_id, history=entries({}, {})))
    assert await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    with pytest.raises(grpc.RpcError) as caught:
        while True:  # progress messages, then the end: never the new thread's entries
            assert not (await _first(call)).entries
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# --- errors at the start -------------------------------------------------------------


async def test_errors_at_the_start(stub: Stub) -> None:
    thread = await _create(stub, 3)

    async def first(request: pb.WatchRequest) -> Any:
        return await anext(aiter(stub.Watch(request, timeout=STREAM_BOUND)))

    await expect_error(
        first(pb.WatchRequest(thread_id="nope")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_THREAD_ID",
    )
    await expect_error(
        first(pb.WatchRequest(thread_id=thread.thread_id, start_index=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_START_INDEX",
    )
    await expect_error(
        first(pb.WatchRequest(thread_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
        "THREAD_NOT_FOUND",
    )
    error = await expect_error(
        first(pb.WatchRequest(thread_id=thread.thread_id, start_index=4)),
        grpc.StatusCode.OUT_OF_RANGE,
        "START_INDEX_OUT_OF_RANGE",
    )
    assert "which has 3 entries" in (error.details() or "")


async def test_another_callers_thread_is_not_found(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(auth_jwt_secret=SECRET), redis_server.url)
    ada = (("authorization", f"Bearer {token('ada')}"),)
    bob = (("authorization", f"Bearer {token('bob')}"),)
    thread = (await app.stub.Create(pb.CreateRequest(), metadata=ada)).thread
    own = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id), metadata=ada)
    assert (await _first(own)).history_length == 0
    own.cancel()
    await expect_error(
        _first(app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id), metadata=bob)),
        grpc.StatusCode.NOT_FOUND,
        "THREAD_NOT_FOUND",
    )
    await expect_error(
        _first(app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_MISSING",
    )


async def test_more_than_max_watchers_is_resource_exhausted(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(max_watchers=3), redis_server.url)
    thread = await _create(app.stub)
    calls = [app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id)) for _ in range(3)]
    for call in calls:
        await _first(call)
    error = await expect_error(
        _first(app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_WATCHERS",
    )
    assert "--max-watchers" in (error.details() or "")
    calls[0].cancel()  # one leaves: room for another
    await eventually(lambda: _settled(app, 2), "the cancelled stream closed")
    await _first(app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id)))
    for call in calls[1:]:
        call.cancel()


async def _settled(app: Started, open_streams: int) -> bool:
    return app.server.watches.open == open_streams


# --- shared reads, shared connections ------------------------------------------------


async def test_watchers_of_a_thread_share_one_read_per_append(
    redis_server: RedisProcess, start_server: StartServer, redis: Any
) -> None:
    app = await start_server(settings_for_test(), redis_server.url)
    thread = await _create(app.stub)
    calls = [app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id)) for _ in range(30)]
    for call in calls:
        await _first(call)
    before = await _watch_reads(redis)
    appends = 20
    for n in range(appends):
        await app.stub.Append(
            pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"n": n}))
        )
        for call in calls:  # everyone has it before the next Append
            assert [e.index for e in (await _first(call)).entries] == [n]
    reads = await _watch_reads(redis) - before
    for call in calls:
        call.cancel()
    # One read per Append for the 30 of them (a progress tick may add one), not 30.
    assert reads <= appends + 2, reads


async def _watch_reads(redis: Any) -> int:
    """watch_read.lua's runs on the server: its LRANGE calls (no other script of these
    tests' calls LRANGEs but GetHistory, not called meanwhile)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_lrange", {}).get("calls", 0))


async def test_a_thousand_watchers_on_a_thousand_threads_add_a_handful_of_connections(
    redis_server: RedisProcess, start_server: StartServer, redis: Any
) -> None:
    app = await start_server(settings_for_test(), redis_server.url)
    channels = [aio.insecure_channel(f"127.0.0.1:{app.server.port}") for _ in range(4)]
    try:
        stubs = [pb_grpc.ThreadServiceStub(channel) for channel in channels]
        threads = await asyncio.gather(*(_create(stubs[i % 4]) for i in range(1000)))
        await _create(app.stub)  # the server's script connection is open
        before = (await redis.info("clients"))["connected_clients"]
        calls = [
            stubs[i % 4].Watch(pb.WatchRequest(thread_id=t.thread_id))
            for i, t in enumerate(threads)
        ]
        await asyncio.gather(*(_first(call) for call in calls))
        assert app.server.watches.open == 1000
        assert len(app.server.watches.feeds) == 1000
        after = (await redis.info("clients"))["connected_clients"]
        assert after - before <= 3, (before, after)
        assert app.server.store.subscription_links == 1
        # And they all still follow: an Append to the last thread reaches its watcher.
        await stubs[0].Append(
            pb.AppendRequest(thread_id=threads[-1].thread_id, entries=entries({"x": 1}))
        )
        assert [e.index for e in (await _first(calls[-1])).entries] == [0]
        for call in calls:
            call.cancel()
        await eventually(lambda: _settled(app, 0), "every stream closed")
        assert len(app.server.watches.feeds) == 0
    finally:
        for channel in channels:
            await channel.close(None)


async def test_a_burst_of_streams_waits_for_the_server_instead_of_being_cancelled(
    redis_server: RedisProcess, spawn: Spawn
) -> None:
    """Thousands of streams opened at once (clients reconnecting after a worker's restart)
    all start: gRPC's core cancels calls that wait for the server's event loop once more
    than 1,000 wait (at random, all past 3,000) unless the server raises those limits."""
    server = spawn("--workers", "1", "--redis-url", redis_server.url, "--max-watchers", "9000")
    server.wait_serving()
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [aio.insecure_channel(server.target, options=options) for _ in range(8)]
    try:
        stubs = [pb_grpc.ThreadServiceStub(channel) for channel in channels]
        thread = await _create(stubs[0])
        calls = [
            stubs[i % 8].Watch(pb.WatchRequest(thread_id=thread.thread_id)) for i in range(8000)
        ]
        first = await asyncio.gather(*(_first(call) for call in calls), return_exceptions=True)
        failed = [repr(f)[:80] for f in first if isinstance(f, BaseException)]
        assert not failed, f"{len(failed)} streams failed: {failed[:3]}"
        for call in calls:
            call.cancel()
    finally:
        for channel in channels:
            await channel.close(None)


async def test_a_killed_subscription_is_made_again_and_nothing_is_missed(
    redis_server: RedisProcess, start_server: StartServer, redis: Any
) -> None:
    """CLIENT KILL of the subscription connection (Redis stays up): the stream goes on,
    re-reading from its next index, with every entry once."""
    app = await start_server(settings_for_test(), redis_server.url)
    thread = await _create(app.stub, 1)
    call = app.stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    got = list((await _first(call)).entries)
    for n in range(10):
        if n == 5:
            killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert killed >= 1
        await app.stub.Append(
            pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"n": n}))
        )
    while len(got) < 11:
        got.extend((await _first(call)).entries)
    call.cancel()
    check_consecutive(got, 0)
    assert got == await history(app.stub, thread.thread_id)


# --- the client's resume -------------------------------------------------------------


async def test_the_client_resumes_across_a_sigkill_of_redis(
    redis_always: RedisProcess,  # noqa: F811
    start_server: StartServer,
) -> None:
    """Redis (AOF always) SIGKILLed and restarted mid-stream: the stream ends UNAVAILABLE,
    the client resumes from its next index, and the sequence is GetHistory's."""
    app = await start_server(settings_for_test(), redis_always.url)
    thread = await _create(app.stub, 1)

    async def outage() -> None:
        await asyncio.to_thread(redis_always.kill)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(redis_always.start)

    await resume_across(f"127.0.0.1:{app.server.port}", lambda: app.stub, thread.thread_id, outage)


async def test_the_client_resumes_across_a_sigterm_of_the_server(
    spawn: Spawn, redis_server: RedisProcess
) -> None:
    """The server watched is stopped (SIGTERM) and another started on its port: the stream
    ends UNAVAILABLE SHUTTING_DOWN at once, and the client resumes on the new one."""
    writer = spawn("--workers", "1", "--redis-url", redis_server.url)
    watched = spawn("--workers", "1", "--redis-url", redis_server.url)
    await asyncio.to_thread(writer.wait_serving)
    await asyncio.to_thread(watched.wait_serving)
    port = watched.port
    async with aio.insecure_channel(writer.target) as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        thread = await _create(stub, 1)

        async def outage() -> None:
            assert await asyncio.to_thread(watched.stop) == 0, watched.tail()
            assert "code=UNAVAILABLE" in watched.log() and "SHUTTING_DOWN" in watched.log()
            again = spawn(
                "--workers", "1", "--redis-url", redis_server.url,
                "--listen", f"127.0.0.1:{port}", port=port,
            )  # fmt: skip
            await asyncio.to_thread(again.wait_serving)

        await resume_across(watched.target, lambda: stub, thread.thread_id, outage)


async def test_without_a_retry_policy_unavailable_is_raised(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(), redis_server.url)
    thread = await _create(app.stub, 1)
    async with get_client(f"127.0.0.1:{app.server.port}") as client:
        stream = client.threads.watch(thread.thread_id)
        assert (await anext(stream)).index == 0
        app.server.watches.close()
        with pytest.raises(Exception) as caught:
            await anext(stream)
        assert getattr(caught.value, "reason", None) == "SHUTTING_DOWN"


async def test_the_clients_watch_ends_with_not_found_when_the_thread_is_deleted(
    threads_server: Any,
) -> None:
    target = f"127.0.0.1:{threads_server.port}"
    async with get_client(target, retry=RetryPolicy()) as client:
        thread = await client.threads.create(history=[{"a": 1}])
        seen = []
        with pytest.raises(NotFoundError):
            async for entry in client.threads.watch(thread.thread_id):
                seen.append(entry.index)
                if entry.index == 0:
                    await client.threads.append(thread.thread_id, [{"b": 2}])
                else:
                    await client.threads.delete(thread.thread_id)
        assert seen == [0, 1]


async def test_the_blocking_clients_watch(threads_server: Any) -> None:
    def follow() -> list[tuple[int, dict[str, Any]]]:
        with get_sync_client(f"127.0.0.1:{threads_server.port}") as client:
            thread = client.threads.create(history=[{"a": 1}, {"a": 2}])
            seen = []
            for entry in client.threads.watch(thread.thread_id, 1, timeout=STREAM_BOUND):
                seen.append((entry.index, dict(entry.data)))
                if len(seen) == 1:
                    client.threads.append(thread.thread_id, [{"a": 3}])
                else:
                    break
            return seen

    # In a thread: the server runs in this test's event loop.
    assert await asyncio.to_thread(follow) == [(1, {"a": 2}), (2, {"a": 3})]


# --- slow consumers ------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_slow_consumer_does_not_grow_the_servers_memory(
    spawn: Spawn, redis_server: RedisProcess
) -> None:
    """A watcher that reads nothing while 40 MB are appended: the server holds about one
    message for it (plus the connection's flow-control window), not the history; read at
    last, every entry is there."""
    watched = spawn(
        "--workers", "1", "--redis-url", redis_server.url, "--max-message-bytes", "1048576"
    )
    writer = spawn("--workers", "1", "--redis-url", redis_server.url)
    await asyncio.to_thread(watched.wait_serving)
    await asyncio.to_thread(writer.wait_serving)
    blob = "y" * 100_000
    options = [("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 4 << 20)]
    async with (
        aio.insecure_channel(writer.target) as wchannel,
        aio.insecure_channel(watched.target, options=options) as channel,
    ):
        stub = pb_grpc.ThreadServiceStub(wchannel)
        thread = await _create(stub)
        call = pb_grpc.ThreadServiceStub(channel).Watch(pb.WatchRequest(thread_id=thread.thread_id))
        await _first(call)
        pid = watched.serving_pids()[0]
        before = _rss_kib(pid)
        for n in range(400):  # 400 entries of 100 kB
            await stub.Append(
                pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"b": blob, "n": n}))
            )
        await asyncio.sleep(1)  # whatever the server would buffer, it has by now
        grown = _rss_kib(pid) - before
        assert grown < 16 * 1024, f"the server grew {grown} KiB for a reader of nothing"
        got: list[pb.Entry] = []
        while len(got) < 400:
            got.extend((await _first(call)).entries)
        call.cancel()
        check_consecutive(got, 0)


# --- observability ---------------------------------------------------------------------


async def test_metrics_and_the_log_line_of_a_stream(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    thread = await _create(stub, 2)
    before = metrics.watch_entries._value.get()
    call = stub.Watch(pb.WatchRequest(thread_id=thread.thread_id))
    await _first(call)
    assert metrics.watchers_open._value.get() >= 1
    await stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"c": 3})))
    await _first(call)
    call.cancel()
    assert metrics.watch_entries._value.get() - before >= 3
    await eventually(lambda: _logged(caplog, thread.thread_id), "the stream's end logged")
    [line] = [r for r in caplog.records if "stream ended" in r.getMessage()
              and getattr(r, "thread_id", "") == thread.thread_id]  # fmt: skip
    assert "code=CANCELLED" in line.getMessage() and "3 entries in 2 messages" in line.getMessage()
    assert (line.entries, line.messages) == (3, 2)  # type: ignore[attr-defined]


async def _logged(caplog: pytest.LogCaptureFixture, thread_id: str) -> bool:
    return any(
        "stream ended" in r.getMessage() and getattr(r, "thread_id", "") == thread_id
        for r in caplog.records
    )
