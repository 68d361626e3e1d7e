"""The asyncio client: ``get_client()``, ``Client`` and its ``threads`` resource."""

# ``timeout`` is the gRPC deadline sent to the server, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc
from grpc import aio

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

if TYPE_CHECKING:
    from client.pb.threads_pb2_grpc import ThreadServiceAsyncStub

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class ThreadsClient:
    """Thread operations; reach it as ``client.threads``.

    Methods return the protobuf messages unchanged (``Thread``, ``Entry``,
    ``GetHistoryResponse``), except ``append`` (the new history length, an int) and
    ``delete`` (None). Thread ids may be ``str`` or ``uuid.UUID``; metadata and entry data
    dicts or ``Struct``s (an entry may also be an ``Entry``). Failures raise
    ``client.exceptions.ThreadsError`` subclasses. ``timeout`` (seconds) overrides the
    client's deadline for one call; ``None`` means no deadline.
    """

    def __init__(
        self, stub: Callable[[], ThreadServiceAsyncStub], *, timeout: float | None
    ) -> None:
        self._stub = stub
        self._timeout = timeout

    async def _call(
        self, method: aio.UnaryUnaryMultiCallable[Req, Resp], request: Req, timeout: Timeout
    ) -> Resp:
        try:
            return await method(request, timeout=req.resolve_timeout(timeout, self._timeout))
        except grpc.RpcError as exc:
            raise _errors.from_rpc_error(exc) from exc

    async def create(
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
        return (await self._call(self._stub().Create, request, timeout)).thread

    async def get(self, thread_id: ThreadId, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> pb.Thread:
        return (await self._call(self._stub().Get, req.get(thread_id), timeout)).thread

    async def update(
        self, thread_id: ThreadId, metadata: Metadata, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> pb.Thread:
        """Merges ``metadata`` over the stored keys; keys not given are kept."""
        request = req.update(thread_id, metadata)
        return (await self._call(self._stub().Update, request, timeout)).thread

    async def delete(self, thread_id: ThreadId, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        await self._call(self._stub().Delete, req.delete(thread_id), timeout)

    async def append(
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
        return (await self._call(self._stub().Append, request, timeout)).history_length

    async def get_history(
        self,
        thread_id: ThreadId,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.GetHistoryResponse:
        """One page, oldest first; pass its ``next_page_token`` back for the next one."""
        request = req.get_history(thread_id, page_size, page_token)
        return await self._call(self._stub().GetHistory, request, timeout)

    async def iter_history(
        self,
        thread_id: ThreadId,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> AsyncIterator[pb.Entry]:
        """Every entry from ``page_token`` on, fetched lazily page by page.

        ``timeout`` applies to each page's call, not to the whole walk.
        """
        while True:
            page = await self.get_history(
                thread_id, page_size=page_size, page_token=page_token, timeout=timeout
            )
            for entry in page.entries:
                yield entry
            page_token = page.next_page_token
            if not page_token:
                return

    async def copy(
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
        return (await self._call(self._stub().Copy, request, timeout)).thread


class Client:
    """An asyncio client for ``threads.v1.ThreadService``.

    The channel is opened on first use, inside the running event loop, so a client made at
    import time works under ``asyncio.run``. A channel passed in stays the caller's: closing
    the client does not close it.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: aio.Channel | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self._credentials = credentials
        self._options = req.channel_options(options)
        self._channel = channel
        self._owns_channel = channel is None
        self._stub: ThreadServiceAsyncStub | None = None
        self._closed = False
        self.threads = ThreadsClient(self._get_stub, timeout=timeout)

    def _get_stub(self) -> ThreadServiceAsyncStub:
        if self._closed:
            raise RuntimeError("the threads client is closed")
        if self._stub is None:
            if self._channel is None:
                self._channel = (
                    aio.secure_channel(self.target, self._credentials, self._options)
                    if self._credentials is not None
                    else aio.insecure_channel(self.target, self._options)
                )
            self._stub = pb_grpc.ThreadServiceStub(self._channel)
        return self._stub

    async def aclose(self) -> None:
        """Closes the channel this client opened; in-flight calls are cancelled."""
        self._closed = True
        if self._owns_channel and self._channel is not None:
            await self._channel.close(None)
        self._channel = self._stub = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def get_client(
    target: str = DEFAULT_TARGET,
    *,
    channel: aio.Channel | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    options: Iterable[tuple[str, Any]] = (),
) -> Client:
    """An asyncio client for the service at ``target`` (a gRPC target such as host:port).

    ``timeout`` is the default deadline of every call in seconds (``None``: no deadline).
    ``credentials`` selects TLS; ``options`` are extra gRPC channel options, overriding the
    client's own (16 MiB message limits). Pass ``channel`` to reuse a channel you manage.
    """
    return Client(
        target, channel=channel, timeout=timeout, credentials=credentials, options=options
    )
