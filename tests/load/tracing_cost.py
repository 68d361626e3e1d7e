"""Server CPU per call of each part of tracing, measured in one process with no gRPC or
load generator around it, so that a shared machine's noise mostly drops out.

    .venv/bin/python -m tests.load.tracing_cost REDIS_URL [N]

Runs ``rpc.run`` on the real ThreadService and ThreadStore against REDIS_URL (N Gets and
N Copies of a 10-entry thread, one at a time) and prints the process CPU time per call in
microseconds: what the server itself spends per call, Redis's time excluded. Whether
tracing is on comes from the environment, as in the server (``tracing.configure``); with
``PYTHONPATH`` naming an older ``server/`` tree it measures that build.
``tests.load.bench_tracing`` runs it for each configuration.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from tests.rpc_helpers import entry
from threads_server.service import call as rpc
from threads_server.service.handlers import ThreadService
from threads_server.store.thread_store import ThreadStore
from threads_service_client.pb import threads_pb2 as pb

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def measure(url: str, n: int) -> dict[str, float]:
    client = aioredis.from_url(url)
    store = ThreadStore(client)
    await store.prepare()
    service = ThreadService(store)  # type: ignore[abstract, unused-ignore]
    create: Any = rpc.handler_of(service.Create)
    request = pb.CreateRequest(history=[entry(i=i) for i in range(10)])
    made = await rpc.run(service, create, request, metadata=(), time_remaining=None)
    assert isinstance(made, pb.CreateResponse), made
    thread = made.thread
    metadata = (("traceparent", TRACEPARENT), ("user-agent", "tracing-cost"))
    costs: dict[str, float] = {}
    for name, make in (
        ("get", lambda: pb.GetRequest(thread_id=thread.thread_id)),
        (
            "copy_10",
            lambda: pb.CopyRequest(thread_id=thread.thread_id, request_id=str(uuid.uuid4())),
        ),
    ):
        handler: Any = rpc.handler_of(getattr(service, "Get" if name == "get" else "Copy"))
        for _ in range(200):  # warm-up
            await rpc.run(service, handler, make(), metadata=metadata, time_remaining=None)
        began = time.process_time()
        for _ in range(n):
            await rpc.run(service, handler, make(), metadata=metadata, time_remaining=None)
        costs[name] = (time.process_time() - began) / n * 1e6
    await client.aclose()
    return costs


def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    logging.basicConfig(level=logging.WARNING)  # as the bench's servers: no per-call line
    try:
        tracing = importlib.import_module("threads_server.ops.tracing")
        tracing.configure()
    except ModuleNotFoundError:  # the build before tracing
        tracing = None
    costs = asyncio.run(measure(url, n))
    if tracing is not None:
        tracing.shutdown()
    print(" ".join(f"{name}={us:.1f}" for name, us in costs.items()), flush=True)


if __name__ == "__main__":
    main()
