"""Redis Cluster: each call to the primary of its keys' slot, following MOVED and ASK.

The cluster client routes an EVALSHA by its keys and follows redirects (MOVED, ASK and
TRYAGAIN mean the node did not run it, so following them cannot run a script twice); it
never re-sends after a lost connection (``store.connect``). A batch (Search's shards, a
page's Gets) goes to the nodes in parallel, each node's calls one after another over one
connection: one concurrent call per shard would take a pooled connection each, and a busy
server then runs out of them (MaxConnectionsError). redis-py refuses EVALSHA in a cluster
pipeline; a batch of plain commands (migrate's reads) goes as one. Search and Count send
one call per node (``Corridor.fan_out``), which reaches the slots it reads on that node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from threads_server.store.corridor.transport import Cluster, Request


class PerNode(Cluster):
    async def handle(self, request: Request) -> Any:
        return await self.client.execute_command(*request.command)

    async def handle_batch(self, requests: Sequence[Request]) -> list[Any]:
        if all(request.command[0] != "EVALSHA" for request in requests):
            pipe = self.client.pipeline()
            for request in requests:
                pipe.execute_command(*request.command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies
        replies = [None] * len(requests)

        async def run(positions: list[int]) -> None:
            for at, position in enumerate(positions):
                try:
                    replies[position] = await self.handle(requests[position])
                except Exception as error:
                    # The node's calls not sent yet fail with it (NOSCRIPT: not run either).
                    for left in positions[at:]:
                        replies[left] = error
                    return

        by_node = self.group([request.key for request in requests])
        await asyncio.gather(*(run(positions) for positions in by_node))
        return replies
