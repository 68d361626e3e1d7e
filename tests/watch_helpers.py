"""Helpers for the Watch tests: streams read to a length, concurrent appenders checked
against GetHistory, and the client's automatic resume driven through an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from tests.inprocess_server import CHANNEL_OPTIONS, POLL_BOUND
from tests.rpc_helpers import entries, history
from threads_service_client import RetryPolicy, get_client
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub

# Generous: a resume may wait out a failover (a few seconds) or a worker's restart.
RESUMING = RetryPolicy(max_attempts=200, initial_backoff=0.05, max_backoff=0.25)
STREAM_BOUND = 60.0  # no stream in a test runs longer than this (not a timing claim)


async def read_until(
    stub: Stub,
    thread_id: str,
    start_index: int,
    length: int,
    opened: asyncio.Semaphore | None = None,
) -> tuple[list[pb.Entry], list[pb.WatchResponse]]:
    """Watches from ``start_index`` until the stream has delivered every entry below
    ``length``; the entries and the messages. ``opened`` is released at the first message."""
    got: list[pb.Entry] = []
    messages: list[pb.WatchResponse] = []
    call = stub.Watch(
        pb.WatchRequest(thread_id=thread_id, start_index=start_index), timeout=STREAM_BOUND
    )
    try:
        async for message in call:
            if not messages and opened is not None:
                opened.release()
            messages.append(message)
            got.extend(message.entries)
            if start_index + len(got) >= length:
                break
    finally:
        call.cancel()
    return got, messages


def check_consecutive(got: list[pb.Entry], start_index: int) -> None:
    """Each index once, in order, from ``start_index``: no gap, no duplicate."""
    assert [e.index for e in got] == list(range(start_index, start_index + len(got)))


async def appenders_against_watchers(
    stub: Stub, *, appenders: int = 10, batches: int = 10, watchers: int = 50, per_batch: int = 3
) -> None:
    """``watchers`` streams on one thread while ``appenders`` append concurrently: every
    stream's sequence is GetHistory's, entry for entry (data, index, created_at), and the
    entries of each Append arrive in one message (none is over the caps here)."""
    thread_id = (await stub.Create(pb.CreateRequest(history=entries({"seed": 0})))).thread.thread_id
    total = 1 + appenders * batches * per_batch
    opened = asyncio.Semaphore(0)
    readers = [
        asyncio.ensure_future(read_until(stub, thread_id, w % 2, total, opened))
        for w in range(watchers)
    ]
    for _ in range(watchers):  # every stream open: they follow the appends live
        await asyncio.wait_for(opened.acquire(), POLL_BOUND)

    async def append(a: int) -> None:
        for b in range(batches):
            batch = entries(*({"a": a, "b": b, "k": k} for k in range(per_batch)))
            await stub.Append(pb.AppendRequest(thread_id=thread_id, entries=batch), timeout=30)

    await asyncio.gather(*(append(a) for a in range(appenders)))
    stored = await history(stub, thread_id)
    assert len(stored) == total
    for w, reader in enumerate(readers):
        got, messages = await asyncio.wait_for(reader, STREAM_BOUND)
        start = w % 2
        check_consecutive(got, start)
        assert got == stored[start:], f"watcher {w}"
        for message in messages:  # an Append's entries together, never split
            batches_in = {(e.data["a"], e.data["b"]) for e in message.entries if "a" in e.data}
            for a, b in batches_in:
                assert sum(1 for e in message.entries if (e.data["a"], e.data["b"]) == (a, b)) == (
                    per_batch
                ), f"watcher {w}: batch {(a, b)} split"
            if message.entries:
                assert message.history_length == message.entries[-1].index + 1


BATCH = 3  # entries per Append in the resume tests


async def resume_across(
    watch_target: str,
    stub: Callable[[], Stub],
    thread_id: str,
    outage: Callable[[], Awaitable[None]],
    *,
    batches: int = 30,
    outage_at: int = 10,
) -> None:
    """The client's ``watch`` (on ``watch_target``) from index 0 of a thread created with
    one entry, while batches are appended through ``stub()`` (each retried through the
    outage with expected_length, so it lands exactly once) and ``outage`` runs once batch
    ``outage_at`` was delivered: the watch delivers GetHistory's sequence, no gap, no
    duplicate."""
    total = 1 + batches * BATCH
    seen: list[pb.Entry] = []
    reached = asyncio.Event()

    async def watch() -> None:
        # Reconnect quickly: gRPC's own backoff after a refused connection grows to minutes.
        async with get_client(watch_target, retry=RESUMING, options=CHANNEL_OPTIONS) as client:
            async for entry in client.threads.watch(thread_id, 0, timeout=STREAM_BOUND * 2):
                seen.append(entry)
                if len(seen) == 1 + outage_at * BATCH:
                    reached.set()
                if len(seen) >= total:
                    return

    watcher = asyncio.ensure_future(watch())
    for b in range(batches):
        if b == outage_at:
            await asyncio.wait_for(reached.wait(), STREAM_BOUND)
            await outage()
        await append_once(stub, thread_id, b)
    await asyncio.wait_for(watcher, STREAM_BOUND * 2)
    check_consecutive(seen, 0)
    assert seen == await history(stub(), thread_id)


async def append_once(stub: Callable[[], Stub], thread_id: str, b: int) -> None:
    """Appends batch ``b`` (after 1 + b batches' entries), retrying through UNAVAILABLE; a
    retry that finds it applied (ABORTED, with the longer length) is done."""
    batch = entries(*({"b": b, "k": k} for k in range(BATCH)))
    expected = 1 + b * BATCH
    request = pb.AppendRequest(thread_id=thread_id, entries=batch, expected_length=expected)
    deadline = asyncio.get_running_loop().time() + STREAM_BOUND
    while True:
        try:
            await stub().Append(request, timeout=5)
            return
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.ABORTED and f"has {expected + BATCH} entries" in (
                error.details() or ""
            ):
                return
            retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            if not retryable or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.05)
