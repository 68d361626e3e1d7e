"""``python -m tests.interop [go node java]``: other languages' generated stubs vs a live server.

Starts ``python -m server`` (embedded Valkey, fresh data dir, free port), waits until its
health check says SERVING, then runs ``tests/interop/<lang>/run.sh`` for each language with
``THREADS_TARGET=127.0.0.1:<port>``. Each script generates its stubs from ``protos/`` with its
own toolchain, runs its checks and exits non-zero on the first failure. Exits 1 if any
language failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.embedded import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LANGUAGES = ("go", "node", "java")


def wait_serving(target: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"server exited with {server.returncode} before serving")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise SystemExit(f"server on {target} not SERVING after {timeout}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.interop", description=__doc__)
    parser.add_argument(
        "languages", nargs="*", metavar="LANG", help="go, node, java (default: all)"
    )
    parser.add_argument("--workers", help="server worker processes (default: the server's)")
    args = parser.parse_args(argv)
    languages = args.languages or list(LANGUAGES)
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        parser.error(
            f"unknown language(s) {', '.join(unknown)}; choose from {', '.join(LANGUAGES)}"
        )

    port = free_port()
    target = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="threads-interop-") as data_dir:
        server_cmd = [sys.executable, "-m", "server", "--listen", target, "--data-dir", data_dir]
        server_cmd += ["--log-level", "WARNING"]
        if args.workers:
            server_cmd += ["--workers", args.workers]
        server = subprocess.Popen(server_cmd, cwd=ROOT)
        results: dict[str, int] = {}
        try:
            wait_serving(target, server)
            for lang in languages:
                print(f"--- interop: {lang} against {target}", flush=True)
                env = {**os.environ, "THREADS_TARGET": target}
                started = time.monotonic()
                code = subprocess.call(["bash", str(HERE / lang / "run.sh")], env=env)
                results[lang] = code
                took = time.monotonic() - started
                print(f"--- interop: {lang} {'ok' if code == 0 else 'FAILED'} ({took:.0f}s)")
        finally:
            server.terminate()
            server.wait(timeout=30)
    failed = [lang for lang, code in results.items() if code != 0]
    print("interop:", ", ".join(f"{k}={'ok' if v == 0 else 'FAILED'}" for k, v in results.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
