from __future__ import annotations

import uuid

import pytest
from redis.crc import key_slot

from threads_server.errors import InvalidArgument
from threads_server.keys import (
    ThreadKeys,
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
        assert ThreadKeys(copy_id).tag == ThreadKeys(source).tag


def test_every_key_of_a_thread_shares_one_hash_tag() -> None:
    keys = ThreadKeys("0b7e5a0c-1f2d-4c3b-9a8e-7d6c5b4a1234")
    assert keys.tag == "{1234}"
    for key in (keys.meta, keys.history, keys.copy_request("r")):
        assert key.startswith("thr:{1234}:")
    assert len({keys.meta, keys.history, keys.copy_request("r")}) == 3


@pytest.mark.parametrize("owner", ["", "alice", "svc:a}{b", "ü" * 500])
def test_an_owners_keys_stay_in_the_threads_slot(owner: str) -> None:
    """Any subject (colons, braces, any length) leaves the hash tag first, so a thread, its
    copies and its request records share one Redis Cluster slot with auth on too."""
    thread_id = new_thread_id()
    plain, owned = ThreadKeys(thread_id), ThreadKeys(thread_id, owner)
    names = [owned.meta, owned.history, owned.create_request, owned.copy_request("r")]
    assert {key_slot(name.encode()) for name in names} == {key_slot(plain.meta.encode())}
    assert len(set(names)) == 4
    if owner:
        assert owner_namespace(owner) in owned.meta
        assert owned.meta != plain.meta
        assert len(owned.meta) == len(ThreadKeys(thread_id, "x").meta)  # fixed-size part


def test_owners_never_share_a_namespace() -> None:
    owners = ["a", "b", "a:b", "a:", ":a", "A"]
    assert len({owner_namespace(owner) for owner in owners}) == len(owners)


def test_request_thread_id_is_stable_and_a_valid_uuid() -> None:
    first = request_thread_id("req-1")
    assert first == request_thread_id("req-1") != request_thread_id("req-2")
    assert parse_thread_id(first) == first
    assert uuid.UUID(first).variant == uuid.RFC_4122
