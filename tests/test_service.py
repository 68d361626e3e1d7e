"""Every ThreadService RPC except Copy (tests/test_copy.py), over a real channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio

from tests.rpc_helpers import entries, expect_error, history, new_thread, struct
from threads_server.store.keys import ThreadKeys, request_thread_id
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub


# --- thread ids -------------------------------------------------------------------------

BAD_IDS = ["nope", "1234", str(uuid.uuid4())[:-1], str(uuid.uuid4()) + "0", " " + str(uuid.uuid4())]
BAD_IDS.append(str(uuid.uuid4()).replace("-", ""))
BAD_IDS.append("g" + str(uuid.uuid4())[1:])


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_malformed_thread_id_is_invalid_argument_on_every_rpc(
    stub: Stub, bad_id: str
) -> None:
    calls: list[Awaitable[Any]] = [
        stub.Create(pb.CreateRequest(thread_id=bad_id)),
        stub.Get(pb.GetRequest(thread_id=bad_id)),
        stub.Update(pb.UpdateRequest(thread_id=bad_id)),
        stub.Delete(pb.DeleteRequest(thread_id=bad_id)),
        stub.Append(pb.AppendRequest(thread_id=bad_id, entries=entries({"a": 1}))),
        stub.GetHistory(pb.GetHistoryRequest(thread_id=bad_id)),
        stub.Copy(pb.CopyRequest(thread_id=bad_id)),
    ]
    for call in calls:
        await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_THREAD_ID")


async def test_empty_thread_id_is_invalid_except_on_create(stub: Stub) -> None:
    await expect_error(stub.Get(pb.GetRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(stub.Copy(pb.CopyRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    created = (await stub.Create(pb.CreateRequest())).thread
    assert str(uuid.UUID(created.thread_id)) == created.thread_id


async def test_missing_thread_is_not_found_on_every_rpc(stub: Stub) -> None:
    missing = str(uuid.uuid4())
    calls: list[Awaitable[Any]] = [
        stub.Get(pb.GetRequest(thread_id=missing)),
        stub.Update(pb.UpdateRequest(thread_id=missing, metadata=struct(a=1))),
        stub.Delete(pb.DeleteRequest(thread_id=missing)),
        stub.Append(pb.AppendRequest(thread_id=missing, entries=entries({"a": 1}))),
        stub.GetHistory(pb.GetHistoryRequest(thread_id=missing)),
        stub.Copy(pb.CopyRequest(thread_id=missing)),
    ]
    for call in calls:
        error = await expect_error(call, grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND")
        assert missing in str(error.details())


async def test_ids_are_accepted_in_any_case_and_returned_lowercase(stub: Stub) -> None:
    upper = str(uuid.uuid4()).upper()
    created = (await stub.Create(pb.CreateRequest(thread_id=upper))).thread
    assert created.thread_id == upper.lower()
    got = (await stub.Get(pb.GetRequest(thread_id=upper))).thread
    assert got.thread_id == upper.lower()


# --- Create -----------------------------------------------------------------------------


async def test_create_with_metadata_and_history(stub: Stub) -> None:
    thread_id = str(uuid.uuid4())
    response = await stub.Create(
        pb.CreateRequest(
            thread_id=thread_id,
            metadata=struct(user="ada", n=1.5, nested={"a": [1, "two", None, True]}),
            history=entries({"role": "user", "text": "hi"}, {"role": "ai", "text": "hello"}),
        )
    )
    thread = response.thread
    assert thread.thread_id == thread_id
    assert thread.history_length == 2
    assert thread.copied_from == ""
    assert thread.created_at.ToNanoseconds() > 0
    assert thread.updated_at == thread.created_at
    assert thread.metadata == struct(user="ada", n=1.5, nested={"a": [1, "two", None, True]})
    assert (await stub.Get(pb.GetRequest(thread_id=thread_id))).thread == thread
    stored = await history(stub, thread_id)
    assert [e.data["text"] for e in stored] == ["hi", "hello"]
    assert [e.index for e in stored] == [0, 1]
    assert all(e.created_at == thread.created_at for e in stored)


async def test_create_ignores_client_supplied_index_and_created_at(stub: Stub) -> None:
    sent = entries({"a": 1})
    sent[0].index = 42
    sent[0].created_at.FromSeconds(1)
    thread = (await stub.Create(pb.CreateRequest(history=sent))).thread
    (stored,) = await history(stub, thread.thread_id)
    assert stored.index == 0
    assert stored.created_at == thread.created_at


async def test_create_existing_id_is_already_exists_and_changes_nothing(stub: Stub) -> None:
    thread = await new_thread(stub, 2, owner="a")
    request = pb.CreateRequest(
        thread_id=thread.thread_id, metadata=struct(owner="b"), history=entries({"x": 1})
    )
    await expect_error(
        stub.Create(request), grpc.StatusCode.ALREADY_EXISTS, "THREAD_ALREADY_EXISTS"
    )
    request.if_exists = pb.IF_EXISTS_RAISE
    await expect_error(stub.Create(request), grpc.StatusCode.ALREADY_EXISTS)
    assert (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread == thread


async def test_create_if_exists_do_nothing_returns_existing_thread_unchanged(stub: Stub) -> None:
    thread = await new_thread(stub, 3, owner="a")
    response = await stub.Create(
        pb.CreateRequest(
            thread_id=thread.thread_id,
            metadata=struct(owner="b"),
            history=entries({"x": 1}),
            if_exists=pb.IF_EXISTS_DO_NOTHING,
        )
    )
    assert response.thread == thread
    assert len(await history(stub, thread.thread_id)) == 3


async def test_create_rejects_unknown_if_exists(stub: Stub) -> None:
    request = pb.CreateRequest()
    request.if_exists = 7  # type: ignore[assignment]
    await expect_error(stub.Create(request), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IF_EXISTS")


async def test_concurrent_creates_of_one_id_make_exactly_one_thread(stub: Stub) -> None:
    thread_id = str(uuid.uuid4())
    requests = [
        pb.CreateRequest(thread_id=thread_id, metadata=struct(n=i), history=entries({"n": i}))
        for i in range(10)
    ]
    results = await asyncio.gather(*(stub.Create(r) for r in requests), return_exceptions=True)
    winners = [r for r in results if isinstance(r, pb.CreateResponse)]
    assert len(winners) == 1
    assert all(
        isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.ALREADY_EXISTS
        for r in results
        if r not in winners
    )
    stored = await history(stub, thread_id)
    assert [e.data["n"] for e in stored] == [winners[0].thread.metadata["n"]]


# --- Create with a request_id (AIP-155) -------------------------------------------------


async def test_create_retry_with_request_id_returns_the_same_thread(stub: Stub) -> None:
    request = pb.CreateRequest(
        request_id=str(uuid.uuid4()), metadata=struct(a=1), history=entries({"i": 0}, {"i": 1})
    )
    first = (await stub.Create(request)).thread
    again = (await stub.Create(request)).thread
    assert again.thread_id == first.thread_id
    assert first.thread_id == request_thread_id(request.request_id)
    assert again.created_at == first.created_at
    assert len(await history(stub, first.thread_id)) == 2
    other = (await stub.Create(pb.CreateRequest(request_id=str(uuid.uuid4())))).thread
    assert other.thread_id != first.thread_id


async def test_create_retry_with_request_id_and_own_thread_id_is_not_already_exists(
    stub: Stub,
) -> None:
    thread_id = str(uuid.uuid4())
    request = pb.CreateRequest(thread_id=thread_id, request_id="req-1", history=entries({}))
    first = (await stub.Create(request)).thread
    again = (await stub.Create(request)).thread
    assert again == first
    await expect_error(
        stub.Create(pb.CreateRequest(thread_id=thread_id, request_id="req-2")),
        grpc.StatusCode.ALREADY_EXISTS,
        "THREAD_ALREADY_EXISTS",
    )


async def test_create_retry_ignores_metadata_wire_order(channel: aio.Channel) -> None:
    """Go randomises map order on the wire; a retry must still match its first attempt.
    Concatenated messages merge, so each chunk adds one map entry in the order given."""
    request_id = str(uuid.uuid4())
    values = {"a": 1, "b": 2, "c": 3}

    def body(order: str) -> bytes:
        return b"".join(
            pb.CreateRequest(
                request_id=request_id, metadata=struct(**{k: values[k]})
            ).SerializeToString()
            for k in order
        )

    create = channel.unary_unary(
        "/threads.v1.ThreadService/Create",
        request_serializer=None,
        response_deserializer=pb.CreateResponse.FromString,
    )
    first = (await create(body("abc"))).thread
    assert (await create(body("cab"))).thread.thread_id == first.thread_id
    assert first.metadata == struct(**values)


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": struct(a=2)},
        {"history": entries({"i": 9})},
        {"if_exists": pb.IF_EXISTS_DO_NOTHING},
    ],
    ids=["metadata", "history", "if_exists"],
)
async def test_create_request_id_reused_with_other_parameters(
    stub: Stub, redis: Any, change: dict[str, Any]
) -> None:
    request_id = str(uuid.uuid4())
    base: dict[str, Any] = {"request_id": request_id, "metadata": struct(a=1)}
    thread = (await stub.Create(pb.CreateRequest(**base))).thread
    keys = ThreadKeys(thread.thread_id)
    before = await redis.dump(keys.meta)
    await expect_error(
        stub.Create(pb.CreateRequest(**(base | change))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    assert await redis.dump(keys.meta) == before


async def test_a_late_create_retry_does_not_bring_a_deleted_thread_back(
    stub: Stub, redis: Any
) -> None:
    request = pb.CreateRequest(request_id=str(uuid.uuid4()), history=entries({}))
    thread = (await stub.Create(request)).thread
    await stub.Delete(pb.DeleteRequest(thread_id=thread.thread_id))
    await expect_error(stub.Create(request), grpc.StatusCode.FAILED_PRECONDITION, "THREAD_DELETED")
    keys = ThreadKeys(thread.thread_id)
    assert await redis.exists(keys.meta, keys.history) == 0
    assert 0 < await redis.ttl(keys.create_request) <= 24 * 3600


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "é"])
async def test_create_rejects_a_bad_request_id(stub: Stub, bad: str) -> None:
    await expect_error(
        stub.Create(pb.CreateRequest(request_id=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST_ID",
    )


# --- Update -----------------------------------------------------------------------------


async def test_update_merges_metadata_keys(stub: Stub) -> None:
    thread = await new_thread(stub, 1, keep="yes", change="old")
    response = await stub.Update(
        pb.UpdateRequest(thread_id=thread.thread_id, metadata=struct(change="new", added=[1, 2]))
    )
    updated = response.thread
    assert updated.metadata == struct(keep="yes", change="new", added=[1, 2])
    assert updated.history_length == 1
    assert updated.created_at == thread.created_at
    assert updated.updated_at.ToNanoseconds() >= thread.updated_at.ToNanoseconds()
    assert (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread == updated


async def test_metadata_numbers_keep_full_precision(stub: Stub) -> None:
    value = 0.1 + 0.2  # 0.30000000000000004: lost by 14-digit JSON encoders
    thread = await new_thread(stub, big=2.0**53 - 1, frac=value)
    got = (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread
    assert got.metadata["frac"] == value
    assert got.metadata["big"] == 2.0**53 - 1


# --- Delete -----------------------------------------------------------------------------


async def test_delete_removes_thread_and_history(stub: Stub, redis: Any) -> None:
    thread = await new_thread(stub, 5)
    keys = ThreadKeys(thread.thread_id)
    assert await redis.exists(keys.meta, keys.history) == 2
    await stub.Delete(pb.DeleteRequest(thread_id=thread.thread_id))
    assert await redis.exists(keys.meta, keys.history) == 0
    await expect_error(
        stub.Get(pb.GetRequest(thread_id=thread.thread_id)), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        stub.Delete(pb.DeleteRequest(thread_id=thread.thread_id)), grpc.StatusCode.NOT_FOUND
    )


# --- Append -----------------------------------------------------------------------------


async def test_append_adds_entries_in_order_with_server_indexes(stub: Stub) -> None:
    thread = await new_thread(stub, 2)
    sent = entries({"i": 2}, {"i": 3}, {"i": 4})
    sent[1].index = 99
    response = await stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=sent))
    assert response.history_length == 5
    stored = await history(stub, thread.thread_id)
    assert [e.data["i"] for e in stored] == [0, 1, 2, 3, 4]
    assert [e.index for e in stored] == [0, 1, 2, 3, 4]
    assert stored[2].created_at == stored[4].created_at
    assert stored[2].created_at.ToNanoseconds() >= stored[1].created_at.ToNanoseconds()
    got = (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread
    assert got.history_length == 5
    assert got.updated_at.ToNanoseconds() >= thread.updated_at.ToNanoseconds()


async def test_append_to_empty_history(stub: Stub) -> None:
    thread = await new_thread(stub)
    assert thread.history_length == 0
    assert await history(stub, thread.thread_id) == []
    response = await stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"a": 1}))
    )
    assert response.history_length == 1


async def test_append_without_entries_is_invalid(stub: Stub) -> None:
    thread = await new_thread(stub)
    await expect_error(
        stub.Append(pb.AppendRequest(thread_id=thread.thread_id)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "NO_ENTRIES",
    )


async def test_append_expected_length(stub: Stub) -> None:
    thread = await new_thread(stub, 2)
    ok = await stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"a": 1}), expected_length=2)
    )
    assert ok.history_length == 3
    error = await expect_error(
        stub.Append(
            pb.AppendRequest(
                thread_id=thread.thread_id, entries=entries({"b": 1}), expected_length=2
            )
        ),
        grpc.StatusCode.ABORTED,
        "HISTORY_LENGTH_MISMATCH",
    )
    assert "3" in str(error.details())
    assert len(await history(stub, thread.thread_id)) == 3
    await expect_error(
        stub.Append(
            pb.AppendRequest(
                thread_id=thread.thread_id, entries=entries({"b": 1}), expected_length=-1
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_EXPECTED_LENGTH",
    )


async def test_expected_length_zero_on_empty_history(stub: Stub) -> None:
    thread = await new_thread(stub)
    ok = await stub.Append(
        pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"a": 1}), expected_length=0)
    )
    assert ok.history_length == 1


async def test_concurrent_appends_with_expected_length_exactly_one_wins(stub: Stub) -> None:
    thread = await new_thread(stub, 1)
    calls = [
        stub.Append(
            pb.AppendRequest(
                thread_id=thread.thread_id, entries=entries({"w": i}, {"w": i}), expected_length=1
            )
        )
        for i in range(8)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert sum(isinstance(r, pb.AppendResponse) for r in results) == 1
    assert len(await history(stub, thread.thread_id)) == 3


async def test_too_many_entries_in_one_request_is_invalid_and_writes_nothing(
    stub: Stub,
) -> None:
    thread = await new_thread(stub)
    too_many = entries(*({} for _ in range(10_001)))
    await expect_error(
        stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=too_many)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_ENTRIES",
    )
    await expect_error(
        stub.Create(pb.CreateRequest(history=too_many)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_ENTRIES",
    )
    assert (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread.history_length == 0


async def test_append_of_10000_entries_is_atomic_and_ordered(stub: Stub) -> None:
    """Larger than one RPUSH slice in the script (1,000), so slicing must keep order."""
    thread = await new_thread(stub)
    response = await stub.Append(
        pb.AppendRequest(
            thread_id=thread.thread_id, entries=entries(*({"i": i} for i in range(10_000)))
        )
    )
    assert response.history_length == 10_000
    stored = await history(stub, thread.thread_id)
    assert [e.data["i"] for e in stored] == list(range(10_000))


# --- GetHistory -------------------------------------------------------------------------


async def test_paging_through_more_than_2000_entries(stub: Stub) -> None:
    thread = await new_thread(stub, 2_345)
    first = await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread.thread_id))
    assert len(first.entries) == 100  # page_size 0 means 100
    assert first.next_page_token
    pages = 0
    seen: list[pb.Entry] = []
    token = ""
    while True:
        page = await stub.GetHistory(
            pb.GetHistoryRequest(thread_id=thread.thread_id, page_size=300, page_token=token)
        )
        pages += 1
        seen.extend(page.entries)
        token = page.next_page_token
        if not token:
            break
    assert pages == 8  # 7 full pages of 300 + 1 of 245
    assert [e.index for e in seen] == list(range(2_345))
    assert [e.data["i"] for e in seen] == list(range(2_345))


async def test_page_size_is_clamped_to_1000(stub: Stub) -> None:
    thread = await new_thread(stub, 1_001)
    page = await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread.thread_id, page_size=5_000))
    assert len(page.entries) == 1_000
    last = await stub.GetHistory(
        pb.GetHistoryRequest(thread_id=thread.thread_id, page_token=page.next_page_token)
    )
    assert [e.index for e in last.entries] == [1_000]
    assert last.next_page_token == ""


async def test_exact_last_page_has_no_token(stub: Stub) -> None:
    thread = await new_thread(stub, 4)
    page = await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread.thread_id, page_size=4))
    assert len(page.entries) == 4
    assert page.next_page_token == ""


async def test_negative_page_size_is_invalid(stub: Stub) -> None:
    thread = await new_thread(stub, 1)
    await expect_error(
        stub.GetHistory(pb.GetHistoryRequest(thread_id=thread.thread_id, page_size=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    )


async def test_page_token_from_another_thread_or_garbage_is_invalid(stub: Stub) -> None:
    one = await new_thread(stub, 3)
    other = await new_thread(stub, 3)
    page = await stub.GetHistory(pb.GetHistoryRequest(thread_id=one.thread_id, page_size=1))
    token = page.next_page_token
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for bad in (token[:-3], tampered, "garbage", "!!!", "é", token + "A"):
        await expect_error(
            stub.GetHistory(pb.GetHistoryRequest(thread_id=one.thread_id, page_token=bad)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )
    await expect_error(
        stub.GetHistory(pb.GetHistoryRequest(thread_id=other.thread_id, page_token=token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_page_token_stays_valid_while_history_grows(stub: Stub) -> None:
    thread = await new_thread(stub, 3)
    page = await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread.thread_id, page_size=2))
    await stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=entries({"i": 3})))
    rest = await stub.GetHistory(
        pb.GetHistoryRequest(thread_id=thread.thread_id, page_token=page.next_page_token)
    )
    assert [e.data["i"] for e in rest.entries] == [2, 3]


async def test_metadata_with_many_keys(stub: Stub) -> None:
    """More keys than one HSET slice in the scripts (500 pairs), and than Lua's unpack()
    accepts at once (8,000 values), still go in whole. Null values keep 8,800 keys within
    the default 64 KiB metadata limit."""
    many: dict[str, None] = dict.fromkeys(f"k{i}" for i in range(4_400))
    created = (await stub.Create(pb.CreateRequest(metadata=struct(**many)))).thread
    assert created.metadata == struct(**many)
    updated = (
        await stub.Update(
            pb.UpdateRequest(
                thread_id=created.thread_id,
                metadata=struct(**dict.fromkeys(f"u{i}" for i in range(4_400))),
            )
        )
    ).thread
    assert len(updated.metadata) == 8_800
    assert "k4399" in updated.metadata
    assert "u4399" in updated.metadata
