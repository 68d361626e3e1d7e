"""What tracing costs: ghz Get and Copy@10 against the server with tracing off, on but
sampling nothing, and on (exporting over OTLP/gRPC to a local receiver process), plus the
build before tracing existed, side by side in one run.

    make bench-tracing            # installs ghz into build/bin, then runs this
    .venv/bin/python -m tests.load.bench_tracing [--duration 10s] [--rounds 2] [--base REV]

One embedded Valkey for the run; every configuration is a fresh ``python -m threads_server
--workers 1`` (one worker: on 2 cores the server, Redis, ghz and the receiver share them,
and one worker keeps the comparison about the per-call code). Configurations alternate
within each round, so drift on a shared machine hits them alike. ``--base`` (default: the
commit before tracing, ``git merge-base HEAD main``) is checked out with ``git archive``
into build/bench-tracing/base and run with its ``server/`` first on PYTHONPATH.

Prints RPS, p50 and server CPU per configuration and scenario (median of the rounds), and
the ratios on/off, sampled-out/off and off/base. Reports, not assertions.

``--observability`` instead alternates what metrics and tracing cost together (the issue's
"Cost" question): all off (``--metrics off``, no OTEL_*), metrics on with tracing off (the
default), metrics and tracing on exporting every span to the receiver, and the same with
a 10 % ratio sampler (``parentbased_traceidratio``); ratios are each vs all off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.load.ghz_load import (
    REPO,
    Result,
    delete_copies,
    git_archive,
    git_output,
    redis_for_run,
    run_scenario,
)
from tests.load.seed import seed
from tests.redis_process import free_port
from tests.server_process import ServerProcess, environment

SCENARIOS = ("get", "copy_10")


@dataclass(frozen=True)
class Config:
    name: str
    env: dict[str, str]
    base: bool = False
    server_args: tuple[str, ...] = ()

    @property
    def traced(self) -> bool:
        """Whether this configuration keeps the OTEL_* variables (the others drop them)."""
        return "OTEL_EXPORTER_OTLP_ENDPOINT" in self.env


def _base_tree(rev: str, out: Path) -> Path:
    """The server package as of ``rev``, extracted under ``out`` (its ``server/`` dir)."""
    return git_archive(rev, out / "base", "server") / "server"


def main() -> int:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--base", default="", help="pre-tracing revision (default: merge-base)")
    parser.add_argument("--ghz", default=str(REPO / "build" / "bin" / "ghz"))
    parser.add_argument("--out", default=str(REPO / "build" / "bench-tracing"))
    parser.add_argument(
        "--observability",
        action="store_true",
        help="all off vs metrics vs metrics+tracing (full and 10%% sampled), no base build",
    )
    args = parser.parse_args()
    args.redis_url, args.maxmemory = "", "4gb"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_rev = (
        "none" if args.observability else args.base or git_output("merge-base", "HEAD", "main")
    )
    base_server = None if args.observability else _base_tree(base_rev, out)
    receiver_port = free_port()
    receiver_log = open(out / "receiver.log", "w")  # noqa: SIM115 - closed at the end
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.otlp_receiver", str(receiver_port)],
        cwd=REPO,
        stdout=receiver_log,
        stderr=subprocess.STDOUT,
    )
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}"}
    ratio = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    configs = (
        [
            Config("all-off", {}, server_args=("--metrics", "off")),
            Config("metrics", {}),
            Config("metrics+tr", endpoint),
            Config("m+tr-10%", {**endpoint, **ratio}),
        ]
        if base_server is None
        else [
            Config("base", {"PYTHONPATH": str(base_server)}, base=True),
            Config("off", {}),
            Config("sampled-out", {**endpoint, "OTEL_TRACES_SAMPLER": "always_off"}),
            Config("on", endpoint),
        ]
    )
    results: dict[tuple[str, str], list[Result]] = {}
    receiver_cpu: dict[str, list[float]] = {}
    print(f"base = {base_rev[:12]}; receiver on 127.0.0.1:{receiver_port}", flush=True)
    try:
        with redis_for_run(args, out) as url, redis.Redis.from_url(url) as store:
            redis_pid = int(store.info("server")["process_id"])
            for round_ in range(args.rounds):
                for config in configs:
                    out_dir = out / f"r{round_}-{config.name}"
                    out_dir.mkdir(exist_ok=True)
                    server = ServerProcess(
                        ["--workers", "1", "--redis-url", url, "--log-level", "WARNING",
                         "--http-listen", "", *config.server_args],
                        out / f"server-{config.name}.log",
                        {k: v for k, v in environment(config.env).items()
                         if config.traced or not k.startswith("OTEL_")},
                        None,
                    )  # fmt: skip
                    try:
                        server.wait_serving()
                        seed(server.target)
                        delete_copies(store, server.target)
                        for scenario in SCENARIOS:
                            before = _cpu(receiver.pid)
                            began = time.monotonic()
                            result = run_scenario(
                                Path(args.ghz), scenario, server,
                                redis_pid=redis_pid, args=args, out_dir=out_dir,
                            )  # fmt: skip
                            elapsed = time.monotonic() - began
                            receiver_cpu.setdefault(config.name, []).append(
                                100 * (_cpu(receiver.pid) - before) / elapsed
                            )
                            delete_copies(store, server.target)
                            results.setdefault((config.name, scenario), []).append(result)
                            print(
                                f"round {round_} {config.name:<12} {scenario:<8} "
                                f"{result.rps:8.0f} RPS p50 {result.p50:6.2f} ms "
                                f"server CPU {result.cpu[0]:4.0f}% errors {result.errors}"
                                + (f" FAILED {result.failure}" if result.failure else ""),
                                flush=True,
                            )
                    finally:
                        server.stop()
                        server.kill_all()
            micro = {} if args.observability else _micro(configs, url, args.rounds + 1)
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)
        receiver_log.close()
    print(f"\nmedian of {args.rounds} rounds, ghz {args.duration} per scenario, 1 worker")
    # Server CPU per call: where the cost goes when RPS is bound by the shared cores.
    print(
        f"{'config':<12} {'scenario':<8} {'RPS':>8} {'p50 ms':>7} {'srv CPU%':>8} "
        f"{'srv CPU us/call':>15}"
    )
    median: dict[tuple[str, str], float] = {}
    per_call: dict[tuple[str, str], float] = {}
    for (name, scenario), runs in results.items():
        median[name, scenario] = statistics.median(r.rps for r in runs)
        p50 = statistics.median(r.p50 for r in runs)
        cpu = statistics.median(r.cpu[0] for r in runs)
        per_call[name, scenario] = statistics.median(
            r.cpu[0] / 100 / r.rps * 1e6 for r in runs if r.rps
        )
        print(
            f"{name:<12} {scenario:<8} {median[name, scenario]:8.0f} {p50:7.2f} {cpu:8.0f} "
            f"{per_call[name, scenario]:15.0f}"
        )
    if args.observability:
        _observability_summary(median, per_call)
        print(
            "receiver CPU% of a core while 'metrics+tr' ran: "
            f"{statistics.median(receiver_cpu['metrics+tr']):.0f}"
        )
        print((out / "receiver.log").read_text().strip().splitlines()[-1])
        return 1 if any(r.errors for runs in results.values() for r in runs) else 0
    for scenario in SCENARIOS:
        off = median["off", scenario]
        cost = {config.name: per_call[config.name, scenario] for config in configs}
        print(
            f"{scenario}: on/off {median['on', scenario] / off:.3f}, "
            f"sampled-out/off {median['sampled-out', scenario] / off:.3f}, "
            f"off/base {off / median['base', scenario]:.3f}; server CPU per call: spans "
            f"made, not sampled {cost['sampled-out'] - cost['off']:+.0f} us, "
            f"recorded and exported {cost['on'] - cost['sampled-out']:+.0f} us, "
            f"off vs base {cost['off'] - cost['base']:+.0f} us"
        )
    print("\nserver CPU per call in one process (tests.load.tracing_cost, median us):")
    for config in configs:
        print(
            f"  {config.name:<12} "
            + " ".join(f"{k}={v:.1f}" for k, v in micro[config.name].items())
        )
    for scenario in SCENARIOS:
        us = {name: micro[name][scenario] for name in micro}
        print(
            f"  {scenario}: off vs base {us['off'] - us['base']:+.1f} us, spans made but not "
            f"sampled {us['sampled-out'] - us['off']:+.1f} us, recorded and exported "
            f"{us['on'] - us['sampled-out']:+.1f} us (on = {us['on'] / us['off']:.2f}x off)"
        )
    print(f"receiver CPU% of a core while 'on' ran: {statistics.median(receiver_cpu['on']):.0f}")
    print((out / "receiver.log").read_text().strip().splitlines()[-1])
    errors = sum(r.errors for runs in results.values() for r in runs)
    return 1 if errors else 0


def _observability_summary(
    median: dict[tuple[str, str], float], per_call: dict[tuple[str, str], float]
) -> None:
    """Each configuration's RPS as a share of all off, and what each part adds per call."""
    for scenario in SCENARIOS:
        off, us = (
            median["all-off", scenario],
            {n: per_call[n, s] for n, s in per_call if s == scenario},
        )
        print(
            f"{scenario}: vs all off: metrics {median['metrics', scenario] / off:.3f}, "
            f"metrics+tracing {median['metrics+tr', scenario] / off:.3f}, "
            f"metrics+tracing 10% {median['m+tr-10%', scenario] / off:.3f}; server CPU per "
            f"call: metrics {us['metrics'] - us['all-off']:+.0f} us, tracing (all sampled) "
            f"{us['metrics+tr'] - us['metrics']:+.0f} us, tracing (10%) "
            f"{us['m+tr-10%'] - us['metrics']:+.0f} us"
        )


def _micro(configs: list[Config], url: str, rounds: int) -> dict[str, dict[str, float]]:
    """``tests.load.tracing_cost`` per configuration, alternating, median of ``rounds``."""
    seen: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for config in configs:
            env = {
                k: v
                for k, v in environment(config.env).items()
                if config.name in ("on", "sampled-out") or not k.startswith("OTEL_")
            }
            line = subprocess.run(
                [sys.executable, "-m", "tests.load.tracing_cost", url, "3000"],
                cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=300,
            ).stdout.split()  # fmt: skip
            for pair in line:
                name, value = pair.split("=")
                seen.setdefault(config.name, {}).setdefault(name, []).append(float(value))
            print(f"  tracing_cost {config.name:<12} {' '.join(line)}", flush=True)
    return {
        name: {k: statistics.median(v) for k, v in found.items()} for name, found in seen.items()
    }


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
