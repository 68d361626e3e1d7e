"""The reply tags of the Lua scripts, defined once, and what a script call was about.

Every script in ``lua/`` replies ``{'OK', ...}`` on success or ``{'<TAG>', ...}`` for each
other outcome (each file's header lists its replies). ``errors.from_outcome`` is the one
place a non-OK outcome becomes an error; the store acts only on OK and on the outcomes
that steer it (a taken copy id, a retried request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threads_server.store.limits import Limits


class Outcome(StrEnum):
    OK = "OK"
    NOT_FOUND = "NOT_FOUND"  # no such thread (Copy: no such source)
    EXISTS = "EXISTS"  # Create: the id is taken
    DUPLICATE = "DUPLICATE"  # a retried request_id: its first result
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"  # a request_id used with other parameters
    DELETED = "DELETED"  # Create: the request_id's thread has gone since
    LENGTH_MISMATCH = "LENGTH_MISMATCH"  # Append: expected_length is not the length
    TOO_LONG = "TOO_LONG"  # the history would pass max_history_length
    OUT_OF_RANGE = "OUT_OF_RANGE"  # Copy: history_length beyond the source's end
    METADATA_TOO_LARGE = "METADATA_TOO_LARGE"  # the merge would pass max_metadata_bytes
    ID_TAKEN = "ID_TAKEN"  # Copy: the new id is in use; the store tries another


def parse(reply: Sequence[Any]) -> tuple[Outcome, list[Any]]:
    """A script's reply as its outcome and the values after the tag."""
    tag, *values = reply
    return Outcome(tag.decode() if isinstance(tag, bytes) else tag), values


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptCall:
    """What a script was called for: what its outcome's error names (ids, numbers asked
    for, limits in force)."""

    script: str
    thread_id: str
    limits: Limits
    request_id: str = ""
    expected_length: int | None = None
    history_length: int | None = None
    adding: int = 0
