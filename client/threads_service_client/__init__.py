"""Thin Python client for ``threads.v1.ThreadService``, shaped like the LangGraph SDK.

    from threads_service_client import get_client

    async with get_client("127.0.0.1:50051") as client:
        thread = await client.threads.create(metadata={"user": "ada"})
        await client.threads.append(thread.thread_id, [{"role": "user", "content": "hi"}])
        async for entry in client.threads.iter_history(thread.thread_id):
            ...

``get_sync_client`` gives the same methods, blocking. Calls return the generated protobuf
messages (``threads_service_client.pb.threads_pb2``) and raise the
``threads_service_client.exceptions`` tree. Both take ``token=`` (bearer JWT),
``tls=TLS(...)`` and ``retry=RetryPolicy()``.
"""

from importlib import metadata

from threads_service_client import exceptions
from threads_service_client._async import Client, ThreadsClient, get_client
from threads_service_client._requests import DEFAULT_TIMEOUT
from threads_service_client._retry import RetryPolicy
from threads_service_client._sync import SyncClient, SyncThreadsClient, get_sync_client
from threads_service_client._tls import TLS
from threads_service_client.exceptions import *  # noqa: F403  (the classes, listed in its __all__)

__all__ = [
    "DEFAULT_TIMEOUT",
    "TLS",
    "Client",
    "RetryPolicy",
    "SyncClient",
    "SyncThreadsClient",
    "ThreadsClient",
    "get_client",
    "get_sync_client",
]
__all__ += exceptions.__all__

try:
    # The installed distribution's version, built from client/VERSION (the one place it is
    # written; the server reports the same one).
    __version__ = metadata.version("threads-service-client")
except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
    __version__ = "0+unknown"
