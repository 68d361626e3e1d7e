"""The blocking client: ``get_sync_client()``, ``SyncClient`` and its ``threads`` resource.

A line-for-line mirror of ``client._async`` without ``await``; shared logic lives in
``client._requests`` and ``client._errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from client import _errors
from client import _requests as req
from client._requests import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    USE_CLIENT_DEFAULT,
    EntryInput,
    IfExists,
    Metadata,
    ThreadId,
    Timeout,
)
from client.pb import threads_pb2 as pb
from client.pb import threads_pb2_grpc as pb_grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class SyncThreadsClient:
    """Thread operations; reach it as ``client.threads``.

    Methods return the protobuf messages unchanged (``Thread``, ``Entry``,
    ``GetHistoryResponse``), except ``append`` (the new history length, an int) and
    ``delete`` (None). Thread ids may be ``str`` or ``uuid.UUID``; metadata and entry data
    dicts or ``Struct``s (an entry may also be an ``Entry``). Failures raise
    ``client.exceptions.ThreadsError`` subclasses. ``timeout`` (seconds) overrides the
    client's deadline for one call; ``None`` means no deadline.
    """

    def __init__(
        self, stub: Callable[[], pb_grpc.ThreadServiceStub], *, timeout: float | None
    ) -> None:
        self._stub = stub
        self._timeout = timeout

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req, timeout: Timeout
    ) -> Resp:
        try:
            return method(request, timeout=req.resolve_timeout(timeout, self._timeout))
        except grpc.RpcError as exc:
            raise _errors.from_rpc_error(exc) from exc

    def create(
        self,
        thread_id: ThreadId | None = None,
        *,
        metadata: Metadata | None = None,
        history: Iterable[EntryInput] | None = None,
        if_exists: IfExists = "raise",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.Thread:
        """Creates a thread; the server picks the id when none is given.

        ``if_exists="do_nothing"`` returns the existing thread unchanged, which makes
        retrying a create with a client-chosen id safe.
        """
        request = req.create(thread_id, metadata, history, if_exists)
        return self._call(self._stub().Create, request, timeout).thread

    def get(self, thread_id: ThreadId, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> pb.Thread:
        return self._call(self._stub().Get, req.get(thread_id), timeout).thread

    def update(
        self, thread_id: ThreadId, metadata: Metadata, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> pb.Thread:
        """Merges ``metadata`` over the stored keys; keys not given are kept."""
        request = req.update(thread_id, metadata)
        return self._call(self._stub().Update, request, timeout).thread

    def delete(self, thread_id: ThreadId, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        self._call(self._stub().Delete, req.delete(thread_id), timeout)

    def append(
        self,
        thread_id: ThreadId,
        entries: Iterable[EntryInput],
        *,
        expected_length: int | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> int:
        """Appends all entries or none and returns the new history length.

        With ``expected_length`` the append happens only if the history has exactly that
        many entries (``AbortedError`` otherwise), so it is safe to retry.
        """
        request = req.append(thread_id, entries, expected_length)
        return self._call(self._stub().Append, request, timeout).history_length

    def get_history(
        self,
        thread_id: ThreadId,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.GetHistoryResponse:
        """One page, oldest first; pass its ``next_page_token`` back for the next one."""
        request = req.get_history(thread_id, page_size, page_token)
        return self._call(self._stub().GetHistory, request, timeout)

    def iter_history(
        self,
        thread_id: ThreadId,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Iterator[pb.Entry]:
        """Every entry from ``page_token`` on, fetched lazily page by page.

        ``timeout`` applies to each page's call, not to the whole walk.
        """
        while True:
            page = self.get_history(
                thread_id, page_size=page_size, page_token=page_token, timeout=timeout
            )
            yield from page.entries
            page_token = page.next_page_token
            if not page_token:
                return

    def copy(
        self,
        thread_id: ThreadId,
        *,
        request_id: str | None = None,
        history_length: int | None = None,
        metadata: Metadata | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.Thread:
        """Copies a thread atomically and returns the new one.

        ``history_length`` forks at that point of the history; ``metadata`` is merged over
        the source's. A ``request_id`` (a UUID) makes retries return the same copy.
        """
        request = req.copy(thread_id, request_id, history_length, metadata)
        return self._call(self._stub().Copy, request, timeout).thread


class SyncClient:
    """A blocking client for ``threads.v1.ThreadService``, safe to share between threads.

    A channel passed in stays the caller's: closing the client does not close it.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.Channel | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self._owns_channel = channel is None
        if channel is None:
            options = req.channel_options(options)
            channel = (
                grpc.secure_channel(target, credentials, options)
                if credentials is not None
                else grpc.insecure_channel(target, options)
            )
        self._channel = channel
        self._stub = pb_grpc.ThreadServiceStub(channel)
        self._closed = False
        self.threads = SyncThreadsClient(self._get_stub, timeout=timeout)

    def _get_stub(self) -> pb_grpc.ThreadServiceStub:
        if self._closed:
            raise RuntimeError("the threads client is closed")
        return self._stub

    def close(self) -> None:
        """Closes the channel this client opened; in-flight calls are cancelled."""
        self._closed = True
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def get_sync_client(
    target: str = DEFAULT_TARGET,
    *,
    channel: grpc.Channel | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    options: Iterable[tuple[str, Any]] = (),
) -> SyncClient:
    """A blocking client for the service at ``target`` (a gRPC target such as host:port).

    ``timeout`` is the default deadline of every call in seconds (``None``: no deadline).
    ``credentials`` selects TLS; ``options`` are extra gRPC channel options, overriding the
    client's own (16 MiB message limits). Pass ``channel`` to reuse a channel you manage.
    """
    return SyncClient(
        target, channel=channel, timeout=timeout, credentials=credentials, options=options
    )
