"""``make bench``: Copy RPC latency beside the raw Redis COPY of the same list, in one run.

    .venv/bin/python -m tests.load.bench_copy [--backend redis|valkey] [--runs 30] [SIZES...]

For each history size (default 10, 1,000, 100,000 and 1,000,000 entries of 200 bytes) it
seeds a thread through the API, then alternates a Copy RPC and a raw ``COPY`` of the same
history list (the physical floor of this design: Redis duplicating the list), ``--runs``
times each, deleting every copy as it goes. It prints medians, p95s and their ratio, the
server process's resident memory (current, and peak while copying) for each size, and
the targets of issue 3 as met or missed.

The server is a real ``python -m threads_server --workers 1`` subprocess against a Redis of the
bench's own (AOF off, so fsync is not measured); the client runs in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from grpc import aio

from tests.redis_process import RedisProcess, backend_binary
from tests.server_process import ServerProcess, environment
from threads_server.store.keys import ThreadKeys
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

SIZES = (10, 1_000, 100_000, 1_000_000)
BATCH = 5_000
ENTRY_BYTES = 200


@dataclass
class Row:
    size: int
    rpc_ms: list[float]
    raw_ms: list[float]
    rss_mib: float  # before the copies (after seeding)
    peak_mib: float  # peak while copying

    @property
    def rpc(self) -> float:
        return statistics.median(self.rpc_ms)

    @property
    def raw(self) -> float:
        return statistics.median(self.raw_ms)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: current and peak resident memory."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def _reset_peak(pid: int) -> None:
    """Resets VmHWM to the current RSS, so the next peak is that of what follows."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _entry() -> pb.Entry:
    """One history entry whose stored form is ENTRY_BYTES long (checked after seeding)."""
    entry = pb.Entry()
    entry.data.update({"text": "x" * (ENTRY_BYTES - 32)})  # + 32 bytes of framing and created_at
    return entry


async def _seed(stub: pb_grpc.ThreadServiceAsyncStub, size: int) -> str:
    thread_id = (await stub.Create(pb.CreateRequest(), timeout=30)).thread.thread_id
    entry = _entry()
    for start in range(0, size, BATCH):
        batch = [entry] * min(BATCH, size - start)
        await stub.Append(pb.AppendRequest(thread_id=thread_id, entries=batch), timeout=60)
    return thread_id


async def _measure(
    stub: pb_grpc.ThreadServiceAsyncStub, raw: aioredis.Redis, thread_id: str, runs: int
) -> tuple[list[float], list[float]]:
    history = ThreadKeys(thread_id).history
    scratch = history + ":bench"
    rpc, floor = [], []
    for i in range(runs + 1):  # the first round warms up and is not counted
        began = time.perf_counter()
        copied = await stub.Copy(pb.CopyRequest(thread_id=thread_id), timeout=60)
        took = time.perf_counter() - began
        await stub.Delete(pb.DeleteRequest(thread_id=copied.thread.thread_id), timeout=60)
        began = time.perf_counter()
        await raw.copy(history, scratch)
        raw_took = time.perf_counter() - began
        await raw.unlink(scratch)
        if i:
            rpc.append(took * 1e3)
            floor.append(raw_took * 1e3)
    return rpc, floor


async def bench(backend: str, sizes: list[int], runs: int) -> list[Row]:
    binary = backend_binary(backend)
    if binary is None:
        raise SystemExit(f"{backend} is not installed (apt-get install redis-server)")
    work = Path(tempfile.mkdtemp(prefix="threads-bench-"))
    store = RedisProcess(binary, work / "redis", appendonly=False)
    store.start()
    args = ["--workers", "1", "--redis-url", store.url, "--log-level", "WARNING"]
    server = ServerProcess(args, work / "server.log", environment(), None)
    rows: list[Row] = []
    try:
        server.wait_serving()
        raw = aioredis.from_url(store.url)
        async with aio.insecure_channel(
            f"127.0.0.1:{server.port}",
            options=[("grpc.max_receive_message_length", 64 << 20)],
        ) as channel:
            stub = pb_grpc.ThreadServiceStub(channel)
            info = await raw.info("server")
            version = info.get("valkey_version", info["redis_version"])
            rss, peak = _memory_mib(server.process.pid)
            print(f"\n{backend} {version}; server RSS at start {rss:.0f} MiB (peak {peak:.0f})")
            for size in sizes:
                thread_id = await _seed(stub, size)
                stored = await raw.lindex(ThreadKeys(thread_id).history, 0)
                # The created_at varints vary by a few bytes from entry to entry.
                assert isinstance(stored, bytes) and abs(len(stored) - ENTRY_BYTES) <= 4, stored
                _reset_peak(server.process.pid)  # seeding's Appends went through the server
                rss_before, _ = _memory_mib(server.process.pid)
                rpc, floor = await _measure(stub, raw, thread_id, runs)
                _, peak = _memory_mib(server.process.pid)
                await stub.Delete(pb.DeleteRequest(thread_id=thread_id), timeout=60)
                rows.append(Row(size, rpc, floor, rss_before, peak))
        await raw.aclose()
    finally:
        server.stop()
        store.stop()
    return rows


def report(rows: list[Row], runs: int) -> None:
    print(f"median and p95 of {runs} runs each; ratio = median Copy RPC / median raw COPY")
    print(
        "| History | Copy RPC p50 | p95 | Raw COPY p50 | p95 | Ratio | RPC - raw |"
        " Server RSS before | peak while copying | growth |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r.size:,} | {r.rpc:.2f} ms | {_p95(r.rpc_ms):.2f} ms | {r.raw:.2f} ms"
            f" | {_p95(r.raw_ms):.2f} ms | {r.rpc / r.raw:.2f} | {r.rpc - r.raw:.2f} ms"
            f" | {r.rss_mib:.1f} MiB | {r.peak_mib:.1f} MiB | {r.peak_mib - r.rss_mib:+.1f} MiB |"
        )
    by_size = {r.size: r for r in rows}
    if 1_000 in by_size:
        got = by_size[1_000].rpc
        print(f"target: 1,000 entries, Copy median <= 2 ms: {got:.2f} ms, {_verdict(got <= 2)}")
    if 100_000 in by_size:
        r = by_size[100_000]
        bound = 1.5 * r.raw + 1
        print(
            f"target: 100,000 entries, Copy median <= 1.5 x raw COPY + 1 ms = {bound:.2f} ms:"
            f" {r.rpc:.2f} ms, {_verdict(r.rpc <= bound)}"
        )


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.load.bench_copy", description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--backend", action="append", choices=["redis", "valkey"])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}")
    for backend in args.backend or ["redis", "valkey"]:
        report(asyncio.run(bench(backend, args.sizes, args.runs)), args.runs)


if __name__ == "__main__":
    main()
