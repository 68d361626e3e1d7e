"""The asyncio client against the real in-process server, plus the status-to-exception map."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import math
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2, json_format, struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import aio

import threads_service_client
from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import StartServer
from tests.redis_process import RedisProcess
from threads_server.server import ThreadsServer
from threads_service_client import (
    DEFAULT_TIMEOUT,
    AbortedError,
    AlreadyExistsError,
    Client,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ThreadsError,
    UnauthenticatedError,
    UnavailableError,
    UnexpectedStatusError,
    exceptions,
    get_client,
)
from threads_service_client._errors import from_rpc_error
from threads_service_client._requests import ttl_duration
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc


def _target(server: ThreadsServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
async def client(threads_server: ThreadsServer) -> AsyncIterator[Client]:
    async with get_client(_target(threads_server)) as c:
        yield c


def _data(entries: Any) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(entry.data) for entry in entries]


async def test_thread_round_trip_with_dicts(client: Client) -> None:
    metadata = {"user": "ada", "n": 1, "tags": ["a", "b"], "nested": {"ok": True}}
    thread = await client.threads.create(metadata=metadata, history=[{"role": "user"}])

    assert isinstance(thread, pb.Thread)
    assert str(uuid.UUID(thread.thread_id)) == thread.thread_id
    assert json_format.MessageToDict(thread.metadata) == metadata
    assert thread.history_length == 1
    assert await client.threads.get(thread.thread_id) == thread

    updated = await client.threads.update(thread.thread_id, {"n": 2, "extra": None})
    assert json_format.MessageToDict(updated.metadata) == {**metadata, "n": 2, "extra": None}
    assert await client.threads.get(thread.thread_id) == updated

    await client.threads.delete(thread.thread_id)
    with pytest.raises(NotFoundError):
        await client.threads.get(thread.thread_id)


async def test_create_accepts_messages_and_a_uuid(client: Client) -> None:
    thread_id = uuid.uuid4()
    metadata = struct_pb2.Struct()
    metadata.update({"k": "v"})
    as_struct = struct_pb2.Struct()
    as_struct.update({"i": 1})
    as_entry = pb.Entry(data=as_struct, index=99)  # index is the server's to set

    thread = await client.threads.create(
        thread_id, metadata=metadata, history=[as_entry, as_struct, {"i": 3}]
    )

    assert thread.thread_id == str(thread_id)
    assert thread.metadata == metadata
    page = await client.threads.get_history(thread_id)
    assert [e.index for e in page.entries] == [0, 1, 2]
    assert _data(page.entries) == [{"i": 1}, {"i": 1}, {"i": 3}]


async def test_create_if_exists(client: Client) -> None:
    thread_id = str(uuid.uuid4())
    first = await client.threads.create(thread_id, metadata={"v": 1})

    again = await client.threads.create(thread_id, metadata={"v": 2}, if_exists="do_nothing")
    assert again == first

    with pytest.raises(AlreadyExistsError) as caught:
        await client.threads.create(thread_id, metadata={"v": 2})
    assert caught.value.code is grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.reason == "THREAD_ALREADY_EXISTS"
    assert caught.value.metadata == {"thread_id": thread_id}

    with pytest.raises(ValueError, match="if_exists"):
        await client.threads.create(thread_id, if_exists="ignore")  # type: ignore[arg-type]


async def test_append_returns_the_length_and_honours_expected_length(client: Client) -> None:
    thread_id = (await client.threads.create()).thread_id

    # expected_length=0 must be sent as set, not dropped as falsy.
    assert await client.threads.append(thread_id, [{"a": 1}, {"a": 2}], expected_length=0) == 2
    assert await client.threads.append(thread_id, iter([pb.Entry()]), expected_length=2) == 3

    for stale in (0, 2):
        with pytest.raises(AbortedError) as caught:
            await client.threads.append(thread_id, [{"a": 9}], expected_length=stale)
        assert caught.value.reason == "HISTORY_LENGTH_MISMATCH"
        assert caught.value.metadata == {
            "thread_id": thread_id,
            "expected_length": str(stale),
            "history_length": "3",
        }
    assert (await client.threads.get(thread_id)).history_length == 3


async def test_append_rejects_a_lone_entry_before_sending(client: Client) -> None:
    thread_id = (await client.threads.create()).thread_id

    for lone in ({"role": "user", "content": "hi"}, pb.Entry()):
        with pytest.raises(TypeError, match="wrap a single entry in a list"):
            await client.threads.append(thread_id, lone)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="an entry must be"):
        await client.threads.append(thread_id, ["text"])  # type: ignore[list-item]
    assert (await client.threads.get(thread_id)).history_length == 0


async def test_get_history_returns_one_page(client: Client) -> None:
    thread = await client.threads.create(history=[{"i": i} for i in range(5)])

    first = await client.threads.get_history(thread.thread_id, page_size=2)
    assert isinstance(first, pb.GetHistoryResponse)
    assert [e.index for e in first.entries] == [0, 1]
    assert first.next_page_token

    second = await client.threads.get_history(
        thread.thread_id, page_size=3, page_token=first.next_page_token
    )
    assert _data(second.entries) == [{"i": 2}, {"i": 3}, {"i": 4}]
    assert second.next_page_token == ""


async def test_iter_history_follows_page_tokens(client: Client) -> None:
    count = 260
    thread = await client.threads.create(history=[{"i": i} for i in range(count)])

    entries = [e async for e in client.threads.iter_history(thread.thread_id, page_size=7)]
    assert [e.index for e in entries] == list(range(count))
    assert _data(entries) == [{"i": i} for i in range(count)]

    token = (await client.threads.get_history(thread.thread_id, page_size=250)).next_page_token
    rest = [e.index async for e in client.threads.iter_history(thread.thread_id, page_token=token)]
    assert rest == list(range(250, count))

    empty = (await client.threads.create()).thread_id
    assert [e async for e in client.threads.iter_history(empty, page_size=3)] == []


async def test_copy(client: Client) -> None:
    source = await client.threads.create(metadata={"a": 1}, history=[{"i": i} for i in range(3)])

    full = await client.threads.copy(source.thread_id)
    assert full.thread_id != source.thread_id
    assert full.copied_from == source.thread_id
    assert full.history_length == 3
    assert full.metadata == source.metadata

    fork = await client.threads.copy(source.thread_id, history_length=1, metadata={"b": 2})
    assert fork.history_length == 1
    assert json_format.MessageToDict(fork.metadata) == {"a": 1, "b": 2}
    assert _data((await client.threads.get_history(fork.thread_id)).entries) == [{"i": 0}]

    empty = await client.threads.copy(source.thread_id, history_length=0)
    assert empty.history_length == 0

    request_id = str(uuid.uuid4())
    once = await client.threads.copy(source.thread_id, request_id=request_id)
    twice = await client.threads.copy(source.thread_id, request_id=request_id)
    assert once.thread_id == twice.thread_id
    assert once.thread_id not in (full.thread_id, fork.thread_id)


async def test_copy_beyond_the_history_is_out_of_range(client: Client) -> None:
    source = await client.threads.create(history=[{}, {}, {}])

    with pytest.raises(OutOfRangeError) as caught:
        await client.threads.copy(source.thread_id, history_length=4)
    assert caught.value.code is grpc.StatusCode.OUT_OF_RANGE
    assert caught.value.reason == "HISTORY_LENGTH_OUT_OF_RANGE"
    assert caught.value.metadata == {
        "thread_id": source.thread_id,
        "history_length": "4",
        "source_history_length": "3",
    }


async def test_copy_request_id_of_a_deleted_copy_is_failed_precondition(client: Client) -> None:
    source = await client.threads.create()
    request_id = str(uuid.uuid4())
    copy = await client.threads.copy(source.thread_id, request_id=request_id)
    await client.threads.delete(copy.thread_id)

    with pytest.raises(FailedPreconditionError) as caught:
        await client.threads.copy(source.thread_id, request_id=request_id)
    assert caught.value.reason == "COPY_DELETED"
    assert caught.value.metadata["copy_id"] == copy.thread_id


async def test_not_found_keeps_the_status_and_error_info(client: Client) -> None:
    thread_id = str(uuid.uuid4())

    with pytest.raises(NotFoundError) as caught:
        await client.threads.update(thread_id, {"a": 1})
    error = caught.value
    assert isinstance(error, ThreadsError)
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.message == f"thread {thread_id} does not exist"
    assert error.reason == "THREAD_NOT_FOUND"
    assert error.domain == "threads.v1"
    assert error.metadata == {"thread_id": thread_id}
    assert error.error_info is not None and error.error_info.reason == "THREAD_NOT_FOUND"
    assert error.status is not None and error.status.code == code_pb2.NOT_FOUND
    assert isinstance(error.__cause__, grpc.RpcError)
    assert str(error) == f"thread {thread_id} does not exist [NOT_FOUND THREAD_NOT_FOUND]"

    for call in (
        client.threads.delete(thread_id),
        client.threads.append(thread_id, [{}]),
        client.threads.get_history(thread_id),
        client.threads.copy(thread_id),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_invalid_thread_id_is_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.threads.get("not-a-uuid")
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "INVALID_THREAD_ID"
    assert caught.value.metadata == {"field": "thread_id"}
    assert "not-a-uuid" in caught.value.message


async def test_unreachable_server_is_unavailable_without_error_info() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async with get_client(f"127.0.0.1:{port}") as c:
        with pytest.raises(UnavailableError) as caught:
            await c.threads.get(str(uuid.uuid4()))
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason == ""
    assert caught.value.error_info is None
    assert caught.value.metadata == {}


# A length-delimited field 1 whose 5 bytes run past the end: no message parses from it.
UNREADABLE_REPLY = b"\x0a\x05abc"


@contextlib.contextmanager
def unreadable_replies() -> Iterator[str]:
    """A real gRPC server (its own threads, so blocking and asyncio clients alike) that
    answers every ThreadService call with bytes no reply message parses from; its target."""
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(lambda request, context: UNREADABLE_REPLY)
        for method in pb.DESCRIPTOR.services_by_name["ThreadService"].methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("threads.v1.ThreadService", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def assert_unreadable(error: ThreadsError) -> None:
    """The client's own error with gRPC's status for an unparseable reply: INTERNAL."""
    assert type(error) is UnexpectedStatusError
    assert error.code is grpc.StatusCode.INTERNAL
    assert "Exception deserializing response" in error.message


async def test_an_unreadable_reply_raises_internal_not_none() -> None:
    """grpc.aio returns None for a reply it cannot parse; the client raises instead."""
    with unreadable_replies() as target:
        async with get_client(target, timeout=10) as c:
            with pytest.raises(UnexpectedStatusError) as history:
                await c.threads.get_history(str(uuid.uuid4()))
            assert_unreadable(history.value)
            with pytest.raises(UnexpectedStatusError) as got:
                await c.threads.get(str(uuid.uuid4()))
            assert_unreadable(got.value)


class _FakeRpcError(grpc.RpcError):
    """What grpc raises: an RpcError that is also a Call with code, details and trailers."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: Any = ()) -> None:
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._trailers


def _status_trailers(code: grpc.StatusCode, message: str, reason: str) -> Any:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain="threads.v1", metadata={"k": "v"})
    )
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExistsError),
        (grpc.StatusCode.ABORTED, AbortedError),
        (grpc.StatusCode.OUT_OF_RANGE, OutOfRangeError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, UnexpectedStatusError),
        (grpc.StatusCode.UNKNOWN, UnexpectedStatusError),
        (grpc.StatusCode.CANCELLED, UnexpectedStatusError),
        (grpc.StatusCode.DATA_LOSS, UnexpectedStatusError),
    ],
)
def test_each_status_code_maps_to_its_exception(
    code: grpc.StatusCode, cls: type[ThreadsError]
) -> None:
    error = from_rpc_error(
        _FakeRpcError(code, "boom", _status_trailers(code, "boom", "SOME_REASON"))
    )
    assert type(error) is cls
    assert (error.code, error.message, error.reason) == (code, "boom", "SOME_REASON")
    assert (error.domain, error.metadata) == ("threads.v1", {"k": "v"})


def _exception_classes() -> list[type[ThreadsError]]:
    return [
        cls
        for cls in vars(exceptions).values()
        if isinstance(cls, type) and issubclass(cls, ThreadsError)
    ]


def test_every_status_code_but_ok_maps_to_a_class() -> None:
    """Each code has the class that declares it, else UnexpectedStatusError."""
    declared = {cls.grpc_status_code: cls for cls in _exception_classes()}
    assert len(declared) == len(_exception_classes()) - 1  # only the two catch-alls share None
    assert declared[None] in (ThreadsError, UnexpectedStatusError)
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        error = from_rpc_error(_FakeRpcError(code, "boom"))
        assert type(error) is declared.get(code, UnexpectedStatusError), code
        assert error.code is code
    unexpected = set(grpc.StatusCode) - set(declared) - {grpc.StatusCode.OK}
    assert {c.name for c in unexpected} == {
        "CANCELLED",
        "UNKNOWN",
        "UNIMPLEMENTED",
        "INTERNAL",
        "DATA_LOSS",
    }


def test_exception_classes_are_listed_once_and_exported() -> None:
    """``exceptions.__all__`` is the one list; the package re-exports it and the module
    docstring's tree shows every class with its code."""
    names = sorted(cls.__name__ for cls in _exception_classes())
    assert sorted(exceptions.__all__) == names
    assert set(names) <= set(threads_service_client.__all__)
    assert all(getattr(threads_service_client, name) is getattr(exceptions, name) for name in names)
    tree = exceptions.__doc__ or ""
    for cls in _exception_classes():
        code = cls.grpc_status_code
        row = rf"\s{cls.__name__}\s+{code.name if code else '(any non-OK status|any other code)'}\s"
        assert re.search(row, tree), row


def test_inconsistent_or_missing_details_still_map_by_code() -> None:
    code = grpc.StatusCode.NOT_FOUND
    mismatched = _status_trailers(grpc.StatusCode.INTERNAL, "other", "X")
    for trailers in (mismatched, (("grpc-status-details-bin", b"\xff garbage"),), None):
        error = from_rpc_error(_FakeRpcError(code, "gone", trailers))
        assert type(error) is NotFoundError
        assert (error.message, error.reason, error.status) == ("gone", "", None)

    bare = from_rpc_error(grpc.RpcError("no call attached"))
    assert type(bare) is UnexpectedStatusError
    assert (bare.code, bare.message) == (grpc.StatusCode.UNKNOWN, "no call attached")


class _RecordTimeouts(aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        self.timeouts.append(client_call_details.timeout)
        return await continuation(client_call_details, request)


async def test_deadline_defaults_and_overrides(threads_server: ThreadsServer) -> None:
    recorder = _RecordTimeouts()
    interceptors: list[Any] = [recorder]
    async with aio.insecure_channel(_target(threads_server), interceptors=interceptors) as channel:
        default = get_client(channel=channel)
        thread = await default.threads.create()
        await default.threads.get(thread.thread_id, timeout=1.5)
        await default.threads.get(thread.thread_id, timeout=None)
        await get_client(channel=channel, timeout=2.5).threads.get(thread.thread_id)
        await get_client(channel=channel, timeout=None).threads.get(thread.thread_id)
    assert recorder.timeouts == [DEFAULT_TIMEOUT, 1.5, None, 2.5, None]
    assert DEFAULT_TIMEOUT == 10.0


async def test_expired_deadline_raises_deadline_exceeded(threads_server: ThreadsServer) -> None:
    # A deadline already in the past fails inside gRPC before anything is sent: deterministic.
    async with get_client(_target(threads_server), timeout=-1.0) as c:
        with pytest.raises(DeadlineExceededError) as caught:
            await c.threads.create()
        assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert (await c.threads.create(timeout=None)).thread_id


async def test_large_messages_fit_in_one_call(threads_server: ThreadsServer) -> None:
    # 1,000 entries of 5 KiB: a ~5 MiB request and reply, over gRPC's default 4 MiB limit.
    blob = "x" * 5 * 1024
    async with get_client(_target(threads_server)) as c:
        thread = await c.threads.create()
        assert await c.threads.append(thread.thread_id, [{"b": blob}] * 1000) == 1000
        page = await c.threads.get_history(thread.thread_id, page_size=1000)
        assert len(page.entries) == 1000
        assert page.next_page_token == ""

    small = [("grpc.max_receive_message_length", 4 * 1024 * 1024)]
    async with get_client(_target(threads_server), options=small) as c:
        with pytest.raises(ResourceExhaustedError):
            await c.threads.get_history(thread.thread_id, page_size=1000)


async def test_close_closes_only_the_channel_the_client_opened(
    threads_server: ThreadsServer, channel: aio.Channel
) -> None:
    async with get_client(_target(threads_server)) as owned:
        thread = await owned.threads.create()
    with pytest.raises(RuntimeError, match="closed"):
        await owned.threads.get(thread.thread_id)

    async with get_client(channel=channel) as borrowed:
        await borrowed.threads.get(thread.thread_id)
    stub = pb_grpc.ThreadServiceStub(channel)
    assert (await stub.Get(pb.GetRequest(thread_id=thread.thread_id))).thread == thread


async def test_client_made_outside_the_event_loop(threads_server: ThreadsServer) -> None:
    # As at import time: no running loop in that thread, so the channel must open lazily.
    c = await asyncio.to_thread(get_client, _target(threads_server))
    try:
        assert (await c.threads.create()).thread_id
    finally:
        await c.aclose()


# --- ttl and request_id -----------------------------------------------------------------

DEFAULT_TTL = 3600


@pytest.fixture
async def ttl_client(
    redis_server: RedisProcess, start_server: StartServer
) -> AsyncIterator[Client]:
    """A client of a server whose default ttl is an hour, so "unset" and 0 differ."""
    started = await start_server(
        settings_for_test(default_ttl_seconds=DEFAULT_TTL), redis_server.url
    )
    async with get_client(f"127.0.0.1:{started.server.port}") as c:
        yield c


def expires_in(thread: pb.Thread, since: float) -> float | None:
    """Seconds from ``since`` (a time.time()) to the thread's expire_time; None: never."""
    if not thread.HasField("expire_time"):
        return None
    return thread.expire_time.ToNanoseconds() / 1e9 - since


def test_ttl_converts_seconds_and_timedeltas_to_durations() -> None:
    assert ttl_duration(None) is None
    assert ttl_duration(0) == duration_pb2.Duration()  # set, and zero: "never expire"
    assert ttl_duration(0.0) == duration_pb2.Duration()
    assert ttl_duration(90) == duration_pb2.Duration(seconds=90)
    assert ttl_duration(1.25) == duration_pb2.Duration(seconds=1, nanos=250_000_000)
    assert ttl_duration(1e-12) == duration_pb2.Duration(nanos=1)  # never rounds to "never"
    assert ttl_duration(datetime.timedelta(minutes=2, microseconds=3)) == duration_pb2.Duration(
        seconds=120, nanos=3000
    )
    for negative in (-1, -0.001, datetime.timedelta(microseconds=-1)):
        with pytest.raises(ValueError, match="negative"):
            ttl_duration(negative)
    for unusable in (math.inf, math.nan, 1e20):
        with pytest.raises(ValueError, match="ttl"):
            ttl_duration(unusable)
    for wrong in (True, "60"):
        with pytest.raises(TypeError):
            ttl_duration(wrong)  # type: ignore[arg-type]


async def test_create_ttl_unset_zero_and_positive(ttl_client: Client) -> None:
    since = time.time()
    assert expires_in(await ttl_client.threads.create(), since) == pytest.approx(DEFAULT_TTL, abs=5)
    assert expires_in(await ttl_client.threads.create(ttl=0), since) is None
    half = await ttl_client.threads.create(ttl=60.5)
    assert expires_in(half, since) == pytest.approx(60.5, abs=5)
    delta = await ttl_client.threads.create(ttl=datetime.timedelta(minutes=2))
    assert expires_in(delta, since) == pytest.approx(120, abs=5)
    with pytest.raises(ValueError, match="negative"):
        await ttl_client.threads.create(ttl=-1)


async def test_update_can_change_only_the_ttl(ttl_client: Client) -> None:
    thread = await ttl_client.threads.create(metadata={"k": "v"}, ttl=0)

    since = time.time()
    restarted = await ttl_client.threads.update(thread.thread_id, ttl=30)
    assert expires_in(restarted, since) == pytest.approx(30, abs=5)
    assert restarted.metadata == thread.metadata

    both = await ttl_client.threads.update(thread.thread_id, {"n": 1}, ttl=120)
    assert expires_in(both, since) == pytest.approx(120, abs=5)
    assert json_format.MessageToDict(both.metadata) == {"k": "v", "n": 1}

    kept = await ttl_client.threads.update(thread.thread_id, {"n": 2})
    assert kept.expire_time == both.expire_time  # no ttl: the expiry stays

    removed = await ttl_client.threads.update(thread.thread_id, ttl=0)
    assert expires_in(removed, since) is None
    assert await ttl_client.threads.get(thread.thread_id) == removed

    with pytest.raises(ValueError, match="metadata, a ttl or both"):
        await ttl_client.threads.update(thread.thread_id)
    with pytest.raises(ValueError, match="negative"):
        await ttl_client.threads.update(thread.thread_id, ttl=datetime.timedelta(seconds=-1))


async def test_copy_ttl_is_the_copys_own(ttl_client: Client) -> None:
    source = await ttl_client.threads.create(ttl=0, history=[{}])
    since = time.time()
    assert expires_in(await ttl_client.threads.copy(source.thread_id), since) == pytest.approx(
        DEFAULT_TTL, abs=5
    )
    assert expires_in(await ttl_client.threads.copy(source.thread_id, ttl=0), since) is None
    short = await ttl_client.threads.copy(source.thread_id, ttl=45)
    assert expires_in(short, since) == pytest.approx(45, abs=5)
    assert short.history_length == 1
    with pytest.raises(ValueError, match="negative"):
        await ttl_client.threads.copy(source.thread_id, ttl=-0.5)


async def test_create_with_a_request_id_is_idempotent(client: Client) -> None:
    request_id = str(uuid.uuid4())
    first = await client.threads.create(metadata={"a": 1}, request_id=request_id)
    again = await client.threads.create(metadata={"a": 1}, request_id=request_id)
    assert again == first
    other = await client.threads.create(metadata={"a": 1}, request_id=str(uuid.uuid4()))
    assert other.thread_id != first.thread_id


async def test_search_count_and_iter_search_with_langgraphs_names(client: Client) -> None:
    """LangGraph's parameter names and sort strings; the enums work too; iter_search walks
    every page."""
    tag = str(uuid.uuid4())  # the suite shares one space of threads: filter on our own
    made = [await client.threads.create(metadata={"tag": tag, "n": i}) for i in range(5)]
    copied = await client.threads.copy(made[0].thread_id)
    newest_first = [t.thread_id for t in reversed([*made, copied])]
    page = await client.threads.search(metadata={"tag": tag}, limit=2)
    assert [t.thread_id for t in page.threads] == newest_first[:2]
    assert page.next_page_token
    page = await client.threads.search(
        metadata={"tag": tag}, limit=2, offset=4, sort_by="created_at", sort_order="desc"
    )
    assert [t.thread_id for t in page.threads] == newest_first[4:]
    ascending = await client.threads.search(
        metadata={"tag": tag}, limit=10, sort_by=pb.SORT_BY_CREATED_AT, sort_order="asc"
    )
    assert [t.thread_id for t in ascending.threads] == newest_first[::-1]
    by_id = await client.threads.search(metadata={"tag": tag}, sort_by="thread_id", limit=10)
    assert [t.thread_id for t in by_id.threads] == sorted(newest_first, reverse=True)
    assert [
        t.thread_id async for t in client.threads.iter_search(metadata={"tag": tag}, limit=2)
    ] == newest_first
    ids: list[str | uuid.UUID] = [made[1].thread_id, uuid.UUID(made[2].thread_id)]
    found = await client.threads.search(ids=ids, sort_by="updated_at")
    assert {t.thread_id for t in found.threads} == {made[1].thread_id, made[2].thread_id}
    assert await client.threads.count(metadata={"tag": tag}) == 6
    assert await client.threads.count(copied_from=made[0].thread_id) == 1
    assert await client.threads.count(ids=ids, metadata={"n": 1}) == 1
    with pytest.raises(ValueError, match="sort_by"):
        await client.threads.search(sort_by="newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sort_order"):
        await client.threads.search(sort_order="up")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ids"):
        await client.threads.count(ids=made[0].thread_id)
    with pytest.raises(exceptions.InvalidArgumentError) as raised:
        await client.threads.search(offset=1, page_token=page.next_page_token or "x")
    assert raised.value.reason == "INVALID_OFFSET"
