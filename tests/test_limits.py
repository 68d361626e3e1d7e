"""Configurable size limits (threads_server/store/limits.py and the scripts' checks), on real
servers.

Each test starts a server with small limits against the session's Redis and checks both
sides of each boundary: exactly at the limit is accepted, one past is refused with the
limit's reason, and a refused write changes nothing.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import Started, StartServer
from tests.redis_process import RedisProcess
from tests.rpc_helpers import entries, expect_error, history, struct
from threads_server.store import codec
from threads_server.store.keys import ThreadKeys
from threads_service_client.pb import threads_pb2 as pb


async def start(start_server: StartServer, redis_server: RedisProcess, **limits: Any) -> Started:
    return await start_server(settings_for_test(**limits), redis_server.url)


async def dump(redis: Any, thread_id: str) -> dict[str, Any]:
    keys = ThreadKeys(thread_id)
    return {key: await redis.dump(key) for key in (keys.meta, keys.history)}


def metadata_of_size(size: int) -> dict[str, str]:
    """One key "k" whose string value makes the metadata exactly ``size`` bytes."""
    value = ""
    while codec.metadata_size(codec.metadata_args(struct(k=value))) < size:
        value += "x"
    assert codec.metadata_size(codec.metadata_args(struct(k=value))) == size
    return {"k": value}


# --- entries ----------------------------------------------------------------------------


async def test_an_entry_past_max_entry_bytes_is_refused_on_create_and_append(
    start_server: StartServer, redis_server: RedisProcess, redis: Any
) -> None:
    server = await start(start_server, redis_server, max_entry_bytes=200)
    text = "a" * 200
    while struct(text=text).ByteSize() > 200:
        text = text[:-1]
    at_limit, past = struct(text=text), struct(text=text + "a")
    assert at_limit.ByteSize() == 200

    thread = (await server.stub.Create(pb.CreateRequest(history=[pb.Entry(data=at_limit)]))).thread
    error = await expect_error(
        server.stub.Create(
            pb.CreateRequest(history=[pb.Entry(data=at_limit), pb.Entry(data=past)])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ENTRY_TOO_LARGE",
    )
    assert "history[1]" in str(error.details())
    before = await dump(redis, thread.thread_id)
    error = await expect_error(
        server.stub.Append(
            pb.AppendRequest(
                thread_id=thread.thread_id,
                entries=[pb.Entry(data=at_limit), pb.Entry(data=past)],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ENTRY_TOO_LARGE",
    )
    assert "entries[1]" in str(error.details())
    assert await dump(redis, thread.thread_id) == before
    await server.stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=[pb.Entry(data=at_limit)])
    )


async def test_max_entries_per_request(
    start_server: StartServer, redis_server: RedisProcess
) -> None:
    server = await start(start_server, redis_server, max_entries_per_request=3)
    thread = (await server.stub.Create(pb.CreateRequest(history=entries({}, {}, {})))).thread
    await expect_error(
        server.stub.Create(pb.CreateRequest(history=entries({}, {}, {}, {}))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_ENTRIES",
    )
    await expect_error(
        server.stub.Append(
            pb.AppendRequest(thread_id=thread.thread_id, entries=entries({}, {}, {}, {}))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_ENTRIES",
    )


# --- history length ---------------------------------------------------------------------


async def test_max_history_length_on_create_and_append(
    start_server: StartServer, redis_server: RedisProcess, redis: Any
) -> None:
    server = await start(start_server, redis_server, max_history_length=5)
    await expect_error(
        server.stub.Create(pb.CreateRequest(history=entries(*([{}] * 6)))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "HISTORY_TOO_LONG",
    )
    thread = (await server.stub.Create(pb.CreateRequest(history=entries({}, {}, {})))).thread
    appended = await server.stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"i": 3}, {"i": 4}))
    )
    assert appended.history_length == 5
    before = await dump(redis, thread.thread_id)
    error = await expect_error(
        server.stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=entries({}))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "HISTORY_TOO_LONG",
    )
    assert "5" in str(error.details())
    assert await dump(redis, thread.thread_id) == before
    assert len(await history(server.stub, thread.thread_id)) == 5


async def test_copy_refuses_a_history_past_the_limit_but_may_fork_within_it(
    start_server: StartServer, redis_server: RedisProcess, redis: Any
) -> None:
    """A thread made under a higher limit cannot be copied whole under a lower one."""
    roomy = await start(start_server, redis_server)
    strict = await start(start_server, redis_server, max_history_length=4)
    source = (await roomy.stub.Create(pb.CreateRequest(history=entries(*([{}] * 6))))).thread
    keys_before = {key async for key in redis.scan_iter(match="thr:*")}

    await expect_error(
        strict.stub.Copy(pb.CopyRequest(thread_id=source.thread_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "HISTORY_TOO_LONG",
    )
    await expect_error(
        strict.stub.Copy(pb.CopyRequest(thread_id=source.thread_id, history_length=5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "HISTORY_TOO_LONG",
    )
    # No key added (the Redis is shared: another test's short-lived threads may expire).
    assert {key async for key in redis.scan_iter(match="thr:*")} <= keys_before
    fork = (
        await strict.stub.Copy(pb.CopyRequest(thread_id=source.thread_id, history_length=4))
    ).thread
    assert fork.history_length == 4


# --- metadata ---------------------------------------------------------------------------


async def test_metadata_limit_on_create_update_and_copy(
    start_server: StartServer, redis_server: RedisProcess, redis: Any
) -> None:
    server = await start(start_server, redis_server, max_metadata_bytes=100)
    await expect_error(
        server.stub.Create(pb.CreateRequest(metadata=struct(**metadata_of_size(101)))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "METADATA_TOO_LARGE",
    )
    thread = (
        await server.stub.Create(pb.CreateRequest(metadata=struct(**metadata_of_size(100))))
    ).thread

    # Overwriting the key with a value of the same size is fine: the merge is measured.
    same_size = struct(k="y" * len(metadata_of_size(100)["k"]))
    await server.stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, metadata=same_size))

    # A new key on top of 100 bytes is not, on Update or on Copy; nothing is written.
    before = await dump(redis, thread.thread_id)
    keys_before = {key async for key in redis.scan_iter(match="thr:*")}
    await expect_error(
        server.stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, metadata=struct(n=1))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "METADATA_TOO_LARGE",
    )
    await expect_error(
        server.stub.Copy(pb.CopyRequest(thread_id=thread.thread_id, metadata=struct(n=1))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "METADATA_TOO_LARGE",
    )
    assert await dump(redis, thread.thread_id) == before
    # No key added (the Redis is shared: another test's short-lived threads may expire).
    assert {key async for key in redis.scan_iter(match="thr:*")} <= keys_before

    # Shrinking one key makes room for another.
    small = struct(**metadata_of_size(50))
    await server.stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, metadata=small))
    copy = (
        await server.stub.Copy(pb.CopyRequest(thread_id=thread.thread_id, metadata=struct(n=1)))
    ).thread
    assert set(copy.metadata.keys()) == {"k", "n"}


@pytest.mark.parametrize(("stored", "fits"), [(3, True), (97, True), (98, False)])
async def test_the_scripts_measure_metadata_as_the_server_does(
    start_server: StartServer, redis_server: RedisProcess, stored: int, fits: bool
) -> None:
    """Update's in-script measure agrees with codec.metadata_size at the boundary: a null
    under a one-letter key is 3 bytes (1 of key, 2 of serialized Value)."""
    assert codec.metadata_size(codec.metadata_args(struct(z=None))) == 3
    server = await start(start_server, redis_server, max_metadata_bytes=100)
    thread = (await server.stub.Create(pb.CreateRequest())).thread
    await server.stub.Update(
        pb.UpdateRequest(thread_id=thread.thread_id, metadata=struct(**metadata_of_size(stored)))
    )
    update = server.stub.Update(
        pb.UpdateRequest(thread_id=thread.thread_id, metadata=struct(z=None))
    )
    if fits:
        assert "z" in (await update).thread.metadata
    else:
        await expect_error(update, grpc.StatusCode.FAILED_PRECONDITION, "METADATA_TOO_LARGE")
