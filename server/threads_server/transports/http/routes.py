"""The HTTP routes, read from each RPC's ``google.api.http`` option (AIP-127) in the proto.

The proto is the one place a route is written: the server, its OpenAPI document and any
gRPC-JSON transcoder (grpc-gateway, Envoy) read the same options. Only what the service
uses is supported, and anything else fails at import rather than being served wrongly:
one rule per method (no ``additional_bindings``), path variables that name a top-level
field (``{thread_id}``, no ``{name=pattern}``), and ``body`` either ``*`` or absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor

from threads_server.pb import threads_pb2 as pb

SERVICE: descriptor.ServiceDescriptor = pb.DESCRIPTOR.services_by_name["ThreadService"]
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_VERBS = ("get", "put", "post", "delete", "patch")


class RouteError(ValueError):
    """A google.api.http option uses a form this server does not serve."""


@dataclass(frozen=True)
class Route:
    """One RPC's HTTP binding: ``verb path``, which fields come from the path, whether the
    body is the request (``body: "*"``) and which response field is the whole reply."""

    method: descriptor.MethodDescriptor
    verb: str
    path: str
    path_fields: tuple[str, ...]
    has_body: bool
    response_body: str

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def query_fields(self) -> tuple[descriptor.FieldDescriptor, ...]:
        """Without a body, the request's other scalar fields come from the query string."""
        if self.has_body:
            return ()
        return tuple(
            f
            for f in self.method.input_type.fields
            if f.name not in self.path_fields
            and f.type != descriptor.FieldDescriptor.TYPE_MESSAGE
            and not f.is_repeated
        )

    @property
    def empty_reply(self) -> bool:
        """A reply with no fields (Delete) is ``204 No Content``."""
        return not self.method.output_type.fields


def route_of(method: descriptor.MethodDescriptor) -> Route:
    """The method's route; RouteError for a method without one or with an unsupported one."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        raise RouteError(f"{method.full_name} has no google.api.http option")
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    if verb not in _VERBS or rule.additional_bindings:
        raise RouteError(f"{method.full_name}: only one get/put/post/delete/patch rule is served")
    path: str = getattr(rule, verb)
    fields = {f.name: f for f in method.input_type.fields}
    path_fields = tuple(_VARIABLE.findall(path))
    if _VARIABLE.sub("", path).count("{") or any(
        name not in fields or fields[name].type != descriptor.FieldDescriptor.TYPE_STRING
        for name in path_fields
    ):
        raise RouteError(f"{method.full_name}: path {path!r} must use {{string_field}} only")
    if rule.body not in ("", "*"):
        raise RouteError(f"{method.full_name}: body must be '*' or absent, not {rule.body!r}")
    if rule.response_body and rule.response_body not in {f.name for f in method.output_type.fields}:
        raise RouteError(f"{method.full_name}: response_body {rule.response_body!r} is no field")
    return Route(
        method=method,
        verb=verb.upper(),
        path=path,
        path_fields=path_fields,
        has_body=rule.body == "*",
        response_body=rule.response_body,
    )


ROUTES: tuple[Route, ...] = tuple(route_of(method) for method in SERVICE.methods)
"""Every ThreadService RPC's route, in the proto's order."""
