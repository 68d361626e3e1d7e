"""Thread time to live: Create/Update set it, Copy gives the copy its own, keys expire together.

Expiry times are read back from Redis (PEXPIRETIME) and compared with the thread's
``expire_time``; the one test that waits for an expiry polls for it, with no timing claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import duration_pb2

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import StartServer, eventually
from tests.redis_process import RedisProcess
from tests.rpc_helpers import entries, expect_error, struct
from threads_server.store import codec
from threads_server.store.corridor import Corridor, transport_for
from threads_server.store.keys import ThreadKeys, new_copy_id
from threads_server.store.outcomes import Outcome
from threads_server.store.scripts import all_scripts
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub


def ttl(seconds: int = 0, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def expire_ms(thread: pb.Thread) -> int:
    return thread.expire_time.ToMilliseconds() if thread.HasField("expire_time") else -1


async def key_expiries(redis: Any, thread_id: str) -> tuple[int, int]:
    """PEXPIRETIME of the meta and history keys (-1: none, -2: no such key)."""
    keys = ThreadKeys(thread_id)
    return await redis.pexpiretime(keys.meta), await redis.pexpiretime(keys.history)


async def test_create_with_ttl_sets_one_expiry_on_every_key(stub: Stub, redis: Any) -> None:
    thread = (
        await stub.Create(pb.CreateRequest(history=entries({"a": 1}), ttl=ttl(3600, 1)))
    ).thread
    created = thread.created_at.ToMilliseconds()
    # Rounded up to whole milliseconds: 3600 s and 1 ns never ends early.
    assert expire_ms(thread) == created + 3_600_001
    assert await key_expiries(redis, thread.thread_id) == (expire_ms(thread),) * 2
    got = (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread
    assert got.expire_time == thread.expire_time


async def test_no_ttl_means_no_expiry(stub: Stub, redis: Any) -> None:
    thread = (await stub.Create(pb.CreateRequest(history=entries({"a": 1})))).thread
    assert not thread.HasField("expire_time")
    assert await key_expiries(redis, thread.thread_id) == (-1, -1)


async def test_the_first_append_gives_the_history_the_threads_expiry(
    stub: Stub, redis: Any
) -> None:
    thread = (await stub.Create(pb.CreateRequest(ttl=ttl(600)))).thread
    assert await key_expiries(redis, thread.thread_id) == (expire_ms(thread), -2)
    await stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"i": 0})))
    await stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"i": 1})))
    assert await key_expiries(redis, thread.thread_id) == (expire_ms(thread),) * 2


async def test_update_restarts_removes_or_keeps_the_expiry(stub: Stub, redis: Any) -> None:
    thread = (await stub.Create(pb.CreateRequest(history=entries({}), ttl=ttl(60)))).thread
    longer = (await stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, ttl=ttl(7200)))).thread
    assert expire_ms(longer) == longer.updated_at.ToMilliseconds() + 7_200_000
    assert await key_expiries(redis, thread.thread_id) == (expire_ms(longer),) * 2

    kept = (
        await stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, metadata=struct(a=1)))
    ).thread
    assert kept.expire_time == longer.expire_time
    assert await key_expiries(redis, thread.thread_id) == (expire_ms(longer),) * 2

    forever = (await stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, ttl=ttl()))).thread
    assert not forever.HasField("expire_time")
    assert await key_expiries(redis, thread.thread_id) == (-1, -1)


async def test_a_copy_never_inherits_the_sources_expiry(stub: Stub, redis: Any) -> None:
    """Redis COPY carries the source key's TTL over; the script must replace it."""
    source = (await stub.Create(pb.CreateRequest(history=entries({}), ttl=ttl(60)))).thread
    copy = (await stub.Copy(pb.CopyRequest(thread_id=source.thread_id))).thread
    assert not copy.HasField("expire_time")
    assert await key_expiries(redis, copy.thread_id) == (-1, -1)
    own = (await stub.Copy(pb.CopyRequest(thread_id=source.thread_id, ttl=ttl(86400)))).thread
    assert expire_ms(own) == own.created_at.ToMilliseconds() + 86_400_000
    assert await key_expiries(redis, own.thread_id) == (expire_ms(own),) * 2
    # ... and the source keeps its own.
    assert await key_expiries(redis, source.thread_id) == (expire_ms(source),) * 2


async def test_a_copy_of_a_forever_thread_may_expire(stub: Stub, redis: Any) -> None:
    source = (await stub.Create(pb.CreateRequest(history=entries({}, {})))).thread
    copy = (
        await stub.Copy(pb.CopyRequest(thread_id=source.thread_id, history_length=1, ttl=ttl(30)))
    ).thread
    assert await key_expiries(redis, copy.thread_id) == (expire_ms(copy),) * 2
    assert await key_expiries(redis, source.thread_id) == (-1, -1)


async def test_the_configured_default_applies_to_creates_and_copies(
    start_server: StartServer, redis_server: RedisProcess, redis: Any
) -> None:
    server = await start_server(settings_for_test(default_ttl_seconds=900), redis_server.url)
    thread = (await server.stub.Create(pb.CreateRequest(history=entries({})))).thread
    assert expire_ms(thread) == thread.created_at.ToMilliseconds() + 900_000
    copy = (await server.stub.Copy(pb.CopyRequest(thread_id=thread.thread_id))).thread
    assert expire_ms(copy) == copy.created_at.ToMilliseconds() + 900_000
    # An explicit zero opts out of the default.
    kept = (await server.stub.Create(pb.CreateRequest(ttl=ttl(0)))).thread
    assert not kept.HasField("expire_time")
    kept_copy = (
        await server.stub.Copy(pb.CopyRequest(thread_id=thread.thread_id, ttl=ttl()))
    ).thread
    assert await key_expiries(redis, kept_copy.thread_id) == (-1, -1)


async def test_all_keys_of_a_thread_expire_together(stub: Stub, redis: Any) -> None:
    thread = (
        await stub.Create(pb.CreateRequest(history=entries({}, {}), ttl=ttl(0, 200_000_000)))
    ).thread
    keys = ThreadKeys(thread.thread_id)

    async def gone() -> bool:
        try:
            await stub.Get(pb.GetRequest(thread_id=thread.thread_id))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return True
        return False

    await eventually(gone, "the thread expires")
    # Same expiry instant: once the meta is gone, the history is too.
    assert await redis.exists(keys.meta, keys.history) == 0


@pytest.mark.parametrize(
    "bad",
    [ttl(-1), ttl(0, -1), ttl(1, 1_000_000_000), ttl(200 * 366 * 86400)],
    ids=["negative", "negative-nanos", "nanos-overflow", "200-years"],
)
async def test_invalid_ttls_are_refused_everywhere(stub: Stub, bad: duration_pb2.Duration) -> None:
    thread = (await stub.Create(pb.CreateRequest())).thread
    for call in (
        stub.Create(pb.CreateRequest(ttl=bad)),
        stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, ttl=bad)),
        stub.Copy(pb.CopyRequest(thread_id=thread.thread_id, ttl=bad)),
    ):
        await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TTL")
    assert not (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread.HasField(
        "expire_time"
    )


async def test_a_copy_retry_with_another_ttl_is_another_request(stub: Stub) -> None:
    source = (await stub.Create(pb.CreateRequest())).thread
    first = await stub.Copy(
        pb.CopyRequest(thread_id=source.thread_id, request_id="t1", ttl=ttl(60))
    )
    again = await stub.Copy(
        pb.CopyRequest(thread_id=source.thread_id, request_id="t1", ttl=ttl(60))
    )
    assert again.thread.thread_id == first.thread.thread_id
    await expect_error(
        stub.Copy(pb.CopyRequest(thread_id=source.thread_id, request_id="t1", ttl=ttl(61))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )


async def test_an_expiry_already_past_when_the_script_runs_leaves_no_stray_key(
    stub: Stub, redis: Any
) -> None:
    """A ttl of a millisecond can be over before Redis runs the script (latency, clock
    skew). Redis then deletes the keys at PEXPIREAT; nothing may write the meta after that
    (an HSET would leave a stray hash with no expiry), and the reply still describes the
    thread. Driven through the scripts with an expiry in 1970, so it is deterministic."""
    scripts = all_scripts()
    corridor = Corridor(transport_for(redis, pipelining=False))
    update, copy = scripts["update"], scripts["copy"]
    past = "1000"
    updated = (
        await stub.Create(pb.CreateRequest(history=entries({}), metadata=struct(a=1)))
    ).thread
    keys = ThreadKeys(updated.thread_id)
    outcome, values = await corridor.run(
        update,
        [keys.meta, keys.history],
        update.argv(idx="", id=updated.thread_id, now=1, expire_ms=past, max_metadata=65536),
    )
    assert outcome is Outcome.OK
    assert codec.thread_from_fields(updated.thread_id, *values[0]).metadata == struct(a=1)
    assert await redis.exists(keys.meta, keys.history) == 0

    source = (await stub.Create(pb.CreateRequest(history=entries({}, {})))).thread
    copy_id = new_copy_id(source.thread_id)
    src, dst = ThreadKeys(source.thread_id), ThreadKeys(copy_id)
    outcome, values = await corridor.run(
        copy,
        [src.meta, src.history, dst.meta, dst.history],
        copy.argv(
            idx="",
            copy_id=copy_id,
            source_id=source.thread_id,
            now=1,
            want="",
            fingerprint="",
            request_ttl=60,
            expire_ms=past,
            max_length=10,
            max_metadata=65536,
        ),
    )
    assert outcome is Outcome.OK
    assert values[0][0] == 2  # the copy's history length, read before the keys went
    assert await redis.exists(dst.meta, dst.history) == 0
    assert await redis.exists(src.meta, src.history) == 2
