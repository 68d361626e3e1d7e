from __future__ import annotations

from google.protobuf import struct_pb2

from threads_server.pb import threads_pb2 as pb
from threads_server.store import codec


def test_metadata_fields_round_trip_through_the_hash_layout() -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"": "empty key", "ünï": [1, {"deep": None}], "n": 1e308})
    fields = [*codec.metadata_args(metadata), codec.CREATED_AT, b"1700000000123456"]
    thread = codec.thread_from_fields("t", 3, fields)
    assert thread.metadata == metadata
    assert thread.created_at.seconds == 1_700_000_000
    assert thread.created_at.nanos == 123_456_000
    assert thread.history_length == 3


def test_stored_entries_carry_no_index_and_get_it_from_their_position() -> None:
    sent = pb.Entry(index=9)
    sent.data.update({"a": 1})
    (blob,) = codec.encode_entries([sent], 5_000_000)
    assert not pb.Entry.FromString(blob).index
    (entry,) = codec.decode_entries([blob], 41)
    assert entry.index == 41
    assert entry.created_at.seconds == 5
    assert entry.data == sent.data
