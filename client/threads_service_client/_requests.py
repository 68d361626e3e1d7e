"""Conversions of the client's Python arguments to request fields, deadlines, channel settings.

The client methods (``_async.py``, and ``_sync.py`` generated from it) build each request
from these, so what a dict, a UUID or a ttl becomes on the wire is decided once.
"""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import grpc
from google.protobuf import duration_pb2, struct_pb2

from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client._tls import TLS

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
# LangGraph's spellings, or the enum values themselves.
SortBy: TypeAlias = Literal["created_at", "updated_at", "thread_id"] | pb.SortBy.ValueType
SortOrder: TypeAlias = Literal["desc", "asc"] | pb.SortOrder.ValueType
# Seconds (int or float) or a timedelta; 0 means "never expire".
Ttl: TypeAlias = float | datetime.timedelta

_NANOS = 1_000_000_000
# google.protobuf.Duration's range: +-10,000 years.
MAX_TTL_SECONDS = 315_576_000_000

_IF_EXISTS: dict[str, pb.IfExists.ValueType] = {
    "raise": pb.IF_EXISTS_RAISE,
    "do_nothing": pb.IF_EXISTS_DO_NOTHING,
}


_SORT_BY: dict[str, pb.SortBy.ValueType] = {
    "created_at": pb.SORT_BY_CREATED_AT,
    "updated_at": pb.SORT_BY_UPDATED_AT,
    "thread_id": pb.SORT_BY_THREAD_ID,
}
_SORT_ORDER: dict[str, pb.SortOrder.ValueType] = {
    "desc": pb.SORT_ORDER_DESC,
    "asc": pb.SORT_ORDER_ASC,
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


def channel_security(
    tls: TLS | None,
    credentials: grpc.ChannelCredentials | None,
    options: Iterable[tuple[str, Any]],
    *,
    has_channel: bool,
) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
    """The credentials and options of the channel a client opens.

    ``tls`` is the simple way and ``credentials`` the raw one; both at once would leave one
    silently unused, as would either with a caller's ``channel``, so those raise. The TLS
    options (such as a server name override) go between the client's and the caller's.
    """
    if tls is not None and credentials is not None:
        raise ValueError("give tls or credentials, not both")
    if has_channel and (tls is not None or credentials is not None):
        raise ValueError(
            "tls and credentials configure the channel the client opens; "
            "set them on the channel you pass instead"
        )
    if tls is None:
        return credentials, channel_options(options)
    return tls.channel_credentials(), channel_options([*tls.channel_options(), *options])


def resolve_timeout(timeout: Timeout, default: float | None) -> float | None:
    return default if isinstance(timeout, UseClientDefault) else timeout


def thread_id(thread_id: ThreadId) -> str:
    return str(thread_id)


def struct(value: Metadata | None) -> struct_pb2.Struct | None:
    """Dicts become Structs; the server validates the content, we only convert it."""
    if value is None or isinstance(value, struct_pb2.Struct):
        return value
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def ttl_duration(ttl: Ttl | None) -> duration_pb2.Duration | None:
    """``None`` leaves the field unset (the server's default, or no change); 0 is a zero
    Duration (never expire, or remove the expiry); seconds keep their fraction as nanos."""
    if ttl is None:
        return None
    if isinstance(ttl, datetime.timedelta):
        negative = ttl < datetime.timedelta(0)
        nanos = ttl // datetime.timedelta(microseconds=1) * 1000
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        if not math.isfinite(ttl):
            raise ValueError(f"ttl must be a finite number of seconds, got {ttl}")
        negative = ttl < 0
        # A positive ttl below a nanosecond must not round to zero, which means "never".
        nanos = max(round(ttl * _NANOS), 1) if ttl > 0 else 0
    else:
        raise TypeError(f"ttl must be seconds or a timedelta, not {type(ttl).__name__}")
    if negative:
        raise ValueError(f"ttl must not be negative, got {ttl}; use 0 for no expiry")
    if nanos > MAX_TTL_SECONDS * _NANOS:
        raise ValueError(f"ttl must be at most {MAX_TTL_SECONDS} seconds, got {ttl}")
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(nanos)
    return duration


def _entry(value: EntryInput) -> pb.Entry:
    if isinstance(value, pb.Entry):
        return value
    if isinstance(value, struct_pb2.Struct | Mapping):
        return pb.Entry(data=struct(value))
    raise TypeError(f"an entry must be a dict, a Struct or an Entry, got {type(value).__name__}")


def entries(values: Iterable[EntryInput], name: str) -> list[pb.Entry]:
    # A lone dict is iterable (over its keys): catch it rather than send its keys as entries.
    if isinstance(values, Mapping | struct_pb2.Struct | pb.Entry | str | bytes):
        raise TypeError(f"{name} must be an iterable of entries; wrap a single entry in a list")
    return [_entry(value) for value in values]


def if_exists(value: IfExists) -> pb.IfExists.ValueType:
    if value not in _IF_EXISTS:
        raise ValueError(f"if_exists must be 'raise' or 'do_nothing', got {value!r}")
    return _IF_EXISTS[value]


def sort_by(value: SortBy) -> pb.SortBy.ValueType:
    if isinstance(value, str):
        if value not in _SORT_BY:
            raise ValueError(f"sort_by must be one of {', '.join(_SORT_BY)}, got {value!r}")
        return _SORT_BY[value]
    return value


def sort_order(value: SortOrder) -> pb.SortOrder.ValueType:
    if isinstance(value, str):
        if value not in _SORT_ORDER:
            raise ValueError(f"sort_order must be 'desc' or 'asc', got {value!r}")
        return _SORT_ORDER[value]
    return value


def thread_ids(values: Iterable[ThreadId] | None) -> list[str]:
    # A lone id is iterable (over its characters): catch it rather than send them as ids.
    if isinstance(values, str | uuid.UUID):
        raise TypeError("ids must be an iterable of thread ids; wrap a single id in a list")
    return [str(value) for value in values or ()]
