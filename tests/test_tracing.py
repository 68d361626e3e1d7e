"""Traces: the real server (``python -m threads_server``, 2 workers) exporting with the real
OTLP/gRPC exporter to a real OTLP receiver in the test (tests/otlp_receiver.py)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from tests import otlp_receiver
from tests.redis_process import RedisProcess
from tests.rpc_helpers import entry
from tests.server_process import REPO, ServerProcess, Spawn, eventually
from threads_server.store.keys import ThreadKeys
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
ERROR = trace_pb2.Status.STATUS_CODE_ERROR


@pytest.fixture
def receiver() -> Iterator[tuple[otlp_receiver.Receiver, int]]:
    server, receiver, port = otlp_receiver.start()
    yield receiver, port
    server.stop(None)


def _traceparent() -> tuple[str, bytes, bytes]:
    trace_id, span_id = secrets.token_bytes(16), secrets.token_bytes(8)
    return f"00-{trace_id.hex()}-{span_id.hex()}-01", trace_id, span_id


def _one(spans: list[trace_pb2.Span], **where: Any) -> trace_pb2.Span:
    found = [s for s in spans if all(getattr(s, key) == value for key, value in where.items())]
    assert len(found) == 1, (where, [(s.name, s.trace_id.hex()) for s in spans])
    return found[0]


def _traced(spawn: Spawn, port: int, *args: str) -> ServerProcess:
    """A server exporting its spans to the test's receiver on ``port`` (its batches every
    0.1 s), serving."""
    server = spawn(
        *args,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    server.wait_serving()
    return server


def test_spans_per_call_continue_the_callers_trace_and_carry_failures(  # noqa: PLR0915
    spawn: Spawn,
    redis_server: RedisProcess,
    receiver: tuple[otlp_receiver.Receiver, int],
) -> None:
    store, port = receiver
    server = _traced(
        spawn, port, "--workers", "2", "--redis-url", redis_server.url, "--log-format", "json",
        "--log-level", "debug",  # a successful call's line, checked at the end, is DEBUG
    )  # fmt: skip
    missing = str(uuid.uuid4())
    grpc_get, grpc_get_trace, grpc_get_parent = _traceparent()
    grpc_miss, grpc_miss_trace, _ = _traceparent()
    http_get, http_get_trace, http_get_parent = _traceparent()
    http_miss, http_miss_trace, _ = _traceparent()
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        created = stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=10).thread
        thread_id = created.thread_id
        stub.Get(pb.GetRequest(thread_id=thread_id), metadata=(("traceparent", grpc_get),))
        with pytest.raises(grpc.RpcError) as failed:
            stub.Get(pb.GetRequest(thread_id=missing), metadata=(("traceparent", grpc_miss),))
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    with httpx.Client(base_url=server.http_url, timeout=10) as http:
        assert http.get(f"/threads/{thread_id}", headers={"traceparent": http_get}).is_success
        assert (
            http.get(f"/threads/{missing}", headers={"traceparent": http_miss}).status_code == 404
        )

    def all_arrived() -> bool:
        return sum(1 for _, s in store.spans() if s.kind == SERVER) >= 5

    eventually(all_arrived, "5 SERVER spans at the receiver")
    assert server.stop() == 0
    received = store.spans()
    assert {resource["service.name"] for resource, _ in received} == {"threads"}
    spans = [span for _, span in received]
    servers = [s for s in spans if s.kind == SERVER]
    assert sorted(s.name for s in servers) == sorted(
        ["threads.v1.ThreadService/Create", *["threads.v1.ThreadService/Get"] * 4]
    )

    # A traceparent is continued: same trace id, the caller's span as parent.
    for trace_id, parent in ((grpc_get_trace, grpc_get_parent), (http_get_trace, http_get_parent)):
        rpc = _one(servers, trace_id=trace_id)
        assert rpc.parent_span_id == parent
        attrs = otlp_receiver.attributes(rpc.attributes)
        assert attrs["rpc.system"] == "grpc"
        assert attrs["rpc.service"] == "threads.v1.ThreadService"
        assert attrs["rpc.method"] == "Get"
        assert attrs["rpc.grpc.status_code"] == 0
        assert rpc.status.code != ERROR
        script = _one(spans, trace_id=trace_id, kind=CLIENT)
        assert script.parent_span_id == rpc.span_id
        assert script.name == "redis.script get"
        script_attrs = otlp_receiver.attributes(script.attributes)
        assert script_attrs["db.system"] == "redis"
        assert script_attrs["threads.script"] == "get"
        assert script_attrs["threads.hash_tag"] == ThreadKeys(thread_id).tag
        assert script_attrs["threads.outcome"] == "OK"
    http_attrs = otlp_receiver.attributes(_one(servers, trace_id=http_get_trace).attributes)
    assert http_attrs["http.route"] == "/threads/{thread_id}"
    assert http_attrs["http.request.method"] == "GET"
    assert http_attrs["http.response.status_code"] == 200

    # Without one, a new trace: a root span, whose script span is its child.
    create = _one(servers, name="threads.v1.ThreadService/Create")
    assert create.parent_span_id == b""
    assert create.trace_id not in (grpc_get_trace, grpc_miss_trace, http_get_trace, http_miss_trace)
    assert _one(spans, trace_id=create.trace_id, kind=CLIENT).parent_span_id == create.span_id

    # A failed call: status ERROR with the message, the code and the ErrorInfo reason.
    for trace_id in (grpc_miss_trace, http_miss_trace):
        rpc = _one(servers, trace_id=trace_id)
        assert rpc.status.code == ERROR
        assert missing in rpc.status.message
        attrs = otlp_receiver.attributes(rpc.attributes)
        assert attrs["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert attrs["threads.error.reason"] == "THREAD_NOT_FOUND"
        script = _one(spans, trace_id=trace_id, kind=CLIENT)
        assert otlp_receiver.attributes(script.attributes)["threads.outcome"] == "NOT_FOUND"
    assert (
        otlp_receiver.attributes(_one(servers, trace_id=http_miss_trace).attributes)[
            "http.response.status_code"
        ]
        == 404
    )

    # The JSON log line of a traced call names its trace and span.
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line.get("trace_id") == grpc_get_trace.hex()]
    assert len(logged) == 1, server.tail()
    rpc = _one(servers, trace_id=grpc_get_trace)
    assert logged[0]["span_id"] == rpc.span_id.hex()
    assert logged[0]["method"] == "Get"
    assert logged[0]["thread_id"] == thread_id


def test_search_count_and_a_pages_reads_are_script_spans_of_the_call(
    spawn: Spawn, own_redis: RedisProcess, receiver: tuple[otlp_receiver.Receiver, int]
) -> None:
    """Search and Count are one script call each on one Redis (every shard, and the page's
    threads, in one call): a CLIENT span of the RPC, sized by db.operation.batch.size."""
    store, port = receiver
    server = _traced(spawn, port, "--workers", "1", "--redis-url", own_redis.url)
    search, search_trace, _ = _traceparent()
    count, count_trace, _ = _traceparent()
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        for _ in range(3):
            stub.Create(pb.CreateRequest(), timeout=10)
        page = stub.Search(
            pb.SearchRequest(page_size=2), metadata=(("traceparent", search),), timeout=10
        )
        assert len(page.threads) == 2
        counted = stub.Count(pb.CountRequest(), metadata=(("traceparent", count),), timeout=10)
        assert counted.count == 3

    def arrived() -> bool:
        traces = {s.trace_id for _, s in store.spans() if s.kind == CLIENT}
        return {search_trace, count_trace} <= traces

    eventually(arrived, "the Search and Count script spans at the receiver")
    assert server.stop() == 0
    spans = [span for _, span in store.spans()]
    for trace_id, batches in (
        (search_trace, {"search": 1}),
        (count_trace, {"count": 1}),
    ):
        rpc = _one(spans, trace_id=trace_id, kind=SERVER)
        scripts = [s for s in spans if s.trace_id == trace_id and s.kind == CLIENT]
        assert all(s.parent_span_id == rpc.span_id for s in scripts)
        found = {}
        for span in scripts:
            attrs = otlp_receiver.attributes(span.attributes)
            assert span.name == f"redis.script {attrs['threads.script']}"
            found[attrs["threads.script"]] = attrs["db.operation.batch.size"]
        assert found == batches


def test_without_otel_variables_no_provider_is_installed(
    spawn: Spawn, redis_server: RedisProcess, request: pytest.FixtureRequest
) -> None:
    """No OTEL_* endpoint: the SDK is not even imported, and a served call exports nothing
    and logs no trace id."""
    probe = (
        "import sys; from threads_server.ops import tracing; from opentelemetry import trace; "
        "on = tracing.configure({'OTEL_SERVICE_NAME': 'x', 'OTEL_BSP_SCHEDULE_DELAY': '1'}); "
        "print(on, tracing.ENABLED, type(trace.get_tracer_provider()).__name__, "
        "'opentelemetry.sdk.trace' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.split() == ["False", "False", "ProxyTracerProvider", "False"], result
    # Were a provider installed anyway, the SDK's default endpoint is localhost:4317.
    try:
        default, store, _ = otlp_receiver.start(4317)
    except RuntimeError:
        pytest.skip("port 4317 is taken on this machine")
    request.addfinalizer(lambda: default.stop(None))
    server = spawn(
        "--workers", "1", "--redis-url", redis_server.url, "--log-format", "json",
        "--log-level", "debug",  # the successful call's line, checked below, is DEBUG
        env={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )  # fmt: skip
    server.wait_serving()
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=10)
    assert server.stop() == 0
    assert store.spans() == []
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    calls = [line for line in lines if line.get("method") == "Create"]
    assert len(calls) == 1, server.tail()
    assert "trace_id" not in calls[0]
    assert "tracing on" not in server.log()


def test_a_watch_stream_is_one_span_with_its_reads_as_children(
    spawn: Spawn,
    redis_server: RedisProcess,
    receiver: tuple[otlp_receiver.Receiver, int],
) -> None:
    store, port = receiver
    server = _traced(
        spawn, port, "--workers", "1", "--redis-url", redis_server.url, "--log-format", "json"
    )
    watch, trace_id, parent = _traceparent()
    with server.channel() as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        thread_id = stub.Create(pb.CreateRequest(history=[entry(i=0)]), timeout=10).thread.thread_id
        call = stub.Watch(
            pb.WatchRequest(thread_id=thread_id), metadata=(("traceparent", watch),), timeout=30
        )
        responses = iter(call)
        assert [e.index for e in next(responses).entries] == [0]
        stub.Append(pb.AppendRequest(thread_id=thread_id, entries=[entry(i=1)]), timeout=10)
        assert [e.index for e in next(responses).entries] == [1]
        call.cancel()  # type: ignore[no-untyped-call]

    def arrived() -> bool:
        return any(s.trace_id == trace_id and s.kind == SERVER for _, s in store.spans())

    eventually(arrived, "the Watch stream's span at the receiver")
    assert server.stop() == 0
    spans = [span for _, span in store.spans() if span.trace_id == trace_id]
    stream = _one(spans, kind=SERVER)
    assert stream.name == "threads.v1.ThreadService/Watch"
    assert stream.parent_span_id == parent
    reads = [s for s in spans if s.kind == CLIENT]
    # The first read, the one after the subscription, the Append's: each its own child.
    assert len(reads) >= 2
    assert {s.name for s in reads} == {"redis.script watch_read"}
    assert {s.parent_span_id for s in reads} == {stream.span_id}
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    [ended] = [line for line in lines if "stream ended" in line["message"]]
    assert (ended["trace_id"], ended["span_id"]) == (trace_id.hex(), stream.span_id.hex())
    assert (ended["method"], ended["grpc_code"], ended["entries"]) == ("Watch", "CANCELLED", 2)
