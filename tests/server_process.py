"""``python -m threads_server`` as a real subprocess, for the tests of the CLI and of workers.

Each server's stdout/stderr goes to a file under the test's tmp_path; ``tail()`` goes in
every assertion message. The ``spawn`` fixture (conftest) kills any left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.redis_process import free_port
from tests.rpc_helpers import entry
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
SERVING = health_pb2.HealthCheckResponse.SERVING
_TCP_ESTABLISHED = "01"
_TCP_TIME_WAIT = "06"
STARTUP_BOUND = 60.0
EXIT_BOUND = 30.0
POLL_BOUND = 15.0
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without THREADS_* (hermetic), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADS_")}
    env.update(extra or {})
    return env


def supports_http(python: str, env: dict[str, str] | None = None) -> bool:
    """Whether this build's server has the HTTP front door (its --help names --http-listen).

    ``env`` (default: ``environment()``) picks the build, through its PYTHONPATH.
    """
    shown = subprocess.run(
        [python, "-m", "threads_server", "--help"],
        cwd=REPO,
        env=environment() if env is None else env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "--http-listen" in shown.stdout


def eventually(check: Callable[[], bool], what: str, bound: float = POLL_BOUND) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {bound}s: {what}")


def tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def embedded_pid(data_dir: Path) -> int:
    with redis.Redis(unix_socket_path=str(data_dir / "redis.sock"), socket_timeout=5) as client:
        pid: int = client.info("server")["process_id"]
        return pid


class ServerProcess:
    """One ``python -m threads_server`` subprocess, listening on 127.0.0.1:<port>.

    ``channel()`` (and so ``wait_serving()`` and ``create_thread()``) dials it with
    ``credentials`` (TLS) when set, with ``channel_options`` added to CHANNEL_OPTIONS; a
    test may set both after ``spawn``.
    """

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str],
        port: int | None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        http: bool = True,
        command: Sequence[str] = (sys.executable, "-m", "threads_server"),
        cwd: Path = REPO,
    ) -> None:
        """``command`` starts the server (another venv's ``threads-server``, say), in ``cwd``."""
        self.credentials = credentials
        self.channel_options = list(channel_options)
        self.port = free_port() if port is None else port
        # A free HTTP port too, so that servers never meet on the default 8080; a test's
        # own --http-listen comes later in the arguments and wins. ``http=False`` passes no
        # --http-listen at all (a build from before the HTTP front door has no such flag).
        self.http_port = free_port()
        self.args = [
            *(() if port is not None else ("--listen", f"127.0.0.1:{self.port}")),
            *(("--http-listen", f"127.0.0.1:{self.http_port}") if http else ()),
            *args,
        ]
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*command, *self.args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so teardown can take its workers down with it.
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return f"\n--- {self.log_path} (tail) ---\n{self.log()[-chars:]}"

    def channel(self) -> grpc.Channel:
        options = [*CHANNEL_OPTIONS, *self.channel_options]
        if self.credentials is None:
            return grpc.insecure_channel(self.target, options=options)
        return grpc.secure_channel(self.target, self.credentials, options=options)

    def wait_serving(self) -> None:
        deadline = time.monotonic() + STARTUP_BOUND
        with self.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code is not None:
                    raise AssertionError(f"server exited with {code} at startup{self.tail()}")
                try:
                    response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if response.status == SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"server not SERVING after {STARTUP_BOUND}s{self.tail()}")

    def wait_exit(self, timeout: float = EXIT_BOUND) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running after {timeout}s{self.tail()}") from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.wait_exit()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def serving_pids(self) -> list[int]:
        """The processes that accept connections: the workers, or the server itself."""
        return self.workers() or [self.process.pid]

    def kill_all(self) -> None:
        """SIGKILLs the server and its workers if still running (teardown)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=EXIT_BOUND)

    def workers(self) -> list[int]:
        """Pids of the worker processes (the server's Python children)."""
        return python_children(self.process.pid)

    def wait_for_log(self, text: str) -> None:
        eventually(lambda: text in self.log(), f"{text!r} in the server log{self.tail()}")


Spawn = Callable[..., ServerProcess]


def create_thread(server: ServerProcess) -> str:
    """Creates a thread with one entry on a running server and returns its id."""
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        created = stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=10)
        return created.thread.thread_id


def python_children(pid: int) -> list[int]:
    """Direct children of ``pid`` that run Python (workers, not the embedded server)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{child}/exe").resolve().name.startswith("python"):
                    children.append(int(child))
    return sorted(children)


def connections_per_process(port: int, pids: list[int]) -> list[int]:
    """How many established TCP connections on local ``port`` each process holds.

    Matches each process's socket inodes (/proc/<pid>/fd) against /proc/net/tcp{,6}; gRPC
    serves 127.0.0.1 from IPv6 sockets (v4-mapped), hence both tables.
    """
    inodes = {cols[9] for cols in _tcp_sockets(port, _TCP_ESTABLISHED)}
    counts = []
    for pid in pids:
        held = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        held += 1
        counts.append(held)
    return counts


def time_wait_on(port: int) -> int:
    """How many connections on local ``port`` wait in TIME_WAIT: closed by this side
    first (a server that stopped while clients were connected)."""
    return len(_tcp_sockets(port, _TCP_TIME_WAIT))


def _tcp_sockets(port: int, state: str) -> list[list[str]]:
    """The /proc/net/tcp{,6} rows (split into columns) of sockets in ``state`` whose local
    port is ``port``; gRPC serves 127.0.0.1 from IPv6 sockets (v4-mapped), hence both."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == state and int(cols[1].rsplit(":", 1)[1], 16) == port:
                rows.append(cols)
    return rows


def serves_everything(channel: grpc.Channel, thread_id: str) -> None:
    """ThreadService, health and reflection, all answered on this connection."""
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    stub = pb_grpc.ThreadServiceStub(channel)
    assert stub.Get(pb.GetRequest(thread_id=thread_id), timeout=10).thread.thread_id == thread_id
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="threads.v1.ThreadService.Copy"
    )
    [reply] = list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
    assert reply.WhichOneof("message_response") == "file_descriptor_response"


def assert_spread_over_workers(
    server: ServerProcess,
    workers: list[int],
    thread_id: str,
    open_channel: Callable[[], grpc.Channel],
) -> None:
    """32 connections (each channel its own TCP connection; the kernel spreads them over
    the SO_REUSEPORT workers) each serve everything, and every worker holds some. All 32
    on one of 2 workers has odds of 2 in 2**32, once every worker listens: health answers
    SERVING as soon as the first one does, so wait for each worker's "serving" line."""
    eventually(
        lambda: server.log().count("serving threads.v1.ThreadService on") >= len(workers),
        f"all {len(workers)} workers listening{server.tail()}",
    )
    channels = [open_channel() for _ in range(32)]
    try:
        for channel in channels:
            serves_everything(channel, thread_id)
        per_worker = connections_per_process(server.port, workers)
        assert sum(per_worker) == 32, per_worker
        assert all(count > 0 for count in per_worker), per_worker
    finally:
        for channel in channels:
            channel.close()
