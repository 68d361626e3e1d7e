"""Appends and Copies against a running service while Redis primaries are SIGKILLed, and
the accounting afterwards. Shared by tests/test_failover.py (one kill per topology) and
``make bench-failover`` (tests/load/bench_failover.py: repeated kills, figures).

- Writers each own a thread and append batches of ``BATCH`` entries with
  ``expected_length``, retrying UNAVAILABLE and DEADLINE_EXCEEDED with the same request.
  A retry answered ABORTED with exactly one more batch confirms the earlier attempt. An
  ABORTED with *fewer* entries than acknowledged means acknowledged batches were lost in a
  failover: they are counted, and the writer appends them again, so that every thread
  still holds whole batches in order.
- Copiers copy random writer threads with a ``request_id`` (also put in the copy's
  metadata, so each copy in Redis names its request), retrying with the same id.
- A health poller records every status change of ``grpc.health.v1`` with its time.
- Afterwards every primary is read directly: each thread holds whole batches 0, 1, 2, ...
  in order, each acknowledged copy is there (else it counts as lost), is a whole-batch
  prefix of its source as long as its reply said, and no request_id made two copies.

Timing is measured and reported, never asserted: every wait here is bounded in time and
every loop in count, as hang detectors.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import redis.asyncio as aioredis
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from redis.crc import key_slot

from tests.redis_cluster import RedisCluster
from tests.redis_sentinel import RedisSentinel
from tests.rpc_helpers import entry, struct
from threads_server.store.keys import ThreadKeys, new_thread_id
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

BATCH = 5
DEADLINE = 3.0  # gRPC deadline of every call
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
MAX_BATCHES = 2000  # per writer
MAX_COPIES = 2000  # per copier
RETRY_PAUSE = 0.05
# Paced, so that the data (and each replica's full sync after a restart) stays small: a
# primary busy syncing hundreds of MB on this shared 2-core machine can miss Sentinel's
# down-after-milliseconds and be failed over by mistake.
WRITE_PAUSE = 0.01
COPY_PAUSE = 0.02
COPY_MAX_BATCHES = 20  # copies fork at a whole-batch point no later than this
PHASE_BOUND = 60.0  # hang detector of each phase (acks to reach, recovery)
SERVING = health_pb2.HealthCheckResponse.SERVING


class Topology(Protocol):
    """A Redis set-up whose primary can be killed (blocking calls, run in a thread)."""

    def kill_primary(self, round_: int) -> str:
        """SIGKILLs a primary; returns what was killed, for the report."""

    def wait_failover(self) -> None:
        """Returns once a replica serves in place of the killed primary."""

    def restore(self) -> None:
        """Starts the killed node again, as a replica, in sync."""

    def primaries(self) -> list[int]:
        """Ports of the current primaries (to read the store back)."""


@dataclass
class Kill:
    what: str
    at: float
    failover_seen: float = 0.0  # the topology reports the replica promoted
    restored: float | None = None  # the killed node is back, as a replica in sync
    recovered: float = 0.0  # every writer has had a write (sent after the kill) acknowledged
    last_failure: float = 0.0  # the end of the last failed call since the kill
    not_serving: float | None = None  # health NOT_SERVING after the kill
    serving_again: float | None = None  # and SERVING after that
    lost_appends: int = 0  # acknowledged batches found missing while this kill was last

    def seconds(self, when: float | None) -> float | None:
        return None if when is None else when - self.at


@dataclass
class Outcome:
    kills: list[Kill]
    acked_appends: int
    acked_copies: int
    lost_appends: int
    lost_copies: int
    failures: Counter[str]
    problems: list[str]
    confirmed_by_mismatch: int
    health: list[tuple[float, int]] = field(default_factory=list)


def _error_metadata(error: aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return dict(info.metadata)
    return {}


def _reason(error: aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def batch(writer: int, number: int) -> list[pb.Entry]:
    return [entry(w=writer, b=number, k=k) for k in range(BATCH)]


class FailoverLoad:
    """The load, the kills and the accounting, against the service at ``target``."""

    def __init__(
        self, target: str, thread_ids: list[str], *, copiers: int = 2, tag: str = "run"
    ) -> None:
        self.target = target
        self.thread_ids = thread_ids
        self.copiers = copiers
        self.tag = tag
        self.failures: Counter[str] = Counter()
        self.problems: list[str] = []
        self.acked = [0] * len(thread_ids)  # batches acknowledged per writer
        self.acks = 0
        self.lost_appends = 0
        self.confirmed_by_mismatch = 0
        self.copies: dict[str, tuple[str, pb.Thread]] = {}  # request_id -> (source, copy)
        self.attempted: dict[str, str] = {}  # request_id -> source
        self.kills: list[Kill] = []
        self.loss_events: list[tuple[float, int, int, int]] = []  # (when, writer, had, has)
        self.health: list[tuple[float, int]] = []
        self.stop = asyncio.Event()
        self._last_ok = [0.0] * len(thread_ids)  # start time of each writer's last OK call
        # When each writer's first call sent after the last kill was acknowledged.
        self._first_ok: list[float | None] = [None] * len(thread_ids)

    def _failed(self, error: aio.AioRpcError, what: str) -> bool:
        """Records a failure; True when it may be retried."""
        code = error.code()
        self.failures[f"{code.name} {_reason(error)}".strip()] += 1
        if code in RETRYABLE:
            if self.kills:
                self.kills[-1].last_failure = time.monotonic()
            return True
        self.problems.append(f"{what}: {code.name} {error.details()}")
        return False

    async def _writer(self, stub: pb_grpc.ThreadServiceAsyncStub, w: int) -> None:
        thread_id = self.thread_ids[w]
        length = 0
        while not self.stop.is_set() and length // BATCH < MAX_BATCHES:
            number = length // BATCH
            request = pb.AppendRequest(
                thread_id=thread_id, entries=batch(w, number), expected_length=length
            )
            attempt = 0
            while True:
                attempt += 1
                started = time.monotonic()
                try:
                    response = await stub.Append(request, timeout=DEADLINE)
                except aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.ABORTED:
                        if not self._failed(error, f"writer {w} batch {number}"):
                            return
                        if self.stop.is_set():
                            return  # unacknowledged: may or may not be stored
                        await asyncio.sleep(RETRY_PAUSE)
                        continue
                    actual = int(_error_metadata(error).get("history_length", "-1"))
                    if attempt > 1 and actual == length + BATCH:
                        self.confirmed_by_mismatch += 1  # the earlier attempt was applied
                        break
                    if 0 <= actual < length and actual % BATCH == 0:
                        # Acknowledged batches are gone: lost in a failover. Count them,
                        # then write them again from where the thread now ends.
                        lost = (length - actual) // BATCH
                        self.loss_events.append((time.monotonic(), w, length, actual))
                        self.lost_appends += lost
                        if self.kills:
                            self.kills[-1].lost_appends += lost
                        length = actual
                        self.acked[w] = length // BATCH
                        break
                    since = time.monotonic() - self.kills[-1].at if self.kills else 0.0
                    self.problems.append(
                        f"writer {w} batch {number}: expected_length {length}, thread has "
                        f"{actual} entries (attempt {attempt}, {since:.2f} s after the kill)"
                    )
                    return
                if response.history_length != length + BATCH:
                    self.problems.append(f"writer {w}: acked at {response.history_length}")
                    return
                break
            if length // BATCH != number:  # rewound after a loss
                continue
            length += BATCH
            self.acked[w] = length // BATCH
            self.acks += 1
            self._last_ok[w] = started
            if self.kills and started > self.kills[-1].at and self._first_ok[w] is None:
                self._first_ok[w] = time.monotonic()
            await asyncio.sleep(WRITE_PAUSE)

    async def _copier(self, stub: pb_grpc.ThreadServiceAsyncStub, c: int) -> None:
        rng = random.Random(c)
        for n in range(MAX_COPIES):
            if self.stop.is_set():
                return
            w = rng.randrange(len(self.thread_ids))
            source = self.thread_ids[w]
            request_id = f"{self.tag}-{c}-{n}"
            # A fork at a whole batch the source is known to have (acknowledged).
            at = rng.randint(0, min(self.acked[w], COPY_MAX_BATCHES)) * BATCH
            request = pb.CopyRequest(
                thread_id=source,
                request_id=request_id,
                metadata=struct(request_id=request_id),
                history_length=at,
            )
            self.attempted[request_id] = source
            while True:
                try:
                    response = await stub.Copy(request, timeout=DEADLINE)
                except aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.OUT_OF_RANGE:
                        # The source is shorter than acknowledged: a loss not yet seen by
                        # its writer. Counted (a failure code the tests refuse), not copied.
                        self.failures[f"OUT_OF_RANGE {_reason(error)}"] += 1
                        break
                    if not self._failed(error, f"copy {request_id}"):
                        return
                    if self.stop.is_set():
                        return
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                self.copies[request_id] = (source, response.thread)
                break
            await asyncio.sleep(COPY_PAUSE)

    async def _poll_health(self, channel: aio.Channel) -> None:
        health = health_pb2_grpc.HealthStub(channel)
        last = None
        while not self.stop.is_set():
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                status = reply.status
            except aio.AioRpcError:
                status = -1
            if status != last:
                self.health.append((time.monotonic(), status))
                last = status
            await asyncio.sleep(0.05)

    async def _until(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + PHASE_BOUND
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {PHASE_BOUND}s: {what}; {self.problems}")
            if self.problems:
                raise AssertionError(f"load failed: {self.problems}")
            await asyncio.sleep(0.02)

    async def _acks(self, count: int, when: str) -> None:
        goal = self.acks + count
        await self._until(lambda: self.acks >= goal, f"{count} acks {when}")

    async def run(
        self,
        topology: Topology,
        *,
        kills: int = 1,
        acks_between: int = 40,
        restore_after_last: bool = False,
        after_kill: Callable[[Kill], Awaitable[None]] | None = None,
    ) -> None:
        """Load until ``acks_between`` acks, kill a primary, wait for the failover and
        for every writer to succeed again; ``kills`` times; then ``acks_between`` more."""
        channels = [
            aio.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(2)
        ]
        stubs = [pb_grpc.ThreadServiceStub(channel) for channel in channels]
        tasks = [
            asyncio.create_task(self._writer(stubs[w % 2], w)) for w in range(len(self.thread_ids))
        ]
        tasks += [asyncio.create_task(self._copier(stubs[c % 2], c)) for c in range(self.copiers)]
        tasks.append(asyncio.create_task(self._poll_health(channels[0])))
        try:
            for round_ in range(kills):
                await self._acks(acks_between, "before the kill")
                what = await asyncio.to_thread(topology.kill_primary, round_)
                # Timed from when the SIGKILL has been sent (kill_primary first looks up
                # which node is primary; calls acknowledged meanwhile are not recoveries).
                kill = Kill(what=what, at=time.monotonic())
                self._first_ok = [None] * len(self.thread_ids)
                self.kills.append(kill)
                await asyncio.to_thread(topology.wait_failover)
                kill.failover_seen = time.monotonic()
                if round_ < kills - 1 or restore_after_last:
                    # The killed node back as a replica: with --min-replica-acks and one
                    # replica per primary, the promoted one has none until then.
                    await asyncio.to_thread(topology.restore)
                    kill.restored = time.monotonic()
                await self._until(self._all_acked_since(kill.at), "every writer acked again")
                kill.recovered = max(t for t in self._first_ok if t is not None)
                await self._until(self._serving_since(kill.at), "health SERVING again")
                if after_kill is not None:
                    await after_kill(kill)
            await self._acks(acks_between, "after the last kill")
        finally:
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for channel in channels:
                await channel.close(None)
        for kill in self.kills:
            kill.not_serving = next(
                (t for t, s in self.health if t > kill.at and s != SERVING), None
            )
            if kill.not_serving is not None:
                kill.serving_again = next(
                    (t for t, s in self.health if t > kill.not_serving and s == SERVING), None
                )

    def _all_acked_since(self, since: float) -> Callable[[], bool]:
        return lambda: min(self._last_ok) > since

    def _serving_since(self, since: float) -> Callable[[], bool]:
        def check() -> bool:
            down = [t for t, s in self.health if t > since and s != SERVING]
            return bool(down) and any(t > down[0] and s == SERVING for t, s in self.health)

        return check

    async def check_store(self, ports: list[int]) -> Outcome:
        """Reads every primary back; counts lost acknowledged writes, records problems."""
        metas: dict[str, dict[bytes, bytes]] = {}
        histories: dict[str, list[bytes]] = {}
        for port in ports:
            client: Any = aioredis.Redis(host="127.0.0.1", port=port)
            try:
                async for key in client.scan_iter(match="thr:*:meta", count=1000):
                    thread_id = key.decode().split(":")[2]
                    metas[thread_id] = await client.hgetall(key)
                    histories[thread_id] = await client.lrange(
                        key.decode().removesuffix(":meta") + ":hist", 0, -1
                    )
            finally:
                await client.aclose()
        problems = list(self.problems)
        lost_appends = self.lost_appends
        for w, thread_id in enumerate(self.thread_ids):
            stored = histories.get(thread_id)
            if stored is None:
                problems.append(f"writer {w}: thread {thread_id} is gone")
                continue
            whole = _whole_batches(stored, w, problems)
            if whole < self.acked[w]:
                lost_appends += self.acked[w] - whole  # lost, and nothing appended since
            elif whole > self.acked[w] + 1:
                problems.append(f"writer {w}: {whole} batches stored, {self.acked[w]} acked")
        lost_copies = 0
        by_request: Counter[str] = Counter()
        for copy_id, meta in metas.items():
            if b"m:request_id" not in meta:
                continue
            request_id = struct_pb2.Value.FromString(meta[b"m:request_id"]).string_value
            if not request_id.startswith(f"{self.tag}-"):
                continue  # another run's copy (the bench runs several on one set-up)
            by_request[request_id] += 1
            source = self.attempted.get(request_id)
            if source is None or meta.get(b"copied_from") != source.encode():
                problems.append(f"copy {copy_id}: unknown request {request_id}")
                continue
            copied = histories.get(copy_id, [])
            if copied != histories.get(source, [])[: len(copied)] or len(copied) % BATCH:
                problems.append(f"copy {copy_id} is not a whole-batch prefix of {source}")
            acked = self.copies.get(request_id)
            if acked is not None and (
                acked[1].thread_id != copy_id or acked[1].history_length != len(copied)
            ):
                problems.append(f"copy {copy_id} for {request_id} is not the acknowledged one")
        problems += [f"request_id {r} made {n} copies" for r, n in by_request.items() if n > 1]
        for request_id, (_source, thread) in self.copies.items():
            if by_request[request_id] == 0:
                lost_copies += 1
            elif thread.thread_id not in metas:
                problems.append(f"copy for {request_id} stored under another id")
        return Outcome(
            kills=self.kills,
            acked_appends=sum(self.acked),
            acked_copies=len(self.copies),
            lost_appends=lost_appends,
            lost_copies=lost_copies,
            failures=self.failures,
            problems=problems,
            confirmed_by_mismatch=self.confirmed_by_mismatch,
            health=self.health,
        )


def _whole_batches(raw: list[bytes], writer: int, problems: list[str]) -> int:
    """How many whole batches 0, 1, 2, ... in order the history holds; problems else."""
    if len(raw) % BATCH:
        problems.append(f"writer {writer}: {len(raw)} entries, a partial batch")
    for position, blob in enumerate(raw):
        data = dict(pb.Entry.FromString(blob).data)
        expected = {"w": writer, "b": position // BATCH, "k": position % BATCH}
        if data != expected:
            problems.append(f"writer {writer}: entry {position} is {data}")
            break
    return len(raw) // BATCH


class ClusterTopology:
    """Kills the primaries of a RedisCluster with replicas in turn."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.killed: int | None = None
        self.promoted: int | None = None

    def kill_primary(self, round_: int) -> str:
        primaries = self.cluster.primaries()
        victim = primaries[round_ % len(primaries)]
        [self.promoted] = self.cluster.replicas_of(victim)
        self.killed = victim
        self.cluster.kill(victim)
        return f"cluster primary :{victim} (replica :{self.promoted})"

    def wait_failover(self) -> None:
        assert self.killed is not None and self.promoted is not None
        self.cluster.wait_failover(self.killed, self.promoted)

    def restore(self) -> None:
        assert self.killed is not None
        self.cluster.restart(self.killed)

    def primaries(self) -> list[int]:
        return self.cluster.primaries()


class SentinelTopology:
    """Kills whichever node the sentinels name as primary."""

    def __init__(self, sentinel: RedisSentinel) -> None:
        self.sentinel = sentinel
        self.killed: int | None = None

    def kill_primary(self, round_: int) -> str:
        self.killed = self.sentinel.kill_primary()
        return f"sentinel primary :{self.killed}"

    def wait_failover(self) -> None:
        assert self.killed is not None
        self.sentinel.wait_failover(self.killed)

    def restore(self) -> None:
        assert self.killed is not None
        self.sentinel.restart_as_replica(self.killed)

    def primaries(self) -> list[int]:
        return [self.sentinel.primary()]


def thread_ids_over_primaries(cluster: RedisCluster | None, per_primary: int) -> list[str]:
    """Thread ids whose slots spread evenly over the cluster's primaries (``per_primary``
    each); without a cluster, ``per_primary`` ids."""
    if cluster is None:
        return [new_thread_id() for _ in range(per_primary)]
    owner: dict[int, int] = {}  # slot -> port of its primary, from CLUSTER NODES
    for line in cluster.redis_cli(cluster.live()[0].port, "CLUSTER", "NODES").splitlines():
        parts = line.split()
        if "master" not in parts[2].split(",") or "fail" in parts[2].split(","):
            continue
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        for part in parts[8:]:
            if not part.startswith("["):  # [slot-<-node]: a migration, not a range
                low, _, high = part.partition("-")
                owner.update(dict.fromkeys(range(int(low), int(high or low) + 1), port))
    chosen: dict[int, list[str]] = {port: [] for port in set(owner.values())}
    for _ in range(100_000):
        if all(len(ids) >= per_primary for ids in chosen.values()):
            break
        thread_id = new_thread_id()
        port = owner[key_slot(ThreadKeys(thread_id).meta.encode())]
        if len(chosen[port]) < per_primary:
            chosen[port].append(thread_id)
    return [thread_id for ids in chosen.values() for thread_id in ids]
