"""The asyncio client: ``get_client()``, ``Client`` and its ``threads`` resource.

The one definition of the client: ``threads_service_client._sync`` is generated from this module
by ``client/scripts/unasync_client.py`` (``make client-sync``). What asyncio and blocking
I/O do differently (channel, stub, sleep) is in ``_async_io`` and ``_sync_io``.
"""

# ``timeout`` is the gRPC deadline sent to the server, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc
from google.protobuf.message import Message

from threads_service_client import _async_io as _io
from threads_service_client import _auth, _retry
from threads_service_client import _requests as req
from threads_service_client._auth import Token
from threads_service_client._errors import exception_class
from threads_service_client._requests import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    USE_CLIENT_DEFAULT,
    EntryInput,
    IfExists,
    Metadata,
    SortBy,
    SortOrder,
    ThreadId,
    Timeout,
    Ttl,
)
from threads_service_client._retry import RetryPolicy
from threads_service_client.exceptions import ThreadsError
from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client._tls import TLS

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp")


def _unreadable_reply(request: Message) -> ThreadsError:
    """grpc.aio returns None for a reply it cannot parse (and logs why), where gRPC's
    blocking stubs fail the call with INTERNAL: both clients raise that status. Never
    retried: the call may have run."""
    code = grpc.StatusCode.INTERNAL
    return exception_class(code)(
        code,
        "Exception deserializing response! The server's reply to "
        f"{request.DESCRIPTOR.name} is not a valid reply message; is it a threads.v1 server?",
    )


class ThreadsClient:
    """Thread operations; reach it as ``threads_service_client.threads``.

    Methods return the protobuf messages unchanged (``Thread``, ``Entry``,
    ``GetHistoryResponse``), except ``append`` (the new history length, an int) and
    ``delete`` (None). Thread ids may be ``str`` or ``uuid.UUID``; metadata and entry data
    dicts or ``Struct``s (an entry may also be an ``Entry``). Failures raise
    ``threads_service_client.exceptions.ThreadsError`` subclasses. ``timeout`` (seconds)
    overrides the client's deadline for one call, retries included; ``None`` means no
    deadline. ``ttl`` is seconds or a ``timedelta``; 0 means never expire.
    """

    def __init__(
        self,
        stub: Callable[[], _io.Stub],
        *,
        timeout: float | None,
        token: Token | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        _auth.check_token(token)
        self._stub = stub
        self._timeout = timeout
        self._token = token
        self._retry = retry

    async def _call(
        self,
        method: Callable[[_io.Stub], _io.UnaryUnaryMultiCallable[Req, Resp]],
        request: Req,
        timeout: Timeout,
    ) -> Resp:
        """Sends ``request``, retrying per the client's policy (``_retry``)."""
        attempts = _retry.Attempts(
            self._retry, request, req.resolve_timeout(timeout, self._timeout)
        )
        while True:
            try:
                response: Resp | None = await method(self._stub())(
                    request,
                    timeout=attempts.next_timeout(),
                    metadata=_auth.call_metadata(self._token),
                )
            except grpc.RpcError as exc:
                delay = attempts.retry_delay(exc)
                if delay is None:
                    raise attempts.error(exc) from exc
            else:
                if response is None:
                    raise _unreadable_reply(request)
                return response
            await _io.sleep(delay)

    async def create(
        self,
        thread_id: ThreadId | None = None,
        *,
        metadata: Metadata | None = None,
        history: Iterable[EntryInput] | None = None,
        if_exists: IfExists = "raise",
        request_id: str | None = None,
        ttl: Ttl | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.Thread:
        """Creates a thread; the server picks the id when none is given.

        A ``request_id`` (a UUID) makes retries return the thread the first attempt made;
        with a retry policy the client makes one up when none is given. ``if_exists=
        "do_nothing"`` returns an existing thread with that id unchanged. ``ttl`` unset:
        the server's default expiry.
        """
        request = pb.CreateRequest(
            thread_id=req.thread_id(thread_id) if thread_id is not None else "",
            metadata=req.struct(metadata),
            history=req.entries(history, "history") if history is not None else None,
            if_exists=req.if_exists(if_exists),
            request_id=_retry.request_id(request_id, self._retry),
            ttl=req.ttl_duration(ttl),
        )
        return (await self._call(lambda s: s.Create, request, timeout)).thread

    async def get(self, thread_id: ThreadId, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> pb.Thread:
        request = pb.GetRequest(thread_id=req.thread_id(thread_id))
        return (await self._call(lambda s: s.Get, request, timeout)).thread

    async def update(
        self,
        thread_id: ThreadId,
        metadata: Metadata | None = None,
        *,
        ttl: Ttl | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.Thread:
        """Merges ``metadata`` over the stored keys (keys not given are kept).

        ``ttl`` restarts the expiry from now (0 removes it); unset keeps it. Give
        metadata, a ttl or both.
        """
        if metadata is None and ttl is None:
            raise ValueError("update needs metadata, a ttl or both")
        request = pb.UpdateRequest(
            thread_id=req.thread_id(thread_id),
            metadata=req.struct(metadata),
            ttl=req.ttl_duration(ttl),
        )
        return (await self._call(lambda s: s.Update, request, timeout)).thread

    async def delete(self, thread_id: ThreadId, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        request = pb.DeleteRequest(thread_id=req.thread_id(thread_id))
        await self._call(lambda s: s.Delete, request, timeout)

    async def append(
        self,
        thread_id: ThreadId,
        entries: Iterable[EntryInput],
        *,
        expected_length: int | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> int:
        """Appends all entries or none and returns the new history length.

        Never retried by the client (a lost reply would mean a second copy of the
        entries). With ``expected_length`` the append happens only if the history has
        exactly that many entries (``AbortedError`` otherwise), so it is safe to retry.
        """
        request = pb.AppendRequest(
            thread_id=req.thread_id(thread_id),
            entries=req.entries(entries, "entries"),
            expected_length=expected_length,
        )
        return (await self._call(lambda s: s.Append, request, timeout)).history_length

    async def get_history(
        self,
        thread_id: ThreadId,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.GetHistoryResponse:
        """One page, oldest first; pass its ``next_page_token`` back for the next one."""
        request = pb.GetHistoryRequest(
            thread_id=req.thread_id(thread_id), page_size=page_size, page_token=page_token
        )
        return await self._call(lambda s: s.GetHistory, request, timeout)

    async def iter_history(
        self,
        thread_id: ThreadId,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> AsyncIterator[pb.Entry]:
        """Every entry from ``page_token`` on, fetched lazily page by page.

        ``timeout`` applies to each page's call (with its retries), not to the whole walk.
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

    async def watch(
        self,
        thread_id: ThreadId,
        start_index: int = 0,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.Entry]:
        """Every entry from ``start_index`` on, then each new one as it is appended: an
        unbroken, exact sequence (each index once, in order), until you stop iterating.

        ``start_index`` 0 replays the whole history first; the thread's ``history_length``
        follows only new entries. On UNAVAILABLE (a server restarting or stopping, Redis
        failing over) the client resumes by itself from the next index, under the retry
        policy: a stream that delivered something starts a fresh count of attempts. Without
        a retry policy, UNAVAILABLE is raised like any error (``NotFoundError`` when the
        thread is deleted or expires). ``timeout`` bounds the whole watch, resumes
        included (default: none; not the client's per-call default, which would end a
        stream after a few seconds).
        """
        next_index = start_index
        request = pb.WatchRequest(thread_id=req.thread_id(thread_id), start_index=start_index)
        attempts = _retry.Attempts(self._retry, request, timeout)
        while True:
            request = pb.WatchRequest(thread_id=request.thread_id, start_index=next_index)
            call = self._stub().Watch(
                request, timeout=attempts.next_timeout(), metadata=_auth.call_metadata(self._token)
            )
            try:
                async for response in call:
                    for entry in response.entries:
                        next_index = entry.index + 1
                        yield entry
                    attempts.progressed()
            except grpc.RpcError as exc:
                delay = attempts.retry_delay(exc)
                if delay is None:
                    raise attempts.error(exc) from exc
            else:
                return
            finally:
                call.cancel()  # type: ignore[no-untyped-call, unused-ignore]
            await _io.sleep(delay)

    async def copy(
        self,
        thread_id: ThreadId,
        *,
        request_id: str | None = None,
        history_length: int | None = None,
        metadata: Metadata | None = None,
        ttl: Ttl | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.Thread:
        """Copies a thread atomically and returns the new one.

        ``history_length`` forks at that point of the history; ``metadata`` is merged over
        the source's. A ``request_id`` (a UUID) makes retries return the same copy; with a
        retry policy the client makes one up when none is given. ``ttl`` is the copy's own
        (the source's expiry is not inherited); unset: the server's default.
        """
        request = pb.CopyRequest(
            thread_id=req.thread_id(thread_id),
            request_id=_retry.request_id(request_id, self._retry),
            history_length=history_length,
            metadata=req.struct(metadata),
            ttl=req.ttl_duration(ttl),
        )
        return (await self._call(lambda s: s.Copy, request, timeout)).thread

    async def search(
        self,
        *,
        metadata: Metadata | None = None,
        ids: Iterable[ThreadId] | None = None,
        copied_from: ThreadId | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: SortBy = "created_at",
        sort_order: SortOrder = "desc",
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> pb.SearchResponse:
        """One page of your threads matching every filter given, newest first by default.

        ``metadata``: each key must be stored with an equal value; ``ids``: only these (at
        most 1,000); ``copied_from``: only direct copies of that thread. ``limit`` is the
        page size (at most 1,000). Pass the response's ``next_page_token`` back as
        ``page_token``, with the same filters and sort, for the next page (empty on the
        last); ``offset`` skips that many matches instead (not with a ``page_token``).
        ``sort_by`` is "created_at", "updated_at" or "thread_id" (ties break on the id),
        ``sort_order`` "desc" or "asc"; the ``SortBy``/``SortOrder`` enums work too.
        """
        request = pb.SearchRequest(
            metadata=req.struct(metadata),
            thread_ids=req.thread_ids(ids),
            copied_from=req.thread_id(copied_from) if copied_from is not None else "",
            page_size=limit,
            page_token=page_token,
            sort_by=req.sort_by(sort_by),
            sort_order=req.sort_order(sort_order),
            offset=offset,
        )
        return await self._call(lambda s: s.Search, request, timeout)

    async def iter_search(
        self,
        *,
        metadata: Metadata | None = None,
        ids: Iterable[ThreadId] | None = None,
        copied_from: ThreadId | None = None,
        limit: int = 100,
        sort_by: SortBy = "created_at",
        sort_order: SortOrder = "desc",
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> AsyncIterator[pb.Thread]:
        """Every matching thread from ``page_token`` on, fetched lazily ``limit`` a page.

        Keyset paging: while others write, every thread that exists and matches for the
        whole walk comes exactly once. ``timeout`` applies to each page's call.
        """
        ids = list(ids) if ids is not None else None
        while True:
            page = await self.search(
                metadata=metadata,
                ids=ids,
                copied_from=copied_from,
                limit=limit,
                sort_by=sort_by,
                sort_order=sort_order,
                page_token=page_token,
                timeout=timeout,
            )
            for thread in page.threads:
                yield thread
            page_token = page.next_page_token
            if not page_token:
                return

    async def count(
        self,
        *,
        metadata: Metadata | None = None,
        ids: Iterable[ThreadId] | None = None,
        copied_from: ThreadId | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> int:
        """How many of your threads match (what ``iter_search`` would yield)."""
        request = pb.CountRequest(
            metadata=req.struct(metadata),
            thread_ids=req.thread_ids(ids),
            copied_from=req.thread_id(copied_from) if copied_from is not None else "",
        )
        return (await self._call(lambda s: s.Count, request, timeout)).count


class Client:
    """An asyncio client for ``threads.v1.ThreadService``; ``get_client`` is this class.

    ``target`` is a gRPC target such as host:port. ``timeout`` is the default deadline of
    every call in seconds, retries included (``None``: no deadline). ``token`` (a JWT, or a
    callable returning one, called for every attempt) is sent as ``authorization: Bearer``
    metadata. ``tls`` turns on TLS (``credentials`` is the raw gRPC alternative);
    ``options`` are extra gRPC channel options, overriding the client's own (16 MiB message
    limits). ``retry`` retries idempotent calls that fail with UNAVAILABLE. Pass
    ``channel`` to reuse a channel you manage (then set TLS on it, not here): it stays
    yours, closing the client does not close it.

    The channel is opened on first use, inside the running event loop, so a client made at
    import time works under ``asyncio.run``.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: _io.Channel | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        token: Token | None = None,
        tls: TLS | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Iterable[tuple[str, Any]] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self.target = target
        self._credentials, self._options = req.channel_security(
            tls, credentials, options, has_channel=channel is not None
        )
        self._channel = channel
        self._owns_channel = channel is None
        self._stub: _io.Stub | None = None
        self._closed = False
        # Makes the first use open one channel when threads share a blocking client; never
        # contended under asyncio, where nothing awaits while it is held.
        self._lock = threading.Lock()
        self.threads = ThreadsClient(self._get_stub, timeout=timeout, token=token, retry=retry)

    def _get_stub(self) -> _io.Stub:
        with self._lock:
            if self._closed:
                raise RuntimeError("the threads client is closed")
            if self._stub is None:
                if self._channel is None:
                    self._channel = _io.open_channel(self.target, self._credentials, self._options)
                self._stub = _io.stub(self._channel)
            return self._stub

    async def aclose(self) -> None:
        """Closes the channel this client opened; in-flight calls are cancelled."""
        with self._lock:
            self._closed = True
            channel = self._channel if self._owns_channel else None
            self._channel = self._stub = None
        if channel is not None:
            await _io.close_channel(channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# The LangGraph SDK's spelling; an alias, so the parameters above are written once.
get_client = Client
