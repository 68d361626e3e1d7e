"""Watch over HTTP, as Server-Sent Events, with a real SSE client (httpx-sse) and curl: the
framing, Last-Event-ID, errors before the first byte (Status JSON) and after it
(``event: error``), and a client that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from tests.conftest import test_settings as settings_for_test
from tests.http_helpers import assert_status, base_url
from tests.inprocess_server import Started, StartServer, eventually
from tests.redis_process import RedisProcess
from tests.test_auth import SECRET, token
from tests.watch_helpers import STREAM_BOUND
from threads_server.server import ThreadsServer


@pytest.fixture
async def http(threads_server: ThreadsServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(threads_server), timeout=30) as client:
        yield client


async def _create(http: httpx.AsyncClient, n: int = 0, **body: Any) -> str:
    history = [{"data": {"i": i}} for i in range(n)]
    response = await http.post("/threads", json={"history": history, **body})
    assert response.status_code == 200, response.text
    return str(response.json()["thread_id"])


async def _append(http: httpx.AsyncClient, thread_id: str, *data: dict[str, Any]) -> None:
    response = await http.post(
        f"/threads/{thread_id}/entries", json={"entries": [{"data": d} for d in data]}
    )
    assert response.status_code == 200, response.text


async def _next(events: AsyncIterator[ServerSentEvent]) -> ServerSentEvent:
    return await asyncio.wait_for(anext(events), STREAM_BOUND)


async def test_one_event_per_entry_as_get_entries_renders_it(http: httpx.AsyncClient) -> None:
    thread_id = await _create(http, 2)
    page = (await http.get(f"/threads/{thread_id}/entries")).json()["entries"]
    async with aconnect_sse(http, "GET", f"/threads/{thread_id}/entries/stream") as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-cache"
        events = source.aiter_sse()
        replayed = [await _next(events), await _next(events)]
        assert [(e.event, e.id) for e in replayed] == [("entry", "0"), ("entry", "1")]
        assert [e.json() for e in replayed] == page
        await _append(http, thread_id, {"x": 1}, {"x": 2})
        live = [await _next(events), await _next(events)]
        assert [(e.event, e.id, e.json()["data"]) for e in live] == [
            ("entry", "2", {"x": 1}),
            ("entry", "3", {"x": 2}),
        ]
        assert set(live[0].json()) == {"data", "created_at", "index"}


async def test_progress_events_carry_the_length(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(watch_progress_seconds=0.2), redis_server.url)
    async with httpx.AsyncClient(base_url=base_url(app.server), timeout=30) as http:
        thread_id = await _create(http, 3)
        url = f"/threads/{thread_id}/entries/stream?start_index=3"
        async with aconnect_sse(http, "GET", url) as source:
            events = source.aiter_sse()
            for _ in range(3):
                event = await _next(events)
                assert (event.event, event.id, event.json()) == (
                    "progress",
                    "",
                    {"history_length": 3},
                )


async def test_last_event_id_resumes_after_it_and_wins_over_start_index(
    http: httpx.AsyncClient,
) -> None:
    thread_id = await _create(http, 5)
    url = f"/threads/{thread_id}/entries/stream?start_index=0"
    async with aconnect_sse(http, "GET", url, headers={"Last-Event-ID": "2"}) as source:
        events = source.aiter_sse()
        assert [(await _next(events)).id for _ in range(2)] == ["3", "4"]
    bad = await http.get(url, headers={"Last-Event-ID": "x"})
    assert_status(bad, 400, 3, "INVALID_START_INDEX")


async def test_errors_before_the_first_byte_are_status_json(http: httpx.AsyncClient) -> None:
    thread_id = await _create(http, 1)
    missing = await http.get(f"/threads/{uuid.uuid4()}/entries/stream")
    assert missing.headers["content-type"] == "application/json"
    assert_status(missing, 404, 5, "THREAD_NOT_FOUND")
    beyond = await http.get(f"/threads/{thread_id}/entries/stream?start_index=2")
    assert_status(beyond, 400, 11, "START_INDEX_OUT_OF_RANGE")
    negative = await http.get(f"/threads/{thread_id}/entries/stream?start_index=-1")
    assert_status(negative, 400, 3, "INVALID_START_INDEX")
    malformed = await http.get("/threads/not-a-uuid/entries/stream")
    assert_status(malformed, 400, 3, "INVALID_THREAD_ID")
    unknown = await http.get(f"/threads/{thread_id}/entries/stream?page_size=3")
    assert_status(unknown, 400, 3, "MALFORMED_REQUEST")


async def test_auth_as_get(redis_server: RedisProcess, start_server: StartServer) -> None:
    app = await start_server(settings_for_test(auth_jwt_secret=SECRET), redis_server.url)
    ada = {"Authorization": f"Bearer {token('ada')}"}
    bob = {"Authorization": f"Bearer {token('bob')}"}
    async with httpx.AsyncClient(base_url=base_url(app.server), timeout=30) as http:
        created = await http.post("/threads", json={"history": [{"data": {}}]}, headers=ada)
        url = f"/threads/{created.json()['thread_id']}/entries/stream"
        assert_status(await http.get(url), 401, 16, "TOKEN_MISSING")
        assert_status(await http.get(url, headers=bob), 404, 5, "THREAD_NOT_FOUND")
        async with aconnect_sse(http, "GET", url, headers=ada) as source:
            assert (await _next(source.aiter_sse())).id == "0"


async def test_an_error_after_the_first_byte_is_an_error_event_then_the_end(
    http: httpx.AsyncClient,
) -> None:
    thread_id = await _create(http, 1)
    async with aconnect_sse(http, "GET", f"/threads/{thread_id}/entries/stream") as source:
        events = source.aiter_sse()
        assert (await _next(events)).id == "0"
        assert (await http.delete(f"/threads/{thread_id}")).status_code == 204
        error = await _next(events)
        assert error.event == "error"
        status = error.json()
        assert (status["code"], status["details"][0]["reason"]) == (5, "THREAD_NOT_FOUND")
        with pytest.raises(StopAsyncIteration):  # and the stream closes
            await _next(events)


async def test_a_client_that_goes_away_ends_its_stream(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(), redis_server.url)
    async with _one_stream(app) as events:
        await _next(events)
        assert app.server.watches.open == 1

    async def closed() -> bool:
        return app.server.watches.open == 0

    await eventually(closed, "the server noticed the client left")


async def test_shutdown_ends_streams_with_an_unavailable_event(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    app = await start_server(settings_for_test(), redis_server.url)
    async with _one_stream(app) as events:
        await _next(events)
        app.server.watches.close()
        error = await _next(events)
        assert error.event == "error"
        assert error.json()["details"][0]["reason"] == "SHUTTING_DOWN"


@contextlib.asynccontextmanager
async def _one_stream(app: Started) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
    """The events of one SSE stream of a new thread with one entry, on ``app``."""
    async with httpx.AsyncClient(base_url=base_url(app.server), timeout=30) as http:
        thread_id = await _create(http, 1)
        async with aconnect_sse(http, "GET", f"/threads/{thread_id}/entries/stream") as source:
            yield source.aiter_sse()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_shows_the_stream_as_it_arrives(
    threads_server: ThreadsServer, http: httpx.AsyncClient
) -> None:
    thread_id = await _create(http, 1)
    url = f"{base_url(threads_server)}/threads/{thread_id}/entries/stream"
    curl = await asyncio.create_subprocess_exec(
        "curl", "-N", "-s", url, stdout=asyncio.subprocess.PIPE
    )
    output = curl.stdout
    assert output is not None

    async def event() -> list[str]:
        """One event's lines, up to the blank line that ends it."""
        lines: list[str] = []
        while not lines or lines[-1] != "\n":
            lines.append((await asyncio.wait_for(output.readline(), STREAM_BOUND)).decode())
        return lines

    try:
        replayed = await event()
        assert replayed[:2] == ["id: 0\n", "event: entry\n"]
        assert json.loads(replayed[2].removeprefix("data: "))["index"] == 0
        await _append(http, thread_id, {"live": True})
        # -N: the event shows while the connection stays open (nothing buffers it).
        live = await event()
        assert live[:2] == ["id: 1\n", "event: entry\n"]
        assert json.loads(live[2].removeprefix("data: "))["data"] == {"live": True}
    finally:
        curl.kill()
        await curl.wait()
