"""ThreadStore: every Redis operation of the service, each one Lua script call.

This is where Copy happens (``ThreadStore.copy`` and ``lua/copy.lua``). The store takes
validated input (canonical ids, checked numbers) and the caller (``owner``, "" with auth
off), whose key namespace every call stays in. A script replies an ``Outcome``: the store
builds the result from OK, acts on the outcomes that steer it, and raises
``outcomes.from_outcome`` for the rest. Every call goes through the store's ``Corridor``
(``store.corridor``), so only ``threads_server.errors`` leave it (an outage as
``Unavailable``), never a redis-py exception the layers above would have to know.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
from collections.abc import Sequence
from typing import Any

from google.protobuf import struct_pb2

from threads_server.errors import NotFound
from threads_server.ops import metrics
from threads_server.ops.config import Settings
from threads_server.pb import threads_pb2 as pb
from threads_server.store import codec
from threads_server.store.connect import close_redis, connect_redis
from threads_server.store.corridor import Build, Call, Corridor, Listener, transport_for
from threads_server.store.corridor.subscriptions import Subscription
from threads_server.store.keys import (
    ShardKeys,
    ThreadKeys,
    all_shards,
    copies_set,
    metadata_set,
    new_copy_id,
    shard_of,
)
from threads_server.store.limits import Limits
from threads_server.store.outcomes import (
    Outcome,
    ScriptCall,
    copy_deleted,
    from_outcome,
)
from threads_server.store.query import Cursor, Filters, Query
from threads_server.store.scripts import all_scripts

REQUEST_RECORD_TTL_SECONDS = 24 * 60 * 60
MIN_REDIS_VERSION = (6, 2)
_COPY_ID_ATTEMPTS = 3
_FENCE_TTL_MS = 1000


class ThreadStore:
    def __init__(
        self,
        redis: Any,
        *,
        limits: Limits | None = None,
        request_ttl: int = REQUEST_RECORD_TTL_SECONDS,
        search_index: bool = True,
        min_replica_acks: int = 0,
        replica_ack_timeout_ms: int = 1000,
        pipelining: bool = True,
    ) -> None:
        """The store on a redis-py client (plain, cluster or Sentinel's; ``open`` builds
        one from the settings). ``request_ttl``: how long (s) a Create/Copy request_id is
        remembered; ``search_index``: whether writes maintain the search index
        (docs/search.md). ``min_replica_acks`` > 0: a write is acknowledged only once that
        many replicas confirm it (else ReplicationTimeout after ``replica_ack_timeout_ms``).
        ``pipelining``: the calls share one connection, many in flight on it
        (``corridor.pipelined``; never on a cluster)."""
        self.redis = redis
        self.search_index = search_index
        self._scripts = all_scripts()
        self._limits = limits or Limits()
        self._request_ttl = request_ttl
        self._replicated = min_replica_acks > 0
        self._corridor = Corridor(
            transport_for(
                redis,
                pipelining=pipelining,
                min_replica_acks=min_replica_acks,
                replica_ack_timeout_ms=replica_ack_timeout_ms,
            )
        )
        self._owns_client = False

    @classmethod
    def open(
        cls, settings: Settings, redis_url: str | None, *, limits: Limits | None = None
    ) -> ThreadStore:
        """The store with a Redis client of its own, built from ``settings`` (closed by
        ``aclose``). ``redis_url``: None with ``settings.redis_sentinel``."""
        store = cls(
            connect_redis(redis_url, settings),
            limits=limits or Limits.from_settings(settings),
            search_index=settings.search_index,
            min_replica_acks=settings.min_replica_acks,
            replica_ack_timeout_ms=settings.replica_ack_timeout_ms,
            pipelining=settings.redis_pipelining,
        )
        store._owns_client = True
        return store

    async def aclose(self) -> None:
        """At shutdown: no call is left waiting; the client is closed if ``open`` made it."""
        await self._corridor.aclose()
        if self._owns_client:
            await close_redis(self.redis)

    def _argv(self, name: str, rest: Sequence[Any] = (), /, **argv: Any) -> list[Any]:
        """Script ``name``'s ARGV: ``argv`` by the names its header declares, then ``rest``."""
        return self._scripts[name].argv(rest, **argv)

    async def _read(
        self, name: str, keys: list[str], rest: Sequence[Any] = (), /, **argv: Any
    ) -> tuple[Outcome, list[Any]]:
        """Runs read-only script ``name`` with ``_argv(name, rest, **argv)``."""
        return await self._corridor.run(self._scripts[name], keys, self._argv(name, rest, **argv))

    async def _write(
        self,
        name: str,
        keys: list[str],
        rest: Sequence[Any] = (),
        /,
        *,
        reports_earlier_write: tuple[Outcome, ...] = (),
        **argv: Any,
    ) -> tuple[Outcome, list[Any]]:
        """Runs write script ``name``; with min_replica_acks, acknowledged once replicated,
        and so are the earlier writes that outcomes in ``reports_earlier_write`` vouch for
        (a retry's DUPLICATE, an Append's LENGTH_MISMATCH naming a longer history): WAIT
        only covers the connection's own writes, so a short-lived fence key in the keys'
        slot is written and waited for, later in the replication stream than them."""
        outcome, values = await self._corridor.run(
            self._scripts[name], keys, self._argv(name, rest, **argv), write=True
        )
        if self._replicated and outcome in reports_earlier_write:
            fence = keys[0].removesuffix(":meta") + ":fence"
            await self._corridor.command(
                "SET", fence, b"", "PX", _FENCE_TTL_MS, key=fence, write=True
            )
        return outcome, values

    async def run_many(self, name: str, calls: Sequence[Call]) -> list[tuple[Outcome, list[Any]]]:
        """Read-only calls of script ``name``, each on one slot, sent together (one round
        trip on one Redis; per node on a cluster: ``corridor.per_node``)."""
        return await self._corridor.run_many(self._scripts[name], calls)

    async def ping(self) -> None:
        """Raises when Redis is unreachable; on a cluster, when any primary is (each one
        serves a share of the slots). Unavailable when it is not."""
        await self._corridor.ping()

    async def topology_changed(self) -> bool:
        """Whether the primaries differ from those ``prepare`` loaded the scripts on (a
        failover promoted a replica, a node was added); always False for one Redis."""
        return await self._corridor.topology_changed()

    async def prepare(self) -> None:
        """Checks the server can run the scripts (COPY needs Redis 6.2+) and loads them,
        again after every restart, ahead of the first call. On a cluster: every primary
        (EVALSHA then routes by the keys' slot). After a failover, Watch's subscriptions
        follow the new primaries (``Corridor.prepare``)."""
        infos = await self._corridor.servers()
        for info in infos:
            version = str(info.get("redis_version", "0"))
            if tuple(int(part) for part in version.split(".")[:2]) < MIN_REDIS_VERSION:
                raise RuntimeError(
                    f"Redis {version} is too old: threads needs Redis 6.2+ or Valkey (COPY)"
                )
        metrics.redis_server(infos[0])
        await self._corridor.prepare(self._scripts.values())  # the first calls hit by SHA

    async def create(
        self,
        owner: str,
        thread_id: str,
        metadata: struct_pb2.Struct,
        history: Sequence[pb.Entry],
        *,
        return_existing: bool,
        ttl_ms: int,
        request_id: str = "",
    ) -> pb.Thread:
        """Creates a thread; with a request_id, a retry returns the thread it created."""
        keys = ThreadKeys(thread_id, owner)
        now = codec.now_us()
        meta_args = self._metadata_args(metadata)
        record_keys: list[str] = []
        fingerprint = ""
        if request_id:
            record_keys.append(keys.create_request)
            fingerprint = _fingerprint(
                b"create",
                str(return_existing).encode(),
                str(ttl_ms).encode(),
                *_sorted_pairs(meta_args),
                *(entry.data.SerializeToString(deterministic=True) for entry in history),
            )
        expire_ms = _expire_ms(now, ttl_ms)
        outcome, values = await self._write(
            "create",
            [keys.meta, keys.history, *record_keys],
            [*meta_args, *codec.encode_entries(history, now)],
            idx=self._index(keys),
            id=thread_id,
            now=now,
            owner=owner,
            expire_ms=expire_ms,
            request_id=request_id,
            fingerprint=fingerprint,
            record_ttl=self._request_ttl,
            n_meta=len(meta_args),
            reports_earlier_write=(Outcome.DUPLICATE, Outcome.EXISTS),
        )
        if outcome is Outcome.OK:
            thread = pb.Thread(
                thread_id=thread_id, metadata=metadata, history_length=len(history), owner=owner
            )
            thread.created_at.CopyFrom(codec.timestamp_from_us(now))
            thread.updated_at.CopyFrom(thread.created_at)
            if ttl_ms:
                thread.expire_time.CopyFrom(codec.timestamp_from_us(int(expire_ms) * 1000))
            return thread
        if outcome is Outcome.DUPLICATE or (outcome is Outcome.EXISTS and return_existing):
            return codec.thread_from_fields(thread_id, *values[0])
        raise from_outcome(
            outcome,
            values,
            ScriptCall(
                script="create", thread_id=thread_id, limits=self._limits, request_id=request_id
            ),
        )

    def _index(self, keys: ThreadKeys) -> str:
        """The scripts' index argument: the thread's shard index prefix, '' when off."""
        return keys.shard.index if self.search_index else ""

    def _metadata_args(self, metadata: struct_pb2.Struct) -> list[bytes]:
        """The request's metadata as HSET arguments, refused when it alone is over the
        limit (serialized once, here, for both the check and the script)."""
        meta_args = codec.metadata_args(metadata)
        self._limits.check_metadata(codec.metadata_size(meta_args))
        return meta_args

    async def get(self, owner: str, thread_id: str) -> pb.Thread:
        keys = ThreadKeys(thread_id, owner)
        outcome, values = await self._read("get", [keys.meta, keys.history])
        if outcome is not Outcome.OK:
            raise from_outcome(outcome, values, self._call("get", thread_id))
        return codec.thread_from_fields(thread_id, *values[0])

    async def update(
        self, owner: str, thread_id: str, metadata: struct_pb2.Struct, *, ttl_ms: int | None
    ) -> pb.Thread:
        """Merges metadata keys; ``ttl_ms`` None keeps the expiry, 0 removes it."""
        keys = ThreadKeys(thread_id, owner)
        meta_args = self._metadata_args(metadata)
        now = codec.now_us()
        outcome, values = await self._write(
            "update",
            [keys.meta, keys.history],
            meta_args,
            idx=self._index(keys),
            id=thread_id,
            now=now,
            expire_ms="" if ttl_ms is None else _expire_ms(now, ttl_ms),
            max_metadata=self._limits.max_metadata_bytes,
        )
        if outcome is not Outcome.OK:
            raise from_outcome(outcome, values, self._call("update", thread_id))
        return codec.thread_from_fields(thread_id, *values[0])

    async def delete(self, owner: str, thread_id: str) -> None:
        keys = ThreadKeys(thread_id, owner)
        outcome, values = await self._write(
            "delete", [keys.meta, keys.history], idx=self._index(keys), id=thread_id
        )
        if outcome is not Outcome.OK:
            raise from_outcome(outcome, values, self._call("delete", thread_id))

    async def append(
        self,
        owner: str,
        thread_id: str,
        entries: Sequence[pb.Entry],
        expected_length: int | None,
    ) -> int:
        keys = ThreadKeys(thread_id, owner)
        now = codec.now_us()
        outcome, values = await self._write(
            "append",
            [keys.meta, keys.history],
            codec.encode_entries(entries, now),
            idx=self._index(keys),
            id=thread_id,
            expected_length="" if expected_length is None else expected_length,
            now=now,
            max_length=self._limits.max_history_length,
            reports_earlier_write=(Outcome.LENGTH_MISMATCH,),
        )
        if outcome is not Outcome.OK:
            call = ScriptCall(
                script="append",
                thread_id=thread_id,
                limits=self._limits,
                expected_length=expected_length,
                adding=len(entries),
            )
            raise from_outcome(outcome, values, call)
        metrics.appended(len(entries))
        return int(values[0])

    async def read_history(
        self, owner: str, thread_id: str, offset: int, limit: int
    ) -> tuple[list[pb.Entry], int]:
        """One page of entries starting at ``offset``, and the history's total length: up
        to ``limit`` entries, fewer where more would not fit in one reply (AIP-158 lets a
        page be short; its token says where the next starts)."""
        keys = ThreadKeys(thread_id, owner)
        outcome, values = await self._read(
            "read_history",
            [keys.meta, keys.history],
            offset=offset,
            limit=limit,
            max_bytes=self._limits.reply_entry_bytes,
            per_entry=ENTRY_FRAMING_BYTES,
        )
        if outcome is not Outcome.OK:
            raise from_outcome(outcome, values, self._call("read_history", thread_id))
        length, page = values
        return codec.decode_entries(page, offset), int(length)

    async def watch_read(
        self, owner: str, thread_id: str, offset: int, max_entries: int
    ) -> WatchRead:
        """A watcher's next entries from ``offset`` on (``watch_read.lua``): at most
        ``max_entries``, and as many as fit in one message."""
        keys = ThreadKeys(thread_id, owner)
        outcome, values = await self._read(
            "watch_read",
            [keys.meta, keys.history],
            offset=offset,
            max_entries=max_entries,
            max_bytes=self._limits.reply_entry_bytes,
            per_entry=ENTRY_FRAMING_BYTES,
        )
        if outcome is not Outcome.OK:
            raise from_outcome(outcome, values, self._call("watch_read", thread_id))
        length, created_at, expire_at_ms, page = values
        return WatchRead(
            offset,
            codec.decode_entries(page, offset),
            int(length),
            created_at,
            int(expire_at_ms) if expire_at_ms else None,
        )

    async def subscribe(self, owner: str, thread_id: str, listener: Listener) -> Subscription:
        """``listener`` hears the wake-ups the write scripts publish on the thread's channel
        (``lua/includes/wake.lua``); returns once Redis confirmed it."""
        return await self._corridor.subscribe(
            ThreadKeys(thread_id, owner).channel.encode(), listener
        )

    def unsubscribe(self, subscription: Subscription) -> None:
        self._corridor.unsubscribe(subscription)

    @property
    def subscription_links(self) -> int:
        """Subscription connections open now: at most one per Redis node."""
        return self._corridor.subscription_links

    @property
    def shares_one_connection(self) -> bool:
        """Whether the calls share one connection, many in flight on it (pipelined), rather
        than each holding a pooled one for its round trip (a cluster's nodes)."""
        return self._corridor.transport.shares_one_connection

    async def copy(
        self,
        owner: str,
        source_id: str,
        *,
        request_id: str,
        history_length: int | None,
        metadata: struct_pb2.Struct,
        ttl_ms: int,
    ) -> pb.Thread:
        """Copies a thread in one script; with a request_id, a retry returns the same copy.

        The copy belongs to ``owner``, the caller, who can only name its own threads as
        the source. It gets its own expiry (``ttl_ms`` from now; 0: none), never the
        source's.
        """
        source = ThreadKeys(source_id, owner)
        meta_args = self._metadata_args(metadata)
        want = "" if history_length is None else str(history_length)
        request_keys: list[str] = []
        fingerprint = ""  # only compared when a request_id makes the copy idempotent
        if request_id:
            request_keys.append(source.copy_request(request_id))
            fingerprint = _copy_fingerprint(want, meta_args, ttl_ms)
        for _ in range(_COPY_ID_ATTEMPTS):
            copy_id = new_copy_id(source_id)
            target = ThreadKeys(copy_id, owner)
            now = codec.now_us()
            outcome, values = await self._write(
                "copy",
                [source.meta, source.history, target.meta, target.history, *request_keys],
                meta_args,
                idx=self._index(target),
                copy_id=copy_id,
                source_id=source_id,
                now=now,
                want=want,
                fingerprint=fingerprint,
                request_ttl=self._request_ttl,
                expire_ms=_expire_ms(now, ttl_ms),
                max_length=self._limits.max_history_length,
                max_metadata=self._limits.max_metadata_bytes,
                reports_earlier_write=(Outcome.DUPLICATE,),
            )
            if outcome is not Outcome.ID_TAKEN:
                break
        else:  # pragma: no cover - three 108-bit random collisions in a row
            raise RuntimeError("could not find a free id for the copy")
        if outcome is Outcome.OK:
            copied = codec.thread_from_fields(copy_id, *values[0])
            metrics.copied(copied.history_length)
            return copied
        call = ScriptCall(
            script="copy",
            thread_id=source_id,
            limits=self._limits,
            request_id=request_id,
            history_length=history_length,
        )
        if outcome is Outcome.DUPLICATE:
            return await self._earlier_copy(owner, call, values[0].decode())
        raise from_outcome(outcome, values, call)

    async def _earlier_copy(self, owner: str, call: ScriptCall, copy_id: str) -> pb.Thread:
        try:
            return await self.get(owner, copy_id)
        except NotFound:
            pass
        raise copy_deleted(call, copy_id)

    async def search(
        self, owner: str, query: Query, *, cursor: Cursor | None, offset: int, page_size: int
    ) -> tuple[list[pb.Thread], Cursor | None]:
        """One page of the caller's threads matching ``query``, past ``cursor``, and the
        cursor of the next page (None on the last).

        One search.lua call per node holding the caller's shards (one in all on one
        Redis): it takes each shard's first ``offset + page_size + 1`` matches, merges
        them and replies the page's rows with the threads' stored state, so the page needs
        no second read. On a cluster the nodes' rows are merged here; a page row whose
        state no call read (LangGraph's ``offset`` over several nodes) is read with Get.
        """
        limit = offset + page_size + 1
        score, after = cursor if cursor is not None else ("", "")
        shards = self.shards(owner, query.filters)

        def build(positions: Sequence[int], whole: bool) -> Call:
            # Only the one call that reads every shard knows where the page starts; one
            # node of several knows that its first page_size rows may all be on it.
            return self._shards_call(
                "search",
                shards,
                positions,
                sort=query.sort,
                order="desc" if query.descending else "asc",
                cursor_score=score,
                cursor_id=after,
                limit=limit,
                skip=offset if whole else 0,
                take=page_size if whole or not offset else 0,
                filters=_filter_sets(query.filters),
            )

        skipped = 0
        lists: list[list[_Row]] = []
        for positions, _, (flat, states) in await self._fan_out("search", shards, build):
            if len(positions) == len(shards):
                skipped = offset  # the only call: it replied the rows past offset
            ids, scores = flat[::2], flat[1::2]
            read = [*states, *[_NOT_READ] * (len(ids) - len(states))]
            lists.append(
                [(int(s), i.decode(), state) for i, s, state in zip(ids, scores, read, strict=True)]
            )
        if len(lists) == 1:  # one Redis: the script merged every shard
            rows = lists[0][: limit - skipped]
        else:
            merged = heapq.merge(*lists, key=_row_order, reverse=query.descending)
            rows = list(itertools.islice(merged, limit - skipped))
        page = rows[offset - skipped : offset - skipped + page_size]
        unread = [thread_id for _, thread_id, state in page if state is _NOT_READ]
        fetched = {thread.thread_id: thread for thread in await self._get_many(owner, unread)}
        threads = []
        for _, thread_id, state in page:
            if state is _NOT_READ:
                if thread_id in fetched:
                    threads.append(fetched[thread_id])
            elif state is not None:  # None: deleted since the index was written
                threads.append(codec.thread_from_fields(thread_id, *state))
        more = len(rows) == limit - skipped
        return threads, (page[-1][:2] if more and page else None)

    async def count(self, owner: str, filters: Filters) -> int:
        """How many of the caller's threads match: what Search pages through."""
        shards = self.shards(owner, filters)

        def build(positions: Sequence[int], whole: bool) -> Call:
            return self._shards_call("count", shards, positions, filters=_filter_sets(filters))

        return sum(int(values[0]) for _, _, values in await self._fan_out("count", shards, build))

    async def _fan_out(
        self, name: str, shards: Sequence[tuple[ShardKeys, bytes]], build: Build
    ) -> list[tuple[Sequence[int], Outcome, list[Any]]]:
        """Script ``name`` over ``shards``: one call per node that holds them."""
        routes = [_shard_names(shard)[2] for shard, _ in shards]
        return await self._corridor.fan_out(self._scripts[name], routes, build)

    def _shards_call(
        self,
        name: str,
        shards: Sequence[tuple[ShardKeys, bytes]],
        positions: Sequence[int],
        **argv: Any,
    ) -> Call:
        """search.lua/count.lua's call over the shards at ``positions``: KEYS the first
        one's ``idx:c`` (it routes the call), ARGV ``argv`` then three per shard."""
        rest: list[bytes] = []
        for position in positions:
            shard, ids = shards[position]
            prefix, index, _ = _shard_names(shard)
            rest += (prefix, index, ids)
        return [_shard_names(shards[positions[0]][0])[2]], self._argv(name, rest, **argv)

    @staticmethod
    def shards(owner: str, filters: Filters) -> list[tuple[ShardKeys, bytes]]:
        """The shards a query reads, each with its share of ``thread_ids`` (space-separated;
        empty for every thread): with ids, the shards holding them; with ``copied_from``,
        the source's (copies stay in it)."""
        if filters.thread_ids:
            by_shard: dict[str, list[str]] = {}
            for thread_id in filters.thread_ids:
                by_shard.setdefault(shard_of(thread_id), []).append(thread_id)
            return [
                (ShardKeys(owner, shard), " ".join(ids).encode())
                for shard, ids in sorted(by_shard.items())
            ]
        if filters.copied_from:
            return [(ShardKeys(owner, shard_of(filters.copied_from)), b"")]
        return [(shard, b"") for shard in all_shards(owner)]

    async def _get_many(self, owner: str, thread_ids: Sequence[str]) -> list[pb.Thread]:
        """The threads that still exist, in the order given."""
        calls: list[Call] = [
            ([keys.meta, keys.history], self._argv("get"))
            for keys in (ThreadKeys(thread_id, owner) for thread_id in thread_ids)
        ]
        threads = []
        for thread_id, (outcome, values) in zip(
            thread_ids, await self.run_many("get", calls), strict=True
        ):
            if outcome is Outcome.OK:
                threads.append(codec.thread_from_fields(thread_id, *values[0]))
        return threads

    def _call(self, script: str, thread_id: str) -> ScriptCall:
        """A call whose outcomes need only the thread it names."""
        return ScriptCall(script=script, thread_id=thread_id, limits=self._limits)


@functools.lru_cache(maxsize=16 * 4096)
def _shard_names(shard: ShardKeys) -> tuple[bytes, bytes, str]:
    """A shard's key prefix and index prefix (as the bytes sent) and ``idx:c``, made once
    per caller and shard: Search and Count send 16 of each."""
    return shard.prefix.encode(), shard.index.encode(), shard.by_created


_Row = tuple[int, str, Any]
"""A Search row: its sort key (us; 0 in id order), thread id and stored state (get.lua's
``{history_length, fields}``; None: the thread is gone; ``_NOT_READ``: not read)."""
_NOT_READ: Any = object()


def _row_order(row: _Row) -> tuple[int, str]:
    return row[0], row[1]


def _filter_sets(filters: Filters) -> str:
    """search.lua/count.lua's ``filters``: the filter sets after an index prefix."""
    names = [metadata_set(field, value) for field, value in filters.metadata]
    if filters.copied_from:
        names.append(copies_set(filters.copied_from))
    return " ".join(names)


# What a reply adds to each stored entry (its index, the field's tag and length), rounded
# up: read_entries.lua counts it, so that a page or a Watch message fits in its reply.
ENTRY_FRAMING_BYTES = 24


class WatchRead:
    """``ThreadStore.watch_read``'s answer: the entries from ``offset`` on (indexed), the
    history's length, the thread's created_at (which tells it from another made under its
    id later) and when it expires (Unix ms; None: never). Shared by the watchers of a
    thread that read from the same index (``store.feeds``), and so is its ``message``."""

    __slots__ = ("_message", "created_at", "entries", "expire_at_ms", "length", "offset")

    def __init__(
        self,
        offset: int,
        entries: list[pb.Entry],
        length: int,
        created_at: bytes,
        expire_at_ms: int | None = None,
    ) -> None:
        self.offset = offset
        self.entries = entries
        self.length = length
        self.created_at = created_at
        self.expire_at_ms = expire_at_ms
        self._message: pb.WatchResponse | None = None

    def since(self, index: int) -> WatchRead:
        """The same read from ``index`` on (``offset`` ≤ ``index``)."""
        if index == self.offset:
            return self
        entries = self.entries[index - self.offset :]
        return WatchRead(index, entries, self.length, self.created_at, self.expire_at_ms)

    def message(self) -> pb.WatchResponse:
        """The Watch message of these entries, built once for every watcher that sends
        this read (so the transport may serialize it once too); never changed after."""
        if self._message is None:
            self._message = pb.WatchResponse(
                entries=self.entries, history_length=self.offset + len(self.entries)
            )
        return self._message


def _expire_ms(now_us: int, ttl_ms: int) -> str:
    """The scripts' expiry argument: '0' for none, else the Unix time in ms to expire at."""
    return str(now_us // 1000 + ttl_ms) if ttl_ms else "0"


def _sorted_pairs(meta_args: list[bytes]) -> list[bytes]:
    """Metadata pairs in key order: protobuf leaves map order on the wire undefined (Go
    randomises it), and a retry must match its first attempt."""
    pairs = sorted(zip(meta_args[::2], meta_args[1::2], strict=True))
    return [part for pair in pairs for part in pair]


def _fingerprint(*parts: bytes) -> str:
    """A digest of the parts, each length-prefixed so that distinct requests never collide."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _copy_fingerprint(history_length: str, meta_args: list[bytes], ttl_ms: int) -> str:
    """What makes two Copy requests "the same" for a request_id.

    The ttl is only added when set, so records written before ttl existed still match.
    """
    ttl = [b"ttl", str(ttl_ms).encode()] if ttl_ms else []
    return _fingerprint(history_length.encode(), *_sorted_pairs(meta_args), *ttl)
