"""Watch: follow a thread live, from any index, exactly (etcd's Watch, with the entry index as
the revision). ``Watches.watch`` is the stream the ``Watch`` RPC sends, over gRPC and SSE.

The history list in Redis is the truth. A watcher reads it from its next index on, so it
gets every entry once, in order, with no gap, whatever happens to the wake-ups: the write
scripts publish one on the thread's channel (``_prelude.lua``'s ``wake``: Append with the
new length, Delete), and a wake-up only says "look again". So a lost wake-up could only
delay an entry, and none is lost: a subscription is confirmed before the first read it
covers, and one lost (a Redis restart, a failover) is made again before everyone re-reads.

Per worker, per thread, one ``Feed`` serves every watcher of that thread:

- one subscription (``subscriptions.Subscriber``: one connection per Redis node per worker);
- shared reads: the watchers at the same index that need a read share one
  (``Feed.read``), so a wake-up costs one read per thread, not one per watcher;
- one progress timer: every ``PROGRESS_TICK`` of ``--watch-progress-seconds`` everyone
  re-reads (shared), which ends streams of a thread that expired, and a watcher that has
  sent nothing for a while sends a progress message.

Backpressure: a watcher reads the next batch only once the transport has taken the last
message (the stream is pulled), so a slow reader holds one message and its connection's
buffers, never the history. Every read goes through the store's script path
(``ThreadStore.watch_read``: metric, span, error mapping).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from threads_server import metrics
from threads_server.errors import (
    NotFound,
    OutOfRange,
    Reason,
    ResourceExhausted,
    ThreadsError,
    Unavailable,
)
from threads_server.keys import ThreadKeys
from threads_server.pb import threads_pb2 as pb
from threads_server.store import ThreadStore, WatchRead
from threads_server.subscriptions import Subscriber

log = logging.getLogger("threads.watch")

MAX_ENTRIES_PER_MESSAGE = 1000
# Room left in a message for what is not an entry (history_length, framing).
_MESSAGE_SLACK_BYTES = 64
# The feed's progress timer fires every PROGRESS_TICK of the progress interval; a watcher
# quiet for PROGRESS_AFTER of it then sends a progress message, so none is quiet for more
# than PROGRESS_TICK + PROGRESS_AFTER (95 %) of the interval, a read's time to spare.
PROGRESS_TICK = 0.8
PROGRESS_AFTER = 0.15


@dataclass(slots=True)
class _Read:
    """A read in flight from ``index`` on, and what it is known to cover: every wake-up up
    to ``generation`` and ``known_length``, as they were when it was sent."""

    index: int
    generation: int
    known_length: int
    task: asyncio.Task[WatchRead]


class Feed:
    """Everything one worker does for the watchers of one thread (``subscriptions.Listener``)."""

    def __init__(self, watches: Watches, owner: str, thread_id: str) -> None:
        self._watches = watches
        self.owner = owner
        self.thread_id = thread_id
        self.channel = ThreadKeys(thread_id, owner).channel
        self.watchers = 0
        # Bumped by every event after which everyone must read again: a Delete's wake-up,
        # a subscription (re)confirmed, a progress tick.
        self.generation = 0
        # The longest history a wake-up announced.
        self.known_length = 0
        self.error: ThreadsError | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._reads: dict[int, _Read] = {}
        self._subscription: asyncio.Task[None] | None = None
        self._subscribed = False
        self.retired = False
        loop = asyncio.get_running_loop()
        self._tick_seconds = watches.progress_seconds * PROGRESS_TICK
        self._timer = loop.call_later(self._tick_seconds, self._tick)

    # --- what the subscription says (subscriptions.Listener) ---------------------------

    def woken(self, data: bytes) -> None:
        metrics.watch_wakeup()
        if data.isdigit():
            length = int(data)
            if length > self.known_length:
                self.known_length = length
                self._notify()
        else:
            self._bump()

    def lost(self, error: ThreadsError) -> None:
        """The subscription is gone: subscribe again, then everyone re-reads (messages may
        have been missed meanwhile); if that fails, the streams end with its error."""
        self._subscribed = False
        if self.retired or self.error is not None:
            return
        log.info(
            "watch of thread %s: subscription lost (%s); subscribing again",
            self.thread_id,
            error.message,
        )
        self._subscription = self._start(self._resubscribe())

    async def _resubscribe(self) -> None:
        try:
            await self._watches.subscriber.subscribe(self.channel, self)
        except ThreadsError as error:
            self.fail(error)
            return
        self._confirmed()

    # --- for the watchers --------------------------------------------------------------

    async def subscribed(self) -> None:
        """Returns once the feed's subscription is confirmed (subscribing the first time)."""
        if self._subscribed:
            return
        if self._subscription is None:
            self._subscription = self._start(self._subscribe())
        await asyncio.shield(self._subscription)
        if self.error is not None:
            raise self.error

    async def _subscribe(self) -> None:
        try:
            await self._watches.subscriber.subscribe(self.channel, self)
        except BaseException:
            self._subscription = None  # the next watcher tries again
            raise
        self._confirmed()

    def _confirmed(self) -> None:
        if self.retired:
            self._watches.subscriber.unsubscribe(self.channel, self)
            return
        self._subscribed = True
        self._bump()

    async def read(self, index: int) -> tuple[int, WatchRead]:
        """The entries from ``index`` on, read after every wake-up received so far, and the
        generation that read covers. Watchers share reads: one at the same index, or one at
        a lower index that reached the end of the history (a watcher a few entries behind
        takes its share of a read for one further back)."""
        pending = self._covering(index)
        if pending is not None:
            read = await asyncio.shield(pending.task)
            if pending.index == index:
                return pending.generation, read
            if pending.index + len(read.entries) >= read.length:
                entries = read.entries[index - pending.index :]
                return pending.generation, WatchRead(entries, read.length, read.created_at)
            # Capped short of the end: a read of our own, so that no cap but our own
            # message's splits an Append.
        self._forget_stale_reads()
        task = self._start(
            self._watches.read(self.owner, self.thread_id, index),
            context=contextvars.copy_context(),  # the read's span: the reader's child
        )
        pending = self._reads[index] = _Read(index, self.generation, self.known_length, task)
        task.add_done_callback(lambda _: self._done_reading(pending))
        return pending.generation, await asyncio.shield(pending.task)

    def _forget_stale_reads(self) -> None:
        """Drops the reads a wake-up has made stale since."""
        for index, pending in list(self._reads.items()):
            if pending.generation < self.generation or pending.known_length < self.known_length:
                del self._reads[index]

    def _covering(self, index: int) -> _Read | None:
        """The read (in flight, or done and still current: no wake-up came since it was
        sent) that serves ``index`` after every wake-up so far: the one nearest below it
        (or at it). A watcher that comes late to a wake-up takes the read the others made."""
        best = None
        for pending in self._reads.values():
            if (
                pending.index <= index
                and pending.generation >= self.generation
                and pending.known_length >= self.known_length
                and (best is None or pending.index > best.index)
            ):
                best = pending
        return best

    def _done_reading(self, read: _Read) -> None:
        """A read that failed is not kept (the next watcher tries again); one that worked
        is, until a wake-up makes it stale."""
        failed = read.task.cancelled() or read.task.exception() is not None
        if failed and self._reads.get(read.index) is read:
            del self._reads[read.index]

    async def changed(self) -> None:
        """Returns at the next wake-up, generation or failure."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def fail(self, error: ThreadsError) -> None:
        """Ends every stream of this feed with ``error``."""
        if self.error is None:
            self.error = error
            self._watches.forget(self)
            self._notify()

    def retire(self) -> None:
        """The last watcher left: the subscription and the timer go."""
        self.retired = True
        self._timer.cancel()
        if self._subscribed:
            self._watches.subscriber.unsubscribe(self.channel, self)
        self._subscribed = False

    # --- inside ------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.retired:
            return
        self._timer = asyncio.get_running_loop().call_later(self._tick_seconds, self._tick)
        self._bump()

    def _bump(self) -> None:
        self.generation += 1
        self._notify()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @staticmethod
    def _start(
        work: Coroutine[Any, Any, Any], *, context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        """A task of the feed's, run in ``context`` (default: a fresh one, so it carries no
        caller's span or deadline)."""
        return asyncio.get_running_loop().create_task(
            work, context=context if context is not None else contextvars.Context()
        )


class Watches:
    """Every Watch stream of this worker: their feeds, the limit, shutdown."""

    def __init__(
        self,
        store: ThreadStore,
        subscriber: Subscriber,
        *,
        progress_seconds: float,
        max_watchers: int,
        max_message_bytes: int,
        concurrent_reads: int | None = None,
    ) -> None:
        """``concurrent_reads``: at most that many reads at once (on a cluster, where each
        script call holds a pooled connection of its node for its round trip, so that
        watchers add no connections however many they are); None: no bound (one Redis,
        where the calls share one pipelined connection)."""
        self.store = store
        self.subscriber = subscriber
        self.progress_seconds = progress_seconds
        self.max_watchers = max_watchers
        self.max_message_bytes = max_message_bytes
        self.open = 0
        self._feeds: dict[tuple[str, str], Feed] = {}
        self._closing: ThreadsError | None = None
        self._reading = asyncio.Semaphore(concurrent_reads) if concurrent_reads else None

    async def read(self, owner: str, thread_id: str, index: int) -> WatchRead:
        """One read for a feed: the entries from ``index`` on that fit in a message."""
        read = self.store.watch_read(
            owner,
            thread_id,
            index,
            MAX_ENTRIES_PER_MESSAGE,
            self.max_message_bytes - _MESSAGE_SLACK_BYTES,
        )
        if self._reading is None:
            return await read
        async with self._reading:
            return await read

    @property
    def feeds(self) -> int:
        """Threads watched now (one subscription each)."""
        return len(self._feeds)

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
        feed = self._feed(owner, thread_id)
        feed.watchers += 1
        try:
            async for message in _Watcher(feed, start_index, self.progress_seconds).run():
                yield message
        finally:
            self.open -= 1
            metrics.watchers(-1)
            feed.watchers -= 1
            if feed.watchers == 0:
                if self._feeds.get((owner, thread_id)) is feed:
                    del self._feeds[(owner, thread_id)]
                feed.retire()

    def _feed(self, owner: str, thread_id: str) -> Feed:
        feed = self._feeds.get((owner, thread_id))
        if feed is None:
            feed = self._feeds[(owner, thread_id)] = Feed(self, owner, thread_id)
        return feed

    def forget(self, feed: Feed) -> None:
        """A failed feed: new watchers of its thread get a new one."""
        if self._feeds.get((feed.owner, feed.thread_id)) is feed:
            del self._feeds[(feed.owner, feed.thread_id)]

    def close(self) -> None:
        """Shutdown: every stream ends now with UNAVAILABLE (clients go to another
        worker), and new ones are refused the same way."""
        self._closing = Unavailable(
            "the server is shutting down; reconnect (to another worker) and resume from "
            "your next index",
            reason=Reason.SHUTTING_DOWN,
        )
        for feed in list(self._feeds.values()):
            feed.fail(self._closing)


class _Watcher:
    """One stream's loop: read from its next index, send, wait for a change."""

    def __init__(self, feed: Feed, start_index: int, progress_seconds: float) -> None:
        self.feed = feed
        self.index = start_index
        self.quiet = progress_seconds * PROGRESS_AFTER
        self.started = time.time()

    async def run(self) -> AsyncIterator[pb.WatchResponse]:
        feed = self.feed
        created_at: bytes | None = None
        seen = -1  # the generation our last read covered
        more = True  # entries are known to be waiting (or we have sent nothing yet)
        last_sent: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if feed.error is not None:
                raise feed.error
            if not (more or self.index < feed.known_length or seen < feed.generation):
                await feed.changed()
                continue
            seen, read = await feed.read(self.index)
            if created_at is None:  # the first read
                if self.index > read.length:
                    raise _beyond_the_end(feed.thread_id, self.index, read.length)
                created_at = read.created_at
                await feed.subscribed()  # a wake-up from now on reaches us
            elif read.created_at != created_at or read.length < self.index:
                raise _replaced(feed.thread_id)
            more = self.index + len(read.entries) < read.length
            if read.entries:
                self.index += len(read.entries)
                message = pb.WatchResponse(entries=read.entries, history_length=self.index)
            elif last_sent is None or loop.time() - last_sent >= self.quiet:
                message = pb.WatchResponse(history_length=read.length)
            else:
                continue
            yield message  # the transport takes it: only then is the next batch read
            last_sent = loop.time()
            metrics.watch_sent(message, self.started)


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
