"""Exceptions raised by the threads client, one class per gRPC status code the service uses.

Catch ``ThreadsError`` for any failed call, or a subclass for one outcome::

    ThreadsError                   any non-OK status
    ├── InvalidArgumentError       INVALID_ARGUMENT     bad id, page token, request_id, ...
    ├── NotFoundError              NOT_FOUND            the thread does not exist
    ├── AlreadyExistsError         ALREADY_EXISTS       create with a taken thread_id
    ├── AbortedError               ABORTED              append's expected_length did not match
    ├── OutOfRangeError            OUT_OF_RANGE         copy's history_length beyond the end
    ├── FailedPreconditionError    FAILED_PRECONDITION  a copy request_id whose copy was deleted
    ├── ResourceExhaustedError     RESOURCE_EXHAUSTED   message too large, store out of memory
    ├── UnauthenticatedError       UNAUTHENTICATED      token missing, malformed or expired
    ├── PermissionDeniedError      PERMISSION_DENIED    the token's caller may not do this
    ├── UnavailableError           UNAVAILABLE          server or store unreachable; retry
    ├── DeadlineExceededError      DEADLINE_EXCEEDED    the call's timeout expired
    └── UnexpectedStatusError      any other code       INTERNAL, UNKNOWN, CANCELLED, ...

Every exception keeps what the server sent, so callers can branch on the machine-readable
``reason`` (AIP-193, e.g. ``THREAD_NOT_FOUND``) rather than on the message text: ``code``
(``grpc.StatusCode``), ``message``, and from the ``google.rpc.ErrorInfo`` in the status
details ``reason``, ``domain`` and ``metadata`` (empty when the status carried none, e.g.
errors made by gRPC itself). ``status`` and ``error_info`` hold the parsed messages, and
``__cause__`` the original ``grpc.RpcError``.

Retrying is safe for ``UnavailableError`` and ``DeadlineExceededError`` only when the call
is idempotent: reads, ``update``, ``delete``, ``append`` with ``expected_length``, ``create``
and ``copy`` with ``request_id``. A client with a ``RetryPolicy`` retries
``UnavailableError`` by itself for all of those but ``append`` (``threads_service_client._retry``).
"""

from __future__ import annotations

from typing import ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2

# The one list of the classes; ``threads_service_client`` re-exports it (a test checks it is
# complete).
__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ThreadsError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnexpectedStatusError",
]


class ThreadsError(Exception):
    """A call to the threads service ended with a non-OK status.

    ``grpc_status_code`` is the code a subclass stands for: ``threads_service_client._errors``
    builds its code-to-class lookup from it, so a new class is raised as soon as it exists.
    ``None`` here and on ``UnexpectedStatusError``, which take every code without a class.
    """

    grpc_status_code: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        error_info: error_details_pb2.ErrorInfo | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.error_info = error_info
        self.status = status
        self.reason: str = error_info.reason if error_info is not None else ""
        self.domain: str = error_info.domain if error_info is not None else ""
        self.metadata: dict[str, str] = dict(error_info.metadata) if error_info is not None else {}

    def __str__(self) -> str:
        tag = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        return f"{self.message} [{tag}]"


class InvalidArgumentError(ThreadsError):
    """The request is malformed; retrying it unchanged fails again."""

    grpc_status_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ThreadsError):
    """The thread does not exist (reason ``THREAD_NOT_FOUND``)."""

    grpc_status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ThreadsError):
    """``create`` with a thread_id that is taken and ``if_exists="raise"``."""

    grpc_status_code = grpc.StatusCode.ALREADY_EXISTS


class AbortedError(ThreadsError):
    """An optimistic-concurrency conflict: re-read, then retry (``HISTORY_LENGTH_MISMATCH``)."""

    grpc_status_code = grpc.StatusCode.ABORTED


class OutOfRangeError(ThreadsError):
    """A position past the end of a history (``HISTORY_LENGTH_OUT_OF_RANGE``)."""

    grpc_status_code = grpc.StatusCode.OUT_OF_RANGE


class FailedPreconditionError(ThreadsError):
    """The thread's state forbids the call (``COPY_DELETED``)."""

    grpc_status_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(ThreadsError):
    """A message over the size limit, or the store is out of memory."""

    grpc_status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnauthenticatedError(ThreadsError):
    """No valid bearer token: missing, malformed, badly signed or expired. Get a new token;
    retrying with the same one fails again."""

    grpc_status_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(ThreadsError):
    """The token is valid but its caller may not make this call."""

    grpc_status_code = grpc.StatusCode.PERMISSION_DENIED


class UnavailableError(ThreadsError):
    """The server or its store cannot be reached; safe to retry idempotent calls."""

    grpc_status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(ThreadsError):
    """The call's deadline passed; the server may or may not have applied a write."""

    grpc_status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnexpectedStatusError(ThreadsError):
    """Any other status code, such as INTERNAL (a server bug) or CANCELLED."""

    grpc_status_code = None
