"""Search and Count against real Redis 7 and Valkey (the cluster: tests/test_cluster.py):
every filter and sort against a brute force from Get, offsets, paging while others write,
expiry, delete, auth isolation, the index kept by every write, bad input for every field,
indexing off, and a model-based property test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import search_checks
from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import Started, StartServer
from tests.redis_process import RedisProcess
from tests.rpc_helpers import expect_error, struct
from tests.search_checks import Caller, brute_force
from threads_server.server import ThreadsServer
from threads_server.store.keys import ShardKeys, ThreadKeys, shard_of
from threads_service_client.pb import threads_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
async def auth_server(redis_server: RedisProcess) -> AsyncIterator[Started]:
    settings = settings_for_test(auth_jwt_secret=search_checks.SECRET)
    server = ThreadsServer(settings, redis_server.url)
    port = await server.start()

    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Started(server, channel)
    await server.stop(grace=1)


@pytest.fixture
def caller(auth_server: Started) -> Caller:
    return Caller(auth_server.stub)


async def test_every_filter_and_sort_matches_a_brute_force_from_get(caller: Caller) -> None:
    await search_checks.check_every_filter_and_sort(caller)


async def test_offset_skips_matches(caller: Caller) -> None:
    await search_checks.check_offset(caller)


async def test_paging_while_others_write_returns_each_thread_once(caller: Caller) -> None:
    await search_checks.check_paging_while_others_write(caller)


async def test_expired_and_deleted_threads_are_never_found_or_counted(caller: Caller) -> None:
    await search_checks.check_expiry_and_delete(caller)


async def test_expired_threads_leave_the_index_on_the_next_read(caller: Caller, redis: Any) -> None:
    """Purge before reading: the index keeps no entry of an expired thread once a query
    has read its shard."""
    thread = await caller.create(ttl_ms=200, user="gone")
    shard = ThreadKeys(thread.thread_id, caller.sub).shard
    assert await redis.zscore(shard.expiring, thread.thread_id) is not None
    await asyncio.sleep(max(0.0, thread.expire_time.ToMicroseconds() / 1e6 - time.time()) + 0.02)
    assert await redis.zscore(shard.by_created, thread.thread_id) is not None  # left behind
    assert await caller.count() == 0
    for key in (shard.by_created, shard.by_updated, shard.by_id, shard.expiring):
        assert await redis.zscore(key, thread.thread_id) is None, key
    assert await redis.hget(shard.entries, thread.thread_id) is None
    value = struct(user="gone").fields["user"].SerializeToString(deterministic=True)
    assert await redis.exists(shard.metadata(b"m:user", value)) == 0


async def test_a_caller_never_sees_or_counts_another_callers_threads(
    auth_server: Started,
) -> None:
    alice, bob = Caller(auth_server.stub), Caller(auth_server.stub)
    a = await alice.create(user="same")
    b = await bob.create(user="same")
    await alice.copy(a.thread_id)
    assert {t.owner for t in await alice.search_all(100)} == {alice.sub}
    assert [t.thread_id for t in await bob.search_all(100, metadata=struct(user="same"))] == [
        b.thread_id
    ]
    assert await bob.count() == 1
    assert await alice.count() == 2
    assert await bob.search_all(10, thread_ids=[a.thread_id]) == []
    assert await bob.count(copied_from=a.thread_id) == 0


async def test_updated_at_order_follows_create_update_append_and_copy(caller: Caller) -> None:
    first, second, third = [await caller.create(user="o") for _ in range(3)]

    async def order() -> list[str]:
        threads = await caller.search_all(10, sort_by=pb.SORT_BY_UPDATED_AT)
        return [t.thread_id for t in threads]

    assert await order() == [third.thread_id, second.thread_id, first.thread_id]
    await caller.update(first.thread_id, user="o2")
    assert (await order())[0] == first.thread_id
    await caller.append(second.thread_id)
    assert (await order())[0] == second.thread_id
    copied = await caller.copy(third.thread_id)
    assert (await order())[0] == copied.thread_id
    live = await caller.live()
    assert await order() == brute_force(live, sort_by=pb.SORT_BY_UPDATED_AT)


async def test_every_write_keeps_the_index_in_the_threads_shard(caller: Caller, redis: Any) -> None:
    """The index of a thread sits in its own shard (same slot), changed by the write."""
    thread = await caller.create(user="k", kind=1)
    keys = ThreadKeys(thread.thread_id, caller.sub)
    shard = keys.shard
    assert shard == ShardKeys(caller.sub, shard_of(thread.thread_id))
    assert keys.tag in shard.by_created
    member = thread.thread_id.encode()
    user_k = shard.metadata(b"m:user", struct(v="k").fields["v"].SerializeToString())
    user_z = shard.metadata(b"m:user", struct(v="z").fields["v"].SerializeToString())
    assert member in await redis.zrange(user_k, 0, -1)
    await caller.update(thread.thread_id, user="z")
    assert member not in await redis.zrange(user_k, 0, -1)
    assert member in await redis.zrange(user_z, 0, -1)
    await caller.delete(thread.thread_id)
    for key in (user_z, shard.by_created, shard.by_updated, shard.by_id):
        assert member not in await redis.zrange(key, 0, -1), key
    assert await redis.hget(shard.entries, thread.thread_id) is None


async def test_a_page_token_works_only_for_its_query(caller: Caller) -> None:
    for _ in range(3):
        await caller.create(user="t")
    first = await caller.stub.Search(pb.SearchRequest(page_size=1), metadata=caller.md)
    token = first.next_page_token
    assert token
    others: list[dict[str, Any]] = [
        {"metadata": struct(user="t")},
        {"sort_by": pb.SORT_BY_UPDATED_AT},
        {"sort_order": pb.SORT_ORDER_ASC},
        {"thread_ids": [first.threads[0].thread_id]},
        {"copied_from": first.threads[0].thread_id},
    ]
    for fields in others:
        request = pb.SearchRequest(page_size=1, page_token=token, **fields)
        await expect_error(
            caller.stub.Search(request, metadata=caller.md), INVALID, "INVALID_PAGE_TOKEN"
        )
    for garbled in (token[:-2], token + "A", "x", "!!!", token[:10] + "B" + token[11:]):
        request = pb.SearchRequest(page_token=garbled)
        await expect_error(
            caller.stub.Search(request, metadata=caller.md), INVALID, "INVALID_PAGE_TOKEN"
        )


BAD_SEARCHES: list[tuple[dict[str, Any], str]] = [
    ({"page_size": -1}, "INVALID_PAGE_SIZE"),
    ({"offset": -1}, "INVALID_OFFSET"),
    ({"offset": 10_001}, "INVALID_OFFSET"),
    ({"offset": 1, "page_token": "x"}, "INVALID_OFFSET"),
    ({"sort_by": 9}, "INVALID_SORT_BY"),
    ({"sort_order": -1}, "INVALID_SORT_ORDER"),
    ({"thread_ids": ["nope"]}, "INVALID_THREAD_ID"),
    ({"thread_ids": [str(uuid.uuid4()) for _ in range(1001)]}, "TOO_MANY_THREAD_IDS"),
    ({"copied_from": "nope"}, "INVALID_THREAD_ID"),
    ({"metadata": struct(big="x" * 70_000)}, "METADATA_TOO_LARGE"),
    ({"page_token": "garbage"}, "INVALID_PAGE_TOKEN"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_SEARCHES, ids=lambda v: str(v)[:40])
async def test_bad_search_input_is_invalid_argument(
    caller: Caller, fields: dict[str, Any], reason: str
) -> None:
    await expect_error(
        caller.stub.Search(pb.SearchRequest(**fields), metadata=caller.md), INVALID, reason
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [(f, r) for f, r in BAD_SEARCHES if set(f) <= {"thread_ids", "copied_from", "metadata"}],
    ids=lambda v: str(v)[:40],
)
async def test_bad_count_input_is_invalid_argument(
    caller: Caller, fields: dict[str, Any], reason: str
) -> None:
    await expect_error(
        caller.stub.Count(pb.CountRequest(**fields), metadata=caller.md), INVALID, reason
    )


async def test_page_size_defaults_to_10_and_is_capped(caller: Caller) -> None:
    for _ in range(12):
        await caller.create()
    page = await caller.stub.Search(pb.SearchRequest(), metadata=caller.md)
    assert len(page.threads) == 10 and page.next_page_token
    page = await caller.stub.Search(pb.SearchRequest(page_size=5000), metadata=caller.md)
    assert len(page.threads) == 12 and not page.next_page_token


async def test_with_indexing_off_search_and_count_fail_and_writes_leave_no_index(
    start_server: StartServer, redis_server: RedisProcess, redis: Any
) -> None:
    started = await start_server(settings_for_test(search_index=False), redis_server.url)
    thread = (await started.stub.Create(pb.CreateRequest(metadata=struct(a=1)))).thread
    shard = ThreadKeys(thread.thread_id).shard
    assert await redis.zscore(shard.by_created, thread.thread_id) is None
    failed = grpc.StatusCode.FAILED_PRECONDITION
    await expect_error(started.stub.Search(pb.SearchRequest()), failed, "SEARCH_DISABLED")
    await expect_error(started.stub.Count(pb.CountRequest()), failed, "SEARCH_DISABLED")
    await started.stub.Delete(pb.DeleteRequest(thread_id=thread.thread_id))


# --- a model of random writes -------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("update"), st.integers(0, 30), st.integers(0, 2)),
        st.tuples(st.just("copy"), st.integers(0, 30), st.integers(0, 2)),
        st.tuples(st.just("delete"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("append"), st.integers(0, 30), st.just(0)),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
async def test_random_writes_match_a_model(auth_server: Started, ops: list[Any]) -> None:
    """Random create (some expiring at once) / update / copy / delete / append sequences:
    Search and Count always equal the model (the threads Get still finds, filtered)."""
    caller = Caller(auth_server.stub)
    model: dict[str, dict[str, Any]] = {}  # live thread id -> its metadata
    for op, target, value in ops:
        ids = sorted(model)
        if op == "create":
            thread = await caller.create(ttl_ms=1 if value else 0, user=f"u{target}")
            if not value:
                model[thread.thread_id] = {"user": f"u{target}"}
        elif not ids:
            continue
        elif op == "update":
            await caller.update(ids[target % len(ids)], user=f"u{value}")
            model[ids[target % len(ids)]]["user"] = f"u{value}"
        elif op == "copy":
            source = ids[target % len(ids)]
            copied = await caller.copy(source, kind=value)
            model[copied.thread_id] = {**model[source], "kind": value}
        elif op == "delete":
            await caller.delete(ids[target % len(ids)])
            del model[ids[target % len(ids)]]
        else:
            await caller.append(ids[target % len(ids)])
    await asyncio.sleep(0.002)  # the 1 ms threads have expired
    assert {t.thread_id for t in await caller.live()} == set(model)
    for user in ("u0", "u1", "u2", None):
        query: dict[str, Any] = {"metadata": struct(user=user)} if user else {}
        expected = {i for i, m in model.items() if user is None or m["user"] == user}
        got = await caller.search_all(4, **query)
        assert [t.thread_id for t in got] == brute_force(await caller.live(), **query)
        assert {t.thread_id for t in got} == expected
        assert await caller.count(**query) == len(expected)


async def test_an_id_reused_after_expiry_is_indexed_as_the_new_thread(caller: Caller) -> None:
    """Create may reuse the id of a thread that expired; if no query purged the old one's
    entries yet, the new thread must not inherit them."""
    thread_id = str(uuid.uuid4())
    request = pb.CreateRequest(thread_id=thread_id, metadata=struct(user="old"))
    request.ttl.FromMilliseconds(100)
    old = (await caller.stub.Create(request, metadata=caller.md)).thread
    await asyncio.sleep(max(0.0, old.expire_time.ToMicroseconds() / 1e6 - time.time()) + 0.02)
    again = pb.CreateRequest(thread_id=thread_id, metadata=struct(user="new"))
    await caller.stub.Create(again, metadata=caller.md)
    caller.made.append(thread_id)
    assert await caller.search_all(10, metadata=struct(user="old")) == []
    assert await caller.count(metadata=struct(user="old")) == 0
    assert [t.thread_id for t in await caller.search_all(10, metadata=struct(user="new"))] == [
        thread_id
    ]
    assert await caller.count() == 1
