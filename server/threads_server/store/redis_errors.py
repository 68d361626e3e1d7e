"""The storage boundary: redis-py's exceptions become the service's own errors here.

Every Redis call of the store runs inside ``store_errors``, applied once, by ``Corridor``
(as httpx wraps every httpcore call in ``map_httpcore_exceptions``), so nothing above the
store imports redis: an outage leaves the store as ``Unavailable`` (cause kept for the log,
never sent: it names internal hosts), a full Redis as ``ResourceExhausted``, and a script's
own error with its lines named in its files (``LuaSource.name_lines``). Anything else is a bug and
propagates unchanged, to be logged with its traceback as INTERNAL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.exceptions

from threads_server.errors import Reason, ResourceExhausted, ThreadsError, Unavailable
from threads_server.store.scripts import Script


def _store_unavailable(exc: Exception) -> Unavailable:
    error = Unavailable(
        "the thread store (Redis) is unavailable; retry with backoff",
        reason=Reason.STORE_UNAVAILABLE,
    )
    error.__cause__ = exc  # logged by the RPC layer, not sent: it names internal hosts
    return error


def cluster_unavailable(exc: BaseException) -> bool:
    """Redis Cluster states in which nothing was run: cluster down (CLUSTERDOWN), a slot
    no node serves, redirects exhausted, or no node reachable to learn the layout."""
    if isinstance(exc, redis.exceptions.ClusterError | redis.exceptions.SlotNotCoveredError):
        return True
    return isinstance(exc, redis.exceptions.RedisClusterException) and isinstance(
        exc.__cause__, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    )


def to_store_error(exc: Exception) -> ThreadsError | None:
    """The service's error for a redis-py exception; None for anything else (a bug)."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return _store_unavailable(exc)
    if isinstance(exc, redis.exceptions.ReadOnlyError):  # a replica after failover
        return _store_unavailable(exc)
    if cluster_unavailable(exc):
        return _store_unavailable(exc)
    # Redis refuses a script at its first write when over maxmemory (a script that has
    # written is never stopped half-way), so nothing was written. redis-py strips the
    # "OOM" prefix from the message, hence the class check.
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return ResourceExhausted(
            "the thread store (Redis) is out of memory; nothing was written",
            reason=Reason.STORE_OUT_OF_MEMORY,
        )
    return None


def lost_error(exc: Exception) -> ThreadsError:
    """The service's error for a subscription lost to ``exc`` (the owner subscribes again,
    or ends its streams with it): an outage, whatever redis-py raised."""
    if isinstance(exc, ThreadsError):
        return exc
    return to_store_error(exc) or _store_unavailable(exc)


@contextlib.contextmanager
def store_errors(script: Script | None = None) -> Iterator[None]:
    """Around one Redis call (``script``: the script it runs, whose errors name its lines)."""
    try:
        yield
    except Exception as exc:
        error = to_store_error(exc)
        if error is not None:
            raise error from error.__cause__  # the cause to_store_error keeps, if any
        if script is not None and isinstance(exc, redis.exceptions.ResponseError):
            name_lines(exc, script)
        raise


def name_lines(exc: BaseException, script: Script) -> None:
    """Rewrites, in place, the ``user_script:N`` of an error ``script`` raised into its
    file and line (in place: the class, traceback and cause stay as they are)."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (script.source.name_lines(exc.args[0]), *exc.args[1:])
