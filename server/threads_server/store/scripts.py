"""The Lua scripts, built once from ``lua/`` and called by SHA; their includes and arguments.

Each script is ``lua/<name>.lua``. It names the helpers it uses, as BullMQ's scripts do, with
``--- @include "includes/<helper>"`` (a path relative to the including file, ``.lua`` left
out); a helper may include others. The script Redis runs is every helper it needs, each
once and after the helpers it includes, then the file itself, unchanged: get.lua carries one
helper, not every helper there is. Redis numbers the lines of that whole text
(``user_script:N``); ``LuaSource.where`` turns them back into the file and line to open
(``includes/call_sliced.lua:9``, ``copy.lua:42``).

A script's header declares its arguments, in order, once: ``-- ARGV: idx (what it is),
copy_id, ..., first_field... (the rest)``. Each name is the Lua local the script binds to
that ``ARGV[n]`` (checked here, at load); a last ``name...`` is the local holding the index
where the variable part starts. The store passes the arguments by those names
(``Script.argv``), so an order is never written twice.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import Any

_LUA = resources.files("threads_server.store").joinpath("lua")
_LINE = re.compile(r"user_script:(\d+)")
# BullMQ's form: two or three dashes, @include, a quoted path.
_INCLUDE = re.compile(r"""^-{2,3}[ \t]*@include[ \t]+(["'])(.+?)\1[; \t]*$""")
_ARG = re.compile(r"^([a-z_][a-z0-9_]*)(\.\.\.)?(?:\s*\(.*\))?$", re.DOTALL)
_ARGV_INDEX = re.compile(r"^(?:tonumber\()?ARGV\[(\d+)\]\)?$")


class ScriptError(ValueError):
    """A script or helper the loader cannot build: an include that is missing or circular,
    or an ARGV header that its locals contradict."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Where lines of a script's text come from: ``lines`` lines of ``path`` (relative to
    ``lua/``), from line ``first`` of the text."""

    path: str
    first: int
    lines: int


@dataclass(frozen=True, slots=True)
class LuaSource:
    """A script as Redis runs it (its helpers, then its file) and where each line came from."""

    name: str
    text: str
    pieces: tuple[Piece, ...]

    @classmethod
    def build(cls, name: str, body: str | None = None) -> LuaSource:
        """``lua/<name>.lua`` after the helpers it includes; ``body``: instead of the file."""
        path = f"{name}.lua"
        files = _Includes()
        files.visit(path, _read(path) if body is None else body, ())
        texts, pieces, first = [], [], 1
        for each, read in [*files.ordered, (path, files.texts[path])]:
            text = read if read.endswith("\n") else read + "\n"
            texts.append(text)
            pieces.append(Piece(each, first, text.count("\n")))
            first += text.count("\n")
        return cls(name, "".join(texts), tuple(pieces))

    @property
    def helpers(self) -> tuple[str, ...]:
        """The included files, in the order they come (``includes/thread_state.lua``)."""
        return tuple(piece.path for piece in self.pieces[:-1])

    def where(self, line: int) -> str:
        """``<file>.lua:<line>`` for line ``line`` of the text Redis runs."""
        for piece in self.pieces:
            if line < piece.first + piece.lines:
                return f"{piece.path}:{line - piece.first + 1}"
        return f"{self.pieces[-1].path}:{line - self.pieces[-1].first + 1}"  # past the end

    def name_lines(self, message: str) -> str:
        """``message`` with every ``user_script:N`` (Redis 7 and Valkey both write it, in
        runtime and compile errors) replaced by the file and line it is."""
        return _LINE.sub(lambda match: self.where(int(match.group(1))), message)


class _Includes:
    """The helpers a script needs, each once, every helper after those it includes."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.ordered: list[tuple[str, str]] = []

    def visit(self, path: str, text: str, chain: tuple[str, ...]) -> None:
        if path in chain:
            raise ScriptError(f"circular @include: {' -> '.join((*chain, path))}")
        if path in self.texts:
            return
        self.texts[path] = text
        for number, line in enumerate(text.splitlines(), 1):
            match = _INCLUDE.match(line)
            if match is None:
                continue
            target = _resolve(path, match.group(2))
            try:
                included = _read(target)
            except FileNotFoundError:
                raise ScriptError(f"{path}:{number}: no such include {target}") from None
            self.visit(target, included, (*chain, path))
            if (target, included) not in self.ordered:
                self.ordered.append((target, included))


def _resolve(including: str, name: str) -> str:
    """An include's path relative to ``lua/``: relative to the including file's folder."""
    parts = [*including.split("/")[:-1], *name.removesuffix(".lua").split("/")]
    resolved: list[str] = []
    for part in parts:
        if part == "..":
            if not resolved:
                raise ScriptError(f"{including}: @include {name!r} leaves lua/")
            resolved.pop()
        elif part not in ("", "."):
            resolved.append(part)
    return "/".join(resolved) + ".lua"


def _read(path: str) -> str:
    entry: Traversable = _LUA
    for part in path.split("/"):
        entry = entry.joinpath(part)
    if not entry.is_file():
        raise FileNotFoundError(path)
    return entry.read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Arguments:
    """A script's ARGV as its header declares it: the names in order, and the local that
    holds where the variable rest starts (None: no rest)."""

    names: tuple[str, ...]
    rest: str | None

    @classmethod
    def declared(cls, path: str, text: str) -> Arguments:
        """The header's ``-- ARGV:`` declaration, checked against the locals the script
        binds: each name is the local of its ``ARGV[n]``, and the rest's local is its index."""
        header = _argv_header(path, text)
        names: list[str] = []
        rest = None
        for item in _split_top_level(header) if header != "none" else []:
            match = _ARG.match(item)
            if match is None or rest is not None:
                raise ScriptError(f"{path}: ARGV item {item!r} is not `name (what it is)`")
            if match.group(2):
                rest = match.group(1)
            else:
                names.append(match.group(1))
        declared = cls(tuple(names), rest)
        declared._check_locals(path, text)
        return declared

    def _check_locals(self, path: str, text: str) -> None:
        bound = _locals(text)
        by_index = {int(m.group(1)): name for name, expr in bound if (m := _ARGV_INDEX.match(expr))}
        expected = dict(enumerate(self.names, 1))
        if by_index != expected:
            raise ScriptError(
                f"{path}: its locals bind ARGV as {by_index}, its header declares {expected}"
            )
        if self.rest is not None:
            start = dict(bound).get(self.rest)
            if start != str(len(self.names) + 1):
                raise ScriptError(
                    f"{path}: the header's {self.rest}... says the rest starts at ARGV"
                    f"[{len(self.names) + 1}], but `local {self.rest}` is {start!r}"
                )

    def argv(self, rest: Sequence[Any], named: Mapping[str, Any]) -> list[Any]:
        """The ARGV list: the named arguments in the declared order, then ``rest``."""
        if len(named) == len(self.names) and (self.rest is not None or not rest):
            try:
                return [*(named[name] for name in self.names), *rest]
            except KeyError:
                pass
        unknown = sorted(set(named) - set(self.names))
        missing = [name for name in self.names if name not in named]
        no_rest = ", and no rest is declared" if rest and self.rest is None else ""
        raise TypeError(f"ARGV {self.names}: unknown {unknown}, missing {missing}{no_rest}")


def _argv_header(path: str, text: str) -> str:
    """The text of the header's ``-- ARGV:`` item, continuation lines joined."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("-- ARGV:"):
            parts = [line.removeprefix("-- ARGV:").strip()]
            for more in lines[index + 1 :]:
                if not more.startswith("--  ") or more.startswith("--   {"):
                    break
                parts.append(more.removeprefix("--").strip())
            return " ".join(parts)
    raise ScriptError(f"{path}: no `-- ARGV:` line in its header")


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


def _locals(text: str) -> list[tuple[str, str]]:
    """Each ``local a, b = x, y`` statement's (name, expression) pairs, at the top level of
    the script (statements continued over indented lines are joined)."""
    lines = text.splitlines()
    pairs: list[tuple[str, str]] = []
    for index, line in enumerate(lines):
        if not line.startswith("local ") or line.startswith("local function") or "=" not in line:
            continue
        statement = line
        for more in lines[index + 1 :]:
            if not statement.rstrip().endswith((",", "=")):
                break
            statement += " " + more.strip()
        names, _, exprs = statement.removeprefix("local ").partition("=")
        name_list = [n.strip() for n in names.split(",")]
        expr_list = _split_top_level(exprs.strip())
        pairs += zip(name_list, expr_list, strict=False)
    return pairs


class Script:
    """One script, built once: its text, SHA1 (Redis knows it by), and arguments by name."""

    __slots__ = ("arguments", "name", "sha", "source")

    def __init__(self, source: LuaSource, arguments: Arguments) -> None:
        self.source = source
        self.name = source.name
        self.arguments = arguments
        self.sha = hashlib.sha1(source.text.encode(), usedforsecurity=False).hexdigest()

    @classmethod
    def load(cls, name: str, body: str | None = None) -> Script:
        """``lua/<name>.lua`` with its helpers; ``body`` instead of the file (tests)."""
        source = LuaSource.build(name, body)
        path = f"{name}.lua"
        file_text = source.text.split("\n", source.pieces[-1].first - 1)[-1]
        return cls(source, Arguments.declared(path, file_text))

    @property
    def text(self) -> str:
        return self.source.text

    def argv(self, rest: Sequence[Any] = (), /, **named: Any) -> list[Any]:
        """The script's ARGV from its arguments by name (the header's), then ``rest``."""
        return self.arguments.argv(rest, named)

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The EVALSHA that runs it."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:8]})"


def script_names() -> list[str]:
    """Every script in ``lua/`` (helpers live in ``lua/includes/``): adding
    ``lua/<name>.lua`` adds a script."""
    return sorted(
        entry.name.removesuffix(".lua") for entry in _LUA.iterdir() if entry.name.endswith(".lua")
    )


class Scripts(Mapping[str, Script]):
    """Every script of ``lua/``, by name."""

    def __init__(self) -> None:
        self._by_name = {name: Script.load(name) for name in script_names()}

    def __getitem__(self, name: str) -> Script:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


@functools.cache
def all_scripts() -> Scripts:
    """Every script of ``lua/``, built once per process."""
    return Scripts()
