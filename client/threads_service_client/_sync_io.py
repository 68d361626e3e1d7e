"""What blocking I/O means to the client; the twin of ``_async_io``, name for name.

The generated ``threads_service_client._sync`` reaches these as ``_io``.
"""

from __future__ import annotations

import time
from typing import Any, TypeAlias

import grpc

from threads_service_client.pb import threads_pb2_grpc as pb_grpc

Channel: TypeAlias = grpc.Channel
Stub: TypeAlias = pb_grpc.ThreadServiceStub
UnaryUnaryMultiCallable = grpc.UnaryUnaryMultiCallable
sleep = time.sleep


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]]
) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target, options)
    return grpc.secure_channel(target, credentials, options)


def stub(channel: grpc.Channel) -> pb_grpc.ThreadServiceStub:
    return pb_grpc.ThreadServiceStub(channel)


def close_channel(channel: grpc.Channel) -> None:
    """Cancels the calls in flight."""
    channel.close()
