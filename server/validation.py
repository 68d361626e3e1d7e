"""Checks on request fields that are not thread ids (those are in ``server.keys``)."""

from __future__ import annotations

from server.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_REQUEST_ID_LENGTH = 128


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


def entry_count(count: int, field: str, *, maximum: int, required: bool) -> None:
    if required and count == 0:
        raise InvalidArgument(
            f"{field} must hold at least one entry", reason="NO_ENTRIES", field=field
        )
    if count > maximum:
        raise InvalidArgument(
            f"{field} holds {count} entries, more than the {maximum} allowed in one request; "
            "split it into several requests",
            reason="TOO_MANY_ENTRIES",
            field=field,
            limit=maximum,
        )
