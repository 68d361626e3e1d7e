from __future__ import annotations

import uuid

import pytest
from redis.crc import key_slot

from threads_server.errors import InvalidArgument
from threads_server.store.keys import (
    ThreadKeys,
    all_shards,
    new_copy_id,
    new_thread_id,
    owner_namespace,
    parse_thread_id,
    request_thread_id,
)


def test_parse_canonicalizes_case() -> None:
    thread_id = str(uuid.uuid4())
    assert parse_thread_id(thread_id.upper()) == thread_id


@pytest.mark.parametrize("raw", ["", "x", "{" + str(uuid.uuid4()) + "}", str(uuid.uuid4()) + "\n"])
def test_parse_rejects_non_uuids(raw: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_thread_id(raw)
    assert raised.value.reason == "INVALID_THREAD_ID"


def test_copy_id_is_a_fresh_v4_uuid_with_the_source_tag() -> None:
    source = new_thread_id()
    ids = {new_copy_id(source) for _ in range(100)}
    assert len(ids) == 100
    for copy_id in ids:
        parsed = uuid.UUID(copy_id)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert ThreadKeys(copy_id).tag == ThreadKeys(source).tag  # same shard


def test_every_key_of_a_thread_shares_one_hash_tag() -> None:
    keys = ThreadKeys("0b7e5a0c-1f2d-4c3b-9a8e-7d6c5b4a1234")
    assert keys.tag == "{-.4}"  # no owner, shard 4 (the id's last hex digit)
    for key in (keys.meta, keys.history, keys.copy_request("r")):
        assert key.startswith("thr:{-.4}:")
    assert len({keys.meta, keys.history, keys.copy_request("r")}) == 3


@pytest.mark.parametrize("owner", ["", "alice", "svc:a}{b", "ü" * 500])
def test_an_owners_keys_and_index_stay_in_the_threads_slot(owner: str) -> None:
    """Any subject (colons, braces, any length) becomes a fixed-size digest in the hash
    tag, so a thread, its copies, its request records and its shard's index share one
    Redis Cluster slot with auth on too; another caller's same id is another slot."""
    thread_id = new_thread_id()
    owned = ThreadKeys(thread_id, owner)
    shard = owned.shard
    names = [owned.meta, owned.history, owned.create_request, owned.copy_request("r")]
    names += [shard.by_created, shard.by_updated, shard.by_id, shard.expiring, shard.entries]
    names += [shard.metadata(b"m:k", b"v"), shard.copies_of(new_thread_id())]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert len(set(names)) == len(names)
    if owner:
        assert owner_namespace(owner) in owned.meta
        assert key_slot(owned.meta.encode()) != key_slot(ThreadKeys(thread_id).meta.encode())
        assert len(owned.meta) == len(ThreadKeys(thread_id, "x").meta)  # fixed-size part


def test_a_callers_threads_spread_over_16_shards() -> None:
    """No single hot slot: one caller's writes go to 16 slots, picked by the id."""
    slots = {key_slot(ThreadKeys(new_thread_id(), "alice").meta.encode()) for _ in range(400)}
    assert len(slots) == 16
    assert {key_slot(shard.by_created.encode()) for shard in all_shards("alice")} == slots


def test_metadata_sets_are_named_by_key_and_value_without_collisions() -> None:
    shard = ThreadKeys(new_thread_id()).shard
    names = {
        shard.metadata(b"m:a", b"bc"),
        shard.metadata(b"m:ab", b"c"),
        shard.metadata(b"m:a", b"bd"),
        shard.metadata(b"m:b", b"bc"),
    }
    assert len(names) == 4


def test_owners_never_share_a_namespace() -> None:
    owners = ["a", "b", "a:b", "a:", ":a", "A"]
    assert len({owner_namespace(owner) for owner in owners}) == len(owners)


def test_request_thread_id_is_stable_and_a_valid_uuid() -> None:
    first = request_thread_id("req-1")
    assert first == request_thread_id("req-1") != request_thread_id("req-2")
    assert parse_thread_id(first) == first
    assert uuid.UUID(first).variant == uuid.RFC_4122
