"""Thread ids and the Redis key layout (docs/search.md).

Every key of a thread carries the hash tag ``{<ns>.<s>}``: the caller's namespace ``<ns>``
(``-`` with auth off, ``o.<hash of the caller>`` with auth on) and the **shard** ``<s>``,
the id's last hex digit. So each caller's threads spread over 16 shards (16 Redis Cluster
slots), and the search index of a shard (``thr:{<ns>.<s>}:idx:...``) lives in the slot of
the threads it indexes: every write script changes a thread and its index entries in one
slot, atomically. Copy gives the new thread the source's last hex digit, so a thread and
all its copies share one shard and Redis's COPY stays inside one slot.

A caller can only name keys of its own namespace, so another's thread is not merely
refused but absent, and even Create with an id another caller uses makes a separate thread
instead of revealing that the id is taken.
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
KEY_PREFIX = "thr"
SHARDS = "0123456789abcdef"
"""The shards of one caller's threads: the possible last hex digits of an id."""
NO_OWNER_NAMESPACE = "-"


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


def namespace(owner: str) -> str:
    """The namespace part of a caller's hash tags (``-`` with auth off)."""
    return owner_namespace(owner) if owner else NO_OWNER_NAMESPACE


def shard_of(thread_id: str) -> str:
    """The shard of a thread: its id's last hex digit."""
    return thread_id[-1]


def new_copy_id(source_id: str) -> str:
    """A fresh random UUID whose shard digit equals the source's (same slot)."""
    fresh = str(uuid.uuid4())
    return fresh[:-1] + shard_of(source_id)


def shard_prefix(owner: str, shard: str) -> str:
    """``thr:{<ns>.<s>}:``, the start of every key of one shard of one caller."""
    return namespace_prefix(namespace(owner), shard)


def namespace_prefix(ns: str, shard: str) -> str:
    """``shard_prefix`` by namespace (the migration knows a namespace, not its caller)."""
    return f"{KEY_PREFIX}:{{{ns}.{shard}}}:"


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """The search index of one shard of one caller (docs/search.md, "Index keys")."""

    owner: str
    shard: str
    ns: str = ""  # the namespace, when the caller is not known (migration)

    @property
    def prefix(self) -> str:
        """What the scripts put before ``<id>:meta`` to name a thread of this shard."""
        if self.ns:
            return namespace_prefix(self.ns, self.shard)
        return shard_prefix(self.owner, self.shard)

    @property
    def index(self) -> str:
        """What the scripts put before ``c``, ``u``, ``m:<h>``, ... to name index keys."""
        return self.prefix + "idx:"

    @property
    def by_created(self) -> str:
        return self.index + "c"

    @property
    def by_updated(self) -> str:
        return self.index + "u"

    @property
    def by_id(self) -> str:
        return self.index + "i"

    @property
    def expiring(self) -> str:
        return self.index + "e"

    @property
    def entries(self) -> str:
        return self.index + "x"

    def metadata(self, field: bytes, value: bytes) -> str:
        """The set of threads whose metadata field (``m:<key>``) holds ``value`` (serialized
        ``Value``), as ``lua/includes/metadata_set.lua`` names it."""
        return self.index + metadata_set(field, value)

    def copies_of(self, source_id: str) -> str:
        return self.index + copies_set(source_id)


def metadata_set(field: bytes, value: bytes) -> str:
    """``m:<digest>``: a metadata set's name after its shard's index prefix."""
    return "m:" + metadata_digest(field, value)


def copies_set(source_id: str) -> str:
    """``f:<source>``: the set of a thread's direct copies, after the index prefix."""
    return "f:" + source_id


def metadata_digest(field: bytes, value: bytes) -> str:
    """SHA1 of the length-prefixed field and the value: a fixed-size name, whatever the
    key and value, and no key/value pair can forge another's (the Lua side is the same)."""
    return hashlib.sha1(str(len(field)).encode() + b":" + field + value).hexdigest()


def all_shards(owner: str) -> list[ShardKeys]:
    return [ShardKeys(owner, shard) for shard in SHARDS]


@dataclass(frozen=True, slots=True)
class ThreadKeys:
    """Names of the Redis keys that hold one thread of one owner ("" with auth off)."""

    thread_id: str
    owner: str = ""
    ns: str = ""  # the namespace, when the caller is not known (migration)

    @property
    def tag(self) -> str:
        return "{" + f"{self.ns or namespace(self.owner)}.{shard_of(self.thread_id)}" + "}"

    @property
    def shard(self) -> ShardKeys:
        return ShardKeys(self.owner, shard_of(self.thread_id), self.ns)

    @property
    def _base(self) -> str:
        return f"{KEY_PREFIX}:{self.tag}:{self.thread_id}"

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
    def channel(self) -> str:
        """Pub/Sub channel on which the write scripts wake the thread's watchers (in the
        thread's slot; ``lua/includes/wake.lua`` derives it from ``meta`` the same way)."""
        return f"{self._base}:watch"

    @property
    def create_request(self) -> str:
        """HASH recording the Create ``request_id`` that made this thread (24 h); it
        outlives a Delete, so a late retry cannot bring a deleted thread back."""
        return f"{self._base}:createreq"

    def copy_request(self, request_id: str) -> str:
        """HASH recording which copy a Copy ``request_id`` made from this thread (24 h)."""
        return f"{self._base}:copyreq:{request_id}"
