"""What Prometheus metrics cost: ghz RPS of Get and Copy (10 entries) with metrics on vs
``--metrics off``, side by side in one run, and each recorder's own cost per call.

    make bench-metrics                     # builds ghz like make load, then runs this
    .venv/bin/python -m tests.load.bench_metrics [--rounds 3] [--duration 5s] [--workers 1]

Starts one embedded Valkey (``tests.load.ghz_load.redis_for_run``) and two servers on it,
one with metrics and one without, both with the same ``--workers`` and the metrics
multiprocess directory the CLI always sets up. Then, per round and scenario, runs ghz
against each in turn (the order swaps every round, so drift on a shared machine hits both),
and prints each run's RPS and server CPU per call, their medians, and on/off. On a busy
machine RPS swings with the neighbours' load; CPU time per call does much less, and for a
CPU-bound server off/on CPU per call is the share of RPS that metrics leave. Then times
each recorder alone in a fresh interpreter, in multiprocess mode as the server runs it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import redis

from tests.load.ghz_load import REPO, cpu_seconds, delete_copies, redis_for_run, run_scenario
from tests.load.seed import seed
from tests.server_process import ServerProcess, environment

SCENARIOS = ("get", "copy_10")

# Each recorder as the server calls it, timed alone (ns per call); argv[1]: the mode.
_MICRO = """
import os, sys, tempfile, time, timeit
if sys.argv[1] == "multiprocess":
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
import grpc
from threads_server.ops import metrics
class Script:
    sha = "0" * 40
n = 200_000
now = time.perf_counter()
parts = {
    "gRPC started+handled+latency (rpc)": lambda: metrics.grpc_handled_call(
        "Get", grpc.StatusCode.OK, metrics.grpc_started_call("Get")),
    "HTTP counter+histogram (http.app)": lambda: metrics.http_request(
        "/threads/{thread_id}", "GET", 200, 0.001),
    "script duration (store.run_script)": lambda: metrics.script_call(Script, now),
    "copy history length (store.copy)": lambda: metrics.copied(10),
    "entries appended (store.append)": lambda: metrics.appended(1),
}
for name, call in parts.items():
    call()
    best = min(timeit.repeat(call, number=n, repeat=3)) / n
    print(f"  {name:<40} {best * 1e9:7.0f} ns")
metrics.configure(enabled=False)
best = min(timeit.repeat(parts["gRPC started+handled+latency (rpc)"], number=n, repeat=3)) / n
print(f"  {'gRPC, with --metrics off':<40} {best * 1e9:7.0f} ns")
"""


def print_summary(
    rps: dict[tuple[str, str], list[float]], cpu_us: dict[tuple[str, str], list[float]]
) -> None:
    print()
    for scenario in SCENARIOS:
        on = statistics.median(rps[(scenario, "on")])
        off = statistics.median(rps[(scenario, "off")])
        cpu_on = statistics.median(cpu_us[(scenario, "on")])
        cpu_off = statistics.median(cpu_us[(scenario, "off")])
        print(
            f"{scenario:<8} median RPS: metrics on {on:8.0f}, off {off:8.0f}: "
            f"on/off {on / off:.1%}; server CPU per call: on {cpu_on:.0f} us, "
            f"off {cpu_off:.0f} us: off/on {cpu_off / cpu_on:.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="5s")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--ghz", default=str(REPO / "build" / "bin" / "ghz"))
    parser.add_argument("--out", default=str(REPO / "build" / "bench-metrics"))
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--maxmemory", default="2gb")
    args = parser.parse_args()
    if not Path(args.ghz).is_file():
        parser.error(f"{args.ghz} not found; run make bench-metrics (it installs ghz)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rps: dict[tuple[str, str], list[float]] = {}
    cpu_us: dict[tuple[str, str], list[float]] = {}
    with redis_for_run(args, out) as url, redis.Redis.from_url(url) as store:
        redis_pid = int(store.info("server")["process_id"])
        servers = {
            mode: ServerProcess(
                ["--workers", str(args.workers), "--redis-url", url, "--log-level", "WARNING"]
                + ([] if mode == "on" else ["--metrics", "off"]),
                out / f"server-{mode}.log",
                environment(),
                None,
            )
            for mode in ("on", "off")
        }
        try:
            for server in servers.values():
                server.wait_serving()
            seed(servers["on"].target)
            print(
                f"metrics on vs off: --workers {args.workers}, ghz {args.duration} per run, "
                f"{args.rounds} rounds, {args.connections} connections",
                flush=True,
            )
            for round_ in range(args.rounds):
                order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                for scenario in SCENARIOS:
                    for mode in order:
                        server = servers[mode]
                        run_dir = out / f"r{round_}-{mode}"
                        run_dir.mkdir(exist_ok=True)
                        cpu_before = cpu_seconds(server.serving_pids())
                        result = run_scenario(
                            Path(args.ghz),
                            scenario,
                            server,
                            redis_pid=redis_pid,
                            args=args,
                            out_dir=run_dir,
                        )
                        if result.failure or result.errors:
                            sys.exit(f"{scenario} ({mode}): {result.failure or result.statuses}")
                        per_call = (
                            1e6 * (cpu_seconds(server.serving_pids()) - cpu_before) / result.count
                        )
                        rps.setdefault((scenario, mode), []).append(result.rps)
                        cpu_us.setdefault((scenario, mode), []).append(per_call)
                        print(
                            f"    metrics {mode:<3}: {result.rps:8.0f} RPS "
                            f"p50 {result.p50:.2f} ms p99 {result.p99:.2f} ms, "
                            f"server CPU {per_call:.0f} us/call",
                            flush=True,
                        )
                        delete_copies(store, server.target)
        finally:
            for server in servers.values():
                try:
                    server.stop()
                finally:
                    server.kill_all()
    print_summary(rps, cpu_us)
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("multiprocess", "single-process"):
            print(f"\neach recorder alone, ns per call ({mode} mode):", flush=True)
            micro = [sys.executable, "-c", textwrap.dedent(_MICRO), mode]
            subprocess.run(micro, cwd=scratch, check=True)


if __name__ == "__main__":
    main()
