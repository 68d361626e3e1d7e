"""The HTTP/JSON front door against a real server (in-process, real Redis, real sockets):
routes from the proto's google.api.http options, LangGraph's JSON shapes and status codes,
errors as google.rpc.Status JSON, auth, limits, health, OpenAPI, HTTPS."""

from __future__ import annotations

import os
import signal
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import test_settings as settings_for_test
from tests.http_helpers import (
    LANGGRAPH_ONLY,
    THREAD_KEYS,
    assert_status,
    base_url,
)
from tests.inprocess_server import SERVING, StartServer, eventually
from tests.redis_process import RedisProcess
from tests.test_auth import SECRET, token
from tests.tls_certs import generate
from threads_server.server import ThreadsServer
from threads_server.transports.http import langgraph, openapi
from threads_server.transports.http.routes import ROUTES, SERVICE, RouteError, route_of
from threads_server.transports.http.status import HTTP_STATUS
from threads_service_client.pb import threads_pb2 as pb

SORT_BY_NAMES = list(pb.SortBy.keys())


@pytest.fixture
async def http(threads_server: ThreadsServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(threads_server), timeout=30) as client:
        yield client


async def _create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/threads", json=body)
    assert response.status_code == 200, response.text
    thread: dict[str, Any] = response.json()
    return thread


def test_every_rpc_has_a_route_read_from_its_google_api_http_option() -> None:
    assert [r.name for r in ROUTES] == [m.name for m in SERVICE.methods]
    table = {(r.verb, r.path): r.name for r in ROUTES}
    assert len(table) == len(ROUTES), "two RPCs on one route"
    # LangGraph's routes, which its SDKs call, stay exactly these; a new RPC adds its own.
    assert (
        table.items()
        >= {
            ("POST", "/threads"): "Create",
            ("GET", "/threads/{thread_id}"): "Get",
            ("PATCH", "/threads/{thread_id}"): "Update",
            ("DELETE", "/threads/{thread_id}"): "Delete",
            ("POST", "/threads/{thread_id}/entries"): "Append",
            ("GET", "/threads/{thread_id}/entries"): "GetHistory",
            ("POST", "/threads/{thread_id}/copy"): "Copy",
            ("POST", "/threads/search"): "Search",
            ("POST", "/threads/count"): "Count",
        }.items()
    )
    # LangGraph's checkpoint paths are not ours to serve (README: HTTP/JSON).
    assert not any("/history" in r.path or "/state" in r.path for r in ROUTES)


def test_status_table_is_grpc_gateways() -> None:
    expected = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400}
    expected |= {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404}
    expected |= {"ALREADY_EXISTS": 409, "ABORTED": 409, "RESOURCE_EXHAUSTED": 429}
    expected |= {"UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500}
    assert {code.name: HTTP_STATUS[code] for code in HTTP_STATUS if code.name in expected} == (
        expected
    )
    import grpc  # noqa: PLC0415

    assert set(HTTP_STATUS) == set(grpc.StatusCode)


async def test_create_get_update_delete_in_langgraphs_shapes(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    created = await _create(http, thread_id=thread_id, metadata={"user": "ada", "n": 1})
    assert set(created) == THREAD_KEYS  # no expire_time: no ttl
    assert not set(LANGGRAPH_ONLY) & set(created)
    assert created["thread_id"] == thread_id
    assert created["metadata"] == {"user": "ada", "n": 1}  # 1, not 1.0
    assert created["created_at"].endswith("Z") and "T" in created["created_at"]
    assert (created["history_length"], created["copied_from"], created["owner"]) == (0, "", "")

    got = await http.get(f"/threads/{thread_id}")
    assert got.status_code == 200 and got.json() == created

    updated = await http.patch(f"/threads/{thread_id}", json={"metadata": {"n": 2}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["metadata"] == {"user": "ada", "n": 2}

    deleted = await http.delete(f"/threads/{thread_id}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    missing = await http.get(f"/threads/{thread_id}")
    assert_status(missing, 404, 5, "THREAD_NOT_FOUND")


async def test_copy_with_no_body_and_no_content_type(http: httpx.AsyncClient) -> None:
    source = await _create(http, metadata={"k": "v"})
    appended = await http.post(
        f"/threads/{source['thread_id']}/entries",
        json={"entries": [{"data": {"text": "hi"}}, {"data": {"text": "hello"}}]},
    )
    assert appended.status_code == 200 and appended.json() == {"history_length": 2}
    response = await http.post(f"/threads/{source['thread_id']}/copy")
    assert "content-type" not in response.request.headers
    assert response.status_code == 200, response.text
    copy = response.json()
    assert copy["copied_from"] == source["thread_id"] and copy["thread_id"] != source["thread_id"]
    assert (copy["metadata"], copy["history_length"]) == ({"k": "v"}, 2)

    page = await http.get(f"/threads/{copy['thread_id']}/entries", params={"page_size": 1})
    assert page.status_code == 200, page.text
    first = page.json()
    assert [e["data"] for e in first["entries"]] == [{"text": "hi"}]
    assert first["entries"][0]["index"] == 0 and first["next_page_token"]
    rest = await http.get(
        f"/threads/{copy['thread_id']}/entries",
        params={"page_token": first["next_page_token"]},
    )
    assert [(e["index"], e["data"]) for e in rest.json()["entries"]] == [(1, {"text": "hello"})]
    assert rest.json()["next_page_token"] == ""


async def test_copy_takes_the_protos_fields_as_json(http: httpx.AsyncClient) -> None:
    source = await _create(http)
    await http.post(
        f"/threads/{source['thread_id']}/entries", json={"entries": [{"data": {"i": 0}}] * 3}
    )
    body = {"history_length": 1, "metadata": {"fork": True}, "ttl": "600s", "request_id": "r-1"}
    first = await http.post(f"/threads/{source['thread_id']}/copy", json=body)
    again = await http.post(f"/threads/{source['thread_id']}/copy", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["thread_id"] == again.json()["thread_id"]  # request_id: same copy
    assert first.json()["history_length"] == 1 and first.json()["metadata"] == {"fork": True}
    assert "expire_time" in first.json()
    beyond = await http.post(f"/threads/{source['thread_id']}/copy", json={"history_length": 9})
    assert_status(beyond, 400, 11, "HISTORY_LENGTH_OUT_OF_RANGE")


async def test_langgraph_if_exists_and_ttl_shapes(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    created = await _create(http, thread_id=thread_id, ttl={"ttl": 30, "strategy": "delete"})
    assert "expire_time" in created
    taken = await http.post("/threads", json={"thread_id": thread_id, "if_exists": "raise"})
    assert_status(taken, 409, 6, "THREAD_ALREADY_EXISTS")
    same = await http.post(
        "/threads", json={"thread_id": thread_id, "if_exists": "do_nothing", "metadata": {"x": 1}}
    )
    assert same.status_code == 200 and same.json() == created
    proto_enum = await http.post(
        "/threads", json={"thread_id": thread_id, "if_exists": "IF_EXISTS_DO_NOTHING"}
    )
    assert proto_enum.json() == created
    # ttl as a Duration, and LangGraph's minutes without a strategy.
    assert "expire_time" in await _create(http, ttl="3600s")
    updated = await http.patch(f"/threads/{thread_id}", json={"metadata": {}, "ttl": {"ttl": 0}})
    assert updated.status_code == 200 and "expire_time" not in updated.json()


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"ttl": {"ttl": 5, "strategy": "keep_latest"}}, "ttl.strategy", "UNSUPPORTED_FIELD"),
        ({"ttl": {"ttl": 5, "other": 1}}, "ttl.other", "UNSUPPORTED_FIELD"),
        ({"ttl": {"ttl": -1}}, "ttl.ttl", "INVALID_TTL"),
        ({"supersteps": [{"updates": []}]}, "supersteps", "UNSUPPORTED_FIELD"),
        ({"colour": "red"}, "colour", "MALFORMED_REQUEST"),
        ({"metadata": "not an object"}, "metadata", "MALFORMED_REQUEST"),
        ({"history": [{"data": {"a": 1}, "index": True}]}, "history[0].index", "MALFORMED_REQUEST"),
        ({"if_exists": "sometimes"}, "if_exists", "MALFORMED_REQUEST"),
        ({"ttl": 5}, "ttl", "MALFORMED_REQUEST"),
    ],
)
async def test_a_bad_field_is_a_400_naming_it(
    http: httpx.AsyncClient, body: dict[str, Any], field: str, reason: str
) -> None:
    response = await http.post("/threads", json=body)
    error = assert_status(response, 400, 3, reason)
    assert error["details"][0]["metadata"]["field"] == field, error
    assert field.split("[", maxsplit=1)[0].split(".", maxsplit=1)[0] in error["message"], error


async def test_langgraphs_nulls_and_empty_defaults_are_accepted(http: httpx.AsyncClient) -> None:
    created = await _create(
        http, metadata=None, thread_id=None, if_exists=None, ttl=None, supersteps=None
    )
    assert created["metadata"] == {}
    assert await _create(http, supersteps=[]) is not None


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
async def test_malformed_json_is_a_400(http: httpx.AsyncClient, data: bytes, expect: str) -> None:
    response = await http.post(
        "/threads", content=data, headers={"content-type": "application/json"}
    )
    assert expect in assert_status(response, 400, 3, "MALFORMED_REQUEST")["message"]


async def test_errors_map_to_grpc_gateways_statuses(http: httpx.AsyncClient) -> None:
    assert_status(await http.get("/threads/not-a-uuid"), 400, 3, "INVALID_THREAD_ID")
    thread = await _create(http)
    path = f"/threads/{thread['thread_id']}/entries"
    stale = await http.post(path, json={"entries": [{"data": {}}], "expected_length": 5})
    assert_status(stale, 409, 10, "HISTORY_LENGTH_MISMATCH")
    assert_status(await http.post(path, json={"entries": []}), 400, 3, "NO_ENTRIES")
    bad_page = await http.get(path, params={"page_size": "-1"})
    assert_status(bad_page, 400, 3, "INVALID_PAGE_SIZE")
    unknown_query = await http.get(path, params={"colour": "red"})
    body = assert_status(unknown_query, 400, 3, "MALFORMED_REQUEST")
    assert body["details"][0]["metadata"]["field"] == "colour"
    body_on_get = await http.request("GET", path, content=b'{"page_size": 1}')
    assert_status(body_on_get, 400, 3, "MALFORMED_REQUEST")


async def test_unknown_route_404_wrong_method_405(http: httpx.AsyncClient) -> None:
    assert_status(await http.get("/nowhere"), 404, 5, "ROUTE_NOT_FOUND")
    # LangGraph's checkpoint routes are not served.
    thread = await _create(http)
    for path in ("history", "state"):
        missing = await http.post(f"/threads/{thread['thread_id']}/{path}", json={})
        assert_status(missing, 404, 5, "ROUTE_NOT_FOUND")
    wrong = await http.put(f"/threads/{thread['thread_id']}", json={})
    body = assert_status(wrong, 405, 12, "METHOD_NOT_ALLOWED")
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "PATCH", "DELETE"}, body


async def test_a_body_over_the_limit_is_413(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    started = await start_server(settings_for_test(max_message_bytes=1000), redis_server.url)
    async with httpx.AsyncClient(base_url=base_url(started.server), timeout=30) as http:
        big = {"metadata": {"blob": "x" * 2000}}
        assert_status(await http.post("/threads", json=big), 413, 8, "REQUEST_TOO_LARGE")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            yield b'{"metadata": {"blob": "'
            for _ in range(10):
                yield b"x" * 200
            yield b'"}}'

        streamed = await http.post("/threads", content=chunks())
        assert_status(streamed, 413, 8, "REQUEST_TOO_LARGE")
        assert (await http.post("/threads", json={"metadata": {"a": "b"}})).status_code == 200


async def test_auth_bearer_token_from_the_authorization_header(
    redis_server: RedisProcess, start_server: StartServer
) -> None:
    started = await start_server(settings_for_test(auth_jwt_secret=SECRET), redis_server.url)
    async with httpx.AsyncClient(base_url=base_url(started.server), timeout=30) as http:
        # Checked before the request itself: a malformed one still gets 401.
        assert_status(await http.post("/threads", content=b"{"), 401, 16, "TOKEN_MISSING")
        bad = {"Authorization": "Bearer nope"}
        assert_status(await http.post("/threads", json={}, headers=bad), 401, 16, "TOKEN_INVALID")
        alice = {"Authorization": f"Bearer {token('alice')}"}
        bob = {"Authorization": f"Bearer {token('bob')}"}
        created = await http.post("/threads", json={}, headers=alice)
        assert created.status_code == 200 and created.json()["owner"] == "alice"
        path = f"/threads/{created.json()['thread_id']}"
        assert (await http.get(path, headers=alice)).status_code == 200
        assert_status(await http.get(path, headers=bob), 404, 5, "THREAD_NOT_FOUND")
        health = await http.get("/ok")  # no token needed
        assert (health.status_code, health.json()) == (200, {"ok": True})


async def test_health_is_503_while_redis_does_not_answer(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    started = await start_server(settings_for_test(), own_redis.url)
    async with httpx.AsyncClient(base_url=base_url(started.server), timeout=30) as http:

        async def health_is(code: int) -> bool:
            return (await http.get("/ok")).status_code == code

        await eventually(lambda: health_is(200), "/ok 200")
        own_redis.stop()
        await eventually(lambda: health_is(503), "/ok 503 with Redis down")
        down = await http.get("/ok")
        assert down.json()["ok"] is False and down.json()["code"] == 14
        assert_status(await http.post("/threads", json={}), 503, 14, "STORE_UNAVAILABLE")


async def test_the_request_timeout_header_is_the_calls_deadline(
    own_redis: RedisProcess, start_server: StartServer
) -> None:
    started = await start_server(settings_for_test(), own_redis.url)
    async with httpx.AsyncClient(base_url=base_url(started.server), timeout=30) as http:
        bad = await http.post("/threads", json={}, headers={"X-Request-Timeout": "soon"})
        assert "X-Request-Timeout" in assert_status(bad, 400, 3, "MALFORMED_REQUEST")["message"]
        assert (
            await http.post("/threads", json={}, headers={"X-Request-Timeout": "20"})
        ).is_success
        assert own_redis.process is not None
        os.kill(own_redis.process.pid, signal.SIGSTOP)  # accepts, never answers
        try:
            frozen = await http.post("/threads", json={}, headers={"X-Request-Timeout": "0.3"})
            assert_status(frozen, 504, 4, "DEADLINE_EXCEEDED")
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)


async def test_openapi_describes_every_route_from_the_descriptors(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document == openapi.document()
    served = {(verb.upper(), path) for path, ops in document["paths"].items() for verb in ops}
    assert {(r.verb, r.path) for r in ROUTES} | {("GET", "/ok"), ("GET", "/metrics")} == served
    thread = document["components"]["schemas"]["threads.v1.Thread"]["properties"]
    assert set(thread) == THREAD_KEYS | {"expire_time"}
    delete = document["paths"]["/threads/{thread_id}"]["delete"]["responses"]
    assert "204" in delete
    search = document["paths"]["/threads/search"]["post"]
    assert search["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert "limit" in search["requestBody"]["content"]["application/json"]["schema"]["properties"]


async def test_an_enum_is_described_as_its_name_or_its_number(http: httpx.AsyncClient) -> None:
    """As proto3 JSON reads it (found by the fuzz run: schemathesis's negative data sent
    ``{"if_exists": 0}``, which the document called wrong and the server took)."""
    search = (await http.get("/openapi.json")).json()["paths"]["/threads/search"]["post"]
    properties = search["requestBody"]["content"]["application/json"]["schema"]["properties"]
    proto_or_null, langgraph_names = properties["sort_by"]["anyOf"]
    assert proto_or_null["anyOf"][0] == {
        "anyOf": [
            {"type": "string", "enum": SORT_BY_NAMES},
            {"type": "integer", "enum": [0, 1, 2, 3]},
        ]
    }
    assert langgraph_names["enum"] == ["created_at", "updated_at", "thread_id"]
    by_number = await http.post("/threads", json={"if_exists": 2})
    assert by_number.status_code == 200, by_number.text


async def test_https_and_mutual_tls_with_the_grpc_flags(
    redis_server: RedisProcess, start_server: StartServer, tmp_path: Path
) -> None:
    certs = generate(tmp_path)
    tls = {"tls_cert_file": certs.server.cert, "tls_key_file": certs.server.key}
    started = await start_server(
        settings_for_test(**tls),
        redis_server.url,
        credentials=_grpc_credentials(certs.ca.read_bytes()),
    )
    await started.wait_health(SERVING)
    context = ssl.create_default_context(cafile=str(certs.ca))
    async with httpx.AsyncClient(base_url=base_url(started.server, "https"), verify=context) as h:
        assert (await h.get("/ok")).json() == {"ok": True}
        assert (await h.post("/threads", json={})).status_code == 200
    async with httpx.AsyncClient(base_url=base_url(started.server)) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get("/ok")

    mutual = await start_server(
        settings_for_test(**tls, tls_client_ca_file=certs.ca),
        redis_server.url,
        credentials=_grpc_credentials(
            certs.ca.read_bytes(), certs.client.key.read_bytes(), certs.client.cert.read_bytes()
        ),
    )
    url = base_url(mutual.server, "https")
    async with httpx.AsyncClient(base_url=url, verify=context) as no_cert:
        with pytest.raises(httpx.HTTPError):
            await no_cert.get("/ok")
    with_cert = ssl.create_default_context(cafile=str(certs.ca))
    with_cert.load_cert_chain(certs.client.cert, certs.client.key)
    async with httpx.AsyncClient(base_url=url, verify=with_cert) as client:
        assert (await client.post("/threads", json={})).status_code == 200


def _grpc_credentials(ca: bytes, key: bytes | None = None, cert: bytes | None = None) -> Any:
    import grpc  # noqa: PLC0415

    return grpc.ssl_channel_credentials(ca, key, cert)


async def test_http_and_grpc_see_the_same_threads(http: httpx.AsyncClient, stub: Any) -> None:
    created = await _create(http, metadata={"via": "http"})
    got = await stub.Get(pb.GetRequest(thread_id=created["thread_id"]), timeout=10)
    assert got.thread.metadata["via"] == "http"


async def test_the_log_line_says_http(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await http.get(f"/threads/{uuid.uuid4()}")
    assert any(
        "rpc=Get code=NOT_FOUND" in r.getMessage() and "via=http" in r.getMessage()
        for r in caplog.records
    )


async def test_search_and_count_in_langgraphs_shapes(http: httpx.AsyncClient) -> None:
    tag = str(uuid.uuid4())
    made = [(await _create(http, metadata={"tag": tag, "i": i}))["thread_id"] for i in range(3)]
    response = await http.post(
        "/threads/search",
        json={"metadata": {"tag": tag}, "limit": 2, "offset": 0, "sort_by": "created_at",
              "sort_order": "asc", "status": None, "values": None, "select": None},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    found = response.json()
    assert isinstance(found, list) and [t["thread_id"] for t in found] == made[:2]
    rest = await http.post(
        "/threads/search", json={"metadata": {"tag": tag}, "offset": 2, "sort_order": "asc"}
    )
    assert [t["thread_id"] for t in rest.json()] == made[2:]
    newest_first = await http.post("/threads/search", json={"metadata": {"tag": tag}})
    assert [t["thread_id"] for t in newest_first.json()] == made[::-1]
    by_ids = await http.post("/threads/search", json={"ids": made[:1]})
    assert [t["thread_id"] for t in by_ids.json()] == made[:1]
    count = await http.post("/threads/count", json={"metadata": {"tag": tag}})
    assert (count.status_code, count.json()) == (200, 3)


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/threads/search", {"status": "idle"}, "status"),
        ("/threads/search", {"values": {"a": 1}}, "values"),
        ("/threads/search", {"select": ["thread_id"]}, "select"),
        ("/threads/search", {"extract": {"x": "values.x"}}, "extract"),
        ("/threads/search", {"sort_by": "status"}, "sort_by"),
        ("/threads/count", {"status": "busy"}, "status"),
        ("/threads/count", {"values": {"a": 1}}, "values"),
    ],
)
async def test_langgraph_search_fields_we_cannot_honour_are_400(
    http: httpx.AsyncClient, route: str, body: dict[str, Any], field: str
) -> None:
    error = assert_status(await http.post(route, json=body), 400, 3, "UNSUPPORTED_FIELD")
    assert error["details"][0]["metadata"]["field"] == field


def test_a_method_without_a_route_or_with_an_unsupported_one_is_refused() -> None:
    """ROUTES is built at import: a new RPC without its google.api.http option stops the
    server from starting, rather than going unserved."""
    from grpc_health.v1 import health_pb2  # noqa: PLC0415

    check = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]
    with pytest.raises(RouteError, match=r"no google\.api\.http option"):
        route_of(check)


async def test_a_bug_is_a_500_without_a_traceback(
    redis_server: RedisProcess, start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await start_server(settings_for_test(), redis_server.url)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug with a secret in its message")

    monkeypatch.setattr(started.server.store, "get", broken)
    async with httpx.AsyncClient(base_url=base_url(started.server), timeout=30) as http:
        response = await http.get(f"/threads/{uuid.uuid4()}")
    body = assert_status(response, 500, 13, None)
    assert body["message"] == "internal error; see the server log"
    assert "secret" not in response.text and "Traceback" not in response.text


def test_langgraph_shapes_name_only_rpcs_of_the_proto() -> None:
    langgraph.check_names(langgraph.SHAPES)
    with pytest.raises(ValueError, match=r"\['Creat'\]"):
        langgraph.check_names({**langgraph.SHAPES, "Creat": langgraph.Shape()})
