"""Auto-pipelining (``store.corridor.pipelined``) against the real servers.

Each test issues script calls the way the store does (``Corridor.run`` over the
``Pipelined`` transport) on a client built as the server builds it (``connect_redis``),
against a Redis of its own that it can pause. Every call goes over the transport's one
connection; calls issued before the earlier ones are answered (gathered, or while Redis is
paused) are in flight on it together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ResponseError

from tests.inprocess_server import eventually as _eventually
from tests.redis_process import RedisProcess
from tests.tcp_proxy import TcpProxy
from threads_server.errors import ResourceExhausted, Unavailable
from threads_server.ops.config import Settings
from threads_server.store.connect import connect_redis
from threads_server.store.corridor import Corridor
from threads_server.store.corridor.pipelined import Pipelined
from threads_server.store.outcomes import Outcome
from threads_server.store.scripts import Script

BOUND = 15.0  # guards the test only: far below the 30 s pauses and 60 s socket timeouts

PUSH = """\
-- A test-only write: appends item to the list KEYS[1]; replies its new length.
-- ARGV: item
local key = KEYS[1]
local item = ARGV[1]
return {'OK', redis.call('RPUSH', key, item)}
"""

READ = """\
-- A test-only read: the length of the list KEYS[1].
-- ARGV: none
local key = KEYS[1]
return {'OK', redis.call('LLEN', key)}
"""


class Client:
    """A client as the server builds it, its pipelined transport in a corridor, and the two
    test scripts."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.redis: Any = connect_redis(url, Settings(redis_timeout_seconds=timeout))
        self.pipeline = Pipelined(self.redis)
        self.corridor = Corridor(self.pipeline)
        self.push = Script.load("push", PUSH)
        self.read = Script.load("read", READ)

    async def load(self) -> None:
        """As ``ThreadStore.prepare`` does before the first call (so that no NOSCRIPT, and
        the call sent again after it, changes the order the calls run in)."""
        await self.corridor.load([self.push, self.read])

    async def run(self, script: Script, key: str, *args: Any) -> int:
        outcome, values = await self.corridor.run(script, [key], args)
        assert outcome is Outcome.OK
        return int(values[0])

    async def aclose(self) -> None:
        await self.pipeline.aclose()
        await self.redis.aclose()


@pytest.fixture
async def raw(own_redis: RedisProcess) -> AsyncIterator[Any]:
    """A plain client of the test's Redis, to pause it and to check what it holds."""
    client: Any = aioredis.from_url(own_redis.url, socket_timeout=10)
    yield client
    await client.execute_command("CLIENT", "UNPAUSE")
    await client.aclose()


@pytest.fixture
async def client(own_redis: RedisProcess) -> AsyncIterator[Client]:
    pipelined = Client(own_redis.url)
    await pipelined.load()
    yield pipelined
    await pipelined.aclose()


async def _threads_service_clients(raw: Any, *, blocked: bool = False) -> list[dict[str, Any]]:
    """The connections of ``connect_redis`` clients (named 'threads'); only those blocked
    by CLIENT PAUSE with ``blocked``."""
    return [
        c
        for c in await raw.client_list()
        if c.get("name") == "threads" and (not blocked or "b" in c.get("flags", ""))
    ]


async def _blocked(raw: Any) -> bool:
    return bool(await _threads_service_clients(raw, blocked=True))


async def test_calls_in_flight_share_one_connection_and_run_in_the_order_issued(
    client: Client, raw: Any
) -> None:
    replies = await asyncio.gather(*(client.run(client.push, "list", str(i)) for i in range(20)))
    assert replies == list(range(1, 21))
    assert await raw.lrange("list", 0, -1) == [str(i).encode() for i in range(20)]
    # One connection; without pipelining, twenty calls at once take twenty.
    assert len(await _threads_service_clients(raw)) == 1
    # Awaited one after another, the calls still come back in order.
    assert [await client.run(client.push, "list", "next") for _ in range(3)] == [21, 22, 23]


async def test_calls_issued_in_different_ticks_are_in_flight_together(
    client: Client, raw: Any
) -> None:
    """Not one tick's calls only: a call issued while others wait for their replies joins
    them on the same connection."""
    assert await client.run(client.read, "list") == 0
    await raw.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    calls = []
    for i in range(5):
        calls.append(asyncio.create_task(client.run(client.push, "list", str(i))))
        await asyncio.sleep(0.01)  # each call in a tick of its own
    await _eventually(lambda: _blocked(raw), "the calls are blocked by the pause")
    assert len(await _threads_service_clients(raw)) == 1
    await raw.execute_command("CLIENT", "UNPAUSE")
    assert [await asyncio.wait_for(call, BOUND) for call in calls] == [1, 2, 3, 4, 5]
    assert await raw.lrange("list", 0, -1) == [str(i).encode() for i in range(5)]


async def test_an_error_reply_fails_only_its_own_call(client: Client, raw: Any) -> None:
    await raw.set("not-a-list", "x")
    pushed, wrong, read = await asyncio.gather(
        client.run(client.push, "list", "a"),
        client.run(client.push, "not-a-list", "b"),
        client.run(client.read, "list"),
        return_exceptions=True,
    )
    assert (pushed, read) == (1, 1)
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    assert "push.lua:5" in str(wrong) and "user_script" not in str(wrong), str(wrong)
    # The connection stayed in sync: the next call gets its own reply.
    assert await client.run(client.read, "list") == 1


async def test_out_of_memory_fails_only_the_write(client: Client, raw: Any) -> None:
    await raw.rpush("list", "a")
    await raw.config_set("maxmemory-policy", "noeviction")
    await raw.config_set("maxmemory", 1)
    try:
        before, refused, after = await asyncio.gather(
            client.run(client.read, "list"),
            client.run(client.push, "list", "b"),
            client.run(client.read, "list"),
            return_exceptions=True,
        )
    finally:
        await raw.config_set("maxmemory", 0)
    assert (before, after) == (1, 1)
    assert isinstance(refused, ResourceExhausted), refused
    assert await raw.llen("list") == 1


async def test_noscript_loads_the_script_and_sends_each_call_once_more(
    client: Client, raw: Any
) -> None:
    """NOSCRIPT (a restarted Redis lost its scripts) means the call did not run, so it is
    the one reply that is safe to answer by sending the call again."""
    await raw.script_flush()
    replies = await asyncio.gather(*(client.run(client.push, "list", str(i)) for i in range(5)))
    assert sorted(replies) == [1, 2, 3, 4, 5]
    assert sorted(await raw.lrange("list", 0, -1)) == [str(i).encode() for i in range(5)]


async def test_a_lost_reply_fails_every_waiting_call_and_resends_none(
    own_redis: RedisProcess, raw: Any
) -> None:
    proxy = TcpProxy("127.0.0.1", own_redis.port)
    await proxy.start()
    client = Client(proxy.url)
    try:
        await client.load()
        assert await client.run(client.read, "list") == 0  # connected, scripts known
        lost = proxy.lose_reply_to(b"marker")
        results = await asyncio.gather(
            client.run(client.push, "list", "a"),
            client.run(client.push, "list", "marker"),
            client.run(client.push, "list", "c"),
            return_exceptions=True,
        )
        assert lost.is_set()
        # The marker's call and every call after it fail; "a" was answered if its reply
        # came back before the proxy dropped the connection.
        assert results[0] == 1 or isinstance(results[0], Unavailable), results
        assert all(isinstance(result, Unavailable) for result in results[1:]), results
        # Redis ran each once; none was sent again. The next call opens a new connection.
        assert await raw.lrange("list", 0, -1) == [b"a", b"marker", b"c"]
        assert await client.run(client.push, "list", "d") == 4
    finally:
        await client.aclose()
        await proxy.close()


async def test_the_socket_timeout_bounds_the_calls_in_flight(
    own_redis: RedisProcess, raw: Any
) -> None:
    client = Client(own_redis.url, timeout=0.5)
    try:
        await client.load()
        assert await client.run(client.read, "list") == 0
        await raw.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
        results = await asyncio.gather(
            client.run(client.read, "list"),
            client.run(client.push, "list", "a"),
            client.run(client.push, "list", "b"),
            return_exceptions=True,
        )
        assert all(isinstance(result, Unavailable) for result in results), results
        await raw.execute_command("CLIENT", "UNPAUSE")
        # Not re-sent: each write is there at most once.
        assert await raw.lrange("list", 0, -1) in ([], [b"a"], [b"a", b"b"])
    finally:
        await client.aclose()


async def test_a_caller_that_leaves_has_its_reply_dropped_the_others_get_theirs(
    client: Client, raw: Any
) -> None:
    assert await client.run(client.read, "list") == 0
    await raw.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    calls = [asyncio.create_task(client.run(client.push, "list", str(i))) for i in range(3)]
    await _eventually(lambda: _blocked(raw), "the calls are blocked by the pause")
    calls[1].cancel()
    await asyncio.sleep(0.2)  # the others still wait, the connection still open
    assert len(await _threads_service_clients(raw, blocked=True)) == 1
    await raw.execute_command("CLIENT", "UNPAUSE")
    assert await asyncio.wait_for(calls[0], BOUND) == 1
    assert await asyncio.wait_for(calls[2], BOUND) == 3
    assert calls[1].cancelled()
    # The dropped reply was read: the connection is in sync, the next call gets its own.
    assert await client.run(client.read, "list") == 3
    assert len(await _threads_service_clients(raw)) == 1


async def test_a_connection_whose_callers_all_left_is_closed(client: Client, raw: Any) -> None:
    """As a lone call cancelled by its RPC's deadline does: Redis is not left holding a
    connection nobody reads (test_app's deadline test, with many callers)."""
    assert await client.run(client.read, "list") == 0
    await raw.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    calls = [asyncio.create_task(client.run(client.push, "list", str(i))) for i in range(3)]
    await _eventually(lambda: _blocked(raw), "the calls are blocked by the pause")
    for call in calls:
        call.cancel()
    await _eventually(lambda: _not(_blocked(raw)), "the abandoned connection closed")
    await raw.execute_command("CLIENT", "UNPAUSE")
    length = await client.run(client.read, "list")
    assert await raw.lrange("list", 0, -1) in ([], [b"0"], [b"0", b"1"], [b"0", b"1", b"2"])
    assert await client.run(client.push, "list", "x") == length + 1


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def test_closing_the_pipeline_fails_the_calls_still_waiting(client: Client, raw: Any) -> None:
    """Shutdown (ThreadsServer.stop) never leaves a caller waiting: UNAVAILABLE."""
    assert await client.run(client.read, "list") == 0
    await raw.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    calls = [asyncio.create_task(client.run(client.push, "list", str(i))) for i in range(2)]
    await _eventually(lambda: _blocked(raw), "the calls are blocked by the pause")
    await asyncio.wait_for(client.pipeline.aclose(), BOUND)
    for call in calls:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(call, BOUND)


async def test_a_cancelled_reader_fails_the_calls_in_flight(client: Client, raw: Any) -> None:
    """However the reply reader ends, no caller is left waiting; the next call opens a new
    connection."""
    assert await client.run(client.read, "list") == 0
    await raw.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    calls = [asyncio.create_task(client.run(client.push, "list", str(i))) for i in range(2)]
    await _eventually(lambda: _blocked(raw), "the calls are blocked by the pause")
    link = client.pipeline._link
    assert link is not None and link.reader is not None
    link.reader.cancel()
    for call in calls:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(call, BOUND)
    await raw.execute_command("CLIENT", "UNPAUSE")
    length = await client.run(client.read, "list")
    assert length in (0, 1, 2)
    assert await client.run(client.push, "list", "x") == length + 1


async def test_a_caller_that_leaves_before_its_call_is_written_writes_nothing(
    own_redis: RedisProcess, raw: Any
) -> None:
    """The first call opens the connection; one issued meanwhile waits for it, and if its
    caller leaves then, it is never sent."""
    client = Client(own_redis.url)  # no connection yet: the first call opens it
    try:
        for script in (client.push, client.read):
            await raw.script_load(script.text)
        first = asyncio.create_task(client.run(client.push, "list", "first"))
        left = asyncio.create_task(client.run(client.push, "list", "left"))
        await asyncio.sleep(0)  # both started: the first opening the connection
        left.cancel()
        assert await asyncio.wait_for(first, BOUND) == 1
        assert left.cancelled()
        assert await client.run(client.push, "list", "next") == 2
        assert await raw.lrange("list", 0, -1) == [b"first", b"next"]
    finally:
        await client.aclose()


async def test_a_call_left_before_the_end_of_its_tick_is_not_written(
    client: Client, raw: Any
) -> None:
    """A tick's calls are written at its end: one whose caller has left by then is not."""
    assert await client.run(client.read, "list") == 0  # connected
    calls = [asyncio.create_task(client.run(client.push, "list", str(i))) for i in range(3)]
    await asyncio.sleep(0)  # the three calls queued, not written yet
    calls[1].cancel()
    assert await asyncio.wait_for(calls[0], BOUND) == 1
    assert await asyncio.wait_for(calls[2], BOUND) == 2
    assert calls[1].cancelled()
    assert await raw.lrange("list", 0, -1) == [b"0", b"2"]


class _NamesOneNode:
    """A Sentinel stand-in naming one node as the primary, as sentinels do for a moment
    during a failover (the node just demoted)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        return "127.0.0.1", self.port


async def test_readonly_on_sentinel_fails_the_calls_in_flight_as_unavailable(
    redis_binary: str, own_redis: RedisProcess, raw: Any, tmp_path: Path
) -> None:
    """Sentinel's connections turn READONLY (a primary demoted by a failover) into a
    ConnectionError and close: the write and the calls after it fail as UNAVAILABLE."""
    replica = RedisProcess(redis_binary, tmp_path / "replica", appendonly=False)
    replica.extra_args += ["--replicaof", "127.0.0.1", str(own_redis.port)]
    replica.start()
    pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
        "primary", _NamesOneNode(replica.port), socket_timeout=10, client_name="threads"
    )
    redis: Any = aioredis.Redis(connection_pool=pool)
    pipeline = Pipelined(redis)
    corridor = Corridor(pipeline)
    push, read = Script.load("push", PUSH), Script.load("read", READ)
    try:
        await corridor.load([push, read])  # loaded, so that no NOSCRIPT reorders the calls

        async def run(script: Script, *args: Any) -> Any:
            return await corridor.run(script, ["list"], args)

        results = await asyncio.gather(run(read), run(push, "a"), run(read), return_exceptions=True)
        assert results[0] == (Outcome.OK, [0])
        assert isinstance(results[1], Unavailable), results
        assert isinstance(results[2], Unavailable), results
        assert await raw.llen("list") == 0
    finally:
        await pipeline.aclose()
        await redis.aclose()
        replica.stop()


async def test_callers_waiting_for_the_connection_share_one_attempt(
    own_redis: RedisProcess,
) -> None:
    """An unreachable Redis fails the callers waiting for the connection together (one
    attempt, its error for each), not one attempt after another; then a reachable one
    serves them."""
    own_redis.stop()
    client = Client(own_redis.url)
    attempts = 0
    get_connection = client.redis.connection_pool.get_connection

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return await get_connection(*args, **kwargs)

    client.redis.connection_pool.get_connection = counted
    try:
        results = await asyncio.gather(
            *(client.run(client.read, "list") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(result, Unavailable) for result in results), results
        assert attempts == 1
        own_redis.start()
        await client.load()  # a new Redis: no scripts, which a NOSCRIPT would load
        attempts = 0
        replies = await asyncio.gather(*(client.run(client.read, "list") for _ in range(5)))
        assert replies == [0] * 5
        assert attempts == 1
    finally:
        await client.aclose()


async def test_the_redis_py_internals_the_pipelined_transport_relies_on(
    own_redis: RedisProcess, raw: Any
) -> None:
    """``Pipelined`` writes a tick's calls on a pooled connection's private stream writer
    (``connection._writer``) and tells a closed connection by its streams; redis-py's own
    ``read_response`` reads the replies. Exactly that is pinned here, so that a redis-py
    upgrade changing it fails this test rather than production."""
    client: Any = connect_redis(own_redis.url, Settings())
    connection = await client.connection_pool.get_connection()
    try:
        reader, writer = connection._reader, connection._writer
        assert isinstance(reader, asyncio.StreamReader)
        assert isinstance(writer, asyncio.StreamWriter)
        # Commands written together on _writer are answered, in order, by read_response.
        writer.writelines(
            [*connection.pack_command("PING", "a"), *connection.pack_command("CLIENT", "ID")]
        )
        assert await connection.read_response() == b"a"
        client_id = await connection.read_response()
        assert not (writer.is_closing() or reader.at_eof())
        # Redis closing the connection (a restart) shows as the end of _reader's stream.
        await raw.client_kill_filter(_id=client_id)
        await _eventually(_async(reader.at_eof), "the killed connection's stream at its end")
        # Closing it ourselves shows on the writer we kept.
        await connection.disconnect(nowait=True)
        assert writer.is_closing()
    finally:
        await client.connection_pool.release(connection)
        await client.aclose()


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked
