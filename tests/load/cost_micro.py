"""The per-call pieces issue 14 removed or cut, timed alone (µs per call, best of 5 runs):
what ``make bench-cost`` cannot resolve in one ghz run on a shared machine.

    .venv/bin/python -m tests.load.cost_micro [--base REV]

Times the INFO line every successful call used to write (text format, to a file) against
the level check that is left; ``asyncio.timeout`` entered and left (the per-call timer gRPC
calls no longer make) on asyncio's loop and on uvloop; the 8 ``os.getpid`` calls a Copy's
metrics made; building a Thread from a script's reply with ``codec.thread_from_fields`` of
``--base`` (default: bbe4d30, the main this issue started from) and of this checkout; and a
frozen vs a plain slotted dataclass's ``__init__`` (the per-call log holder). Reports only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
import timeit
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop

from tests.load.ghz_load import REPO
from threads_server.store import codec

FIELDS = [
    b"created_at", b"1764490000000000", b"updated_at", b"1764490000000001",
    b"copied_from", b"10ad0000-0000-4000-8000-000000000010", b"owner", b"",
    b"expire_at_ms", b"0",
]  # fmt: skip


def best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


async def timeouts_us(number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        async with asyncio.timeout(5.0):  # noqa: ASYNC100 - the timer is what is timed
            pass
    return (time.perf_counter() - started) / number * 1e6


@dataclass(frozen=True, slots=True)
class _Frozen:
    method: str
    transport: str
    route: object
    thread_id: str


@dataclass(slots=True)
class _Plain:
    method: str
    transport: str
    route: object
    thread_id: str


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base", default="bbe4d30")
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        handler = logging.FileHandler(Path(scratch) / "calls.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        log = logging.getLogger("cost_micro")
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
        extra = {"method": "Copy", "transport": "grpc", "grpc_code": "OK", "latency_ms": 1.2}
        results["an INFO line per call (text, to a file)"] = best_us(
            lambda: log.info("rpc=%s code=%s ms=%.2f%s", "Copy", "OK", 1.234, "", extra=extra),
            20_000,
        )
        results["its level check, left at INFO (DEBUG)"] = best_us(
            lambda: log.isEnabledFor(logging.DEBUG), 200_000
        )
        handler.close()
    results["asyncio.timeout per call, asyncio loop"] = min(
        asyncio.run(timeouts_us(100_000)) for _ in range(3)
    )
    results["asyncio.timeout per call, uvloop"] = min(
        uvloop.run(timeouts_us(100_000)) for _ in range(3)
    )
    results["os.getpid x 8 (a Copy's metrics)"] = best_us(
        lambda: [os.getpid() for _ in range(8)], 50_000
    )
    source = ""
    for path in ("server/threads_server/store/codec.py", "server/threads_server/codec.py"):
        shown = subprocess.run(  # codec.py moved into store/ in issue 20
            ["git", "show", f"{args.base}:{path}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode == 0:
            source = shown.stdout
            break
    if not source:
        raise SystemExit(f"no codec.py at {args.base}")
    base = types.ModuleType("base_codec")
    exec(compile(source, "base_codec", "exec"), base.__dict__)  # our own file, at --base
    assert base.thread_from_fields("t", 10, FIELDS) == codec.thread_from_fields("t", 10, FIELDS)
    results[f"thread_from_fields at {args.base}"] = best_us(
        lambda: base.thread_from_fields("t", 10, FIELDS), 50_000
    )
    results["thread_from_fields now"] = best_us(
        lambda: codec.thread_from_fields("t", 10, FIELDS), 50_000
    )
    results["frozen slotted dataclass, 4 fields"] = best_us(
        lambda: _Frozen("Copy", "grpc", None, "t"), 200_000
    )
    results["plain slotted dataclass, 4 fields"] = best_us(
        lambda: _Plain("Copy", "grpc", None, "t"), 200_000
    )
    print(f"python {sys.version.split()[0]}, uvloop {uvloop.__version__}")  # type: ignore[attr-defined]
    for name, micros in results.items():
        print(f"{name:44s} {micros:8.2f} µs")


if __name__ == "__main__":
    main()
