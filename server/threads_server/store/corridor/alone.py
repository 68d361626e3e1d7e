"""Each call on a connection of its own from the client's pool; a batch as one pipeline.

For one Redis (or Sentinel's primary) with ``--redis-pipelining off``, and for
``threads-server migrate``. The client never retries (``store.connect``), so a command whose
reply was lost is not sent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from threads_server.store.corridor.transport import OneRedis, Request


class Alone(OneRedis):
    async def handle(self, request: Request) -> Any:
        return await self.client.execute_command(*request.command)

    async def handle_batch(self, requests: Sequence[Request]) -> list[Any]:
        """One non-transactional pipeline: one connection, one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for request in requests:
            pipe.execute_command(*request.command)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
