"""Thread ids and the Redis key layout.

Every key of a thread carries the hash tag ``{xxxx}``: the last four hex digits of its
UUID. Copy gives the new thread the source's last four digits, so a thread and all its
copies share one Redis Cluster slot and every script touches a single slot.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from server.errors import InvalidArgument

_UUID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
_TAG_DIGITS = 4
KEY_PREFIX = "thr"


def parse_thread_id(raw: str, *, field: str = "thread_id") -> str:
    """Validates a hyphenated UUID (any case) and returns it in canonical lowercase."""
    if not raw:
        raise InvalidArgument(f"{field} is required", reason="INVALID_THREAD_ID", field=field)
    if not _UUID_RE.fullmatch(raw):
        raise InvalidArgument(
            f"{field} must be a UUID in 8-4-4-4-12 hex form, got {raw[:64]!r}",
            reason="INVALID_THREAD_ID",
            field=field,
        )
    return raw.lower()


def new_thread_id() -> str:
    return str(uuid.uuid4())


def new_copy_id(source_id: str) -> str:
    """A fresh random UUID whose hash-tag digits equal the source's (same slot)."""
    fresh = str(uuid.uuid4())
    return fresh[:-_TAG_DIGITS] + source_id[-_TAG_DIGITS:]


@dataclass(frozen=True, slots=True)
class ThreadKeys:
    """Names of the Redis keys that hold one thread."""

    thread_id: str

    @property
    def tag(self) -> str:
        return "{" + self.thread_id[-_TAG_DIGITS:] + "}"

    @property
    def meta(self) -> str:
        """HASH: timestamps, ``copied_from`` and one ``m:<key>`` field per metadata key."""
        return f"{KEY_PREFIX}:{self.tag}:{self.thread_id}:meta"

    @property
    def history(self) -> str:
        """LIST of serialized ``Entry`` messages (absent while the history is empty)."""
        return f"{KEY_PREFIX}:{self.tag}:{self.thread_id}:hist"

    def copy_request(self, request_id: str) -> str:
        """HASH recording which copy a Copy ``request_id`` made from this thread (24 h)."""
        return f"{KEY_PREFIX}:{self.tag}:{self.thread_id}:copyreq:{request_id}"
