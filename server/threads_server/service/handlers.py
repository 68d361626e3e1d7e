"""The ``threads.v1.ThreadService`` handlers: validate the request, call the store, reply.

Storage lives in ``store``; authentication, status mapping, deadlines and logging in
``service.call``; size limits in ``store.limits``; other request checks (nesting depth among
them) in ``service.validation``. What a request carries is checked before Redis is touched.
Every handler gets ``owner``, the authenticated caller ("" with auth off), and only ever
touches that caller's threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from threads_server import errors
from threads_server.errors import InvalidArgument, Reason
from threads_server.pb import threads_pb2 as pb
from threads_server.service import page_tokens, search, validation
from threads_server.service.auth import Authenticator
from threads_server.service.watch import Watches
from threads_server.store.keys import new_thread_id, parse_thread_id, request_thread_id
from threads_server.store.limits import Limits
from threads_server.store.thread_store import ThreadStore


class ThreadService:
    """One method per RPC of the proto's ThreadService, by its name: ``(request, owner)``
    to the response. The transports find them by name (``service.call.Endpoint``)."""

    def __init__(
        self,
        store: ThreadStore,
        *,
        limits: Limits | None = None,
        authenticator: Authenticator | None = None,
        default_ttl_seconds: int = 0,
        watches: Watches | None = None,
    ) -> None:
        """``watches``: the worker's Watch streams (``service.watch``)."""
        self._store = store
        self._watches = watches
        self._limits = limits or Limits()
        self.authenticator = authenticator
        self._default_ttl_ms = default_ttl_seconds * 1000

    def _ttl_ms(self, request: pb.CreateRequest | pb.CopyRequest) -> int:
        """Create and Copy: the request's ttl when set (0: none), else the default."""
        if request.HasField("ttl"):
            return validation.ttl_ms(request.ttl)
        return self._default_ttl_ms

    async def Create(self, request: pb.CreateRequest, owner: str) -> pb.CreateResponse:
        request_id = validation.request_id(request.request_id)
        if request.thread_id:
            thread_id = parse_thread_id(request.thread_id)
        else:
            thread_id = request_thread_id(request_id) if request_id else new_thread_id()
        if request.if_exists not in pb.IfExists.values():
            raise InvalidArgument(
                f"if_exists has no value {request.if_exists}",
                reason=Reason.INVALID_IF_EXISTS,
                if_exists=request.if_exists,
            )
        self._limits.check_entries(request.history, "history", required=False)
        self._limits.check_history_length(len(request.history), "history")
        validation.check_metadata(request.metadata)
        validation.check_entries_data(request.history, "history")
        thread = await self._store.create(
            owner,
            thread_id,
            request.metadata,
            request.history,
            return_existing=request.if_exists == pb.IF_EXISTS_DO_NOTHING,
            ttl_ms=self._ttl_ms(request),
            request_id=request_id,
        )
        return pb.CreateResponse(thread=thread)

    async def Get(self, request: pb.GetRequest, owner: str) -> pb.GetResponse:
        thread_id = parse_thread_id(request.thread_id)
        return pb.GetResponse(thread=await self._store.get(owner, thread_id))

    async def Update(self, request: pb.UpdateRequest, owner: str) -> pb.UpdateResponse:
        thread_id = parse_thread_id(request.thread_id)
        ttl_ms = validation.ttl_ms(request.ttl) if request.HasField("ttl") else None
        validation.check_metadata(request.metadata)
        thread = await self._store.update(owner, thread_id, request.metadata, ttl_ms=ttl_ms)
        return pb.UpdateResponse(thread=thread)

    async def Delete(self, request: pb.DeleteRequest, owner: str) -> pb.DeleteResponse:
        await self._store.delete(owner, parse_thread_id(request.thread_id))
        return pb.DeleteResponse()

    async def Append(self, request: pb.AppendRequest, owner: str) -> pb.AppendResponse:
        thread_id = parse_thread_id(request.thread_id)
        self._limits.check_entries(request.entries, "entries", required=True)
        validation.check_entries_data(request.entries, "entries")
        expected = (
            validation.non_negative(request.expected_length, "expected_length")
            if request.HasField("expected_length")
            else None
        )
        length = await self._store.append(owner, thread_id, request.entries, expected)
        return pb.AppendResponse(history_length=length)

    async def GetHistory(self, request: pb.GetHistoryRequest, owner: str) -> pb.GetHistoryResponse:
        thread_id = parse_thread_id(request.thread_id)
        limit = validation.page_size(request.page_size)
        offset = page_tokens.decode(request.page_token, thread_id) if request.page_token else 0
        entries, total = await self._store.read_history(owner, thread_id, offset, limit)
        end = offset + len(entries)
        return pb.GetHistoryResponse(
            entries=entries,
            next_page_token=page_tokens.encode(thread_id, end) if end < total else "",
        )

    async def Copy(self, request: pb.CopyRequest, owner: str) -> pb.CopyResponse:
        source_id = parse_thread_id(request.thread_id)
        history_length = None
        if request.HasField("history_length"):
            history_length = validation.non_negative(request.history_length, "history_length")
            self._limits.check_history_length(history_length, "history_length")
        validation.check_metadata(request.metadata)
        thread = await self._store.copy(
            owner,
            source_id,
            request_id=validation.request_id(request.request_id),
            history_length=history_length,
            metadata=request.metadata,
            ttl_ms=self._ttl_ms(request),
        )
        return pb.CopyResponse(thread=thread)

    async def Search(self, request: pb.SearchRequest, owner: str) -> pb.SearchResponse:
        query = search.query(request, self._limits)
        page_size = search.page_size(request)
        offset = search.offset(request)
        self._require_index()
        digest = query.digest()
        cursor = (
            page_tokens.decode_search(request.page_token, digest) if request.page_token else None
        )
        threads, next_cursor = await self._store.search(
            owner, query, cursor=cursor, offset=offset, page_size=page_size
        )
        return pb.SearchResponse(
            threads=threads,
            next_page_token=page_tokens.encode_search(digest, next_cursor) if next_cursor else "",
        )

    async def Count(self, request: pb.CountRequest, owner: str) -> pb.CountResponse:
        filters = search.filters(
            request.metadata, request.thread_ids, request.copied_from, self._limits
        )
        self._require_index()
        return pb.CountResponse(count=await self._store.count(owner, filters))

    async def Watch(self, request: pb.WatchRequest, owner: str) -> AsyncIterator[pb.WatchResponse]:
        """A stream (``service.watch``): its messages, each sent once the last was taken."""
        thread_id = parse_thread_id(request.thread_id)
        start_index = validation.non_negative(request.start_index, "start_index")
        watches = self._watches
        assert watches is not None, "a ThreadService serving Watch is given the worker's Watches"
        return watches.watch(owner, thread_id, start_index)

    def _require_index(self) -> None:
        """With indexing off (--search-index 0) the index is stale: no answer at all
        rather than a wrong one."""
        if not self._store.search_index:
            raise errors.search_disabled()
