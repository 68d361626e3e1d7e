"""The clients' RetryPolicy against a real server whose Redis is stopped (UNAVAILABLE).

Attempts are counted on the wire, by a client interceptor on the channel the client is
given, and in the ``threads.client`` retry log. The backoff schedule is checked without a
server, with injected random sources.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.message import Message
from grpc import aio

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import CHANNEL_OPTIONS, POLL_BOUND, SERVING, Started, StartServer
from tests.inprocess_server import eventually as _eventually
from tests.redis_process import RedisProcess
from tests.tcp_proxy import TcpProxy
from tests.test_client_sync import serve_in_thread
from threads_server.app import ThreadsServer
from threads_service_client import (
    Client,
    DeadlineExceededError,
    NotFoundError,
    RetryPolicy,
    SyncClient,
    UnavailableError,
    _retry,
    get_client,
    get_sync_client,
)
from threads_service_client._retry import RetryRule
from threads_service_client.pb import threads_pb2 as pb

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)
# Enough attempts to outlast a Redis restart; the call's timeout is what bounds it.
PATIENT = RetryPolicy(max_attempts=100_000, initial_backoff=0.01, max_backoff=0.05)
LONG_CALL = 2 * POLL_BOUND


class _Upper(random.Random):
    """Always draws the top of the range: the backoff schedule's ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass
class _Attempt:
    method: str
    request: Any
    timeout: float | None


class _Recorder:
    """Every attempt a client sends: which RPC, the request, and its timeout."""

    def __init__(self) -> None:
        self.attempts: list[_Attempt] = []

    def record(self, details: Any, request: Any) -> None:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        self.attempts.append(_Attempt(method.rsplit("/", 1)[-1], request, details.timeout))

    def of(self, method: str) -> list[_Attempt]:
        return [a for a in self.attempts if a.method == method]


class _AsyncRecorder(_Recorder, aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        self.record(client_call_details, request)
        return await continuation(client_call_details, request)


class _SyncRecorder(_Recorder, grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        self.record(client_call_details, request)
        return continuation(client_call_details, request)


def _retries_logged(caplog: pytest.LogCaptureFixture, method: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "threads.client" and r.getMessage().startswith(f"{method} attempt ")
    )


async def _meta_hashes(redis_url: str, field: str, value: bytes | None = None) -> list[str]:
    """Keys of thread HASHes holding ``field`` (equal to ``value`` when given)."""
    raw: Any = aioredis.from_url(redis_url)
    try:
        found = []
        async for key in raw.scan_iter(match="*:meta", count=1000):
            stored = await raw.hget(key, field)
            if stored is not None and (value is None or value in stored):
                found.append(key.decode())
        return found
    finally:
        await raw.aclose()


# --- the backoff schedule ---------------------------------------------------------------


def test_backoff_ceilings_grow_by_the_multiplier_up_to_max_backoff() -> None:
    policy = RetryPolicy(rng=_Upper())
    assert [policy.backoff(n) for n in range(1, 9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert policy.backoff_ceiling(10_000) == 5.0  # no OverflowError for huge retry counts
    flat = RetryPolicy(initial_backoff=0.3, max_backoff=0.3, multiplier=1.0, rng=_Upper())
    assert {flat.backoff(n) for n in range(1, 20)} == {0.3}


def test_backoff_is_full_jitter_within_the_ceiling_and_reproducible_with_a_seed() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=3.0)
    seeded = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=3.0, rng=random.Random(7))
    again = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=3.0, rng=random.Random(7))
    draws = {n: [seeded.backoff(n) for _ in range(500)] for n in range(1, 6)}
    assert draws == {n: [again.backoff(n) for _ in range(500)] for n in range(1, 6)}
    for n, values in draws.items():
        ceiling = min(1.0, 0.1 * 3.0 ** (n - 1))
        assert policy.backoff_ceiling(n) == ceiling
        assert all(0 <= v <= ceiling for v in values)
        # Full jitter: spread over the whole range, not bunched near the ceiling.
        assert min(values) < ceiling * 0.1 and max(values) > ceiling * 0.9
    assert seeded == RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=3.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"initial_backoff": -0.1},
        {"initial_backoff": 2.0, "max_backoff": 1.0},
        {"multiplier": 0.5},
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


# --- which calls are retried: the proto decides -----------------------------------------

# Every RPC of the service, with its proto's idempotency_level, whether its request has an
# AIP-155 request_id, and so the rule. A new RPC fails the test below until it is added
# here: deciding its retries means writing its idempotency_level (or a request_id).
_EXPECTED_RULES = {
    "Create": ("IDEMPOTENCY_UNKNOWN", True, RetryRule.WITH_REQUEST_ID),
    "Get": ("NO_SIDE_EFFECTS", False, RetryRule.ALWAYS),
    "Update": ("IDEMPOTENT", False, RetryRule.ALWAYS),
    "Delete": ("IDEMPOTENT", False, RetryRule.ALWAYS),
    "Append": ("IDEMPOTENCY_UNKNOWN", False, RetryRule.NEVER),
    "GetHistory": ("NO_SIDE_EFFECTS", False, RetryRule.ALWAYS),
    "Copy": ("IDEMPOTENCY_UNKNOWN", True, RetryRule.WITH_REQUEST_ID),
    "Search": ("NO_SIDE_EFFECTS", False, RetryRule.ALWAYS),
    "Count": ("NO_SIDE_EFFECTS", False, RetryRule.ALWAYS),
    "Watch": ("NO_SIDE_EFFECTS", False, RetryRule.ALWAYS),
}


def _empty_request(method: str) -> Message:
    descriptor = _retry.SERVICE.methods_by_name[method].input_type
    request: Message = message_factory.GetMessageClass(descriptor)()
    return request


def test_every_rpc_of_the_service_has_the_retry_rule_its_proto_gives() -> None:
    decided: dict[str, tuple[str, bool, RetryRule]] = {}
    for method in _retry.SERVICE.methods:
        options: descriptor_pb2.MethodOptions = method.GetOptions()
        level = descriptor_pb2.MethodOptions.IdempotencyLevel.Name(options.idempotency_level)
        has_request_id = "request_id" in method.input_type.fields_by_name
        decided[method.name] = (level, has_request_id, _retry.retry_rule(method))
    assert decided == _EXPECTED_RULES

    for name, (_, has_request_id, rule) in _EXPECTED_RULES.items():
        request = _empty_request(name)
        assert _retry.method_of(request) == (name, rule)
        assert _retry.idempotent(request) is (rule is RetryRule.ALWAYS), name
        if has_request_id:
            setattr(request, "request_id", str(uuid.uuid4()))  # noqa: B010
            assert _retry.idempotent(request) is (rule is not RetryRule.NEVER), name


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def _retried(request: Message) -> bool:
    attempts = _retry.Attempts(FAST, request, None)
    attempts.next_timeout()
    return attempts.retry_delay(_Unavailable()) is not None


def test_reads_update_and_delete_are_retried_append_never() -> None:
    retried: list[Message] = [
        pb.GetRequest(thread_id="t"),
        pb.GetHistoryRequest(thread_id="t", page_size=5),
        pb.UpdateRequest(thread_id="t"),
        pb.DeleteRequest(thread_id="t"),
        pb.CreateRequest(request_id="r"),
        pb.CopyRequest(thread_id="t", request_id="r"),
    ]
    sent_once: list[Message] = [
        pb.AppendRequest(thread_id="t"),
        pb.AppendRequest(thread_id="t", expected_length=3),
        pb.CreateRequest(),
        pb.CopyRequest(thread_id="t"),
    ]
    assert [_retried(r) for r in retried] == [True] * len(retried)
    assert [_retried(r) for r in sent_once] == [False] * len(sent_once)
    # A message no method of the service takes is never retried.
    assert not _retried(pb.Thread())


# --- asyncio client ---------------------------------------------------------------------


@dataclass
class _Outage:
    app: Started
    redis: RedisProcess
    source: pb.Thread
    recorder: _AsyncRecorder
    channel: aio.Channel

    def client(self, retry: RetryPolicy | None) -> Client:
        return get_client(channel=self.channel, retry=retry, timeout=LONG_CALL)


@pytest.fixture
async def outage(own_redis: RedisProcess, start_server: StartServer) -> AsyncIterator[_Outage]:
    """A server with a thread in its store, whose Redis has just been stopped."""
    app = await start_server(settings_for_test(), own_redis.url)
    await app.wait_health(SERVING)
    request = pb.CreateRequest(history=[pb.Entry()])
    source = (await app.stub.Create(request, timeout=POLL_BOUND)).thread
    await asyncio.to_thread(own_redis.stop)
    recorder = _AsyncRecorder()
    target = f"127.0.0.1:{app.server.port}"
    interceptors: list[Any] = [recorder]
    async with aio.insecure_channel(
        target, options=CHANNEL_OPTIONS, interceptors=interceptors
    ) as channel:
        yield _Outage(app, own_redis, source, recorder, channel)


async def _drain(entries: AsyncIterator[pb.Entry]) -> list[pb.Entry]:
    return [e async for e in entries]


def _idempotent_calls(source: str) -> dict[str, Callable[[Client], Awaitable[object]]]:
    """Each idempotent method, keyed by the RPC it sends."""
    return {
        "Get": lambda c: c.threads.get(source),
        "GetHistory": lambda c: c.threads.get_history(source),
        "Update": lambda c: c.threads.update(source, {"k": 1}),
        "Delete": lambda c: c.threads.delete(source),
        "Create": lambda c: c.threads.create(metadata={"k": 1}),
        "Copy": lambda c: c.threads.copy(source),
    }


async def test_idempotent_calls_make_max_attempts_then_raise_unavailable(
    outage: _Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threads.client")
    client = outage.client(FAST)
    calls = _idempotent_calls(outage.source.thread_id)
    calls["GetHistory (iter_history)"] = lambda c: _drain(
        c.threads.iter_history(outage.source.thread_id)
    )
    for name, call in calls.items():
        method = name.split()[0]
        outage.recorder.attempts.clear()
        caplog.clear()
        with pytest.raises(UnavailableError) as caught:
            await call(client)
        attempts = outage.recorder.of(method)
        assert len(attempts) == len(outage.recorder.attempts) == FAST.max_attempts, name
        assert _retries_logged(caplog, method) == FAST.max_attempts - 1, name
        assert caught.value.reason == "STORE_UNAVAILABLE"
        assert f"{method} failed after {FAST.max_attempts} attempts" in caught.value.__notes__
        if method in ("Create", "Copy"):
            # One request_id made before the first attempt, the same on every one.
            ids = {a.request.request_id for a in attempts}
            assert len(ids) == 1 and uuid.UUID(ids.pop()), name


async def test_a_callers_request_id_is_kept_on_every_attempt(outage: _Outage) -> None:
    client = outage.client(FAST)
    with pytest.raises(UnavailableError):
        await client.threads.copy(outage.source.thread_id, request_id="mine-1")
    with pytest.raises(UnavailableError):
        await client.threads.create(request_id="mine-2")
    sent = [(a.method, a.request.request_id) for a in outage.recorder.attempts]
    n = FAST.max_attempts
    assert sent == [("Copy", "mine-1")] * n + [("Create", "mine-2")] * n


async def test_append_is_attempted_once(outage: _Outage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threads.client")
    client = outage.client(FAST)
    for expected_length in (None, 1):
        with pytest.raises(UnavailableError):
            await client.threads.append(
                outage.source.thread_id, [{"a": 1}], expected_length=expected_length
            )
    assert [a.method for a in outage.recorder.attempts] == ["Append", "Append"]
    assert _retries_logged(caplog, "Append") == 0


async def test_without_a_policy_nothing_is_retried_and_no_request_id_is_made(
    outage: _Outage,
) -> None:
    client = outage.client(None)
    for call in _idempotent_calls(outage.source.thread_id).values():
        with pytest.raises(UnavailableError):
            await call(client)
    sent = outage.recorder.attempts
    assert [a.method for a in sent] == ["Get", "GetHistory", "Update", "Delete", "Create", "Copy"]
    assert [a.request.request_id for a in sent if a.method in ("Create", "Copy")] == ["", ""]


async def test_not_found_is_not_retried(
    threads_server: ThreadsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threads.client")
    recorder = _AsyncRecorder()
    interceptors: list[Any] = [recorder]
    target = f"127.0.0.1:{threads_server.port}"
    async with aio.insecure_channel(target, interceptors=interceptors) as channel:
        client = get_client(channel=channel, retry=FAST)
        with pytest.raises(NotFoundError):
            await client.threads.get(str(uuid.uuid4()))
        with pytest.raises(NotFoundError):
            await client.threads.copy(str(uuid.uuid4()))
    assert [a.method for a in recorder.attempts] == ["Get", "Copy"]
    assert _retries_logged(caplog, "Get") == _retries_logged(caplog, "Copy") == 0


async def test_calls_succeed_when_redis_returns_during_the_backoff(outage: _Outage) -> None:
    client = outage.client(PATIENT)
    source = outage.source.thread_id
    marker = f"marker-{uuid.uuid4()}"
    get = asyncio.create_task(client.threads.get(source))
    copy = asyncio.create_task(client.threads.copy(source))
    create = asyncio.create_task(client.threads.create(metadata={"marker": marker}))

    async def all_retrying() -> bool:
        return all(len(outage.recorder.of(m)) >= 2 for m in ("Get", "Copy", "Create"))

    try:
        await _eventually(all_retrying, "every call failed at least twice")
        await asyncio.to_thread(outage.redis.start)
        got, copied, created = await asyncio.gather(get, copy, create)
    finally:
        for task in (get, copy, create):
            task.cancel()

    assert got == outage.source
    assert copied.copied_from == source
    copies = await _meta_hashes(outage.redis.url, "copied_from", source.encode())
    assert len(copies) == 1 and copied.thread_id in copies[0]
    [created_key] = await _meta_hashes(outage.redis.url, "m:marker", marker.encode())
    assert created.thread_id in created_key
    for method in ("Copy", "Create"):
        assert len({a.request.request_id for a in outage.recorder.of(method)}) == 1


async def test_timeout_bounds_the_whole_call_and_each_attempt_gets_what_is_left(
    outage: _Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threads.client")
    # A backoff longer than the timeout: not slept, the call fails after one attempt.
    long_sleeps = outage.client(RetryPolicy(initial_backoff=30, max_backoff=30, rng=_Upper()))
    with pytest.raises(UnavailableError):
        await long_sleeps.threads.get(outage.source.thread_id, timeout=0.5)
    assert [(a.method, a.timeout) for a in outage.recorder.attempts] == [("Get", 0.5)]
    assert any("giving up" in r.getMessage() for r in caplog.records)

    # Short sleeps: attempts until the time is used up, each with the time left.
    outage.recorder.attempts.clear()
    many = RetryPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.05, rng=_Upper())
    with pytest.raises((UnavailableError, DeadlineExceededError)):
        await outage.client(many).threads.get(outage.source.thread_id, timeout=0.5)
    timeouts = [a.timeout or 0.0 for a in outage.recorder.attempts]
    assert 1 < len(timeouts) < many.max_attempts
    # The last may be at or below zero (the sleep overran a little): gRPC then fails it
    # with DEADLINE_EXCEEDED without sending it.
    assert timeouts[0] == 0.5
    assert all(t < 0.5 for t in timeouts[1:])
    assert timeouts == sorted(timeouts, reverse=True)


@pytest.fixture
async def proxied(
    redis_server: RedisProcess, start_server: StartServer
) -> AsyncIterator[tuple[Started, TcpProxy]]:
    """A server whose Redis connection goes through a proxy that can lose a reply."""
    proxy = TcpProxy("127.0.0.1", redis_server.port)
    await proxy.start()
    try:
        app = await start_server(settings_for_test(), proxy.url)
        await app.wait_health(SERVING)
        yield app, proxy
    finally:
        await proxy.close()


async def test_copy_whose_reply_was_lost_is_retried_into_one_copy(
    proxied: tuple[Started, TcpProxy], redis_server: RedisProcess
) -> None:
    """The first attempt's copy is made in Redis but its reply lost (UNAVAILABLE); the
    retry carries the same generated request_id, so the server returns that copy."""
    app, proxy = proxied
    async with get_client(f"127.0.0.1:{app.server.port}", retry=FAST) as client:
        source = (await client.threads.create(history=[{"i": 0}])).thread_id
        lost = proxy.lose_reply_to(source.encode())
        copy = await client.threads.copy(source, timeout=LONG_CALL)
    assert lost.is_set(), "the proxy did not lose the Copy's reply"
    copies = await _meta_hashes(redis_server.url, "copied_from", source.encode())
    assert len(copies) == 1 and copy.thread_id in copies[0]


async def test_create_whose_reply_was_lost_is_retried_into_one_thread(
    proxied: tuple[Started, TcpProxy], redis_server: RedisProcess
) -> None:
    app, proxy = proxied
    marker = f"marker-{uuid.uuid4()}"
    async with get_client(f"127.0.0.1:{app.server.port}", retry=FAST) as client:
        lost = proxy.lose_reply_to(marker.encode())
        created = await client.threads.create(metadata={"marker": marker}, timeout=LONG_CALL)
    assert lost.is_set(), "the proxy did not lose the Create's reply"
    [key] = await _meta_hashes(redis_server.url, "m:marker", marker.encode())
    assert created.thread_id in key


# --- blocking client --------------------------------------------------------------------


@dataclass
class _SyncOutage:
    server: ThreadsServer
    redis: RedisProcess
    source: pb.Thread
    recorder: _SyncRecorder
    channel: grpc.Channel

    def client(self, retry: RetryPolicy | None) -> SyncClient:
        return get_sync_client(channel=self.channel, retry=retry, timeout=LONG_CALL)


@pytest.fixture
def sync_outage(own_redis: RedisProcess) -> Iterator[_SyncOutage]:
    with serve_in_thread(settings_for_test(), own_redis.url) as server:
        target = f"127.0.0.1:{server.port}"
        with get_sync_client(target) as plain:
            source = plain.threads.create(history=[{}])
        own_redis.stop()
        recorder = _SyncRecorder()
        with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as raw:
            channel = grpc.intercept_channel(raw, recorder)
            yield _SyncOutage(server, own_redis, source, recorder, channel)


def test_sync_idempotent_calls_make_max_attempts_then_raise_unavailable(
    sync_outage: _SyncOutage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threads.client")
    client = sync_outage.client(FAST)
    source = sync_outage.source.thread_id
    calls: dict[str, Callable[[], object]] = {
        "Get": lambda: client.threads.get(source),
        "GetHistory": lambda: list(client.threads.iter_history(source)),
        "Update": lambda: client.threads.update(source, ttl=60),
        "Delete": lambda: client.threads.delete(source),
        "Create": client.threads.create,
        "Copy": lambda: client.threads.copy(source),
    }
    for method, call in calls.items():
        sync_outage.recorder.attempts.clear()
        caplog.clear()
        with pytest.raises(UnavailableError):
            call()
        attempts = sync_outage.recorder.attempts
        assert [a.method for a in attempts] == [method] * FAST.max_attempts
        assert _retries_logged(caplog, method) == FAST.max_attempts - 1
        if method in ("Create", "Copy"):
            ids = {a.request.request_id for a in attempts}
            assert len(ids) == 1 and uuid.UUID(ids.pop())

    sync_outage.recorder.attempts.clear()
    with pytest.raises(UnavailableError):
        client.threads.append(source, [{}])
    with pytest.raises(UnavailableError):
        sync_outage.client(None).threads.copy(source)
    sent = [(a.method, a.request) for a in sync_outage.recorder.attempts]
    assert [method for method, _ in sent] == ["Append", "Copy"]
    assert sent[1][1].request_id == ""


def test_sync_call_succeeds_when_redis_returns_during_the_backoff(
    sync_outage: _SyncOutage,
) -> None:
    client = sync_outage.client(PATIENT)
    source = sync_outage.source.thread_id
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        copy = pool.submit(client.threads.copy, source)
        deadline = time.monotonic() + POLL_BOUND
        while len(sync_outage.recorder.of("Copy")) < 2:
            assert time.monotonic() < deadline, "the copy was not retried"
            time.sleep(0.01)
        sync_outage.redis.start()
        copied = copy.result(timeout=LONG_CALL)
    assert copied.copied_from == source
    copies = asyncio.run(_meta_hashes(sync_outage.redis.url, "copied_from", source.encode()))
    assert len(copies) == 1 and copied.thread_id in copies[0]
    assert len({a.request.request_id for a in sync_outage.recorder.of("Copy")}) == 1


def test_sync_timeout_bounds_the_whole_call(
    sync_outage: _SyncOutage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threads.client")
    long_sleeps = sync_outage.client(RetryPolicy(initial_backoff=30, max_backoff=30, rng=_Upper()))
    with pytest.raises(UnavailableError):
        long_sleeps.threads.get(sync_outage.source.thread_id, timeout=0.5)
    assert [(a.method, a.timeout) for a in sync_outage.recorder.attempts] == [("Get", 0.5)]
    assert any("giving up" in r.getMessage() for r in caplog.records)

    sync_outage.recorder.attempts.clear()
    many = RetryPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.05, rng=_Upper())
    with pytest.raises((UnavailableError, DeadlineExceededError)):
        sync_outage.client(many).threads.get(sync_outage.source.thread_id, timeout=0.5)
    timeouts = [a.timeout or 0.0 for a in sync_outage.recorder.attempts]
    assert 1 < len(timeouts) < many.max_attempts
    assert timeouts[0] == 0.5
    assert all(t < 0.5 for t in timeouts[1:])
    assert timeouts == sorted(timeouts, reverse=True)
