"""Checks on request fields that are not thread ids (those are in ``store.keys``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import Enum
from math import isfinite

from google.protobuf import duration_pb2, struct_pb2

from threads_server.errors import InvalidArgument, Reason
from threads_server.pb import threads_pb2 as pb

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_REQUEST_ID_LENGTH = 128
# Far beyond any retention policy, and keeps now + ttl well inside PEXPIREAT's range.
MAX_TTL_SECONDS = 100 * 366 * 24 * 60 * 60
# How deep metadata and entry data may nest, in protobuf message levels (see ``too_deep``).
# Protobuf parsers (C++, Java, Python) refuse a message nested more than 100 levels below
# the outermost one, and a reply carries the Struct one level deeper than the request did
# (GetResponse > Thread > Struct): a Struct the request could just carry would make every
# reply that holds it unreadable. 64 keeps every reply far inside the parsers' limit.
MAX_NESTING_DEPTH = 64


def page_size(raw: int, *, default: int = DEFAULT_PAGE_SIZE) -> int:
    """AIP-158: 0 means the default, larger than the maximum is clamped, negative is an error."""
    if raw < 0:
        raise InvalidArgument(
            f"page_size must not be negative, got {raw}",
            reason=Reason.INVALID_PAGE_SIZE,
            page_size=raw,
        )
    return min(raw or default, MAX_PAGE_SIZE)


def request_id(raw: str) -> str:
    """AIP-155 request ids: bounded printable ASCII, so they fit in a Redis key and a log."""
    if len(raw) > MAX_REQUEST_ID_LENGTH or not all("!" <= ch <= "~" for ch in raw):
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID_LENGTH} printable ASCII characters "
            "without spaces (a UUID is recommended)",
            reason=Reason.INVALID_REQUEST_ID,
        )
    return raw


def non_negative(raw: int, field: str) -> int:
    if raw < 0:
        raise InvalidArgument(
            f"{field} must not be negative, got {raw}",
            reason=Reason(f"INVALID_{field.upper()}"),
            field=field,
        )
    return raw


def ttl_ms(ttl: duration_pb2.Duration) -> int:
    """A ttl in whole milliseconds, rounded up so that it never ends early; 0 is "none"."""
    if ttl.seconds < 0 or ttl.nanos < 0 or ttl.nanos > 999_999_999:
        raise InvalidArgument(
            f"ttl must be a non-negative duration, got {ttl.seconds}s {ttl.nanos}ns "
            "(zero means no expiry)",
            reason=Reason.INVALID_TTL,
            field="ttl",
        )
    if ttl.seconds > MAX_TTL_SECONDS:
        raise InvalidArgument(
            f"ttl must be at most {MAX_TTL_SECONDS} seconds (100 years), got {ttl.seconds}; "
            "use zero for no expiry",
            reason=Reason.INVALID_TTL,
            field="ttl",
        )
    return ttl.seconds * 1000 + -(-ttl.nanos // 1_000_000)


class Problem(Enum):
    """What ``find_problem`` finds in metadata or entry data."""

    TOO_DEEP = "too deep"
    NOT_FINITE = "not finite"


def find_problem(
    data: struct_pb2.Struct, limit: int = MAX_NESTING_DEPTH, *, numbers: bool = True
) -> tuple[str, Problem] | None:
    """The first top-level key of ``data`` under which it nests more than ``limit`` levels
    or (with ``numbers``) holds a NaN or infinite number, and which; None when neither.

    One walk for both, as it runs on every write, once per Value. Levels are protobuf
    messages, counted as parsers count them: ``data`` is level 1; a Struct's fields are map
    entries one level below it, each holding its Value one level further; a Value's Struct
    or ListValue is one level below the Value, and a ListValue's Values are one below it.
    So ``{"a": 1}`` is 3 deep, and each object nested in it adds 3, each list 2. Iterative,
    so any depth is safe, and it stops at the first problem.
    """
    # Containers still to look into: (Struct or ListValue, its level, top-level key).
    stack: list[tuple[struct_pb2.Struct | struct_pb2.ListValue, int, str]] = []
    for key, value in data.fields.items():
        if limit < 3:
            return key, Problem.TOO_DEEP
        kind = value.WhichOneof("kind")
        if kind == "struct_value":
            stack.append((value.struct_value, 4, key))
        elif kind == "list_value":
            stack.append((value.list_value, 4, key))
        elif numbers and kind == "number_value" and not isfinite(value.number_value):
            return key, Problem.NOT_FINITE
    while stack:
        container, level, key = stack.pop()
        if level > limit:
            return key, Problem.TOO_DEEP
        values: Collection[struct_pb2.Value]
        if isinstance(container, struct_pb2.Struct):
            values, value_level = container.fields.values(), level + 2
        else:
            values, value_level = container.values, level + 1
        if value_level > limit:
            if len(values):
                return key, Problem.TOO_DEEP
            continue
        for value in values:  # the hot loop: inlined, it runs once per Value
            kind = value.WhichOneof("kind")
            if kind == "struct_value":
                stack.append((value.struct_value, value_level + 1, key))
            elif kind == "list_value":
                stack.append((value.list_value, value_level + 1, key))
            elif numbers and kind == "number_value" and not isfinite(value.number_value):
                return key, Problem.NOT_FINITE
    return None


def too_deep(data: struct_pb2.Struct, limit: int = MAX_NESTING_DEPTH) -> str | None:
    """The top-level key under which ``data`` nests more than ``limit`` levels, else None."""
    found = find_problem(data, limit, numbers=False)
    return None if found is None else found[0]


def _too_deep_message(where: str, key: str) -> str:
    return (
        f"{where} nests deeper than the {MAX_NESTING_DEPTH} levels allowed, under key {key!r} "
        "(a Struct is level 1; each object in it adds 3 levels, each list 2: docs/api.md, "
        "Limits), which keeps every reply well inside protobuf parsers' 100-level limit. "
        "Flatten it, or store the deep part as a JSON string"
    )


def _not_finite_message(where: str, key: str) -> str:
    return (
        f"{where} holds a NaN or infinite number under key {key!r}. JSON has no such "
        "numbers (RFC 8259), so no reply could carry it: send a finite number, or a string "
        'such as "NaN"'
    )


def check_metadata(metadata: struct_pb2.Struct) -> None:
    """Create, Update and Copy metadata, and Search and Count's filter: every reply
    carrying it must stay parseable (nesting) and renderable as JSON (finite numbers)."""
    found = find_problem(metadata)
    if found is None:
        return
    key, problem = found
    if problem is Problem.TOO_DEEP:
        raise InvalidArgument(
            _too_deep_message("metadata", key),
            reason=Reason.METADATA_TOO_DEEP,
            field="metadata",
            key=key,
            limit=MAX_NESTING_DEPTH,
        )
    raise InvalidArgument(
        _not_finite_message("metadata", key),
        reason=Reason.NUMBER_NOT_FINITE,
        field="metadata",
        key=key,
    )


def check_entries_data(entries: Sequence[pb.Entry], field: str) -> None:
    """Create's history and Append's entries: GetHistory must be able to return them."""
    for index, entry in enumerate(entries):
        found = find_problem(entry.data)
        if found is None:
            continue
        key, problem = found
        if problem is Problem.TOO_DEEP:
            raise InvalidArgument(
                _too_deep_message(f"{field}[{index}].data", key),
                reason=Reason.ENTRY_TOO_DEEP,
                field=f"{field}[{index}]",
                key=key,
                limit=MAX_NESTING_DEPTH,
            )
        raise InvalidArgument(
            _not_finite_message(f"{field}[{index}].data", key),
            reason=Reason.NUMBER_NOT_FINITE,
            field=f"{field}[{index}]",
            key=key,
        )
