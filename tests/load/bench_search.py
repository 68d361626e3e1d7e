"""``make bench-search``: Search and Count latency at 10,000 and 1,000,000 threads, the
write cost of the index (an A/B in one run), and the memory the index takes per thread.

    .venv/bin/python -m tests.load.bench_search [--sizes 10000 1000000] [--calls 300]

For each size: a fresh Redis 7 (Debian's redis-server; ``--backend valkey`` for Valkey)
is seeded with that many threads of one caller, metadata ``{user: one of 1,000, kind: one
of 10}``, through the service's own create script (pipelined, 1,000 per round trip, bounded
by ``--seed-seconds``). One ``python -m threads_server --workers 1`` then answers
sequential calls from one client: the first page of 10 newest first with no filter, the
same with ``user`` = one value (about N/1,000 matches), and Count with that filter;
medians and p95 are printed. The index's memory is the exact MEMORY USAGE of every index
key, divided by the threads.

The write A/B runs two servers of the same build on one Redis, ``--search-index 1`` and
``0``: sequential Create, Copy and Update latency, in alternating blocks so that drift on
this shared machine hits both alike, and closed-loop throughput (32 calls in flight from
one client for a few seconds, per call type). Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from grpc import aio

from tests.redis_process import RedisProcess, backend_binary
from tests.rpc_helpers import struct
from tests.server_process import ServerProcess, environment
from threads_server.service import search
from threads_server.store import codec
from threads_server.store.keys import SHARDS, ShardKeys, ThreadKeys
from threads_server.store.limits import Limits
from threads_server.store.query import Filters, Query
from threads_server.store.scripts import all_scripts
from threads_server.store.thread_store import ThreadStore
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

USERS, KINDS = 1000, 10
SEED_BATCH = 1000


def _metadata(i: int) -> list[bytes]:
    return codec.metadata_args(struct(user=f"user-{i % USERS:04d}", kind=f"kind-{i % KINDS}"))


async def seed(url: str, total: int, bound_s: float) -> float:
    """``total`` threads through create.lua, pipelined; returns the seconds it took."""
    client = aioredis.from_url(url)
    create = all_scripts()["create"]
    await client.script_load(create.text)
    metadata = [_metadata(i) for i in range(USERS * KINDS)]
    base_us = codec.now_us() - total  # one distinct created_at per thread, in the past
    started = time.monotonic()
    try:
        for first in range(0, total, SEED_BATCH):
            if time.monotonic() - started > bound_s:
                raise RuntimeError(f"seeding passed --seed-seconds {bound_s} at {first}")
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(first + SEED_BATCH, total)):
                thread_id = str(uuid.uuid4())
                keys = ThreadKeys(thread_id)
                meta = metadata[i % len(metadata)]
                args = create.argv(
                    meta,
                    idx=keys.shard.index,
                    id=thread_id,
                    now=base_us + i,
                    owner="",
                    expire_ms="0",
                    request_id="",
                    fingerprint="",
                    record_ttl=0,
                    n_meta=len(meta),
                )
                pipe.execute_command(*create.command([keys.meta, keys.history], args))
            await pipe.execute()
    finally:
        await client.aclose()
    return time.monotonic() - started


async def index_bytes(url: str) -> int:
    """The exact memory of every index key of the caller (MEMORY USAGE ... SAMPLES 0)."""
    client = aioredis.from_url(url)
    total = 0
    try:
        for shard in SHARDS:
            index = ShardKeys("", shard).index
            async for key in client.scan_iter(
                match=index.replace("{", "[{]").replace("}", "[}]") + "*", count=1000
            ):
                total += int(await client.memory_usage(key, samples=0) or 0)
    finally:
        await client.aclose()
    return total


def _stats(latencies: list[float]) -> tuple[float, float]:
    return statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1]


async def timed(call: Callable[[], Awaitable[Any]], calls: int) -> list[float]:
    for _ in range(min(50, calls)):  # warm-up
        await call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def read_latencies(port: int, calls: int) -> dict[str, list[float]]:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        user = struct(user="user-0042")
        checks: dict[str, Callable[[], Awaitable[Any]]] = {
            "first page of 10, no filter": lambda: stub.Search(pb.SearchRequest(page_size=10)),
            "first page of 10, user = one value": lambda: stub.Search(
                pb.SearchRequest(page_size=10, metadata=user)
            ),
            "Count, user = one value": lambda: stub.Count(pb.CountRequest(metadata=user)),
        }
        page = await stub.Search(pb.SearchRequest(page_size=10, metadata=user))
        count = (await stub.Count(pb.CountRequest(metadata=user))).count
        assert len(page.threads) == 10 and count > 0
        print(f"    (user = user-0042 matches {count} threads)")
        return {name: await timed(call, calls) for name, call in checks.items()}


async def redis_part(url: str, calls: int) -> dict[str, list[float]]:
    """The same queries from the store itself on a plain client (what grows, or not, with
    the number of threads): the one script call each makes, and its reply read into
    threads, without gRPC."""
    client = aioredis.from_url(url)
    store = ThreadStore(client)
    await store.prepare()
    user = search.filters(struct(user="user-0042"), [], "", Limits())
    everything = search.filters(struct(), [], "", Limits())
    checks: dict[str, Callable[[], Awaitable[Any]]] = {
        "first page of 10, no filter": lambda: _first_page(store, everything),
        "first page of 10, user = one value": lambda: _first_page(store, user),
        "Count, user = one value": lambda: store.count("", user),
    }
    try:
        result = {}
        for name, call in checks.items():
            await client.config_resetstat()
            result[name] = await timed(call, calls)
            stats = (await client.info("commandstats"))["cmdstat_evalsha"]
            queries = min(50, calls) + calls  # timed() warms up with 50 calls first
            result[name + " redis"] = [float(stats["usec"]) / queries / 1000]
        return result
    finally:
        await client.aclose()


async def _first_page(store: ThreadStore, filters: Filters) -> Any:
    return await store.search("", Query(filters), cursor=None, offset=0, page_size=10)


def start_server(url: str, workdir: Path, name: str, *flags: str) -> ServerProcess:
    server = ServerProcess(
        ["--workers", "1", "--redis-url", url, "--log-level", "WARNING", *flags],
        workdir / f"server-{name}.log",
        environment(),
        None,
    )
    server.wait_serving()
    return server


def read_benchmark(
    binary: str, sizes: list[int], calls: int, bound_s: float, workdir: Path
) -> None:
    for size in sizes:
        redis = RedisProcess(binary, workdir / f"redis-{size}")
        redis.start()
        try:
            seconds = asyncio.run(seed(redis.url, size, bound_s))
            print(f"\n{size:,} threads (seeded in {seconds:.0f} s)")
            server = start_server(redis.url, workdir, f"read-{size}")
            try:
                results = asyncio.run(read_latencies(server.port, calls))
            finally:
                server.stop()
            raw = asyncio.run(redis_part(redis.url, calls))
            for name, latencies in results.items():
                median, p95 = _stats(latencies)
                redis_median, _ = _stats(raw[name])
                inside = raw[name + " redis"][0]
                print(
                    f"  {name:<38} median {median:6.2f} ms   p95 {p95:6.2f} ms   ({calls} calls)"
                    f"\n  {'':<38} the store alone on a plain client: median "
                    f"{redis_median:5.2f} ms, of which inside Redis {inside:5.3f} ms"
                )
            used = asyncio.run(index_bytes(redis.url))
            print(f"  index memory: {used / size:.0f} bytes per thread ({used / 2**20:.0f} MiB)")
        finally:
            redis.stop()


async def write_latencies(ports: dict[str, int], calls: int) -> dict[str, dict[str, list[float]]]:
    """Per mode and call type, latencies of sequential calls, paired: each call goes to
    one server and then the same call to the other, so drift hits both alike."""
    channels = {mode: aio.insecure_channel(f"127.0.0.1:{port}") for mode, port in ports.items()}
    try:
        meta = struct(user="user-0001", kind="kind-1")
        result: dict[str, dict[str, list[float]]] = {mode: {} for mode in ports}
        plans: dict[str, dict[str, Callable[[], Awaitable[Any]]]] = {}
        for mode, channel in channels.items():
            stub = pb_grpc.ThreadServiceStub(channel)
            source = (await stub.Create(pb.CreateRequest(metadata=meta))).thread
            plans[mode] = _rpc_writes(stub, source.thread_id)
        for name in ("Create", "Copy", "Update"):
            for mode in ports:
                for _ in range(50):  # warm-up
                    await plans[mode][name]()
                result[mode][name] = []
            for _ in range(calls):
                for mode in ports:
                    started = time.perf_counter()
                    await plans[mode][name]()
                    result[mode][name].append((time.perf_counter() - started) * 1000)
        return result
    finally:
        for channel in channels.values():
            await channel.close(None)


def _rpc_writes(
    stub: pb_grpc.ThreadServiceAsyncStub, source_id: str
) -> dict[str, Callable[[], Awaitable[Any]]]:
    meta = struct(user="user-0001", kind="kind-1")
    counter = iter(range(10**9))

    def create() -> Awaitable[Any]:
        return stub.Create(pb.CreateRequest(metadata=meta))

    def copy() -> Awaitable[Any]:
        return stub.Copy(pb.CopyRequest(thread_id=source_id))

    def update() -> Awaitable[Any]:
        user = f"user-{next(counter) % USERS:04d}"
        return stub.Update(pb.UpdateRequest(thread_id=source_id, metadata=struct(user=user)))

    return {"Create": create, "Copy": copy, "Update": update}


def _store_writes(store: ThreadStore, source_id: str) -> dict[str, Callable[[int], Awaitable[Any]]]:
    def create(i: int) -> Awaitable[Any]:
        meta = struct(user=f"user-{i % USERS:04d}", kind="kind-1")
        return store.create("", str(uuid.uuid4()), meta, [], return_existing=False, ttl_ms=0)

    def copy(i: int) -> Awaitable[Any]:
        return store.copy(
            "", source_id, request_id="", history_length=None, metadata=struct(), ttl_ms=0
        )

    def update(i: int) -> Awaitable[Any]:
        return store.update("", source_id, struct(user=f"user-{i % USERS:04d}"), ttl_ms=None)

    return {"Create": create, "Copy": copy, "Update": update}


async def redis_cost(url: str, calls: int) -> dict[str, dict[str, float]]:
    """Redis's own time per write script (INFO commandstats, usec_per_call of EVALSHA),
    index on vs off: the index's cost inside Redis, free of gRPC and client noise."""
    client = aioredis.from_url(url)
    result: dict[str, dict[str, float]] = {}
    try:
        for mode, on in (
            ("index on", True),
            ("index off", False),
            ("index on", True),
            ("index off", False),
        ):
            store = ThreadStore(client, search_index=on)
            await store.prepare()
            source = await store.create(
                "",
                str(uuid.uuid4()),
                struct(user="u", kind="k"),
                [],
                return_existing=False,
                ttl_ms=0,
            )
            writes = _store_writes(store, source.thread_id)
            for name, write in writes.items():
                await client.config_resetstat()
                for i in range(calls):
                    await write(i)
                stats = (await client.info("commandstats"))["cmdstat_evalsha"]
                result.setdefault(mode, {}).setdefault(name, 0.0)
                result[mode][name] += float(stats["usec_per_call"]) / 2  # two rounds
    finally:
        await client.aclose()
    return result


async def throughput(port: int, seconds: float, in_flight: int = 32) -> dict[str, float]:
    """Calls per second with ``in_flight`` concurrent calls, per write type."""
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        meta = struct(user="user-0001", kind="kind-1")
        source = (await stub.Create(pb.CreateRequest(metadata=meta))).thread
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "Create": lambda: stub.Create(pb.CreateRequest(metadata=meta)),
            "Copy": lambda: stub.Copy(pb.CopyRequest(thread_id=source.thread_id)),
            "Update": lambda: stub.Update(
                pb.UpdateRequest(thread_id=source.thread_id, metadata=struct(user="user-0002"))
            ),
        }
        rates = {}
        for name, call in calls.items():
            started = time.monotonic()
            done = await asyncio.gather(*(_loop(call, started + seconds) for _ in range(in_flight)))
            rates[name] = sum(done) / (time.monotonic() - started)
        return rates


async def _loop(call: Callable[[], Awaitable[Any]], deadline: float) -> int:
    """Calls ``call`` back to back until ``deadline``; how many completed."""
    done = 0
    while time.monotonic() < deadline:
        await call()
        done += 1
    return done


def write_benchmark(binary: str, calls: int, rounds: int, seconds: float, workdir: Path) -> None:
    redis = RedisProcess(binary, workdir / "redis-writes")
    redis.start()
    try:
        asyncio.run(seed(redis.url, 10_000, 300))
        cost = asyncio.run(redis_cost(redis.url, 1000))
        servers = {
            "index on": start_server(redis.url, workdir, "on", "--search-index", "1"),
            "index off": start_server(redis.url, workdir, "off", "--search-index", "0"),
        }
        try:
            ports = {mode: server.port for mode, server in servers.items()}
            latencies: dict[str, dict[str, list[float]]] = {m: {} for m in servers}
            rates: dict[str, dict[str, list[float]]] = {m: {} for m in servers}
            for _ in range(rounds):  # alternate, so drift on a shared machine hits both
                for mode, values in asyncio.run(write_latencies(ports, calls)).items():
                    for name, latency in values.items():
                        latencies[mode].setdefault(name, []).extend(latency)
                for mode, server in servers.items():
                    for name, rate in asyncio.run(throughput(server.port, seconds)).items():
                        rates[mode].setdefault(name, []).append(rate)
        finally:
            for server in servers.values():
                server.stop()
    finally:
        redis.stop()
    print(f"\nWrite cost of the index: same build, same Redis, {rounds} rounds (calls paired)")
    print(f"  {'call':<8}{'median on':>11}{'median off':>12}{'off/on':>8}   "
          f"{'RPS on':>8}{'RPS off':>9}{'on/off':>8}   "
          f"{'Redis µs/script on':>19}{'off':>6}")  # fmt: skip
    for name in latencies["index on"]:
        on, _ = _stats(latencies["index on"][name])
        off, _ = _stats(latencies["index off"][name])
        rps_on = statistics.median(rates["index on"][name])
        rps_off = statistics.median(rates["index off"][name])
        print(
            f"  {name:<8}{on:>9.3f}ms{off:>10.3f}ms{off / on:>7.0%}   "
            f"{rps_on:>8.0f}{rps_off:>9.0f}{rps_on / rps_off:>7.0%}   "
            f"{cost['index on'][name]:>19.1f}{cost['index off'][name]:>6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--backend", default="redis", choices=["redis", "valkey"])
    parser.add_argument("--seed-seconds", type=float, default=900)
    parser.add_argument("--write-calls", type=int, default=500)
    parser.add_argument("--write-rounds", type=int, default=3)
    parser.add_argument("--rps-seconds", type=float, default=2.0)
    parser.add_argument("--skip-writes", action="store_true")
    args = parser.parse_args()
    binary = backend_binary(args.backend)
    assert binary is not None, f"{args.backend} is not installed"
    with tempfile.TemporaryDirectory(prefix="thr-bench-", dir="/tmp") as workdir:
        read_benchmark(binary, args.sizes, args.calls, args.seed_seconds, Path(workdir))
        if not args.skip_writes:
            write_benchmark(
                binary, args.write_calls, args.write_rounds, args.rps_seconds, Path(workdir)
            )


if __name__ == "__main__":
    main()
