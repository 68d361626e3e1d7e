"""The RPC layer: status mapping of store failures and one log line per RPC."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import redis.exceptions
from grpc import aio
from grpc_reflection.v1alpha import reflection_pb2
from redis.asyncio import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.rpc_helpers import error_reason
from threads_server.errors import (
    DeadlineExceeded,
    NotFound,
    Reason,
    ResourceExhausted,
    Unavailable,
)
from threads_server.service.auth import Authenticator
from threads_server.service.call import to_threads_error
from threads_server.store.redis_errors import store_errors, to_store_error
from threads_server.transports.grpc.registration import _serializer, add_service
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (redis.exceptions.ConnectionError("refused"), Unavailable),
        (redis.exceptions.TimeoutError("slow"), Unavailable),
        (redis.exceptions.BusyLoadingError("loading"), Unavailable),
        (redis.exceptions.ReadOnlyError("replica"), Unavailable),
        # What redis-py really raises: the class carries the OOM, the message lost its prefix.
        (
            redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
            ResourceExhausted,
        ),
    ],
)
def test_store_failures_map_to_retryable_statuses(raised: Exception, expected: type) -> None:
    error = to_store_error(raised)
    assert isinstance(error, expected)
    assert error is not None
    assert error.message


def test_an_expired_deadline_maps_to_deadline_exceeded() -> None:
    """The RPC layer's own mapping (the store's failures arrive already mapped)."""
    error = to_threads_error(TimeoutError())
    assert isinstance(error, DeadlineExceeded)
    assert error.message


def test_domain_errors_pass_through_and_bugs_become_internal() -> None:
    not_found = NotFound("gone", reason=Reason.THREAD_NOT_FOUND)
    assert to_threads_error(not_found) is not_found
    assert to_threads_error(KeyError("bug")) is None
    assert to_store_error(redis.exceptions.ResponseError("ERR syntax")) is None
    assert to_threads_error(redis.exceptions.ResponseError("ERR syntax")) is None


async def test_one_log_line_per_rpc_with_method_code_and_latency(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="threads.rpc")
    created = (await stub.Create(pb.CreateRequest())).thread
    with pytest.raises(grpc.RpcError):
        await stub.Get(pb.GetRequest(thread_id=str(uuid.uuid4())))
    await stub.Get(pb.GetRequest(thread_id=created.thread_id))
    records = [r for r in caplog.records if r.name == "threads.rpc"]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 3
    assert lines[0].startswith("rpc=Create code=OK ms=")
    assert lines[1].startswith("rpc=Get code=NOT_FOUND ms=")
    assert "reason=THREAD_NOT_FOUND" in lines[1]
    assert lines[2].startswith("rpc=Get code=OK ms=")
    # Successful calls are DEBUG (metrics count them); a caller's mistake stays INFO.
    assert [r.levelname for r in records] == ["DEBUG", "INFO", "DEBUG"]


async def test_at_info_only_failed_calls_are_logged(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    """The default level: no line per successful call (thousands a second under load)."""
    caplog.set_level("INFO", logger="threads.rpc")
    created = (await stub.Create(pb.CreateRequest())).thread
    await stub.Get(pb.GetRequest(thread_id=created.thread_id))
    with pytest.raises(grpc.RpcError):
        await stub.Get(pb.GetRequest(thread_id=str(uuid.uuid4())))
    lines = [r.getMessage() for r in caplog.records if r.name == "threads.rpc"]
    assert len(lines) == 1 and lines[0].startswith("rpc=Get code=NOT_FOUND ms="), lines


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_struct(depth: int) -> bytes:
    """Struct{"a": Value{struct_value: ...}} nested ``depth`` times, as raw bytes (the
    Python protobuf runtime refuses to build one this deep, other languages do not)."""
    struct = b""
    for _ in range(depth):
        value = _field(5, struct)  # Value.struct_value
        struct = _field(1, _field(1, b"a") + _field(2, value))  # Struct.fields map entry
    return struct


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xff\xff", _field(2, _nested_struct(300))],
    ids=["corrupt-wire-format", "struct-nested-300-deep"],
)
async def test_unparsable_request_is_invalid_argument(channel: aio.Channel, raw: bytes) -> None:
    create = channel.unary_unary("/threads.v1.ThreadService/Create", None, None)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(raw)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "threads.v1.CreateRequest" in str(raised.value.details())
    assert error_reason(raised.value) == "MALFORMED_REQUEST"


def test_store_outage_message_does_not_leak_internal_addresses() -> None:
    raised = redis.exceptions.ConnectionError("Error 111 connecting to 10.1.2.3:6379.")
    error = to_store_error(raised)
    assert isinstance(error, Unavailable)
    assert "10.1.2.3" not in error.message
    assert error.__cause__ is raised  # kept for the server log


async def test_a_write_on_a_connection_closed_under_it_is_unavailable(
    redis: Any,
) -> None:
    """A connection Redis closed (a restart, a failover, CLIENT KILL) before a call is
    written on it is a lost connection: UNAVAILABLE, safe to retry, never INTERNAL.
    redis-py before 8.2 leaked an AttributeError from this write (redis/redis-py#4287);
    whatever it raises, the storage boundary must map it."""
    kwargs = redis.connection_pool.connection_kwargs
    connection = Connection(
        host=kwargs["host"],
        port=kwargs["port"],
        client_name="closed-under-write",
        retry=Retry(NoBackoff(), 0),
    )
    await connection.connect()  # type: ignore[no-untyped-call]
    try:
        (client,) = [c for c in await redis.client_list() if c["name"] == "closed-under-write"]
        await redis.client_kill_filter(_id=client["id"])
        with pytest.raises(Unavailable) as raised, store_errors():
            await connection.send_command("PING", check_health=False)
            await connection.read_response()
        assert raised.value.reason == Reason.STORE_UNAVAILABLE
    finally:
        await connection.disconnect()


async def test_registration_refuses_a_client_streaming_method_no_face_serves() -> None:
    """Unary and server-streaming methods have faces (Watch: test_watch.py); one that
    streams requests fails at start-up rather than be served as something it is not."""
    service = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
    with pytest.raises(ValueError, match="ServerReflectionInfo streams requests"):
        add_service(_NoAuth(), service, aio.server())


def test_a_streams_serializer_serializes_a_message_written_again_once() -> None:
    """Watch writes one message object on every stream of a thread's watchers in a row: the
    bytes are made once (the same object comes back), and another message gets its own."""
    serialize = _serializer(pb.WatchResponse, streaming=True)
    shared = pb.WatchResponse(entries=[pb.Entry(index=3)], history_length=4)
    first = serialize(shared)
    assert serialize(shared) is first
    assert pb.WatchResponse.FromString(first) == shared
    other = pb.WatchResponse(history_length=4)
    assert pb.WatchResponse.FromString(serialize(other)) == other
    assert serialize(shared) == first  # and back: by identity, never a stale one
    unary = _serializer(pb.GetResponse, streaming=False)
    assert unary is pb.GetResponse.SerializeToString


class _NoAuth:
    authenticator: Authenticator | None = None
