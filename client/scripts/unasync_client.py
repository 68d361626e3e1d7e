"""Generates the blocking client, ``threads_service_client/_sync.py``, from the asyncio one.

The client is written once, in ``threads_service_client/_async.py``; unasync (as httpcore uses it)
drops ``async``/``await`` and renames the async names to their sync twins, so the two
clients cannot drift. What really differs between asyncio and blocking I/O is hand-written
in ``_async_io.py`` and ``_sync_io.py``, which ``_async.py`` imports as ``_io``.

    python client/scripts/unasync_client.py          # rewrite _sync.py (make client-sync)
    python client/scripts/unasync_client.py --check  # fail if _sync.py is stale

A dev tool (unasync is a dev dependency): it lives outside the package, so the wheel
never imports it. Named so that it does not shadow the ``unasync`` package it imports.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync  # type: ignore[import-untyped]

PACKAGE = Path(__file__).resolve().parent.parent / "threads_service_client"
SOURCE = PACKAGE / "_async.py"
TARGET = PACKAGE / "_sync.py"

# Async name -> sync name, on top of unasync's own (__aenter__, AsyncIterator, ...). Also
# applied to the names quoted in ``double backticks`` in docstrings and comments.
RENAMES = {
    "_async_io": "_sync_io",
    "Client": "SyncClient",
    "ThreadsClient": "SyncThreadsClient",
    "get_client": "get_sync_client",
    "aclose": "close",
}

# Prose that says what only the asyncio client does, and its blocking counterpart. Each
# must be found: a docstring edited in _async.py must be edited here too.
PROSE = [
    ("An asyncio client for", "A blocking client for"),
    (
        "The channel is opened on first use, inside the running event loop, so a client made at\n"
        "    import time works under ``asyncio.run``.",
        "The channel is opened on first use. Threads may share the client.",
    ),
]

# _async.py's docstring and file-level directives (everything before this line) are
# replaced by the header below.
BODY_START = "from __future__ import annotations\n"

HEADER = '''\
# GENERATED from _async.py by client/scripts/unasync_client.py (unasync): do not edit.
# Edit _async.py (or _sync_io.py, what blocking I/O does differently) and run
# `make client-sync`; `make check-client-sync` (run by `make lint`) fails while stale.
# unasync turns an async generator's `for x in xs: yield x` into a loop `yield from` would do.
# ruff: noqa: UP028
"""The blocking client: ``get_sync_client()``, ``SyncClient`` and its ``threads`` resource."""

'''


def generate() -> str:
    """The text ``_sync.py`` should have."""
    source = SOURCE.read_text()
    if source.count(BODY_START) != 1:
        raise SystemExit(f"{SOURCE}: expected one line {BODY_START.strip()!r}")
    body = source[source.index(BODY_START) :]
    with tempfile.TemporaryDirectory() as tmp:
        async_file = Path(tmp, "_async", "client.py")
        async_file.parent.mkdir()
        async_file.write_text(body)
        rule = unasync.Rule("/_async/", "/_sync/", additional_replacements=RENAMES)
        unasync.unasync_files([str(async_file)], rules=[rule])
        body = Path(tmp, "_sync", "client.py").read_text()
    for async_text, sync_text in PROSE:
        if async_text not in body:
            raise SystemExit(f"{SOURCE}: no longer says {async_text!r}; update PROSE in {__file__}")
        body = body.replace(async_text, sync_text)
    body = re.sub(r"``[^`]+``", _rename_quoted, body)
    return _ruff(HEADER + body)


def _ruff(code: str) -> str:
    """Sorts the imports and formats ``code`` as ``make lint`` wants: renames reorder
    imports (``Iterator`` after ``Callable``) and removing ``await`` shortens lines."""
    for command in (["check", "--fix-only", "--select", "I", "--quiet"], ["format", "--quiet"]):
        code = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(TARGET), "-"],
            input=code,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return code


def _rename_quoted(match: re.Match[str]) -> str:
    return re.sub(r"\w+", lambda name: RENAMES.get(name[0], name[0]), match[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if _sync.py is stale")
    check = parser.parse_args().check
    expected = generate()
    current = TARGET.read_text() if TARGET.exists() else ""
    if not check:
        if current != expected:
            TARGET.write_text(expected)
            print(f"wrote {TARGET}")
        return 0
    if current == expected:
        return 0
    sys.stdout.writelines(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            f"{TARGET.name} (committed)",
            f"{TARGET.name} (generated from {SOURCE.name})",
        )
    )
    print(f"{TARGET} is stale: run `make client-sync`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
