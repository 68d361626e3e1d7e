from __future__ import annotations

import uuid

import pytest

from server.errors import InvalidArgument
from server.keys import ThreadKeys, new_copy_id, new_thread_id, parse_thread_id


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
