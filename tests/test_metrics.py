"""Prometheus metrics: exact sums over ``--workers 2`` (and across a worker's SIGKILL and
replacement), go-grpc-prometheus's names and codes, HTTP by route template, the service's
own metrics, ``--metrics off``, and Debian's real ``prometheus`` server scraping a running
service. Servers are real ``python -m threads_server`` subprocesses, or in-process
ThreadsServers whose counts are read as deltas (the test process keeps one registry)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import NOT_SERVING, SERVING, StartServer
from tests.redis_process import RedisProcess, free_port
from tests.rpc_helpers import entry, struct
from tests.server_process import (
    ServerProcess,
    Spawn,
    connections_per_process,
    create_thread,
    eventually,
)
from threads_server.ops import metrics
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

MISSING_ID = "00000000-0000-4000-8000-000000000000"
CONNECTIONS = 32  # all on one of 2 workers: odds of 2 in 2**32
PROMETHEUS = "/usr/bin/prometheus"
_REQUIRED = [b for b in os.environ.get("THREADS_TEST_BACKENDS", "").split(",") if b]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(server: ServerProcess) -> Samples:
    """One scrape over a new connection (any worker may answer)."""
    response = httpx.get(f"{server.http_url}/metrics", timeout=10, headers={"Connection": "close"})
    assert response.status_code == 200, (response.text, server.tail())
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a label set never used is not exported)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def grpc_labels(method: str) -> dict[str, str]:
    return {"grpc_type": "unary", "grpc_service": "threads.v1.ThreadService", "grpc_method": method}


def handled(samples: Samples, method: str, code: str) -> float:
    return value(samples, "grpc_server_handled_total", **grpc_labels(method), grpc_code=code)


def calls_over_many_connections(server: ServerProcess, thread_id: str) -> None:
    """Per connection: 2 Gets, 1 Get of a missing thread (NotFound), 1 Copy; every worker
    holds some of the connections."""
    channels = [
        grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]
    try:
        for channel in channels:
            stub = pb_grpc.ThreadServiceStub(channel)
            for _ in range(2):
                stub.Get(pb.GetRequest(thread_id=thread_id), timeout=10)
            with pytest.raises(grpc.RpcError) as missing:
                stub.Get(pb.GetRequest(thread_id=MISSING_ID), timeout=10)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            stub.Copy(pb.CopyRequest(thread_id=thread_id), timeout=10)
        per_worker = connections_per_process(server.port, server.workers())
        assert sum(per_worker) == CONNECTIONS and all(per_worker), (per_worker, server.tail())
    finally:
        for channel in channels:
            channel.close()


def metrics_dir_of(server: ServerProcess) -> Path:
    found = re.search(r"metrics files .* in (\S+)", server.log())
    assert found, server.tail()
    return Path(found.group(1))


def assert_first_round(samples: Samples, thread_id: str, n: int) -> None:
    """What the first round of calls (``n`` connections) adds up to."""
    assert handled(samples, "Get", "OK") == 2 * n, "see the server log"
    assert handled(samples, "Get", "NotFound") == n
    assert handled(samples, "Copy", "OK") == n
    assert handled(samples, "Create", "OK") == 1
    assert handled(samples, "Append", "OK") == 1
    started = value(samples, "grpc_server_started_total", **grpc_labels("Get"))
    assert started == 3 * n
    latency = value(samples, "grpc_server_handling_seconds_count", **grpc_labels("Get"))
    assert latency == 3 * n
    route = {"route": "/threads/{thread_id}", "method": "GET", "status": "200"}
    assert value(samples, "threads_http_requests_total", **route) == n
    assert value(samples, "threads_http_request_duration_seconds_count", **route) == n
    assert not any(thread_id in str(labels) for _, labels in samples), "an id as a label"
    assert value(samples, "threads_copy_history_length_count") == n
    assert value(samples, "threads_copy_history_length_sum") == 4 * n  # 3 created + 1
    assert value(samples, "threads_entries_appended_total") == 1
    copies = value(samples, "threads_redis_script_duration_seconds_count", script="copy")
    assert copies == n
    assert value(samples, "threads_health_serving") == 1
    [(name, info)] = [key for key in samples if key[0] == "threads_build_info"]
    assert dict(info)["version"] == metrics.VERSION != "unknown"
    assert samples[(name, info)] == 1
    assert dict(info)["server"] in ("redis", "valkey"), info


def test_one_scrape_sums_every_worker_and_survives_a_worker_replaced(
    spawn: Spawn, redis_server: RedisProcess
) -> None:
    server = spawn("--workers", "2", "--redis-url", redis_server.url)
    server.wait_serving()
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        history = [entry(i=i) for i in range(3)]
        thread_id = stub.Create(pb.CreateRequest(history=history), timeout=10).thread.thread_id
        stub.Append(pb.AppendRequest(thread_id=thread_id, entries=[entry(i=3)]), timeout=10)

    calls_over_many_connections(server, thread_id)
    # HTTP: new connections, so both workers answer some; the id must not become a label.
    for _ in range(CONNECTIONS):
        response = httpx.get(
            f"{server.http_url}/threads/{thread_id}", headers={"Connection": "close"}, timeout=10
        )
        assert response.status_code == 200, response.text

    n = CONNECTIONS
    for _ in range(4):  # whichever worker answers, the same sums
        assert_first_round(scrape(server), thread_id, n)

    # A worker SIGKILLed and replaced: its counts stay in the sum, the new one adds to it.
    directory = metrics_dir_of(server)
    killed, survivor = server.workers()
    assert (directory / f"gauge_livemin_{killed}.db").exists()
    os.kill(killed, signal.SIGKILL)
    eventually(
        lambda: len(server.workers()) == 2 and killed not in server.workers(),
        f"a new worker replaces {killed}{server.tail()}",
    )
    server.wait_for_log("restarted worker")
    eventually(
        lambda: "serving threads.v1.ThreadService" in server.log().split("restarted worker")[1],
        f"the new worker serves{server.tail()}",
    )
    # The dead worker's live gauges are gone (mark_process_dead); the survivor's remain.
    assert not (directory / f"gauge_livemin_{killed}.db").exists(), server.tail()
    assert (directory / f"gauge_livemin_{survivor}.db").exists()
    calls_over_many_connections(server, thread_id)
    for _ in range(4):
        samples = scrape(server)
        assert handled(samples, "Get", "OK") == 4 * n, server.tail()
        assert handled(samples, "Get", "NotFound") == 2 * n
        assert handled(samples, "Copy", "OK") == 2 * n
        assert handled(samples, "Create", "OK") == 1
        assert value(samples, "threads_copy_history_length_count") == 2 * n
        assert value(samples, "threads_health_serving") == 1
    assert server.stop() == 0, server.tail()
    assert not directory.exists(), "the parent removes the metrics directory on exit"


def test_the_cached_pid_follows_a_fork() -> None:
    """Multiprocess mode files values by pid; the pid is cached (os.getpid is a system call
    per inc), so a process forked after import must see its own, or it would write into
    its parent's file."""
    assert metrics._process_id() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, str(metrics._process_id()).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        reported = int(pipe.read())
    os.waitpid(child, 0)
    assert reported == child != os.getpid()


def test_grpc_codes_carry_go_grpc_names() -> None:
    expected = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ]
    assert [metrics.CODE_NAMES[code] for code in grpc.StatusCode] == expected


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_errors_are_counted_by_code_and_http_by_template(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    started = await start_server(settings_for_test(http_listen="127.0.0.1:0"), redis_server.url)
    stub = pb_grpc.ThreadServiceStub(started.channel)
    invalid = {**grpc_labels("Get"), "grpc_code": "InvalidArgument"}
    before = _sample("grpc_server_handled_total", **invalid)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Get(pb.GetRequest(thread_id="not-a-uuid"), timeout=10)
    assert _sample("grpc_server_handled_total", **invalid) == before + 1

    route = {"route": "/threads/{thread_id}", "method": "GET", "status": "404"}
    unmatched = {"route": "(unmatched)", "method": "GET", "status": "404"}
    counts = (
        _sample("threads_http_requests_total", **route),
        _sample("threads_http_requests_total", **unmatched),
    )
    base = f"http://127.0.0.1:{started.server.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get(f"/threads/{MISSING_ID}")).status_code == 404
        assert (await http.get("/no/such/route")).status_code == 404
        # Over HTTP a call is counted by route, not as a gRPC call.
        assert _sample("grpc_server_handled_total", **invalid) == before + 1
        assert _sample("threads_http_requests_total", **route) == counts[0] + 1
        assert _sample("threads_http_requests_total", **unmatched) == counts[1] + 1
        # Open without a token, like /ok.
        text = (await http.get("/metrics")).text
    assert "grpc_server_handled_total" in text


async def test_search_count_and_the_reads_of_a_page_are_script_calls(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    """Every script call is a sample of threads_redis_script_duration_seconds: 3 Creates,
    5 Searches and 5 Counts on one Redis are 3 create calls and one search and one count
    call per query (every shard in one call), and no get call (the page comes with its
    threads)."""
    started = await start_server(settings_for_test(), own_redis.url)
    stub = pb_grpc.ThreadServiceStub(started.channel)
    names = ("create", "search", "count", "get")
    before = {s: _sample("threads_redis_script_duration_seconds_count", script=s) for s in names}
    for i in range(3):
        await stub.Create(pb.CreateRequest(metadata=struct(i=i)), timeout=10)
    for _ in range(5):
        page = await stub.Search(pb.SearchRequest(page_size=2), timeout=10)
        assert len(page.threads) == 2
        assert (await stub.Count(pb.CountRequest(), timeout=10)).count == 3
    after = {s: _sample("threads_redis_script_duration_seconds_count", script=s) for s in names}
    assert {s: after[s] - before[s] for s in names} == {
        "create": 3,
        "search": 5,
        "count": 5,
        "get": 0,
    }


def test_metrics_off_records_nothing(spawn: Spawn, redis_server: RedisProcess) -> None:
    server = spawn("--workers", "1", "--redis-url", redis_server.url, "--metrics", "off")
    server.wait_serving()
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        stub.Create(pb.CreateRequest(), timeout=10)
    samples = scrape(server)
    assert handled(samples, "Create", "OK") == 0, server.tail()
    recorded = {k: v for k, v in samples.items() if k[0].startswith(("threads_", "grpc_")) and v}
    assert not recorded, recorded
    assert server.stop() == 0, server.tail()


@pytest.fixture
def prometheus_binary() -> str:
    if not Path(PROMETHEUS).exists():
        if "redis" in _REQUIRED:  # CI installs Debian's prometheus with redis-server
            pytest.fail(f"{PROMETHEUS} is required in CI (apt-get install prometheus)")
        pytest.skip(f"{PROMETHEUS} not installed here (apt-get install prometheus)")
    return PROMETHEUS


@contextlib.contextmanager
def running_prometheus(binary: str, workdir: Path, target: str) -> Iterator[str]:
    """Prometheus scraping ``target``'s /metrics every second; yields its base URL."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: threads\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def query(base: str, promql: str) -> float | None:
    """The single value of an instant query; None while Prometheus has none (yet)."""
    try:
        response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.TransportError:
        return None  # still starting
    if response.status_code != 200:
        return None
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_a_real_prometheus_scrapes_the_sums(
    prometheus_binary: str, spawn: Spawn, redis_server: RedisProcess, tmp_path: Path
) -> None:
    server = spawn("--workers", "2", "--redis-url", redis_server.url)
    server.wait_serving()
    thread_id = create_thread(server)
    copies, missing = 7, 3
    for _ in range(copies):  # each its own connection, so both workers serve some
        with grpc.insecure_channel(
            server.target, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            pb_grpc.ThreadServiceStub(channel).Copy(pb.CopyRequest(thread_id=thread_id), timeout=10)
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        for _ in range(missing):
            with pytest.raises(grpc.RpcError):
                stub.Get(pb.GetRequest(thread_id=MISSING_ID), timeout=10)

    with running_prometheus(prometheus_binary, tmp_path, f"127.0.0.1:{server.http_port}") as url:
        wanted = {
            'sum(grpc_server_handled_total{grpc_method="Copy"})': copies,
            'sum(grpc_server_handled_total{grpc_method="Get",grpc_code="NotFound"})': missing,
            "sum(threads_copy_history_length_count)": copies,
            'up{job="threads"}': 1,
        }
        seen: dict[str, float | None] = {}

        def all_match() -> bool:
            seen.update({promql: query(url, promql) for promql in wanted})
            return all(seen[promql] == count for promql, count in wanted.items())

        eventually(
            all_match,
            f"Prometheus reports {wanted}; last seen {seen}{server.tail()}\n"
            + (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:],
            bound=90,
        )
    assert server.stop() == 0, server.tail()


async def test_health_gauge_follows_redis(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(), own_redis.url)
    await app.wait_health(SERVING)
    assert _sample("threads_health_serving") == 1
    await asyncio.to_thread(own_redis.stop)
    await app.wait_health(NOT_SERVING)
    assert _sample("threads_health_serving") == 0
    await asyncio.to_thread(own_redis.start)
    await app.wait_health(SERVING)
    assert _sample("threads_health_serving") == 1
