"""``make bench-failover``: primaries SIGKILLed under load, repeatedly, on a Redis Cluster
with replicas and on Sentinel, with and without ``--min-replica-acks 1``; then what the
option costs in Append and Copy latency and RPS, both settings measured side by side.

Each server is a real ``python -m threads_server --workers 1`` subprocess. The load and the
accounting are tests/failover_load.py's: writers append batches with expected_length,
copiers copy with a request_id, the store is read back after the kills. Prints one line
per kill (time to failover, to every writer acknowledged again, health) and per run
(acknowledged writes lost), then the cost table. Exits 1 if a write acknowledged with
``--min-replica-acks 1`` was lost, or any invariant broke.

    .venv/bin/python -m tests.load.bench_failover [--kills 3] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from grpc import aio

from tests.failover_load import (
    BATCH,
    ClusterTopology,
    FailoverLoad,
    SentinelTopology,
    Topology,
    batch,
    thread_ids_over_primaries,
)
from tests.redis_cluster import RedisCluster, cluster_binaries
from tests.redis_sentinel import MASTER_NAME, RedisSentinel, sentinel_binaries
from tests.server_process import ServerProcess, environment
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

CONCURRENCY = 16


def _server(workdir: Path, name: str, redis_args: list[str], acks: int) -> ServerProcess:
    args = [
        *redis_args,
        "--workers", "1",
        "--min-replica-acks", str(acks),
        "--replica-ack-timeout-ms", "1000",
        "--health-interval-seconds", "0.2",
        "--log-level", "WARNING",
    ]  # fmt: skip
    server = ServerProcess(args, workdir / f"{name}.log", environment(), None)
    server.wait_serving()
    return server


async def _create(target: str, thread_ids: list[str]) -> None:
    async with aio.insecure_channel(target) as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        for thread_id in thread_ids:
            await stub.Create(pb.CreateRequest(thread_id=thread_id), timeout=10)


async def _kills(
    name: str, topology: Topology, target: str, ids: list[str], kills: int
) -> tuple[int, int, int]:
    """Runs the kills; prints figures; returns (acknowledged writes, lost, problems)."""
    await _create(target, ids)
    load = FailoverLoad(target, ids, tag=f"bench-{uuid.uuid4().hex[:8]}")
    await load.run(topology, kills=kills, acks_between=60, restore_after_last=True)
    outcome = await load.check_store(await asyncio.to_thread(topology.primaries))
    for n, kill in enumerate(outcome.kills, 1):
        print(
            f"  {name} kill {n} ({kill.what}): failover {kill.failover_seen - kill.at:.2f} s, "
            f"old node back {kill.seconds(kill.restored) or 0:.2f} s, every writer acked "
            f"again {kill.recovered - kill.at:.2f} s, health NOT_SERVING at "
            f"{kill.seconds(kill.not_serving) or 0:.2f} s, SERVING at "
            f"{kill.seconds(kill.serving_again) or 0:.2f} s, acked batches lost "
            f"{kill.lost_appends}"
        )
    lost = outcome.lost_appends + outcome.lost_copies
    print(
        f"  {name}: {outcome.acked_appends} batches + {outcome.acked_copies} copies acked; "
        f"lost {outcome.lost_appends} batches + {outcome.lost_copies} copies over "
        f"{len(outcome.kills)} kills ({lost / max(1, len(outcome.kills)):.2f} per kill); "
        f"failed calls {dict(outcome.failures)}; problems {outcome.problems or 'none'}"
    )
    return outcome.acked_appends + outcome.acked_copies, lost, len(outcome.problems)


async def _timed(
    seconds: float, call: Callable[[int, int], Awaitable[None]]
) -> tuple[list[float], float]:
    """CONCURRENCY closed loops of ``call(worker, n)`` for ``seconds``: latencies, RPS."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def loop(worker: int) -> None:
        for n in range(1_000_000):
            if time.monotonic() >= stop:
                return
            started = time.perf_counter()
            await call(worker, n)
            latencies.append(time.perf_counter() - started)

    began = time.monotonic()
    await asyncio.gather(*(loop(w) for w in range(CONCURRENCY)))
    return latencies, len(latencies) / (time.monotonic() - began)


async def _cost(targets: dict[int, str], seconds: float, rounds: int) -> None:
    """Append and Copy against the acks=0 and acks=1 servers, alternating, same load."""
    results: dict[tuple[str, int], list[tuple[list[float], float]]] = {}
    channels = {acks: aio.insecure_channel(t) for acks, t in targets.items()}
    try:
        for _ in range(rounds):
            for acks, channel in channels.items():
                stub = pb_grpc.ThreadServiceStub(channel)
                threads = [
                    (await stub.Create(pb.CreateRequest(history=batch(w, 0)), timeout=10)).thread
                    for w in range(CONCURRENCY)
                ]
                lengths = [BATCH] * CONCURRENCY

                async def append(w: int, n: int, stub: pb_grpc.ThreadServiceAsyncStub = stub,
                                 threads: list[pb.Thread] = threads,
                                 lengths: list[int] = lengths) -> None:  # fmt: skip
                    request = pb.AppendRequest(
                        thread_id=threads[w].thread_id,
                        entries=batch(w, n + 1)[:1],
                        expected_length=lengths[w],
                    )
                    lengths[w] = (await stub.Append(request, timeout=10)).history_length

                async def copy(w: int, n: int, stub: pb_grpc.ThreadServiceAsyncStub = stub,
                               threads: list[pb.Thread] = threads) -> None:  # fmt: skip
                    request = pb.CopyRequest(
                        thread_id=threads[w].thread_id, request_id=f"cost-{uuid.uuid4()}"
                    )
                    await stub.Copy(request, timeout=10)

                for op, call in (("Append", append), ("Copy", copy)):
                    results.setdefault((op, acks), []).append(await _timed(seconds, call))
    finally:
        for channel in channels.values():
            await channel.close(None)
    print(f"  {'op':6} {'acks':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'RPS':>8}")
    for op in ("Append", "Copy"):
        rps_of = {}
        for acks in sorted(targets):
            latencies = sorted(x for lat, _ in results[(op, acks)] for x in lat)
            rps = statistics.mean(r for _, r in results[(op, acks)])
            rps_of[acks] = rps
            q = statistics.quantiles(latencies, n=100)
            print(
                f"  {op:6} {acks:>4} {q[49] * 1000:8.2f} {q[94] * 1000:8.2f} "
                f"{q[98] * 1000:8.2f} {rps:8.0f}"
            )
        print(f"  {op}: RPS with acks 1 / acks 0 = {rps_of[1] / rps_of[0]:.2f}")


class _Setup:
    """A running topology, how a server reaches it, and what it is (for the report)."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.cluster: RedisCluster | None = None
        self.sentinel: RedisSentinel | None = None
        self.topology: Topology
        if name == "cluster":
            binaries = cluster_binaries()
            assert binaries, "needs redis-server and redis-cli"
            self.cluster = RedisCluster(*binaries, workdir / name, replicas=1, node_timeout_ms=1000)
            self.topology = ClusterTopology(self.cluster)
            self.title = "Redis Cluster, 3 primaries x 1 replica, cluster-node-timeout 1000 ms"
        else:
            binaries3 = sentinel_binaries()
            assert binaries3, "needs redis-server, redis-cli and redis-sentinel"
            self.sentinel = RedisSentinel(*binaries3, workdir / name)
            self.topology = SentinelTopology(self.sentinel)
            self.title = "Sentinel, 1 primary + 2 replicas, 3 sentinels, down-after 2000 ms"

    def start(self) -> None:
        (self.cluster or self.sentinel or _unreachable()).start()

    def stop(self) -> None:
        (self.cluster or self.sentinel or _unreachable()).stop()

    def redis_args(self) -> list[str]:
        if self.cluster is not None:
            url = f"redis://127.0.0.1:{self.cluster.primaries()[0]}"
            return ["--redis-cluster", "--redis-url", url]
        assert self.sentinel is not None
        return ["--redis-sentinel", self.sentinel.addresses, "--redis-sentinel-master", MASTER_NAME]

    def thread_ids(self) -> list[str]:
        return thread_ids_over_primaries(self.cluster, 2 if self.cluster else 6)


def _unreachable() -> RedisCluster:
    raise AssertionError("no topology")


async def _run_kills(setup: _Setup, workdir: Path, acks: int, kills: int) -> tuple[int, int]:
    """One server with ``--min-replica-acks acks`` through ``kills`` kills: (lost, problems)."""
    server = _server(workdir, f"{setup.name}-acks{acks}", setup.redis_args(), acks)
    try:
        name = f"{setup.name} --min-replica-acks {acks}"
        _, lost, bad = await _kills(name, setup.topology, server.target, setup.thread_ids(), kills)
    except AssertionError:
        log = server.log()
        start = log.find("failed unexpectedly")
        print(log[max(0, start - 200) : start + 6000] if start >= 0 else server.tail())
        raise
    finally:
        server.stop()
    return lost, bad


async def _topology(
    name: str, workdir: Path, kills: int, seconds: float, rounds: int
) -> tuple[int, int]:
    """Returns (acked writes lost with --min-replica-acks 1, problems)."""
    setup = _Setup(name, workdir)
    await asyncio.to_thread(setup.start)
    print(f"\n== {setup.title}")
    lost_with_acks = problems = 0
    try:
        for acks in (0, 1):
            lost, bad = await _run_kills(setup, workdir, acks, kills)
            problems += bad
            lost_with_acks += lost if acks else 0
        print(f"-- cost of --min-replica-acks 1 ({name}; {CONCURRENCY} concurrent calls, "
              f"{rounds} alternating rounds of {seconds:.0f} s per op and setting)")  # fmt: skip
        servers = {
            acks: _server(workdir, f"{name}-cost{acks}", setup.redis_args(), acks)
            for acks in (0, 1)
        }
        try:
            await _cost({a: s.target for a, s in servers.items()}, seconds, rounds)
        finally:
            for server in servers.values():
                server.stop()
    finally:
        await asyncio.to_thread(setup.stop)
    return lost_with_acks, problems


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=3, help="primary kills per run")
    parser.add_argument("--seconds", type=float, default=3.0, help="per cost round")
    parser.add_argument("--rounds", type=int, default=3, help="cost rounds per setting")
    parser.add_argument("topologies", nargs="*", default=["cluster", "sentinel"])
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        for name in args.topologies:
            lost, problems = await _topology(name, Path(tmp), args.kills, args.seconds, args.rounds)
            if lost or problems:
                print(f"FAIL {name}: {lost} acknowledged writes lost with --min-replica-acks 1, "
                      f"{problems} problems")  # fmt: skip
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
