"""``--workers N``: N forked server processes on one port, under one supervising parent.

Every server here is a real ``python -m threads_server`` subprocess; which worker holds which
connection is read from /proc (each worker's socket inodes against /proc/net/tcp).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import httpx
import pytest

from tests.redis_process import RedisProcess, free_port, process_alive
from tests.server_process import (
    REPO,
    Spawn,
    assert_spread_over_workers,
    create_thread,
    embedded_pid,
    eventually,
    time_wait_on,
)
from threads_server.ops.workers import ListenError, reserve_port, split_listen


def test_every_worker_accepts_connections_and_serves_all_services(
    spawn: Spawn, redis_server: RedisProcess
) -> None:
    server = spawn("--workers", "2", "--redis-url", redis_server.url)
    server.wait_serving()
    workers = server.workers()
    assert len(workers) == 2, (workers, server.tail())
    thread_id = create_thread(server)

    assert_spread_over_workers(
        server,
        workers,
        thread_id,
        lambda: grpc.insecure_channel(
            f"127.0.0.1:{server.port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ),
    )
    assert server.stop() == 0, server.tail()


def test_embedded_server_is_started_once_by_the_parent(spawn: Spawn, short_dir: Path) -> None:
    data_dir = short_dir / "data"
    server = spawn("--workers", "3", "--data-dir", str(data_dir))
    server.wait_serving()
    workers = server.workers()
    assert len(workers) == 3, (workers, server.tail())
    embedded = embedded_pid(data_dir)
    assert Path(f"/proc/{embedded}/stat").read_text().split()[3] == str(server.process.pid)
    assert server.log().count("starting embedded server") == 1, server.tail()
    create_thread(server)
    assert server.stop() == 0, server.tail()
    assert not any(process_alive(pid) for pid in [*workers, embedded])


def test_only_the_parent_and_the_embedded_server_hold_the_data_directory_lock(
    spawn: Spawn, short_dir: Path
) -> None:
    """The lock file is the parent's (and the embedded server's, which must outlive it):
    a worker holding a copy kept the directory locked after a SIGKILL of the parent until
    the last worker had drained, so a restart failed with "in use" meanwhile."""
    data_dir = short_dir / "data"
    server = spawn("--workers", "2", "--data-dir", str(data_dir))
    server.wait_serving()
    workers = server.workers()
    assert len(workers) == 2, (workers, server.tail())
    lock = str(data_dir / ".lock")

    def holds_lock(pid: int) -> bool:
        fds = Path(f"/proc/{pid}/fd")
        return any(os.path.realpath(fd) == lock for fd in fds.iterdir())

    assert holds_lock(server.process.pid)
    assert holds_lock(embedded_pid(data_dir))
    assert not [pid for pid in workers if holds_lock(pid)]
    assert server.stop() == 0, server.tail()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_to_the_parent_drains_every_worker(
    spawn: Spawn, redis_server: RedisProcess, sig: signal.Signals
) -> None:
    server = spawn("--workers", "2", "--redis-url", redis_server.url)
    server.wait_serving()
    workers = server.workers()
    assert server.stop(sig) == 0, server.tail()
    assert server.log().count("stopped") == 2, server.tail()
    assert not any(process_alive(pid) for pid in workers)


def test_a_worker_that_dies_is_replaced(spawn: Spawn, redis_server: RedisProcess) -> None:
    server = spawn("--workers", "2", "--redis-url", redis_server.url)
    server.wait_serving()
    first, second = server.workers()
    os.kill(first, signal.SIGKILL)
    eventually(
        lambda: len(server.workers()) == 2 and first not in server.workers(),
        f"a new worker replaces {first}{server.tail()}",
    )
    assert second in server.workers()
    server.wait_for_log("restarted worker")
    eventually(
        lambda: "serving threads.v1.ThreadService" in server.log().split("restarted worker")[1],
        f"the new worker serves{server.tail()}",
    )
    create_thread(server)
    assert server.stop() == 0, server.tail()


def test_sigkill_of_the_parent_stops_the_workers(spawn: Spawn, redis_server: RedisProcess) -> None:
    server = spawn("--workers", "2", "--redis-url", redis_server.url)
    server.wait_serving()
    workers = server.workers()
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    eventually(
        lambda: not any(process_alive(pid) for pid in workers),
        f"workers {workers} exit after their parent's SIGKILL{server.tail()}",
    )


@pytest.mark.parametrize("before", ["2", "1"])
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_restart_on_the_same_ports_is_immediate(
    spawn: Spawn, redis_server: RedisProcess, transport: str, before: str
) -> None:
    """Stopped while a client is connected, a server closes that connection first, which
    then waits in TIME_WAIT on the server's port for up to a minute: the next server,
    started at once with --workers 2, serves all the same (issue 19). From --workers 1 too,
    whose connections lack SO_REUSEPORT."""
    grpc_port, http_port = free_port(), free_port()
    args = ["--redis-url", redis_server.url, "--listen", f"127.0.0.1:{grpc_port}"]
    args += ["--http-listen", f"127.0.0.1:{http_port}"]
    first = spawn("--workers", before, *args, port=grpc_port)
    first.wait_serving()
    port = grpc_port if transport == "grpc" else http_port
    # An idle client's connection, left open: the stopping server closes it first.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        _talk(client, transport)  # so a worker has accepted it, not just the kernel
        assert first.stop() == 0, first.tail()
        while client.recv(65536):  # to the server's FIN: closing then sends ours, not a RST
            pass
    # The server's socket moves to TIME_WAIT when our FIN reaches it, a moment after close.
    eventually(
        lambda: time_wait_on(port) > 0, "a connection in TIME_WAIT (else the test proves nothing)"
    )

    second = spawn("--workers", "2", *args, port=grpc_port)
    second.wait_serving()
    answer = httpx.get(f"http://127.0.0.1:{http_port}/ok", timeout=10)
    assert answer.status_code == 200, second.tail()
    assert second.stop() == 0, second.tail()


# HTTP/2's connection preface and an empty SETTINGS frame (RFC 9113 3.4): the server answers
# with its own SETTINGS frame.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _talk(client: socket.socket, transport: str) -> None:
    """One exchange on a raw connection: an HTTP/2 preface (gRPC) or GET /ok (HTTP/1.1,
    kept alive), and the start of the server's answer."""
    if transport == "grpc":
        client.sendall(_HTTP2_PREFACE)
        assert len(client.recv(9)) > 0
    else:
        client.sendall(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("flag", ["--listen", "--http-listen"])
@pytest.mark.parametrize("reuse_address", [False, True], ids=["plain", "so_reuseaddr"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_taken_by_another_process_fails_clearly(
    spawn: Spawn, redis_server: RedisProcess, workers: str, reuse_address: bool, flag: str
) -> None:
    """gRPC's port or HTTP's, also when the other server set SO_REUSEADDR, as most do (and
    as our probe does): exit 1 with a line that names the port and the flag to change."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse_address))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc_port = {"port": port} if flag == "--listen" else {}
        server = spawn(
            "--workers", workers, "--redis-url", redis_server.url, flag, f"127.0.0.1:{port}",
            **grpc_port,
        )  # fmt: skip
        assert server.wait_exit() == 1, server.tail()
    log = server.log()
    assert f"cannot listen on 127.0.0.1:{port}" in log and flag in log, server.tail()
    assert "Traceback" not in log, server.tail()


def _run_supervisor(script: str) -> subprocess.CompletedProcess[str]:
    """Runs a Supervisor in a fresh interpreter (forking inside pytest would copy its threads)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_supervisor_gives_up_on_workers_that_keep_dying() -> None:
    result = _run_supervisor(
        """
        import logging, sys
        from threads_server.ops.workers import Supervisor
        logging.basicConfig(level=logging.INFO)
        sys.exit(Supervisor(2, lambda index: 7, max_restarts=3).run())
        """
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("exited with 7 while serving") == 4, result.stderr
    assert "giving up" in result.stderr, result.stderr


def test_supervisor_gives_up_at_once_when_a_worker_cannot_listen() -> None:
    result = _run_supervisor(
        """
        import sys
        from threads_server.ops.workers import EXIT_LISTEN_FAILED, Supervisor
        sys.exit(Supervisor(1, lambda index: EXIT_LISTEN_FAILED).run())
        """
    )
    assert result.returncode == 1, result.stderr
    assert "restarted" not in result.stderr


def test_reserve_port_resolves_port_0_and_keeps_others_off_it() -> None:
    holder, listen = reserve_port("127.0.0.1:0")
    with holder:
        host, port = split_listen(listen)
        assert (host, holder.getsockname()[1]) == ("127.0.0.1", port)
        assert port != 0
        with socket.socket() as intruder, pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            reserve_port(listen)
        # A worker (SO_REUSEPORT) can still bind and listen beside the holder.
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:50051", ("127.0.0.1", 50051)), ("[::1]:7", ("::1", 7)), (":80", ("", 80))],
)
def test_split_listen(listen: str, expected: tuple[str, int]) -> None:
    assert split_listen(listen) == expected


@pytest.mark.parametrize("listen", ["localhost", "host:port", "127.0.0.1:"])
def test_split_listen_rejects_addresses_without_a_port(listen: str) -> None:
    with pytest.raises(ListenError, match="not host:port"):
        split_listen(listen)
