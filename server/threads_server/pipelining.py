"""Auto-pipelining: the script calls of one event-loop tick go to Redis together.

This is where a script call goes to Redis (one Redis, or Sentinel's primary):
``ScriptPipeline.call`` queues its EVALSHA; the first call of a tick starts a batch task,
which runs on the next tick, so every call issued meanwhile joins it. The batch takes one
pooled connection, sends all its calls in one write (``pack_commands``,
``send_packed_command``), reads the replies back in order and hands each to its caller:
one pool checkout, one write and one wake-up per tick instead of per call. It uses
redis-py's public connection API, as redis-py's own Pipeline does.

The rules, each held by ``tests/test_pipelining.py``:

- A write is never re-sent. A lost connection or a timeout (the connection's
  ``socket_timeout`` bounds the batch) fails every call still waiting with that error
  (UNAVAILABLE at ``store_errors``). Only NOSCRIPT (the script is not loaded, so the call
  did not run) loads the script and sends that call again, as ``AsyncScript`` does.
- An error reply fails only its own call (WRONGTYPE, OOM, NOSCRIPT, READONLY on one Redis).
  Sentinel's connections turn READONLY (a demoted primary) into a ConnectionError and
  disconnect, so there the rest of the batch fails as UNAVAILABLE too.
- A caller that leaves (its deadline expired) has its reply read and dropped, keeping the
  connection in sync; once every caller of a batch has left, the batch is cancelled, and
  redis-py closes its connection, as a lone call's cancellation does.
- A batch that ends in any way (error, cancellation, shutdown) fails the calls it has not
  answered, so no caller waits forever.

Not used on Redis Cluster (each call goes to its slot's node: ``AsyncScript`` as before)
nor with ``--min-replica-acks`` (``replication.ReplicatedWriter`` sends each write with its
WAIT); ``--redis-pipelining off`` turns it off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, NoScriptError, ResponseError


class _Batch:
    """The calls of one tick: their commands, and the futures their callers await."""

    __slots__ = ("commands", "futures", "task")

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.task: asyncio.Task[None] | None = None


class ScriptPipeline:
    """Sends the script calls of one tick to one Redis (or Sentinel's primary) together."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pool = redis.connection_pool
        self._open: _Batch | None = None  # the batch this tick's calls join
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak refs

    async def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply, as ``script(keys=keys, args=args)`` returns it."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._queue(command)
        except NoScriptError:  # not run: Redis lost its scripts (restart, failover)
            await self._redis.script_load(script.script)
            return await self._queue(command)

    async def aclose(self) -> None:
        """Cancels the batches in flight; their callers get a ConnectionError."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _queue(self, command: tuple[Any, ...]) -> Any:
        batch = self._open
        loop = asyncio.get_running_loop()
        if batch is None:
            batch = self._open = _Batch()
            batch.task = loop.create_task(self._send(batch))
            self._running.add(batch.task)
            batch.task.add_done_callback(lambda task: self._ended(batch, task))
        future = loop.create_future()
        batch.commands.append(command)
        batch.futures.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            # Our future cancelled: we left before our reply (else we were answered and
            # then cancelled). The batch goes on for the others; with none left, it stops.
            if future.cancelled() and all(f.done() for f in batch.futures):
                if self._open is batch:
                    self._open = None
                assert batch.task is not None
                batch.task.cancel()
            raise

    async def _send(self, batch: _Batch) -> None:
        """One round trip for the batch; a reply whose caller has left is read and dropped."""
        self._open = None  # calls from now on start the next batch
        connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(connection.pack_commands(batch.commands))
            for future in batch.futures:
                try:
                    reply = await connection.read_response()
                except ResponseError as error:  # this call's own error; the rest go on
                    if not future.done():
                        future.set_exception(error)
                else:
                    if not future.done():
                        future.set_result(reply)
        finally:
            await self._pool.release(connection)

    def _ended(self, batch: _Batch, task: asyncio.Task[None]) -> None:
        """Fails every call the batch has not answered, with its error (retrieved here,
        so asyncio does not log it as never retrieved)."""
        self._running.discard(task)
        error: BaseException | None = None if task.cancelled() else task.exception()
        if error is None:
            error = ConnectionError("the pipelined batch was cancelled before its reply")
        for future in batch.futures:
            if not future.done():
                future.set_exception(error)
