"""Every Prometheus metric of the service, defined once here; the rest of the code calls
the functions below and never prometheus_client itself.

gRPC metrics carry go-grpc-prometheus's names and labels (dashboards and alerts expect
them). With ``--workers N`` each worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set up by
``workers.metrics_dir`` in the parent before anything imports this module), and ``/metrics``,
whichever worker answers, sums the files of all of them. Without the variable (tests
that run a server in-process) the process's own registry is served.

Per call the cost is a dict lookup of cached label children and one inc/observe each;
``--metrics off`` (``configure``) makes every recorder return at once, for A/B runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from threads_server import __version__
from threads_server.ops.workers import MULTIPROC_ENV

_pid = os.getpid()


def _process_id() -> int:
    """The pid, read once per process: multiprocess mode asks on every inc/observe, to
    notice a fork, and ``os.getpid`` is a system call each time (8 per Copy, ~2 % of a
    Copy's server CPU under load). The fork hook below keeps it right in a child."""
    return _pid


def _forked() -> None:
    global _pid  # noqa: PLW0603
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)
if os.environ.get(MULTIPROC_ENV):  # before any metric below is made
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)  # type: ignore[no-untyped-call]

GRPC_TYPE = "unary"
GRPC_STREAM = "server_stream"
SERVICE = "threads.v1.ThreadService"
# go-grpc's names for the codes (OK, NotFound, DeadlineExceeded...), from grpc.StatusCode.
CODE_NAMES: dict[grpc.StatusCode, str] = {
    code: "OK" if code is grpc.StatusCode.OK else code.name.title().replace("_", "")
    for code in grpc.StatusCode
}
CODE_NAMES[grpc.StatusCode.CANCELLED] = "Canceled"  # Go's spelling

_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# go-grpc-prometheus's default buckets for grpc_server_handling_seconds.
_GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

grpc_started = Counter("grpc_server_started_total", "RPCs started on the server.", _GRPC_LABELS)
grpc_handled = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    (*_GRPC_LABELS, "grpc_code"),
)
grpc_seconds = Histogram(
    "grpc_server_handling_seconds",
    "Response latency (seconds) of gRPC that had been application-level handled by the server.",
    _GRPC_LABELS,
    buckets=_GRPC_BUCKETS,
)
http_requests = Counter(
    "threads_http_requests_total",
    "HTTP/JSON requests, by route template (never the raw path), method and status.",
    ("route", "method", "status"),
)
http_seconds = Histogram(
    "threads_http_request_duration_seconds",
    "HTTP/JSON request latency in seconds, by route template, method and status.",
    ("route", "method", "status"),
    buckets=_GRPC_BUCKETS,
)
script_seconds = Histogram(
    "threads_redis_script_duration_seconds",
    "Time one Lua script call takes in Redis, round trip included, by script.",
    ("script",),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
copy_history_length = Histogram(
    "threads_copy_history_length",
    "Entries in each copy made (the cost driver of Copy).",
    buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)
entries_appended = Counter(
    "threads_entries_appended_total", "History entries added by successful Appends."
)
grpc_msg_sent = Counter(
    "grpc_server_msg_sent_total",
    "Total number of gRPC stream messages sent by the server.",
    _GRPC_LABELS,
)
watchers_open = Gauge(
    "threads_watchers",
    "Watch streams open now (gRPC and Server-Sent Events), summed over the workers.",
    multiprocess_mode="livesum",
)
watch_messages = Counter(
    "threads_watch_messages_total",
    "Messages sent on Watch streams (gRPC and SSE), by kind: entries or progress.",
    ("kind",),
)
watch_entries = Counter("threads_watch_entries_total", "Entries sent on Watch streams.")
watch_delivery_seconds = Histogram(
    "threads_watch_delivery_seconds",
    "Delay from an append (its entries' created_at, stamped as the appending worker runs "
    "its script) to their delivery on a Watch stream, for entries appended while the stream "
    "was open; one sample per append per stream.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
_watch_entries_messages = watch_messages.labels("entries")
_watch_progress = watch_messages.labels("progress")
watch_wakeups = Counter(
    "threads_watch_wakeups_total",
    "Wake-ups (a write's Pub/Sub message) received by this server's Watch subscriptions.",
)
# Across workers: 1 only while every live worker reaches Redis.
health_serving = Gauge(
    "threads_health_serving",
    "1 while the service reaches Redis (health SERVING), else 0.",
    multiprocess_mode="livemin",
)
build_info = Gauge(
    "threads_build_info",
    "1 for the running build: the service's version, its Redis or Valkey server and version.",
    ("version", "server", "server_version"),
    multiprocess_mode="livemax",
)

VERSION = __version__

_enabled = True
_grpc_children: dict[str, tuple[Counter, Histogram, str]] = {}
_sent_children: dict[str, Counter] = {}
_handled_children: dict[tuple[str, grpc.StatusCode], Counter] = {}
_http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_script_children: dict[str, Histogram] = {}  # by the script's name
_server: tuple[str, str] | None = None


def configure(*, enabled: bool) -> None:
    """``--metrics off``: every recorder returns at once (the cost A/B of docs/performance.md)."""
    global _enabled  # noqa: PLW0603
    _enabled = enabled


def grpc_started_call(method: str, grpc_type: str = GRPC_TYPE) -> float:
    """Counts a ThreadService call in (``grpc_type``: unary, or server_stream for Watch, as
    go-grpc-prometheus labels them); returns its start, for ``grpc_handled_call``."""
    started = time.perf_counter()
    if not _enabled:
        return started
    children = _grpc_children.get(method)
    if children is None:
        labels = (grpc_type, SERVICE, method)
        children = _grpc_children[method] = (
            grpc_started.labels(*labels),
            grpc_seconds.labels(*labels),
            grpc_type,
        )
    children[0].inc()
    return started


def grpc_handled_call(method: str, code: grpc.StatusCode, started: float) -> None:
    """Counts the call out with its code, and its latency (a stream: its whole life) since
    ``started``."""
    if not _enabled:
        return
    children = _grpc_children[method]
    handled = _handled_children.get((method, code))
    if handled is None:
        handled = _handled_children[(method, code)] = grpc_handled.labels(
            children[2], SERVICE, method, CODE_NAMES[code]
        )
    handled.inc()
    children[1].observe(time.perf_counter() - started)


def grpc_sent(method: str) -> None:
    """A message of a server-streaming call, written."""
    if not _enabled:
        return
    sent = _sent_children.get(method)
    if sent is None:
        sent = _sent_children[method] = grpc_msg_sent.labels(GRPC_STREAM, SERVICE, method)
    sent.inc()


def watchers(change: int) -> None:
    if _enabled:
        watchers_open.inc(change)


def watch_wakeup() -> None:
    if _enabled:
        watch_wakeups.inc()


def watch_sent(message: Any, since: float) -> None:
    """A Watch message taken by its transport: counted, and for entries appended since the
    stream opened at ``since`` (time.time), their delay, once per append (its created_at)."""
    if not _enabled:
        return
    entries = message.entries
    if not entries:
        _watch_progress.inc()
        return
    _watch_entries_messages.inc()
    watch_entries.inc(len(entries))
    now = time.time()
    last = None
    for entry in entries:
        stamp = entry.created_at
        created = stamp.seconds + stamp.nanos / 1e9
        if created != last and created >= since:
            watch_delivery_seconds.observe(max(0.0, now - created))
        last = created


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """``route``: the template (``/threads/{thread_id}``), so ids never become labels."""
    if not _enabled:
        return
    key = (route, method, status)
    children = _http_children.get(key)
    if children is None:
        labels = (route, method, str(status))
        children = _http_children[key] = (
            http_requests.labels(*labels),
            http_seconds.labels(*labels),
        )
    children[0].inc()
    children[1].observe(seconds)


def script_call(script: str, started: float, calls: int = 1) -> None:
    """``calls`` calls of Lua script ``script`` (its file name), which began at ``started``
    (perf_counter): sent together, each took the time of the whole batch."""
    if not _enabled:
        return
    child = _script_children.get(script)
    if child is None:
        child = _script_children[script] = script_seconds.labels(script)
    elapsed = time.perf_counter() - started
    for _ in range(calls):
        child.observe(elapsed)


def copied(history_length: int) -> None:
    if _enabled:
        copy_history_length.observe(history_length)


def appended(entries: int) -> None:
    if _enabled:
        entries_appended.inc(entries)


def health(*, serving: bool) -> None:
    if _enabled:
        health_serving.set(1 if serving else 0)


def redis_server(info: Mapping[str, Any]) -> None:
    """The server ``prepare`` found (its INFO server section): build info's labels."""
    global _server  # noqa: PLW0603
    if "valkey_version" in info:
        server = ("valkey", str(info["valkey_version"]))
    else:
        server = ("redis", str(info.get("redis_version", "unknown")))
    if not _enabled or server == _server:
        return
    if _server:  # 0, not removed: a multiprocess file keeps what it was given
        build_info.labels(VERSION, *_server).set(0)
    _server = server
    build_info.labels(VERSION, *server).set(1)


def exposition() -> tuple[bytes, str]:
    """The text ``/metrics`` serves: every worker's values summed in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
