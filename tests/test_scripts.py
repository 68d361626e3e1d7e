"""The scripts as the loader builds them: includes, line names, arguments by name.

Each ``lua/<name>.lua`` names its helpers (``--- @include "includes/<helper>"``); the loader
puts each helper the script needs before it, once, after the helpers it includes. Redis
numbers the lines of that whole text (``user_script:N``); the store's boundary rewrites them
into ``<file>.lua:<line>``, so an error points at the line to open, in a script or in a
helper. A script's header declares its ARGV by name, once: the loader checks its locals
against it, and the store passes the arguments by those names.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ResponseError

from threads_server.store import scripts, thread_store
from threads_server.store.corridor import Corridor, transport_for
from threads_server.store.keys import ThreadKeys, new_thread_id
from threads_server.store.scripts import LuaSource, Script, ScriptError, all_scripts
from threads_server.store.thread_store import ThreadStore

LUA = Path(str(resources.files("threads_server.store").joinpath("lua")))
HELPER = re.compile(r"^local function (\w+)|^local ([A-Z_]+) =", re.MULTILINE)
CALLED = re.compile(r"\b(\w+)\b")


def lua_line(path: str, text: str) -> int:
    """The 1-based line of ``lua/<path>`` that contains ``text`` (exactly one)."""
    source = (LUA / path).read_text()
    (line,) = [n for n, line in enumerate(source.splitlines(), 1) if text in line]
    return line


def assert_names_only(message: str, where: str) -> None:
    assert where in message, message
    assert "user_script" not in message, message


@pytest.fixture
def corridor(redis: Any) -> Corridor:
    return Corridor(transport_for(redis, pipelining=False))


BROKEN = """\
-- A test-only script: fails at run time on line 6 of its own file.
-- KEYS: key
-- ARGV: none
-- Replies: none, it fails
local key = KEYS[1]
local oops = nil + 1
return {'OK', oops}
"""


async def test_a_runtime_error_names_the_scripts_file_and_line(corridor: Corridor) -> None:
    broken = Script.load("broken", BROKEN)
    with pytest.raises(ResponseError) as raised:
        await corridor.run(broken, ["k"])
    assert_names_only(str(raised.value), "broken.lua:6:")


ODD_HSET = """\
-- A test-only script: HSET with an odd number of arguments, inside an included helper.
-- ARGV: first_field... (a field without its value)
--- @include "includes/call_sliced"
local key = KEYS[1]
local first_field = 1
return {'OK', call_sliced('HSET', key, ARGV, first_field, #ARGV)}
"""


async def test_an_error_in_an_included_helper_names_the_helpers_file(
    corridor: Corridor,
) -> None:
    """Redis refuses the HSET inside call_sliced: the error is on the helper's line."""
    broken = Script.load("odd_hset", ODD_HSET)
    with pytest.raises(ResponseError) as raised:
        await corridor.run(broken, ["k"], broken.argv(["field"]))
    line = lua_line("includes/call_sliced.lua", "reply = redis.call(command")
    assert_names_only(str(raised.value), f"includes/call_sliced.lua:{line}")


async def test_a_service_script_error_names_its_line(redis: Any) -> None:
    """A real script meeting a key of the wrong type (which no code of ours makes)."""
    store = ThreadStore(redis)
    thread_id = new_thread_id()
    keys = ThreadKeys(thread_id)
    await redis.hset(keys.meta, "created_at", 1)
    await redis.set(keys.history, "not a list")
    try:
        with pytest.raises(ResponseError) as raised:
            await store.append("", thread_id, [], None)
    finally:
        await redis.delete(keys.meta, keys.history)
        await store.aclose()
    assert "WRONGTYPE" in str(raised.value) or "wrong kind" in str(raised.value)
    line = lua_line("append.lua", "'LLEN', hist")
    assert_names_only(str(raised.value), f"append.lua:{line}")


async def test_a_compile_error_names_its_line(corridor: Corridor) -> None:
    body = "-- ARGV: none\nlocal key = KEYS[1]\n\nreturn = {'OK'}\n"
    with pytest.raises(ResponseError) as raised:
        await corridor.run(Script.load("unparsable", body), ["k"])
    assert_names_only(str(raised.value), "unparsable.lua:4:")


def test_each_line_is_named_by_the_file_it_comes_from() -> None:
    source = LuaSource.build("get")
    helper = (LUA / "includes" / "thread_state.lua").read_text().count("\n")
    assert source.helpers == ("includes/thread_state.lua",)
    assert source.where(1) == "includes/thread_state.lua:1"
    assert source.where(helper) == f"includes/thread_state.lua:{helper}"
    assert source.where(helper + 1) == "get.lua:1"
    last = (LUA / "get.lua").read_text().count("\n")
    assert source.where(source.text.count("\n")) == f"get.lua:{last}"
    message = f"user_script:3: x script: on @user_script:{helper + 2}."
    assert source.name_lines(message) == ("includes/thread_state.lua:3: x script: on @get.lua:2.")


def test_a_script_carries_only_what_it_includes_each_once_after_its_own_includes() -> None:
    assert LuaSource.build("read_history").helpers == ("includes/read_entries.lua",)
    helpers = LuaSource.build("copy").helpers
    assert len(helpers) == len(set(helpers))
    # index_thread includes metadata_set and unindex_thread: they come before it.
    assert helpers.index("includes/metadata_set.lua") < helpers.index("includes/index_thread.lua")
    assert helpers.index("includes/unindex_thread.lua") < helpers.index("includes/index_thread.lua")
    assert "includes/search_shard.lua" not in helpers
    # Search and Count's helpers are not in Get: it is small again.
    assert len(Script.load("get").text) < len(Script.load("search").text) / 5


def _helpers() -> dict[str, set[str]]:
    """What each helper file defines (functions and constants), by its path under lua/."""
    return {
        f"includes/{path.name}": {a or b for a, b in HELPER.findall(path.read_text())}
        for path in sorted((LUA / "includes").glob("*.lua"))
    }


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def _includes(path: str) -> list[str]:
    text = (LUA / path).read_text()
    folder = path.rpartition("/")[0]
    found = re.findall(r'^--- @include "([^"]+)"', text, flags=re.MULTILINE)
    return [str(Path(folder, name)).removeprefix("/") + ".lua" for name in found]


def _files() -> Iterator[str]:
    yield from (path.name for path in sorted(LUA.glob("*.lua")))
    yield from _helpers()


@pytest.mark.parametrize("path", list(_files()))
def test_a_file_includes_every_helper_it_calls_and_none_it_does_not(path: str) -> None:
    """Redis would fail only when the call runs ("attempt to call a nil value"); an
    include that nothing calls is text every call sends for nothing."""
    helpers = _helpers()
    defined_by = {name: helper for helper, names in helpers.items() for name in names}
    own = helpers.get(path, set())
    used = set(CALLED.findall(_code((LUA / path).read_text()))) - own
    needed = {defined_by[name] for name in used if name in defined_by}
    assert needed == set(_includes(path))


def test_a_missing_include_is_named() -> None:
    body = "-- ARGV: none\n--- @include \"includes/no_such_helper\"\nreturn {'OK'}\n"
    with pytest.raises(ScriptError, match=r"nope\.lua:2: no such include includes/no_such"):
        Script.load("nope", body)


def test_a_circular_include_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "includes").mkdir()
    (tmp_path / "includes" / "a.lua").write_text('--- @include "b"\nlocal function a() end\n')
    (tmp_path / "includes" / "b.lua").write_text('--- @include "a"\nlocal function b() end\n')
    monkeypatch.setattr(scripts, "_LUA", tmp_path)
    body = "-- ARGV: none\n--- @include \"includes/a\"\nreturn {'OK'}\n"
    with pytest.raises(ScriptError, match=re.escape("circular @include: loop.lua -> includes/a")):
        Script.load("loop", body)


def test_the_header_declares_each_scripts_argv_in_order() -> None:
    copy = Script.load("copy")
    assert copy.arguments.names[:3] == ("idx", "copy_id", "source_id")
    assert copy.arguments.rest == "first_field"
    assert Script.load("get").arguments.names == ()
    named = {name: name.upper() for name in copy.arguments.names}
    assert copy.argv([b"m:k", b"v"], **named) == [*named.values(), b"m:k", b"v"]


def test_arguments_are_passed_by_name_only_as_declared() -> None:
    copy = Script.load("copy")
    named = dict.fromkeys(copy.arguments.names, "x")
    with pytest.raises(TypeError, match="missing \\['want'\\]"):
        copy.argv(**{k: v for k, v in named.items() if k != "want"})
    with pytest.raises(TypeError, match="unknown \\['wanted'\\]"):
        copy.argv(**{("wanted" if k == "want" else k): v for k, v in named.items()})
    with pytest.raises(TypeError, match="no rest is declared"):
        Script.load("delete").argv(["extra"], idx="", id="x")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        # The header's order and the locals' disagree.
        ("-- ARGV: a, b\nlocal b, a = ARGV[1], ARGV[2]\n", "bind ARGV as"),
        # A local the header does not declare.
        ("-- ARGV: a\nlocal a, b = ARGV[1], ARGV[2]\n", "bind ARGV as"),
        # The rest starts elsewhere than after the named arguments.
        ("-- ARGV: a, first... (the rest)\nlocal a = ARGV[1]\nlocal first = 3\n", "rest starts"),
        ("local a = ARGV[1]\n", "no `-- ARGV:` line"),
    ],
)
def test_a_header_its_locals_contradict_fails_at_load(body: str, problem: str) -> None:
    with pytest.raises(ScriptError, match=problem):
        Script.load("drifted", body + "return {'OK'}\n")


def test_the_store_passes_each_script_the_arguments_its_header_declares() -> None:
    """Every ``_read``/``_write``/``_argv``/``_shards_call`` call in the store names exactly
    the script's declared arguments: a drift fails here, before any call runs."""
    tree = ast.parse(Path(str(thread_store.__file__)).read_text())
    checked = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("_read", "_write", "_argv", "_shards_call")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            continue
        name = node.args[0].value
        passed = {kw.arg for kw in node.keywords} - {"reports_earlier_write"}
        declared = all_scripts()[name].arguments
        assert passed == set(declared.names), name
        # _shards_call always gives the rest: three arguments per shard.
        gives_rest = node.func.attr == "_shards_call" or len(node.args) > (
            1 if node.func.attr == "_argv" else 2
        )
        assert gives_rest <= (declared.rest is not None), name
        checked.add(name)
    assert checked == set(all_scripts()) - {"migrate"}  # migrate.py passes its own
