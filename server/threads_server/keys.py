"""Thread ids and the Redis key layout.

Every key of a thread carries the hash tag ``{xxxx}``: the last four hex digits of its
UUID. Copy gives the new thread the source's last four digits, so a thread and all its
copies share one Redis Cluster slot and every script touches a single slot.

With auth on, each caller's threads live in a namespace of their own
(``thr:{xxxx}:o.<hash of the caller>:<id>:...``): a caller can only name keys of its own,
so another's thread is not merely refused but absent, and even Create with an id another
caller uses makes a separate thread instead of revealing that the id is taken.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from dataclasses import dataclass

from threads_server.errors import InvalidArgument, Reason

_UUID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
_TAG_DIGITS = 4
KEY_PREFIX = "thr"


def parse_thread_id(raw: str, *, field: str = "thread_id") -> str:
    """Validates a hyphenated UUID (any case) and returns it in canonical lowercase."""
    if not raw:
        raise InvalidArgument(f"{field} is required", reason=Reason.INVALID_THREAD_ID, field=field)
    if not _UUID_RE.fullmatch(raw):
        raise InvalidArgument(
            f"{field} must be a UUID in 8-4-4-4-12 hex form, got {raw[:64]!r}",
            reason=Reason.INVALID_THREAD_ID,
            field=field,
        )
    return raw.lower()


def new_thread_id() -> str:
    return str(uuid.uuid4())


def request_thread_id(request_id: str) -> str:
    """The id Create gives a thread when the caller names none but sends a request_id, so
    that every retry of the request addresses the same thread (an RFC 9562 version-8 UUID).
    """
    raw = bytearray(hashlib.sha256(b"threads.v1.Create\0" + request_id.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


@functools.lru_cache(maxsize=4096)
def owner_namespace(owner: str) -> str:
    """The key segment of a caller's threads: a digest, so any subject (length, colons,
    braces) makes a fixed-size, unambiguous key part."""
    return "o." + hashlib.sha256(owner.encode()).hexdigest()[:32]


def new_copy_id(source_id: str) -> str:
    """A fresh random UUID whose hash-tag digits equal the source's (same slot)."""
    fresh = str(uuid.uuid4())
    return fresh[:-_TAG_DIGITS] + source_id[-_TAG_DIGITS:]


@dataclass(frozen=True, slots=True)
class ThreadKeys:
    """Names of the Redis keys that hold one thread of one owner ("" with auth off)."""

    thread_id: str
    owner: str = ""

    @property
    def tag(self) -> str:
        return "{" + self.thread_id[-_TAG_DIGITS:] + "}"

    @property
    def _base(self) -> str:
        if not self.owner:
            return f"{KEY_PREFIX}:{self.tag}:{self.thread_id}"
        return f"{KEY_PREFIX}:{self.tag}:{owner_namespace(self.owner)}:{self.thread_id}"

    @property
    def meta(self) -> str:
        """HASH: timestamps, ``copied_from``, ``owner``, ``expire_at_ms`` and one
        ``m:<key>`` field per metadata key."""
        return f"{self._base}:meta"

    @property
    def history(self) -> str:
        """LIST of serialized ``Entry`` messages (absent while the history is empty)."""
        return f"{self._base}:hist"

    @property
    def create_request(self) -> str:
        """HASH recording the Create ``request_id`` that made this thread (24 h); it
        outlives a Delete, so a late retry cannot bring a deleted thread back."""
        return f"{self._base}:createreq"

    def copy_request(self, request_id: str) -> str:
        """HASH recording which copy a Copy ``request_id`` made from this thread (24 h)."""
        return f"{self._base}:copyreq:{request_id}"
