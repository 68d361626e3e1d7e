"""The blocking client, from plain ``def`` tests.

The session's ``threads_server`` runs on the pytest-asyncio loop, which is idle while a
sync test runs, so it would never answer. These tests get their own server, serving from
an event loop in a background thread, on the same Redis.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from tests.conftest import test_settings as settings_for_test
from tests.redis_process import RedisProcess
from tests.test_client import assert_unreadable, expires_in, unreadable_replies
from threads_server.ops.config import Settings
from threads_server.server import ThreadsServer
from threads_service_client import (
    DEFAULT_TIMEOUT,
    AbortedError,
    AlreadyExistsError,
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    ResourceExhaustedError,
    SyncClient,
    SyncThreadsClient,
    ThreadsClient,
    UnexpectedStatusError,
    _sync_io,
    get_client,
    get_sync_client,
)
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc


@contextlib.contextmanager
def serve_in_thread(settings: Settings, redis_url: str) -> Iterator[ThreadsServer]:
    """A ThreadsServer on an event loop of its own in a background thread, so that a
    blocking client in the test's thread gets answers. Also used by other sync tests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sync-test-server", daemon=True)
    thread.start()

    async def start() -> ThreadsServer:
        server = ThreadsServer(settings, redis_url)
        await server.start()
        return server

    try:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(grace=1), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture(scope="module")
def target(redis_server: RedisProcess) -> Iterator[str]:
    with serve_in_thread(settings_for_test(), redis_server.url) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture
def client(target: str) -> Iterator[SyncClient]:
    with get_sync_client(target) as c:
        yield c


def _data(entries: Any) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(entry.data) for entry in entries]


def test_every_method_round_trips(client: SyncClient) -> None:
    thread = client.threads.create(metadata={"user": "ada"}, history=[{"i": 0}])
    assert isinstance(thread, pb.Thread)
    assert thread.history_length == 1
    assert client.threads.get(thread.thread_id) == thread

    updated = client.threads.update(thread.thread_id, {"n": 1})
    assert json_format.MessageToDict(updated.metadata) == {"user": "ada", "n": 1}

    assert client.threads.append(thread.thread_id, [{"i": 1}, pb.Entry()], expected_length=1) == 3
    page = client.threads.get_history(thread.thread_id, page_size=2)
    assert isinstance(page, pb.GetHistoryResponse)
    assert _data(page.entries) == [{"i": 0}, {"i": 1}]
    assert page.next_page_token

    copy = client.threads.copy(thread.thread_id, history_length=2, metadata={"c": True})
    assert (copy.copied_from, copy.history_length) == (thread.thread_id, 2)
    assert json_format.MessageToDict(copy.metadata) == {"user": "ada", "n": 1, "c": True}
    request_id = str(uuid.uuid4())
    assert (
        client.threads.copy(thread.thread_id, request_id=request_id).thread_id
        == client.threads.copy(thread.thread_id, request_id=request_id).thread_id
    )

    same = client.threads.create(thread.thread_id, if_exists="do_nothing")
    assert same == client.threads.get(thread.thread_id)

    client.threads.delete(thread.thread_id)
    with pytest.raises(NotFoundError):
        client.threads.get(thread.thread_id)
    assert client.threads.get(copy.thread_id).history_length == 2


def test_iter_history_follows_page_tokens(client: SyncClient) -> None:
    count = 260
    thread = client.threads.create(history=[{"i": i} for i in range(count)])

    entries = list(client.threads.iter_history(thread.thread_id, page_size=9))
    assert [e.index for e in entries] == list(range(count))
    assert _data(entries) == [{"i": i} for i in range(count)]

    token = client.threads.get_history(thread.thread_id, page_size=255).next_page_token
    rest = [e.index for e in client.threads.iter_history(thread.thread_id, page_token=token)]
    assert rest == list(range(255, count))


def _raises(cls: type[Exception], call: Callable[[], object]) -> Any:
    with pytest.raises(cls) as caught:
        call()
    return caught.value


def test_errors_carry_code_reason_and_metadata(client: SyncClient) -> None:
    missing = str(uuid.uuid4())
    error = _raises(NotFoundError, lambda: client.threads.get(missing))
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "THREAD_NOT_FOUND",
        "threads.v1",
    )
    assert error.metadata == {"thread_id": missing}

    error = _raises(InvalidArgumentError, lambda: client.threads.delete("nope"))
    assert (error.reason, error.metadata) == ("INVALID_THREAD_ID", {"field": "thread_id"})

    thread = client.threads.create(history=[{}])
    error = _raises(AlreadyExistsError, lambda: client.threads.create(thread.thread_id))
    assert error.reason == "THREAD_ALREADY_EXISTS"

    error = _raises(
        AbortedError, lambda: client.threads.append(thread.thread_id, [{}], expected_length=0)
    )
    assert error.reason == "HISTORY_LENGTH_MISMATCH"
    assert error.metadata["history_length"] == "1"

    error = _raises(
        OutOfRangeError, lambda: client.threads.copy(thread.thread_id, history_length=2)
    )
    assert error.reason == "HISTORY_LENGTH_OUT_OF_RANGE"
    assert error.metadata["source_history_length"] == "1"


class _RecordTimeouts(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        self.timeouts.append(client_call_details.timeout)
        return continuation(client_call_details, request)


def test_deadline_defaults_and_overrides(target: str) -> None:
    recorder = _RecordTimeouts()
    with grpc.insecure_channel(target) as raw:
        channel = grpc.intercept_channel(raw, recorder)
        default = get_sync_client(channel=channel)
        thread = default.threads.create()
        default.threads.get(thread.thread_id, timeout=1.5)
        default.threads.get(thread.thread_id, timeout=None)
        get_sync_client(channel=channel, timeout=2.5).threads.get(thread.thread_id)
    assert recorder.timeouts == [DEFAULT_TIMEOUT, 1.5, None, 2.5]


def test_expired_deadline_raises_deadline_exceeded(target: str) -> None:
    # A deadline already in the past fails inside gRPC before anything is sent: deterministic.
    with get_sync_client(target, timeout=-1.0) as c:
        _raises(DeadlineExceededError, c.threads.create)
        assert c.threads.create(timeout=None).thread_id


def test_large_pages_fit_in_one_reply(client: SyncClient, target: str) -> None:
    thread = client.threads.create()
    assert client.threads.append(thread.thread_id, [{"b": "x" * 5 * 1024}] * 1000) == 1000
    assert len(client.threads.get_history(thread.thread_id, page_size=1000).entries) == 1000

    small = [("grpc.max_receive_message_length", 4 * 1024 * 1024)]
    with get_sync_client(target, options=small) as c:
        _raises(
            ResourceExhaustedError,
            lambda: c.threads.get_history(thread.thread_id, page_size=1000),
        )


def test_close_closes_only_the_channel_the_client_opened(target: str) -> None:
    with get_sync_client(target) as owned:
        thread = owned.threads.create()
    _raises(RuntimeError, lambda: owned.threads.get(thread.thread_id))

    with grpc.insecure_channel(target) as channel:
        with get_sync_client(channel=channel) as borrowed:
            borrowed.threads.get(thread.thread_id)
        stub = pb_grpc.ThreadServiceStub(channel)
        assert stub.Get(pb.GetRequest(thread_id=thread.thread_id)).thread == thread


def test_ttl_and_request_id(redis_server: RedisProcess) -> None:
    """The same fields as the async client's tests, on a server whose default ttl is an hour."""
    default_ttl = 3600
    settings = settings_for_test(default_ttl_seconds=default_ttl)
    with (
        serve_in_thread(settings, redis_server.url) as server,
        get_sync_client(f"127.0.0.1:{server.port}") as client,
    ):
        since = time.time()
        assert expires_in(client.threads.create(), since) == pytest.approx(default_ttl, abs=5)
        thread = client.threads.create(metadata={"k": 1}, ttl=0)
        assert expires_in(thread, since) is None
        with pytest.raises(ValueError, match="negative"):
            client.threads.create(ttl=-1)

        restarted = client.threads.update(thread.thread_id, ttl=datetime.timedelta(minutes=1))
        assert expires_in(restarted, since) == pytest.approx(60, abs=5)
        assert restarted.metadata == thread.metadata
        assert expires_in(client.threads.update(thread.thread_id, ttl=0), since) is None
        with pytest.raises(ValueError, match="metadata, a ttl or both"):
            client.threads.update(thread.thread_id)

        copy = client.threads.copy(thread.thread_id, ttl=30.5)
        assert expires_in(copy, since) == pytest.approx(30.5, abs=5)
        assert expires_in(client.threads.copy(thread.thread_id, ttl=0), since) is None

        request_id = str(uuid.uuid4())
        first = client.threads.create(request_id=request_id)
        assert client.threads.create(request_id=request_id) == first


def test_the_generated_blocking_client_mirrors_the_asyncio_one() -> None:
    """Same public methods, parameters and defaults, blocking instead of awaitable (the
    ``_sync`` module is generated from ``_async``; this checks what the generator made)."""
    assert (get_client, get_sync_client) == (Client, SyncClient)
    renamed = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}
    for async_cls, sync_cls in ((Client, SyncClient), (ThreadsClient, SyncThreadsClient)):
        names = [n for n in vars(async_cls) if not n.startswith("_") or n in renamed]
        names.append("__init__")
        for name in names:
            async_method = getattr(async_cls, name)
            sync_method = getattr(sync_cls, renamed.get(name, name))
            async_params = inspect.signature(async_method).parameters.values()
            sync_params = inspect.signature(sync_method).parameters.values()
            assert [(p.name, p.kind, p.default) for p in async_params] == [
                (p.name, p.kind, p.default) for p in sync_params
            ], name
            assert not inspect.iscoroutinefunction(sync_method), name
            assert not inspect.isasyncgenfunction(sync_method), name
            if name not in ("__init__", "iter_history", "iter_search", "watch"):
                assert inspect.iscoroutinefunction(async_method), name
    assert inspect.isgeneratorfunction(SyncThreadsClient.iter_history)
    assert inspect.isgeneratorfunction(SyncThreadsClient.iter_search)
    assert inspect.isgeneratorfunction(SyncThreadsClient.watch)


def test_threads_sharing_a_new_client_open_one_channel(
    target: str, client: SyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel is opened on first use, once, however many threads make that use."""
    thread = client.threads.create()
    opened: list[str] = []
    open_channel = _sync_io.open_channel

    def counting(target: str, *args: Any) -> grpc.Channel:
        opened.append(target)
        time.sleep(0.05)  # widens the window in which a second opener would slip in
        return open_channel(target, *args)

    monkeypatch.setattr(_sync_io, "open_channel", counting)
    workers = 8
    barrier = threading.Barrier(workers)
    with get_sync_client(target) as shared:

        def first_use() -> pb.Thread:
            barrier.wait(timeout=30)
            return shared.threads.get(thread.thread_id)

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            got = list(pool.map(lambda _: first_use(), range(workers)))
    assert got == [thread] * workers
    assert opened == [target]


def test_search_count_and_iter_search(client: SyncClient) -> None:
    tag = str(uuid.uuid4())
    made = [client.threads.create(metadata={"tag": tag}) for _ in range(3)]
    newest_first = [t.thread_id for t in reversed(made)]
    page = client.threads.search(metadata={"tag": tag}, limit=2)
    assert [t.thread_id for t in page.threads] == newest_first[:2]
    assert [t.thread_id for t in client.threads.iter_search(metadata={"tag": tag}, limit=1)] == (
        newest_first
    )
    assert client.threads.count(metadata={"tag": tag}) == 3


def test_an_unreadable_reply_raises_internal() -> None:
    """As the asyncio client does (gRPC's blocking stubs fail such a call themselves)."""
    with unreadable_replies() as target, get_sync_client(target, timeout=10) as client:
        with pytest.raises(UnexpectedStatusError) as history:
            client.threads.get_history(str(uuid.uuid4()))
        assert_unreadable(history.value)
        with pytest.raises(UnexpectedStatusError) as got:
            client.threads.get(str(uuid.uuid4()))
        assert_unreadable(got.value)
