"""How threads are laid out inside Redis values, and back to protobuf messages.

Metadata is one HASH field per top-level key (``m:<key>`` -> serialized
``google.protobuf.Value``), so Update's merge is a plain HSET done atomically by Redis,
with no JSON round trip that could lose number precision. History entries are stored as
serialized ``Entry`` messages without ``index``: the history is append-only, so an
entry's index is its position in the list, filled in when it is read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from google.protobuf import struct_pb2, timestamp_pb2

from threads_server.pb import threads_pb2 as pb

META_PREFIX = b"m:"
CREATED_AT = b"created_at"
UPDATED_AT = b"updated_at"
COPIED_FROM = b"copied_from"
OWNER = b"owner"
EXPIRE_AT_MS = b"expire_at_ms"


def now_us() -> int:
    return time.time_ns() // 1000


def timestamp_from_us(us: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    set_us(stamp, us)
    return stamp


def set_us(stamp: timestamp_pb2.Timestamp, us: int) -> None:
    """Sets a Timestamp (a message's own field, in place) to ``us`` µs since the epoch."""
    stamp.seconds, micros = divmod(us, 1_000_000)
    stamp.nanos = micros * 1000


def metadata_args(metadata: struct_pb2.Struct) -> list[bytes]:
    """HSET arguments (field, value, ...) that store each metadata key."""
    args: list[bytes] = []
    for key, value in metadata.fields.items():
        args.append(META_PREFIX + key.encode("utf-8"))
        args.append(value.SerializeToString(deterministic=True))
    return args


def metadata_size(args: Sequence[bytes]) -> int:
    """Key bytes plus serialized value bytes of ``metadata_args``; the Lua scripts measure
    stored metadata the same way (``merged_metadata_size``)."""
    return sum(len(arg) for arg in args) - len(META_PREFIX) * (len(args) // 2)


def thread_from_fields(thread_id: str, history_length: int, fields: Sequence[bytes]) -> pb.Thread:
    """Builds a Thread from its meta HASH as a script returns it: [field, value, ...].

    On every Get, Copy and Update reply, so built in one pass: scalars in the constructor,
    timestamps set in place (no Timestamp made and copied in), the rest only for metadata.
    """
    pairs = iter(fields)
    found = dict(zip(pairs, pairs, strict=True))
    thread = pb.Thread(
        thread_id=thread_id,
        history_length=history_length,
        copied_from=found.pop(COPIED_FROM, b"").decode("ascii"),
        owner=found.pop(OWNER, b"").decode("utf-8"),
    )
    for name, stamp in ((CREATED_AT, thread.created_at), (UPDATED_AT, thread.updated_at)):
        us = found.pop(name, None)
        if us is not None:
            set_us(stamp, int(us))
    expire_ms = found.pop(EXPIRE_AT_MS, None)
    if expire_ms is not None:
        set_us(thread.expire_time, int(expire_ms) * 1000)
    metadata = thread.metadata
    metadata.SetInParent()
    for name, value in found.items():
        if name.startswith(META_PREFIX):
            metadata.fields[name[len(META_PREFIX) :].decode("utf-8")].MergeFromString(value)
    return thread


def encode_entries(entries: Iterable[pb.Entry], created_us: int) -> list[bytes]:
    """Serializes entries as stored: the caller's data, the server's timestamp, no index."""
    created_at = timestamp_from_us(created_us)
    return [
        pb.Entry(data=entry.data, created_at=created_at).SerializeToString() for entry in entries
    ]


def decode_entries(raw: Sequence[bytes], first_index: int) -> list[pb.Entry]:
    entries = []
    for offset, blob in enumerate(raw):
        entry = pb.Entry.FromString(blob)
        entry.index = first_index + offset
        entries.append(entry)
    return entries
