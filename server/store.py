"""ThreadStore: every Redis operation of the service, each one Lua script call.

This is where Copy happens (``ThreadStore.copy`` and ``lua/copy.lua``). The store takes
validated input (canonical ids, checked numbers) and the caller (``owner``, "" with auth
off), whose key namespace every call stays in, and raises ``server.errors`` for domain
outcomes; Redis connection failures propagate as redis-py exceptions for the RPC layer
to map to UNAVAILABLE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from google.protobuf import struct_pb2
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.commands.core import AsyncScript

from client.pb import threads_pb2 as pb
from server import codec
from server.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    thread_not_found,
)
from server.keys import ThreadKeys, new_copy_id
from server.limits import Limits
from server.replication import ReplicatedWriter
from server.scripts import Scripts

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
        min_replica_acks: int = 0,
        replica_ack_timeout_ms: int = 1000,
    ) -> None:
        """``request_ttl``: how long (s) a Create/Copy request_id is remembered.
        ``min_replica_acks`` > 0: a write is acknowledged only once that many replicas
        confirm it (else ReplicationTimeout after ``replica_ack_timeout_ms``)."""
        self._redis = redis
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

    async def _write(
        self,
        script: AsyncScript,
        keys: list[str],
        args: list[Any],
        *,
        reports_earlier_write: tuple[bytes, ...] = (),
    ) -> Any:
        """Runs a write script; with min_replica_acks, acknowledged once replicated, and
        so are the earlier writes that outcomes in ``reports_earlier_write`` vouch for
        (a retry's DUPLICATE, an Append's LENGTH_MISMATCH naming a longer history)."""
        if self._replicated is None:
            return await script(keys=keys, args=args)
        return await self._replicated.run(
            script,
            keys,
            args,
            fence=keys[0].removesuffix(":meta") + ":fence",
            reports_earlier_write=lambda reply: reply[0] in reports_earlier_write,
        )

    async def ping(self) -> None:
        """Raises when Redis is unreachable; on a cluster, when any primary is (each one
        serves a share of the slots)."""
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
            host, port = await self._redis.connection_pool.get_master_address()
            return frozenset({f"{host}:{port}"})
        return frozenset(node.name for node in self._redis.get_primaries())

    async def prepare(self) -> None:
        """Checks the server can run the scripts (COPY needs Redis 6.2+) and loads them,
        again after every restart, ahead of the first call. On a cluster: every primary
        (SCRIPT LOAD goes to all primaries; EVALSHA then routes by the keys' slot)."""
        primaries = await self._primaries() if self._cluster or self._sentinel else frozenset()
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
        await self._scripts.preload(self._redis)
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
        reply = await self._write(
            self._scripts.create,
            [keys.meta, keys.history, *record_keys],
            [
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
            reports_earlier_write=(b"DUPLICATE", b"EXISTS"),
        )
        outcome = reply[0]
        if outcome == b"CREATED":
            thread = pb.Thread(
                thread_id=thread_id, metadata=metadata, history_length=len(history), owner=owner
            )
            thread.created_at.CopyFrom(codec.timestamp_from_us(now))
            thread.updated_at.CopyFrom(thread.created_at)
            if ttl_ms:
                thread.expire_time.CopyFrom(codec.timestamp_from_us(int(expire_ms) * 1000))
            return thread
        if outcome == b"DUPLICATE" or (outcome == b"EXISTS" and return_existing):
            length, fields = reply[1]
            return codec.thread_from_fields(thread_id, length, fields)
        if outcome == b"EXISTS":
            raise AlreadyExists(
                f"thread {thread_id} already exists; use another thread_id or "
                "if_exists=IF_EXISTS_DO_NOTHING to get the existing thread",
                reason="THREAD_ALREADY_EXISTS",
                thread_id=thread_id,
            )
        if outcome == b"REQUEST_ID_REUSED":
            raise InvalidArgument(
                f"request_id {request_id!r} already created thread {thread_id} with different "
                "parameters; use a new request_id for a different request",
                reason="REQUEST_ID_REUSED",
                thread_id=thread_id,
                request_id=request_id,
            )
        raise FailedPrecondition(
            f"request_id {request_id!r} already created thread {thread_id}, which has since "
            "been deleted or has expired; use a new request_id to create another",
            reason="THREAD_DELETED",
            thread_id=thread_id,
            request_id=request_id,
        )

    def _metadata_args(self, metadata: struct_pb2.Struct) -> list[bytes]:
        """The request's metadata as HSET arguments, refused when it alone is over the
        limit (serialized once, here, for both the check and the script)."""
        meta_args = codec.metadata_args(metadata)
        self._limits.check_metadata(codec.metadata_size(meta_args))
        return meta_args

    async def get(self, owner: str, thread_id: str) -> pb.Thread:
        keys = ThreadKeys(thread_id, owner)
        reply = await self._scripts.get(keys=[keys.meta, keys.history])
        if reply[0] == b"NOT_FOUND":
            raise thread_not_found(thread_id)
        length, fields = reply[1]
        return codec.thread_from_fields(thread_id, length, fields)

    async def update(
        self, owner: str, thread_id: str, metadata: struct_pb2.Struct, *, ttl_ms: int | None
    ) -> pb.Thread:
        """Merges metadata keys; ``ttl_ms`` None keeps the expiry, 0 removes it."""
        keys = ThreadKeys(thread_id, owner)
        meta_args = self._metadata_args(metadata)
        now = codec.now_us()
        reply = await self._write(
            self._scripts.update,
            [keys.meta, keys.history],
            [
                now,
                "" if ttl_ms is None else _expire_ms(now, ttl_ms),
                self._limits.max_metadata_bytes,
                *meta_args,
            ],
        )
        if reply[0] == b"NOT_FOUND":
            raise thread_not_found(thread_id)
        if reply[0] == b"METADATA_TOO_LARGE":
            raise self._limits.metadata_too_large(thread_id, int(reply[1]))
        length, fields = reply[1]
        return codec.thread_from_fields(thread_id, length, fields)

    async def delete(self, owner: str, thread_id: str) -> None:
        keys = ThreadKeys(thread_id, owner)
        if not await self._write(self._scripts.delete, [keys.meta, keys.history], []):
            raise thread_not_found(thread_id)

    async def append(
        self,
        owner: str,
        thread_id: str,
        entries: Sequence[pb.Entry],
        expected_length: int | None,
    ) -> int:
        keys = ThreadKeys(thread_id, owner)
        now = codec.now_us()
        reply = await self._write(
            self._scripts.append,
            [keys.meta, keys.history],
            [
                "" if expected_length is None else expected_length,
                now,
                self._limits.max_history_length,
                *codec.encode_entries(entries, now),
            ],
            reports_earlier_write=(b"LENGTH_MISMATCH",),
        )
        if reply[0] == b"NOT_FOUND":
            raise thread_not_found(thread_id)
        if reply[0] == b"LENGTH_MISMATCH":
            actual = int(reply[1])
            raise Aborted(
                f"thread {thread_id} has {actual} entries, not the expected_length "
                f"{expected_length}; nothing was appended. Re-read the history and retry",
                reason="HISTORY_LENGTH_MISMATCH",
                thread_id=thread_id,
                expected_length=expected_length,
                history_length=actual,
            )
        if reply[0] == b"TOO_LONG":
            raise self._limits.history_too_long(thread_id, int(reply[1]), len(entries))
        return int(reply[1])

    async def read_history(
        self, owner: str, thread_id: str, offset: int, limit: int
    ) -> tuple[list[pb.Entry], int]:
        """One page of entries starting at ``offset``, and the history's total length."""
        keys = ThreadKeys(thread_id, owner)
        reply = await self._scripts.read_history(
            keys=[keys.meta, keys.history], args=[offset, limit]
        )
        if reply[0] == b"NOT_FOUND":
            raise thread_not_found(thread_id)
        return codec.decode_entries(reply[2], offset), int(reply[1])

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
            reply = await self._write(
                self._scripts.copy,
                [source.meta, source.history, target.meta, target.history, *request_keys],
                [
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
                reports_earlier_write=(b"DUPLICATE",),
            )
            outcome = reply[0]
            if outcome == b"OK":
                length, fields = reply[1]
                return codec.thread_from_fields(copy_id, length, fields)
            if outcome != b"ID_TAKEN":
                break
        else:  # pragma: no cover - three 108-bit random collisions in a row
            raise RuntimeError("could not find a free id for the copy")
        if outcome == b"DUPLICATE":
            return await self._earlier_copy(owner, source_id, request_id, reply[1].decode())
        if outcome == b"REQUEST_ID_REUSED":
            raise InvalidArgument(
                f"request_id {request_id!r} was already used to copy thread {source_id} "
                "with different parameters; use a new request_id for a different copy",
                reason="REQUEST_ID_REUSED",
                thread_id=source_id,
                request_id=request_id,
                copy_id=reply[1].decode(),
            )
        if outcome == b"OUT_OF_RANGE":
            raise OutOfRange(
                f"history_length {history_length} is beyond the end of thread {source_id}, "
                f"which has {int(reply[1])} entries",
                reason="HISTORY_LENGTH_OUT_OF_RANGE",
                thread_id=source_id,
                history_length=history_length,
                source_history_length=int(reply[1]),
            )
        if outcome == b"TOO_LONG":
            raise self._limits.history_too_long(source_id, int(reply[1]), 0)
        if outcome == b"METADATA_TOO_LARGE":
            raise self._limits.metadata_too_large(source_id, int(reply[1]))
        raise thread_not_found(source_id)

    async def _earlier_copy(
        self, owner: str, source_id: str, request_id: str, copy_id: str
    ) -> pb.Thread:
        try:
            return await self.get(owner, copy_id)
        except NotFound:
            pass
        raise FailedPrecondition(
            f"request_id {request_id!r} already copied thread {source_id} to {copy_id}, "
            "which has since been deleted; use a new request_id to make another copy",
            reason="COPY_DELETED",
            thread_id=source_id,
            request_id=request_id,
            copy_id=copy_id,
        )


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
