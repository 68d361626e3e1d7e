"""What a call costs, build against build (issue 14): ghz Health/Check, Copy of 10 and of
1,000 entries, Get and Append against several builds of the server, side by side in one run.

    make bench-cost [BENCH_COST_ARGS="..."]   # installs ghz into build/bin, then runs this
    .venv/bin/python -m tests.load.bench_cost [--variant NAME=REV[:SERVER ARGS]] ...
        [--workers 1,2] [--duration 5s] [--rounds 1] [--scenarios health,copy_10,...]

A variant is a git revision (``HEAD``, a branch, a SHA, or ``WORKTREE``: this checkout as it
is, uncommitted changes included) whose ``server/`` and ``client/`` are extracted (git
archive; WORKTREE: copied) into build/bench-cost/<NAME>/ and run with ``PYTHONPATH=<that>/
server:<that>/client``, plus optional server arguments after a colon, e.g.
``--variant nometrics=HEAD:'--metrics off'``. Default: ``base`` = the merge-base of HEAD and
origin/main (main when there is no origin) and ``head`` = WORKTREE. Every build runs on the
dev venv's packages, but a module that a library uses only when it can import it
(``AUTO_DETECTED``: uvicorn's httptools parser) is hidden from a build whose own
server/requirements.txt does not lock it, so an old build runs as it was deployed.

One embedded Valkey (AOF everysec) for the whole run. For each worker count (default 1 and
the usable CPUs) every variant's ``python -m threads_server --workers K --redis-url ...`` is
started at once, in its default configuration otherwise (metrics on, INFO logs: as users run
it; no OTEL_* variables), each on its own free gRPC port and its own free ``--http-listen``
port (no HTTP at all for a build without the flag); the fixed threads are seeded
(tests.load.seed, all but the 100,000-entry one, through each server: a build from before a
key-layout change has its own copy of them) and each server gets a 1 s Copy@10 warm-up (and
Redis one unreported Copy@1000 run, so no variant pays for its first page faults). Then, per
round, per scenario, ghz runs against each variant in turn, the starting variant rotating
from one scenario (and round) to the next, so drift on a shared machine hits variants alike;
copies are deleted after every ghz run. Timed scenarios run ``--duration``; copy_1000 is
counted (``--copy-1000-calls``, 200 KB a copy) so Redis memory stays bounded; every ghz run
is killed after ``4 x duration + 60`` s. Servers stop at the end of each worker count.

How to read it: per worker count, one row per variant (median of the rounds): RPS of each
scenario, each RPS over Health/Check RPS of the same server in the same run (the per-call
cost above the gRPC floor, which moves less with machine noise than raw RPS), copies per
server CPU-second (parent + workers, /proc utime+stime during the ghz run) for Copy@10 and
that figure over the first variant's (> 1: the variant spends less server CPU per copy),
and p50/p99; then calls per server CPU-second and p50/p99 of every scenario. RPS is bound
by 2 shared cores (ghz and Redis take their share), so compare rows of one run, not runs.
Calls per CPU-second is the steadier figure when other work shares the machine (RPS of the
same build moved by 1.7x within one run while its Health calls/CPU-s stayed within 1 %);
with one round, treat a difference under ~15 % as noise and use --rounds 3 to settle it.
The same tables, with the command line, date, short SHAs, load average and ghz version, go
to build/bench-cost/results.md (to paste into tests/load/RESULTS.md); ghz JSON reports to
build/bench-cost/runs/, server logs to build/bench-cost/logs/. Exits 1 if any response was
not OK, 2 if a scenario or a server could not run. Reports, not assertions.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis

from tests.load.ghz_load import (
    REPO,
    Result,
    delete_copies,
    ghz_command,
    ghz_version,
    git_archive,
    git_output,
    redis_for_run,
    run_scenario,
    scenario_list,
)
from tests.load.seed import THREAD_100000, THREADS, seed
from tests.server_process import ServerProcess, environment, supports_http
from threads_service_client import ThreadsError

SCENARIOS = ("health", "copy_10", "copy_1000", "get", "append")
LABELS = {
    "health": "Health",
    "copy_10": "Copy@10",
    "copy_1000": "Copy@1000",
    "get": "Get",
    "append": "Append",
}
FLOOR = "health"
COUNTED = "copy_1000"  # bound by --copy-1000-calls, not by --duration
WORKTREE = "WORKTREE"
# Directories of build/bench-cost that are not a variant's tree.
RESERVED = frozenset({"valkey", "runs", "logs"})
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,23}\Z")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)\Z")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}
WARM_UP = "1s"
# The seeded threads these scenarios name: not copy_100000's 100,000-entry one.
SEEDED = tuple(spec for spec in THREADS if spec.thread_id != THREAD_100000)


@dataclass(frozen=True)
class Variant:
    name: str
    rev: str
    server_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Build:
    """A variant's extracted tree: the environment that runs it, and what it is."""

    variant: Variant
    sha: str
    env: dict[str, str]
    http: bool


@dataclass(frozen=True)
class Cell:
    """One (worker count, variant, scenario): medians of the rounds, non-OK summed."""

    rps: float
    p50: float
    p99: float
    per_cpu: float  # calls per server CPU-second
    errors: int
    failed: bool


def variant_arg(value: str) -> Variant:
    """``--variant NAME=REV[:SERVER ARGS]``."""
    name, equals, rest = value.partition("=")
    rev, _, server_args = rest.partition(":")
    if not equals or not rev.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=REV[:SERVER ARGS]")
    if not NAME.match(name) or name in RESERVED:
        raise argparse.ArgumentTypeError(
            f"{name!r}: a variant name is 1-24 of A-Z a-z 0-9 _ . - and not one of "
            + ", ".join(sorted(RESERVED))
        )
    return Variant(name, rev.strip(), tuple(shlex.split(server_args)))


def duration_arg(value: str) -> str:
    if not DURATION.match(value):
        raise argparse.ArgumentTypeError(f"{value!r}: a ghz duration like 5s, 500ms or 1m")
    return value


def seconds(duration: str) -> float:
    number, unit = DURATION.match(duration).groups()  # type: ignore[union-attr]
    return float(number) * UNIT_SECONDS[unit]


def workers_arg(value: str) -> list[int]:
    try:
        counts = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: worker counts like 1,2 (each at least 1)")
    return counts


def default_variants() -> list[Variant]:
    """``base`` = merge-base of HEAD and origin/main (else main), ``head`` = WORKTREE."""
    has_origin = (
        subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "origin/main"],
            cwd=REPO,
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    base = git_output("merge-base", "HEAD", "origin/main" if has_origin else "main")
    return [Variant("base", base[:12]), Variant("head", WORKTREE)]


def prepare(variant: Variant, out: Path) -> Build:
    """Extracts the variant's server/ and client/ under ``out``/NAME and checks that a
    Python with its PYTHONPATH imports them from there."""
    tree = out / variant.name
    parts: tuple[str, ...] = ("server", "client")
    if variant.rev == WORKTREE:
        shutil.rmtree(tree, ignore_errors=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for part in parts:
            shutil.copytree(REPO / part, tree / part, ignore=ignore)
        sha = git_output("rev-parse", "--short", "HEAD")
        if git_output("status", "--porcelain", "--", *parts):
            sha += "+changes"
    else:
        sha = git_output("rev-parse", "--short", f"{variant.rev}^{{commit}}")
        # A revision from before client/ existed has only server/.
        parts = tuple(
            part
            for part in parts
            if not subprocess.run(
                ["git", "cat-file", "-e", f"{sha}:{part}"], cwd=REPO, check=False
            ).returncode
        )
        git_archive(sha, tree, *parts)
    paths = [str(tree / p) for p in parts]
    hidden = _hide_unlocked(tree, sha.removesuffix("+changes") if variant.rev != WORKTREE else "")
    if hidden:
        paths.insert(0, str(hidden))
    env = {
        k: v
        for k, v in environment({"PYTHONPATH": ":".join(paths)}).items()
        if not k.startswith("OTEL_")
    }
    where = subprocess.run(
        [sys.executable, "-c", "import threads_server as s, threads_service_client as c; "
         "print(s.__file__); print(c.__file__)"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    if not where[0].startswith(str(tree)):
        raise SystemExit(f"{variant.name}: threads_server comes from {where[0]}, not {tree}")
    if hidden:
        print(
            f"{variant.name}: its lock lacks {', '.join(p.stem for p in hidden.iterdir())}; hidden"
        )
    return Build(variant, sha, env, supports_http(sys.executable, env))


# Modules a library uses when they are importable and does without otherwise (uvicorn's
# parser): a build whose own lock lacks one must not run with the dev venv's copy of it.
AUTO_DETECTED = ("httptools",)


def _hide_unlocked(tree: Path, sha: str) -> Path | None:
    """A directory of stubs that make each AUTO_DETECTED module the build's own server
    lock does not name fail to import, as it would where that lock is installed; None when
    it names them all. ``sha``: the build's commit ("" for this checkout)."""
    lock = "server/requirements.txt"
    if sha:
        shown = subprocess.run(
            ["git", "show", f"{sha}:{lock}"], cwd=REPO, capture_output=True, text=True, check=False
        )
        text = shown.stdout
    else:
        text = (REPO / lock).read_text() if (REPO / lock).exists() else ""
    names = {line.split("==")[0].strip().lower() for line in text.splitlines() if "==" in line}
    missing = [module for module in AUTO_DETECTED if module not in names]
    if not missing:
        return None
    hide = tree / "hidden"
    hide.mkdir(exist_ok=True)
    for module in missing:
        (hide / f"{module}.py").write_text(
            f'raise ImportError("{module} is not locked for this build (bench_cost hides it)")\n'
        )
    return hide


def warm_up(
    ghz: Path,
    servers: list[ServerProcess],
    args: argparse.Namespace,
    out: Path,
    store: redis.Redis,
) -> None:
    """Unreported: 1 s of Copy@10 per server; with copy_1000, one counted run of it on the
    first server (Redis faults its memory in once, not during the first variant's run).
    Each run's copies are deleted through the server that made them (its key layout)."""
    short = argparse.Namespace(**{**vars(args), "duration": WARM_UP})
    runs: list[tuple[ServerProcess, str, argparse.Namespace, tuple[str, ...]]] = [
        (server, "copy_10", short, ()) for server in servers
    ]
    if COUNTED in args.scenarios:
        runs.append((servers[0], COUNTED, args, ("--total", str(args.copy_1000_calls))))
    for server, scenario, ghz_args, extra in runs:
        command = ghz_command(
            ghz, scenario, server.target, ghz_args, out / "warmup.json", extra=extra
        )
        subprocess.run(command, capture_output=True, check=False, timeout=args.bound)
        delete_copies(store, server.target)


def run(args: argparse.Namespace, builds: list[Build]) -> dict[tuple[int, str, str], list[Result]]:
    ghz = Path(args.ghz)
    out = Path(args.out)
    results: dict[tuple[int, str, str], list[Result]] = {}
    with redis_for_run(args, out) as url, redis.Redis.from_url(url) as store:
        redis_pid = int(store.info("server")["process_id"])
        print(f"redis: {url} (pid {redis_pid})", flush=True)
        for workers in args.workers:
            servers: dict[str, ServerProcess] = {}
            try:
                began = time.monotonic()
                for build in builds:
                    servers[build.variant.name] = ServerProcess(
                        ["--workers", str(workers), "--redis-url", url,
                         *build.variant.server_args],
                        out / "logs" / f"w{workers}-{build.variant.name}.log",
                        build.env,
                        None,
                        http=build.http,
                    )  # fmt: skip
                for server in servers.values():
                    server.wait_serving()
                for server in servers.values():
                    # Through every server: a build with another key layout sees only the
                    # threads it made (for the same layout, a reseed only checks lengths).
                    seed(server.target, SEEDED)
                runs_dir = out / "runs" / f"w{workers}"
                shutil.rmtree(runs_dir, ignore_errors=True)
                runs_dir.mkdir(parents=True)
                warm_up(ghz, list(servers.values()), args, runs_dir, store)
                print(
                    f"--workers {workers}: {len(servers)} servers serving, seeded and warmed "
                    f"up in {time.monotonic() - began:.1f}s",
                    flush=True,
                )
                _rounds(
                    args,
                    builds,
                    servers=servers,
                    workers=workers,
                    store=store,
                    redis_pid=redis_pid,
                    runs_dir=runs_dir,
                    results=results,
                )
            finally:
                stop_all(servers)
    return results


def stop_all(servers: Mapping[str, ServerProcess]) -> None:
    """Stops every variant's server; one that does not stop in time is said and killed."""
    for server in servers.values():
        try:
            server.stop()
        except AssertionError as stuck:
            print(f"  {stuck}", flush=True)
        finally:
            server.kill_all()


def _rounds(
    args: argparse.Namespace,
    builds: list[Build],
    *,
    servers: dict[str, ServerProcess],
    workers: int,
    store: redis.Redis,
    redis_pid: int,
    runs_dir: Path,
    results: dict[tuple[int, str, str], list[Result]],
) -> None:
    ghz = Path(args.ghz)
    for round_ in range(args.rounds):
        for index, scenario in enumerate(args.scenarios):
            start = (round_ * len(args.scenarios) + index) % len(builds)
            extra = ("--total", str(args.copy_1000_calls)) if scenario == COUNTED else ()
            for build in builds[start:] + builds[:start]:
                name = build.variant.name
                server = servers[name]
                out_dir = runs_dir / f"r{round_}-{name}"
                out_dir.mkdir(exist_ok=True)
                result = run_scenario(
                    ghz, scenario, server, redis_pid=redis_pid, args=args, out_dir=out_dir,
                    extra=extra, timeout=args.bound, echo=False,
                )  # fmt: skip
                results.setdefault((workers, name, scenario), []).append(result)
                cleanup = time.monotonic()
                deleted = delete_copies(store, server.target)
                print(
                    f"  w{workers} r{round_} {scenario:<9} {name:<12} {result.count:>6} calls "
                    f"{result.rps:7.0f} RPS p50 {result.p50:6.2f} p99 {result.p99:6.2f} ms "
                    f"non-OK {result.errors} server {result.server_cpu_seconds:5.2f} CPU-s "
                    f"{_per_cpu(result):6.0f} calls/CPU-s"
                    + (f"; {deleted} copies deleted in {time.monotonic() - cleanup:.1f}s"
                       if deleted else "")
                    + (f"\n    FAILED: {result.failure}" if result.failure else ""),
                    flush=True,
                )  # fmt: skip


def _per_cpu(result: Result) -> float:
    return result.count / result.server_cpu_seconds if result.server_cpu_seconds else math.nan


def _cell(runs: list[Result]) -> Cell:
    ok = [r for r in runs if not r.failure] or runs

    def median(value: Callable[[Result], float]) -> float:
        return statistics.median(value(r) for r in ok)

    return Cell(
        rps=median(lambda r: r.rps),
        p50=median(lambda r: r.p50),
        p99=median(lambda r: r.p99),
        per_cpu=median(_per_cpu),
        errors=sum(r.errors for r in runs),
        failed=any(r.failure for r in runs),
    )


def _ratio(top: float, bottom: float) -> str:
    return f"{top / bottom:.2f}" if bottom and not math.isnan(top + bottom) else "-"


def tables(
    cells: dict[tuple[str, str], Cell], builds: list[Build], scenarios: Sequence[str]
) -> list[tuple[str, list[str], list[list[str]]]]:
    """One worker count's tables: (title, header, rows)."""
    names = [b.variant.name for b in builds]
    ratios = [s for s in ("copy_10", "get", "append") if s in scenarios and FLOOR in scenarios]
    main_header = ["variant", *(f"{LABELS[s]} RPS" for s in scenarios)]
    main_header += [f"{LABELS[s]}/Health" for s in ratios]
    copies = "copy_10" in scenarios
    if copies:
        main_header += ["copies/CPU-s", f"vs {names[0]}", "Copy@10 p50/p99 ms"]
    main_header.append("non-OK")
    main_rows, cpu_rows, latency_rows = [], [], []
    for name in names:
        row = [name]
        for s in scenarios:
            cell = cells[name, s]
            row.append("FAILED" if cell.failed else f"{cell.rps:.0f}")
        row += [_ratio(cells[name, s].rps, cells[name, FLOOR].rps) for s in ratios]
        if copies:
            mine, first = cells[name, "copy_10"], cells[names[0], "copy_10"]
            row += [f"{mine.per_cpu:.0f}", _ratio(mine.per_cpu, first.per_cpu)]
            row.append(f"{mine.p50:.1f}/{mine.p99:.1f}")
        row.append(str(sum(cells[name, s].errors for s in scenarios)))
        main_rows.append(row)
        cpu_rows.append(
            [name]
            + [
                f"{cells[name, s].per_cpu:.0f} ({_ratio(cells[name, s].per_cpu, cells[names[0], s].per_cpu)})"  # noqa: E501
                for s in scenarios
            ]
        )
        latency_rows.append(
            [name] + [f"{cells[name, s].p50:.1f}/{cells[name, s].p99:.1f}" for s in scenarios]
        )
    return [
        ("RPS (median of rounds), RPS over Health, Copy@10 per server CPU", main_header, main_rows),
        (
            f"calls per server CPU-second (vs {names[0]})",
            ["variant", *(LABELS[s] for s in scenarios)],
            cpu_rows,
        ),
        ("p50/p99 ms", ["variant", *(LABELS[s] for s in scenarios)], latency_rows),
    ]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(header), "-" * len(line(header)), *(line(r) for r in rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---", *("---:" for _ in header[1:])]
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, aligns, *rows])


def report(
    args: argparse.Namespace,
    builds: list[Build],
    *,
    results: dict[tuple[int, str, str], list[Result]],
    loads: tuple[str, str],
    started: str,
    total: float,
) -> None:
    out = Path(args.out)
    ghz = ghz_version(Path(args.ghz))
    command = "python -m tests.load.bench_cost " + shlex.join(sys.argv[1:])
    md = [
        f"## bench-cost, {started}",
        "",
        f"`{command}`",
        "",
        f"- date {started}; total {total:.0f} s; {len(os.sched_getaffinity(0))} usable CPUs; "
        f"load average at start {loads[0]}, at end {loads[1]}",
        f"- ghz {ghz}; {args.connections} connections; timed scenarios {args.duration}, "
        f"copy_1000 {args.copy_1000_calls} calls; {args.rounds} round(s), median shown",
        "",
        "| variant | rev | server args | HTTP |",
        "| --- | --- | --- | --- |",
        *(
            f"| {b.variant.name} | {b.variant.rev} = {b.sha} | "
            f"{shlex.join(b.variant.server_args) or '(default)'} | "
            f"{'own free port' if b.http else 'off (no --http-listen)'} |"
            for b in builds
        ),
    ]
    print(
        f"\nghz {ghz}; {args.duration} per timed scenario, copy_1000 {args.copy_1000_calls} "
        f"calls; {args.rounds} round(s), median shown; load average {loads[0]} -> {loads[1]}"
    )
    for b in builds:
        print(f"  {b.variant.name:<12} {b.variant.rev} = {b.sha} "
              f"{shlex.join(b.variant.server_args)}")  # fmt: skip
    for workers in args.workers:
        cells = {(name, s): _cell(runs) for (w, name, s), runs in results.items() if w == workers}
        if len(cells) < len(builds) * len(args.scenarios):
            continue  # the run stopped before this worker count
        md += ["", f"### --workers {workers}"]
        for title, header, rows in tables(cells, builds, args.scenarios):
            print(f"\n--workers {workers}: {title}\n{text_table(header, rows)}")
            md += ["", title + ":", "", markdown_table(header, rows)]
    path = out / "results.md"
    path.write_text("\n".join(md) + "\n")
    print(f"\nwrote {path}")


def main() -> int:
    cpus = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--variant",
        type=variant_arg,
        action="append",
        default=[],
        metavar="NAME=REV[:SERVER ARGS]",
        help=f"a build to compare (REV: any git revision, or {WORKTREE} for this checkout as "
        "it is); repeat it; default: base=<merge-base with main> head=WORKTREE",
    )
    parser.add_argument(
        "--workers",
        type=workers_arg,
        default=sorted({1, cpus}),
        help="worker counts, comma-separated (default: 1 and the usable CPUs, %(default)s)",
    )
    parser.add_argument("--duration", type=duration_arg, default="5s")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--scenarios",
        type=lambda v: scenario_list(v, SCENARIOS),
        default=list(SCENARIOS),
        help="comma-separated, from " + ",".join(SCENARIOS),
    )
    parser.add_argument(
        "--copy-1000-calls",
        type=int,
        default=3000,
        help="copy_1000's call count (200 KB of Redis a copy; default %(default)s)",
    )
    parser.add_argument("--connections", type=int, default=0, help="default 8 x most workers")
    parser.add_argument("--concurrency", type=int, default=0, help="override the config files'")
    parser.add_argument("--ghz", default=str(REPO / "build" / "bin" / "ghz"))
    parser.add_argument("--out", default=str(REPO / "build" / "bench-cost"))
    parser.add_argument("--redis-url", default="", help="use this Redis instead of an embedded one")
    parser.add_argument("--maxmemory", default="4gb", help="embedded Redis maxmemory (safety net)")
    args = parser.parse_args()
    if not Path(args.ghz).is_file():
        parser.error(f"{args.ghz} not found; run make bench-cost (it installs ghz)")
    if args.rounds < 1 or args.copy_1000_calls < 1:
        parser.error("--rounds and --copy-1000-calls must be at least 1")
    variants: list[Variant] = args.variant or default_variants()
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        parser.error(f"variant names must differ: {' '.join(names)}")
    args.connections = args.connections or 8 * max(args.workers)
    args.bound = 4 * seconds(args.duration) + 60
    began = time.monotonic()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    builds = [prepare(v, out) for v in variants]
    for b in builds:
        print(
            f"{b.variant.name}: {b.variant.rev} = {b.sha} in {out / b.variant.name}, server args "
            f"{shlex.join(b.variant.server_args) or '(none)'}, HTTP "
            + ("on its own free port" if b.http else "off (this build has no --http-listen)"),
            flush=True,
        )
    print(
        f"workers {args.workers}; scenarios {','.join(args.scenarios)}; {args.duration} per "
        f"timed scenario, copy_1000 {args.copy_1000_calls} calls; {args.rounds} round(s); "
        f"{args.connections} connections",
        flush=True,
    )
    try:
        results = run(args, builds)
    except (AssertionError, ThreadsError, grpc.RpcError) as failed:
        # A server did not start (ServerProcess says why) or would not take the seed.
        print(f"\nFAILED: {type(failed).__name__}: {failed}", flush=True)
        return 2
    total = time.monotonic() - began
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report(
        args,
        builds,
        results=results,
        loads=(load_start, load_end),
        started=started,
        total=total,
    )
    print(f"\ntotal {total:.0f}s")
    return exit_status(
        (f"{scenario} ({name}, --workers {workers})", runs)
        for (workers, name, scenario), runs in results.items()
    )


def exit_status(labelled: Iterable[tuple[str, list[Result]]]) -> int:
    """Prints every run with a non-OK call or that did not run; 2 if any did not run, 1 if
    any call was not OK, else 0."""
    failed = errors = False
    for label, runs in labelled:
        for r in runs:
            if r.errors:
                errors = True
                print(f"non-OK in {label}: {r.statuses}")
                for message, n in r.error_messages.items():
                    print(f"  {n:>7}  {message}")
            if r.failure:
                failed = True
                print(f"{label} did not run: {r.failure}")
    return 2 if failed else 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
