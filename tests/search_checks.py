"""Search/Count checks shared by tests/test_search.py (Redis 7, Valkey) and
tests/test_cluster.py (the 3-primary cluster): each compares the service's answer with a
brute-force one computed from Get over every thread the caller made.

Every check runs as a caller of its own (auth on, a fresh ``sub``), so its namespace holds
exactly the threads it made, whatever else the suite does.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import jwt
from google.protobuf import duration_pb2, struct_pb2
from grpc import aio

from tests.rpc_helpers import entries, struct
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub

SECRET = "search-secret-0123456789abcdef0123456789"
SORTS = (pb.SORT_BY_CREATED_AT, pb.SORT_BY_UPDATED_AT, pb.SORT_BY_THREAD_ID)
ORDERS = (pb.SORT_ORDER_DESC, pb.SORT_ORDER_ASC)


def bearer(sub: str) -> tuple[tuple[str, str], ...]:
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, "HS256")
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Caller:
    """One caller: its stub and token, and every id it ever made (the brute force's input)."""

    stub: Stub
    sub: str = field(default_factory=lambda: f"search-{uuid.uuid4()}")
    made: list[str] = field(default_factory=list)

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        """The caller's token; none for ``sub=""`` (a server with auth off)."""
        return bearer(self.sub) if self.sub else ()

    async def create(self, ttl_ms: int = 0, n: int = 0, **metadata: Any) -> pb.Thread:
        request = pb.CreateRequest(
            metadata=struct(**metadata), history=entries(*({"i": i} for i in range(n)))
        )
        if ttl_ms:
            request.ttl.CopyFrom(duration_pb2.Duration(nanos=ttl_ms * 1_000_000))
        thread = (await self.stub.Create(request, metadata=self.md)).thread
        self.made.append(thread.thread_id)
        return thread

    async def copy(self, thread_id: str, **metadata: Any) -> pb.Thread:
        request = pb.CopyRequest(thread_id=thread_id, metadata=struct(**metadata))
        thread = (await self.stub.Copy(request, metadata=self.md)).thread
        self.made.append(thread.thread_id)
        return thread

    async def update(self, thread_id: str, **metadata: Any) -> None:
        request = pb.UpdateRequest(thread_id=thread_id, metadata=struct(**metadata))
        await self.stub.Update(request, metadata=self.md)

    async def append(self, thread_id: str) -> None:
        request = pb.AppendRequest(thread_id=thread_id, entries=entries({"x": 1}))
        await self.stub.Append(request, metadata=self.md)

    async def delete(self, thread_id: str) -> None:
        await self.stub.Delete(pb.DeleteRequest(thread_id=thread_id), metadata=self.md)

    async def live(self) -> list[pb.Thread]:
        """Every thread of the caller that Get finds now."""
        found = []
        for thread_id in self.made:
            try:
                response = await self.stub.Get(pb.GetRequest(thread_id=thread_id), metadata=self.md)
            except aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
                continue
            found.append(response.thread)
        return found

    async def search_all(self, page_size: int, **fields: Any) -> list[pb.Thread]:
        """Every page of a Search, following next_page_token."""
        threads: list[pb.Thread] = []
        token = ""
        for _ in range(10_000):
            request = pb.SearchRequest(page_size=page_size, page_token=token, **fields)
            page = await self.stub.Search(request, metadata=self.md)
            assert len(page.threads) <= (page_size or 10)
            threads.extend(page.threads)
            token = page.next_page_token
            if not token:
                return threads
        raise AssertionError("paging did not end")

    async def count(self, **fields: Any) -> int:
        return (await self.stub.Count(pb.CountRequest(**fields), metadata=self.md)).count


def sort_key(thread: pb.Thread, sort_by: int) -> tuple[int, str]:
    if sort_by == pb.SORT_BY_UPDATED_AT:
        return thread.updated_at.ToMicroseconds(), thread.thread_id
    if sort_by == pb.SORT_BY_THREAD_ID:
        return 0, thread.thread_id
    return thread.created_at.ToMicroseconds(), thread.thread_id


def brute_force(
    threads: list[pb.Thread],
    *,
    metadata: struct_pb2.Struct | None = None,
    thread_ids: list[str] | None = None,
    copied_from: str = "",
    sort_by: int = pb.SORT_BY_CREATED_AT,
    sort_order: int = pb.SORT_ORDER_DESC,
) -> list[str]:
    """The ids a Search must return, from the threads Get returned."""
    matching = [
        thread
        for thread in threads
        if all(
            key in thread.metadata.fields and thread.metadata.fields[key] == value
            for key, value in (metadata.fields.items() if metadata else [])
        )
        and (not thread_ids or thread.thread_id in thread_ids)
        and (not copied_from or thread.copied_from == copied_from)
    ]
    matching.sort(key=lambda t: sort_key(t, sort_by), reverse=sort_order != pb.SORT_ORDER_ASC)
    return [thread.thread_id for thread in matching]


async def seed_varied(caller: Caller) -> None:
    """Threads with repeated, nested and typed metadata values, copies of copies, updates
    (which re-point metadata), appends (which move updated_at) and deletes."""
    made = []
    for i in range(24):
        made.append(
            await caller.create(
                user=f"u{i % 3}",
                kind=i % 2,
                flag=i % 4 == 0,
                nested={"a": [1, {"b": i % 2}]},
                nothing=None,
            )
        )
    copies = [await caller.copy(made[i].thread_id, kind=7) for i in (0, 0, 1, 5)]
    copies.append(await caller.copy(copies[0].thread_id))
    await caller.update(made[2].thread_id, user="u9", kind=1.0)
    await caller.update(copies[1].thread_id, user="u1")
    for thread in (made[3], made[7], copies[2]):
        await caller.append(thread.thread_id)
    for thread in (made[4], copies[3]):
        await caller.delete(thread.thread_id)


async def check_every_filter_and_sort(caller: Caller) -> None:
    """Every filter combination in every sort and order, paged small and in one page,
    equals the brute force, and Count equals the number paged through."""
    await seed_varied(caller)
    live = await caller.live()
    assert live
    some_ids = [t.thread_id for t in live[::3]] + [str(uuid.uuid4())]
    source = next(t.copied_from for t in live if t.copied_from)
    filters: list[dict[str, Any]] = [
        {},
        {"metadata": struct(user="u1")},
        {"metadata": struct(user="u1", kind=1)},
        {"metadata": struct(kind=1)},  # 1 and 1.0 are one number
        {"metadata": struct(nested={"a": [1, {"b": 0}]})},
        {"metadata": struct(flag=True, nothing=None)},
        {"metadata": struct(user="nobody")},
        {"thread_ids": some_ids},
        {"thread_ids": some_ids, "metadata": struct(kind=0)},
        {"copied_from": source},
        {"copied_from": source, "metadata": struct(user="u1")},
    ]
    for query, sort_by, sort_order in itertools.product(filters, SORTS, ORDERS):
        expected = brute_force(live, sort_by=sort_by, sort_order=sort_order, **query)
        for page_size in (4, 1000):
            got = await caller.search_all(
                page_size, sort_by=sort_by, sort_order=sort_order, **query
            )
            assert [t.thread_id for t in got] == expected, (query, sort_by, sort_order, page_size)
        assert await caller.count(**query) == len(expected), query
    by_id = {t.thread_id: t for t in live}
    for thread in await caller.search_all(1000):
        assert thread == by_id[thread.thread_id]  # as Get returns it


async def check_offset(caller: Caller) -> None:
    for i in range(12):
        await caller.create(user=f"u{i % 2}")
    live = await caller.live()
    expected = brute_force(live)
    for offset in (0, 1, 5, 11, 12, 50):
        request = pb.SearchRequest(page_size=4, offset=offset)
        page = await caller.stub.Search(request, metadata=caller.md)
        assert [t.thread_id for t in page.threads] == expected[offset : offset + 4]
        assert bool(page.next_page_token) == (offset + 4 < len(expected))


async def check_paging_while_others_write(caller: Caller, rounds: int = 40) -> None:
    """Keyset paging while writers create, update, copy and delete: every thread that
    existed and matched for the whole paging comes exactly once, none twice."""
    seeded = [await caller.create(user="p") for _ in range(50)]
    doomed = {t.thread_id for t in seeded[::5]}
    kept = [t.thread_id for t in seeded if t.thread_id not in doomed]
    stop = asyncio.Event()

    async def writer() -> None:
        victims = iter(sorted(doomed))
        for i in range(rounds):
            if stop.is_set():
                return
            new = await caller.create(user="p")
            await caller.update(kept[(i * 7) % len(kept)], user="p", n=i)
            await caller.copy(new.thread_id, user="p")
            victim = next(victims, None)
            if victim:
                await caller.delete(victim)
            await asyncio.sleep(0)

    for sort_by in SORTS:
        task = asyncio.create_task(writer())
        try:
            seen = await caller.search_all(3, metadata=struct(user="p"), sort_by=sort_by)
        finally:
            stop.set()
            await task
            stop.clear()
        ids = [t.thread_id for t in seen]
        assert len(ids) == len(set(ids)), "a thread came twice"
        if sort_by != pb.SORT_BY_UPDATED_AT:  # updated_at moves a thread when it is written
            assert set(kept) <= set(ids)
        doomed = set()


async def _past(thread: pb.Thread) -> None:
    """Sleeps until the wall clock (which Redis's expiry reads too) is past the thread's
    expiry: only then is it expired."""
    await asyncio.sleep(max(0.0, thread.expire_time.ToMicroseconds() / 1e6 - time.time()) + 0.002)


async def check_expiry_and_delete(caller: Caller) -> None:
    """A 1 ms thread is never found once its millisecond is over (within it, it is a live
    thread: a fast enough Search may find it); a thread is gone from Search and Count the
    moment its TTL passes or it is deleted."""
    keep = await caller.create(user="e")
    for _ in range(5):
        brief = await caller.create(ttl_ms=1, user="e")
        await _past(brief)
        assert [t.thread_id for t in await caller.search_all(1000, metadata=struct(user="e"))] == [
            keep.thread_id
        ]
    short = await caller.create(ttl_ms=300, user="e")
    assert await caller.count(metadata=struct(user="e")) == 2
    await asyncio.sleep(max(0.0, short.expire_time.ToMicroseconds() / 1e6 - time.time()) + 0.01)
    for query in ({}, {"metadata": struct(user="e")}, {"thread_ids": [short.thread_id]}):
        assert [t.thread_id for t in await caller.search_all(10, **query)] in (
            [keep.thread_id],
            [],
        )
        assert await caller.count(**query) == (0 if "thread_ids" in query else 1)
    await caller.delete(keep.thread_id)
    assert await caller.search_all(10) == []
    assert await caller.count() == 0
    assert await caller.count(metadata=struct(user="e")) == 0
