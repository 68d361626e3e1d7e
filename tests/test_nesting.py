"""Nesting depth of metadata and entry data (validation.MAX_NESTING_DEPTH).

The bug this guards against: metadata nested right up to the protobuf parsers' limit
(100 levels) made a request that parsed, so the write landed in Redis, but every reply
carrying it (CreateResponse > Thread > Struct) is one level deeper and no Python client
could read it: INTERNAL "Exception deserializing response!", and the thread could never
be read back. The server now refuses anything nested past 64 levels, before Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from threads_server.server import ThreadsServer
from threads_server.service.validation import MAX_NESTING_DEPTH, too_deep
from threads_server.store.keys import ThreadKeys
from threads_service_client import Client, InvalidArgumentError, get_client
from threads_service_client.pb import threads_pb2 as pb

CAP = MAX_NESTING_DEPTH


def depth_of(data: struct_pb2.Struct) -> int:
    """The depth ``too_deep`` sees: the smallest limit it accepts ``data`` under."""
    return next(limit for limit in range(1, 1000) if too_deep(data, limit) is None)


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(data)
    return value


def nested(depth: int, via: str) -> dict[str, Any]:
    """Data exactly ``depth`` levels deep, nesting objects (``via="object"``) or lists as
    far as they go; the last level or two are whatever makes the depth exact."""

    def value_at(level: int) -> Any:  # a JSON value whose Value message sits at `level`
        remaining = depth - level
        if remaining == 0:
            return "x"
        if remaining == 1:
            return {} if via == "object" else []
        if via == "object" and remaining >= 3:
            return {"k": value_at(level + 3)}
        return [value_at(level + 2)]

    assert depth >= 3
    return {"k": value_at(3)}


# --- what a level is ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "depth"),
    [
        ({}, 1),
        ({"a": 1}, 3),
        ({"a": None, "b": "x", "c": True}, 3),
        ({"a": {}}, 4),
        ({"a": []}, 4),
        ({"a": [1]}, 5),
        ({"a": {"b": 1}}, 6),
        ({"a": [[1]]}, 7),
        ({"a": [{"b": 1}]}, 8),
        ({"a": {"b": [1]}, "c": [1]}, 8),
    ],
)
def test_levels_are_counted_as_protobuf_messages(data: dict[str, Any], depth: int) -> None:
    assert depth_of(to_struct(data)) == depth


@pytest.mark.parametrize("via", ["object", "list"])
@pytest.mark.parametrize("depth", [3, 4, 5, 6, 7, CAP - 1, CAP, CAP + 1, CAP + 2])
def test_the_test_data_is_as_deep_as_it_says(depth: int, via: str) -> None:
    assert depth_of(to_struct(nested(depth, via))) == depth


def test_too_deep_names_the_top_level_key_and_stops_early() -> None:
    data = to_struct({"flat": 1, "list": [1, 2], "deep": nested(CAP + 1, "list")["k"]})
    assert too_deep(data) == "deep"
    assert too_deep(to_struct({"ok": nested(CAP, "object")["k"]})) is None


def test_too_deep_is_iterative() -> None:
    """Far deeper than Python's recursion limit (built in place: no parse, no copy)."""
    data = struct_pb2.Struct()
    value = data.fields["k"]
    for _ in range(5000):
        value = value.list_value.values.add()
    assert too_deep(data) == "k"
    assert too_deep(data, limit=3 + 2 * 5000) is None


# The parsers' own verdict: replies carry metadata and entry data two messages below the
# outermost one (GetResponse > Thread > Struct, GetHistoryResponse > Entry > Struct).
REPLY_LIMIT = 100 - 1


def deep_reply(spine: list[str], leaf: str) -> tuple[pb.GetResponse, struct_pb2.Struct]:
    """A GetResponse whose metadata follows ``spine`` ("s" object, "l" list) down to
    ``leaf``; built in place, since copying a message this deep would parse it."""
    reply = pb.GetResponse()
    metadata = reply.thread.metadata
    metadata.fields["flat"].number_value = 1
    value = metadata.fields["k"]
    for kind in spine:
        value = value.struct_value.fields["k"] if kind == "s" else value.list_value.values.add()
    if leaf == "scalar":
        value.string_value = "x"
    elif leaf == "object":
        value.struct_value.SetInParent()
    else:
        value.list_value.SetInParent()
    return reply, metadata


def parses(reply: pb.GetResponse) -> bool:
    try:
        pb.GetResponse.FromString(reply.SerializeToString())
    except DecodeError:
        return False
    return True


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    spine=st.lists(st.sampled_from("sl"), min_size=25, max_size=55),
    leaf=st.sampled_from(["scalar", "object", "list"]),
)
@example(spine=["l"] * 48, leaf="list")  # exactly at the parsers' limit
@example(spine=["l"] * 48, leaf="scalar")  # one past it
def test_levels_match_what_protobuf_parsers_count(spine: list[str], leaf: str) -> None:
    """The level definition is the parsers' own: a reply parses exactly when its metadata
    is at most REPLY_LIMIT levels deep, so the cap (64 < 99) keeps every reply readable."""
    reply, metadata = deep_reply(spine, leaf)
    assert parses(reply) == (too_deep(metadata, REPLY_LIMIT) is None)


# --- through the Python client, against a real server ---------------------------------------


@pytest.fixture
async def client(threads_server: ThreadsServer) -> AsyncIterator[Client]:
    async with get_client(f"127.0.0.1:{threads_server.port}") as c:
        yield c


def as_dict(data: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(data)


# Each field: write `data` there (on `thread`, made beforehand, where the RPC needs one) and
# return the thread id whose Get or GetHistory carries it.
Write = Callable[[Client, pb.Thread, dict[str, Any]], Awaitable[str]]


async def create_metadata(client: Client, _: pb.Thread, data: dict[str, Any]) -> str:
    return (await client.threads.create(metadata=data)).thread_id


async def create_history(client: Client, _: pb.Thread, data: dict[str, Any]) -> str:
    return (await client.threads.create(history=[{"flat": 1}, data])).thread_id


async def update_metadata(client: Client, thread: pb.Thread, data: dict[str, Any]) -> str:
    return (await client.threads.update(thread.thread_id, data)).thread_id


async def append_entries(client: Client, thread: pb.Thread, data: dict[str, Any]) -> str:
    await client.threads.append(thread.thread_id, [{"flat": 1}, data])
    return thread.thread_id


async def copy_metadata(client: Client, thread: pb.Thread, data: dict[str, Any]) -> str:
    return (await client.threads.copy(thread.thread_id, metadata=data)).thread_id


# name: (write, reason, ErrorInfo field, where Get/GetHistory returns the data)
FIELDS: dict[str, tuple[Write, str, str, str]] = {
    "Create.metadata": (create_metadata, "METADATA_TOO_DEEP", "metadata", "metadata"),
    "Create.history": (create_history, "ENTRY_TOO_DEEP", "history[1]", "entry"),
    "Update.metadata": (update_metadata, "METADATA_TOO_DEEP", "metadata", "metadata"),
    "Append.entries": (append_entries, "ENTRY_TOO_DEEP", "entries[1]", "entry"),
    "Copy.metadata": (copy_metadata, "METADATA_TOO_DEEP", "metadata", "metadata"),
}


async def snapshot(redis: Any, thread_id: str) -> tuple[set[bytes], dict[str, Any]]:
    """Every key in Redis, and the setup thread's keys byte for byte."""
    keys = ThreadKeys(thread_id)
    dumps = {key: await redis.dump(key) for key in (keys.meta, keys.history)}
    return set(await redis.keys("*")), dumps


@pytest.mark.parametrize("via", ["object", "list"])
@pytest.mark.parametrize("field", sorted(FIELDS))
async def test_nesting_at_the_cap_is_stored_and_read_back_intact(
    client: Client, field: str, via: str
) -> None:
    write, _, _, returned_as = FIELDS[field]
    data = nested(CAP, via)
    thread = await client.threads.create(history=[{"flat": 1}])
    thread_id = await write(client, thread, data)
    if returned_as == "metadata":
        assert as_dict((await client.threads.get(thread_id)).metadata) == data
    else:
        last = (await client.threads.get_history(thread_id)).entries[-1]
        assert as_dict(last.data) == data


@pytest.mark.parametrize("via", ["object", "list"])
@pytest.mark.parametrize("field", sorted(FIELDS))
async def test_nesting_past_the_cap_is_refused_and_nothing_is_written(
    client: Client, redis: Any, field: str, via: str
) -> None:
    write, reason, error_field, _ = FIELDS[field]
    data = nested(CAP + 1, via)
    thread = await client.threads.create(history=[{"flat": 1}])
    before = await snapshot(redis, thread.thread_id)

    with pytest.raises(InvalidArgumentError) as caught:
        await write(client, thread, data)

    error = caught.value
    assert error.reason == reason
    assert error.metadata == {"field": error_field, "key": "k", "limit": str(CAP)}
    assert error_field in error.message
    assert await snapshot(redis, thread.thread_id) == before
