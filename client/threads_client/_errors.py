"""Turns a failed gRPC call into the matching ``threads_client.exceptions`` class.

Shared by the async and sync clients, which raise what ``from_rpc_error`` returns.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from threads_client.exceptions import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ThreadsError,
    UnauthenticatedError,
    UnavailableError,
    UnexpectedStatusError,
)

_BY_CODE: dict[grpc.StatusCode, type[ThreadsError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(error: grpc.RpcError) -> ThreadsError:
    """The exception for a failed call, carrying its code, message and ErrorInfo.

    Both ``grpc.aio.AioRpcError`` and the sync client's errors are ``grpc.Call``-like; an
    ``RpcError`` that is not (or whose details are malformed) still maps by code, without
    the ErrorInfo, so a broken trailer never hides the original failure.
    """
    call: Any = error
    code = status_code(error)
    message = call.details() if callable(getattr(call, "details", None)) else None
    status = _status(call)
    info = _error_info(status) if status is not None else None
    return _BY_CODE.get(code, UnexpectedStatusError)(
        code, message or str(error), error_info=info, status=status
    )


def status_code(error: grpc.RpcError) -> grpc.StatusCode:
    """The call's status code; UNKNOWN for an ``RpcError`` that carries none."""
    call: Any = error
    code = call.code() if callable(getattr(call, "code", None)) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _status(call: Any) -> status_pb2.Status | None:
    if not callable(getattr(call, "trailing_metadata", None)):
        return None
    try:
        status: status_pb2.Status | None = rpc_status.from_call(call)
    except Exception:  # undecodable or inconsistent details: map by code alone
        return None
    return status


def _error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None
