"""The scripts' replies and the Python that reads them agree: one convention, one table.

Every ``lua/*.lua`` (the prelude aside) has a header naming its KEYS, ARGV and replies,
names every KEYS/ARGV element in locals at the top, and replies ``{'<TAG>', ...}``. Every
tag a script can return is an ``Outcome`` that Python handles (OK, an error in
``outcomes.OUTCOME_ERRORS``, or control flow in the store), and every ``Outcome`` is
returned by some script.
"""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

from threads_server.store import thread_store as store
from threads_server.store.outcomes import OUTCOME_ERRORS, Outcome

LUA = Path(str(resources.files("threads_server.store").joinpath("lua")))
SCRIPTS = sorted(path for path in LUA.glob("*.lua") if not path.name.startswith("_"))
RETURN = re.compile(r"^\s*return\b(.*)$", re.MULTILINE)
TAG = re.compile(r"^\s*\{\s*'([A-Z_]+)'")


def returned_tags(path: Path) -> set[str]:
    """The tag of every ``return`` in a script; fails on a return that carries none."""
    tags = set()
    for match in RETURN.finditer(path.read_text()):
        tag = TAG.match(match.group(1))
        assert tag, f"{path.name}: `return{match.group(1)}` is not a {{'<TAG>', ...}} reply"
        tags.add(tag.group(1))
    return tags


def header_tags(path: Path) -> set[str]:
    header = path.read_text().split("\nlocal ", 1)[0]
    assert "-- KEYS:" in header and "-- ARGV:" in header and "-- Replies:" in header, path.name
    return set(re.findall(r"^--\s+\{'([A-Z_]+)'", header, flags=re.MULTILINE))


def store_outcomes() -> set[str]:
    """The outcomes store.py names (the ones it acts on itself)."""
    tree = ast.parse(Path(store.__file__).read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Outcome"
    }


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.name)
def test_script_follows_the_convention(path: Path) -> None:
    tags = returned_tags(path)
    assert "OK" in tags
    assert header_tags(path) == tags, f"{path.name}: header's replies differ from its returns"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("--")]
    body = [line for line in lines if line and not line.startswith(("local ", "  "))]
    first_statement = lines.index(body[0])
    for number, line in enumerate(lines):
        if re.search(r"\b(KEYS|ARGV)\[\d+\]", line):
            assert number < first_statement, f"{path.name}: {line.strip()!r} past the locals"


def test_every_tag_a_script_returns_is_handled_and_every_outcome_is_returned() -> None:
    returned = set().union(*(returned_tags(path) for path in SCRIPTS))
    outcomes = {outcome.value for outcome in Outcome}
    assert returned - outcomes == set(), "tags no Outcome defines"
    assert outcomes - returned == set(), "outcomes no script returns"
    handled = {Outcome.OK.value} | set(OUTCOME_ERRORS) | store_outcomes()
    assert outcomes - handled == set(), "outcomes neither an error nor acted on by the store"
    assert store_outcomes() <= outcomes
