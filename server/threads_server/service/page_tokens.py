"""Opaque page tokens (AIP-158): GetHistory offsets, and Search keyset cursors (below).

A token names the thread it was issued for and the offset of the next entry, with a
checksum so that a truncated, edited or foreign token is rejected instead of silently
reading from the wrong place. The offset is no secret (any caller may read any page), so
no server key is needed and every server instance accepts every other's tokens.
Histories are append-only, so an offset stays valid for as long as the thread exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import uuid

from threads_server.errors import InvalidArgument, Reason

_VERSION = 1
_LAYOUT = struct.Struct(">B16sQ")
_CHECKSUM_BYTES = 8
_PERSONALIZATION = b"thr.pagetok"
# No history gets near this many entries (2**48 x 1 byte = 256 TiB), and offsets below it
# stay exact in Lua's doubles and in LRANGE's signed 64-bit range even plus a page size.
# The checksum is unkeyed, so a caller can forge any offset: anything above is refused.
MAX_OFFSET = 2**48


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_CHECKSUM_BYTES, person=_PERSONALIZATION).digest()


def encode(thread_id: str, offset: int) -> str:
    body = _LAYOUT.pack(_VERSION, uuid.UUID(thread_id).bytes, offset)
    return base64.urlsafe_b64encode(body + _checksum(body)).rstrip(b"=").decode("ascii")


def decode(token: str, thread_id: str) -> int:
    """Returns the offset a token points at, or raises INVALID_ARGUMENT."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    body, checksum = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    if len(raw) != _LAYOUT.size + _CHECKSUM_BYTES or checksum != _checksum(body):
        raise _invalid("page_token is not a token this service issued", thread_id)
    version, token_thread, offset = _LAYOUT.unpack(body)
    if version != _VERSION:
        raise _invalid("page_token has an unknown version", thread_id)
    if token_thread != uuid.UUID(thread_id).bytes:
        raise _invalid("page_token was issued for another thread", thread_id)
    if offset > MAX_OFFSET:
        raise _invalid("page_token is not a token this service issued", thread_id)
    return int(offset)


def _invalid(message: str, thread_id: str) -> InvalidArgument:
    return InvalidArgument(
        f"{message}; pass the next_page_token of a GetHistory call for thread {thread_id}",
        reason=Reason.INVALID_PAGE_TOKEN,
        thread_id=thread_id,
    )


# Search tokens (keyset, AIP-158): where the last page ended, bound to the query.
_SEARCH_VERSION = 1
_SEARCH_LAYOUT = struct.Struct(">B8sq16s")  # version, query digest, sort key, thread id


def encode_search(query_digest: bytes, cursor: tuple[int, str]) -> str:
    score, thread_id = cursor
    body = _SEARCH_LAYOUT.pack(_SEARCH_VERSION, query_digest, score, uuid.UUID(thread_id).bytes)
    return base64.urlsafe_b64encode(body + _checksum(body)).rstrip(b"=").decode("ascii")


def decode_search(token: str, query_digest: bytes) -> tuple[int, str]:
    """The cursor (sort key, thread id) a Search token resumes after, or INVALID_ARGUMENT
    when the token is garbled or was issued for another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    body, checksum = raw[: _SEARCH_LAYOUT.size], raw[_SEARCH_LAYOUT.size :]
    if len(raw) != _SEARCH_LAYOUT.size + _CHECKSUM_BYTES or checksum != _checksum(body):
        raise _invalid_search("page_token is not a token this service issued")
    version, digest, score, thread_id = _SEARCH_LAYOUT.unpack(body)
    if version != _SEARCH_VERSION:
        raise _invalid_search("page_token has an unknown version")
    if digest != query_digest:
        raise _invalid_search("page_token was issued for another query (other filters or sort)")
    return int(score), str(uuid.UUID(bytes=thread_id))


def _invalid_search(message: str) -> InvalidArgument:
    return InvalidArgument(
        f"{message}; pass the next_page_token of a Search with the same filters and sort",
        reason=Reason.INVALID_PAGE_TOKEN,
        field="page_token",
    )
