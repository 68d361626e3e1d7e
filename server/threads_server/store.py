"""ThreadStore: every Redis operation of the service, each one Lua script call.

This is where Copy happens (``ThreadStore.copy`` and ``lua/copy.lua``). The store takes
validated input (canonical ids, checked numbers) and the caller (``owner``, "" with auth
off), whose key namespace every call stays in. A script replies an ``Outcome``: the store
builds the result from OK, acts on the outcomes that steer it, and raises
``errors.from_outcome`` for the rest. The store owns Redis: every call runs inside
``redis_errors.store_errors``, so only ``threads_server.errors`` leave it (an outage as
``Unavailable``), never a redis-py exception the layers above would have to know.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from google.protobuf import struct_pb2
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from threads_server import codec, errors, metrics, tracing
from threads_server.keys import ShardKeys, ThreadKeys, all_shards, new_copy_id, shard_of
from threads_server.limits import Limits
from threads_server.outcomes import Outcome, ScriptCall, parse
from threads_server.pb import threads_pb2 as pb
from threads_server.pipelining import ScriptPipeline
from threads_server.redis_errors import store_errors
from threads_server.replication import ReplicatedWriter
from threads_server.scripts import Scripts, script_name
from threads_server.search import Cursor, Filters, Query

REQUEST_RECORD_TTL_SECONDS = 24 * 60 * 60
MIN_REDIS_VERSION = (6, 2)
_COPY_ID_ATTEMPTS = 3


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
        """``request_ttl``: how long (s) a Create/Copy request_id is remembered;
        ``search_index``: whether writes maintain the search index (docs/search.md).
        ``min_replica_acks`` > 0: a write is acknowledged only once that many replicas
        confirm it (else ReplicationTimeout after ``replica_ack_timeout_ms``).
        ``pipelining``: the script calls share one connection, many in flight on it
        (``threads_server.pipelining``; never on a cluster)."""
        self._redis = redis
        self.search_index = search_index
        self._scripts = Scripts.register(redis)
        self._limits = limits or Limits()
        self._request_ttl = request_ttl
        self._cluster = isinstance(redis, RedisCluster)
        self._sentinel = isinstance(getattr(redis, "connection_pool", None), SentinelConnectionPool)
        self._prepared_primaries: frozenset[str] = frozenset()
        self._replicated = (
            ReplicatedWriter(redis, min_replica_acks, replica_ack_timeout_ms)
            if min_replica_acks
            else None
        )
        self._pipeline = ScriptPipeline(redis) if pipelining and not self._cluster else None
        self._send: Send = self._pipeline.call if self._pipeline is not None else send_alone

    async def aclose(self) -> None:
        """At shutdown: no script call is left waiting (``ScriptPipeline.aclose``)."""
        if self._pipeline is not None:
            await self._pipeline.aclose()

    async def _read(
        self, name: str, keys: list[str], args: Sequence[Any] = ()
    ) -> tuple[Outcome, list[Any]]:
        """Runs read-only script ``name`` the way every script call goes (``self._send``)."""
        return await run_script(self._scripts[name], keys, args, send=self._send)

    async def _write(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        *,
        reports_earlier_write: tuple[Outcome, ...] = (),
    ) -> tuple[Outcome, list[Any]]:
        """Runs write script ``name``; with min_replica_acks, acknowledged once replicated,
        and so are the earlier writes that outcomes in ``reports_earlier_write`` vouch for
        (a retry's DUPLICATE, an Append's LENGTH_MISMATCH naming a longer history)."""
        script = self._scripts[name]
        if self._replicated is None:
            return await run_script(script, keys, args, send=self._send)
        replicated = functools.partial(
            self._replicated.run,
            script,
            keys,
            args,
            fence=keys[0].removesuffix(":meta") + ":fence",
            reports_earlier_write=lambda reply: parse(reply)[0] in reports_earlier_write,
        )
        started = time.perf_counter()
        try:
            if tracing.ENABLED:
                return await _traced_script(script, keys, replicated)
            with store_errors(script):
                reply = await replicated()
        finally:
            metrics.script_call(script, started)  # the script and its WAIT, as a call
        return parse(reply)

    async def ping(self) -> None:
        """Raises when Redis is unreachable; on a cluster, when any primary is (each one
        serves a share of the slots). Unavailable when it is not."""
        with store_errors():
            if self._cluster:
                await self._redis.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await self._redis.ping()

    async def topology_changed(self) -> bool:
        """Whether the primaries differ from those ``prepare`` loaded the scripts on (a
        failover promoted a replica, a node was added); always False for one Redis."""
        if not (self._cluster or self._sentinel):
            return False
        return await self._primaries() != self._prepared_primaries

    async def _primaries(self) -> frozenset[str]:
        """Cluster: every primary in the client's layout; Sentinel: the primary the
        sentinels name now."""
        if self._sentinel:
            with store_errors():
                host, port = await self._redis.connection_pool.get_master_address()
            return frozenset({f"{host}:{port}"})
        return frozenset(node.name for node in self._redis.get_primaries())

    async def prepare(self) -> None:
        """Checks the server can run the scripts (COPY needs Redis 6.2+) and loads them,
        again after every restart, ahead of the first call. On a cluster: every primary
        (SCRIPT LOAD goes to all primaries; EVALSHA then routes by the keys' slot)."""
        primaries = await self._primaries() if self._cluster or self._sentinel else frozenset()
        with store_errors():
            if self._cluster:
                by_node = await self._redis.info("server", target_nodes=RedisCluster.PRIMARIES)
                infos = list(by_node.values()) if "redis_version" not in by_node else [by_node]
            else:
                infos = [await self._redis.info("server")]
        for info in infos:
            version = str(info.get("redis_version", "0"))
            if tuple(int(part) for part in version.split(".")[:2]) < MIN_REDIS_VERSION:
                raise RuntimeError(
                    f"Redis {version} is too old: threads needs Redis 6.2+ or Valkey (COPY)"
                )
        metrics.redis_server(infos[0])
        for script in self._scripts.values():  # SCRIPT LOAD: the first calls hit by SHA
            with store_errors(script):
                await self._redis.script_load(script.script)
        self._prepared_primaries = primaries

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
            [
                self._index(keys),
                thread_id,
                now,
                owner,
                expire_ms,
                request_id,
                fingerprint,
                self._request_ttl,
                len(meta_args),
                *meta_args,
                *codec.encode_entries(history, now),
            ],
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
        raise errors.from_outcome(
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
            raise errors.from_outcome(outcome, values, self._call("get", thread_id))
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
            [
                self._index(keys),
                thread_id,
                now,
                "" if ttl_ms is None else _expire_ms(now, ttl_ms),
                self._limits.max_metadata_bytes,
                *meta_args,
            ],
        )
        if outcome is not Outcome.OK:
            raise errors.from_outcome(outcome, values, self._call("update", thread_id))
        return codec.thread_from_fields(thread_id, *values[0])

    async def delete(self, owner: str, thread_id: str) -> None:
        keys = ThreadKeys(thread_id, owner)
        outcome, values = await self._write(
            "delete", [keys.meta, keys.history], [self._index(keys), thread_id]
        )
        if outcome is not Outcome.OK:
            raise errors.from_outcome(outcome, values, self._call("delete", thread_id))

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
            [
                self._index(keys),
                thread_id,
                "" if expected_length is None else expected_length,
                now,
                self._limits.max_history_length,
                *codec.encode_entries(entries, now),
            ],
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
            raise errors.from_outcome(outcome, values, call)
        metrics.appended(len(entries))
        return int(values[0])

    async def read_history(
        self, owner: str, thread_id: str, offset: int, limit: int
    ) -> tuple[list[pb.Entry], int]:
        """One page of entries starting at ``offset``, and the history's total length."""
        keys = ThreadKeys(thread_id, owner)
        outcome, values = await self._read(
            "read_history", [keys.meta, keys.history], [offset, limit]
        )
        if outcome is not Outcome.OK:
            raise errors.from_outcome(outcome, values, self._call("read_history", thread_id))
        length, page = values
        return codec.decode_entries(page, offset), int(length)

    async def watch_read(
        self, owner: str, thread_id: str, offset: int, max_entries: int, max_bytes: int
    ) -> WatchRead:
        """A watcher's next entries from ``offset`` on (``watch_read.lua``): at most
        ``max_entries``, and as many as fit in a message of ``max_bytes``."""
        keys = ThreadKeys(thread_id, owner)
        outcome, values = await self._read(
            "watch_read",
            [keys.meta, keys.history],
            [offset, max_entries, max_bytes, WatchRead.ENTRY_FRAMING_BYTES],
        )
        if outcome is not Outcome.OK:
            raise errors.from_outcome(outcome, values, self._call("watch_read", thread_id))
        length, created_at, page = values
        return WatchRead(codec.decode_entries(page, offset), int(length), created_at)

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
                [
                    self._index(target),
                    copy_id,
                    source_id,
                    now,
                    want,
                    fingerprint,
                    self._request_ttl,
                    _expire_ms(now, ttl_ms),
                    self._limits.max_history_length,
                    self._limits.max_metadata_bytes,
                    *meta_args,
                ],
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
        raise errors.from_outcome(outcome, values, call)

    async def _earlier_copy(self, owner: str, call: ScriptCall, copy_id: str) -> pb.Thread:
        try:
            return await self.get(owner, copy_id)
        except errors.NotFound:
            pass
        raise errors.copy_deleted(call, copy_id)

    async def search(
        self, owner: str, query: Query, *, cursor: Cursor | None, offset: int, page_size: int
    ) -> tuple[list[pb.Thread], Cursor | None]:
        """One page of the caller's threads matching ``query``, past ``cursor``, and the
        cursor of the next page (None on the last).

        Each shard returns its first ``offset + page_size + 1`` matches in order (one
        script per shard, all sent at once); their merge gives the page and tells whether
        more follow. The page's threads are then read with the Get script: one deleted in
        between is left out, as it no longer exists.
        """
        limit = offset + page_size + 1
        score, after = cursor if cursor is not None else ("", "")
        order = "desc" if query.descending else "asc"
        calls = [
            (
                self.filter_keys(shard, query.filters),
                [shard.prefix, shard.index, query.sort, order, score, after, limit, *ids],
            )
            for shard, ids in self.shards(owner, query.filters)
        ]
        rows: list[list[tuple[int, str]]] = []
        for _, values in await self.run_many("search", calls):
            flat = values[0]
            rows.append([(int(s), i.decode()) for i, s in zip(flat[::2], flat[1::2], strict=True)])
        merged = list(heapq.merge(*rows, reverse=query.descending))[:limit]
        page = merged[offset : offset + page_size]
        threads = await self._get_many(owner, [thread_id for _, thread_id in page])
        return threads, (page[-1] if len(merged) == limit else None)

    async def count(self, owner: str, filters: Filters) -> int:
        """How many of the caller's threads match: what Search pages through."""
        calls = [
            (self.filter_keys(shard, filters), [shard.prefix, shard.index, *ids])
            for shard, ids in self.shards(owner, filters)
        ]
        return sum(int(values[0]) for _, values in await self.run_many("count", calls))

    @staticmethod
    def shards(owner: str, filters: Filters) -> list[tuple[ShardKeys, list[str]]]:
        """The shards a query reads, each with its share of ``thread_ids``: with ids, the
        shards holding them; with ``copied_from``, the source's (copies stay in it)."""
        if filters.thread_ids:
            by_shard: dict[str, list[str]] = {}
            for thread_id in filters.thread_ids:
                by_shard.setdefault(shard_of(thread_id), []).append(thread_id)
            return [(ShardKeys(owner, shard), ids) for shard, ids in sorted(by_shard.items())]
        if filters.copied_from:
            return [(ShardKeys(owner, shard_of(filters.copied_from)), [])]
        return [(shard, []) for shard in all_shards(owner)]

    @staticmethod
    def filter_keys(shard: ShardKeys, filters: Filters) -> list[str]:
        """search.lua/count.lua's KEYS: the shard's sorted sets, then one set per filter."""
        keys = [shard.by_created, shard.by_updated, shard.by_id, shard.expiring]
        keys += [shard.metadata(field, value) for field, value in filters.metadata]
        if filters.copied_from:
            keys.append(shard.copies_of(filters.copied_from))
        return keys

    async def _get_many(self, owner: str, thread_ids: Sequence[str]) -> list[pb.Thread]:
        """The threads that still exist, in the order given."""
        calls: list[tuple[list[str], list[Any]]] = [
            ([keys.meta, keys.history], [])
            for keys in (ThreadKeys(thread_id, owner) for thread_id in thread_ids)
        ]
        threads = []
        for thread_id, (outcome, values) in zip(
            thread_ids, await self.run_many("get", calls), strict=True
        ):
            if outcome is Outcome.OK:
                threads.append(codec.thread_from_fields(thread_id, *values[0]))
        return threads

    async def run_many(
        self, name: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[tuple[Outcome, list[Any]]]:
        """Runs read-only scripts, each on one slot, as one batch. On a single Redis: one
        pipeline, one round trip. On a cluster (redis-py refuses EVALSHA in a cluster
        pipeline): the nodes in parallel, each node's calls one after another over one
        connection. One concurrent call per shard would take a pooled connection each, and
        a busy server then runs out of them (MaxConnectionsError). Reads, so a NOSCRIPT (a
        restarted Redis) loads the script and sends them again."""
        script = self._scripts[name]
        if not calls:
            return []
        with store_errors(script):
            if self._cluster:
                replies = await run_per_node(self._redis, script, calls)
            else:
                replies = await self._pipelined(script, calls)
        return [parse(reply) for reply in replies]

    async def _pipelined(
        self, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                replies: list[Any] = await pipe.execute()
                return replies
            except NoScriptError:
                if attempt:
                    raise
                await self._redis.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, script: str, thread_id: str) -> ScriptCall:
        """A call whose outcomes need only the thread it names."""
        return ScriptCall(script=script, thread_id=thread_id, limits=self._limits)


async def run_per_node(
    cluster: RedisCluster, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]
) -> list[Any]:
    """Cluster: the calls' replies, in order; the nodes work in parallel, each node's calls
    go one after another (one connection per node)."""
    by_node: dict[str, list[int]] = {}
    for position, (keys, _) in enumerate(calls):
        node = cluster.get_node_from_key(keys[0])
        by_node.setdefault(node.name if node else "", []).append(position)
    replies: list[Any] = [None] * len(calls)

    async def run(positions: list[int]) -> None:
        for position in positions:
            keys, args = calls[position]
            replies[position] = await script(keys=keys, args=args)

    await asyncio.gather(*(run(positions) for positions in by_node.values()))
    return replies


@dataclass(frozen=True, slots=True)
class WatchRead:
    """``ThreadStore.watch_read``'s answer: the entries (indexed), the history's length, and
    the thread's created_at, which tells one thread from another made under its id later."""

    # What a message adds to each stored entry (its index, the field's tag and length),
    # rounded up: the script counts it, so that a batch fits in the message it makes.
    ENTRY_FRAMING_BYTES: ClassVar[int] = 24

    entries: list[pb.Entry]
    length: int
    created_at: bytes


Send = Callable[[AsyncScript, Sequence[Any], Sequence[Any]], Awaitable[Any]]
"""How a script call reaches Redis: ``ScriptPipeline.call`` (on the shared connection,
with the other calls in flight) or ``send_alone``."""


async def send_alone(script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """One call on its own (``AsyncScript``: EVALSHA, reloaded on NOSCRIPT): on a cluster,
    and with ``--redis-pipelining off``."""
    return await script(keys=keys, args=args)


async def run_script(
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[Any] = (),
    *,
    send: Send,
) -> tuple[Outcome, list[Any]]:
    """Runs a script inside the store's error boundary; its reply as the outcome and the
    values after the tag. With tracing on, inside a child span of the RPC's. ``send`` has
    no default, so that no call skips the store's pipeline by leaving it out."""
    started = time.perf_counter()
    try:
        if tracing.ENABLED:
            return await _traced_script(script, keys, functools.partial(send, script, keys, args))
        with store_errors(script):
            reply = await send(script, keys, args)
    finally:
        metrics.script_call(script, started)
    return parse(reply)


async def _traced_script(
    script: AsyncScript, keys: Sequence[str], call: Callable[[], Awaitable[Any]]
) -> tuple[Outcome, list[Any]]:
    """A script ``call`` in a span naming the script, the keys' hash tag and the reply's
    tag (an outage: status ERROR, with the store's error)."""
    with tracing.script_span(script_name(script), keys) as span:
        with store_errors(script):
            reply = await call()
        outcome, values = parse(reply)
        span.set_attribute("threads.outcome", outcome.value)
        return outcome, values


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
