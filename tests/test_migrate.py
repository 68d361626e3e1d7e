"""``threads-server migrate`` against real Redis 7 and Valkey (the cluster:
tests/test_cluster.py): threads written in the 0.1 layout (seeded key by key as 0.1's
scripts wrote them, through the frozen ``OldKeys``) are moved and indexed; Get, Search and
GetHistory then see every one with its expiry kept; a second run changes nothing; a run
stopped half-way is finished by the next.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import StartServer
from tests.redis_process import RedisProcess
from tests.rpc_helpers import history, struct
from tests.search_checks import SECRET, Caller
from threads_server.store.codec import metadata_args
from threads_server.store.keys import owner_namespace
from threads_server.store.migrate import OldKeys, migrate
from threads_service_client.pb import threads_pb2 as pb


@dataclass
class OldThread:
    thread_id: str
    owner: str
    user: str
    entries: int
    expire_ms: int  # 0: none
    copied_from: str = ""


async def seed_old_layout(redis: Any, owner: str, n: int = 12) -> list[OldThread]:
    """Threads as 0.1 stored them: meta HASH, history LIST, both with one absolute expiry,
    Create and Copy request records."""
    ns = owner_namespace(owner) if owner else ""
    now_us = time.time_ns() // 1000
    seeded: list[OldThread] = []
    for i in range(n):
        thread_id = str(uuid.uuid4())
        old = OldKeys(thread_id, ns)
        expire_ms = now_us // 1000 + 3_600_000 + i if i % 3 == 0 else 0
        source = seeded[0].thread_id if i % 4 == 3 else ""
        if source:  # 0.1 copies kept their source's last four digits
            thread_id = thread_id[:-4] + source[-4:]
            old = OldKeys(thread_id, ns)
        fields: list[Any] = ["created_at", now_us + i, "updated_at", now_us + i]
        if owner:
            fields += ["owner", owner]
        if source:
            fields += ["copied_from", source]
        if expire_ms:
            fields += ["expire_at_ms", expire_ms]
        fields += metadata_args(struct(user=f"u{i % 2}", i=i))
        await redis.hset(old.name("meta"), items=fields)
        entries = [pb.Entry(data=struct(i=j)).SerializeToString() for j in range(i % 3)]
        if entries:
            await redis.rpush(old.name("hist"), *entries)
        if expire_ms:
            await redis.pexpireat(old.name("meta"), expire_ms)
            if entries:
                await redis.pexpireat(old.name("hist"), expire_ms)
        if i % 5 == 0:
            await redis.hset(
                old.name("createreq"), mapping={"request_id": f"r{i}", "fingerprint": "f"}
            )
            await redis.expire(old.name("createreq"), 86_400)
            await redis.hset(
                old.name("copyreq:k1"), mapping={"copy_id": thread_id, "fingerprint": "f"}
            )
            await redis.expire(old.name("copyreq:k1"), 86_400)
        seeded.append(OldThread(thread_id, owner, f"u{i % 2}", len(entries), expire_ms, source))
    return seeded


async def check_migrated(caller: Caller, seeded: list[OldThread]) -> None:
    """Get, GetHistory, Search and Count see every seeded thread as it was."""
    md = caller.md
    for old in seeded:
        thread = (await caller.stub.Get(pb.GetRequest(thread_id=old.thread_id), metadata=md)).thread
        assert thread.metadata["user"] == old.user
        assert thread.history_length == old.entries
        assert thread.copied_from == old.copied_from
        assert thread.expire_time.ToMilliseconds() == old.expire_ms
        entries = await history(caller.stub, old.thread_id) if not old.owner else None
        if entries is not None:
            assert len(entries) == old.entries
    caller.made = [old.thread_id for old in seeded]
    found = await caller.search_all(5)
    assert sorted(t.thread_id for t in found) == sorted(caller.made)
    users = await caller.search_all(5, metadata=struct(user="u1"))
    assert {t.thread_id for t in users} == {o.thread_id for o in seeded if o.user == "u1"}
    assert await caller.count() == len(seeded)
    copies = {o.thread_id for o in seeded if o.copied_from}
    assert await caller.count(copied_from=seeded[0].thread_id) == len(copies)


async def snapshot(redis: Any) -> dict[bytes, Any]:
    found = {}
    async for key in redis.scan_iter(match="thr:*"):
        found[key] = (await redis.type(key), await redis.dump(key), await redis.pexpiretime(key))
    return found


@pytest.fixture
async def fresh(own_redis: RedisProcess) -> Any:
    client = aioredis.from_url(own_redis.url)
    yield client
    await client.aclose()


async def test_migrate_moves_indexes_keeps_ttls_and_is_idempotent(
    own_redis: RedisProcess, fresh: Any, start_server: StartServer
) -> None:
    owner = f"mig-{uuid.uuid4()}"
    plain = await seed_old_layout(fresh, "")
    owned = await seed_old_layout(fresh, owner)
    first = await migrate(fresh)
    assert first.threads == len(plain) + len(owned)
    assert [key async for key in fresh.scan_iter(match="thr:{????}:*")] == []
    after = await snapshot(fresh)
    second = await migrate(fresh)
    assert (second.threads, second.restored, second.deleted) == (0, 0, 0)
    assert await snapshot(fresh) == after

    for old in plain + owned:  # one absolute expiry, as before
        expected = old.expire_ms or -1
        ns = owner_namespace(owner) if old.owner else "-"
        assert (
            await fresh.pexpiretime(f"thr:{{{ns}.{old.thread_id[-1]}}}:{old.thread_id}:meta")
            == expected
        )

    auth_on = await start_server(settings_for_test(auth_jwt_secret=SECRET), own_redis.url)
    await check_migrated(Caller(auth_on.stub, sub=owner), owned)
    auth_off = await start_server(settings_for_test(), own_redis.url)
    await check_migrated(Caller(auth_off.stub, sub=""), plain)


async def test_a_stopped_migration_is_finished_by_the_next_run(
    own_redis: RedisProcess, fresh: Any, start_server: StartServer
) -> None:
    """What a crash between the restore and the delete leaves (keys at both places), and
    between two threads (some moved, some not), the next run completes."""
    seeded = await seed_old_layout(fresh, "")
    old_meta = OldKeys(seeded[1].thread_id).name("meta")
    kept = await fresh.dump(old_meta)
    ttl = await fresh.pttl(old_meta)
    await migrate(fresh)
    await fresh.restore(old_meta, max(ttl, 0), kept)  # as if the delete never ran
    more = await seed_old_layout(fresh, "", n=3)  # as if the scan never reached these
    old_keys = [key async for key in fresh.scan_iter(match="thr:{????}:*")]
    report = await migrate(fresh)
    assert report.threads == 4
    assert report.restored == len(old_keys) - 1  # all but the one already moved
    assert not await fresh.exists(old_meta)
    auth_off = await start_server(settings_for_test(), own_redis.url)
    await check_migrated(Caller(auth_off.stub, sub=""), seeded + more)


async def test_migrate_command_line(own_redis: RedisProcess, fresh: Any) -> None:
    await seed_old_layout(fresh, "", n=2)
    command = [sys.executable, "-m", "threads_server", "migrate", "--redis-url", own_redis.url]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("migrate: 2 threads of the 0.1 layout read")
    assert [key async for key in fresh.scan_iter(match="thr:{????}:*")] == []


async def test_reindex_after_indexing_was_off(
    own_redis: RedisProcess, fresh: Any, start_server: StartServer
) -> None:
    """Writes made with --search-index 0 are indexed by migrate; threads deleted meanwhile
    leave the index."""
    on = await start_server(settings_for_test(), own_redis.url)
    gone = (await on.stub.Create(pb.CreateRequest(metadata=struct(user="x")))).thread
    off = await start_server(settings_for_test(search_index=False), own_redis.url)
    made = (await off.stub.Create(pb.CreateRequest(metadata=struct(user="x")))).thread
    await off.stub.Delete(pb.DeleteRequest(thread_id=gone.thread_id))
    report = await migrate(fresh)
    assert report.reindexed == 1
    caller = Caller(on.stub, sub="")
    caller.made = [made.thread_id]
    assert [t.thread_id for t in await caller.search_all(10)] == [made.thread_id]
    assert await caller.count(metadata=struct(user="x")) == 1
