"""Errors over HTTP: the status code of each gRPC code, and the JSON body every error has.

The table is grpc-gateway's (``runtime.HTTPStatusFromCode``), so a client sees the same
status here as behind any gRPC-JSON transcoder. The body is the ``google.rpc.Status`` as
JSON (``code``, ``message``, ``details`` holding the ``ErrorInfo``) plus LangGraph's
``detail`` (the message), which the LangGraph SDKs show in their exceptions.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf import json_format

from threads_server.errors import ThreadsError

HTTP_STATUS: MappingProxyType[grpc.StatusCode, int] = MappingProxyType(
    {
        grpc.StatusCode.OK: 200,
        grpc.StatusCode.CANCELLED: 499,
        grpc.StatusCode.UNKNOWN: 500,
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.DEADLINE_EXCEEDED: 504,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.ALREADY_EXISTS: 409,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
        grpc.StatusCode.FAILED_PRECONDITION: 400,
        grpc.StatusCode.ABORTED: 409,
        grpc.StatusCode.OUT_OF_RANGE: 400,
        grpc.StatusCode.UNIMPLEMENTED: 501,
        grpc.StatusCode.INTERNAL: 500,
        grpc.StatusCode.UNAVAILABLE: 503,
        grpc.StatusCode.DATA_LOSS: 500,
    }
)
"""gRPC code to HTTP status, as grpc-gateway maps it; defined once."""


def status_body(
    code: grpc.StatusCode, message: str, error: ThreadsError | None = None
) -> dict[str, Any]:
    """``google.rpc.Status`` as JSON (ErrorInfo in ``details``), plus LangGraph's ``detail``."""
    details: list[Any] = []
    if error is not None:
        status = error.to_status_proto()
        details = [
            json_format.MessageToDict(d, preserving_proto_field_name=True) for d in status.details
        ]
    return {"code": code.value[0], "message": message, "details": details, "detail": message}
