"""Seeds the fixed threads the ghz load scenarios (``tests/load/*.json``) name.

    .venv/bin/python -m tests.load.seed --target 127.0.0.1:50051

The ids are fixed so the ghz config files can name them; every entry is ~200 bytes
serialized (``{"role", "seq", "text"}``):

====================================  ========  ==========================================
thread id                             entries   used by
====================================  ========  ==========================================
10ad0000-0000-4000-8000-000000000010  10        copy_10
10ad0000-0000-4000-8000-000000001000  1,000     copy_1000, get, get_history (page of 100)
10ad0000-0000-4000-8000-000000100000  100,000   copy_100000
10ad0000-0000-4000-8000-00000000000a  0         append (reset to empty on every seed)
====================================  ========  ==========================================

A thread that already exists with the right length is kept (so reseeding is quick);
otherwise it is deleted and created again, 10,000 entries per request at most.

For the Search and Count scenarios (``search_first_page``, ``search_filtered``,
``count_filtered``), ``seed_search`` makes 10,000 more threads with no history, ids
``5ea4c000-0000-4000-8000-<i as 12 hex digits>`` (spread over every last hex digit) and
metadata ``{"seeded_by": "tests.load.seed.search", "user": "user-<i mod 1,000, 4 digits>",
"kind": "kind-<i div 1,000>"}``: each of the 1,000 users has 10 threads, one of each kind.
The filtered scenarios name ``user-0042``. They are Create RPCs, 64 in flight, with
``IF_EXISTS_DO_NOTHING`` (a rerun keeps what is there; when Count already finds all 10,000
nothing is sent), bounded by ``SEARCH_SEED_SECONDS``; ``delete_search`` removes them again.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import struct_pb2
from grpc import aio

from threads_service_client import NotFoundError, SyncClient, get_sync_client
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

THREAD_10 = "10ad0000-0000-4000-8000-000000000010"
THREAD_1000 = "10ad0000-0000-4000-8000-000000001000"
THREAD_100000 = "10ad0000-0000-4000-8000-000000100000"
THREAD_APPEND = "10ad0000-0000-4000-8000-00000000000a"

BATCH = 10_000
# 135 characters make an entry of {"role", "seq", "text"} plus created_at ~200 bytes.
TEXT = ("load test entry " * 10)[:135]


@dataclass(frozen=True)
class SeedThread:
    thread_id: str
    entries: int
    # Recreated on every seed even when the length matches (the append target grows).
    reset: bool = False


THREADS = (
    SeedThread(THREAD_10, 10),
    SeedThread(THREAD_1000, 1_000),
    SeedThread(THREAD_100000, 100_000),
    SeedThread(THREAD_APPEND, 0, reset=True),
)


SEARCH_THREADS = 10_000
SEARCH_USERS = 1_000
SEARCH_KINDS = 10
SEARCH_SEEDED_BY = "tests.load.seed.search"
# The user search_filtered.json and count_filtered.json filter on: it has SEARCH_KINDS threads.
SEARCH_USER = "user-0042"
SEARCH_CONCURRENCY = 64
# Bounds the whole seeding (or deleting) of the search threads; each call gets CALL_SECONDS.
SEARCH_SEED_SECONDS = 300.0
CALL_SECONDS = 30.0


def search_thread_id(i: int) -> str:
    return f"5ea4c000-0000-4000-8000-{i:012x}"


def search_metadata(i: int) -> dict[str, str]:
    return {
        "seeded_by": SEARCH_SEEDED_BY,
        "user": f"user-{i % SEARCH_USERS:04d}",
        "kind": f"kind-{i // SEARCH_USERS % SEARCH_KINDS}",
    }


def entries(start: int, count: int) -> list[pb.Entry]:
    out = []
    for seq in range(start, start + count):
        entry = pb.Entry()
        entry.data.update({"role": "user", "seq": seq, "text": TEXT})
        out.append(entry)
    return out


def seed_thread(client: SyncClient, spec: SeedThread) -> bool:
    """Makes ``spec.thread_id`` exist with ``spec.entries`` entries; True if it was (re)made."""
    try:
        current = client.threads.get(spec.thread_id)
    except NotFoundError:
        current = None
    if current is not None:
        if current.history_length == spec.entries and not spec.reset:
            return False
        client.threads.delete(spec.thread_id)
    first = min(BATCH, spec.entries)
    client.threads.create(
        spec.thread_id,
        metadata={"seeded_by": "tests.load.seed"},
        history=entries(0, first),
        timeout=60,
    )
    for start in range(first, spec.entries, BATCH):
        client.threads.append(
            spec.thread_id,
            entries(start, min(BATCH, spec.entries - start)),
            expected_length=start,
            timeout=60,
        )
    length = client.threads.get(spec.thread_id).history_length
    if length != spec.entries:
        raise RuntimeError(f"{spec.thread_id}: {length} entries after seeding, not {spec.entries}")
    return True


def seed(target: str, threads: Sequence[SeedThread] = THREADS) -> list[tuple[SeedThread, bool]]:
    """Seeds ``threads`` (default: every one of ``THREADS``) at ``target``; each with
    whether it was (re)made."""
    with get_sync_client(target, timeout=30) as client:
        return [(spec, seed_thread(client, spec)) for spec in threads]


async def _each_search_thread(
    target: str, call: Callable[[pb_grpc.ThreadServiceAsyncStub, int], Awaitable[object]]
) -> None:
    """``call(stub, i)`` for every search thread i, SEARCH_CONCURRENCY at a time, all within
    SEARCH_SEED_SECONDS."""
    numbers: Iterator[int] = iter(range(SEARCH_THREADS))

    async with aio.insecure_channel(target) as channel:
        stub = pb_grpc.ThreadServiceStub(channel)

        async def worker() -> None:
            for i in numbers:  # shared: each number goes to one worker
                await call(stub, i)

        async with asyncio.timeout(SEARCH_SEED_SECONDS):
            await asyncio.gather(*(worker() for _ in range(SEARCH_CONCURRENCY)))


def _struct(values: dict[str, str]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


async def _seed_search(target: str) -> bool:
    async with aio.insecure_channel(target) as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        request = pb.CountRequest(metadata=_struct({"seeded_by": SEARCH_SEEDED_BY}))
        found = (await stub.Count(request, timeout=CALL_SECONDS)).count
    if found == SEARCH_THREADS:
        return False

    async def create(stub: pb_grpc.ThreadServiceAsyncStub, i: int) -> None:
        request = pb.CreateRequest(
            thread_id=search_thread_id(i),
            metadata=_struct(search_metadata(i)),
            if_exists=pb.IF_EXISTS_DO_NOTHING,
        )
        await stub.Create(request, timeout=CALL_SECONDS)

    await _each_search_thread(target, create)
    return True


async def _delete_search(target: str) -> None:
    async def delete(stub: pb_grpc.ThreadServiceAsyncStub, i: int) -> None:
        try:
            await stub.Delete(pb.DeleteRequest(thread_id=search_thread_id(i)), timeout=CALL_SECONDS)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    await _each_search_thread(target, delete)


def seed_search(target: str) -> bool:
    """Makes the SEARCH_THREADS search threads exist at ``target``; True if any was missing."""
    return asyncio.run(_seed_search(target))


def delete_search(target: str) -> None:
    """Deletes the search threads from ``target`` (those already gone are skipped)."""
    asyncio.run(_delete_search(target))


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Seed the fixed threads the ghz load scenarios in tests/load/ use."
    )
    parser.add_argument(
        "--target", default="127.0.0.1:50051", help="server host:port (default %(default)s)"
    )
    parser.add_argument(
        "--delete-search",
        action="store_true",
        help=f"delete the {SEARCH_THREADS:,} search threads instead of seeding anything",
    )
    args = parser.parse_args()
    began = time.monotonic()
    if args.delete_search:
        delete_search(args.target)
        print(f"{SEARCH_THREADS:,} search threads deleted in {time.monotonic() - began:.1f}s")
        return
    for spec, made in seed(args.target):
        print(f"{spec.thread_id}  {spec.entries:>7,} entries  {'seeded' if made else 'kept'}")
    made = seed_search(args.target)
    print(f"{SEARCH_THREADS:,} search threads ({SEARCH_SEEDED_BY})  {'seeded' if made else 'kept'}")
    print(f"done in {time.monotonic() - began:.1f}s")


if __name__ == "__main__":
    main()
