"""``python -m tests.interop [go node java langgraph-js]``: other languages' generated stubs,
and LangGraph's own JS SDK over HTTP/JSON, vs a live server.

Starts ``python -m threads_server`` (embedded Valkey, fresh data dir, free gRPC and HTTP
ports), waits until its health check says SERVING, then runs ``tests/interop/<lang>/run.sh``
for each language with ``THREADS_TARGET=127.0.0.1:<port>`` (gRPC) and
``THREADS_HTTP_URL=http://127.0.0.1:<http port>`` (HTTP/JSON, for langgraph-js). Each gRPC
script generates its stubs from ``protos/`` with its own toolchain; each script runs its
checks and exits non-zero on the first failure. Exits 1 if any language failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.server_process import ServerProcess, environment

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LANGUAGES = ("go", "node", "java", "langgraph-js")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.interop", description=__doc__)
    parser.add_argument(
        "languages", nargs="*", metavar="LANG", help="go, node, java, langgraph-js (default: all)"
    )
    parser.add_argument("--workers", help="server worker processes (default: the server's)")
    args = parser.parse_args(argv)
    languages = args.languages or list(LANGUAGES)
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        parser.error(
            f"unknown language(s) {', '.join(unknown)}; choose from {', '.join(LANGUAGES)}"
        )

    with tempfile.TemporaryDirectory(prefix="threads-interop-") as work:
        server_args = ["--data-dir", f"{work}/data", "--log-level", "WARNING"]
        if args.workers:
            server_args += ["--workers", args.workers]
        # The server's output goes to a file; its tail is in any start-up failure.
        server = ServerProcess(server_args, Path(work) / "server.log", environment(), None)
        results: dict[str, int] = {}
        try:
            server.wait_serving()
            for lang in languages:
                print(f"--- interop: {lang} against {server.target}", flush=True)
                env = {
                    **os.environ,
                    "THREADS_TARGET": server.target,
                    "THREADS_HTTP_URL": server.http_url,
                }
                started = time.monotonic()
                code = subprocess.call(["bash", str(HERE / lang / "run.sh")], env=env)
                results[lang] = code
                took = time.monotonic() - started
                print(f"--- interop: {lang} {'ok' if code == 0 else 'FAILED'} ({took:.0f}s)")
            if server.stop() != 0:
                print(f"interop: the server did not stop cleanly{server.tail()}")
                return 1
        finally:
            server.kill_all()
    failed = [lang for lang, code in results.items() if code != 0]
    print("interop:", ", ".join(f"{k}={'ok' if v == 0 else 'FAILED'}" for k, v in results.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
