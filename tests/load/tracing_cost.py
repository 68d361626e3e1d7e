"""Server CPU per call of each part of tracing, measured in one process with no gRPC or
load generator around it, so that a shared machine's noise mostly drops out.

    .venv/bin/python -m tests.load.tracing_cost REDIS_URL [N]

Runs the per-call pipeline (``service.call.Endpoint``; ``rpc.run`` in builds before issue
20) on the real ThreadService and ThreadStore against REDIS_URL (N Gets and N Copies of a
10-entry thread, one at a time) and prints the process CPU time per call in microseconds:
what the server itself spends per call, Redis's time excluded. Whether tracing is on comes
from the environment, as in the server (``tracing.configure``); with ``PYTHONPATH`` naming
an older ``server/`` tree it measures that build.
``tests.load.bench_tracing`` runs it for each configuration.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from tests.rpc_helpers import entry
from threads_service_client.pb import threads_pb2 as pb

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

Call = Callable[[Any, Any], Awaitable[Any]]


def _build(client: Any) -> tuple[Any, Callable[[Any, str], Call]]:
    """The store and a way to call an RPC of the build on the path (``PYTHONPATH``): this
    tree's layout (``service.call.Endpoint``), or the flat one before it (``rpc.run``)."""
    try:
        call = importlib.import_module("threads_server.service.call")
        grpc_face = importlib.import_module("threads_server.transports.grpc.registration")
        stores = importlib.import_module("threads_server.store.thread_store")
        handlers = importlib.import_module("threads_server.service.handlers")
    except ModuleNotFoundError:  # a build before the package layout
        rpc = importlib.import_module("threads_server.rpc")
        store = importlib.import_module("threads_server.store").ThreadStore(client)
        service = importlib.import_module("threads_server.service").ThreadService(store)

        def old(servicer: Any, name: str) -> Call:
            handler = rpc.handler_of(getattr(servicer, name))
            return lambda request, metadata: rpc.run(
                servicer, handler, request, metadata=metadata, time_remaining=None
            )

        return store, lambda _, name: old(service, name)
    store = stores.ThreadStore(client)
    service = handlers.ThreadService(store)

    def new(_: Any, name: str) -> Call:
        endpoint = call.Endpoint(service, name, grpc_face.GRPC)
        return lambda request, metadata: endpoint(request, metadata, None)

    return store, new


async def measure(url: str, n: int) -> dict[str, float]:
    client = aioredis.from_url(url)
    store, endpoint = _build(client)
    await store.prepare()
    request = pb.CreateRequest(history=[entry(i=i) for i in range(10)])
    made = await endpoint(store, "Create")(request, ())
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
        rpc = endpoint(store, "Get" if name == "get" else "Copy")
        for _ in range(200):  # warm-up
            await rpc(make(), metadata)
        began = time.process_time()
        for _ in range(n):
            await rpc(make(), metadata)
        costs[name] = (time.process_time() - began) / n * 1e6
    await client.aclose()
    return costs


def _first_module(*names: str) -> Any:
    """The first of ``names`` the build on the path has (modules moved in issue 20)."""
    for name in names[:-1]:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    return importlib.import_module(names[-1])


def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    logging.basicConfig(level=logging.WARNING)  # as the bench's servers: no per-call line
    try:
        tracing = _first_module("threads_server.ops.tracing", "threads_server.tracing")
        tracing.configure()
    except ModuleNotFoundError:  # the build before tracing
        tracing = None
    costs = asyncio.run(measure(url, n))
    if tracing is not None:
        tracing.shutdown()
    print(" ".join(f"{name}={us:.1f}" for name, us in costs.items()), flush=True)


if __name__ == "__main__":
    main()
