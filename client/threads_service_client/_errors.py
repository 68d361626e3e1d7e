"""Turns a failed gRPC call into the matching ``threads_service_client.exceptions`` class.

Shared by the async and sync clients, which raise what ``from_rpc_error`` returns.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from threads_service_client import exceptions
from threads_service_client.exceptions import ThreadsError, UnexpectedStatusError


def _by_code() -> dict[grpc.StatusCode, type[ThreadsError]]:
    """Each ``grpc_status_code`` declared in ``threads_service_client.exceptions`` and its class.

    Only that module's classes count: a caller's own subclass must not take over a code.
    """
    table: dict[grpc.StatusCode, type[ThreadsError]] = {}
    pending = [ThreadsError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        code = cls.grpc_status_code
        if code is None or cls.__module__ != exceptions.__name__:
            continue
        if code in table:
            raise TypeError(f"{cls.__name__} and {table[code].__name__} both claim {code.name}")
        table[code] = cls
    return table


_BY_CODE = _by_code()


def exception_class(code: grpc.StatusCode) -> type[ThreadsError]:
    """The class raised for ``code``: its own, else ``UnexpectedStatusError``."""
    return _BY_CODE.get(code, UnexpectedStatusError)


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
    return exception_class(code)(code, message or str(error), error_info=info, status=status)


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
