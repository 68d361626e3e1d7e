"""Checks on the store itself, for tests of requests that must be refused before Redis is
touched: no script ran, and no thread key was added or changed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

_SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro")


async def scripts_run(redis: Any) -> int:
    """How many Lua scripts the server has run so far (every read and write is one)."""
    stats = await redis.info("commandstats")
    return sum(int(stats[name]["calls"]) for name in _SCRIPT_COMMANDS if name in stats)


async def thread_keys(redis: Any) -> dict[bytes, bytes]:
    """Every key of the service's (``thr:*``) with its DUMP."""
    keys = [key async for key in redis.scan_iter(match="thr:*", count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.dump(key)
        dumps = await pipe.execute()
    return {key: dump for key, dump in zip(keys, dumps, strict=True) if dump is not None}


@contextlib.asynccontextmanager
async def untouched(redis: Any) -> AsyncIterator[None]:
    """The block sends requests that must not reach Redis: afterwards no script has run,
    and no key was added or changed. (Keys may only go: other tests' keys that expire.)"""
    scripts, before = await scripts_run(redis), await thread_keys(redis)
    yield
    assert await scripts_run(redis) == scripts, "a script ran"
    after = await thread_keys(redis)
    assert set(after) <= set(before), f"keys added: {sorted(set(after) - set(before))[:5]}"
    changed = [key for key, dump in after.items() if before[key] != dump]
    assert not changed, f"keys changed: {changed[:5]}"
