"""The server's log format: ``--log-format text`` (the default, for people) or ``json`` (one
object per line, for log pipelines).

Both render the same records: ``service.call`` passes each call's fields (method or route,
transport, gRPC code or HTTP status, latency, thread id, reason, trace and span ids) as
``extra=``, the text format shows its message, the JSON one adds the fields. No field ever
holds a token or a metadata value: ``service.call`` puts none there.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"

CALL_FIELDS = (
    "method",
    "route",
    "transport",
    "grpc_code",
    "http_status",
    "latency_ms",
    "thread_id",
    "reason",
    "messages",
    "entries",
    "trace_id",
    "span_id",
)
"""The structured fields a call's log line may carry (``extra=`` in ``service.call``; a
stream's also what it sent), in order."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, pid, message, the call
    fields the record has, and the traceback as ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name in CALL_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, log_format: str) -> None:
    """Sets up the root logger on stderr in ``log_format`` ("text" or "json"); like
    ``logging.basicConfig``, a no-op when the root logger already has handlers (an
    embedding program's, or pytest's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
