"""A script's error names the line of its own file, on the real servers.

Redis runs ``_prelude.lua`` and the script as one text and numbers its lines
(``user_script:N``, shifted by the prelude); the store's boundary rewrites them into
``<file>.lua:<line>`` so the error points at the line to open.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest
from redis.exceptions import ResponseError

from threads_server.store import scripts
from threads_server.store.keys import ThreadKeys, new_thread_id
from threads_server.store.thread_store import ThreadStore, run_script, send_alone


def lua_line(name: str, text: str) -> int:
    """The 1-based line of ``lua/<name>.lua`` that contains ``text`` (exactly one)."""
    source = resources.files("threads_server.store").joinpath("lua", f"{name}.lua").read_text()
    (line,) = [n for n, line in enumerate(source.splitlines(), 1) if text in line]
    return line


def assert_names_only(message: str, where: str) -> None:
    assert where in message, message
    assert "user_script" not in message, message


BROKEN = """\
-- A test-only script: fails at run time on line 6 of its own file.
-- KEYS: key
-- ARGV: none
-- Replies: none, it fails
local key = KEYS[1]
local oops = nil + 1
return {'OK', oops}
"""


async def test_a_runtime_error_names_the_scripts_file_and_line(redis: Any) -> None:
    broken = scripts.register(redis, "broken", BROKEN)
    with pytest.raises(ResponseError) as raised:
        await run_script(broken, ["k"], send=send_alone)
    assert_names_only(str(raised.value), "broken.lua:6:")


async def test_an_error_in_a_prelude_helper_names_the_prelude(redis: Any) -> None:
    """call_sliced's HSET with an odd number of arguments: Redis refuses it inside the
    helper, so the error is on the prelude's line."""
    body = "local key = KEYS[1]\nreturn {'OK', call_sliced('HSET', key, ARGV, 1, #ARGV)}\n"
    broken = scripts.register(redis, "odd_hset", body)
    with pytest.raises(ResponseError) as raised:
        await run_script(broken, ["k"], ["field"], send=send_alone)
    line = lua_line("_prelude", "reply = redis.call(command")
    assert_names_only(str(raised.value), f"_prelude.lua:{line}")


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
    assert "WRONGTYPE" in str(raised.value) or "wrong kind" in str(raised.value)
    line = lua_line("append", "'LLEN', hist")
    assert_names_only(str(raised.value), f"append.lua:{line}")


async def test_a_compile_error_names_its_line(redis: Any) -> None:
    broken = scripts.register(redis, "unparsable", "local key = KEYS[1]\n\nreturn = {'OK'}\n")
    with pytest.raises(ResponseError) as raised:
        await run_script(broken, ["k"], send=send_alone)
    assert_names_only(str(raised.value), "unparsable.lua:3:")


def test_lines_past_the_prelude_are_the_files() -> None:
    source = scripts.LuaSource.build("get")
    assert source.where(1) == "_prelude.lua:1"
    assert source.where(source.prelude_lines) == f"_prelude.lua:{source.prelude_lines}"
    assert source.where(source.prelude_lines + 1) == "get.lua:1"
    message = "user_script:3: x script: on @user_script:3."
    assert source.name_lines(message) == "_prelude.lua:3: x script: on @_prelude.lua:3."
    assert re.fullmatch(r"get\.lua:\d+", source.where(source.text.count("\n")))
