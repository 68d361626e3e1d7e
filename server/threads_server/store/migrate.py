"""``threads-server migrate``: move threads of the 0.1 key layout into the sharded one
(docs/search.md, "Migration") and index them; also (re)indexes threads already in the new
layout, after a time with ``--search-index 0``.

0.1 keys are ``thr:{xxxx}[:o.<ns>]:<id>:meta|hist|createreq|copyreq:<request_id>``, where
``xxxx`` is the id's last four hex digits (``OldKeys`` below is a frozen copy of 0.1's key
function). Each thread moves in three steps: read its old keys (DUMP, with their expiry),
restore and index them in the new shard in one script (``lua/migrate.lua``: a key already
there is kept), then delete the old keys. So a run that stopped anywhere is finished by
the next, and a second run changes nothing. On a cluster the old and new keys live in
different slots, which is why the steps are separate; run it before the new version takes
writes (a thread not moved yet is invisible to it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from threads_server.ops.config import Settings
from threads_server.store.connect import close_redis, connect_redis
from threads_server.store.corridor import Corridor, transport_for
from threads_server.store.keys import (
    KEY_PREFIX,
    NO_OWNER_NAMESPACE,
    SHARDS,
    ThreadKeys,
    namespace_prefix,
)
from threads_server.store.scripts import Script, all_scripts

log = logging.getLogger("threads.migrate")

# An old key: its tag (four hex digits: new tags hold a '.'), namespace, id and suffix.
OLD_KEY = re.compile(
    rb"^thr:\{[0-9a-f]{4}\}:(?:(o\.[0-9a-f]{32}):)?"
    rb"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):"
    rb"(meta|hist|createreq|copyreq:.+)$"
)
OLD_PATTERN = f"{KEY_PREFIX}:{{????}}:*"
_CONCURRENCY = 200


@dataclass(frozen=True, slots=True)
class OldKeys:
    """The 0.1 layout's key names (frozen: keys.py has moved on)."""

    thread_id: str
    ns: str = ""  # "o.<hash>" with auth on, "" without

    def name(self, suffix: str) -> str:
        middle = f"{self.ns}:" if self.ns else ""
        return f"{KEY_PREFIX}:{{{self.thread_id[-4:]}}}:{middle}{self.thread_id}:{suffix}"


@dataclass
class Report:
    threads: int = 0  # threads whose keys were read (moved now, or before)
    restored: int = 0  # keys restored into the new layout
    deleted: int = 0  # old keys removed
    reindexed: int = 0  # threads of the new layout indexed again


async def migrate(redis: Any, *, search_index: bool = True, batch: int = 200) -> Report:
    """Moves every 0.1 thread, then indexes every thread of the new layout. Idempotent.
    ``redis``: a client of the store's (``store.connect``); its calls go through the
    store's corridor, one call alone or one pipeline at a time."""
    corridor = Corridor(transport_for(redis, pipelining=False))
    script = all_scripts()["migrate"]
    await corridor.load([script])
    report = Report()
    pending: dict[tuple[str, str], set[str]] = {}
    async for raw in corridor.scan(OLD_PATTERN):
        match = OLD_KEY.match(raw)
        if match is None:
            continue
        ns, thread_id, suffix = (part.decode() if part else "" for part in match.groups())
        extra = pending.setdefault((ns, thread_id), set())
        if suffix.startswith("copyreq:"):
            extra.add(suffix)
        if len(pending) >= batch:
            await _move(corridor, script, pending, search_index, report)
            pending = {}
    await _move(corridor, script, pending, search_index, report)
    if search_index:
        await _reindex(corridor, script, report)
    return report


async def _move(
    corridor: Corridor,
    script: Script,
    threads: dict[tuple[str, str], set[str]],
    search_index: bool,
    report: Report,
) -> None:
    for (ns, thread_id), extra in threads.items():
        old = OldKeys(thread_id, ns)
        suffixes = ["meta", "hist", "createreq", *sorted(extra)]
        names = [old.name(suffix) for suffix in suffixes]
        reads = [command for name in names for command in (("DUMP", name), ("PTTL", name))]
        replies = await corridor.commands([*reads, ("HGET", names[0], "expire_at_ms")])
        now_ms = int(time.time() * 1000)
        thread_expiry = int(replies[-1] or 0)
        new = ThreadKeys(thread_id, ns=ns or NO_OWNER_NAMESPACE)
        dumps: list[Any] = []
        for i, suffix in enumerate(suffixes):
            dump, pttl = replies[2 * i], replies[2 * i + 1]
            if suffix in ("meta", "hist"):  # the thread's one absolute expiry
                expire_ms = thread_expiry
            else:
                expire_ms = now_ms + pttl if pttl > 0 else 0
            dumps += [dump or "", expire_ms]
        keys = [new.meta, new.history, new.create_request]
        keys += [new.copy_request(s.removeprefix("copyreq:")) for s in suffixes[3:]]
        index = new.shard.index if search_index else ""
        _, values = await corridor.run(
            script, keys, script.argv(dumps, idx=index, id=thread_id), write=True
        )
        report.threads += 1
        report.restored += int(values[0])
        report.deleted += int(await corridor.command("DEL", *names, key=names[0], write=True))
        if report.threads % 10_000 == 0:
            log.info("moved %d threads so far", report.threads)


async def _reindex(corridor: Corridor, script: Script, report: Report) -> None:
    """Indexes every thread of the new layout (writes made with indexing off), and drops
    index entries of threads that are gone (deleted while indexing was off)."""
    batch: list[tuple[str, str]] = []  # (index prefix's shard prefix, thread id)

    async def index(threads: list[tuple[str, str]]) -> None:
        """migrate.lua calls that only index, sent together."""
        await corridor.run_many(
            script,
            [
                ([f"{prefix}{thread_id}:meta"], script.argv(idx=prefix + "idx:", id=thread_id))
                for prefix, thread_id in threads
            ],
            write=True,
        )

    namespaces = set()
    async for raw in corridor.scan(f"{KEY_PREFIX}:{{*.?}}:*:meta"):
        _, tag, thread_id, _ = raw.decode().split(":")
        namespaces.add(tag[1:-3])
        batch.append((namespace_prefix(tag[1:-3], thread_id[-1]), thread_id))
        report.reindexed += 1
        if len(batch) >= _CONCURRENCY:
            await index(batch)
            batch = []
    await index(batch)
    for ns in namespaces:
        for shard in SHARDS:
            prefix = namespace_prefix(ns, shard)
            key = prefix + "idx:c"
            members = [m.decode() for m in await corridor.command("ZRANGE", key, 0, -1, key=key)]
            for start in range(0, len(members), _CONCURRENCY):
                chunk = members[start : start + _CONCURRENCY]
                alive = await corridor.commands(
                    [("EXISTS", f"{prefix}{thread_id}:meta") for thread_id in chunk]
                )
                gone = [t for t, exists in zip(chunk, alive, strict=True) if not exists]
                await index([(prefix, thread_id) for thread_id in gone])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="threads-server migrate",
        description="Move threads of the 0.1 key layout into the sharded one and index "
        "every thread (docs/search.md). Idempotent: run it again until it moves nothing.",
    )
    parser.add_argument("--redis-url", required=True, help="redis://, rediss:// or unix:// URL")
    parser.add_argument(
        "--redis-cluster", action="store_true", help="the URL names a node of a Redis Cluster"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings(redis_url=args.redis_url, redis_cluster=args.redis_cluster)

    async def run() -> Report:
        redis = connect_redis(args.redis_url, settings)
        try:
            return await migrate(redis)
        finally:
            await close_redis(redis)

    report = asyncio.run(run())
    print(
        f"migrate: {report.threads} threads of the 0.1 layout read, {report.restored} keys "
        f"restored, {report.deleted} old keys deleted; {report.reindexed} threads indexed"
    )
    return 0
