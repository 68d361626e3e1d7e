"""NaN and infinite numbers (issue 19, item 1), against a real server and Redis.

The bug: ``POST /threads {"metadata": {"x": NaN}}`` answered 500 after the thread was
written (a retry made a second), Append took ``Infinity`` with a 200, and from then on
every HTTP read of that thread (Get, GetHistory, an unfiltered Search) answered 500: JSON
has no such numbers. Now they are refused on every transport, with NUMBER_NOT_FINITE,
before Redis is touched; one already stored renders as proto3 JSON's "NaN", "Infinity",
"-Infinity" strings.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from tests.http_helpers import assert_status, base_url
from tests.rpc_helpers import entry, expect_error, struct
from tests.store_checks import untouched
from threads_server.pb import threads_pb2 as stored_pb
from threads_server.server import ThreadsServer
from threads_server.store import codec
from threads_server.store.keys import ThreadKeys
from threads_service_client.pb import threads_pb2 as pb

# JSON numbers that are no double: Python's json reads the first three as NaN and
# infinities (they are not JSON, but what Python and JavaScript clients write), 1e400 as
# infinity, and the 401-digit integer is past a double's range too.
NON_FINITE_JSON = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400]
NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.fixture
async def http(threads_server: ThreadsServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(threads_server), timeout=30) as client:
        yield client


async def _post_json(http: httpx.AsyncClient, method: str, path: str, body: str) -> httpx.Response:
    """A body as written, so that NaN and 1e400 reach the server as the caller sent them."""
    return await http.request(
        method, path, content=body.encode(), headers={"content-type": "application/json"}
    )


def _assert_not_finite(response: httpx.Response, field: str, key: str) -> None:
    error = assert_status(response, 400, 3, "NUMBER_NOT_FINITE")
    assert error["details"][0]["metadata"] == {"field": field, "key": key}, error
    assert "NaN or infinite" in error["message"] and repr(key) in error["message"], error


@pytest.mark.parametrize("number", NON_FINITE_JSON, ids=lambda n: n[:8])
async def test_create_refuses_them_over_http_and_writes_nothing(
    http: httpx.AsyncClient, redis: Any, number: str
) -> None:
    async with untouched(redis):
        response = await _post_json(http, "POST", "/threads", f'{{"metadata": {{"x": {number}}}}}')
    _assert_not_finite(response, "metadata", "x")


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("POST /threads", '{"metadata": {"x": {"b": [1, NaN]}}}', "metadata"),
        ("POST /threads", '{"history": [{"data": {}}, {"data": {"x": 1e400}}]}', "history[1]"),
        ("PATCH /threads/{id}", '{"metadata": {"ok": 1, "x": -Infinity}}', "metadata"),
        ("POST /threads/{id}/entries", '{"entries": [{"data": {"x": Infinity}}]}', "entries[0]"),
        ("POST /threads/{id}/copy", '{"metadata": {"x": NaN}}', "metadata"),
        ("POST /threads/search", '{"metadata": {"x": NaN}}', "metadata"),
        ("POST /threads/count", '{"metadata": {"x": -1e400}}', "metadata"),
    ],
    ids=["create-metadata", "create-history", "update", "append", "copy", "search", "count"],
)
async def test_every_write_and_filter_refuses_them_over_http(
    http: httpx.AsyncClient, redis: Any, route: str, body: str, field: str
) -> None:
    created = await http.post("/threads", json={"metadata": {"keep": 1}})
    method, path = route.split(" ")
    async with untouched(redis):
        response = await _post_json(http, method, path.format(id=created.json()["thread_id"]), body)
    _assert_not_finite(response, field, "x")


@pytest.mark.parametrize("number", NON_FINITE, ids=str)
async def test_every_write_and_filter_refuses_them_over_grpc(
    stub: Any, redis: Any, number: float
) -> None:
    """A Struct's number_value may be NaN or infinite on the wire."""
    thread = (await stub.Create(pb.CreateRequest(metadata=struct(keep=1)))).thread
    bad = struct(ok="yes", x={"deep": [1, number]})
    calls = [
        stub.Create(pb.CreateRequest(metadata=bad)),
        stub.Create(pb.CreateRequest(history=[entry(ok=1), pb.Entry(data=bad)])),
        stub.Update(pb.UpdateRequest(thread_id=thread.thread_id, metadata=bad)),
        stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=[pb.Entry(data=bad)])),
        stub.Copy(pb.CopyRequest(thread_id=thread.thread_id, metadata=bad)),
        stub.Search(pb.SearchRequest(metadata=bad)),
        stub.Count(pb.CountRequest(metadata=bad)),
    ]
    where = ["metadata", "history[1].data", "metadata", "entries[0].data"] + ["metadata"] * 3
    async with untouched(redis):
        for call, named in zip(calls, where, strict=True):
            error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "NUMBER_NOT_FINITE")
            assert str(error.details()).startswith(
                f"{named} holds a NaN or infinite number under key 'x'"
            )


async def _store_non_finite(http: httpx.AsyncClient, redis: Any) -> str:
    """A thread holding NaN and infinities, written straight into Redis in the stored
    layout (as a server before this fix left it): metadata fields and a history entry."""
    thread_id: str = (await http.post("/threads", json={"metadata": {"ok": 1}})).json()["thread_id"]
    keys = ThreadKeys(thread_id)
    metadata = struct(nan=math.nan, inf=math.inf, ninf=-math.inf, deep={"x": [math.nan, 2]})
    fields = codec.metadata_args(metadata)
    await redis.hset(keys.meta, mapping=dict(zip(fields[::2], fields[1::2], strict=True)))
    data = struct(y=math.inf, text="hi")
    await redis.rpush(
        keys.history, *codec.encode_entries([stored_pb.Entry(data=data)], codec.now_us())
    )
    return thread_id


STORED_AS_JSON = {
    "ok": 1,
    "nan": "NaN",
    "inf": "Infinity",
    "ninf": "-Infinity",
    "deep": {"x": ["NaN", 2]},
}


async def test_a_stored_non_finite_number_renders_as_a_string_over_http(
    http: httpx.AsyncClient, redis: Any
) -> None:
    thread_id = await _store_non_finite(http, redis)
    got = await http.get(f"/threads/{thread_id}")
    assert got.status_code == 200, got.text
    assert got.json()["metadata"] == STORED_AS_JSON
    page = await http.get(f"/threads/{thread_id}/entries")
    assert page.status_code == 200, page.text
    assert [e["data"] for e in page.json()["entries"]] == [{"y": "Infinity", "text": "hi"}]
    listing = await http.post("/threads/search", json={})  # unfiltered: newest first
    assert listing.status_code == 200, listing.text
    assert listing.json()[0]["metadata"] == STORED_AS_JSON
    copy = await http.post(f"/threads/{thread_id}/copy", json={})
    assert copy.status_code == 200 and copy.json()["metadata"] == STORED_AS_JSON, copy.text
    # Overwriting a key is how a caller repairs it.
    repaired = await http.patch(f"/threads/{thread_id}", json={"metadata": {"nan": None}})
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["metadata"] == {**STORED_AS_JSON, "nan": None}


async def test_a_stored_non_finite_number_comes_back_as_is_over_grpc(
    http: httpx.AsyncClient, redis: Any, stub: Any
) -> None:
    thread_id = await _store_non_finite(http, redis)
    thread = (await stub.Get(pb.GetRequest(thread_id=thread_id))).thread
    numbers = {key: value.number_value for key, value in thread.metadata.fields.items()}
    assert math.isnan(numbers["nan"]) and numbers["inf"] == math.inf
    assert numbers["ninf"] == -math.inf
    page = await stub.GetHistory(pb.GetHistoryRequest(thread_id=thread_id))
    assert page.entries[0].data.fields["y"].number_value == math.inf


async def test_a_stored_non_finite_entry_reaches_sse_and_grpc_watchers_each_as_its_own(
    http: httpx.AsyncClient, redis: Any, stub: Any
) -> None:
    """Watchers of a thread share one message per read (store.feeds), over SSE and gRPC
    alike: the SSE one renders a stored infinity as the string, and the gRPC one, woken
    after it, still sends the double (rendering must not rewrite the shared message)."""
    thread_id = await _store_non_finite(http, redis)
    url = f"/threads/{thread_id}/entries/stream?start_index=1"
    async with http.stream("GET", url) as events:
        lines = events.aiter_lines()
        assert await anext(lines) == "event: progress"  # the SSE watcher waits first
        call = stub.Watch(pb.WatchRequest(thread_id=thread_id, start_index=1))
        assert list((await call.read()).entries) == []  # progress: both wait now
        keys = ThreadKeys(thread_id)
        data = struct(y=math.inf)
        await redis.rpush(
            keys.history, *codec.encode_entries([stored_pb.Entry(data=data)], codec.now_us())
        )
        await _wake(redis, keys, b"2")  # as append.lua would: one read for both
        got = await call.read()
        call.cancel()
        assert got.entries[0].data.fields["y"].number_value == math.inf
        async for line in lines:
            if line.startswith("data: {") and '"index":1' in line:
                assert '"y":"Infinity"' in line, line
                break


async def _wake(redis: Any, keys: ThreadKeys, length: bytes) -> None:
    """The wake-up append.lua publishes (lua/includes/wake.lua)."""
    info = await redis.info("server")
    sharded = int(str(info["redis_version"]).split(".")[0]) >= 7
    await redis.execute_command("SPUBLISH" if sharded else "PUBLISH", keys.channel, length)


def test_a_struct_can_carry_them_on_the_wire() -> None:
    """What the gRPC test relies on: protobuf keeps NaN and infinities in a Struct."""
    value = struct_pb2.Struct.FromString(struct(x=math.nan, y=-math.inf).SerializeToString())
    assert math.isnan(value.fields["x"].number_value)
    assert value.fields["y"].number_value == -math.inf
