"""The server's error tree: each error knows its gRPC code and ErrorInfo reason (AIP-193).

Handlers raise these; ``threads_server.rpc`` turns them into a ``google.rpc.Status`` with an
``ErrorInfo`` (domain ``threads.v1``) in the ``grpc-status-details-bin`` trailer.

    ThreadsError
    ├── Unauthenticated      UNAUTHENTICATED
    ├── InvalidArgument      INVALID_ARGUMENT
    ├── NotFound             NOT_FOUND
    ├── AlreadyExists        ALREADY_EXISTS
    ├── Aborted              ABORTED
    ├── OutOfRange           OUT_OF_RANGE
    ├── FailedPrecondition   FAILED_PRECONDITION
    ├── ResourceExhausted    RESOURCE_EXHAUSTED
    ├── Unavailable          UNAVAILABLE
    └── DeadlineExceeded     DEADLINE_EXCEEDED
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "threads.v1"


class ThreadsError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, reason: str, **metadata: object) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = {k: str(v) for k, v in metadata.items()}

    def to_status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name),
            message=self.message,
            details=[detail],
        )
        converted: grpc.Status = rpc_status.to_status(status)
        return converted


class Unauthenticated(ThreadsError):
    code = grpc.StatusCode.UNAUTHENTICATED


class InvalidArgument(ThreadsError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ThreadsError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ThreadsError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(ThreadsError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(ThreadsError):
    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(ThreadsError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ThreadsError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ThreadsError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ThreadsError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def thread_not_found(thread_id: str) -> NotFound:
    return NotFound(
        f"thread {thread_id} does not exist", reason="THREAD_NOT_FOUND", thread_id=thread_id
    )
