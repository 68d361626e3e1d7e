"""The server's error tree: each error knows its gRPC code and ErrorInfo reason (AIP-193).

Handlers and the store raise these; ``service.call`` turns them into a ``google.rpc.Status``
with an ``ErrorInfo`` (domain ``threads.v1``) in the ``grpc-status-details-bin`` trailer (HTTP:
the same Status as JSON). This module imports nothing of the service: every layer may raise
these. A Lua script's non-OK outcome becomes its error in ``store.outcomes.from_outcome``.

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
    ├── DeadlineExceeded     DEADLINE_EXCEEDED
    └── Unimplemented        UNIMPLEMENTED (HTTP: a route without that method)
"""

from __future__ import annotations

from enum import StrEnum

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "threads.v1"


class Reason(StrEnum):
    """Every ``google.rpc.ErrorInfo`` reason the service sends (AIP-193), defined once.

    Callers branch on these, so each is a contract: docs/api.md's errors table documents
    every member (a test checks), and a new failure gets a member here before it is raised.
    """

    # UNAUTHENTICATED
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    # INVALID_ARGUMENT
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    INVALID_THREAD_ID = "INVALID_THREAD_ID"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    INVALID_PAGE_SIZE = "INVALID_PAGE_SIZE"
    INVALID_EXPECTED_LENGTH = "INVALID_EXPECTED_LENGTH"
    INVALID_HISTORY_LENGTH = "INVALID_HISTORY_LENGTH"
    INVALID_IF_EXISTS = "INVALID_IF_EXISTS"
    INVALID_REQUEST_ID = "INVALID_REQUEST_ID"
    INVALID_TTL = "INVALID_TTL"
    INVALID_OFFSET = "INVALID_OFFSET"
    INVALID_START_INDEX = "INVALID_START_INDEX"
    INVALID_SORT_BY = "INVALID_SORT_BY"
    INVALID_SORT_ORDER = "INVALID_SORT_ORDER"
    TOO_MANY_THREAD_IDS = "TOO_MANY_THREAD_IDS"
    NO_ENTRIES = "NO_ENTRIES"
    TOO_MANY_ENTRIES = "TOO_MANY_ENTRIES"
    ENTRY_TOO_LARGE = "ENTRY_TOO_LARGE"
    ENTRY_TOO_DEEP = "ENTRY_TOO_DEEP"
    METADATA_TOO_DEEP = "METADATA_TOO_DEEP"
    NUMBER_NOT_FINITE = "NUMBER_NOT_FINITE"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    # INVALID_ARGUMENT, HTTP only: a LangGraph request field this service cannot honour
    UNSUPPORTED_FIELD = "UNSUPPORTED_FIELD"
    # HTTP only: no such route (404), a route without that method (405), a body over
    # --max-message-bytes (413)
    ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    # INVALID_ARGUMENT (the request alone) or FAILED_PRECONDITION (with the stored thread)
    HISTORY_TOO_LONG = "HISTORY_TOO_LONG"
    METADATA_TOO_LARGE = "METADATA_TOO_LARGE"
    # NOT_FOUND, ALREADY_EXISTS, ABORTED, OUT_OF_RANGE
    THREAD_NOT_FOUND = "THREAD_NOT_FOUND"
    THREAD_ALREADY_EXISTS = "THREAD_ALREADY_EXISTS"
    HISTORY_LENGTH_MISMATCH = "HISTORY_LENGTH_MISMATCH"
    HISTORY_LENGTH_OUT_OF_RANGE = "HISTORY_LENGTH_OUT_OF_RANGE"
    START_INDEX_OUT_OF_RANGE = "START_INDEX_OUT_OF_RANGE"
    # FAILED_PRECONDITION
    THREAD_DELETED = "THREAD_DELETED"
    COPY_DELETED = "COPY_DELETED"
    SEARCH_DISABLED = "SEARCH_DISABLED"
    # RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED
    TOO_MANY_WATCHERS = "TOO_MANY_WATCHERS"
    STORE_OUT_OF_MEMORY = "STORE_OUT_OF_MEMORY"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    REPLICATION_TIMEOUT = "REPLICATION_TIMEOUT"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class ThreadsError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, reason: Reason, **metadata: object) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = {k: str(v) for k, v in metadata.items()}

    def to_status_proto(self) -> status_pb2.Status:
        """The ``google.rpc.Status``, with the ErrorInfo in its details (gRPC and HTTP)."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name),
            message=self.message,
            details=[detail],
        )

    def to_status(self) -> grpc.Status:
        converted: grpc.Status = rpc_status.to_status(self.to_status_proto())
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


class Unimplemented(ThreadsError):
    code = grpc.StatusCode.UNIMPLEMENTED


def thread_not_found(thread_id: str) -> NotFound:
    return NotFound(
        f"thread {thread_id} does not exist", reason=Reason.THREAD_NOT_FOUND, thread_id=thread_id
    )


def search_disabled() -> FailedPrecondition:
    return FailedPrecondition(
        "Search and Count are off on this server (--search-index 0): its writes do not "
        "maintain the search index. Turn it on and run `threads-server migrate` to index "
        "threads written meanwhile",
        reason=Reason.SEARCH_DISABLED,
    )
