"""Seeds the fixed threads the ghz load scenarios (``tests/load/*.json``) name.

    .venv/bin/python -m tests.load.seed --target 127.0.0.1:50051

The ids are fixed so the ghz config files can name them; every entry is ~200 bytes
serialized (``{"role", "seq", "text"}``):

====================================  ========  ==========================================
thread id                             entries   used by
====================================  ========  ==========================================
10ad0000-0000-4000-8000-000000000010  10        copy_10
10ad0000-0000-4000-8000-000000001000  1,000     copy_1000, get, get_history (page of 100)
10ad0000-0000-4000-8000-000000100000  100,000   copy_100000
10ad0000-0000-4000-8000-00000000000a  0         append (reset to empty on every seed)
====================================  ========  ==========================================

A thread that already exists with the right length is kept (so reseeding is quick);
otherwise it is deleted and created again, 10,000 entries per request at most.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from threads_client import NotFoundError, SyncClient, get_sync_client
from threads_client.pb import threads_pb2 as pb

THREAD_10 = "10ad0000-0000-4000-8000-000000000010"
THREAD_1000 = "10ad0000-0000-4000-8000-000000001000"
THREAD_100000 = "10ad0000-0000-4000-8000-000000100000"
THREAD_APPEND = "10ad0000-0000-4000-8000-00000000000a"

BATCH = 10_000
# 135 characters make an entry of {"role", "seq", "text"} plus created_at ~200 bytes.
TEXT = ("load test entry " * 10)[:135]


@dataclass(frozen=True)
class SeedThread:
    thread_id: str
    entries: int
    # Recreated on every seed even when the length matches (the append target grows).
    reset: bool = False


THREADS = (
    SeedThread(THREAD_10, 10),
    SeedThread(THREAD_1000, 1_000),
    SeedThread(THREAD_100000, 100_000),
    SeedThread(THREAD_APPEND, 0, reset=True),
)


def entries(start: int, count: int) -> list[pb.Entry]:
    out = []
    for seq in range(start, start + count):
        entry = pb.Entry()
        entry.data.update({"role": "user", "seq": seq, "text": TEXT})
        out.append(entry)
    return out


def seed_thread(client: SyncClient, spec: SeedThread) -> bool:
    """Makes ``spec.thread_id`` exist with ``spec.entries`` entries; True if it was (re)made."""
    try:
        current = client.threads.get(spec.thread_id)
    except NotFoundError:
        current = None
    if current is not None:
        if current.history_length == spec.entries and not spec.reset:
            return False
        client.threads.delete(spec.thread_id)
    first = min(BATCH, spec.entries)
    client.threads.create(
        spec.thread_id,
        metadata={"seeded_by": "tests.load.seed"},
        history=entries(0, first),
        timeout=60,
    )
    for start in range(first, spec.entries, BATCH):
        client.threads.append(
            spec.thread_id,
            entries(start, min(BATCH, spec.entries - start)),
            expected_length=start,
            timeout=60,
        )
    length = client.threads.get(spec.thread_id).history_length
    if length != spec.entries:
        raise RuntimeError(f"{spec.thread_id}: {length} entries after seeding, not {spec.entries}")
    return True


def seed(target: str) -> list[tuple[SeedThread, bool]]:
    """Seeds every thread of ``THREADS`` at ``target``; each with whether it was (re)made."""
    with get_sync_client(target, timeout=30) as client:
        return [(spec, seed_thread(client, spec)) for spec in THREADS]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Seed the fixed threads the ghz load scenarios in tests/load/ use."
    )
    parser.add_argument(
        "--target", default="127.0.0.1:50051", help="server host:port (default %(default)s)"
    )
    args = parser.parse_args()
    began = time.monotonic()
    for spec, made in seed(args.target):
        print(f"{spec.thread_id}  {spec.entries:>7,} entries  {'seeded' if made else 'kept'}")
    print(f"done in {time.monotonic() - began:.1f}s")


if __name__ == "__main__":
    main()
