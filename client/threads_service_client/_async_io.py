"""What asyncio I/O means to the client; ``_sync_io`` is the blocking twin, name for name.

``threads_service_client._async`` reaches these as ``_io``, and the blocking client generated from
it (``threads_service_client._sync``) reaches ``_sync_io`` under the same name, so this pair is the
only client code written twice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from grpc import aio

from threads_service_client.pb import threads_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub

Channel: TypeAlias = aio.Channel
Stub: TypeAlias = "ThreadServiceAsyncStub"
UnaryUnaryMultiCallable = aio.UnaryUnaryMultiCallable
sleep = asyncio.sleep


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]]
) -> aio.Channel:
    """A channel bound to the running event loop: call it from inside that loop."""
    if credentials is None:
        return aio.insecure_channel(target, options)
    return aio.secure_channel(target, credentials, options)


def stub(channel: aio.Channel) -> ThreadServiceAsyncStub:
    return pb_grpc.ThreadServiceStub(channel)


async def close_channel(channel: aio.Channel) -> None:
    """Cancels the calls in flight (no grace period)."""
    await channel.close(None)
