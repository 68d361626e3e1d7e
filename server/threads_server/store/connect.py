"""The store's Redis clients, built from the settings: plain, cluster or Sentinel
(``connect_redis``), each failing fast and never retrying a command by itself; and closing
them (``close_redis``). Only the store builds them: ``ThreadStore.open`` and
``threads-server migrate``."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from threads_server.ops.config import Settings


def connect_redis(url: str | None, settings: Settings) -> Any:
    """A redis.asyncio client that fails fast and never retries a command by itself.

    Retrying a write whose reply was lost could apply it twice (a duplicated Append), so
    retries belong to callers, who can make them safe (expected_length, request_id).
    With ``settings.redis_cluster``, a cluster client (``connect_redis_cluster``); with
    ``settings.redis_sentinel``, a client of the primary the sentinels name
    (``connect_redis_sentinel``).
    """
    if settings.redis_sentinel is not None:
        return connect_redis_sentinel(settings)
    if not url:
        raise ValueError("a Redis URL or --redis-sentinel is needed")
    if settings.redis_cluster:
        return connect_redis_cluster(url, settings)
    return aioredis.from_url(
        url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=min(1.0, settings.redis_timeout_seconds),
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        client_name="threads",
        # "auto" maintenance notifications make the pool skip its closed-connection check,
        # so after a Redis restart every idle pooled connection would fail one RPC.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def connect_redis_cluster(url: str, settings: Settings) -> RedisCluster:
    """A Redis Cluster client with the same fail-fast, never-resend rules as connect_redis.

    ``retry`` with 0 retries turns off the cluster client's own loop, which would otherwise
    re-send a command (3 times, with backoff) after a ConnectionError or TimeoutError (the
    reply of a script that may have run is lost), ClusterDownError or SlotNotCoveredError.
    What stays on is redirection: MOVED, ASK and TRYAGAIN mean the node did not run the
    command, so following them cannot apply a script twice. The per-node connections
    never retry either (redis-py builds them with 0 retries in cluster mode).
    """
    return RedisCluster.from_url(
        url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=min(1.0, settings.redis_timeout_seconds),
        retry=Retry(NoBackoff(), 0),
        client_name="threads",
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def connect_redis_sentinel(settings: Settings) -> Any:
    """A client of the primary that the sentinels name for ``--redis-sentinel-master``.

    redis-py's SentinelConnectionPool asks the sentinels for the primary's address
    whenever it opens a connection, drops idle connections to a former primary once they
    name another, and turns a READONLY reply (a demoted primary) into a ConnectionError,
    so the service follows a failover without a restart. The same fail-fast, never-resend
    rules as connect_redis.
    """
    tls: dict[str, Any] = {}
    if settings.redis_tls:
        tls = {"ssl": True}
        if settings.redis_tls_ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    timeouts: dict[str, Any] = {  # Any: mypy would match floats to Sentinel's other params
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": min(1.0, settings.redis_timeout_seconds),
    }
    sentinel = Sentinel(
        list(settings.redis_sentinel or ()),
        sentinel_kwargs={**timeouts, "password": settings.redis_sentinel_password, **tls},
        **timeouts,
        **tls,
        username=settings.redis_username,
        password=settings.redis_password,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        client_name="threads",
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return sentinel.master_for(settings.redis_sentinel_master or "")


async def close_redis(client: Any) -> None:
    """Closes the client, and for Sentinel its connections to the sentinels too."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        for sentinel in manager.sentinels:
            await sentinel.aclose()
