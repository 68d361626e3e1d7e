"""Bearer-token auth and per-caller threads (threads_server/service/auth.py, the namespaces
of store/keys.py).

Real servers with auth on (HS256, RS256, ES256) against the session's Redis; tokens are
made with PyJWT, the same library the server verifies with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import Started, StartServer
from tests.redis_process import RedisProcess
from tests.rpc_helpers import entries, error_reason, expect_error, struct
from threads_server import __main__ as server_main
from threads_server.errors import Unauthenticated
from threads_server.ops.config import Settings
from threads_server.service.auth import LEEWAY_SECONDS, AuthConfigError, Authenticator
from threads_server.store.keys import ThreadKeys, owner_namespace
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub

SECRET = "0123456789abcdef0123456789abcdef-test-secret"
Call = Callable[["Stub", str, tuple[tuple[str, str], ...]], Awaitable[Any]]


def token(
    sub: str | None = "alice",
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    expires_in: float = 300,
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"exp": int(time.time() + expires_in), **claims}
    if sub is not None:
        payload["sub"] = sub
    return jwt.encode(payload, key, algorithm=algorithm)


def bearer(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


# Every ThreadService RPC, aimed at a thread id, with the caller's metadata.
RPCS: dict[str, Call] = {
    "Create": lambda s, t, md: s.Create(pb.CreateRequest(thread_id=t), metadata=md),
    "Get": lambda s, t, md: s.Get(pb.GetRequest(thread_id=t), metadata=md),
    "Update": lambda s, t, md: s.Update(
        pb.UpdateRequest(thread_id=t, metadata=struct(x=1)), metadata=md
    ),
    "Delete": lambda s, t, md: s.Delete(pb.DeleteRequest(thread_id=t), metadata=md),
    "Append": lambda s, t, md: s.Append(
        pb.AppendRequest(thread_id=t, entries=entries({"a": 1})), metadata=md
    ),
    "GetHistory": lambda s, t, md: s.GetHistory(pb.GetHistoryRequest(thread_id=t), metadata=md),
    "Copy": lambda s, t, md: s.Copy(pb.CopyRequest(thread_id=t), metadata=md),
}


@pytest.fixture
async def server(start_server: StartServer, redis_server: RedisProcess) -> Started:
    return await start_server(settings_for_test(auth_jwt_secret=SECRET), redis_server.url)


async def create(started: Started, sub: str, n: int = 2) -> pb.Thread:
    request = pb.CreateRequest(
        metadata=struct(owner_note=sub), history=entries(*({"i": i} for i in range(n)))
    )
    return (await started.stub.Create(request, metadata=bearer(token(sub)))).thread


# --- who may call -----------------------------------------------------------------------

# Made when a test runs (not at import), so that no token expires while the suite runs.
BAD_CREDENTIALS: dict[str, Callable[[], tuple[tuple[tuple[str, str], ...], str]]] = {
    "no token": lambda: ((), "TOKEN_MISSING"),
    "not bearer": lambda: ((("authorization", f"Basic {SECRET}"),), "TOKEN_INVALID"),
    "two tokens": lambda: (bearer(token()) + bearer(token("bob")), "TOKEN_INVALID"),
    "garbage": lambda: (bearer("not.a.jwt"), "TOKEN_INVALID"),
    "bad signature": lambda: (
        bearer(token(key="another-secret-of-at-least-32-bytes!!")),
        "TOKEN_INVALID",
    ),
    "expired": lambda: (bearer(token(expires_in=-LEEWAY_SECONDS - 60)), "TOKEN_EXPIRED"),
    "no sub": lambda: (bearer(token(sub=None)), "TOKEN_INVALID"),
    "empty sub": lambda: (bearer(token(sub="")), "TOKEN_INVALID"),
    "alg none": lambda: (
        bearer(jwt.encode({"sub": "alice", "exp": 2**40}, None, "none")),  # type: ignore[arg-type]
        "TOKEN_INVALID",
    ),
    "not yet valid": lambda: (bearer(token(nbf=int(time.time()) + 3600)), "TOKEN_INVALID"),
}


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("credentials", BAD_CREDENTIALS)
async def test_every_rpc_refuses_a_bad_or_missing_token(
    server: Started, redis: Any, rpc: str, credentials: str
) -> None:
    alice = await create(server, "alice")
    metadata, reason = BAD_CREDENTIALS[credentials]()
    error = await expect_error(
        RPCS[rpc](server.stub, alice.thread_id, metadata),
        grpc.StatusCode.UNAUTHENTICATED,
        reason,
    )
    assert SECRET not in str(error.details())
    # Nothing changed: alice's thread is as she made it.
    same = await server.stub.Get(
        pb.GetRequest(thread_id=alice.thread_id), metadata=bearer(token("alice"))
    )
    assert same.thread == alice


async def test_token_without_exp_is_refused(server: Started) -> None:
    no_exp = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    await expect_error(
        server.stub.Create(pb.CreateRequest(), metadata=bearer(no_exp)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
    )


async def test_a_malformed_request_without_token_learns_only_unauthenticated(
    server: Started,
) -> None:
    await expect_error(
        server.stub.Get(pb.GetRequest(thread_id="not-a-uuid")),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_MISSING",
    )


async def test_health_and_reflection_stay_open(server: Started) -> None:
    await server.wait_health(health_pb2.HealthCheckResponse.SERVING)
    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in reflection.ServerReflectionInfo(iter([request])):
        names = {service.name for service in reply.list_services_response.service}
        assert "threads.v1.ThreadService" in names


# --- whose threads ----------------------------------------------------------------------


async def test_every_rpc_works_for_the_owner_and_records_it(server: Started) -> None:
    md = bearer(token("alice"))
    alice = await create(server, "alice")
    assert alice.owner == "alice"
    for name, call in RPCS.items():
        if name in ("Create", "Delete"):
            continue
        await call(server.stub, alice.thread_id, md)
    got = (await server.stub.Get(pb.GetRequest(thread_id=alice.thread_id), metadata=md)).thread
    assert got.owner == "alice"
    assert got.history_length == 3
    await server.stub.Delete(pb.DeleteRequest(thread_id=alice.thread_id), metadata=md)


@pytest.mark.parametrize("rpc", [name for name in RPCS if name != "Create"])
async def test_another_callers_thread_looks_exactly_like_a_missing_one(
    server: Started, redis: Any, rpc: str
) -> None:
    alice = await create(server, "alice")
    before = {key: await redis.dump(key) for key in await _keys_of(redis, alice.thread_id)}
    bob = bearer(token("bob"))
    taken = await expect_error(
        RPCS[rpc](server.stub, alice.thread_id, bob), grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND"
    )
    missing_id = str(uuid.uuid4())
    missing = await expect_error(
        RPCS[rpc](server.stub, missing_id, bob), grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND"
    )
    assert str(taken.details()).replace(alice.thread_id, "ID") == str(missing.details()).replace(
        missing_id, "ID"
    )
    after = {key: await redis.dump(key) for key in await _keys_of(redis, alice.thread_id)}
    assert after == before


async def test_create_with_an_id_another_caller_uses_makes_a_separate_thread(
    server: Started,
) -> None:
    """ALREADY_EXISTS would tell bob that alice has a thread with this id."""
    alice = await create(server, "alice", n=3)
    bob_md = bearer(token("bob"))
    bobs = (
        await server.stub.Create(
            pb.CreateRequest(thread_id=alice.thread_id, metadata=struct(mine=True)),
            metadata=bob_md,
        )
    ).thread
    assert bobs.thread_id == alice.thread_id
    assert bobs.owner == "bob"
    assert bobs.history_length == 0
    await server.stub.Append(
        pb.AppendRequest(thread_id=alice.thread_id, entries=entries({"bob": 1})), metadata=bob_md
    )
    alices = (
        await server.stub.Get(
            pb.GetRequest(thread_id=alice.thread_id), metadata=bearer(token("alice"))
        )
    ).thread
    assert alices == alice


async def test_copy_needs_the_source_and_belongs_to_the_caller(server: Started) -> None:
    alice = await create(server, "alice", n=4)
    await expect_error(
        server.stub.Copy(
            pb.CopyRequest(thread_id=alice.thread_id, request_id="r1"),
            metadata=bearer(token("bob")),
        ),
        grpc.StatusCode.NOT_FOUND,
        "THREAD_NOT_FOUND",
    )
    alice_md = bearer(token("alice"))
    copy = (
        await server.stub.Copy(
            pb.CopyRequest(thread_id=alice.thread_id, request_id="r1"), metadata=alice_md
        )
    ).thread
    assert copy.owner == "alice"
    assert copy.history_length == 4
    assert copy.copied_from == alice.thread_id
    # The copy is the caller's: bob cannot see it, alice can.
    await expect_error(
        server.stub.Get(pb.GetRequest(thread_id=copy.thread_id), metadata=bearer(token("bob"))),
        grpc.StatusCode.NOT_FOUND,
    )
    await server.stub.Get(pb.GetRequest(thread_id=copy.thread_id), metadata=alice_md)


async def test_request_ids_of_different_callers_do_not_meet(server: Started) -> None:
    """Bob's Copy with alice's request_id makes bob's own copy (of bob's own thread)."""
    alice_md, bob_md = bearer(token("alice")), bearer(token("bob"))
    alice = await create(server, "alice", n=1)
    await server.stub.Create(pb.CreateRequest(thread_id=alice.thread_id), metadata=bob_md)
    a = await server.stub.Copy(
        pb.CopyRequest(thread_id=alice.thread_id, request_id="same"), metadata=alice_md
    )
    b = await server.stub.Copy(
        pb.CopyRequest(thread_id=alice.thread_id, request_id="same"), metadata=bob_md
    )
    assert a.thread.thread_id != b.thread.thread_id
    assert (a.thread.owner, a.thread.history_length) == ("alice", 1)
    assert (b.thread.owner, b.thread.history_length) == ("bob", 0)


async def test_keys_live_in_the_callers_namespace(server: Started, redis: Any) -> None:
    alice = await create(server, "alice")
    keys = await _keys_of(redis, alice.thread_id)
    expected = ThreadKeys(alice.thread_id, "alice")
    assert set(keys) == {expected.meta, expected.history}
    assert all(owner_namespace("alice") in key for key in keys)
    assert expected.tag in expected.meta  # same cluster slot as without auth


async def _keys_of(redis: Any, thread_id: str) -> list[str]:
    return sorted([key.decode() async for key in redis.scan_iter(match=f"*{thread_id}*")])


# --- RS256 and ES256 --------------------------------------------------------------------


def _pem_public(private: Any) -> bytes:
    key: bytes = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key


def _hs256_by_hand(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token keyed with anything (PyJWT refuses PEM keys as HMAC secrets)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
async def test_public_key_tokens(
    start_server: StartServer,
    redis_server: RedisProcess,
    tmp_path: Path,
    algorithm: str,
    make_key: Callable[[], Any],
) -> None:
    private, stranger = make_key(), make_key()
    public_file = tmp_path / "public.pem"
    public_file.write_bytes(_pem_public(private))
    settings = settings_for_test(auth_jwt_public_key_file=public_file)
    started = await start_server(settings, redis_server.url)

    good = token("carol", key=private, algorithm=algorithm)
    thread = (await started.stub.Create(pb.CreateRequest(), metadata=bearer(good))).thread
    assert thread.owner == "carol"

    forged = [
        token("carol", key=stranger, algorithm=algorithm),  # signed by another key
        # Algorithm confusion: HMAC keyed with the public key the server holds.
        _hs256_by_hand({"sub": "carol", "exp": 99999999999}, _pem_public(private)),
        token("carol", key=private, algorithm=algorithm, expires_in=-LEEWAY_SECONDS - 60),
    ]
    for bad in forged:
        error = await expect_error(
            started.stub.Get(pb.GetRequest(thread_id=thread.thread_id), metadata=bearer(bad)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert error_reason(error) in ("TOKEN_INVALID", "TOKEN_EXPIRED")


async def test_audience_and_issuer_are_checked_when_configured(
    start_server: StartServer, redis_server: RedisProcess
) -> None:
    settings = settings_for_test(
        auth_jwt_secret=SECRET, auth_jwt_audience="threads", auth_jwt_issuer="https://idp"
    )
    started = await start_server(settings, redis_server.url)
    right = token(aud="threads", iss="https://idp")
    await started.stub.Create(pb.CreateRequest(), metadata=bearer(right))
    for wrong in (
        token(aud="billing", iss="https://idp"),
        token(aud="threads", iss="https://evil"),
        token(),
    ):
        await expect_error(
            started.stub.Create(pb.CreateRequest(), metadata=bearer(wrong)),
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_INVALID",
        )


async def test_without_auth_tokens_are_ignored_and_threads_have_no_owner(stub: Any) -> None:
    thread = (await stub.Create(pb.CreateRequest(), metadata=bearer("anything"))).thread
    assert thread.owner == ""


# --- the authenticator on its own -------------------------------------------------------


def test_a_remembered_token_still_expires() -> None:
    """Verified tokens are cached; the cache must not outlive the token's exp."""
    real_now = time.time()  # PyJWT itself checks exp against the real clock
    now = [real_now]
    auth = Authenticator(SECRET.encode(), "HS256", clock=lambda: now[0])
    raw = jwt.encode({"sub": "alice", "exp": int(real_now) + 60}, SECRET, algorithm="HS256")
    assert auth.caller(bearer(raw)) == "alice"
    assert auth.caller(bearer(raw)) == "alice"  # from the cache
    now[0] = real_now + 60 + LEEWAY_SECONDS + 1
    with pytest.raises(Unauthenticated) as raised:
        auth.caller(bearer(raw))
    assert raised.value.reason == "TOKEN_EXPIRED"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(auth_jwt_secret="short"), "at least 32 bytes"),
        (Settings(auth_jwt_public_key_file=Path("/nonexistent/key.pem")), "cannot read"),
    ],
)
def test_unusable_auth_settings_are_refused(settings: Settings, message: str) -> None:
    with pytest.raises(AuthConfigError, match=message):
        Authenticator.from_settings(settings)


@pytest.mark.parametrize("kind", ["garbage", "ed25519", "small rsa"])
def test_unsupported_public_keys_stop_the_server_at_start(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "key.pem"
    if kind == "garbage":
        path.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    elif kind == "ed25519":
        path.write_bytes(_pem_public(ed25519.Ed25519PrivateKey.generate()))
    else:
        path.write_bytes(
            _pem_public(rsa.generate_private_key(public_exponent=65537, key_size=1024))
        )
    code = server_main.main(
        ["--auth-jwt-public-key-file", str(path), "--redis-url", "redis://127.0.0.1:1"]
    )
    assert code == 1
    assert "--auth-jwt-public-key-file" in caplog.text
    assert str(path) in caplog.text
