"""The Lua scripts behind every multi-step operation, loaded once and called by SHA.

Each script lives in ``server/threads_server/lua/<name>.lua``; ``_prelude.lua`` (shared helpers) is
prepended to each. redis-py's ``Script`` calls EVALSHA and reloads the script on
NOSCRIPT (after a Redis restart or failover), so callers never send the source twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript


def _source(name: str) -> str:
    return resources.files("threads_server").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    create: AsyncScript
    get: AsyncScript
    update: AsyncScript
    delete: AsyncScript
    append: AsyncScript
    read_history: AsyncScript
    copy: AsyncScript

    @classmethod
    def register(cls, redis: Any) -> Scripts:
        """Binds every script to a redis client (plain or cluster)."""
        prelude = _source("_prelude")
        return cls(
            **{
                name: redis.register_script(prelude + "\n" + _source(name))
                for name in cls.__dataclass_fields__
            }
        )

    async def preload(self, redis: Any) -> None:
        """SCRIPT LOADs every script, so that the first calls after a (re)start hit by SHA."""
        for name in self.__dataclass_fields__:
            await redis.script_load(getattr(self, name).script)
