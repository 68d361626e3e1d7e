"""LangGraph's request shapes, accepted beside the proto's (the proto's JSON is canonical).

LangGraph's SDKs send a few fields that the proto names or shapes differently
(``if_exists: "do_nothing"``, ``ttl: {"ttl": <minutes>, "strategy": "delete"}``, Search's
``limit``/``ids``/``sort_by: "created_at"``); each is rewritten here into the proto's JSON.
Fields LangGraph has and this service cannot honour (``status``, ``values``,
``supersteps``, ...) are accepted only empty, the way the SDKs send them when unused;
with a value they are a 400 naming the field, never silently dropped.

``SHAPES`` is the one table, an entry per RPC that LangGraph shapes its own way (by the
RPC's name in the proto; an RPC without one takes the proto's JSON only): the fields it
accepts beyond its proto fields (the OpenAPI document describes them), the adapter that
rewrites them, and the query parameters LangGraph sends that change nothing here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from threads_server.errors import InvalidArgument, Reason
from threads_server.pb import threads_pb2 as pb
from threads_server.service import validation
from threads_server.transports.http.routes import SERVICE

Json = dict[str, Any]

_TTL_SCHEMA: Json = {
    "type": "object",
    "description": "LangGraph's ttl: minutes, deleted when they pass",
    "properties": {
        "ttl": {"type": "number", "minimum": 0},
        "strategy": {"type": "string", "enum": ["delete"]},
    },
    "required": ["ttl"],
    "additionalProperties": False,
}
_NULL: Json = {"type": "null"}
_UNHONOURED_LIST: Json = {"type": ["array", "null"], "maxItems": 0}
_UNHONOURED_OBJECT: Json = {"type": ["object", "null"], "maxProperties": 0}
_IF_EXISTS = {"raise": "IF_EXISTS_RAISE", "do_nothing": "IF_EXISTS_DO_NOTHING"}
_SORT_BY = {
    "created_at": "SORT_BY_CREATED_AT",
    "updated_at": "SORT_BY_UPDATED_AT",
    "thread_id": "SORT_BY_THREAD_ID",
}
_SORT_ORDER = {"asc": "SORT_ORDER_ASC", "desc": "SORT_ORDER_DESC"}


def _unsupported(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {why}", reason=Reason.UNSUPPORTED_FIELD, field=field)


def _only_empty(body: Json, field: str, why: str, empty: Any = None) -> None:
    """LangGraph's SDKs send some fields null (or ``empty``: [] or {}) when unused: those
    are accepted; anything else is a 400 naming the field."""
    if field in body:
        value = body.pop(field)
        if value is not None and not (type(value) is type(empty) and value == empty):
            raise _unsupported(field, why)


def _rename(body: Json, alias: str, field: str) -> None:
    if alias in body:
        if field in body:
            raise InvalidArgument(
                f"{alias} and {field} are the same field (LangGraph's and the proto's name); "
                "give one",
                reason=Reason.MALFORMED_REQUEST,
                field=alias,
            )
        value = body.pop(alias)
        if value is not None:
            body[field] = value


def _enum(body: Json, field: str, names: dict[str, str]) -> None:
    value = body.get(field)
    if isinstance(value, str) and value in names:
        body[field] = names[value]


def _ttl(body: Json) -> None:
    """LangGraph's ``{"ttl": <minutes>, "strategy": "delete"}`` as a Duration."""
    value = body.get("ttl")
    if not isinstance(value, dict):
        return
    unknown = sorted(set(value) - {"ttl", "strategy"})
    if unknown:
        raise _unsupported(f"ttl.{unknown[0]}", "LangGraph's ttl has only ttl and strategy")
    strategy = value.get("strategy", "delete")
    if strategy != "delete":
        raise _unsupported(
            "ttl.strategy", f"only 'delete' is supported (threads expire whole), not {strategy!r}"
        )
    minutes = value.get("ttl")
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int | float)
        or not 0 <= minutes * 60 <= validation.MAX_TTL_SECONDS  # NaN fails both
    ):
        raise InvalidArgument(
            "ttl.ttl must be a number of minutes from 0 to "
            f"{validation.MAX_TTL_SECONDS // 60} (100 years), got {json.dumps(minutes)}",
            reason=Reason.INVALID_TTL,
            field="ttl.ttl",
        )
    body["ttl"] = f"{minutes * 60:.9f}s" if isinstance(minutes, float) else f"{minutes * 60}s"


def _create(body: Json) -> None:
    _enum(body, "if_exists", _IF_EXISTS)
    _ttl(body)
    _only_empty(
        body, "supersteps", "copying a LangGraph run's supersteps is not supported here", []
    )


def _update(body: Json) -> None:
    _ttl(body)


_NO_STATUS = "threads here have no run status (no runs are executed)"
_NO_VALUES = "threads here have no state values (entries are not checkpoints)"
# LangGraph's sorts this service cannot serve, and why.
_UNSERVED_SORT_BY = {
    "status": _NO_STATUS,
    "state_updated_at": "threads here have no state (entries are not checkpoints)",
}
_PROTO_SORT_BY = frozenset(pb.SortBy.keys())


def _sort_by(body: Json) -> None:
    """LangGraph's sort_by names, the proto's enum names, or an enum number (``strict``
    checks numbers); any other name is a sort this service does not serve."""
    value = body.get("sort_by")
    if not isinstance(value, str) or value in _PROTO_SORT_BY:
        return
    if value in _SORT_BY:
        body["sort_by"] = _SORT_BY[value]
        return
    why = _UNSERVED_SORT_BY.get(value, "no such sort")
    raise InvalidArgument(
        f"sort_by {value[:64]!r} is not served here: {why}. Sort by created_at, updated_at "
        "or thread_id",
        reason=Reason.UNSUPPORTED_FIELD,
        field="sort_by",
        value=value[:64],
    )


def _search(body: Json) -> None:
    _rename(body, "limit", "page_size")
    _rename(body, "ids", "thread_ids")
    _sort_by(body)
    _enum(body, "sort_order", _SORT_ORDER)
    _only_empty(body, "status", _NO_STATUS)
    _only_empty(body, "values", _NO_VALUES, {})
    _only_empty(body, "select", "selecting fields is not supported; every field is returned", [])
    _only_empty(body, "extract", _NO_VALUES, {})


def _count(body: Json) -> None:
    _only_empty(body, "status", _NO_STATUS)
    _only_empty(body, "values", _NO_VALUES, {})


@dataclass(frozen=True, slots=True)
class Shape:
    """How LangGraph shapes one RPC's request: ``fields``, what it may send beyond the
    proto's JSON (field -> JSON schema: aliases of a proto field, limit -> page_size, and
    unhonoured fields, accepted only empty); ``adapt``, which rewrites those into the
    proto's JSON in place; ``ignored_query``, query parameters and the values of them that
    change nothing here (name -> values)."""

    fields: Json = field(default_factory=dict)
    adapt: Callable[[Json], None] | None = None
    ignored_query: Mapping[str, frozenset[str]] = field(default_factory=dict)


SHAPES: dict[str, Shape] = {
    "Create": Shape(
        {
            "if_exists": {"type": "string", "enum": list(_IF_EXISTS)},
            "ttl": _TTL_SCHEMA,
            "supersteps": _UNHONOURED_LIST,
        },
        _create,
    ),
    # LangGraph's opt-in for the ttl; expire_time is always in the reply.
    "Get": Shape(ignored_query={"include": frozenset({"ttl"})}),
    "Update": Shape({"ttl": _TTL_SCHEMA}, _update),
    "Search": Shape(
        {
            "limit": {"type": "integer", "minimum": 0, "description": "page_size"},
            "ids": {"type": "array", "items": {"type": "string"}, "description": "thread_ids"},
            "sort_by": {"type": "string", "enum": list(_SORT_BY)},
            "sort_order": {"type": "string", "enum": list(_SORT_ORDER)},
            "status": _NULL,
            "values": _UNHONOURED_OBJECT,
            "select": _UNHONOURED_LIST,
            "extract": _UNHONOURED_OBJECT,
        },
        _search,
    ),
    "Count": Shape({"status": _NULL, "values": _UNHONOURED_OBJECT}, _count),
}
"""Per RPC of the proto, by name: how LangGraph shapes its request."""


def check_names(shapes: Mapping[str, Shape]) -> None:
    """A shape for an RPC the proto does not have (a typo, a renamed RPC) fails at start-up
    instead of never applying."""
    unknown = set(shapes) - {method.name for method in SERVICE.methods}
    if unknown:
        raise ValueError(f"langgraph.SHAPES names RPCs the proto does not have: {sorted(unknown)}")


check_names(SHAPES)

EXTRA_FIELDS: dict[str, Json] = {
    name: shape.fields for name, shape in SHAPES.items() if shape.fields
}
"""Per RPC: field -> JSON schema of what LangGraph may send beyond the proto's JSON."""
_NO_SHAPE = Shape()


def adapt(rpc: str, body: Json) -> None:
    """Rewrites ``body`` in place from LangGraph's shapes to the proto's JSON."""
    adapter = SHAPES.get(rpc, _NO_SHAPE).adapt
    if adapter is not None:
        adapter(body)


def ignores_query(rpc: str, name: str, value: str) -> bool:
    """Whether query parameter ``name=value`` is LangGraph's and changes nothing here."""
    return value in SHAPES.get(rpc, _NO_SHAPE).ignored_query.get(name, ())
