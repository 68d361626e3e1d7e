"""The HTTP/JSON front door: a Starlette app whose routes are the proto's google.api.http
options, calling the same handlers as gRPC in the same process (``service.call.Endpoint``).

Each request goes: body read under ``--max-message-bytes`` (else 413), JSON to the
request message (``codec``; a bad one is carried to the endpoint as a MalformedRequest, so
that auth is still checked first), then the route's endpoint with the request's headers as
the call's metadata (``Authorization: Bearer <JWT>``) and its deadline, then the reply as
JSON or the error as ``google.rpc.Status`` JSON with the status grpc-gateway would give.

Deadline: ``X-Request-Timeout: <seconds>`` bounds the call as a gRPC deadline does.
Without it, as for a gRPC call without a deadline, each Redis call is bounded by
``--redis-timeout-seconds``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from threads_server.errors import (
    InvalidArgument,
    NotFound,
    Reason,
    ResourceExhausted,
    ThreadsError,
    Unimplemented,
)
from threads_server.ops import metrics
from threads_server.service.call import (
    INTERNAL_MESSAGE,
    Authenticating,
    Endpoint,
    Failure,
    MalformedRequest,
    Via,
)
from threads_server.transports.http import codec, openapi, sse, strict
from threads_server.transports.http.front import AfterTheBody, Front, chunked
from threads_server.transports.http.routes import ROUTES
from threads_server.transports.http.routes import Route as RpcRoute
from threads_server.transports.http.status import HTTP_STATUS, status_body

TIMEOUT_HEADER = "x-request-timeout"
HEALTH_PATH = "/ok"
OPENAPI_PATH = "/openapi.json"
METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "(unmatched)"


class _TooLargeError(Exception):
    pass


def error_response(
    code: grpc.StatusCode,
    message: str,
    error: ThreadsError | None = None,
    *,
    http_status: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_body(code, message, error),
        status_code=HTTP_STATUS[code] if http_status is None else http_status,
        headers=headers,
    )


def _transport_error(error: ThreadsError, http_status: int) -> JSONResponse:
    """An error of the HTTP layer itself (no route, wrong method, body too large): its own
    HTTP status, and the gRPC code and ErrorInfo a transcoder would give."""
    return error_response(error.code, error.message, error, http_status=http_status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLargeError
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _timeout(request: Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise strict.malformed(
            f"the X-Request-Timeout header must be a positive number of seconds, got {raw!r}",
            "X-Request-Timeout",
        )
    return seconds


def _prefers_minimal(request: Request) -> bool:
    """RFC 7240 ``Prefer: return=minimal`` (LangGraph's ``update(..., return_minimal=True)``):
    the call runs as usual and the reply is ``204`` without the body."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip().lower() == "return=minimal" for p in prefer.split(","))


def _endpoint(
    route: RpcRoute, servicer: Authenticating, max_body_bytes: int
) -> Callable[[Request], Any]:
    via = Via("http", route=(route.verb, route.path), http_status=HTTP_STATUS)
    call = Endpoint(servicer, route.name, via)
    request_type = route.method.input_type.full_name
    streaming = route.method.server_streaming  # Server-Sent Events (sse.py)

    async def endpoint(request: Request) -> Response:
        try:
            data = await _read_body(request, max_body_bytes)
        except _TooLargeError:
            too_large = ResourceExhausted(
                f"the request body is larger than the {max_body_bytes} bytes allowed "
                "(--max-message-bytes)",
                reason=Reason.REQUEST_TOO_LARGE,
                limit=max_body_bytes,
            )
            return _transport_error(too_large, 413)
        except ClientDisconnect:
            # The caller went away before its whole body came: nothing ran, and nobody
            # reads an answer. Not a traceback in the log: 499, as nginx and grpc-gateway
            # count a call the client cancelled.
            return error_response(
                grpc.StatusCode.CANCELLED,
                "the client closed the connection before the whole request body arrived",
            )
        if call.handler is None:
            return error_response(
                grpc.StatusCode.UNIMPLEMENTED, f"{route.name} is not implemented by this server"
            )
        timeout: float | None = None
        message: Any
        try:
            timeout = _timeout(request)
            if not route.has_body and data.strip():
                raise strict.malformed(f"{route.verb} {route.path} takes no request body")
            body = codec.parse_body(data) if route.has_body else {}
            query = request.query_params.multi_items()
            if streaming:
                query = sse.resume_query(request, query)
            message = codec.build_request(route, request.path_params, query, body)
        except InvalidArgument as exc:
            message = MalformedRequest(request_type, exc.message, exc)
        metadata = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        if streaming:
            return sse.EventStream(call, route, message, metadata, timeout)
        outcome = await call(message, metadata, timeout)
        if isinstance(outcome, Failure):
            return error_response(outcome.code, outcome.message, outcome.error)
        if route.empty_reply or _prefers_minimal(request):
            return Response(status_code=204)
        return Response(codec.render(route, outcome), media_type="application/json")

    return endpoint


def _dispatch(endpoints: dict[str, Callable[[Request], Any]]) -> Callable[[Request], Any]:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        response: Response = await endpoints[method](request)
        return response

    return dispatch


async def _not_found(request: Request, exc: Exception) -> Response:
    missing = NotFound(
        f"no route {request.method} {request.url.path}; see {OPENAPI_PATH}",
        reason=Reason.ROUTE_NOT_FOUND,
        path=request.url.path,
    )
    return _transport_error(missing, 404)


async def _http_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        # HEAD comes with every GET in Starlette; the Allow header names the routes' methods.
        allowed = ", ".join(
            sorted(m for m in (exc.headers or {}).get("Allow", "").split(", ") if m != "HEAD")
        )
        wrong_method = Unimplemented(
            f"{request.url.path} does not take {request.method}; it takes {allowed}",
            reason=Reason.METHOD_NOT_ALLOWED,
            method=request.method,
            allow=allowed,
        )
        response = _transport_error(wrong_method, 405)
        response.headers["Allow"] = allowed
        return response
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        return await _not_found(request, exc)
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Never a traceback to the caller: the log has it (Starlette logs what reaches here)."""
    return error_response(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


class _StrictRequests:
    """``strict``'s framing and path rules, before routing (the outermost layer, in front
    of ``front.Front``): a request with both Content-Length and Transfer-Encoding is
    refused with ``Connection: close`` (the server closes the connection after it), and
    counted here as no route's; a ``%2F`` stays inside its path segment. (A chunked
    request is answered after its body: ``front.AfterTheBody``, in both paths.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = strict.framing_problem(scope["headers"])
            if problem is not None:
                started = time.perf_counter()
                response = _transport_error(problem, 400)
                response.headers["Connection"] = "close"
                await response(scope, receive, send)
                elapsed = time.perf_counter() - started
                metrics.http_request(UNMATCHED_ROUTE, scope["method"], 400, elapsed)
                return
            path = strict.route_path(scope.get("raw_path") or b"")
            if path is not None:
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)


class _ChunkedAfterTheBody:
    """``front.AfterTheBody`` for the requests Starlette serves (inside the counter, which
    then counts a request whose answer went nowhere as 499)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and chunked(scope):
            receive, send = AfterTheBody(receive, send).pair()
        await self.app(scope, receive, send)


class _CountRequests:
    """Counts every HTTP request Starlette serves by the template of the route it matched
    (which it leaves in the scope), never the raw path, so ids never become label values.
    (The RPCs' routes are counted by ``front.Front``, strict refusals by _StrictRequests.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        returned = False
        try:
            await self.app(scope, receive, send_counted)
            returned = True
        finally:
            if status is None:  # failed before it answered, or the client was gone
                status = HTTP_STATUS[grpc.StatusCode.CANCELLED] if returned else 500
            route = scope.get("route")
            template = route.path if isinstance(route, Route) else UNMATCHED_ROUTE
            metrics.http_request(template, scope["method"], status, time.perf_counter() - started)


def build_app(
    servicer: Authenticating,
    *,
    max_body_bytes: int,
    is_serving: Callable[[], bool],
) -> ASGIApp:
    """The ASGI app: one route per RPC (from the proto), ``/ok``, ``/openapi.json`` and
    ``/metrics`` (Prometheus; like ``/ok``, open without a token). Every request passes
    ``_StrictRequests``; then the RPCs' routes are taken by ``front.Front`` before
    Starlette's stack, and Starlette serves the rest."""
    document = openapi.document()

    async def health(request: Request) -> Response:
        if is_serving():
            return JSONResponse({"ok": True})
        body = status_body(grpc.StatusCode.UNAVAILABLE, "the thread store is not reachable")
        return JSONResponse({"ok": False, **body}, status_code=503)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def metrics_text(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, headers={"Content-Type": content_type})

    routes: list[BaseRoute] = [
        Route(HEALTH_PATH, health, methods=["GET"]),
        Route(OPENAPI_PATH, openapi_json, methods=["GET"]),
        Route(METRICS_PATH, metrics_text, methods=["GET"]),
    ]
    # One Starlette route per path, dispatching on the method, so that a 405's Allow
    # header names every method the path takes.
    by_path: dict[str, dict[str, Callable[[Request], Any]]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, {})[route.verb] = _endpoint(route, servicer, max_body_bytes)
    # Literal paths before templated ones: Starlette answers a wrong method with the first
    # route whose path matches, and /threads/count also matches /threads/{thread_id}.
    routes += [
        Route(path, _dispatch(endpoints), methods=list(endpoints))
        for path, endpoints in sorted(by_path.items(), key=lambda item: item[0].count("{"))
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_CountRequests), Middleware(_ChunkedAfterTheBody)],
        exception_handlers={
            404: _not_found,
            HTTPException: _http_exception,
            Exception: _unexpected,
        },
    )
    # No 307 to the path with(out) a trailing slash: Starlette builds its Location from the
    # Host header. Such a path is a 404, as behind a transcoder.
    app.router.redirect_slashes = False
    # A stream (Watch's Server-Sent Events) stays with Starlette: its status is the one it
    # sends, which only Starlette's counter sees.
    fast: dict[str, dict[str, Callable[[Request], Any]]] = {}
    for route in ROUTES:
        if not route.method.server_streaming:
            fast.setdefault(route.path, {})[route.verb] = by_path[route.path][route.verb]
    return _StrictRequests(Front(fast, app))
