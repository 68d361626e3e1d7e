"""``python -m threads_server`` as a real process: startup, signals, persistence, CLI errors.

Every server runs as a subprocess of ``sys.executable -m server`` from the repository
root, with its stdout/stderr in a file under the test's tmp_path (the tail of which is
in every assertion message), and is killed at teardown if a test left it running.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.redis_process import RedisProcess, free_port, process_alive, unix_socket_accepts
from tests.rpc_helpers import entry
from tests.server_process import (
    REPO,
    SERVING,
    Spawn,
    create_thread,
    embedded_pid,
    environment,
    eventually,
    tcp_accepts,
)
from threads_server.ops.config import Settings, env_name
from threads_server.store.keys import ThreadKeys
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

ALL_VARIABLES = [env_name(f.name) for f in dataclasses.fields(Settings)]


def _run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threads_server", *args],
        cwd=REPO,
        env=environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- (a) embedded default: persistence across restarts, child cleanup -----------------


def test_embedded_default_persists_across_sigterm_and_restart(
    spawn: Spawn, short_dir: Path
) -> None:
    data_dir = short_dir / "data"
    first = spawn("--data-dir", str(data_dir))
    first.wait_serving()
    assert "starting embedded server" in first.log(), first.tail()
    with first.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        metadata = struct_pb2.Struct()
        metadata.update({"title": "persisted"})
        created = stub.Create(
            pb.CreateRequest(metadata=metadata, history=[entry(i=0), entry(i=1)]), timeout=10
        ).thread
        stub.Append(pb.AppendRequest(thread_id=created.thread_id, entries=[entry(i=2)]), timeout=10)
        thread = stub.Get(pb.GetRequest(thread_id=created.thread_id), timeout=10).thread
        history = list(
            stub.GetHistory(pb.GetHistoryRequest(thread_id=created.thread_id), timeout=10).entries
        )
    assert thread.history_length == 3
    sock = data_dir / "redis.sock"
    child = embedded_pid(data_dir)

    assert first.stop(signal.SIGTERM) == 0, first.tail()
    assert "stopped" in first.log(), first.tail()
    # The embedded server went with it.
    assert not process_alive(child), f"embedded server {child} outlived the gRPC server"
    assert not unix_socket_accepts(sock), f"{sock} still accepts connections"
    assert (data_dir / "appendonlydir").is_dir()

    second = spawn("--data-dir", str(data_dir))
    second.wait_serving()
    with second.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        assert stub.Get(pb.GetRequest(thread_id=created.thread_id), timeout=10).thread == thread
        again = stub.GetHistory(pb.GetHistoryRequest(thread_id=created.thread_id), timeout=10)
        assert list(again.entries) == history
    assert second.stop(signal.SIGTERM) == 0, second.tail()


def test_sigkill_of_the_server_takes_the_embedded_server_down(
    spawn: Spawn, short_dir: Path
) -> None:
    """No clean shutdown: the kernel's parent-death signal stops the child, the lock goes."""
    data_dir = short_dir / "data"
    first = spawn("--data-dir", str(data_dir))
    first.wait_serving()
    thread_id = create_thread(first)
    child = embedded_pid(data_dir)

    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        eventually(lambda: not process_alive(child), f"embedded server {child} exits after SIGKILL")
    finally:
        if process_alive(child):  # do not leak it when this test fails
            os.kill(child, signal.SIGKILL)

    second = spawn("--data-dir", str(data_dir))
    second.wait_serving()
    with second.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        got = stub.Get(pb.GetRequest(thread_id=thread_id), timeout=10).thread
        assert got.history_length == 1
    assert second.stop() == 0, second.tail()


def test_sigint_also_stops_cleanly(spawn: Spawn, short_dir: Path) -> None:
    data_dir = short_dir / "data"
    server = spawn("--data-dir", str(data_dir))
    server.wait_serving()
    child = embedded_pid(data_dir)
    assert server.stop(signal.SIGINT) == 0, server.tail()
    assert "stopped" in server.log(), server.tail()
    assert not process_alive(child)


# --- (b) SIGTERM drains in-flight calls -----------------------------------------------


def _blocked_in_redis(client: redis.Redis, command: str) -> bool:
    """Whether a connection of the server (client name 'threads') waits in Redis on ``command``.

    Under CLIENT PAUSE, both Redis 7.0 and Valkey 9 list it with flags=b and cmd=<command>.
    """
    return any(
        c.get("name") == "threads" and "b" in c.get("flags", "") and c.get("cmd") == command
        for c in client.client_list()
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_drains_an_in_flight_call(
    spawn: Spawn, own_redis: RedisProcess, workers: str
) -> None:
    server = spawn("--redis-url", own_redis.url, "--grace-seconds", "30", "--workers", workers)
    server.wait_serving()
    with (
        redis.Redis.from_url(own_redis.url, socket_timeout=10) as raw,
        server.channel() as channel,
    ):
        stub = pb_grpc.ThreadServiceStub(channel)
        thread_id = stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=10).thread.thread_id

        # A long pause, lifted by hand once shutdown is under way: the call is certainly
        # in flight when SIGTERM arrives, whatever the speed of the machine.
        raw.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
        try:
            future = stub.Append.future(
                pb.AppendRequest(thread_id=thread_id, entries=[entry(i=1)]), timeout=60
            )
            eventually(
                lambda: _blocked_in_redis(raw, "evalsha"),
                f"the Append blocked in Redis{server.tail()}",
            )
            server.process.send_signal(signal.SIGTERM)
            server.wait_for_log("shutting down")
            # The gRPC server has stopped taking connections: it is draining.
            eventually(lambda: not tcp_accepts(server.port), "the listener closed")
            assert not future.done(), "the Append finished while Redis was still paused"
        finally:
            raw.execute_command("CLIENT", "UNPAUSE")

        response = future.result(timeout=30)
        assert response.history_length == 2
        assert server.wait_exit() == 0, server.tail()
        # Stored exactly once.
        assert raw.llen(ThreadKeys(thread_id).history) == 2
    assert "stopped" in server.log(), server.tail()


# --- (c) flags override environment variables ----------------------------------------


def test_flags_override_environment_variables(spawn: Spawn, short_dir: Path) -> None:
    env_port, flag_port = free_port(), free_port()
    while flag_port == env_port:
        flag_port = free_port()
    env_dir, flag_dir = short_dir / "env", short_dir / "flag"
    server = spawn(
        "--listen",
        f"127.0.0.1:{flag_port}",
        "--data-dir",
        str(flag_dir),
        "--log-level",
        "info",
        port=flag_port,
        env={
            "THREADS_LISTEN": f"127.0.0.1:{env_port}",
            "THREADS_DATA_DIR": str(env_dir),
            "THREADS_LOG_LEVEL": "WARNING",
            # No flag for this one: the variable applies.
            "THREADS_GRACE_SECONDS": "2.5",
        },
    )
    server.wait_serving()
    assert not tcp_accepts(env_port), "the server listens on THREADS_LISTEN despite --listen"
    assert unix_socket_accepts(flag_dir / "redis.sock")
    assert not env_dir.exists(), "THREADS_DATA_DIR used despite --data-dir"
    assert server.stop() == 0, server.tail()
    log = server.log()
    # INFO lines are there (--log-level info beat THREADS_LOG_LEVEL=WARNING) ...
    assert f"on 127.0.0.1:{flag_port}" in log, server.tail()
    # ... and the grace period came from the environment.
    assert "draining in-flight RPCs for up to 2.5s" in log, server.tail()


def test_environment_alone_configures_the_server(
    spawn: Spawn, redis_server: RedisProcess, short_dir: Path
) -> None:
    port = free_port()
    server = spawn(
        port=port,
        env={
            "THREADS_LISTEN": f"127.0.0.1:{port}",
            "THREADS_REDIS_URL": redis_server.url,
            "THREADS_DATA_DIR": str(short_dir / "unused"),
        },
    )
    server.wait_serving()
    assert not (short_dir / "unused").exists(), "started an embedded server despite a URL"
    assert "embedded" not in server.log(), server.tail()
    assert server.stop() == 0, server.tail()


@pytest.mark.parametrize(
    ("args", "loop"), [([], "uvloop"), (["--event-loop", "asyncio"], "asyncio")]
)
def test_the_event_loop_is_uvloop_unless_asked_otherwise(
    spawn: Spawn, redis_server: RedisProcess, args: list[str], loop: str
) -> None:
    port = free_port()
    server = spawn(
        "--listen",
        f"127.0.0.1:{port}",
        "--redis-url",
        redis_server.url,
        "--workers",
        "2",
        *args,
        port=port,
    )
    server.wait_serving()
    for _ in range(4):  # calls reach both workers' loops (SO_REUSEPORT spreads connections)
        thread_id = create_thread(server)
        with server.channel() as channel:
            stub = pb_grpc.ThreadServiceStub(channel)
            copied = stub.Copy(pb.CopyRequest(thread_id=thread_id), timeout=10).thread
        assert copied.history_length == 1 and copied.copied_from == thread_id
    assert server.stop() == 0, server.tail()
    lines = [line for line in server.log().splitlines() if "event loop: " in line]
    assert len(lines) == 2, server.tail()  # one per worker
    assert all(line.split("event loop: ")[1].split()[0] == loop for line in lines), lines


# --- (d) --help and invalid values ----------------------------------------------------


def test_help_exits_0_and_names_every_variable() -> None:
    result = _run(["--help"])
    assert result.returncode == 0, result.stderr
    for variable in ALL_VARIABLES:
        assert variable in result.stdout, f"{variable} missing from --help:\n{result.stdout}"


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--grace-seconds", "-1"], {}, "--grace-seconds"),
        (["--max-message-bytes", "lots"], {}, "--max-message-bytes"),
        ([], {"THREADS_APPENDFSYNC": "bogus"}, "THREADS_APPENDFSYNC"),
        ([], {"THREADS_HEALTH_INTERVAL_SECONDS": "0"}, "THREADS_HEALTH_INTERVAL_SECONDS"),
    ],
)
def test_invalid_value_exits_nonzero_naming_the_setting(
    args: list[str], env: dict[str, str], named: str, short_dir: Path
) -> None:
    data_dir = short_dir / "data"
    result = _run(["--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir), *args], env)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not data_dir.exists(), "started despite an invalid setting"


# --- (e) one server per data directory, one per port ----------------------------------


def test_second_server_on_the_same_data_dir_fails_clearly(spawn: Spawn, short_dir: Path) -> None:
    data_dir = short_dir / "data"
    first = spawn("--data-dir", str(data_dir))
    first.wait_serving()
    thread_id = create_thread(first)

    second = spawn("--data-dir", str(data_dir))
    assert second.wait_exit() == 1, second.tail()
    log = second.log()
    assert "in use" in log and str(data_dir) in log, second.tail()
    assert "Traceback" not in log, second.tail()
    assert not tcp_accepts(second.port)

    # The first server and its embedded store are untouched.
    with first.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        assert stub.Get(pb.GetRequest(thread_id=thread_id), timeout=10).thread.history_length == 1
    assert first.stop() == 0, first.tail()


def test_port_in_use_exits_1_and_stops_its_embedded_server(spawn: Spawn, short_dir: Path) -> None:
    first = spawn("--data-dir", str(short_dir / "first"))
    first.wait_serving()

    data_dir = short_dir / "second"
    second = spawn(
        "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{first.port}", port=first.port
    )
    assert second.wait_exit() == 1, second.tail()
    assert f"127.0.0.1:{first.port}" in second.log(), second.tail()
    assert "Traceback" not in second.log(), second.tail()
    # Its embedded server was started, then stopped on the way out; the lock is free.
    assert (data_dir / "appendonlydir").is_dir(), second.tail()
    assert not unix_socket_accepts(data_dir / "redis.sock")
    third = spawn("--data-dir", str(data_dir))
    third.wait_serving()
    assert third.stop() == 0, third.tail()

    # The first server kept its port.
    with first.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    assert first.stop() == 0, first.tail()


def test_missing_embedded_binary_exits_1_with_a_clear_message(short_dir: Path) -> None:
    missing = short_dir / "no-such-valkey-server"
    result = _run(
        [
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(short_dir / "data"),
            "--embedded-server",
            str(missing),
        ]
    )
    assert result.returncode == 1, result.stderr
    assert str(missing) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
