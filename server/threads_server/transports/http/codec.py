"""JSON to request messages and response messages to JSON, for one route.

Proto field names as written (snake_case, as LangGraph and grpcurl write them), RFC 3339
timestamps, Struct as plain JSON (``google.protobuf.json_format``). Two departures from
proto3 JSON, both for LangGraph's clients: int64 fields are JSON numbers, not strings
(``history_length``, Count's reply; all far below 2**53), and the field named by the
route's ``response_body`` is the whole reply (a thread, a bare list, a bare number).
Fields without presence are always written (``copied_from: ""``), so a reply always has
the same keys; unset messages (``expire_time``) are left out. Replies are written in one
pass by ``reply``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format, message, message_factory

from threads_server.errors import InvalidArgument
from threads_server.transports.http import langgraph, reply, strict
from threads_server.transports.http.routes import Route
from threads_server.transports.http.strict import malformed

_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)"')
_AT_PATH = re.compile(r" at [A-Za-z0-9_]+\.([^ ]+?)\.*$")
_PARSE_FIELD = re.compile(r"^Failed to parse ([A-Za-z0-9_]+) field")


def parse_body(data: bytes) -> dict[str, Any]:
    """The request body as a JSON object (read as ``strict`` says); an empty body is
    ``{}`` (Copy with no body)."""
    if not data.strip():
        return {}
    return strict.loads(data)


def build_request(
    route: Route,
    path_params: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    body: dict[str, Any],
) -> message.Message:
    """The route's request message from its path variables, query string and JSON body."""
    request_class = message_factory.GetMessageClass(route.method.input_type)
    fields: dict[str, Any] = dict(body)
    langgraph.adapt(route.name, fields)
    query_fields = {f.name for f in route.query_fields}
    for name, value in query:
        if langgraph.ignores_query(route.name, name, value):
            continue
        if name not in query_fields:
            raise malformed(f"unknown query parameter {name!r} for {route.verb} {route.path}", name)
        if name in fields:
            raise malformed(f"query parameter {name!r} is given twice", name)
        fields[name] = value
    for name, value in path_params.items():
        if name in fields and fields[name] != value:
            raise malformed(f"{name} is in the path ({value}); the body may not differ", name)
        fields[name] = value
    strict.check_fields(route.method.input_type, fields)
    try:
        return _parse_dict(fields, request_class)
    except OverflowError:
        # An integer past a double's range in a Struct; as infinity, it is refused with
        # the field and key it is under, as 1e400 is.
        strict.past_doubles_as_infinity(fields)
        return _parse_dict(fields, request_class)


def _parse_dict(fields: dict[str, Any], request_class: type[message.Message]) -> message.Message:
    request = request_class()
    try:
        json_format.ParseDict(fields, request, max_recursion_depth=100)
    except json_format.ParseError as exc:
        raise _parse_error(str(exc)) from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise malformed(
            f"the request is not a valid {request_class.DESCRIPTOR.name}: {exc}"
        ) from None
    return request


def _parse_error(text: str) -> InvalidArgument:
    first = text.splitlines()[0]
    unknown = _UNKNOWN_FIELD.search(first)
    if unknown:
        field = unknown.group(1)
        return malformed(f"{field}: no such field in this request (see /openapi.json)", field)
    at = _AT_PATH.search(first)
    named = _PARSE_FIELD.search(first)
    field = at.group(1) if at else (named.group(1) if named else None)
    return malformed(f"{field}: {first}" if field else first, field)


def render(route: Route, response: message.Message) -> bytes:
    """The reply's JSON bytes: the message, or its ``response_body`` field (``reply``)."""
    return reply.to_json(response, route.response_body)


def render_value(route: Route, response: message.Message) -> Any:
    """``render``'s JSON as a value, for a caller that writes it its own way (sse.py)."""
    return reply.to_value(response, route.response_body)
