"""The Lua scripts behind every multi-step operation, loaded once and called by SHA.

Each script lives in ``server/threads_server/store/lua/<name>.lua``; ``_prelude.lua`` (shared
helpers) is put before each, so Redis numbers the lines of the two together
(``user_script:N``). ``name_lines`` turns those back into ``<file>.lua:<line>``, so an
error names the line of the file to open. redis-py's ``Script`` calls EVALSHA and
reloads the script on NOSCRIPT (after a Redis restart or failover), so callers never
send the source twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

PRELUDE = "_prelude"
_LINE = re.compile(r"user_script:(\d+)")


def _source(name: str) -> str:
    return resources.files("threads_server.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class LuaSource:
    """A script as Redis runs it (the prelude, then the file), and where its lines came from."""

    name: str
    text: str
    prelude_lines: int

    @classmethod
    def build(cls, name: str, body: str | None = None) -> LuaSource:
        """``lua/<name>.lua`` after the prelude; ``body`` instead of the file (tests)."""
        prelude = _source(PRELUDE)
        if not prelude.endswith("\n"):
            prelude += "\n"
        text = prelude + (_source(name) if body is None else body)
        return cls(name, text, prelude.count("\n"))

    def where(self, line: int) -> str:
        """``<file>.lua:<line>`` for line ``line`` of the script Redis runs."""
        if line <= self.prelude_lines:
            return f"{PRELUDE}.lua:{line}"
        return f"{self.name}.lua:{line - self.prelude_lines}"

    def name_lines(self, message: str) -> str:
        """``message`` with every ``user_script:N`` (Redis 7 and Valkey both write it, in
        runtime and compile errors) replaced by the file and line it is."""
        return _LINE.sub(lambda match: self.where(int(match.group(1))), message)


_BY_SHA: dict[str, LuaSource] = {}
"""Every registered script's source, by the SHA1 Redis knows it by (same text, same SHA)."""


def register(redis: Any, name: str, body: str | None = None) -> AsyncScript:
    """Binds script ``name`` to a redis client (plain or cluster), remembering its source
    so that its errors can name their lines."""
    source = LuaSource.build(name, body)
    script: AsyncScript = redis.register_script(source.text)
    _BY_SHA[script.sha] = source
    return script


def name_of(script: AsyncScript) -> str:
    """The file name (``copy``) of a registered script, for its metrics' label."""
    source = _BY_SHA.get(script.sha)
    return source.name if source is not None else script.sha


def name_lines(exc: BaseException, script: AsyncScript) -> None:
    """Rewrites, in place, the ``user_script:N`` of an error ``script`` raised into its
    file and line (in place: the class, traceback and cause stay as they are)."""
    source = _BY_SHA.get(script.sha)
    if source is not None and exc.args and isinstance(exc.args[0], str):
        exc.args = (source.name_lines(exc.args[0]), *exc.args[1:])


def script_name(script: AsyncScript) -> str:
    """The file name (``copy``) of a registered script, for spans; "?" for an unknown one."""
    source = _BY_SHA.get(script.sha)
    return source.name if source is not None else "?"


def script_names() -> list[str]:
    """Every script in ``lua/`` but the prelude: adding ``lua/<name>.lua`` adds a script."""
    folder = resources.files("threads_server.store").joinpath("lua")
    return sorted(
        entry.name.removesuffix(".lua")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua") and entry.name != f"{PRELUDE}.lua"
    )


class Scripts(Mapping[str, AsyncScript]):
    """Every script of ``lua/``, by name, bound to one redis client (plain or cluster)."""

    def __init__(self, redis: Any) -> None:
        self._by_name = {name: register(redis, name) for name in script_names()}

    @classmethod
    def register(cls, redis: Any) -> Scripts:
        return cls(redis)

    def __getitem__(self, name: str) -> AsyncScript:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)
