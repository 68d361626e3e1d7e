"""What the async and sync clients share: request building, deadlines, channel options.

Keeping this here leaves each client class a thin wrapper that only sends the request
(awaiting or blocking) and maps errors, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

from google.protobuf import struct_pb2

from client.pb import threads_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# The server accepts 16 MiB by default; gRPC clients otherwise refuse replies over 4 MiB,
# so a 1,000-entry history page of a few KiB each would fail on the client side.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)

ThreadId: TypeAlias = str | uuid.UUID
Metadata: TypeAlias = Mapping[str, Any] | struct_pb2.Struct
EntryInput: TypeAlias = Mapping[str, Any] | struct_pb2.Struct | pb.Entry
IfExists: TypeAlias = Literal["raise", "do_nothing"]

_IF_EXISTS: dict[str, pb.IfExists.ValueType] = {
    "raise": pb.IF_EXISTS_RAISE,
    "do_nothing": pb.IF_EXISTS_DO_NOTHING,
}


class UseClientDefault(enum.Enum):
    """Type of ``USE_CLIENT_DEFAULT``: a per-call timeout that defers to the client's.

    A sentinel because ``None`` already means "no deadline".
    """

    USE_CLIENT_DEFAULT = enum.auto()


USE_CLIENT_DEFAULT = UseClientDefault.USE_CLIENT_DEFAULT
Timeout: TypeAlias = float | UseClientDefault | None


def channel_options(extra: Iterable[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """The client's options with the caller's added; a caller's value wins over ours."""
    options = dict(CHANNEL_OPTIONS)
    options.update(extra)
    return list(options.items())


def resolve_timeout(timeout: Timeout, default: float | None) -> float | None:
    return default if isinstance(timeout, UseClientDefault) else timeout


def _thread_id(thread_id: ThreadId) -> str:
    return str(thread_id)


def _struct(value: Metadata | None) -> struct_pb2.Struct | None:
    """Dicts become Structs; the server validates the content, we only convert it."""
    if value is None or isinstance(value, struct_pb2.Struct):
        return value
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _entry(value: EntryInput) -> pb.Entry:
    if isinstance(value, pb.Entry):
        return value
    if isinstance(value, struct_pb2.Struct | Mapping):
        return pb.Entry(data=_struct(value))
    raise TypeError(f"an entry must be a dict, a Struct or an Entry, got {type(value).__name__}")


def _entries(values: Iterable[EntryInput], name: str) -> list[pb.Entry]:
    # A lone dict is iterable (over its keys): catch it rather than send its keys as entries.
    if isinstance(values, Mapping | struct_pb2.Struct | pb.Entry | str | bytes):
        raise TypeError(f"{name} must be an iterable of entries; wrap a single entry in a list")
    return [_entry(value) for value in values]


def create(
    thread_id: ThreadId | None,
    metadata: Metadata | None,
    history: Iterable[EntryInput] | None,
    if_exists: IfExists,
) -> pb.CreateRequest:
    if if_exists not in _IF_EXISTS:
        raise ValueError(f"if_exists must be 'raise' or 'do_nothing', got {if_exists!r}")
    return pb.CreateRequest(
        thread_id=_thread_id(thread_id) if thread_id is not None else "",
        metadata=_struct(metadata),
        history=_entries(history, "history") if history is not None else None,
        if_exists=_IF_EXISTS[if_exists],
    )


def get(thread_id: ThreadId) -> pb.GetRequest:
    return pb.GetRequest(thread_id=_thread_id(thread_id))


def update(thread_id: ThreadId, metadata: Metadata) -> pb.UpdateRequest:
    return pb.UpdateRequest(thread_id=_thread_id(thread_id), metadata=_struct(metadata))


def delete(thread_id: ThreadId) -> pb.DeleteRequest:
    return pb.DeleteRequest(thread_id=_thread_id(thread_id))


def append(
    thread_id: ThreadId, entries: Iterable[EntryInput], expected_length: int | None
) -> pb.AppendRequest:
    return pb.AppendRequest(
        thread_id=_thread_id(thread_id),
        entries=_entries(entries, "entries"),
        expected_length=expected_length,
    )


def get_history(thread_id: ThreadId, page_size: int, page_token: str) -> pb.GetHistoryRequest:
    return pb.GetHistoryRequest(
        thread_id=_thread_id(thread_id), page_size=page_size, page_token=page_token
    )


def copy(
    thread_id: ThreadId,
    request_id: str | None,
    history_length: int | None,
    metadata: Metadata | None,
) -> pb.CopyRequest:
    return pb.CopyRequest(
        thread_id=_thread_id(thread_id),
        request_id=request_id or "",
        history_length=history_length,
        metadata=_struct(metadata),
    )
