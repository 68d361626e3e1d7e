"""Feeds: what one worker reads from Redis for the watchers of a thread (Watch), shared.

This is the store's half of Watch, as etcd's ``storage/mvcc`` watchable store is the
storage half of its Watch (watcher groups, catching up from the store, the revision a
progress notification reports) and ``etcdserver/api/v3rpc/watch.go`` the stream's half
(limits, progress ticker, messages): the stream, its limits and its messages are
``service.watch``'s; how a thread's changes are noticed and read is here, beside the
scripts that publish them.

The history list in Redis is the truth. The write scripts publish a wake-up on the
thread's channel (``lua/includes/wake.lua``: Append with the new length, Delete, an
expiry change), and a wake-up only says "look again": a watcher reads the list from its
next index on, so it gets every entry once, in order, with no gap, whatever happens to the
wake-ups. A subscription is confirmed before the first read it covers, and one lost (a
Redis restart, a failover: ``Corridor``'s topology hook) is made again before everyone
re-reads.

Per worker, per thread, one ``Feed`` serves every watcher of that thread:

- one subscription (``Corridor.subscribe``: one connection per Redis node per worker);
- shared reads: the watchers that need the entries from an index share one read
  (``Feed.read``), so a wake-up costs one read per thread, not one per watcher;
- what it knows without a read: the longest history a wake-up announced or a read saw
  (``known_length``), which a caught-up watcher's progress message reports; and when the
  thread expires, at which time (not on every tick) everyone reads again and finds it gone;
- one timer: a heartbeat every ``heartbeat_seconds`` that wakes the watchers (no read), or
  the thread's expiry if that comes first.

Every read goes through the store's script path (``ThreadStore.watch_read``: the
corridor's metric, span and error mapping).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Coroutine
from typing import Any

from threads_server.errors import ThreadsError
from threads_server.ops import metrics
from threads_server.store.corridor.subscriptions import Subscription
from threads_server.store.thread_store import ThreadStore, WatchRead

log = logging.getLogger("threads.watch")

MAX_ENTRIES_PER_MESSAGE = 1000
# An expiry the clock says is past, on a thread still there (Redis's clock behind ours):
# looked at again this much later.
_EXPIRY_RECHECK_SECONDS = 1.0


class _Read:
    """A read in flight (or done) from ``index`` on, and what it is known to cover: every
    wake-up up to ``generation`` and ``known_length``, as they were when it was sent. Once
    done, its result, and the views of it the watchers further on took (``views``), so that
    watchers at one index share one ``WatchRead`` and its message."""

    __slots__ = ("generation", "index", "known_length", "result", "task", "views")

    def __init__(
        self, index: int, generation: int, known_length: int, task: asyncio.Task[WatchRead]
    ) -> None:
        self.index = index
        self.generation = generation
        self.known_length = known_length
        self.task: asyncio.Task[WatchRead] | None = task
        self.result: WatchRead | None = None
        self.views: dict[int, WatchRead] = {}

    async def outcome(self) -> WatchRead:
        """The read's result (a watcher that leaves meanwhile does not cancel it)."""
        if self.result is not None:
            return self.result
        assert self.task is not None
        return await asyncio.shield(self.task)

    def view(self, read: WatchRead, index: int) -> WatchRead:
        view = self.views.get(index)
        if view is None:
            view = self.views[index] = read.since(index)
        return view


class Feed:
    """Everything one worker does for the watchers of one thread (a ``Corridor`` listener)."""

    __slots__ = (
        "_due",
        "_expire_at",
        "_feeds",
        "_reads",
        "_subscribing",
        "_subscription",
        "_timer",
        "_waiters",
        "_waiting",
        "error",
        "generation",
        "known_length",
        "owner",
        "retired",
        "thread_id",
        "watchers",
    )

    def __init__(self, feeds: Feeds, owner: str, thread_id: str) -> None:
        self._feeds = feeds
        self.owner = owner
        self.thread_id = thread_id
        self.watchers = 0
        # Bumped by every event after which everyone must read again: a Delete's or an
        # expiry change's wake-up, a subscription (re)confirmed, the thread's expiry.
        self.generation = 0
        # The longest history a wake-up announced or a read saw.
        self.known_length = 0
        self.error: ThreadsError | None = None
        self.retired = False
        self._waiters: list[asyncio.Future[None]] = []
        self._waiting: contextvars.Context | None = None  # the last to wait's context
        self._reads: dict[int, _Read] = {}
        self._subscription: Subscription | None = None
        self._subscribing: asyncio.Task[None] | None = None
        self._expire_at: float | None = None  # loop time at which the thread expires
        loop = asyncio.get_running_loop()
        self._due = loop.time() + feeds.heartbeat_seconds  # the next heartbeat
        self._timer = loop.call_at(self._due, self._fire)

    # --- what the subscription says (corridor.Listener) --------------------------------

    def woken(self, data: bytes) -> None:
        metrics.watch_wakeup()
        if data.isdigit():  # an Append's new length
            length = int(data)
            if length > self.known_length:
                caught_up, self.known_length = self.known_length, length
                if self._waiters and self._waiting is not None:
                    # Those waiting have read up to the old length: their read goes now,
                    # and they wake once it is done (one wake-up each, not two).
                    self._start_read(caught_up, self._waiting, then_notify=True)
                else:
                    self._notify()
        else:  # deleted, or its expiry changed: everyone reads again
            self._bump()

    def lost(self, error: ThreadsError) -> None:
        """The subscription is gone: subscribe again, then everyone re-reads (messages may
        have been missed meanwhile); if that fails, the streams end with its error."""
        self._subscription = None
        if self.retired or self.error is not None:
            return
        log.info(
            "watch of thread %s: subscription lost (%s); subscribing again",
            self.thread_id,
            error.message,
        )
        self._subscribing = self._start(self._subscribe(again=True))

    # --- for the watchers --------------------------------------------------------------

    async def subscribed(self) -> None:
        """Returns once the feed's subscription is confirmed (subscribing the first time)."""
        if self._subscription is not None:
            return
        if self._subscribing is None:
            self._subscribing = self._start(self._subscribe(again=False))
        await asyncio.shield(self._subscribing)
        if self.error is not None:
            raise self.error

    async def _subscribe(self, *, again: bool) -> None:
        try:
            subscription = await self._feeds.store.subscribe(self.owner, self.thread_id, self)
        except ThreadsError as error:
            self._subscribing = None  # the next watcher tries again
            if again:
                self.fail(error)
                return
            raise
        self._subscribing = None
        if self.retired:
            self._feeds.store.unsubscribe(subscription)
            return
        self._subscription = subscription
        self._bump()

    async def read(self, index: int) -> tuple[int, WatchRead]:
        """The entries from ``index`` on, read after every wake-up received so far, and the
        generation that read covers. Watchers share reads: one at the same index, or one at
        a lower index that reached the end of the history (a watcher a few entries behind
        takes its share of a read for one further back)."""
        pending = self._covering(index)
        if pending is not None:
            read = await pending.outcome()
            if pending.index == index:
                return pending.generation, read
            if read.offset + len(read.entries) >= read.length:
                return pending.generation, pending.view(read, index)
            # Capped short of the end: a read of our own, so that no cap but our own
            # message's splits an Append.
        pending = self._start_read(index, contextvars.copy_context())
        return pending.generation, await pending.outcome()

    def _start_read(
        self, index: int, context: contextvars.Context, *, then_notify: bool = False
    ) -> _Read:
        """A read from ``index`` on, in ``context`` (its span: that watcher's child); with
        ``then_notify``, the waiting watchers are woken once it is done."""
        self._forget_stale_reads()
        task = self._start(self._feeds.read(self.owner, self.thread_id, index), context=context)
        pending = self._reads[index] = _Read(index, self.generation, self.known_length, task)
        task.add_done_callback(lambda _: self._done_reading(pending, then_notify))
        return pending

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

    def _done_reading(self, pending: _Read, then_notify: bool) -> None:
        """A read that failed is not kept (the next watcher tries again); one that worked
        is, until a wake-up makes it stale, and tells the feed what it saw."""
        task = pending.task
        assert task is not None
        if then_notify:
            self._notify()
        if task.cancelled() or task.exception() is not None:
            if self._reads.get(pending.index) is pending:
                del self._reads[pending.index]
            return
        read = pending.result = task.result()
        pending.task = None  # its result is kept: not the task, its coroutine and context
        pending.known_length = max(pending.known_length, read.length)  # it covers what it saw
        self.known_length = max(self.known_length, read.length)
        self._forget_stale_reads()
        self._expires(read.expire_at_ms)

    async def changed(self) -> None:
        """Returns at the next wake-up, generation, heartbeat or failure."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._waiting = contextvars.copy_context()  # a waiting watcher's: for its span
        await waiter

    def fail(self, error: ThreadsError) -> None:
        """Ends every stream of this feed with ``error``."""
        if self.error is None:
            self.error = error
            self._feeds.forget(self)
            self._notify()

    def retire(self) -> None:
        """The last watcher left: the subscription and the timer go."""
        self.retired = True
        self._timer.cancel()
        if self._subscription is not None:
            self._feeds.store.unsubscribe(self._subscription)
            self._subscription = None

    # --- inside ------------------------------------------------------------------------

    def _expires(self, expire_at_ms: int | None) -> None:
        """Arms the timer for the thread's expiry (None: it has none), when it comes
        before the next heartbeat; a past one is looked at again a moment later."""
        if expire_at_ms is None:
            self._expire_at = None
            return
        loop = asyncio.get_running_loop()
        delay = expire_at_ms / 1000 - time.time()
        self._expire_at = loop.time() + max(delay, _EXPIRY_RECHECK_SECONDS if delay <= 0 else 0)
        if self._expire_at < self._timer.when():
            self._timer.cancel()
            self._timer = loop.call_at(self._expire_at, self._fire)

    def _fire(self) -> None:
        """The timer: the thread's expiry (everyone reads, and finds it gone), or a
        heartbeat (the watchers wake, to send progress)."""
        if self.retired:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._expire_at is not None and now >= self._expire_at:
            self._expire_at = None
            self._bump()
        if now >= self._due:
            self._due = now + self._feeds.heartbeat_seconds
            self._notify()
        when = self._due if self._expire_at is None else min(self._due, self._expire_at)
        self._timer = loop.call_at(when, self._fire)

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


class Feeds:
    """The worker's feeds, one per watched thread, and how they read."""

    CONCURRENT_READS = 4

    def __init__(
        self,
        store: ThreadStore,
        *,
        heartbeat_seconds: float,
    ) -> None:
        """``heartbeat_seconds``: how often a feed wakes its watchers with nothing new (to
        send progress). A read brings what fits in one message (the store's limits).
        Where each call holds a pooled connection for its round trip (a cluster's nodes,
        ``--redis-pipelining off``), at most ``CONCURRENT_READS`` reads run at once, so that
        watchers add a few connections however many they are (on one pipelined connection,
        the calls share it: no bound)."""
        self.store = store
        self.heartbeat_seconds = heartbeat_seconds
        self._feeds: dict[tuple[str, str], Feed] = {}
        self._reading = (
            None if store.shares_one_connection else asyncio.Semaphore(self.CONCURRENT_READS)
        )

    def __len__(self) -> int:
        """Threads watched now (one subscription each)."""
        return len(self._feeds)

    def join(self, owner: str, thread_id: str) -> Feed:
        """The thread's feed, with one more watcher (``leave`` when it goes)."""
        feed = self._feeds.get((owner, thread_id))
        if feed is None:
            feed = self._feeds[(owner, thread_id)] = Feed(self, owner, thread_id)
        feed.watchers += 1
        return feed

    def leave(self, feed: Feed) -> None:
        feed.watchers -= 1
        if feed.watchers == 0:
            self.forget(feed)
            feed.retire()

    def forget(self, feed: Feed) -> None:
        """A feed that failed or has no watcher left: new watchers of its thread get a new
        one."""
        if self._feeds.get((feed.owner, feed.thread_id)) is feed:
            del self._feeds[(feed.owner, feed.thread_id)]

    def fail_all(self, error: ThreadsError) -> None:
        """Ends every stream of every feed with ``error`` (shutdown)."""
        for feed in list(self._feeds.values()):
            feed.fail(error)

    async def read(self, owner: str, thread_id: str, index: int) -> WatchRead:
        """One read for a feed: the entries from ``index`` on that fit in a message."""
        read = self.store.watch_read(owner, thread_id, index, MAX_ENTRIES_PER_MESSAGE)
        if self._reading is None:
            return await read
        async with self._reading:
            return await read
