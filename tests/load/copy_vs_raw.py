"""Copy RPC latency beside the raw Redis COPY of the same list, in one run.

    .venv/bin/python -m tests.load.copy_vs_raw [valkey|redis] [sizes...]

Starts its own Redis/Valkey (AOF off) and an in-process server, seeds threads of
200-byte entries, and prints the median of 30 Copy RPCs and of 30 raw ``COPY`` commands
on the same history list (the physical floor of this design), with their ratio.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from grpc import aio

from client.pb import threads_pb2 as pb
from client.pb import threads_pb2_grpc as pb_grpc
from server.app import ThreadsServer
from server.config import Settings
from server.keys import ThreadKeys
from tests.redis_process import RedisProcess, backend_binary

RUNS = 30
BATCH = 5_000


async def measure(backend: str, sizes: list[int]) -> None:
    binary = backend_binary(backend)
    if binary is None:
        raise SystemExit(f"{backend} is not installed")
    store = RedisProcess(binary, Path(tempfile.mkdtemp()), appendonly=False)
    store.start()
    server = ThreadsServer(Settings(listen="127.0.0.1:0", log_level="WARNING"), store.url)
    logging.getLogger("threads.rpc").setLevel(logging.WARNING)
    port = await server.start()
    raw = aioredis.from_url(store.url)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ThreadServiceStub(channel)
            entry = pb.Entry()
            entry.data.update({"text": "x" * 170})  # ~200 bytes serialized
            print(f"{backend}: median of {RUNS}; ratio = Copy RPC / raw COPY")
            for size in sizes:
                thread = (await stub.Create(pb.CreateRequest())).thread
                for start in range(0, size, BATCH):
                    batch = [entry] * min(BATCH, size - start)
                    await stub.Append(pb.AppendRequest(thread_id=thread.thread_id, entries=batch))
                history_key = ThreadKeys(thread.thread_id).history
                rpc, floor = [], []
                for _ in range(RUNS):
                    began = time.perf_counter()
                    copied = await stub.Copy(pb.CopyRequest(thread_id=thread.thread_id))
                    rpc.append(time.perf_counter() - began)
                    await stub.Delete(pb.DeleteRequest(thread_id=copied.thread.thread_id))
                    began = time.perf_counter()
                    await raw.copy(history_key, history_key + ":bench")
                    floor.append(time.perf_counter() - began)
                    await raw.unlink(history_key + ":bench")
                rpc_ms, floor_ms = statistics.median(rpc) * 1e3, statistics.median(floor) * 1e3
                print(
                    f"  {size:>9,} entries: Copy RPC {rpc_ms:7.3f} ms"
                    f"  raw COPY {floor_ms:7.3f} ms  ratio {rpc_ms / floor_ms:5.2f}"
                )
    finally:
        await raw.aclose()
        await server.stop(0)
        store.stop()


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "valkey"
    sizes = [int(n) for n in sys.argv[2:]] or [10, 1_000, 100_000]
    asyncio.run(measure(backend, sizes))


if __name__ == "__main__":
    main()
