"""Copy: atomic, independent, forkable and idempotent, over a real channel and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.rpc_helpers import entries, expect_error, history, new_thread, struct
from threads_server.store.keys import ThreadKeys
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub


async def copy(stub: Stub, thread_id: str, **fields: Any) -> pb.Thread:
    return (await stub.Copy(pb.CopyRequest(thread_id=thread_id, **fields))).thread


async def threads_in_slot(redis: Any, thread_id: str) -> set[str]:
    """Ids of the thread and its copies (and theirs), as stored under its hash tag (its
    shard, which other threads share: they are left out by their copied_from)."""
    tag = ThreadKeys(thread_id).tag
    pattern = f"thr:{tag.replace('{', '[{]').replace('}', '[}]')}:*:meta"
    sources = {}
    async for key in redis.scan_iter(match=pattern):
        sources[key.decode().split(":")[2]] = (await redis.hget(key, "copied_from") or b"").decode()
    family = {thread_id} & set(sources)
    while grown := {i for i, source in sources.items() if source in family} - family:
        family |= grown
    return family


async def test_copy_duplicates_thread_and_history_byte_for_byte(stub: Stub, redis: Any) -> None:
    source = await new_thread(stub, 25, owner="ada", topic="x")
    copied = await copy(stub, source.thread_id)

    assert copied.thread_id != source.thread_id
    assert str(uuid.UUID(copied.thread_id)) == copied.thread_id
    assert copied.copied_from == source.thread_id
    assert copied.metadata == source.metadata
    assert copied.history_length == 25
    assert copied.created_at.ToNanoseconds() >= source.created_at.ToNanoseconds()
    assert copied.updated_at == copied.created_at
    assert (await stub.Get(pb.GetRequest(thread_id=copied.thread_id))).thread == copied

    source_keys, copy_keys = ThreadKeys(source.thread_id), ThreadKeys(copied.thread_id)
    assert await redis.lrange(copy_keys.history, 0, -1) == await redis.lrange(
        source_keys.history, 0, -1
    )
    assert await history(stub, copied.thread_id) == await history(stub, source.thread_id)


async def test_copy_lands_in_the_source_hash_slot(stub: Stub) -> None:
    source = await new_thread(stub, 1)
    copied = await copy(stub, source.thread_id)
    assert ThreadKeys(copied.thread_id).tag == ThreadKeys(source.thread_id).tag
    assert copied.thread_id[-1] == source.thread_id[-1]  # the shard digit


async def test_copy_merges_request_metadata_over_the_source(stub: Stub) -> None:
    source = await new_thread(stub, 1, keep=1, change="old")
    copied = await copy(stub, source.thread_id, metadata=struct(change="new", added=True))
    assert copied.metadata == struct(keep=1, change="new", added=True)
    unchanged = (await stub.Get(pb.GetRequest(thread_id=source.thread_id))).thread
    assert unchanged == source


async def test_copy_of_empty_history(stub: Stub) -> None:
    source = await new_thread(stub)
    copied = await copy(stub, source.thread_id)
    assert copied.history_length == 0
    assert await history(stub, copied.thread_id) == []
    await stub.Append(pb.AppendRequest(thread_id=copied.thread_id, entries=entries({"a": 1})))
    assert len(await history(stub, copied.thread_id)) == 1
    assert await history(stub, source.thread_id) == []


async def test_copy_is_independent_both_ways(stub: Stub) -> None:
    source = await new_thread(stub, 3, owner="a")
    copied = await copy(stub, source.thread_id)

    await stub.Append(pb.AppendRequest(thread_id=source.thread_id, entries=entries({"s": 1})))
    await stub.Update(pb.UpdateRequest(thread_id=source.thread_id, metadata=struct(owner="s")))
    await stub.Append(
        pb.AppendRequest(thread_id=copied.thread_id, entries=entries({"c": 1}, {"c": 2}))
    )
    await stub.Update(pb.UpdateRequest(thread_id=copied.thread_id, metadata=struct(owner="c")))

    source_now = (await stub.Get(pb.GetRequest(thread_id=source.thread_id))).thread
    copy_now = (await stub.Get(pb.GetRequest(thread_id=copied.thread_id))).thread
    assert (source_now.history_length, source_now.metadata["owner"]) == (4, "s")
    assert (copy_now.history_length, copy_now.metadata["owner"]) == (5, "c")
    assert "s" in (await history(stub, source.thread_id))[3].data
    assert "c" in (await history(stub, copied.thread_id))[3].data

    await stub.Delete(pb.DeleteRequest(thread_id=source.thread_id))
    assert len(await history(stub, copied.thread_id)) == 5
    second = await copy(stub, copied.thread_id)
    await stub.Delete(pb.DeleteRequest(thread_id=copied.thread_id))
    assert len(await history(stub, second.thread_id)) == 5


async def test_copy_of_a_copy(stub: Stub) -> None:
    source = await new_thread(stub, 4, generation=0)
    first = await copy(stub, source.thread_id, metadata=struct(generation=1))
    second = await copy(stub, first.thread_id, metadata=struct(generation=2))
    assert second.copied_from == first.thread_id
    assert first.copied_from == source.thread_id
    assert second.metadata["generation"] == 2
    assert second.thread_id[-1] == source.thread_id[-1]
    assert await history(stub, second.thread_id) == await history(stub, source.thread_id)


async def test_copy_does_not_touch_the_source_updated_at(stub: Stub) -> None:
    source = await new_thread(stub, 2)
    await copy(stub, source.thread_id)
    assert (await stub.Get(pb.GetRequest(thread_id=source.thread_id))).thread == source


# --- fork at a point in history ------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 10])
async def test_fork_copies_only_the_first_n_entries(stub: Stub, n: int) -> None:
    source = await new_thread(stub, 10)
    forked = await copy(stub, source.thread_id, history_length=n)
    assert forked.history_length == n
    assert await history(stub, forked.thread_id) == (await history(stub, source.thread_id))[:n]
    appended = await stub.Append(
        pb.AppendRequest(thread_id=forked.thread_id, entries=entries({"after": "fork"}))
    )
    assert appended.history_length == n + 1
    assert (await history(stub, forked.thread_id))[n].index == n


async def test_fork_past_the_end_is_out_of_range_and_creates_nothing(
    stub: Stub, redis: Any
) -> None:
    source = await new_thread(stub, 3)
    before = await threads_in_slot(redis, source.thread_id)
    error = await expect_error(
        stub.Copy(pb.CopyRequest(thread_id=source.thread_id, history_length=4)),
        grpc.StatusCode.OUT_OF_RANGE,
        "HISTORY_LENGTH_OUT_OF_RANGE",
    )
    assert "3" in str(error.details())
    assert await threads_in_slot(redis, source.thread_id) == before


async def test_negative_history_length_is_invalid(stub: Stub) -> None:
    source = await new_thread(stub, 3)
    await expect_error(
        stub.Copy(pb.CopyRequest(thread_id=source.thread_id, history_length=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_HISTORY_LENGTH",
    )


# --- idempotent retries (AIP-155) -------------------------------------------------------------


async def test_retry_with_request_id_returns_the_same_copy(stub: Stub, redis: Any) -> None:
    source = await new_thread(stub, 3)
    request_id = str(uuid.uuid4())
    first = await copy(stub, source.thread_id, request_id=request_id)
    await stub.Append(pb.AppendRequest(thread_id=first.thread_id, entries=entries({"x": 1})))
    again = await copy(stub, source.thread_id.upper(), request_id=request_id)
    assert again.thread_id == first.thread_id
    assert again.history_length == 4  # the copy as it is now, not a new one
    assert len(await threads_in_slot(redis, source.thread_id)) == 2
    ttl = await redis.ttl(ThreadKeys(source.thread_id).copy_request(request_id))
    assert 86_000 < ttl <= 86_400


async def test_racing_retries_make_exactly_one_copy(stub: Stub, redis: Any) -> None:
    source = await new_thread(stub, 50)
    request = pb.CopyRequest(thread_id=source.thread_id, request_id=str(uuid.uuid4()))
    results = await asyncio.gather(*(stub.Copy(request) for _ in range(25)))
    assert len({r.thread.thread_id for r in results}) == 1
    family = await threads_in_slot(redis, source.thread_id)
    assert family == {source.thread_id, results[0].thread.thread_id}


async def test_without_request_id_every_call_makes_a_new_copy(stub: Stub) -> None:
    source = await new_thread(stub, 1)
    ids = {(await copy(stub, source.thread_id)).thread_id for _ in range(3)}
    assert len(ids) == 3


async def test_request_id_is_scoped_to_the_source(stub: Stub) -> None:
    request_id = str(uuid.uuid4())
    one, two = await new_thread(stub, 1), await new_thread(stub, 2)
    copy_one = await copy(stub, one.thread_id, request_id=request_id)
    copy_two = await copy(stub, two.thread_id, request_id=request_id)
    assert copy_one.copied_from == one.thread_id
    assert copy_two.copied_from == two.thread_id


async def test_request_id_reused_with_other_parameters_is_invalid(stub: Stub) -> None:
    source = await new_thread(stub, 3)
    request_id = str(uuid.uuid4())
    await copy(stub, source.thread_id, request_id=request_id, history_length=2)
    for changed in (
        pb.CopyRequest(thread_id=source.thread_id, request_id=request_id, history_length=1),
        pb.CopyRequest(thread_id=source.thread_id, request_id=request_id),
        pb.CopyRequest(
            thread_id=source.thread_id,
            request_id=request_id,
            history_length=2,
            metadata=struct(a=1),
        ),
    ):
        await expect_error(
            stub.Copy(changed), grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED"
        )


async def test_retry_after_the_copy_was_deleted_is_failed_precondition(stub: Stub) -> None:
    source = await new_thread(stub, 1)
    request_id = str(uuid.uuid4())
    first = await copy(stub, source.thread_id, request_id=request_id)
    await stub.Delete(pb.DeleteRequest(thread_id=first.thread_id))
    await expect_error(
        stub.Copy(pb.CopyRequest(thread_id=source.thread_id, request_id=request_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "COPY_DELETED",
    )


async def test_retry_after_the_source_was_deleted_still_returns_the_copy(stub: Stub) -> None:
    source = await new_thread(stub, 2)
    request_id = str(uuid.uuid4())
    first = await copy(stub, source.thread_id, request_id=request_id)
    await stub.Delete(pb.DeleteRequest(thread_id=source.thread_id))
    assert (await copy(stub, source.thread_id, request_id=request_id)) == first


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "tab\there", "ü"])
async def test_malformed_request_id_is_invalid(stub: Stub, bad: str) -> None:
    source = await new_thread(stub, 1)
    await expect_error(
        stub.Copy(pb.CopyRequest(thread_id=source.thread_id, request_id=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST_ID",
    )


# --- atomicity against concurrent Appends -------------------------------------------------


async def test_concurrent_appends_are_wholly_in_or_out_of_every_copy(stub: Stub) -> None:
    await appends_race_copies(stub)


async def appends_race_copies(stub: Stub) -> None:
    """Writers append 5-entry batches while copies are taken: every copy must hold a
    sequence of whole batches, each writer's in order, never a torn batch."""
    batch, writers, batches_per_writer, copies = 5, 4, 25, 40
    source = await new_thread(stub)

    async def writer(w: int) -> None:
        for b in range(batches_per_writer):
            await stub.Append(
                pb.AppendRequest(
                    thread_id=source.thread_id,
                    entries=entries(*({"w": w, "b": b, "k": k} for k in range(batch))),
                )
            )

    async def copier() -> list[str]:
        made = []
        for _ in range(copies):
            made.append((await copy(stub, source.thread_id)).thread_id)
            await asyncio.sleep(0)
        return made

    copying = asyncio.create_task(copier())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    copy_ids = await copying
    lengths = set()
    for copy_id in [*copy_ids, source.thread_id]:
        stored = await history(stub, copy_id)
        lengths.add(len(stored))
        assert len(stored) % batch == 0
        next_batch: dict[Any, int] = dict.fromkeys(range(writers), 0)
        for start in range(0, len(stored), batch):
            group = [e.data for e in stored[start : start + batch]]
            w, b = group[0]["w"], group[0]["b"]
            assert [(g["w"], g["b"], g["k"]) for g in group] == [(w, b, k) for k in range(batch)]
            assert b == next_batch[w]
            next_batch[w] += 1
    assert max(lengths) == batch * writers * batches_per_writer
    assert len(lengths) > 1, "copies were all taken before or after the writes; no race"


async def test_copy_with_many_metadata_keys(stub: Stub) -> None:
    source = await new_thread(stub, 1, origin="source")
    """More keys than Lua's unpack() takes at once; null values stay within 64 KiB."""
    many: dict[str, None] = dict.fromkeys(f"k{i}" for i in range(4_400))
    copied = await copy(stub, source.thread_id, metadata=struct(**many))
    assert len(copied.metadata) == 4_401
    assert copied.metadata["origin"] == "source"
    assert "k4399" in copied.metadata
