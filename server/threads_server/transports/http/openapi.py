"""``GET /openapi.json``: the OpenAPI 3.1 document of the HTTP routes, generated from the
same descriptors the routes are (``routes.ROUTES``), so it cannot drift from what is served.

Schemas follow ``codec``: proto field names, int64 as JSON integers, Timestamps as RFC 3339
strings, Durations as ``"<seconds>s"``, Struct as any JSON object; the route's
``response_body`` field is the whole reply; LangGraph's extra request shapes
(``langgraph.EXTRA_FIELDS``) are described beside the proto's. Errors are
``google.rpc.Status`` JSON with LangGraph's ``detail``.
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor

from threads_server.transports.http import langgraph
from threads_server.transports.http.routes import ROUTES, SERVICE, Route

Json = dict[str, Any]
FD = descriptor.FieldDescriptor
_REF = "#/components/schemas/"
_NULL: Json = {"type": "null"}
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_INT64 = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}
_SCALARS: dict[int, Json] = {
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_BYTES: {"type": "string", "format": "byte"},
    FD.TYPE_DOUBLE: {"type": "number"},
    FD.TYPE_FLOAT: {"type": "number"},
    FD.TYPE_INT32: _INT32,
    FD.TYPE_SINT32: _INT32,
    FD.TYPE_SFIXED32: _INT32,
    FD.TYPE_INT64: _INT64,
    FD.TYPE_SINT64: _INT64,
    FD.TYPE_SFIXED64: _INT64,
    FD.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    FD.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    FD.TYPE_UINT64: {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
    FD.TYPE_FIXED64: {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
}
_WELL_KNOWN: dict[str, Json] = {
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "seconds, e.g. 3600s",
    },
}
STATUS_SCHEMA: Json = {
    "type": "object",
    "description": "google.rpc.Status as JSON, plus LangGraph's detail (the message)",
    "properties": {
        "code": {"type": "integer", "description": "the gRPC status code"},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {"type": "object", "properties": {"@type": {"type": "string"}}},
        },
        "detail": {"type": "string"},
    },
    "required": ["code", "message", "details", "detail"],
}


SSE_EVENT_SCHEMA: Json = {
    "type": "object",
    "description": "one event of the stream (transports/http/sse.py): its data is JSON, an "
    'entry as GET …/entries renders it, {"history_length": N}, or a google.rpc.Status',
    "properties": {
        "event": {"enum": ["entry", "progress", "error"]},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "entry events: the index"},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "required": ["event", "data"],
}


def _field_schema(field: FD, schemas: Json) -> Json:
    if field.enum_type is not None:  # proto3 JSON reads an enum's name or its number
        values = field.enum_type.values
        schema: Json = {
            "anyOf": [
                {"type": "string", "enum": [v.name for v in values]},
                {"type": "integer", "enum": [v.number for v in values]},
            ]
        }
    elif field.message_type is not None:
        schema = _message_ref(field.message_type, schemas)
    else:
        schema = dict(_SCALARS[field.type])
    if field.is_repeated:
        return {"type": "array", "items": schema}
    return schema


def _message_ref(message: descriptor.Descriptor, schemas: Json) -> Json:
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    if message.full_name not in schemas:
        schemas[message.full_name] = {}  # placeholder: recursive messages terminate
        schemas[message.full_name] = _object(message.fields, schemas)
    return {"$ref": _REF + message.full_name}


def _object(fields: Any, schemas: Json, extra: Json | None = None) -> Json:
    # null is "unset" in proto3 JSON, accepted for every field.
    properties = {f.name: {"anyOf": [_field_schema(f, schemas), _NULL]} for f in fields}
    for name, schema in (extra or {}).items():
        properties[name] = {"anyOf": [properties[name], schema]} if name in properties else schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _operation(route: Route, schemas: Json) -> Json:
    method = route.method
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.path_fields
    ]
    parameters += [
        {"name": f.name, "in": "query", "required": False, "schema": _field_schema(f, schemas)}
        for f in route.query_fields
    ]
    operation: Json = {
        "operationId": route.name,
        "summary": f"{SERVICE.full_name}.{route.name}",
        "parameters": parameters,
    }
    if route.has_body:
        fields = [f for f in method.input_type.fields if f.name not in route.path_fields]
        body = _object(fields, schemas, langgraph.EXTRA_FIELDS.get(route.name))
        operation["requestBody"] = {"required": False, "content": _json(body)}
    if method.server_streaming:  # transports/http/sse.py
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "the id of the last event received: resume after it (wins "
                "over start_index)",
                "schema": {"type": "string"},
            }
        )
        ok: Json = {
            "200": {
                "description": "Server-Sent Events: `entry` events (id: the entry's index; "
                'data: the entry), `progress` events (data: {"history_length": N}), and '
                "an `error` event (data: google.rpc.Status) before the stream closes",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            }
        }
    elif route.empty_reply:
        ok = {"204": {"description": "done; no body"}}
    else:
        if route.response_body:
            reply = _field_schema(method.output_type.fields_by_name[route.response_body], schemas)
        else:
            reply = _message_ref(method.output_type, schemas)
        ok = {"200": {"description": "OK", "content": _json(reply)}}
    operation["responses"] = {
        **ok,
        "default": {
            "description": "an error (google.rpc.Status)",
            "content": _json({"$ref": _REF + "google.rpc.Status"}),
        },
    }
    return operation


@functools.cache
def document() -> Json:
    """The OpenAPI 3.1 document (built once; descriptors do not change at run time)."""
    schemas: Json = {"google.rpc.Status": STATUS_SCHEMA}
    paths: Json = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.verb.lower()] = _operation(route, schemas)
    paths["/metrics"] = {
        "get": {
            "operationId": "Metrics",
            "summary": "Prometheus metrics, summed over every worker; no token needed",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    paths["/ok"] = {
        "get": {
            "operationId": "Health",
            "summary": "ok while Redis answers; no token needed",
            "security": [],
            "responses": {
                "200": {
                    "description": "serving",
                    "content": _json(
                        {
                            "type": "object",
                            "properties": {"ok": {"const": True}},
                            "required": ["ok"],
                        }
                    ),
                },
                "503": {
                    "description": "Redis does not answer",
                    "content": _json({"$ref": _REF + "google.rpc.Status"}),
                },
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": SERVICE.full_name,
            "version": "v1",
            "description": "threads over HTTP/JSON: LangGraph's thread routes, generated from "
            "the google.api.http options of threads.v1",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }
