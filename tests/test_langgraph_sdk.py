"""LangGraph's own Python SDK (``langgraph-sdk``, unmodified), async and sync, against a live
server's HTTP port: the calls LangGraph documents for threads, word for word where the
documentation has them. ``api_key=None`` everywhere, so no key is ever sent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import AuthenticationError, BadRequestError, ConflictError, NotFoundError

from tests.conftest import test_settings as settings_for_test
from tests.http_helpers import LANGGRAPH_ONLY, THREAD_KEYS, base_url
from tests.inprocess_server import StartServer
from tests.redis_process import RedisProcess
from tests.tcp_proxy import TcpProxy
from tests.test_auth import SECRET, token
from threads_server.server import ThreadsServer


def _deployment_url(server: ThreadsServer) -> str:
    return base_url(server)


async def test_the_documented_copy_line_word_for_word(threads_server: ThreadsServer) -> None:
    client = get_client(url=_deployment_url(threads_server), api_key=None)
    thread = await client.threads.create(metadata={"user": "ada"})
    THREAD_ID = thread["thread_id"]  # noqa: N806 - LangGraph's placeholder, as documented

    copied_thread = await client.threads.copy(THREAD_ID)

    assert copied_thread["copied_from"] == THREAD_ID
    assert copied_thread["thread_id"] != THREAD_ID
    assert copied_thread["metadata"] == {"user": "ada"}
    assert set(copied_thread) == THREAD_KEYS
    assert not set(LANGGRAPH_ONLY) & set(copied_thread)
    await client.http.client.aclose()


async def test_async_create_get_update_delete(threads_server: ThreadsServer) -> None:
    client = get_client(url=_deployment_url(threads_server), api_key=None)
    thread_id = str(uuid.uuid4())
    created = await client.threads.create(
        metadata={"number": 1}, thread_id=thread_id, if_exists="raise", ttl=30
    )
    assert created["thread_id"] == thread_id and created["metadata"] == {"number": 1}
    assert "expire_time" in created  # LangGraph's ttl (minutes) took
    with pytest.raises(ConflictError) as taken:
        await client.threads.create(thread_id=thread_id, if_exists="raise")
    assert f"thread {thread_id} already exists" in str(taken.value)
    same = await client.threads.create(thread_id=thread_id, if_exists="do_nothing")
    assert same == created

    got = await client.threads.get(thread_id)
    assert got == created
    assert await client.threads.get(thread_id, include=["ttl"]) == created  # always there
    updated = await client.threads.update(thread_id, metadata={"number": 2}, ttl=60)
    assert updated["metadata"] == {"number": 2}
    assert updated["expire_time"] != created["expire_time"]

    minimal = await client.threads.update(thread_id, metadata={"n": 3}, return_minimal=True)
    assert minimal is None  # Prefer: return=minimal -> 204
    assert (await client.threads.get(thread_id))["metadata"] == {"number": 2, "n": 3}

    assert await client.threads.delete(thread_id) is None
    with pytest.raises(NotFoundError) as missing:
        await client.threads.get(thread_id)
    assert missing.value.response.status_code == 404
    assert f"thread {thread_id} does not exist" in str(missing.value)
    await client.http.client.aclose()


async def test_unsupported_langgraph_fields_raise_bad_request(
    threads_server: ThreadsServer,
) -> None:
    client = get_client(url=_deployment_url(threads_server), api_key=None)
    with pytest.raises(BadRequestError) as refused:
        await client.threads.create(ttl={"ttl": 5, "strategy": "keep_latest"})
    assert "ttl.strategy" in str(refused.value)
    with pytest.raises(BadRequestError, match="supersteps"):
        await client.threads.create(supersteps=[{"updates": [{"values": {}, "as_node": "start"}]}])
    await client.http.client.aclose()


def _sync_calls(url: str) -> dict[str, Any]:
    """The blocking client, in a worker thread (it must not run on the event loop)."""
    client = get_sync_client(url=url, api_key=None)
    thread = client.threads.create(metadata={"sync": True})
    copied_thread = client.threads.copy(thread["thread_id"])
    got = client.threads.get(copied_thread["thread_id"])
    client.threads.update(thread["thread_id"], metadata={"more": 1})
    client.threads.delete(thread["thread_id"])
    try:
        client.threads.get(thread["thread_id"])
    except NotFoundError as exc:
        missing = exc.response.status_code
    client.http.client.close()
    return {"thread": thread, "copy": copied_thread, "got": got, "missing": missing}


async def test_sync_client(threads_server: ThreadsServer) -> None:
    result = await asyncio.to_thread(_sync_calls, _deployment_url(threads_server))
    assert result["copy"]["copied_from"] == result["thread"]["thread_id"]
    assert result["got"] == result["copy"] and result["got"]["metadata"] == {"sync": True}
    assert result["missing"] == 404


async def test_with_auth_through_the_headers_argument(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    started = await start_server(settings_for_test(auth_jwt_secret=SECRET), redis_server.url)
    url = _deployment_url(started.server)
    anonymous = get_client(url=url, api_key=None)
    with pytest.raises(AuthenticationError, match="Bearer"):
        await anonymous.threads.create()
    client = get_client(
        url=url, api_key=None, headers={"Authorization": f"Bearer {token('alice')}"}
    )
    thread = await client.threads.create(metadata={"mine": True})
    assert thread["owner"] == "alice"
    copied_thread = await client.threads.copy(thread["thread_id"])
    assert copied_thread["owner"] == "alice"
    other = get_client(url=url, api_key=None, headers={"Authorization": f"Bearer {token('bob')}"})
    with pytest.raises(NotFoundError):
        await other.threads.copy(thread["thread_id"])
    for c in (anonymous, client, other):
        await c.http.client.aclose()


async def test_search_and_count(threads_server: ThreadsServer) -> None:
    client = get_client(url=_deployment_url(threads_server), api_key=None)
    tag = str(uuid.uuid4())
    made = [
        (await client.threads.create(metadata={"tag": tag, "i": i}))["thread_id"] for i in range(3)
    ]
    found = await client.threads.search(
        metadata={"tag": tag}, limit=2, offset=0, sort_by="created_at", sort_order="asc"
    )
    assert [t["thread_id"] for t in found] == made[:2]
    rest = await client.threads.search(
        metadata={"tag": tag}, limit=2, offset=2, sort_by="created_at", sort_order="asc"
    )
    assert [t["thread_id"] for t in rest] == made[2:]
    newest = await client.threads.search(metadata={"tag": tag}, sort_order="desc", limit=1)
    assert [t["thread_id"] for t in newest] == made[2:]
    by_id = await client.threads.search(ids=[made[1]], sort_by="thread_id")
    assert [t["thread_id"] for t in by_id] == [made[1]]
    assert await client.threads.count(metadata={"tag": tag}) == 3
    with pytest.raises(BadRequestError, match="status"):
        await client.threads.search(status="idle")
    with pytest.raises(BadRequestError, match="values"):
        await client.threads.count(values={"a": 1})
    sync = await asyncio.to_thread(
        lambda: get_sync_client(url=_deployment_url(threads_server), api_key=None).threads.count(
            metadata={"tag": tag}
        )
    )
    assert sync == 3
    await client.http.client.aclose()


def _pooled_client(url: str, callers: int) -> LangGraphClient:
    """docs/http.md's "Many callers at once", as written there."""
    limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
    return LangGraphClient(
        httpx.AsyncClient(
            base_url=url,
            transport=httpx.AsyncHTTPTransport(retries=5, limits=limits),
            timeout=httpx.Timeout(connect=5, read=300, write=300, pool=5),
        )
    )


async def test_a_pool_as_large_as_the_callers_keeps_every_connection_alive(
    threads_server: ThreadsServer,
) -> None:
    """get_client keeps at most 20 idle connections (httpx's default Limits), so 50
    concurrent callers open new ones round after round; the SDK's client over an httpx
    client with a pool of 50 opens 50 once and reuses them (docs/http.md). The proxy holds
    each reply 0.1 s, so that all 50 calls of a round are in flight together."""
    callers, rounds = 50, 4
    proxy = TcpProxy("127.0.0.1", threads_server.http_port)
    proxy.reply_delay = 0.1
    await proxy.start()
    url = f"http://127.0.0.1:{proxy.port}"
    try:
        source = await get_client(url=url, api_key=None).threads.create()
        opened = {}
        for name, client in (
            ("default", get_client(url=url, api_key=None)),
            ("pooled", _pooled_client(url, callers)),
        ):
            before = proxy.accepted
            for _ in range(rounds):
                copies = await asyncio.gather(
                    *(client.threads.copy(source["thread_id"]) for _ in range(callers))
                )
                assert all(c["copied_from"] == source["thread_id"] for c in copies)
            opened[name] = proxy.accepted - before
            await client.http.client.aclose()
        assert opened["pooled"] <= callers
        assert opened["default"] > callers, opened
    finally:
        await proxy.close()
