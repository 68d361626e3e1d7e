"""``make bench-fast``: issue 22's fast paths, build against build, in one run.

    make bench-fast [BENCH_FAST_ARGS="..."]   # installs ghz and hey into build/bin, then:
    .venv/bin/python -m tests.load.bench_fast [--variant NAME=REV[:SERVER ARGS]] ...
        [--sizes 10000 1000000] [--duration 5s] [--rounds 1] [--callers 16]

Every variant is a git revision extracted and run as ``bench_cost`` does (its ``prepare``;
default: ``base`` = the merge-base with main, ``head`` = this checkout as it is), one
``python -m threads_server --workers 1`` each, all at once on one embedded Valkey (AOF
everysec), each with its own gRPC and HTTP port. Two parts, in this order:

1. **What a Copy costs the server, by transport.** Copy of the 10-entry seeded thread
   (tests.load.seed; no request_id, the same request on every transport), ``--callers``
   callers each: gRPC with ghz (one connection per caller), HTTP with keep-alive and HTTP
   with a new connection per request, both with hey (``-disable-keepalive``: connect, one
   POST /threads/{id}/copy with ``Connection: close``, the server closes), and a new
   connection per request that the client closes (tests.load.new_connections: what an
   httpx pool does past its keep-alive limit). The figure is the server's CPU-seconds per
   copy (parent and worker, /proc utime+stime during the run), and HTTP's over gRPC's of
   the same build.
2. **Search and Count against Get**, at each ``--sizes`` total of threads (seeded straight
   into Redis through create.lua, 1,000 per round trip, metadata ``{user: one of 1,000,
   kind: one of 10}``; the next size tops up the last): ghz Get, Search first page,
   Search filtered (``user`` = one value: N/1,000 matches) and Count filtered, with the
   scenario files' 48 callers over 16 connections, and each one's RPS over Get's.

Within a round each scenario runs against every variant in turn, the first variant
rotating, so drift on the shared machine hits every variant alike; copies are deleted
after every Copy run. Ratios are only compared within one run. Tables go to stdout and
build/bench-fast/results.md (with the command, date, SHAs and the load average); ghz/hey
output to build/bench-fast/runs/, server logs to build/bench-fast/logs/. Reports, never
asserts; exits 1 if any call was not OK, 2 if something could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from tests.load.bench_cost import (
    SEEDED,
    Build,
    Variant,
    default_variants,
    duration_arg,
    exit_status,
    markdown_table,
    prepare,
    seconds,
    stop_all,
    text_table,
    variant_arg,
)
from tests.load.bench_search import seed as seed_threads
from tests.load.ghz_load import (
    REPO,
    Result,
    cpu_seconds,
    delete_copies,
    ghz_version,
    redis_for_run,
    run_scenario,
)
from tests.load.seed import THREAD_10, seed
from tests.server_process import ServerProcess, connections_per_process

GRPC, KEEP_ALIVE, NEW_CONNECTION = "grpc", "http_keepalive", "http_new_connection"
CLIENT_CLOSES = "http_new_client_closes"
COPY_SCENARIOS = (GRPC, KEEP_ALIVE, NEW_CONNECTION, CLIENT_CLOSES)
HTTP_SCENARIOS = frozenset(COPY_SCENARIOS) - {GRPC}
SEARCH_SCENARIOS = ("get", "search_first_page", "search_filtered", "count_filtered")
LABELS = {
    GRPC: "gRPC",
    KEEP_ALIVE: "HTTP keep-alive",
    NEW_CONNECTION: "HTTP new connection",
    CLIENT_CLOSES: "HTTP new connection, client closes",
    "get": "Get",
    "search_first_page": "Search first page",
    "search_filtered": "Search filtered",
    "count_filtered": "Count filtered",
}
SEED_SECONDS = 900.0  # bounds seeding one size
HEY_STATUS = re.compile(r"^\s*\[(\d+)\]\s+(\d+) responses", re.MULTILINE)


def _http_copy(
    scenario: str, server: ServerProcess, *, args: argparse.Namespace, out_dir: Path
) -> Result:
    """One HTTP Copy run: ``--callers`` callers for ``--duration`` (hey, or
    tests.load.new_connections for CLIENT_CLOSES); the server's CPU-seconds over it
    (parent and workers), as ``run_scenario`` measures ghz's."""
    url = f"{server.http_url}/threads/{THREAD_10}/copy"
    if scenario == CLIENT_CLOSES:
        command = [
            sys.executable, "-m", "tests.load.new_connections",
            url, str(seconds(args.duration)), str(args.callers),
        ]  # fmt: skip
    else:
        command = [
            str(args.hey),
            "-z", args.duration,
            "-c", str(args.callers),
            "-m", "POST",
            "-T", "application/json",
            "-d", "{}",
            *(("-disable-keepalive",) if scenario == NEW_CONNECTION else ()),
            url,
        ]  # fmt: skip
    result = Result(scenario, len(server.serving_pids()))
    whole = sorted({server.process.pid, *server.serving_pids()})
    before = cpu_seconds(whole)
    began = time.monotonic()
    done = threading.Event()

    def sample() -> None:  # the fullest sample: the callers' connections, per worker
        while not done.wait(0.25):
            counts = connections_per_process(server.http_port, server.serving_pids())
            if sum(counts) > sum(result.spread):
                result.spread = counts

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=args.bound, check=False, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        result.failure = f"{command[0]} killed after {args.bound:.0f}s (the run's time bound)"
        return result
    finally:
        done.set()
        sampler.join()
    result.elapsed = time.monotonic() - began
    result.server_cpu_seconds = cpu_seconds(whole) - before
    (out_dir / f"{scenario}.txt").write_text(finished.stdout + finished.stderr)
    if scenario == CLIENT_CLOSES:
        lines = finished.stdout.strip().splitlines()
        statuses = {int(k): v for k, v in json.loads(lines[-1]).items()} if lines else {}
    else:
        statuses = {int(code): int(n) for code, n in HEY_STATUS.findall(finished.stdout)}
    if finished.returncode != 0 or not statuses:
        result.failure = f"exited {finished.returncode}: {finished.stderr.strip()[-500:]}"
        return result
    result.statuses = {str(code): n for code, n in statuses.items()}
    result.count = sum(statuses.values())
    result.errors = sum(n for code, n in statuses.items() if code != 200)
    result.rps = result.count / result.elapsed
    return result


def _run_one(
    scenario: str,
    server: ServerProcess,
    *,
    args: argparse.Namespace,
    redis_pid: int,
    out_dir: Path,
) -> Result:
    if scenario in HTTP_SCENARIOS:
        return _http_copy(scenario, server, args=args, out_dir=out_dir)
    copy = scenario == GRPC
    ghz_args = argparse.Namespace(
        connections=args.callers if copy else 16,
        concurrency=args.callers if copy else 0,
        duration=args.duration,
    )
    extra = ("--data", json.dumps({"thread_id": THREAD_10})) if copy else ()
    return run_scenario(
        Path(args.ghz), "copy_10" if copy else scenario, server, redis_pid=redis_pid,
        args=ghz_args, out_dir=out_dir, extra=extra, timeout=args.bound, echo=False,
    )  # fmt: skip


def _rounds(
    part: str,
    scenarios: Sequence[str],
    *,
    args: argparse.Namespace,
    builds: list[Build],
    servers: dict[str, ServerProcess],
    store: redis.Redis,
    redis_pid: int,
    results: dict[tuple[str, str, str], list[Result]],
) -> None:
    runs_dir = Path(args.out) / "runs" / part
    for round_ in range(args.rounds):
        for index, scenario in enumerate(scenarios):
            start = (round_ * len(scenarios) + index) % len(builds)
            for build in builds[start:] + builds[:start]:
                name = build.variant.name
                out_dir = runs_dir / f"r{round_}-{name}"
                out_dir.mkdir(parents=True, exist_ok=True)
                result = _run_one(
                    scenario, servers[name], args=args, redis_pid=redis_pid, out_dir=out_dir
                )
                results.setdefault((part, name, scenario), []).append(result)
                deleted = (
                    delete_copies(store, servers[name].target) if scenario in COPY_SCENARIOS else 0
                )
                per_copy = (
                    f" {1000 * result.server_cpu_seconds / result.count:6.3f} ms server CPU/call"
                    if result.count
                    else ""
                )
                print(
                    f"  {part:<8} r{round_} {scenario:<19} {name:<10} {result.count:>6} calls "
                    f"{result.rps:7.0f} RPS p50 {result.p50:6.2f} ms non-OK {result.errors}"
                    + per_copy
                    + (f"; {deleted} copies deleted" if deleted else "")
                    + (f"\n    FAILED: {result.failure}" if result.failure else ""),
                    flush=True,
                )


def run(args: argparse.Namespace, builds: list[Build]) -> dict[tuple[str, str, str], list[Result]]:
    out = Path(args.out)
    shutil.rmtree(out / "runs", ignore_errors=True)
    results: dict[tuple[str, str, str], list[Result]] = {}
    with redis_for_run(args, out) as url, redis.Redis.from_url(url) as store:
        redis_pid = int(store.info("server")["process_id"])
        servers: dict[str, ServerProcess] = {}
        try:
            for build in builds:
                servers[build.variant.name] = ServerProcess(
                    ["--workers", "1", "--redis-url", url, *build.variant.server_args],
                    out / "logs" / f"{build.variant.name}.log",
                    build.env,
                    None,
                    http=build.http,
                )
            for server in servers.values():
                server.wait_serving()
                seed(server.target, SEEDED)
            common = {
                "args": args, "builds": builds, "servers": servers, "store": store,
                "redis_pid": redis_pid, "results": results,
            }  # fmt: skip
            print(f"redis {url} (pid {redis_pid}); {len(servers)} servers serving", flush=True)
            copy_scenarios = [s for s in COPY_SCENARIOS if s == GRPC or all(b.http for b in builds)]
            _rounds("copy", copy_scenarios, **common)
            seeded = 0
            for size in args.sizes:
                took = asyncio.run(seed_threads(url, size - seeded, SEED_SECONDS))
                seeded = size
                print(f"{size:,} threads (topped up in {took:.0f} s)", flush=True)
                _rounds(f"{size}", SEARCH_SCENARIOS, **common)
        finally:
            stop_all(servers)
    return results


def _median(runs: list[Result], value: Callable[[Result], float]) -> float:
    ok = [r for r in runs if not r.failure]
    return statistics.median(value(r) for r in ok) if ok else math.nan


def _ratio(top: float, bottom: float) -> str:
    return f"{top / bottom:.2f}" if bottom and not math.isnan(top + bottom) else "-"


def _cpu_ms(result: Result) -> float:
    return 1000 * result.server_cpu_seconds / result.count if result.count else math.nan


def tables(
    results: dict[tuple[str, str, str], list[Result]], builds: list[Build], sizes: list[int]
) -> list[tuple[str, list[str], list[list[str]]]]:
    names = [b.variant.name for b in builds]
    found = {key: runs for key, runs in results.items() if runs}
    made: list[tuple[str, list[str], list[list[str]]]] = []
    copy = [s for s in COPY_SCENARIOS if ("copy", names[0], s) in found]
    if copy:
        header = ["variant", "transport", "server CPU ms/copy", "/ gRPC", "RPS", "p50 ms"]
        rows = []
        for name in names:
            cpu = {s: _median(found[("copy", name, s)], _cpu_ms) for s in copy}
            for s in copy:
                runs = found[("copy", name, s)]
                rows.append(
                    [
                        name,
                        LABELS[s],
                        f"{cpu[s]:.3f}",
                        "1" if s == GRPC else _ratio(cpu[s], cpu[GRPC]),
                        f"{_median(runs, lambda r: r.rps):.0f}",
                        f"{_median(runs, lambda r: r.p50):.2f}" if s == GRPC else "-",
                    ]
                )
        made.append(("Copy@10, 1 worker: the server's CPU per copy", header, rows))
    for size in sizes:
        part = f"{size}"
        if ("get" not in SEARCH_SCENARIOS) or (part, names[0], "get") not in found:
            continue
        others = [s for s in SEARCH_SCENARIOS if s != "get"]
        header = ["variant", *(f"{LABELS[s]} RPS" for s in SEARCH_SCENARIOS)]
        header += [f"{LABELS[s]} / Get" for s in others]
        rows = []
        for name in names:
            rps = {s: _median(found[(part, name, s)], lambda r: r.rps) for s in SEARCH_SCENARIOS}
            row = [name, *(f"{rps[s]:.0f}" for s in SEARCH_SCENARIOS)]
            row += [_ratio(rps[s], rps["get"]) for s in others]
            rows.append(row)
        made.append((f"{size:,} threads: ghz RPS, 1 worker, and RPS over Get's", header, rows))
    return made


def report(
    args: argparse.Namespace,
    builds: list[Build],
    results: dict[tuple[str, str, str], list[Result]],
    *,
    loads: tuple[str, str],
    started: str,
    total: float,
) -> None:
    command = "python -m tests.load.bench_fast " + shlex.join(sys.argv[1:])
    md = [
        f"## bench-fast, {started}",
        "",
        f"`{command}`",
        "",
        f"- {total:.0f} s; {len(os.sched_getaffinity(0))} usable CPUs; load average at start "
        f"{loads[0]}, at end {loads[1]}; ghz {ghz_version(Path(args.ghz))}, hey v0.1.4",
        f"- {args.duration} per run, {args.rounds} round(s), median shown; Copy with "
        f"{args.callers} callers, the search scenarios with 48 over 16 connections",
        "",
        "| variant | rev | server args |",
        "| --- | --- | --- |",
        *(
            f"| {b.variant.name} | {b.variant.rev} = {b.sha} | "
            f"{shlex.join(b.variant.server_args) or '(default)'} |"
            for b in builds
        ),
    ]
    print(f"\nload average {loads[0]} -> {loads[1]}")
    for b in builds:
        print(
            f"  {b.variant.name:<10} {b.variant.rev} = {b.sha} {shlex.join(b.variant.server_args)}"
        )
    for title, header, rows in tables(results, builds, args.sizes):
        print(f"\n{title}\n{text_table(header, rows)}")
        md += ["", title + ":", "", markdown_table(header, rows)]
    path = Path(args.out) / "results.md"
    path.write_text("\n".join(md) + "\n")
    print(f"\nwrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--variant", type=variant_arg, action="append", default=[],
        metavar="NAME=REV[:SERVER ARGS]",
        help="a build to compare (as bench_cost's); default: base=<merge-base with main> "
        "head=WORKTREE",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[10_000, 1_000_000], help="none: Copy only"
    )
    parser.add_argument("--duration", type=duration_arg, default="5s")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--callers", type=int, default=16, help="Copy's callers")
    parser.add_argument("--ghz", default=str(REPO / "build" / "bin" / "ghz"))
    parser.add_argument("--hey", default=str(REPO / "build" / "bin" / "hey"))
    parser.add_argument("--out", default=str(REPO / "build" / "bench-fast"))
    parser.add_argument("--redis-url", default="", help="use this Redis instead of an embedded one")
    parser.add_argument("--maxmemory", default="8gb", help="embedded Redis maxmemory (safety net)")
    args = parser.parse_args()
    for tool in ("ghz", "hey"):
        if not Path(getattr(args, tool)).is_file():
            parser.error(f"{getattr(args, tool)} not found; make bench-fast installs it")
    if args.rounds < 1 or args.sizes != sorted(set(args.sizes)) or min(args.sizes, default=1) < 1:
        parser.error("--rounds at least 1; --sizes increasing")
    variants: list[Variant] = args.variant or default_variants()
    if len({v.name for v in variants}) != len(variants):
        parser.error("variant names must differ")
    args.bound = 4 * seconds(args.duration) + 60
    began = time.monotonic()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    builds = [prepare(v, out) for v in variants]
    for b in builds:
        print(f"{b.variant.name}: {b.variant.rev} = {b.sha}", flush=True)
    results = run(args, builds)
    total = time.monotonic() - began
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report(args, builds, results, loads=(load_start, load_end), started=started, total=total)
    return exit_status(
        (f"{part} {scenario} ({name})", runs) for (part, name, scenario), runs in results.items()
    )


if __name__ == "__main__":
    sys.exit(main())
