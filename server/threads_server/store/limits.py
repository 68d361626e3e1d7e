"""Size limits on what a request may store, and the checks on what a request carries.

What a request carries is checked here, before Redis is touched (INVALID_ARGUMENT: the
request can never succeed). What depends on the stored thread (a history that would grow
past ``max_history_length``, metadata that a merge would grow past ``max_metadata_bytes``)
is checked inside the scripts, atomically with the write (FAILED_PRECONDITION), and
becomes its error in ``outcomes.from_outcome``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from threads_server.errors import InvalidArgument, Reason
from threads_server.ops.config import Settings
from threads_server.pb import threads_pb2 as pb


@dataclass(frozen=True, slots=True)
class Limits:
    max_entries_per_request: int = Settings.max_entries_per_request
    max_entry_bytes: int = Settings.max_entry_bytes
    max_history_length: int = Settings.max_history_length
    max_metadata_bytes: int = Settings.max_metadata_bytes
    max_message_bytes: int = Settings.max_message_bytes

    # Room in a reply for what is not an entry: a Watch message's history_length, a
    # GetHistory page's next_page_token (page_tokens: ~44 bytes), their framing.
    REPLY_SLACK_BYTES: ClassVar[int] = 64

    @property
    def reply_entry_bytes(self) -> int:
        """What the entries of one reply (a GetHistory page, a Watch message) may take, so
        that the reply fits in ``max_message_bytes``: a caller's client refuses a larger
        one, and no page size would get past it."""
        return self.max_message_bytes - self.REPLY_SLACK_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_entries_per_request=settings.max_entries_per_request,
            max_entry_bytes=settings.max_entry_bytes,
            max_history_length=settings.max_history_length,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_message_bytes=settings.max_message_bytes,
        )

    def check_entries(self, entries: Sequence[pb.Entry], field: str, *, required: bool) -> None:
        count = len(entries)
        if required and count == 0:
            raise InvalidArgument(
                f"{field} must hold at least one entry", reason=Reason.NO_ENTRIES, field=field
            )
        if count > self.max_entries_per_request:
            raise InvalidArgument(
                f"{field} holds {count} entries, more than the {self.max_entries_per_request} "
                "allowed in one request; split it into several requests",
                reason=Reason.TOO_MANY_ENTRIES,
                field=field,
                limit=self.max_entries_per_request,
            )
        for index, entry in enumerate(entries):
            size = entry.data.ByteSize()
            if size > self.max_entry_bytes:
                raise InvalidArgument(
                    f"{field}[{index}] is {size} bytes serialized, more than the "
                    f"{self.max_entry_bytes} allowed for one entry",
                    reason=Reason.ENTRY_TOO_LARGE,
                    field=f"{field}[{index}]",
                    size=size,
                    limit=self.max_entry_bytes,
                )

    def check_history_length(self, length: int, field: str) -> None:
        """A history a request asks for outright (Create's, a Copy's history_length)."""
        if length > self.max_history_length:
            raise InvalidArgument(
                f"{field} asks for {length} entries; a thread holds at most "
                f"{self.max_history_length}",
                reason=Reason.HISTORY_TOO_LONG,
                field=field,
                limit=self.max_history_length,
            )

    def check_metadata(self, size: int) -> None:
        """The metadata a request carries, on its own (``codec.metadata_size``)."""
        if size > self.max_metadata_bytes:
            raise InvalidArgument(
                f"metadata is {size} bytes (keys plus serialized values), more than the "
                f"{self.max_metadata_bytes} a thread may hold",
                reason=Reason.METADATA_TOO_LARGE,
                field="metadata",
                size=size,
                limit=self.max_metadata_bytes,
            )
