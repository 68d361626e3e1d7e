"""Checks on request fields that are not thread ids (those are in ``threads_server.keys``)."""

from __future__ import annotations

from google.protobuf import duration_pb2

from threads_server.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_REQUEST_ID_LENGTH = 128
# Far beyond any retention policy, and keeps now + ttl well inside PEXPIREAT's range.
MAX_TTL_SECONDS = 100 * 366 * 24 * 60 * 60


def page_size(raw: int) -> int:
    """AIP-158: 0 means the default, larger than the maximum is clamped, negative is an error."""
    if raw < 0:
        raise InvalidArgument(
            f"page_size must not be negative, got {raw}",
            reason="INVALID_PAGE_SIZE",
            page_size=raw,
        )
    return min(raw or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def request_id(raw: str) -> str:
    """AIP-155 request ids: bounded printable ASCII, so they fit in a Redis key and a log."""
    if len(raw) > MAX_REQUEST_ID_LENGTH or not all("!" <= ch <= "~" for ch in raw):
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID_LENGTH} printable ASCII characters "
            "without spaces (a UUID is recommended)",
            reason="INVALID_REQUEST_ID",
        )
    return raw


def non_negative(raw: int, field: str) -> int:
    if raw < 0:
        raise InvalidArgument(
            f"{field} must not be negative, got {raw}",
            reason=f"INVALID_{field.upper()}",
            field=field,
        )
    return raw


def ttl_ms(ttl: duration_pb2.Duration) -> int:
    """A ttl in whole milliseconds, rounded up so that it never ends early; 0 is "none"."""
    if ttl.seconds < 0 or ttl.nanos < 0 or ttl.nanos > 999_999_999:
        raise InvalidArgument(
            f"ttl must be a non-negative duration, got {ttl.seconds}s {ttl.nanos}ns "
            "(zero means no expiry)",
            reason="INVALID_TTL",
            field="ttl",
        )
    if ttl.seconds > MAX_TTL_SECONDS:
        raise InvalidArgument(
            f"ttl must be at most {MAX_TTL_SECONDS} seconds (100 years), got {ttl.seconds}; "
            "use zero for no expiry",
            reason="INVALID_TTL",
            field="ttl",
        )
    return ttl.seconds * 1000 + -(-ttl.nanos // 1_000_000)
