"""Watch: follow a thread live, from any index, exactly (etcd's Watch, with the entry index as
the revision). ``Watches.watch`` is the stream the ``Watch`` RPC sends, over gRPC and SSE.

This is the stream's half, as etcd's ``v3rpc/watch.go`` is (the store's half, how a
thread's changes are noticed and read, shared by its watchers, is ``store.feeds``): the
limit on open streams, the start's checks, the messages, progress while nothing happens,
and the end of every stream at shutdown.

A stream is pulled: it reads its next batch only once the transport has taken the last
message, so a slow reader holds one message and its connection's buffers, never the
history. While it has nothing to send, its feed's heartbeat wakes it, and a stream that
has sent nothing for a while sends a progress message with the length its feed knows: a
caught-up watcher's own next index, with no Redis read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from threads_server.errors import (
    NotFound,
    OutOfRange,
    Reason,
    ResourceExhausted,
    ThreadsError,
    Unavailable,
)
from threads_server.ops import metrics
from threads_server.pb import threads_pb2 as pb
from threads_server.store.feeds import Feeds

# A feed's heartbeat comes every HEARTBEAT of the progress interval; a stream quiet for
# QUIET of it then sends a progress message, so none is quiet for more than HEARTBEAT +
# QUIET (95 %) of the interval: a moment to spare for the message to go out.
HEARTBEAT = 0.9
QUIET = 0.05


class Watches:
    """Every Watch stream of this worker: the limit, their loops, shutdown."""

    def __init__(self, feeds: Feeds, *, progress_seconds: float, max_watchers: int) -> None:
        self.feeds = feeds
        self.max_watchers = max_watchers
        self.open = 0
        self._quiet = progress_seconds * QUIET
        self._closing: ThreadsError | None = None

    @staticmethod
    def heartbeat_seconds(progress_seconds: float) -> float:
        """How often the feeds wake their watchers, for ``--watch-progress-seconds``."""
        return progress_seconds * HEARTBEAT

    async def watch(
        self, owner: str, thread_id: str, start_index: int
    ) -> AsyncIterator[pb.WatchResponse]:
        """The stream of ``thread_id`` from ``start_index`` on: its entries, then each new
        one, with progress messages while nothing happens. Ends only by raising."""
        if self._closing is not None:
            raise self._closing
        if self.open >= self.max_watchers:
            raise ResourceExhausted(
                f"this server already has {self.open} open Watch streams, the most "
                f"--max-watchers allows; retry later or on another server",
                reason=Reason.TOO_MANY_WATCHERS,
                limit=self.max_watchers,
            )
        self.open += 1
        metrics.watchers(1)
        feed = self.feeds.join(owner, thread_id)
        try:
            index = start_index
            opened = time.time()
            created_at: bytes | None = None  # the thread's, from the first read
            seen = -1  # the feed's generation our last read covered
            more = True  # entries are known to be waiting (or we have read nothing yet)
            last_sent = 0.0
            loop = asyncio.get_running_loop()
            while True:
                if feed.error is not None:
                    raise feed.error
                if not (more or index < feed.known_length or seen < feed.generation):
                    if loop.time() - last_sent < self._quiet:
                        await feed.changed()
                        continue
                    message = pb.WatchResponse(history_length=index)  # progress, no read
                else:
                    seen, read = await feed.read(index)
                    if created_at is None:  # the first read
                        if index > read.length:
                            raise _beyond_the_end(thread_id, index, read.length)
                        created_at = read.created_at
                        await feed.subscribed()  # a wake-up from now on reaches us
                    elif read.created_at != created_at or read.length < index:
                        raise _replaced(thread_id)
                    more = index + len(read.entries) < read.length
                    if not read.entries:
                        continue
                    index += len(read.entries)
                    message = read.message()  # shared by the watchers at this index
                yield message  # the transport takes it: only then is the next batch read
                last_sent = loop.time()
                metrics.watch_sent(message, opened)
        finally:
            self.open -= 1
            metrics.watchers(-1)
            self.feeds.leave(feed)

    def close(self) -> None:
        """Shutdown: every stream ends now with UNAVAILABLE (clients go to another
        worker), and new ones are refused the same way."""
        self._closing = Unavailable(
            "the server is shutting down; reconnect (to another worker) and resume from "
            "your next index",
            reason=Reason.SHUTTING_DOWN,
        )
        self.feeds.fail_all(self._closing)


def _beyond_the_end(thread_id: str, start_index: int, length: int) -> OutOfRange:
    return OutOfRange(
        f"start_index {start_index} is beyond the end of thread {thread_id}, which has "
        f"{length} entries; to follow only new entries, pass its history_length",
        reason=Reason.START_INDEX_OUT_OF_RANGE,
        thread_id=thread_id,
        start_index=start_index,
        history_length=length,
    )


def _replaced(thread_id: str) -> NotFound:
    """The thread was deleted (or expired) and another made under its id since."""
    return NotFound(
        f"thread {thread_id} no longer exists (it was deleted or expired; a thread created "
        "since under its id is another thread)",
        reason=Reason.THREAD_NOT_FOUND,
        thread_id=thread_id,
    )
