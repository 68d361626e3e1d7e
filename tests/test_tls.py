"""TLS and mutual TLS on the gRPC port, with real handshakes against real servers.

In-process ThreadsServers (``start_server``) cover what a client can and cannot do; the
``python -m threads_server`` subprocesses cover ``--workers`` (every worker serves TLS) and the
start-up errors. Certificates come from ``tests/tls_certs.py``, made once per session.
Every refusal is checked next to a client that the same server accepts, so none of them
can pass against a server that refuses everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import SERVING, Started, StartServer
from tests.redis_process import RedisProcess, free_port
from tests.server_process import (
    REPO,
    ServerProcess,
    Spawn,
    assert_spread_over_workers,
    create_thread,
    environment,
    eventually,
)
from tests.tls_certs import Certs, KeyPair, generate
from threads_server.ops.config import Settings
from threads_server.ops.tls import TLSConfigError
from threads_server.server import SERVICE_NAME, ThreadsServer
from threads_service_client import get_client
from threads_service_client._tls import TLS
from threads_service_client.exceptions import UnavailableError

OK, UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return generate(tmp_path_factory.mktemp("tls"))


def _tls_settings(certs: Certs, *, pair: KeyPair | None = None, mutual: bool = False) -> Settings:
    pair = certs.server if pair is None else pair
    return settings_for_test(
        tls_cert_file=pair.cert,
        tls_key_file=pair.key,
        tls_client_ca_file=certs.ca if mutual else None,
    )


def _target(started: Started) -> str:
    return f"127.0.0.1:{started.server.port}"


async def _health_code(target: str, tls: TLS | None) -> grpc.StatusCode:
    """The status of one health check over a new channel: OK, or why the call failed."""
    channel = (
        aio.insecure_channel(target)
        if tls is None
        else aio.secure_channel(target, tls.channel_credentials(), tls.channel_options())
    )
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        except aio.AioRpcError as exc:
            return exc.code()
    return OK


# --- TLS: ThreadService, health and reflection over an encrypted port -----------------


async def test_tls_serves_thread_service_health_and_reflection(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs
) -> None:
    trusting = TLS(root_certificates=str(certs.ca))
    started = await start_server(
        _tls_settings(certs), redis_server.url, credentials=trusting.channel_credentials()
    )
    await started.wait_health(SERVING)

    reflection = reflection_pb2_grpc.ServerReflectionStub(started.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [listed] = [reply async for reply in reflection.ServerReflectionInfo(iter([request]))]
    assert SERVICE_NAME in {service.name for service in listed.list_services_response.service}

    # The CA given as PEM bytes this time, through the client library.
    tls = TLS(root_certificates=certs.ca.read_bytes())
    async with get_client(
        _target(started), credentials=tls.channel_credentials(), options=tls.channel_options()
    ) as client:
        thread = await client.threads.create(history=[{"text": "hi"}])
        assert await client.threads.append(thread.thread_id, [{"text": "hello"}]) == 2
        copy = await client.threads.copy(thread.thread_id)
        entries = [e.data["text"] async for e in client.threads.iter_history(copy.thread_id)]
    assert entries == ["hi", "hello"]


async def test_plaintext_client_cannot_call_a_tls_port(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs
) -> None:
    trusting = TLS(root_certificates=certs.ca)
    started = await start_server(
        _tls_settings(certs), redis_server.url, credentials=trusting.channel_credentials()
    )
    assert await _health_code(_target(started), None) == UNAVAILABLE
    async with get_client(_target(started)) as client:
        with pytest.raises(UnavailableError):
            await client.threads.create()
    assert await _health_code(_target(started), trusting) == OK


@pytest.mark.parametrize("roots", ["other CA", "system roots"])
async def test_client_that_does_not_trust_the_servers_ca_is_refused(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs, roots: str
) -> None:
    trusting = TLS(root_certificates=certs.ca)
    started = await start_server(
        _tls_settings(certs), redis_server.url, credentials=trusting.channel_credentials()
    )
    distrusting = TLS(root_certificates=certs.other_ca if roots == "other CA" else None)
    assert await _health_code(_target(started), distrusting) == UNAVAILABLE
    assert await _health_code(_target(started), trusting) == OK


# --- server_name: the name checked against the server's certificate -------------------


async def test_server_name_replaces_the_name_checked(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs
) -> None:
    """The certificate names 127.0.0.1 too, so only the override can make this fail."""
    trusting = TLS(root_certificates=certs.ca)
    started = await start_server(
        _tls_settings(certs), redis_server.url, credentials=trusting.channel_credentials()
    )
    wrong = TLS(root_certificates=certs.ca, server_name="wrong.example")
    assert await _health_code(_target(started), wrong) == UNAVAILABLE
    named = TLS(root_certificates=certs.ca, server_name="localhost")
    assert await _health_code(_target(started), named) == OK


async def test_server_name_localhost_dials_an_ip_the_certificate_does_not_name(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs
) -> None:
    named = TLS(root_certificates=certs.ca, server_name="localhost")
    started = await start_server(
        _tls_settings(certs, pair=certs.localhost_only),
        redis_server.url,
        credentials=named.channel_credentials(),
        options=named.channel_options(),
    )
    assert await _health_code(_target(started), TLS(root_certificates=certs.ca)) == UNAVAILABLE
    async with get_client(
        _target(started), credentials=named.channel_credentials(), options=named.channel_options()
    ) as client:
        thread = await client.threads.create(metadata={"over": "tls"})
        assert (await client.threads.get(thread.thread_id)).metadata["over"] == "tls"


# --- mutual TLS ------------------------------------------------------------------------


@pytest.mark.parametrize("client_cert", ["none", "from another CA"])
async def test_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs, client_cert: str
) -> None:
    good = TLS(certs.ca, certs.client.cert, certs.client.key)
    started = await start_server(
        _tls_settings(certs, mutual=True), redis_server.url, credentials=good.channel_credentials()
    )
    bad = (
        TLS(root_certificates=certs.ca)
        if client_cert == "none"
        else TLS(certs.ca, certs.other_client.cert, certs.other_client.key)
    )
    assert await _health_code(_target(started), bad) == UNAVAILABLE
    assert await _health_code(_target(started), good) == OK


async def test_mutual_tls_serves_a_client_with_a_good_certificate(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs
) -> None:
    good = TLS(
        root_certificates=certs.ca.read_bytes(),
        client_certificate=certs.client.cert.read_bytes(),
        client_key=certs.client.key.read_bytes(),
    )
    started = await start_server(
        _tls_settings(certs, mutual=True), redis_server.url, credentials=good.channel_credentials()
    )
    await started.wait_health(SERVING)
    async with get_client(_target(started), credentials=good.channel_credentials()) as client:
        thread = await client.threads.create(history=[{"text": "hi"}])
        assert (await client.threads.copy(thread.thread_id)).history_length == 1


async def test_unusable_tls_files_fail_start_naming_the_flag(
    redis_server: RedisProcess, certs: Certs, tmp_path: Path
) -> None:
    """Not the "cannot listen ... is another server using the port?" gRPC would give."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    settings = settings_for_test(tls_cert_file=garbage, tls_key_file=certs.server.key)
    server = ThreadsServer(settings, redis_server.url)
    try:
        with pytest.raises(TLSConfigError, match=f"^--tls-cert-file {garbage}: not PEM"):
            await server.start()
    finally:
        await server.stop(grace=0)


# --- the client's TLS settings ---------------------------------------------------------


def test_client_tls_rejects_what_cannot_work(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client_certificate and client_key go together"):
        TLS(certs.ca, client_certificate=certs.client.cert)
    with pytest.raises(ValueError, match="client_certificate and client_key go together"):
        TLS(certs.ca, client_key=certs.client.key)
    with pytest.raises(ValueError, match="server_name must not be empty"):
        TLS(certs.ca, server_name="")
    with pytest.raises(ValueError, match="a str is a file path; pass PEM content as bytes"):
        TLS(certs.ca.read_text()).channel_credentials()
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    with pytest.raises(ValueError, match=f"root_certificates \\({not_pem}\\): not PEM"):
        TLS(not_pem).channel_credentials()
    with pytest.raises(FileNotFoundError):
        TLS(tmp_path / "absent.pem").channel_credentials()
    assert TLS(certs.ca).channel_options() == []
    assert "key" not in repr(TLS(certs.ca, certs.client.cert, b"-----BEGIN PRIVATE KEY-----"))


# --- python -m threads_server: workers serve TLS; bad files fail once, clearly -----------------


def _sync_code(
    server: ServerProcess, credentials: grpc.ChannelCredentials | None
) -> grpc.StatusCode:
    target = server.target
    with (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    ) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call), exc
            return exc.code()
    return OK


def _tls_args(certs: Certs, pair: KeyPair | None = None) -> list[str]:
    pair = certs.server if pair is None else pair
    return [
        "--tls-cert-file",
        str(pair.cert),
        "--tls-key-file",
        str(pair.key),
        "--tls-client-ca-file",
        str(certs.ca),
    ]


def test_every_worker_serves_mutual_tls(
    spawn: Spawn, redis_server: RedisProcess, certs: Certs
) -> None:
    good = TLS(certs.ca, certs.client.cert, certs.client.key)
    server = spawn("--workers", "2", "--redis-url", redis_server.url, *_tls_args(certs))
    server.credentials = good.channel_credentials()
    server.wait_serving()
    workers = server.workers()
    assert len(workers) == 2, (workers, server.tail())
    # Both listening (not only the one that answered wait_serving), and both with mTLS.
    eventually(lambda: server.log().count("mutual TLS)") == 2, f"2 workers serve{server.tail()}")
    thread_id = create_thread(server)

    # 32 connections, each its own handshake, spread over both workers.
    assert_spread_over_workers(
        server,
        workers,
        thread_id,
        lambda: grpc.secure_channel(
            server.target, good.channel_credentials(), [("grpc.use_local_subchannel_pool", 1)]
        ),
    )
    assert _sync_code(server, None) == UNAVAILABLE
    assert _sync_code(server, TLS(root_certificates=certs.ca).channel_credentials()) == UNAVAILABLE
    assert server.stop() == 0, server.tail()


def test_worker_restarted_after_its_files_broke_stops_the_server_clearly(
    spawn: Spawn, redis_server: RedisProcess, certs: Certs, tmp_path: Path
) -> None:
    """A worker reads the files when it starts: a bad rotation fails it, without looping."""
    pair = KeyPair(tmp_path / "server.pem", tmp_path / "server.key")
    pair.cert.write_bytes(certs.server.cert.read_bytes())
    pair.key.write_bytes(certs.server.key.read_bytes())
    server = spawn("--workers", "2", "--redis-url", redis_server.url, *_tls_args(certs, pair))
    server.credentials = TLS(certs.ca, certs.client.cert, certs.client.key).channel_credentials()
    server.wait_serving()
    eventually(lambda: server.log().count("mutual TLS)") == 2, f"2 workers serve{server.tail()}")

    pair.cert.write_text("truncated by a bad deploy\n")
    os.kill(server.workers()[0], signal.SIGKILL)
    assert server.wait_exit() == 1, server.tail()
    log = server.log()
    assert f"--tls-cert-file {pair.cert}: not PEM certificates" in log, server.tail()
    assert log.count("restarted worker") == 1, server.tail()
    assert "giving up" in log, server.tail()
    assert "Traceback" not in log, server.tail()


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threads_server", *args],
        cwd=REPO,
        env=environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bad_files(case: str, certs: Certs, tmp_path: Path) -> tuple[list[str], str, Path]:
    """CLI arguments with one unusable TLS file, the flag to blame, and that file."""
    cert, key, ca = certs.server.cert, certs.server.key, certs.ca
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    if case == "missing key file":
        key = tmp_path / "absent.key"
        blamed = "--tls-key-file", key
    elif case == "garbage certificate":
        cert = garbage
        blamed = "--tls-cert-file", cert
    elif case == "certificate as key":
        key = certs.server.cert
        blamed = "--tls-key-file", key
    elif case == "key of another certificate":
        key = certs.client.key
        blamed = "--tls-key-file", key
    elif case == "encrypted key":
        key = tmp_path / "encrypted.key"
        loaded = serialization.load_pem_private_key(certs.server.key.read_bytes(), None)
        key.write_bytes(
            loaded.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )
        blamed = "--tls-key-file", key
    else:
        assert case == "garbage client CA", case
        ca = garbage
        blamed = "--tls-client-ca-file", ca
    args = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-client-ca-file"]
    return [*args, str(ca)], *blamed


@pytest.mark.parametrize(
    "case",
    [
        "missing key file",
        "garbage certificate",
        "certificate as key",
        "key of another certificate",
        "encrypted key",
        "garbage client CA",
    ],
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_unusable_tls_file_exits_1_with_one_line_naming_flag_and_file(
    case: str, workers: str, certs: Certs, tmp_path: Path, short_dir: Path
) -> None:
    args, flag, path = _bad_files(case, certs, tmp_path)
    data_dir = short_dir / "data"
    listen = f"127.0.0.1:{free_port()}"
    result = _run(["--listen", listen, "--data-dir", str(data_dir), "--workers", workers, *args])
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "ERROR" in line and f" {flag} {path}: " in line, line
    assert not data_dir.exists(), "started the embedded server despite the bad file"
