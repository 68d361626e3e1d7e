"""transports/http/front.py takes exactly the requests Starlette's router would send to an
RPC's endpoint, with the same path parameters, and leaves every other one to Starlette."""

from __future__ import annotations

import itertools
from typing import Any

from starlette.routing import Match, Route

from threads_server.transports.http.front import Front
from threads_server.transports.http.routes import ROUTES

METHODS = ("GET", "HEAD", "POST", "PATCH", "PUT", "DELETE")
SEGMENTS = ("", "threads", "search", "count", "copy", "entries", "ok", "a%2Fb", "x y")


def _paths() -> list[str]:
    paths = {route.path for route in ROUTES}
    for n in (1, 2, 3):
        for parts in itertools.product(SEGMENTS, repeat=n):
            paths.add("/" + "/".join(parts))
            paths.add("/threads/" + "/".join(parts))
    return sorted(paths)


async def _fallback(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def test_the_front_takes_what_starlettes_router_would_give_an_rpc() -> None:
    by_path: dict[str, dict[str, Any]] = {}
    for rpc in ROUTES:
        by_path.setdefault(rpc.path, {})[rpc.verb] = f"{rpc.verb} {rpc.path}"
    # As app.build_app orders them: literal paths before templated ones.
    routes = [
        Route(path, endpoint=_fallback, methods=list(endpoints))
        for path, endpoints in sorted(by_path.items(), key=lambda item: item[0].count("{"))
    ]
    front = Front(by_path, fallback=_fallback)
    for method, path in itertools.product(METHODS, _paths()):
        scope = {"type": "http", "method": method, "path": path}
        expected = None
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                expected = (route.path, child["path_params"])
                break
        found = front._find(method, path)
        got = None if found is None else (found[0], found[2])
        if found is not None:
            handler: Any = found[1]
            assert handler == f"{method} {found[0]}"
        # Starlette answers HEAD on a GET route; the front leaves HEAD to it.
        if method == "HEAD":
            assert got is None
        else:
            assert got == expected, (method, path)
