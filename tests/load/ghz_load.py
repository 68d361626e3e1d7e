"""ghz load scenarios against ``python -m threads_server --workers 1`` and ``--workers N``.

    make load                                  # installs ghz into build/bin, then runs this
    .venv/bin/python -m tests.load.ghz_load [--workers N] [--duration 5s] [--connections C]
        [--scenarios get,search_filtered]

Starts one Redis for the whole run (an embedded Valkey in build/load/valkey, AOF on with
appendfsync everysec, maxmemory 10gb as a safety net; or ``--redis-url``), then for 1 and N
workers (N = usable CPUs): starts the server on a free port, waits for health SERVING, seeds
the fixed threads (``tests.load.seed``; with a Search/Count scenario, its 10,000 search
threads too), warms Redis's memory up (see ``warm_up``; with copy_100000 only) and runs
every scenario of ``SCENARIOS`` (or ``--scenarios``) with ghz from its config file in
tests/load/ (the command line adds host, connections and output), against server
reflection. The copies a scenario made are deleted (Delete RPC) before the next one, and the
search threads after the last worker count's scenarios, so Redis memory stays bounded
(~4 GiB at the peak, during copy_100000). ghz's JSON reports go to
build/load/w<K>/<scenario>.json, the server's log to build/load/server-w<K>.log.

Prints one table (RPS, p50/p95/p99, non-OK responses, RPS / Health.Check RPS of the same
server, CPU of server/Redis/ghz) and the N-worker / 1-worker RPS ratio of each scenario.
Exits 1 if any response was not OK, 2 if a scenario could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from grpc import aio

from tests.load.seed import SEARCH_THREADS, delete_search, seed, seed_search
from tests.server_process import ServerProcess, connections_per_process, environment
from threads_server.ops.embedded import EmbeddedServer
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "tests" / "load"
# Order matters only for readability: the floor first, then reads, writes and copies.
SCENARIOS = (
    "health",
    "get",
    "get_history",
    "search_first_page",
    "search_filtered",
    "count_filtered",
    "append",
    "copy_10",
    "copy_1000",
    "copy_100000",
)
FLOOR = "health"
# The scenarios that need tests.load.seed's search threads.
SEARCH_SCENARIOS = frozenset({"search_first_page", "search_filtered", "count_filtered"})
# The scenario warm_up prepares for (and the only one it is worth its ~4 GiB of copies for).
WARMED = "copy_100000"
NAME_WIDTH = max(len(s) for s in SCENARIOS)
DELETE_CONCURRENCY = 64
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A safety net for the embedded Redis: a runaway copy scenario gets non-OK responses
# (counted as errors) instead of taking the machine's memory.
DEFAULT_MAXMEMORY = "10gb"


@dataclass
class Result:
    scenario: str
    workers: int
    rps: float = 0.0
    count: int = 0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_messages: dict[str, int] = field(default_factory=dict)
    # Established connections per worker process, sampled during the run.
    spread: list[int] = field(default_factory=list)
    # CPU used during the run, in % of one core: server processes, Redis, ghz.
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # CPU-seconds of the whole server during the run: the parent and every worker.
    server_cpu_seconds: float = 0.0
    elapsed: float = 0.0
    failure: str = ""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for any not readable)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def is_local_redis(pid: int) -> bool:
    try:
        name = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False
    return "redis" in name or "valkey" in name


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ghz_version(ghz: Path) -> str:
    """The ghz module version the binary was built from (``ghz --version`` says "dev")."""
    out = subprocess.run(
        ["go", "version", "-m", str(ghz)], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        cols = line.split()
        if cols[:2] == ["mod", "github.com/bojand/ghz"]:
            return cols[2]
    return "unknown"


def ghz_command(
    ghz: Path,
    scenario: str,
    target: str,
    args: argparse.Namespace,
    report_path: Path,
    *,
    extra: Sequence[str] = (),
) -> list[str]:
    """ghz with the scenario's config file; the command line sets host, connections, output
    (and ``extra`` flags, e.g. ``--total N`` for a count-bound scenario)."""
    config_path = CONFIG_DIR / f"{scenario}.json"
    config: dict[str, Any] = json.loads(config_path.read_text())
    command = [
        str(ghz),
        "--config", str(config_path),
        "--connections", str(args.connections),
        "--format", "json",
        "--output", str(report_path),
    ]  # fmt: skip
    if args.concurrency:
        command += ["--concurrency", str(args.concurrency)]
    # Only timed scenarios get --duration: on a count-bound one (the copies of the 1,000-
    # and 100,000-entry threads) a duration would replace the count and copies pile up.
    if args.duration and "duration" in config:
        command += ["--duration", args.duration]
    return [*command, *extra, target]


def warm_up(ghz: Path, server: ServerProcess, args: argparse.Namespace, out_dir: Path) -> None:
    """As many copies of the big thread as copy_100000 makes, unreported (and then deleted).

    Memory Redis takes from the OS for the first time is faulted in page by page: a cold
    run's 100,000-entry copies cost ~3x the Redis CPU of a warm one's, so without this the
    first worker configuration would look slower for a reason that is not the server's.
    """
    command = ghz_command(
        ghz, "copy_100000", server.target, args, out_dir / "warmup.json", extra=("--total", "200")
    )
    subprocess.run(command, capture_output=True, check=False)


def run_scenario(
    ghz: Path,
    scenario: str,
    server: ServerProcess,
    *,
    redis_pid: int,
    args: argparse.Namespace,
    out_dir: Path,
    extra: Sequence[str] = (),
    timeout: float | None = None,
    echo: bool = True,
) -> Result:
    """One ghz run of ``scenario``; ghz is killed (and the run failed) after ``timeout`` s."""
    report_path = out_dir / f"{scenario}.json"
    report_path.unlink(missing_ok=True)
    command = ghz_command(ghz, scenario, server.target, args, report_path, extra=extra)
    result = Result(scenario, len(server.serving_pids()))
    if echo:
        print(f"  {scenario:<{NAME_WIDTH}} {' '.join(command[1:])}", flush=True)
    done = threading.Event()

    def sample() -> None:
        # The fullest sample: connections are made at the start and close at the end.
        while not done.wait(0.25):
            counts = connections_per_process(server.port, server.serving_pids())
            if sum(counts) > sum(result.spread):
                result.spread = counts

    sampler = threading.Thread(target=sample, daemon=True)
    server_pids = server.serving_pids()
    whole_server = sorted({server.process.pid, *server_pids})
    before = (cpu_seconds(server_pids), cpu_seconds([redis_pid]), children_cpu_seconds())
    whole_before = cpu_seconds(whole_server)
    began = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        report_path.unlink(missing_ok=True)
        stderr = f"killed after {timeout:.0f}s (the run's time bound); {stderr}"
    elapsed = time.monotonic() - began
    after = (cpu_seconds(server_pids), cpu_seconds([redis_pid]), children_cpu_seconds())
    result.server_cpu_seconds = cpu_seconds(whole_server) - whole_before
    result.elapsed = elapsed
    done.set()
    sampler.join()
    server_cpu, redis_cpu, ghz_cpu = (
        100 * (a - b) / elapsed for a, b in zip(after, before, strict=True)
    )
    result.cpu = (server_cpu, redis_cpu, ghz_cpu)
    if process.returncode != 0 or not report_path.exists():
        result.failure = f"ghz exited {process.returncode}: {(stderr or stdout).strip()}"
        return result
    report: dict[str, Any] = json.loads(report_path.read_text())
    result.rps = float(report.get("rps", 0.0))
    result.count = int(report.get("count", 0))
    latencies = {
        int(d["percentage"]): float(d["latency"]) / 1e6
        for d in report.get("latencyDistribution") or []
    }
    result.p50, result.p95, result.p99 = (latencies.get(p, float("nan")) for p in (50, 95, 99))
    result.statuses = dict(report.get("statusCodeDistribution") or {})
    result.error_messages = dict(report.get("errorDistribution") or {})
    result.errors = sum(n for code, n in result.statuses.items() if code != "OK")
    if not result.statuses and result.error_messages:
        result.errors = sum(result.error_messages.values())
    return result


def scan_copies(store: redis.Redis) -> list[str]:
    """Ids of every thread in Redis that was made by Copy (``copied_from`` set)."""
    keys = [k.decode() for k in store.scan_iter(match="thr:*:meta", count=1000)]
    copies: list[str] = []
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        pipe = store.pipeline(transaction=False)
        for key in batch:
            pipe.hget(key, "copied_from")
        for key, source in zip(batch, pipe.execute(), strict=True):
            if source:
                copies.append(key.split(":")[2])
    return copies


async def delete_threads(target: str, thread_ids: list[str]) -> None:
    async with aio.insecure_channel(target) as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        gate = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def delete(thread_id: str) -> None:
            async with gate:
                await stub.Delete(pb.DeleteRequest(thread_id=thread_id), timeout=60)

        await asyncio.gather(*(delete(t) for t in thread_ids))


def delete_copies(store: redis.Redis, target: str) -> int:
    copies = scan_copies(store)
    if copies:
        asyncio.run(delete_threads(target, copies))
    return len(copies)


def git_archive(rev: str, target: Path, *paths: str) -> Path:
    """``paths`` (e.g. ``server``, ``client``) as of git revision ``rev``, extracted into a
    fresh ``target`` directory (which is returned)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, *paths], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def git_output(*command: str) -> str:
    """What ``git <command>`` prints in this checkout, stripped; raises if git fails."""
    return subprocess.run(
        ["git", *command], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


@contextlib.contextmanager
def redis_for_run(args: argparse.Namespace, out: Path) -> Iterator[str]:
    if args.redis_url:
        yield args.redis_url
        return
    data_dir = out / "valkey"
    if (data_dir / ".lock").exists():
        with open(data_dir / ".lock") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SystemExit(f"{data_dir} is in use: is another load run going?") from None
    # A fresh Redis each run: the last run's AOF would be replayed otherwise.
    shutil.rmtree(data_dir, ignore_errors=True)
    with EmbeddedServer(data_dir, appendfsync="everysec") as url:
        with redis.Redis.from_url(url) as store:
            store.config_set("maxmemory", args.maxmemory)
        yield url


def run(args: argparse.Namespace) -> list[Result]:
    ghz = Path(args.ghz)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    worker_counts = sorted({1, args.workers})
    scenarios: list[str] = args.scenarios
    search = not SEARCH_SCENARIOS.isdisjoint(scenarios)
    results: list[Result] = []
    print(
        f"ghz {ghz_version(ghz)} ({ghz}); workers {worker_counts}; connections "
        f"{args.connections}; scenarios {','.join(scenarios)}; reports in {out}/w<K>/",
        flush=True,
    )
    with redis_for_run(args, out) as url, redis.Redis.from_url(url) as store:
        redis_pid = int(store.info("server")["process_id"])
        if not is_local_redis(redis_pid):
            redis_pid = 0  # another machine's pid: its CPU is not measured
        print(f"redis: {url} (pid {redis_pid})", flush=True)
        peak = 0
        for workers in worker_counts:
            out_dir = out / f"w{workers}"
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()
            server = ServerProcess(
                ["--workers", str(workers), "--redis-url", url, "--log-level", "WARNING"],
                out / f"server-w{workers}.log",
                environment(),
                None,
            )
            try:
                began = time.monotonic()
                server.wait_serving()
                seed(server.target)
                if search:
                    seed_search(server.target)  # kept from the last worker count: quick
                if WARMED in scenarios:
                    warm_up(ghz, server, args, out_dir)
                    delete_copies(store, server.target)
                print(
                    f"--workers {workers}: serving, seeded"
                    + (f" (and {SEARCH_THREADS:,} search threads)" if search else "")
                    + (" and warmed up" if WARMED in scenarios else "")
                    + f" in {time.monotonic() - began:.1f}s "
                    f"(python -m threads_server {' '.join(server.args)})",
                    flush=True,
                )
                for scenario in scenarios:
                    result = run_scenario(
                        ghz, scenario, server, redis_pid=redis_pid, args=args, out_dir=out_dir
                    )
                    results.append(result)
                    memory = int(store.info("memory")["used_memory"])
                    peak = max(peak, memory)
                    cleanup = time.monotonic()
                    deleted = delete_copies(store, server.target)
                    server_cpu, redis_cpu, ghz_cpu = result.cpu
                    print(
                        f"    {result.count} calls, {result.rps:.0f} RPS, {result.errors} "
                        f"non-OK, conns/worker {result.spread}, CPU % of a core: server "
                        f"{server_cpu:.0f} redis {redis_cpu:.0f} ghz {ghz_cpu:.0f}; "
                        f"redis {memory / 2**20:.0f} MiB"
                        + (
                            f", {deleted} copies deleted in {time.monotonic() - cleanup:.1f}s"
                            if deleted
                            else ""
                        )
                        + (f"\n    FAILED: {result.failure}" if result.failure else ""),
                        flush=True,
                    )
                if search and workers == worker_counts[-1]:  # the next run reseeds them
                    cleanup = time.monotonic()
                    delete_search(server.target)
                    print(
                        f"    {SEARCH_THREADS:,} search threads deleted in "
                        f"{time.monotonic() - cleanup:.1f}s",
                        flush=True,
                    )
            finally:
                try:
                    server.stop()
                finally:
                    server.kill_all()
        print(f"redis used_memory peak seen: {peak / 2**20:.0f} MiB")
    return results


def print_table(results: list[Result], worker_counts: list[int], scenarios: list[str]) -> None:
    floors = {r.workers: r.rps for r in results if r.scenario == FLOOR}
    header = (
        f"{'scenario':<{NAME_WIDTH}} {'workers':>7} {'RPS':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'errors':>7} {'/health':>8}  {'CPU% srv/redis/ghz':>18}"
    )
    print()
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        for r in (r for r in results if r.scenario == scenario):
            floor = floors.get(r.workers, 0.0)
            ratio = f"{r.rps / floor:8.2f}" if floor else f"{'-':>8}"
            cpu = "/".join(f"{c:.0f}" for c in r.cpu)
            print(
                f"{r.scenario:<{NAME_WIDTH}} {r.workers:>7} {r.rps:>9.1f} {r.p50:>8.2f} "
                f"{r.p95:>8.2f} {r.p99:>8.2f} {r.errors:>7} {ratio}  {cpu:>18}"
                + (" (FAILED)" if r.failure else "")
            )
    if len(worker_counts) > 1:
        low, high = worker_counts[0], worker_counts[-1]
        by_key = {(r.scenario, r.workers): r.rps for r in results}
        ratios = []
        for scenario in scenarios:
            one, many = by_key.get((scenario, low), 0.0), by_key.get((scenario, high), 0.0)
            ratios.append(f"{scenario} {many / one:.2f}" if one else f"{scenario} -")
        print(f"\nRPS {high} workers / {low} worker: " + ", ".join(ratios))


def scenario_list(value: str, choices: Sequence[str] = SCENARIOS) -> list[str]:
    """``--scenarios``: names of ``choices`` (default ``SCENARIOS``), comma-separated, each
    once."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {','.join(unknown) or '(none given)'}; choose from "
            + ",".join(choices)
        )
    return list(dict.fromkeys(names))


def main() -> None:
    cpus = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--workers",
        type=int,
        default=cpus,
        help="N: runs 1 and N workers (default: CPUs, %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=0,
        help="ghz connections (default 8 x N: SO_REUSEPORT spreads connections by hash, "
        "so a few connections can leave a worker idle)",
    )
    parser.add_argument("--concurrency", type=int, default=0, help="override the config files'")
    parser.add_argument(
        "--duration", default="", help="override the timed scenarios' duration, e.g. 5s"
    )
    parser.add_argument(
        "--scenarios",
        type=scenario_list,
        default=list(SCENARIOS),
        help="comma-separated scenarios to run, in this order (default: all): "
        + ",".join(SCENARIOS),
    )
    parser.add_argument("--ghz", default=str(REPO / "build" / "bin" / "ghz"))
    parser.add_argument("--out", default=str(REPO / "build" / "load"))
    parser.add_argument("--redis-url", default="", help="use this Redis instead of an embedded one")
    parser.add_argument(
        "--maxmemory", default=DEFAULT_MAXMEMORY, help="embedded Redis maxmemory (safety net)"
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not args.connections:
        args.connections = 8 * args.workers
    if not Path(args.ghz).is_file():
        parser.error(f"{args.ghz} not found; run make load (it installs ghz)")
    began = time.monotonic()
    results = run(args)
    print_table(results, sorted({1, args.workers}), args.scenarios)
    print(f"\ntotal {time.monotonic() - began:.0f}s")
    failed = [r for r in results if r.failure]
    errored = [r for r in results if r.errors]
    for r in errored:
        print(f"\nnon-OK responses in {r.scenario} (--workers {r.workers}): {r.statuses}")
        for message, n in r.error_messages.items():
            print(f"  {n:>7}  {message}")
    for r in failed:
        print(f"\n{r.scenario} (--workers {r.workers}) did not run: {r.failure}")
    if failed:
        sys.exit(2)
    if errored:
        sys.exit(1)


if __name__ == "__main__":
    main()
