"""Requests read as strictly as grpc-gateway and Envoy read them (issue 19, item 2), against
a real server (in-process, real Redis, real sockets): one request means one thing to this
server and to any proxy or audit log on the way. The rules are
``threads_server.transports.http.strict``; its unit tests here (``test_loads_*``) are what a
faster JSON parser must pass too."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.http_helpers import assert_status, base_url
from tests.inprocess_server import eventually
from tests.store_checks import untouched
from threads_server.errors import InvalidArgument, Reason
from threads_server.server import ThreadsServer
from threads_server.transports.http import strict

JSON = {"content-type": "application/json; charset=utf-8"}


@pytest.fixture
async def http(threads_server: ThreadsServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(threads_server), timeout=30) as client:
        yield client


@pytest.fixture
async def thread_id(http: httpx.AsyncClient) -> str:
    created = await http.post("/threads", json={"metadata": {"k": "v"}})
    await http.post(f"/threads/{created.json()['thread_id']}/entries", json={"entries": [{}]})
    found: str = created.json()["thread_id"]
    return found


def _malformed(response: httpx.Response, field: str | None) -> dict[str, Any]:
    error = assert_status(response, 400, 3, "MALFORMED_REQUEST")
    assert error["details"][0].get("metadata", {}).get("field") == field, error
    return error


# --- duplicate keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_line", "field"),
    [
        ('POST /threads {"metadata": {"a": 1}, "metadata": {"b": 2}}', "metadata"),
        ('POST /threads {"metadata": {"a": 1, "a": 2}}', "metadata.a"),
        (
            'POST /threads/{id}/entries {"entries": [{}], "expected_length": 99, '
            '"expected_length": 1}',
            "expected_length",
        ),
        (
            'POST /threads/{id}/entries {"entries": [{"data": {"x": {"y": 1, "y": 1}}}]}',
            "entries[0].data.x.y",
        ),
        ('PATCH /threads/{id} {"metadata": {"a": 1}, "metadata": {"a": 1}}', "metadata"),
    ],
    ids=["top-level", "in-metadata", "expected-length", "nested-in-data", "same-value-twice"],
)
async def test_a_key_given_twice_is_refused_naming_it(
    http: httpx.AsyncClient, redis: Any, thread_id: str, request_line: str, field: str
) -> None:
    """A reader that keeps the first value saw another request than the one applied
    (``{"expected_length": 99, "expected_length": 1}`` was obeyed as 1)."""
    async with untouched(redis):
        response = await _send(http, request_line, thread_id)
    assert field in _malformed(response, field)["message"]


async def _send(http: httpx.AsyncClient, request_line: str, thread_id: str) -> httpx.Response:
    """``"<METHOD> <path> <body as written>"``; ``{id}`` in the path is ``thread_id``."""
    method, path, body = request_line.split(" ", 2)
    return await http.request(
        method, path.format(id=thread_id), content=body.encode(), headers=JSON
    )


# --- numbers in integer and enum fields ------------------------------------------------------


@pytest.mark.parametrize(
    ("request_line", "field"),
    [
        ('POST /threads {"if_exists": 2.9}', "if_exists"),
        ('POST /threads {"if_exists": 1e400}', "if_exists"),
        ('POST /threads {"if_exists": NaN}', "if_exists"),
        ('POST /threads {"history": [{"index": 0.5}]}', "history[0].index"),
        ('POST /threads/search {"sort_by": 3.5}', "sort_by"),
        ('POST /threads/search {"sort_by": Infinity}', "sort_by"),
        ('POST /threads/search {"sort_order": -Infinity}', "sort_order"),
        ('POST /threads/search {"limit": 2.5}', "page_size"),
        ('POST /threads/search {"offset": 1e400}', "offset"),
        ('POST /threads/{id}/entries {"entries": [{}], "expected_length": 1.5}', "expected_length"),
        ('POST /threads/{id}/copy {"history_length": 0.5}', "history_length"),
        ('POST /threads {"if_exists": true}', "if_exists"),
        ('POST /threads/{id}/entries {"entries": [""]}', "entries[0]"),
        ('POST /threads {"history": [{"data": {}}, []]}', "history[1]"),
    ],
)
async def test_a_value_of_the_wrong_kind_is_refused(
    http: httpx.AsyncClient, redis: Any, thread_id: str, request_line: str, field: str
) -> None:
    """Not rounded: ``{"if_exists": 2.9}`` acted as 2 (do nothing) and ``{"if_exists":
    1e400}`` was a 500. Nor an entry made up: ``{"entries": [""]}`` appended an empty one
    (found by the fuzz run, schemathesis ST201)."""
    async with untouched(redis):
        response = await _send(http, request_line, thread_id)
    assert field in _malformed(response, field)["message"]


async def test_a_whole_number_written_with_a_fraction_is_an_integer(
    http: httpx.AsyncClient, thread_id: str
) -> None:
    """As protojson reads it: ``2.0`` is 2 (IF_EXISTS_DO_NOTHING), ``1.0`` is 1."""
    same = await http.post("/threads", json={"thread_id": thread_id, "if_exists": 2.0})
    assert same.status_code == 200 and same.json()["thread_id"] == thread_id, same.text
    page = await http.post("/threads/search", json={"ids": [thread_id], "limit": 1.0})
    assert [t["thread_id"] for t in page.json()] == [thread_id], page.text


# --- UTF-8 only ------------------------------------------------------------------------------

_BODY = '{"metadata": {"name": "Zoë"}}'


@pytest.mark.parametrize(
    "data",
    [
        _BODY.encode("utf-16"),  # with a byte order mark
        _BODY.encode("utf-16-le"),
        _BODY.encode("utf-16-be"),
        _BODY.encode("utf-32"),
        _BODY.encode("latin-1"),
        b"\xef\xbb\xbf" + _BODY.encode(),  # UTF-8 with a byte order mark
    ],
    ids=["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "utf-8-bom"],
)
async def test_only_utf8_bodies_are_read(http: httpx.AsyncClient, redis: Any, data: bytes) -> None:
    """RFC 8259 §8.1, whatever the Content-Type says: ``json.loads`` on bytes guessed the
    encoding and took UTF-16 and UTF-32 declared ``charset=utf-8``."""
    async with untouched(redis):
        response = await http.post("/threads", content=data, headers=JSON)
    message = _malformed(response, None)["message"]
    assert "UTF-8" in message or "BOM" in message, message
    created = await http.post("/threads", content=_BODY.encode(), headers=JSON)
    assert created.json()["metadata"] == {"name": "Zoë"}


@pytest.mark.parametrize(
    ("request_line", "field"),
    [
        (r'POST /threads {"metadata": {"a": "\ud800"}}', "metadata.a"),
        (r'POST /threads {"metadata": {"\udc00": 1}}', "metadata"),
        (r'POST /threads {"history": [{"data": {"a": ["\ud83d"]}}]}', "history[0].data.a[0]"),
        (r'POST /threads/count {"metadata": "\ud800"}', "metadata"),
        (r'POST /threads/search {"sort_by": "\udfff"}', "sort_by"),
        (r'POST /threads/{id}/copy {"request_id": "x\ud800"}', "request_id"),
    ],
    ids=["value", "key", "in-a-list", "count-metadata", "sort-by", "request-id"],
)
async def test_a_lone_surrogate_is_refused_naming_where(
    http: httpx.AsyncClient, redis: Any, thread_id: str, request_line: str, field: str
) -> None:
    """Found by the fuzz run: ``{"metadata": "\\ud800"}`` on Count was a 500, as the error
    message quoted the value and no UTF-8 could encode it. JSON strings are Unicode text
    (RFC 8259 §8.2); a lone surrogate escape is none, and no protobuf string holds it."""
    async with untouched(redis):
        response = await _send(http, request_line, thread_id)
    assert "lone surrogate" in _malformed(response, field)["message"]


async def test_a_surrogate_pair_is_a_character(http: httpx.AsyncClient) -> None:
    """What json.dumps writes for any character past U+FFFF (ensure_ascii)."""
    response = await http.post(
        "/threads", content=b'{"metadata": {"smile": "\\ud83d\\ude00"}}', headers=JSON
    )
    assert response.status_code == 200 and response.json()["metadata"] == {"smile": "\U0001f600"}


# --- paths -----------------------------------------------------------------------------------


async def test_an_encoded_slash_stays_inside_its_segment(
    http: httpx.AsyncClient, redis: Any, thread_id: str
) -> None:
    """As a gRPC-JSON transcoder reads ``%2F``: ``/threads/<id>%2Fentries`` is the path
    ``/threads/{thread_id}`` with an invalid id. It used to be decoded before routing, so
    these appended, copied and searched."""
    async with untouched(redis):
        for encoded in ("%2F", "%2f"):
            appended = await http.post(
                f"/threads/{thread_id}{encoded}entries", json={"entries": [{}]}
            )
            assert appended.request.url.raw_path.endswith(f"{encoded}entries".encode())
            assert_status(appended, 405, 12, "METHOD_NOT_ALLOWED")
            copied = await http.post(f"/threads/{thread_id}{encoded}copy", json={})
            assert_status(copied, 405, 12, "METHOD_NOT_ALLOWED")
            searched = await http.post(f"/threads{encoded}search", json={})
            assert_status(searched, 404, 5, "ROUTE_NOT_FOUND")
        read = await http.get(f"/threads/{thread_id}%2Fentries")
    error = assert_status(read, 400, 3, "INVALID_THREAD_ID")
    assert f"{thread_id}%2Fentries" in error["message"]


@pytest.mark.parametrize("path", ["/threads/{id}/", "/threads/", "/threads/search/", "/ok/"])
async def test_a_trailing_slash_is_a_404_never_a_redirect_built_from_host(
    http: httpx.AsyncClient, thread_id: str, path: str
) -> None:
    """Starlette answered 307 with ``Location: http://<Host header>/...``: an open redirect
    for anyone who can set Host. Configured off (``Router.redirect_slashes``)."""
    response = await http.get(path.format(id=thread_id), headers={"Host": "evil.example"})
    assert "location" not in response.headers
    assert_status(response, 404, 5, "ROUTE_NOT_FOUND")


@pytest.mark.parametrize("path", ["/threads/search", "/threads/count"])
@pytest.mark.parametrize("method", ["OPTIONS", "PUT"])
async def test_a_wrong_method_on_a_literal_path_names_that_paths_methods(
    http: httpx.AsyncClient, path: str, method: str
) -> None:
    """Found by the fuzz run (schemathesis ST205): ``OPTIONS /threads/count`` answered 405
    with ``Allow: DELETE, GET, PATCH``, the methods of /threads/{thread_id}, which the
    path matches too."""
    response = await http.request(method, path)
    error = assert_status(response, 405, 12, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST", error
    assert error["details"][0]["metadata"]["allow"] == "POST"


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_another_method_of_a_literal_path_is_an_invalid_id(
    http: httpx.AsyncClient, method: str
) -> None:
    """As a transcoder routes it: GET /threads/count is Get's pattern, with the id "count"."""
    response = await http.request(method, "/threads/count")
    assert_status(response, 400, 3, "INVALID_THREAD_ID")


# --- framing ---------------------------------------------------------------------------------


def _exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """Sends raw bytes; returns what came back and whether the server then closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.settimeout(3)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            pass
        return received, True


async def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    threads_server: ThreadsServer, redis: Any
) -> None:
    """RFC 9112 §6.1. The bytes after the chunked body (a second request, here a Create)
    ran on the same connection: request smuggling behind a proxy that reads the length.
    Holds whatever parses HTTP/1.1: uvicorn's h11 (our check, a JSON 400) and httptools
    (llhttp refuses such a request itself with a plain 400)."""
    smuggled = b"POST /threads HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    chunked = b"0\r\n\r\n"
    request = (
        b"POST /threads/count HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n" % len(chunked + smuggled)
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunked
        + smuggled
    )
    async with untouched(redis):  # neither the Count nor the smuggled Create ran
        received, closed = await _in_thread(_exchange, threads_server.http_port, request)
    assert received.startswith(b"HTTP/1.1 400 "), received
    assert received.count(b"HTTP/1.1 ") == 1, received
    assert closed, received
    if b"application/json" in received:
        assert b'"MALFORMED_REQUEST"' in received and b"Transfer-Encoding" in received


async def test_a_client_gone_before_its_body_is_a_499_not_a_traceback(
    threads_server: ThreadsServer, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the fuzz run: a client that closed the connection before its whole body
    came made Starlette log "Exception in ASGI application" with a traceback (and count a
    500). Now it is counted as 499, grpc-gateway's status for a cancelled call."""
    path = f"/threads/{uuid.uuid4()}/entries"
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" % path.encode()
    with socket.create_connection(("127.0.0.1", threads_server.http_port), timeout=10) as sock:
        sock.sendall(head + b'{"entries"')

    async def counted() -> bool:
        text = (await http.get("/metrics")).text
        return 'route="/threads/{thread_id}/entries",status="499"' in text

    await eventually(counted, "the call counted as 499")
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("GET /ok", "/ok"),
        ("GET /nowhere", "(unmatched)"),
        ("PUT /threads/count", "/threads/count"),
        ("GET /threads/count", "/threads/{thread_id}"),
    ],
    ids=["health", "404", "405", "rpc"],
)
async def test_a_malformed_chunk_after_the_handler_started_is_no_traceback(
    threads_server: ThreadsServer,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    route: str,
    template: str,
) -> None:
    """Found by the fuzz run: a chunked request whose chunk size is junk, to a route that
    answers without reading the body (/ok, a 404, a 405). h11 finds the junk after the
    handler started; uvicorn answers 400 and closes, and the handler's own answer then
    failed inside uvicorn ("Exception in ASGI application", a traceback). A chunked
    request is now answered only after its body (``_AfterTheBody``), here never: 499."""
    method, path = route.split(" ")
    head = b"%s %s HTTP/1.1\r\nHost: x\r\n" % (method.encode(), path.encode())
    request = head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
    received, closed = await _in_thread(_exchange, threads_server.http_port, request)
    assert received.startswith(b"HTTP/1.1 400 ") and closed, received

    async def counted() -> bool:  # the handler has run and its answer went nowhere
        text = (await http.get("/metrics")).text
        return f'method="{method}",route="{template}",status="499"' in text

    await eventually(counted, "the call counted as 499")
    assert "Exception in ASGI application" not in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_keep_alive_connection_still_serves_several_requests(
    threads_server: ThreadsServer,
) -> None:
    """The framing check refuses only the ambiguous request: pipelined ones still run."""
    one = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
    received, closed = await _in_thread(_exchange, threads_server.http_port, one * 2)
    assert received.count(b"HTTP/1.1 200 ") == 2 and not closed, received


async def _in_thread(function: Any, *args: Any) -> Any:
    """Blocking socket code off the event loop the in-process server runs on."""
    return await asyncio.to_thread(function, *args)


# --- LangGraph's sort_by values --------------------------------------------------------------


@pytest.mark.parametrize("value", ["state_updated_at", "status", "colour"])
async def test_a_sort_this_service_does_not_serve_is_unsupported_naming_it(
    http: httpx.AsyncClient, value: str
) -> None:
    """Not the protobuf parser's "Invalid enum value" message: which sort, and which are
    served."""
    response = await http.post("/threads/search", json={"sort_by": value})
    error = assert_status(response, 400, 3, "UNSUPPORTED_FIELD")
    assert error["details"][0]["metadata"] == {"field": "sort_by", "value": value}
    assert repr(value) in error["message"] and "created_at" in error["message"], error
    assert "Invalid enum value" not in error["message"]


async def test_the_protos_sort_names_and_numbers_still_work(http: httpx.AsyncClient) -> None:
    for sort_by in ("SORT_BY_UPDATED_AT", 3, "thread_id"):
        response = await http.post("/threads/search", json={"sort_by": sort_by, "limit": 1})
        assert response.status_code == 200, (sort_by, response.text)


# --- the rules on their own (what a faster parser must keep) ---------------------------------


@pytest.mark.parametrize(
    ("data", "field", "says"),
    [
        (b'{"a": 1, "a": 1}', "a", "twice"),
        (b'{"a": [{"b": {"c": 1, "c": 2}}]}', "a[0].b.c", "twice"),
        (b'{"a": "\xff"}', None, "UTF-8"),
        (b'{"a": {"b": "\\ud800"}}', "a.b", "lone surrogate"),
        (b'{"\\udc00\\u00e9": {"b": 1}}', None, "lone surrogate"),
        ('{"a": 1}'.encode("utf-16"), None, "UTF-8"),
        (b'{"a": 1,}', None, "not valid JSON"),
        (b"[1]", None, "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, None, "not valid JSON"),
    ],
)
def test_loads_refuses(data: bytes, field: str | None, says: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        strict.loads(data)
    assert raised.value.reason is Reason.MALFORMED_REQUEST
    assert raised.value.metadata.get("field") == field
    assert says in raised.value.message


def test_loads_reads_non_finite_numbers_as_doubles_for_the_handlers_to_refuse() -> None:
    body = strict.loads(b'{"a": NaN, "b": Infinity, "c": -1e400, "d": 2.5, "e": "\\u00e9"}')
    assert body["a"] != body["a"] and body["b"] == float("inf") and body["c"] == float("-inf")
    assert (body["d"], body["e"]) == (2.5, "é")
    huge = {"x": [10**400, -(10**400), 2**1024 - 2**970 - 1]}
    strict.past_doubles_as_infinity(huge)
    assert huge == {"x": [float("inf"), float("-inf"), 2**1024 - 2**970 - 1]}


def test_route_path_keeps_only_encoded_slashes() -> None:
    assert strict.route_path(b"/threads/a%2Fb%2fc%20d") == "/threads/a%2Fb%2Fc d"
    assert strict.route_path(b"/threads/a%20b") is None  # the server's own decoding stands
    assert strict.route_path(str(uuid.uuid4()).encode()) is None
