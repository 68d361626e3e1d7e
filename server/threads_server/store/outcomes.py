"""The reply tags of the Lua scripts, defined once, and what a script call was about.

Every script in ``lua/`` replies ``{'OK', ...}`` on success or ``{'<TAG>', ...}`` for each
other outcome (each file's header lists its replies). ``from_outcome`` (below) is the one
place a non-OK outcome becomes an error; the store acts only on OK and on the outcomes
that steer it (a taken copy id, a retried request).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from threads_server.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    OutOfRange,
    Reason,
    ThreadsError,
    thread_not_found,
)

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


def copy_deleted(call: ScriptCall, copy_id: str) -> FailedPrecondition:
    """A Copy retried (DUPLICATE) after the copy its request_id made was deleted."""
    return FailedPrecondition(
        f"request_id {call.request_id!r} already copied thread {call.thread_id} to {copy_id}, "
        "which has since been deleted; use a new request_id to make another copy",
        reason=Reason.COPY_DELETED,
        thread_id=call.thread_id,
        request_id=call.request_id,
        copy_id=copy_id,
    )


def _not_found(call: ScriptCall, values: list[Any]) -> ThreadsError:
    return thread_not_found(call.thread_id)


def _exists(call: ScriptCall, values: list[Any]) -> ThreadsError:
    return AlreadyExists(
        f"thread {call.thread_id} already exists; use another thread_id or "
        "if_exists=IF_EXISTS_DO_NOTHING to get the existing thread",
        reason=Reason.THREAD_ALREADY_EXISTS,
        thread_id=call.thread_id,
    )


def _request_id_reused(call: ScriptCall, values: list[Any]) -> ThreadsError:
    if call.script == "copy":  # the reply names the copy the request_id made
        return InvalidArgument(
            f"request_id {call.request_id!r} was already used to copy thread {call.thread_id} "
            "with different parameters; use a new request_id for a different copy",
            reason=Reason.REQUEST_ID_REUSED,
            thread_id=call.thread_id,
            request_id=call.request_id,
            copy_id=values[0].decode(),
        )
    return InvalidArgument(
        f"request_id {call.request_id!r} already created thread {call.thread_id} with different "
        "parameters; use a new request_id for a different request",
        reason=Reason.REQUEST_ID_REUSED,
        thread_id=call.thread_id,
        request_id=call.request_id,
    )


def _deleted(call: ScriptCall, values: list[Any]) -> ThreadsError:
    return FailedPrecondition(
        f"request_id {call.request_id!r} already created thread {call.thread_id}, which has "
        "since been deleted or has expired; use a new request_id to create another",
        reason=Reason.THREAD_DELETED,
        thread_id=call.thread_id,
        request_id=call.request_id,
    )


def _length_mismatch(call: ScriptCall, values: list[Any]) -> ThreadsError:
    actual = int(values[0])
    return Aborted(
        f"thread {call.thread_id} has {actual} entries, not the expected_length "
        f"{call.expected_length}; nothing was appended. Re-read the history and retry",
        reason=Reason.HISTORY_LENGTH_MISMATCH,
        thread_id=call.thread_id,
        expected_length=call.expected_length,
        history_length=actual,
    )


def _too_long(call: ScriptCall, values: list[Any]) -> ThreadsError:
    length, limit = int(values[0]), call.limits.max_history_length
    return FailedPrecondition(
        f"thread {call.thread_id} would hold {length + call.adding} entries, more than the "
        f"{limit} a thread may hold; nothing was written. Start a new "
        "thread, or fork this one with a shorter history_length",
        reason=Reason.HISTORY_TOO_LONG,
        thread_id=call.thread_id,
        history_length=length,
        adding=call.adding,
        limit=limit,
    )


def _out_of_range(call: ScriptCall, values: list[Any]) -> ThreadsError:
    source_length = int(values[0])
    return OutOfRange(
        f"history_length {call.history_length} is beyond the end of thread {call.thread_id}, "
        f"which has {source_length} entries",
        reason=Reason.HISTORY_LENGTH_OUT_OF_RANGE,
        thread_id=call.thread_id,
        history_length=call.history_length,
        source_history_length=source_length,
    )


def _metadata_too_large(call: ScriptCall, values: list[Any]) -> ThreadsError:
    size, limit = int(values[0]), call.limits.max_metadata_bytes
    return FailedPrecondition(
        f"merged over the stored keys, the metadata of thread {call.thread_id} would be {size} "
        f"bytes, more than the {limit} allowed; nothing was written. "
        "Send smaller values, or drop keys by overwriting them with smaller ones",
        reason=Reason.METADATA_TOO_LARGE,
        thread_id=call.thread_id,
        size=size,
        limit=limit,
    )


OUTCOME_ERRORS: Mapping[Outcome, Callable[[ScriptCall, list[Any]], ThreadsError]] = (
    MappingProxyType(
        {
            Outcome.NOT_FOUND: _not_found,
            Outcome.EXISTS: _exists,
            Outcome.REQUEST_ID_REUSED: _request_id_reused,
            Outcome.DELETED: _deleted,
            Outcome.LENGTH_MISMATCH: _length_mismatch,
            Outcome.TOO_LONG: _too_long,
            Outcome.OUT_OF_RANGE: _out_of_range,
            Outcome.METADATA_TOO_LARGE: _metadata_too_large,
        }
    )
)
"""Each outcome that can fail a call, with the function building its error from the
reply's values and the call."""


def from_outcome(outcome: Outcome, values: list[Any], call: ScriptCall) -> ThreadsError:
    """The error a script's non-OK ``outcome`` means for ``call``."""
    return OUTCOME_ERRORS[outcome](call, values)
