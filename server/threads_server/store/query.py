"""What Search and Count run in the store: the filters, the sort and where a page ended.

``service.search`` builds these from a request, every field checked; the store only reads
them (``ThreadStore.search``, ``ThreadStore.count``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

Cursor = tuple[int, str]
"""Where a page ended: the last thread's sort key (us; 0 in id order) and its id."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What Search and Count match on, combined with AND; empty matches every thread."""

    metadata: tuple[tuple[bytes, bytes], ...] = ()  # (b"m:<key>", serialized Value), sorted
    thread_ids: tuple[str, ...] = ()  # canonical, without repeats, sorted; () = any
    copied_from: str = ""  # "" = any


@dataclass(frozen=True, slots=True)
class Query:
    filters: Filters
    sort: str = "c"  # 'c' created_at, 'u' updated_at, 'i' thread_id
    descending: bool = True

    def digest(self) -> bytes:
        """8 bytes naming the query (filters and sort): a page token carries it, so a
        token of another query is refused."""
        parts = [
            self.sort.encode(),
            b"desc" if self.descending else b"asc",
            self.filters.copied_from.encode(),
            *(part for pair in self.filters.metadata for part in pair),
            b"ids",
            *(thread_id.encode() for thread_id in self.filters.thread_ids),
        ]
        digest = hashlib.blake2b(digest_size=8, person=b"thr.search")
        for part in parts:
            digest.update(len(part).to_bytes(8, "big") + part)
        return digest.digest()
