"""HTTP/JSON with ``--workers N``: every worker serves the shared HTTP port, SIGTERM drains
HTTP and gRPC together, and a taken HTTP port fails clearly. Real subprocesses only."""

from __future__ import annotations

import os
import signal
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.redis_process import RedisProcess, process_alive
from tests.server_process import Spawn, connections_per_process, create_thread, eventually
from tests.tls_certs import generate


def test_every_worker_answers_http_on_the_shared_port(
    spawn: Spawn, redis_server: RedisProcess
) -> None:
    server = spawn("--workers", "2", "--redis-url", redis_server.url)
    server.wait_serving()
    workers = server.workers()
    assert len(workers) == 2, (workers, server.tail())
    thread_id = create_thread(server)  # over gRPC; read over HTTP by every worker
    # 32 clients, each its own keep-alive connection; the kernel spreads them. All on one
    # of 2 workers has odds of 2 in 2**32.
    clients = [httpx.Client(base_url=server.http_url, timeout=10) for _ in range(32)]
    try:
        for client in clients:
            response = client.get(f"/threads/{thread_id}")
            assert response.status_code == 200, (response.text, server.tail())
            assert response.json()["history_length"] == 1
        per_worker = connections_per_process(server.http_port, workers)
        assert sum(per_worker) == 32, per_worker
        assert all(count > 0 for count in per_worker), per_worker
    finally:
        for client in clients:
            client.close()
    assert server.stop() == 0, server.tail()
    assert server.log().count("stopped") == 2, server.tail()
    assert not any(process_alive(pid) for pid in workers)


def test_http_off_with_an_empty_http_listen(spawn: Spawn, redis_server: RedisProcess) -> None:
    server = spawn("--workers", "1", "--redis-url", redis_server.url, "--http-listen", "")
    server.wait_serving()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.http_url}/ok", timeout=5)
    assert "HTTP/JSON" not in server.log(), server.tail()
    assert server.stop() == 0, server.tail()


def test_sigterm_lets_an_in_flight_http_call_finish(spawn: Spawn, own_redis: RedisProcess) -> None:
    """Redis frozen (SIGSTOP), so the call is held in the server; SIGTERM arrives; Redis
    resumes: the call still answers 200 and the server exits 0 (drained, not cut)."""
    server = spawn("--workers", "2", "--redis-url", own_redis.url)
    server.wait_serving()
    assert own_redis.process is not None
    redis_pid = own_redis.process.pid
    with (
        httpx.Client(base_url=server.http_url, timeout=60) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            pending = pool.submit(client.post, "/threads", json={"metadata": {"drain": True}})
            eventually(
                lambda: sum(connections_per_process(server.http_port, server.workers())) == 1,
                f"the call reaches a worker{server.tail()}",
            )
            server.process.send_signal(signal.SIGTERM)
            server.wait_for_log("draining")
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        response = pending.result(timeout=60)
    assert response.status_code == 200, (response.text, server.tail())
    assert response.json()["metadata"] == {"drain": True}
    assert server.wait_exit() == 0, server.tail()


def test_every_worker_serves_https_with_mutual_tls(
    spawn: Spawn, redis_server: RedisProcess, tmp_path: Path
) -> None:
    certs = generate(tmp_path)
    server = spawn(
        "--workers",
        "2",
        "--redis-url",
        redis_server.url,
        "--tls-cert-file",
        str(certs.server.cert),
        "--tls-key-file",
        str(certs.server.key),
        "--tls-client-ca-file",
        str(certs.ca),
    )
    eventually(
        lambda: server.log().count("serving HTTP/JSON") == 2, f"2 workers serve{server.tail()}"
    )
    assert "mutual TLS; https://" in server.log(), server.tail()
    url = server.http_url.replace("http://", "https://")
    good = ssl.create_default_context(cafile=str(certs.ca))
    good.load_cert_chain(certs.client.cert, certs.client.key)
    clients = [httpx.Client(base_url=url, verify=good, timeout=10) for _ in range(32)]
    try:
        for client in clients:
            assert client.post("/threads", json={}).status_code == 200, server.tail()
        per_worker = connections_per_process(server.http_port, server.workers())
        assert all(count > 0 for count in per_worker), per_worker
    finally:
        for client in clients:
            client.close()
    no_cert = ssl.create_default_context(cafile=str(certs.ca))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/ok", verify=no_cert, timeout=10)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.http_url}/ok", timeout=10)  # plaintext to an HTTPS port
    assert server.stop() == 0, server.tail()
