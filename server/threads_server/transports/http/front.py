"""The HTTP app's entry: an RPC route goes straight to its endpoint; the rest to Starlette.

Starlette answers every request through its middleware stack (error and exception
middleware, our request counter), a router that tries each route's regular expression in
turn, and ``JSONResponse``. For the routes of the RPCs (the hot path) that is most of what
the front door adds to a call, so ``Front`` takes them first: a literal path is one dict
lookup, a templated one a match against the few templates of its first segment, and a hit
runs the route's endpoint (the same function Starlette would run, with the same
``Request``), counts the request and sends the reply. Whatever it does not take (another
method on an RPC's path, ``/ok``, ``/openapi.json``, ``/metrics``, an unknown path)
goes to the Starlette app unchanged, which answers and counts it as before: a 405 with its
``Allow`` header, a 404, HEAD.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from threads_server.ops import metrics
from threads_server.transports.http.status import HTTP_STATUS

_CANCELLED = HTTP_STATUS[grpc.StatusCode.CANCELLED]  # 499: the client left before the answer

Handler = Callable[[Request], Awaitable[Response]]


def chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


class AfterTheBody:
    """A chunked request is answered once its body is in, or not at all if the client is
    gone. The parser may find a malformed chunk after the handler started; uvicorn then answers
    400 and closes at once, and a response the handler sends that early (a 404, /ok, a
    refusal that needs no body) failed inside uvicorn, logged as "Exception in ASGI
    application". Handlers that read the body are never held up."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive, self._send = receive, send
        self._body_done = self.gone = False

    def pair(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._body_done = self.gone = True
        elif not message.get("more_body", False):
            self._body_done = True
        return message

    async def send(self, message: Message) -> None:
        while not self._body_done:
            await self.receive()  # the rest of the body, dropped: nobody reads it now
        if not self.gone:
            await self._send(message)


class Front:
    """``routes``: path template -> HTTP method -> endpoint; ``fallback``: the app for
    everything else."""

    def __init__(self, routes: Mapping[str, Mapping[str, Handler]], fallback: ASGIApp) -> None:
        self._fallback = fallback
        self._literal: dict[tuple[str, str], tuple[str, Handler]] = {}
        self._templated: dict[str, list[tuple[re.Pattern[str], str, Mapping[str, Handler]]]] = {}
        for template, by_method in routes.items():
            if "{" not in template:
                for method, handler in by_method.items():
                    self._literal[method, template] = (template, handler)
                continue
            regex, _, _ = compile_path(template)  # Starlette's own, so both match alike
            first = template.split("/")[1]
            self._templated.setdefault(first, []).append((regex, template, by_method))

    def _find(self, method: str, path: str) -> tuple[str, Handler, dict[str, str]] | None:
        literal = self._literal.get((method, path))
        if literal is not None:
            return literal[0], literal[1], {}
        for regex, template, by_method in self._templated.get(path.split("/", 2)[1], ()):
            handler = by_method.get(method)
            if handler is not None and (match := regex.match(path)) is not None:
                return template, handler, match.groupdict()
        return None  # Starlette's: a 405 naming the path's methods, or a 404

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._fallback(scope, receive, send)
            return
        found = self._find(scope["method"], scope["path"])
        if found is None:
            await self._fallback(scope, receive, send)
            return
        template, handler, params = found
        started = time.perf_counter()
        scope["path_params"] = params
        after = None
        if chunked(scope):
            after = AfterTheBody(receive, send)
            receive, send = after.pair()
        status = 500  # if the endpoint fails: a bug, which uvicorn logs
        try:
            response = await handler(Request(scope, receive))
            await response(scope, receive, send)
            status = _CANCELLED if after is not None and after.gone else response.status_code
        finally:
            metrics.http_request(template, scope["method"], status, time.perf_counter() - started)
