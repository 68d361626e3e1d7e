"""Search and Count requests checked into the query the store runs (docs/search.md).

A ``store.query.Query`` is what both RPCs filter by (``Filters``) plus, for Search, the
sort. It is built from a request once, here, with every field checked (INVALID_ARGUMENT
before Redis is touched); its ``digest`` binds a page token to the query it was issued for.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import struct_pb2

from threads_server.errors import InvalidArgument, Reason
from threads_server.pb import threads_pb2 as pb
from threads_server.service import validation
from threads_server.store import codec
from threads_server.store.keys import parse_thread_id
from threads_server.store.limits import Limits
from threads_server.store.query import Filters, Query

DEFAULT_PAGE_SIZE = 10
MAX_THREAD_IDS = 1000
# offset makes every shard read offset + page_size entries: past this, page with tokens.
MAX_OFFSET = 10_000

# The index set each SortBy reads (search.lua's 'c', 'u', 'i').
SORT_SETS: dict[int, str] = {
    pb.SORT_BY_UNSPECIFIED: "c",
    pb.SORT_BY_CREATED_AT: "c",
    pb.SORT_BY_UPDATED_AT: "u",
    pb.SORT_BY_THREAD_ID: "i",
}
DESCENDING: dict[int, bool] = {
    pb.SORT_ORDER_UNSPECIFIED: True,
    pb.SORT_ORDER_DESC: True,
    pb.SORT_ORDER_ASC: False,
}


def filters(
    metadata: struct_pb2.Struct,
    thread_ids: Sequence[str],
    copied_from: str,
    limits: Limits,
) -> Filters:
    """The request's filters, each field checked."""
    validation.check_metadata(metadata)
    meta_args = codec.metadata_args(metadata)
    limits.check_metadata(codec.metadata_size(meta_args))
    if len(thread_ids) > MAX_THREAD_IDS:
        raise InvalidArgument(
            f"thread_ids holds {len(thread_ids)} ids, more than the {MAX_THREAD_IDS} allowed; "
            "split the query",
            reason=Reason.TOO_MANY_THREAD_IDS,
            field="thread_ids",
            limit=MAX_THREAD_IDS,
        )
    ids = {parse_thread_id(raw, field=f"thread_ids[{i}]") for i, raw in enumerate(thread_ids)}
    source = parse_thread_id(copied_from, field="copied_from") if copied_from else ""
    pairs = sorted(zip(meta_args[::2], meta_args[1::2], strict=True))
    return Filters(metadata=tuple(pairs), thread_ids=tuple(sorted(ids)), copied_from=source)


def query(request: pb.SearchRequest, limits: Limits) -> Query:
    if request.sort_by not in SORT_SETS:
        raise InvalidArgument(
            f"sort_by has no value {request.sort_by}",
            reason=Reason.INVALID_SORT_BY,
            sort_by=request.sort_by,
        )
    if request.sort_order not in DESCENDING:
        raise InvalidArgument(
            f"sort_order has no value {request.sort_order}",
            reason=Reason.INVALID_SORT_ORDER,
            sort_order=request.sort_order,
        )
    return Query(
        filters(request.metadata, request.thread_ids, request.copied_from, limits),
        sort=SORT_SETS[request.sort_by],
        descending=DESCENDING[request.sort_order],
    )


def offset(request: pb.SearchRequest) -> int:
    """LangGraph's offset: 0..MAX_OFFSET, and not with a page token (which already says
    where the page starts)."""
    if request.offset < 0 or request.offset > MAX_OFFSET:
        raise InvalidArgument(
            f"offset must be between 0 and {MAX_OFFSET}, got {request.offset}; page further "
            "with page_token",
            reason=Reason.INVALID_OFFSET,
            offset=request.offset,
            limit=MAX_OFFSET,
        )
    if request.offset and request.page_token:
        raise InvalidArgument(
            "offset and page_token exclude each other: the token already says where the "
            "next page starts",
            reason=Reason.INVALID_OFFSET,
            offset=request.offset,
        )
    return request.offset


def page_size(request: pb.SearchRequest) -> int:
    return validation.page_size(request.page_size, default=DEFAULT_PAGE_SIZE)
