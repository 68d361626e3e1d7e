"""Both clients' ``token`` (bearer JWT metadata) and ``tls`` against real servers.

Servers run with ``--auth-jwt-secret`` (HS256) and/or TLS certificates from
``tests/tls_certs.py``. Every refusal is checked next to a call the same server accepts,
so none can pass against a server that refuses everything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc import aio

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import SERVING, Started, StartServer
from tests.redis_process import RedisProcess
from tests.test_client_sync import serve_in_thread
from tests.tls_certs import Certs, generate
from threads_server.ops.config import Settings
from threads_service_client import (
    TLS,
    NotFoundError,
    RetryPolicy,
    UnauthenticatedError,
    UnavailableError,
    get_client,
    get_sync_client,
)

SECRET = "client-auth-test-secret-of-at-least-32-bytes"


def _token(subject: str, *, secret: str = SECRET, expires_in: float = 3600) -> str:
    return jwt.encode({"sub": subject, "exp": int(time.time() + expires_in)}, secret, "HS256")


class _CountingToken:
    """A token callable that counts its calls; ``subject`` can change between calls."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return _token(self.subject)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return generate(tmp_path_factory.mktemp("client-tls"))


def _tls_settings(certs: Certs, *, localhost_only: bool = False, **overrides: Any) -> Settings:
    pair = certs.localhost_only if localhost_only else certs.server
    return settings_for_test(tls_cert_file=pair.cert, tls_key_file=pair.key, **overrides)


def _target(started: Started) -> str:
    return f"127.0.0.1:{started.server.port}"


async def _auth_server(start_server: StartServer, redis_url: str) -> Started:
    return await start_server(settings_for_test(auth_jwt_secret=SECRET), redis_url)


# --- tokens, asyncio client ---------------------------------------------------------------


async def test_a_valid_token_is_sent_and_no_token_is_unauthenticated(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    started = await _auth_server(start_server, redis_server.url)
    async with get_client(_target(started), token=_token("alice")) as alice:
        thread = await alice.threads.create(metadata={"k": "v"})
        assert thread.owner == "alice"
        assert await alice.threads.get(thread.thread_id) == thread

    refused = {
        "no token": None,
        "wrong secret": _token("alice", secret="another-secret-that-is-32-bytes-long!"),
        "expired": _token("alice", expires_in=-3600),
    }
    for why, token in refused.items():
        async with get_client(_target(started), token=token) as client:
            with pytest.raises(UnauthenticatedError) as caught:
                await client.threads.get(thread.thread_id)
        assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED, why
        assert caught.value.reason.startswith("TOKEN_"), why


async def test_a_token_callable_is_called_for_every_call(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    started = await _auth_server(start_server, redis_server.url)
    token = _CountingToken("alice")
    async with get_client(_target(started), token=token) as client:
        thread = await client.threads.create()
        await client.threads.get(thread.thread_id)
        await client.threads.append(thread.thread_id, [{}])
        assert token.calls == 3

        token.subject = "bob"  # a refreshed token, for another caller this time
        with pytest.raises(NotFoundError):  # bob cannot see alice's thread
            await client.threads.get(thread.thread_id)
        assert (await client.threads.create()).owner == "bob"
        assert token.calls == 5


async def test_a_token_callable_is_called_for_every_attempt(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    """So a token that expires while a call backs off is refreshed for the next attempt."""
    started = await _auth_server(start_server, own_redis.url)
    await started.wait_health(SERVING)
    await asyncio.to_thread(own_redis.stop)
    token = _CountingToken("alice")
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
    async with get_client(_target(started), token=token, retry=policy) as client:
        with pytest.raises(UnavailableError):  # authenticated, then the store is down
            await client.threads.create()
    assert token.calls == 3


async def test_tokens_that_can_never_be_sent_fail_before_any_call() -> None:
    for bad in ("", "Bearer abc", "a b", "caf\u00e9"):
        with pytest.raises(ValueError, match="token"):
            get_client(token=bad)
    with pytest.raises(TypeError):
        get_client(token=b"bytes")  # type: ignore[arg-type]
    async with get_client("127.0.0.1:1", token=lambda: "") as client:
        with pytest.raises(ValueError, match="token is empty"):
            await client.threads.create()


# --- TLS, asyncio client ------------------------------------------------------------------


async def test_tls_and_credentials_or_a_channel_together_raise(certs: Certs) -> None:
    tls = TLS(root_certificates=certs.ca)
    with pytest.raises(ValueError, match="tls or credentials"):
        get_client(tls=tls, credentials=tls.channel_credentials())
    with pytest.raises(ValueError, match="tls or credentials"):
        get_sync_client(tls=tls, credentials=tls.channel_credentials())
    async with aio.insecure_channel("127.0.0.1:1") as channel:
        with pytest.raises(ValueError, match="channel"):
            get_client(channel=channel, tls=tls)
    with (
        grpc.insecure_channel("127.0.0.1:1") as sync_channel,
        pytest.raises(ValueError, match="channel"),
    ):
        get_sync_client(channel=sync_channel, credentials=tls.channel_credentials())


async def test_tls_round_trip_with_a_token(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs
) -> None:
    tls = TLS(root_certificates=certs.ca)
    started = await start_server(
        _tls_settings(certs, auth_jwt_secret=SECRET),
        redis_server.url,
        credentials=tls.channel_credentials(),
    )
    async with get_client(_target(started), tls=tls, token=_token("alice")) as client:
        thread = await client.threads.create(history=[{"text": "hi"}])
        assert thread.owner == "alice"
        assert (await client.threads.get(thread.thread_id)).history_length == 1
    async with get_client(_target(started), tls=tls) as anonymous:
        with pytest.raises(UnauthenticatedError):
            await anonymous.threads.get(thread.thread_id)


async def test_tls_channel_options_are_merged_with_the_callers(
    redis_server: RedisProcess, start_server: StartServer, certs: Certs
) -> None:
    """The certificate names only ``localhost``: dialing 127.0.0.1 works only if the TLS
    server_name option reaches the channel, next to the caller's own options."""
    named = TLS(root_certificates=certs.ca, server_name="localhost")
    started = await start_server(
        _tls_settings(certs, localhost_only=True),
        redis_server.url,
        credentials=named.channel_credentials(),
        options=named.channel_options(),
    )
    caller_options = [("grpc.primary_user_agent", "client-tls-test")]
    async with get_client(_target(started), tls=named, options=caller_options) as client:
        assert (await client.threads.create()).thread_id
    unnamed = TLS(root_certificates=certs.ca)
    async with get_client(_target(started), tls=unnamed, options=caller_options) as client:
        with pytest.raises(UnavailableError):
            await client.threads.create()


# --- the blocking client ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sync_auth_target(redis_server: RedisProcess) -> Iterator[str]:
    with serve_in_thread(settings_for_test(auth_jwt_secret=SECRET), redis_server.url) as server:
        yield f"127.0.0.1:{server.port}"


def test_sync_token_and_token_callable(sync_auth_target: str) -> None:
    with get_sync_client(sync_auth_target, token=_token("alice")) as alice:
        thread = alice.threads.create()
        assert thread.owner == "alice"
        assert alice.threads.get(thread.thread_id) == thread
    with get_sync_client(sync_auth_target) as anonymous, pytest.raises(UnauthenticatedError):
        anonymous.threads.get(thread.thread_id)

    token = _CountingToken("alice")
    with get_sync_client(sync_auth_target, token=token) as client:
        assert client.threads.get(thread.thread_id) == thread
        token.subject = "bob"
        with pytest.raises(NotFoundError):
            client.threads.get(thread.thread_id)
        assert client.threads.create().owner == "bob"
    assert token.calls == 3


def _sync_round_trip(target: str, tls: TLS, **kwargs: Any) -> Callable[[], str]:
    def call() -> str:
        with get_sync_client(target, tls=tls, **kwargs) as client:
            thread = client.threads.create()
            return client.threads.get(thread.thread_id).owner

    return call


def test_sync_tls_round_trip_with_server_name_and_token(
    redis_server: RedisProcess, certs: Certs
) -> None:
    settings = _tls_settings(certs, localhost_only=True, auth_jwt_secret=SECRET)
    with serve_in_thread(settings, redis_server.url) as server:
        target = f"127.0.0.1:{server.port}"
        named = TLS(root_certificates=Path(certs.ca), server_name="localhost")
        assert _sync_round_trip(target, named, token=_token("carol"))() == "carol"
        with pytest.raises(UnavailableError):  # the name check fails without the option
            _sync_round_trip(target, TLS(root_certificates=certs.ca), token=_token("carol"))()
