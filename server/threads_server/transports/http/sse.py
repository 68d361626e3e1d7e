"""Server-Sent Events: the HTTP face of a server-streaming RPC (Watch). ``app``'s route
builds the request as for any route, then answers with an ``EventStream``, which runs the
same ``service.call.Endpoint`` as gRPC, with a ``send`` that writes events.

``GET /threads/{thread_id}/entries/stream?start_index=N`` answers ``text/event-stream``:

- one event per entry: ``id: <index>``, ``event: entry``, ``data:`` the entry as
  ``GET …/entries`` renders it;
- a progress message: ``event: progress``, ``data: {"history_length": N}`` (no id, so a
  client's last event id stays the last entry's);
- ``Last-Event-ID: k`` resumes at ``k + 1`` and wins over ``start_index``, so a browser's
  ``EventSource`` resumes by itself, exactly;
- an error before the first byte is the ordinary Status JSON with its HTTP status (an
  ``EventSource`` then stops: a deleted thread ends its rejoins); after it, ``event: error``
  with the Status JSON as data, and the stream closes.

Each event is sent once the previous one was taken (uvicorn's ``send`` waits while the
socket's buffer is full), so a slow reader holds one message. A client that goes away is
heard (``http.disconnect``) and its stream cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from threads_server.errors import InvalidArgument, Reason
from threads_server.service.call import Endpoint, Failure
from threads_server.transports.http import codec
from threads_server.transports.http.routes import Route
from threads_server.transports.http.status import HTTP_STATUS, status_body

MEDIA_TYPE = "text/event-stream"
LAST_EVENT_ID = "last-event-id"
# The request field a Last-Event-ID header sets, to the event's id + 1.
RESUME_FIELD = "start_index"
_HEADERS = [
    (b"content-type", MEDIA_TYPE.encode()),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass events on as they come
]


def _json(value: Any) -> bytes:
    """Compact JSON on one line, as Starlette's JSONResponse writes it (a ``data:`` line
    holds no newline)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def events(route: Route, message: Any) -> bytes:
    """The events of one message: an entry event per entry, or one progress event. The
    message may be shared with other streams (``store.feeds``, over gRPC too); rendering
    only reads it (a stored NaN is written as "NaN" without rewriting the message)."""
    body = codec.render_value(route, message)
    entries = body.get("entries") or []
    if not entries:
        return _event(b"progress", {"history_length": body["history_length"]})
    return b"".join(
        b"id: %d\nevent: entry\ndata: %s\n\n" % (entry["index"], _json(entry)) for entry in entries
    )


def _event(name: bytes, data: Any) -> bytes:
    return b"event: " + name + b"\ndata: " + _json(data) + b"\n\n"


def resume_query(request: Request, query: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query with ``start_index`` set from ``Last-Event-ID: k`` (to k + 1), which wins
    over the query's own; the query unchanged without the header."""
    raw = request.headers.get(LAST_EVENT_ID)
    if raw is None:
        return list(query)
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidArgument(
            f"the Last-Event-ID header must be the index of an entry event (0 or more), got "
            f"{raw[:32]!r}",
            reason=Reason.INVALID_START_INDEX,
            field="Last-Event-ID",
        )
    return [*((k, v) for k, v in query if k != RESUME_FIELD), (RESUME_FIELD, str(int(raw) + 1))]


class EventStream(Response):
    """The streaming call, run when Starlette sends the response."""

    def __init__(
        self,
        call: Endpoint,
        route: Route,
        message: Any,
        metadata: list[tuple[str, str]],
        timeout: float | None,
    ) -> None:
        super().__init__()
        self.call = call
        self.route = route
        self.message = message
        self.metadata = metadata
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_events(message: Any) -> None:
            nonlocal started
            if not started:
                await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
                started = True
            body = events(self.route, message)
            await send({"type": "http.response.body", "body": body, "more_body": True})

        stream = asyncio.ensure_future(
            self.call(self.message, self.metadata, self.timeout, send_events)
        )
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((stream, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not stream.done():  # the client went away (or we are cancelled)
                stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
        if not stream.done() or stream.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                await stream
            return
        failure = stream.result()
        if isinstance(failure, Failure) and not started:
            body = _json(status_body(failure.code, failure.message, failure.error))
            await send(
                {
                    "type": "http.response.start",
                    "status": HTTP_STATUS[failure.code],
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        tail = b""
        if isinstance(failure, Failure):
            tail = _event(b"error", status_body(failure.code, failure.message, failure.error))
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
