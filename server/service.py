"""The ``threads.v1.ThreadService`` handlers: validate the request, call the store, reply.

Storage lives in ``server.store``; status mapping, deadlines and logging in ``server.rpc``.
"""

from __future__ import annotations

from client.pb import threads_pb2 as pb
from client.pb import threads_pb2_grpc as pb_grpc
from server import page_tokens, validation
from server.errors import InvalidArgument
from server.keys import new_thread_id, parse_thread_id
from server.rpc import Context, rpc
from server.store import ThreadStore

DEFAULT_MAX_ENTRIES_PER_REQUEST = 10_000


class ThreadService(pb_grpc.ThreadServiceServicer):
    def __init__(
        self, store: ThreadStore, *, max_entries_per_request: int = DEFAULT_MAX_ENTRIES_PER_REQUEST
    ) -> None:
        self._store = store
        self._max_entries = max_entries_per_request

    @rpc
    async def Create(self, request: pb.CreateRequest, context: Context) -> pb.CreateResponse:
        thread_id = parse_thread_id(request.thread_id) if request.thread_id else new_thread_id()
        if request.if_exists not in pb.IfExists.values():
            raise InvalidArgument(
                f"if_exists has no value {request.if_exists}",
                reason="INVALID_IF_EXISTS",
                if_exists=request.if_exists,
            )
        validation.entry_count(
            len(request.history), "history", maximum=self._max_entries, required=False
        )
        thread = await self._store.create(
            thread_id,
            request.metadata,
            request.history,
            return_existing=request.if_exists == pb.IF_EXISTS_DO_NOTHING,
        )
        return pb.CreateResponse(thread=thread)

    @rpc
    async def Get(self, request: pb.GetRequest, context: Context) -> pb.GetResponse:
        return pb.GetResponse(thread=await self._store.get(parse_thread_id(request.thread_id)))

    @rpc
    async def Update(self, request: pb.UpdateRequest, context: Context) -> pb.UpdateResponse:
        thread_id = parse_thread_id(request.thread_id)
        return pb.UpdateResponse(thread=await self._store.update(thread_id, request.metadata))

    @rpc
    async def Delete(self, request: pb.DeleteRequest, context: Context) -> pb.DeleteResponse:
        await self._store.delete(parse_thread_id(request.thread_id))
        return pb.DeleteResponse()

    @rpc
    async def Append(self, request: pb.AppendRequest, context: Context) -> pb.AppendResponse:
        thread_id = parse_thread_id(request.thread_id)
        validation.entry_count(
            len(request.entries), "entries", maximum=self._max_entries, required=True
        )
        expected = (
            validation.non_negative(request.expected_length, "expected_length")
            if request.HasField("expected_length")
            else None
        )
        length = await self._store.append(thread_id, request.entries, expected)
        return pb.AppendResponse(history_length=length)

    @rpc
    async def GetHistory(
        self, request: pb.GetHistoryRequest, context: Context
    ) -> pb.GetHistoryResponse:
        thread_id = parse_thread_id(request.thread_id)
        limit = validation.page_size(request.page_size)
        offset = page_tokens.decode(request.page_token, thread_id) if request.page_token else 0
        entries, total = await self._store.read_history(thread_id, offset, limit)
        end = offset + len(entries)
        return pb.GetHistoryResponse(
            entries=entries,
            next_page_token=page_tokens.encode(thread_id, end) if end < total else "",
        )

    @rpc
    async def Copy(self, request: pb.CopyRequest, context: Context) -> pb.CopyResponse:
        source_id = parse_thread_id(request.thread_id)
        history_length = (
            validation.non_negative(request.history_length, "history_length")
            if request.HasField("history_length")
            else None
        )
        thread = await self._store.copy(
            source_id,
            request_id=validation.request_id(request.request_id),
            history_length=history_length,
            metadata=request.metadata,
        )
        return pb.CopyResponse(thread=thread)
